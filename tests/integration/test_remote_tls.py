"""kvm_domain over a real qemu+tls:// URI: the lab's host4 (private images), reached only by its TLS listener.

The module runs on the main host (the "controller") with the URI ``qemu+tls://<host4>/system?pkipath=<dir>``:
host4's libvirtd verifies the client certificate (the lab's throwaway CA, one allowed DN), the client verifies
the server's (its subjectAltName is host4's lab address), and nothing is read from or written to /etc/pki.
A guest with a cloud-init seed (uploaded into host4's "default" pool) and a new qcow2 volume is created and
started on host4; both volumes exist in host4's pool (read through a second TLS connection) and as files in
host4's private image directory, not on the main host. A second run changes nothing; state absent with
remove_storage deletes both on host4. A client without a client certificate, and one whose certificate (of
the same CA) has a DN that is not allowed, are refused by the server: kvm_domain fails with one line, no
traceback, and host4's libvirtd log says why.
A private lab instance (own netns names, /24 and state dir) is used, so no other test's lab is touched.
"""

import fnmatch
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._cloudinit import read_iso
from conftest import osless_virt_type, remove_guest
from ssh_lab import MAIN_IMAGES, PLAY, files, host4_images, pool_volumes, private_host4
from storage_helpers import expect_failure, run_task, write_play

libvirt = pytest.importorskip('libvirt')


@pytest.fixture(scope='module')
def host4():
    with private_host4('kvmtl', '10.254.93', '/var/lib/kvmops-lab-tls', 'kvmtl-') as lab:
        yield lab


@pytest.fixture
def tls_uri(host4):
    uri = host4.values['KVMLAB_HOST4_TLS_URI']
    assert uri.startswith('qemu+tls://%s/system?pkipath=' % host4.addr('host4'))
    return uri


@pytest.fixture
def remote(tls_uri):
    libvirt.registerErrorHandler(lambda *_: None, None)
    connection = libvirt.open(tls_uri)
    yield connection
    connection.close()


def test_guest_with_seed_and_new_disk_lives_only_in_the_tls_host_pool(conn, remote, host4, tls_uri, playbook, tmp_path, unique):
    play = write_play(tmp_path, PLAY)
    name = unique
    images = host4_images(host4)
    user_data = {'hostname': 'tls-seeded'}
    extra = dict(uri=tls_uri, name=name, virt=osless_virt_type(conn),
                 disks=[dict(pool='default', volume='%s.qcow2' % name, size='64MiB')],
                 cloud_init=dict(user_data=user_data, pool='default'))
    try:
        made = run_task(playbook, play, extra)
        assert made['changed'] and made['domain']['state'] == 'running'
        vols = pool_volumes(remote, name)
        assert len(vols) == 2 and '%s.qcow2' % name in vols, vols
        [seed] = [v for v in vols if fnmatch.fnmatchcase(v, '%s-cidata-*.iso' % name)]
        assert files(images, name) == vols, 'the volumes are files in host4\'s private image directory'
        assert files(MAIN_IMAGES, name) == [], 'nothing was written on the main host'
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        with open(os.path.join(images, seed), 'rb') as handle:
            volume_id, content = read_iso(handle.read())
        assert volume_id == 'cidata' and json.loads(content['user-data'].split(b'\n', 1)[1]) == user_data
        with open(os.path.join(images, '%s.qcow2' % name), 'rb') as handle:
            assert handle.read(4) == b'QFI\xfb'
        assert remote.storagePoolLookupByName('default').storageVolLookupByName('%s.qcow2' % name).info()[1] == 64 << 20
        dom = remote.lookupByName(name)
        assert dom.isActive(), 'host4\'s QEMU opened the seed and the disk'
        sources = [(s.get('file'), s.get('pool'), s.get('volume')) for s in ET.fromstring(dom.XMLDesc(0)).findall('devices/disk/source')]
        assert sorted(f or '%s/%s' % (p, v) for f, p, v in sources) == sorted(
            ['/var/lib/libvirt/images/%s' % seed, 'default/%s.qcow2' % name]) or sorted(f or v for f, p, v in sources) == sorted(
            ['/var/lib/libvirt/images/%s' % seed, '/var/lib/libvirt/images/%s.qcow2' % name]), sources

        again = run_task(playbook, play, extra)
        assert again['changed'] is False and again['changes'] == []

        gone = run_task(playbook, play, dict(uri=tls_uri, name=name, virt=extra['virt'], state='absent', remove_storage=True))
        assert sorted(c['action'] for c in gone['changes']) == ['delete_volume'] * 2 + ['destroy', 'undefine']
        assert pool_volumes(remote, name) == [] and files(images, name) == []
        with pytest.raises(libvirt.libvirtError):
            remote.lookupByName(name)
    finally:
        remove_guest(remote, name)
        for leftover in files(images, name):
            os.remove(os.path.join(images, leftover))


