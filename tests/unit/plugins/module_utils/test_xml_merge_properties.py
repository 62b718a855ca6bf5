"""Properties of ``xml_mode: merge`` over random guests and fragments (hypothesis).

* a fragment equal to the current definition changes nothing;
* merging is idempotent: the same fragment over its own result changes nothing (so a second run is changed=false);
* nothing the fragment does not remove is lost; what it gives is in the result; no marker reaches libvirt;
* any fragment gives a result or a KvmError, never another exception.
"""

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, to_string, xml_equal
from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import NS, REMOVE, REPLACE, merge

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TARGETS = ['vda', 'vdb', 'sda', 'sdb']
MACS = ['52:54:00:00:00:01', '52:54:00:00:00:02', '52:54:00:00:00:03']
NETWORKS = ['default', 'isolated']
CACHES = ['none', 'writeback', 'unsafe']
MODELS = ['virtio', 'e1000', 'rtl8139']
INPUTS = [('tablet', 'usb'), ('mouse', 'ps2'), ('keyboard', 'ps2'), ('tablet', 'virtio')]
CONTROLLERS = [('usb', '0'), ('pci', '0'), ('sata', '0'), ('pci', '1')]
FEATURES = ['acpi', 'apic', 'pae', 'vmport']
BOOTS = ['hd', 'cdrom', 'network']
APPS = ['http://example.org/a', 'http://example.org/b']

MARK = st.sampled_from([None, None, None, 'remove', 'replace'])


def _sub(parent, tag, **attrs):
    return etree.SubElement(parent, tag, dict((k, v) for k, v in attrs.items() if v is not None))


def _mark(elem, mark):
    if mark == 'remove':
        elem.set(REMOVE, 'true')
    elif mark == 'replace':
        elem.set(REPLACE, 'true')
    return elem


@st.composite
def guests(draw):
    root = etree.Element('domain', type='kvm')
    _sub(root, 'name').text = 'vm01'
    meta = _sub(root, 'metadata')
    for uri in draw(st.lists(st.sampled_from(APPS), unique=True, max_size=2)):
        etree.SubElement(meta, '{%s}info' % uri, nsmap={'app': uri}).text = draw(st.sampled_from(['1', '2']))
    _sub(root, 'memory', unit='KiB').text = str(draw(st.sampled_from([131072, 262144])))
    _sub(root, 'vcpu', placement='static').text = str(draw(st.integers(1, 4)))
    os_node = _sub(root, 'os')
    _sub(os_node, 'type', arch='x86_64').text = 'hvm'
    for dev in draw(st.lists(st.sampled_from(BOOTS), unique=True, max_size=2)):
        _sub(os_node, 'boot', dev=dev)
    features = _sub(root, 'features')
    for name in draw(st.lists(st.sampled_from(FEATURES), unique=True, max_size=3)):
        _sub(features, name)
    devices = _sub(root, 'devices')
    for target in draw(st.lists(st.sampled_from(TARGETS), unique=True, max_size=3)):
        disk = _sub(devices, 'disk', type='file', device='disk')
        _sub(disk, 'driver', name='qemu', cache=draw(st.sampled_from(CACHES)))
        _sub(disk, 'source', file='/img/%s' % target)
        _sub(disk, 'target', dev=target)
    for kind, index in draw(st.lists(st.sampled_from(CONTROLLERS), unique=True, max_size=3)):
        _sub(devices, 'controller', type=kind, index=index)
    for mac in draw(st.lists(st.sampled_from(MACS), unique=True, max_size=3)):
        nic = _sub(devices, 'interface', type='network')
        _sub(nic, 'mac', address=mac)
        _sub(nic, 'source', network=draw(st.sampled_from(NETWORKS)))
        _sub(nic, 'model', type=draw(st.sampled_from(MODELS)))
    for kind, bus in draw(st.lists(st.sampled_from(INPUTS), max_size=3)):
        _sub(devices, 'input', type=kind, bus=bus)
    for _index in range(draw(st.integers(0, 2))):
        _sub(_sub(devices, 'rng', model='virtio'), 'backend', model='random').text = '/dev/urandom'
    return root


