"""kvm_bridge against real kernel bridges inside network namespaces made by the test.

Each test builds two namespaces: a "host" whose veth NIC eth0 carries an IPv4 and an IPv6 address,
the default route and one more static route, and a "gateway" on the other end that answers pings.
ansible-playbook runs inside the host namespace (``ip netns exec``), so the module changes that
namespace's kernel for real; persistent files go to a temporary config_root. Traffic stays between
the two namespaces. Names are unique per run (kvbr-<hex>); namespaces are removed in finally.
"""

import json
import os
import shutil
import stat
import subprocess
import uuid

import pytest

import busybox_guest

from conftest import ROOT, PlaybookResult, _env, one_task_play, traceback_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('ip'),
                                reason='needs root and iproute2 to make network namespaces')

PYTHON = os.path.join(ROOT, '.venv', 'bin', 'python')
PLAYBOOK = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
COLLECTIONS = os.path.join(ROOT, '.venv', 'collections')


def sh(*args, check=True):
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('%s failed: %s' % (' '.join(args), proc.stderr.strip()))
    return proc


class Lab(object):
    def __init__(self, tmp_path):
        tag = uuid.uuid4().hex[:6]
        self.host = 'kvbr-%sh' % tag
        self.gw = 'kvbr-%sg' % tag
        self.tag = tag
        self.octet = int(tag[:2], 16) % 200 + 20
        self.net = '10.201.%d' % self.octet
        self.v6 = '2001:db8:%x' % self.octet
        self.tmp = tmp_path
        self.root = str(tmp_path / 'root')
        os.makedirs(self.root)

    def setup(self):
        host, gw, tag = self.host, self.gw, self.tag
        sh('ip', 'netns', 'add', host)
        sh('ip', 'netns', 'add', gw)
        sh('ip', 'link', 'add', 'kvb%sa' % tag, 'type', 'veth', 'peer', 'name', 'kvb%sb' % tag)
        sh('ip', 'link', 'set', 'kvb%sa' % tag, 'netns', host)
        sh('ip', 'link', 'set', 'kvb%sb' % tag, 'netns', gw)
        sh('ip', '-n', host, 'link', 'set', 'kvb%sa' % tag, 'name', 'eth0')
        sh('ip', '-n', gw, 'link', 'set', 'kvb%sb' % tag, 'name', 'eth0')
        for ns in (host, gw):
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
            sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up')
        sh('ip', '-n', host, 'addr', 'add', '%s.2/24' % self.net, 'dev', 'eth0')
        sh('ip', '-n', host, 'addr', 'add', '%s::2/64' % self.v6, 'dev', 'eth0', 'nodad')
        sh('ip', '-n', gw, 'addr', 'add', '%s.1/24' % self.net, 'dev', 'eth0')
        sh('ip', '-n', gw, 'addr', 'add', '%s::1/64' % self.v6, 'dev', 'eth0', 'nodad')
        sh('ip', '-n', host, 'route', 'add', 'default', 'via', '%s.1' % self.net)
        sh('ip', '-n', host, 'route', 'add', '10.202.0.0/16', 'via', '%s.1' % self.net, 'metric', '50')
        # for the bad-input cases: a plain link, and a port already in another bridge
        sh('ip', '-n', host, 'link', 'add', 'plain0', 'type', 'veth', 'peer', 'name', 'plain0p')
        sh('ip', '-n', host, 'link', 'add', 'plain1', 'type', 'veth', 'peer', 'name', 'plain1p')
        sh('ip', '-n', host, 'link', 'add', 'brother', 'type', 'bridge')
        sh('ip', '-n', host, 'link', 'set', 'plain1', 'master', 'brother')

    def teardown(self):
        for ns in (self.host, self.gw):
            sh('ip', 'netns', 'del', ns, check=False)

    # -- kernel views ---------------------------------------------------
    def ipj(self, *args):
        return json.loads(sh('ip', '-n', self.host, '-j', *args).stdout or '[]')

    def link(self, name):
        found = [link for link in self.ipj('-d', 'link', 'show') if link['ifname'] == name]
        return found[0] if found else None

    def addresses(self, dev):
        return sorted('%s/%s' % (a['local'], a['prefixlen'])
                      for link in self.ipj('addr', 'show', 'dev', dev)
                      for a in link.get('addr_info', []) if a.get('scope') == 'global')

    def snapshot(self):
        """Everything the module may touch in the host namespace, without volatile fields."""
        links = dict((link['ifname'], (link.get('master'), link['mtu'], link['address'], 'UP' in link['flags']))
                     for link in self.ipj('link', 'show'))
        addrs = sorted((link['ifname'], a['family'], a['local'], a['prefixlen'], a.get('scope'))
                       for link in self.ipj('addr', 'show') for a in link.get('addr_info', []))
        routes = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != 'flags'))
                        for flag in ('-4', '-6') for r in self.ipj(flag, 'route', 'show', 'table', 'main'))
        return dict(links=links, addresses=addrs, routes=routes)

    def ping(self, address, timeout=15):
        code = ('import sys\nsys.path.insert(0, %r)\n'
                'from ansible_collections.kvmops.kvm.plugins.module_utils._bridge import icmp_echo, probe_until\n'
                'sys.exit(0 if probe_until(icmp_echo, %r, %d) else 1)\n' % (COLLECTIONS, address, timeout))
        return sh('ip', 'netns', 'exec', self.host, PYTHON, '-c', code, check=False).returncode == 0

    # -- files ---------------------------------------------------------------
    def path(self, rel):
        return os.path.join(self.root, rel.lstrip('/'))

    def write(self, rel, text, mode=0o644):
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
        os.chmod(path, mode)

    def read(self, rel):
        path = self.path(rel)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return handle.read()

    def tree(self):
        out = {}
        for base, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(base, name)
                with open(path) as handle:
                    out[os.path.relpath(path, self.root)] = handle.read()
        return out

    # -- the module ----------------------------------------------------------
    def run(self, args, check=False, diff=False):
        args = dict(args)
        args.setdefault('config_root', self.root)
        play = self.tmp / ('play-%s.yml' % uuid.uuid4().hex[:6])
        play.write_text(json.dumps([dict(hosts='localhost', gather_facts=False,
                                         tasks=[{'name': 'bridge', 'kvmops.kvm.kvm_bridge': args,
                                                 'ignore_errors': True}])]))
        cmd = ['ip', 'netns', 'exec', self.host, PLAYBOOK, str(play), '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        proc = subprocess.run(cmd, env=_env({'ANSIBLE_STDOUT_CALLBACK': 'kvmops_test_json'}), capture_output=True,
                              text=True, timeout=600, check=False)
        try:
            data = json.loads(proc.stdout[proc.stdout.index('{'):])
        except ValueError:
            raise AssertionError('no JSON from ansible-playbook: %s %s' % (proc.stdout[-2000:], proc.stderr[-2000:]))
        result = PlaybookResult(proc, data).task('bridge')
        assert traceback_of(result) is None, result.get('exception')
        return result


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        lab.setup()
        yield lab
    finally:
        lab.teardown()


