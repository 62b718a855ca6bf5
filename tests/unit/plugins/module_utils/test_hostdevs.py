"""kvm_domain's option ``hostdevs`` (issue 16): host PCI, USB and mediated devices.

* options -> XML -> facts for a PCI device, a USB device by vendor and product, by bus and device, by both, and a
  mediated device; libvirt's other spellings (decimal, upper case, no domain) are the same device, no change;
* refusals of malformed values naming the entry and field (hostile values included), before anything is read;
* the live plan: hot-plug, hot-unplug, the rest at the next boot;
* the read-only host checks through libvirt's node devices, on libvirt's test:/// driver with a node that has PCI,
  USB and mediated devices and a RUNNING guest holding some of them (tests/unit/fixtures/hostdev_node.xml): a
  device the host does not have, a device the running guest holds (in another spelling), an ambiguous USB vendor
  and product are refused with nothing defined, in check mode too; a free device is defined, read back, and a
  second run is no change.
"""

import os

import pytest
from test_domain import CTX, CountingConn, guest_module, params, vm01

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, Manager, validate
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import plan_config, plan_live
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_xml_facts, hostdev_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, parse, to_string

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')
NODE = os.path.join(FIXTURES, 'hostdev_node.xml')
SUB = ARGUMENT_SPEC['hostdevs']['options']


def filled(items):
    """hostdevs as AnsibleModule fills them (suboption defaults)."""
    return [dict(dict((k, v.get('default')) for k, v in SUB.items()), **item) for item in items]


def spec_of(items, name='vm01', **kw):
    return validate(params(name=name, hostdevs=filled(items), **kw))


def plan(current, items):
    return plan_config(spec_of(items), current, CTX)


def with_hostdevs(*xml):
    root = vm01()
    devices = root.find('devices')
    for text in xml:
        devices.append(etree.fromstring(text))
    return root


