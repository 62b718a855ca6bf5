"""host_bridge's OS-dependent decisions, rendered for every supported platform.

The role's decision step runs with each platform's facts; nothing on this machine changes.
"""

import pytest

from role_decisions import decide


BRIDGES = [
    {'name': 'br1', 'ports': ['eth1'], 'network': {'name': 'lan'}},
    {'name': 'br2', 'ports': ['eth2', 'eth3'], 'ip': 'static', 'address': ['192.0.2.10/24'],
     'gateway': '192.0.2.1', 'stp': False, 'forward_delay': 5, 'provider': 'runtime'},
    {'name': 'brold', 'ports': ['eth4'], 'state': 'absent', 'network': {'name': 'old', 'autostart': False}},
]


def _facts(family, version='12'):
    return dict(os_family=family, distribution_major_version=version,
                default_ipv4={'interface': 'eth0', 'address': '10.0.0.5'})


def _decide(playbook, tmp_path, facts, extra=None):
    return decide(playbook, tmp_path, 'host_bridge', facts, extra)


@pytest.mark.parametrize('family, version, packages, ifupdown', [
    ('Debian', '12', ['iproute2', 'bridge-utils'], True),
    ('Debian', '24', ['iproute2', 'bridge-utils'], True),
    ('RedHat', '8', ['iproute'], False),
    ('RedHat', '9', ['iproute'], False),
])
def test_platform_plan(playbook, tmp_path, family, version, packages, ifupdown):
    result = _decide(playbook, tmp_path, _facts(family, version), {'host_bridge_bridges': BRIDGES})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_host_bridge_plan']
    assert plan['packages'] == packages
    # auto means ifupdown files only where ifupdown is the family's network stack.
    assert plan['ifupdown'] is ifupdown
    assert plan['ifupdown_main'] == '/etc/network/interfaces'
    assert plan['connection_interface'] == 'eth0'
    br1, br2, brold = plan['bridges']
    assert br1 == {'name': 'br1', 'ports': ['eth1'], 'state': 'present', 'stp': True, 'forward_delay': 0,
                   'ip': 'inherit', 'provider': 'auto', 'rollback_timeout': 30, 'mtu': None, 'mac': None,
                   'address': None, 'gateway': None, 'dns': None, 'probe': None,
                   'network': {'name': 'lan', 'bridge': 'br1', 'state': 'active', 'autostart': True}}
    assert (br2['stp'], br2['forward_delay'], br2['provider'], br2['address']) == (False, 5, 'runtime', ['192.0.2.10/24'])
    assert 'network' not in br2
    # A removed bridge takes its libvirt network with it.
    assert brold['network'] == {'name': 'old', 'bridge': 'brold', 'state': 'absent', 'autostart': False}
    assert plan['networks'] == [br1['network'], brold['network']]


@pytest.mark.parametrize('family, provider, ifupdown', [
    ('Debian', 'networkmanager', False),
    ('RedHat', 'ifupdown', True),
    ('RedHat', 'ifcfg', False),
])
def test_provider_decides_ifupdown_files(playbook, tmp_path, family, provider, ifupdown):
    result = _decide(playbook, tmp_path, _facts(family),
                     {'host_bridge_bridges': [{'name': 'br0', 'ports': ['eth1']}], 'host_bridge_provider': provider})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_host_bridge_plan']
    assert plan['ifupdown'] is ifupdown
    assert plan['bridges'][0]['provider'] == provider


def test_no_bridges_no_packages(playbook, tmp_path):
    result = _decide(playbook, tmp_path, _facts('Debian'))
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_host_bridge_plan']
    assert plan['packages'] == [] and plan['bridges'] == [] and plan['ifupdown'] is False


@pytest.mark.parametrize('bridges', [
    [{'name': 'br1', 'ports': ['eth1']}, {'name': 'br1', 'ports': ['eth2']}],          # duplicate name
    [{'name': 'br1', 'ports': ['eth1']}, {'name': 'br2', 'ports': ['eth1']}],          # port in two bridges
    [{'name': 'a-very-long-bridge-name', 'ports': ['eth1']}],                           # > 15 characters
    [{'name': 'br1', 'ports': ['eth1'], 'ip': 'static'}],                               # static without address
    [{'name': 'br1', 'ports': ['br2']}, {'name': 'br2', 'ports': ['eth1']}],           # bridge as a port
], ids=['duplicate', 'shared-port', 'long-name', 'static-no-address', 'bridge-port'])
def test_bad_bridges_are_rejected(playbook, tmp_path, bridges):
    result = _decide(playbook, tmp_path, _facts('Debian'), {'host_bridge_bridges': bridges})
    assert result.rc != 0
    assert 'host_bridge' in result.stdout


def test_bad_choice_is_rejected_by_the_argument_spec(playbook, tmp_path):
    result = _decide(playbook, tmp_path, _facts('Debian'),
                     {'host_bridge_bridges': [{'name': 'br1', 'ports': ['eth1'], 'provider': 'netplan'}]})
    assert result.rc != 0
    assert 'netplan' in result.stdout
