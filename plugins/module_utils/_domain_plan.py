# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change planner of kvm_domain: pure functions, no libvirt calls.

* :func:`resolve_options` fills the implied values (max_vcpus follows vcpus, ...).
* :func:`plan_config` compares what the user specified with the inactive
  (persistent) XML and returns the new definition plus the config changes.
* :func:`plan_live` compares the wanted definition with the live XML of a
  running guest and returns what can be applied live and what waits for a restart.

A "spec" is the validated, normalized request built by ``_domain.py``:
``{'name', 'uuid', 'options': {...}, 'disks': [...]|None, 'interfaces': [...]|None,
'graphics': {...}|None, 'cloud_init': {...}|None, 'xml': element|None}``.
"""

from __future__ import annotations

import copy
import fnmatch
import os

from ansible_collections.kvmops.kvm.plugins.module_utils._changes import entry
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import (
    NIC_EXTRAS,
    OPTIONS,
    OPTIONS_BY_NAME,
    build_disk,
    build_graphics,
    build_nic,
    check_combination,
    child,
    cpuset_text,
    disk_differences,
    disk_view,
    ensure_balloon,
    ensure_shared_memory,
    graphics_differences,
    graphics_view,
    has_agent_channel,
    has_serial_console,
    link_only_change,
    media_only_change,
    nic_differences,
    nic_view,
    set_agent_channel,
    set_default_boot,
    set_serial_console,
    shared_memory,
    skeleton,
    update_disk,
    update_nic,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import IOTUNE_KEYS, memory_kib
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, subset_differences

# Buses QEMU can hot-plug a disk on; sata/ide disks and cdroms need a restart.
HOTPLUG_DISK_BUSES = ('virtio', 'scsi', 'usb')


def is_cidata(elem, name):
    """The cloud-init seed cdrom kvm_domain attached (``<name>-cidata-<hash>.iso``)."""
    source = disk_view(elem).get('source') or ''
    return elem.get('device') == 'cdrom' and fnmatch.fnmatchcase(os.path.basename(source), '%s-cidata-*.iso' % name)


# ---------------------------------------------------------------- implied values
def resolve_options(options, current):
    """The options with their implied companions, given the current definition (or None)."""
    opts = dict(options)
    read = (lambda name: OPTIONS_BY_NAME[name].read(current)) if current is not None else (lambda name: None)
    # a current value above the maximum raises the maximum; a maximum below the current value lowers it
    for now, most in (('vcpus', 'max_vcpus'), ('memory', 'max_memory')):
        if now in opts and most not in opts:
            have_max = read(most)
            if have_max is None or opts[now] > have_max:
                opts[most] = opts[now]
        elif most in opts and now not in opts:
            have = read(now)
            if have is None or have > opts[most]:
                opts[now] = opts[most]
    topo = [k for k in ('sockets', 'cores', 'threads') if k in opts]
    if topo:
        for key in ('sockets', 'cores', 'threads'):
            opts.setdefault(key, read(key) or 1)
    max_vcpus = opts.get('max_vcpus') or read('max_vcpus')
    sockets = opts.get('sockets') or read('sockets')
    if sockets and max_vcpus:
        cores = opts.get('cores') or read('cores') or 1
        threads = opts.get('threads') or read('threads') or 1
        if sockets * cores * threads != max_vcpus:
            raise KvmError('sockets * cores * threads (%d * %d * %d) must equal max_vcpus (%d)'
                           % (sockets, cores, threads, max_vcpus))
    return opts


# ---------------------------------------------------------------- config
def _normalize_user_xml(root):
    """Memory elements in KiB, as libvirt reports them, so a subset comparison means something."""
    from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_kib
    root = copy.deepcopy(root)
    for tag in ('memory', 'currentMemory', 'maxMemory'):
        node = root.find(tag)
        if node is not None and node.text:
            node.text = str(to_kib(node.text.strip(), node.get('unit', 'KiB')))
            node.set('unit', 'KiB')
    return root


def complete_new_xml(root, virt_type):
    """A new guest from a partial ``xml``: what virt-install would add and libvirt cannot do without.

    Taken from the typed options' :func:`skeleton`: the domain type (``virt_type``, or auto's choice),
    ``<os><type>`` with the features and ``<devices>``; everything the user wrote is kept as written.
    """
    from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import without_markers
    root = without_markers(root)   # an element marked kvmops:remove is not created
    base = skeleton(root.findtext('name'), virt_type or 'kvm')
    if not root.get('type'):
        root.set('type', base.get('type'))
    os_node = root.find('os')
    if os_node is None:
        os_node = etree.SubElement(root, 'os')
    if os_node.find('type') is None:
        os_node.insert(0, base.find('os/type'))
    for tag in ('features', 'devices'):
        if root.find(tag) is None:
            root.append(base.find(tag))
    return root


def _adopt_identity(wanted, current):
    """The user's XML keeping the existing UUID and the MACs libvirt generated."""
    wanted = copy.deepcopy(wanted)
    uuid = current.find('uuid')
    if wanted.find('uuid') is None and uuid is not None:
        node = etree.Element('uuid')
        node.text = uuid.text
        wanted.insert(1, node)
    have = list(current.findall('devices/interface'))
    for index, iface in enumerate(wanted.findall('devices/interface')):
        if iface.find('mac') is None and index < len(have) and have[index].find('mac') is not None:
            iface.insert(0, copy.deepcopy(have[index].find('mac')))
    return wanted


