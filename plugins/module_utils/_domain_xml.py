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
* ``'definition'`` — at the next boot, when this run changes the definition (the live XML shows what libvirt
  resolved, not what was asked: firmware auto-selection);
* a function  — the option's own live plan (hot-plug, API calls such as vCPU pinning), see ``HARDWARE_OPTIONS``;
* ``None``     — only at the next boot: listed in ``pending_restart``.

Devices (disks, interfaces, graphics) have their own field tables below; they
are matched to libvirt's devices by identity (disk target, NIC MAC), never by
string comparison, so libvirt's defaults and generated addresses never count.
"""

from __future__ import annotations

import copy
import os
import re
import shutil

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import (
    boot_facts,
    chardev_facts,
    cpu_facts,
    cputune_facts,
    disk_facts,
    enrolled_keys_of,
    filesystem_facts,
    graphics_facts,
    interface_facts,
    memory_backing_facts,
    IOTUNE_KEYS,
    memory_kib,
    numatune_facts,
    rng_facts,
    secure_boot_of,
    sound_facts,
    tpm_facts,
    video_facts,
    watchdog_facts,
)
from ansible_collections.kvmops.kvm.plugins.module_utils import _hostdev
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

    def __init__(self, name, kind, read, write, live=None, compare=None, choices=None, spec=None, check=None,
                 preflight=None, inspect=None):
        self.name = name
        self.kind = kind
        self.choices = choices
        self.read = read
        self.write = write
        self.live = live
        self.compare = compare or (lambda wanted, have, ctx: wanted == have)
        self.spec = spec             # the argument-spec entry of a structured option (kind 'struct')
        self.check = check           # its validation: (option name, value) -> normalized value; pure
        self.preflight = preflight   # read-only host checks before any write: (value, local) -> None or KvmError
        self.inspect = inspect       # read-only checks through libvirt before any write: (client, guest name, value)


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
        if _explicit_loader(root):   # an explicit pflash loader is EFI already (no auto-selection beside it)
            return
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


# ---------------------------------------------------------------- hardware options (issue 16)
# Structured options: each line carries its argument-spec entry (``spec``), its validation (``check``), its
# read (the view kvm_info's facts show), its write, its comparison by meaning and its read-only host checks.
# A value is the normalized request: None in a field means "not given" (never compared, never written).
STATE = dict(type='str', choices=['present', 'absent'], default='present')
TAG_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]{0,35}')
CPUSET_RE = re.compile(r'\^?[0-9]{1,4}(-[0-9]{1,4})?(,\^?[0-9]{1,4}(-[0-9]{1,4})?)*')
NODESET_RE = CPUSET_RE
MAX_CPU = 4096


def _fields_match(wanted, have, skip=('state',)):
    """Every field the user gave (not None) equals the view's."""
    return all(have.get(k) == v for k, v in wanted.items() if v is not None and k not in skip)


def _single_device_compare(wanted, have, _ctx):
    if wanted['state'] == 'absent':
        return have is None
    return have is not None and _fields_match(wanted, have)


def _check_fields(option, raw, allowed):
    value = dict(raw)
    for key in list(value):
        if key not in allowed:
            value.pop(key)
    return value


def cpuset(option, value):
    """A cpuset (``0-3,^2``) as the sorted tuple of CPUs it names; refused when malformed or empty."""
    if not isinstance(value, str) or not CPUSET_RE.fullmatch(value.replace(' ', '')):
        valid.refuse(option, "must be a cpuset such as '0-3,^2' or '1,5'", value)
    cpus, excluded = set(), set()
    for part in value.replace(' ', '').split(','):
        target = excluded if part.startswith('^') else cpus
        first, _sep, last = part.lstrip('^').partition('-')
        first, last = int(first), int(last or first)
        if last < first or last >= MAX_CPU:
            valid.refuse(option, 'has an invalid range %s' % part, value)
        target.update(range(first, last + 1))
    result = tuple(sorted(cpus - excluded))
    if not result:
        valid.refuse(option, 'names no CPU', value)
    return result


def _cpuset_or_none(text):
    try:
        return cpuset('cpuset', text) if text else None
    except KvmError:   # untrusted text from the hypervisor: unreadable is "something else"
        return ('unreadable', text)


def _devices(root):
    return child(root, 'devices')


def _host_file(option, path, local, what='file'):
    if local and path and not os.path.exists(path):
        raise KvmError('%s: %s %s does not exist on this host' % (option, what, path))


# -- tpm
TPM_SPEC = dict(type='dict', options=dict(
    state=STATE,
    model=dict(type='str', choices=['tpm-crb', 'tpm-tis']),
    backend=dict(type='str', choices=['emulator', 'passthrough']),
    version=dict(type='str', choices=['2.0', '1.2']),
    persistent_state=dict(type='bool'),
    device=dict(type='path'),
))


def _check_tpm(option, raw):
    tpm = _check_fields(option, raw, TPM_SPEC['options'])
    if tpm['state'] == 'absent':
        return dict(state='absent')
    if tpm.get('device'):
        tpm['device'] = valid.abs_path(option + '.device', tpm['device'])
        if tpm.get('backend') in (None, 'passthrough'):
            tpm['backend'] = 'passthrough'
        else:
            valid.refuse(option + '.device', 'is for backend passthrough only')
    if tpm.get('backend') == 'passthrough':
        if not tpm.get('device'):
            valid.refuse(option + '.device', 'required with backend passthrough (for example /dev/tpm0)')
        for key in ('version', 'persistent_state'):
            if tpm.get(key) is not None:
                valid.refuse('%s.%s' % (option, key), 'is for backend emulator only')
    return tpm


def _write_tpm(root, tpm):
    devices = _devices(root)
    existing = devices.findall('tpm')
    if tpm['state'] == 'absent':
        for elem in existing:
            devices.remove(elem)
        return
    elem = existing[0] if existing else None
    if elem is None:
        elem = etree.SubElement(devices, 'tpm')
        elem.set('model', tpm.get('model') or 'tpm-crb')
    elif tpm.get('model'):
        elem.set('model', tpm['model'])
    backend = elem.find('backend')
    kind = tpm.get('backend') or (backend.get('type') if backend is not None else 'emulator')
    if backend is None or backend.get('type') != kind:
        remove(backend)
        backend = etree.SubElement(elem, 'backend', type=kind)
        if kind == 'emulator':
            backend.set('version', tpm.get('version') or '2.0')
    if kind == 'emulator':
        if tpm.get('version'):
            backend.set('version', tpm['version'])
        if tpm.get('persistent_state') is not None:
            backend.set('persistent_state', 'yes' if tpm['persistent_state'] else 'no')
    else:
        child(backend, 'device').set('path', tpm['device'])


def _preflight_tpm(tpm, local):
    if not local or tpm['state'] == 'absent':
        return
    if tpm.get('backend') == 'passthrough':
        _host_file('tpm.device', tpm['device'], local, 'device')
    elif tpm.get('backend') in (None, 'emulator') and not shutil.which('swtpm', path=os.environ.get('PATH', '') + ':/usr/bin:/usr/local/bin'):
        raise KvmError('tpm: the emulator backend needs swtpm on this host (Debian/Ubuntu packages swtpm and swtpm-tools)')


# -- firmware: Secure Boot through libvirt's auto-selection, or an explicit loader
def _explicit_loader(root):
    """The guest names its loader itself (a path, no auto-selection)."""
    loader = root.find('os/loader')
    return loader is not None and bool((loader.text or '').strip()) and root.find("os[@firmware]") is None


def _feature(root, name, value):
    os_node = path_node(root, 'os')
    os_node.set('firmware', 'efi')
    firmware = child(os_node, 'firmware')
    node = firmware.find("feature[@name='%s']" % name)
    if node is None:
        node = etree.SubElement(firmware, 'feature', name=name)
    node.set('enabled', 'yes' if value else 'no')


def _write_secure_boot(root, value):
    if _explicit_loader(root):
        root.find('os/loader').set('secure', 'yes' if value else 'no')
        if value:
            child(child(root, 'features'), 'smm').set('state', 'on')
        return
    _feature(root, 'secure-boot', value)


def _write_enrolled_keys(root, value):
    _feature(root, 'enrolled-keys', value)


def _read_loader(root):
    return (find_text(root, 'os/loader') or '').strip() or None


def _write_loader(root, value):
    os_node = path_node(root, 'os')
    secure = secure_boot_of(root)
    if not value:
        if _explicit_loader(root):
            remove(os_node.find('loader'))
            nvram = os_node.find('nvram')
            if nvram is not None:
                nvram.attrib.pop('template', None)
            os_node.set('firmware', 'efi')
            if secure is not None:
                _feature(root, 'secure-boot', secure)
        return
    os_node.attrib.pop('firmware', None)
    remove(os_node.find('firmware'))
    loader = child(os_node, 'loader')
    loader.text = value
    loader.set('readonly', 'yes')
    loader.set('type', 'pflash')
    if secure:
        loader.set('secure', 'yes')
        child(child(root, 'features'), 'smm').set('state', 'on')


def _write_nvram_template(root, value):
    os_node = path_node(root, 'os')
    nvram = os_node.find('nvram')
    if not value:
        if nvram is not None:
            nvram.attrib.pop('template', None)
            if not (nvram.text or '').strip() and not nvram.attrib:
                remove(nvram)
        return
    child(os_node, 'nvram').set('template', value)


def _path_preflight(option):
    def preflight(value, local):
        _host_file(option, value, local)
    return preflight


