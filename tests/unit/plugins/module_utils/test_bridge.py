"""kvm_bridge's logic layer: validation, the kernel plan, state rendering and the transaction (no kernel)."""

import json
import os

import pytest

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils import _bridge as B
from ansible_collections.kvmops.kvm.plugins.module_utils import _files as F
from ansible_collections.kvmops.kvm.plugins.module_utils._bridge_providers import FileChange, RuntimeProvider
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

MAC = '52:54:00:aa:bb:01'


def link(name, index, kind=None, master=None, mac=MAC, up=True, stp=None, fd=None, loopback=False):
    return dict(name=name, index=index, kind=kind, master=master, mtu=1500, mac=mac, up=up, loopback=loopback,
                stp=stp, forward_delay=fd)


LINKS = dict(
    lo=link('lo', 1, loopback=True, mac='00:00:00:00:00:00'),
    ens33=link('ens33', 2),
    ens34=link('ens34', 3, mac='52:54:00:aa:bb:02'),
    eth5=link('eth5', 4, master='br9'),
    br9=link('br9', 5, kind='bridge', stp=True, fd=200),
    bond0=link('bond0', 6, kind='bond'),
    eth6=link('eth6', 7, master='bond0'),
    vnet0=link('vnet0', 8, master='br1'),
    br1=link('br1', 9, kind='bridge', stp=True, fd=200),
)


def params(**overrides):
    out = dict((key, spec.get('default')) for key, spec in B.ARGUMENT_SPEC.items())
    out.update(name='br0', ports=['ens33'])
    out.update(overrides)
    return out


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize('overrides, message', [
    (dict(name='a' * 16), "name: invalid interface name"),
    (dict(name='br/0'), 'name: invalid interface name'),
    (dict(name='br$(id>x)'), 'name: invalid interface name'),
    (dict(name='br`id`'), 'name: invalid interface name'),
    (dict(name='br0\n'), 'name: invalid interface name'),
    (dict(name='..'), 'name: invalid interface name'),
    (dict(name='bond0'), 'name: bond0 is taken by a link that is not a bridge (bond)'),
    (dict(name='ens34'), 'name: ens34 is taken by a link that is not a bridge (a plain device)'),
    (dict(ports=['nope0']), 'ports: nope0 does not exist'),
    (dict(ports=['ens33', 'e;th0']), 'ports[1]: invalid interface name'),
    (dict(ports=['ens33', 'ens33']), 'ports: ens33 listed more than once'),
    (dict(ports=['eth5']), 'ports: eth5 is already in bridge br9'),
    (dict(ports=['eth6']), 'ports: eth6 is already enslaved to bond0 (bond)'),
    (dict(ports=['br9']), 'ports: br9 is itself a bridge'),
    (dict(ports=['lo']), 'ports: lo is a loopback device'),
    (dict(ports=['br0']), 'ports: br0: a bridge cannot be its own port'),
    (dict(mac='52:54:00:aa:bb'), "mac: invalid MAC address"),
    (dict(mac='52:54:00:aa:bb:cc\nX=1'), "mac: invalid MAC address"),
    (dict(mac='01:00:5e:00:00:01'), 'mac: 01:00:5e:00:00:01 is a multicast address'),
    (dict(mac='00:00:00:00:00:00'), 'mac: the all-zero address is not usable'),
    (dict(mtu=40), 'mtu: must be at least 68'),
    (dict(mtu=65536), 'mtu: must be at most 65535'),
    (dict(forward_delay=-1), 'forward_delay: must be at least 0'),
    (dict(rollback_timeout=0), 'rollback_timeout: must be at least 1'),
    (dict(ip='static', address=['192.0.2.10']), 'address[0]: not an address with a prefix'),
    (dict(ip='static', address=['192.0.2.10/24', '192.0.2.300/24']), "address[1]: not an address with a prefix"),
    (dict(ip='static', address=['192.0.2.0/24']), 'address[0]: is the network or broadcast address of 192.0.2.0/24'),
    (dict(address=['192.0.2.10/24']), 'address: only used with ip=static (ip is inherit)'),
    (dict(ip='dhcp', gateway='192.0.2.1'), 'gateway: only used with ip=static (ip is dhcp)'),
    (dict(ip='static', address=['192.0.2.10/24'], gateway='198.51.100.1'),
     'gateway: 198.51.100.1 is not inside any of the addresses (192.0.2.10/24)'),
    (dict(ip='static', address=['192.0.2.10/24'], gateway='nope'), "gateway: not an IP address (got 'nope')"),
    (dict(dns=['192.0.2.53']), 'dns: only used with ip=static or ip=dhcp'),
    (dict(ip='dhcp', dns=['one']), "dns[0]: not an IP address (got 'one')"),
    (dict(probe='gw.example'), "probe: not an IP address (got 'gw.example')"),
    (dict(config_root='/tmp/../etc'), "config_root: must not contain '..' components"),
])
def test_bad_input(overrides, message):
    with pytest.raises(KvmError) as err:
        B.build_spec(params(**overrides), LINKS)
    assert err.value.msg.startswith(message), err.value.msg