# The typed device lists: when the task gives one, it owns those devices and ``xml``'s elements of that tag give way.
TYPED_DEVICES = (('disks', 'disk'), ('interfaces', 'interface'), ('graphics', 'graphics'))


def _xml_fragment(spec, normalized):
    """The ``xml`` option as it applies: without the devices a typed list of the task owns."""
    fragment = copy.deepcopy(normalized)
    for key, tag in TYPED_DEVICES:
        if spec.get(key) is not None:
            for node in fragment.findall('devices/' + tag):
                node.getparent().remove(node)
    return fragment


def _plan_xml(spec, normalized, current, options):
    """(base, xml change entry or None) for ``xml`` on an existing guest, by ``xml_mode``.

    ``merge`` (the default) lays the XML over the definition by meaning (``_xml_merge``); ``replace`` takes it
    as the whole definition when what it specifies differs. Typed options take precedence: they are written on
    both sides of the comparison (and, by plan_config, on the result afterwards), so a typed option's own change
    is reported once, as itself.
    """
    from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import describe, has_markers, merge

    def amend(root):
        root = copy.deepcopy(root)
        for option in OPTIONS:
            if option.name in options:
                option.write(root, options[option.name])
        return root

    uuid, have_uuid = (normalized.findtext('uuid') or '').strip(), current.findtext('uuid') or ''
    if uuid and have_uuid and uuid.replace('-', '').lower() != have_uuid.replace('-', '').lower():
        raise KvmError('xml: <uuid> %s is not the UUID of guest %s (%s); a UUID cannot be changed'
                       % (uuid[:40], spec['name'], have_uuid))
    wanted, amended = _xml_fragment(spec, normalized), amend(current)
    for node in wanted.findall('uuid'):   # the guest's own, in whatever spelling
        wanted.remove(node)
    if (spec.get('xml_mode') or 'merge') == 'merge':
        _merged, log = merge(amended, amend(wanted))
        if not log:
            return copy.deepcopy(current), None
        base, _log = merge(current, wanted)
        return base, entry('config', 'xml', 'update', before=None, after=describe(log), xml_mode='merge',
                           added=[path for action, path, _b, _a in log if action == 'add'],
                           removed=[path for action, path, _b, _a in log if action == 'remove'])
    if has_markers(normalized):
        raise KvmError('xml: kvmops:remove and kvmops:replace need xml_mode merge '
                       '(xml_mode replace takes the XML as the whole definition)')
    diffs = subset_differences(amend(wanted), amended, ignore=('address', 'alias', 'uuid', 'mac'))
    if not diffs:
        return copy.deepcopy(current), None
    # removed (what the new definition lacks) is filled in by plan_config once the typed options are on it
    return _adopt_identity(normalized, current), entry('config', 'xml', 'update', before=None, after=diffs,
                                                       xml_mode='replace', removed=[])


