"""The one guest-address reader (_addresses): parsing untrusted answers, source order, kvm_domain's wait_for.

libvirt's answers are played by fake domains (any value a hostile guest agent or lease file could
produce); the test driver (test:///default, whose guest reports 192.168.122.3 from every source)
stands for a real connection; the port probe is tried against real loopback sockets.
"""

import ipaddress
import socket

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kvmops.kvm.plugins.module_utils import _addresses as addr
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError
from fakes import FakeModule

LEASE, AGENT, ARP = (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                     libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP)
MAC = '52:54:00:12:34:56'


def iface(*addrs, hwaddr=MAC):
    return dict(hwaddr=hwaddr, addrs=[dict(addr=a, prefix=24, type=0) for a in addrs])


class FakeDom(object):
    """A running guest whose sources answer from ``answers`` ({flag: value, or an exception, or a callable})."""

    def __init__(self, answers, active=True):
        self.answers = answers
        self.active = active
        self.asked = []

    def interfaceAddresses(self, source, flags):
        self.asked.append(source)
        answer = self.answers.get(source, {})
        if callable(answer):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def isActive(self):
        return self.active

    def name(self):
        return 'g1'


class FakeClient(object):
    def __init__(self, uri='qemu:///system'):
        self.uri = uri

    def call(self, _what, func, *args):
        return func(*args)


def libvirt_error(text):
    exc = libvirt.libvirtError(text)
    exc.get_error_message = lambda: text
    return exc


# ---------------------------------------------------------------- parsing untrusted answers
def test_parse_keeps_checked_parts_in_a_fixed_shape():
    found = {'vnet1': iface('10.0.0.7'), 'eth0': dict(hwaddr='52:54:00:AB:CD:EF', addrs=[
        dict(addr='fe80::1', prefix=64, type=1), dict(addr='2001:db8:0:0::1', prefix=64, type=0)])}
    assert addr.parse_interfaces(found, 'agent') == [
        dict(address='fe80::1', prefix=64, family='ipv6', mac='52:54:00:ab:cd:ef', interface='eth0', source='agent'),
        # the family comes from the address itself, not from the type the answer claims
        dict(address='2001:db8::1', prefix=64, family='ipv6', mac='52:54:00:ab:cd:ef', interface='eth0', source='agent'),
        dict(address='10.0.0.7', prefix=24, family='ipv4', mac=MAC, interface='vnet1', source='agent'),
    ]


@pytest.mark.parametrize('value', [
    "{{ lookup('pipe', 'id') }}", '10.0.0.1; rm -rf /', '10.0.0.1\n10.0.0.2', '999.1.1.1', '010.0.0.1', '',
    None, 7, b'10.0.0.1', ['10.0.0.1'], {'addr': '10.0.0.1'}, ' ' * 200 + '10.0.0.1', '10.0.0.0/24', 'localhost',
])
def test_a_value_that_is_no_ip_address_is_dropped(value):
    assert addr.parse_interfaces({'eth0': dict(hwaddr=MAC, addrs=[dict(addr=value, prefix=24)])}, 'lease') == []


def test_hostile_names_macs_and_prefixes_are_neutralised():
    found = {
        'eth0\x1b[2J\n{{ x }}' + 'n' * 100: dict(hwaddr='not-a-mac', addrs=[dict(addr='fe80::5%eth0', prefix='24')]),
        7: dict(hwaddr='52:54:00:00:00:01\n', addrs=[dict(addr='10.1.1.1', prefix=True), dict(addr='10.1.1.2', prefix=33)]),
    }
    entries = addr.parse_interfaces(found, 'agent')
    assert [(e['address'], e['prefix'], e['mac']) for e in entries] == [
        ('10.1.1.1', None, '52:54:00:00:00:01'), ('10.1.1.2', None, '52:54:00:00:00:01'), ('fe80::5', None, None)]
    assert entries[0]['interface'] == '7'
    name = entries[2]['interface']
    assert len(name) == addr.MAX_NAME and name.startswith('eth0?[2J?{{ x }}')


@pytest.mark.parametrize('found', [None, [], 'x', {'eth0': None}, {'eth0': 'x'}, {'eth0': {'addrs': None}},
                                   {'eth0': {'addrs': 'x'}}, {'eth0': {'addrs': [None, 'x', 5]}}])