def _text_compare(wanted, have, _ctx):
    return (wanted or None) == (have or None)


# -- filesystems (virtiofs, 9p)
FILESYSTEM_SPEC = dict(type='list', elements='dict', options=dict(
    source=dict(type='path', required=True),
    target=dict(type='str', required=True),
    driver=dict(type='str', choices=['virtiofs', '9p'], default='virtiofs'),
    readonly=dict(type='bool'),
    accessmode=dict(type='str', choices=['passthrough', 'mapped', 'squash']),
))


def _check_filesystems(option, raw):
    result, seen = [], set()
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        fs = _check_fields(label, item, FILESYSTEM_SPEC['options'])
        fs['source'] = valid.abs_path(label + '.source', fs['source'])
        if not isinstance(fs['target'], str) or not TAG_RE.fullmatch(fs['target']):
            valid.refuse(label + '.target', 'must be a mount tag of at most 36 letters, digits and _ . : -', fs['target'])
        if fs['target'] in seen:
            valid.refuse(label + '.target', 'duplicate mount tag', fs['target'])
        seen.add(fs['target'])
        if fs['driver'] == 'virtiofs' and fs.get('accessmode') not in (None, 'passthrough'):
            valid.refuse(label + '.accessmode', 'virtiofs supports passthrough only', fs['accessmode'])
        result.append(fs)
    return result


def _read_filesystems(root):
    return [filesystem_facts(f) for f in root.findall('devices/filesystem')]


def _compare_filesystems(wanted, have, _ctx):
    by_tag = dict((f['target'], f) for f in have)
    return len(wanted) == len(have) and all(
        f['target'] in by_tag and _fields_match(f, by_tag[f['target']]) for f in wanted)


def build_filesystem(fs):
    elem = etree.Element('filesystem', type='mount', accessmode=fs.get('accessmode') or 'passthrough')
    if fs['driver'] == 'virtiofs':
        etree.SubElement(elem, 'driver', type='virtiofs')
    else:
        etree.SubElement(elem, 'driver', type='path')
    etree.SubElement(elem, 'source', dir=fs['source'])
    etree.SubElement(elem, 'target', dir=fs['target'])
    if fs.get('readonly'):
        etree.SubElement(elem, 'readonly')
    return elem


def _write_filesystems(root, wanted):
    devices = _devices(root)
    have = dict((filesystem_facts(f)['target'], f) for f in devices.findall('filesystem'))
    for fs in wanted:
        old = have.pop(fs['target'], None)
        if old is not None and _fields_match(fs, filesystem_facts(old)):
            continue
        if old is not None:   # what the task does not give stays as it is
            fs = dict(filesystem_facts(old), **dict((k, v) for k, v in fs.items() if v is not None))
        fresh = build_filesystem(fs)
        if old is not None:
            for tag in ('address', 'alias', 'binary'):
                for node in old.findall(tag):
                    fresh.append(copy.deepcopy(node))
            old.getparent().replace(old, fresh)
        else:
            same = devices.findall('filesystem')
            if same:
                same[-1].addnext(fresh)
            else:
                devices.append(fresh)
    for elem in have.values():
        devices.remove(elem)


def _preflight_filesystems(wanted, local):
    for index, fs in enumerate(wanted):
        if local and not os.path.isdir(fs['source']):
            raise KvmError('filesystems[%d].source: directory %s does not exist on this host' % (index, fs['source']))
        # A symlink (planted where the shared directory is expected) would hand the guest its target
        # (/, /etc): the directory is shared under its real path only.
        real = os.path.realpath(fs['source']) if local else None
        if local and real != os.path.normpath(fs['source']):
            raise KvmError('filesystems[%d].source: %s goes through a symlink (to %s); give the real directory'
                           % (index, fs['source'], real))


def shared_memory(root):
    """Guest RAM is shared (virtiofs needs it): memoryBacking access shared, or every NUMA cell shared."""
    if root.find("memoryBacking/access[@mode='shared']") is not None:
        return True
    cells = root.findall('cpu/numa/cell')
    return bool(cells) and all(c.get('memAccess') == 'shared' for c in cells)


def ensure_shared_memory(root):
    """Memory backing virtiofs needs (memfd, shared access) unless the guest has it; True when added."""
    if root.find("devices/filesystem/driver[@type='virtiofs']") is None or shared_memory(root):
        return False
    backing = child(root, 'memoryBacking')
    if backing.find('source') is None and backing.find('hugepages') is None:
        etree.SubElement(backing, 'source', type='memfd')
    child(backing, 'access').set('mode', 'shared')
    return True


# -- memory_backing
MEMORY_BACKING_SPEC = dict(type='dict', options=dict(
    hugepages=dict(type='bool'),
    pages=dict(type='list', elements='dict', options=dict(size=dict(type='str', required=True),
                                                          nodeset=dict(type='str'))),
    source=dict(type='str', choices=['anonymous', 'file', 'memfd']),
    access=dict(type='str', choices=['shared', 'private']),
    locked=dict(type='bool'),
    nosharepages=dict(type='bool'),
))


