"""kvm_domain on a remote URI, decided on libvirt's test driver: everything goes through libvirt's pools.

The test driver is local, so the manager is told the URI is remote (``Manager.local = False``, what
``is_local_uri`` says for ``qemu+ssh://``): nothing may be looked up, created or deleted as a file on the
host that runs the module. The pool ``default-pool`` (directory ``/default-pool``) is the hypervisor's.
"""

import os

import pytest
from fakes import FakeModule

libvirt = pytest.importorskip('libvirt')

from ansible_collections.kvmops.kvm.plugins.module_utils import _storage  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._cloudinit import seed_image  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, Manager, validate  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError  # noqa: E402

POOL_DIR = '/default-pool'
WRITES = ('defineXML', 'defineXMLFlags', 'createXML', 'createXMLFrom', 'upload', 'delete', 'undefineFlags')


def params(**kw):
    out = dict((k, v.get('default')) for k, v in ARGUMENT_SPEC.items())
    out.update(kw)
    for key in ('disks', 'cloud_init'):
        if out.get(key) is None:
            continue
        spec = ARGUMENT_SPEC[key]['options']
        items = out[key] if isinstance(out[key], list) else [out[key]]
        filled = [dict(dict((k, v.get('default')) for k, v in spec.items()), **item) for item in items]
        out[key] = filled if isinstance(out[key], list) else filled[0]
    return out


class Logged(object):
    """A libvirt object whose write calls are logged (the pools and volumes the manager gets)."""

    def __init__(self, obj, log):
        self._obj = obj
        self._log = log

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if name in WRITES:
            def wrapped(*args):
                self._log.append(name)
                return attr(*args)
            return wrapped
        if name in ('storagePoolLookupByName', 'storageVolLookupByName', 'storageVolLookupByPath'):
            return lambda *args: Logged(attr(*args), self._log)
        if name == 'listAllStoragePools':
            return lambda *args: [Logged(p, self._log) for p in attr(*args)]
        return attr


@pytest.fixture
def remote():
    client = LibvirtClient(FakeModule(dict(name='x')), uri='test:///default')
    client.write_log = []
    client._conn = Logged(client.conn, client.write_log)
    yield client
    client.close()


def converge(client, check=False, **args):
    module = FakeModule(dict(params(**args), uri='test:///default'), check_mode=check)
    client.module = module
    manager = Manager(client, module)
    manager.local = False   # as for qemu+ssh://: the module's host is not the hypervisor
    return manager.run()


def volumes(client):
    return sorted(client.find_pool('default-pool').listVolumes())


GUEST = dict(name='kvmops-remote', memory='128MiB', virt_type='qemu', graphics=dict(type='none'))


def test_seed_pool_and_directory_exclude_each_other():
    with pytest.raises(ValidationError, match=r'^cloud_init: give either directory .* or pool'):
        validate(params(name='g', cloud_init=dict(user_data='x', directory='/srv', pool='default')))
    with pytest.raises(ValidationError, match=r'^cloud_init\.pool: '):
        validate(params(name='g', cloud_init=dict(user_data='x', pool='a/b')))


def test_remote_seed_goes_to_the_named_pool_with_the_hash_name(remote, tmp_path):
    args = dict(GUEST, cloud_init=dict(user_data={'a': 1}, pool='default-pool'))
    name, _image = seed_image('kvmops-remote', {'a': 1})
    planned = converge(remote, check=True, **args)
    assert remote.write_log == [] and volumes(remote) == []
    seed = [c for c in planned['changes'] if c['option'] == 'cloud_init']
    assert seed[0]['action'] == 'create_volume'
    assert seed[0]['after'] == dict(pool='default-pool', volume=name, path=os.path.join(POOL_DIR, name))
    cdrom = [d for d in planned['domain']['disks'] if d['device'] == 'cdrom']
    assert cdrom[0]['source'] == os.path.join(POOL_DIR, name)


def test_remote_seed_defaults_to_the_pool_named_default(remote):
    with pytest.raises(KvmError, match=r"^cloud_init\.pool: no pool 'default' on test:///default; .*kvm_pool"):
        converge(remote, check=False, **dict(GUEST, cloud_init=dict(user_data='x')))
    assert remote.write_log == []


