"""Issue 16's adoption proof: a guest virt-install made is adopted without surprise.

The guest is defined with ``conn.defineXML`` (what ``virsh define`` does) from the XML virt-install writes
(q35, host-passthrough CPU, a virtio qcow2 disk, a NIC on the default network, SPICE on 127.0.0.1 with its agent
channel, a pty serial port with its console, a usb tablet, a virtio balloon and RNG, pcie root ports), OS-less
under KVM. Each task then touches one option; in check mode and for real it reports exactly that option in
``changes`` and nothing in ``pending_restart``, the run after it changes nothing, and libvirt's XML shows the
change. The running phase changes live options (autostart, a vCPU hot-add, a NIC's link state, a disk's I/O
limits, a usb-serial port hot-plugged through ``serials``); the shut-off phase config-only ones (memory,
max_vcpus, a watchdog, the video model). Throughout, the serial port and console virt-install made stay as they
were (``serial_console`` is not given and never reported), and naming them the way they are is no change.

``test_serials_and_consoles_on_the_real_daemon``: tcp, unix and file serial ports and a virtio console on a new
running guest (check, real, check, real); the tcp port listens on 127.0.0.1 only (``ss``), the unix socket exists,
a change waits for the next boot, and a regular file where the socket would go is refused and kept.
"""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import osless_virt_type, remove_guest

TEST_ROOT = '/var/lib/kvmops-test'

VIRT_INSTALL_XML = """
<domain type='kvm'>
  <name>{name}</name>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci' ports='15'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <controller type='pci' index='2' model='pcie-root-port'/>
    <controller type='pci' index='3' model='pcie-root-port'/>
    <controller type='pci' index='4' model='pcie-root-port'/>
    <controller type='pci' index='5' model='pcie-root-port'/>
    <controller type='pci' index='6' model='pcie-root-port'/>
    <controller type='pci' index='7' model='pcie-root-port'/>
    <controller type='virtio-serial' index='0'/>
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0'/>
    </channel>
    <input type='tablet' bus='usb'/>
    <graphics type='spice' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
      <image compression='off'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
    </video>
    <memballoon model='virtio'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
"""


def _libvirt():
    import libvirt
    return libvirt


def _xml(dom, inactive=True):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE if inactive else 0))


def _serial_part(root):
    """The serial port and serial console as libvirt stores them (what must stay untouched)."""
    from lxml import etree
    keep = [e for e in root.findall('devices/serial') if e.find('target').get('port') == '0']
    keep += [e for e in root.findall('devices/console') if e.find('target').get('type') == 'serial']
    return [etree.tostring(e, encoding='unicode').strip() for e in keep]


def _play(tmp_path, steps, repeat):
    """One playbook: a kvm_domain task per step (and, with ``repeat``, the same task again right after it)."""
    tasks = []
    for label, args in steps:
        tasks.append({'name': 'step %s' % label, 'kvmops.kvm.kvm_domain': args})
        if repeat:
            tasks.append({'name': 'again %s' % label, 'kvmops.kvm.kvm_domain': args})
    path = tmp_path / ('adopt-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps([dict(hosts='localhost', gather_facts=False, tasks=tasks)], indent=1))
    return str(path)


def _exactly(task, option, live):
    """The task changed exactly ``option`` (config, and live on a running guest) and needs no restart."""
    shown = json.dumps(dict((k, task.get(k)) for k in ('msg', 'changes', 'pending_restart', 'warnings')), indent=1)[-4000:]
    assert not task.get('failed') and task.get('changed') is True, shown
    assert set(c['option'].split('[')[0] for c in task['changes']) == {option}, shown
    scopes = set(c['scope'] for c in task['changes'])
    assert 'config' in scopes or option == 'autostart', shown
    assert ('live' in scopes) == live, shown
    assert task['pending_restart'] == [], shown


@pytest.fixture
def adopted(conn, unique, default_network):
    directory = os.path.join(TEST_ROOT, unique)
    os.makedirs(directory)
    disk = os.path.join(directory, 'root.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'], check=True)
    mac = '52:54:00:%02x:%02x:%02x' % tuple(os.urandom(3))
    try:
        dom = conn.defineXML(VIRT_INSTALL_XML.format(name=unique, disk=disk, mac=mac))
        yield dict(dom=dom, name=unique, disk=disk, mac=mac)
    finally:
        remove_guest(conn, unique)
        shutil.rmtree(directory, ignore_errors=True)