def _check_memory_backing(option, raw):
    from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_bytes
    mb = _check_fields(option, raw, MEMORY_BACKING_SPEC['options'])
    if mb.get('pages') is not None:
        if mb.get('hugepages') is False:
            valid.refuse(option + '.pages', 'needs hugepages (not hugepages: false)')
        mb['hugepages'] = True
        pages = []
        for index, page in enumerate(mb['pages']):
            label = '%s.pages[%d]' % (option, index)
            try:
                size = to_bytes(page['size'], 'KiB')
            except KvmError as exc:
                valid.refuse(label + '.size', exc.msg)
            if size < 4096 or size % 4096:
                valid.refuse(label + '.size', 'must be a page size such as 2MiB or 1GiB', page['size'])
            nodeset = page.get('nodeset')
            if nodeset is not None:
                nodeset = ','.join(str(n) for n in cpuset(label + '.nodeset', nodeset))
            pages.append(dict(size_kib=size // 1024, nodeset=nodeset))
        mb['pages'] = sorted(pages, key=lambda p: (p['size_kib'], p['nodeset'] or ''))
    return mb


def _read_memory_backing(root):
    view = memory_backing_facts(root)
    if view is None:
        return dict(hugepages=False, pages=[], source=None, access=None, locked=False, nosharepages=False)
    pages = [dict(size_kib=p['size_kib'],
                  nodeset=','.join(str(n) for n in _cpuset_or_none(p['nodeset'])) if p['nodeset'] else None)
             for p in view['pages']]
    view['pages'] = sorted(pages, key=lambda p: (p['size_kib'] or 0, p['nodeset'] or ''))
    return view


def _compare_memory_backing(wanted, have, _ctx):
    return _fields_match(wanted, have, skip=())


def _flag(parent, tag, value):
    if value is None:
        return
    if value:
        child(parent, tag)
    else:
        remove(parent.find(tag))


def _write_memory_backing(root, mb):
    backing = child(root, 'memoryBacking')
    if mb.get('hugepages') is False:
        remove(backing.find('hugepages'))
    elif mb.get('hugepages'):
        huge = child(backing, 'hugepages')
        if mb.get('pages') is not None:
            for node in huge.findall('page'):
                huge.remove(node)
            for page in mb['pages']:
                node = etree.SubElement(huge, 'page', size=str(page['size_kib']), unit='KiB')
                if page['nodeset']:
                    node.set('nodeset', page['nodeset'])
    _flag(backing, 'nosharepages', mb.get('nosharepages'))
    _flag(backing, 'locked', mb.get('locked'))
    if mb.get('source'):
        child(backing, 'source').set('type', mb['source'])
    if mb.get('access'):
        child(backing, 'access').set('mode', mb['access'])
    if len(backing) == 0:
        remove(backing)


def _preflight_memory_backing(mb, local):
    for page in mb.get('pages') or []:
        path = '/sys/kernel/mm/hugepages/hugepages-%dkB' % page['size_kib']
        if local and not os.path.isdir(path):
            raise KvmError('memory_backing.pages: this host has no %d KiB huge pages (%s is missing)' % (page['size_kib'], path))


# -- rng
RNG_SPEC = dict(type='dict', options=dict(
    state=STATE,
    model=dict(type='str', choices=['virtio', 'virtio-transitional', 'virtio-non-transitional']),
    backend=dict(type='str', choices=['random', 'builtin']),
    source=dict(type='path'),
))


def _check_rng(option, raw):
    rng = _check_fields(option, raw, RNG_SPEC['options'])
    if rng.get('source'):
        rng['source'] = valid.abs_path(option + '.source', rng['source'])
        if rng.get('backend') == 'builtin':
            valid.refuse(option + '.source', 'is for backend random only')
        rng['backend'] = 'random'
    return rng


def _write_rng(root, rng):
    devices = _devices(root)
    existing = devices.findall('rng')
    if rng['state'] == 'absent':
        for elem in existing:
            devices.remove(elem)
        return
    elem = existing[0] if existing else etree.SubElement(devices, 'rng', model='virtio')
    if rng.get('model'):
        elem.set('model', rng['model'])
    backend = elem.find('backend')
    kind = rng.get('backend') or (backend.get('model') if backend is not None else 'random')
    if backend is None or backend.get('model') != kind:
        remove(backend)
        backend = etree.Element('backend', model=kind)
        elem.insert(0, backend)
        if kind == 'random':
            backend.text = '/dev/urandom'
    if kind == 'random' and rng.get('source'):
        backend.text = rng['source']


# -- watchdog
WATCHDOG_SPEC = dict(type='dict', options=dict(
    state=STATE,
    model=dict(type='str', choices=['i6300esb', 'ib700', 'diag288']),
    action=dict(type='str', choices=['reset', 'shutdown', 'poweroff', 'pause', 'none', 'dump', 'inject-nmi']),
))


def _write_watchdog(root, dog):
    devices = _devices(root)
    existing = devices.findall('watchdog')
    if dog['state'] == 'absent':
        for elem in existing:
            devices.remove(elem)
        return
    elem = existing[0] if existing else etree.SubElement(devices, 'watchdog', model='i6300esb')
    if dog.get('model') and dog['model'] != elem.get('model'):
        elem.set('model', dog['model'])
        remove(elem.find('address'))   # another model sits on another bus
    elem.set('action', dog.get('action') or elem.get('action') or 'reset')


# -- boot
BOOT_SPEC = dict(type='dict', options=dict(
    order=dict(type='list', elements='str', choices=['hd', 'cdrom', 'network', 'fd']),
    menu=dict(type='bool'),
    menu_timeout=dict(type='int'),
))


def _check_boot(option, raw):
    boot = _check_fields(option, raw, BOOT_SPEC['options'])
    if boot.get('order') is not None:
        if not boot['order']:
            valid.refuse(option + '.order', 'must name at least one device')
        if len(set(boot['order'])) != len(boot['order']):
            valid.refuse(option + '.order', 'names a device twice', boot['order'])
    if boot.get('menu_timeout') is not None:
        valid.count(option + '.menu_timeout', boot['menu_timeout'], minimum=0, maximum=65535)
    return boot


def _compare_boot(wanted, have, _ctx):
    have = dict(have, menu=bool(have['menu']))
    return _fields_match(wanted, have, skip=())


def _write_boot(root, boot):
    os_node = path_node(root, 'os')
    if boot.get('order') is not None:
        for node in os_node.findall('boot'):
            os_node.remove(node)
        anchor = os_node.find('type')
        for dev in reversed(boot['order']):
            node = etree.Element('boot', dev=dev)
            if anchor is not None:
                anchor.addnext(node)
            else:
                os_node.append(node)
    if boot.get('menu') is not None or boot.get('menu_timeout') is not None:
        menu = child(os_node, 'bootmenu')
        enabled = boot.get('menu')
        if enabled is None:
            enabled = menu.get('enable') == 'yes' or boot.get('menu_timeout') is not None
        menu.set('enable', 'yes' if enabled else 'no')
        if boot.get('menu_timeout') is not None and enabled:
            menu.set('timeout', str(boot['menu_timeout']))
        elif not enabled:
            menu.attrib.pop('timeout', None)


# -- iothreads
def _read_iothreads(root):
    return _int(find_text(root, 'iothreads')) or 0


def _write_iothreads(root, value):
    if not value:
        remove(root.find('iothreads'))
        remove(root.find('iothreadids'))
        return
    node = root.find('iothreads')
    if node is None:
        node = etree.Element('iothreads')
        vcpu = root.find('vcpu')
        if vcpu is not None:
            vcpu.addnext(node)
        else:
            root.append(node)
    node.text = str(value)
    ids = root.find('iothreadids')
    if ids is not None:   # explicit ids must agree with the count: keep the first ones
        for extra in ids.findall('iothread')[value:]:
            ids.remove(extra)


# -- cputune
CPUTUNE_SPEC = dict(type='dict', options=dict(
    shares=dict(type='int'),
    period=dict(type='int'),
    quota=dict(type='int'),
    vcpupin=dict(type='list', elements='dict', options=dict(vcpu=dict(type='int', required=True),
                                                            cpuset=dict(type='str', required=True))),
    emulatorpin=dict(type='str'),
    iothreadpin=dict(type='list', elements='dict', options=dict(iothread=dict(type='int', required=True),
                                                                cpuset=dict(type='str', required=True))),
))


def _check_cputune(option, raw):
    tune = _check_fields(option, raw, CPUTUNE_SPEC['options'])
    if tune.get('shares') is not None:
        valid.count(option + '.shares', tune['shares'], minimum=2, maximum=262144)
    if tune.get('period') is not None:
        valid.count(option + '.period', tune['period'], minimum=1000, maximum=1000000)
    if tune.get('quota') is not None and tune['quota'] != -1:
        valid.count(option + '.quota', tune['quota'], minimum=1000, maximum=17592186044415)
    if tune.get('vcpupin') is not None:
        pins, seen = [], set()
        for index, pin in enumerate(tune['vcpupin']):
            label = '%s.vcpupin[%d]' % (option, index)
            valid.count(label + '.vcpu', pin['vcpu'], minimum=0, maximum=valid.MAX_VCPUS - 1)
            if pin['vcpu'] in seen:
                valid.refuse(label + '.vcpu', 'vCPU pinned twice', pin['vcpu'])
            seen.add(pin['vcpu'])
            pins.append(dict(vcpu=pin['vcpu'], cpuset=cpuset(label + '.cpuset', pin['cpuset'])))
        tune['vcpupin'] = sorted(pins, key=lambda p: p['vcpu'])
    if tune.get('iothreadpin') is not None:
        pins, seen = [], set()
        for index, pin in enumerate(tune['iothreadpin']):
            label = '%s.iothreadpin[%d]' % (option, index)
            valid.count(label + '.iothread', pin['iothread'], minimum=1, maximum=valid.MAX_VCPUS)
            if pin['iothread'] in seen:
                valid.refuse(label + '.iothread', 'I/O thread pinned twice', pin['iothread'])
            seen.add(pin['iothread'])
            pins.append(dict(iothread=pin['iothread'], cpuset=cpuset(label + '.cpuset', pin['cpuset'])))
        tune['iothreadpin'] = sorted(pins, key=lambda p: p['iothread'])
    if tune.get('emulatorpin'):
        tune['emulatorpin'] = cpuset(option + '.emulatorpin', tune['emulatorpin'])
    elif tune.get('emulatorpin') == '':
        tune['emulatorpin'] = ()   # removes the pin
    return tune


def _read_cputune(root):
    view = cputune_facts(root) or dict(shares=None, period=None, quota=None, vcpupin=[], emulatorpin=None, iothreadpin=[])
    view['vcpupin'] = sorted((dict(vcpu=p['vcpu'], cpuset=_cpuset_or_none(p['cpuset'])) for p in view['vcpupin']),
                             key=lambda p: p['vcpu'] if p['vcpu'] is not None else -1)
    view['iothreadpin'] = sorted((dict(iothread=p['iothread'], cpuset=_cpuset_or_none(p['cpuset']))
                                  for p in view['iothreadpin']), key=lambda p: p['iothread'] if p['iothread'] is not None else -1)
    view['emulatorpin'] = _cpuset_or_none(view['emulatorpin']) or ()
    return view


def _compare_cputune(wanted, have, _ctx):
    return _fields_match(wanted, have, skip=())


def cpuset_text(cpus):
    return ','.join(str(c) for c in cpus)


def _write_cputune(root, tune):
    node = child(root, 'cputune')
    if tune.get('vcpupin') is not None:
        for old in node.findall('vcpupin'):
            node.remove(old)
        for pin in reversed(tune['vcpupin']):
            node.insert(0, etree.Element('vcpupin', vcpu=str(pin['vcpu']), cpuset=cpuset_text(pin['cpuset'])))
    if tune.get('emulatorpin') is not None:
        remove(node.find('emulatorpin'))
        if tune['emulatorpin']:
            etree.SubElement(node, 'emulatorpin', cpuset=cpuset_text(tune['emulatorpin']))
    if tune.get('iothreadpin') is not None:
        for old in node.findall('iothreadpin'):
            node.remove(old)
        for pin in tune['iothreadpin']:
            etree.SubElement(node, 'iothreadpin', iothread=str(pin['iothread']), cpuset=cpuset_text(pin['cpuset']))
    for key in ('shares', 'period', 'quota'):
        if tune.get(key) is not None:
            child(node, key).text = str(tune[key])
    if len(node) == 0:
        remove(node)


def _live_cputune(tune, live, _wanted):
    """The live calls for a running guest (virsh vcpupin / emulatorpin / schedinfo --live)."""
    have = _read_cputune(live)
    calls = []
    if tune.get('vcpupin') is not None and tune['vcpupin'] != have['vcpupin']:
        wanted = dict((p['vcpu'], p['cpuset']) for p in tune['vcpupin'])
        for vcpu in sorted(set(wanted) | set(p['vcpu'] for p in have['vcpupin'] if p['vcpu'] is not None)):
            calls.append(('pinVcpuFlags', vcpu, wanted.get(vcpu)))   # None: back to every host CPU
    if tune.get('emulatorpin') is not None and tune['emulatorpin'] != have['emulatorpin']:
        calls.append(('pinEmulator', None, tune['emulatorpin'] or None))
    if tune.get('iothreadpin') is not None and tune['iothreadpin'] != have['iothreadpin']:
        wanted = dict((p['iothread'], p['cpuset']) for p in tune['iothreadpin'])
        for iothread in sorted(set(wanted) | set(p['iothread'] for p in have['iothreadpin'] if p['iothread'] is not None)):
            calls.append(('pinIOThread', iothread, wanted.get(iothread)))
    params = dict((libvirt_name, tune[key]) for key, libvirt_name in
                  (('shares', 'cpu_shares'), ('period', 'vcpu_period'), ('quota', 'vcpu_quota'))
                  if tune.get(key) is not None and tune[key] != have[key])
    if params:
        calls.append(('setSchedulerParametersFlags', None, params))
    return calls, False


def _attach_action(option, elem, view):
    return dict(kind='attach', option=option, xml=copy.deepcopy(elem), before=None, after=view)


def _live_single(tag, view):
    """A device option on a running guest: a new device is hot-plugged (rng, watchdog); a change or a removal
    waits for the next boot (a guest without an OS never releases a device, and libvirt cannot update them live)."""
    def live(value, live_root, wanted):
        elem = wanted.find('devices/' + tag)
        if value['state'] == 'present' and live_root.find('devices/' + tag) is None and elem is not None:
            return [_attach_action(tag, elem, view(wanted))], False
        return [], True
    return live


def _live_filesystems(value, live_root, wanted):
    """New filesystems are hot-plugged (virtiofs, when the running guest's memory is shared already); a changed,
    removed or 9p filesystem waits for the next boot (QEMU cannot hot-plug virtio-9p)."""
    have = dict((f['target'], f) for f in _read_filesystems(live_root))
    actions, restart = [], False
    for index, elem in enumerate(wanted.findall('devices/filesystem')):
        view = filesystem_facts(elem)
        if view['target'] in have:
            restart = restart or not _fields_match(view, have.pop(view['target']))
        elif view['driver'] == 'virtiofs' and shared_memory(live_root):
            actions.append(_attach_action('filesystems[%s]' % view['target'], elem, view))
        else:
            restart = True
    return actions, restart or bool(have)


def _live_iothreads(value, live_root, _wanted):
    """More I/O threads are added live (virsh iothreadadd); fewer wait for the next boot (disks may use them)."""
    ids = [_int(n.get('id')) for n in live_root.findall('iothreadids/iothread')]
    have = _read_iothreads(live_root)
    if value < have:
        return [], True
    free = (i for i in range(1, 100000) if i not in ids)
    return [('addIOThread', next(free), None) for _n in range(value - have)], False


# -- cpu model, features, cache
FEATURE_RE = re.compile(r'[a-z0-9][a-z0-9_.-]{0,63}')
CPU_FEATURES_SPEC = dict(type='list', elements='dict', options=dict(
    name=dict(type='str', required=True),
    policy=dict(type='str', choices=['require', 'disable', 'force', 'optional', 'forbid'], default='require'),
))
CPU_CACHE_SPEC = dict(type='dict', options=dict(
    mode=dict(type='str', choices=['passthrough', 'emulate', 'disable'], required=True),
    level=dict(type='int'),
))


def _write_cpu_model(root, value):
    cpu = child(root, 'cpu')
    if not value:
        remove(cpu.find('model'))
        return
    cpu.set('mode', 'custom')
    cpu.set('match', cpu.get('match', 'exact'))
    model = child(cpu, 'model', first=True)
    model.text = value
    model.set('fallback', model.get('fallback', 'allow'))


def _check_cpu_features(option, raw):
    features, seen = [], set()
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        if not isinstance(item.get('name'), str) or not FEATURE_RE.fullmatch(item['name']):
            valid.refuse(label + '.name', 'must be a CPU feature name such as vmx or pcid', item.get('name'))
        if item['name'] in seen:
            valid.refuse(label + '.name', 'feature given twice', item['name'])
        seen.add(item['name'])
        features.append(dict(name=item['name'], policy=item.get('policy') or 'require'))
    return features


def _read_cpu_features(root):
    return cpu_facts(root)['features']


def _compare_cpu_features(wanted, have, _ctx):
    have = dict((f['name'], f['policy']) for f in have)
    return all(have.get(f['name']) == f['policy'] for f in wanted)


def _write_cpu_features(root, wanted):
    cpu = child(root, 'cpu')
    for feature in wanted:
        node = cpu.find("feature[@name='%s']" % feature['name'])
        if node is None:
            node = etree.SubElement(cpu, 'feature', name=feature['name'])
        node.set('policy', feature['policy'])


def _check_cpu_cache(option, raw):
    cache = _check_fields(option, raw, CPU_CACHE_SPEC['options'])
    if cache.get('level') is not None:
        valid.count(option + '.level', cache['level'], minimum=1, maximum=3)
        if cache['mode'] != 'emulate':
            valid.refuse(option + '.level', 'is for mode emulate')
    return cache


def _write_cpu_cache(root, cache):
    cpu = child(root, 'cpu')
    node = child(cpu, 'cache')
    node.attrib.clear()
    if cache.get('level') is not None:
        node.set('level', str(cache['level']))
    node.set('mode', cache['mode'])


# -- input devices
INPUTS_SPEC = dict(type='list', elements='dict', options=dict(
    type=dict(type='str', choices=['tablet', 'mouse', 'keyboard'], required=True),
    bus=dict(type='str', choices=['usb', 'virtio', 'ps2']),
    state=STATE,
))


def _check_inputs(option, raw):
    result, seen = [], set()
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        bus = item.get('bus') or ('usb' if item['type'] == 'tablet' else 'ps2')
        if item['type'] == 'tablet' and bus == 'ps2':
            valid.refuse(label + '.bus', 'a tablet is on usb or virtio, not ps2')
        if (item['type'], bus) in seen:
            valid.refuse(label, 'the %s on %s is given twice' % (item['type'], bus))
        seen.add((item['type'], bus))
        result.append(dict(type=item['type'], bus=bus, state=item.get('state') or 'present'))
    return result


def _read_inputs(root):
    return [dict(type=i.get('type'), bus=i.get('bus')) for i in root.findall('devices/input')]


def _has_input(have, item):
    return any(i['type'] == item['type'] and i['bus'] == item['bus'] for i in have)


def _compare_inputs(wanted, have, _ctx):
    return all(_has_input(have, item) == (item['state'] == 'present') for item in wanted)


def _write_inputs(root, wanted):
    devices = _devices(root)
    for item in wanted:
        found = [i for i in devices.findall('input') if i.get('type') == item['type'] and i.get('bus') == item['bus']]
        if item['state'] == 'absent':
            for elem in found:
                devices.remove(elem)
        elif not found:
            elem = etree.Element('input', type=item['type'], bus=item['bus'])
            same = devices.findall('input')
            if same:
                same[-1].addnext(elem)
            else:
                devices.append(elem)


def _live_inputs(wanted, live_root, wanted_root):
    """A new usb or virtio input device is hot-plugged; a removal (or a ps2 device) waits for the next boot."""
    have = _read_inputs(live_root)
    actions, restart = [], False
    for item in wanted:
        if _has_input(have, item) == (item['state'] == 'present'):
            continue
        if item['state'] == 'present' and item['bus'] != 'ps2':
            elem = etree.Element('input', type=item['type'], bus=item['bus'])
            actions.append(_attach_action('inputs[%s/%s]' % (item['type'], item['bus']), elem, dict(type=item['type'], bus=item['bus'])))
        else:
            restart = True
    return actions, restart


# -- virtio-serial channels
CHANNEL_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,99}')
CHANNELS_SPEC = dict(type='list', elements='dict', options=dict(
    name=dict(type='str', required=True),
    type=dict(type='str', choices=['unix', 'spicevmc', 'pty']),
    state=STATE,
))


def _check_channels(option, raw):
    result, seen = [], set()
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        if not isinstance(item.get('name'), str) or not CHANNEL_NAME_RE.fullmatch(item['name']):
            valid.refuse(label + '.name', 'must be a channel name such as com.redhat.spice.0', item.get('name'))
        if item['name'] in seen:
            valid.refuse(label + '.name', 'channel given twice', item['name'])
        if item['name'] == 'org.qemu.guest_agent.0':
            valid.refuse(label + '.name', 'the guest agent channel is the guest_agent option')
        seen.add(item['name'])
        kind = item.get('type') or ('spicevmc' if item['name'] == 'com.redhat.spice.0' else 'unix')
        if (kind == 'spicevmc') != (item['name'] == 'com.redhat.spice.0'):
            valid.refuse(label + '.type', 'spicevmc is the SPICE agent channel com.redhat.spice.0 (and only it)')
        result.append(dict(name=item['name'], type=kind, state=item.get('state') or 'present'))
    return result


def _read_channels(root):
    return [dict(name=find_text(c, 'target/@name'), type=c.get('type')) for c in root.findall('devices/channel')]


def _channel_matches(have, item):
    return any(c['name'] == item['name'] and c['type'] == item['type'] for c in have)


def _channel_in_place(have, item):
    """present: a channel of that name and type; absent: no channel of that name."""
    if item['state'] == 'present':
        return _channel_matches(have, item)
    return not any(c['name'] == item['name'] for c in have)


def _compare_channels(wanted, have, _ctx):
    return all(_channel_in_place(have, item) for item in wanted)


def build_channel(item):
    elem = etree.Element('channel', type=item['type'])
    etree.SubElement(elem, 'target', type='virtio', name=item['name'])
    return elem


def _write_channels(root, wanted):
    devices = _devices(root)
    for item in wanted:
        found = [c for c in devices.findall('channel') if find_text(c, 'target/@name') == item['name']]
        if item['state'] == 'absent' or (found and found[0].get('type') != item['type']):
            for elem in found:
                devices.remove(elem)
            found = []
        if item['state'] == 'present' and not found:
            same = devices.findall('channel')
            elem = build_channel(item)
            if same:
                same[-1].addnext(elem)
            else:
                devices.append(elem)


def _live_channels(wanted, live_root, _wanted_root):
    """A new channel is hot-plugged when the running guest has a virtio-serial controller (libvirt adds none live);
    otherwise, and for a removal or a changed type, at the next boot."""
    have = _read_channels(live_root)
    controller = live_root.find("devices/controller[@type='virtio-serial']") is not None
    actions, restart = [], False
    for item in wanted:
        if _channel_in_place(have, item):
            continue
        if item['state'] == 'present' and controller and not any(c['name'] == item['name'] for c in have):
            actions.append(_attach_action('channels[%s]' % item['name'], build_channel(item), dict(type=item['type'])))
        else:
            restart = True
    return actions, restart


# -- serial ports and consoles (character devices)
CHAR_TYPES = ['pty', 'file', 'unix', 'tcp', 'null']
CHAR_FIELDS = dict(
    type=dict(type='str', choices=CHAR_TYPES),
    path=dict(type='path'),
    host=dict(type='str'),
    tcp_port=dict(type='int'),
    mode=dict(type='str', choices=['bind', 'connect']),
    protocol=dict(type='str', choices=['raw', 'telnet']),
    log_file=dict(type='path'),
)
# the host-side fields each type takes (log_file goes with every type)
CHAR_SOURCE = dict(pty=(), null=(), file=('path',), unix=('path', 'mode'), tcp=('host', 'tcp_port', 'mode', 'protocol'))
SERIALS_SPEC = dict(type='list', elements='dict', options=dict(
    port=dict(type='int'),
    target_type=dict(type='str', choices=['isa-serial', 'usb-serial', 'pci-serial']),
    state=STATE,
    **CHAR_FIELDS
))
CONSOLES_SPEC = dict(type='list', elements='dict', options=dict(
    target_type=dict(type='str', choices=['virtio', 'serial'], default='virtio'),
    **CHAR_FIELDS
))
MAX_SERIAL_PORT = 31
UNIX_PATH_MAX = 107   # sun_path: 108 bytes with the terminating NUL
# QEMU truncates a file chardev at start and unlinks what sits at a unix listening socket's path: never there
SYSTEM_DIRS = ('/etc', '/usr', '/boot', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/proc', '/sys', '/dev')


def _char_path(label, value, unix=False):
    path = valid.abs_path(label, value, max_length=UNIX_PATH_MAX if unix else 4095)
    if path == '/' or any(path == d or path.startswith(d + '/') for d in SYSTEM_DIRS):
        valid.refuse(label, 'must not be / or under %s (QEMU truncates or replaces what is there)' % ', '.join(SYSTEM_DIRS), path)
    return path


def _check_char_source(label, item):
    """The host side of a serial port or console, normalized: the secure defaults filled in (a tcp socket listens
    on 127.0.0.1), the fields of another type refused."""
    kind = item.get('type') or 'pty'
    for key in ('path', 'host', 'tcp_port', 'mode', 'protocol'):
        if item.get(key) not in (None, '') and key not in CHAR_SOURCE[kind]:
            valid.refuse('%s.%s' % (label, key), 'is not for type %s' % kind)
    out = dict(type=kind)
    if kind in ('file', 'unix'):
        if not item.get('path'):
            valid.refuse(label + '.path', 'required with type %s' % kind)
        out['path'] = _char_path(label + '.path', item['path'], unix=kind == 'unix')
        if kind == 'unix':
            out['mode'] = item.get('mode') or 'bind'
    if kind == 'tcp':
        if item.get('tcp_port') is None:
            valid.refuse(label + '.tcp_port', 'required with type tcp (the TCP port to listen on or connect to)')
        out['tcp_port'] = valid.count(label + '.tcp_port', item['tcp_port'], minimum=1, maximum=65535)
        out['mode'] = item.get('mode') or 'bind'
        host = item.get('host') or '127.0.0.1'
        if out['mode'] == 'bind' or ':' in host or re.fullmatch(r'[0-9.]+', host):
            out['host'] = valid.ip_address(label + '.host', host)
        else:
            out['host'] = valid.dns_name(label + '.host', host)
        out['protocol'] = item.get('protocol')
    if item.get('log_file') is not None:   # '' removes the log
        out['log_file'] = _char_path(label + '.log_file', item['log_file']) if item['log_file'] else ''
    return out


def _check_serials(option, raw):
    given = set(item.get('port') for item in raw if item.get('port') is not None)
    free = (port for port in range(MAX_SERIAL_PORT + 1) if port not in given)
    result, seen = [], set()
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        port = item.get('port')
        if port is None:
            port = next(free, None)
            if port is None:
                valid.refuse(label + '.port', 'no free port left (0-%d)' % MAX_SERIAL_PORT)
        valid.count(label + '.port', port, minimum=0, maximum=MAX_SERIAL_PORT)
        if port in seen:
            valid.refuse(label + '.port', 'serial port given twice', port)
        seen.add(port)
        if (item.get('state') or 'present') == 'absent':
            extra = [key for key in ('target_type',) + tuple(CHAR_FIELDS) if item.get(key) is not None]
            if extra:
                valid.refuse('%s.%s' % (label, extra[0]), 'is for state present (state absent removes the port)')
            result.append(dict(port=port, state='absent'))
            continue
        entry = dict(port=port, state='present', target_type=item.get('target_type'))
        entry.update(_check_char_source(label, item))
        result.append(entry)
    return sorted(result, key=lambda s: s['port'])


def _check_consoles(option, raw):
    result = []
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        if item.get('target_type') == 'serial':
            if index:
                valid.refuse(label + '.target_type', 'the serial console is the first console (consoles[0])')
            extra = [key for key in CHAR_FIELDS if item.get(key) is not None]
            if extra:
                valid.refuse('%s.%s' % (label, extra[0]), "the serial console is the first serial port: set its host side in serials")
            result.append(dict(target_type='serial'))
            continue
        entry = dict(target_type='virtio')
        entry.update(_check_char_source(label, item))
        result.append(entry)
    return result


def _char_match(wanted, have):
    """The fields the task gives (not None; '' is none) equal the device's."""
    return all((have.get(key) or None) == (value or None) for key, value in wanted.items()
               if value is not None and key not in ('state', 'port'))


def build_chardev(tag, item, target_type=None, port=None):
    """A ``<serial>`` or ``<console>`` from a normalized host side (``item``) and its target."""
    kind = item['type']
    elem = etree.Element(tag, type=kind)
    if kind == 'file':
        etree.SubElement(elem, 'source', path=item['path'])
    elif kind == 'unix':
        etree.SubElement(elem, 'source', mode=item.get('mode') or 'bind', path=item['path'])
    elif kind == 'tcp':
        etree.SubElement(elem, 'source', mode=item.get('mode') or 'bind', host=item['host'], service=str(item['tcp_port']))
        etree.SubElement(elem, 'protocol', type=item.get('protocol') or 'raw')
    if item.get('log_file'):
        etree.SubElement(elem, 'log', file=item['log_file'])
    target = etree.SubElement(elem, 'target')
    if target_type:
        target.set('type', target_type)
    if port is not None:
        target.set('port', str(port))
    return elem


def _merged_chardev(item, old):
    """``item`` over the device ``old`` has: what the task does not give stays (within the same type)."""
    if old is None:
        return item
    have = chardev_facts(old)
    fields = ('log_file', 'target_type') + (CHAR_SOURCE.get(have['type'], ()) if have['type'] == item['type'] else ())
    merged = dict((key, have.get(key)) for key in fields)
    merged.update((key, value) for key, value in item.items() if value is not None)
    return merged


def _replace_chardev(old, fresh, same_target):
    for tag in (('address', 'alias') if same_target else ('alias',)):
        for node in old.findall(tag):
            fresh.append(copy.deepcopy(node))
    old.getparent().replace(old, fresh)


def _serial_consoles(devices):
    return [c for c in devices.findall('console') if find_text(c, 'target/@type') in (None, 'serial')]


def _read_serials(root):
    return [chardev_facts(s) for s in root.findall('devices/serial')]


def _serial_in_place(have, item):
    found = [s for s in have if s['port'] == item['port']]
    if item['state'] == 'absent':
        return not found
    return bool(found) and _char_match(item, found[0])


def _compare_serials(wanted, have, _ctx):
    return all(_serial_in_place(have, item) for item in wanted)


def _write_serials(root, wanted):
    """The ports the list names (by port); the serial console follows the first serial port, libvirt's rule, so a
    change drops the ``<console target type='serial'>`` copy and libvirt makes it again from the first port."""
    devices = _devices(root)
    changed = False
    for item in wanted:
        found = [s for s in devices.findall('serial') if chardev_facts(s)['port'] == item['port']]
        if item['state'] == 'absent':
            for elem in found:
                devices.remove(elem)
            changed = changed or bool(found)
            continue
        old = found[0] if found else None
        if old is not None and _char_match(item, chardev_facts(old)):
            continue
        merged = _merged_chardev(item, old)
        fresh = build_chardev('serial', merged, merged.get('target_type'), item['port'])
        if old is not None:
            _replace_chardev(old, fresh, chardev_facts(old)['target_type'] == merged.get('target_type'))
        else:
            later = [s for s in devices.findall('serial') if (chardev_facts(s)['port'] or 0) > item['port']]
            if later:
                later[0].addprevious(fresh)
            else:
                _after_last(devices, 'serial', fresh)
        changed = True
    if changed:
        for elem in _serial_consoles(devices):
            devices.remove(elem)


def _after_last(devices, tag, elem):
    same = devices.findall(tag)
    if same:
        same[-1].addnext(elem)
    else:
        devices.append(elem)


def _live_serials(wanted, live_root, wanted_root):
    """A new usb-serial port is hot-plugged; QEMU hot-plugs no ISA or PCI serial port here (isa-serial and
    pci-serial, libvirt's choice on x86), and libvirt updates no character device live: those, a change and a
    removal wait for the next boot."""
    have = _read_serials(live_root)
    actions, restart = [], False
    for item in wanted:
        if _serial_in_place(have, item):
            continue
        elem = next((s for s in wanted_root.findall('devices/serial') if chardev_facts(s)['port'] == item['port']), None)
        if item['state'] == 'present' and elem is not None and not any(s['port'] == item['port'] for s in have) \
                and chardev_facts(elem)['target_type'] == 'usb-serial':
            actions.append(_attach_action('serials[%d]' % item['port'], elem, _char_shown(chardev_facts(elem))))
        else:
            restart = True
    return actions, restart


def _char_shown(view):
    return dict((k, v) for k, v in view.items() if v is not None)


def _read_consoles(root):
    return [chardev_facts(c) for c in root.findall('devices/console')]


def _compare_consoles(wanted, have, _ctx):
    virtio = [c for c in have if c['target_type'] == 'virtio']
    wanted_virtio = [c for c in wanted if c['target_type'] == 'virtio']
    if any(c['target_type'] == 'serial' for c in wanted) and not any(c['target_type'] in (None, 'serial') for c in have):
        return False
    return len(virtio) == len(wanted_virtio) and all(_char_match(w, h) for w, h in zip(wanted_virtio, virtio))


def _write_consoles(root, wanted):
    """The virtio consoles (hvc0, hvc1, ... in order: libvirt numbers them by position), a complete list; a serial
    entry gives the guest a pty serial port when it has none (as serial_console: true)."""
    devices = _devices(root)
    if any(c['target_type'] == 'serial' for c in wanted) and devices.find('serial') is None:
        serial = etree.SubElement(devices, 'serial', type='pty')
        etree.SubElement(serial, 'target', port='0')
    have = [c for c in devices.findall('console') if find_text(c, 'target/@type') == 'virtio']
    for index, item in enumerate(c for c in wanted if c['target_type'] == 'virtio'):
        old = have[index] if index < len(have) else None
        if old is not None and _char_match(item, chardev_facts(old)):
            continue
        fresh = build_chardev('console', _merged_chardev(item, old), 'virtio', index)
        if old is not None:
            _replace_chardev(old, fresh, True)
        else:
            _after_last(devices, 'console', fresh)
    for extra in have[len([c for c in wanted if c['target_type'] == 'virtio']):]:
        devices.remove(extra)


def _live_consoles(wanted, live_root, wanted_root):
    """New virtio consoles (after the ones the guest has) are hot-plugged when the running guest has a
    virtio-serial controller; a change, a removal and a serial console wait for the next boot."""
    have = [c for c in _read_consoles(live_root) if c['target_type'] == 'virtio']
    want = [c for c in wanted_root.findall('devices/console') if find_text(c, 'target/@type') == 'virtio']
    restart = any(c['target_type'] == 'serial' for c in wanted) and live_root.find('devices/serial') is None
    restart = restart or len(want) < len(have) or not all(
        _char_match(_char_shown(chardev_facts(w)), h) for w, h in zip(want, have))
    controller = live_root.find("devices/controller[@type='virtio-serial']") is not None
    actions = []
    for index, elem in enumerate(want[len(have):], start=len(have)):
        if controller:
            actions.append(_attach_action('consoles[%d]' % index, elem, _char_shown(chardev_facts(elem))))
        else:
            restart = True
    return actions, restart


def _preflight_chardevs(option):
    """On a local URI: the directory of a file, socket or log path exists and is reached through no symbolic
    link, and what already sits at the path is what QEMU will use it as (a regular file, a socket)."""
    import stat

    def check(label, path, kind):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise KvmError('%s: directory %s does not exist on this host' % (label, directory))
        if os.path.realpath(directory) != directory:
            raise KvmError('%s: %s goes through a symlink (to %s); give the real directory'
                           % (label, directory, os.path.realpath(directory)))
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return
        if stat.S_ISLNK(mode):
            raise KvmError('%s: %s is a symbolic link; refusing to let QEMU write through it' % (label, path))
        if kind == 'unix' and not stat.S_ISSOCK(mode):
            raise KvmError('%s: %s exists and is no socket (QEMU would replace it)' % (label, path))
        if kind == 'file' and not stat.S_ISREG(mode):
            raise KvmError('%s: %s exists and is no regular file' % (label, path))

    def preflight(value, local):
        if not local:
            return
        for index, item in enumerate(value):
            label = '%s[%d]' % (option, index)
            if item.get('path'):
                check(label + '.path', item['path'], item['type'])
            if item.get('log_file'):
                check(label + '.log_file', item['log_file'], 'file')
    return preflight


# -- numatune
NUMATUNE_SPEC = dict(type='dict', options=dict(
    mode=dict(type='str', choices=['strict', 'preferred', 'interleave', 'restrictive']),
    nodeset=dict(type='str'),
))


def _check_numatune(option, raw):
    tune = _check_fields(option, raw, NUMATUNE_SPEC['options'])
    if tune.get('nodeset') is not None:
        tune['nodeset'] = cpuset(option + '.nodeset', tune['nodeset'])
    return tune


def _read_numatune(root):
    view = numatune_facts(root) or dict(mode=None, nodeset=None)
    return dict(mode=view['mode'], nodeset=_cpuset_or_none(view['nodeset']))


def _write_numatune(root, tune):
    memory = child(child(root, 'numatune'), 'memory')
    if tune.get('mode'):
        memory.set('mode', tune['mode'])
    else:
        memory.set('mode', memory.get('mode', 'strict'))
    if tune.get('nodeset'):
        memory.set('nodeset', cpuset_text(tune['nodeset']))
        memory.attrib.pop('placement', None)


def _live_numatune(tune, live_root, _wanted):
    """The memory nodeset of a running guest in strict or restrictive mode changes live (virsh numatune --live)."""
    have = _read_numatune(live_root)
    if tune.get('mode') is not None and tune['mode'] != have['mode']:
        return [], True
    if have['mode'] not in ('strict', 'restrictive') or have['nodeset'] is None:
        return [], True
    return [('setNumaParameters', None, dict(numa_nodeset=cpuset_text(tune['nodeset'])))], False


# -- video, sound
VIDEO_SPEC = dict(type='dict', options=dict(
    model=dict(type='str', choices=['virtio', 'qxl', 'vga', 'cirrus', 'bochs', 'ramfb', 'none']),
    vram=dict(type='int'),
    heads=dict(type='int'),
))


def _check_video(option, raw):
    video = _check_fields(option, raw, VIDEO_SPEC['options'])
    if video.get('vram') is not None:
        valid.count(option + '.vram', video['vram'], minimum=1024, maximum=1048576)
    if video.get('heads') is not None:
        valid.count(option + '.heads', video['heads'], minimum=1, maximum=16)
    if video.get('model') == 'none' and (video.get('vram') or video.get('heads')):
        valid.refuse(option, 'model none has no vram or heads')
    return video


def _write_video(root, video):
    devices = _devices(root)
    elem = devices.find('video')
    if elem is None:
        elem = etree.SubElement(devices, 'video')
    model = child(elem, 'model')
    if video.get('model') and video['model'] != model.get('type'):
        for extra in devices.findall('video')[1:]:
            devices.remove(extra)
        model.attrib.clear()
        model.set('type', video['model'])
        for node in list(model):
            model.remove(node)
        remove(elem.find('address'))   # another model may sit elsewhere
    for key in ('vram', 'heads'):
        if video.get(key) is not None:
            model.set(key, str(video[key]))


SOUND_SPEC = dict(type='dict', options=dict(
    state=STATE,
    model=dict(type='str', choices=['ich9', 'ich6', 'ac97', 'es1370', 'sb16', 'usb']),
))


def _write_sound(root, sound):
    devices = _devices(root)
    existing = devices.findall('sound')
    if sound['state'] == 'absent':
        for elem in existing:
            devices.remove(elem)
        return
    elem = existing[0] if existing else etree.SubElement(devices, 'sound', model='ich9')
    if sound.get('model') and sound['model'] != elem.get('model'):
        elem.set('model', sound['model'])
        remove(elem.find('address'))


HARDWARE_OPTIONS = [
    # live 'definition': a running guest's XML shows the loader and template auto-selection chose, so only a change
    # of the definition in this run is pending
    Option('loader', 'path', _read_loader, _write_loader, live='definition', compare=_text_compare,
           preflight=_path_preflight('loader')),
    Option('nvram_template', 'path', lambda r: find_text(r, 'os/nvram/@template'), _write_nvram_template,
           live='definition', compare=_text_compare, preflight=_path_preflight('nvram_template')),
    Option('secure_boot', 'struct', secure_boot_of, _write_secure_boot, spec=dict(type='bool'),
           check=lambda _o, v: v),
    Option('enrolled_keys', 'struct', enrolled_keys_of, _write_enrolled_keys, spec=dict(type='bool', no_log=False),  # no secret
           check=lambda _o, v: v),
    Option('tpm', 'struct', tpm_facts, _write_tpm, compare=_single_device_compare, spec=TPM_SPEC, check=_check_tpm,
           preflight=_preflight_tpm),
    Option('memory_backing', 'struct', _read_memory_backing, _write_memory_backing, compare=_compare_memory_backing,
           spec=MEMORY_BACKING_SPEC, check=_check_memory_backing, preflight=_preflight_memory_backing),
    Option('filesystems', 'struct', _read_filesystems, _write_filesystems, live=_live_filesystems,
           compare=_compare_filesystems, spec=FILESYSTEM_SPEC, check=_check_filesystems, preflight=_preflight_filesystems),
    Option('rng', 'struct', rng_facts, _write_rng, live=_live_single('rng', rng_facts), compare=_single_device_compare,
           spec=RNG_SPEC, check=_check_rng),
    Option('watchdog', 'struct', watchdog_facts, _write_watchdog, live=_live_single('watchdog', watchdog_facts),
           compare=_single_device_compare, spec=WATCHDOG_SPEC, check=lambda o, v: _check_fields(o, v, WATCHDOG_SPEC['options'])),
    Option('boot', 'struct', boot_facts, _write_boot, compare=_compare_boot, spec=BOOT_SPEC, check=_check_boot),
    Option('iothreads', 'struct', _read_iothreads, _write_iothreads, live=_live_iothreads, spec=dict(type='int'),
           check=lambda o, v: valid.count(o, v, minimum=0, maximum=valid.MAX_VCPUS)),
    Option('cputune', 'struct', _read_cputune, _write_cputune, live=_live_cputune, compare=_compare_cputune,
           spec=CPUTUNE_SPEC, check=_check_cputune),
    Option('cpu_model', 'token', lambda r: cpu_facts(r)['model'], _write_cpu_model, compare=_text_compare),
    Option('cpu_features', 'struct', _read_cpu_features, _write_cpu_features, compare=_compare_cpu_features,
           spec=CPU_FEATURES_SPEC, check=_check_cpu_features),
    Option('cpu_cache', 'struct', lambda r: cpu_facts(r)['cache'], _write_cpu_cache,
           compare=lambda wanted, have, _ctx: have is not None and _fields_match(wanted, have, skip=()),
           spec=CPU_CACHE_SPEC, check=_check_cpu_cache),
    Option('inputs', 'struct', _read_inputs, _write_inputs, live=_live_inputs, compare=_compare_inputs, spec=INPUTS_SPEC,
           check=_check_inputs),
    Option('serials', 'struct', _read_serials, _write_serials, live=_live_serials, compare=_compare_serials,
           spec=SERIALS_SPEC, check=_check_serials, preflight=_preflight_chardevs('serials')),
    Option('consoles', 'struct', _read_consoles, _write_consoles, live=_live_consoles, compare=_compare_consoles,
           spec=CONSOLES_SPEC, check=_check_consoles, preflight=_preflight_chardevs('consoles')),
    Option('channels', 'struct', _read_channels, _write_channels, live=_live_channels, compare=_compare_channels,
           spec=CHANNELS_SPEC, check=_check_channels),
    Option('numatune', 'struct', _read_numatune, _write_numatune, live=_live_numatune,
           compare=lambda wanted, have, _ctx: _fields_match(wanted, have, skip=()), spec=NUMATUNE_SPEC, check=_check_numatune),
    Option('video', 'struct', video_facts, _write_video,
           compare=lambda wanted, have, _ctx: have is not None and _fields_match(wanted, have, skip=()),
           spec=VIDEO_SPEC, check=_check_video),
    Option('sound', 'struct', sound_facts, _write_sound, compare=_single_device_compare, spec=SOUND_SPEC,
           check=lambda o, v: _check_fields(o, v, SOUND_SPEC['options'])),
    # host PCI, USB and mediated devices: matched by host identity, checked against libvirt's node devices
    Option('hostdevs', 'struct', _hostdev.read_hostdevs, _hostdev.write_hostdevs, live=_hostdev.live_hostdevs,
           compare=_hostdev.compare_hostdevs, spec=_hostdev.HOSTDEVS_SPEC, check=_hostdev.check_hostdevs,
           inspect=_hostdev.inspect_hostdevs),
]


def check_combination(options, base, current):
    """Checks across options and the definition they amend (before any write): a clear refusal, not libvirt's."""
    machine = find_text(base, 'os/type/@machine') or ''
    if options.get('secure_boot') and ('q35' not in machine):
        raise KvmError('secure_boot: Secure Boot needs a q35 machine (set machine: q35); this guest has %s'
                       % (machine or "libvirt's default (pc)"))
    if options.get('firmware') == 'bios':
        for name in ('secure_boot', 'enrolled_keys', 'loader', 'nvram_template'):
            if options.get(name):
                raise KvmError('%s: needs firmware efi, not bios' % name)
    if options.get('enrolled_keys') and options.get('secure_boot') is False:
        raise KvmError('enrolled_keys: enrolled Secure Boot keys need secure_boot: true')
    explicit = bool(options['loader']) if 'loader' in options else (current is not None and _explicit_loader(current))
    if options.get('enrolled_keys') is not None and explicit:
        raise KvmError('enrolled_keys: chooses a firmware through libvirt\'s auto-selection; with an explicit loader '
                       'choose the keys with nvram_template (for example OVMF_VARS_4M.ms.fd)')
    if options.get('nvram_template') and not explicit:
        raise KvmError('nvram_template: needs an explicit loader (the loader option); libvirt\'s firmware '
                       'auto-selection picks the template itself')
    boot = options.get('boot') or {}
    if boot.get('order') and base.find('devices//boot') is not None:
        raise KvmError('boot.order: this guest has per-device boot orders (disks[].boot_order); use one or the other')
    if boot.get('order') and base.find('os/kernel') is not None:
        raise KvmError('boot.order: a guest with direct kernel boot (kernel) boots the kernel, not a device')
    mb = options.get('memory_backing') or {}
    if mb.get('access') == 'private' and base.find("devices/filesystem/driver[@type='virtiofs']") is not None:
        raise KvmError('memory_backing.access: virtiofs filesystems need shared memory, not private')
    if any(page['nodeset'] for page in mb.get('pages') or ()) and base.find('cpu/numa/cell') is None:
        raise KvmError('memory_backing.pages: nodeset needs guest NUMA nodes (<cpu><numa>); this guest has none, '
                       'leave nodeset out (libvirt drops it)')
    tune = options.get('cputune') or {}
    vcpus = _read_max_vcpus(base) or 1
    for pin in tune.get('vcpupin') or []:
        if pin['vcpu'] >= vcpus:
            raise KvmError('cputune.vcpupin: vCPU %d does not exist (the guest has %d)' % (pin['vcpu'], vcpus))
    if options.get('cpu_model') and options.get('cpu_mode'):
        raise KvmError('cpu_model: a named CPU model is cpu mode custom; leave cpu_mode out')
    if options.get('cpu_features') and (find_text(base, 'cpu/@mode') or 'custom') == 'host-passthrough' \
            and any(f['policy'] in ('force', 'optional') for f in options['cpu_features']):
        raise KvmError('cpu_features: policies force and optional are for custom CPU models, not host-passthrough')
    memory = base.find('numatune/memory')
    if options.get('numatune') and memory is not None and not memory.get('nodeset') and memory.get('placement') != 'auto':
        raise KvmError('numatune.nodeset: required (the host NUMA nodes the guest memory comes from)')
    ids = set(_int(n.get('id')) for n in base.findall('iothreadids/iothread')) | set(range(1, _read_iothreads(base) + 1))
    for pin in tune.get('iothreadpin') or []:
        if pin['iothread'] not in ids:
            raise KvmError('cputune.iothreadpin: I/O thread %d does not exist (set iothreads)' % pin['iothread'])
    if options.get('hostdevs'):
        _hostdev.check_combination(options['hostdevs'], base)


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
] + HARDWARE_OPTIONS
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
               'readonly', 'boot_order', 'serial', 'wwn', 'shareable')
