"""kvm_bridge providers: the files each one renders into a temporary root (no kernel, no writes)."""

import os

import pytest

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils import _bridge_providers as P
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')
MAC = '52:54:00:aa:bb:01'


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def put(root, rel, text):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    return path


def spec(**overrides):
    out = dict(name='br1', ports=['ens33'], state='present', stp=True, forward_delay=0, mtu=None, mac=MAC,
               ip='inherit')
    out.update(overrides)
    return out


KERNEL = P.Addressing('static', ['192.0.2.10/24', '2001:db8::10/64'], '192.0.2.1', None, [])


def apply(changes):
    """Write the changes (what the transaction does, minus backups) for multi-step tests."""
    for change in changes:
        if change.after is None:
            os.unlink(change.path)
        else:
            os.makedirs(os.path.dirname(change.path), exist_ok=True)
            with open(change.path, 'w') as handle:
                handle.write(change.after)


def by_path(changes, root):
    return dict((os.path.relpath(c.path, str(root)), c) for c in changes)


# ---------------------------------------------------------------- ifcfg
def test_ifcfg_inherit_moves_the_port_keys_and_back(tmp_path):
    put(tmp_path, 'etc/sysconfig/network-scripts/ifcfg-ens33', fixture('bridge_ifcfg-ens33.orig'))
    provider = P.IfcfgProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(), KERNEL), tmp_path)
    assert changes['etc/sysconfig/network-scripts/ifcfg-br1'].before is None
    assert changes['etc/sysconfig/network-scripts/ifcfg-br1'].after == fixture('bridge_ifcfg-br1.expected')
    assert changes['etc/sysconfig/network-scripts/ifcfg-ens33'].after == fixture('bridge_ifcfg-ens33.expected')
    apply(changes.values())
    # second run: the port has no addressing left, the bridge keeps its own: nothing changes
    assert not any(c.changed for c in provider.changes(spec(), KERNEL))
    # absent: the keys go back to the port, the bridge file goes
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    assert changes['etc/sysconfig/network-scripts/ifcfg-br1'].after is None
    restored = changes['etc/sysconfig/network-scripts/ifcfg-ens33'].after
    assert sorted(P.parse_ifcfg(restored)) == sorted(P.parse_ifcfg(fixture('bridge_ifcfg-ens33.orig')))
    assert not restored.startswith('# Managed')


def test_ifcfg_from_kernel_when_the_port_has_no_file(tmp_path):
    provider = P.IfcfgProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(stp=False, forward_delay=5, mtu=9000), KERNEL), tmp_path)
    assert P.parse_ifcfg(changes['etc/sysconfig/network-scripts/ifcfg-br1'].after) == [
        ('DEVICE', 'br1'), ('NAME', 'br1'), ('TYPE', 'Bridge'), ('ONBOOT', 'yes'), ('STP', 'off'), ('DELAY', '5'),
        ('MACADDR', MAC), ('MTU', '9000'), ('BOOTPROTO', 'none'), ('IPADDR', '192.0.2.10'), ('PREFIX', '24'),
        ('GATEWAY', '192.0.2.1'), ('IPV6INIT', 'yes'), ('IPV6ADDR', '2001:db8::10/64')]
    assert P.parse_ifcfg(changes['etc/sysconfig/network-scripts/ifcfg-ens33'].after) == [
        ('DEVICE', 'ens33'), ('NAME', 'ens33'), ('TYPE', 'Ethernet'), ('ONBOOT', 'yes'), ('BOOTPROTO', 'none'),
        ('BRIDGE', 'br1')]