def test_spec_defaults_mac_to_first_port_and_normalizes():
    spec = B.build_spec(params(ports=['ens34', 'ens33'], ip='static', address=['2001:DB8::0010/64'],
                               gateway='2001:db8::1'), LINKS)
    assert spec['mac'] == '52:54:00:aa:bb:02'
    assert spec['addresses'] == ['2001:db8::10/64'] and spec['gateway'] == '2001:db8::1'
    assert B.build_spec(params(mac='52:54:00:AA:BB:CC'), LINKS)['mac'] == '52:54:00:aa:bb:cc'


def test_absent_without_ports_takes_current_members_and_skips_membership_checks():
    spec = B.build_spec(params(name='br1', ports=[], state='absent'), LINKS)
    assert spec['ports'] == ['vnet0']
    spec = B.build_spec(params(name='br9', ports=['eth5'], state='absent'), LINKS)
    assert spec['ports'] == ['eth5']


def test_other_ports_must_not_carry_addresses():
    spec = B.build_spec(params(ports=['ens33', 'ens34']), LINKS)
    current = state(ports={'ens33': None, 'ens34': None}, addresses={'ens34': [A4]})
    with pytest.raises(KvmError) as err:
        B.check_port_addresses(spec, current)
    assert err.value.msg.startswith('ports: ens34 carries 192.0.2.10/24; only the first port (ens33)')


# ---------------------------------------------------------------- plan
A4 = dict(family='inet', local='192.0.2.10', prefixlen=24, broadcast='192.0.2.255')
A6 = dict(family='inet6', local='2001:db8::10', prefixlen=64, nodad=True)
DEF = dict(family='inet', dst='default', gateway='192.0.2.1')
NET = dict(family='inet', dst='198.51.100.0/24', gateway='192.0.2.1', metric=50, protocol='static')
BR_ON = dict(stp=True, forward_delay=200, mtu=1500, mac=MAC, up=True)


def state(bridge=None, ports=None, addresses=None, routes=None):
    ports = dict((p, v or dict(master=None, up=True)) for p, v in (ports or {'ens33': None}).items())
    return dict(bridge=bridge, ports=ports, addresses=addresses or {}, routes=routes or {})


def spec_for(**overrides):
    return B.build_spec(params(**overrides), LINKS)


ORIGINAL = state(addresses={'ens33': [A4, A6]}, routes={'ens33': [DEF, NET]})
BRIDGED = state(bridge=BR_ON, ports={'ens33': dict(master='br0', up=True)},
                addresses={'br0': [A4, A6], 'ens33': []}, routes={'br0': [DEF, NET], 'ens33': []})


