"""kvm_info against the real local libvirtd, with a real running guest."""

import os
import shutil
import textwrap

import pytest

from conftest import URI, osless_virt_type

DOMAIN_XML = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <currentMemory unit='MiB'>96</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:4b:1d:0e'/>
      <source network='{net}'/>
      <model type='virtio'/>
    </interface>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <serial type='pty'/>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""

NET_XML = """
<network>
  <name>{name}</name>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <ip address='10.254.{octet}.1' netmask='255.255.255.0'>
    <dhcp><range start='10.254.{octet}.10' end='10.254.{octet}.20'/></dhcp>
  </ip>
</network>
"""

POOL_XML = """
<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>
"""


@pytest.fixture
def lab_objects(conn, unique, tmp_path):
    import libvirt
    pool_dir = '/var/lib/kvmops-test/%s' % unique
    os.makedirs(pool_dir)
    disk = os.path.join(pool_dir, 'disk.raw')
    with open(disk, 'wb') as handle:
        handle.truncate(16 * 1024 * 1024)
    octet = 130 + int(unique[-2:], 16) % 100    # 130-229: not the molecule guests' 10.254.121.0/24
    net = conn.networkDefineXML(NET_XML.format(name=unique, bridge='kv' + unique[-8:], octet=octet))
    net.create()
    pool = conn.storagePoolDefineXML(POOL_XML.format(name=unique, path=pool_dir), 0)
    pool.create(0)
    dom = conn.defineXML(DOMAIN_XML.format(virt_type=osless_virt_type(conn), name=unique, disk=disk, net=unique))
    dom.create()
    try:
        yield dict(name=unique, disk=disk, pool_dir=pool_dir, dom=dom, net=net, pool=pool)
    finally:
        for cleanup in (dom.destroy, dom.undefine, pool.destroy, pool.undefine, net.destroy, net.undefine):
            try:
                cleanup()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(pool_dir, ignore_errors=True)


def _play(tmp_path, body):
    path = tmp_path / 'play.yml'
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_reports_running_guest_network_pool(lab_objects, playbook, tmp_path, conn):
    name = lab_objects['name']
    path = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: info
              kvmops.kvm.kvm_info:
                name: ["{{ obj }}"]
    """)
    result = playbook(path, extra_vars={'obj': name}, check=True)
    assert result.rc == 0, (result.stdout + result.stderr)[-3000:]
    info = result.task('info')
    assert info['changed'] is False

    host = info['host']
    assert host['hypervisor'] == 'QEMU'
    assert host['libvirt_version'].count('.') == 2
    assert host['node']['cpus'] == conn.getInfo()[2]
    virt = host['virtualization']
    assert virt['local'] is True
    assert virt['dev_kvm']['present'] == os.path.exists('/dev/kvm')
    assert virt['preferred_domain_type'] in ('kvm', 'qemu')
    assert virt['domain_types']['qemu']['available'] is True

    [dom] = info['domains']
    live = lab_objects['dom']
    assert dom['name'] == name and dom['uuid'] == live.UUIDString()
    assert dom['state'] == 'running' and dom['state_reason'] == 'booted'
    assert dom['id'] == live.ID()
    assert dom['persistent'] is True and dom['autostart'] is False
    assert dom['vcpus'] == {'current': 1, 'maximum': 2}
    assert dom['memory']['max_kib'] == 128 * 1024
    assert [(d['target'], d['source'], d['format'], d['bus'], d['cache']) for d in dom['disks']] == [
        ('vda', lab_objects['disk'], 'raw', 'virtio', 'writeback')]
    [nic] = dom['interfaces']
    assert (nic['type'], nic['source'], nic['model'], nic['mac']) == ('network', name, 'virtio', '52:54:00:4b:1d:0e')
    assert nic['target'].startswith('vnet')
    [gfx] = dom['graphics']
    assert gfx['type'] == 'vnc' and gfx['listen'] == '127.0.0.1' and gfx['port'] >= 5900
    assert len(dom['vcpu_info']) == 1 and dom['vcpu_info'][0]['state'] == 'running'
    assert dom['balloon']['maximum'] == 128 * 1024
    assert 'current' in dom['balloon']

    [net] = info['networks']
    assert net['active'] is True and net['forward_mode'] == 'isolated'
    assert net['bridge'] == 'kv' + name[-8:]
    assert net['addresses'][0]['dhcp_ranges'][0]['start'].endswith('.10')

    [pool] = info['pools']
    assert pool['type'] == 'dir' and pool['state'] == 'running'
    assert pool['target_path'] == lab_objects['pool_dir']
    assert pool['capacity'] > 0
    assert [(v['name'], v['format'], v['capacity']) for v in pool['volumes']] == [('disk.raw', 'raw', 16 * 1024 * 1024)]


def test_unknown_name_is_empty_with_message(playbook, tmp_path, unique):
    path = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: info
              kvmops.kvm.kvm_info:
                gather: [domains, networks, pools]
                name: ["{{ obj }}"]
    """)
    result = playbook(path, extra_vars={'obj': unique})
    assert result.rc == 0
    info = result.task('info')
    assert info['domains'] == [] and info['networks'] == [] and info['pools'] == []
    assert unique in info['msg']


def test_unreachable_daemon_is_one_line_naming_the_uri(playbook, tmp_path):
    uri = 'qemu:///system?socket=/nonexistent/kvmops/libvirt-sock'
    path = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: info
              kvmops.kvm.kvm_info:
                uri: "{{ bad_uri }}"
    """)
    result = playbook(path, extra_vars={'bad_uri': uri})
    assert result.rc != 0
    info = result.task('info')
    assert info['failed'] is True
    assert '\n' not in info['msg']
    assert info['msg'].startswith('cannot connect to libvirt at %s' % uri)
    assert 'Traceback' not in result.stdout


def test_uri_from_environment_and_module_defaults(playbook, tmp_path):
    path = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          module_defaults:
            group/kvmops.kvm.kvm:
              uri: "{{ good_uri }}"
          tasks:
            - name: info
              kvmops.kvm.kvm_info:
                gather: [networks]
    """)
    result = playbook(path, extra_vars={'good_uri': URI})
    assert result.rc == 0, result.stdout[-2000:]
    assert result.task('info')['uri'] == URI


SYSTEM_PYTHON = '/usr/bin/python3'


def _has_libvirt(python):
    import subprocess
    return subprocess.run([python, '-c', 'import libvirt'], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON) or _has_libvirt(SYSTEM_PYTHON),
                    reason='needs a Python without libvirt-python (the system python3 here has none)')
def test_missing_library_and_hardware_probe_without_libvirt(playbook, tmp_path):
    path = _play(tmp_path, """
        - hosts: localhost
          gather_facts: false
          vars:
            ansible_python_interpreter: /usr/bin/python3
          tasks:
            - name: hardware
              kvmops.kvm.kvm_info:
                gather: [hardware]
            - name: full
              kvmops.kvm.kvm_info:
              ignore_errors: true
    """)
    result = playbook(path)
    hardware = result.task('hardware')
    assert hardware.get('failed') is not True, hardware
    assert hardware['hardware']['dev_kvm']['present'] == os.path.exists('/dev/kvm')
    full = result.task('full')
    assert full['failed'] is True
    assert 'libvirt-python' in full['msg'] and 'Traceback' not in full['msg']
