"""kvm_domain's option ``hostdevs`` against the real qemu:///system (issue 16).

This machine has no IOMMU and no device to pass through, so no guest here ever runs with a host device: real
assignment and hot-plug are not proven here (docs/guests.md says so). What is proven against the real daemon:

* ``test_refusals_define_nothing``: a PCI address, USB vendor and product ids, a USB bus and device number and a
  mediated device UUID the host does not have (libvirt's node devices), and malformed or hostile values, each
  refused with a message naming the entry, in a real run and in check mode, with no guest defined
  (``lookupByName`` raises) and no traceback;
* ``test_host_pci_device_in_a_stopped_guest``: one of the host's own PCI devices (from ``listAllDevices``) in the
  definition of a guest that is never started, ``managed: false`` (libvirt never touches an unmanaged device, and
  does nothing to any device while the guest is stopped): the four-step proof (check mode, real, check mode again,
  real again), libvirt's stored XML read back, kvm_info's facts, and ``state: absent`` removing it;
* ``test_hot_plug_without_iommu_is_refused_before_any_write``: the same device for a RUNNING OS-less guest on
  this host, whose domain capabilities list no VFIO backend: the hot-plug cannot work and the definition would
  be written before it, so the module refuses first (real run and check mode): the definition and the running
  guest are unchanged.

The refusal of a device another RUNNING guest holds needs a running guest with a host device, which libvirt does
not start without an IOMMU: tests/unit/plugins/module_utils/test_hostdevs.py proves it on libvirt's test:/// driver.
"""

import json
import re
import uuid

import pytest

from conftest import osless_virt_type


def _libvirt():
    import libvirt
    return libvirt


def _play(tmp_path, tasks):
    path = tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps([dict(hosts='localhost', gather_facts=False, tasks=tasks)], indent=1))
    return str(path)


def _defined(conn, name):
    libvirt = _libvirt()
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        assert exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        return False
    return True


def _remove(conn, name):
    libvirt = _libvirt()
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


@pytest.fixture
def name(conn, unique):
    yield unique
    _remove(conn, unique)


def _host_usb(conn):
    libvirt = _libvirt()
    from lxml import etree
    found = []
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV):
        cap = etree.fromstring(dev.XMLDesc(0)).find("capability[@type='usb_device']")
        found.append((cap.find('vendor').get('id'), int(cap.findtext('bus')), int(cap.findtext('device'))))
    return found


NO_MDEV = str(uuid.uuid4())
CASES = [
    ('pci-missing', [dict(type='pci', address='ffff:fe:1f.7')], r"^hostdevs\[0\]: no PCI device pci ffff:fe:1f.7 on this host"),
    ('usb-ids-missing', [dict(type='usb', vendor='fffe', product='fffd')], r'^hostdevs\[0\]: no USB device usb fffe:fffd on this host'),
    ('usb-address-missing', [dict(type='usb', bus=255, device=127)], r'^hostdevs\[0\]: no USB device usb bus 255 device 127 on this host'),
    ('mdev-missing', [dict(type='mdev', uuid=NO_MDEV)], r'^hostdevs\[0\]: no mediated device mdev %s on this host' % NO_MDEV),
    ('second-entry-missing', [dict(type='pci', address='HOST', managed=False), dict(type='pci', address='ffff:fe:1f.6')],
     r'^hostdevs\[1\]: no PCI device pci ffff:fe:1f.6'),
    ('pci-dotdot', [dict(type='pci', address='../../../sys/bus/pci/devices')], r'^hostdevs\[0\]\.address: must be a PCI address'),
    ('pci-newline', [dict(type='pci', address='0000:00:00.0\n0000:00:01.0')], r'^hostdevs\[0\]\.address: must be a PCI address'),
    ('pci-slot-range', [dict(type='pci', address='0000:00:20.0')], r'^hostdevs\[0\]\.address: the slot is at most 0x1f'),
    ('usb-vendor-not-hex', [dict(type='usb', vendor='zzzz', product='0001')], r'^hostdevs\[0\]\.vendor: must be a USB id'),
    ('usb-bus-huge', [dict(type='usb', bus=99999999999999999999, device=1)], r'^hostdevs\[0\]\.bus: must be at most 255'),
    ('usb-product-alone', [dict(type='usb', product='0001')], r'^hostdevs\[0\]\.vendor: required with product'),
    ('mdev-bad-uuid', [dict(type='mdev', uuid="1'/><disk")], r'^hostdevs\[0\]\.uuid: must be a UUID'),
    ('field-of-another-type', [dict(type='mdev', uuid=NO_MDEV, managed=True)], r'^hostdevs\[0\]\.managed: is for type pci and usb'),
]


def test_refusals_define_nothing(conn, name, playbook, tmp_path):
    if any(vendor == '0xfffe' or (bus, device) == (255, 127) for vendor, bus, device in _host_usb(conn)):
        pytest.skip('this host has a USB device the test takes as missing')
    base = dict(name=name, memory='64MiB', virt_type=osless_virt_type(conn), graphics=dict(type='none'))
    host = _host_pci(conn)   # a device the host has: only the second entry is missing
    tasks = [{'name': case, 'kvmops.kvm.kvm_domain': dict(base, hostdevs=[dict(i, address=host) if i.get('address') == 'HOST' else i
                                                                          for i in items]), 'ignore_errors': True}
             for case, items, _message in CASES]
    path = _play(tmp_path, tasks)
    for check in (True, False):
        result = playbook(path, check=check)
        assert 'Traceback' not in result.stdout + result.stderr
        for case, _items, message in CASES:
            task = result.task(case)
            assert task.get('failed') is True and not task.get('changed'), (case, task)
            assert re.search(message, task['msg']), (case, task['msg'])
            assert 'Traceback' not in json.dumps(task), case
        assert not _defined(conn, name), 'a refused task defined the guest (check=%s)' % check


