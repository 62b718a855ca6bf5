"""kvm_network's logic layer: the XML model (tables) and the manager on libvirt's test driver."""

import os

import pytest

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils import _network as N
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'fixtures')
NODE_URI = 'test://' + os.path.join(FIXTURES, 'network_node.xml')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def params(**overrides):
    """Module params as AnsibleModule would give them (every option present)."""
    out = {key: None for key in N.ARGUMENT_SPEC}
    out.update(state='present', restart='never', uri=NODE_URI)
    out.update(overrides)
    return out


def ipv4(address, ranges=None, hosts=None, prefix=None, netmask=None):
    return dict(address=address, prefix=prefix, netmask=netmask,
                dhcp_ranges=None if ranges is None else [dict(dict(lease=None), **r) for r in ranges],
                dhcp_hosts=None if hosts is None else [dict(dict(mac=None, id=None, name=None), **h) for h in hosts])


def bridge(**kwargs):
    out = dict(name=None, stp=None, delay=None, mtu=None, mac=None)
    out.update(kwargs)
    return out


WRITES = [
    (libvirt.virConnect, 'networkDefineXML'), (libvirt.virConnect, 'networkDefineXMLFlags'),
    (libvirt.virConnect, 'networkCreateXML'),
    (libvirt.virNetwork, 'create'), (libvirt.virNetwork, 'destroy'), (libvirt.virNetwork, 'undefine'),
    (libvirt.virNetwork, 'update'), (libvirt.virNetwork, 'setAutostart'),
]


@pytest.fixture
def writes(monkeypatch):
    """Every libvirt write method, counted (they still run)."""
    calls = []
    for cls, name in WRITES:
        original = getattr(cls, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, name, wrapper)
    return calls


@pytest.fixture
def client():
    """A fresh test-driver connection per test (the node file is re-read each time)."""
    cl = LibvirtClient(FakeModule(params()))
    cl.conn  # pylint: disable=pointless-statement
    yield cl
    cl.close()


def run(client, prm, check_mode=False, diff=True):
    module = FakeModule(prm, check_mode=check_mode, diff=diff)
    return N.NetworkManager(module, client).run()


