"""The kvmops.kvm.libvirt inventory plugin against the real local libvirtd and the lab's second host.

Guests are OS-less (no DHCP client, no guest agent inside). The DHCP-lease path
is proven with a real lease anyway: a network namespace we create is plugged
into our own libvirt network's bridge with the guest's MAC address and runs
busybox udhcpc, so the network's own dnsmasq hands out a real lease for that
MAC, which libvirt then reports for the guest. Pinging that address from the
host fills the host's ARP table for the ARP path. The guest agent path is
tested as unavailable (libvirt answers "QEMU guest agent is not configured").
"""

import json
import os
import random
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, _env, osless_virt_type, plain, remove_guest
from lab_instance import DEFAULT_HOST2_URI as LAB_URI, shared_host2

INVENTORY = os.path.join(ROOT, '.venv', 'bin', 'ansible-inventory')
UNREACHABLE_URI = 'qemu+tcp://127.0.0.1:1/system'   # loopback, nothing listens on port 1

NETWORK = """
<network>
  <name>{name}</name>
  <bridge name='{bridge}' stp='off'/>
  <ip address='{prefix}.1' netmask='255.255.255.0'>
    <dhcp><range start='{prefix}.100' end='{prefix}.150'/></dhcp>
  </ip>
</network>
"""

GUEST = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    {nic}
    <serial type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""

NIC = """<interface type='network'>
      <source network='{network}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>"""

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc hook: put the leased address on the interface.
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
"""


def sh(*cmd, check=True):
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('%s failed: %s %s' % (' '.join(cmd), proc.stdout, proc.stderr))
    return proc


def free_prefix():
    """A /24 under 10.213.0.0/16 that no route on this machine uses."""
    routes = sh('ip', '-4', 'route', 'show', 'table', 'all').stdout
    for _attempt in range(50):
        prefix = '10.213.%d' % random.randint(1, 254)
        if prefix + '.' not in routes:
            return prefix
    pytest.skip('no free 10.213.x.0/24 for a test network')


def inventory(tmp_path, config, *args, name='kvm.libvirt.yml'):
    path = tmp_path / name
    lines = ['plugin: kvmops.kvm.libvirt']
    lines += ['%s: %s' % (key, json.dumps(value)) for key, value in config.items()]
    path.write_text('\n'.join(lines) + '\n')
    # A plugin error must fail the command, not become a warning and an empty inventory.
    env = _env({'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'})
    proc = subprocess.run([INVENTORY, '-i', str(path), '--list'] + list(args), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    data = None
    if proc.returncode == 0:
        data = json.loads(proc.stdout)
    return proc, data


def raw_hostvars(data, host):
    """HOST's variables as ansible-inventory prints them: a value marked unsafe is {'__ansible_unsafe': value}."""
    return data['_meta']['hostvars'][host]


def hostvars(data, host):
    return plain(raw_hostvars(data, host))


def members(data, group):
    return set(data.get(group, {}).get('hosts', []))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope='module')
