"""kvm_pool against the real local libvirtd: four-step proof on every change."""

import os
import shutil
import stat
import subprocess

import pytest

from storage_helpers import expect_failure, four_step, run_task, write_play

BASE = '/var/lib/kvmops-test'


@pytest.fixture
def cleanup(conn):
    """Pools, domains and directories to remove whatever happens (leftovers tolerated)."""
    import libvirt
    todo = dict(pools=[], domains=[], dirs=[], loops=[], vgs=[])
    yield todo
    for name in todo['domains']:
        try:
            conn.lookupByName(name).undefine()
        except libvirt.libvirtError:
            pass
    for name in todo['pools']:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            continue
        for func in (pool.destroy, pool.undefine):
            try:
                func()
            except libvirt.libvirtError:
                pass
    for vg in todo['vgs']:
        subprocess.run(['vgremove', '-f', vg], capture_output=True, check=False)
    for dev in todo['loops']:
        subprocess.run(['umount', dev], capture_output=True, check=False)
        subprocess.run(['losetup', '-d', dev], capture_output=True, check=False)
    for path in todo['dirs']:
        subprocess.run(['umount', path], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)


def _pool_or_none(conn, name):
    import libvirt
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


DIR_POOL = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    type: dir
    path: "{{ path }}"
    mode: "{{ mode | default('0750') }}"
    build: true
    autostart: true
    state: "{{ state | default('active') }}"
    restart: "{{ restart | default('never') }}"
"""


def test_dir_pool_built_started_autostarted(playbook, tmp_path, unique, conn, cleanup):
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    cleanup['dirs'].append(path)
    play = write_play(tmp_path, DIR_POOL)
    extra = dict(name=unique, path=path)

    first = run_task(playbook, play, extra, check=True)
    assert first['changed'] is True and first['actions'] == ['define', 'build', 'start', 'autostart']
    assert _pool_or_none(conn, unique) is None and not os.path.exists(path), 'check mode wrote something'
    assert '<path>%s</path>' % path in first['diff']['after'] and first['diff']['before'] == ''

    results = four_step(playbook, play, extra)
    pool = conn.storagePoolLookupByName(unique)
    assert pool.isActive() and pool.autostart() and pool.isPersistent()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    facts = results[3]['pool']
    assert facts['state'] == 'running' and facts['target_path'] == path and facts['type'] == 'dir'
    assert facts['capacity'] > 0 and facts['available'] > 0 and facts['volumes'] == []
    assert facts['uuid'] == pool.UUIDString()


def test_changed_permissions_apply_at_once(playbook, tmp_path, unique, conn, cleanup):
    import libvirt
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    cleanup['dirs'].append(path)
    play = write_play(tmp_path, DIR_POOL)
    run_task(playbook, play, dict(name=unique, path=path))
    uuid = conn.storagePoolLookupByName(unique).UUIDString()

    changed = four_step(playbook, play, dict(name=unique, path=path, mode='0755'))
    assert changed[1]['actions'] == ['redefine', 'set mode'] and changed[1]['pending_restart'] == []
    assert [(c['scope'], c['option']) for c in changed[1]['changes']] == [('config', 'definition'), ('host', 'mode')]
    assert '<mode>0750</mode>' in changed[0]['diff']['before'] and '<mode>0755</mode>' in changed[0]['diff']['after']
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    pool = conn.storagePoolLookupByName(unique)
    assert pool.UUIDString() == uuid
    for flags in (0, libvirt.VIR_STORAGE_XML_INACTIVE):
        assert '<mode>0755</mode>' in pool.XMLDesc(flags)


def test_changed_definition_pending_then_restart(playbook, tmp_path, unique, conn, cleanup):
    import libvirt
    path = os.path.join(BASE, unique)
    moved = path + '-moved'
    cleanup['pools'].append(unique)
    cleanup['dirs'] += [path, moved]
    play = write_play(tmp_path, DIR_POOL)
    run_task(playbook, play, dict(name=unique, path=path))

    pending = four_step(playbook, play, dict(name=unique, path=moved))
    assert pending[1]['actions'] == ['redefine']
    assert [r['pending_restart'] for r in pending] == [['path']] * 4
    pool = conn.storagePoolLookupByName(unique)
    assert '<path>%s</path>' % moved in pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    assert '<path>%s</path>' % path in pool.XMLDesc(0), 'the running pool keeps its definition until restarted'

    restarted = four_step(playbook, play, dict(name=unique, path=moved, restart='if_needed'))
    assert restarted[1]['actions'] == ['stop', 'build', 'start']
    assert [r['pending_restart'] for r in restarted] == [[]] * 4
    assert '<path>%s</path>' % moved in conn.storagePoolLookupByName(unique).XMLDesc(0)
    assert stat.S_IMODE(os.stat(moved).st_mode) == 0o750


def test_inactive_then_present_then_active(playbook, tmp_path, unique, conn, cleanup):
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    cleanup['dirs'].append(path)
    play = write_play(tmp_path, DIR_POOL)
    run_task(playbook, play, dict(name=unique, path=path))
    stopped = four_step(playbook, play, dict(name=unique, path=path, state='inactive'))
    assert stopped[1]['actions'] == ['stop'] and not conn.storagePoolLookupByName(unique).isActive()
    results = [run_task(playbook, play, dict(name=unique, path=path, state='present'), check=c) for c in (True, False)]
    assert [r['changed'] for r in results] == [False, False], 'present leaves the run state alone'
    started = four_step(playbook, play, dict(name=unique, path=path, state='active'))
    assert started[1]['actions'] == ['start'] and conn.storagePoolLookupByName(unique).isActive()


ABSENT = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    state: absent
    delete_data: "{{ delete_data | default(false) }}"
"""