def _server_log(host4):
    return os.path.join(host4.state_dir('host4'), 'log', 'libvirtd.log')


def _log_size(host4):
    path = _server_log(host4)
    return os.path.getsize(path) if os.path.exists(path) else 0


def _log_since(host4, offset):
    with open(_server_log(host4), 'rb') as handle:
        handle.seek(offset)
        return handle.read().decode('utf-8', 'replace')


def _intruder_pki(host4, directory):
    """A pkipath directory with a client certificate of the lab's own CA whose DN is not the allowed one."""
    tls = os.path.join(host4.state_dir('host4'), 'tls')
    os.makedirs(directory, mode=0o700)
    shutil.copy(os.path.join(tls, 'client', 'cacert.pem'), os.path.join(directory, 'cacert.pem'))
    key, csr = os.path.join(directory, 'clientkey.pem'), os.path.join(directory, 'client.csr')
    ext = os.path.join(directory, 'ext.cnf')
    with open(ext, 'w') as handle:
        handle.write('basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
                     'extendedKeyUsage=clientAuth\n')
    for argv in (['openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key],
                 ['openssl', 'req', '-new', '-key', key, '-subj', '/CN=intruder', '-out', csr],
                 ['openssl', 'x509', '-req', '-in', csr, '-CA', os.path.join(tls, 'ca', 'cacert.pem'),
                  '-CAkey', os.path.join(tls, 'ca', 'cakey.pem'), '-set_serial', '4242', '-days', '1',
                  '-extfile', ext, '-out', os.path.join(directory, 'clientcert.pem')]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return directory


def test_clients_without_an_allowed_certificate_are_refused_by_the_server(remote, host4, tls_uri, playbook, tmp_path, unique):
    play = write_play(tmp_path, PLAY)
    base = tls_uri.split('?', 1)[0]
    ca_only = tmp_path / 'ca-only'
    ca_only.mkdir(mode=0o700)
    shutil.copy(os.path.join(host4.values['KVMLAB_HOST4_TLS_PKIPATH'], 'cacert.pem'), str(ca_only / 'cacert.pem'))
    intruder = _intruder_pki(host4, str(tmp_path / 'intruder'))
    cases = [(str(ca_only), 'No certificate was found'),
             (intruder, 'is not on the list of allowed clients')]
    for pkipath, server_says in cases:
        name = '%s-%s' % (unique, os.path.basename(pkipath))
        offset = _log_size(host4)
        extra = dict(uri='%s?pkipath=%s' % (base, pkipath), name=name, virt='qemu',
                     disks=[dict(pool='default', volume='%s.qcow2' % name, size='64MiB')])
        msg = expect_failure(playbook, play, extra)
        # the client only sees the server hang up in the handshake; the reason is in the server's log
        assert msg.startswith('cannot connect to libvirt at %s: ' % extra['uri']) and 'TLS' in msg, msg
        assert server_says in _log_since(host4, offset), 'host4\'s libvirtd refused the client: %s' % pkipath
        assert pool_volumes(remote, name) == [], 'nothing was written on host4'
        with pytest.raises(libvirt.libvirtError):
            remote.lookupByName(name)
