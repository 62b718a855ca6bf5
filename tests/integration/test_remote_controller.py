"""Issue 17 from the controller, over a real qemu+ssh:// URI: the lab's host4 (private images, reached only through sshd).

What the other host4 tests (test_kvm_domain_ssh, test_kvm_volume_ssh) leave unproven over a remote URI:

* kvm_pool refuses ``owner``/``group`` names there (they would be looked up on the main host);
* the qemu_agent connection plugin reaches guests of host4 and says clearly why it cannot run a task in a
  guest without an agent channel, in one whose agent is not connected (OS-less guests, KVM) and in a missing one;
* kvm_domain's ``wait_for`` with a TCP port: a busybox guest (Debian's kernel, TCG) on a routed libvirt network
  of host4 takes a DHCP lease from host4's dnsmasq and serves port 22; the task, run on the main host against
  the ssh URI, returns the lease address only once the port accepts a connection from the main host (routed
  to host4's lab address by a /24 route this test adds and removes; the guest's default route is host4). kvm_info and the inventory plugin
  read the same address over the same URI.

A private lab instance (own netns names, /24 and state dir) is used, so no other test's lab is touched.
"""

import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid

import pytest

import busybox_guest
from conftest import ROOT, _env, one_task_play, osless_virt_type, plain, remove_guest, run_playbook
from ssh_lab import host4_images, private_host4
from storage_helpers import expect_failure, write_play
from test_qemu_agent import AGENT_CHANNEL, OSLESS, play

libvirt = pytest.importorskip('libvirt')

INVENTORY = os.path.join(ROOT, '.venv', 'bin', 'ansible-inventory')
POOL = """
- name: t
  kvmops.kvm.kvm_pool:
    uri: "{{ uri }}"
    name: "{{ name }}"
    type: dir
    path: "{{ path }}"
    owner: "{{ owner | default(omit) }}"
    group: "{{ group | default(omit) }}"
"""
ROUTED = """<network>
  <name>{name}</name>
  <forward mode='route'/>
  <bridge name='{bridge}' stp='off'/>
  <ip address='{prefix}.1' netmask='255.255.255.0'>
    <dhcp><range start='{prefix}.100' end='{prefix}.150'/></dhcp>
  </ip>
</network>"""
LOOP = 'while :; do sleep 3600; done'
# The main host is not on the guest's subnet: the guest answers it through host4 (its network's address .1).
INIT = busybox_guest.NET_INIT.replace(LOOP, 'ip route add default via {prefix}.1\n'
                                            'httpd -p 22 -h /tmp && echo "kvmops-guest: port 22"\n' + LOOP)
BOOT_WAIT = 300   # TCG boot, udhcpc, httpd: 49 s here at a load of about 1; much more under load


@pytest.fixture(scope='module')
def host4():
    with private_host4('kvmrc', '10.254.88', '/var/lib/kvmops-lab-ctl', 'kvmrc-') as lab:
        yield lab


@pytest.fixture
def remote(host4):
    libvirt.registerErrorHandler(lambda *_: None, None)
    connection = libvirt.open(host4.uri('host4'))
    yield connection
    connection.close()


def test_pool_owner_and_group_names_are_refused_over_ssh(remote, host4, playbook, tmp_path, unique):
    play_path = write_play(tmp_path, POOL)
    base = dict(uri=host4.uri('host4'), name=unique, path='/var/lib/libvirt/images/%s' % unique)
    for key in ('owner', 'group'):
        msg = expect_failure(playbook, play_path, dict(base, **{key: 'root'}))
        assert msg.startswith("%s: 'root' is a name, and names are looked up on the host that runs the module, not on "
                              "the hypervisor of qemu+ssh://" % key), msg
        assert msg.endswith('give the numeric %s' % ('uid' if key == 'owner' else 'gid'))
    assert unique not in [p.name() for p in remote.listAllStoragePools(0)], 'a refused run defined the pool on host4'
    assert not os.path.exists(os.path.join(host4_images(host4), unique))