IFCFG_ETH0 = """DEVICE=eth0
NAME=eth0
TYPE=Ethernet
ONBOOT=yes
BOOTPROTO=none
IPADDR={net}.2
PREFIX=24
GATEWAY={net}.1
DNS1={net}.53
"""

IFCFG_BR = """# Managed by kvmops.kvm.kvm_bridge
DEVICE=br{tag}
NAME=br{tag}
TYPE=Bridge
ONBOOT=yes
STP=on
DELAY=0
MACADDR={mac}
MTU=1400
BOOTPROTO=none
IPADDR={net}.2
PREFIX=24
GATEWAY={net}.1
DNS1={net}.53
"""

IFCFG_PORT = """# Managed by kvmops.kvm.kvm_bridge
DEVICE=eth0
NAME=eth0
TYPE=Ethernet
ONBOOT=yes
BOOTPROTO=none
BRIDGE=br{tag}
"""


def _pairs(text):
    return sorted(line for line in text.splitlines() if line and not line.startswith('#'))


def test_ifcfg_inherit_four_step_then_absent(lab):
    bridge = 'br' + lab.tag
    fmt = dict(net=lab.net, tag=lab.tag)
    lab.write('etc/sysconfig/network-scripts/ifcfg-eth0', IFCFG_ETH0.format(**fmt))
    route = '10.202.0.0/16 via {net}.1 dev %s metric 50\n'.format(**fmt)   # the static route, persisted
    lab.write('etc/sysconfig/network-scripts/route-eth0', route % 'eth0')
    original = lab.snapshot()
    original_files = lab.tree()
    mac = lab.link('eth0')['address']
    args = dict(name=bridge, ports=['eth0'], provider='ifcfg', mtu=1400)

    # 1. check mode (with diff): would change, changes nothing
    res = lab.run(args, check=True, diff=True)
    assert res['changed'] is True and not res.get('failed'), res
    headers = [d['before_header'] for d in res['diff']]
    assert headers[0] == 'kernel'
    assert lab.path('etc/sysconfig/network-scripts/ifcfg-%s' % bridge) in headers
    kernel_diff = res['diff'][0]
    assert 'bridge %s: absent' % bridge in kernel_diff['before']
    assert '%s address %s.2/24' % (bridge, lab.net) in kernel_diff['after']
    assert lab.snapshot() == original and lab.tree() == original_files
    # the common result keys: one live entry per ip command, one host entry per file
    assert res['pending_restart'] == [] and res['backups'] == []
    assert [c['command'] for c in res['changes'] if c['scope'] == 'live'] == res['commands']
    assert [c['path'] for c in res['changes'] if c['scope'] == 'host'] == res['files']
    assert dict(scope='live', option='ports', action='add port', before=None, after=bridge, device='eth0',
                command='ip link set dev eth0 master %s' % bridge) in res['changes']
    checked = res['changes']

    # 2. real
    res = lab.run(args)
    assert res['changed'] is True and not res.get('failed'), res
    assert res['changes'] == checked and res['pending_restart'] == []
    assert res['probe'] == '%s.1' % lab.net
    link = lab.link(bridge)
    info = link['linkinfo']['info_data']
    assert link['linkinfo']['info_kind'] == 'bridge'
    assert info['stp_state'] == 1
    assert info['forward_delay'] == 200          # 0 s asked; the kernel's floor with STP on is 2 s
    assert link['mtu'] == 1400 and link['address'] == mac and 'UP' in link['flags']
    assert lab.link('eth0')['master'] == bridge
    assert lab.addresses(bridge) == sorted(['%s.2/24' % lab.net, '%s::2/64' % lab.v6])
    assert lab.addresses('eth0') == []
    routes = lab.ipj('-4', 'route', 'show', 'table', 'main')
    assert {'dst': 'default', 'gateway': '%s.1' % lab.net, 'dev': bridge} in \
        [dict((k, r.get(k)) for k in ('dst', 'gateway', 'dev')) for r in routes]
    assert any(r['dst'] == '10.202.0.0/16' and r['dev'] == bridge and r.get('metric') == 50 for r in routes)
    assert lab.ping('%s.1' % lab.net)
    assert lab.read('etc/sysconfig/network-scripts/ifcfg-%s' % bridge) == IFCFG_BR.format(mac=mac, **fmt)
    assert lab.read('etc/sysconfig/network-scripts/ifcfg-eth0') == IFCFG_PORT.format(**fmt)
    assert lab.read('etc/sysconfig/network-scripts/route-%s' % bridge) == route % bridge
    assert lab.read('etc/sysconfig/network-scripts/route-eth0') is None
    backups = {}
    for path in res['backups']:
        with open(path) as handle:
            backups[os.path.basename(path).split('.')[0]] = handle.read()
    assert backups == {'ifcfg-eth0': IFCFG_ETH0.format(**fmt), 'route-eth0': route % 'eth0'}, res['backups']
    assert res['bridge']['ports'] == ['eth0'] and res['bridge']['stp'] is True

    # 3. check again, 4. real again: nothing to do
    after = lab.snapshot()
    files = lab.tree()
    res = lab.run(args, check=True)
    assert res['changed'] is False, res
    res = lab.run(args, diff=True)
    assert res['changed'] is False and res['commands'] == [] and res['files'] == [], res
    assert res['changes'] == [] and res['pending_restart'] == [] and 'diff' not in res, res
    assert lab.snapshot() == after and lab.tree() == files

    # absent: check, real, check, real
    absent = dict(name=bridge, ports=['eth0'], provider='ifcfg', state='absent')
    res = lab.run(absent, check=True, diff=True)
    assert res['changed'] is True, res
    assert lab.snapshot() == after and lab.tree() == files
    res = lab.run(absent)
    assert res['changed'] is True and not res.get('failed'), res
    assert lab.link(bridge) is None
    assert lab.snapshot() == original
    assert lab.ping('%s.1' % lab.net)
    assert lab.read('etc/sysconfig/network-scripts/ifcfg-%s' % bridge) is None
    assert _pairs(lab.read('etc/sysconfig/network-scripts/ifcfg-eth0')) == _pairs(IFCFG_ETH0.format(**fmt))
    assert lab.read('etc/sysconfig/network-scripts/route-eth0') == route % 'eth0'
    assert lab.read('etc/sysconfig/network-scripts/route-%s' % bridge) is None
    res = lab.run(absent, check=True)
    assert res['changed'] is False, res
    res = lab.run(absent)
    assert res['changed'] is False, res