# ---------------------------------------------------------------- options -> spec: bad input
@pytest.mark.parametrize('overrides, message', [
    (dict(bridge=bridge(name='a-very-long-bridge0')), 'bridge.name: invalid interface name'),
    (dict(bridge=bridge(mac='52:54:00:zz:00:01')), 'bridge.mac: invalid MAC address'),
    (dict(bridge=bridge(mac='01:00:5e:00:00:01')), 'multicast'),
    (dict(bridge=bridge(mtu=20)), 'bridge.mtu: must be at least 68'),
    (dict(bridge=bridge(delay=-1)), 'delay'),
    (dict(ipv4=ipv4('10.1.0.1')), 'with a prefix'),
    (dict(ipv4=ipv4('10.1.0.1/24', prefix=24)), 'already has a prefix'),
    (dict(ipv4=ipv4('10.1.0.1', prefix=24, netmask='255.255.255.0')), 'either prefix or netmask'),
    (dict(ipv4=ipv4('10.1.0.1', netmask='255.0.255.0')), 'not a netmask'),
    (dict(ipv4=ipv4('10.1.0.0/24')), 'network or broadcast'),
    (dict(ipv4=ipv4('fd00::1/64')), 'not an IPv4 address'),
    (dict(ipv4=ipv4('300.1.0.1/24')), 'ipv4.address: not an IPv4 address'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.2', end='10.1.1.9')])), 'outside 10.1.0.0/24'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.9', end='10.1.0.2')])), 'is after end'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.1', end='10.1.0.9')])), 'network address'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.2', end='10.1.0.9', lease='soon')])), 'not a duration'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.2', end='10.1.0.9', lease='30s')])), 'two minutes'),
    (dict(ipv4=ipv4('10.1.0.1/24', hosts=[dict(ip='10.1.0.5')])), 'needs mac or name'),
    (dict(ipv4=ipv4('10.1.0.1/24', hosts=[dict(mac='52:54:00:00:00:01', ip='10.2.0.5')])), 'outside'),
    (dict(ipv4=ipv4('10.1.0.1/24', hosts=[dict(mac='52:54:00:00:00:01', ip='10.1.0.5'),
                                          dict(mac='52:54:00:00:00:01', ip='10.1.0.6')])), 'used more than once'),
    (dict(ipv6=dict(ipv4('fd00:1::1/64'), netmask=None)), None),
    (dict(ipv6=ipv4('fd00:1::1', netmask='255.255.255.0')), 'not a netmask'),
    (dict(ipv6=ipv4('fd00:1::1/64', hosts=[dict(mac='52:54:00:00:00:01', ip='fd00:1::5')])), 'not mac'),
    (dict(nat_ports=dict(start=2000, end=1000)), 'start <= end'),
    (dict(dns_hosts=[dict(ip='10.1.0.5', hostnames=[])]), 'at least one hostname'),
    (dict(dns_hosts=[dict(ip='nope', hostnames=['a'])]), 'not an IP address'),
    (dict(dns_hosts=[dict(ip='10.1.0.5', hostnames=['a']), dict(ip='10.1.0.5', hostnames=['b'])]), 'more than once'),
    # hostile input: every name that reaches dnsmasq is a DNS name, every device an interface name
    (dict(domain='lab\naddn-hosts=/etc/shadow'), 'domain: invalid DNS name'),
    (dict(domain='a' * 254), 'domain: invalid DNS name'),
    (dict(domain='lab.internal.'), 'domain: invalid DNS name'),
    (dict(dns_hosts=[dict(ip='10.1.0.5', hostnames=['nfs\nserver=8.8.8.8'])]), r'dns_hosts[0].hostnames[0]: invalid DNS name'),
    (dict(dns_hosts=[dict(ip='10.1.0.5', hostnames=['ok', 'x' * 64])]), r'dns_hosts[0].hostnames[1]: invalid DNS name'),
    (dict(dns_hosts=[dict(ip='10.1.0.5\n', hostnames=['a'])]), 'dns_hosts[0].ip: not an IP address'),
    (dict(ipv4=ipv4('10.1.0.1/24', hosts=[dict(mac='52:54:00:00:00:01', name='vm\n01', ip='10.1.0.5')])),
     'ipv4.dhcp_hosts[0].name: invalid DNS name'),
    (dict(ipv4=ipv4('10.1.0.1/24', hosts=[dict(mac='52:54:00:00:00:01\n', ip='10.1.0.5')])),
     'ipv4.dhcp_hosts[0].mac: invalid MAC address'),
    (dict(ipv6=dict(ipv4('fd00:1::1/64', hosts=[dict(id='00:01;reboot', ip='fd00:1::5')]), netmask=None)),
     'ipv6.dhcp_hosts[0].id: invalid DUID'),
    (dict(ipv4=ipv4('10.1.0.1/24', ranges=[dict(start='10.1.0.2', end='10.1.0.9', lease='30m\n')])),
     'ipv4.dhcp_ranges[0].lease: not a duration'),
    (dict(ipv4=ipv4('10.1.0.1/2x')), 'ipv4.address: the prefix is not a prefix length'),
    (dict(ipv4=ipv4('10.1.0.1\n/24')), 'ipv4.address: must not contain control characters'),
    (dict(forward_dev='eth0;reboot'), 'forward_dev: invalid interface name'),
    (dict(bridge=bridge(name='br$(id)')), 'bridge.name: invalid interface name'),
    (dict(bridge=bridge(mtu=70000)), 'bridge.mtu: must be at most 65535'),
    (dict(nat_ports=dict(start=0, end=10)), 'nat_ports.start: must be at least 1'),
])
def test_spec_validation(overrides, message):
    if message is None:
        N.spec_from_params(params(**overrides))
        return
    with pytest.raises(KvmError) as err:
        N.spec_from_params(params(**overrides))
    assert message in err.value.msg
    assert err.value.msg.startswith(message.split(':')[0]) or ':' not in message


@pytest.mark.parametrize('forward, extra, message', [
    ('bridge', dict(ipv4=ipv4('10.1.0.1/24')), 'takes no ipv4'),
    ('bridge', dict(), 'needs bridge.name'),
    ('route', dict(nat_ports=dict(start=1024, end=2048)), 'only applies to forward=nat'),
])
def test_mode_rules(forward, extra, message):
    spec = N.spec_from_params(params(forward=forward, **extra))
    with pytest.raises(KvmError) as err:
        N.check_spec_against_mode(spec, forward)
    assert message in err.value.msg