def test_virt_install_guest_one_option_per_task(conn, adopted, playbook, tmp_path):
    if osless_virt_type(conn) != 'kvm':
        pytest.skip('virt-install writes a host-passthrough CPU: this needs KVM')
    dom, name = adopted['dom'], adopted['name']
    dom.create()
    serial_before = _serial_part(_xml(dom))
    assert len(serial_before) == 2, serial_before

    # as it is: naming what virt-install made (its pty port and serial console) is no change
    same = dict(name=name, autostart=False, serials=[dict(port=0, type='pty')], consoles=[dict(target_type='serial')],
                interfaces=[dict(source='default', mac=adopted['mac'])], disks=[dict(path=adopted['disk'])],
                rng=dict(), graphics=dict(type='spice'))
    running = [
        ('autostart', dict(name=name, autostart=True)),
        ('vcpus', dict(name=name, vcpus=2)),
        ('interfaces', dict(name=name, interfaces=[dict(source='default', mac=adopted['mac'], link_state='down')])),
        ('disks', dict(name=name, disks=[dict(path=adopted['disk'], iotune=dict(total_iops_sec=500))])),
        ('serials', dict(name=name, serials=[dict(port=1, type='null', target_type='usb-serial')])),
    ]
    result = playbook(_play(tmp_path, [('same', same)], repeat=False), diff=True)
    task = result.task('step same')
    assert not task.get('failed') and task['changed'] is False and task['changes'] == [] and task['pending_restart'] == [], \
        json.dumps(task, indent=1)[-4000:]

    checked = playbook(_play(tmp_path, running, repeat=False), check=True, diff=True)
    for option, _args in running:
        _exactly(checked.task('step %s' % option), option, live=option != 'autostart')
    assert _serial_part(_xml(dom)) == serial_before and not dom.autostart(), 'check mode wrote nothing'

    real = playbook(_play(tmp_path, running, repeat=True), diff=True)
    assert 'Traceback' not in real.stdout
    for option, _args in running:
        _exactly(real.task('step %s' % option), option, live=option != 'autostart')
        again = real.task('again %s' % option)
        assert again.get('changed') is False and again['changes'] == [] and again['pending_restart'] == [], \
            json.dumps(again, indent=1)[-3000:]
    # what libvirt reports
    libvirt = _libvirt()
    live = _xml(dom, inactive=False)
    assert dom.autostart() and dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert live.find('devices/interface/link').get('state') == 'down'
    assert dom.blockIoTune('vda', libvirt.VIR_DOMAIN_AFFECT_LIVE)['total_iops_sec'] == 500
    assert live.find("devices/serial/target[@type='usb-serial'][@port='1']") is not None, 'hot-plugged'
    assert _xml(dom).find("devices/serial/target[@type='usb-serial'][@port='1']") is not None, 'and defined'
    assert _serial_part(_xml(dom)) == serial_before, 'the pty port and console virt-install made are untouched'

    # shut off: config-only options, nothing pending
    dom.destroy()
    stopped = [
        ('memory', dict(name=name, memory='384MiB')),
        ('max_vcpus', dict(name=name, max_vcpus=4)),
        ('watchdog', dict(name=name, watchdog=dict(model='i6300esb', action='poweroff'))),
        ('video', dict(name=name, video=dict(model='vga'))),
    ]
    real = playbook(_play(tmp_path, stopped, repeat=True), diff=True)
    for option, _args in stopped:
        _exactly(real.task('step %s' % option), option, live=False)
        again = real.task('again %s' % option)
        assert again.get('changed') is False and again['changes'] == [], json.dumps(again, indent=1)[-3000:]
    config = _xml(dom)
    assert config.find('currentMemory').text == str(384 * 1024) and config.find('vcpu').text == '4'
    assert config.find("devices/watchdog[@action='poweroff']") is not None
    assert config.find("devices/video/model").get('type') == 'vga'
    assert _serial_part(config) == serial_before
    every = [c['option'] for t in real.tasks() for c in t.get('changes', [])]
    assert 'serial_console' not in every
    assert not dom.isActive()


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _listeners(port):
    out = subprocess.run(['ss', '-Hltn', 'sport = :%d' % port], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[3] for line in out.splitlines() if line.strip())