INTERFACES = """source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

# uplink
auto eth0
iface eth0 inet static
    address {net}.2/24
    gateway {net}.1
    dns-nameservers {net}.53
    mtu 1500

iface eth0 inet6 static
    address {v6}::2/64
"""

INTERFACES_BRIDGED = """source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

# uplink
auto eth0
iface eth0 inet manual
    mtu 1500
"""

IFUPDOWN_BR = """# Managed by kvmops.kvm.kvm_bridge
auto br{tag}
iface br{tag} inet static
    address {net}.2/24
    gateway {net}.1
    dns-nameservers {net}.53
    bridge_ports eth0
    bridge_stp off
    bridge_fd 5
    bridge_hw {mac}
iface br{tag} inet6 static
    address {v6}::2/64
"""


def _stanzas(text):
    """iface stanzas as {header: sorted options}: the meaning, not the layout."""
    out, header = {}, None
    for line in text.splitlines():
        if line.startswith('iface '):
            header = line.strip()
            out[header] = []
        elif line.startswith((' ', '\t')) and header and line.strip():
            out[header].append(line.strip())
        elif line.strip():
            header = None
    return dict((k, sorted(v)) for k, v in out.items())


def test_ifupdown_failing_probe_rolls_back_then_bridge_and_unbridge(lab):
    bridge = 'br' + lab.tag
    fmt = dict(net=lab.net, v6=lab.v6, tag=lab.tag)
    lab.write('etc/network/interfaces', INTERFACES.format(**fmt))
    os.makedirs(lab.path('etc/network/interfaces.d'))
    original = lab.snapshot()
    original_files = lab.tree()
    mac = lab.link('eth0')['address']
    args = dict(name=bridge, ports=['eth0'], provider='ifupdown', stp=False, forward_delay=5)

    # a probe that never answers: everything goes back, one clear message
    res = lab.run(dict(args, probe='%s.99' % lab.net, rollback_timeout=3))
    assert res.get('failed') is True, res
    assert res['msg'] == ('bridge %s: probe %s.99 did not answer within 3s after the change; the previous kernel '
                          'state and files were restored' % (bridge, lab.net))
    assert res['rolled_back'] is True
    assert lab.link(bridge) is None
    assert lab.snapshot() == original
    assert lab.tree() == original_files
    assert sorted(os.listdir(lab.path('etc/network'))) == ['interfaces', 'interfaces.d']
    assert lab.ping('%s.1' % lab.net)
    assert not lab.ping('%s.99' % lab.net, timeout=2)   # the probe address really is silent

    # the same bridge with the default probe (the gateway) works
    res = lab.run(args, diff=True)
    assert res['changed'] is True and not res.get('failed'), res
    info = lab.link(bridge)['linkinfo']['info_data']
    assert info['stp_state'] == 0 and info['forward_delay'] == 500
    assert lab.read('etc/network/interfaces.d/%s' % bridge) == IFUPDOWN_BR.format(mac=mac, **fmt)
    assert lab.read('etc/network/interfaces') == INTERFACES_BRIDGED
    backups = sorted(res['backups'])
    assert len(backups) == 1 and os.path.dirname(backups[0]) == lab.path('etc/network')
    assert lab.ping('%s.1' % lab.net)
    res = lab.run(args)
    assert res['changed'] is False, res

    res = lab.run(dict(name=bridge, ports=['eth0'], provider='ifupdown', state='absent'))
    assert res['changed'] is True and not res.get('failed'), res
    assert lab.snapshot() == original
    assert lab.read('etc/network/interfaces.d/%s' % bridge) is None
    # the backup of the removed bridge file is kept outside interfaces.d (it would be sourced there)
    assert any(b.startswith(lab.path('etc/network/interfaces.d.kvm_bridge-backup/')) for b in res['backups'])
    assert os.listdir(lab.path('etc/network/interfaces.d')) == []
    assert _stanzas(lab.read('etc/network/interfaces')) == _stanzas(INTERFACES.format(**fmt))


