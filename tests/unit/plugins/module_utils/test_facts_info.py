"""kvm_info's logic against libvirt's test driver with tests/unit/fixtures/node.xml."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _info
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import version_string


def _gather(client, **params):
    merged = dict(gather=list(_info.GATHER_CHOICES), name=[])
    merged.update(params)
    return _info.gather(client, merged)


def test_domains_match_the_fixture(client):
    result = _gather(client, gather=['domains'])
    assert [d['name'] for d in result['domains']] == ['db01', 'web01']
    web = result['domains'][1]
    assert web['uuid'] == '4e1a2b3c-0000-4000-8000-000000000001'
    assert web['vcpus'] == {'current': 1, 'maximum': 2}
    assert web['memory']['max_kib'] == 1024 * 1024
    assert [(d['target'], d['device'], d['format'], d['cache'], d['readonly']) for d in web['disks']] == [
        ('vda', 'disk', 'qcow2', 'writeback', False),
        ('sda', 'cdrom', None, None, True),
    ]
    assert web['interfaces'][0]['mac'] == '52:54:00:a3:19:8b'
    assert web['interfaces'][0]['source'] == 'default'
    assert web['graphics'] == [dict(type='vnc', listen='127.0.0.1', port=5920, autoport=False,
                                    keymap='en-us', password_set=False)]
    assert web['state'] in ('running', 'shutoff')


def test_networks_and_pools(client):
    result = _gather(client, gather=['networks', 'pools'])
    nets = {n['name']: n for n in result['networks']}
    nat = nets['nat_network_01']
    assert nat['forward_mode'] == 'nat' and nat['bridge'] == 'virbr1'
    assert nat['addresses'][0]['dhcp_ranges'] == [dict(start='192.168.111.2', end='192.168.111.254')]
    assert nat['addresses'][0]['dhcp_hosts'][0]['ip'] == '192.168.111.10'
    assert nets['isolated01']['forward_mode'] == 'isolated'
    pools = {p['name']: p for p in result['pools']}
    images = pools['images']
    assert images['type'] == 'dir' and images['target_path'] == '/var/lib/libvirt/images'
    assert [(v['name'], v['format'], v['capacity']) for v in images['volumes']] == [
        ('web01.qcow2', 'qcow2', 8 * 1024 ** 3)]


@pytest.mark.parametrize('patterns, expected', [
    (['web01'], ['web01']),
    (['*01'], ['db01', 'web01']),
    (['nomatch'], []),
])
def test_name_filter(client, patterns, expected):
    result = _gather(client, gather=['domains'], name=patterns)
    assert [d['name'] for d in result['domains']] == expected
    assert ('msg' in result) is (not expected)


def test_host_report_from_test_driver(client):
    host = _gather(client, gather=['host'])['host']
    assert host['hypervisor'] == 'TEST'
    assert host['node']['cpus'] == 4
    assert host['virtualization']['local'] is True
    # The test driver has no domain capabilities: reported, not crashed on.
    assert host['virtualization']['domain_types']['kvm']['available'] is False
    assert host['virtualization']['preferred_domain_type'] == 'qemu'


@pytest.mark.parametrize('uri, local', [
    ('qemu:///system', True), ('test:///default', True),
    ('qemu+ssh://root@hv01/system', False), ('qemu+tcp://10.0.0.2/system', False),
])
def test_is_local_uri(uri, local):
    from ansible_collections.kvmops.kvm.plugins.module_utils._client import is_local_uri
    assert is_local_uri(uri) is local


@pytest.mark.parametrize('number, text', [(9000000, '9.0.0'), (7002022, '7.2.22'), (0, None)])
def test_version_string(number, text):
    assert version_string(number) == text


def test_connection_failure_names_the_uri(fake_module):
    module = fake_module({'uri': 'test:///nonexistent/kvmops/node.xml'})
    with pytest.raises(SystemExit):
        run(module, _gather)
    msg = module.fail_args['msg']
    assert msg.startswith('cannot connect to libvirt at test:///nonexistent/kvmops/node.xml: ')
    assert '\n' not in msg


def test_libvirt_errors_name_uri_and_object(fake_module, node_uri):
    module = fake_module({'uri': node_uri})

    def boom(client):
        dom = client.conn.lookupByName('web01')
        with client.errors('domain web01'):
            dom.setVcpusFlags(64, 0)   # more than the maximum: libvirt refuses
        return {}

    with pytest.raises(SystemExit):
        run(module, boom)
    msg = module.fail_args['msg']
    assert msg.startswith('libvirt error on %s (domain web01): ' % node_uri)


def test_unexpected_errors_are_reported_not_raised(fake_module, node_uri):
    module = fake_module({'uri': node_uri})

    def broken(_client):
        raise ValueError('bad thing')

    with pytest.raises(SystemExit):
        run(module, broken)
    assert module.fail_args['msg'] == 'unexpected error (ValueError): bad thing'
    assert 'Traceback' in module.fail_args['exception']


def test_uri_falls_back_to_environment(fake_module, monkeypatch, node_uri):
    monkeypatch.setenv('LIBVIRT_DEFAULT_URI', node_uri)
    assert LibvirtClient(fake_module({'uri': None})).uri == node_uri
    monkeypatch.delenv('LIBVIRT_DEFAULT_URI')
    assert LibvirtClient(fake_module({'uri': None})).uri == 'qemu:///system'


def test_lookups_return_none_for_missing(client):
    assert client.find_domain('nope') is None
    assert client.find_network('nope') is None
    assert client.find_pool('nope') is None
    assert client.find_domain('web01').name() == 'web01'


def test_kvm_error_carries_facts():
    err = KvmError('x', changed=False)
    assert err.msg == 'x' and err.facts == {'changed': False}


def test_hardware_alone_never_connects(fake_module):
    # A URI that cannot work: gathering only the hardware probes must not touch it.
    client = LibvirtClient(fake_module({'uri': 'test:///nonexistent/never/opened.xml'}))
    result = _info.gather(client, dict(gather=['hardware'], name=[]))
    assert client._conn is None  # pylint: disable=protected-access
    assert set(result['hardware']) >= {'cpu_flags', 'hw_flag', 'dev_kvm', 'kvm_modules', 'nested',
                                       'firmware_disabled', 'kvm_usable'}
    assert 'host' not in result and 'domains' not in result


@pytest.mark.parametrize('gather, needed', [
    (['hardware'], False), (['hardware', 'host'], True), (['pools'], True),
])
def test_needs_libvirt(gather, needed):
    assert _info.needs_libvirt(dict(gather=gather)) is needed


@pytest.mark.parametrize('patterns, message', [
    (['web01\n'], r'^name\[0\]: invalid name or pattern'),
    (['ok', 'a/b'], r'^name\[1\]: invalid name or pattern'),
    (["{{ lookup('pipe','id') }}"], r'^name\[0\]: invalid name or pattern'),
    (['$(id)'], r'^name\[0\]: invalid name or pattern'),
])
def test_name_patterns_refused(client, patterns, message):
    with pytest.raises(KvmError, match=message):
        _gather(client, gather=['domains'], name=patterns)


@pytest.mark.parametrize('patterns', [['web*'], ['db0[1-2]', 'web0?'], ['[!x]*']])
def test_name_patterns_with_wildcards(client, patterns):
    _gather(client, gather=['domains'], name=patterns)


@pytest.mark.parametrize('uri', ['test+ext:///default?command=/bin/sh', 'qemu+ssh://h/system?netcat=/x', 'xen:///'])
def test_uri_checked_even_for_hardware_only(fake_module, uri):
    client = LibvirtClient(fake_module({'uri': uri}))
    with pytest.raises(KvmError, match='^uri: '):
        _info.gather(client, dict(gather=['hardware'], name=[]))
    assert client._conn is None  # pylint: disable=protected-access