@pytest.mark.parametrize('text, seconds', [
    ('30m', 1800), ('12h', 43200), ('3600s', 3600), ('90', 5400), ('infinite', 0), (None, None),
])
def test_lease(text, seconds):
    assert N.parse_lease(text, 'x') == seconds


# ---------------------------------------------------------------- XML -> model
def test_model_normalizes_libvirt_defaults_and_forms():
    live = N.model(parse(fixture('network_nat_live.xml')))
    config = N.model(parse("""<network><name>nat_network_01</name><forward mode='nat'/>
        <bridge name='virbr1'/><ip address='192.168.111.1' prefix='24'>
        <dhcp><range start='192.168.111.2' end='192.168.111.254'><lease expiry='720'/></range></dhcp></ip></network>"""))
    # netmask vs prefix, explicit vs default NAT ports, stp/delay defaults, lease units: all the same
    for key in ('forward', 'nat_ports', 'bridge.name', 'bridge.stp', 'bridge.delay', 'ipv4.address', 'ipv4.dhcp_ranges',
                'ipv4.dhcp_hosts', 'ipv6.address', 'ipv6.dhcp_ranges'):
        assert live[key] == config[key], key
    assert set(live) == set(o.name for o in N.OPTIONS) | {'name'}
    assert live['bridge.mac'] == '52:54:00:61:b2:8a'
    assert live['nat_ports'] == dict(start=1024, end=65535)
    assert live['ipv4.address'] == dict(address='192.168.111.1', prefix=24)
    assert live['ipv4.dhcp_ranges'] == [dict(start='192.168.111.2', end='192.168.111.254', lease=43200)]


def change(option, before, after, action='set'):
    return dict(option=option, action=action, before=before, after=after)


WALKTHROUGH = dict(forward='nat', bridge=bridge(name='virbr1', stp=True, delay=0),
                   ipv4=ipv4('192.168.111.1', netmask='255.255.255.0',
                             ranges=[dict(start='192.168.111.2', end='192.168.111.254', lease='12h')]))


@pytest.mark.parametrize('overrides, live, other', [
    (dict(), [], []),
    (dict(ipv4=ipv4('192.168.111.1/24', ranges=[dict(start='192.168.111.2', end='192.168.111.254', lease='720')])), [], []),
    (dict(bridge=bridge(stp=False)), [], [change('bridge.stp', True, False)]),
    (dict(nat_ports=dict(start=1024, end=65535)), [], []),
    (dict(nat_ports=dict(start=2000, end=3000)), [],
     [change('nat_ports', dict(start=1024, end=65535), dict(start=2000, end=3000))]),
    (dict(forward='route'), [], [change('forward', 'nat', 'route')]),
    (dict(ipv4=ipv4('192.168.112.1/24')), [], [change('ipv4.address', '192.168.111.1/24', '192.168.112.1/24')]),
    (dict(ipv4=ipv4('192.168.111.1/24', hosts=[dict(mac='52:54:00:00:00:01', ip='192.168.111.9')])),
     [change('ipv4.dhcp_hosts', None, dict(mac='52:54:00:00:00:01', ip='192.168.111.9'), 'add')], []),
    (dict(dns_hosts=[dict(ip='192.168.111.5', hostnames=['nfs'])]),
     [change('dns_hosts', None, dict(ip='192.168.111.5', hostnames=['nfs']), 'add')], []),
    (dict(domain='lab'), [], [change('domain', None, 'lab')]),
])
def test_differences_only_what_is_specified(overrides, live, other):
    current = N.model(parse(fixture('network_nat_live.xml')))
    prm = params(**dict(WALKTHROUGH, **overrides))
    got_live, got_other = N.differences(N.spec_from_params(prm), current)
    assert (got_live, got_other) == (live, other)


def test_apply_spec_keeps_everything_not_specified():
    current = parse(fixture('network_nat_live.xml'))
    current.append(parse("<portgroup name='eng'/>"))
    spec = N.spec_from_params(params(bridge=bridge(stp=False), ipv4=ipv4(
        '192.168.111.1/24', hosts=[dict(mac='52:54:00:00:00:01', name='vm1', ip='192.168.111.9')])))
    new = N.apply_spec(current, spec, 'nat_network_01')
    assert new.findtext('uuid') == '0b3a3a52-4e63-4f7e-8f55-7bd1d0b0e001'
    assert new.find('mac').get('address') == '52:54:00:61:B2:8A'
    assert new.find('portgroup') is not None
    assert new.find('bridge').get('stp') == 'off' and new.find('bridge').get('name') == 'virbr1'
    # same subnet given as prefix: the netmask form is kept, no rewrite
    assert new.find('ip').get('netmask') == '255.255.255.0' and new.find('ip').get('prefix') is None
    assert [r.get('start') for r in new.findall('ip/dhcp/range')] == ['192.168.111.2']
    assert new.find('ip/dhcp/range/lease') is not None
    assert [h.get('mac') for h in new.findall('ip/dhcp/host')] == ['52:54:00:00:00:01']
    assert N.model(new)['bridge.stp'] is False