def test_malformed_answers_give_nothing_and_no_traceback(found):
    assert addr.parse_interfaces(found, 'agent') == []


def test_a_flood_is_cut_and_duplicates_listed_once():
    many = {'eth0': iface(*['10.9.%d.%d' % (i // 250, i % 250 + 1) for i in range(1000)])}
    assert len(addr.parse_interfaces(many, 'agent')) == addr.MAX_PER_SOURCE
    assert len(addr.parse_interfaces({'eth0': iface('10.0.0.1', '10.0.0.1', '10.0.0.01'.replace('01', '1'))}, 'agent')) == 1


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40), st.binary(max_size=10)),
                   lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                   max_leaves=20)
ADDRS = st.lists(st.fixed_dictionaries({'addr': st.one_of(st.ip_addresses().map(str), st.text(max_size=40), ANY),
                                        'prefix': ANY, 'type': ANY}), max_size=4)
ANSWERS = st.one_of(ANY, st.dictionaries(st.one_of(st.text(max_size=80), st.integers()),
                                         st.one_of(ANY, st.fixed_dictionaries({'hwaddr': ANY, 'addrs': st.one_of(ADDRS, ANY)})),
                                         max_size=4))


@PROPS
@given(ANSWERS)
def test_any_answer_gives_only_checked_entries(found):
    for entry in addr.parse_interfaces(found, 'agent'):
        ip = ipaddress.ip_address(entry['address'])
        assert str(ip) == entry['address'] and entry['family'] == 'ipv%d' % ip.version
        assert entry['mac'] is None or addr._MAC.fullmatch(entry['mac'])
        assert entry['prefix'] is None or (isinstance(entry['prefix'], int) and not isinstance(entry['prefix'], bool) and 0 <= entry['prefix'] <= 128)
        assert entry['interface'] is None or (len(entry['interface']) <= addr.MAX_NAME
                                              and not addr._CONTROL.search(entry['interface']))


PROC_ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.0.0.5         0x1         0x2         52:54:00:12:34:56     *        virbr9
10.0.0.6         0x1         0x0         52:54:00:12:34:56     *        virbr9
10.0.0.7         0x1         0x2         52:54:00:99:99:99     *        virbr9
10.0.0.8         0x1         zz          52:54:00:12:34:56     *        virbr9
{{x}}            0x1         0x2         52:54:00:12:34:56     *        virbr9
10.0.0.9         0x1         0x6
10.0.0.5         0x1         0x2         52:54:00:12:34:56     *        virbr9
"""


def test_proc_arp_gives_complete_entries_of_the_guest_macs_only():
    assert addr.parse_proc_arp(PROC_ARP, ['52:54:00:12:34:56', None, 'junk']) == [
        dict(address='10.0.0.5', prefix=None, family='ipv4', mac=MAC, interface='virbr9', source='arp')]
    assert addr.parse_proc_arp('', [MAC]) == []


def test_proc_arp_of_a_missing_file_is_nothing(tmp_path):
    assert addr.proc_arp_addresses([MAC], str(tmp_path / 'none')) == []
    path = tmp_path / 'arp'
    path.write_text(PROC_ARP)
    assert [e['address'] for e in addr.proc_arp_addresses([MAC], str(path))] == ['10.0.0.5']


# ---------------------------------------------------------------- sources and their order
def test_sources_are_asked_in_the_given_order_and_errors_recorded(monkeypatch):
    monkeypatch.setattr(addr, 'proc_arp_addresses', lambda macs: [])
    dom = FakeDom({LEASE: {'vnet0': iface('10.0.0.5')}, AGENT: libvirt_error('QEMU guest agent is not configured'),
                   ARP: libvirt_error('wrong nlmsg len')})
    by_source, errors = addr.read(FakeClient(), dom, ['agent', 'arp', 'lease'], [MAC])
    assert dom.asked == [AGENT, ARP, LEASE]
    assert by_source == dict(agent=[], arp=[], lease=addr.parse_interfaces({'vnet0': iface('10.0.0.5')}, 'lease'))
    assert errors == dict(agent='QEMU guest agent is not configured',
                          arp="wrong nlmsg len (no entry in this host's ARP table either)")


def test_arp_falls_back_to_this_hosts_table_for_a_local_uri_only(monkeypatch):
    seen = []
    monkeypatch.setattr(addr, 'proc_arp_addresses', lambda macs: seen.append(macs) or [dict(
        address='10.0.0.5', prefix=None, family='ipv4', mac=MAC, interface='virbr9', source='arp')])
    dom = FakeDom({ARP: libvirt_error('wrong nlmsg len')})
    by_source, errors = addr.read(FakeClient(), dom, ['arp'], [MAC])
    assert [e['address'] for e in by_source['arp']] == ['10.0.0.5'] and errors == {} and seen == [[MAC]]
    by_source, errors = addr.read(FakeClient('qemu+ssh://root@hv/system'), dom, ['arp'], [MAC])
    assert by_source['arp'] == [] and errors == dict(arp='wrong nlmsg len') and len(seen) == 1


@pytest.mark.parametrize('family, expect', [('ipv4', ('10.0.0.9', 'agent')), ('ipv6', ('2001:db8::9', 'agent')),
                                            ('any', ('10.0.0.9', 'agent'))])
def test_the_first_usable_address_in_source_order_wins(family, expect):
    by_source = dict(
        lease=[],
        agent=addr.parse_interfaces({'lo': iface('127.0.0.1', '::1', hwaddr='00:00:00:00:00:00'),
                                     'eth0': iface('fe80::9', '10.0.0.9', '2001:db8::9')}, 'agent'),
        arp=addr.parse_interfaces({'x': iface('10.0.0.8')}, 'arp'))
    assert addr.pick_address(by_source, ['lease', 'agent', 'arp'], family) == expect
    assert addr.pick_address(by_source, ['arp', 'agent'], 'ipv4') == ('10.0.0.8', 'arp')
    unusable = [e for e in by_source['agent'] if e['interface'] == 'lo' or e['address'] == 'fe80::9']
    assert len(unusable) == 3 and addr.pick_address(dict(agent=unusable), ['agent'], 'any') == (None, None)


def test_domain_addresses_of_the_test_driver():
    client = LibvirtClient(FakeModule({'uri': 'test:///default'}))
    try:
        dom = client.find_domain('test')
        facts = dict(active=True, interfaces=[dict(mac='aa:bb:cc:dd:ee:ff')])
        found = addr.domain_addresses(client, dom, facts, ['lease', 'agent'])
        assert found == dict(address_errors={}, addresses=[
            dict(address='192.168.122.3', prefix=24, family='ipv4', mac='aa:bb:cc:dd:ee:ff', interface='testnet0',
                 source=source) for source in ('lease', 'agent')])
        assert addr.domain_addresses(client, dom, dict(facts, active=False)) == dict(addresses=[], address_errors={})
        assert addr.domain_addresses(client, None, dict(active=False)) == dict(addresses=[], address_errors={})
        # kvm_domain without wait_for: read once, from every source
        assert addr.guest_addresses(client, dom, 'test', facts) == addr.domain_addresses(client, dom, facts)
    finally:
        client.close()


# ---------------------------------------------------------------- wait_for: the spec
def spec(**kwargs):
    raw = dict(address=True, sources=['lease', 'agent', 'arp'], family='ipv4', port=None, timeout=300)
    raw.update(kwargs)
    return raw


def test_wait_spec_normalizes():
    assert addr.wait_spec(None, 'running') is None
    assert addr.wait_spec(spec(address=False), 'running') is None
    assert addr.wait_spec(spec(sources=['agent', 'lease', 'agent'], port=22, timeout=0), 'present') == dict(
        sources=['agent', 'lease'], family='ipv4', port=22, timeout=0)


@pytest.mark.parametrize('raw, state, expect', [
    (spec(), 'shutdown', 'wait_for: a guest in state shutdown has no address to wait for'),
    (spec(), 'absent', 'wait_for: a guest in state absent'),
    (spec(), 'paused', 'wait_for: a guest in state paused'),
    (spec(sources=[]), 'running', 'wait_for.sources: name at least one of lease, agent, arp'),
    (spec(port=0), 'running', 'wait_for.port'),
    (spec(port=65536), 'running', 'wait_for.port'),
    (spec(timeout=-1), 'running', 'wait_for.timeout'),
    (spec(timeout=10 ** 9), 'running', 'wait_for.timeout'),
    (spec(address=False, port=22), 'running', 'wait_for.port: needs wait_for.address'),
])
def test_wait_spec_refusals_name_the_option(raw, state, expect):
    with pytest.raises(ValidationError) as err:
        addr.wait_spec(raw, state)
    assert str(err.value).startswith(expect), str(err.value)


# ---------------------------------------------------------------- wait_for: the wait
class Clock(object):
    """Time that passes only when the wait sleeps or a probe takes its timeout."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def run_wait(dom, clock, probe=None, **kwargs):
    normalized = addr.wait_spec(spec(**kwargs), 'running')
    return addr.wait(FakeClient('qemu+ssh://hv/system'), dom, 'g1', [MAC], normalized, clock=clock, sleep=clock.sleep,
                     probe=probe or (lambda *args: pytest.fail('no port to probe')))


def test_wait_returns_once_an_address_appears():
    answers = iter([{}, {}, {'vnet0': iface('10.0.0.5')}])
    dom = FakeDom({LEASE: lambda: next(answers), AGENT: libvirt_error('QEMU guest agent is not configured')})
    clock = Clock()
    got = run_wait(dom, clock, sources=['lease', 'agent'], timeout=60)
    assert (got['address'], got['address_source']) == ('10.0.0.5', 'lease')
    assert got['address_errors'] == dict(agent='QEMU guest agent is not configured')
    assert clock.sleeps == [addr.POLL, addr.POLL]


def test_wait_for_a_port_tries_each_address_until_one_accepts():
    dom = FakeDom({LEASE: {'vnet0': iface('10.0.0.5')}, AGENT: {'eth0': iface('10.0.0.6')}})
    tried = []

    def probe(address, port, timeout):
        tried.append((address, port))
        return (address == '10.0.0.6' and len(tried) > 2), 'Connection refused'
    clock = Clock()
    got = run_wait(dom, clock, probe=probe, sources=['lease', 'agent'], port=2222, timeout=60)
    assert (got['address'], got['address_source']) == ('10.0.0.6', 'agent')
    assert tried == [('10.0.0.5', 2222), ('10.0.0.6', 2222), ('10.0.0.5', 2222), ('10.0.0.6', 2222)]


def test_timeout_without_an_address_names_each_source():
    dom = FakeDom({LEASE: {}, AGENT: libvirt_error('QEMU guest agent is not connected'),
                   ARP: {'x': iface('fe80::1')}})
    clock = Clock()
    with pytest.raises(KvmError) as err:
        run_wait(dom, clock, timeout=7)
    assert err.value.msg == ('wait_for: guest g1 has no usable IPv4 address from lease, agent, arp after 7 s '
                             '(lease: none yet; agent: QEMU guest agent is not connected; arp: only fe80::1)')
    assert clock.now == 7


def test_timeout_on_a_closed_port_names_the_address_and_the_port():
    dom = FakeDom({LEASE: {'vnet0': iface('10.0.0.5')}})
    clock = Clock()
    with pytest.raises(KvmError) as err:
        run_wait(dom, clock, probe=lambda *args: (False, 'Connection refused'), sources=['lease'], port=23, timeout=5)
    assert err.value.msg == ('wait_for: guest g1 has the address 10.0.0.5 (lease) but nothing accepted a TCP '
                             'connection on port 23 from this host within 5 s (10.0.0.5: Connection refused)')


def test_a_guest_that_stops_ends_the_wait():
    with pytest.raises(KvmError) as err:
        run_wait(FakeDom({}, active=False), Clock())
    assert 'wait_for: guest g1 is not running' in err.value.msg


def test_check_mode_looks_once_and_never_waits():
    dom = FakeDom({LEASE: {}, AGENT: {}, ARP: {}})
    got = addr.guest_addresses(FakeClient('qemu+ssh://hv/system'), dom, 'g1', dict(active=True, interfaces=[]),
                               addr.wait_spec(spec(port=22, timeout=600), 'running'), check=True)
    assert got == dict(addresses=[], address_errors={}, address=None, address_source=None)
    assert dom.asked == [LEASE, AGENT, ARP]


def test_port_open_against_real_loopback_sockets():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert addr.port_open('127.0.0.1', port, 2) == (True, None)
    finally:
        server.close()
    ok, why = addr.port_open('127.0.0.1', port, 2)
    assert not ok and why


# ---------------------------------------------------------------- the three users of the reader
def test_kvm_info_domains_carry_their_addresses():
    from ansible_collections.kvmops.kvm.plugins.module_utils import _info
    client = LibvirtClient(FakeModule({'uri': 'test:///default'}))
    try:
        result = _info.gather(client, dict(gather=['domains'], name=['test'], address_sources=['agent', 'agent']))
        assert result['domains'][0]['addresses'] == [dict(address='192.168.122.3', prefix=24, family='ipv4',
                                                          mac='aa:bb:cc:dd:ee:ff', interface='testnet0', source='agent')]
        assert result['domains'][0]['address_errors'] == {}
        result = _info.gather(client, dict(gather=['domains'], name=['test'], address_sources=[]))
        assert result['domains'][0]['addresses'] == []
    finally:
        client.close()


def test_the_inventory_reads_through_the_same_reader(monkeypatch):
    from ansible_collections.kvmops.kvm.plugins.module_utils import _inventory
    seen = []
    real = _inventory.read
    monkeypatch.setattr(_inventory, 'read', lambda *args: seen.append(args[2]) or real(*args))
    data = _inventory.gather_uri('test:///default', sources=['arp', 'lease'])
    guest = data['guests'][0]
    assert seen == [['arp', 'lease']]
    assert (guest['address'], guest['address_source']) == ('192.168.122.3', 'arp')
    assert [a['source'] for a in guest['addresses']] == ['arp', 'lease'] == [a['source'] for a in guest['facts']['addresses']]
    assert guest['interfaces'][0]['addresses'] == ['192.168.122.3']


# ---------------------------------------------------------------- kvm_domain's Manager on the test driver
def domain_run(check=False, **args):
    from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, Manager
    module = FakeModule(dict(args, uri='test:///default'), check_mode=check, spec=ARGUMENT_SPEC)
    client = LibvirtClient(module)
    try:
        return Manager(client, module).run(), client
    finally:
        client.close()


def wait_for(**kwargs):
    return dict(dict(address=True, sources=['lease', 'agent', 'arp'], family='ipv4', port=None, timeout=0), **kwargs)


def test_kvm_domain_returns_the_address_it_waited_for():
    result, _client = domain_run(name='test', state='running', wait_for=wait_for(sources=['agent', 'lease']))
    assert result['changed'] is False
    assert (result['address'], result['address_source']) == ('192.168.122.3', 'agent')
    assert [a['source'] for a in result['domain']['addresses']] == ['agent', 'lease']
    plain, _client = domain_run(name='test', state='running')
    assert 'address' not in plain and [a['source'] for a in plain['domain']['addresses']] == ['lease', 'agent', 'arp']


def test_kvm_domain_wait_failure_reports_what_the_task_changed(monkeypatch):
    monkeypatch.setattr(addr, 'port_open', lambda *args: (False, 'Connection refused'))
    try:
        with pytest.raises(KvmError) as err:
            domain_run(name='test', state='running', autostart=True, wait_for=wait_for(sources=['lease'], port=22))
        assert err.value.msg == ('wait_for: guest test has the address 192.168.122.3 (lease) but nothing accepted a TCP '
                                 'connection on port 22 from this host within 0 s (192.168.122.3: Connection refused)')
        facts = err.value.facts
        assert facts['changed'] is True and [(c['option'], c['after']) for c in facts['changes']] == [('autostart', True)]
        assert facts['domain']['name'] == 'test'
        # check mode never waits: the same kind of task succeeds, and says what it would change
        result, _client = domain_run(check=True, name='test', state='running', autostart=False,
                                     wait_for=wait_for(sources=['lease'], port=22, timeout=600))
        assert result['changed'] is True and result['address'] == '192.168.122.3'
    finally:
        domain_run(name='test', autostart=False)   # the test driver's guests are shared by the whole process


def test_kvm_domain_refuses_wait_for_on_a_stopping_guest_before_any_write():
    with pytest.raises(ValidationError) as err:
        domain_run(name='test', state='shutdown', wait_for=wait_for())
    assert str(err.value).startswith('wait_for: a guest in state shutdown has no address to wait for')
