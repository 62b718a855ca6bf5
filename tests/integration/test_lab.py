"""The multi-host lab (tests/lab/lab.sh): more real libvirtds for migration and remote-host tests.

Runs a private lab instance (its own netns names, addresses and state dir), so stopping it here never
stops the default lab another test module may be using.
"""

import os
import subprocess
import time

import pytest

from conftest import osless_virt_type
from lab_instance import LAB, LabInstance

IMAGES = '/var/lib/libvirt/images'

GUEST = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""


def _libvirt():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


@pytest.fixture(scope='module')
def lab():
    instance = LabInstance('kvmlt', '10.254.78', '/var/lib/kvmops-lab-test', 'kvmlt-')
    instance.start()
    try:
        yield instance
    finally:
        stopped = instance.run('purge')
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope='module')
def conns(lab):
    libvirt = _libvirt()
    opened = dict((host, libvirt.open(lab.uri(host))) for host in ('host2', 'host3', 'host4'))
    try:
        yield opened
    finally:
        for handle in opened.values():
            try:
                handle.close()
            except libvirt.libvirtError:
                pass


def test_default_uris_are_unchanged():
    """The default lab keeps the two-host lab's URIs (other tests and docs use them); no root needed."""
    out = subprocess.run(['bash', LAB, 'uris'], capture_output=True, text=True, check=True).stdout
    assert 'lab host2 URI (from main host):  qemu+tcp://10.254.77.2/system\n' in out
    assert 'lab host3 URI (from main host):  qemu+tcp://10.254.77.6/system\n' in out
    assert 'qemu+ssh://root@10.254.77.10/system?keyfile=/var/lib/kvmops-lab/host4/ssh/id_ed25519' in out
    assert 'migrate URI host2 -> main:        tcp://10.254.77.1\n' in out
    only2 = subprocess.run(['bash', LAB, 'uris', 'host2'], capture_output=True, text=True, check=True).stdout
    assert 'host3' not in only2 and 'host4' not in only2
    bad = subprocess.run(['bash', LAB, 'start', 'host9'], capture_output=True, text=True, check=False)
    assert bad.returncode == 2


def test_start_is_idempotent_and_status_reports_running(lab):
    again = lab.run('start')
    assert again.returncode == 0, again.stderr
    assert 'already running' in again.stderr
    status = lab.run('status')
    assert status.returncode == 0, status.stdout
    assert status.stdout.count('running: host') == 3


def test_every_host_has_its_own_identity(lab, conns, conn):
    from lxml import etree
    names = [conn.getHostname()] + [conns[h].getHostname() for h in ('host2', 'host3', 'host4')]
    assert names[1:] == [lab.hostname(h) for h in ('host2', 'host3', 'host4')]
    assert len(set(names)) == 4
    uuids = [etree.fromstring(c.getCapabilities().encode()).findtext('host/uuid')
             for c in [conn] + list(conns.values())]
    assert all(uuids) and len(set(uuids)) == 4


def test_kvm_info_reaches_the_lab_hosts(lab, conns, playbook, tmp_path):
    """A module over TCP (host3) and over both SSH URIs of host4 (the modules open libvirt with no event loop)."""
    path = tmp_path / 'play.yml'
    # (host3's pools are copies of the main host's, which other tests change: only host4's are read)
    tasks = ''.join('    - name: %s\n      kvmops.kvm.kvm_info:\n        uri: "%s"\n        gather: %s\n' % task
                    for task in (('tcp', lab.uri('host3'), '[host]'), ('ssh', lab.uri('host4'), '[host, pools]'),
                                 ('libssh2', lab.values['KVMLAB_HOST4_LIBSSH2_URI'], '[host, pools]')))
    path.write_text('- hosts: localhost\n  gather_facts: false\n  tasks:\n' + tasks)
    result = playbook(str(path))
    assert result.rc == 0, result.stdout[-2000:]
    host = result.task('tcp')['host']
    assert host['hostname'] == conns['host3'].getHostname()
    assert host['virtualization']['local'] is False
    for name in ('ssh', 'libssh2'):
        found = result.task(name)
        assert found['host']['hostname'] == lab.hostname('host4')
        assert [(p['name'], p['target_path'], p['active']) for p in found['pools']] == [('default', IMAGES, True)], found['pools']