NM_ETH0 = """[connection]
id=Wired eth0
uuid=0b6b2a4e-3f0d-4d43-9d43-2c4c8b5a2d11
type=ethernet
interface-name=eth0

[ipv4]
method=manual
address1={net}.2/24,{net}.1
"""

NM_BR = """# Managed by kvmops.kvm.kvm_bridge
[connection]
id=br{tag}
uuid={uuid}
type=bridge
interface-name=br{tag}
autoconnect=true

[ethernet]
cloned-mac-address={mac}

[bridge]
stp=true
forward-delay=2

[ipv4]
method=manual
address1={net}.2/24
gateway={net}.1
dns={net}.53;

[ipv6]
method=ignore
"""

NM_PORT = """# Managed by kvmops.kvm.kvm_bridge
[connection]
id=br{tag}-port-eth0
uuid={uuid}
type=ethernet
interface-name=eth0
master=br{tag}
slave-type=bridge
autoconnect=true
autoconnect-priority=100
"""


def test_networkmanager_static_addressing(lab):
    from ansible_collections.kvmops.kvm.plugins.module_utils._bridge_providers import NetworkManagerProvider

    bridge = 'br' + lab.tag
    fmt = dict(net=lab.net, tag=lab.tag)
    conns = 'etc/NetworkManager/system-connections'
    lab.write('%s/eth0.nmconnection' % conns, NM_ETH0.format(**fmt), mode=0o600)
    mac = lab.link('eth0')['address']
    args = dict(name=bridge, ports=['eth0'], provider='networkmanager', ip='static',
                address=['%s.2/24' % lab.net], gateway='%s.1' % lab.net, dns=['%s.53' % lab.net])

    res = lab.run(args, check=True)
    assert res['changed'] is True and lab.link(bridge) is None, res
    res = lab.run(args)
    assert res['changed'] is True and not res.get('failed'), res
    assert lab.addresses(bridge) == ['%s.2/24' % lab.net]     # static: exactly what was asked
    assert lab.addresses('eth0') == []
    assert lab.ping('%s.1' % lab.net)
    assert lab.read('%s/%s.nmconnection' % (conns, bridge)) == NM_BR.format(
        mac=mac, uuid=NetworkManagerProvider.profile_uuid('bridge', bridge), **fmt)
    assert lab.read('%s/%s-port-eth0.nmconnection' % (conns, bridge)) == NM_PORT.format(
        uuid=NetworkManagerProvider.profile_uuid('port', bridge, 'eth0'), **fmt)
    for name in ('%s.nmconnection' % bridge, '%s-port-eth0.nmconnection' % bridge):
        assert stat.S_IMODE(os.stat(lab.path('%s/%s' % (conns, name))).st_mode) == 0o600
    assert lab.read('%s/eth0.nmconnection' % conns) == NM_ETH0.format(**fmt)   # never edited
    assert res['backups'] == []
    res = lab.run(args, check=True)
    assert res['changed'] is False, res
    res = lab.run(args)
    assert res['changed'] is False, res

    res = lab.run(dict(name=bridge, provider='networkmanager', state='absent'))
    assert res['changed'] is True and not res.get('failed'), res
    assert res['ports'] == ['eth0']
    assert lab.link(bridge) is None and lab.addresses('eth0') == ['%s.2/24' % lab.net]
    assert lab.ping('%s.1' % lab.net)
    assert sorted(f for f in os.listdir(lab.path(conns)) if not f.endswith('~')) == ['eth0.nmconnection']


