"""The checking filters (libvirt_uri, libvirt_name, absolute_path, refusal): the shared rules, as filter errors."""

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmops.kvm.plugins.filter.validate import (
    FilterModule, absolute_path, libvirt_name, libvirt_uri, refusal)
from templating import is_unsafe

LOOKUP = "{{ lookup('pipe', 'id') }}"


@pytest.mark.parametrize('value', ['qemu:///system', 'qemu+ssh://root@hv01/system', 'test:///default',
                                   'qemu+tls://hv02.example.com/system?no_verify=1'])
def test_good_uris_pass_unchanged_and_unsafe(value):
    got = libvirt_uri(value, 'guest_uri')
    assert got == value and is_unsafe(got)


@pytest.mark.parametrize('value,words', [
    ('qemu+ext:///system?command=/bin/id', 'guest_uri: the ext transport'),
    ('test:///default?command=/bin/id', 'guest_uri: the ext transport'),
    ('qemu+ssh://root@hv/system?netcat=/tmp/nc', 'guest_uri: the ext transport'),
    ('qemu:///system\n', 'guest_uri: must not contain whitespace'),
    (LOOKUP, 'guest_uri: must not contain whitespace'),
    ('xen:///system', "guest_uri: driver 'xen' is not supported"),
    ('', 'guest_uri: must be a libvirt URI'),
    (None, 'guest_uri: must be a libvirt URI'),
    (['qemu:///system'], 'guest_uri: must be a libvirt URI'),
])
def test_bad_uris_are_filter_errors_naming_the_variable(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        libvirt_uri(value, 'guest_uri')
    assert str(err.value).startswith(words)


def test_ext_needs_a_real_boolean_opt_in():
    uri = 'qemu+ext:///system?command=/usr/local/bin/tunnel'
    assert libvirt_uri(uri, 'guest_uri', allow_ext=True) == uri
    with pytest.raises(AnsibleFilterError, match='^guest_uri: allow_ext must be true or false'):
        libvirt_uri(uri, 'guest_uri', allow_ext='false')


@pytest.mark.parametrize('value', ['$(id)', 'web01\n', 'a b', '-rf', '../x', LOOKUP, 'x' * 201, 5, None])
def test_bad_names(value):
    with pytest.raises(AnsibleFilterError, match='^guest_name: invalid guest name'):
        libvirt_name(value, 'guest_name', 'guest name')


def test_good_names_and_paths():
    assert libvirt_name('web-01.lab', 'guest_name') == 'web-01.lab'
    assert absolute_path('/var/lib//libvirt/images/', 'guest_disk_dir') == '/var/lib/libvirt/images'
    assert is_unsafe(absolute_path('/var/lib//libvirt/images/', 'guest_disk_dir'))


@pytest.mark.parametrize('value,words', [
    ('/var/lib/libvirt/images/../../etc', "guest_disk_dir: must not contain '..' components"),
    ('images', 'guest_disk_dir: must be an absolute path'),
    ('/tmp/a\nb', 'guest_disk_dir: must not contain control characters'),
    ('/tmp/a\x00b', 'guest_disk_dir: must not contain control characters'),
    ({}, 'guest_disk_dir: must be an absolute path'),
])
def test_bad_paths(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        absolute_path(value, 'guest_disk_dir')
    assert str(err.value).startswith(words)


def test_refusal_returns_the_message_or_nothing():
    assert refusal('qemu:///system', 'uri', 'guest_uri') == ''
    assert refusal('web01', 'name', 'guest_name', kind='guest name') == ''
    assert refusal('/var/lib/libvirt/images', 'path', 'guest_disk_dir') == ''
    assert refusal('qemu+ext:///x?command=/y', 'uri', 'guest_uri').startswith('guest_uri: the ext transport')
    assert refusal('qemu+ext:///x?command=/y', 'uri', 'guest_uri', allow_ext=True) == ''
    assert refusal('a b', 'name', 'guest_name', kind='guest name').startswith('guest_name: invalid guest name')
    assert refusal('/a/../b', 'path', 'p').startswith("p: must not contain '..'")


@pytest.mark.parametrize('args,kwargs,words', [
    (('shell', 'guest_name'), {}, 'guest_name: rule must be one of cidr, count, dns, ifname, ip, mac, name, network, path, uri'),
    (('uri', 'guest_uri'), {'command': '/bin/id'}, 'guest_uri: the uri rule takes the options allow_ext (bool)'),
    (('uri', 'guest_uri'), {'allow_ext': 'yes'}, 'guest_uri: the uri rule takes the options allow_ext (bool)'),
    (('count', 'mtu'), {'minimum': True}, 'mtu: the count rule takes the options maximum (int), minimum (int)'),
    (('ip', 'gateway'), {'kind': 'x'}, 'gateway: the ip rule takes the options none'),
    (('uri', 5), {}, 'the name argument of the kvmops.kvm checking filters must be a string'),
])
def test_refusal_fails_only_on_a_bad_call(args, kwargs, words):
    with pytest.raises(AnsibleFilterError) as err:
        refusal('x', *args, **kwargs)
    assert str(err.value).startswith(words)


@pytest.mark.parametrize('value,rule,kwargs,words', [
    ('br$(id)', 'ifname', {}, 'x: invalid interface name'),
    ('01:00:5e:00:00:01', 'mac', {}, 'x: 01:00:5e:00:00:01 is a multicast address'),
    (70000, 'count', {'minimum': 68, 'maximum': 65535}, 'x: must be at most 65535'),
    ('10.0.0.1', 'cidr', {}, 'x: not an address with a prefix'),
    ('a..b', 'dns', {}, 'x: invalid DNS name'),
])
def test_refusal_applies_the_shared_rules(value, rule, kwargs, words):
    assert words in refusal(value, rule, 'x', **kwargs)


@pytest.mark.parametrize('value,rule,kwargs', [
    ('br0', 'ifname', {}), ('52:54:00:aa:bb:cc', 'mac', {}), (1500, 'count', {'minimum': 68, 'maximum': 65535}),
    ('10.0.0.1/24', 'cidr', {}), ('10.0.0.0/24', 'network', {}), ('::1', 'ip', {}), ('host.example', 'dns', {}),
])
def test_refusal_passes_good_values(value, rule, kwargs):
    assert refusal(value, rule, 'x', **kwargs) == ''


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=20), st.integers(), st.none(),
                 st.lists(st.text(max_size=5), max_size=3)))
def test_never_anything_but_a_filter_error_naming_the_variable(value):
    for check in (libvirt_uri, libvirt_name, absolute_path):
        try:
            check(value, 'answer')
        except AnsibleFilterError as exc:
            assert str(exc).startswith('answer: ')
    for rule in ('uri', 'name', 'path'):
        message = refusal(value, rule, 'answer')
        assert message == '' or message.startswith('answer: ')


def test_the_filters_are_exported():
    assert set(FilterModule().filters()) == {'libvirt_uri', 'libvirt_name', 'absolute_path', 'refusal'}