def test_apply_spec_new_network_defaults():
    spec = N.spec_from_params(params(**WALKTHROUGH))
    new = N.apply_spec(None, spec, 'nat_network_01')
    assert new.find('forward').get('mode') == 'nat'
    assert dict(new.find('bridge').attrib) == dict(name='virbr1', stp='on', delay='0')
    assert new.find('ip/dhcp/range/lease').attrib == dict(expiry='12', unit='hours')
    isolated = N.apply_spec(None, N.spec_from_params(params(ipv4=ipv4('10.3.0.1/24'))), 'iso')
    assert isolated.find('forward') is None


SAMPLES = {
    'forward': ['route', 'isolated', 'nat'], 'forward_dev': ['eth1', None], 'nat_ports': [dict(start=2000, end=3000)],
    'bridge.name': ['kvx0'], 'bridge.stp': [False, True], 'bridge.delay': [5, 0], 'bridge.mtu': [9000, None],
    'bridge.mac': ['52:54:00:00:00:99'], 'domain': ['lab', None],
    'ipv4.address': [dict(address='10.5.0.1', prefix=16, netmask_form=True), dict(address='10.5.0.1', prefix=24)],
    'ipv4.dhcp_ranges': [[dict(start='10.5.0.2', end='10.5.0.9', lease=None), dict(start='10.5.0.20', end='10.5.0.29', lease=0)], []],
    'ipv4.dhcp_hosts': [[dict(mac='52:54:00:00:00:01', id=None, name='vm1', ip='10.5.0.50')], []],
    'ipv6.address': [dict(address='fd00:5::1', prefix=64), None],
    'ipv6.dhcp_ranges': [[dict(start='fd00:5::10', end='fd00:5::20', lease=7200)]],
    'ipv6.dhcp_hosts': [[dict(mac=None, id='00:01:02', name=None, ip='fd00:5::5')]],
    'dns_hosts': [[dict(ip='10.5.0.5', hostnames=['nfs', 'nfs.lab'])], []],
}


def test_every_option_writes_what_it_reads():
    """The table: each option's write is read back by its read, on a live network XML, nothing else touched."""
    assert set(SAMPLES) == set(o.name for o in N.OPTIONS)
    root = parse(fixture('network_nat_live.xml'))
    for option in N.OPTIONS:
        for value in SAMPLES[option.name]:
            before = N.model(root)
            option.write(root, value)
            after = N.model(root)
            assert option.same(after[option.name], value), (option.name, value, after[option.name])
            others = [k for k in after if k != option.name and after[k] != before[k]]
            if option.name == 'forward':
                assert set(others) <= {'nat_ports'}  # libvirt's NAT default comes and goes with the mode
            elif option.name.endswith('.address') and value is None:
                assert set(others) <= {'ipv6.dhcp_ranges', 'ipv6.dhcp_hosts'}  # the <ip> is gone with its lists
            else:
                assert others == [], (option.name, others)


def test_list_option_changes_only_what_differs():
    root = parse(fixture('network_nat_live.xml'))
    option = N.OPTIONS_BY_NAME['ipv4.dhcp_ranges']
    option.write(root, [dict(start='192.168.111.2', end='192.168.111.254', lease=43200),
                        dict(start='192.168.111.20', end='192.168.111.29', lease=None)])
    kept = root.find('ip/dhcp/range')
    option.write(root, [dict(start='192.168.111.2', end='192.168.111.254', lease=43200)])
    assert root.findall('ip/dhcp/range') == [kept]  # the same element, not rewritten
    assert option.changes([dict(start='a', end='b', lease=None)], [dict(start='a', end='c', lease=None)]) == [
        dict(option='ipv4.dhcp_ranges', action='remove', before=dict(start='a', end='b'), after=None),
        dict(option='ipv4.dhcp_ranges', action='add', before=None, after=dict(start='a', end='c'))]


