"""kvm_network against the real local libvirtd, checked on the host itself.

Every test uses its own names (kvmops-it-<hex>, bridges 'kv' + 8 hex) and
10.254.X.0/24 subnets no route or libvirt network on this host uses, except the
walkthrough replay, which uses the literal nat_network_01 / virbr1 /
192.168.111.0/24 and removes a leftover of an interrupted run only when a
marker file written by this test names that network's UUID.
"""

import ipaddress
import json
import os
import random
import shutil
import subprocess
import textwrap
import time

import pytest

import busybox_guest

from conftest import one_task_play, osless_virt_type

MARKER_DIR = '/var/lib/kvmops-test'
WALKTHROUGH_MARKER = os.path.join(MARKER_DIR, 'nat_network_01.uuid')

DOMAIN_XML = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='{net}'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"""


# ---------------------------------------------------------------- helpers
def sh(cmd, check=False):
    proc = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, '%s: %s' % (cmd, proc.stderr)
    return proc


def net_task(tmp_path, args, name='net'):
    """A playbook with one kvm_network task."""
    return one_task_play(tmp_path, 'kvmops.kvm.kvm_network', args, name)


def run_net(playbook, tmp_path, args, check=False, diff=True):
    result = playbook(net_task(tmp_path, args), check=check, diff=diff)
    assert result.data is not None, (result.stdout + result.stderr)[-3000:]
    return result.task('net'), result


def four_steps(playbook, tmp_path, args):
    """check -> real -> check -> real: changed, changed, not changed, not changed."""
    results = []
    for check in (True, False, True, False):
        res, raw = run_net(playbook, tmp_path, args, check=check)
        assert not res.get('failed'), (res.get('msg'), raw.stdout[-2000:])
        results.append(res)
    assert [r['changed'] for r in results] == [True, True, False, False], [r.get('changes') for r in results]
    return results


def used_networks(conn):
    nets = []
    for net in conn.listAllNetworks(0):
        for ip in __import__('lxml.etree', fromlist=['etree']).fromstring(net.XMLDesc(0)).findall('ip'):
            if ip.get('address') and ':' not in ip.get('address'):
                mask = ip.get('prefix') or ip.get('netmask')
                nets.append(ipaddress.ip_interface('%s/%s' % (ip.get('address'), mask)).network)
    for route in json.loads(sh('ip -j route').stdout or '[]'):
        dst = route.get('dst')
        if dst and dst != 'default':
            nets.append(ipaddress.ip_network(dst if '/' in dst else dst + '/32', strict=False))
    return nets


def free_subnet(conn, count=1):
    """10.254.X.0/24 subnets nothing on this host uses (never the lab's 10.254.77.0/30, nor 10.254.121.0/24,
    the molecule guests' network, which a scenario running beside this tier may create at any moment)."""
    used = used_networks(conn)
    octets = [o for o in range(100, 250) if o not in (77, 121)]
    random.shuffle(octets)
    out = []
    for octet in octets:
        net = ipaddress.ip_network('10.254.%d.0/24' % octet)
        if not any(net.overlaps(u) for u in used):
            out.append(octet)
        if len(out) == count:
            return out
    pytest.skip('no free 10.254.X.0/24 subnet on this host')


def bridge_addrs(bridge):
    proc = sh(['ip', '-j', 'addr', 'show', 'dev', bridge])
    if proc.returncode != 0:
        return None
    return ['%s/%s' % (a['local'], a['prefixlen']) for i in json.loads(proc.stdout) for a in i.get('addr_info', [])
            if a.get('family') == 'inet']


def ifindex(dev):
    path = '/sys/class/net/%s/ifindex' % dev
    return int(open(path).read()) if os.path.exists(path) else None


def dnsmasq_pids(netname):
    conf = '/var/lib/libvirt/dnsmasq/%s.conf' % netname
    pids = []
    for line in sh(['ps', '-eo', 'pid=,args=']).stdout.splitlines():
        pid, _sep, args = line.strip().partition(' ')
        if 'dnsmasq' in args and '--conf-file=%s' % conf in args:
            pids.append(int(pid))
    return pids


def dnsmasq_conf(netname):
    path = '/var/lib/libvirt/dnsmasq/%s.conf' % netname
    return open(path).read() if os.path.exists(path) else ''


def hostsfile(netname):
    path = '/var/lib/libvirt/dnsmasq/%s.hostsfile' % netname
    return open(path).read() if os.path.exists(path) else ''


def firewall_rules(subnet):
    """All iptables rules (nat and filter) naming the subnet."""
    out = sh('iptables-save').stdout
    return [line for line in out.splitlines() if subnet in line]


def masquerade_rules(subnet):
    return [r for r in firewall_rules(subnet) if 'MASQUERADE' in r]


def remove_network(conn, name):
    import libvirt
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return
    for step in (net.destroy, net.undefine):
        try:
            step()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def names(unique, conn):
    """A unique network name, bridge name and free subnet octets; the network is removed afterwards."""
    octets = free_subnet(conn, 2)
    data = dict(name=unique, bridge='kv' + unique[-8:], octet=octets[0], octet2=octets[1])
    try:
        yield data
    finally:
        remove_network(conn, unique)


# ---------------------------------------------------------------- the walkthrough's nat_network_01
WALKTHROUGH = dict(
    name='nat_network_01', state='active', autostart=True, forward='nat',
    bridge=dict(name='virbr1', stp=True, delay=0),
    ipv4=dict(address='192.168.111.1', netmask='255.255.255.0',
              dhcp_ranges=[dict(start='192.168.111.2', end='192.168.111.254')]),
)


@pytest.fixture
def walkthrough_network(conn):
    """Make room for nat_network_01: remove a leftover of ours (marker UUID), skip if it is someone else's."""
    import libvirt
    try:
        net = conn.networkLookupByName('nat_network_01')
    except libvirt.libvirtError:
        net = None
    if net is not None:
        marker = open(WALKTHROUGH_MARKER).read().strip() if os.path.exists(WALKTHROUGH_MARKER) else None
        if marker != net.UUIDString():
            pytest.skip('nat_network_01 exists and was not made by this test; not touching it')
        remove_network(conn, 'nat_network_01')
    if os.path.exists('/sys/class/net/virbr1') or any(
            ipaddress.ip_network('192.168.111.0/24').overlaps(n) for n in used_networks(conn)):
        pytest.skip('virbr1 or 192.168.111.0/24 is in use on this host')
    os.makedirs(MARKER_DIR, exist_ok=True)
    try:
        yield
    finally:
        remove_network(conn, 'nat_network_01')
        if os.path.exists(WALKTHROUGH_MARKER):
            os.unlink(WALKTHROUGH_MARKER)


def test_walkthrough_nat_network_01(walkthrough_network, playbook, tmp_path, conn):
    # net-define + net-start + net-autostart, four-step proof
    results = four_steps(playbook, tmp_path, WALKTHROUGH)
    net = results[1]['network']
    with open(WALKTHROUGH_MARKER, 'w') as handle:
        handle.write(net['uuid'])
    assert results[0]['network']['uuid'] is None  # check mode: predicted facts, nothing defined
    assert (net['active'], net['autostart'], net['persistent']) == (True, True, True)
    assert (net['bridge'], net['forward_mode']) == ('virbr1', 'nat')
    assert net['addresses'][0]['dhcp_ranges'] == [dict(start='192.168.111.2', end='192.168.111.254')]
    assert results[3]['network'] == dict(net, mac=net['mac'])
    assert results[1]['diff']['before'] == '' and 'virbr1' in results[1]['diff']['after']

    # on the host: the bridge and its address, STP on, dnsmasq for the range, masquerade, forwarding
    assert bridge_addrs('virbr1') == ['192.168.111.1/24']
    assert open('/sys/class/net/virbr1/bridge/stp_state').read().strip() != '0'
    # (the kernel clamps forward_delay to its 2 s minimum while STP is on; libvirt's setting is delay 0)
    assert "<bridge name='virbr1' stp='on' delay='0'/>" in conn.networkLookupByName('nat_network_01').XMLDesc(0)
    assert dnsmasq_pids('nat_network_01'), 'no dnsmasq for nat_network_01'
    assert 'dhcp-range=192.168.111.2,192.168.111.254' in dnsmasq_conf('nat_network_01')
    assert masquerade_rules('192.168.111.0/24'), firewall_rules('192.168.111.0/24')
    assert open('/proc/sys/net/ipv4/ip_forward').read().strip() == '1'
    lv = conn.networkLookupByName('nat_network_01')
    assert lv.isActive() and lv.autostart()

    # a static DHCP host, added and removed on the running network: the bridge is not recreated
    index, pids = ifindex('virbr1'), dnsmasq_pids('nat_network_01')
    host = dict(mac='52:54:00:6b:01:11', name='vm01', ip='192.168.111.11')
    add = dict(WALKTHROUGH, ipv4=dict(WALKTHROUGH['ipv4'], dhcp_hosts=[host]))
    results = four_steps(playbook, tmp_path, add)
    assert results[1]['pending_restart'] == [] and results[1]['restarted'] is False
    assert results[1]['network']['addresses'][0]['dhcp_hosts'] == [host]
    assert '52:54:00:6b:01:11,192.168.111.11,vm01' in hostsfile('nat_network_01')
    assert "mac='52:54:00:6b:01:11'" in lv.XMLDesc(libvirt_inactive())  # persistent too
    assert ifindex('virbr1') == index and dnsmasq_pids('nat_network_01') == pids
    remove = dict(WALKTHROUGH, ipv4=dict(WALKTHROUGH['ipv4'], dhcp_hosts=[]))
    results = four_steps(playbook, tmp_path, remove)
    assert results[1]['network']['addresses'][0]['dhcp_hosts'] == []
    assert '52:54:00:6b:01:11' not in hostsfile('nat_network_01')
    assert '52:54:00:6b:01:11' not in lv.XMLDesc(libvirt_inactive())
    assert ifindex('virbr1') == index

    # net-destroy + net-undefine: no bridge, dnsmasq or rule left behind
    results = four_steps(playbook, tmp_path, dict(name='nat_network_01', state='absent'))
    assert results[1]['network'] is None and results[1]['diff']['after'] == ''
    assert not os.path.exists('/sys/class/net/virbr1')
    assert dnsmasq_pids('nat_network_01') == []
    assert firewall_rules('192.168.111.0/24') == []
    assert 'nat_network_01' not in [n.name() for n in conn.listAllNetworks(0)]


def libvirt_inactive():
    import libvirt
    return libvirt.VIR_NETWORK_XML_INACTIVE


# ---------------------------------------------------------------- subnet change, restart, re-plug
@pytest.fixture
def guest(conn, names):
    """An OS-less running guest with an interface on the test network (created by the test)."""
    state = {}

    def start():
        mac = '52:54:00:%02x:%02x:%02x' % tuple(random.randrange(256) for _octet in range(3))
        dom = conn.createXML(DOMAIN_XML.format(virt_type=osless_virt_type(conn), name=names['name'], mac=mac,
                                               net=names['name']), 0)
        state['dom'] = dom
        return dom, mac
    try:
        yield start
    finally:
        if 'dom' in state:
            try:
                state['dom'].destroy()
            except Exception:  # pylint: disable=broad-except
                pass


def tap_of(dom):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(0)).find('devices/interface/target').get('dev')


