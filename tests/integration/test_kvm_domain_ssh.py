"""kvm_domain over a real qemu+ssh:// URI: the lab's host4 (private images, reached only through sshd).

The module runs on the main host (the "controller"). A guest with a cloud-init seed and a new qcow2 disk
(and a thin overlay on, and a clone of, a base volume) is created and started on host4: the seed ISO (built on the main host) and the disk image can only get
into host4's private image directory through libvirt (upload stream, volume create). They are listed by
host4's libvirt and found as files in host4's private directory, not on the main host; host4's QEMU opened
them (the guest runs). A second run changes nothing, check mode writes nothing, a disk path in no pool of
host4 and a seed directory (one of the main host) are refused, and state absent with remove_storage deletes both volumes on host4.
A private lab instance (own netns names, /24 and state dir) is used, so no other test's lab is touched.
"""

import fnmatch
import json
import os

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._cloudinit import read_iso
from conftest import osless_virt_type, remove_guest
from ssh_lab import MAIN_IMAGES, PLAY, files, host4_images, pool_volumes, private_host4
from storage_helpers import expect_failure, run_task, write_play

libvirt = pytest.importorskip('libvirt')


@pytest.fixture(scope='module')
def host4():
    with private_host4('kvmdr', '10.254.86', '/var/lib/kvmops-lab-dom', 'kvmdr-') as lab:
        yield lab


@pytest.fixture
def remote(host4):
    libvirt.registerErrorHandler(lambda *_: None, None)
    connection = libvirt.open(host4.uri('host4'))
    yield connection
    connection.close()


def test_guest_with_seed_and_new_disk_lives_only_in_the_remote_pool(conn, remote, host4, playbook, tmp_path, unique):
    play = write_play(tmp_path, PLAY)
    name = unique
    images = host4_images(host4)
    user_data = {'hostname': 'remote-seeded'}
    base_name = 'base-%s.qcow2' % name
    extra = dict(uri=host4.uri('host4'), name=name, virt=osless_virt_type(conn),
                 disks=[dict(path='/var/lib/libvirt/images/%s.qcow2' % name, size='64MiB'),
                        dict(pool='default', volume='%s-ovl.qcow2' % name, backing=base_name),
                        dict(pool='default', volume='%s-clone.qcow2' % name, clone_from=base_name)],
                 cloud_init=dict(user_data=user_data))
    base = remote.storagePoolLookupByName('default').createXML(
        "<volume><name>%s</name><capacity>%d</capacity><target><format type='qcow2'/></target></volume>"
        % (base_name, 32 << 20), 0)
    try:
        planned = run_task(playbook, play, extra, check=True)
        assert planned['changed'] and ('config', 'cloud_init', 'create_volume') in [
            (c['scope'], c['option'], c['action']) for c in planned['changes']]
        assert pool_volumes(remote, name) == [] and files(images, name) == [], 'check mode wrote on host4'
        with pytest.raises(libvirt.libvirtError):
            remote.lookupByName(name)

        made = run_task(playbook, play, extra)
        assert made['changed'] and made['domain']['state'] == 'running'
        vols = pool_volumes(remote, name)
        assert len(vols) == 4 and set(['%s.qcow2' % name, '%s-ovl.qcow2' % name, '%s-clone.qcow2' % name]) < set(vols), vols
        [seed] = [v for v in vols if fnmatch.fnmatchcase(v, '%s-cidata-*.iso' % name)]
        assert files(images, name) == vols, 'the volumes are files in host4\'s private image directory'
        assert files(MAIN_IMAGES, name) == [], 'nothing was written on the main host'
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        with open(os.path.join(images, seed), 'rb') as handle:
            volume_id, content = read_iso(handle.read())
        assert volume_id == 'cidata' and json.loads(content['user-data'].split(b'\n', 1)[1]) == user_data
        assert os.stat(os.path.join(images, seed)).st_mode & 0o777 == 0o600, 'the seed holds secrets: 0600 on host4'
        with open(os.path.join(images, '%s.qcow2' % name), 'rb') as handle:
            assert handle.read(4) == b'QFI\xfb'
        disk = remote.storagePoolLookupByName('default').storageVolLookupByName('%s.qcow2' % name)
        assert disk.info()[1] == 64 << 20
        # the overlay libvirt made on host4 names the base volume as its backing file (qcow2 header)
        with open(os.path.join(images, '%s-ovl.qcow2' % name), 'rb') as handle:
            head = handle.read(4096)
        offset, length = int.from_bytes(head[8:16], 'big'), int.from_bytes(head[16:20], 'big')
        assert head[offset:offset + length].decode() == base.path() == '/var/lib/libvirt/images/' + base_name
        # the clone is a standalone copy (no backing file) of the base's size
        with open(os.path.join(images, '%s-clone.qcow2' % name), 'rb') as handle:
            head = handle.read(32)
        assert head[:4] == b'QFI\xfb' and int.from_bytes(head[8:16], 'big') == 0 and int.from_bytes(head[24:32], 'big') == 32 << 20
        dom = remote.lookupByName(name)
        assert dom.isActive(), 'host4\'s QEMU opened the seed and the disk'
        xml = dom.XMLDesc(0)
        assert "file='/var/lib/libvirt/images/%s'" % seed in xml and "file='/var/lib/libvirt/images/%s.qcow2'" % name in xml

        again = run_task(playbook, play, extra)
        assert again['changed'] is False and again['changes'] == []

        # a disk path in no pool of host4: refused before anything is written there
        other = dict(extra, name=name + '-x', disks=[dict(path='/srv/kvmops-nopool/%s.qcow2' % name, size='64MiB')])
        msg = expect_failure(playbook, play, other)
        assert msg.startswith('disks[0].path: /srv/kvmops-nopool/%s.qcow2 is in no storage pool of qemu+ssh://' % name)
        assert 'give disks[0].pool and disks[0].volume instead' in msg
        with pytest.raises(libvirt.libvirtError):
            remote.lookupByName(name + '-x')
        assert len(pool_volumes(remote, name)) == 4, 'the refused run uploaded no seed'
        # a seed directory would be one of the main host: refused, nothing written there
        msg = expect_failure(playbook, play, dict(extra, cloud_init=dict(user_data={'a': 'no-such-text-in-a-path'}, directory=str(tmp_path))))
        assert msg.startswith('cloud_init.directory: %s would be a directory of the host that runs the module' % tmp_path)
        assert not [f for f in os.listdir(str(tmp_path)) if f.endswith('.iso')]
        assert len(pool_volumes(remote, name)) == 4

        absent = dict(uri=extra['uri'], name=name, virt=extra['virt'], state='absent', remove_storage=True)
        run_task(playbook, play, absent, check=True)
        assert pool_volumes(remote, name) == vols and remote.lookupByName(name).isActive()
        gone = run_task(playbook, play, absent)
        assert sorted(c['action'] for c in gone['changes']) == ['delete_volume'] * 4 + ['destroy', 'undefine']
        assert pool_volumes(remote, name) == [] and files(images, name) == []
        assert os.path.exists(os.path.join(images, base_name)), 'the backing volume is no disk of the guest: kept'
        with pytest.raises(libvirt.libvirtError):
            remote.lookupByName(name)
    finally:
        remove_guest(remote, name)
        base.delete(0)
        for leftover in files(images, name):
            os.remove(os.path.join(images, leftover))
