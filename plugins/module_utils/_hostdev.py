# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_domain's option ``hostdevs``: host PCI, USB and mediated devices passed through to a guest.

The option is one line of ``_domain_xml.HARDWARE_OPTIONS``; this file holds its argument spec, its
validation (pure), its XML write, its comparison by meaning (a device is matched by its host identity: PCI
address, USB vendor and product ids or bus and device number, mdev UUID, in whatever spelling libvirt
writes them), its live plan (hot-plug and hot-unplug) and its read-only checks through libvirt's node
devices before any write: the device exists on the host and no other running guest holds it.

The domain XML is libvirt's "Host device assignment" (``<hostdev mode='subsystem' type='pci|usb|mdev'>``),
the host devices are libvirt's node devices (capabilities ``pci``, ``usb_device`` and ``mdev``).
"""

from __future__ import annotations

import copy
import re

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import (
    PCI_ADDRESS_LIMITS,
    c_number,
    hostdev_facts,
    usb_id,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, find_text, parse

TYPES = ('pci', 'usb', 'mdev')
MDEV_MODELS = ['vfio-pci', 'vfio-ccw', 'vfio-ap']
HOSTDEVS_SPEC = dict(type='list', elements='dict', options=dict(
    type=dict(type='str', choices=list(TYPES), required=True),
    address=dict(type='str'),
    vendor=dict(type='str'),
    product=dict(type='str'),
    bus=dict(type='int'),
    device=dict(type='int'),
    uuid=dict(type='str'),
    model=dict(type='str', choices=MDEV_MODELS),
    managed=dict(type='bool'),
    boot_order=dict(type='int'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
))
# the fields each type takes (type and state aside)
FIELDS = dict(
    pci=('address', 'managed', 'boot_order'),
    usb=('vendor', 'product', 'bus', 'device', 'managed', 'boot_order'),
    mdev=('uuid', 'model', 'boot_order'),
)
ALL_FIELDS = ('address', 'vendor', 'product', 'bus', 'device', 'uuid', 'model', 'managed', 'boot_order')
PCI_RE = re.compile(r'(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])')
USB_ID_RE = re.compile(r'(?:0[xX])?[0-9a-fA-F]{1,4}')
UUID_RE = re.compile(r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')
MAX_USB_BUS = 255
MAX_USB_DEVICE = 127
MAX_BOOT_ORDER = 65535


# ---------------------------------------------------------------- validation (pure)
def _pci_address(label, value):
    match = PCI_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        valid.refuse(label, 'must be a PCI address domain:bus:slot.function such as 0000:03:00.0 (hexadecimal)', value)
    parts = [int(p, 16) if p else 0 for p in match.groups()]
    for (name, limit), part in zip(PCI_ADDRESS_LIMITS, parts):
        if part > limit:
            valid.refuse(label, 'the %s is at most 0x%x' % (name, limit), value)
    return '%04x:%02x:%02x.%x' % tuple(parts)


def _usb_id(label, value):
    if not isinstance(value, str) or not USB_ID_RE.fullmatch(value):
        valid.refuse(label, 'must be a USB id of 1 to 4 hexadecimal digits as lsusb shows it, such as 046d or 0x046d', value)
    return usb_id('0x' + value.lower().replace('0x', '', 1))


def identity(dev):
    """What names the host device: ('pci', address), ('usb', vendor, product), ('usb', bus, device), ('mdev', uuid)."""
    if dev['type'] == 'pci':
        return ('pci', dev['address'])
    if dev['type'] == 'mdev':
        return ('mdev', dev['uuid'])
    return ('usb', dev.get('vendor'), dev.get('product'), dev.get('bus'), dev.get('device'))


def label_of(dev):
    kind = dev['type']
    if kind == 'pci':
        return 'hostdevs[pci %s]' % dev['address']
    if kind == 'mdev':
        return 'hostdevs[mdev %s]' % dev['uuid']
    where = 'bus %d device %d' % (dev['bus'], dev['device']) if dev.get('bus') is not None else None
    if dev.get('vendor') is not None:
        return 'hostdevs[usb %s:%s%s]' % (dev['vendor'][2:], dev['product'][2:], ' ' + where if where else '')
    return 'hostdevs[usb %s]' % where


def check_hostdevs(option, raw):
    """The normalized list: every field of every entry checked, the type's own fields only; a ValidationError
    naming the entry and field otherwise. Pure (the host is checked by :func:`inspect_hostdevs`)."""
    result, seen, orders = [], {}, {}
    for index, item in enumerate(raw):
        label = '%s[%d]' % (option, index)
        kind = item.get('type')
        if kind not in TYPES:
            valid.refuse(label + '.type', 'must be pci, usb or mdev', kind)
        for key in ALL_FIELDS:
            if item.get(key) is not None and key not in FIELDS[kind]:
                owners = ' and '.join(t for t in TYPES if key in FIELDS[t])
                valid.refuse('%s.%s' % (label, key), 'is for type %s, not %s' % (owners, kind))
        dev = dict((key, None) for key in ALL_FIELDS)
        dev.update(type=kind, state=item.get('state') or 'present')
        if kind == 'pci':
            if item.get('address') is None:
                valid.refuse(label + '.address', 'required for type pci (domain:bus:slot.function as lspci -D shows it)')
            dev['address'] = _pci_address(label + '.address', item['address'])
        elif kind == 'usb':
            for first, second in (('vendor', 'product'), ('bus', 'device')):
                if (item.get(first) is None) != (item.get(second) is None):
                    valid.refuse('%s.%s' % (label, second if item.get(first) is not None else first),
                                 'required with %s (give both)' % (first if item.get(first) is not None else second))
            if item.get('vendor') is None and item.get('bus') is None:
                valid.refuse(label, 'a usb device needs vendor and product (ids as lsusb shows them), or bus and device')
            if item.get('vendor') is not None:
                dev['vendor'] = _usb_id(label + '.vendor', item['vendor'])
                dev['product'] = _usb_id(label + '.product', item['product'])
            if item.get('bus') is not None:
                dev['bus'] = valid.count(label + '.bus', item['bus'], minimum=1, maximum=MAX_USB_BUS)
                dev['device'] = valid.count(label + '.device', item['device'], minimum=1, maximum=MAX_USB_DEVICE)
        else:
            if item.get('uuid') is None:
                valid.refuse(label + '.uuid', 'required for type mdev (the mediated device UUID)')
            if not isinstance(item['uuid'], str) or not UUID_RE.fullmatch(item['uuid']):
                valid.refuse(label + '.uuid', 'must be a UUID such as c2177883-f1bb-47f0-914d-32a22e3a8804', item['uuid'])
            dev['uuid'] = item['uuid'].lower()
            dev['model'] = item.get('model')
        if item.get('managed') is not None:
            dev['managed'] = bool(item['managed'])
        if item.get('boot_order') is not None:
            dev['boot_order'] = valid.count(label + '.boot_order', item['boot_order'], minimum=1, maximum=MAX_BOOT_ORDER)
            if dev['state'] == 'present' and dev['boot_order'] in orders:
                valid.refuse(label + '.boot_order', 'boot order %d is also %s[%d]\'s' % (dev['boot_order'], option,
                                                                                         orders[dev['boot_order']]))
            if dev['state'] == 'present':
                orders[dev['boot_order']] = index
        key = identity(dev)
        if key in seen:
            valid.refuse(label, 'the same device as %s[%d]' % (option, seen[key]))
        seen[key] = index
        result.append(dev)
    return result


# ---------------------------------------------------------------- XML
def matches(view, dev):
    """The ``<hostdev>`` (its facts ``view``) is the host device ``dev`` names."""
    if view['type'] != dev['type']:
        return False
    if dev['type'] == 'pci':
        return view['address'] == dev['address']
    if dev['type'] == 'mdev':
        return view['uuid'] == dev['uuid']
    if dev['vendor'] is None:
        return (view['bus'], view['device']) == (dev['bus'], dev['device'])
    if (view['vendor'], view['product']) != (dev['vendor'], dev['product']):
        return False
    # ids and bus/device given: one of several devices with the same ids (a definition naming the ids only is it)
    return dev['bus'] is None or view['bus'] is None or (view['bus'], view['device']) == (dev['bus'], dev['device'])


def fields_match(dev, view):
    """Every field the task gives beyond the identity equals the device's."""
    keys = ['managed', 'boot_order', 'model']
    if dev['type'] == 'usb' and dev.get('vendor') is not None:
        keys += ['bus', 'device']
    return all(view.get(k) == dev[k] for k in keys if dev.get(k) is not None)