def test_serials_and_consoles_on_the_real_daemon(conn, unique, playbook, tmp_path):
    """serials (tcp, unix, file) and consoles (the serial one and a virtio one) on a new OS-less guest: check, real,
    check, real; the tcp port listens on 127.0.0.1 only, the unix socket is there; a change on the running guest
    waits for the next boot; a file where the socket would go is refused before any write."""
    import stat
    directory = os.path.join(TEST_ROOT, unique)
    os.makedirs(directory)
    os.chmod(directory, 0o755)
    port = _free_port()
    sock, log = os.path.join(directory, 'ttyS1.sock'), os.path.join(directory, 'ttyS2.log')
    args = dict(name=unique, memory='64MiB', virt_type=osless_virt_type(conn), graphics=dict(type='none'), state='running',
                serials=[dict(port=0, type='tcp', tcp_port=port), dict(port=1, type='unix', path=sock),
                         dict(port=2, type='file', path=log)],
                consoles=[dict(target_type='serial'), dict(type='pty')])
    try:
        outcomes = []
        for check in (True, False, True, False):
            result = playbook(_play(tmp_path, [('create', args)], repeat=False), check=check, diff=True)
            task = result.task('step create')
            assert not task.get('failed') and 'Traceback' not in result.stdout, json.dumps(task, indent=1)[-4000:]
            outcomes.append(task)
        assert [t['changed'] for t in outcomes] == [True, True, False, False], [t['changes'] for t in outcomes]
        dom = conn.lookupByName(unique)
        config = _xml(dom)
        kinds = [(s.get('type'), s.find('target').get('port')) for s in config.findall('devices/serial')]
        assert kinds == [('tcp', '0'), ('unix', '1'), ('file', '2')], 'no default pty beside serials'
        assert config.find('devices/serial/source').get('host') == '127.0.0.1'
        assert [c.find('target').get('type') for c in config.findall('devices/console')] == ['serial', 'virtio']
        assert _listeners(port) == ['127.0.0.1:%d' % port], 'the tcp serial port listens on 127.0.0.1 only'
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        facts = outcomes[3]['domain']
        assert [(s['port'], s['type']) for s in facts['serials']] == [(0, 'tcp'), (1, 'unix'), (2, 'file')]
        assert facts['serials'][0]['tcp_port'] == port and facts['serials'][1]['path'] == sock

        change = dict(name=unique, serials=[dict(port=2, type='null')])
        result = playbook(_play(tmp_path, [('change', change)], repeat=True))
        task, again = result.task('step change'), result.task('again change')
        assert [c['option'] for c in task['changes']] == ['serials'] and task['pending_restart'] == ['serials']
        assert again['changed'] is False and again['pending_restart'] == ['serials']
        assert _xml(dom).findall('devices/serial')[2].get('type') == 'null'
        assert _xml(dom, inactive=False).findall('devices/serial')[2].get('type') == 'file', 'live at the next boot'

        planted = os.path.join(directory, 'keep.txt')
        with open(planted, 'w') as handle:
            handle.write('keep')
        bad = dict(name=unique, serials=[dict(port=1, type='unix', path=planted)])
        result = playbook(_play(tmp_path, [('bad', bad)], repeat=False))
        task = result.task('step bad')
        assert task.get('failed') and 'exists and is no socket' in task['msg'], task.get('msg')
        with open(planted) as handle:
            assert handle.read() == 'keep'
        assert _xml(dom).findall('devices/serial')[1].find('source').get('path') == sock, 'nothing written'
    finally:
        remove_guest(conn, unique)
        shutil.rmtree(directory, ignore_errors=True)