@pytest.mark.parametrize('current, overrides, expected', [
    # ip=inherit from scratch: create (two steps for STP then delay), enslave, up, move routes and addresses
    (ORIGINAL, dict(), [
        'link add name br0 address 52:54:00:aa:bb:01 type bridge stp_state 1',
        'link set dev br0 type bridge forward_delay 200',
        'link set dev ens33 master br0',
        'link set dev br0 up',
        '-4 route del default via 192.0.2.1 dev ens33',
        '-4 route del 198.51.100.0/24 via 192.0.2.1 dev ens33 metric 50',
        'addr del 192.0.2.10/24 dev ens33',
        'addr del 2001:db8::10/64 dev ens33',
        'addr add 192.0.2.10/24 broadcast 192.0.2.255 dev br0',
        'addr add 2001:db8::10/64 dev br0 nodad',
        '-4 route replace default via 192.0.2.1 dev br0',
        '-4 route replace 198.51.100.0/24 via 192.0.2.1 dev br0 metric 50 proto static',
    ]),
    # already bridged: nothing
    (BRIDGED, dict(), []),
    # STP off with a 0 s delay: STP first, the delay then goes under the STP floor
    (BRIDGED, dict(stp=False), [
        'link set dev br0 type bridge stp_state 0',
        'link set dev br0 type bridge forward_delay 0',
    ]),
    (BRIDGED, dict(forward_delay=1), []),            # 1 s with STP on is the kernel's 2 s
    (BRIDGED, dict(forward_delay=15), ['link set dev br0 type bridge forward_delay 1500']),
    (BRIDGED, dict(mtu=9000, mac='52:54:00:00:00:09'), [
        'link set dev br0 address 52:54:00:00:00:09',
        'link set dev br0 mtu 9000',
    ]),
    # static replaces the addresses and the default route, keeps other routes
    (BRIDGED, dict(ip='static', address=['192.0.2.20/24'], gateway='192.0.2.254'), [
        '-4 route del default via 192.0.2.1 dev br0',
        'addr del 192.0.2.10/24 dev br0',
        'addr del 2001:db8::10/64 dev br0',
        'addr add 192.0.2.20/24 broadcast 192.0.2.255 dev br0',
        '-4 route replace default via 192.0.2.254 dev br0',
    ]),
    (BRIDGED, dict(ip='none'), [
        '-4 route del default via 192.0.2.1 dev br0',
        '-4 route del 198.51.100.0/24 via 192.0.2.1 dev br0 metric 50',
        'addr del 192.0.2.10/24 dev br0',
        'addr del 2001:db8::10/64 dev br0',
    ]),
    # absent: delete the bridge (that releases the ports), give the port its addressing back
    (BRIDGED, dict(state='absent'), [
        'link del dev br0',
        'addr add 192.0.2.10/24 broadcast 192.0.2.255 dev ens33',
        'addr add 2001:db8::10/64 dev ens33 nodad',
        '-4 route replace default via 192.0.2.1 dev ens33',
        '-4 route replace 198.51.100.0/24 via 192.0.2.1 dev ens33 metric 50 proto static',
    ]),
    (ORIGINAL, dict(state='absent'), []),
])
def test_plan(current, overrides, expected):
    spec = spec_for(**overrides)
    wanted = B.wanted_present(spec, current) if spec['state'] == 'present' else B.wanted_absent(spec, current)
    assert [' '.join(a) for a in B.plan(current, wanted, 'br0')] == expected


def test_rollback_plan_is_the_way_back():
    spec = spec_for()
    wanted = B.wanted_present(spec, ORIGINAL)
    assert B.plan(BRIDGED, ORIGINAL, 'br0')[0] == ['link', 'del', 'dev', 'br0']
    assert B.plan(ORIGINAL, ORIGINAL, 'br0') == []
    assert B.default_probe(wanted) == '192.0.2.1'
    assert B.default_probe(B.wanted_present(spec_for(ip='none'), ORIGINAL)) is None


@pytest.mark.parametrize('stp, seconds, centiseconds', [
    (True, 0, 200), (True, 2, 200), (True, 15, 1500), (True, 30, 3000), (False, 0, 0), (False, 5, 500),
])
def test_effective_delay(stp, seconds, centiseconds):
    assert B.effective_delay(stp, seconds) == centiseconds


def test_render_state_and_addressing():
    text = B.render_state(BRIDGED, 'br0', ['ens33'])
    assert text == ('bridge br0: stp on, forward_delay 2.0s, mtu 1500, mac 52:54:00:aa:bb:01, up\n'
                    '  br0 address 192.0.2.10/24\n  br0 address 2001:db8::10/64\n'
                    '  br0 route default via 192.0.2.1\n  br0 route 198.51.100.0/24 via 192.0.2.1 metric 50\n'
                    'port ens33: master br0, up\n')
    assert B.render_state(ORIGINAL, 'br0', ['ens33']).startswith('bridge br0: absent\nport ens33: master -, up\n')
    addressing = B.addressing_for(spec_for(), B.wanted_present(spec_for(), ORIGINAL))
    assert (addressing.method, addressing.v4, addressing.v6, addressing.gateway4) == (
        'static', ['192.0.2.10/24'], ['2001:db8::10/64'], '192.0.2.1')
    assert B.addressing_for(spec_for(ip='dhcp', dns=['192.0.2.53']), None).dns == ['192.0.2.53']


