"""nfs_storage's export and mount checks, and the exports(5) lines parsed back the way exportfs reads them."""

import os
import re
import sys

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmops.kvm.plugins.filter.nfs_exports import (
    FilterModule, exports_path, nfs_exports_check, nfs_mounts_check, reaches_world)

import ipaddress


# The exports(5) reader the role's decision tests use (tests/integration/role_decisions.py), written from
# the man page and nfs-utils' xgettok(), independent of the renderer under test.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'integration'))
from role_decisions import parse_exports  # noqa: E402  pylint: disable=wrong-import-position


def render(exports):
    """The role's template, the same lines (exports.j2 joins them with a header)."""
    return '#\n# Ansible managed\n#\n# Shared storage for KVM hosts\n' + ''.join(e['line'] + '\n' for e in exports)


def _refused(exports, match, **kwargs):
    with pytest.raises(AnsibleFilterError, match=match):
        nfs_exports_check(exports, **kwargs)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'nfs_exports_check', 'nfs_mounts_check'}


def test_defaults_and_rendering():
    out = nfs_exports_check([{'path': '/exports//vms/', 'clients': ['hv01.example.com', '192.0.2.0/255.255.255.0']},
                             {'path': '/exports/iso', 'clients': ['@hypervisors'], 'options': 'ro,sync',
                              'owner': 'qemu', 'mode': '0750'}])
    assert out[0]['path'] == '/exports/vms'
    assert out[0]['clients'] == ['hv01.example.com', '192.0.2.0/24']
    assert out[0]['line'] == ('/exports/vms hv01.example.com(rw,sync,no_root_squash) '
                              '192.0.2.0/24(rw,sync,no_root_squash)')
    assert (out[1]['owner'], out[1]['group'], out[1]['mode']) == ('qemu', 'root', '0750')
    assert out[1]['line'] == '/exports/iso @hypervisors(ro,sync)'


@pytest.mark.parametrize('clients', [
    ['*'], ['*.example.com'], ['hv0?'], ['hv[0-9]'], ['0.0.0.0/0'], ['::/0'], ['0.0.0.0/0.0.0.0'],
    ['0.0.0.0/1', '128.0.0.0/1'],
    ['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/2'],
    ['::/1', '8000::/1'],
    ['::ffff:0:0/97', '128.0.0.0/1'],            # IPv4-mapped IPv6 counts as IPv4
    ['::/64', '::ffff:0:0/96'],                   # all of IPv4, mapped
    ['0.0.0.0/6'],                                # wider than a /7
    ['10.0.0.0/8', '11.0.0.0/8', '12.0.0.0/8'],   # pieces adding up to more than a /7
    ['2000::/3'],
])
def test_world_is_computed(clients):
    _refused([{'path': '/x', 'clients': clients, 'options': 'rw,sync'}], r'^nfs_storage_exports\[0\]\.clients: .*everyone')
    out = nfs_exports_check([{'path': '/x', 'clients': clients, 'options': 'rw,sync'}], allow_world=True)
    assert out[0]['world'] is True
    # Even when the world is accepted, root on every client is not.
    _refused([{'path': '/x', 'clients': clients}], r'no_root_squash', allow_world=True)


@pytest.mark.parametrize('clients', [
    ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'], ['fc00::/7'], ['192.0.2.1', '2001:db8::1'], ['hv01'],
])
def test_not_world(clients):
    assert nfs_exports_check([{'path': '/x', 'clients': clients}])[0]['world'] is False


def test_reaches_world_union():
    nets = [ipaddress.ip_network(n) for n in ('0.0.0.0/1', '128.0.0.0/2', '192.0.0.0/3')]
    assert reaches_world(nets)   # 7/8 of IPv4: more than a /7
    assert not reaches_world([ipaddress.ip_network('10.0.0.0/8'), ipaddress.ip_network('192.168.0.0/16')])