def test_kvm_info_hardware_probes_are_refused_over_ssh(host4, playbook, tmp_path):
    """They read the machine that runs the module: reported as host4's they would be the main host's."""
    result = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_info', dict(uri=host4.uri('host4'), gather=['hardware']),
                                        'info'))
    task = result.task('info')
    assert task['failed'] and 'hardware' not in task and 'Traceback' not in result.stdout + result.stderr
    assert task['msg'].startswith('gather: hardware probes the host that runs the module (%s), not the hypervisor of %s'
                                  % (socket.gethostname(), host4.uri('host4'))), task['msg']
    host = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_info', dict(uri=host4.uri('host4'), gather=['host']),
                                      'info')).task('info')
    assert not host.get('failed') and host['host']['hostname'] == host4.hostname('host4'), 'libvirt\'s view is host4\'s'
    assert host['host']['virtualization']['local'] is False


def test_qemu_agent_connection_over_ssh_says_why_it_cannot_run(conn, remote, host4, tmp_path):
    """No agent channel, an agent that is not connected (no OS), a missing guest: each a clear one-line reason."""
    prefix = 'kvmops-it-rqga-%s' % uuid.uuid4().hex[:6]
    bare, silent, missing = prefix + '-bare', prefix + '-silent', prefix + '-missing'
    uri = host4.uri('host4')
    try:
        for name, channel in ((bare, ''), (silent, AGENT_CHANNEL)):
            remote.defineXML(OSLESS.format(virt_type=osless_virt_type(conn), name=name, channel=channel)).create()
        tasks = [dict(name='ping', **{'ansible.builtin.raw': 'true'})]
        results, proc = play(tmp_path, dict((h, {'ansible_libvirt_uri': uri}) for h in (bare, silent, missing)), tasks,
                             timeout=300)
        assert 'Traceback' not in proc.stdout + proc.stderr
        msgs = dict((host, results[host]['ping'].get('msg', '')) for host in (bare, silent, missing))
        assert all(results[host]['ping'].get('unreachable') for host in msgs), results
        assert 'guest %s on %s' % (bare, uri) in msgs[bare] and 'has no guest agent channel; define it with guest_agent: true' in msgs[bare]
        assert 'guest %s on %s' % (silent, uri) in msgs[silent], msgs[silent]
        assert 'the guest agent is not connected or not answering' in msgs[silent], msgs[silent]
        assert 'guest %s on %s: no such guest' % (missing, uri) in msgs[missing], msgs[missing]
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(bare)     # the guests are host4's: the main host has none of them
    finally:
        remove_guest(remote, bare)
        remove_guest(remote, silent)


SEEDED = """
- name: pool
  kvmops.kvm.kvm_pool:
    uri: "{{ uri }}"
    name: "{{ pool }}"
    type: dir
    path: "{{ path }}"
    owner: "0"
    group: "0"
    mode: "0711"
    build: true
    state: "{{ pool_state | default('active') }}"
    delete_data: "{{ pool_state is defined }}"
- name: t
  kvmops.kvm.kvm_domain:
    uri: "{{ uri }}"
    name: "{{ name }}"
    state: "{{ state | default('running') }}"
    memory: 64MiB
    virt_type: "{{ virt }}"
    graphics: {type: none}
    cloud_init: {pool: "{{ pool }}", user_data: {hostname: seeded-remotely}}
    remove_storage: "{{ remove_storage | default(omit) }}"
"""


def test_a_seed_in_a_named_pool_that_kvm_pool_built_with_numeric_ids_over_ssh(conn, remote, host4, playbook, tmp_path, unique):
    """kvm_pool builds a directory pool on host4 (numeric owner, mode); kvm_domain puts the seed into it by name."""
    name, pool = unique, 'seeds-' + unique
    seeds = os.path.join(host4_images(host4), pool)          # /var/lib/libvirt/images/<pool> inside host4
    play_path = write_play(tmp_path, SEEDED)
    extra = dict(uri=host4.uri('host4'), name=name, pool=pool, path='/var/lib/libvirt/images/' + pool,
                 virt=osless_virt_type(conn))
    try:
        first = playbook(play_path, extra_vars=extra)
        assert first.rc == 0, (first.stdout + first.stderr)[-3000:]
        assert first.task('pool')['changed'] and first.task('t')['changed']
        info = os.stat(seeds)
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o711), 'libvirt built the directory on host4'
        assert not os.path.exists('/var/lib/libvirt/images/' + pool), 'nothing was made on the main host'
        isos = [f for f in os.listdir(seeds) if f.startswith(name + '-cidata-') and f.endswith('.iso')]
        assert len(isos) == 1, os.listdir(seeds)
        remote_pool = remote.storagePoolLookupByName(pool)
        remote_pool.refresh(0)
        assert remote_pool.listVolumes() == isos
        assert "file='/var/lib/libvirt/images/%s/%s'" % (pool, isos[0]) in remote.lookupByName(name).XMLDesc(0)
        again = playbook(play_path, extra_vars=extra)
        assert again.rc == 0 and not again.task('pool')['changed'] and not again.task('t')['changed']
        gone = playbook(play_path, extra_vars=dict(extra, state='absent', remove_storage=True))
        assert gone.rc == 0 and gone.task('t')['changed']
        assert os.listdir(seeds) == [], 'remove_storage deleted the seed in the named pool on host4'
    finally:
        remove_guest(remote, name)
        playbook(play_path, extra_vars=dict(extra, state='absent', pool_state='absent'))
        shutil.rmtree(seeds, ignore_errors=True)
        assert pool not in [p.name() for p in remote.listAllStoragePools(0)]