@pytest.mark.parametrize('args, message', [
    (dict(ports=['eth9']), 'ports: eth9 does not exist'),
    (dict(ports=['plain1']), 'ports: plain1 is already in bridge brother'),
    (dict(name='plain0', ports=['eth0']), 'name: plain0 is taken by a link that is not a bridge (veth)'),
    (dict(ports=['eth0'], ip='static', address=['{net}.2']), 'address[0]: not an address with a prefix'),
    (dict(ports=['eth0'], ip='static', address=['{net}.2/24'], gateway='10.9.9.9'),
     'gateway: 10.9.9.9 is not inside any of the addresses'),
    (dict(ports=['plain0', 'eth0']), 'ports: eth0 carries {net}.2/24'),
    (dict(ports=['eth0'], forward_delay=31), 'forward_delay: must be at most 30'),
    (dict(name='br$(touch x)', ports=['eth0']), 'name: invalid interface name'),
    (dict(ports=['eth0'], ip='static', address=['{net}.2/24'], dns=['{net}.1`touch x`']), 'dns[0]: not an IP address'),
])
def test_bad_input_changes_nothing(lab, args, message):
    args = dict(args)
    args.setdefault('name', 'br' + lab.tag)
    args['provider'] = 'ifcfg'
    args = json.loads(json.dumps(args).replace('{net}', lab.net))
    lab.write('etc/sysconfig/network-scripts/ifcfg-eth0', IFCFG_ETH0.format(net=lab.net))
    original = lab.snapshot()
    files = lab.tree()
    res = lab.run(args)
    assert res.get('failed') is True, res
    assert message.replace('{net}', lab.net) in res['msg']
    assert lab.snapshot() == original and lab.tree() == files


