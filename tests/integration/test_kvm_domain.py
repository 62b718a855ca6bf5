"""kvm_domain against the real local libvirtd: the walkthrough (sections 2, 4, 5), step by step.

Every step uses the four-step proof (check -> real -> check -> real: changed, changed,
not changed, not changed) and then asserts on what libvirt itself reports.

* ``test_walkthrough_osless_guest``: a guest without an OS (it sits in SeaBIOS) under
  domain type kvm: define, start, vCPU hot-add, disk and NIC hot-plug, pending_restart and
  ``restart: if_needed``, shutdown with a timeout then force (and the clear failure without
  force), undefine keeping the disk.
* ``test_walkthrough_linux_guest``: a real Debian guest (tests/lab/image.sh) under the
  host's preferred domain type for a full OS, for what needs the guest OS: balloon,
  vCPU online, hot-unplug of a disk and a NIC, a graceful shutdown without force.
* ``test_created_files_are_private_and_never_follow_links``: planted symlinks at the seed ISO's
  name (and its old predictable temporary name) and at a disk image's name are refused; the seed
  and the disk are made 0600 and the guest still starts with QEMU holding both open.
* ``test_secrets_never_appear``: a graphics passwd in ``xml`` and a password in cloud-init
  user-data, at -vvv with --diff, in check mode and for real: never printed, ``********`` in
  ``changes``.
"""

import json
import os
import shutil
import stat
import subprocess
import textwrap
import time
import uuid

import pytest

from conftest import ROOT, _env, one_task_play, osless_virt_type, remove_guest

TEST_ROOT = '/var/lib/kvmops-test'
IMAGE_SH = os.path.join(ROOT, 'tests', 'lab', 'image.sh')


def run_domain(playbook, tmp_path, args, check=False, diff=False):
    result = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain'), check=check, diff=diff)
    task = result.tasks('domain')
    assert task, (result.stdout + result.stderr)[-4000:]
    return task[-1], result


def four_step(playbook, tmp_path, args):
    """check -> real -> check -> real: changed, changed, not changed, not changed."""
    outcomes = []
    for check in (True, False, True, False):
        task, result = run_domain(playbook, tmp_path, args, check=check, diff=True)
        assert not task.get('failed'), json.dumps(task, indent=1)[-4000:]
        assert 'Traceback' not in result.stdout
        outcomes.append(task)
    assert [t['changed'] for t in outcomes] == [True, True, False, False], \
        json.dumps([t.get('changes') for t in outcomes], indent=1)
    assert outcomes[2]['changes'] == [] and outcomes[3]['changes'] == []
    assert outcomes[0]['diff']['before'] != outcomes[0]['diff']['after']
    return outcomes[1], outcomes[3]


def _libvirt():
    import libvirt
    return libvirt


def _inactive(dom):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))


def _live(dom):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(0))


def _targets(root):
    return sorted(t.get('dev') for t in root.findall('devices/disk/target'))


def _macs(root):
    return sorted(m.get('address') for m in root.findall('devices/interface/mac'))


@pytest.fixture
def guest(conn, unique):
    """A unique guest name and directory; the guest is destroyed and undefined afterwards."""
    directory = os.path.join(TEST_ROOT, unique)
    os.makedirs(directory)
    yield dict(name=unique, dir=directory)
    remove_guest(conn, unique)
    shutil.rmtree(directory, ignore_errors=True)