DISK_SERIAL_RE = re.compile(r'[A-Za-z0-9_.+-]{1,20}')
WWN_RE = re.compile(r'(0x)?[0-9a-fA-F]{16}')
IOTUNE_SPEC = dict((key, dict(type='int')) for key in IOTUNE_KEYS)


def check_disk_extras(label, disk):
    """disks[].serial, wwn, shareable and iotune (validation, no I/O); the normalized disk."""
    if disk.get('serial') and not DISK_SERIAL_RE.fullmatch(disk['serial']):   # '' removes it
        valid.refuse(label + '.serial', 'must be 1 to 20 letters, digits and _ . + -', disk['serial'])
    if disk.get('wwn'):   # '' removes it
        if not WWN_RE.fullmatch(disk['wwn']):
            valid.refuse(label + '.wwn', 'must be 16 hexadecimal digits (a World Wide Name)', disk['wwn'])
        disk['wwn'] = disk['wwn'].lower()[-16:]
        if disk.get('bus') not in ('scsi', 'sata', 'ide'):
            valid.refuse(label + '.wwn', 'is for scsi, sata and ide disks, not %s' % disk.get('bus'))
    if disk.get('iotune') is not None:
        tune = dict((k, v) for k, v in disk['iotune'].items() if v is not None)
        for key, value in tune.items():
            valid.count('%s.iotune.%s' % (label, key), value, minimum=0, maximum=2 ** 53)
        for kind in ('bytes', 'iops'):
            if tune.get('total_%s_sec' % kind) and (tune.get('read_%s_sec' % kind) or tune.get('write_%s_sec' % kind)):
                valid.refuse('%s.iotune.total_%s_sec' % (label, kind),
                             'cannot be combined with read_%s_sec or write_%s_sec' % (kind, kind))
        disk['iotune'] = tune
    return disk