def _replace(old, new):
    old.getparent().replace(old, new)


def _insert_device(devices, elem):
    """New devices after the last sibling of the same kind (readable XML)."""
    same = devices.findall(elem.tag)
    if same:
        same[-1].addnext(elem)
    else:
        devices.append(elem)


def _plan_disks(spec, base, changes):
    devices = child(base, 'devices')
    name = spec['name']
    managed = [d for d in devices.findall('disk') if not is_cidata(d, name)]
    by_target = dict((disk_view(d)['target'], d) for d in managed)
    for wanted in spec['disks']:
        label = 'disks[%s]' % wanted['target']
        if wanted.get('shareable') and wanted.get('format') == 'qcow2':   # libvirt's own refusal comes after the image
            raise KvmError('%s.shareable: a disk shared between guests needs a raw image, not qcow2' % wanted['label'])
        elem = by_target.pop(wanted['target'], None)
        if elem is None:
            _insert_device(devices, build_disk(wanted))
            changes.append(entry('config', label, 'add', after=_disk_summary(wanted)))
            continue
        diffs = disk_differences(wanted, elem)
        if diffs:
            _replace(elem, update_disk(elem, wanted))
            changes.append(entry('config', label, 'update', before=dict((f, b) for f, b, _a in diffs),
                                 after=dict((f, a) for f, _b, a in diffs)))
    for target, elem in sorted(by_target.items()):
        devices.remove(elem)
        changes.append(entry('config', 'disks[%s]' % target, 'remove', before=_disk_summary(disk_view(elem))))


def _plan_cidata(spec, base, changes):
    devices = child(base, 'devices')
    wanted = spec['cloud_init']['disk']
    found = [d for d in devices.findall('disk') if is_cidata(d, spec['name'])]
    if not found:
        _insert_device(devices, build_disk(wanted))
        changes.append(entry('config', 'cloud_init', 'add', after=wanted['source']))
        return
    elem = found[0]
    have = disk_view(elem)
    wanted['target'], wanted['bus'] = have['target'], have['bus']
    if have['source'] != wanted['source']:
        _replace(elem, update_disk(elem, wanted))
        changes.append(entry('config', 'cloud_init', 'update', before=have['source'], after=wanted['source']))


def _disk_summary(view):
    return dict((k, view.get(k)) for k in ('device', 'source', 'pool', 'volume', 'format', 'bus', 'cache')
                if view.get(k) is not None)


def _pair_nics(specs, elems):
    """Pair wanted NICs with existing ones: by MAC, else by type and source (never a new MAC)."""
    remaining = list(elems)
    pairs = [None] * len(specs)
    for index, wanted in enumerate(specs):
        if wanted.get('mac'):
            for elem in remaining:
                if nic_view(elem)['mac'] == wanted['mac']:
                    pairs[index] = elem
                    remaining.remove(elem)
                    break
    for index, wanted in enumerate(specs):
        if pairs[index] is None and not wanted.get('mac'):
            for elem in remaining:
                view = nic_view(elem)
                if view['type'] == wanted['type'] and view['source'] == wanted['source']:
                    pairs[index] = elem
                    remaining.remove(elem)
                    break
    return pairs, remaining


def _plan_nics(spec, base, changes):
    devices = child(base, 'devices')
    pairs, leftovers = _pair_nics(spec['interfaces'], devices.findall('interface'))
    for index, (wanted, elem) in enumerate(zip(spec['interfaces'], pairs)):
        label = 'interfaces[%d]' % index
        if elem is None:
            _insert_device(devices, build_nic(wanted))
            changes.append(entry('config', label, 'add', after=dict(
                (k, wanted.get(k)) for k in ('type', 'source', 'model', 'mac') if wanted.get(k))))
            continue
        diffs = nic_differences(wanted, elem)
        if diffs:
            _replace(elem, update_nic(elem, wanted))
            changes.append(entry('config', label, 'update', before=dict((f, b) for f, b, _a in diffs),
                                 after=dict((f, a) for f, _b, a in diffs), mac=nic_view(elem)['mac']))
    for elem in leftovers:
        view = nic_view(elem)
        devices.remove(elem)
        changes.append(entry('config', 'interfaces[mac=%s]' % view['mac'], 'remove',
                             before=dict((k, view[k]) for k in ('type', 'source', 'model', 'mac'))))