def test_ifcfg_static_route_files_follow_the_addresses(tmp_path):
    scripts = 'etc/sysconfig/network-scripts/'
    put(tmp_path, scripts + 'ifcfg-ens33', fixture('bridge_ifcfg-ens33.orig'))
    put(tmp_path, scripts + 'route-ens33', '10.202.0.0/16 via 192.0.2.1 dev ens33 metric 50\n')
    put(tmp_path, scripts + 'route6-ens33', '2001:db8:9::/48 via 2001:db8::1 dev ens33\n')
    provider = P.IfcfgProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(), KERNEL), tmp_path)
    assert changes[scripts + 'route-br1'].after == '10.202.0.0/16 via 192.0.2.1 dev br1 metric 50\n'
    assert changes[scripts + 'route6-br1'].after == '2001:db8:9::/48 via 2001:db8::1 dev br1\n'
    assert changes[scripts + 'route-ens33'].after is None and changes[scripts + 'route6-ens33'].after is None
    apply(changes.values())
    assert not any(c.changed for c in provider.changes(spec(), KERNEL))
    # a port that is not the first, or ip other than inherit, keeps its route file where it is
    assert scripts + 'route-ens34' not in by_path(provider.changes(spec(ports=['ens33', 'ens34']), KERNEL), tmp_path)
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    assert changes[scripts + 'route-ens33'].after == '10.202.0.0/16 via 192.0.2.1 dev ens33 metric 50\n'
    assert changes[scripts + 'route-br1'].after is None and changes[scripts + 'route6-br1'].after is None


@pytest.mark.parametrize('addressing, expected', [
    (P.Addressing('dhcp', dns=['192.0.2.53']), [('BOOTPROTO', 'dhcp'), ('DNS1', '192.0.2.53')]),
    (P.Addressing('none'), [('BOOTPROTO', 'none')]),
    (P.Addressing('static', ['192.0.2.10/24', '192.0.2.11/24', '2001:db8::10/64', '2001:db8::11/64'],
                  '192.0.2.1', '2001:db8::1', ['192.0.2.53', '2001:db8::53']),
     [('BOOTPROTO', 'none'), ('IPADDR', '192.0.2.10'), ('PREFIX', '24'), ('IPADDR1', '192.0.2.11'), ('PREFIX1', '24'),
      ('GATEWAY', '192.0.2.1'), ('IPV6INIT', 'yes'), ('IPV6ADDR', '2001:db8::10/64'),
      ('IPV6ADDR_SECONDARIES', '2001:db8::11/64'), ('IPV6_DEFAULTGW', '2001:db8::1'), ('DNS1', '192.0.2.53'),
      ('DNS2', '2001:db8::53')]),
])
def test_ifcfg_render_addressing(addressing, expected):
    assert P.IfcfgProvider.render_addressing(addressing) == expected


def test_ifcfg_quoting_round_trip():
    text = P.render_ifcfg([('NAME', 'System eth0'), ('IPV6ADDR_SECONDARIES', 'a b'), ('EMPTY', '')])
    assert "NAME='System eth0'" in text and "EMPTY=''" in text
    assert P.parse_ifcfg(text) == [('NAME', 'System eth0'), ('IPV6ADDR_SECONDARIES', 'a b'), ('EMPTY', '')]


# ---------------------------------------------------------------- ifupdown
def test_ifupdown_edits_the_port_stanza_in_place_and_back(tmp_path):
    put(tmp_path, 'etc/network/interfaces', fixture('bridge_interfaces.orig'))
    os.makedirs(os.path.join(str(tmp_path), 'etc/network/interfaces.d'))
    provider = P.IfupdownProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(mtu=9000), KERNEL), tmp_path)
    assert changes['etc/network/interfaces.d/br1'].after == fixture('bridge_interfaces.d-br1.expected')
    assert changes['etc/network/interfaces.d/br1'].backup_dir == os.path.join(
        str(tmp_path), 'etc/network/interfaces.d.kvm_bridge-backup')
    assert changes['etc/network/interfaces'].after == fixture('bridge_interfaces.expected')
    assert changes['etc/network/interfaces'].backup_dir is None
    apply(changes.values())
    assert not any(c.changed for c in provider.changes(spec(mtu=9000), KERNEL))
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    assert changes['etc/network/interfaces.d/br1'].after is None
    restored = P.parse_interfaces(changes['etc/network/interfaces'].after)
    stanza = [b for b in restored if b['kind'] == 'iface' and b['words'][1] == 'ens33'][0]
    assert stanza['words'] == ['iface', 'ens33', 'inet', 'static']
    assert sorted(stanza['options']) == sorted([('address', '192.0.2.10/24'), ('gateway', '192.0.2.1'),
                                                ('dns-nameservers', '192.0.2.53'), ('dns-search', 'example.org'),
                                                ('up', 'echo up')])