def _iotune_differences(wanted, have):
    have = have or {}
    return dict((k, v) for k, v in (wanted or {}).items() if have.get(k, 0) != v)


def write_iotune(elem, wanted):
    """Set the given limits on ``elem``'s ``<iotune>`` (0 removes a limit; the others are kept)."""
    node = elem.find('iotune')
    if node is None:
        node = etree.Element('iotune')
        target = elem.find('target')
        if target is not None:
            target.addnext(node)
        else:
            elem.append(node)
    for key in IOTUNE_KEYS:
        if key not in wanted:
            continue
        remove(node.find(key))
        if wanted[key]:
            etree.SubElement(node, key).text = str(wanted[key])
    if len(node) == 0:
        remove(node)


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
        if field in ('serial', 'wwn') and (wanted or None) == (current or None):
            continue
        if wanted != current:
            diffs.append((field, current, wanted))
    iotune = _iotune_differences(spec.get('iotune'), have.get('iotune'))
    if iotune:
        diffs.append(('iotune', dict((k, (have.get('iotune') or {}).get(k, 0)) for k in iotune), iotune))
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
    if spec.get('shareable'):
        etree.SubElement(elem, 'shareable')
    for tag in ('serial', 'wwn'):
        if spec.get(tag):
            etree.SubElement(elem, tag).text = spec[tag]
    if spec.get('iotune'):
        write_iotune(elem, spec['iotune'])
    return elem