def test_argument_spec_comes_from_the_table():
    for option in N.OPTIONS:
        group = N.ARGUMENT_SPEC[option.parent]['options'] if option.parent else N.ARGUMENT_SPEC
        for key, arg in option.args().items():
            assert group[key] == arg, option.name
    assert set(N.STRUCTURED_OPTIONS) | {'name', 'state', 'autostart', 'xml', 'restart'} == set(N.ARGUMENT_SPEC)


def test_update_operations_delete_first_and_dns():
    have = parse("""<network><name>n</name><dns><host ip='10.0.0.5'><hostname>a</hostname></host></dns>
        <ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.0.0.9'/></dhcp></ip>
        <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host id='0:1:2' ip='fd00::9'/></dhcp></ip></network>""")
    want = parse("""<network><name>n</name><dns><host ip='10.0.0.6'><hostname>b</hostname></host></dns>
        <ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.0.0.10'/></dhcp></ip>
        <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host id='0:1:2' ip='fd00::9'/></dhcp></ip></network>""")
    ops = N.update_operations(have, want)
    assert [(o[0], o[1], o[2]) for o in ops] == [
        ('delete', 'ipv4.dhcp_hosts', 0), ('delete', 'dns_hosts', -1),
        ('add', 'ipv4.dhcp_hosts', 0), ('add', 'dns_hosts', -1)]
    # a different subnet: host changes wait for the restart
    moved = parse(N.to_string(want).replace("10.0.0.1' prefix='24'", "10.0.0.1' prefix='25'").replace(
        'address="10.0.0.1" prefix="24"', 'address="10.0.0.1" prefix="25"'))
    assert [o[1] for o in N.update_operations(have, moved)] == ['dns_hosts', 'dns_hosts']


def test_xml_option_spec_and_kept_generated_values():
    name, root, spec = N.spec_from_xml(fixture('network_nat_live.xml'))
    assert name == 'nat_network_01'
    assert spec['forward'] == 'nat' and spec['ipv4.address']['prefix'] == 24 and spec['dns_hosts'] == []
    assert spec['ipv6.address'] is None and spec['domain'] is None  # the xml is the whole definition
    user = parse("<network><name>x</name><bridge/><ip address='10.0.0.1' prefix='24'/></network>")
    current = parse(fixture('network_nat_live.xml'))
    kept = N.xml_definition(user, current)
    assert kept.findtext('uuid') == '0b3a3a52-4e63-4f7e-8f55-7bd1d0b0e001'
    assert kept.find('bridge').get('name') == 'virbr1'
    assert kept.find('mac') is not None
    with pytest.raises(KvmError, match='names the network'):
        N.spec_from_xml(fixture('network_nat_live.xml'), 'other')
    with pytest.raises(KvmError, match='root element'):
        N.spec_from_xml('<domain/>', 'x')
    with pytest.raises(KvmError, match='malformed'):
        N.spec_from_xml('<network>', 'x')


# ---------------------------------------------------------------- the manager on the test driver
NEW = dict(name='kvmops-unit', forward='nat', bridge=bridge(name='kvunit0'),
           ipv4=ipv4('10.97.0.1/24', ranges=[dict(start='10.97.0.10', end='10.97.0.20')]))


def four_steps(client, writes, prm):
    """check -> real -> check -> real: changed, changed, not changed (no write), not changed (no write)."""
    results = []
    for check in (True, False, True, False):
        before = len(writes)
        result = run(client, prm, check_mode=check)
        if check:
            assert len(writes) == before, 'check mode wrote: %s' % writes[before:]
        results.append(result)
    assert [r['changed'] for r in results] == [True, True, False, False], [r['changes'] for r in results]
    assert results[1]['changes'] == results[0]['changes']
    return results


def test_create_start_autostart(client, writes):
    results = four_steps(client, writes, params(state='active', autostart=True, **NEW))
    assert writes == ['networkDefineXMLFlags', 'create', 'setAutostart']
    assert results[1]['changes'] == [
        dict(scope='config', option='state', action='define', before='absent', after='present'),
        dict(scope='live', option='state', action='start', before='inactive', after='active'),
        dict(scope='config', option='autostart', action='set', before=False, after=True)]
    assert results[1]['pending_restart'] == []
    net = results[-1]['network']
    assert net['active'] and net['autostart'] and net['persistent']
    assert net['bridge'] == 'kvunit0' and net['forward_mode'] == 'nat'
    predicted = results[0]['network']
    assert predicted['active'] and predicted['bridge'] == 'kvunit0' and predicted['uuid'] is None
    assert results[0]['diff']['before'] == '' and 'kvunit0' in results[0]['diff']['after']