def test_ifupdown_route_hooks_follow_the_addresses(tmp_path):
    hooks = ('    up echo up\n'
             '    up ip route add 10.202.0.0/16 via 192.0.2.1 dev ens33\n'
             '    pre-down ip route del 10.202.0.0/16 via 192.0.2.1 dev ens33\n')
    text = fixture('bridge_interfaces.orig').replace('    up echo up\n', hooks)
    put(tmp_path, 'etc/network/interfaces', text)
    os.makedirs(os.path.join(str(tmp_path), 'etc/network/interfaces.d'))
    provider = P.IfupdownProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(), KERNEL), tmp_path)
    bridge = changes['etc/network/interfaces.d/br1'].after
    assert '    up ip route add 10.202.0.0/16 via 192.0.2.1 dev br1\n' in bridge
    assert '    pre-down ip route del 10.202.0.0/16 via 192.0.2.1 dev br1\n' in bridge
    port = changes['etc/network/interfaces'].after
    assert 'route' not in port and '    up echo up\n' in port      # other hooks stay with the port
    apply(changes.values())
    assert not any(c.changed for c in provider.changes(spec(), KERNEL))
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    restored = changes['etc/network/interfaces'].after
    assert '    up ip route add 10.202.0.0/16 via 192.0.2.1 dev ens33\n' in restored
    assert 'dev br1' not in restored


def test_ifupdown_static_from_options_and_new_port_file_on_absent(tmp_path):
    provider = P.IfupdownProvider(str(tmp_path))
    addressing = P.Addressing('static', ['192.0.2.10/24', '2001:db8::10/64'], '192.0.2.1', '2001:db8::1',
                              ['192.0.2.53'])
    changes = by_path(provider.changes(spec(ip='static', ports=['ens33', 'ens34']), addressing), tmp_path)
    assert list(changes) == ['etc/network/interfaces.d/br1']      # the ports have no stanza anywhere
    text = changes['etc/network/interfaces.d/br1'].after
    assert 'iface br1 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\n' \
           '    dns-nameservers 192.0.2.53\n    bridge_ports ens33 ens34\n' in text
    assert text.endswith('iface br1 inet6 static\n    address 2001:db8::10/64\n    gateway 2001:db8::1\n')
    apply(changes.values())
    changes = by_path(provider.changes(spec(state='absent', ports=['ens33', 'ens34']), addressing), tmp_path)
    assert changes['etc/network/interfaces.d/ens33'].before is None
    assert 'auto ens33\niface ens33 inet static\n    address 192.0.2.10/24\n' in \
        changes['etc/network/interfaces.d/ens33'].after


@pytest.mark.parametrize('addressing, expected', [
    (P.Addressing('dhcp'), [('inet', 'dhcp', [])]),
    (P.Addressing('none'), [('inet', 'manual', [])]),
    (P.Addressing('static', ['2001:db8::10/64'], None, '2001:db8::1', ['2001:db8::53']),
     [('inet', 'manual', []),
      ('inet6', 'static', [('address', '2001:db8::10/64'), ('gateway', '2001:db8::1'),
                           ('dns-nameservers', '2001:db8::53')])]),
])
def test_ifupdown_render_addressing(addressing, expected):
    assert P.IfupdownProvider.render_addressing(addressing) == expected


# ---------------------------------------------------------------- NetworkManager
PORT_PROFILE = """[connection]
id=Wired connection 1
uuid=0b6b2a4e-3f0d-4d43-9d43-2c4c8b5a2d11
type=ethernet
interface-name=ens33

[ipv4]
method=manual
address1=192.0.2.10/24,192.0.2.1
dns=192.0.2.53;
dns-search=example.org;

[ipv6]
method=auto
"""