def _plan_graphics(spec, base, changes):
    devices = child(base, 'devices')
    wanted = spec['graphics']
    existing = devices.findall('graphics')
    if wanted['type'] == 'none':
        for elem in existing:
            devices.remove(elem)
        if existing:
            changes.append(entry('config', 'graphics', 'remove', before=graphics_view(existing[0])['type']))
        return
    first = existing[0] if existing else None
    diffs = graphics_differences(wanted, first)
    if diffs or len(existing) > 1:
        for elem in existing:
            devices.remove(elem)
        _insert_device(devices, build_graphics(wanted))
        changes.append(entry('config', 'graphics', 'update' if existing else 'add',
                             before=dict((f, b) for f, b, _a in diffs), after=dict((f, a) for f, _b, a in diffs)))


def _shown(value):
    """A value for ``changes``: fields not given left out, cpusets as libvirt writes them."""
    if isinstance(value, dict):
        return dict((k, _shown(v)) for k, v in value.items() if v is not None)
    if isinstance(value, tuple):
        return cpuset_text(value)
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def plan_config(spec, current, ctx=None):
    """(new definition, config changes) for ``spec`` against the inactive XML ``current``.

    ``current`` is None for a guest that does not exist yet. Nothing needs defining
    when the returned change list is empty.
    """
    ctx = ctx or {}
    changes = []
    creating = current is None
    user_xml = spec.get('xml')
    if creating:
        if user_xml is not None:
            base = complete_new_xml(user_xml, spec['options'].get('virt_type'))
        else:
            base = skeleton(spec['name'], spec['options'].get('virt_type') or 'kvm', spec.get('uuid'))
        changes.append(entry('config', 'definition', 'define', after=spec['name']))
    normalized = _normalize_user_xml(user_xml) if user_xml is not None else None
    # Implied values (max_vcpus follows vcpus, ...) are relative to what the options amend.
    options = resolve_options(spec['options'], normalized if normalized is not None else current)
    if not creating:
        base = copy.deepcopy(current)
        if user_xml is not None:
            base, xml_change = _plan_xml(spec, normalized, current, options)
            if xml_change is not None:
                changes.append(xml_change)
    for option in OPTIONS:
        if option.name not in options:
            continue
        wanted = options[option.name]
        have = option.read(current) if current is not None else None
        option.write(base, wanted)
        if not creating and not option.compare(wanted, have, ctx):
            changes.append(entry('config', option.name, 'set', before=_shown(have), after=_shown(wanted)))
    if spec.get('disks') is not None:
        _plan_disks(spec, base, changes if not creating else [])
    if spec.get('cloud_init') is not None:
        _plan_cidata(spec, base, changes if not creating else [])
    if spec.get('interfaces') is not None:
        _plan_nics(spec, base, changes if not creating else [])
    if spec.get('graphics') is not None:
        _plan_graphics(spec, base, changes if not creating else [])
    check_combination(options, base, current)
    # virtiofs needs the guest's RAM shared with virtiofsd: memfd + shared access, set for the user
    if ensure_shared_memory(base) and not creating and not shared_memory(current):
        changes.append(entry('config', 'filesystems', 'set', before=None,
                             after=dict(memory_backing=dict(source='memfd', access='shared'))))
    if spec.get('guest_agent') is not None and set_agent_channel(base, spec['guest_agent']) and not creating:
        if has_agent_channel(current) != spec['guest_agent']:
            changes.append(entry('config', 'guest_agent', 'set', before=not spec['guest_agent'],
                                 after=spec['guest_agent']))
    # serial_console: on by default for a new guest (unless serials gives its ports); on an existing guest only
    # when the task gives it. serials and consoles are written first; serial_console false removes every serial port.
    serial = spec.get('serial_console')
    if serial is False and (any(s['state'] == 'present' for s in options.get('serials') or ())
                            or any(c['target_type'] == 'serial' for c in options.get('consoles') or ())):
        raise KvmError('serial_console: false removes every serial port; serials (or a serial entry of consoles) '
                       'asks for one - give one or the other')
    if creating and serial is None and 'serials' not in options:
        serial = True
    if serial is True and 'serials' in options and not has_serial_console(base):
        raise KvmError('serial_console: true asks for a serial port; serials leaves the guest none - give one or the other')
    if serial is not None and set_serial_console(base, serial) and not creating:
        if has_serial_console(current) != serial:
            changes.append(entry('config', 'serial_console', 'set', before=not serial, after=serial))
    elif serial is None and 'serials' not in options and has_serial_console(current) and not has_serial_console(base):
        # xml replaced the definition: the serial console it does not mention stays as it is
        devices = child(base, 'devices')
        for elem in current.findall('devices/serial'):   # libvirt adds the console on it
            devices.append(copy.deepcopy(elem))
    # The balloon is how memory changes live: a new guest gets one, an existing one when the task sets memory.
    if creating or 'memory' in spec['options'] or 'max_memory' in spec['options']:
        if ensure_balloon(base) and not creating and current.find('devices/memballoon') is None:
            changes.append(entry('config', 'memory', 'add', after=dict(memballoon='virtio')))
    set_default_boot(base)
    for item in changes:   # xml_mode replace names what the new definition drops
        if item['option'] == 'xml' and item.get('xml_mode') == 'replace':
            from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import removed_paths
            item['removed'] = removed_paths(current, base)
    return base, changes, options