def _host_pci(conn):
    """A PCI device of this host (the last one libvirt lists) as domain:bus:slot.function."""
    libvirt = _libvirt()
    from lxml import etree
    devices = conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
    if not devices:
        pytest.skip('this host has no PCI node device')
    cap = etree.fromstring(devices[-1].XMLDesc(0)).find("capability[@type='pci']")
    return '%04x:%02x:%02x.%x' % tuple(int(cap.findtext(k)) for k in ('domain', 'bus', 'slot', 'function'))


def test_host_pci_device_in_a_stopped_guest(conn, name, playbook, tmp_path):
    from lxml import etree
    libvirt = _libvirt()
    address = _host_pci(conn)
    domain, bus, rest = address.split(':')
    # libvirt's other spelling of the same device: no domain, upper case, 0x prefixes are the module's business
    spelled = '%s:%s' % (bus.upper(), rest)
    args = dict(name=name, memory='64MiB', virt_type=osless_virt_type(conn), graphics=dict(type='none'),
                hostdevs=[dict(type='pci', address=address, managed=False, boot_order=1)])
    again = dict(args, hostdevs=[dict(type='pci', address=spelled if domain == '0000' else address, managed=False)])
    tasks = [{'name': 'domain', 'kvmops.kvm.kvm_domain': args},
             {'name': 'again', 'kvmops.kvm.kvm_domain': again},
             {'name': 'info', 'kvmops.kvm.kvm_info': dict(name=[name], gather=['domains'])}]
    path = _play(tmp_path, tasks)

    first = playbook(path, check=True)
    assert first.task('domain')['changed'] is True and not first.task('domain').get('failed'), first.task('domain')
    assert not _defined(conn, name), 'check mode defined the guest'

    real = playbook(path)
    task = real.task('domain')
    assert task['changed'] is True and not task.get('failed'), task
    dom = conn.lookupByName(name)
    assert not dom.isActive()
    stored = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    [hostdev] = stored.findall('devices/hostdev')
    assert (hostdev.get('mode'), hostdev.get('type'), hostdev.get('managed')) == ('subsystem', 'pci', 'no')
    source = hostdev.find('source/address')
    assert '%04x:%02x:%02x.%x' % tuple(int(source.get(k), 16) for k in ('domain', 'bus', 'slot', 'function')) == address
    assert hostdev.find('boot').get('order') == '1' and stored.find('os/boot') is None
    want = dict(type='pci', address=address, vendor=None, product=None, bus=None, device=None, uuid=None, model=None,
                managed=False, boot_order=1)
    assert task['domain']['hostdevs'] == [want]
    assert real.task('again')['changed'] is False, real.task('again')['changes']
    [info] = real.task('info')['domains']
    assert info['hostdevs'] == [want]

    for check in (True, False):   # the same request in check mode and for real: no change
        result = playbook(path, check=check)
        assert [result.task(t)['changed'] for t in ('domain', 'again')] == [False, False]

    gone = dict(name=name, hostdevs=[dict(type='pci', address=address, state='absent')])
    path = _play(tmp_path, [{'name': 'gone', 'kvmops.kvm.kvm_domain': gone}])
    result = playbook(path, check=True)
    assert result.task('gone')['changed'] is True
    assert len(etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall('devices/hostdev')) == 1
    result = playbook(path)
    assert result.task('gone')['changed'] is True and result.task('gone')['domain']['hostdevs'] == []
    assert etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall('devices/hostdev') == []
    assert playbook(path).task('gone')['changed'] is False


def test_hot_plug_without_iommu_is_refused_before_any_write(conn, name, playbook, tmp_path):
    from lxml import etree
    libvirt = _libvirt()
    virt = osless_virt_type(conn)
    caps = etree.fromstring(conn.getDomainCapabilities(None, 'x86_64', None, virt, 0))
    if caps.findall("devices/hostdev/enum[@name='pciBackend']/value"):
        pytest.skip('this host offers PCI passthrough (VFIO): the refusal is for hosts without it')
    address = _host_pci(conn)
    dom = conn.defineXML("<domain type='%s'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
                         "<os><type arch='x86_64'>hvm</type></os><devices/></domain>" % (virt, name))
    dom.create()
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    args = dict(name=name, hostdevs=[dict(type='pci', address=address, managed=False)])
    path = _play(tmp_path, [{'name': 'plug', 'kvmops.kvm.kvm_domain': args, 'ignore_errors': True}])
    for check in (True, False):
        task = playbook(path, check=check).task('plug')
        assert task.get('failed') is True and not task.get('changed'), task
        assert re.search(r"^hostdevs\[0\]: pci %s cannot be hot-plugged into the running guest %s: this host offers no "
                         r"PCI passthrough \(libvirt's domain capabilities list no VFIO backend" % (re.escape(address), name),
                         task['msg']), task['msg']
        assert 'Traceback' not in json.dumps(task)
    assert dom.isActive() and dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert etree.fromstring(dom.XMLDesc(0)).findall('devices/hostdev') == []