def with_ipv4(value):
    """NEW with another ipv4 section."""
    spec = dict(NEW)
    spec['ipv4'] = value
    return spec


def test_dhcp_host_in_place_then_removed(client, writes):
    run(client, params(state='active', **NEW))
    del writes[:]
    hosts = [dict(mac='52:54:00:00:00:01', name='vm1', ip='10.97.0.5')]
    add = params(**with_ipv4(ipv4('10.97.0.1/24', hosts=hosts)))
    results = four_steps(client, writes, add)
    assert set(writes) == {'update'}, writes  # no redefine, no restart
    assert results[1]['pending_restart'] == [] and results[1]['restarted'] is False
    added = dict(mac='52:54:00:00:00:01', name='vm1', ip='10.97.0.5')
    assert results[1]['changes'] == [dict(scope=scope, option='ipv4.dhcp_hosts', action='add', before=None, after=added)
                                     for scope in ('config', 'live')]
    assert results[-1]['network']['addresses'][0]['dhcp_hosts'] == [dict(mac='52:54:00:00:00:01', name='vm1', ip='10.97.0.5')]
    # unrelated option left out: the ranges are kept
    assert results[-1]['network']['addresses'][0]['dhcp_ranges'] == [dict(start='10.97.0.10', end='10.97.0.20')]
    del writes[:]
    results = four_steps(client, writes, params(**with_ipv4(ipv4('10.97.0.1/24', hosts=[]))))
    assert set(writes) == {'update'}
    assert results[-1]['network']['addresses'][0]['dhcp_hosts'] == []


def test_dns_hosts_in_place(client, writes):
    prm = params(name='lab-nat', dns_hosts=[dict(ip='10.99.0.5', hostnames=['nfs']),
                                            dict(ip='10.99.0.6', hostnames=['db', 'db.lab.internal'])])
    four_steps(client, writes, prm)
    assert set(writes) == {'update'}
    xml = client.conn.networkLookupByName('lab-nat').XMLDesc(0)
    assert 'db.lab.internal' in xml and 'portgroup' in xml


def test_redefine_keeps_unspecified_and_generated(client, writes):
    # the test driver has no separate persistent definition of an active network: stop it first
    client.conn.networkLookupByName('lab-nat').destroy()
    del writes[:]
    results = four_steps(client, writes, params(name='lab-nat', bridge=bridge(stp=False)))
    assert writes == ['networkDefineXMLFlags']
    xml = client.conn.networkLookupByName('lab-nat').XMLDesc(0)
    root = parse(xml)
    assert root.findtext('uuid') == '8f1f4f4e-7a0c-4c1e-9d51-0d8a0a6f0a01'
    assert root.find('bridge').get('stp') == 'off'
    assert root.find('mac').get('address') == '52:54:00:aa:bb:01'
    assert root.find('portgroup') is not None and root.find('dns/host') is not None
    assert len(root.findall('ip/dhcp/host')) == 1
    diff = results[0]['diff']
    assert "stp=\"on\"" in diff['before'] and "stp=\"off\"" in diff['after']


def test_netmask_vs_prefix_is_no_change(client, writes):
    prm = params(name='lab-nat', forward='nat', bridge=bridge(name='kvlab0', stp=True, delay=0),
                 domain='lab.internal',
                 ipv4=ipv4('10.99.0.1/24', ranges=[dict(start='10.99.0.100', end='10.99.0.199')],
                           hosts=[dict(mac='52:54:00:00:00:0A', name='vm10', ip='10.99.0.10')]))
    for check in (True, False):
        result = run(client, prm, check_mode=check)
        assert result['changed'] is False, result['changes']
    assert writes == []