def world(conn):
    """Our own isolated network, a running guest with a real lease, a shut-off guest."""
    import libvirt
    hexid = uuid.uuid4().hex[:6]
    name = 'kvmops-it-%s' % hexid
    prefix = free_prefix()
    bridge = 'kvi%s' % hexid
    netns = name
    veth_host, veth_ns = 'kvh%s' % hexid, 'kvn%s' % hexid
    mac = '52:54:00:%02x:%02x:%02x' % tuple(random.randint(0, 255) for _byte in range(3))
    script = '/tmp/%s-udhcpc.sh' % name
    net = None
    try:
        net = conn.networkCreateXML(NETWORK.format(name=name, bridge=bridge, prefix=prefix))
        kind = osless_virt_type(conn)
        running = conn.createXML(GUEST.format(virt_type=kind, name=name + '-run', vcpus=2,
                                              nic=NIC.format(network=name, mac=mac)), 0)
        conn.defineXML(GUEST.format(virt_type=kind, name=name + '-off', vcpus=1,
                                    nic=NIC.format(network=name, mac='52:54:00:00:00:01')))
        # A real DHCP client on the network's bridge, with the running guest's MAC.
        sh('ip', 'netns', 'add', netns)
        sh('ip', 'link', 'add', veth_host, 'type', 'veth', 'peer', 'name', veth_ns)
        sh('ip', 'link', 'set', veth_ns, 'netns', netns)
        sh('ip', 'netns', 'exec', netns, 'ip', 'link', 'set', veth_ns, 'address', mac)
        sh('ip', 'link', 'set', veth_host, 'master', bridge)
        sh('ip', 'link', 'set', veth_host, 'up')
        sh('ip', 'netns', 'exec', netns, 'ip', 'link', 'set', veth_ns, 'up')
        with open(script, 'w') as handle:
            handle.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
        got = sh('ip', 'netns', 'exec', netns, 'busybox', 'udhcpc', '-i', veth_ns, '-n', '-q',
                 '-t', '10', '-T', '2', '-s', script, check=False)
        assert got.returncode == 0, 'no DHCP lease from our network: %s %s' % (got.stdout, got.stderr)
        lease = None
        for _attempt in range(20):
            leases = [item['ipaddr'] for item in net.DHCPLeases() if item['mac'].lower() == mac]
            if leases:
                lease = leases[0]
                break
            time.sleep(0.5)
        assert lease, 'dnsmasq recorded no lease for %s' % mac
        yield dict(name=name, network=name, prefix=prefix, mac=mac, lease=lease, netns=netns,
                   running=running, hypervisor=conn.getHostname())
    finally:
        remove_guest(conn, name + '-run')
        remove_guest(conn, name + '-off')
        sh('ip', 'netns', 'del', netns, check=False)
        sh('ip', 'link', 'del', veth_host, check=False)
        if net is not None:
            try:
                net.destroy()
            except libvirt.libvirtError:
                pass
        if os.path.exists(script):
            os.unlink(script)


@pytest.fixture(scope='module')
def lab_host():
    """The lab's second libvirtd; stopped afterwards only if this module started it."""
    import libvirt
    with shared_host2() as uri:
        conn = libvirt.open(uri)
        try:
            yield conn
        finally:
            conn.close()


# --------------------------------------------------------------------- tests
def test_lease_gives_ansible_host_and_hostvars(world, tmp_path):
    proc, data = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-*'],
                                          address_sources=['lease']))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert run['ansible_host'] == world['lease']
    assert run['libvirt_address_source'] == 'lease'
    assert run['libvirt_state'] == 'running' and run['libvirt_active'] is True
    assert run['libvirt_vcpus'] == 2
    assert run['libvirt_memory_mib'] == 64
    assert run['libvirt_uri'] == 'qemu:///system'
    assert run['libvirt_hypervisor'] == world['hypervisor']
    assert run['libvirt_networks'] == [world['network']]
    assert run['libvirt_interfaces'][0]['mac'] == world['mac']
    assert run['libvirt_interfaces'][0]['addresses'] == [world['lease']]
    off = hostvars(data, world['name'] + '-off')
    assert 'ansible_host' not in off
    assert off['libvirt_state'] == 'shutoff' and off['libvirt_address_source'] is None
    # Groups by state, hypervisor and network (names made safe).
    safe = world['name'].replace('-', '_')
    assert members(data, 'libvirt_state_running') >= {world['name'] + '-run'}
    assert world['name'] + '-off' in members(data, 'libvirt_state_shutoff')
    assert members(data, 'libvirt_network_' + safe) == {world['name'] + '-run', world['name'] + '-off'}
    hv_group = 'libvirt_hypervisor_' + world['hypervisor'].replace('-', '_').replace('.', '_')
    assert members(data, hv_group) == {world['name'] + '-run', world['name'] + '-off'}
    assert members(data, 'libvirt_guests') == {world['name'] + '-run', world['name'] + '-off'}


def test_agent_unavailable_falls_through_to_the_lease(world, tmp_path):
    proc, data = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-run'],
                                          address_sources=['agent', 'lease']))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert 'agent' in run['libvirt_address_errors']
    assert 'agent' in run['libvirt_address_errors']['agent'].lower()
    assert run['ansible_host'] == world['lease'] and run['libvirt_address_source'] == 'lease'


def test_agent_only_gives_no_ansible_host(world, tmp_path):
    proc, data = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-run'],
                                          address_sources=['agent']))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert 'ansible_host' not in run and run['libvirt_address_source'] is None


