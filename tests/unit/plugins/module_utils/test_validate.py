"""The shared validation layer: examples, then properties over random input (hypothesis).

Every checker either returns a normalized value that is safe where the collection writes it, or raises
ValidationError whose message starts with the option's name; nothing else ever escapes.
"""

import ipaddress
import shlex
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as v
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, check_uri, kvm_module

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_CHARS = '$`;|&<>()\'" \t\n\r\x00\\/{}*?[]#~!=%@:'
ANY = st.one_of(st.text(), st.text(alphabet=HOSTILE_CHARS + string.ascii_letters + string.digits + '.-_'),
                st.integers(), st.none(), st.booleans(), st.floats(allow_nan=True), st.lists(st.text(max_size=3)),
                st.binary(max_size=20))


def refused(func, option, value, *args, **kwargs):
    with pytest.raises(v.ValidationError) as info:
        func(option, value, *args, **kwargs)
    assert info.value.msg.startswith(option + ': '), info.value.msg
    return info.value.msg


# ---------------------------------------------------------------- examples
@pytest.mark.parametrize('value', ['vm01', 'web_1.example', 'a', 'db+2:x@y-z', 'A' * 200])
def test_object_name_accepts(value):
    assert v.object_name('name', value) == value


@pytest.mark.parametrize('value', ['', 'vm01\n', '\nvm', 'a/b', '../x', '.hidden', '-x', 'a b', 'a$(id)', 'a`id`',
                                   "a'b", 'a"b', 'a;b', '{{ lookup("pipe","id") }}', 'A' * 201, 'vm\x00', None, 3,
                                   'v\u2028m', 'ünï'])
def test_object_name_refuses(value):
    refused(v.object_name, 'name', value)


def test_trailing_newline_is_refused_with_the_option_named():
    msg = refused(v.object_name, 'name', 'vm01\n')
    assert "'vm01\\n'" in msg  # the value is shown escaped, never as a raw newline


@pytest.mark.parametrize('value', ['br0', 'eth0.100', 'virbr-1', 'a_b', 'x' * 15])
def test_ifname_accepts(value):
    assert v.ifname('bridge', value) == value


@pytest.mark.parametrize('value', ['br$(id>x)', 'br`id`', 'br;id', 'br(0)', 'x' * 16, '', '.', '..', 'a b', 'a/b',
                                   'a:b', 'br0\n', '-br', "br'0", 'br"0', 'br#0'])
def test_ifname_refuses(value):
    refused(v.ifname, 'bridge', value)


@pytest.mark.parametrize('value, norm', [('Host1', 'host1'), ('a.example.com', 'a.example.com'),
                                         ('x-1.y', 'x-1.y'), ('a' * 63, 'a' * 63)])
def test_dns_name_accepts(value, norm):
    assert v.dns_name('dns.hosts[0].hostnames[0]', value) == norm


@pytest.mark.parametrize('value', ['host\nname', 'a..b', '-a', 'a-', 'a_b', 'a' * 64, ('a' * 60 + '.') * 5, '',
                                   'a b', 'a.b.', 'x;y', u'h\u00e9'])
def test_dns_name_refuses(value):
    refused(v.dns_name, 'domain', value)


def test_mac_normalizes_and_refuses_multicast():
    assert v.mac('mac', '52-54-00-AB-CD-EF') == '52:54:00:ab:cd:ef'
    refused(v.mac, 'mac', '01:00:5e:00:00:01')
    refused(v.mac, 'mac', '52:54:00:ab:cd')
    refused(v.mac, 'mac', '52:54:00:ab:cd:ef\n')


def test_addresses():
    assert v.ip_address('listen', '127.0.0.1') == '127.0.0.1'
    assert v.ip_address('listen', '::1', version=6) == '::1'
    refused(v.ip_address, 'listen', '127.0.0.1', version=6)
    refused(v.ip_address, 'listen', 'localhost')
    refused(v.ip_address, 'listen', "0.0.0.0' autoport='yes")
    assert str(v.ip_network('subnet', '10.0.0.0/24')) == '10.0.0.0/24'
    refused(v.ip_network, 'subnet', '10.0.0.1/24', strict=True)
    refused(v.ip_network, 'subnet', '10.0.0.0')
    assert str(v.ip_interface('address', '192.168.1.10/24')) == '192.168.1.10/24'
    refused(v.ip_interface, 'address', '192.168.1.10')


@pytest.mark.parametrize('value, norm', [('/var/lib/x', '/var/lib/x'), ('/var//lib/./x/', '/var/lib/x'),
                                         ('//srv', '/srv'), ('/', '/')])
def test_abs_path_normalizes(value, norm):
    assert v.abs_path('path', value) == norm


@pytest.mark.parametrize('value', ['/x/../../etc', '..', 'relative/p', '', '/a/b\n/etc', '/a\x00b', '/a/..', None,
                                   '/' + 'a' * 5000])
def test_abs_path_refuses(value):
    refused(v.abs_path, 'path', value)


def test_counts_and_sizes():
    assert v.count('vcpus', 4, 1, v.MAX_VCPUS) == 4
    refused(v.count, 'vcpus', 0, 1, v.MAX_VCPUS)
    refused(v.count, 'vcpus', 10 ** 9, 1, v.MAX_VCPUS)
    refused(v.count, 'vcpus', True, 1, v.MAX_VCPUS)
    msg = refused(v.size_bytes, 'memory', 2 ** 62, v.MAX_MEMORY_BYTES)
    assert '64 TiB' in msg


@pytest.mark.parametrize('value', ['pc-q35-7.2', 'q35', 'Haswell-noTSX', 'x86_64'])
def test_token_accepts(value):
    assert v.token('machine', value) == value