@pytest.mark.parametrize('overrides, message', [
    (dict(bridge=bridge(name='kvtaken0')), 'bridge kvtaken0 is already used by libvirt network taken'),
    (dict(ipv4=ipv4('10.98.0.129/25')), 'subnet 10.98.0.128/25 overlaps 10.98.0.0/24 of libvirt network taken'),
    (dict(ipv4=ipv4('10.99.0.1/16')), 'overlaps 10.99.0.0/24 of libvirt network lab-nat'),
])
def test_conflicts_fail_before_any_write(client, writes, overrides, message):
    prm = params(**dict(NEW, state='active', **overrides))
    for check in (True, False):
        with pytest.raises(KvmError) as err:
            run(client, prm, check_mode=check)
        assert message in err.value.msg and 'nothing was changed' in err.value.msg
    assert writes == []
    assert client.find_network('kvmops-unit') is None


@pytest.mark.parametrize('overrides, message', [
    (dict(name='lab-nat', forward='bridge', bridge=bridge(name='br9')), 'forward=bridge cannot keep'),
    (dict(name='lab-nat', xml='<network/>'), 'do not combine'),
    (dict(name=None), 'option name is required'),
    (dict(name='kvmops-unit', forward='nat'), 'needs an ipv4 address'),
    (dict(name='lab-nat', ipv4=ipv4('10.99.0.1/24', hosts=[dict(ip='10.99.0.7')])), 'needs mac or name'),
])
def test_bad_input_fails_before_any_write(client, writes, overrides, message):
    prm = params(**overrides)
    if 'xml' in overrides:
        prm['forward'] = 'nat'
    with pytest.raises(KvmError) as err:
        run(client, prm)
    assert message in err.value.msg
    assert writes == []


def test_xml_option_four_steps(client, writes):
    xml = """<network><name>kvmops-unit-xml</name><forward mode='route'/><bridge name='kvunit1'/>
      <ip address='10.96.0.1' prefix='24'><dhcp><range start='10.96.0.10' end='10.96.0.20'/></dhcp></ip></network>"""
    four_steps(client, writes, params(xml=xml, state='active'))
    assert writes == ['networkDefineXMLFlags', 'create']
    client.conn.networkLookupByName('kvmops-unit-xml').destroy()  # test driver: see above
    del writes[:]
    four_steps(client, writes, params(xml=xml.replace("mode='route'", "mode='open'")))
    assert writes == ['networkDefineXMLFlags']
    assert "mode='open'" in client.conn.networkLookupByName('kvmops-unit-xml').XMLDesc(0)


def test_xml_option_host_bridge(client, writes):
    xml = "<network><name>kvmops-unit-br</name><forward mode='bridge'/><bridge name='br0'/></network>"
    four_steps(client, writes, params(xml=xml))
    assert writes == ['networkDefineXMLFlags']
    assert client.conn.networkLookupByName('kvmops-unit-br').XMLDesc(0).count('br0') == 1


def test_state_inactive_and_absent(client, writes):
    run(client, params(state='active', **NEW))
    del writes[:]
    four_steps(client, writes, params(name='kvmops-unit', state='inactive'))
    assert writes == ['destroy']
    del writes[:]
    results = four_steps(client, writes, params(name='kvmops-unit', state='absent'))
    assert writes == ['undefine']
    assert results[1]['network'] is None and results[1]['diff']['after'] == ''
    assert client.find_network('kvmops-unit') is None


def test_pending_restart_names_the_options(client, writes):
    run(client, params(state='active', **NEW))
    del writes[:]
    moved = with_ipv4(ipv4('10.97.0.1/25'))
    moved['bridge'] = bridge(name='kvunit0', stp=False)
    moved = params(**moved)
    for check in (True, False, True):
        result = run(client, moved, check_mode=check)
        assert result['pending_restart'] == ['bridge.stp', 'ipv4.address'], result
        assert result['restarted'] is False
    assert writes == ['networkDefineXMLFlags']


def test_vocabulary():
    assert N.ARGUMENT_SPEC['name']['aliases'] == ['network']
    assert N.ARGUMENT_SPEC['state']['default'] == 'present'


def test_absent_on_missing_is_unchanged(client, writes):
    result = run(client, params(name='kvmops-none', state='absent'))
    assert result['changed'] is False and result['network'] is None and writes == []