# ---------------------------------------------------------------- transaction
class FakeKernel(object):
    """Records commands; fails the one containing ``fail``; reads back a fixed state."""

    def __init__(self, fail=None, after=None, always=False):
        self.fail = fail
        self.always = always
        self.ran = []
        self.after = after

    def change(self, args):
        self.ran.append(' '.join(args))
        if self.fail and self.fail in ' '.join(args):
            if not self.always:
                self.fail = None
            raise KvmError('ip %s failed: RTNETLINK answers: Operation not permitted' % ' '.join(args))

    def links(self):
        return dict(ens33=link('ens33', 2, master='br0'), br0=link('br0', 3, kind='bridge', stp=True, fd=200))

    def addresses(self, dev):
        return self.after['addresses'].get(dev, [])

    def routes(self, dev):
        return self.after['routes'].get(dev, [])


def file_module():
    """The shared FakeModule, on a host without SELinux (what _files.replace_file asks)."""
    module = FakeModule()
    module.selinux_enabled = lambda: False
    return module


def test_transaction_failure_restores_files_and_kernel(tmp_path):
    old = tmp_path / 'ifcfg-ens33'
    old.write_text('OLD\n')
    new = tmp_path / 'ifcfg-br0'
    changes = [FileChange(str(old), 'OLD\n', 'NEW\n'), FileChange(str(new), None, 'BRIDGE\n')]
    kernel = FakeKernel(fail='addr add', after=BRIDGED)
    spec = dict(spec_for(), probe=None)
    actions = B.plan(ORIGINAL, B.wanted_present(spec, ORIGINAL), 'br0')
    with pytest.raises(KvmError) as err:
        B.transaction(file_module(), kernel, spec, ORIGINAL, actions, changes, None)
    assert err.value.msg == ('bridge br0: ip addr add 192.0.2.10/24 broadcast 192.0.2.255 dev br0 failed: RTNETLINK '
                             'answers: Operation not permitted; the previous kernel state and files were restored')
    assert err.value.facts['rolled_back'] is True
    assert old.read_text() == 'OLD\n' and not new.exists()
    assert sorted(os.listdir(str(tmp_path))) == ['ifcfg-ens33']          # backups of the failed try removed
    failed_at = kernel.ran.index('addr add 192.0.2.10/24 broadcast 192.0.2.255 dev br0')
    assert kernel.ran[failed_at + 1] == 'link del dev br0'


def test_transaction_incomplete_rollback_says_so(tmp_path):
    kernel = FakeKernel(fail='addr add', after=BRIDGED, always=True)
    spec = dict(spec_for(), probe=None)
    actions = B.plan(ORIGINAL, B.wanted_present(spec, ORIGINAL), 'br0')
    with pytest.raises(KvmError) as err:
        B.transaction(file_module(), kernel, spec, ORIGINAL, actions, [], None)
    assert '; the roll-back was incomplete: ip addr add 192.0.2.10/24 broadcast 192.0.2.255 dev ens33 failed' \
        in err.value.msg
    assert err.value.facts['rolled_back'] is False


def test_transaction_probe_failure(tmp_path):
    kernel = FakeKernel(after=BRIDGED)
    spec = dict(spec_for(), probe='192.0.2.1', rollback_timeout=1)
    actions = B.plan(ORIGINAL, B.wanted_present(spec, ORIGINAL), 'br0')
    with pytest.raises(KvmError) as err:
        B.transaction(file_module(), kernel, spec, ORIGINAL, actions, [], lambda a, t: False)
    assert 'probe 192.0.2.1 did not answer within 1s after the change' in err.value.msg
    assert kernel.ran[len(actions)] == 'link del dev br0'


