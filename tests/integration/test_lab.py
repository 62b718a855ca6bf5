"""The two-host lab (tests/lab/lab.sh): a second real libvirtd for migration tests."""

import os
import subprocess
import time

import pytest

from conftest import ROOT

LAB = os.path.join(ROOT, 'tests', 'lab', 'lab.sh')
LAB_URI = 'qemu+tcp://10.254.77.2/system'

GUEST = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""


def lab(*args):
    return subprocess.run(['bash', LAB] + list(args), capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope='module')
def lab_host():
    import libvirt
    started = lab('start')
    assert started.returncode == 0, started.stdout + started.stderr
    conn = libvirt.open(LAB_URI)
    try:
        yield conn
    finally:
        conn.close()
        stopped = lab('stop')
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_start_is_idempotent_and_status_reports_running(lab_host):
    again = lab('start')
    assert again.returncode == 0
    assert lab('status').returncode == 0


def test_second_host_has_its_own_identity(lab_host, conn):
    assert lab_host.getHostname() != conn.getHostname()
    from lxml import etree
    uuid_lab = etree.fromstring(lab_host.getCapabilities().encode()).findtext('host/uuid')
    uuid_main = etree.fromstring(conn.getCapabilities().encode()).findtext('host/uuid')
    assert uuid_lab and uuid_main and uuid_lab != uuid_main


def test_kvm_info_reaches_the_lab_host(lab_host, playbook, tmp_path):
    path = tmp_path / 'play.yml'
    path.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - name: info\n      kvmops.kvm.kvm_info:\n        uri: "%s"\n        gather: [host]\n' % LAB_URI)
    result = playbook(str(path))
    assert result.rc == 0, result.stdout[-2000:]
    host = result.task('info')['host']
    assert host['hostname'] == lab_host.getHostname()
    assert host['virtualization']['local'] is False


def test_live_migration_between_the_two_hosts(lab_host, conn, unique):
    import libvirt
    virt_type = 'qemu'
    try:
        conn.getDomainCapabilities(None, 'x86_64', None, 'kvm', 0)
        virt_type = 'kvm'
    except libvirt.libvirtError:
        pass
    dom = conn.createXML(GUEST.format(virt_type=virt_type, name=unique), 0)
    moved = None
    try:
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE
        start = time.monotonic()
        moved = dom.migrate(lab_host, flags, None, 'tcp://10.254.77.2', 0)
        elapsed = time.monotonic() - start
        assert moved.isActive()
        assert moved.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        names = [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        assert unique not in names
        assert elapsed < 120
    finally:
        for handle in (moved, dom):
            try:
                if handle is not None:
                    handle.destroy()
            except libvirt.libvirtError:
                pass


def test_stop_leaves_nothing_behind(lab_host):
    stopped = lab('stop')
    assert stopped.returncode == 0, stopped.stderr
    assert lab('status').returncode == 3
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, check=False).stdout
    assert 'kvmlab' not in netns
    links = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True, check=False).stdout
    assert 'kvmlab0' not in links


def test_kvm_info_against_the_stopped_daemon_fails_in_one_line(lab_host, playbook, tmp_path):
    assert lab('stop').returncode == 0
    path = tmp_path / 'play.yml'
    path.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - name: info\n      kvmops.kvm.kvm_info:\n        uri: "%s"\n' % LAB_URI)
    result = playbook(str(path))
    assert result.rc != 0
    msg = result.task('info')['msg']
    assert msg.startswith('cannot connect to libvirt at %s: ' % LAB_URI), msg
    assert '\n' not in msg and 'Traceback' not in result.stdout
    restarted = lab('start')          # leave it running for the fixture's own stop
    assert restarted.returncode == 0