def test_remote_seed_directory_is_refused_before_any_write(remote, tmp_path):
    with pytest.raises(KvmError) as err:
        converge(remote, **dict(GUEST, cloud_init=dict(user_data='x', directory=str(tmp_path))))
    assert err.value.msg.startswith('cloud_init.directory: %s would be a directory of the host that runs the module' % tmp_path)
    assert 'give cloud_init.pool' in err.value.msg
    assert remote.write_log == [] and list(tmp_path.iterdir()) == []


def test_remote_seed_needs_a_directory_pool(remote):
    remote.conn.storagePoolCreateXML("<pool type='logical'><name>vg</name><source><name>vg</name><format type='lvm2'/>"
                                     "</source><target><path>/dev/vg</path></target></pool>", 0)
    with pytest.raises(KvmError, match=r"^cloud_init\.pool: pool 'vg' is a logical pool; the seed ISO needs a directory pool"):
        converge(remote, **dict(GUEST, cloud_init=dict(user_data='x', pool='vg')))
    assert remote.write_log == []


def test_remote_path_disk_in_no_pool_is_refused_before_any_write(remote):
    disk = dict(path='/srv/elsewhere/d.qcow2', size='1G')
    with pytest.raises(KvmError) as err:
        converge(remote, **dict(GUEST, disks=[disk]))
    msg = err.value.msg
    assert msg.startswith('disks[0].path: /srv/elsewhere/d.qcow2 is in no storage pool of test:///default')
    assert 'give disks[0].pool and disks[0].volume instead' in msg and 'kvm_pool' in msg
    assert remote.write_log == [] and remote.find_domain('kvmops-remote') is None
    # an existing file would not help either: the module's host is not the hypervisor
    with pytest.raises(KvmError, match=r'is in no storage pool'):
        converge(remote, **dict(GUEST, disks=[dict(path=os.path.abspath(__file__), format='raw')]))


def test_remote_path_disk_is_created_as_a_volume_then_stable_then_removed(remote):
    path = os.path.join(POOL_DIR, 'kvmops-remote.qcow2')
    args = dict(GUEST, disks=[dict(path=path, size='64MiB')])
    planned = converge(remote, check=True, **args)
    assert remote.write_log == [] and volumes(remote) == []
    create = [c for c in planned['changes'] if c['action'] == 'create_volume']
    assert create[0]['after']['pool'] == 'default-pool' and create[0]['after']['volume'] == 'kvmops-remote.qcow2'
    assert create[0]['after']['capacity'] == 64 << 20 and create[0]['after']['format'] == 'qcow2'

    made = converge(remote, **args)
    assert made['changed'] and remote.write_log == ['createXML', 'defineXMLFlags']
    assert volumes(remote) == ['kvmops-remote.qcow2']
    vol = remote.find_pool('default-pool').storageVolLookupByName('kvmops-remote.qcow2')
    assert vol.path() == path and vol.info()[1] == 64 << 20
    assert made['domain']['disks'][0]['source'] == path and made['domain']['disks'][0]['format'] == 'qcow2'

    again = converge(remote, **args)
    assert again['changed'] is False and remote.write_log == ['createXML', 'defineXMLFlags']
    # without format the existing volume's is read through libvirt, not from a file
    assert converge(remote, **dict(GUEST, disks=[dict(path=path)]))['changed'] is False

    # a missing image without size is refused, naming the pool
    with pytest.raises(KvmError, match=r"disks\[1\]: /default-pool/other\.qcow2 does not exist in pool 'default-pool'.*give size"):
        converge(remote, **dict(GUEST, disks=[dict(path=path), dict(path=os.path.join(POOL_DIR, 'other.qcow2'))]))

    check = converge(remote, check=True, name='kvmops-remote', state='absent', remove_storage=True)
    assert [c['action'] for c in check['changes']] == ['undefine', 'delete_volume']
    assert volumes(remote) == ['kvmops-remote.qcow2']
    gone = converge(remote, name='kvmops-remote', state='absent', remove_storage=True)
    assert [c['action'] for c in gone['changes']] == ['undefine', 'delete_volume']
    assert volumes(remote) == [] and remote.find_domain('kvmops-remote') is None