def test_transaction_success_keeps_backups(tmp_path):
    old = tmp_path / 'ifcfg-ens33'
    old.write_text('OLD\n')
    old.chmod(0o640)
    kernel = FakeKernel(after=BRIDGED)
    spec = dict(spec_for(), probe='192.0.2.1')
    backups = B.transaction(file_module(), kernel, spec, ORIGINAL, [['link', 'set', 'dev', 'br0', 'up']],
                            [FileChange(str(old), 'OLD\n', 'NEW\n')], lambda a, t: True)
    assert old.read_text() == 'NEW\n' and (old.stat().st_mode & 0o777) == 0o640
    assert len(backups) == 1 and open(backups[0]).read() == 'OLD\n' and backups[0].endswith('~')
    assert B.activate(file_module(), RuntimeProvider(), []) == []


# ---------------------------------------------------------------- files: atomic, no symlinks, narrow modes
def test_backups_are_owner_only_and_never_follow_a_planted_symlink(tmp_path):
    old = tmp_path / 'ifcfg-ens33'
    old.write_text('OLD\n')
    victim = tmp_path / 'victim'
    victim.write_text('precious\n')
    victim.chmod(0o600)
    first = F.backup_file(str(old))
    assert (os.stat(first).st_mode & 0o777) == 0o600 and open(first).read() == 'OLD\n'
    # a symlink planted at the next predictable names is neither followed nor replaced
    os.unlink(first)
    os.symlink(str(victim), first)
    second = F.backup_file(str(old))
    assert second != first and os.path.islink(first)
    assert victim.read_text() == 'precious\n' and (victim.stat().st_mode & 0o777) == 0o600
    assert open(second).read() == 'OLD\n' and (os.stat(second).st_mode & 0o777) == 0o600


def test_backup_dir_is_owner_only(tmp_path):
    old = tmp_path / 'br1'
    old.write_text('OLD\n')
    backup = F.backup_file(str(old), str(tmp_path / 'interfaces.d.kvm_bridge-backup'))
    assert (os.stat(os.path.dirname(backup)).st_mode & 0o777) == 0o700