def test_arp_after_traffic(world, tmp_path):
    # Traffic from the host to the namespace we plugged into our own network.
    for _attempt in range(10):
        sh('busybox', 'ping', '-c', '1', '-W', '1', world['lease'], check=False)
        if any(line.split()[0] == world['lease'] and line.split()[2] != '0x0'
               for line in open('/proc/net/arp').read().splitlines()[1:]):
            break
    else:
        pytest.fail('no ARP entry for %s after pinging it: %s' % (world['lease'], open('/proc/net/arp').read()))
    proc, data = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-run'],
                                          address_sources=['arp', 'lease']))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert run['libvirt_address_source'] == 'arp', run['libvirt_address_errors']
    assert run['ansible_host'] == world['lease']


def test_read_only_connection_skips_the_agent(world, tmp_path):
    proc, data = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-run'],
                                          read_only=True, address_sources=['agent', 'lease']))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert 'agent' not in run['libvirt_address_errors']
    assert run['ansible_host'] == world['lease']


def test_constructed_compose_groups_keyed_groups(world, tmp_path):
    proc, data = inventory(tmp_path, dict(
        uris=['qemu:///system'], names=[world['name'] + '-*'], include_facts=True,
        compose={'ansible_user': "'ops'", 'guest_arch': 'libvirt_domain.arch'},
        groups={'multi_cpu': 'libvirt_vcpus > 1'},
        keyed_groups=[{'key': 'libvirt_state', 'prefix': 'st'},
                      {'key': 'libvirt_networks', 'prefix': 'net'}],
    ))
    assert proc.returncode == 0, proc.stderr
    run = hostvars(data, world['name'] + '-run')
    assert run['ansible_user'] == 'ops'
    assert run['guest_arch'] == 'x86_64'
    assert run['libvirt_domain']['name'] == world['name'] + '-run'
    assert members(data, 'multi_cpu') == {world['name'] + '-run'}
    assert members(data, 'st_running') == {world['name'] + '-run'}
    assert members(data, 'st_shutoff') == {world['name'] + '-off'}
    both = {world['name'] + '-run', world['name'] + '-off'}
    assert members(data, 'net_' + world['name'].replace('-', '_')) == both


def test_strict_constructed_fails_on_a_bad_expression(world, tmp_path):
    proc, dummy = inventory(tmp_path, dict(uris=['qemu:///system'], names=[world['name'] + '-*'], strict=True,
                                           compose={'x': 'no_such_variable.attr'}))
    assert proc.returncode != 0
    assert 'no_such_variable' in proc.stderr


def _guests_via_playbook(tmp_path, inventory_file, *args):
    """The guest names a play sees (ansible-playbook, which knows --flush-cache)."""
    out = tmp_path / 'guests.json'
    play = tmp_path / 'list.yml'
    play.write_text(
        '- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n'
        '    - ansible.builtin.copy:\n        dest: %s\n'
        '        content: "{{ groups[\'libvirt_guests\'] | default([]) | to_json }}"\n'
        '      vars:\n        ansible_python_interpreter: "{{ ansible_playbook_python }}"\n' % out)
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory_file),
                           str(play)] + list(args), env=_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return set(json.loads(out.read_text()))


def test_inventory_cache(world, conn, tmp_path):
    import libvirt
    cache_dir = tmp_path / 'cache'
    config = dict(uris=['qemu:///system'], names=[world['name'] + '-*'], cache=True,
                  cache_plugin='ansible.builtin.jsonfile', cache_connection=str(cache_dir), cache_timeout=600)
    proc, data = inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert world['name'] + '-off' in data['_meta']['hostvars']
    assert any(cache_dir.iterdir()), 'no cache file written'
    # Change libvirt behind the cache's back: the cached inventory does not see it ...
    extra = world['name'] + '-new'
    conn.defineXML(GUEST.format(virt_type=osless_virt_type(conn), name=extra, vcpus=1, nic=''))
    try:
        proc, cached = inventory(tmp_path, config)
        assert proc.returncode == 0, proc.stderr
        assert extra not in cached['_meta']['hostvars']
        assert extra not in _guests_via_playbook(tmp_path, tmp_path / 'kvm.libvirt.yml')
        # ... until the cache is flushed, which also refreshes it.
        assert extra in _guests_via_playbook(tmp_path, tmp_path / 'kvm.libvirt.yml', '--flush-cache')
        proc, fresh = inventory(tmp_path, config)
        assert proc.returncode == 0, proc.stderr
        assert extra in fresh['_meta']['hostvars']
    finally:
        try:
            conn.lookupByName(extra).undefine()
        except libvirt.libvirtError:
            pass


