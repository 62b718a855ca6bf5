"""Unit tests of kvm_domain's XML model, change planner, validation and seed ISO."""

import os

import pytest
from fakes import FakeModule

libvirt = pytest.importorskip('libvirt')

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._cloudinit import (  # noqa: E402
    build_iso,
    read_iso,
    seed_image,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import (  # noqa: E402
    ARGUMENT_SPEC,
    Manager,
    validate,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import (  # noqa: E402
    plan_config,
    plan_live,
    resolve_options,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import OPTIONS  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_xml_facts  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse, to_string  # noqa: E402

VM01 = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'fixtures', 'domain_vm01_inactive.xml')


def params(**kw):
    """Module params as AnsibleModule would fill them (defaults included)."""
    out = dict((k, v.get('default')) for k, v in ARGUMENT_SPEC.items())
    out.update(kw)
    for key in ('disks', 'interfaces', 'graphics', 'cloud_init'):
        spec = ARGUMENT_SPEC[key]['options']
        if out.get(key) is None:
            continue
        items = out[key] if isinstance(out[key], list) else [out[key]]
        filled = []
        for item in items:
            full = dict((k, v.get('default')) for k, v in spec.items())
            full.update(item)
            filled.append(full)
        out[key] = filled if isinstance(out[key], list) else filled[0]
    return out


def vm01():
    with open(VM01) as handle:
        return parse(handle.read())


VM01_PARAMS = dict(
    name='vm01', memory='512MiB', max_memory='1GiB', vcpus=1, max_vcpus=2, machine='pc', virt_type='kvm',
    os_variant='http://centos.org/centos/7.0',
    disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2', format='qcow2')],
    interfaces=[dict(source='default')],
    graphics=dict(type='vnc', keymap='en-us'),
)
CTX = dict(machine_aliases={'pc': 'pc-i440fx-7.2', 'q35': 'pc-q35-7.2'})


# ---------------------------------------------------------------- model round trip
def test_new_guest_options_to_xml_to_facts():
    spec = validate(params(**VM01_PARAMS))
    root, changes, _opts = plan_config(spec, None, CTX)
    assert [c['action'] for c in changes] == ['define']
    facts = domain_xml_facts(parse(to_string(root)))
    assert facts['name'] == 'vm01' and facts['virt_type'] == 'kvm'
    assert facts['memory'] == {'current_kib': 512 * 1024, 'max_kib': 1024 * 1024}
    assert facts['vcpus'] == {'current': 1, 'maximum': 2}
    assert facts['machine'] == 'pc' and facts['os_variant'] == 'http://centos.org/centos/7.0'
    assert [(d['target'], d['bus'], d['format']) for d in facts['disks']] == [('vda', 'virtio', 'qcow2')]
    [nic] = facts['interfaces']
    assert (nic['type'], nic['source'], nic['model'], nic['mac']) == ('network', 'default', 'virtio', None)
    [gfx] = facts['graphics']
    assert gfx['listen'] == '127.0.0.1' and gfx['autoport'] is True and gfx['keymap'] == 'en-us'
    assert facts['memballoon'] == 'virtio'
    assert root.find('devices/serial').get('type') == 'pty'
    assert root.find('features/acpi') is not None


def test_existing_guest_same_options_is_no_change():
    spec = validate(params(**VM01_PARAMS))
    _root, changes, _opts = plan_config(spec, vm01(), CTX)
    assert changes == []


@pytest.mark.parametrize('change, expected', [
    (dict(memory='1GiB'), ['memory']),
    (dict(memory='524288KiB'), []),
    (dict(memory='536870912b'), []),
    (dict(memory='0.5GiB'), []),
    (dict(vcpus=2), ['vcpus']),
    (dict(vcpus=3, max_vcpus=4), ['max_vcpus', 'vcpus']),
    (dict(max_memory='2G'), ['max_memory']),
    (dict(machine='pc-i440fx-7.2'), []),
    (dict(machine='q35'), ['machine']),
    (dict(cpu_mode='host-passthrough'), ['cpu_mode']),
    (dict(firmware='bios'), []),
    (dict(firmware='efi'), ['firmware']),
    (dict(virt_type='qemu'), ['virt_type']),
    (dict(kernel='/boot/vmlinuz', cmdline='console=ttyS0'), ['kernel', 'cmdline']),
    (dict(os_variant='http://debian.org/debian/12'), ['os_variant']),
    (dict(disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2', cache='writeback')]), ['disks[vda]']),
    (dict(disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2'),
                 dict(path='/d/vdb.qcow2', target='vdb', format='qcow2')]), ['disks[vdb]']),
    (dict(disks=[]), ['disks[vda]']),
    (dict(interfaces=[dict(source='default', link_state='down')]), ['interfaces[0]']),
    (dict(interfaces=[dict(source='default', mac='52:54:00:A3:19:8B')]), []),
    (dict(interfaces=[]), ['interfaces[mac=52:54:00:a3:19:8b]']),
    (dict(graphics=dict(type='vnc', keymap='en-us', listen='0.0.0.0')), ['graphics']),
    (dict(graphics=dict(type='none')), ['graphics']),
])
def test_planner_reports_only_what_differs(change, expected):
    wanted = dict(VM01_PARAMS)
    wanted.update(change)
    spec = validate(params(**wanted))
    before = vm01()
    root, changes, _opts = plan_config(spec, before, CTX)
    assert sorted(c['option'] for c in changes) == sorted(expected)
    assert to_string(before) == to_string(vm01()), 'the planner must not modify its input'
    # UUID and MACs are kept by every redefinition.
    assert root.findtext('uuid') == '6f1c1b1e-4c43-4d3a-9d55-1b0b2a3c4d5e'
    if change.get('interfaces'):
        assert root.find('devices/interface/mac').get('address') == '52:54:00:a3:19:8b'
    # Applying the result again is a no-op (idempotence of the model).
    _again, more, _o = plan_config(spec, root, CTX)
    assert more == []


def test_cidata_cdrom_is_not_removed_by_the_disk_list():
    spec = validate(params(name='vm01', disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2')]))
    root, changes, _opts = plan_config(spec, vm01(), CTX)
    assert changes == []
    assert len(root.findall('devices/disk')) == 2


def test_new_nic_without_mac_never_gets_a_new_mac_on_rerun():
    spec = validate(params(name='vm01', interfaces=[dict(source='default'), dict(source='default', model='e1000')]))
    root, changes, _opts = plan_config(spec, vm01(), CTX)
    assert [c['action'] for c in changes] == ['add']
    # libvirt would generate the second MAC at define time; simulate it.
    root.findall('devices/interface')[1].insert(0, parse("<mac address='52:54:00:00:00:02'/>"))
    _again, more, _o = plan_config(spec, root, CTX)
    assert more == []


@pytest.mark.parametrize('options, current, expected', [
    (dict(vcpus=2), None, dict(vcpus=2, max_vcpus=2)),
    (dict(max_vcpus=4), None, dict(vcpus=4, max_vcpus=4)),
    (dict(vcpus=1), 'vm01', dict(vcpus=1)),
    (dict(vcpus=3), 'vm01', dict(vcpus=3, max_vcpus=3)),
    (dict(max_vcpus=4), 'vm01', dict(max_vcpus=4)),
    (dict(memory=2 * 1024 * 1024), 'vm01', dict(memory=2 * 1024 * 1024, max_memory=2 * 1024 * 1024)),
    (dict(max_memory=256 * 1024), 'vm01', dict(memory=256 * 1024, max_memory=256 * 1024)),
    (dict(sockets=2, max_vcpus=2), None, dict(sockets=2, cores=1, threads=1, max_vcpus=2, vcpus=2)),
])
def test_resolve_options(options, current, expected):
    assert resolve_options(options, vm01() if current else None) == expected


def test_topology_must_match_max_vcpus():
    with pytest.raises(KvmError, match='must equal max_vcpus'):
        resolve_options(dict(sockets=2, cores=2, max_vcpus=2), None)


# ---------------------------------------------------------------- live planner
@pytest.mark.parametrize('change, kinds, pending', [
    (dict(vcpus=2), ['vcpus'], []),
    (dict(vcpus=3, max_vcpus=4), [], ['max_vcpus', 'vcpus']),
    (dict(memory='1GiB'), ['memory'], []),
    (dict(memory='2GiB', max_memory='2GiB'), [], ['max_memory', 'memory']),
    (dict(machine='q35'), [], ['machine']),
    (dict(os_variant='http://debian.org/debian/12'), [], []),
    (dict(disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2'),
                 dict(path='/d/vdb.qcow2', target='vdb', format='qcow2', cache='writeback')]), ['attach'], []),
    (dict(disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2'),
                 dict(path='/d/sdb.iso', target='sdb', device='cdrom')]), [], ['disks[sdb]']),
    (dict(disks=[]), ['detach'], []),
    (dict(interfaces=[dict(source='default', link_state='down')]), ['update'], []),
    (dict(interfaces=[dict(source='default'), dict(source='default', mac='52:54:00:00:00:09')]), ['attach'], []),
    (dict(interfaces=[dict(source='default', model='e1000')]), [], ['interfaces[0]']),
    (dict(graphics=dict(type='vnc', listen='0.0.0.0', keymap='en-us')), [], ['graphics']),
])
def test_live_plan(change, kinds, pending):
    wanted_params = dict(VM01_PARAMS)
    wanted_params.update(change)
    spec = validate(params(**wanted_params))
    before = vm01()
    desired, _changes, options = plan_config(spec, before, CTX)
    actions, waiting = plan_live(spec, options, desired, vm01(), CTX, before=before)
    assert sorted(a['kind'] for a in actions) == sorted(kinds)
    assert sorted(waiting) == sorted(pending)


def test_live_plan_in_sync_is_empty():
    spec = validate(params(**VM01_PARAMS))
    desired, _changes, options = plan_config(spec, vm01(), CTX)
    assert plan_live(spec, options, desired, vm01(), CTX, before=vm01()) == ([], [])


def test_balloon_drift_without_definition_change_is_not_a_change():
    """A booting guest's balloon reads its maximum: not a change while the definition holds."""
    spec = validate(params(**VM01_PARAMS))
    live = vm01()
    live.find('currentMemory').text = '1048576'
    desired, _changes, options = plan_config(spec, vm01(), CTX)
    assert plan_live(spec, options, desired, live, CTX, before=vm01()) == ([], [])


def test_cdrom_media_change_is_live():
    ci = dict(user_data='#cloud-config\n', directory='/var/lib/libvirt/images')
    spec = validate(params(name='vm01', cloud_init=ci))
    desired, changes, options = plan_config(spec, vm01(), CTX)
    assert [(c['option'], c['action']) for c in changes] == [('cloud_init', 'update')]
    actions, waiting = plan_live(spec, options, desired, vm01(), CTX, before=vm01())
    assert [a['kind'] for a in actions] == ['update'] and waiting == []
    assert actions[0]['after'] == spec['cloud_init']['path']


# ---------------------------------------------------------------- validation
def test_guest_is_an_alias_of_name():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    checked = ArgumentSpecValidator(ARGUMENT_SPEC).validate(dict(guest='vm01'))
    assert not checked.error_messages and checked.validated_parameters['name'] == 'vm01'


@pytest.mark.parametrize('bad, message', [
    (dict(name='bad/name'), '^name: invalid guest name'),
    (dict(name=''), '^name: invalid'),
    (dict(uuid='nope'), '^uuid: invalid'),
    (dict(memory='2G', max_memory='1G'), r'^memory \(2097152 KiB\) must not exceed max_memory'),
    (dict(memory='lots'), '^memory: invalid size'),
    (dict(memory='1 parsec'), '^memory: unknown size unit'),
    (dict(vcpus=3, max_vcpus=2), r'^vcpus \(3\) must not exceed max_vcpus \(2\)'),
    (dict(vcpus=0), '^vcpus: must be at least 1'),
    (dict(interfaces=[dict(source='default', mac='52:54:00:zz:00:01')]), r'^interfaces\[0\]\.mac: invalid MAC'),
    (dict(interfaces=[dict(source='default', mac='01:00:5e:00:00:01')]), 'multicast'),
    (dict(interfaces=[dict(source='a', mac='52:54:00:00:00:01'), dict(source='b', mac='52:54:00:00:00:01')]),
     'duplicate MAC'),
    (dict(disks=[dict(path='/a.qcow2', target='vdb'), dict(path='/b.qcow2', target='vdb')]),
     r'^disks: duplicate target vdb \(disks\[0\] and disks\[1\]\)'),
    (dict(disks=[dict(path='/a.qcow2', target='nvme0')]), r'^disks\[0\]\.target: invalid target'),
    (dict(disks=[dict(path='/a.qcow2', pool='p', volume='v')]), r'^disks\[0\]: give either path'),
    (dict(disks=[dict(size='1G')]), r'^disks\[0\]: path .* is required'),
    (dict(disks=[dict(path='/a.qcow2', size='big')]), r'^disks\[0\]\.size: invalid size'),
    (dict(disks=[dict(path='/a.iso', device='cdrom', bus='virtio')]), r'^disks\[0\]\.bus: a cdrom'),
    (dict(xml='<domain><name>x</name'), '^xml: malformed domain XML'),
    (dict(xml='<network/>'), '^xml: the root element must be <domain>'),
    (dict(xml='<domain><name>other</name></domain>'), "^xml: <name> does not match name vm01 \\(got 'other'\\)"),
    (dict(xml='<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><domain>&e;</domain>'), '^xml: .*DOCTYPE'),
    (dict(xml="<domain><memory unit='TiB'>100</memory></domain>"), r'^xml \(<memory>\): must be at most 64 TiB'),
    (dict(xml="<domain><vcpu>100000</vcpu></domain>"), r'^xml \(<vcpu>\): must be a number of vCPUs'),
    (dict(xml="<domain><vcpu current='\u00b2'>2</vcpu></domain>"), r'^xml \(<vcpu current>\): must be a number'),
    (dict(xml="<domain><devices><disk><source file='/a/../etc/shadow'/></disk></devices></domain>"),
     r"^xml \(devices/disk/source/@file\[1\]\): must not contain '\.\.'"),
    (dict(xml="<domain><os><kernel>/boot/vmlinuz\n</kernel></os></domain>"), r'^xml \(os/kernel\[1\]\): must not contain control'),
    (dict(graphics=dict(type='vnc', port=22)), r'^graphics\.port: 22 is outside'),
    (dict(graphics=dict(type='vnc', listen='0.0.0.0; rm')), r'^graphics\.listen: not an IP address'),
    (dict(graphics=dict(type='vnc', listen='localhost')), r'^graphics\.listen: not an IP address'),
    (dict(graphics=dict(type='vnc', keymap="en-us'")), r'^graphics\.keymap: invalid value'),
    (dict(graphics=dict(type='vnc', password='pa\nss')), r'^graphics\.password: must be at most 255 characters'),
    (dict(shutdown_timeout=-1), '^shutdown_timeout'),
    (dict(name='vm01\n'), '^name: invalid guest name'),
    (dict(name='-vm01'), '^name: invalid guest name'),
    (dict(name='a' * 201), '^name: invalid guest name'),
    (dict(uuid='0123456789abcdef0123456789abcdef\n'), '^uuid: invalid UUID'),
    (dict(memory='100000TiB'), '^memory: must be at most 64 TiB'),
    (dict(memory='9' * 400), '^memory: '),
    (dict(memory='0'), '^memory: must be at least 1 KiB'),
    (dict(max_memory='1EiB'), '^max_memory: must be at most 64 TiB'),
    (dict(vcpus=5000), '^vcpus: must be at most 4096'),
    (dict(max_vcpus=10 ** 9), '^max_vcpus: must be at most 4096'),
    (dict(sockets=0), '^sockets: must be at least 1'),
    (dict(machine="pc'q35"), '^machine: invalid value'),
    (dict(machine='pc q35'), '^machine: invalid value'),
    (dict(os_variant='http://debian.org/"debian"/12'), '^os_variant: invalid libosinfo id'),
    (dict(kernel='/boot/../etc/shadow'), "^kernel: must not contain '..'"),
    (dict(kernel='boot/vmlinuz'), '^kernel: must be an absolute path'),
    (dict(initrd='/boot/initrd\x00'), '^initrd: must not contain control'),
    (dict(cmdline='console=ttyS0\nroot=/dev/vda'), '^cmdline: must not contain control'),
    (dict(disks=[dict(path='/var/lib/libvirt/images/../../../etc/x.qcow2', size='1G')]), r"^disks\[0\]\.path: must not contain '\.\.'"),
    (dict(disks=[dict(path='/var/lib/libvirt/images/x\n.qcow2', size='1G')]), r'^disks\[0\]\.path: must not contain control'),
    (dict(disks=[dict(path='/a.qcow2', backing='/b/../c.qcow2')]), r"^disks\[0\]\.backing: must not contain '\.\.'"),
    (dict(disks=[dict(path='/a.qcow2', size='1000PiB')]), r'^disks\[0\]\.size: must be at most 64 PiB'),
    (dict(disks=[dict(pool='de fault', volume='v.qcow2', size='1G')]), r'^disks\[0\]\.pool: invalid pool name'),
    (dict(disks=[dict(pool='default', volume='../v.qcow2', size='1G')]), r'^disks\[0\]\.volume: invalid volume name'),
    (dict(disks=[dict(path='/a.qcow2', target='vda\n')]), r'^disks\[0\]\.target: invalid target'),
    (dict(disks=[dict(path='/a.qcow2', boot_order=0)]), r'^disks\[0\]\.boot_order: must be at least 1'),
    (dict(interfaces=[dict(source='default\n')]), r'^interfaces\[0\]\.source: invalid network name'),
    (dict(interfaces=[dict(type='bridge', source='br$(id>x)')]), r'^interfaces\[0\]\.source: invalid interface name'),
    (dict(interfaces=[dict(type='direct', source='eth0;reboot')]), r'^interfaces\[0\]\.source: invalid interface name'),
    (dict(cloud_init=dict(directory='/var/lib/../../tmp')), r"^cloud_init\.directory: must not contain '\.\.'"),
    (dict(cloud_init=dict(user_data=42)), r'^cloud_init\.user_data: must be text or a dictionary'),
])
def test_bad_input_names_the_option(bad, message):
    wanted = dict(name='vm01')
    wanted.update(bad)
    with pytest.raises(KvmError, match=message):
        validate(params(**wanted))


def test_auto_targets_follow_the_bus():
    spec = validate(params(name='vm', disks=[dict(path='/a'), dict(path='/b', target='vda'),
                                             dict(path='/c', bus='sata'), dict(path='/d.iso', device='cdrom')]))
    expected = [('vdb', 'virtio'), ('vda', 'virtio'), ('sda', 'sata'), ('sdb', 'sata')]
    assert [(d['target'], d['bus']) for d in spec['disks']] == expected


# ---------------------------------------------------------------- cloud-init seed
def test_seed_iso_round_trip_and_hash_name():
    name, image = seed_image('vm1', {'users': [{'name': 'ops'}]}, None, 'version: 2\n')
    again, image2 = seed_image('vm1', {'users': [{'name': 'ops'}]}, None, 'version: 2\n')
    assert (name, image) == (again, image2), 'same content, same bytes and name'
    other = seed_image('vm1', {'users': []})[0]
    assert other != name and name.startswith('vm1-cidata-') and name.endswith('.iso')
    volume, files = read_iso(image)
    assert volume == 'cidata'
    assert sorted(files) == ['meta-data', 'network-config', 'user-data']
    assert files['user-data'].startswith(b'#cloud-config\n')
    assert files['meta-data'] == b'instance-id: vm1\nlocal-hostname: vm1\n'
    assert len(image) % 2048 == 0


def test_iso_layout_is_iso9660():
    image = build_iso({'user-data': b'x' * 5000})
    assert image[16 * 2048 + 1:16 * 2048 + 6] == b'CD001'
    assert image[17 * 2048] == 255, 'volume descriptor set terminator'
    assert read_iso(image)[1]['user-data'] == b'x' * 5000


# ---------------------------------------------------------------- manager on libvirt's test driver
def guest_module(check_mode=False, diff=False, **kw):
    """The shared FakeModule with kvm_domain's parameters (defaults filled) on libvirt's test driver."""
    return FakeModule(dict(params(**kw), uri='test:///default'), check_mode=check_mode, diff=diff)


class CountingConn(object):
    """Proxy that records libvirt write calls made through the connection."""
    WRITES = ('defineXML', 'defineXMLFlags', 'createXML', 'networkDefineXML')

    def __init__(self, conn, log):
        self._conn = conn
        self._log = log

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if name in self.WRITES:
            def wrapped(*args):
                self._log.append(name)
                return attr(*args)
            return wrapped
        return attr


def _converge(client, args, check=False, diff=False):
    module = guest_module(check_mode=check, diff=diff, **args)
    client.module = module
    return Manager(client, module).run()


@pytest.fixture
def test_client():
    module = guest_module(name='x')
    client = LibvirtClient(module, uri='test:///default')
    log = []
    client._conn = CountingConn(client.conn, log)
    client.write_log = log
    yield client
    client.close()


GUEST = dict(name='kvmops-unit', memory='256MiB', max_memory='512MiB', vcpus=1, max_vcpus=2, virt_type='qemu',
             interfaces=[dict(source='default')], graphics=dict(type='vnc'))


def test_manager_check_then_real_then_noop(test_client):
    first = _converge(test_client, GUEST, check=True, diff=True)
    assert first['changed'] is True and test_client.write_log == []
    assert test_client.find_domain('kvmops-unit') is None
    assert first['diff']['before'] == '' and '<name>kvmops-unit</name>' in first['diff']['after']
    real = _converge(test_client, GUEST)
    assert real['changed'] is True and test_client.write_log == ['defineXMLFlags']
    mac = real['domain']['interfaces'][0]['mac']
    assert mac and real['domain']['memory'] == {'current_kib': 256 * 1024, 'max_kib': 512 * 1024}
    again = _converge(test_client, GUEST)
    assert again['changed'] is False and again['changes'] == []
    assert test_client.write_log == ['defineXMLFlags'], 'a no-op run writes nothing'
    assert again['domain']['interfaces'][0]['mac'] == mac
    uuid = again['domain']['uuid']
    bigger = dict(GUEST)
    bigger['vcpus'] = 2
    change = _converge(test_client, bigger, diff=True)
    assert [c['option'] for c in change['changes']] == ['vcpus']
    assert change['domain']['uuid'] == uuid and change['domain']['interfaces'][0]['mac'] == mac
    assert "current=\"1\"" in change['diff']['before'] and "current=\"1\"" not in change['diff']['after']
    assert change['pending_restart'] == [] and sorted(change) == ['changed', 'changes', 'diff', 'domain', 'pending_restart']
    gone = _converge(test_client, dict(name='kvmops-unit', state='absent'))
    assert gone['changed'] is True and test_client.find_domain('kvmops-unit') is None
    assert _converge(test_client, dict(name='kvmops-unit', state='absent'))['changed'] is False


def test_manager_rejects_unknown_network_before_any_write(test_client):
    with pytest.raises(KvmError, match=r"interfaces\[0\]\.source: unknown network 'nope'"):
        _converge(test_client, dict(GUEST, interfaces=[dict(source='nope')]))
    assert test_client.write_log == []


def test_manager_needs_memory_to_create(test_client):
    with pytest.raises(KvmError, match='^memory: required'):
        _converge(test_client, dict(name='kvmops-unit2'))


def test_new_guest_from_partial_xml_gets_os_type_and_is_then_stable(test_client):
    partial = dict(name='kvmops-unit-xml', virt_type='qemu',
                   xml="<domain><memory unit='MiB'>128</memory><vcpu>1</vcpu></domain>")
    try:
        made = _converge(test_client, partial)
        assert made['changed'] is True and test_client.write_log == ['defineXMLFlags']
        root = parse(test_client.find_domain('kvmops-unit-xml').XMLDesc(0))
        assert root.get('type') == 'qemu' and root.findtext('os/type') == 'hvm'
        assert root.find('features/acpi') is not None and root.find('devices/serial') is not None
        again = _converge(test_client, partial)
        assert again['changed'] is False and test_client.write_log == ['defineXMLFlags']
    finally:
        _converge(test_client, dict(name='kvmops-unit-xml', state='absent'))


def test_new_guest_from_xml_without_memory_fails_before_writing(test_client):
    with pytest.raises(KvmError, match='^memory: required to create guest kvmops-unit-xml2'):
        _converge(test_client, dict(name='kvmops-unit-xml2', xml='<domain type="qemu"><vcpu>1</vcpu></domain>'))
    assert test_client.write_log == []


def test_password_is_masked_in_diff(test_client):
    guest = dict(GUEST)
    guest.update(name='kvmops-unit3', graphics=dict(type='vnc', password='s3cret'))
    try:
        result = _converge(test_client, guest, diff=True)
        assert 's3cret' not in str(result)
        again = _converge(test_client, guest)
        assert again['changed'] is False
    finally:
        _converge(test_client, dict(name='kvmops-unit3', state='absent'))


def _shape(spec):
    """What validate-modules compares between an argument spec and DOCUMENTATION."""
    out = {}
    for name, option in spec.items():
        item = dict((key, option.get(key)) for key in ('type', 'choices', 'default', 'elements')
                    if option.get(key) is not None)
        item['required'] = bool(option.get('required'))
        item['aliases'] = sorted(option.get('aliases') or [])
        sub = option.get('options', option.get('suboptions'))
        if sub:
            item['options'] = _shape(sub)
        out[name] = item
    return out


def test_option_table_is_the_one_declaration_and_matches_the_documentation():
    import yaml
    from ansible_collections.kvmops.kvm.plugins.modules import kvm_domain
    documented = yaml.safe_load(kvm_domain.DOCUMENTATION)['options']
    assert _shape(ARGUMENT_SPEC) == _shape(documented)
    assert all(ARGUMENT_SPEC[option.name].get('choices') == option.choices for option in OPTIONS)


# ---------------------------------------------------------------- graceful shutdown (fake domain)
class FakeClient(object):
    uri = 'qemu:///system'

    def call(self, _what, func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError as exc:
            raise KvmError(self.describe_error(exc))

    @staticmethod
    def describe_error(exc, what=None):
        return 'libvirt error (%s): %s' % (what, exc)


class ShutdownDom(object):
    """A running guest that acts on the n-th shutdown request (never when n is None)."""

    def __init__(self, acts_on=None, agent='connected', fail_on=()):
        self.acts_on = acts_on
        self.agent = agent
        self.fail_on = fail_on
        self.requests = 0
        self.active = True
        self.destroyed = False

    def name(self):
        return 'g'

    def state(self):
        return [1 if self.active else 5, 0]

    def isActive(self):
        return int(self.active)

    def XMLDesc(self, _flags):
        channel = ''
        if self.agent:
            channel = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='%s'/>"
                       "</channel>" % self.agent)
        return "<domain><name>g</name><devices>%s</devices></domain>" % channel

    def shutdown(self):
        self.requests += 1
        if self.requests in self.fail_on:
            raise libvirt.libvirtError('guest agent error')
        if self.acts_on is not None and self.requests >= self.acts_on:
            self.active = False
        return 0

    def destroy(self):
        self.destroyed = True
        self.active = False
        return 0


def _shutdown(dom, monkeypatch, **kw):
    import ansible_collections.kvmops.kvm.plugins.module_utils._domain as domain_mod
    monkeypatch.setattr(domain_mod, 'SHUTDOWN_RETRY', 0.2)
    module = guest_module(name='g', state='shutdown', **kw)
    manager = Manager(FakeClient(), module)
    manager.shutdown(dom)
    return manager


def test_shutdown_request_is_repeated_until_the_guest_acts(monkeypatch):
    dom = ShutdownDom(acts_on=3)
    manager = _shutdown(dom, monkeypatch, shutdown_timeout=10)
    assert dom.requests == 3 and not dom.destroyed
    assert [c['action'] for c in manager.changes.entries] == ['shutdown']


def test_shutdown_timeout_without_force_fails_clearly(monkeypatch):
    dom = ShutdownDom(agent=None, fail_on=(2,))
    with pytest.raises(KvmError) as err:
        _shutdown(dom, monkeypatch, shutdown_timeout=1)
    msg = err.value.msg
    assert 'did not shut down within shutdown_timeout (1 s)' in msg and 'force: true' in msg
    assert 'through the ACPI power button' in msg and dom.requests >= 3 and not dom.destroyed


def test_shutdown_timeout_with_force_powers_off(monkeypatch):
    dom = ShutdownDom(agent='disconnected')
    manager = _shutdown(dom, monkeypatch, shutdown_timeout=1, force=True)
    assert dom.destroyed and [c['action'] for c in manager.changes.entries] == ['shutdown', 'destroy']


def test_shutdown_in_check_mode_only_records(monkeypatch):
    dom = ShutdownDom(acts_on=1)
    manager = _shutdown(dom, monkeypatch, check_mode=True)
    assert dom.requests == 0 and dom.active and not dom.destroyed
    assert manager.changes.result()['changes'] == [
        dict(scope='live', option='state', action='shutdown', before='running', after='shutoff')]


def test_shutdown_first_request_error_is_reported(monkeypatch):
    dom = ShutdownDom(fail_on=(1,))
    with pytest.raises(KvmError, match='guest agent error'):
        _shutdown(dom, monkeypatch, shutdown_timeout=5)
    assert dom.requests == 1


# ---------------------------------------------------------------- secrets
SECRET_GUEST_XML = """<domain type='qemu'><name>kvmops-unit-secret</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><graphics type='vnc' port='-1' autoport='yes' passwd='%s' listen='127.0.0.1'/></devices></domain>"""


def test_xml_secrets_are_registered_masked_in_changes_and_diff(test_client):
    name = 'kvmops-unit-secret'
    try:
        module = guest_module(name=name, xml=SECRET_GUEST_XML % 'old-pw-1', diff=True)
        test_client.module = module
        made = Manager(test_client, module).run()
        assert 'old-pw-1' in module.no_log_values and 'old-pw-1' not in str(made)
        module = guest_module(name=name, xml=SECRET_GUEST_XML % 'new-pw-2', diff=True, check_mode=True)
        test_client.module = module
        result = Manager(test_client, module).run()
        assert {'old-pw-1', 'new-pw-2'} <= module.no_log_values, 'the current definition and the user XML'
        [entry] = result['changes']
        assert entry['option'] == 'xml' and entry['after'] == ["domain/devices/graphics[vnc]/@passwd: '********' -> '********'"]
        assert 'old-pw-1' not in str(result) and 'new-pw-2' not in str(result)
    finally:
        _converge(test_client, dict(name=name, state='absent'))


def test_xml_secret_is_registered_before_another_refusal():
    hidden = []
    with pytest.raises(KvmError, match='^memory: must be at most'):
        validate(params(name='vm01', memory='1000TiB', xml=SECRET_GUEST_XML.replace('kvmops-unit-secret', 'vm01')
                        % 'pw-3'), hide=hidden.extend)
    assert hidden == ['pw-3']


# ---------------------------------------------------------------- files the module creates
def test_private_file_is_atomic_0600_and_never_follows_a_link(tmp_path):
    from ansible_collections.kvmops.kvm.plugins.module_utils._files import write_private_file
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    victim.chmod(0o600)
    final = tmp_path / 'seed.iso'
    (tmp_path / 'seed.iso.tmp').symlink_to(victim)      # the old predictable temporary name
    final.symlink_to(victim)
    with pytest.raises(KvmError, match='^cloud_init: .* is a symbolic link'):
        write_private_file('cloud_init', str(final), b'data')
    final.unlink()
    write_private_file('cloud_init', str(final), b'data')
    assert final.read_bytes() == b'data' and (final.stat().st_mode & 0o777) == 0o600
    assert victim.read_bytes() == b'precious' and (victim.stat().st_mode & 0o777) == 0o600
    with pytest.raises(KvmError, match='^cloud_init: .* appeared while'):
        write_private_file('cloud_init', str(final), b'other')
    assert final.read_bytes() == b'data'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['seed.iso', 'seed.iso.tmp', 'victim'], 'no temporary left'


def test_qemu_img_image_is_0600_and_never_follows_a_link(tmp_path):
    import shutil
    from ansible_collections.kvmops.kvm.plugins.module_utils._qemu_img import create_image
    if not shutil.which('qemu-img'):
        pytest.skip('qemu-img is not installed')
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    final = tmp_path / 'disk.qcow2'
    final.symlink_to(victim)
    with pytest.raises(KvmError, match=r'^disks\[0\]: .* is a symbolic link'):
        create_image(FakeModule(commands='real'), 'disks[0]', str(final), 'qcow2', size_bytes=1024 ** 2)
    final.unlink()
    create_image(FakeModule(commands='real'), 'disks[0]', str(final), 'qcow2', size_bytes=1024 ** 2)
    assert (final.stat().st_mode & 0o777) == 0o600 and final.read_bytes()[:4] == b'QFI\xfb'
    assert victim.read_bytes() == b'precious'
    with pytest.raises(KvmError, match=r'^disks\[0\]: .* appeared while'):
        create_image(FakeModule(commands='real'), 'disks[0]', str(final), 'qcow2', size_bytes=1024 ** 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['disk.qcow2', 'victim'], 'no temporary left'


def test_manager_refuses_a_link_at_the_seed_or_a_new_disk_before_any_write(test_client, tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    args = dict(name='kvmops-unit-seed', memory='128MiB', virt_type='qemu',
                cloud_init=dict(user_data={'a': 1}, directory=str(tmp_path)))
    spec = validate(params(**args))
    seed = spec['cloud_init']['path']
    os.symlink(str(victim), seed)
    with pytest.raises(KvmError, match=r'^cloud_init\.directory: .* is a symbolic link'):
        _converge(test_client, args)
    os.unlink(seed)
    disk = tmp_path / 'disk.qcow2'
    disk.symlink_to(tmp_path / 'nowhere')
    with pytest.raises(KvmError, match=r'^disks\[0\]\.path: .* dangling symbolic link'):
        _converge(test_client, dict(args, disks=[dict(path=str(disk), size='1G')]))
    assert test_client.write_log == [] and victim.read_bytes() == b'precious'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['disk.qcow2', 'victim']


# ---------------------------------------------------------------- serial console and balloon (issue 16)
ADOPTED = '''<domain type='kvm'><name>adopted</name><uuid>4a1b7c7e-3f5e-4d7a-9a43-1d2c0e9a6b01</uuid>
<memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/x/a.qcow2'/>
<target dev='vda' bus='virtio'/></disk><interface type='network'><mac address='52:54:00:aa:bb:01'/>
<source network='default'/><model type='virtio'/></interface><graphics type='vnc' port='-1' autoport='yes'/>
</devices></domain>'''


def test_serial_console_is_untouched_on_an_adopted_guest_unless_given():
    current = parse(ADOPTED)
    for args, options in ((dict(autostart=False), []), (dict(vcpus=1), []), (dict(cmdline='x'), ['cmdline'])):
        spec = validate(params(name='adopted', **args))
        root, changes, _opts = plan_config(spec, current, CTX)
        assert root.find('devices/serial') is None and root.find('devices/memballoon') is None
        assert [c['option'] for c in changes] == options
    root, changes, _opts = plan_config(validate(params(name='adopted', memory='512MiB')), current, CTX)
    assert [(c['option'], c['action']) for c in changes] == [('memory', 'add')], 'the balloon memory needs'
    assert root.find('devices/memballoon').get('model') == 'virtio'
    root, changes, _opts = plan_config(validate(params(name='adopted', serial_console=True)), current, CTX)
    assert [(c['option'], c['before'], c['after']) for c in changes] == [('serial_console', False, True)]
    assert root.find('devices/serial').get('type') == 'pty'
    live = parse(ADOPTED)
    _actions, pending = plan_live(validate(params(name='adopted', serial_console=True)), {}, root, live, CTX)
    assert pending == ['serial_console']
    _actions, pending = plan_live(validate(params(name='adopted', autostart=True)), {}, root, live, CTX)
    assert pending == [], 'an unmanaged serial console is no pending change'
    again, changes, _opts = plan_config(validate(params(name='adopted', serial_console=True)), root, CTX)
    assert changes == []


def test_serial_console_false_removes_serials_and_their_consoles():
    current = parse(ADOPTED.replace('</devices>', "<serial type='pty'><target port='0'/></serial>"
                                    "<console type='pty'><target type='serial' port='0'/></console>"
                                    "<console type='pty'><target type='virtio' port='1'/></console></devices>"))
    root, changes, _opts = plan_config(validate(params(name='adopted', serial_console=False)), current, CTX)
    assert [(c['option'], c['before'], c['after']) for c in changes] == [('serial_console', True, False)]
    assert root.find('devices/serial') is None
    assert [c.find('target').get('type') for c in root.findall('devices/console')] == ['virtio']
    new, _changes, _opts = plan_config(validate(params(name='vm02', memory='128MiB')), None, CTX)
    assert new.find('devices/serial') is not None, 'a new guest gets one by default'
    xml = ADOPTED.replace('<vcpu>1</vcpu>', '<vcpu>2</vcpu>').replace('adopted', 'vm02')
    replaced, changes, _opts = plan_config(validate(params(name='vm02', xml=xml)), new, CTX)
    assert [c['option'] for c in changes] == ['xml']
    assert replaced.find('devices/serial') is not None, 'xml that does not mention it leaves the console alone'
    new, _changes, _opts = plan_config(validate(params(name='vm02', memory='128MiB', serial_console=False)), None, CTX)
    assert new.find('devices/serial') is None


# ---------------------------------------------------------------- disk images through the storage layer
def test_storage_layer_creates_disk_images_0600_without_following_links(tmp_path):
    import shutil
    from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
    from ansible_collections.kvmops.kvm.plugins.module_utils._storage import create_at_path, image_plan
    if not shutil.which('qemu-img'):
        pytest.skip('qemu-img is not installed')
    module = FakeModule(commands='real')
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    final = tmp_path / 'disk.qcow2'
    final.symlink_to(victim)
    plan = image_plan('disks[0]', 1024 ** 2, 'qcow2', names=dict(capacity='disks[0].size'))
    with pytest.raises(KvmError, match=r'^disks\[0\]: .* is a symbolic link'):
        create_at_path(ChangeSet(module), module, 'disks[0]', str(final), plan)
    final.unlink()
    create_at_path(ChangeSet(FakeModule(commands='real', check_mode=True)), module, 'disks[0]', str(final), plan)
    assert not final.exists(), 'check mode creates nothing'
    create_at_path(ChangeSet(module), module, 'disks[0]', str(final), plan)
    assert (final.stat().st_mode & 0o777) == 0o600 and final.read_bytes()[:4] == b'QFI\xfb'
    assert victim.read_bytes() == b'precious'
    with pytest.raises(KvmError, match=r'^disks\[0\]: .* appeared while'):
        create_at_path(ChangeSet(module), module, 'disks[0]', str(final), plan)


def test_disk_smaller_than_its_backing_image_is_refused_before_any_write(test_client, tmp_path):
    import shutil
    import subprocess
    if not shutil.which('qemu-img'):
        pytest.skip('qemu-img is not installed')
    base = tmp_path / 'base.qcow2'
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', str(base), '64M'])
    args = dict(name='kvmops-unit-overlay', memory='128MiB', virt_type='qemu',
                disks=[dict(path=str(tmp_path / 'o.qcow2'), backing=str(base), size='32M')])
    module = FakeModule(dict(params(**args), uri='test:///default'), commands='real')
    test_client.module = module
    with pytest.raises(KvmError, match=r'^disks\[0\]\.size: 33554432 is smaller than the backing image'):
        Manager(test_client, module).run()
    assert test_client.write_log == [] and not (tmp_path / 'o.qcow2').exists()
