# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XML model of kvm_domain: a declarative option table over libvirt's domain XML.

:data:`OPTIONS` is the one place a scalar option of kvm_domain is declared. Each line gives its
``kind`` (what the user writes: its argument-spec type and the check ``_domain.validate`` makes,
see ``_domain.KINDS``) and its ``choices``, where it lives in the domain XML (``read`` gives the
normalized value libvirt reports, ``write`` sets it), how to compare it, and how it reaches a
running guest (``live``):

* ``'balloon'`` / ``'vcpus'`` — applied live by an API call (setMemoryFlags, setVcpusFlags);
* ``'none'``   — nothing to do on the running guest (metadata);
* ``None``     — only at the next boot: listed in ``pending_restart``.

Devices (disks, interfaces, graphics) have their own field tables below; they
are matched to libvirt's devices by identity (disk target, NIC MAC), never by
string comparison, so libvirt's defaults and generated addresses never count.
"""

from __future__ import annotations

import copy

from ansible_collections.kvmops.kvm.plugins.module_utils._facts import (
    disk_facts,
    graphics_facts,
    interface_facts,
    memory_kib,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import SECRET_MASK, etree, find_text

LIBOSINFO_NS = 'http://libosinfo.org/xmlns/libvirt/domain/1.0'


# ---------------------------------------------------------------- helpers
def child(parent, tag, create=True, first=False):
    """``parent/tag``, created (appended, or inserted first) when missing."""
    node = parent.find(tag)
    if node is None and create:
        node = etree.Element(tag)
        if first:
            parent.insert(0, node)
        else:
            parent.append(node)
    return node


def path_node(root, path, create=True):
    node = root
    for part in path.split('/'):
        node = child(node, part, create)
        if node is None:
            return None
    return node


def remove(node):
    if node is not None and node.getparent() is not None:
        node.getparent().remove(node)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- scalar option table
class Option(object):
    """One typed option of kvm_domain: its kind and choices, and where it lives in the domain XML."""

    def __init__(self, name, kind, read, write, live=None, compare=None, choices=None):
        self.name = name
        self.kind = kind
        self.choices = choices
        self.read = read
        self.write = write
        self.live = live
        self.compare = compare or (lambda wanted, have, ctx: wanted == have)


def _read_memory(root):
    return memory_kib(root, 'currentMemory') or memory_kib(root, 'memory')


def _write_kib(tag):
    def write(root, value):
        node = child(root, tag)
        node.text = str(value)
        node.set('unit', 'KiB')
    return write


def _read_max_vcpus(root):
    node = root.find('vcpu')
    return _int(node.text) if node is not None else None


def _read_vcpus(root):
    node = root.find('vcpu')
    if node is None:
        return None
    return _int(node.get('current', node.text))


def _write_vcpus(root, value):
    node = child(root, 'vcpu')
    node.set('placement', node.get('placement', 'static'))
    maximum = _int(node.text) or value
    if value >= maximum:
        node.text = str(value)
        node.attrib.pop('current', None)
    else:
        node.set('current', str(value))


def _write_max_vcpus(root, value):
    node = child(root, 'vcpu')
    node.set('placement', node.get('placement', 'static'))
    current = _int(node.get('current', node.text)) or value
    node.text = str(value)
    if current < value:
        node.set('current', str(current))
    else:
        node.attrib.pop('current', None)


def _attr(path, name, kind=str):
    def read(root):
        node = root.find(path) if path != '.' else root
        value = node.get(name) if node is not None else None
        return kind(value) if value is not None and kind is not str else value

    def write(root, value):
        node = path_node(root, path) if path != '.' else root
        if value in (None, ''):
            node.attrib.pop(name, None)
        else:
            node.set(name, str(value))
    return read, write


def _text(path):
    def read(root):
        node = root.find(path)
        return (node.text or '') if node is not None else None

    def write(root, value):
        if value in (None, ''):
            remove(root.find(path))
            return
        path_node(root, path).text = value
    return read, write


def _read_firmware(root):
    if root.find("os[@firmware='efi']") is not None or root.find("os/loader[@type='pflash']") is not None:
        return 'efi'
    return 'bios'


def _write_firmware(root, value):
    os_node = path_node(root, 'os')
    if value == 'efi':
        os_node.set('firmware', 'efi')
    else:
        os_node.attrib.pop('firmware', None)
        for tag in ('loader', 'nvram', 'firmware'):
            remove(os_node.find(tag))


def _read_os_variant(root):
    return find_text(root, "metadata/*[local-name()='libosinfo']/*[local-name()='os']/@id")


def _write_os_variant(root, value):
    metadata = child(root, 'metadata')
    for old in metadata.xpath("*[local-name()='libosinfo']"):
        metadata.remove(old)
    if value:
        info = etree.SubElement(metadata, '{%s}libosinfo' % LIBOSINFO_NS, nsmap={'libosinfo': LIBOSINFO_NS})
        etree.SubElement(info, '{%s}os' % LIBOSINFO_NS).set('id', value)


def _compare_machine(wanted, have, ctx):
    """``pc`` and ``q35`` are aliases libvirt expands (pc -> pc-i440fx-7.2)."""
    if wanted == have:
        return True
    return ctx.get('machine_aliases', {}).get(wanted) == have


def _compare_text(wanted, have, _ctx):
    return (wanted or '') == (have or '')


def _read_topology(name):
    def read(root):
        node = root.find('cpu/topology')
        return _int(node.get(name)) if node is not None else None
    return read


def _write_topology(name):
    def write(root, value):
        cpu = child(root, 'cpu')
        topo = child(cpu, 'topology')
        topo.set(name, str(value))
    return write


_virt_read, _virt_write = _attr('.', 'type')
_machine_read, _machine_write = _attr('os/type', 'machine')
_cpu_read, _cpu_write = _attr('cpu', 'mode')

# One line per option, in the order they are validated and written (max_vcpus before vcpus).
OPTIONS = [
    Option('virt_type', 'choice', _virt_read, _virt_write, choices=['auto', 'kvm', 'qemu']),
    Option('memory', 'memory', _read_memory, _write_kib('currentMemory'), live='balloon'),
    Option('max_memory', 'memory', lambda r: memory_kib(r, 'memory'), _write_kib('memory')),
    Option('max_vcpus', 'vcpus', _read_max_vcpus, _write_max_vcpus),
    Option('vcpus', 'vcpus', _read_vcpus, _write_vcpus, live='vcpus'),
    Option('sockets', 'vcpus', _read_topology('sockets'), _write_topology('sockets')),
    Option('cores', 'vcpus', _read_topology('cores'), _write_topology('cores')),
    Option('threads', 'vcpus', _read_topology('threads'), _write_topology('threads')),
    Option('cpu_mode', 'choice', _cpu_read, _cpu_write, choices=['host-passthrough', 'host-model', 'maximum']),
    Option('machine', 'token', _machine_read, _machine_write, compare=_compare_machine),
    Option('firmware', 'choice', _read_firmware, _write_firmware, choices=['bios', 'efi']),
    Option('kernel', 'path', *_text('os/kernel'), compare=_compare_text),
    Option('initrd', 'path', *_text('os/initrd'), compare=_compare_text),
    Option('cmdline', 'text', *_text('os/cmdline'), compare=_compare_text),
    Option('os_variant', 'osinfo', _read_os_variant, _write_os_variant, live='none'),
]
OPTIONS_BY_NAME = dict((o.name, o) for o in OPTIONS)


# ---------------------------------------------------------------- skeleton
def skeleton(name, virt_type, uuid=None):
    """A new guest: what virt-install writes before the typed options."""
    root = etree.Element('domain', type=virt_type)
    etree.SubElement(root, 'name').text = name
    if uuid:
        etree.SubElement(root, 'uuid').text = uuid
    etree.SubElement(root, 'memory', unit='KiB').text = '0'
    etree.SubElement(root, 'currentMemory', unit='KiB').text = '0'
    etree.SubElement(root, 'vcpu', placement='static').text = '1'
    os_node = etree.SubElement(root, 'os')
    etree.SubElement(os_node, 'type', arch='x86_64').text = 'hvm'
    features = etree.SubElement(root, 'features')
    etree.SubElement(features, 'acpi')
    etree.SubElement(features, 'apic')
    etree.SubElement(root, 'clock', offset='utc')
    etree.SubElement(root, 'on_poweroff').text = 'destroy'
    etree.SubElement(root, 'on_reboot').text = 'restart'
    etree.SubElement(root, 'on_crash').text = 'destroy'
    etree.SubElement(root, 'devices')
    return root


def has_serial_console(root):
    """The guest has a serial device (the console ``virsh console`` opens)."""
    return root is not None and root.find('devices/serial') is not None


def set_serial_console(root, wanted):
    """Option ``serial_console``: add a pty serial console when there is no serial device (``wanted``), or remove
    the serial devices and the consoles on them. True when something changed."""
    devices = child(root, 'devices')
    serials = devices.findall('serial')
    if wanted:
        if serials:
            return False
        serial = etree.SubElement(devices, 'serial', type='pty')
        etree.SubElement(serial, 'target', port='0')
        return True
    consoles = [c for c in devices.findall('console') if c.find('target') is None
                or c.find('target').get('type') in (None, 'serial')]
    for elem in serials + consoles:
        devices.remove(elem)
    return bool(serials or consoles)


def ensure_balloon(root):
    """A virtio balloon unless the guest has a balloon element (``memory`` changes live through it).
    True when one was added."""
    devices = child(root, 'devices')
    if devices.find('memballoon') is not None:
        return False
    etree.SubElement(devices, 'memballoon', model='virtio')
    return True


def set_default_boot(root):
    """``<boot dev='hd'/>`` unless a device carries its own boot order (libvirt forbids both)."""
    os_node = path_node(root, 'os')
    per_device = root.find('devices//boot') is not None
    boots = os_node.findall('boot')
    if per_device or os_node.find('kernel') is not None:
        for node in boots:
            os_node.remove(node)
    elif not boots:
        os_node.append(etree.Element('boot', dev='hd'))


# ---------------------------------------------------------------- disks
DISK_FIELDS = ('device', 'bus', 'source', 'pool', 'volume', 'format', 'cache', 'io', 'discard',
               'readonly', 'boot_order')


def disk_view(elem):
    """The user-facing fields of a ``<disk>`` (kvm_info's disk facts)."""
    return disk_facts(elem)


def disk_differences(spec, elem):
    """Fields the user set on ``spec`` that the disk ``elem`` does not match."""
    have = disk_view(elem)
    diffs = []
    for field in DISK_FIELDS:
        wanted = spec.get(field)
        if wanted is None:
            continue
        current = have.get(field)
        if field == 'source' and spec.get('pool'):
            continue
        if field == 'source' and (wanted or None) == (current or None):
            continue
        if wanted != current:
            diffs.append((field, current, wanted))
    return diffs


def build_disk(spec):
    """A ``<disk>`` element from a normalized disk spec."""
    if spec.get('pool'):
        elem = etree.Element('disk', type='volume', device=spec['device'])
    else:
        elem = etree.Element('disk', type='file', device=spec['device'])
    driver = etree.SubElement(elem, 'driver', name='qemu')
    if spec.get('format'):
        driver.set('type', spec['format'])
    for key in ('cache', 'io', 'discard'):
        if spec.get(key):
            driver.set(key, spec[key])
    if spec.get('pool'):
        etree.SubElement(elem, 'source', pool=spec['pool'], volume=spec['volume'])
    elif spec.get('source'):
        etree.SubElement(elem, 'source', file=spec['source'])
    etree.SubElement(elem, 'target', dev=spec['target'], bus=spec['bus'])
    if spec.get('boot_order'):
        etree.SubElement(elem, 'boot', order=str(spec['boot_order']))
    if spec.get('readonly') or spec['device'] == 'cdrom':
        etree.SubElement(elem, 'readonly')
    return elem


def update_disk(elem, spec):
    """Rewrite ``elem`` in place with what ``spec`` sets (keeps libvirt's other details)."""
    merged = dict(disk_view(elem))
    merged.update(dict((k, v) for k, v in spec.items() if v is not None))
    if spec.get('pool'):
        merged['source'] = None
    elif spec.get('source') is not None:
        merged['pool'] = merged['volume'] = None
    fresh = build_disk(merged)
    for tag in ('address', 'alias', 'serial', 'wwn', 'iotune'):
        for node in elem.findall(tag):
            fresh.append(copy.deepcopy(node))
    if spec.get('readonly') is False and spec['device'] != 'cdrom':
        remove(fresh.find('readonly'))
    return fresh


def media_only_change(diffs):
    """A cdrom whose only difference is its medium (hot-swappable)."""
    return bool(diffs) and all(field in ('source', 'format') for field, _b, _a in diffs)


# ---------------------------------------------------------------- interfaces
NIC_FIELDS = ('type', 'source', 'model', 'mac', 'link_state')


def nic_view(elem):
    view = interface_facts(elem)
    if elem.get('type') == 'direct':
        source = elem.find('source')
        view['mode'] = source.get('mode') if source is not None else None
    return view


def nic_differences(spec, elem):
    have = nic_view(elem)
    return [(f, have.get(f), spec[f]) for f in NIC_FIELDS + ('mode',)
            if spec.get(f) is not None and spec[f] != have.get(f)]


def build_nic(spec):
    elem = etree.Element('interface', type=spec['type'])
    if spec.get('mac'):
        etree.SubElement(elem, 'mac', address=spec['mac'])
    if spec['type'] == 'network':
        etree.SubElement(elem, 'source', network=spec['source'])
    elif spec['type'] == 'bridge':
        etree.SubElement(elem, 'source', bridge=spec['source'])
    else:
        etree.SubElement(elem, 'source', dev=spec['source'], mode=spec.get('mode') or 'bridge')
    etree.SubElement(elem, 'model', type=spec['model'])
    if spec.get('link_state'):
        etree.SubElement(elem, 'link', state=spec['link_state'])
    return elem


def update_nic(elem, spec):
    merged = dict(nic_view(elem))
    merged.update(dict((k, v) for k, v in spec.items() if v is not None))
    fresh = build_nic(merged)
    for tag in ('address', 'alias', 'target', 'driver', 'rom', 'mtu', 'boot'):
        for node in elem.findall(tag):
            fresh.append(copy.deepcopy(node))
    return fresh


def link_only_change(diffs):
    return bool(diffs) and all(field == 'link_state' for field, _b, _a in diffs)


# ---------------------------------------------------------------- graphics
def graphics_view(elem):
    if elem is None:
        return dict(type='none')
    view = graphics_facts(elem)
    view['password'] = elem.get('passwd')
    return view


def graphics_differences(spec, elem):
    have = graphics_view(elem)
    if spec['type'] == 'none':
        return [] if have['type'] == 'none' else [('type', have['type'], 'none')]
    diffs = []
    for field in ('type', 'listen', 'keymap', 'password'):
        if spec.get(field) is not None and spec[field] != have.get(field):
            shown = (lambda v: None if v is None else SECRET_MASK) if field == 'password' else (lambda v: v)
            diffs.append((field, shown(have.get(field)), shown(spec[field])))
    if spec.get('port') is not None:
        if have.get('autoport') or have.get('port') != spec['port']:
            diffs.append(('port', 'auto' if have.get('autoport') else have.get('port'), spec['port']))
    elif not have.get('autoport'):
        diffs.append(('port', have.get('port'), 'auto'))
    return diffs


def build_graphics(spec):
    elem = etree.Element('graphics', type=spec['type'])
    if spec.get('port') is not None:
        elem.set('port', str(spec['port']))
        elem.set('autoport', 'no')
    else:
        elem.set('port', '-1')
        elem.set('autoport', 'yes')
    if spec.get('keymap'):
        elem.set('keymap', spec['keymap'])
    if spec.get('password'):
        elem.set('passwd', spec['password'])
    elem.set('listen', spec['listen'])
    etree.SubElement(elem, 'listen', type='address', address=spec['listen'])
    return elem


AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def has_agent_channel(root):
    return bool(root.xpath("devices/channel[target/@name='%s']" % AGENT_CHANNEL))


def set_agent_channel(root, wanted):
    """Add or remove the QEMU guest agent's virtio-serial channel; True when something changed."""
    present = has_agent_channel(root)
    if wanted and not present:
        devices = child(root, 'devices')
        channel = etree.SubElement(devices, 'channel', type='unix')
        etree.SubElement(channel, 'target', type='virtio', name=AGENT_CHANNEL)
        return True
    if not wanted and present:
        for node in root.xpath("devices/channel[target/@name='%s']" % AGENT_CHANNEL):
            remove(node)
        return True
    return False