def test_remote_overlay_needs_a_backing_volume(remote):
    pool = remote.find_pool('default-pool')
    base = _storage.create_in_pool(_Changes(), remote, pool, 'base.qcow2',
                                   _storage.image_plan('base', 32 << 20, 'qcow2'))
    try:
        with pytest.raises(KvmError, match=r'disks\[0\]\.backing: /srv/base\.qcow2 is not a volume libvirt knows on'):
            converge(remote, **dict(GUEST, disks=[dict(path=os.path.join(POOL_DIR, 'o.qcow2'), backing='/srv/base.qcow2')]))
        made = converge(remote, **dict(GUEST, disks=[dict(path=os.path.join(POOL_DIR, 'o.qcow2'), backing=base.path())]))
        create = [c for c in made['changes'] if c['action'] == 'create_volume'][0]
        assert create['after']['backing'] == base.path() and create['after']['capacity'] == 32 << 20
        overlay = pool.storageVolLookupByName('o.qcow2')
        assert '<backingStore>' in overlay.XMLDesc(0) and base.path() in overlay.XMLDesc(0)
    finally:
        converge(remote, name='kvmops-remote', state='absent', remove_storage=True)
        base.delete(0)
    assert volumes(remote) == []


def test_pool_disk_overlay_on_a_backing_volume_named_in_its_pool(remote):
    pool = remote.find_pool('default-pool')
    base = _storage.create_in_pool(_Changes(), remote, pool, 'base.qcow2',
                                   _storage.image_plan('base', 32 << 20, 'qcow2'))
    disk = dict(pool='default-pool', volume='o.qcow2', backing='base.qcow2')
    try:
        with pytest.raises(ValidationError, match=r'^disks\[0\]\.backing: must be an absolute path'):
            validate(params(name='g', disks=[dict(path='/default-pool/o.qcow2', backing='base.qcow2')]))
        with pytest.raises(KvmError, match=r'^disks\[0\]\.backing: no volume nope\.qcow2 in pool default-pool'):
            converge(remote, **dict(GUEST, disks=[dict(disk, backing='nope.qcow2')]))
        made = converge(remote, **dict(GUEST, disks=[disk]))
        create = [c for c in made['changes'] if c['action'] == 'create_volume'][0]
        assert create['after']['backing'] == 'base.qcow2' and create['after']['capacity'] == 32 << 20
        assert base.path() in pool.storageVolLookupByName('o.qcow2').XMLDesc(0)
        assert converge(remote, **dict(GUEST, disks=[disk]))['changed'] is False
    finally:
        converge(remote, name='kvmops-remote', state='absent', remove_storage=True)
        base.delete(0)
    assert volumes(remote) == []


def test_clone_from_copies_a_volume_into_the_disk_pool(remote):
    pool = remote.find_pool('default-pool')
    base = _storage.create_in_pool(_Changes(), remote, pool, 'golden.qcow2',
                                   _storage.image_plan('golden', 32 << 20, 'qcow2'))
    del remote.write_log[:]
    by_path = dict(path=os.path.join(POOL_DIR, 'kvmops-remote.qcow2'), clone_from=base.path(), size='64MiB')
    by_name = dict(pool='default-pool', volume='kvmops-remote-b.qcow2', clone_from='golden.qcow2', target='vdb')
    try:
        for bad, fragment in ((dict(by_name, backing='golden.qcow2'), r'give either backing .* or clone_from'),
                              (dict(by_name, device='cdrom', bus='sata'), r'clone_from: only for a disk')):
            with pytest.raises(ValidationError, match=fragment):
                validate(params(name='g', disks=[bad]))
        for bad, fragment in ((dict(by_path, size='1MiB'), r'^disks\[0\]\.size: 1048576 is smaller than clone_from'),
                              (dict(by_path, format='raw'), r'^disks\[0\]\.format: raw, but .* is a qcow2 image'),
                              (dict(by_path, clone_from='/srv/golden.qcow2'), r'clone_from: /srv/golden\.qcow2 is not a volume')):
            with pytest.raises(KvmError, match=fragment):
                converge(remote, **dict(GUEST, disks=[bad]))
        assert remote.write_log == []
        planned = converge(remote, check=True, **dict(GUEST, disks=[by_path, by_name]))
        creates = [c['after'] for c in planned['changes'] if c['action'] == 'create_volume']
        assert [(c['volume'], c['clone_from'], c['capacity'], c['format']) for c in creates] == [
            ('kvmops-remote.qcow2', base.path(), 64 << 20, 'qcow2'), ('kvmops-remote-b.qcow2', 'golden.qcow2', 32 << 20, 'qcow2')]
        assert remote.write_log == [] and volumes(remote) == ['golden.qcow2']
        made = converge(remote, **dict(GUEST, disks=[by_path, by_name]))
        assert remote.write_log == ['createXMLFrom', 'createXMLFrom', 'defineXMLFlags']
        assert [d['format'] for d in made['domain']['disks'] if d['device'] == 'disk'] == ['qcow2', 'qcow2']
        assert pool.storageVolLookupByName('kvmops-remote.qcow2').info()[1] == 64 << 20
        assert converge(remote, **dict(GUEST, disks=[by_path, by_name]))['changed'] is False
    finally:
        converge(remote, name='kvmops-remote', state='absent', remove_storage=True)
        base.delete(0)
    assert volumes(remote) == []