def master_of(dev):
    link = '/sys/class/net/%s/master' % dev
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def test_subnet_change_restart_if_needed_replugs_guest(names, guest, playbook, tmp_path, conn):
    name, br, a, b = names['name'], names['bridge'], names['octet'], names['octet2']
    base = dict(name=name, state='active', forward='nat', bridge=dict(name=br),
                ipv4=dict(address='10.254.%d.1/24' % a, dhcp_ranges=[dict(start='10.254.%d.10' % a, end='10.254.%d.99' % a)]))
    four_steps(playbook, tmp_path, base)
    dom, mac = guest()
    tap = tap_of(dom)
    assert master_of(tap) == br

    # a change that needs a restart, restart=never: redefined, listed in pending_restart, still running the old one
    ranged = dict(base, ipv4=dict(base['ipv4'], dhcp_ranges=[dict(start='10.254.%d.20' % a, end='10.254.%d.29' % a)]))
    results = four_steps(playbook, tmp_path, ranged)
    assert [r['pending_restart'] for r in results] == [['ipv4.dhcp_ranges']] * 4
    assert 'dhcp-range=10.254.%d.10,10.254.%d.99' % (a, a) in dnsmasq_conf(name)
    assert master_of(tap) == br

    # subnet change with restart: if_needed, four steps; the guest's tap is plugged back into the bridge
    moved = dict(base, restart='if_needed',
                 ipv4=dict(address='10.254.%d.1/24' % b, dhcp_ranges=[dict(start='10.254.%d.10' % b, end='10.254.%d.99' % b)]))
    results = four_steps(playbook, tmp_path, moved)
    assert results[0]['restarted'] is True and results[0]['replugged'][0]['replugged'] is False  # check mode
    assert results[1]['restarted'] is True and results[1]['pending_restart'] == []
    assert results[1]['replugged'] == [dict(guest=name, domain=name, mac=mac, interface=tap, bridge=br, replugged=True)]
    assert results[3]['restarted'] is False and results[3]['pending_restart'] == []
    assert bridge_addrs(br) == ['10.254.%d.1/24' % b]
    assert 'dhcp-range=10.254.%d.10,10.254.%d.99' % (b, b) in dnsmasq_conf(name)
    assert masquerade_rules('10.254.%d.0/24' % b) and firewall_rules('10.254.%d.0/24' % a) == []
    assert master_of(tap) == br