def test_unreachable_uri_is_a_warning_unless_strict(world, tmp_path):
    config = dict(uris=[UNREACHABLE_URI, 'qemu:///system'], names=[world['name'] + '-*'])
    proc, data = inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert 'skipping %s' % UNREACHABLE_URI in ' '.join(proc.stderr.split())
    assert world['name'] + '-run' in data['_meta']['hostvars']
    config['strict_connections'] = True
    proc, dummy = inventory(tmp_path, config)
    assert proc.returncode != 0
    assert 'cannot connect to libvirt at %s' % UNREACHABLE_URI in ' '.join(proc.stderr.split())


@pytest.fixture
def black_hole():
    """A libvirt URI whose host drops every packet: a veth into a namespace we create, and a permanent
    neighbour entry for a MAC nobody has, so TCP SYNs leave and nothing ever answers or refuses."""
    tag = uuid.uuid4().hex[:6]
    netns, here, there = 'kvmops-bh-' + tag, 'kbh%sa' % tag, 'kbh%sb' % tag
    octet = random.randint(1, 250)
    far = '10.254.%d.2' % octet

    def ip(*args, check=True):
        return subprocess.run(['ip'] + list(args), check=check, capture_output=True, text=True)

    try:
        ip('netns', 'add', netns)
        ip('link', 'add', here, 'type', 'veth', 'peer', 'name', there, 'netns', netns)
        ip('addr', 'add', '10.254.%d.1/30' % octet, 'dev', here)
        ip('link', 'set', here, 'up')
        ip('-n', netns, 'link', 'set', there, 'up')
        ip('neigh', 'replace', far, 'lladdr', '02:00:5e:10:00:01', 'dev', here, 'nud', 'permanent')
        yield far
    finally:
        ip('link', 'del', here, check=False)
        ip('netns', 'del', netns, check=False)


def test_a_black_holed_hypervisor_costs_its_timeout_not_the_inventory(world, black_hole, tmp_path):
    import socket
    probe = socket.socket()
    probe.settimeout(2)
    try:
        with pytest.raises(socket.timeout):   # the URI really is black-holed: no answer, no refusal
            probe.connect((black_hole, 16509))
    finally:
        probe.close()
    silent = 'qemu+tcp://%s/system' % black_hole
    config = dict(uris=[silent, 'qemu:///system'], names=[world['name'] + '-*'], timeout=3)
    started = time.monotonic()
    proc, data = inventory(tmp_path, config)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    stderr = ' '.join(proc.stderr.split())
    assert 'skipping %s: no answer from libvirt at %s within 3 seconds' % (silent, silent) in stderr, stderr
    assert world['name'] + '-run' in data['_meta']['hostvars'], 'the reachable hypervisor is still listed'
    # TCP alone would keep retrying the SYN for about two minutes; the default timeout is 30 s
    assert elapsed < 25, 'the inventory waited %.1f s for a black-holed hypervisor with timeout 3' % elapsed
    config['strict_connections'] = True
    proc, dummy = inventory(tmp_path, config)
    assert proc.returncode != 0 and 'within 3 seconds' in ' '.join(proc.stderr.split())


@pytest.mark.parametrize('timeout', [0, -1, 3601, 'soon', 'inf', 'nan'])
def test_bad_timeout_fails_the_inventory(tmp_path, timeout):
    proc, dummy = inventory(tmp_path, dict(uris=['test:///default'], timeout=timeout))
    assert proc.returncode != 0
    assert 'timeout' in ' '.join(proc.stderr.split()), proc.stderr