def test_live_migration_around_the_three_hypervisors(lab, conns, conn, unique):
    """main -> host2 -> host3 -> main: lab hosts reach each other directly, and the main host at one address."""
    libvirt = _libvirt()
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE
    dom = conn.createXML(GUEST.format(virt_type=osless_virt_type(conn), name=unique), 0)
    handles = [dom]
    try:
        start = time.monotonic()
        on2 = dom.migrate(conns['host2'], flags, None, 'tcp://%s' % lab.addr('host2'), 0)
        handles.append(on2)
        on3 = on2.migrate(conns['host3'], flags, None, 'tcp://%s' % lab.addr('host3'), 0)
        handles.append(on3)
        assert on3.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert unique not in [d.name() for d in conns['host2'].listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        back = on3.migrate2(conn, None, flags, None, 'tcp://%s' % lab.main_addr, 0)
        handles.append(back)
        assert conn.lookupByName(unique).state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert unique not in [d.name() for d in conns['host3'].listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        assert time.monotonic() - start < 120
    finally:
        for handle in reversed(handles):
            try:
                handle.destroy()
            except libvirt.libvirtError:
                pass


def _accepted_logins(lab):
    with open(os.path.join(lab.state_dir('host4'), 'log', 'sshd.log')) as handle:
        return handle.read().count('Accepted publickey for root')


def test_ssh_uri_is_a_real_ssh_transport(lab):
    """host4 has no TCP listener (only TLS, with a client certificate: test_remote_tls.py): virsh reaches it through
    sshd, key-authenticated, host key verified."""
    uri = lab.uri('host4')
    assert uri.startswith('qemu+ssh://root@%s/system?' % lab.addr('host4'))
    before = _accepted_logins(lab)
    out = subprocess.run(['virsh', '-c', uri, 'hostname'], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == lab.hostname('host4')
    assert _accepted_logins(lab) == before + 1
    # the lab put host4's key in root's known_hosts (no no_verify in the URI), and libssh checks the lab's own file
    assert 'no_verify' not in uri and 'command=' not in uri
    libssh = subprocess.run(['virsh', '-c', lab.values['KVMLAB_HOST4_LIBSSH2_URI'], 'hostname'], capture_output=True,
                            text=True, timeout=60, check=False)
    assert libssh.returncode == 0 and libssh.stdout.strip() == lab.hostname('host4'), libssh.stderr
    # no TCP listener on host4: ssh (and TLS with the lab's client certificate) are the only ways in
    tcp = subprocess.run(['virsh', '-c', 'qemu+tcp://%s/system' % lab.addr('host4'), 'hostname'],
                         capture_output=True, text=True, timeout=60, check=False)
    assert tcp.returncode != 0
    # real ssh underneath: another key is refused, and so is a host key that is not the lab's
    ssh_dir = os.path.join(lab.state_dir('host4'), 'ssh')
    base = ['ssh', '-F', 'none', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'GlobalKnownHostsFile=/dev/null',
            '-o', 'StrictHostKeyChecking=yes']
    target = 'root@%s' % lab.addr('host4')
    good = subprocess.run(base + ['-o', 'UserKnownHostsFile=%s/known_hosts' % ssh_dir, '-i', '%s/id_ed25519' % ssh_dir,
                                  target, 'hostname'], capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert good.returncode == 0 and good.stdout.strip() == lab.hostname('host4'), good.stderr
    wrong_key = subprocess.run(base + ['-o', 'UserKnownHostsFile=%s/known_hosts' % ssh_dir,
                                       '-i', '%s/ssh_host_ed25519_key' % ssh_dir, target, 'hostname'],
                               capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert wrong_key.returncode == 255 and 'Permission denied' in wrong_key.stderr, wrong_key.stderr
    unknown_host = subprocess.run(base + ['-o', 'UserKnownHostsFile=/dev/null', '-i', '%s/id_ed25519' % ssh_dir,
                                          target, 'hostname'], capture_output=True, text=True, timeout=60,
                                  check=False, stdin=subprocess.DEVNULL)
    assert unknown_host.returncode == 255 and 'Host key verification failed' in unknown_host.stderr


def test_remote_host_images_are_private(lab, conns, unique):
    """A file written into host4's images dir (over ssh, and as a libvirt volume) is not on the main host."""
    wrapper = os.path.join(lab.state_dir('host4'), 'ssh', 'ssh')
    path = '%s/%s.txt' % (IMAGES, unique)
    wrote = subprocess.run([wrapper, 'root@%s' % lab.addr('host4'), 'echo kvmops >%s && cat %s' % (path, path)],
                           capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    try:
        assert wrote.returncode == 0, wrote.stderr
        assert wrote.stdout == 'kvmops\n'
        assert not os.path.exists(path)
        with open(os.path.join(lab.state_dir('host4'), 'images', unique + '.txt')) as handle:
            assert handle.read() == 'kvmops\n'
        pool = conns['host4'].storagePoolLookupByName('default')
        pool.refresh(0)
        assert unique + '.txt' in pool.listVolumes()
        vol = pool.createXML("<volume><name>%s.raw</name><capacity unit='MiB'>1</capacity></volume>" % unique, 0)
        try:
            assert vol.path() == '%s/%s.raw' % (IMAGES, unique)
            assert not os.path.exists(vol.path())
            assert os.path.exists(os.path.join(lab.state_dir('host4'), 'images', unique + '.raw'))
        finally:
            vol.delete(0)
    finally:
        try:
            os.unlink(os.path.join(lab.state_dir('host4'), 'images', unique + '.txt'))
        except OSError:
            pass


def test_stop_leaves_nothing_behind(lab, conns):
    stopped = lab.run('stop', 'host3')
    assert stopped.returncode == 0, stopped.stderr
    assert lab.run('status', 'host3').returncode == 3
    assert lab.run('status', 'host2', 'host4').returncode == 0
    stopped = lab.run('stop')
    assert stopped.returncode == 0, stopped.stderr
    assert lab.run('status').returncode == 3
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, check=False).stdout
    assert 'kvmlt' not in netns
    links = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True, check=False).stdout
    assert 'kvmlt' not in links
    leftovers = subprocess.run(['pgrep', '-f', lab.state_dir('host4')], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ''
    known = subprocess.run(['ssh-keygen', '-F', lab.addr('host4')], capture_output=True, text=True, check=False)
    assert known.stdout == '', 'host4 key left in root known_hosts'


def test_kvm_info_against_the_stopped_daemon_fails_in_one_line(lab, playbook, tmp_path):
    lab.stop()
    uri = lab.uri('host2')
    path = tmp_path / 'play.yml'
    path.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - name: info\n      kvmops.kvm.kvm_info:\n        uri: "%s"\n' % uri)
    result = playbook(str(path))
    assert result.rc != 0
    msg = result.task('info')['msg']
    assert msg.startswith('cannot connect to libvirt at %s: ' % uri), msg
    assert '\n' not in msg and 'Traceback' not in result.stdout