# ---------------------------------------------------------------- isolated and routed
def test_isolated_then_routed(names, playbook, tmp_path, conn):
    name, br, a = names['name'], names['bridge'], names['octet']
    subnet = '10.254.%d.0/24' % a
    isolated = dict(name=name, state='active', forward='isolated', bridge=dict(name=br, stp=False),
                    domain='iso.test', ipv4=dict(address='10.254.%d.1' % a, prefix=24,
                                                 dhcp_ranges=[dict(start='10.254.%d.50' % a, end='10.254.%d.60' % a, lease='2h')]),
                    dns_hosts=[dict(ip='10.254.%d.5' % a, hostnames=['nfs', 'nfs.iso.test'])])
    results = four_steps(playbook, tmp_path, isolated)
    assert results[1]['network']['forward_mode'] == 'isolated' and results[1]['network']['domain'] == 'iso.test'
    assert bridge_addrs(br) == ['10.254.%d.1/24' % a]
    assert open('/sys/class/net/%s/bridge/stp_state' % br).read().strip() == '0'
    assert masquerade_rules(subnet) == []
    assert 'dhcp-range=10.254.%d.50,10.254.%d.60,255.255.255.0,2h' % (a, a) in dnsmasq_conf(name)
    addn = open('/var/lib/libvirt/dnsmasq/%s.addnhosts' % name).read()
    assert '10.254.%d.5\tnfs\tnfs.iso.test' % a in addn or '10.254.%d.5 nfs nfs.iso.test' % a in addn, addn

    routed = dict(isolated, forward='route', restart='if_needed')
    results = four_steps(playbook, tmp_path, routed)
    assert results[1]['restarted'] is True and results[1]['network']['forward_mode'] == 'route'
    assert masquerade_rules(subnet) == []
    assert any('ACCEPT' in r for r in firewall_rules(subnet)), firewall_rules(subnet)  # forwarding rules, no NAT
    # DNS entries changed in place
    index = ifindex(br)
    results = four_steps(playbook, tmp_path, dict(routed, dns_hosts=[dict(ip='10.254.%d.6' % a, hostnames=['db'])]))
    assert results[1]['restarted'] is False and ifindex(br) == index
    addn = open('/var/lib/libvirt/dnsmasq/%s.addnhosts' % name).read()
    assert 'db' in addn and 'nfs' not in addn

    four_steps(playbook, tmp_path, dict(network=name, state='absent'))       # the alias of name
    assert not os.path.exists('/sys/class/net/%s' % br) and firewall_rules(subnet) == []