def _dir_pool_with_volume(conn, name, path):
    os.makedirs(path)
    pool = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path), 0)
    pool.create(0)
    pool.createXML("<volume><name>keep.qcow2</name><capacity unit='MiB'>8</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    return pool


def test_absent_keeps_data_unless_delete_data(playbook, tmp_path, unique, conn, cleanup):
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    cleanup['dirs'].append(path)
    _dir_pool_with_volume(conn, unique, path)
    play = write_play(tmp_path, ABSENT)

    kept = four_step(playbook, play, dict(name=unique))
    assert kept[1]['actions'] == ['stop', 'undefine'] and kept[1]['deleted_volumes'] == []
    assert _pool_or_none(conn, unique) is None
    assert os.path.isfile(os.path.join(path, 'keep.qcow2')), 'state=absent must keep the data'

    # Defined again over the same directory (inactive): delete_data deletes the volume and the directory.
    conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (unique, path), 0)
    gone = four_step(playbook, play, dict(name=unique, delete_data=True), same_actions=False)
    # Check mode cannot list the volumes of an inactive pool (it would have to start it).
    assert gone[0]['actions'] == ['start', 'stop', 'delete data', 'undefine']
    assert gone[1]['actions'] == ['start', 'delete volume keep.qcow2', 'stop', 'delete data', 'undefine']
    assert gone[1]['deleted_volumes'] == ['keep.qcow2']
    assert _pool_or_none(conn, unique) is None and not os.path.exists(path)