# ---------------------------------------------------------------- round trips (pure)
ROUND_TRIPS = [
    (dict(type='pci', address='0000:03:00.0'),
     "devices/hostdev[@mode='subsystem'][@type='pci'][@managed='yes']/source/address"
     "[@domain='0x0000'][@bus='0x03'][@slot='0x00'][@function='0x0']",
     dict(type='pci', address='0000:03:00.0', managed=True, boot_order=None)),
    (dict(type='pci', address='0a:1f.7', managed=False, boot_order=3),
     "devices/hostdev[@type='pci'][@managed='no'][boot/@order='3']/source/address[@bus='0x0a'][@slot='0x1f'][@function='0x7']",
     dict(type='pci', address='0000:0a:1f.7', managed=False, boot_order=3)),
    (dict(type='usb', vendor='046D', product='0xc52b'),
     "devices/hostdev[@type='usb'][@managed='yes']/source[vendor/@id='0x046d'][product/@id='0xc52b']",
     dict(type='usb', vendor='0x046d', product='0xc52b', bus=None, device=None, managed=True)),
    (dict(type='usb', bus=2, device=7),
     "devices/hostdev[@type='usb']/source/address[@bus='2'][@device='7']",
     dict(type='usb', vendor=None, product=None, bus=2, device=7)),
    (dict(type='usb', vendor='951', product='1666', bus=3, device=4),
     "devices/hostdev[@type='usb']/source[vendor/@id='0x0951'][product/@id='0x1666']/address[@bus='3'][@device='4']",
     dict(type='usb', vendor='0x0951', product='0x1666', bus=3, device=4)),
    (dict(type='mdev', uuid='C2177883-F1BB-47F0-914D-32A22E3A8804'),
     "devices/hostdev[@mode='subsystem'][@type='mdev'][@model='vfio-pci']/source/address"
     "[@uuid='c2177883-f1bb-47f0-914d-32a22e3a8804']",
     dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804', model='vfio-pci', managed=None)),
    (dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804', model='vfio-ap'),
     "devices/hostdev[@type='mdev'][@model='vfio-ap']", dict(type='mdev', model='vfio-ap')),
]


@pytest.mark.parametrize('item, xpath, fact', ROUND_TRIPS)
def test_option_to_xml_to_facts_and_stable(item, xpath, fact):
    desired, changes, _options = plan(vm01(), [item])
    assert [c['option'] for c in changes] == ['hostdevs'], changes
    assert len(desired.xpath(xpath)) == 1, to_string(desired)
    stored = parse(to_string(desired))
    assert plan(stored, [item])[1] == []   # the same request again: no change
    [view] = domain_xml_facts(stored)['hostdevs']
    assert dict((k, view[k]) for k in fact) == fact


def test_libvirt_spellings_are_the_same_device():
    current = with_hostdevs(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0' bus='3' slot='0x0' function='0'/></source><alias name='hostdev0'/></hostdev>",
        "<hostdev mode='subsystem' type='usb' managed='no'><source><vendor id='0x046D'/><product id='0XC52B'/>"
        "<address bus='001' device='5'/></source><boot order='4'/></hostdev>",
        "<hostdev mode='subsystem' type='mdev' model='vfio-ccw' managed='no'><source>"
        "<address uuid='C2177883-F1BB-47F0-914D-32A22E3A8804'/></source></hostdev>")
    items = [dict(type='pci', address='03:00.0', managed=True), dict(type='usb', vendor='46d', product='c52b', boot_order=4),
             dict(type='usb', bus=1, device=5, managed=False), dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804')]
    desired, changes, _options = plan(current, items)
    assert changes == [] and len(desired.findall('devices/hostdev')) == 3
    # octal, as libvirt reads it (C strtol base 0): bus 010 is 8
    view = hostdev_facts(etree.fromstring("<hostdev type='usb'><source><address bus='010' device='0x0a'/></source></hostdev>"))
    assert (view['bus'], view['device']) == (8, 10)
    # a field the task gives that differs is a change of that device only, in place
    desired, changes, _options = plan(current, [dict(type='pci', address='0000:03:00.0', managed=False)])
    assert [c['option'] for c in changes] == ['hostdevs']
    [pci] = desired.findall("devices/hostdev[@type='pci']")
    assert pci.get('managed') == 'no' and pci.find('alias') is not None


def test_untrusted_hypervisor_values_read_as_unknown():
    for text in ("<hostdev type='pci'><source><address domain='0' bus='0x100' slot='0' function='0'/></source></hostdev>",
                 "<hostdev type='pci'><source><address bus='3' slot='0x20' function='0'/></source></hostdev>",
                 "<hostdev type='pci'><source><address bus='3\n' slot='zz' function='9'/></source></hostdev>",
                 "<hostdev type='pci'><source/></hostdev>"):
        assert hostdev_facts(etree.fromstring(text))['address'] is None
    view = hostdev_facts(etree.fromstring(
        "<hostdev type='usb'><source><vendor id='0x1_0'/><product id='%s'/><address bus='-1' device='99999999999999'/>"
        "</source></hostdev>" % ('9' * 5000)))
    assert (view['vendor'], view['product'], view['bus'], view['device']) == (None, None, None, None)
    assert hostdev_facts(etree.fromstring("<hostdev type='mdev'><source><address uuid='../../x'/></source></hostdev>"))['uuid'] is None
    view = hostdev_facts(etree.fromstring("<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/>"
                                          "<address bus='0' target='0' unit='0'/></source></hostdev>"))
    assert view['type'] == 'scsi' and view['address'] is None and view['managed'] is None


def test_two_usb_devices_with_the_same_ids_told_apart_by_bus_and_device():
    current = with_hostdevs("<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x0951'/>"
                            "<product id='0x1666'/><address bus='2' device='3'/></source></hostdev>")
    items = [dict(type='usb', vendor='0951', product='1666', bus=2, device=3),
             dict(type='usb', vendor='0951', product='1666', bus=3, device=4)]
    desired, changes, _options = plan(current, items)
    assert [c['option'] for c in changes] == ['hostdevs']
    views = domain_xml_facts(desired)['hostdevs']
    assert [(v['vendor'], v['bus'], v['device']) for v in views] == [('0x0951', 2, 3), ('0x0951', 3, 4)]
    assert plan(parse(to_string(desired)), items)[1] == []
    # the ids alone name the device the definition has; removing bus 3 device 4 leaves bus 2 device 3
    assert plan(current, [dict(type='usb', vendor='0951', product='1666')])[1] == []
    gone, _changes, _options = plan(parse(to_string(desired)), [dict(items[1], state='absent')])
    assert [(v['bus'], v['device']) for v in domain_xml_facts(gone)['hostdevs']] == [(2, 3)]


def test_absent_removes_only_the_device_named_and_others_stay():
    current = with_hostdevs(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>",
        "<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address bus='0' target='0' unit='0'/></source></hostdev>")
    desired, changes, _options = plan(current, [dict(type='pci', address='0000:03:00.0', state='absent'),
                                                dict(type='usb', vendor='046d', product='c52b', state='absent')])
    assert [c['option'] for c in changes] == ['hostdevs']
    assert [h.get('type') for h in desired.findall('devices/hostdev')] == ['scsi']
    assert plan(parse(to_string(desired)), [dict(type='pci', address='0000:03:00.0', state='absent')])[1] == []


def test_boot_order_clash_with_a_disk_is_refused_before_any_write():
    current = vm01()
    current.find('devices/disk').append(etree.Element('boot', order='1'))
    with pytest.raises(KvmError, match=r'^hostdevs\[pci 0000:03:00.0\].boot_order: boot order 1 is taken by the disk vda'):
        plan(current, [dict(type='pci', address='0000:03:00.0', boot_order=1)])
    desired, _changes, _options = plan(current, [dict(type='pci', address='0000:03:00.0', boot_order=2)])
    assert desired.find('os/boot') is None   # per-device boot orders: no <os><boot dev=...>


# ---------------------------------------------------------------- refusals (pure, before anything is read)
BAD = [
    (dict(type='pci'), r'^hostdevs\[0\]\.address: required for type pci'),
    (dict(type='pci', address='0000:03:00'), r'^hostdevs\[0\]\.address: must be a PCI address domain:bus:slot.function'),
    (dict(type='pci', address='0000:03:00.8'), r'^hostdevs\[0\]\.address: must be a PCI address'),
    (dict(type='pci', address='0000:03:20.0'), r'^hostdevs\[0\]\.address: the slot is at most 0x1f'),
    (dict(type='pci', address='10000:03:00.0'), r'^hostdevs\[0\]\.address: must be a PCI address'),
    (dict(type='pci', address='../../sys/bus/pci'), r'^hostdevs\[0\]\.address: must be a PCI address'),
    (dict(type='pci', address='0000:03:00.0\n'), r"^hostdevs\[0\]\.address: must be a PCI address .*\\n"),
    (dict(type='pci', address="0000:03:00.0'/><hostdev type='pci"), r'^hostdevs\[0\]\.address: must be a PCI address'),
    (dict(type='pci', address='0000:03:00.0', vendor='046d'), r'^hostdevs\[0\]\.vendor: is for type usb, not pci'),
    (dict(type='pci', address='0000:03:00.0', model='vfio-pci'), r'^hostdevs\[0\]\.model: is for type mdev, not pci'),
    (dict(type='pci', address='0000:03:00.0', boot_order=0), r'^hostdevs\[0\]\.boot_order: must be at least 1'),
    (dict(type='pci', address='0000:03:00.0', boot_order=2 ** 64), r'^hostdevs\[0\]\.boot_order: must be at most 65535'),
    (dict(type='usb'), r'^hostdevs\[0\]: a usb device needs vendor and product'),
    (dict(type='usb', vendor='046d'), r'^hostdevs\[0\]\.product: required with vendor'),
    (dict(type='usb', device=3), r'^hostdevs\[0\]\.bus: required with device'),
    (dict(type='usb', vendor='046dd', product='c52b'), r'^hostdevs\[0\]\.vendor: must be a USB id of 1 to 4 hexadecimal digits'),
    (dict(type='usb', vendor='046d', product='-1'), r'^hostdevs\[0\]\.product: must be a USB id'),
    (dict(type='usb', vendor='0x', product='c52b'), r'^hostdevs\[0\]\.vendor: must be a USB id'),
    (dict(type='usb', vendor='046d\nc52b', product='c52b'), r'^hostdevs\[0\]\.vendor: must be a USB id'),
    (dict(type='usb', bus=0, device=1), r'^hostdevs\[0\]\.bus: must be at least 1'),
    (dict(type='usb', bus=10 ** 30, device=1), r'^hostdevs\[0\]\.bus: must be at most 255'),
    (dict(type='usb', bus=1, device=128), r'^hostdevs\[0\]\.device: must be at most 127'),
    (dict(type='usb', bus=1, device=2, address='0000:03:00.0'), r'^hostdevs\[0\]\.address: is for type pci, not usb'),
    (dict(type='usb', bus=1, device=2, uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'), r'^hostdevs\[0\]\.uuid: is for type mdev'),
    (dict(type='mdev'), r'^hostdevs\[0\]\.uuid: required for type mdev'),
    (dict(type='mdev', uuid='c2177883f1bb47f0914d32a22e3a8804x'), r'^hostdevs\[0\]\.uuid: must be a UUID'),
    (dict(type='mdev', uuid='../../../../etc/passwd'), r'^hostdevs\[0\]\.uuid: must be a UUID'),
    (dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804', managed=True), r'^hostdevs\[0\]\.managed: is for type pci and usb, not mdev'),
]


@pytest.mark.parametrize('item, message', BAD)
def test_bad_entries_are_refused_naming_the_field(item, message):
    with pytest.raises(ValidationError, match=message):
        spec_of([item])


def test_the_same_device_twice_and_a_shared_boot_order_are_refused():
    with pytest.raises(ValidationError, match=r'^hostdevs\[1\]: the same device as hostdevs\[0\]'):
        spec_of([dict(type='pci', address='0000:03:00.0'), dict(type='pci', address='03:00.0', state='absent')])
    with pytest.raises(ValidationError, match=r'^hostdevs\[1\]: the same device as hostdevs\[0\]'):
        spec_of([dict(type='usb', vendor='046d', product='c52b'), dict(type='usb', vendor='0x046D', product='0xC52B')])
    with pytest.raises(ValidationError, match=r"^hostdevs\[1\]\.boot_order: boot order 2 is also hostdevs\[0\]'s"):
        spec_of([dict(type='pci', address='0000:03:00.0', boot_order=2), dict(type='usb', bus=1, device=2, boot_order=2)])
    # an entry that removes a device frees its boot order
    spec_of([dict(type='pci', address='0000:03:00.0', boot_order=2, state='absent'), dict(type='usb', bus=1, device=2, boot_order=2)])


# ---------------------------------------------------------------- live plan (pure)
def test_live_plan_hot_plugs_unplugs_and_leaves_the_rest_for_the_next_boot():
    live = with_hostdevs(
        "<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x046d'/><product id='0xc52b'/>"
        "</source><alias name='hostdev0'/></hostdev>",
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x04' slot='0x00' function='0x1'/>"
        "</source><alias name='hostdev1'/></hostdev>")
    spec = spec_of([dict(type='pci', address='0000:03:00.0'), dict(type='usb', vendor='046d', product='c52b', state='absent'),
                    dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804')])
    wanted, _changes, options = plan_config(spec, live, CTX)
    actions, pending = plan_live(spec, options, wanted, live, CTX, before=live)
    assert pending == []
    assert [(a['kind'], a['option']) for a in actions] == [
        ('attach', 'hostdevs[pci 0000:03:00.0]'), ('detach', 'hostdevs[usb 046d:c52b]'),
        ('attach', 'hostdevs[mdev c2177883-f1bb-47f0-914d-32a22e3a8804]')]
    assert actions[0]['xml'].xpath("source/address[@bus='0x03']") and actions[1]['xml'].find('alias') is not None
    assert actions[1]['key'][0] == 'hostdev' and actions[1]['before']['vendor'] == '0x046d'
    # another managed flag of a device the running guest has: the next boot
    spec = spec_of([dict(type='pci', address='0000:04:00.1', managed=False)])
    wanted, changes, options = plan_config(spec, live, CTX)
    assert [c['option'] for c in changes] == ['hostdevs']
    assert plan_live(spec, options, wanted, live, CTX, before=live) == ([], ['hostdevs'])
    # already there: nothing to do
    spec = spec_of([dict(type='pci', address='04:00.1')])
    wanted, changes, options = plan_config(spec, live, CTX)
    assert changes == [] and plan_live(spec, options, wanted, live, CTX, before=live) == ([], [])


# ---------------------------------------------------------------- host checks through the Manager (test:/// driver)
@pytest.fixture
def node_client():
    """kvm_domain's Manager on libvirt's test driver with hostdev_node.xml, its libvirt writes logged."""
    client = LibvirtClient(guest_module(name='x'), uri='test://' + NODE)
    log = []
    client._conn = CountingConn(client.conn, log)
    client.write_log = log
    yield client
    client.close()


def converge(client, args, check=False):
    module = guest_module(check_mode=check, **dict(args, hostdevs=filled(args['hostdevs'])))
    module.params['uri'] = 'test://' + NODE
    client.module = module
    return Manager(client, module).run()


GUEST = dict(name='kvmops-unit-hostdev', memory='128MiB', virt_type='qemu', graphics=dict(type='none'))
REFUSED = [
    ([dict(type='pci', address='0000:09:00.0')],
     r"^hostdevs\[0\]: no PCI device pci 0000:09:00.0 on this host \(libvirt's node devices"),
    ([dict(type='usb', vendor='dead', product='beef')], r'^hostdevs\[0\]: no USB device usb dead:beef on this host'),
    ([dict(type='usb', bus=4, device=9)], r'^hostdevs\[0\]: no USB device usb bus 4 device 9 on this host'),
    ([dict(type='usb', vendor='046d', product='c52b', bus=2, device=3)], r'^hostdevs\[0\]: no USB device usb 046d:c52b'),
    ([dict(type='mdev', uuid='99999999-2222-3333-4444-555555555555')],
     r'^hostdevs\[0\]: no mediated device mdev 99999999-2222-3333-4444-555555555555 on this host'),
    ([dict(type='usb', vendor='046d', product='c52b'), dict(type='usb', bus=1, device=1), dict(type='usb', bus=1, device=5)],
     r'^hostdevs\[2\]: usb bus 1 device 5 is the host device usb_1_5 that hostdevs\[0\] names already'),
    ([dict(type='usb', vendor='0951', product='1666')],
     r'^hostdevs\[0\]: 2 USB devices on this host are usb 0951:1666 \(bus 2 device 3, bus 3 device 4\); add bus and device'),
    # held by the running guest "holder", which names them in other spellings
    ([dict(type='pci', address='0000:04:00.1'), dict(type='pci', address='0000:03:00.0')],
     r'^hostdevs\[1\]: pci 0000:03:00.0 is assigned to the running guest holder; a host device is passed through '
     r'to one running guest at a time'),
    ([dict(type='usb', vendor='46d', product='C52B')], r'^hostdevs\[0\]: usb 046d:c52b is assigned to the running guest holder'),
    ([dict(type='mdev', uuid='11111111-2222-3333-4444-555555555555')],
     r'^hostdevs\[0\]: mdev 11111111-2222-3333-4444-555555555555 is assigned to the running guest holder'),
]


@pytest.mark.parametrize('check', [True, False])
@pytest.mark.parametrize('items, message', REFUSED)
def test_host_checks_refuse_before_any_write(node_client, items, message, check):
    with pytest.raises(KvmError, match=message):
        converge(node_client, dict(GUEST, hostdevs=items), check=check)
    assert node_client.write_log == [] and node_client.find_domain(GUEST['name']) is None


def test_free_devices_are_defined_read_back_and_stable(node_client):
    items = [dict(type='pci', address='04:00.1', managed=False, boot_order=2), dict(type='usb', vendor='1d6b', product='0002'),
             dict(type='usb', vendor='0951', product='1666', bus=3, device=4),
             dict(type='mdev', uuid='c2177883-f1bb-47f0-914d-32a22e3a8804')]
    args = dict(GUEST, hostdevs=items)
    try:
        first = converge(node_client, args, check=True)
        assert first['changed'] is True and node_client.write_log == [] and node_client.find_domain(GUEST['name']) is None
        real = converge(node_client, args)
        assert real['changed'] is True and node_client.write_log == ['defineXMLFlags']
        stored = parse(node_client.find_domain(GUEST['name']).XMLDesc(0))   # what libvirt stored, not what the module says
        views = [hostdev_facts(h) for h in stored.findall('devices/hostdev')]
        assert [(v['type'], v['address'] or v['vendor'] or v['uuid'], v['managed'], v['boot_order']) for v in views] == [
            ('pci', '0000:04:00.1', False, 2), ('usb', '0x1d6b', True, None), ('usb', '0x0951', True, None),
            ('mdev', 'c2177883-f1bb-47f0-914d-32a22e3a8804', None, None)]
        assert (views[2]['bus'], views[2]['device']) == (3, 4) and views[3]['model'] == 'vfio-pci'
        assert real['domain']['hostdevs'] == views
        again = converge(node_client, args)
        assert again['changed'] is False and node_client.write_log == ['defineXMLFlags']
        gone = converge(node_client, dict(GUEST, hostdevs=[dict(type='usb', vendor='1d6b', product='2', state='absent')]))
        assert gone['changed'] is True and len(gone['domain']['hostdevs']) == 3
        assert len(parse(node_client.find_domain(GUEST['name']).XMLDesc(0)).findall('devices/hostdev')) == 3
    finally:
        dom = node_client.find_domain(GUEST['name'])
        if dom is not None:
            dom.undefine()


def test_a_device_the_definition_has_already_is_no_write_and_not_refused(node_client):
    """Only the devices a run adds are checked: a device gone from the host (an unplugged USB stick) or held by a
    running guest leaves a run that changes nothing unchanged; a new missing device is still refused."""
    name = GUEST['name']
    node_client.conn.defineXML("<domain type='test'><name>%s</name><memory unit='MiB'>128</memory><os><type>hvm</type></os>"
                               "<devices><hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0xdead'/>"
                               "<product id='0xbeef'/></source></hostdev><hostdev mode='subsystem' type='pci' managed='yes'>"
                               "<source><address domain='0' bus='3' slot='0' function='0'/></source></hostdev></devices></domain>" % name)
    node_client.write_log[:] = []
    try:
        same = [dict(type='usb', vendor='dead', product='beef'), dict(type='pci', address='0000:03:00.0')]
        for check in (True, False):
            result = converge(node_client, dict(name=name, hostdevs=same), check=check)
            assert result['changed'] is False and node_client.write_log == []
        with pytest.raises(KvmError, match=r'^hostdevs\[2\]: no USB device usb dead:bef0 on this host'):
            converge(node_client, dict(name=name, hostdevs=same + [dict(type='usb', vendor='dead', product='bef0')]))
        assert node_client.write_log == []
    finally:
        node_client.find_domain(name).undefine()


def test_the_guest_that_holds_a_device_is_not_refused_its_own(node_client):
    result = converge(node_client, dict(name='holder', hostdevs=[dict(type='pci', address='0000:03:00.0'),
                                                                 dict(type='usb', bus=1, device=5)]))
    assert result['changed'] is False and node_client.write_log == []


class CapsConn(CountingConn):
    """The test driver's connection, answering getDomainCapabilities with a fixture (the test driver has none)."""

    def __init__(self, conn, log, caps):
        CountingConn.__init__(self, conn, log)
        self._caps = caps

    def getDomainCapabilities(self, *_args):
        return self._caps


def _domcaps(vfio):
    with open(os.path.join(FIXTURES, 'domcaps_qemu.xml')) as handle:   # pciBackend empty: a host without an IOMMU
        text = handle.read()
    assert "<enum name='pciBackend'/>" in text
    return text.replace("<enum name='pciBackend'/>", "<enum name='pciBackend'><value>vfio</value></enum>") if vfio else text


def test_hot_plug_the_host_cannot_do_is_refused_before_the_definition_is_written(node_client):
    """A PCI device for a running guest on a host whose domain capabilities list no VFIO backend (no IOMMU): the
    definition would be written before libvirt refuses the hot-plug, so the module refuses first, in check mode too."""
    node_client._conn = CapsConn(node_client._conn._conn, node_client.write_log, _domcaps(vfio=False))
    before = node_client.find_domain('holder').XMLDesc(2)   # VIR_DOMAIN_XML_INACTIVE
    for check in (True, False):
        with pytest.raises(KvmError, match=r"^hostdevs\[0\]: pci 0000:04:00.1 cannot be hot-plugged into the running guest "
                                           r"holder: this host offers no PCI passthrough \(libvirt's domain capabilities"):
            converge(node_client, dict(name='holder', hostdevs=[dict(type='pci', address='0000:04:00.1')]), check=check)
    assert node_client.write_log == [] and node_client.find_domain('holder').XMLDesc(2) == before
    # a USB device needs no VFIO: planned (check mode) as a definition change and a hot-plug
    result = converge(node_client, dict(name='holder', hostdevs=[dict(type='usb', vendor='1d6b', product='0002')]), check=True)
    assert [(c['scope'], c['option']) for c in result['changes']] == [('config', 'hostdevs'), ('live', 'hostdevs[usb 1d6b:0002]')]
    # with a VFIO backend the PCI device is planned the same way
    node_client._conn._caps = _domcaps(vfio=True)
    result = converge(node_client, dict(name='holder', hostdevs=[dict(type='pci', address='0000:04:00.1')]), check=True)
    assert [(c['scope'], c['option'], c['action']) for c in result['changes']] == [
        ('config', 'hostdevs', 'set'), ('live', 'hostdevs[pci 0000:04:00.1]', 'attach')]
    assert result['pending_restart'] == [] and node_client.write_log == []


def test_kvm_guests_takes_hostdevs_per_guest_and_a_refusal_fails_that_guest_alone():
    from fakes import FakeModule
    from ansible_collections.kvmops.kvm.plugins.module_utils import _fleet
    guests = [dict(name='kvmops-unit-fleet-hd-0', hostdevs=[dict(type='pci', address='04:00.1', managed=False)]),
              dict(name='kvmops-unit-fleet-hd-1', hostdevs=[dict(type='pci', address='0000:03:00.0')]),
              dict(name='kvmops-unit-fleet-hd-2', hostdevs=[dict(type='usb', bus=2 ** 40, device=1)])]
    module = FakeModule(dict(guests=guests, defaults=dict(memory='64MiB', virt_type='qemu', graphics=dict(type='none')),
                             concurrency=1, fail_fast=False, unlisted='report', uri='test://' + NODE, uri_allow_ext=False),
                        check_mode=True)
    with pytest.raises(SystemExit):
        _fleet.main(module)
    results = module.fail_args['results']
    assert results[0]['changed'] is True and not results[0].get('failed')
    assert results[0]['domain']['hostdevs'][0]['address'] == '0000:04:00.1'
    assert results[1]['failed'] is True and results[1]['msg'].startswith(
        'hostdevs[0]: pci 0000:03:00.0 is assigned to the running guest holder')
    assert results[2]['failed'] is True and results[2]['msg'].startswith('hostdevs[0].bus: must be at most 255')