def update_disk(elem, spec):
    """Rewrite ``elem`` in place with what ``spec`` sets (keeps libvirt's other details)."""
    merged = dict(disk_view(elem))
    merged.update(dict((k, v) for k, v in spec.items() if v is not None))
    if spec.get('pool'):
        merged['source'] = None
    elif spec.get('source') is not None:
        merged['pool'] = merged['volume'] = None
    merged['iotune'] = None   # the old element's, amended below: limits kvm_domain does not type are kept
    fresh = build_disk(merged)
    for tag in ('address', 'alias', 'iotune'):
        for node in elem.findall(tag):
            fresh.append(copy.deepcopy(node))
    if spec.get('iotune'):
        write_iotune(fresh, spec['iotune'])

    if spec.get('readonly') is False and spec['device'] != 'cdrom':
        remove(fresh.find('readonly'))
    return fresh


def media_only_change(diffs):
    """A cdrom whose only difference is its medium (hot-swappable)."""
    return bool(diffs) and all(field in ('source', 'format') for field, _b, _a in diffs)


# ---------------------------------------------------------------- interfaces
NIC_FIELDS = ('type', 'source', 'model', 'mac', 'link_state')
# Typed details of a NIC (version 1.1.0): compared when given, written over what the NIC has.
NIC_EXTRAS = ('mtu', 'queues', 'vlan', 'portgroup', 'filterref', 'boot_order', 'bandwidth')
NIC_LIVE_FIELDS = ('link_state', 'bandwidth', 'filterref')   # changed on a running guest by updateDeviceFlags
RATE_SPEC = dict(type='dict', options=dict(average=dict(type='int', required=True), peak=dict(type='int'),
                                           burst=dict(type='int')))