def test_delete_data_refused_for_volume_of_a_defined_guest(playbook, tmp_path, unique, conn, cleanup):
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    cleanup['dirs'].append(path)
    cleanup['domains'].append(unique)
    pool = _dir_pool_with_volume(conn, unique, path)
    disk = os.path.join(path, 'keep.qcow2')
    conn.defineXML("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
                   "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                   "<source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>" % (unique, disk))
    msg = expect_failure(playbook, write_play(tmp_path, ABSENT), dict(name=unique, delete_data=True))
    assert 'keep.qcow2 (used by %s)' % unique in msg and 'force' in msg
    assert pool.isActive() and os.path.isfile(disk)


BAD = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    type: "{{ type }}"
    path: "{{ path | default(omit) }}"
    source: "{{ source | default(omit) }}"
    mode: "{{ mode | default(omit) }}"
"""


@pytest.mark.parametrize('extra, fragment', [
    (dict(type='dir'), 'path: required for a new dir pool'),
    (dict(type='dir', path='relative/dir'), 'path: must be an absolute path'),
    (dict(type='dir', path='/x', source=dict(host='nfs01')), 'source.host is not used by dir pools'),
    (dict(type='netfs', path='/x', source=dict(host='nfs01')), 'source.dir: required for a new netfs pool'),
    (dict(type='fs', path='/x', source=dict(devices=['/dev/a', '/dev/b'])), 'exactly one device'),
    (dict(type='dir', path='/x', mode='0999'), 'mode: must be an octal'),
    (dict(type='dir', path='/x/../../etc'), "path: must not contain '..' components"),
    (dict(type='dir', path='/x', name='p\nq'), 'name: invalid pool name'),
])
def test_bad_input_rejected_before_any_write(playbook, tmp_path, unique, conn, extra, fragment):
    extra = dict(dict(name=unique), **extra)
    msg = expect_failure(playbook, write_play(tmp_path, BAD), extra)
    assert fragment in msg
    assert _pool_or_none(conn, unique) is None


NETFS = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    type: netfs
    source:
      host: 127.0.0.1
      dir: /exports/kvmops
    path: "{{ path }}"
    state: present
"""


def test_netfs_definition_validated_by_libvirt(playbook, tmp_path, unique, conn, cleanup):
    """Defined (not mounted) here; mounted for real by the NFS guests of the roles' tests."""
    import libvirt
    path = os.path.join(BASE, unique)
    cleanup['pools'].append(unique)
    results = four_step(playbook, write_play(tmp_path, NETFS), dict(name=unique, path=path))
    assert results[1]['actions'] == ['define']
    pool = conn.storagePoolLookupByName(unique)
    assert not pool.isActive()
    xml = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    assert "<host name='127.0.0.1'/>" in xml and "<dir path='/exports/kvmops'/>" in xml and "<format type='nfs'/>" in xml
    facts = results[3]['pool']
    assert facts['source']['host'] == '127.0.0.1' and facts['source']['dir'] == '/exports/kvmops'
    assert facts['source']['format'] == 'nfs' and facts['active'] is False


def _loop_device(size_mib, tmpdir, cleanup):
    image = os.path.join(tmpdir, 'loop.img')
    with open(image, 'wb') as handle:
        handle.truncate(size_mib * 1024 * 1024)
    proc = subprocess.run(['losetup', '--find', '--show', image], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip('no loop device on this machine: losetup: %s' % proc.stderr.strip())
    dev = proc.stdout.strip()
    cleanup['loops'].append(dev)
    return dev


FS = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    type: fs
    source:
      devices: ["{{ dev }}"]
      format: ext4
    path: "{{ path }}"
    build: true
    state: active
"""


def test_fs_pool_on_loop_device_refuses_to_overwrite(playbook, tmp_path, unique, conn, cleanup):
    if not shutil.which('mkfs.ext4'):
        pytest.skip('mkfs.ext4 not installed')
    path = os.path.join(BASE, unique)
    work = os.path.join(BASE, unique + '-img')
    os.makedirs(work)
    cleanup['dirs'] += [path, work]
    cleanup['pools'].append(unique)
    dev = _loop_device(64, work, cleanup)
    play = write_play(tmp_path, FS)
    results = four_step(playbook, play, dict(name=unique, dev=dev, path=path))
    assert results[1]['actions'] == ['define', 'build', 'start']
    assert conn.storagePoolLookupByName(unique).isActive()
    assert subprocess.run(['findmnt', '-n', path], capture_output=True, check=False).returncode == 0
    marker = os.path.join(path, 'data-to-keep')
    with open(marker, 'w') as handle:
        handle.write('precious')
    # Removed (data kept), then defined and built again: the device holds a filesystem, so build is
    # refused and the pool it had just defined is undefined again.
    run_task(playbook, write_play(tmp_path, ABSENT, 'absent.yml'), dict(name=unique))
    msg = expect_failure(playbook, play, dict(name=unique, dev=dev, path=path))
    assert 'overwrite: true' in msg
    assert _pool_or_none(conn, unique) is None
    conn.storagePoolDefineXML("<pool type='fs'><name>%s</name><source><device path='%s'/></source>"
                              "<target><path>%s</path></target></pool>" % (unique, dev, path), 0).create(0)
    assert open(marker).read() == 'precious'


LOGICAL = """
- name: t
  kvmops.kvm.kvm_pool:
    name: "{{ name }}"
    type: logical
    source:
      devices: ["{{ dev }}"]
    build: true
    state: "{{ state | default('active') }}"
    delete_data: "{{ delete_data | default(false) }}"
"""


def test_logical_pool_on_loop_device(playbook, tmp_path, unique, conn, cleanup):
    if not shutil.which('vgcreate'):
        pytest.skip('lvm2 is not installed on this machine (vgcreate missing), so no logical pool can be built')
    work = os.path.join(BASE, unique + '-img')
    os.makedirs(work)
    cleanup['dirs'].append(work)
    cleanup['pools'].append(unique)
    cleanup['vgs'].append(unique)
    dev = _loop_device(64, work, cleanup)
    play = write_play(tmp_path, LOGICAL)
    results = four_step(playbook, play, dict(name=unique, dev=dev))
    assert results[1]['actions'] == ['define', 'build', 'start']
    assert subprocess.run(['vgs', unique], capture_output=True, check=False).returncode == 0
    assert results[3]['pool']['source']['name'] == unique and results[3]['pool']['capacity'] > 0
    gone = four_step(playbook, play, dict(name=unique, dev=dev, state='absent', delete_data=True))
    assert 'delete data' in gone[1]['actions']
    assert subprocess.run(['vgs', unique], capture_output=True, check=False).returncode != 0