def test_dual_stack_ipv6_dhcp_and_hosts_in_place(names, playbook, tmp_path, conn):
    """IPv4 and IPv6 on one (isolated: no host forwarding changes) network; a DHCPv6 host added live."""
    name, br, a = names['name'], names['bridge'], names['octet']
    v6 = 'fd42:4b56:%x::' % a
    base = dict(name=name, state='active', forward='isolated', bridge=dict(name=br),
                ipv4=dict(address='10.254.%d.1/24' % a),
                ipv6=dict(address=v6 + '1', prefix=64, dhcp_ranges=[dict(start=v6 + '100', end=v6 + '1ff')]))
    results = four_steps(playbook, tmp_path, base)
    six = [ip for ip in results[1]['network']['addresses'] if ip['family'] == 'ipv6']
    assert [(ip['address'], ip['prefix'], ip['dhcp_ranges']) for ip in six] == [
        (v6 + '1', 64, [dict(start=v6 + '100', end=v6 + '1ff')])], six
    out = json.loads(sh(['ip', '-j', '-6', 'addr', 'show', 'dev', br]).stdout)
    assert v6 + '1' in [x['local'] for i in out for x in i.get('addr_info', [])], out
    conf = dnsmasq_conf(name)
    assert 'dhcp-range=%s100,%s1ff,64' % (v6, v6) in conf, conf
    assert 'enable-ra' in conf, conf

    index = ifindex(br)
    with_host = dict(base, ipv6=dict(base['ipv6'], dhcp_hosts=[dict(name='web', ip=v6 + '10')]))
    results = four_steps(playbook, tmp_path, with_host)
    assert results[1]['restarted'] is False and ifindex(br) == index      # updated in place, link kept
    assert 'web,[%s10]' % v6 in hostsfile(name), hostsfile(name)

    four_steps(playbook, tmp_path, dict(name=name, state='absent'))
    assert not os.path.exists('/sys/class/net/%s' % br)