def test_clone_from_on_a_local_path_disk_is_refused(tmp_path):
    client = LibvirtClient(FakeModule(dict(name='x')), uri='test:///default')
    try:
        module = FakeModule(dict(params(**dict(GUEST, disks=[dict(path=str(tmp_path / 'd.qcow2'), clone_from='/x/y')])),
                                 uri='test:///default'))
        client.module = module
        with pytest.raises(KvmError, match=r'^disks\[0\]\.clone_from: a copy is made by libvirt as a volume; give disks\[0\]\.pool'):
            Manager(client, module).run()
        assert list(tmp_path.iterdir()) == []
    finally:
        client.close()


def test_remote_removal_leaves_a_file_in_no_pool_with_a_warning(remote):
    xml = ('<domain type="test"><name>kvmops-remote</name><memory>131072</memory><os><type>hvm</type></os>'
           '<devices><disk type="file" device="disk"><source file="/srv/x.raw"/><target dev="vda"/></disk>'
           '</devices></domain>')
    remote.conn.defineXML(xml)
    module = FakeModule(dict(params(name='kvmops-remote', state='absent', remove_storage=True), uri='test:///default'))
    remote.module = module
    manager = Manager(remote, module)
    manager.local = False
    result = manager.run()
    assert [c['action'] for c in result['changes']] == ['undefine']
    assert result['warnings'] == ['remove_storage: /srv/x.raw is in no storage pool of the remote host; left in place']


class _Changes(object):
    check = False

    @staticmethod
    def write(_what, func, *args):
        return func(*args)


def test_upload_bytes_writes_nothing_in_check_mode_and_leaves_nothing_when_the_upload_fails(remote, tmp_path, monkeypatch):
    """The staging directory is private and always removed; a volume whose upload failed is deleted again."""
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    pool = remote.find_pool('default-pool')
    check = _Changes()
    check.check = True
    assert _storage.upload_bytes(check, remote, pool, 's.iso', b'x' * 4096) is None
    assert remote.write_log == [] and list(tmp_path.iterdir()) == []
    seen = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(**kw):
        path = real_mkdtemp(**kw)
        seen.append(os.stat(path).st_mode & 0o777)
        return path
    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    with pytest.raises(KvmError, match=r'upload'):   # the test driver has no upload stream
        _storage.upload_bytes(_Changes(), remote, pool, 's.iso', b'x' * 4096)
    assert seen == [0o700] and list(tmp_path.iterdir()) == []
    assert volumes(remote) == [], 'the volume created for the upload was deleted again'


def test_remote_path_in_an_inactive_pool_is_refused_before_any_write(remote):
    lonely = remote.conn.storagePoolDefineXML("<pool type='dir'><name>aaa-off</name><target><path>/srv/off</path></target></pool>", 0)
    try:
        with pytest.raises(KvmError, match=r"^disks\[0\]\.path: /srv/off/d\.qcow2 is in pool 'aaa-off' of test:///default, "
                                           r"which is not active"):
            converge(remote, **dict(GUEST, disks=[dict(path='/srv/off/d.qcow2', size='1M')]))
        assert remote.write_log == []
    finally:
        lonely.undefine()