def test_restart_on_a_remote_uri_reports_and_warns_about_guests_it_cannot_replug(client, writes):
    """The test driver is not a local URI: no ip-link re-plug, the guest is listed and the operator warned."""
    run(client, params(state='active', **NEW))
    dom = client.conn.createXML("""<domain type='test'><name>kvmops-unit-g</name><memory>65536</memory>
        <os><type>hvm</type></os><devices><interface type='network'><mac address='52:54:00:00:00:42'/>
        <source network='kvmops-unit'/></interface></devices></domain>""", 0)
    try:
        module = FakeModule(params(state='active', restart='if_needed',
                                   **with_ipv4(ipv4('10.97.0.1/25', ranges=[dict(start='10.97.0.10', end='10.97.0.20')]))))
        result = N.NetworkManager(module, client).run()
        assert result['restarted'] is True and module.commands == []
        assert result['changes'][-1] == dict(scope='live', option='state', action='restart', before='active',
                                             after='active', options=['ipv4.address'])
        assert result['pending_restart'] == []
        tap = parse(dom.XMLDesc(0)).find('devices/interface/target').get('dev')     # named by libvirt
        assert result['replugged'] == [dict(guest='kvmops-unit-g', domain='kvmops-unit-g', mac='52:54:00:00:00:42', interface=tap,
                                            bridge='kvunit0', replugged=False)]
        assert len(module.warnings) == 1 and '%s of kvmops-unit-g' % tap in module.warnings[0]
    finally:
        dom.destroy()


# ---------------------------------------------------------------- hostile input and libvirt's validation flag
@pytest.mark.parametrize('xml, message', [
    ("<network><name>bad\nname</name></network>", '^xml: invalid network name'),
    ("<network><name>a/b</name></network>", '^xml: invalid network name'),
    ("<network><name>n1</name><domain name='lab&#10;addn-hosts=/etc/shadow'/></network>", '^xml: <domain name> must not'),
    ("<network><name>n1</name><domain name='lab internal'/></network>", '^xml: domain: invalid DNS name'),
    ("<network><name>n1</name><forward mode='nat' dev='eth0;x'/><ip address='10.9.0.1' prefix='24'/></network>",
     '^xml: forward_dev: invalid interface name'),
    ("<network><name>n1</name><dns><txt name='t' value='a&#10;b'/></dns></network>",
     '^xml: <txt value> must not contain control characters'),
    ("<network><name>n1</name><dns><host ip='10.9.0.5'><hostname>a&#10;b</hostname></host></dns>"
     "<ip address='10.9.0.1' prefix='24'/></network>", r'^xml: <hostname> must not contain control|^dns_hosts\[0\]'),
])
def test_xml_option_hostile(xml, message):
    with pytest.raises(KvmError, match=message):
        N.spec_from_xml(xml)


@pytest.mark.parametrize('name', ['bad\nname', 'a/b', "x'y", '$(id)', '-rf', ''])
def test_name_refused_before_lookup(client, writes, name):
    with pytest.raises(KvmError, match='^name: ' if name else 'option name is required'):
        run(client, params(name=name, state='absent'))
    assert writes == []


def test_define_uses_validate_flag(client, monkeypatch):
    seen = []
    original = libvirt.virConnect.networkDefineXMLFlags

    def spy(self, xml, flags=0):
        seen.append(flags)
        return original(self, xml, flags)
    monkeypatch.setattr(libvirt.virConnect, 'networkDefineXMLFlags', spy)
    run(client, params(**NEW))
    assert seen == [libvirt.VIR_NETWORK_DEFINE_VALIDATE]


def test_define_falls_back_without_daemon_support(client, writes, monkeypatch):
    """An older libvirtd (no networkDefineXMLFlags, or no validate flag): the plain call, after our checks."""
    def unsupported(self, xml, flags=0):
        err = libvirt.libvirtError('this function is not supported by the connection driver: virNetworkDefineXMLFlags')
        err.err = (libvirt.VIR_ERR_NO_SUPPORT, 0, str(err), 0, None, None, None, 0, 0)
        raise err
    monkeypatch.setattr(libvirt.virConnect, 'networkDefineXMLFlags', unsupported)
    result = run(client, params(**NEW))
    assert result['changed']
    assert writes[0] == 'networkDefineXML'


def test_define_without_the_flag_in_the_bindings(client, writes, monkeypatch):
    monkeypatch.delattr(libvirt, 'VIR_NETWORK_DEFINE_VALIDATE')
    assert run(client, params(**NEW))['changed']
    assert writes[0] == 'networkDefineXML'


def test_schema_refusal_is_reported(client):
    """What libvirt's schema refuses is a clear failure naming the network, never a traceback."""
    with pytest.raises(KvmError, match='network kvmops-unit-x'):
        N.define_network(client, 'kvmops-unit-x', "<network><name>kvmops-unit-x</name><bogus/></network>")