def _qemu_img_info(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--output', 'json', path], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


# ---------------------------------------------------------------- OS-less guest (kvm)
def test_walkthrough_osless_guest(conn, guest, default_network, playbook, tmp_path):
    libvirt = _libvirt()
    name, directory = guest['name'], guest['dir']
    root_disk = os.path.join(directory, 'root.qcow2')
    data_disk = os.path.join(directory, 'data.qcow2')
    base = dict(name=name, virt_type='kvm', memory='512MiB', max_memory='1GiB', vcpus=1, max_vcpus=2,
                disks=[dict(path=root_disk, size='8G', format='qcow2')],
                interfaces=[dict(type='network', source='default', model='virtio')],
                graphics=dict(type='vnc', keymap='en-us'),
                state='running', autostart=True)

    # 2. virt-install: 512 MiB of 1 GiB, 1 of 2 vCPUs, 8 GiB qcow2, VNC, NAT network; start.
    first, last = four_step(playbook, tmp_path, base)
    dom = conn.lookupByName(name)
    assert dom.isActive() and dom.autostart()
    assert dom.info()[1] == 1024 * 1024 and dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 1
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 2
    info = _qemu_img_info(root_disk)
    assert info['format'] == 'qcow2' and info['virtual-size'] == 8 * 1024 ** 3
    graphics = _live(dom).find('devices/graphics')
    assert graphics.get('type') == 'vnc' and graphics.get('listen') == '127.0.0.1'
    [mac] = _macs(_inactive(dom))
    uuid = dom.UUIDString()
    assert last['domain']['uuid'] == uuid and last['domain']['state'] == 'running'
    assert last['domain']['interfaces'][0]['mac'] == mac
    assert any(c['option'] == 'definition' for c in first['changes'])

    # 5. vCPU hot-add: libvirt reports 2 live and 2 in the definition.
    step = dict(base, vcpus=2)
    first, last = four_step(playbook, tmp_path, step)
    assert {(c['scope'], c['option']) for c in first['changes']} == {('config', 'vcpus'), ('live', 'vcpus')}
    assert [c['read_back'] for c in first['changes'] if c['scope'] == 'live'] == [2]
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 2
    assert last['pending_restart'] == []

    # 5. attach a 2 GiB qcow2 vdb with cache=writeback, live and persistent.
    step = dict(step, disks=base['disks'] + [dict(path=data_disk, size='2G', format='qcow2', target='vdb',
                                                  cache='writeback')])
    first, last = four_step(playbook, tmp_path, step)
    assert ('live', 'disks[vdb]', 'attach') in {(c['scope'], c['option'], c['action']) for c in first['changes']}
    for root in (_live(dom), _inactive(dom)):
        assert _targets(root) == ['vda', 'vdb']
        assert root.xpath("devices/disk[target/@dev='vdb']/driver")[0].get('cache') == 'writeback'
    assert _qemu_img_info(data_disk)['virtual-size'] == 2 * 1024 ** 3

    # 5. attach a virtio NIC on `default` (live and persistent); the first NIC keeps its MAC.
    step = dict(step, interfaces=base['interfaces'] + [dict(source='default')])
    first, last = four_step(playbook, tmp_path, step)
    live_macs, config_macs = _macs(_live(dom)), _macs(_inactive(dom))
    assert len(live_macs) == 2 and live_macs == config_macs and mac in live_macs
    assert dom.UUIDString() == uuid

    # Link state is changed live.
    new_mac = [m for m in live_macs if m != mac][0]
    linked = dict(step, interfaces=[base['interfaces'][0], dict(source='default', mac=new_mac, link_state='down')])
    first, last = four_step(playbook, tmp_path, linked)
    assert _live(dom).xpath("devices/interface[mac/@address='%s']/link" % new_mac)[0].get('state') == 'down'

    # What needs a restart is listed, not applied live; it stays listed (but unchanged) on a re-run.
    bigger = dict(linked, max_vcpus=4)
    first, last = four_step(playbook, tmp_path, bigger)
    assert first['pending_restart'] == ['max_vcpus'] and last['pending_restart'] == ['max_vcpus']
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 4

    # restart: if_needed restarts the guest for it. SeaBIOS ignores the power button, so the graceful
    # shutdown times out and force powers it off; then it is started again with the new maximum.
    restart = dict(bigger, restart='if_needed', shutdown_timeout=3, force=True)
    first, last = four_step(playbook, tmp_path, restart)
    assert [(c['option'], c['action']) for c in first['changes']] == \
        [('state', 'restart'), ('state', 'destroy'), ('state', 'start')], first['changes']
    assert first['changes'][2]['detail'] == 'restart for max_vcpus'
    assert first['pending_restart'] == [] and last['pending_restart'] == []
    assert dom.isActive() and last['domain']['state'] == 'running'
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_LIVE) == 4
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.UUIDString() == uuid and _macs(_live(dom)) == live_macs
    assert _live(dom).xpath("devices/interface[mac/@address='%s']/link" % new_mac)[0].get('state') == 'down'

    # Bad input fails before any write, naming the option; the definition is untouched.
    before_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    for bad, message in (
            (dict(memory='2GiB', max_memory='1GiB'), 'must not exceed max_memory'),
            (dict(vcpus=3, max_vcpus=2), 'must not exceed max_vcpus'),
            (dict(interfaces=[dict(source='kvmops-no-such-net')]), "interfaces[0].source: unknown network"),
            (dict(interfaces=[dict(source='default', mac='52:54:00:xx:00:01')]), 'interfaces[0].mac: invalid MAC'),
            (dict(disks=[dict(path=root_disk, target='vda'), dict(path=data_disk, target='vda')]),
             'duplicate target vda'),
            (dict(disks=[dict(pool='kvmops-no-such-pool', volume='x', size='1G')]), "unknown pool"),
            (dict(xml='<domain><name>%s</name' % name), 'malformed domain XML'),
            (dict(name='bad/name'), 'name: invalid guest name')):
        task, result = run_domain(playbook, tmp_path, dict(bigger, **bad))
        assert task.get('failed') is True and message in task['msg'], (bad, task)
        assert 'Traceback' not in result.stdout and '\n' not in task['msg']
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before_xml

    # 4. graceful shutdown: SeaBIOS ignores ACPI, so without force it is a clear failure ...
    stop = dict(name=name, state='shutdown', shutdown_timeout=3)
    task = run_domain(playbook, tmp_path, stop)[0]
    assert task['failed'] is True and 'did not shut down within shutdown_timeout (3 s)' in task['msg']
    assert 'force: true' in task['msg']
    # ... and with force it powers off after the timeout.
    first, last = four_step(playbook, tmp_path, dict(stop, force=True))
    assert [c['action'] for c in first['changes']] == ['shutdown', 'destroy']
    assert not dom.isActive() and last['domain']['state'] == 'shutoff'

    # 4. undefine, keeping the disk files.
    first, last = four_step(playbook, tmp_path, dict(name=name, state='absent'))
    assert last['domain'] == {'name': name, 'state': 'absent'}
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    assert os.path.exists(root_disk) and os.path.exists(data_disk)


