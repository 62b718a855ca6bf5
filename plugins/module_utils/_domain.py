# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_domain: declarative guests — definition, lifecycle and live changes.

The manager reads the current state (inactive XML for the definition, live XML
for a running guest), validates the request completely before any write, then:

1. creates missing disk images and the cloud-init seed ISO;
2. redefines the guest over itself (``defineXML``, same UUID and MACs) when its
   definition differs — never undefine + define;
3. sets autostart, drives the lifecycle (``state``);
4. applies to a running guest what can change live (``VIR_DOMAIN_AFFECT_LIVE``;
   the persistent side was written in step 2), reads it back, and lists what
   needs a restart in ``pending_restart`` (``restart: if_needed`` does it).

Every write goes through the run's :class:`~._changes.ChangeSet` (``write`` for libvirt, ``host`` for files
on the hypervisor), which does nothing in check mode; a second identical run reads only.
"""

from __future__ import annotations

import json
import os
import re
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._addresses import WAIT_FOR_SPEC, guest_addresses, wait_spec
from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import (
    is_cidata,
    plan_config,
    plan_live,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import (
    AGENT_CHANNEL,
    BANDWIDTH_SPEC,
    IOTUNE_SPEC,
    OPTIONS,
    check_disk_extras,
    check_nic_extras,
    disk_view,
    has_agent_channel,
    nic_view,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_facts, domain_xml_facts
from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_bytes
# The storage layer (_storage, with _qemu_img and _files behind it) is imported by the methods that find, create
# or delete an image or the seed ISO, not here: a run with nothing to create (a no-op) does not compile it.
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import (
    etree,
    find_secrets,
    make_diff,
    mask_secrets,
    parse,
    register_secrets,
    to_string,
)

STATES = ['present', 'running', 'shutdown', 'destroyed', 'paused', 'absent']

DISK_SPEC = dict(
    path=dict(type='path'),
    pool=dict(type='str'),
    volume=dict(type='str'),
    size=dict(type='str'),
    format=dict(type='str', choices=['raw', 'qcow2']),
    allocation=dict(type='str', choices=['sparse', 'full'], default='sparse'),
    backing=dict(type='path'),
    clone_from=dict(type='str'),
    target=dict(type='str'),
    bus=dict(type='str', choices=['virtio', 'sata', 'scsi', 'ide', 'usb']),
    cache=dict(type='str', choices=['none', 'writeback', 'writethrough', 'directsync', 'unsafe', 'default']),
    io=dict(type='str', choices=['native', 'threads', 'io_uring']),
    discard=dict(type='str', choices=['unmap', 'ignore']),
    readonly=dict(type='bool'),
    device=dict(type='str', choices=['disk', 'cdrom'], default='disk'),
    boot_order=dict(type='int'),
    serial=dict(type='str'),
    wwn=dict(type='str'),
    shareable=dict(type='bool'),
    iotune=dict(type='dict', options=IOTUNE_SPEC),
)

NIC_SPEC = dict(
    type=dict(type='str', choices=['network', 'bridge', 'direct'], default='network'),
    source=dict(type='str', required=True),
    model=dict(type='str', choices=['virtio', 'e1000', 'e1000e', 'rtl8139'], default='virtio'),
    mac=dict(type='str'),
    link_state=dict(type='str', choices=['up', 'down']),
    mode=dict(type='str', choices=['bridge', 'vepa', 'private', 'passthrough']),
    mtu=dict(type='int'),
    queues=dict(type='int'),
    vlan=dict(type='int'),
    portgroup=dict(type='str'),
    filterref=dict(type='str'),
    boot_order=dict(type='int'),
    bandwidth=dict(type='dict', options=BANDWIDTH_SPEC),
)

GRAPHICS_SPEC = dict(
    type=dict(type='str', choices=['vnc', 'spice', 'none'], default='vnc'),
    listen=dict(type='str', default='127.0.0.1'),
    port=dict(type='int'),
    keymap=dict(type='str', no_log=False),
    password=dict(type='str', no_log=True),
)

CLOUD_INIT_SPEC = dict(
    user_data=dict(type='raw', no_log=True),
    meta_data=dict(type='raw', no_log=True),
    network_config=dict(type='raw', no_log=True),
    directory=dict(type='path'),
    pool=dict(type='str'),
)
SEED_DIRECTORY = '/var/lib/libvirt/images'   # cloud_init.directory when neither it nor cloud_init.pool is given (local URI)
SEED_POOL = 'default'                        # cloud_init.pool when neither is given on a remote URI

# The options that are no line of the XML option table (_domain_xml.OPTIONS): the run, the devices, the XML.
ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True, aliases=['guest']),
    uuid=dict(type='str'),
    state=dict(type='str', choices=STATES, default='present'),
    autostart=dict(type='bool'),
    force=dict(type='bool', default=False),
    shutdown_timeout=dict(type='int', default=120),
    restart=dict(type='str', choices=['never', 'if_needed'], default='never'),
    wait_for=dict(type='dict', options=WAIT_FOR_SPEC),
    remove_storage=dict(type='bool', default=False),
    disks=dict(type='list', elements='dict', options=DISK_SPEC),
    interfaces=dict(type='list', elements='dict', options=NIC_SPEC),
    graphics=dict(type='dict', options=GRAPHICS_SPEC),
    cloud_init=dict(type='dict', options=CLOUD_INIT_SPEC),
    guest_agent=dict(type='bool'),
    serial_console=dict(type='bool'),
    xml=dict(type='str', no_log=True),
    xml_mode=dict(type='str', choices=['merge', 'replace'], default='merge'),
)

TARGET_RE = re.compile(r'(vd|sd|hd|xvd)[a-z]{1,3}')
BUS_PREFIX = dict(virtio='vd', sata='sd', scsi='sd', usb='sd', ide='hd')
PREFIX_BUS = dict(vd='virtio', sd='sata', hd='ide', xvd='xen')
BALLOON_WAIT = 30
AGENT_WAIT = 15
DETACH_WAIT = 10
SHUTDOWN_RETRY = 10   # seconds between graceful shutdown requests while waiting
LIVE = 1   # VIR_DOMAIN_AFFECT_LIVE
MAX_BOOT_ORDER = 65535
MAX_PASSWORD = 255
# Host paths in a user's domain XML, checked like the typed path options.
XML_PATHS = ('os/kernel', 'os/initrd', 'os/dtb', 'os/loader', 'os/nvram', 'devices/emulator',
             'devices/disk/source/@file', 'devices/disk/backingStore/source/@file',
             'devices/serial/source/@path', 'devices/console/source/@path', 'devices/channel/source/@path',
             'devices/serial/log/@file', 'devices/console/log/@file')


# ---------------------------------------------------------------- validation (no I/O)
def _size_bytes(option, value, default_unit, maximum, minimum=1):
    """A size option in bytes, within bounds; the refusal names the option (never a traceback)."""
    try:
        size = to_bytes(value, default_unit)
    except KvmError as exc:
        valid.refuse(option, exc.msg)
    except (OverflowError, ValueError):
        valid.refuse(option, 'is not a usable size', value)
    return valid.size_bytes(option, size, maximum, minimum)


def _size_kib(option, value, default_unit='MiB'):
    return (_size_bytes(option, value, default_unit, valid.MAX_MEMORY_BYTES, valid.KIB) + 1023) // 1024


# The kinds of the XML option table's lines: the argument-spec type and the check (option name, value -> value).
KINDS = dict(
    memory=('str', _size_kib),
    vcpus=('int', lambda option, value: valid.count(option, value, minimum=1, maximum=valid.MAX_VCPUS)),
    choice=('str', lambda _option, value: value),   # Ansible checks the choices
    token=('str', valid.token),
    osinfo=('str', lambda option, value: valid.osinfo_id(option, value) if value else ''),
    path=('path', lambda option, value: valid.abs_path(option, value) if value else ''),   # '' removes it
    text=('str', lambda option, value: valid.text(option, value, allow_empty=True)),
)


def _argument_spec(option):
    """The argument-spec entry of a line of the XML option table."""
    if option.spec is not None:   # a structured option declares its own entry
        return dict(option.spec)
    spec = dict(type=KINDS[option.kind][0])
    if option.choices:
        spec['choices'] = list(option.choices)
    return spec


ARGUMENT_SPEC.update((option.name, _argument_spec(option)) for option in OPTIONS)


def _auto_targets(disks):
    used = set(d['target'] for d in disks if d.get('target'))
    for disk in disks:
        if disk.get('target'):
            continue
        prefix = BUS_PREFIX[disk['bus']]
        for index in range(26):
            candidate = prefix + chr(ord('a') + index)
            if candidate not in used:
                disk['target'] = candidate
                used.add(candidate)
                break


def _user_xml(text, name, hide):
    """The ``xml`` option parsed, its secrets handed to ``hide`` first, its values checked."""
    try:
        xml = parse(text, 'domain XML')
    except KvmError as exc:
        valid.refuse('xml', exc.msg)
    if hide is not None:
        hide(find_secrets(xml))
    if xml.tag != 'domain':
        valid.refuse('xml', 'the root element must be <domain>, not <%s>' % xml.tag)
    from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import check_markers
    try:
        check_markers(xml)   # kvmops:remove / kvmops:replace, and the size a merge accepts
    except KvmError as exc:
        raise valid.ValidationError(exc.msg)
    xml_name = xml.findtext('name')
    if xml_name is not None and xml_name != name:
        valid.refuse('xml', '<name> does not match name %s' % name, xml_name)
    if xml_name is None:
        node = etree.Element('name')
        node.text = name
        xml.insert(0, node)
    for path in XML_PATHS:
        for index, value in enumerate(xml.xpath(path)):
            value = str(value) if isinstance(value, str) else (value.text or '')
            if value.strip():
                valid.abs_path('xml (%s[%d])' % (path, index + 1), value)
    for tag in ('memory', 'currentMemory', 'maxMemory'):
        node = xml.find(tag)
        if node is not None and (node.text or '').strip():
            _size_bytes('xml (<%s>)' % tag, node.text.strip(), node.get('unit') or 'KiB', valid.MAX_MEMORY_BYTES)
    vcpu = xml.find('vcpu')
    for what, value in (('<vcpu>', vcpu.text), ('<vcpu current>', vcpu.get('current'))) if vcpu is not None else ():
        if value is not None and not (re.fullmatch(r'\s*[0-9]{1,9}\s*', value) and 1 <= int(value) <= valid.MAX_VCPUS):
            valid.refuse('xml (%s)' % what, 'must be a number of vCPUs from 1 to %d' % valid.MAX_VCPUS, value)
    return xml


def validate(params, hide=None):
    """The normalized spec, or a ValidationError naming the option. Pure: no I/O.

    ``hide`` (optional) is called with the secrets found in ``xml`` as soon as it is parsed, before any
    other check can fail, so the module can mask them in whatever it prints.
    """
    name = valid.object_name('name', params['name'], 'guest name')
    xml = _user_xml(params['xml'], name, hide) if params.get('xml') else None
    uuid = valid.uuid('uuid', params['uuid']) if params.get('uuid') else None
    if params.get('shutdown_timeout') is not None:
        valid.count('shutdown_timeout', params['shutdown_timeout'], minimum=0)
    options = dict((option.name, (option.check or KINDS[option.kind][1])(option.name, params[option.name]))
                   for option in OPTIONS if params.get(option.name) is not None)
    if 'memory' in options and 'max_memory' in options and options['memory'] > options['max_memory']:
        raise valid.ValidationError('memory (%d KiB) must not exceed max_memory (%d KiB)'
                                    % (options['memory'], options['max_memory']))
    if 'vcpus' in options and 'max_vcpus' in options and options['vcpus'] > options['max_vcpus']:
        raise valid.ValidationError('vcpus (%d) must not exceed max_vcpus (%d)' % (options['vcpus'], options['max_vcpus']))

    disks = None
    if params.get('disks') is not None:
        disks = []
        for index, raw in enumerate(params['disks']):
            disks.append(_validate_disk(index, raw))
        _auto_targets(disks)
        seen = {}
        for index, disk in enumerate(disks):
            if disk['target'] in seen:
                raise valid.ValidationError('disks: duplicate target %s (disks[%d] and disks[%d])'
                                            % (disk['target'], seen[disk['target']], index))
            seen[disk['target']] = index

    nics = None
    if params.get('interfaces') is not None:
        nics = []
        macs = set()
        for index, raw in enumerate(params['interfaces']):
            nics.append(_validate_nic(index, raw, macs))

    graphics = None
    if params.get('graphics') is not None:
        graphics = _validate_graphics(params['graphics'])

    cloud_init = None
    if params.get('cloud_init') is not None:
        cloud_init = _validate_cloud_init(name, params['cloud_init'], disks)
    return dict(name=name, uuid=uuid, options=options, disks=disks, interfaces=nics,
                graphics=graphics, cloud_init=cloud_init, xml=xml, guest_agent=params.get('guest_agent'),
                serial_console=params.get('serial_console'), xml_mode=params.get('xml_mode') or 'merge')


def _validate_nic(index, raw, macs):
    label = 'interfaces[%d]' % index
    nic = dict(raw)
    if nic.get('mac'):
        mac = valid.mac(label + '.mac', nic['mac'])
        if mac in macs:
            raise valid.ValidationError('%s.mac: duplicate MAC %s' % (label, mac))
        macs.add(mac)
        nic['mac'] = mac
    if not nic.get('source'):
        raise valid.ValidationError('%s.source: required' % label)
    if nic['type'] == 'network':
        valid.object_name(label + '.source', nic['source'], 'network name')
    else:
        valid.ifname(label + '.source', nic['source'])
    if nic['type'] != 'direct':
        nic['mode'] = None
    return check_nic_extras(label, nic)   # mtu, queues, vlan, portgroup, filterref, boot_order, bandwidth


def _validate_graphics(raw):
    graphics = dict(raw)
    if graphics['type'] == 'none':
        return graphics
    port = graphics.get('port')
    if port is not None and port != -1 and not 5900 <= port <= 65535:
        raise valid.ValidationError('graphics.port: %d is outside 5900-65535' % port)
    if port == -1:
        graphics['port'] = None
    graphics['listen'] = valid.ip_address('graphics.listen', graphics.get('listen'))
    if graphics.get('keymap') is not None:
        graphics['keymap'] = valid.token('graphics.keymap', graphics['keymap'])
    password = graphics.get('password')
    if password is not None:   # never shown: it is a secret
        if valid.has_control(password) or len(password) > MAX_PASSWORD:
            valid.refuse('graphics.password', 'must be at most %d characters without control characters' % MAX_PASSWORD,
                         show_value=False)
    return graphics


def _validate_cloud_init(name, raw, disks):
    if raw.get('directory') and raw.get('pool'):
        raise valid.ValidationError('cloud_init: give either directory (a directory of the host that runs the module, '
                                    'local URI) or pool (a storage pool of the hypervisor), not both')
    pool = valid.object_name('cloud_init.pool', raw['pool'], 'pool name') if raw.get('pool') else None
    directory = valid.abs_path('cloud_init.directory', raw['directory']) if raw.get('directory') else None
    for key in ('user_data', 'meta_data', 'network_config'):
        if raw.get(key) is not None and not isinstance(raw[key], (str, dict, list)):
            valid.refuse('cloud_init.%s' % key, 'must be text or a dictionary, not %s' % type(raw[key]).__name__,
                         show_value=False)
    # imported where used: every run pays the compile of what it imports (AnsiballZ ships no bytecode)
    from ansible_collections.kvmops.kvm.plugins.module_utils._cloudinit import seed_image
    try:
        file_name, image = seed_image(name, raw.get('user_data'), raw.get('meta_data'), raw.get('network_config'))
    except (TypeError, ValueError) as exc:
        valid.refuse('cloud_init', 'cannot build the seed: %s' % type(exc).__name__, show_value=False)
    # in a pool (given, or on a remote URI) the path is the pool's directory: known in check_environment
    path = os.path.join(directory or SEED_DIRECTORY, file_name) if not pool else None
    used = set(d['target'] for d in disks or [])
    target = next('sd' + c for c in 'zyxwvutsrqponmlkjihgfedcba' if 'sd' + c not in used)
    return dict(path=path, image=image, directory=directory, pool=pool, file_name=file_name,
                disk=dict(device='cdrom', source=path, format='raw', target=target, bus='sata', readonly=True))


def _validate_disk(index, raw):
    label = 'disks[%d]' % index
    disk = dict(raw)
    if disk.get('path') and (disk.get('pool') or disk.get('volume')):
        raise valid.ValidationError('%s: give either path or pool and volume, not both' % label)
    if bool(disk.get('pool')) != bool(disk.get('volume')):
        raise valid.ValidationError('%s: pool and volume go together' % label)
    if disk['device'] == 'disk' and not disk.get('path') and not disk.get('pool'):
        raise valid.ValidationError('%s: path (or pool and volume) is required for a disk' % label)
    if disk.get('path'):
        disk['path'] = valid.abs_path(label + '.path', disk['path'])
    if disk.get('pool'):
        valid.object_name(label + '.pool', disk['pool'], 'pool name')
        valid.object_name(label + '.volume', disk['volume'], 'volume name')
    for key in ('backing', 'clone_from'):   # a path, or the name of a volume in the disk's pool
        if disk.get(key):
            check = valid.abs_path if disk[key].startswith('/') or not disk.get('pool') else valid.object_name
            disk[key] = check('%s.%s' % (label, key), disk[key])
    if disk.get('backing') and disk.get('clone_from'):
        raise valid.ValidationError('%s: give either backing (a thin overlay) or clone_from (a full copy), not both' % label)
    if disk.get('clone_from') and disk['device'] != 'disk':
        raise valid.ValidationError('%s.clone_from: only for a disk, not a %s' % (label, disk['device']))
    if disk.get('target') and not TARGET_RE.fullmatch(disk['target']):
        valid.refuse(label + '.target', 'invalid target (vda, sdb, hdc, ...)', disk['target'])
    if disk.get('boot_order') is not None:
        valid.count(label + '.boot_order', disk['boot_order'], minimum=1, maximum=MAX_BOOT_ORDER)
    if not disk.get('bus'):
        prefix = re.match(r'^(vd|sd|hd|xvd)', disk['target']).group(1) if disk.get('target') else None
        disk['bus'] = PREFIX_BUS.get(prefix) if prefix else ('sata' if disk['device'] == 'cdrom' else 'virtio')
    if disk['bus'] == 'xen':
        raise valid.ValidationError('%s.target: xvd targets are for Xen guests' % label)
    if disk['device'] == 'cdrom':
        if disk['bus'] == 'virtio':
            raise valid.ValidationError('%s.bus: a cdrom cannot be on the virtio bus (use sata, scsi or ide)' % label)
        disk.setdefault('format', None)
        disk['format'] = disk['format'] or 'raw'
        disk['readonly'] = True
    if disk.get('size') is not None:
        disk['size_bytes'] = _size_bytes(label + '.size', disk['size'], 'GiB', valid.MAX_VOLUME_BYTES)
    if disk.get('backing') and disk.get('format') == 'raw':
        raise valid.ValidationError('%s.backing: an overlay of a backing image must be qcow2' % label)
    disk['source'] = disk.pop('path', None) or ('' if disk['device'] == 'cdrom' and not disk.get('pool') else None)
    disk['label'] = label
    check_disk_extras(label, disk)   # serial, wwn, shareable, iotune
    return disk


# ---------------------------------------------------------------- environment checks (read-only I/O)
def image_format(path):
    """qcow2 or raw, from the file's magic (no qemu-img, safe in check mode)."""
    try:
        with open(path, 'rb') as handle:
            return 'qcow2' if handle.read(4) == b'QFI\xfb' else 'raw'
    except (IOError, OSError):
        return None