@pytest.mark.parametrize('value', ["q35'", 'q35"/><x', 'q 35', '', 'q35\n', '-q'])
def test_token_refuses(value):
    refused(v.token, 'machine', value)


@pytest.mark.parametrize('value', ['qemu:///system', 'qemu:///session', 'test:///default', 'qemu+ssh://root@hv01/system',
                                   'qemu+tls://hv01.example.com/system', 'qemu+tcp://10.0.0.2:16509/system',
                                   'qemu+ssh://root@hv/system?keyfile=/root/.ssh/id&no_verify=1',
                                   'qemu+unix:///system?socket=/run/libvirt/libvirt-sock', 'qemu+libssh2://u@h/system'])
def test_uri_accepts(value):
    assert v.uri('uri', value) == value


@pytest.mark.parametrize('value', ['test+ext:///default?command=/tmp/x', 'qemu+ext:///system?command=/bin/sh',
                                   'qemu+ssh://h/system?netcat=touch%20/tmp/x', 'qemu+ssh://h/system?Command=/x',
                                   'qemu:///system?command=/x', 'xen:///system', 'vbox:///session', 'lxc:///',
                                   '', 'qemu', 'qemu:///system\n', 'qemu:// /system', 'qemu+foo://h/system',
                                   'qemu+tcp://h:99999/system', None, 'QEMU:///system', 'qemu+ssh://h/sys tem', "qemu:///system?x={{lookup('pipe','id')}}"])
def test_uri_refuses(value):
    refused(v.uri, 'uri', value)


def test_uri_ext_only_with_the_opt_in():
    assert v.uri('uri', 'qemu+ext:///system?command=/usr/local/bin/p', allow_ext=True)
    msg = refused(v.uri, 'uri', 'qemu+ext:///system?command=/usr/local/bin/p')
    assert 'uri_allow_ext' in msg


def test_check_uri_reads_option_then_environment(monkeypatch, fake_module):
    monkeypatch.setenv('LIBVIRT_DEFAULT_URI', 'test+ext:///default?command=/bin/true')
    with pytest.raises(KvmError, match=r'^uri: '):
        check_uri(fake_module({'uri': None, 'uri_allow_ext': False}))
    check_uri(fake_module({'uri': 'test:///default', 'uri_allow_ext': False}))
    check_uri(fake_module({'uri': None, 'uri_allow_ext': True}))
    assert kvm_module  # the module factory calls check_uri before returning (exercised by the hostile tier)


# ---------------------------------------------------------------- properties
CHECKERS = [
    (v.object_name, ()), (v.ifname, ()), (v.dns_name, ()), (v.mac, ()), (v.ip_address, ()), (v.ip_network, ()),
    (v.ip_interface, ()), (v.abs_path, ()), (v.token, ()), (v.uri, ()), (v.text, ()),
    (v.count, (1, 4096)),
]


@PROPS
@given(st.sampled_from(CHECKERS), ANY)
def test_never_anything_but_a_named_refusal(checker, value):
    func, args = checker
    try:
        func('opt', value, *args)
    except v.ValidationError as exc:
        assert exc.msg.startswith('opt: ')
        assert '\n' not in exc.msg and '\x00' not in exc.msg  # the value is shown escaped


SHELL_SAFE = set(string.ascii_letters + string.digits + '_.-+:@/')


@PROPS
@given(st.text(alphabet=HOSTILE_CHARS + string.ascii_letters + string.digits + '.-_+:@', max_size=40))
def test_accepted_names_need_no_quoting(value):
    """What object_name and ifname accept is inert in shells, XML attributes and config files."""
    for func in (v.object_name, v.ifname):
        try:
            out = func('name', value)
        except v.ValidationError:
            continue
        assert set(out) <= SHELL_SAFE and shlex.quote(out) == out and not out.startswith('-')


@PROPS
@given(st.lists(st.sampled_from(['a', 'b', '.', '..', '', 'etc', '\n', ' ']), max_size=8))
def test_accepted_paths_have_no_parent_components(parts):
    value = '/' + '/'.join(parts)
    try:
        out = v.abs_path('path', value)
    except v.ValidationError:
        assert '..' in parts or '\n' in parts
        return
    assert out.startswith('/') and '..' not in out.split('/') and '\n' not in out
    assert out == '/' or not out.endswith('/')


@PROPS
@given(st.text(alphabet=string.ascii_lowercase + string.digits + '-.', min_size=1, max_size=70))
def test_accepted_dns_names_are_rfc1123(value):
    try:
        out = v.dns_name('domain', value)
    except v.ValidationError:
        return
    assert len(out) <= 253
    for label in out.split('.'):
        assert 1 <= len(label) <= 63 and label[0] != '-' and label[-1] != '-'


@PROPS
@given(st.ip_addresses())
def test_every_real_address_is_accepted(addr):
    assert ipaddress.ip_address(v.ip_address('ip', str(addr))) == addr


@PROPS
@given(st.sampled_from(['qemu', 'test', 'xen', 'lxc']), st.sampled_from(['', '+ssh', '+tls', '+ext', '+tcp', '+x']),
       st.sampled_from(['', '?command=/x', '?netcat=nc', '?keyfile=/k', '?no_verify=1']))
def test_uri_allow_list(driver, transport, query):
    value = '%s%s://h/system%s' % (driver, transport, query)
    runs_a_program = transport == '+ext' or 'command=' in query or 'netcat=' in query
    allowed = driver in v.URI_DRIVERS and transport != '+x' and not runs_a_program
    try:
        v.uri('uri', value)
        assert allowed
    except v.ValidationError:
        assert not allowed
