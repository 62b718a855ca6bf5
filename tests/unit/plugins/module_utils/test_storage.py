"""The one storage layer for images (_storage): checks, volume XML, creation in a pool and at a path, deletion."""

import os
import shutil

import pytest

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils import _storage
from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse

GIB = 1024 ** 3
BACKING = dict(path='/i/base.qcow2', format='qcow2', capacity=10 * GIB, vol=None)
needs_qemu_img = pytest.mark.skipif(not shutil.which('qemu-img'), reason='qemu-img not installed')


@pytest.fixture
def test_client():
    cli = LibvirtClient(FakeModule({}), uri='test:///default')
    yield cli
    cli.close()


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(), 'capacity is required to create vol x'),
    (dict(backing=BACKING, capacity=GIB), r'capacity: 1073741824 is smaller than the backing image \(10737418240 bytes\)'),
    (dict(backing=BACKING, fmt='raw'), 'format: raw cannot have a backing file'),
    (dict(backing=BACKING, backing_format='raw'), 'backing_format is raw but /i/base.qcow2 is a qcow2 image'),
    (dict(backing=dict(BACKING, format='vmdk')), "backing: /i/base.qcow2 has format 'vmdk'"),
    (dict(backing=BACKING, capacity=GIB, names=dict(capacity='disks[0].size')), '^disks\\[0\\].size: 1073741824 is smaller'),
])
def test_image_plan_refuses(kwargs, fragment):
    with pytest.raises(KvmError, match=fragment):
        _storage.image_plan('vol x', **kwargs)


def test_image_plan_defaults():
    assert _storage.image_plan('v', capacity=1000) == dict(format='qcow2', capacity=1024, allocation='sparse', backing=None)
    overlay = _storage.image_plan('v', backing=BACKING, allocation='full')
    assert overlay == dict(format='qcow2', capacity=10 * GIB, allocation='full',
                           backing=dict(path='/i/base.qcow2', format='qcow2', capacity=10 * GIB))
    assert _storage.preallocation(overlay) == 'falloc'
    assert _storage.preallocation(dict(format='raw', allocation='full')) == 'full'
    assert _storage.preallocation(dict(format='raw', allocation='sparse')) is None


def test_check_capacity_defaults_to_the_source():
    assert _storage.check_capacity('size', None, dict(capacity=5), 'x') == 5
    assert _storage.check_capacity('size', 6, dict(capacity=5), 'x') == 6
    with pytest.raises(KvmError, match='^size: 4 is smaller than x'):
        _storage.check_capacity('size', 4, dict(capacity=5), 'x')


def test_volume_xml():
    plan = _storage.image_plan('v', backing=BACKING, capacity=20 * GIB)
    root = parse(_storage.volume_xml('web.qcow2', plan, perms=dict(mode='0600', owner=None, group=None)))
    assert root.findtext('name') == 'web.qcow2' and root.findtext('capacity') == str(20 * GIB)
    assert root.findtext('allocation') == '0' and root.find('target/format').get('type') == 'qcow2'
    assert root.findtext('target/permissions/mode') == '0600' and root.find('target/permissions/owner') is None
    assert root.findtext('backingStore/path') == '/i/base.qcow2'
    assert root.find('backingStore/format').get('type') == 'qcow2'
    raw = parse(_storage.volume_xml('d.raw', dict(format='raw', capacity=GIB, allocation='full', backing=None)))
    assert raw.findtext('allocation') == str(GIB) and raw.find('target/permissions') is None


def test_create_in_pool_check_mode_then_real_then_delete(test_client):
    pool = test_client.find_pool('default-pool')
    plan = _storage.image_plan('v', capacity=GIB)
    check = ChangeSet(FakeModule(check_mode=True), test_client)
    assert _storage.create_in_pool(check, test_client, pool, 'kvmops-storage.qcow2', plan) is None
    assert 'kvmops-storage.qcow2' not in pool.listVolumes()
    real = ChangeSet(FakeModule(), test_client)
    vol = _storage.create_in_pool(real, test_client, pool, 'kvmops-storage.qcow2', plan)
    assert vol.info()[1] == GIB and 'kvmops-storage.qcow2' in pool.listVolumes()
    assert _storage.delete_image(check, test_client, vol=vol) == 'volume' and 'kvmops-storage.qcow2' in pool.listVolumes()
    assert _storage.delete_image(real, test_client, vol=vol) == 'volume'
    assert 'kvmops-storage.qcow2' not in pool.listVolumes()


def test_backing_image_needs_a_volume_of_the_pool(test_client):
    pool = test_client.find_pool('default-pool')
    with pytest.raises(KvmError, match='^backing: no volume nope.qcow2 in pool default-pool'):
        _storage.backing_image(FakeModule(), test_client, 'backing', 'nope.qcow2', pool=pool)
    with pytest.raises(KvmError, match='^disks\\[0\\].backing: nope.qcow2 is not an absolute path'):
        _storage.backing_image(FakeModule(), test_client, 'disks[0].backing', 'nope.qcow2')
    with pytest.raises(KvmError, match='is not a volume libvirt knows'):
        _storage.backing_image(FakeModule(), test_client, 'backing', '/nonexistent/b.qcow2', local=False)


@needs_qemu_img
def test_create_at_path_overlay_checked_against_its_backing(tmp_path, test_client):
    module = FakeModule(commands='real')
    base = str(tmp_path / 'base.qcow2')
    _storage.create_at_path(ChangeSet(module), module, 'disks[0]', base, _storage.image_plan('base', capacity=8 * 1024 ** 2))
    backing = _storage.backing_image(module, test_client, 'disks[1].backing', base)
    assert (backing['format'], backing['capacity'], backing['vol']) == ('qcow2', 8 * 1024 ** 2, None)
    with pytest.raises(KvmError, match='^disks\\[1\\].size: 1048576 is smaller than the backing image'):
        _storage.image_plan('top', capacity=1024 ** 2, backing=backing, names=dict(capacity='disks[1].size'))
    plan = _storage.image_plan('top', backing=backing)
    top = str(tmp_path / 'top.qcow2')
    check = FakeModule(commands='real', check_mode=True)
    _storage.create_at_path(ChangeSet(check), check, 'disks[1]', top, plan)
    assert not os.path.exists(top) and check.commands == []
    _storage.create_at_path(ChangeSet(module), module, 'disks[1]', top, plan)
    assert os.stat(top).st_mode & 0o777 == 0o600
    info = _storage.image_info(module, top)
    assert info['virtual-size'] == 8 * 1024 ** 2 and info['backing-filename'] == base
    imported = _storage.inspect_import(module, test_client, base)
    assert (imported['format'], imported['capacity']) == ('qcow2', 8 * 1024 ** 2)
    with pytest.raises(KvmError, match='has a backing file'):
        _storage.inspect_import(module, test_client, top)
    assert _storage.delete_image(ChangeSet(check), test_client, path=top) == 'file' and os.path.exists(top)
    assert _storage.delete_image(ChangeSet(module), test_client, path=top) == 'file' and not os.path.exists(top)
    assert _storage.delete_image(ChangeSet(module), test_client, path=top, local=False) is None
