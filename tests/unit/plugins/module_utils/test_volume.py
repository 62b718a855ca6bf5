"""kvm_volume's model and manager against libvirt's test driver (no qemu-img needed)."""

import os

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _storage, _volume
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from storage_modules import driver_client, module_class

Module = module_class(_volume.ARGUMENT_SPEC)


@pytest.fixture
def test_client():
    cli = driver_client(Module, pool='default-pool', name='x')
    yield cli
    cli.close()


def ensure(client, check_mode=False, **params):
    params.setdefault('pool', 'default-pool')
    return _volume.ensure(Module(check_mode=check_mode, **params), client)


@pytest.mark.parametrize('size, expected', [(0, 0), (1, 512), (512, 512), (513, 1024), (10 * 1024 ** 3, 10 * 1024 ** 3)])
def test_round_up(size, expected):
    assert _volume.round_up(size) == expected


@pytest.mark.parametrize('params, fragment', [
    (dict(name='a/b'), 'name: invalid volume name'),
    (dict(name='..'), 'name: invalid volume name'),
    (dict(name='v\n1'), 'name: invalid volume name'),
    (dict(name="v'$(id)"), 'name: invalid volume name'),
    (dict(pool='p\nq'), 'pool: invalid pool name'),
    (dict(capacity='1X'), 'capacity: unknown size unit'),
    (dict(capacity='0'), 'capacity: must be at least 1 bytes'),
    (dict(capacity='65P'), 'capacity: must be at most 64 PiB'),
    (dict(capacity='9' * 400), 'capacity: invalid size'),
    (dict(backing='a', import_from='/b'), 'mutually exclusive'),
    (dict(backing_format='raw'), 'backing_format needs backing'),
    (dict(backing='a', format='raw'), 'needs format qcow2'),
    (dict(backing='/var/lib/libvirt/images/../../../etc/shadow'), "backing: must not contain '..' components"),
    (dict(backing='base\n.qcow2'), 'backing: invalid volume name'),
    (dict(clone_from='/x/../y'), "clone_from: must not contain '..' components"),
    (dict(import_from='rel.img'), 'import_from: must be an absolute path'),
    (dict(import_from='/tmp/../etc/shadow'), "import_from: must not contain '..' components"),
    (dict(mode='9'), 'mode: must be an octal'),
])
def test_validate_rejects(params, fragment):
    merged = dict(pool='p', name='v.qcow2')
    merged.update(params)
    manager = _volume.VolumeManager(Module(**merged), driver_client(Module))
    with pytest.raises(KvmError) as err:
        manager.validate()
    assert fragment in err.value.msg


def test_validate_normalizes_paths():
    manager = _volume.VolumeManager(Module(pool='p', name='v.qcow2', backing='/var//lib/./b.qcow2', capacity='64P'),
                                    driver_client(Module))
    manager.validate()
    assert manager.params['backing'] == '/var/lib/b.qcow2'
    assert manager.capacity == 64 * 1024 ** 5


def test_set_permissions_never_follows_a_symlink(tmp_path):
    target = tmp_path / 'secret'
    target.write_text('x')
    target.chmod(0o600)
    link = tmp_path / 'vol.img'
    link.symlink_to(target)
    with pytest.raises(OSError):
        _volume.set_permissions(str(link), '0644', None, None)
    assert target.stat().st_mode & 0o777 == 0o600
    _volume.set_permissions(str(target), '0640', None, None)
    assert target.stat().st_mode & 0o777 == 0o640


def test_sparse_stream_handlers(tmp_path):
    path = str(tmp_path / 'sparse.img')
    with open(path, 'wb') as handle:
        handle.truncate(8 * 1024 * 1024)
        handle.seek(4 * 1024 * 1024)
        handle.write(b'x' * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        sections = []
        while True:
            in_data, length = _storage._in_data(None, fd)
            if length == 0:
                break
            if in_data:
                data = _storage._send(None, length, fd)
                sections.append(('data', len(data), set(data)))
            else:
                _storage._skip(None, length, fd)
                sections.append(('hole', length))
    finally:
        os.close(fd)
    assert sum(s[1] for s in sections) == 8 * 1024 * 1024
    data = [s for s in sections if s[0] == 'data']
    assert data and all(s[2] <= set(b'x\0') for s in data)
    assert sections[0][0] == 'hole'


def test_create_check_then_real_then_idempotent(test_client):
    first = ensure(test_client, check_mode=True, name='kvmops-unit.qcow2', capacity='1GiB')
    assert first['changed'] and first['actions'] == ['create']
    assert first['volume']['capacity'] == 1024 ** 3 and first['volume']['format'] == 'qcow2'
    assert first['diff']['before'] == '' and 'capacity: 1073741824' in first['diff']['after']
    pool = test_client.find_pool('default-pool')
    assert 'kvmops-unit.qcow2' not in pool.listVolumes()
    assert [(c['scope'], c['option'], c['action']) for c in first['changes']] == [('config', 'volume', 'create')]
    assert first['changes'][0]['after']['capacity'] == 1024 ** 3 and first['pending_restart'] == []
    second = ensure(test_client, name='kvmops-unit.qcow2', capacity='1GiB')
    assert second['actions'] == ['create'] and 'kvmops-unit.qcow2' in pool.listVolumes()
    assert second['changes'] == first['changes']
    for check in (True, False):
        again = ensure(test_client, check_mode=check, name='kvmops-unit.qcow2', capacity='1GiB')
        assert again['changed'] is False and again['diff']['before'] == again['diff']['after']
    grown = ensure(test_client, check_mode=True, name='kvmops-unit.qcow2', capacity='2GiB')
    assert grown['actions'] == ['resize to %d' % (2 * 1024 ** 3)] and 'capacity: 2147483648' in grown['diff']['after']
    assert grown['changes'] == [dict(scope='config', option='capacity', action='resize', before=1024 ** 3, after=2 * 1024 ** 3)]
    with pytest.raises(KvmError, match='shrink: true'):
        ensure(test_client, name='kvmops-unit.qcow2', capacity='512MiB')
    gone = ensure(test_client, name='kvmops-unit.qcow2', state='absent')
    assert gone['actions'] == ['delete'] and 'kvmops-unit.qcow2' not in pool.listVolumes()
    assert ensure(test_client, name='kvmops-unit.qcow2', state='absent')['changed'] is False


def test_inactive_or_missing_pool(test_client):
    with pytest.raises(KvmError, match='pool nope does not exist'):
        ensure(test_client, pool='nope', name='v', capacity='1M')
    pool = test_client.find_pool('default-pool')
    pool.destroy()
    try:
        with pytest.raises(KvmError, match='pool default-pool is not active'):
            ensure(test_client, name='v', capacity='1M')
    finally:
        pool.create(0)


def test_missing_capacity_and_existing_format_mismatch(test_client):
    with pytest.raises(KvmError, match='capacity is required'):
        ensure(test_client, name='kvmops-unit2.raw')
    ensure(test_client, name='kvmops-unit2.raw', format='raw', capacity='1M')
    with pytest.raises(KvmError, match='exists with format raw, not qcow2'):
        ensure(test_client, name='kvmops-unit2.raw', format='qcow2')
    ensure(test_client, name='kvmops-unit2.raw', state='absent')


def test_volume_is_an_alias_of_name():
    from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
    result = ModuleArgumentSpecValidator(_volume.ARGUMENT_SPEC).validate(dict(pool='images', volume='v.qcow2'))
    assert result.error_messages == [] and result.validated_parameters['name'] == 'v.qcow2'
