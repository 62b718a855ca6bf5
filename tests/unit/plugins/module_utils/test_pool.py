"""kvm_pool's XML model and manager against libvirt's test driver."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _pool
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse, subset_differences, to_string
from storage_modules import driver_client, module_class

Module = module_class(_pool.ARGUMENT_SPEC)


@pytest.fixture
def test_client():
    cli = driver_client(Module, name='x')
    yield cli
    cli.close()


def ensure(client, check_mode=False, **params):
    return _pool.ensure(Module(check_mode=check_mode, **params), client)


@pytest.mark.parametrize('value, expected', [
    ('0750', '0750'), ('750', '0750'), ('0o711', '0711'), (0o755, '0755'), ('2775', '2775'), (None, None),
])
def test_normalize_mode(value, expected):
    assert _pool.normalize_mode(value) == expected


@pytest.mark.parametrize('value', ['rwx', '0999', '77777', True, -1])
def test_normalize_mode_rejects(value):
    with pytest.raises(KvmError, match='mode'):
        _pool.normalize_mode(value)


@pytest.mark.parametrize('value, kind, expected', [('0', 'owner', '0'), ('root', 'owner', '0'), ('root', 'group', '0'), (None, 'owner', None)])
def test_resolve_id(value, kind, expected):
    assert _pool.resolve_id(value, kind) == expected


def test_resolve_id_unknown_name():
    with pytest.raises(KvmError, match="^owner: 'no-such-user-kvmops'"):
        _pool.resolve_id('no-such-user-kvmops', 'owner')


def _params(**kw):
    return Module(name='p1', **kw).params


@pytest.mark.parametrize('pool_type, params, fragment', [
    ('dir', dict(), 'path: required for a new dir pool'),
    ('dir', dict(path='rel'), 'path: must be an absolute path'),
    ('dir', dict(path='/p', source=dict(host='h')), 'source.host is not used by dir pools'),
    ('fs', dict(path='/p'), 'source.devices: required for a new fs pool'),
    ('fs', dict(path='/p', source=dict(devices=['/dev/a', '/dev/b'])), 'exactly one device'),
    ('fs', dict(path='/p', source=dict(devices=['/dev/a'], format='ntfs3')), "source.format 'ntfs3'"),
    ('netfs', dict(path='/p', source=dict(host='h')), 'source.dir: required for a new netfs pool'),
    ('netfs', dict(path='/p', source=dict(host='h', dir='/e', port=0)), 'source.port'),
    ('logical', dict(build=True), 'build of a logical pool needs source.devices'),
    ('logical', dict(source=dict(devices=['sdb'])), 'source.devices[0]: must be an absolute path'),
    ('logical', dict(source=dict(format='xfs')), 'lvm2'),
    ('iscsi', dict(source=dict(host='h')), 'source.devices: required for a new iscsi pool'),
    ('iscsi', dict(source=dict(host='h', devices=['iqn.2004-04.com.example:t1']), build=True),
     'build is not supported for iscsi'),
    ('dir', dict(path='/p', mode='abc'), 'mode: must be an octal'),
    # hostile input: refused before anything is defined or built
    ('dir', dict(path='/x/../../etc', build=True), "path: must not contain '..' components"),
    ('dir', dict(path='/var/lib/x\n/etc'), 'path: must not contain control characters'),
    ('dir', dict(path='/p', mode='0750\n'), 'mode: must not contain control characters'),
    ('dir', dict(path='/p', owner='0\nroot'), 'owner: must not contain control characters'),
    ('dir', dict(path='/p', group='99999999999'), 'group: must be at most'),
    ('netfs', dict(path='/p', source=dict(host='nfs;reboot', dir='/e')), 'source.host: invalid DNS name'),
    ('netfs', dict(path='/p', source=dict(host='h', dir='/e/../../etc')), "source.dir: must not contain '..'"),
    ('netfs', dict(path='/p', source=dict(host='h', dir='e')), 'source.dir: must be an absolute path'),
    ('netfs', dict(path='/p', source=dict(host='h', dir='share\n', format='cifs')), 'source.dir: must not contain control'),
    ('fs', dict(path='/p', source=dict(devices=['/dev/../etc/passwd'])), "source.devices[0]: must not contain '..'"),
    ('iscsi', dict(source=dict(host='h', devices=['iqn.x'])), 'source.devices[0]: invalid iSCSI name'),
    ('iscsi', dict(source=dict(host='h', devices=['iqn.2004-04.com.example:t1'], initiator='iqn\n')),
     'source.initiator: invalid iSCSI name'),
    ('logical', dict(source=dict(name='vg\nx')), 'source.name: invalid source name'),
])
def test_validate_rejects(pool_type, params, fragment):
    with pytest.raises(KvmError) as err:
        _pool.validate(_params(**params), pool_type)
    assert fragment in err.value.msg


def test_validate_normalizes_paths():
    params = _params(path='/var//lib/./pools/p1/', source=dict(devices=None, host=None, dir=None, port=None,
                                                               name=None, format=None, initiator=None))
    _pool.validate(params, 'dir')
    assert params['path'] == '/var/lib/pools/p1'


def test_validate_existing_pool_needs_nothing():
    _pool.validate(_params(), 'netfs', creating=False)


@pytest.mark.parametrize('pool_type, params, expected', [
    ('dir', dict(path='/p', mode='750', owner='0'),
     "<pool type='dir'><name>p1</name><target><path>/p</path>"
     "<permissions><mode>0750</mode><owner>0</owner></permissions></target></pool>"),
    ('netfs', dict(path='/m', source=dict(host='nfs01', dir='/exports/vms')),
     "<pool type='netfs'><name>p1</name><source><host name='nfs01'/><dir path='/exports/vms'/>"
     "<format type='nfs'/></source><target><path>/m</path></target></pool>"),
    ('fs', dict(path='/m', source=dict(devices=['/dev/sdb1'], format='ext4')),
     "<pool type='fs'><name>p1</name><source><device path='/dev/sdb1'/><format type='ext4'/></source>"
     "<target><path>/m</path></target></pool>"),
    ('logical', dict(source=dict(devices=['/dev/sdb', '/dev/sdc'])),
     "<pool type='logical'><name>p1</name><source><device path='/dev/sdb'/><device path='/dev/sdc'/>"
     "<name>p1</name><format type='lvm2'/></source></pool>"),
    ('iscsi', dict(path='/dev/disk/by-path', source=dict(host='san', port=3260, devices=['iqn.2024-01.com.example:t1'],
                                                         initiator='iqn.2024-01.com.example:hv01')),
     "<pool type='iscsi'><name>p1</name><source><host name='san' port='3260'/>"
     "<device path='iqn.2024-01.com.example:t1'/><initiator><iqn name='iqn.2024-01.com.example:hv01'/></initiator>"
     "</source><target><path>/dev/disk/by-path</path></target></pool>"),
])
def test_wanted_xml(pool_type, params, expected):
    got = _pool.wanted_xml(_params(**params), pool_type)
    assert to_string(got) == to_string(parse(expected))


def test_merge_keeps_libvirt_fields_and_replaces_device_list():
    actual = parse("<pool type='logical'><name>p1</name><uuid>u-1</uuid><source><device path='/dev/a'/>"
                   "<device path='/dev/b'/><name>vg</name></source><target><path>/dev/vg</path></target></pool>")
    wanted = parse("<pool type='logical'><name>p1</name><source><device path='/dev/c'/></source></pool>")
    merged = _pool.merge(wanted, actual)
    assert merged.findtext('uuid') == 'u-1'
    assert [d.get('path') for d in merged.findall('source/device')] == ['/dev/c']
    assert merged.findtext('source/name') == 'vg' and merged.findtext('target/path') == '/dev/vg'
    assert subset_differences(wanted, merged) == []
    assert [d.get('path') for d in actual.findall('source/device')] == ['/dev/a', '/dev/b'], 'input untouched'


# ------------------------------------------------------------------ manager on test:///default
def test_define_check_mode_writes_nothing_then_real_then_idempotent(test_client):
    params = dict(name='kvmops-unit', type='dir', path='/nonexistent/kvmops-unit', autostart=True, state='active')
    first = ensure(test_client, check_mode=True, **params)
    assert first['changed'] and first['actions'] == ['define', 'start', 'autostart']
    assert first['pool']['uuid'] is None and first['pool']['active'] is True
    assert test_client.find_pool('kvmops-unit') is None
    assert first['diff']['before'] == '' and '# active: yes, autostart: yes' in first['diff']['after']

    second = ensure(test_client, **params)
    assert second['actions'] == first['actions']
    pool = test_client.find_pool('kvmops-unit')
    assert pool.isActive() and pool.autostart()
    assert second['pool']['uuid'] == pool.UUIDString()

    for check in (True, False):
        again = ensure(test_client, check_mode=check, **params)
        assert again['changed'] is False and again['actions'] == []
        assert again['diff']['before'] == again['diff']['after']


def test_existing_pool_type_change_is_refused(test_client):
    with pytest.raises(KvmError, match='changing type to netfs is not supported'):
        ensure(test_client, name='default-pool', type='netfs', source=dict(host='h', dir='/d'), path='/x')


def test_missing_pool_needs_type(test_client):
    with pytest.raises(KvmError, match='type is required'):
        ensure(test_client, name='kvmops-unit-missing')


def test_stop_then_absent_keeps_data(test_client):
    ensure(test_client, name='kvmops-unit2', type='dir', path='/nonexistent/u2', state='active')
    stopped = ensure(test_client, name='kvmops-unit2', state='inactive')
    assert stopped['actions'] == ['stop'] and not test_client.find_pool('kvmops-unit2').isActive()
    check = ensure(test_client, check_mode=True, name='kvmops-unit2', state='absent')
    assert check['actions'] == ['undefine'] and test_client.find_pool('kvmops-unit2') is not None
    gone = ensure(test_client, name='kvmops-unit2', state='absent')
    assert gone['actions'] == ['undefine'] and gone['deleted_volumes'] == []
    assert test_client.find_pool('kvmops-unit2') is None
    assert ensure(test_client, name='kvmops-unit2', state='absent')['changed'] is False


def test_pending_restart_reported_for_a_changed_running_pool(test_client):
    ensure(test_client, name='kvmops-unit3', type='dir', path='/nonexistent/a', state='active')
    moved = ensure(test_client, name='kvmops-unit3', path='/nonexistent/b', state='active')
    assert moved['actions'] == ['redefine'] and moved['pending_restart'] == ['path']
    assert [(c['scope'], c['option'], c['action']) for c in moved['changes']] == [('config', 'definition', 'redefine')]
    restarted = ensure(test_client, name='kvmops-unit3', path='/nonexistent/b', restart='if_needed', state='active')
    # The test driver shows no separate persistent definition, so it redefines once more here.
    assert restarted['actions'][-2:] == ['stop', 'start'] and restarted['pending_restart'] == []
    assert [(c['scope'], c['option'], c['action']) for c in restarted['changes']][-2:] == [
        ('live', 'state', 'stop'), ('live', 'state', 'start')]
    # (Whether the restart applies the new definition is libvirtd's part: see tests/integration/test_kvm_pool.py.)


@pytest.mark.parametrize('diffs, expected', [
    (['pool/target/path: \'/a\' -> \'/b\''], ['path']),
    (["pool/source/host/@name: 'a' -> 'b'", "pool/source/host/@port: '1' -> '2'", "pool/source/dir/@path: 'x' -> 'y'"],
     ['source.host', 'source.port', 'source.dir']),
    (["pool/source/device[2]: missing", "pool/source/device/@path: 'a' -> 'b'"], ['source.devices']),
])
def test_restart_options_name_the_options(diffs, expected):
    assert _pool.restart_options(diffs) == expected


def test_changes_entries_and_deprecated_actions(test_client):
    params = dict(name='kvmops-unit4', type='dir', path='/nonexistent/u4', autostart=True, state='active')
    check = ensure(test_client, check_mode=True, **params)
    assert [(c['scope'], c['option'], c['action']) for c in check['changes']] == [
        ('config', 'definition', 'define'), ('live', 'state', 'start'), ('config', 'autostart', 'set')]
    assert check['pending_restart'] == [] and test_client.find_pool('kvmops-unit4') is None
    real = ensure(test_client, **params)
    assert real['changes'] == check['changes'] and real['actions'] == check['actions']
    gone = ensure(test_client, name='kvmops-unit4', state='absent')
    assert [(c['scope'], c['action']) for c in gone['changes']] == [('live', 'stop'), ('config', 'undefine')]


def test_vocabulary_pool_alias_and_present_default():
    from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
    result = ModuleArgumentSpecValidator(_pool.ARGUMENT_SPEC).validate(dict(pool='images'))
    assert result.error_messages == [] and result.validated_parameters['name'] == 'images'
    assert result.validated_parameters['state'] == 'present'


def test_present_defines_and_leaves_a_new_pool_stopped(test_client):
    params = dict(name='kvmops-unit5', type='dir', path='/nonexistent/u5')
    defined = ensure(test_client, **params)
    assert defined['actions'] == ['define'] and not test_client.find_pool('kvmops-unit5').isActive()
    ensure(test_client, name='kvmops-unit5', state='absent')


@pytest.mark.parametrize('params, words', [
    (dict(owner='root'), "owner: 'root' is a name, and names are looked up on the host that runs the module"),
    (dict(group='root'), "group: 'root' is a name"),
])
def test_remote_uri_refuses_owner_and_group_names_before_any_write(test_client, monkeypatch, params, words):
    """A name would be resolved on the module's host, not on the hypervisor (issue 17): refused, nothing defined."""
    monkeypatch.setattr(_pool, 'is_local_uri', lambda uri: False)
    with pytest.raises(KvmError, match='^' + words):
        ensure(test_client, name='kvmops-unit-remote', type='dir', path='/var/lib/kvmops-unit-remote', **params)
    assert 'kvmops-unit-remote' not in test_client.conn.listDefinedStoragePools() + test_client.conn.listStoragePools()
    result = ensure(test_client, check_mode=True, name='kvmops-unit-remote', type='dir', path='/var/lib/kvmops-unit-remote',
                    owner='107', group='107')
    assert result['changed'], 'numeric ids are accepted on a remote URI'