def test_two_hypervisors_local_and_lab(world, conn, lab_host, tmp_path):
    kind = osless_virt_type(lab_host)
    lab_only = world['name'] + '-lab'
    both = world['name'] + '-run'          # the same name, also running on the lab host
    lab_doms = []
    try:
        lab_doms.append(lab_host.createXML(GUEST.format(virt_type=kind, name=lab_only, vcpus=1, nic=''), 0))
        lab_doms.append(lab_host.defineXML(GUEST.format(virt_type=kind, name=both, vcpus=1, nic='')))
        lab_name = lab_host.getHostname()
        base = dict(uris=['qemu:///system', LAB_URI], names=[world['name'] + '-*'])
        proc, data = inventory(tmp_path, base)
        assert proc.returncode == 0, proc.stderr
        lab_vars = hostvars(data, lab_only)
        assert lab_vars['libvirt_uri'] == LAB_URI
        assert lab_vars['libvirt_hypervisor'] == lab_name
        assert lab_vars['libvirt_state'] == 'running'
        # The shut-off lab copy of `both` lost to the running local one, so only lab_only is here.
        assert members(data, 'libvirt_hypervisor_' + lab_name.replace('-', '_')) == {lab_only}
        # The name exists on both: the running copy (local) wins over the shut-off one (lab).
        assert hostvars(data, both)['libvirt_uri'] == 'qemu:///system'
        assert hostvars(data, both)['libvirt_state'] == 'running'
        proc, data = inventory(tmp_path, dict(base, hostname='name_hypervisor'))
        assert proc.returncode == 0, proc.stderr
        assert hostvars(data, '%s@%s' % (both, lab_name))['libvirt_state'] == 'shutoff'
        assert hostvars(data, '%s@%s' % (both, world['hypervisor']))['libvirt_state'] == 'running'
        proc, data = inventory(tmp_path, dict(base, hostname='uuid'))
        assert proc.returncode == 0, proc.stderr
        assert lab_doms[0].UUIDString() in data['_meta']['hostvars']
    finally:
        for dom in lab_doms:
            remove_guest(lab_host, dom.name())


# ------------------------------------------------------------- hostile guests
# libvirt's test driver reads a node file with any guests we like: names, titles, descriptions and
# metadata that are Jinja, each of which would create the marker file if Ansible templated it.
HOSTILE_LOOKUP = "{{ lookup('pipe', 'touch $KVMOPS_MARKER') }}"
HOSTILE_NODE = """<node>
  <domain type='test'>
    <name>%(lookup)s</name>
    <title>%(lookup)s</title>
    <description>{%% set x = lookup('pipe', 'touch $KVMOPS_MARKER') %%}described</description>
    <metadata>
      <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>
        <libosinfo:os id='%(lookup)s'/>
      </libosinfo:libosinfo>
    </metadata>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>plain-guest</name>
    <description>%(lookup)s</description>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
""" % dict(lookup=HOSTILE_LOOKUP.replace("'", '&apos;'))

HOSTILE_PLAY = """
- name: Use every hostile value the way a play would
  hosts: libvirt_guests
  connection: local
  gather_facts: false
  tasks:
    - name: Show the values
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}|{{ libvirt_name }}|{{ libvirt_title }}|{{ libvirt_description }}"
    - name: Copy one into a fact and use the fact
      ansible.builtin.set_fact:
        copied: "{{ libvirt_domain.os_variant }}"
    - name: Write what the play sees
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ libvirt_uuid }}.json"
        content: "{{ dict(host=inventory_hostname, name=libvirt_name, title=libvirt_title,
                          description=libvirt_description, os_variant=copied,
                          groups=groups['libvirt_guests']) | to_json }}"
        mode: '0600'
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"

- name: Prove that the lookup itself works here (so its absence above means something)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the same lookup from the playbook author's own text
      ansible.builtin.debug:
        msg: "{{ lookup('pipe', 'touch $KVMOPS_MARKER.control') }}"
"""