def read_hostdevs(root):
    return [hostdev_facts(h) for h in root.findall('devices/hostdev')]


def in_place(have, dev):
    """present: the device is there with the fields given; absent: it is not there."""
    found = [view for view in have if matches(view, dev)]
    if dev['state'] == 'absent':
        return not found
    return bool(found) and fields_match(dev, found[0])


def compare_hostdevs(wanted, have, _ctx):
    return all(in_place(have, dev) for dev in wanted)


def _set_boot(elem, order):
    for node in elem.findall('boot'):
        elem.remove(node)
    node = etree.Element('boot', order=str(order))
    source = elem.find('source')
    if source is not None:
        source.addnext(node)
    else:
        elem.append(node)


def _set_usb_address(source, dev):
    address = source.find('address')
    if address is None:
        address = etree.SubElement(source, 'address')
    address.set('bus', str(dev['bus']))
    address.set('device', str(dev['device']))


def build_hostdev(dev):
    """A ``<hostdev>`` for the normalized entry ``dev`` (managed yes for a new PCI or USB device, vfio-pci for an mdev)."""
    elem = etree.Element('hostdev', mode='subsystem', type=dev['type'])
    source = etree.SubElement(elem, 'source')
    if dev['type'] == 'pci':
        elem.set('managed', 'no' if dev['managed'] is False else 'yes')
        domain, bus, rest = dev['address'].split(':')
        slot, function = rest.split('.')
        etree.SubElement(source, 'address', domain='0x' + domain, bus='0x' + bus, slot='0x' + slot,
                         function='0x' + function)
    elif dev['type'] == 'usb':
        elem.set('managed', 'no' if dev['managed'] is False else 'yes')
        if dev['vendor'] is not None:
            etree.SubElement(source, 'vendor', id=dev['vendor'])
            etree.SubElement(source, 'product', id=dev['product'])
        if dev['bus'] is not None:
            _set_usb_address(source, dev)
    else:
        elem.set('model', dev['model'] or 'vfio-pci')
        etree.SubElement(source, 'address', uuid=dev['uuid'])
    if dev['boot_order'] is not None:
        _set_boot(elem, dev['boot_order'])
    return elem