# ---------------------------------------------------------------- a real DHCP exchange
@pytest.fixture
def netns(names):
    ns = 'kvns' + names['name'][-8:]
    host_end, ns_end = 'kvh' + names['name'][-8:], 'kvg' + names['name'][-8:]
    try:
        yield dict(ns=ns, host=host_end, guest=ns_end)
    finally:
        sh(['ip', 'link', 'del', host_end])
        sh(['ip', 'netns', 'del', ns])


def test_client_obtains_lease(names, netns, playbook, tmp_path, conn):
    """A DHCP client in a namespace, plugged into the network's bridge, gets its static lease from dnsmasq."""
    name, br, a = names['name'], names['bridge'], names['octet']
    mac = '52:54:00:%02x:%02x:%02x' % tuple(random.randrange(256) for _octet in range(3))
    base = dict(name=name, state='active', forward='nat', bridge=dict(name=br),
                ipv4=dict(address='10.254.%d.1/24' % a, dhcp_ranges=[dict(start='10.254.%d.100' % a, end='10.254.%d.150' % a)]))
    four_steps(playbook, tmp_path, base)
    # the static host is added to the running network in place
    fixed = dict(base, ipv4=dict(base['ipv4'], dhcp_hosts=[dict(mac=mac, name='client', ip='10.254.%d.42' % a)]))
    four_steps(playbook, tmp_path, fixed)

    sh(['ip', 'netns', 'add', netns['ns']], check=True)
    sh(['ip', 'link', 'add', netns['host'], 'type', 'veth', 'peer', 'name', netns['guest']], check=True)
    sh(['ip', 'link', 'set', netns['guest'], 'netns', netns['ns']], check=True)
    sh(['ip', 'link', 'set', netns['host'], 'master', br, 'up'], check=True)
    sh(['ip', '-n', netns['ns'], 'link', 'set', netns['guest'], 'address', mac, 'up'], check=True)
    time.sleep(1)
    proc = sh(['ip', 'netns', 'exec', netns['ns'], 'busybox', 'udhcpc', '-i', netns['guest'], '-f', '-q', '-n',
               '-t', '8', '-T', '2', '-s', '/bin/true'])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert 'lease of 10.254.%d.42 obtained' % a in output, output
    # libvirt learns the lease from dnsmasq's lease script, a moment later
    for _attempt in range(20):
        leases = conn.networkLookupByName(name).DHCPLeases()
        if any(entry['mac'] == mac and entry['ipaddr'] == '10.254.%d.42' % a for entry in leases):
            break
        time.sleep(0.5)
    else:
        pytest.fail('libvirt reports no lease for %s: %s' % (mac, leases))