@pytest.mark.parametrize('export, match', [
    ({'path': '/x\n/etc *(rw,no_root_squash)', 'clients': ['h1']}, r'^nfs_storage_exports\[0\]\.path: .*control'),
    ({'path': '/x/../etc', 'clients': ['h1']}, r"^nfs_storage_exports\[0\]\.path: .*'\.\.'"),
    ({'path': 'relative', 'clients': ['h1']}, r'^nfs_storage_exports\[0\]\.path: .*absolute'),
    ({'path': '/my exports', 'clients': ['h1']}, r'^nfs_storage_exports\[0\]\.path: .*whitespace'),
    ({'path': '/x\ty', 'clients': ['h1']}, r'^nfs_storage_exports\[0\]\.path'),
    ({'path': '/x', 'clients': ['10.0.0.1 *']}, r'^nfs_storage_exports\[0\]\.clients\[0\]: .*whitespace'),
    ({'path': '/x', 'clients': ['h1(rw,no_root_squash)']}, r'^nfs_storage_exports\[0\]\.clients\[0\]: .*parenthes'),
    ({'path': '/x', 'clients': ['h1\n/etc']}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'path': '/x', 'clients': ['$(id)']}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'path': '/x', 'clients': ['-h1']}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'path': '/x', 'clients': ['fe80::1%eth0']}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'path': '/x', 'clients': ['10.0.0.0/33']}, r'^nfs_storage_exports\[0\]\.clients\[0\]: .*CIDR'),
    ({'path': '/x', 'clients': ['@bad group']}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'path': '/x', 'clients': ['h1', 'h1']}, r'^nfs_storage_exports\[0\]\.clients\[1\]: is listed twice'),
    ({'path': '/x', 'clients': []}, r'^nfs_storage_exports\[0\]\.clients: needs'),
    ({'path': '/x', 'clients': 'h1'}, r'^nfs_storage_exports\[0\]\.clients: must be a list'),
    ({'path': '/x', 'clients': [5]}, r'^nfs_storage_exports\[0\]\.clients\[0\]'),
    ({'clients': ['h1']}, r'^nfs_storage_exports\[0\]: needs a path'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,sync,bogus'}, r'^nfs_storage_exports\[0\]\.options: unknown'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,sync no_root_squash'}, r'^nfs_storage_exports\[0\]\.options: .*whitespace'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,ro,sync'}, r'^nfs_storage_exports\[0\]\.options: has both rw and ro'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,sync,anonuid=x'}, r'^nfs_storage_exports\[0\]\.options: anonuid'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,sync,sec=krb6'}, r'^nfs_storage_exports\[0\]\.options: sec'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,sync,,'}, r'^nfs_storage_exports\[0\]\.options: has an empty'),
    ({'path': '/x', 'clients': ['h1'], 'options': 'rw,async'}, r'^nfs_storage_exports\[0\]\.options: .*nfs_storage_allow_async'),
    ({'path': '/x', 'clients': ['@hv'], 'options': 'rw,sync,no_root_squash'}, r'^nfs_storage_exports\[0\]\.options: no_root_squash'),
    ({'path': '/x', 'clients': ['h1'], 'owner': 'root;id'}, r'^nfs_storage_exports\[0\]\.owner'),
    ({'path': '/x', 'clients': ['h1'], 'mode': 493}, r'^nfs_storage_exports\[0\]\.mode'),
    ({'path': '/x', 'clients': ['h1'], 'mode': '0755; id'}, r'^nfs_storage_exports\[0\]\.mode'),
    ({'path': '/x', 'clients': ['h1'], 'extra': 1}, r'^nfs_storage_exports\[0\]: unknown key'),
])
def test_refusals_name_the_option(export, match):
    _refused([export], match)


def test_default_options_are_named():
    _refused([{'path': '/x', 'clients': ['h1']}], r'^nfs_storage_export_options: unknown', options='rw,sync,nope')
    _refused([{'path': '/x', 'clients': ['h1']}], r'^nfs_storage_export_owner', owner='a b')


def test_same_path_twice():
    _refused([{'path': '/x', 'clients': ['h1']}, {'path': '/x/', 'clients': ['h2']}], r'^nfs_storage_exports\[1\]\.path: .*twice')