def _update(elem, dev):
    """Write the fields ``dev`` gives onto an existing ``<hostdev>`` (what it does not give stays)."""
    if dev['managed'] is not None:
        elem.set('managed', 'yes' if dev['managed'] else 'no')
    if dev['model'] is not None:
        elem.set('model', dev['model'])
    if dev['boot_order'] is not None:
        _set_boot(elem, dev['boot_order'])
    if dev['type'] == 'usb' and dev['vendor'] is not None and dev['bus'] is not None:
        _set_usb_address(elem.find('source'), dev)


def write_hostdevs(root, wanted):
    devices = root.find('devices')
    if devices is None:
        devices = etree.SubElement(root, 'devices')
    for dev in wanted:
        found = [e for e in devices.findall('hostdev') if matches(hostdev_facts(e), dev)]
        if dev['state'] == 'absent':
            for elem in found:
                devices.remove(elem)
        elif found:
            _update(found[0], dev)
        else:
            elem = build_hostdev(dev)
            same = devices.findall('hostdev')
            if same:
                same[-1].addnext(elem)
            else:
                devices.append(elem)


def present_in(root, dev):
    """The running guest's XML ``root`` still holds the device (a hot-unplug waits for the guest)."""
    return any(matches(view, dev) for view in read_hostdevs(root))


def live_hostdevs(wanted, live_root, wanted_root):
    """On a running guest a new device is hot-plugged and a removed one hot-unplugged (attachDeviceFlags and
    detachDeviceFlags); another managed flag, boot order or mdev model waits for the next boot."""
    have = live_root.findall('devices/hostdev')
    actions, restart = [], False
    for dev in wanted:
        found = [e for e in have if matches(hostdev_facts(e), dev)]
        if dev['state'] == 'absent':
            for elem in found:
                actions.append(dict(kind='detach', option=label_of(dev), xml=copy.deepcopy(elem), key=('hostdev', dev),
                                    before=hostdev_facts(elem)))
        elif not found:
            elem = next((e for e in wanted_root.findall('devices/hostdev') if matches(hostdev_facts(e), dev)), None)
            if elem is None:
                restart = True
            else:
                actions.append(dict(kind='attach', option=label_of(dev), xml=copy.deepcopy(elem), before=None,
                                    after=hostdev_facts(elem)))
        elif not fields_match(dev, hostdev_facts(found[0])):
            restart = True
    return actions, restart