def delete_image(*args, **kwargs):
    """The storage layer's :func:`~._storage.delete_image`, imported by the runs that remove storage."""
    from ansible_collections.kvmops.kvm.plugins.module_utils._storage import delete_image as delete
    return delete(*args, **kwargs)


class Manager(object):
    """Read, plan, apply (unless check mode), report."""

    def __init__(self, client, module):
        self.client = client
        self.module = module
        self.params = module.params
        self.changes = ChangeSet(module, client)
        self.check = self.changes.check
        self.local = is_local_uri(client.uri)
        self.warnings = []
        self.storage = []      # disk images / ISO to create: (kind, data)

    # -- helpers -------------------------------------------------------
    def conn(self):
        return self.client.conn

    def xml(self, dom, inactive):
        flags = libvirt.VIR_DOMAIN_XML_SECURE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        root = parse(self.client.call('domain %s' % dom.name(), dom.XMLDesc, flags), 'domain XML')
        register_secrets(self.module, root)   # read with VIR_DOMAIN_XML_SECURE: never printed
        return root

    def hide(self, values):
        """Mask ``values`` (secrets) in everything the module prints."""
        self.changes.secret(*values)

    # -- context ---------------------------------------------------------
    def context(self, spec, current):
        ctx = {}
        opts = spec['options']
        untyped = spec['xml'] is None or not spec['xml'].get('type')  # a new guest from XML without <domain type=>
        if opts.get('virt_type') == 'auto' or (current is None and untyped and not opts.get('virt_type')):
            from ansible_collections.kvmops.kvm.plugins.module_utils._hostvirt import domain_type_report
            report = domain_type_report(self.conn(), 'kvm')
            opts['virt_type'] = 'kvm' if report['available'] and report['runs_full_os'] else 'qemu'
        if opts.get('machine'):
            caps = parse(self.client.call('capabilities', self.conn().getCapabilities), 'capabilities')
            ctx['machine_aliases'] = dict((m.text, m.get('canonical')) for m in caps.iter('machine') if m.get('canonical'))
        return ctx

    def check_environment(self, spec, current):
        """Networks, bridges, pools and files exist, before any write."""
        for index, nic in enumerate(spec['interfaces'] or []):
            label = 'interfaces[%d]' % index
            if nic['type'] == 'network':
                if self.client.find_network(nic['source']) is None:
                    raise KvmError('%s.source: unknown network %r on %s' % (label, nic['source'], self.client.uri))
            elif self.local:
                sysfs = '/sys/class/net/%s' % nic['source']
                if nic['type'] == 'bridge' and not os.path.isdir(sysfs + '/bridge'):
                    raise KvmError('%s.source: unknown bridge %r' % (label, nic['source']))
                if nic['type'] == 'direct' and not os.path.exists(sysfs):
                    raise KvmError('%s.source: unknown host interface %r' % (label, nic['source']))
        existing = set()
        if current is not None:
            existing = set(disk_view(d)['source'] for d in current.findall('devices/disk'))
        for disk in spec['disks'] or []:
            self._check_disk(disk, existing)
        if spec['cloud_init'] is not None and (spec['cloud_init']['pool'] or not self.local):
            self._check_seed_pool(spec['cloud_init'])
        elif spec['cloud_init'] is not None:
            ci = spec['cloud_init']
            directory = os.path.dirname(ci['path'])
            if not os.path.isdir(directory):
                raise KvmError('cloud_init.directory: %s does not exist' % directory)
            from ansible_collections.kvmops.kvm.plugins.module_utils._files import refuse_link
            refuse_link('cloud_init.directory', ci['path'])
            if not os.path.exists(ci['path']):
                self.storage.append(('iso', ci))
        for option in OPTIONS:
            if option.preflight is not None and option.name in spec['options']:
                option.preflight(spec['options'][option.name], self.local)
            if option.inspect is not None and option.name in spec['options']:
                option.inspect(self.client, spec['name'], spec['options'][option.name])
        if spec['options'].get('kernel') and self.local and not os.path.exists(spec['options']['kernel']):
            raise KvmError('kernel: %s does not exist' % spec['options']['kernel'])
        if spec['options'].get('initrd') and self.local and not os.path.exists(spec['options']['initrd']):
            raise KvmError('initrd: %s does not exist' % spec['options']['initrd'])

    def _check_seed_pool(self, ci):
        """The seed ISO as a volume of a file pool: cloud_init.pool, or on a remote URI the default pool."""
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import FILE_POOLS, find_volume
        if ci['directory']:
            raise KvmError('cloud_init.directory: %s would be a directory of the host that runs the module, not of the '
                           'hypervisor (%s is remote; files reach it only through libvirt); give cloud_init.pool, a '
                           'directory pool of the hypervisor (default %r), instead' % (ci['directory'], self.client.uri, SEED_POOL))
        name = ci['pool'] or SEED_POOL
        pool = self.client.find_pool(name)
        if pool is None:
            raise KvmError('cloud_init.pool: no pool %r on %s; the seed ISO goes into a directory pool of the hypervisor: '
                           'create it (kvm_pool) or name another in cloud_init.pool' % (name, self.client.uri))
        if not self.client.call('pool %s' % name, pool.isActive):
            raise KvmError('cloud_init.pool: pool %r is not active' % name)
        root = parse(self.client.call('pool %s' % name, pool.XMLDesc, 0), 'pool XML')
        directory = root.findtext('target/path')
        if root.get('type') not in FILE_POOLS or not directory:
            raise KvmError('cloud_init.pool: pool %r is a %s pool; the seed ISO needs a directory pool (%s)'
                           % (name, root.get('type'), ', '.join(FILE_POOLS)))
        ci['pool'] = name
        ci['path'] = ci['disk']['source'] = os.path.join(directory, ci['file_name'])
        if find_volume(self.client, pool, ci['file_name'], 'cloud_init.pool %s' % name) is None:
            self.storage.append(('seed', dict(ci, pool_obj=pool)))

    def _check_disk(self, disk, existing):
        label = disk['label']
        if disk.get('pool'):
            pool = self.client.find_pool(disk['pool'])
            if pool is None:
                raise KvmError('%s.pool: unknown pool %r on %s' % (label, disk['pool'], self.client.uri))
            if not self.client.call('pool %s' % disk['pool'], pool.isActive):
                raise KvmError('%s.pool: pool %r is not active' % (label, disk['pool']))
            try:
                vol = pool.storageVolLookupByName(disk['volume'])
            except libvirt.libvirtError:
                vol = None
            if vol is None:
                if disk['device'] != 'disk':
                    raise KvmError('%s: volume %r does not exist in pool %r' % (label, disk['volume'], disk['pool']))
                if disk.get('size_bytes') is None and not disk.get('backing') and not disk.get('clone_from'):
                    raise KvmError('%s: volume %r does not exist in pool %r; give size (or backing, or clone_from) to '
                                   'create it' % (label, disk['volume'], disk['pool']))
                self._plan_volume(disk, pool, disk['volume'])
            elif not disk.get('format'):
                fmt = parse(self.client.call('volume %s' % disk['volume'], vol.XMLDesc, 0), 'volume XML').find('target/format')
                disk['format'] = fmt.get('type') if fmt is not None else 'raw'
            return
        path = disk.get('source')
        if not path:
            return
        if not self.local:
            return self._check_remote_path(disk, existing)
        if os.path.exists(path):
            if not disk.get('format'):
                disk['format'] = image_format(path)
            return
        if os.path.islink(path):
            raise KvmError('%s.path: %s is a dangling symbolic link; refusing to create an image through it'
                           % (label, path))
        if disk['device'] == 'cdrom':
            raise KvmError('%s.path: %s does not exist' % (label, path))
        if path in existing and disk.get('size_bytes') is None:
            raise KvmError('%s.path: %s (in the current definition) does not exist' % (label, path))
        if disk.get('clone_from'):
            raise KvmError('%s.clone_from: a copy is made by libvirt as a volume; give %s.pool and %s.volume '
                           '(on a local URI a disk path is created with qemu-img, which only makes overlays)' % (label, label, label))
        if disk.get('size_bytes') is None and not disk.get('backing'):
            raise KvmError('%s: %s does not exist; give size (or backing) to create it' % (label, path))
        if not os.path.isdir(os.path.dirname(path)):
            raise KvmError('%s.path: directory %s does not exist' % (label, os.path.dirname(path)))
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import backing_image
        backing = backing_image(self.module, self.client, label + '.backing', disk['backing'],
                                local=True) if disk.get('backing') else None
        disk['plan'] = self._image_plan(disk, backing)
        disk['format'] = disk['plan']['format']
        self.storage.append(('file', disk))

    def _check_remote_path(self, disk, existing):
        """A disk given by path on a remote URI: a volume of a file pool, found and created through libvirt."""
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import volume_at_path
        label = disk['label']
        path = disk['source']
        pool, vol = volume_at_path(self.client, path, label + '.path')
        if vol is not None:
            if not disk.get('format'):
                fmt = parse(self.client.call('volume %s' % path, vol.XMLDesc, 0), 'volume XML').find('target/format')
                disk['format'] = fmt.get('type') if fmt is not None and fmt.get('type') in ('raw', 'qcow2') else 'raw'
            return
        if pool is None:
            raise KvmError('%s.path: %s is in no storage pool of %s; on a remote URI the hypervisor\'s files are reached only '
                           'through libvirt (nothing is read or written on the host that runs the module): give '
                           '%s.pool and %s.volume instead, or define a directory pool for %s (kvm_pool)'
                           % (label, path, self.client.uri, label, label, os.path.dirname(path)))
        where = 'in pool %r of %s' % (pool.name(), self.client.uri)
        if disk['device'] == 'cdrom':
            raise KvmError('%s.path: %s does not exist %s' % (label, path, where))
        if path in existing and disk.get('size_bytes') is None:
            raise KvmError('%s.path: %s (in the current definition) does not exist %s' % (label, path, where))
        if disk.get('size_bytes') is None and not disk.get('backing') and not disk.get('clone_from'):
            raise KvmError('%s: %s does not exist %s; give size (or backing, or clone_from) to create it' % (label, path, where))
        self._plan_volume(disk, pool, os.path.basename(path))

    def _plan_volume(self, disk, pool, name):
        """A new volume of ``pool`` for ``disk``: empty, an overlay on ``backing`` or a copy of ``clone_from``."""
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import backing_image, check_capacity
        label = disk['label']
        backing = backing_image(self.module, self.client, label + '.backing', disk['backing'], pool=pool,
                                local=self.local) if disk.get('backing') else None
        clone = None
        if disk.get('clone_from'):
            clone = backing_image(self.module, self.client, label + '.clone_from', disk['clone_from'], pool=pool, local=False)
            if disk.get('format') and clone['format'] and disk['format'] != clone['format']:
                raise KvmError('%s.format: %s, but %s is a %s image; a clone keeps its format (convert it with '
                               'kvm_volume import_from)' % (label, disk['format'], clone['path'], clone['format']))
            if clone['format'] not in ('raw', 'qcow2'):
                raise KvmError('%s.clone_from: %s has format %r; only raw and qcow2 images are cloned'
                               % (label, clone['path'], clone['format']))
            disk['format'] = clone['format']
            disk.setdefault('size_bytes', None)
            disk['size_bytes'] = check_capacity(label + '.size', disk['size_bytes'], clone, 'clone_from %s' % clone['path'])
        disk['plan'] = self._image_plan(disk, backing)
        disk['format'] = disk['plan']['format']
        self.storage.append(('volume', dict(disk=disk, pool=pool, name=name, clone=clone['vol'] if clone else None)))

    @staticmethod
    def _image_plan(disk, backing):
        """The storage layer's checks of a new disk image (capacity against the backing image, formats)."""
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import image_plan
        label = disk['label']
        return image_plan(label, disk.get('size_bytes'), disk.get('format'), backing, None, disk.get('allocation'),
                          names=dict(capacity=label + '.size', format=label + '.format', backing=label + '.backing'))

    # -- storage -------------------------------------------------------
    def create_storage(self):
        """Disk images and the seed ISO: created atomically, mode 0600, never through a symbolic link."""
        for kind, data in self.storage:
            from ansible_collections.kvmops.kvm.plugins.module_utils._files import write_private_file
            from ansible_collections.kvmops.kvm.plugins.module_utils._storage import create_at_path, create_in_pool, upload_bytes
            if kind == 'iso':
                self.changes.record('host', 'cloud_init', 'create_image', after=data['path'])
                self.changes.host(write_private_file, 'cloud_init', data['path'], data['image'])
            elif kind == 'seed':   # built here, uploaded into the pool through libvirt (remote URIs too)
                self.changes.record('config', 'cloud_init', 'create_volume', after=dict(
                    pool=data['pool'], volume=data['file_name'], path=data['path']))
                upload_bytes(self.changes, self.client, data['pool_obj'], data['file_name'], data['image'],
                             perms=dict(mode='0600'))
            elif kind == 'file':
                plan = data['plan']
                self.changes.record('host', data['label'], 'create_image', after=dict(
                    path=data['source'], format=plan['format'], size=data.get('size'), capacity=plan['capacity'],
                    backing=data.get('backing')))
                create_at_path(self.changes, self.module, data['label'], data['source'], plan)
            else:
                disk = data['disk']
                plan = disk['plan']
                name = data.get('name') or disk['volume']   # a path disk on a remote URI: the file in its pool
                after = dict(pool=data['pool'].name(), volume=name, format=plan['format'], size=disk.get('size'),
                             capacity=plan['capacity'], backing=disk.get('backing'))
                if disk.get('clone_from'):
                    after['clone_from'] = disk['clone_from']
                self.changes.record('config', disk['label'], 'create_volume', after=after)
                create_in_pool(self.changes, self.client, data['pool'], name, plan, perms=dict(mode='0600'),
                               clone=data.get('clone'))

    # -- lifecycle -------------------------------------------------------
    def state_of(self, dom):
        if dom is None:
            return 'absent'
        state = self.client.call('domain %s' % dom.name(), dom.state)[0]
        return {1: 'running', 2: 'running', 3: 'paused', 7: 'paused'}.get(state, 'shutoff')

    def start(self, dom):
        self.changes.record('live', 'state', 'start', before='shutoff', after='running')
        self.changes.write('start %s' % dom.name(), dom.create)

    def shutdown(self, dom, why='shutdown'):
        """Graceful shutdown, waiting shutdown_timeout; then force, or a clear failure.

        libvirt's default shutdown mode asks the QEMU guest agent when one is connected and falls back to the
        ACPI power button. The request is repeated every SHUTDOWN_RETRY seconds while waiting (as ``virsh
        shutdown`` users do): a button press that arrives before the guest OS handles it (still booting,
        systemd-logind not up yet) is lost, not queued.
        """
        self.changes.record('live', 'state', why, before='running', after='shutoff')
        self.changes.write('shutdown %s' % dom.name(), self._shut_down, dom)

    def _shut_down(self, dom):
        """The requests and the wait of :meth:`shutdown` (a write: only through the change set)."""
        name = dom.name()
        timeout = self.params['shutdown_timeout']
        if self.state_of(dom) == 'paused':
            self.client.call('resume %s' % name, dom.resume)
        method = 'the guest agent, else the ACPI power button' if self._agent_connected(dom) \
            else 'the ACPI power button'
        requests = 0
        deadline = time.time() + timeout
        next_request = time.time()
        while True:
            if time.time() >= next_request:
                try:
                    dom.shutdown()
                    requests += 1
                except libvirt.libvirtError as exc:
                    if not self.client.call('domain %s' % name, dom.isActive):
                        return
                    if requests == 0:
                        raise KvmError(self.client.describe_error(exc, 'shutdown %s' % name))
                next_request = time.time() + SHUTDOWN_RETRY
            if not self.client.call('domain %s' % name, dom.isActive):
                return
            if time.time() >= deadline:
                break
            time.sleep(0.5)
        if not self.params['force']:
            raise KvmError('guest %s did not shut down within shutdown_timeout (%d s) after %d graceful shutdown '
                           'request(s) through %s (a Linux guest needs systemd-logind, which needs D-Bus, or a '
                           'running qemu-guest-agent); set force: true to power it off'
                           % (name, timeout, requests, method), changed=True)
        self.changes.record('live', 'state', 'destroy', before='running', after='shutoff',
                            detail='forced after %d s' % timeout)
        self.changes.write('destroy %s' % name, dom.destroy)

    def _agent_connected(self, dom):
        """The guest agent's channel is present and the agent in the guest has opened it."""
        try:
            live = self.xml(dom, inactive=False)
        except KvmError:
            return False
        return bool(live.xpath("devices/channel/target[@name='%s'][@state='connected']" % AGENT_CHANNEL))

    def converge_state(self, dom, wanted):
        have = self.state_of(dom)
        name = self.params['name']
        if wanted == 'running':
            if have == 'shutoff':
                self.start(dom)
            elif have == 'paused':
                self.changes.record('live', 'state', 'resume', before='paused', after='running')
                self.changes.write('resume %s' % name, dom.resume)
        elif wanted == 'paused':
            if have == 'shutoff':
                self.start(dom)
            if have != 'paused':
                self.changes.record('live', 'state', 'suspend', before='running', after='paused')
                self.changes.write('suspend %s' % name, dom.suspend)
        elif wanted == 'shutdown' and have != 'shutoff':
            self.shutdown(dom)
        elif wanted == 'destroyed' and have != 'shutoff':
            self.changes.record('live', 'state', 'destroy', before=have, after='shutoff')
            self.changes.write('destroy %s' % name, dom.destroy)

    # -- live ------------------------------------------------------------
    def apply_live(self, dom, actions):
        for action in actions:
            kind = action['kind']
            entry = self.changes.record('live', action['option'], kind if kind in ('attach', 'detach', 'update') else 'set',
                                        before=action.get('before'), after=action.get('after'))
            self.changes.write('%s of %s (live)' % (action['option'], dom.name()), self._apply, dom, action, entry)

    def _apply(self, dom, action, entry):
        """One live action, read back into ``entry`` (a write: only through the change set)."""
        name = dom.name()
        kind = action['kind']
        if kind == 'vcpus':
            self.client.call('setVcpusFlags %s' % name, dom.setVcpusFlags, action['after'], LIVE)
            entry['read_back'] = self.client.call('domain %s' % name, dom.info)[3]
            self._online_vcpus(dom, action['after'], entry)
        elif kind == 'memory':
            self.client.call('setMemoryFlags %s' % name, dom.setMemoryFlags, action['after'], LIVE)
            entry['read_back'] = self._wait_balloon(dom, action['after'])
            if entry['read_back'] != action['after']:
                self.warnings.append('memory: the balloon of %s reads %s KiB, not the %s KiB asked for '
                                     '(is the guest virtio-balloon driver loaded?)' % (name, entry['read_back'], action['after']))
        elif kind == 'attach':
            self._attach(dom, action['xml'])
        elif kind == 'update':
            self.client.call('updateDeviceFlags %s' % name, dom.updateDeviceFlags, to_string(action['xml']), LIVE)
        elif kind == 'detach':
            self._detach(dom, action, entry)
        elif kind == 'call':   # a typed option's live API call (cputune: pin, scheduler), then read back
            action['call'](self.client, dom)
            entry['read_back'] = action['read_back'](self.xml(dom, inactive=False))

    def _online_vcpus(self, dom, count, entry):
        """Bring hot-added vCPUs online in the guest through the QEMU guest agent, when it has one."""
        if not has_agent_channel(self.xml(dom, inactive=False)):
            return
        guest = libvirt.VIR_DOMAIN_VCPU_GUEST
        deadline = time.time() + AGENT_WAIT
        error = None
        while time.time() < deadline:
            try:
                dom.setVcpusFlags(count, guest)
                entry['guest_online'] = dom.vcpusFlags(guest)
                return
            except libvirt.libvirtError as exc:
                error = exc.get_error_message() or str(exc)
                time.sleep(1)
        self.warnings.append('vcpus: %d vCPUs are plugged into %s, but the guest agent could not bring them online: %s'
                             % (count, dom.name(), ' '.join(str(error).split())))

    def _wait_balloon(self, dom, target):
        deadline = time.time() + BALLOON_WAIT
        value = None
        while True:
            value = self.client.call('domain %s' % dom.name(), dom.info)[2]
            if value == target or time.time() >= deadline:
                return value
            time.sleep(0.5)

    def _attach(self, dom, elem):
        text = to_string(elem)
        try:
            dom.attachDeviceFlags(text, LIVE)
        except libvirt.libvirtError as exc:
            if elem.find('address') is None:
                raise KvmError(self.client.describe_error(exc, 'attach device to %s' % dom.name()))
            # The slot libvirt chose for the definition is taken on the running guest.
            bare = etree.fromstring(etree.tostring(elem))
            for node in bare.findall('address'):
                bare.remove(node)
            self.client.call('attach device to %s' % dom.name(), dom.attachDeviceFlags, to_string(bare), LIVE)

    def _present_live(self, dom, key):
        kind, ident = key
        live = self.xml(dom, inactive=False)
        if kind == 'disk':
            return any(disk_view(d)['target'] == ident for d in live.findall('devices/disk'))
        if kind == 'hostdev':
            from ansible_collections.kvmops.kvm.plugins.module_utils._hostdev import present_in
            return present_in(live, ident)
        return any(nic_view(i)['mac'] == ident for i in live.findall('devices/interface'))

    def _detach(self, dom, action, entry):
        name = dom.name()
        try:
            dom.detachDeviceFlags(to_string(action['xml']), LIVE)
        except libvirt.libvirtError as exc:
            msg = exc.get_error_message() or str(exc)
            if 'already in the process of unplug' not in msg:
                raise KvmError(self.client.describe_error(exc, 'detach %s from %s' % (action['option'], name)))
            self.changes.drop(entry)
            self.changes.restart_needed(action['option'])
            return
        deadline = time.time() + DETACH_WAIT
        while time.time() < deadline and self._present_live(dom, action['key']):
            time.sleep(0.5)
        if self._present_live(dom, action['key']):
            entry['read_back'] = 'detach requested, not yet released by the guest'
            self.changes.restart_needed(action['option'])
            self.warnings.append('%s: %s has not released the device yet (hot-unplug needs the guest OS); '
                                 'it is gone from the definition and leaves at the next restart at the latest'
                                 % (action['option'], name))

    # -- absent ----------------------------------------------------------
    def absent(self, dom):
        name = self.params['name']
        if dom is None:
            return self.changes.result(domain=dict(name=name, state='absent'))
        before = self.xml(dom, inactive=True)
        files = []
        volumes = []
        if self.params['remove_storage']:
            for disk in before.findall('devices/disk'):
                view = disk_view(disk)
                if view['device'] != 'disk' and not is_cidata(disk, name):
                    continue
                if view['pool']:
                    vol = self._find_volume(view['pool'], view['volume'])
                    if vol is not None:
                        volumes.append(('%s/%s' % (view['pool'], view['volume']), vol))
                elif view['source'] and disk.get('type') == 'file':
                    files.append(view['source'])
        if self.client.call('domain %s' % name, dom.isActive):
            self.changes.record('live', 'state', 'destroy', before='running', after='shutoff')
            self.changes.write('destroy %s' % name, dom.destroy)
        flags = self._undefine_flags(dom, before)
        self.changes.record('config', 'definition', 'undefine', before=name)
        self.changes.write('undefine %s' % name, dom.undefineFlags, flags)
        for what, vol in volumes:
            delete_image(self.changes, self.client, vol=vol, option='remove_storage')
            self.changes.record('config', 'remove_storage', 'delete_volume', before=what)
        for path in files:
            how = delete_image(self.changes, self.client, path=path, local=self.local, option='remove_storage')
            if how == 'volume':
                self.changes.record('config', 'remove_storage', 'delete_volume', before=path)
            elif how == 'file':
                self.changes.record('host', 'remove_storage', 'delete_file', before=path)
            else:
                self.warnings.append('remove_storage: %s is in no storage pool of the remote host; left in place' % path)
        self.changes.add_diff(**make_diff(before, None, before_header='%s (persistent definition)' % name,
                                          after_header='%s (absent)' % name))
        result = self.changes.result(domain=dict(name=name, state='absent'))
        if self.warnings:   # main() hands them to module.warn
            result['warnings'] = self.warnings
        return result

    def _undefine_flags(self, dom, before):
        """Managed save, snapshot and checkpoint metadata and NVRAM go with the definition.

        Only the flags the guest needs are passed: some drivers reject flags they do not know.
        """
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        if before.find('os/nvram') is not None or before.find("os[@firmware='efi']") is not None \
                or before.find("os/loader[@type='pflash']") is not None:
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        if before.find("devices/tpm/backend[@type='emulator']") is not None:   # its swtpm state goes too
            flags |= getattr(libvirt, 'VIR_DOMAIN_UNDEFINE_TPM', 0)
        checkpoint_flag = getattr(libvirt, 'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA', 0)
        if checkpoint_flag:
            try:
                if dom.listAllCheckpoints(0):
                    flags |= checkpoint_flag
            except (libvirt.libvirtError, AttributeError):
                pass
        return flags

    def _find_volume(self, pool_name, vol_name):
        """The volume of a disk to delete, or None when its pool or the volume is gone (a read)."""
        from ansible_collections.kvmops.kvm.plugins.module_utils._storage import find_volume
        pool = self.client.find_pool(pool_name)
        if pool is None:
            return None
        return find_volume(self.client, pool, vol_name, refresh=False)

    # -- main ------------------------------------------------------------
    def run(self):
        params = self.params
        spec = validate(params, hide=self.hide)
        spec['wait_for'] = wait_spec(params.get('wait_for'), params['state'])
        name = spec['name']
        dom = self.client.find_domain(name)
        if params['state'] == 'absent':
            return self.absent(dom)
        current = self.xml(dom, inactive=True) if dom is not None else None
        if current is not None and spec['uuid'] and current.findtext('uuid').replace('-', '') != spec['uuid'].lower().replace('-', ''):
            raise KvmError('uuid: guest %s exists with UUID %s; a UUID cannot be changed' % (name, current.findtext('uuid')))
        if (dom is None and 'memory' not in spec['options'] and 'max_memory' not in spec['options']
                and (spec['xml'] is None or spec['xml'].find('memory') is None)):
            raise KvmError('memory: required to create guest %s (as the option or as <memory> in xml)' % name)
        if dom is None and spec['graphics'] is None and spec['xml'] is None:
            spec['graphics'] = dict(type='vnc', listen='127.0.0.1', port=None, keymap=None, password=None)
        ctx = self.context(spec, current)
        self.check_environment(spec, current)
        desired, config_changes, options = plan_config(spec, current, ctx)

        self.create_storage()
        if config_changes:
            self.changes.entries.extend(config_changes)
            text = to_string(desired)
            flags = getattr(libvirt, 'VIR_DOMAIN_DEFINE_VALIDATE', 0)
            defined = self.changes.write('define %s' % name, self.conn().defineXMLFlags, text, flags)
            if defined is not None:
                dom = defined
        if params['autostart'] is not None:
            have = bool(self.client.call('domain %s' % name, dom.autostart)) if dom is not None else False
            if have != params['autostart']:
                self.changes.record('config', 'autostart', 'set', before=have, after=params['autostart'])
                if dom is not None:
                    self.changes.write('autostart %s' % name, dom.setAutostart, 1 if params['autostart'] else 0)

        state = params['state']
        if dom is not None:
            running = self.state_of(dom) in ('running', 'paused')
            if running and state in ('present', 'running', 'paused'):
                wanted = desired if self.check else self.xml(dom, inactive=True)   # check mode: what would be defined
                actions, pending = plan_live(spec, options, wanted, self.xml(dom, inactive=False), ctx, before=current)
                self.apply_live(dom, actions)
                self.changes.restart_needed(*pending)
            pending = self.changes.pending
            if pending and params['restart'] == 'if_needed' and running and state in ('present', 'running', 'paused'):
                self.shutdown(dom, why='restart')
                self.changes.record('live', 'state', 'start', before='shutoff', after='running',
                                    detail='restart for %s' % ', '.join(sorted(pending)))
                self.changes.write('start %s' % name, dom.create)
                self.changes.restarted()   # the restart applied them
            self.converge_state(dom, state)
        elif state in ('running', 'paused'):
            self.changes.record('live', 'state', 'start', before='absent', after='running')
            if state == 'paused':
                self.changes.record('live', 'state', 'suspend', before='running', after='paused')

        if dom is not None:
            facts = domain_facts(self.client, dom)
        else:
            facts = domain_xml_facts(desired)
            facts.update(id=None, state='shutoff', state_reason='unknown', active=False, persistent=True,
                         autostart=bool(params['autostart']), vcpu_info=[], balloon={})
        self.changes.add_diff(**self.diff(name, current, desired if config_changes else current))
        try:
            found = guest_addresses(self.client, dom, name, facts, spec['wait_for'], check=self.check)
        except KvmError as exc:   # wait_for timed out: what was done is reported with the failure
            raise KvmError(exc.msg, **self.changes.result(domain=facts))
        facts.update(addresses=found.pop('addresses'), address_errors=found.pop('address_errors'))
        result = self.changes.result(domain=facts, **found)
        if self.warnings:
            result['warnings'] = self.warnings
        return result

    def diff(self, name, before, after):
        def render(root):
            return to_string(mask_secrets(root)) if root is not None else ''
        before_text, after_text = render(before), render(after)
        removed = [path for item in self.changes.entries if item['option'] == 'xml' for path in item.get('removed') or ()]
        if removed:   # what xml removes, named (xml_mode replace: all the new definition lacks)
            after_text = ''.join('# removed by xml: %s\n' % path for path in removed) + '\n' + after_text
        live = [c for c in self.changes.entries if c['scope'] == 'live']
        if live:
            lines_before = ['# live (running guest)']
            lines_after = ['# live (running guest)']
            for entry in live:
                lines_before.append('%s: %s' % (entry['option'], json.dumps(entry.get('before'), sort_keys=True)))
                lines_after.append('%s: %s' % (entry['option'], json.dumps(entry.get('after'), sort_keys=True)))
            before_text = '\n'.join(lines_before) + '\n\n' + before_text
            after_text = '\n'.join(lines_after) + '\n\n' + after_text
        return make_diff(before_text, after_text, before_header='%s (persistent definition)' % name,
                         after_header='%s (persistent definition)' % name)


def main(module):
    def converge(client):
        result = Manager(client, module).run()
        for warning in result.pop('warnings', []):
            module.warn(warning)
        return result
    run(module, converge)