BANDWIDTH_SPEC = dict(inbound=RATE_SPEC, outbound=RATE_SPEC)
NWFILTER_RE = re.compile(r'[A-Za-z0-9_.:-]{1,100}')


def check_nic_extras(label, nic):
    """interfaces[].mtu, queues, vlan, portgroup, filterref, boot_order, bandwidth (validation, no I/O)."""
    if nic.get('mtu') is not None:
        valid.count(label + '.mtu', nic['mtu'], minimum=68, maximum=65535)
    if nic.get('queues') is not None:
        valid.count(label + '.queues', nic['queues'], minimum=1, maximum=256)
        if nic.get('model') != 'virtio':
            valid.refuse(label + '.queues', 'multiqueue is for virtio NICs')
    if nic.get('vlan') is not None:
        valid.count(label + '.vlan', nic['vlan'], minimum=0, maximum=4095)
    if nic.get('portgroup'):
        valid.object_name(label + '.portgroup', nic['portgroup'], 'portgroup name')
        if nic['type'] != 'network':
            valid.refuse(label + '.portgroup', 'is for type network')
    if nic.get('filterref') and not NWFILTER_RE.fullmatch(nic['filterref']):
        valid.refuse(label + '.filterref', 'must be an nwfilter name (letters, digits and _ . : -)', nic['filterref'])
    if nic.get('boot_order') is not None:
        valid.count(label + '.boot_order', nic['boot_order'], minimum=1, maximum=65535)
    if nic.get('bandwidth') is not None:
        bandwidth = {}
        for direction in ('inbound', 'outbound'):
            rate = nic['bandwidth'].get(direction)
            if rate is None:
                continue
            for key in ('average', 'peak', 'burst'):
                if rate.get(key) is not None:
                    valid.count('%s.bandwidth.%s.%s' % (label, direction, key), rate[key], minimum=0, maximum=2 ** 32 - 1)
            bandwidth[direction] = dict(rate) if rate['average'] else None   # average 0: no limit that way
        nic['bandwidth'] = bandwidth
    return nic