def check_combination(wanted, base):
    """A hostdev boot order another device of the definition has already (libvirt refuses a shared one)."""
    for dev in wanted:
        if dev['state'] != 'present' or dev['boot_order'] is None:
            continue
        for elem in base.findall('devices/*'):
            if elem.tag == 'hostdev' and matches(hostdev_facts(elem), dev):
                continue
            if find_text(elem, 'boot/@order') == str(dev['boot_order']):
                raise KvmError('%s.boot_order: boot order %d is taken by the %s %s' % (
                    label_of(dev), dev['boot_order'], elem.tag,
                    find_text(elem, 'target/@dev') or find_text(elem, 'mac/@address') or ''))


# ---------------------------------------------------------------- host checks (read-only, before any write)
CAPS = dict(pci=('VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV', 'pci'),
            usb=('VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV', 'usb_device'),
            mdev=('VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV', 'mdev'))
MDEV_NAME_RE = re.compile(r'mdev_([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})(_.*)?')


def node_device_view(kind, text):
    """A node device's capability XML as the facts of the hostdev that would name it (None when unreadable)."""
    try:
        root = parse(text, 'node device XML')
    except KvmError:
        return None
    cap = root.find("capability[@type='%s']" % CAPS[kind][1])
    if cap is None:
        return None
    view = dict(type=kind, address=None, vendor=None, product=None, bus=None, device=None, uuid=None,
                name=find_text(root, 'name'))
    if kind == 'pci':
        parts = [c_number(find_text(cap, name), limit) for name, limit in PCI_ADDRESS_LIMITS]
        view['address'] = None if None in parts else '%04x:%02x:%02x.%x' % tuple(parts)
    elif kind == 'usb':
        view.update(vendor=usb_id(find_text(cap, 'vendor/@id')), product=usb_id(find_text(cap, 'product/@id')),
                    bus=c_number(find_text(cap, 'bus'), 0xffff), device=c_number(find_text(cap, 'device'), 0xffff))
    else:
        uuid = (find_text(cap, 'uuid') or '').strip().lower()
        match = MDEV_NAME_RE.fullmatch(view['name'] or '')
        if not uuid and match:   # older libvirt names the mdev by its UUID only
            uuid = match.group(1).replace('_', '-')
        view['uuid'] = uuid or None
    return view


def host_devices(client, kind):
    """The host's node devices of one kind (``pci``, ``usb``, ``mdev``), as views."""
    flag = getattr(libvirt, CAPS[kind][0], 0)
    try:
        devices = client.call('node devices', client.conn.listAllDevices, flag)
    except KvmError as exc:
        raise KvmError('hostdevs: cannot list the %s devices of %s to check them: %s' % (kind, client.uri, exc.msg))
    views = []
    for device in devices:
        try:
            text = device.XMLDesc(0)
        except libvirt.libvirtError:   # gone since the listing
            continue
        view = node_device_view(kind, text)
        if view is not None:
            views.append(view)
    return views


def _describe(dev):
    return label_of(dev)[len('hostdevs['):-1]


def _resolve(dev, label, devices):
    """The one host device ``dev`` names, or a KvmError saying why not."""
    if dev['type'] == 'usb':
        found = [d for d in devices
                 if (dev['vendor'] is None or (d['vendor'], d['product']) == (dev['vendor'], dev['product']))
                 and (dev['bus'] is None or (d['bus'], d['device']) == (dev['bus'], dev['device']))]
        if len(found) > 1:
            where = ', '.join('bus %s device %s' % (d['bus'], d['device'])
                              for d in sorted(found, key=lambda d: (d['bus'] or 0, d['device'] or 0)))
            raise KvmError('%s: %d USB devices on this host are %s (%s); add bus and device to name one'
                           % (label, len(found), _describe(dev), where))
    elif dev['type'] == 'pci':
        found = [d for d in devices if d['address'] == dev['address']]
    else:
        found = [d for d in devices if d['uuid'] == dev['uuid']]
    if not found:
        what = dict(pci='PCI device', usb='USB device', mdev='mediated device')[dev['type']]
        raise KvmError('%s: no %s %s on this host (libvirt\'s node devices; see virsh nodedev-list --cap %s)'
                       % (label, what, _describe(dev), CAPS[dev['type']][1]))
    return found[0]