# ---------------------------------------------------------------- live
def _call_action(option, call):
    """A live API call of a typed option: ``(method, number, value)`` as computed by the option's ``live``."""
    method, vcpu, value = call
    label = option
    if method == 'pinVcpuFlags':
        label = '%s.vcpupin[%d]' % (option, vcpu)
    elif method == 'pinIOThread':
        label = '%s.iothreadpin[%d]' % (option, vcpu)

    def cpumap(client, cpus):
        host = client.conn.getInfo()[2]
        if cpus and max(cpus) >= host:
            raise KvmError('%s: CPU %d does not exist on this host (%d CPUs)' % (label, max(cpus), host))
        return tuple(cpus is None or i in cpus for i in range(host))

    def do(client, dom):
        name = dom.name()
        if method == 'pinVcpuFlags':
            client.call('pinVcpuFlags %s' % name, dom.pinVcpuFlags, vcpu, cpumap(client, value), 1)
        elif method == 'pinEmulator':
            client.call('pinEmulator %s' % name, dom.pinEmulator, cpumap(client, value), 1)
        elif method == 'addIOThread':
            client.call('addIOThread %s' % name, dom.addIOThread, vcpu, 1)
        elif method == 'pinIOThread':
            client.call('pinIOThread %s' % name, dom.pinIOThread, vcpu, cpumap(client, value), 1)
        elif method == 'setBlockIoTune':   # every typed limit: 0 lifts one
            params = dict((key, (value or {}).get(key, 0)) for key in IOTUNE_KEYS)
            client.call('setBlockIoTune %s' % name, dom.setBlockIoTune, vcpu, params, 1)
        elif method == 'setNumaParameters':
            client.call('setNumaParameters %s' % name, dom.setNumaParameters, value, 1)
        else:
            client.call('setSchedulerParametersFlags %s' % name, dom.setSchedulerParametersFlags, value, 1)

    def read_back(live):
        from ansible_collections.kvmops.kvm.plugins.module_utils._facts import cputune_facts
        if method == 'addIOThread':
            return len(live.findall('iothreadids/iothread'))
        if method == 'setBlockIoTune':
            disk = next((d for d in live.findall('devices/disk') if disk_view(d)['target'] == vcpu), None)
            return disk_view(disk)['iotune'] if disk is not None else None
        if method == 'setNumaParameters':
            return live.find('numatune/memory').get('nodeset') if live.find('numatune/memory') is not None else None
        view = cputune_facts(live) or {}
        if method == 'pinIOThread':
            return next((p['cpuset'] for p in view.get('iothreadpin', []) if p['iothread'] == vcpu), None)
        if method == 'pinVcpuFlags':
            return next((p['cpuset'] for p in view.get('vcpupin', []) if p['vcpu'] == vcpu), None)
        if method == 'pinEmulator':
            return view.get('emulatorpin')
        return dict((k, view.get(k)) for k in ('shares', 'period', 'quota'))

    shown = cpuset_text(value) if isinstance(value, tuple) else value
    if method == 'setBlockIoTune':
        label, shown = option, dict(iotune=dict((k, v) for k, v in (value or {}).items() if v))
    if method == 'addIOThread':
        shown = dict(iothread_id=vcpu)
    return dict(kind='call', option=label, call=do, read_back=read_back, before=None,
                after=shown if value is not None or method == 'addIOThread' else 'all')