def test_booted_guest_obtains_lease(names, playbook, tmp_path, conn):
    """A guest from kvm_domain that runs an OS (busybox_guest, TCG) gets a lease from the network's dnsmasq."""
    name, br, a = names['name'], names['bridge'], names['octet']
    guest = name + '-g'
    directory = os.path.join('/var/lib/libvirt/images', guest)
    boot = busybox_guest.build(directory)
    four_steps(playbook, tmp_path, dict(
        name=name, state='active', forward='nat', bridge=dict(name=br),
        ipv4=dict(address='10.254.%d.1/24' % a, dhcp_ranges=[dict(start='10.254.%d.100' % a, end='10.254.%d.150' % a)])))
    domain = {'name': guest, 'state': 'running', 'memory': '128MiB', 'vcpus': 1, 'virt_type': 'auto',
              'kernel': boot['kernel'], 'initrd': boot['initrd'], 'cmdline': 'console=ttyS0 quiet net.ifnames=0',
              'graphics': {'type': 'none'}, 'interfaces': [{'type': 'network', 'source': name}]}
    try:
        made = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', domain, 'guest')).task('guest')
        assert not made.get('failed'), made.get('msg')
        mac = made['domain']['interfaces'][0]['mac']
        lease = None
        deadline = time.monotonic() + 300   # boot under TCG, udhcpc, dnsmasq's lease script
        while lease is None and time.monotonic() < deadline:
            lease = next((entry for entry in conn.networkLookupByName(name).DHCPLeases() if entry['mac'] == mac), None)
            time.sleep(2)
        assert lease is not None, 'the guest (MAC %s) got no lease from %s within 300 s' % (mac, name)
        address = ipaddress.ip_address(lease['ipaddr'])
        assert ipaddress.ip_address('10.254.%d.100' % a) <= address <= ipaddress.ip_address('10.254.%d.150' % a)
        # the guest holds the address: it answers on the network's bridge (traffic to our own guest only)
        for _attempt in range(30):
            if sh(['busybox', 'ping', '-c', '1', '-W', '2', str(address)]).returncode == 0:
                break
        else:
            pytest.fail('the guest does not answer at its leased address %s' % address)
    finally:
        playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', dict(name=guest, state='absent')))
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- conflicts and bad input: nothing changed
@pytest.fixture
def host_bits(names):
    """Host objects made by the test (a bridge, a dummy interface with a route); removed afterwards."""
    made = []

    def make(*cmds):
        for cmd in cmds:
            sh(cmd, check=True)
    try:
        yield make, made
    finally:
        for dev in made:
            sh(['ip', 'link', 'del', dev])


@pytest.mark.parametrize('case', ['bridge_of_network', 'bridge_on_host', 'subnet_of_network', 'host_route'])
def test_conflicts_fail_with_nothing_changed(case, names, host_bits, playbook, tmp_path, conn):
    make, made = host_bits
    name, br, a, b = names['name'], names['bridge'], names['octet'], names['octet2']
    other = name + '-other'
    args = dict(name=name, state='active', forward='nat', bridge=dict(name=br),
                ipv4=dict(address='10.254.%d.1/24' % a))
    try:
        if case == 'bridge_of_network':
            conn.networkDefineXML("<network><name>%s</name><bridge name='%s'/><ip address='10.254.%d.1' prefix='24'/></network>"
                                  % (other, br, b))
            expect = 'bridge %s is already used by libvirt network %s' % (br, other)
        elif case == 'subnet_of_network':
            conn.networkDefineXML("<network><name>%s</name><bridge name='kvo%s'/><ip address='10.254.%d.129' prefix='25'/></network>"
                                  % (other, name[-8:], a))
            expect = 'overlaps 10.254.%d.128/25 of libvirt network %s' % (a, other)
        elif case == 'bridge_on_host':
            made.append(br)
            make(['ip', 'link', 'add', br, 'type', 'bridge'])
            expect = 'bridge %s already exists on the host' % br
        else:
            dev = 'kvd' + name[-8:]
            made.append(dev)
            make(['ip', 'link', 'add', dev, 'type', 'bridge'], ['ip', 'addr', 'add', '10.254.%d.200/24' % a, 'dev', dev],
                 ['ip', 'link', 'set', dev, 'up'])
            expect = 'overlaps the host route 10.254.%d.0/24 on %s' % (a, dev)
        for check in (True, False):
            res, raw = run_net(playbook, tmp_path, args, check=check)
            assert res.get('failed') is True, res
            assert expect in res['msg'] and 'nothing was changed' in res['msg'], res['msg']
            assert 'Traceback' not in raw.stdout and '\n' not in res['msg']
        assert name not in [n.name() for n in conn.listAllNetworks(0)]
        if case != 'bridge_on_host':
            assert not os.path.exists('/sys/class/net/%s' % br) or case == 'bridge_of_network'
    finally:
        remove_network(conn, other)