def _holds(view, host):
    """The hostdev facts ``view`` of some guest name the host device ``host`` (every field it gives agrees)."""
    if view['type'] != host['type']:
        return False
    if host['type'] == 'pci':
        return view['address'] == host['address']
    if host['type'] == 'mdev':
        return view['uuid'] == host['uuid']
    if view['vendor'] is None and view['bus'] is None:
        return False
    return ((view['vendor'] is None or (view['vendor'], view['product']) == (host['vendor'], host['product']))
            and (view['bus'] is None or (view['bus'], view['device']) == (host['bus'], host['device'])))


def running_holders(client, name):
    """``(guest, hostdev facts)`` of every other running guest (their live XML)."""
    flag = getattr(libvirt, 'VIR_CONNECT_LIST_DOMAINS_ACTIVE', 1)
    holders = []
    for dom in client.call('running guests', client.conn.listAllDomains, flag):
        try:
            guest = dom.name()
            if guest == name:
                continue
            root = parse(dom.XMLDesc(0), 'domain XML')
        except (libvirt.libvirtError, KvmError):   # stopped or gone since the listing
            continue
        holders.extend((guest, view) for view in read_hostdevs(root))
    return holders


def _passthrough(client, root):
    """What the running guest's host can pass through: (PCI backends, subsystem types) from libvirt's domain
    capabilities for its emulator, arch, machine and domain type; None when libvirt does not say."""
    os_type = root.find('os/type')
    try:
        text = client.conn.getDomainCapabilities(find_text(root, 'devices/emulator'), os_type.get('arch'),
                                                 os_type.get('machine'), root.get('type'), 0)
        hostdev = parse(text, 'domain capabilities').find('devices/hostdev')
    except (libvirt.libvirtError, KvmError, AttributeError):
        return None
    if hostdev is None:
        return None
    return ([v.text for v in hostdev.findall("enum[@name='pciBackend']/value")],
            [v.text for v in hostdev.findall("enum[@name='subsysType']/value")])


def inspect_hostdevs(client, name, wanted):
    """Every device this run adds to the definition exists on the host and no other running guest holds it;
    on a running guest, the host can hot-plug a PCI or mediated device at all (read-only; check mode runs it
    too). A KvmError naming the entry otherwise. A device the definition has already is no write: it is not
    refused (a USB device unplugged from the host leaves a run that changes nothing unchanged)."""
    present = [(index, dev) for index, dev in enumerate(wanted) if dev['state'] == 'present']
    dom = client.find_domain(name) if present else None
    if dom is not None:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE
        have = read_hostdevs(parse(client.call('domain %s' % name, dom.XMLDesc, flags), 'domain XML'))
        present = [(index, dev) for index, dev in present if not any(matches(view, dev) for view in have)]
    if not present:
        return
    devices = {}
    resolved = []
    taken = {}
    for index, dev in present:
        if dev['type'] not in devices:
            devices[dev['type']] = host_devices(client, dev['type'])
        host = _resolve(dev, 'hostdevs[%d]' % index, devices[dev['type']])
        if host['name'] in taken:   # a USB device named once by its ids and once by its bus and device
            raise KvmError('hostdevs[%d]: %s is the host device %s that hostdevs[%d] names already'
                           % (index, _describe(dev), host['name'], taken[host['name']]))
        taken[host['name']] = index
        resolved.append((index, dev, host))
    holders = running_holders(client, name)
    for index, dev, host in resolved:
        for guest, view in holders:
            if _holds(view, host):
                raise KvmError('hostdevs[%d]: %s is assigned to the running guest %s; a host device is passed through '
                               'to one running guest at a time (detach it there first)' % (index, _describe(dev), guest))
    if dom is None or not client.call('domain %s' % name, dom.isActive) or all(d['type'] == 'usb' for _i, d in present):
        return
    # The definition is written before the hot-plug: a hot-plug libvirt cannot do is refused before that write.
    offer = _passthrough(client, parse(client.call('domain %s' % name, dom.XMLDesc, 0), 'domain XML'))
    if offer is None:
        return
    backends, types = offer
    for index, dev in present:
        if (dev['type'] == 'pci' and not backends) or (dev['type'] == 'mdev' and 'mdev' not in types):
            raise KvmError('hostdevs[%d]: %s cannot be hot-plugged into the running guest %s: this host offers no %s '
                           'passthrough (libvirt\'s domain capabilities list no VFIO backend; is the IOMMU enabled, '
                           'intel_iommu=on or amd_iommu=on?); nothing was changed'
                           % (index, _describe(dev), name, 'PCI' if dev['type'] == 'pci' else 'mediated device'))