NETWORK = """
- name: t
  kvmops.kvm.kvm_network:
    uri: "{{ uri }}"
    name: "{{ name }}"
    state: active
    forward: isolated
    bridge: {name: "{{ bridge }}", stp: false}
    ipv4: {address: "{{ address }}"}
    restart: if_needed
"""
GUEST_ON = """<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os><devices>
<interface type='network'><source network='{net}'/><model type='virtio'/></interface>
<memballoon model='none'/></devices></domain>"""


def lab_master(host4, dev):
    """The bridge ``dev`` is plugged into inside host4's network namespace (None when none)."""
    out = subprocess.run(['ip', '-n', host4.values['KVMLAB_HOST4_NETNS'], '-o', 'link', 'show', 'dev', dev],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[out.index('master') + 1] if 'master' in out else None


def test_network_restart_over_ssh_reports_the_taps_it_cannot_replug(conn, remote, host4, playbook, tmp_path, unique):
    """kvm_network cannot re-plug a remote guest's tap (libvirt has no call for it): it says so, and does nothing here."""
    from lxml import etree
    hexid = uuid.uuid4().hex[:6]
    name, bridge = unique, 'kvt%s' % hexid
    play_path = write_play(tmp_path, NETWORK)
    extra = dict(uri=host4.uri('host4'), name=name, bridge=bridge, address='10.219.%d.1/24' % random.randint(1, 254))
    dom = None
    try:
        result = playbook(play_path, extra_vars=extra)
        assert result.rc == 0 and result.task('t')['changed'], (result.stdout + result.stderr)[-3000:]
        dom = remote.createXML(GUEST_ON.format(virt_type=osless_virt_type(conn), name=name, net=name), 0)
        tap = etree.fromstring(dom.XMLDesc(0)).find('devices/interface/target').get('dev')
        assert lab_master(host4, tap) == bridge
        main_link = '/sys/class/net/%s/master' % tap      # a tap of the same name on the main host is left alone
        main_before = os.readlink(main_link) if os.path.islink(main_link) else None
        moved = dict(extra, address='10.219.%d.1/24' % random.randint(1, 254))
        result = playbook(play_path, extra_vars=moved)
        assert result.rc == 0, (result.stdout + result.stderr)[-3000:]
        task = result.task('t')
        assert task['restarted'] is True and task['changed']
        assert task['replugged'] == [dict(guest=name, domain=name, mac=task['replugged'][0]['mac'], interface=tap,
                                          bridge=bridge, replugged=False)]
        assert any('%s of %s' % (tap, name) in w and 'ip link set dev TAP master %s' % bridge in w
                   for w in task.get('warnings', [])), task.get('warnings')
        assert lab_master(host4, tap) is None, 'the report is true: the tap is off the restarted bridge on host4'
        assert (os.readlink(main_link) if os.path.islink(main_link) else None) == main_before
        # what the warning says to do, done on host4, puts it back
        subprocess.run(['ip', '-n', host4.values['KVMLAB_HOST4_NETNS'], 'link', 'set', 'dev', tap, 'master', bridge], check=True)
        assert lab_master(host4, tap) == bridge
    finally:
        if dom is not None:
            remove_guest(remote, name)
        try:
            net = remote.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            net.undefine()
        except libvirt.libvirtError:
            pass


def free_prefix():
    """A /24 under 10.219.0.0/16 that no route on the main host uses."""
    routes = subprocess.run(['ip', '-4', 'route', 'show', 'table', 'all'], capture_output=True, text=True, check=True).stdout
    for _attempt in range(50):
        prefix = '10.219.%d' % random.randint(1, 254)
        if prefix + '.' not in routes:
            return prefix
    pytest.skip('no free 10.219.x.0/24 for a test network')


def domain_task(tmp_path, args, check=False):
    result = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain'), check=check)
    assert 'Traceback' not in result.stdout + result.stderr
    return result.task('domain')


def test_wait_for_a_port_over_ssh(conn, remote, host4, tmp_path):
    hexid = uuid.uuid4().hex[:6]
    name = 'kvmops-it-rwait-%s' % hexid
    uri = host4.uri('host4')
    prefix = free_prefix()
    guest_dir = os.path.join(host4_images(host4), name)      # /var/lib/libvirt/images/<name> on host4
    net = route = None
    try:
        boot = busybox_guest.build(guest_dir, init=INIT.replace('{prefix}', prefix))
        net = remote.networkCreateXML(ROUTED.format(name=name, bridge='kvw%s' % hexid, prefix=prefix))
        subprocess.run(['ip', 'route', 'add', prefix + '.0/24', 'via', host4.addr('host4')], check=True)
        route = prefix + '.0/24'
        inside = '/var/lib/libvirt/images/%s/' % name
        args = dict(uri=uri, name=name, state='running', memory='128MiB', vcpus=1, virt_type='qemu',
                    kernel=inside + os.path.basename(boot['kernel']), initrd=inside + os.path.basename(boot['initrd']),
                    cmdline='console=ttyS0 quiet net.ifnames=0', graphics=dict(type='none'),
                    interfaces=[dict(source=name)], wait_for=dict(sources=['lease'], port=22, timeout=BOOT_WAIT))
        started = time.monotonic()
        created = domain_task(tmp_path, args)
        print('\nkvm_domain over ssh created %s on host4 and waited for port 22: %.0f s' % (name, time.monotonic() - started))
        assert not created.get('failed'), created.get('msg')
        assert created['changed'] and remote.lookupByName(name).isActive()
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        mac = created['domain']['interfaces'][0]['mac']
        leases = [lease for lease in remote.networkLookupByName(name).DHCPLeases() if lease['mac'] == mac]
        assert [lease['ipaddr'] for lease in leases] == [created['address']], leases   # host4's dnsmasq gave it
        assert created['address'].startswith(prefix + '.') and created['address_source'] == 'lease'
        socket.create_connection((created['address'], 22), timeout=10).close()      # the port wait was real

        # a port nothing listens on: the timeout names the address and the port, nothing changed
        closed = domain_task(tmp_path, dict(uri=uri, name=name, state='running', wait_for=dict(port=23, timeout=4)))
        assert closed.get('failed') is True and closed['changed'] is False
        assert closed['msg'] == ('wait_for: guest %s has the address %s (lease) but nothing accepted a TCP connection on '
                                 'port 23 from this host within 4 s (%s: Connection refused)'
                                 % (name, created['address'], created['address']))

        # kvm_info and the inventory read the same address over the same URI
        info = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_info', dict(uri=uri, gather=['domains'], name=[name]),
                                          'info')).task('info')
        by_source = dict((a['source'], a) for a in info['domains'][0]['addresses'])
        assert by_source['lease']['address'] == created['address']
        config = tmp_path / 'kvm.libvirt.yml'
        config.write_text('plugin: kvmops.kvm.libvirt\nuris: [%s]\nnames: [%s]\naddress_sources: [lease]\n'
                          % (json.dumps(uri), json.dumps(name)))
        proc = subprocess.run([INVENTORY, '-i', str(config), '--list'], capture_output=True, text=True, timeout=300,
                              check=False, env=_env({'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}))
        assert proc.returncode == 0, proc.stderr
        assert plain(json.loads(proc.stdout)['_meta']['hostvars'][name])['ansible_host'] == created['address']
    finally:
        remove_guest(remote, name)
        if route:
            subprocess.run(['ip', 'route', 'del', route], check=False)
        if net is not None:
            try:
                net.destroy()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(guest_dir, ignore_errors=True)
