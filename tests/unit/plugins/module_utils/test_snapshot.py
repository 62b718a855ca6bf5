"""kvm_snapshot's model and manager against libvirt's test driver."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _snapshot
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse
from storage_modules import driver_client, module_class

Module = module_class(_snapshot.ARGUMENT_SPEC)


@pytest.fixture
def test_client():
    cli = driver_client(Module, guest='test', name='x')
    yield cli
    cli.close()


def ensure(client, check_mode=False, **params):
    params.setdefault('guest', 'test')
    return _snapshot.ensure(Module(check_mode=check_mode, **params), client)


@pytest.mark.parametrize('xml, expected', [
    ("<domainsnapshot><name>s1</name><description>d</description><state>running</state><creationTime>1700000000</creationTime>"
     "<memory snapshot='internal'/><disks><disk name='vda' snapshot='internal'/></disks></domainsnapshot>",
     dict(name='s1', description='d', parent=None, creation_time=1700000000, state='running', location='internal',
          memory=True, disk_only=False, disks=[dict(target='vda', snapshot='internal', file=None)])),
    ("<domainsnapshot><name>s2</name><state>disk-snapshot</state><parent><name>s1</name></parent>"
     "<creationTime>1700000100</creationTime><memory snapshot='no'/><disks><disk name='vda' snapshot='external'>"
     "<source file='/i/d.s2'/></disk><disk name='hdc' snapshot='no'/></disks></domainsnapshot>",
     dict(name='s2', description=None, parent='s1', creation_time=1700000100, state='disk-snapshot', location='external',
          memory=False, disk_only=True, disks=[dict(target='vda', snapshot='external', file='/i/d.s2'),
                                               dict(target='hdc', snapshot='no', file=None)])),
    ("<domainsnapshot><name>off</name><state>shutoff</state><creationTime>1</creationTime>"
     "<memory snapshot='no'/></domainsnapshot>",
     dict(name='off', description=None, parent=None, creation_time=1, state='shutoff', location='internal',
          memory=False, disk_only=False, disks=[])),
])
def test_snapshot_xml_facts(xml, expected):
    assert _snapshot.snapshot_xml_facts(parse(xml)) == expected


@pytest.mark.parametrize('params, fragment', [
    (dict(quiesce=True), 'quiesce needs disk_only'),
    (dict(memory=True, disk_only=True), 'exclude each other'),
    (dict(commit_timeout=0), 'commit_timeout: must be at least 1'),
    (dict(commit_timeout=10 ** 12), 'commit_timeout: must be at most'),
    (dict(name='a/b'), 'name: invalid snapshot name'),
    (dict(name='s\n1'), 'name: invalid snapshot name'),
    (dict(name='$(id)'), 'name: invalid snapshot name'),
    (dict(guest='d\n'), 'guest: invalid guest name'),
    (dict(guest="d'x"), 'guest: invalid guest name'),
    # the deprecated alias: ansible-core keeps it in params beside guest, and the message names it
    (dict(guest='d\n', domain='d\n'), 'domain: invalid guest name'),
    (dict(description='one\ntwo'), 'description: must not contain control characters'),
    (dict(description='x' * 5000), 'description: is longer than 4096'),
])
def test_validate_rejects(params, fragment):
    merged = dict(guest='d', name='s')
    merged.update(params)
    manager = _snapshot.SnapshotManager(Module(**merged), driver_client(Module))
    with pytest.raises(KvmError) as err:
        manager.validate()
    assert fragment in err.value.msg


def test_create_check_real_idempotent_revert_delete(test_client):
    first = ensure(test_client, check_mode=True, name='s1', description='one')
    assert first['changed'] and first['actions'] == ['create with memory']
    assert [(c['scope'], c['option'], c['action'], c['after']) for c in first['changes']] == [
        ('config', 'snapshot', 'create', 's1')]
    assert first['pending_restart'] == []
    assert first['snapshot']['name'] == 's1' and first['snapshot']['creation_time'] is None
    dom = test_client.find_domain('test')
    assert dom.listAllSnapshots() == []
    assert first['diff']['before'] == '' and '* s1: internal, running' in first['diff']['after']

    real = ensure(test_client, name='s1', description='one')
    assert real['actions'] == first['actions'] and real['snapshot']['description'] == 'one'
    for check in (True, False):
        assert ensure(test_client, check_mode=check, name='s1', description='one')['changed'] is False

    ensure(test_client, name='s2')
    with pytest.raises(KvmError, match='set force: true'):
        ensure(test_client, name='s1', state='current')
    check = ensure(test_client, check_mode=True, name='s1', state='current', force=True)
    assert check['actions'] == ['revert'] and [s['current'] for s in check['snapshots']] == [True, False]
    assert [(c['scope'], c['action']) for c in check['changes']] == [('live', 'revert')]
    assert dom.snapshotCurrent().getName() == 's2', 'check mode reverted'

    gone = ensure(test_client, name='s2', state='absent')
    assert gone['actions'] == ['delete'] and [s['name'] for s in gone['snapshots']] == ['s1']
    assert ensure(test_client, name='s2', state='absent')['changed'] is False
    ensure(test_client, name='s1', state='absent')


def test_missing_domain_and_snapshot(test_client):
    with pytest.raises(KvmError, match='^guest: domain nope does not exist'):
        ensure(test_client, guest='nope', name='s')
    with pytest.raises(KvmError, match='nothing to revert to'):
        ensure(test_client, name='never', state='current')


def test_domain_is_a_deprecated_alias_of_guest():
    from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
    result = ModuleArgumentSpecValidator(_snapshot.ARGUMENT_SPEC).validate(dict(domain='vm01', name='s1'))
    assert result.error_messages == [] and result.validated_parameters['guest'] == 'vm01'
    assert [(d['version'], d['collection_name']) for d in result._deprecations] == [('2.0.0', 'kvmops.kvm')]