def _disk_spec_of(elem):
    view = disk_view(elem)
    return dict((k, v) for k, v in view.items() if k not in ('type', 'target'))


def plan_live(spec, options, wanted, live, ctx=None, before=None):
    """What to do to a running guest so that it matches the definition ``wanted``.

    Returns ``(actions, pending)``. Each action is a dict with ``kind`` in
    ``vcpus``, ``memory``, ``attach``, ``detach``, ``update`` and the data the
    API call needs; ``pending`` lists what only a restart applies.
    """
    ctx = ctx or {}
    actions = []
    pending = []
    for option in OPTIONS:
        if option.name not in options:
            continue
        value = options[option.name]
        if option.live == 'definition':   # the live XML holds what libvirt resolved at boot (firmware auto-selection)
            if before is None or not option.compare(value, option.read(before), ctx):
                pending.append(option.name)
            continue
        have = option.read(live)
        if option.compare(value, have, ctx):
            continue
        if option.live == 'none':
            continue
        if option.live == 'balloon':
            if before is not None and option.compare(value, option.read(before), ctx):
                continue
            if value <= (memory_kib(live, 'memory') or 0):
                actions.append(dict(kind='memory', option='memory', before=have, after=value))
            else:
                pending.append('memory')
        elif callable(option.live):   # a typed option's own live plan: hot-plug, API calls, or the next boot
            steps, restart = option.live(value, live, wanted)
            actions.extend(step if isinstance(step, dict) else _call_action(option.name, step) for step in steps)
            if restart:
                pending.append(option.name)
        elif option.live == 'vcpus':
            live_max = OPTIONS_BY_NAME['max_vcpus'].read(live) or 0
            if have is not None and have < value <= live_max:
                actions.append(dict(kind='vcpus', option='vcpus', before=have, after=value))
            else:
                pending.append('vcpus')
        else:
            pending.append(option.name)

    name = spec['name']
    manage_disks = spec.get('disks') is not None
    manage_cidata = spec.get('cloud_init') is not None
    if manage_disks or manage_cidata:
        def managed(elem):
            return manage_cidata if is_cidata(elem, name) else manage_disks
        given_disks = dict((d['target'], d) for d in spec.get('disks') or [])
        want = dict((disk_view(d)['target'], d) for d in wanted.findall('devices/disk') if managed(d))
        have = dict((disk_view(d)['target'], d) for d in live.findall('devices/disk') if managed(d))
        for target, elem in want.items():
            label = 'disks[%s]' % target if not is_cidata(elem, name) else 'cloud_init'
            view = disk_view(elem)
            if target not in have:
                if view['device'] == 'disk' and view['bus'] in HOTPLUG_DISK_BUSES:
                    actions.append(dict(kind='attach', option=label, xml=elem, after=_disk_summary(view)))
                else:
                    pending.append(label)
                continue
            wanted_disk = _disk_spec_of(elem)
            # I/O limits are compared live only when the task gives them (and then only those it gives)
            wanted_disk['iotune'] = (given_disks.get(target) or {}).get('iotune')
            diffs = disk_differences(wanted_disk, have[target])
            if not diffs:
                continue
            if view['device'] == 'cdrom' and media_only_change(diffs):
                actions.append(dict(kind='update', option=label, xml=elem,
                                    before=disk_view(have[target])['source'], after=view['source']))
            elif all(field == 'iotune' for field, _b, _a in diffs):   # virsh blkdeviotune --live
                actions.append(_call_action(label, ('setBlockIoTune', target, view['iotune'] or {})))
            else:
                pending.append(label)
        for target, elem in sorted(have.items()):
            if target in want:
                continue
            view = disk_view(elem)
            label = 'disks[%s]' % target
            if view['device'] == 'disk' and view['bus'] in HOTPLUG_DISK_BUSES:
                actions.append(dict(kind='detach', option=label, xml=elem, key=('disk', target),
                                    before=_disk_summary(view)))
            else:
                pending.append(label)

    if spec.get('interfaces') is not None:
        want = wanted.findall('devices/interface')
        have = dict((nic_view(i)['mac'], i) for i in live.findall('devices/interface'))
        given_extras = [k for k in NIC_EXTRAS if any(nic.get(k) is not None for nic in spec['interfaces'])]
        matched = set()
        for index, elem in enumerate(want):
            view = nic_view(elem)
            label = 'interfaces[%d]' % index
            current = have.get(view['mac']) if view['mac'] else None
            if current is None:
                actions.append(dict(kind='attach', option=label, xml=elem,
                                    after=dict((k, view[k]) for k in ('type', 'source', 'model', 'mac'))))
                continue
            matched.add(view['mac'])
            # the typed details only when the task gives them (a network's MTU or QoS in the live XML is no change)
            spec_view = dict((k, view[k]) for k in ('type', 'source', 'model', 'link_state') + tuple(given_extras))
            if 'filterref' in given_extras:
                spec_view['filterref'] = view['filterref'] or ''   # no filter in the definition: none live either
            diffs = nic_differences(spec_view, current)
            if diffs and link_only_change(diffs):   # link state, bandwidth, filter: updateDeviceFlags
                if [field for field, _b, _a in diffs] == ['link_state']:
                    before, after = nic_view(current)['link_state'], view['link_state']
                else:
                    before, after = dict((f, b) for f, b, _a in diffs), dict((f, a) for f, _b, a in diffs)
                actions.append(dict(kind='update', option=label, xml=elem, before=before, after=after))
            elif diffs:
                pending.append(label)
        for mac, elem in sorted(have.items(), key=lambda kv: str(kv[0])):
            if mac in matched:
                continue
            view = nic_view(elem)
            actions.append(dict(kind='detach', option='interfaces[mac=%s]' % mac, xml=elem,
                                key=('interface', mac), before=dict((k, view[k]) for k in ('type', 'source', 'model', 'mac'))))

    if spec.get('graphics') is not None:
        want_g = wanted.find('devices/graphics')
        have_g = live.find('devices/graphics')
        if (want_g is None) != (have_g is None):
            pending.append('graphics')
        elif want_g is not None:
            spec_g = graphics_view(want_g)
            spec_g['port'] = None if spec_g['autoport'] else spec_g['port']
            if graphics_differences(spec_g, have_g):
                pending.append('graphics')
    if spec.get('guest_agent') is not None and has_agent_channel(live) != spec['guest_agent']:
        pending.append('guest_agent')
    if spec.get('serial_console') is not None and has_serial_console(wanted) != has_serial_console(live):
        pending.append('serial_console')
    if ('memory' in options or 'max_memory' in options) and wanted.find('devices/memballoon') is not None \
            and live.find('devices/memballoon') is None:
        pending.append('memory')
    if spec.get('xml') is not None and (spec.get('xml_mode') or 'merge') == 'merge':
        # a merged xml is never applied live: elements it adds or removes wait for the next boot
        from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import merge
        _merged, log = merge(live, _xml_fragment(spec, _normalize_user_xml(spec['xml'])))
        if any(action in ('add', 'remove') for action, _path, _b, _a in log):
            pending.append('xml')
    return actions, pending