@pytest.mark.parametrize('args, expect', [
    (dict(ipv4=dict(address='10.254.{a}.1/24', dhcp_ranges=[dict(start='10.254.{a}.10', end='10.254.{b}.20')])), 'is outside'),
    (dict(bridge=dict(name='bridge-name-too-long')), 'bridge.name: invalid interface name'),
    (dict(domain='lab\naddn-hosts=/etc/shadow'), 'domain: invalid DNS name'),
    (dict(ipv4=dict(address='10.254.{a}.1/24'), dns_hosts=[dict(ip='10.254.{a}.5', hostnames=['a\nb'])]),
     'dns_hosts[0].hostnames[0]: invalid DNS name'),
    (dict(forward='bridge', bridge=dict(name='br0'), ipv4=dict(address='10.254.{a}.1/24')), 'takes no ipv4'),
    (dict(xml='<network><name>x</name>', forward='nat'), 'do not combine'),
    (dict(ipv4=dict(address='10.254.{a}.1/24', dhcp_hosts=[dict(mac='nope', ip='10.254.{a}.5')])),
     'ipv4.dhcp_hosts[0].mac: invalid MAC address'),
])
def test_bad_input_rejected_before_any_write(args, expect, names, playbook, tmp_path, conn):
    text = json.dumps(args).replace('{a}', str(names['octet'])).replace('{b}', str(names['octet2']))
    full = dict(name=names['name'], state='active', **json.loads(text))
    res, raw = run_net(playbook, tmp_path, full)
    assert res.get('failed') is True and expect in res['msg'], res
    assert 'Traceback' not in raw.stdout + raw.stderr
    assert names['name'] not in [n.name() for n in conn.listAllNetworks(0)]


def test_xml_option_and_kvm_info_shape(names, playbook, tmp_path, conn):
    name, br, a = names['name'], names['bridge'], names['octet']
    xml = textwrap.dedent("""\
        <network>
          <name>{n}</name>
          <forward mode='route'/>
          <bridge name='{br}'/>
          <ip address='10.254.{a}.1' netmask='255.255.255.0'>
            <dhcp><range start='10.254.{a}.10' end='10.254.{a}.20'/></dhcp>
          </ip>
        </network>""").format(n=name, br=br, a=a)
    results = four_steps(playbook, tmp_path, dict(xml=xml, state='active'))
    info = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_info', dict(gather=['networks'], name=[name]), 'info')).task('info')
    assert info['networks'] == [results[3]['network']]
    # the same definition given as options: no change
    same = dict(name=name, forward='route', bridge=dict(name=br, stp=True, delay=0),
                ipv4=dict(address='10.254.%d.1/24' % a, dhcp_ranges=[dict(start='10.254.%d.10' % a, end='10.254.%d.20' % a)]))
    res, _out = run_net(playbook, tmp_path, same)
    assert res['changed'] is False, res['changes']


def test_host_bridge_mode(names, host_bits, playbook, tmp_path, conn):
    """forward=bridge on an existing host bridge (made here); a missing bridge is refused first."""
    make, made = host_bits
    name, br = names['name'], names['bridge']
    args = dict(name=name, state='active', autostart=False, forward='bridge', bridge=dict(name=br))
    res, _out = run_net(playbook, tmp_path, args)
    assert res.get('failed') and 'host bridge %s does not exist' % br in res['msg'], res
    assert name not in [n.name() for n in conn.listAllNetworks(0)]
    made.append(br)
    make(['ip', 'link', 'add', br, 'type', 'bridge'], ['ip', 'link', 'set', br, 'up'])
    index = ifindex(br)
    results = four_steps(playbook, tmp_path, args)
    net = results[1]['network']
    assert (net['forward_mode'], net['bridge'], net['active'], net['addresses']) == ('bridge', br, True, [])
    assert dnsmasq_pids(name) == []
    four_steps(playbook, tmp_path, dict(name=name, state='absent'))
    assert ifindex(br) == index  # libvirt leaves the host's bridge alone