def test_not_a_list():
    _refused({'path': '/x'}, r'^nfs_storage_exports: must be a list')
    assert nfs_exports_check(None) == []


@pytest.mark.parametrize('path', ['/exports/vms', '/e/#not-a-comment', '/e/"quoted"', '/e/back\\slash',
                                  '/e/paren(s)', "/e/it's", '/e/caf\u00e9', '/e/$(id)', '/e/*'])
def test_rendered_file_parses_back(path):
    asked = [{'path': path, 'clients': ['hv01', '192.0.2.0/24', '2001:db8::/64'], 'options': 'rw,sync,no_subtree_check'},
             {'path': '/other', 'clients': ['@hv'], 'options': 'ro,sync,fsid=1'}]
    text = render(nfs_exports_check(asked))
    assert parse_exports(text) == [
        (path, [('hv01', 'rw,sync,no_subtree_check'), ('192.0.2.0/24', 'rw,sync,no_subtree_check'),
                ('2001:db8::/64', 'rw,sync,no_subtree_check')]),
        ('/other', [('@hv', 'ro,sync,fsid=1')]),
    ]
    # One line per export, and nothing a shell, a comment or a quote could reinterpret.
    lines = [line for line in text.splitlines() if not line.startswith('#')]
    assert len(lines) == 2
    assert not re.search(r'["#\s()]', lines[0].split(' ')[0])


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3))
def test_property_never_a_traceback_never_an_injected_line(path, clients):
    """Random paths and clients: refused with AnsibleFilterError, or rendered as one line that parses back."""
    try:
        out = nfs_exports_check([{'path': '/' + path, 'clients': clients, 'options': 'rw,sync'}], allow_world=True)
    except AnsibleFilterError as exc:
        assert str(exc).startswith('nfs_storage_exports[0]')
        return
    text = render(out)
    parsed = parse_exports(text)
    assert len(parsed) == 1
    assert parsed[0][0] == out[0]['path']
    assert [c for c, _o in parsed[0][1]] == out[0]['clients']


def test_mounts():
    out = nfs_mounts_check([{'server': 'nfs01', 'export': '/exports/vms'},
                            {'server': '2001:db8::5', 'export': '/iso', 'path': '/var/lib/libvirt/iso',
                             'pool': {'name': 'iso'}}])
    assert out[0] == {'server': 'nfs01', 'export': '/exports/vms', 'path': '/exports/vms', 'src': 'nfs01:/exports/vms',
                      'options': 'rw,hard,_netdev', 'by': 'fstab'}
    assert out[1]['src'] == '[2001:db8::5]:/iso' and out[1]['pool'] == {'name': 'iso', 'autostart': True}


@pytest.mark.parametrize('mount, match', [
    ({'server': 'nfs01 /etc', 'export': '/x'}, r'^nfs_storage_mounts\[0\]\.server'),
    ({'server': 'nfs01', 'export': '/x\n/dev/sda1 / ext4'}, r'^nfs_storage_mounts\[0\]\.export'),
    ({'server': 'nfs01', 'export': '/x', 'path': '/a b'}, r'^nfs_storage_mounts\[0\]\.path'),
    ({'server': 'nfs01', 'export': '/x', 'options': 'rw hard'}, r'^nfs_storage_mounts\[0\]\.options'),
    ({'server': 'nfs01', 'export': '/x', 'options': 'rw,,hard'}, r'^nfs_storage_mounts\[0\]\.options'),
    ({'server': 'nfs01', 'export': '/x', 'pool': {'name': 'a/b'}}, r'^nfs_storage_mounts\[0\]\.pool\.name'),
    ({'server': 'nfs01'}, r'^nfs_storage_mounts\[0\]: needs export'),
])
def test_mount_refusals(mount, match):
    with pytest.raises(AnsibleFilterError, match=match):
        nfs_mounts_check([mount])


def test_exports_path_escapes_every_unusual_byte():
    assert exports_path('/a b#"\\') == '/a\\040b\\043\\042\\134'
