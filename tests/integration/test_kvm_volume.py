"""kvm_volume against the real local libvirtd, verified with qemu-img: four-step proof on every change."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import remove_guest
from storage_helpers import expect_failure, four_step, run_task, write_play

BASE = '/var/lib/kvmops-test'
MIB = 1024 * 1024


def qemu_img_info(path, chain=False):
    cmd = ['qemu-img', 'info', '--output=json', '-U'] + (['--backing-chain'] if chain else []) + [path]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def qemu_io(path, fmt, command):
    return subprocess.run(['qemu-io', '-f', fmt, '-c', command, path], capture_output=True, text=True, check=False)


@pytest.fixture
def pool(conn, unique):
    """An active dir pool of our own; removed with everything in it afterwards."""
    import libvirt
    path = os.path.join(BASE, unique)
    os.makedirs(path)
    obj = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (unique, path), 0)
    obj.create(0)
    domains = []
    try:
        yield dict(name=unique, path=path, pool=obj, domains=domains)
    finally:
        for name in domains:
            remove_guest(conn, name)
        for func in (obj.destroy, obj.undefine):
            try:
                func()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(path, ignore_errors=True)


VOLUME = """
- name: t
  kvmops.kvm.kvm_volume:
    pool: "{{ pool }}"
    name: "{{ name }}"
    state: "{{ state | default('present') }}"
    capacity: "{{ capacity | default(omit) }}"
    format: "{{ format | default(omit) }}"
    allocation: "{{ allocation | default(omit) }}"
    backing: "{{ backing | default(omit) }}"
    clone_from: "{{ clone_from | default(omit) }}"
    import_from: "{{ import_from | default(omit) }}"
    shrink: "{{ shrink | default(omit) }}"
    force: "{{ force | default(omit) }}"
    mode: "{{ mode | default(omit) }}"