def _extras_differences(spec, have):
    diffs = []
    for field in NIC_EXTRAS:
        wanted = spec.get(field)
        if wanted is None:
            continue
        if field == 'bandwidth':   # a direction given is compared whole (a peak not given is no peak)
            for direction, rate in sorted(wanted.items()):
                current = (have.get('bandwidth') or {}).get(direction)
                want = dict((k, rate.get(k)) for k in ('average', 'peak', 'burst')) if rate else None
                if want != current:
                    diffs.append(('bandwidth.' + direction, current, want))
        elif field in ('portgroup', 'filterref'):
            if (wanted or None) != (have.get(field) or None):
                diffs.append((field, have.get(field), wanted))
        elif wanted != have.get(field):
            diffs.append((field, have.get(field), wanted))
    return diffs


def nic_view(elem):
    view = interface_facts(elem)
    if elem.get('type') == 'direct':
        source = elem.find('source')
        view['mode'] = source.get('mode') if source is not None else None
    return view


def nic_differences(spec, elem):
    have = nic_view(elem)
    return [(f, have.get(f), spec[f]) for f in NIC_FIELDS + ('mode',)
            if spec.get(f) is not None and spec[f] != have.get(f)] + _extras_differences(spec, have)


def apply_nic_extras(elem, spec, have=None):
    """Write the typed details ``spec`` gives onto ``elem`` (``have``: the NIC's current view)."""
    have = have or {}
    if spec.get('mtu') is not None:
        remove(elem.find('mtu'))
        etree.SubElement(elem, 'mtu', size=str(spec['mtu']))
    if spec.get('queues') is not None:
        driver = child(elem, 'driver')
        if spec['queues'] > 1:
            driver.set('queues', str(spec['queues']))
        else:
            driver.attrib.pop('queues', None)
            if not driver.attrib and len(driver) == 0:
                remove(driver)
    if spec.get('vlan') is not None:
        remove(elem.find('vlan'))
        etree.SubElement(etree.SubElement(elem, 'vlan'), 'tag', id=str(spec['vlan']))
    if spec.get('portgroup') is not None:
        source = child(elem, 'source')
        if spec['portgroup']:
            source.set('portgroup', spec['portgroup'])
        else:
            source.attrib.pop('portgroup', None)
    if spec.get('filterref') is not None and (spec['filterref'] or None) != have.get('filterref'):
        remove(elem.find('filterref'))   # another filter: its parameters go with it
        if spec['filterref']:
            etree.SubElement(elem, 'filterref', filter=spec['filterref'])
    if spec.get('boot_order') is not None:
        remove(elem.find('boot'))
        etree.SubElement(elem, 'boot', order=str(spec['boot_order']))
    if spec.get('bandwidth') is not None:
        bandwidth = child(elem, 'bandwidth')
        for direction, rate in spec['bandwidth'].items():
            remove(bandwidth.find(direction))
            if rate:
                node = etree.SubElement(bandwidth, direction)
                for key in ('average', 'peak', 'burst'):
                    if rate.get(key):
                        node.set(key, str(rate[key]))
        if len(bandwidth) == 0:
            remove(bandwidth)


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
    apply_nic_extras(elem, spec)
    return elem


def update_nic(elem, spec):
    view = nic_view(elem)
    merged = dict((k, view.get(k)) for k in NIC_FIELDS + ('mode',))
    merged.update(dict((k, v) for k, v in spec.items() if v is not None and k in NIC_FIELDS + ('mode',)))
    fresh = build_nic(merged)
    if view.get('portgroup') and merged['type'] == 'network':
        fresh.find('source').set('portgroup', view['portgroup'])
    for tag in ('address', 'alias', 'target', 'driver', 'rom', 'mtu', 'boot', 'vlan', 'bandwidth', 'filterref',
                'virtualport', 'coalesce', 'tune'):
        for node in elem.findall(tag):
            fresh.append(copy.deepcopy(node))
    apply_nic_extras(fresh, spec, view)
    return fresh


def link_only_change(diffs):
    """Only what a running guest's NIC changes live (updateDeviceFlags): link state, bandwidth, filter."""
    return bool(diffs) and all(field.split('.')[0] in NIC_LIVE_FIELDS for field, _b, _a in diffs)


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