def test_replace_file_new_file_mode_and_symlink_replaced_not_followed(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('precious\n')
    victim.chmod(0o600)
    target = tmp_path / 'sub' / 'ifcfg-br1'
    F.replace_file(file_module(), str(target), 'NEW\n', 0o644)
    assert target.read_text() == 'NEW\n' and (target.stat().st_mode & 0o777) == 0o644
    link = tmp_path / 'br1.nmconnection'
    os.symlink(str(victim), str(link))
    F.replace_file(file_module(), str(link), 'KEYFILE\n', 0o600)
    assert not link.is_symlink() and link.read_text() == 'KEYFILE\n' and (link.stat().st_mode & 0o777) == 0o600
    assert victim.read_text() == 'precious\n' and (victim.stat().st_mode & 0o777) == 0o600
    assert sorted(os.listdir(str(tmp_path / 'sub'))) == ['ifcfg-br1']   # no temporary file left behind


def test_validation_happens_before_iproute2_runs():
    def no_lookup(name):
        raise AssertionError('%s looked up before the options were checked' % name)
    with pytest.raises(KvmError) as err:
        B.run_bridge(FakeModule(params(name='br$(id>x)'), bin_path=no_lookup))
    assert err.value.msg.startswith('name: invalid interface name')


# ---------------------------------------------------------------- the change set: entries, check mode, result keys
class FakeIp(object):
    """``ip`` for FakeModule's run_command: answers the reads from ORIGINAL-like JSON, records the changes."""

    LINKS = [dict(ifname='lo', ifindex=1, flags=['LOOPBACK', 'UP'], mtu=65536, address='00:00:00:00:00:00'),
             dict(ifname='ens33', ifindex=2, flags=['UP'], mtu=1500, address=MAC)]
    ADDRS = {'ens33': [dict(family='inet', local='192.0.2.10', prefixlen=24, scope='global', broadcast='192.0.2.255')]}
    ROUTES = {('-4', 'ens33'): [dict(dst='default', gateway='192.0.2.1', protocol='static')]}

    def __init__(self):
        self.changes = []

    def __call__(self, argv):
        args = argv[1:]
        if args[:1] == ['-j']:
            args = args[1:]
            if args == ['-d', 'link', 'show']:
                out = self.LINKS
            elif args[:2] == ['addr', 'show']:
                out = [dict(addr_info=self.ADDRS.get(args[-1], []))]
            else:
                out = self.ROUTES.get((args[0], args[-1]), [])
            return 0, json.dumps(out), ''
        self.changes.append(' '.join(args))
        return 0, '', ''


def bridge_module(tmp_path, check_mode, ip=None):
    os.makedirs(str(tmp_path / 'etc/sysconfig/network-scripts'))
    (tmp_path / 'etc/sysconfig/network-scripts/ifcfg-ens33').write_text(
        'DEVICE=ens33\nBOOTPROTO=none\nIPADDR=192.0.2.10\nPREFIX=24\nGATEWAY=192.0.2.1\n')
    module = FakeModule(params(provider='ifcfg', config_root=str(tmp_path)), check_mode=check_mode, diff=True,
                        commands=ip or FakeIp(), bin_path=lambda name: '/usr/sbin/' + name)
    module.selinux_enabled = lambda: False
    return module


def test_check_mode_records_every_change_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(B, 'make_pinger', lambda module: pytest.fail('check mode probed'))
    ip = FakeIp()
    module = bridge_module(tmp_path, True, ip)
    port_file = tmp_path / 'etc/sysconfig/network-scripts/ifcfg-ens33'
    original = port_file.read_text()
    result = B.run_bridge(module)
    assert ip.changes == [] and port_file.read_text() == original
    assert sorted(os.listdir(str(tmp_path / 'etc/sysconfig/network-scripts'))) == ['ifcfg-ens33']
    assert result['changed'] is True and result['pending_restart'] == [] and result['backups'] == []
    live = [c for c in result['changes'] if c['scope'] == 'live']
    host = [c for c in result['changes'] if c['scope'] == 'host']
    assert [c['command'] for c in live] == result['commands'] and len(live) == 8
    assert live[0] == dict(scope='live', option='name', action='create', before=None, after='br0', device='br0',
                           command=result['commands'][0])
    assert dict(scope='live', option='ports', action='add port', before=None, after='br0', device='ens33',
                command='ip link set dev ens33 master br0') in live
    assert dict(scope='live', option='ip', action='remove address', before='192.0.2.10/24', after=None,
                device='ens33', command='ip addr del 192.0.2.10/24 dev ens33') in live
    assert dict(scope='live', option='ip', action='add route', before=None, after='default via 192.0.2.1',
                device='br0', command='ip -4 route replace default via 192.0.2.1 dev br0 proto static') in live
    assert [(c['option'], c['action'], os.path.basename(c['path']), c['provider']) for c in host] == [
        ('provider', 'create file', 'ifcfg-br0', 'ifcfg'), ('provider', 'update file', 'ifcfg-ens33', 'ifcfg')]
    assert [os.path.basename(p) for p in result['files']] == ['ifcfg-br0', 'ifcfg-ens33']
    assert [d['before_header'] for d in result['diff']] == ['kernel'] + result['files']
    assert result['bridge'] == dict(name='br0', exists=False)


def test_apply_goes_through_the_transaction_and_returns_the_same_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(B, 'make_pinger', lambda module: lambda address, timeout: True)
    ip = FakeIp()
    result = B.run_bridge(bridge_module(tmp_path, False, ip))
    assert ['ip ' + c for c in ip.changes] == result['commands'] and result['probe'] == '192.0.2.1'
    assert (tmp_path / 'etc/sysconfig/network-scripts/ifcfg-br0').exists()
    assert len(result['backups']) == 1 and os.path.basename(result['backups'][0]).startswith('ifcfg-ens33.')
    assert len(result['changes']) == 10 and result['pending_restart'] == []


def test_nothing_to_do_is_no_change(tmp_path):
    module = FakeModule(params(name='br0', ports=[], state='absent', provider='runtime'), diff=True,
                        commands=FakeIp(), bin_path=lambda name: '/usr/sbin/' + name)
    result = B.run_bridge(module)
    assert result == dict(changed=False, changes=[], pending_restart=[], name='br0', state='absent',
                          provider='runtime', ports=[], probe=None, commands=[], files=[], backups=[],
                          bridge=dict(name='br0', exists=False), warnings=[])