@st.composite
def fragments(draw):
    root = etree.Element('domain', nsmap={'kvmops': NS})
    if draw(st.booleans()):
        _sub(root, 'memory', unit='KiB').text = str(draw(st.sampled_from([131072, 262144, 524288])))
    if draw(st.booleans()):
        _sub(root, 'vcpu').text = str(draw(st.integers(1, 4)))
    if draw(st.booleans()):
        meta = _sub(root, 'metadata')
        uri = draw(st.sampled_from(APPS))
        etree.SubElement(meta, '{%s}info' % uri, nsmap={'app': uri}).text = draw(st.sampled_from(['1', '3']))
    if draw(st.booleans()):
        os_node = _sub(root, 'os')
        for dev in draw(st.lists(st.sampled_from(BOOTS), unique=True, max_size=2)):
            _mark(_sub(os_node, 'boot', dev=dev), draw(MARK))
    if draw(st.booleans()):
        features = _sub(root, 'features')
        for name in draw(st.lists(st.sampled_from(FEATURES), unique=True, max_size=2)):
            _mark(_sub(features, name), draw(MARK))
    devices = _sub(root, 'devices')
    for target in draw(st.lists(st.sampled_from(TARGETS), unique=True, max_size=3)):
        disk = _mark(_sub(devices, 'disk'), draw(MARK))
        if draw(st.booleans()):
            _sub(disk, 'driver', cache=draw(st.sampled_from(CACHES)))
        _sub(disk, 'target', dev=target.upper() if draw(st.booleans()) and target.startswith('x') else target)
    for kind, index in draw(st.lists(st.sampled_from(CONTROLLERS), unique=True, max_size=2)):
        _mark(_sub(devices, 'controller', type=kind, index=index if draw(st.booleans()) else None,
                   model=draw(st.sampled_from([None, 'qemu-xhci']))), draw(MARK))
    for mac in draw(st.lists(st.sampled_from(MACS + [None]), unique=True, max_size=3)):
        nic = _mark(_sub(devices, 'interface', type='network'), draw(MARK))
        if mac:
            _sub(nic, 'mac', address=mac.upper() if draw(st.booleans()) else mac)
        if not mac or draw(st.booleans()):
            _sub(nic, 'source', network=draw(st.sampled_from(NETWORKS)))
        if draw(st.booleans()):
            _sub(nic, 'model', type=draw(st.sampled_from(MODELS)))
    for kind, bus in draw(st.lists(st.sampled_from(INPUTS), unique=True, max_size=2)):
        _mark(_sub(devices, 'input', type=kind, bus=bus if draw(st.booleans()) else None), draw(MARK))
    for _index in range(draw(st.integers(0, 2))):
        rng = _mark(_sub(devices, 'rng', model='virtio'), draw(MARK))
        if draw(st.booleans()):
            _sub(rng, 'backend', model='random').text = draw(st.sampled_from(['/dev/urandom', '/dev/random']))
    return root


def _merge(current, fragment):
    try:
        return merge(current, fragment)
    except KvmError as exc:   # a fragment the merge refuses (removed and given again): no traceback, a message
        assert exc.msg.startswith('xml: ')
        assume(False)


@PROPS
@given(guests())
def test_a_fragment_equal_to_the_definition_is_a_no_op(current):
    merged, log = merge(current, etree.fromstring(etree.tostring(current)))
    assert log == []
    assert to_string(merged) == to_string(current)


@PROPS
@given(guests(), fragments())
def test_merge_is_idempotent(current, fragment):
    once, _log = _merge(current, fragment)
    twice, log = merge(once, fragment)
    assert log == [], log
    assert xml_equal(once, twice)


@PROPS
@given(guests(), fragments())
def test_nothing_is_lost_what_is_given_is_there_and_no_marker_leaks(current, fragment):
    merged, log = _merge(current, fragment)
    text = to_string(merged)
    assert NS not in text and 'kvmops' not in text
    removed = set(t.get('dev') for t in fragment.findall('devices/disk/target') if t.getparent().get(REMOVE))
    have = set(t.get('dev') for t in current.findall('devices/disk/target'))
    now = set(t.get('dev') for t in merged.findall('devices/disk/target'))
    assert now == (have - removed) | (set(t.get('dev') for t in fragment.findall('devices/disk/target')) - removed)
    for disk in fragment.findall('devices/disk'):
        cache = disk.find('driver').get('cache') if disk.find('driver') is not None else None
        if cache and not disk.get(REMOVE):
            [mine] = [d for d in merged.findall('devices/disk') if d.find('target').get('dev') == disk.find('target').get('dev')]
            assert mine.find('driver').get('cache') == cache
    removed_macs = set(m.get('address').lower() for m in fragment.findall('devices/interface/mac') if m.getparent().get(REMOVE))
    macs = set(m.get('address') for m in merged.findall('devices/interface/mac'))
    if all(nic.find('mac') is not None for nic in fragment.findall('devices/interface') if nic.get(REMOVE)):
        # (a NIC without MAC marked removed removes the first NIC on its network)
        assert set(m.get('address') for m in current.findall('devices/interface/mac')) - removed_macs <= macs
    assert merged.find('os/type').text == 'hvm' and merged.findtext('name') == 'vm01'
    if not [f for f in fragment.iter() if f.get(REMOVE)]:
        assert len(merged.find('devices')) >= len(current.find('devices')), 'without kvmops:remove nothing goes'
    if not log:
        assert xml_equal(merged, current)