def test_networkmanager_inherit_copies_ip_sections_and_never_edits_the_port_profile(tmp_path):
    conns = 'etc/NetworkManager/system-connections'
    put(tmp_path, '%s/Wired connection 1.nmconnection' % conns, PORT_PROFILE)
    provider = P.NetworkManagerProvider(str(tmp_path))
    changes = by_path(provider.changes(spec(forward_delay=0), KERNEL), tmp_path)
    assert sorted(changes) == ['%s/br1-port-ens33.nmconnection' % conns, '%s/br1.nmconnection' % conns]
    bridge = P.parse_keyfile(changes['%s/br1.nmconnection' % conns].after)
    assert dict(bridge.items('bridge')) == {'stp': 'true', 'forward-delay': '2'}
    assert dict(bridge.items('ipv4')) == {'method': 'manual', 'address1': '192.0.2.10/24,192.0.2.1',
                                          'dns': '192.0.2.53;', 'dns-search': 'example.org;'}
    assert dict(bridge.items('ipv6')) == {'method': 'auto'}
    assert bridge.get('ethernet', 'cloned-mac-address') == MAC
    port = P.parse_keyfile(changes['%s/br1-port-ens33.nmconnection' % conns].after)
    assert dict(port.items('connection'))['master'] == 'br1'
    assert dict(port.items('connection'))['slave-type'] == 'bridge'
    assert dict(port.items('connection'))['autoconnect-priority'] == '100'
    assert all(c.mode == 0o600 for c in changes.values())
    apply(changes.values())
    assert not any(c.changed for c in provider.changes(spec(forward_delay=0), KERNEL))
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    assert sorted(p for p, c in changes.items() if c.after is None) == sorted(
        ['%s/br1-port-ens33.nmconnection' % conns, '%s/br1.nmconnection' % conns])
    assert len(changes) == 2   # the port's own profile is still there: nothing else to write


def test_networkmanager_stp_off_and_absent_writes_a_port_profile_when_none_exists(tmp_path):
    provider = P.NetworkManagerProvider(str(tmp_path))
    changes = provider.changes(spec(stp=False, ip='static', mtu=1400), KERNEL)
    apply(changes)
    bridge = P.parse_keyfile(changes[0].after)
    assert dict(bridge.items('bridge')) == {'stp': 'false'}
    assert bridge.get('ethernet', 'mtu') == '1400'
    assert dict(bridge.items('ipv6')) == {'method': 'manual', 'address1': '2001:db8::10/64'}
    changes = by_path(provider.changes(spec(state='absent'), KERNEL), tmp_path)
    port = P.parse_keyfile(changes['etc/NetworkManager/system-connections/ens33.nmconnection'].after)
    assert dict(port.items('ipv4')) == {'method': 'manual', 'address1': '192.0.2.10/24', 'gateway': '192.0.2.1'}


def nmcli_module(rc=0):
    """The shared FakeModule on a host where nmcli runs (and answers ``running``)."""
    return FakeModule(commands=lambda argv: (rc, 'running\n', 'Error: failed'),
                      bin_path=lambda name: '/usr/bin/%s' % name)


def test_networkmanager_activation_uses_nmcli_list_arguments_only_for_the_real_root(tmp_path):
    changes = [P.FileChange('/etc/NetworkManager/system-connections/br1.nmconnection', None, 'x'),
               P.FileChange('/etc/NetworkManager/system-connections/old.nmconnection', 'y', None)]
    module = nmcli_module()
    expected = [['/usr/bin/nmcli', 'connection', 'load', '/etc/NetworkManager/system-connections/br1.nmconnection'],
                ['/usr/bin/nmcli', 'connection', 'reload']]
    assert P.NetworkManagerProvider('/').activate(module, changes) == expected
    assert module.commands == expected
    assert P.NetworkManagerProvider(str(tmp_path)).activate(module, changes) == []
    assert module.commands == expected
    assert P.detect(nmcli_module(), '/') == 'networkmanager'
    with pytest.raises(KvmError, match='^connection load .* failed: Error: failed'):
        P.NetworkManagerProvider('/').activate(nmcli_module(rc=1), changes)


@pytest.mark.parametrize('layout, expected', [
    ('etc/sysconfig/network-scripts/', 'ifcfg'),
    ('etc/network/interfaces', 'ifupdown'),
    ('etc/NetworkManager/system-connections/', 'networkmanager'),
    ('', 'runtime'),
])
def test_detect_in_a_config_root(tmp_path, layout, expected):
    if layout.endswith('/'):
        os.makedirs(os.path.join(str(tmp_path), layout))
    elif layout:
        put(tmp_path, layout, '')
    assert P.detect(nmcli_module(), str(tmp_path)) == expected