"""


def test_raw_fully_allocated(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    extra = dict(pool=pool['name'], name='full.raw', format='raw', capacity='16MiB', allocation='full', mode='0640')
    image = os.path.join(pool['path'], 'full.raw')
    first = run_task(playbook, play, extra, check=True)
    assert first['changed'] and not os.path.exists(image), 'check mode wrote the image'
    assert first['volume']['path'] == image and first['volume']['capacity'] == 16 * MIB
    results = four_step(playbook, play, extra)
    assert results[1]['actions'] == ['create']
    info = qemu_img_info(image)
    assert info['format'] == 'raw' and info['virtual-size'] == 16 * MIB
    assert info['actual-size'] >= 16 * MIB, 'a fully allocated raw image'
    assert oct(os.stat(image).st_mode & 0o777) == oct(0o640)
    vol = results[3]['volume']
    assert (vol['name'], vol['format'], vol['capacity'], vol['type']) == ('full.raw', 'raw', 16 * MIB, 'file')
    assert vol['allocation'] >= 16 * MIB


def test_qcow2_sparse(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    results = four_step(playbook, play, dict(pool=pool['name'], name='thin.qcow2', capacity='1GiB'))
    info = qemu_img_info(os.path.join(pool['path'], 'thin.qcow2'))
    assert info['format'] == 'qcow2' and info['virtual-size'] == 1024 * MIB
    assert info['actual-size'] < 4 * MIB, 'sparse'
    assert results[3]['volume']['format'] == 'qcow2' and results[3]['backing_chain'] == []


def test_thin_overlay_backing_chain(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    run_task(playbook, play, dict(pool=pool['name'], name='golden.qcow2', capacity='64MiB'))
    golden = os.path.join(pool['path'], 'golden.qcow2')
    assert qemu_io(golden, 'qcow2', 'write -P 0x5a 0 64k').returncode == 0
    extra = dict(pool=pool['name'], name='web01.qcow2', backing='golden.qcow2')
    results = four_step(playbook, play, extra)
    overlay = os.path.join(pool['path'], 'web01.qcow2')
    chain = qemu_img_info(overlay, chain=True)
    assert [c['filename'] for c in chain] == [overlay, golden]
    assert chain[0]['format'] == 'qcow2' and chain[0]['backing-filename'] == golden
    assert chain[0]['virtual-size'] == 64 * MIB
    assert qemu_io(overlay, 'qcow2', 'read -P 0x5a 0 64k').returncode == 0, 'overlay reads through to the base'
    final = results[3]
    assert final['volume']['backing'] == [dict(path=golden, format='qcow2')]
    assert final['backing_chain'] == [dict(path=golden, format='qcow2', virtual_size=64 * MIB)]
    # The same overlay by absolute path is the same volume; another backing file is an error, not a rewrite.
    assert run_task(playbook, play, dict(extra, backing=golden))['changed'] is False
    run_task(playbook, play, dict(pool=pool['name'], name='other.qcow2', capacity='64MiB'))
    msg = expect_failure(playbook, play, dict(extra, backing='other.qcow2'))
    assert 'exists with backing file %s' % golden in msg


def test_grow_and_shrink_only_when_asked(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    image = os.path.join(pool['path'], 'data.qcow2')
    run_task(playbook, play, dict(pool=pool['name'], name='data.qcow2', capacity='64MiB'))
    grown = four_step(playbook, play, dict(pool=pool['name'], name='data.qcow2', capacity='128MiB'))
    assert grown[1]['actions'] == ['resize to %d' % (128 * MIB)]
    assert 'capacity: %d' % (64 * MIB) in grown[0]['diff']['before'] and 'capacity: %d' % (128 * MIB) in grown[0]['diff']['after']
    assert qemu_img_info(image)['virtual-size'] == 128 * MIB
    msg = expect_failure(playbook, play, dict(pool=pool['name'], name='data.qcow2', capacity='64MiB'))
    assert 'shrink: true' in msg and qemu_img_info(image)['virtual-size'] == 128 * MIB
    run_task(playbook, play, dict(pool=pool['name'], name='small.raw', format='raw', capacity='32MiB'))
    shrunk = four_step(playbook, play, dict(pool=pool['name'], name='small.raw', capacity='16MiB', shrink=True))
    assert shrunk[3]['volume']['capacity'] == 16 * MIB
    assert qemu_img_info(os.path.join(pool['path'], 'small.raw'))['virtual-size'] == 16 * MIB


def test_clone_and_import(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    run_task(playbook, play, dict(pool=pool['name'], name='src.raw', format='raw', capacity='8MiB'))
    src = os.path.join(pool['path'], 'src.raw')
    assert qemu_io(src, 'raw', 'write -P 0x3c 1M 64k').returncode == 0
    clone = four_step(playbook, play, dict(pool=pool['name'], name='copy.qcow2', clone_from='src.raw', format='qcow2'))
    assert clone[1]['actions'] == ['clone from %s' % src]
    copy = os.path.join(pool['path'], 'copy.qcow2')
    assert qemu_img_info(copy)['format'] == 'qcow2' and qemu_img_info(copy)['virtual-size'] == 8 * MIB
    assert qemu_io(copy, 'qcow2', 'read -P 0x3c 1M 64k').returncode == 0

    local = str(tmp_path / 'cloud.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', local, '32M'], check=True)
    assert qemu_io(local, 'qcow2', 'write -P 0x77 4M 128k').returncode == 0
    imported = four_step(playbook, play, dict(pool=pool['name'], name='cloud.qcow2', import_from=local))
    assert imported[1]['actions'] == ['create', 'import %s' % local]
    dest = os.path.join(pool['path'], 'cloud.qcow2')
    info = qemu_img_info(dest)
    assert info['format'] == 'qcow2' and info['virtual-size'] == 32 * MIB
    assert qemu_io(dest, 'qcow2', 'read -P 0x77 4M 128k').returncode == 0
    assert subprocess.run(['qemu-img', 'check', dest], capture_output=True, check=False).returncode == 0
    msg = expect_failure(playbook, play, dict(pool=pool['name'], name='cloud2.raw', import_from=local, format='raw'))
    assert 'is a qcow2 image but format is raw' in msg
    assert not os.path.exists(os.path.join(pool['path'], 'cloud2.raw'))


def _define_guest(conn, name, disk):
    return conn.defineXML(
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>" % (name, disk))


def test_absent_refuses_volume_in_use_unless_force(playbook, tmp_path, pool, conn):
    play = write_play(tmp_path, VOLUME)
    run_task(playbook, play, dict(pool=pool['name'], name='used.qcow2', capacity='8MiB'))
    image = os.path.join(pool['path'], 'used.qcow2')
    pool['domains'].append(pool['name'])
    _define_guest(conn, pool['name'], image)
    msg = expect_failure(playbook, play, dict(pool=pool['name'], name='used.qcow2', state='absent'))
    assert 'used by guest %s' % pool['name'] in msg and 'force: true' in msg
    assert os.path.exists(image)
    forced = four_step(playbook, play, dict(pool=pool['name'], name='used.qcow2', state='absent', force=True))
    assert forced[1]['actions'] == ['delete'] and not os.path.exists(image)


def test_absent_refuses_backing_file_of_an_overlay(playbook, tmp_path, pool):
    play = write_play(tmp_path, VOLUME)
    run_task(playbook, play, dict(pool=pool['name'], name='base.qcow2', capacity='8MiB'))
    run_task(playbook, play, dict(pool=pool['name'], name='top.qcow2', backing='base.qcow2'))
    msg = expect_failure(playbook, play, dict(pool=pool['name'], name='base.qcow2', state='absent'))
    assert 'backing file of top.qcow2' in msg
    gone = four_step(playbook, play, dict(pool=pool['name'], name='top.qcow2', state='absent'))
    assert gone[1]['volume']['name'] == 'top.qcow2'
    assert not os.path.exists(os.path.join(pool['path'], 'top.qcow2'))
    assert os.path.exists(os.path.join(pool['path'], 'base.qcow2')), 'only the named volume is deleted'


@pytest.mark.parametrize('extra, fragment', [
    (dict(capacity='lots'), 'capacity: invalid size'),
    (dict(), 'capacity is required'),
    (dict(capacity='8MiB', backing='a', clone_from='b'), 'mutually exclusive'),
    (dict(capacity='8MiB', format='raw', backing='a'), 'needs format qcow2'),
    (dict(name='a/b', capacity='8MiB'), 'name: invalid volume name'),
    (dict(import_from='relative.img'), 'import_from: must be an absolute path'),
    (dict(capacity='65PiB'), 'capacity: must be at most 64 PiB'),
    (dict(capacity='8MiB', backing='/var/lib/libvirt/images/../../../etc/passwd'), "backing: must not contain '..'"),
    (dict(backing='missing.qcow2'), 'backing: no volume missing.qcow2'),
    (dict(pool='kvmops-no-such-pool', capacity='1M'), 'pool kvmops-no-such-pool does not exist'),
])
def test_bad_input_rejected_before_any_write(playbook, tmp_path, pool, extra, fragment):
    params = dict(pool=pool['name'], name='bad.qcow2')
    params.update(extra)
    msg = expect_failure(playbook, write_play(tmp_path, VOLUME), params)
    assert fragment in msg
    assert sorted(os.listdir(pool['path'])) == []