# ---------------------------------------------------------------- a guest on the new bridge gets link
def test_guest_on_the_bridge_gets_link(tmp_path, playbook, conn):
    """kvm_bridge makes a bridge in the host's namespace (libvirt's taps live there) over a veth whose
    other end is in a "gateway" namespace; a guest that runs an OS (busybox_guest, TCG) is attached to it
    with type bridge. The gateway namespace pings the guest's address: link through the bridge, end to end."""
    tag = uuid.uuid4().hex[:6]
    bridge, port, gw = 'kvgb%s' % tag, 'kvgp%s' % tag, 'kvbr-%sn' % tag
    net = '10.203.%d' % (int(tag[:2], 16) % 200 + 20)
    guest = 'kvmops-it-%s-br' % tag
    directory = os.path.join('/var/lib/libvirt/images', guest)

    def task(module, args):
        result = playbook(one_task_play(tmp_path, module, args)).task('task')
        assert not result.get('failed'), result.get('msg')
        return result

    try:
        boot = busybox_guest.build(directory)
        sh('ip', 'netns', 'add', gw)
        sh('ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'kvgq%s' % tag)
        sh('ip', 'link', 'set', 'kvgq%s' % tag, 'netns', gw)
        sh('ip', '-n', gw, 'link', 'set', 'kvgq%s' % tag, 'name', 'eth0')
        sh('ip', '-n', gw, 'addr', 'add', '%s.1/24' % net, 'dev', 'eth0')
        sh('ip', '-n', gw, 'link', 'set', 'eth0', 'up')
        sh('ip', '-n', gw, 'link', 'set', 'lo', 'up')
        sh('ip', 'link', 'set', port, 'up')

        made = task('kvmops.kvm.kvm_bridge', dict(name=bridge, ports=[port], ip='none', provider='runtime'))
        assert made['changed'] is True
        task('kvmops.kvm.kvm_domain', {
            'name': guest, 'state': 'running', 'memory': '128MiB', 'vcpus': 1, 'virt_type': 'auto',
            'kernel': boot['kernel'], 'initrd': boot['initrd'], 'graphics': {'type': 'none'},
            'cmdline': 'console=ttyS0 quiet net.ifnames=0 kvmops.ip=%s.2/24' % net,
            'interfaces': [{'type': 'bridge', 'source': bridge, 'model': 'virtio'}]})
        info = task('kvmops.kvm.kvm_info', dict(gather=['domains'], name=guest))
        nic = info['domains'][0]['interfaces'][0]
        assert nic['type'] == 'bridge' and nic['source'] == bridge, nic
        # the guest's tap is a port of the bridge, next to the veth
        links = json.loads(sh('ip', '-j', 'link', 'show', 'master', bridge).stdout or '[]')
        assert sorted(link['ifname'] for link in links if link['ifname'] != port) == [nic['target']], links
        for _attempt in range(60):   # boot under TCG, then the guest answers from the gateway side
            if sh('ip', 'netns', 'exec', gw, 'busybox', 'ping', '-c', '1', '-W', '2', '%s.2' % net,
                  check=False).returncode == 0:
                break
        else:
            pytest.fail('the guest on bridge %s does not answer at %s.2' % (bridge, net))
    finally:
        for module, args in (('kvmops.kvm.kvm_domain', dict(name=guest, state='absent')),
                             ('kvmops.kvm.kvm_bridge', dict(name=bridge, ports=[port], ip='none', provider='runtime',
                                                            state='absent'))):
            playbook(one_task_play(tmp_path, module, args))
        sh('ip', 'link', 'del', port, check=False)
        sh('ip', 'link', 'del', bridge, check=False)
        sh('ip', 'netns', 'del', gw, check=False)
        shutil.rmtree(directory, ignore_errors=True)