def test_xml_option_redefines_in_place(conn, guest, playbook, tmp_path):
    """The `xml` alternative: compared by meaning, redefined in place, typed options on top."""
    name = guest['name']
    xml = textwrap.dedent("""
        <domain type='qemu'>
          <name>{name}</name>
          <memory unit='MiB'>128</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices><graphics type='vnc' listen='127.0.0.1'/></devices>
        </domain>
    """).format(name=name)
    first, last = four_step(playbook, tmp_path, dict(guest=name, xml=xml))   # guest: the alias of name
    dom = conn.lookupByName(name)
    uuid = dom.UUIDString()
    assert dom.info()[1] == 128 * 1024
    # Typed options win over the XML.
    first, last = four_step(playbook, tmp_path, dict(name=name, xml=xml, memory='192MiB'))
    assert [c['option'] for c in first['changes']] == ['memory', 'max_memory']
    assert dom.UUIDString() == uuid and dom.maxMemory() == 192 * 1024
    first, last = four_step(playbook, tmp_path, dict(name=name, xml=xml.replace('128', '160')))
    assert dom.UUIDString() == uuid and dom.maxMemory() == 160 * 1024


VIRT_INSTALL_XML = """
<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
  </devices>
</domain>
"""


def test_adopted_guest_changes_only_what_the_task_sets(conn, guest, default_network, playbook, tmp_path):
    """Issue 16: a guest defined elsewhere (virt-install style: no serial console) is adopted as it is.

    Each task touches one option: check mode and the real run report exactly that option (no serial
    console added, nothing pending but that option), and the second real run changes nothing.
    """
    name, directory = guest['name'], guest['dir']
    disk = os.path.join(directory, 'root.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '1G'], check=True)
    dom = conn.defineXML(VIRT_INSTALL_XML.format(virt=osless_virt_type(conn), name=name, disk=disk))
    dom.create()
    assert _inactive(dom).find('devices/serial') is None

    task, _result = run_domain(playbook, tmp_path, dict(name=name, autostart=False))
    assert not task.get('failed'), json.dumps(task, indent=1)[-4000:]
    assert task['changed'] is False and task['changes'] == [] and task['pending_restart'] == [], \
        json.dumps(task, indent=1)[-4000:]

    steps = [('autostart', dict(autostart=True)), ('vcpus', dict(vcpus=2)), ('memory', dict(memory='768MiB')),
             ('serial_console', dict(serial_console=True))]
    for option, args in steps:
        args = dict(name=name, **args)
        outcomes = []
        for check in (True, False, False):
            task, result = run_domain(playbook, tmp_path, args, check=check, diff=True)
            assert not task.get('failed'), json.dumps(task, indent=1)[-4000:]
            assert 'Traceback' not in result.stdout
            outcomes.append(task)
        first, real, again = outcomes
        for task in (first, real):
            assert task['changed'] is True
            assert set(c['option'] for c in task['changes']) == {option}, json.dumps(task['changes'], indent=1)
            assert set(task['pending_restart']) <= {option}, task['pending_restart']
        assert again['changed'] is False and again['changes'] == [], json.dumps(again['changes'], indent=1)
    assert dom.autostart() and dom.vcpusFlags(_libvirt().VIR_DOMAIN_AFFECT_LIVE) == 2
    assert _inactive(dom).find('devices/serial') is not None, 'serial_console: true manages it'
    assert real['pending_restart'] == ['serial_console'], 'a serial device is no hot-plug'
    assert _live(dom).find('devices/interface/mac').get('address') == _inactive(dom).find('devices/interface/mac').get('address')


def test_cloud_init_seed_is_idempotent(conn, guest, playbook, tmp_path):
    name, directory = guest['name'], guest['dir']
    # user_data is no_log: every value of a dict is masked wherever it appears (the guest's name would be)
    args = dict(name=name, virt_type='qemu', memory='128MiB',
                cloud_init=dict(user_data={'hostname': 'seeded-host'}, directory=directory))
    first, last = four_step(playbook, tmp_path, args)
    isos = [f for f in os.listdir(directory) if f.endswith('.iso')]
    assert len(isos) == 1 and isos[0].startswith(name + '-cidata-')
    label = subprocess.run(['blkid', '-o', 'value', '-s', 'LABEL', os.path.join(directory, isos[0])],
                           capture_output=True, text=True, check=False).stdout.strip()
    assert label == 'cidata'
    [cdrom] = [d for d in last['domain']['disks'] if d['device'] == 'cdrom']
    assert cdrom['source'] == os.path.join(directory, isos[0]) and cdrom['readonly'] is True
    # New content: a new ISO, the medium is swapped.
    first, last = four_step(playbook, tmp_path, dict(args, cloud_init=dict(args['cloud_init'], meta_data='instance-id: x\n')))
    assert len([f for f in os.listdir(directory) if f.endswith('.iso')]) == 2
    # Removal with remove_storage deletes the attached seed (the earlier one is never deleted unasked).
    four_step(playbook, tmp_path, dict(name=name, state='absent', remove_storage=True))
    assert [f for f in os.listdir(directory) if f.endswith('.iso')] == isos


# ---------------------------------------------------------------- real Linux guest
def _image_paths():
    if not os.path.exists(IMAGE_SH):
        return None
    out = subprocess.run(['bash', IMAGE_SH, 'paths'], capture_output=True, text=True, check=False)
    paths = dict(line.split('=', 1) for line in out.stdout.splitlines() if '=' in line)
    return paths if paths.get('KVMOPS_IMAGE_READY') == 'yes' else None


def _guest_ip(dom, timeout=600):
    # TCG boot to a lease: 2-2.5 min on an idle 2-CPU host, over 5 min at load 10 (tests/lab/IMAGE.md).
    libvirt = _libvirt()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            addrs = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError:
            addrs = {}
        for iface in addrs.values():
            for addr in iface.get('addrs') or []:
                if addr['type'] == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                    return addr['addr']
        time.sleep(2)
    raise AssertionError('guest got no DHCP lease within %d s' % timeout)


def _ssh(key, ip, command, timeout=240):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        proc = subprocess.run(['ssh', '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
                               '-o', 'ConnectTimeout=5', '-o', 'BatchMode=yes', 'root@%s' % ip, command],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return proc.stdout
        last = proc.stderr
        time.sleep(3)
    raise AssertionError('ssh to the guest failed: %s' % last)


def _wait(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError('timed out waiting for %s' % what)


def test_walkthrough_linux_guest(conn, guest, default_network, playbook, tmp_path):
    paths = _image_paths()
    if paths is None:
        pytest.skip('the Debian test image is not built (bash tests/lab/image.sh build)')
    libvirt = _libvirt()
    name, directory = guest['name'], guest['dir']
    key = os.path.join(directory, 'id_ed25519')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    cmdline = subprocess.run(['bash', IMAGE_SH, 'cmdline', key + '.pub'], capture_output=True, text=True,
                             check=True).stdout.strip()
    cmdline = dict(line.split('=', 1) for line in cmdline.splitlines() if line.startswith('CMDLINE='))\
        .get('CMDLINE', cmdline)
    root_disk = os.path.join(directory, 'root.qcow2')
    data_disk = os.path.join(directory, 'data.qcow2')
    base = dict(name=name, virt_type='auto', memory='512MiB', max_memory='1GiB', vcpus=1, max_vcpus=2,
                kernel=paths['KVMOPS_IMAGE_KERNEL'], initrd=paths['KVMOPS_IMAGE_INITRD'], cmdline=cmdline,
                disks=[dict(path=root_disk, backing=paths['KVMOPS_IMAGE_BASE'])],
                interfaces=[dict(source='default')], guest_agent=True, state='running', shutdown_timeout=180)

    first, last = four_step(playbook, tmp_path, base)
    dom = conn.lookupByName(name)
    info = _qemu_img_info(root_disk)
    assert info['format'] == 'qcow2' and info['backing-filename'] == paths['KVMOPS_IMAGE_BASE']
    ip = _guest_ip(dom)
    assert _ssh(key, ip, 'cat /proc/cmdline').find('kvmops.sshkey=') >= 0
    # The balloon driver brings the guest to 512 MiB.
    _wait(lambda: dom.info()[2] == 512 * 1024, 120, 'the balloon to reach 512 MiB')

    # Balloon to 1 GiB: libvirt and the guest see it.
    step = dict(base, memory='1GiB')
    first, last = four_step(playbook, tmp_path, step)
    [live] = [c for c in first['changes'] if c['scope'] == 'live']
    assert live['option'] == 'memory' and live['read_back'] == 1024 * 1024
    assert dom.info()[2] == 1024 * 1024
    total_kib = int(_ssh(key, ip, "awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert total_kib > 700 * 1024

    # vCPU hot-add: 2 live in libvirt, and online in the guest.
    step = dict(step, vcpus=2)
    first, last = four_step(playbook, tmp_path, step)
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert [c.get('guest_online') for c in first['changes'] if c['scope'] == 'live'] == [2]
    _wait(lambda: _ssh(key, ip, 'cat /sys/devices/system/cpu/online').strip() == '0-1', 60, 'vCPU 1 online')

    # Disk hot-plug and hot-unplug (the guest releases it).
    with_disk = dict(step, disks=base['disks'] + [dict(path=data_disk, size='2G', target='vdb', cache='writeback')])
    first, last = four_step(playbook, tmp_path, with_disk)
    assert ('live', 'disks[vdb]', 'attach') in {(c['scope'], c['option'], c['action']) for c in first['changes']}
    for root in (_live(dom), _inactive(dom)):
        assert _targets(root) == ['vda', 'vdb']
        assert root.xpath("devices/disk[target/@dev='vdb']/driver")[0].get('cache') == 'writeback'
    info = _qemu_img_info(data_disk)
    assert info['format'] == 'qcow2' and info['virtual-size'] == 2 * 1024 ** 3
    _wait(lambda: 'vdb' in _ssh(key, ip, 'ls /sys/block'), 60, 'vdb in the guest')
    first, last = four_step(playbook, tmp_path, step)
    assert ('live', 'disks[vdb]', 'detach') in {(c['scope'], c['option'], c['action']) for c in first['changes']}
    assert first['pending_restart'] == [] and _targets(_live(dom)) == ['vda'] == _targets(_inactive(dom))
    assert os.path.exists(data_disk)

    # NIC hot-plug and hot-unplug.
    with_nic = dict(step, interfaces=base['interfaces'] + [dict(source='default', model='virtio')])
    four_step(playbook, tmp_path, with_nic)
    assert len(_macs(_live(dom))) == 2
    _wait(lambda: 'eth1' in _ssh(key, ip, 'ls /sys/class/net'), 60, 'eth1 in the guest')
    first, last = four_step(playbook, tmp_path, step)
    assert len(_macs(_live(dom))) == 1 == len(_macs(_inactive(dom)))

    # Graceful shutdown, strict: no force. libvirt asks the guest agent when it is connected, else presses
    # the ACPI power button; the guest acts on either through systemd-logind, which needs D-Bus (an image
    # without dbus ignored both: logind's start condition failed, qemu-ga's `shutdown -P +0` said "Failed
    # to connect to bus"). The agent is stopped first so that this proves the power button path, the one
    # every guest has. The generous timeout is for TCG on a loaded host.
    probe = _ssh(key, ip, 'systemctl is-active systemd-logind; cat /sys/class/input/*/name; '
                          'systemctl stop qemu-guest-agent')
    assert probe.splitlines()[0] == 'active' and 'Power Button' in probe, \
        'the guest cannot handle the ACPI power button (systemd-logind, Power Button): %s' % probe
    _wait(lambda: not _live(dom).xpath("devices/channel/target[@state='connected']"), 60,
          'the guest agent channel to disconnect')
    started = time.time()
    first, last = four_step(playbook, tmp_path, dict(name=name, state='shutdown', shutdown_timeout=300))
    assert [c['action'] for c in first['changes']] == ['shutdown'], first['changes']
    assert not dom.isActive() and last['domain']['state'] == 'shutoff'
    assert dom.state()[1] == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, 'shut down by the guest, not destroyed'
    print('graceful shutdown of the Linux guest (four steps): %.0f s' % (time.time() - started))

    # Undefine keeping the disk.
    four_step(playbook, tmp_path, dict(name=name, state='absent'))
    assert os.path.exists(root_disk)


# ---------------------------------------------------------------- EFI, SPICE and a pool volume (OS-less)
def test_efi_spice_and_pool_volume_disk(conn, guest, playbook, tmp_path):
    """UEFI firmware (libvirt picks OVMF and makes the NVRAM), a SPICE console on 127.0.0.1 and a qcow2
    disk created as a volume of a dir pool, on a running guest; absent keeps the volume, drops the NVRAM."""
    name, pool = guest['name'], guest['name'] + '-pool'

    def pool_task(state):   # absent keeps the pool's data (delete_data defaults to false)
        res = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_pool',
                                     dict(name=pool, type='dir', path=guest['dir'], state=state), 'pool')).task('pool')
        assert not res.get('failed'), res.get('msg')
    pool_task('active')
    try:
        args = dict(name=name, memory='128MiB', vcpus=1, virt_type='auto', machine='q35', firmware='efi',
                    state='running', graphics=dict(type='spice'),
                    disks=[dict(pool=pool, volume=name + '.qcow2', size='1GiB', format='qcow2', target='vda')])
        real, again = four_step(playbook, tmp_path, args)
        assert real['domain']['firmware'] == 'efi' and real['domain']['state'] == 'running'
        dom = conn.lookupByName(name)
        live, config = _live(dom), _inactive(dom)
        loader = live.find('os/loader')
        assert loader is not None and loader.get('type') == 'pflash' and 'OVMF' in loader.text, _libvirt_text(live, 'os')
        nvram = live.findtext('os/nvram')
        assert nvram and os.path.exists(nvram)
        spice = live.find("devices/graphics[@type='spice']")
        assert spice.get('listen') == '127.0.0.1' and int(spice.get('port')) >= 5900
        assert [g['type'] for g in again['domain']['graphics']] == ['spice']
        disk = config.find('devices/disk')
        assert disk.get('type') == 'volume' and disk.find('source').attrib == {'pool': pool, 'volume': name + '.qcow2'}
        path = conn.storagePoolLookupByName(pool).storageVolLookupByName(name + '.qcow2').path()
        info = _qemu_img_info(path)
        assert info['format'] == 'qcow2' and info['virtual-size'] == 1024 ** 3

        gone, _raw = run_domain(playbook, tmp_path, dict(name=name, state='absent'))
        assert gone['changed'] is True and not gone.get('failed')
        assert os.path.exists(path) and not os.path.exists(nvram)     # the disk stays, the NVRAM goes
    finally:
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name + '.qcow2')
            vol.delete(0)
        except _libvirt().libvirtError:
            pass
        pool_task('absent')


def _libvirt_text(root, path):
    from lxml import etree
    node = root.find(path)
    return etree.tostring(node).decode() if node is not None else None


def test_direct_macvtap_nic_on_a_running_guest(conn, guest, playbook, tmp_path):
    """A ``type: direct`` NIC (macvtap, mode bridge) on a veth made by the test, hot-plugged into a running
    OS-less guest and read back from libvirt (live and persistent) and the kernel."""
    name = guest['name']
    lower, peer = 'kvd' + name[-8:], 'kve' + name[-8:]
    subprocess.run(['ip', 'link', 'add', lower, 'type', 'veth', 'peer', 'name', peer], check=True)
    subprocess.run(['ip', 'link', 'set', lower, 'up'], check=True)
    try:
        base = dict(name=name, memory='64MiB', vcpus=1, virt_type='auto', state='running', graphics=dict(type='none'))
        four_step(playbook, tmp_path, base)
        real, _again = four_step(playbook, tmp_path, dict(base, interfaces=[dict(type='direct', source=lower)]))
        nic = real['domain']['interfaces'][0]
        assert nic['type'] == 'direct' and nic['source'] == lower, nic
        live = _live(conn.lookupByName(name)).find('devices/interface')
        assert live.get('type') == 'direct' and live.find('source').get('mode') == 'bridge'
        tap = live.find('target').get('dev')
        link = json.loads(subprocess.run(['ip', '-j', '-d', 'link', 'show', tap], capture_output=True, text=True,
                                         check=True).stdout)[0]
        assert link['linkinfo']['info_kind'] == 'macvtap' and link['link'] == lower, link
        assert link['address'] == nic['mac']
        assert _inactive(conn.lookupByName(name)).find('devices/interface').get('type') == 'direct'  # persistent too
        # (unplugging needs a guest OS that answers the ACPI eject: test_walkthrough_linux_guest covers that)
    finally:
        run_domain(playbook, tmp_path, dict(name=guest['name'], state='absent'))
        subprocess.run(['ip', 'link', 'del', lower], check=False)


# ---------------------------------------------------------------- files the module creates
def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _open_by_qemu(name):
    """Paths the guest's QEMU process holds open (its fds), from libvirt's pid file."""
    with open('/run/libvirt/qemu/%s.pid' % name) as handle:
        pid = handle.read().strip()
    fd_dir = '/proc/%s/fd' % pid
    paths = set()
    for fd in os.listdir(fd_dir):
        try:
            paths.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    return paths


def test_created_files_are_private_and_never_follow_links(conn, guest, playbook, tmp_path):
    name, directory = guest['name'], guest['dir']
    victim = os.path.join(directory, 'victim')
    with open(victim, 'w') as handle:
        handle.write('precious\n')
    os.chmod(victim, 0o600)
    disk = os.path.join(directory, 'root.qcow2')
    args = dict(name=name, virt_type=osless_virt_type(conn), memory='64MiB', vcpus=1, graphics=dict(type='none'),
                disks=[dict(path=disk, size='64MiB', format='qcow2')], state='running',
                cloud_init=dict(directory=directory, user_data='#cloud-config\nhostname: seeded\n'))
    plan, _raw = run_domain(playbook, tmp_path, args, check=True)
    [seed] = [c['after'] for c in plan['changes'] if c['option'] == 'cloud_init' and c['action'] == 'create_image']
    assert not os.path.lexists(seed) and not os.path.exists(disk), 'check mode writes nothing'

    def victim_untouched():
        with open(victim) as handle:
            assert handle.read() == 'precious\n'
        assert _mode(victim) == 0o600 and os.stat(victim).st_uid == 0

    # A symlink at the seed's name and at the old predictable temporary name: refused, nothing written.
    os.symlink(victim, seed)
    os.symlink(victim, seed + '.tmp')
    task, result = run_domain(playbook, tmp_path, args)
    assert task.get('failed') and task['msg'].startswith('cloud_init.directory: ') and 'symbolic link' in task['msg']
    assert 'Traceback' not in result.stdout
    victim_untouched()
    assert os.path.islink(seed) and not os.path.lexists(disk)
    with pytest.raises(_libvirt().libvirtError):
        conn.lookupByName(name)
    # A dangling symlink where the disk image would be created: refused, nothing written through it.
    os.unlink(seed)
    target = os.path.join(directory, 'made-through-link')
    os.symlink(target, disk)
    task, _raw = run_domain(playbook, tmp_path, args)
    assert task.get('failed') and task['msg'].startswith('disks[0].path: ') and 'dangling symbolic link' in task['msg']
    assert not os.path.lexists(target) and not os.path.lexists(seed)
    os.unlink(disk)

    # Without the links: the seed and the disk are created 0600 and the guest starts with them.
    made, _raw = run_domain(playbook, tmp_path, args)
    assert not made.get('failed'), made.get('msg')
    assert _mode(seed) == 0o600 and _mode(disk) == 0o600
    victim_untouched()
    assert os.readlink(seed + '.tmp') == victim, 'the old temporary name is not used'
    assert sorted(os.listdir(directory)) == sorted(['victim', os.path.basename(seed), os.path.basename(seed) + '.tmp',
                                                    'root.qcow2']), 'no temporary file left'
    dom = conn.lookupByName(name)
    assert dom.isActive()
    held = _open_by_qemu(name)
    assert seed in held and disk in held, 'QEMU opened the 0600 seed and disk (libvirt dynamic ownership): %s' % held
    time.sleep(2)
    assert dom.isActive() and dom.state()[0] == _libvirt().VIR_DOMAIN_RUNNING
    # A second run finds both and changes nothing.
    again, _raw = run_domain(playbook, tmp_path, args)
    assert again['changed'] is False, again['changes']


# ---------------------------------------------------------------- secrets
SECRET_XML = """<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{passwd}'/></devices>
</domain>"""


def _run_vvv(tmp_path, task, check=False):
    """One kvm_domain task at -vvv with --diff (default stdout callback): (registered result, whole output)."""
    result_file = tmp_path / ('result-%s.json' % uuid.uuid4().hex[:8])
    play = [dict(hosts='localhost', gather_facts=False, tasks=[
        {'name': 'domain', 'kvmops.kvm.kvm_domain': task, 'register': 'r'},
        {'name': 'keep the result', 'delegate_to': 'localhost', 'check_mode': False, 'diff': False,
         'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': str(result_file), 'mode': '0600'}}])]
    path = tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps(play))
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), str(path), '-vvv', '--diff',
           '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')] + (['--check'] if check else [])
    proc = subprocess.run(cmd, env=_env(dict(ANSIBLE_STDOUT_CALLBACK='default')), capture_output=True, text=True,
                          timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return json.loads(result_file.read_text()), output


def test_secrets_never_appear(conn, guest, tmp_path):
    name, directory = guest['name'], guest['dir']
    old_pw, new_pw, cloud_pw = 'Kv7xQ2pZ', 'Nw3rT8yL', 'CloudPw-5u9Hq2'
    secrets = (old_pw, new_pw, cloud_pw)
    virt_type = osless_virt_type(conn)
    cloud_init = dict(directory=directory, user_data='#cloud-config\npassword: %s\nchpasswd: {expire: false}\n' % cloud_pw)
    create = dict(name=name, xml=SECRET_XML.format(virt_type=virt_type, name=name, passwd=old_pw), cloud_init=cloud_init)
    change = dict(create, xml=SECRET_XML.format(virt_type=virt_type, name=name, passwd=new_pw))
    outcomes = []
    for task, check in ((create, True), (create, False), (change, True), (change, False), (change, False)):
        result, output = _run_vvv(tmp_path, task, check=check)
        assert 'Traceback' not in output and not result.get('failed'), output[-4000:]
        for secret in secrets:
            assert secret not in output, 'secret %r in the -vvv --diff%s output' % (secret, ' --check' if check else '')
        assert "'module_args'" in output or '"module_args"' in output, 'the invocation is printed at -vvv'
        outcomes.append(result)
    assert [r['changed'] for r in outcomes] == [True, True, True, True, False]
    for result in outcomes[2:4]:
        [entry] = [c for c in result['changes'] if c['option'] == 'xml']
        assert entry['after'] == ["domain/devices/graphics[vnc]/@passwd: '********' -> '********'"], entry   # devices named by identity (1.1.0)
        assert "passwd=\"********\"" in result['diff']['before'] and "passwd=\"********\"" in result['diff']['after']
    # The secrets did reach libvirt and the seed, which only root can read.
    dom = conn.lookupByName(name)
    assert "passwd='%s'" % new_pw in dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_SECURE).replace('"', "'")
    [seed] = [f for f in os.listdir(directory) if f.endswith('.iso')]
    seed = os.path.join(directory, seed)
    assert _mode(seed) == 0o600
    with open(seed, 'rb') as handle:
        assert cloud_pw.encode() in handle.read()