def test_hostile_guest_values_are_never_templated(tmp_path):
    """A guest name, title, description or metadata that is Jinja runs nothing and is shown as text."""
    node = tmp_path / 'node.xml'
    node.write_text(HOSTILE_NODE)
    config = tmp_path / 'kvm.libvirt.yml'
    config.write_text('plugin: kvmops.kvm.libvirt\nuris: [%s]\ninclude_facts: true\n'
                      % json.dumps('test://' + str(node)))
    play = tmp_path / 'play.yml'
    play.write_text(HOSTILE_PLAY)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    marker = tmp_path / 'marker'
    env = _env({'KVMOPS_MARKER': str(marker), 'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'})
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(config), str(play),
                           '-e', json.dumps({'out_dir': str(out_dir)})],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.exists(str(marker) + '.control'), 'the pipe lookup does not work here: the test proves nothing'
    assert not marker.exists(), 'a value read from libvirt was templated: the lookup ran'
    seen = sorted((json.loads(path.read_text()) for path in out_dir.iterdir()), key=lambda item: item['name'])
    assert [item['name'] for item in seen] == ['plain-guest', HOSTILE_LOOKUP]
    plain, hostile = seen
    assert hostile['host'] == hostile['name'] == hostile['title'] == hostile['os_variant'] == HOSTILE_LOOKUP
    assert hostile['description'] == "{% set x = lookup('pipe', 'touch $KVMOPS_MARKER') %}described"
    assert plain['host'] == 'plain-guest' and plain['description'] == HOSTILE_LOOKUP
    assert sorted(plain['groups']) == sorted(['plain-guest', HOSTILE_LOOKUP])
    # ansible-inventory shows the hostile values marked unsafe (before 2.19 the plain ones as they are).
    proc, data = inventory(tmp_path, dict(uris=['test://' + str(node)]))
    assert proc.returncode == 0, proc.stderr
    assert hostvars(data, 'plain-guest')['libvirt_name'] == 'plain-guest'
    assert raw_hostvars(data, 'plain-guest')['libvirt_description'] == {'__ansible_unsafe': HOSTILE_LOOKUP}
    assert not marker.exists()


@pytest.mark.parametrize('uris,expect', [
    ([''], 'uris[0]: must be a libvirt URI'),
    ([None], 'uris[0]: must be a libvirt URI'),
    ([5], 'uris[0]: must be a libvirt URI'),
    (['qemu:///system', 'qemu+ext:///system?command=/bin/true'], 'uris[1]: the ext transport'),
    (['qemu+ssh://root@hv/system?netcat=/tmp/x'], 'uris[0]: the ext transport'),
    (['xen:///system'], "uris[0]: driver 'xen' is not supported"),
    (['qemu:///system extra'], 'uris[0]: must not contain whitespace'),
])
def test_bad_uris_fail_the_inventory_naming_the_entry(tmp_path, uris, expect):
    proc, dummy = inventory(tmp_path, dict(uris=uris))
    assert proc.returncode != 0
    text = ' '.join(proc.stderr.split())
    assert expect in text, text
    assert 'Traceback' not in text


def test_agent_connection_sets_the_qemu_agent_connection(tmp_path):
    """agent_connection: the guests' connection is kvmops.kvm.qemu_agent, with their URI and libvirt name; a
    hostile name stays marked unsafe. A play through it on a real guest: tests/integration/test_qemu_agent.py."""
    node = tmp_path / 'node.xml'
    node.write_text(HOSTILE_NODE)
    uri = 'test://' + str(node)
    proc, data = inventory(tmp_path, dict(uris=[uri], agent_connection=True))
    assert proc.returncode == 0, proc.stderr
    plain = hostvars(data, 'plain-guest')
    assert plain['ansible_connection'] == 'kvmops.kvm.qemu_agent'
    assert plain['ansible_libvirt_uri'] == uri and plain['ansible_libvirt_guest'] == 'plain-guest'
    assert raw_hostvars(data, HOSTILE_LOOKUP)['ansible_libvirt_guest'] == {'__ansible_unsafe': HOSTILE_LOOKUP}
    proc, data = inventory(tmp_path, dict(uris=[uri], hostname='uuid', agent_connection=True))
    assert proc.returncode == 0, proc.stderr
    assert sorted(hostvars(data, host)['ansible_libvirt_guest'] for host in members(data, 'libvirt_guests')
                  if hostvars(data, host)['libvirt_name'] == 'plain-guest') == ['plain-guest']
    proc, data = inventory(tmp_path, dict(uris=[uri]))
    assert 'ansible_connection' not in hostvars(data, 'plain-guest')
