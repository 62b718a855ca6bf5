"""Every file kvm_bridge generates, parsed back by its real reader (or that reader's rules).

* ifcfg files are sourced by ``bash`` the way network-scripts do (``set -a; . file``) in an empty
  environment and the variables compared; hostile values never run code (the marker file never appears).
* interfaces(5) files are read back by a small stanza parser that follows ifupdown's rules (continuation
  lines, comments only at a line's start, words split on blanks). ifquery is not installed here.
* NetworkManager keyfiles are read back with GLib's keyfile rules (line based, backslash escapes).
"""

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kvmops.kvm.plugins.module_utils import _bridge_providers as P
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

BASH = shutil.which('bash')
needs_bash = pytest.mark.skipif(BASH is None, reason='bash is needed to source ifcfg files')

MAC = '52:54:00:aa:bb:01'
HOSTILE = [
    '$(touch MARKER)', '`touch MARKER`', 'a;touch MARKER', 'a && touch MARKER', "it's", 'say "hi"',
    'back\\slash', '#not a comment', '~root', '${PATH:+$(touch MARKER)}', "'$(touch MARKER)'", '"$(touch MARKER)"',
    'a|touch MARKER', '>MARKER', 'tab\there', 'unicode \u00e9\u4e2d', '*', '?[a]', '!', '{a,b}', '', ' lead', 'trail ',
]


def source_ifcfg(tmp_path, text, keys):
    """The values of ``keys`` after ``env -i bash -c 'set -a; . file'`` (run in tmp_path, marker watched)."""
    path = tmp_path / 'ifcfg-test'
    path.write_text(text)
    script = 'set -a; . "$1"; shift; for k in "$@"; do printf "%s=%s\\0" "$k" "${!k}"; done'
    proc = subprocess.run(['env', '-i', BASH, '--norc', '--noprofile', '-c', script, 'bash', str(path)] + list(keys),
                          cwd=str(tmp_path), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b'', proc.stderr   # not even a "command not found"
    assert not (tmp_path / 'MARKER').exists(), 'sourcing the ifcfg file ran code'
    out = {}
    for item in proc.stdout.split(b'\0')[:-1]:
        key, _sep, value = item.decode('utf-8').partition('=')
        out[key] = value
    return out


# ---------------------------------------------------------------- ifcfg
@needs_bash
def test_ifcfg_hostile_values_are_literal_to_bash(tmp_path):
    pairs = [('V%d' % index, value) for index, value in enumerate(HOSTILE) if '\t' not in value]
    text = P.render_ifcfg(pairs)
    assert source_ifcfg(tmp_path, text, [k for k, _v in pairs]) == dict(pairs)
    # and the module's own reader agrees with bash
    assert P.parse_ifcfg(text) == pairs


@needs_bash
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=('Cc', 'Cs', 'Zl', 'Zp')), max_size=40))
def test_ifcfg_any_printable_value_round_trips_through_bash(tmp_path, value):
    text = P.render_ifcfg([('VALUE', value)])
    assert source_ifcfg(tmp_path, text, ['VALUE']) == {'VALUE': value}
    assert P.parse_ifcfg(text) == [('VALUE', value)]


@pytest.mark.parametrize('key, value', [('NAME', 'a\nTOUCH=$(touch MARKER)'), ('NAME', 'a\rb'), ('NAME', 'nul\x00'),
                                        ('BAD KEY', 'x'), ('X;touch', 'x'), ('', 'x')])
def test_ifcfg_refuses_control_characters_and_bad_keys(key, value):
    with pytest.raises(KvmError):
        P.render_ifcfg([(key, value)])


@needs_bash
def test_ifcfg_provider_files_source_back(tmp_path):
    root = tmp_path / 'root'
    provider = P.IfcfgProvider(str(root))
    addressing = P.Addressing('static', ['192.0.2.10/24', '2001:db8::10/64', '2001:db8::11/64'], '192.0.2.1',
                              '2001:db8::1', ['192.0.2.53'])
    spec = dict(name='br1', ports=['ens33'], state='present', stp=True, forward_delay=0, mtu=9000, mac=MAC,
                ip='static')
    changes = dict((os.path.basename(c.path), c) for c in provider.changes(spec, addressing))
    bridge = P.parse_ifcfg(changes['ifcfg-br1'].after)
    sourced = source_ifcfg(tmp_path, changes['ifcfg-br1'].after, [k for k, _v in bridge])
    assert sourced == dict(bridge)
    assert sourced['IPV6ADDR_SECONDARIES'] == '2001:db8::11/64' and sourced['MTU'] == '9000'
    assert sourced['DEVICE'] == 'br1' and sourced['MACADDR'] == MAC and sourced['TYPE'] == 'Bridge'
    port = P.parse_ifcfg(changes['ifcfg-ens33'].after)
    assert source_ifcfg(tmp_path, changes['ifcfg-ens33'].after, [k for k, _v in port])['BRIDGE'] == 'br1'


@needs_bash
def test_ifcfg_inherited_values_are_requoted_safely(tmp_path):
    """A port file with double-quoted values (as installers write them) keeps their meaning on the bridge."""
    root = tmp_path / 'root'
    scripts = root / 'etc/sysconfig/network-scripts'
    scripts.mkdir(parents=True)
    (scripts / 'ifcfg-ens33').write_text('DEVICE=ens33\nNAME="System ens33"\nBOOTPROTO=none\nIPADDR=192.0.2.10\n'
                                         'PREFIX=24\nDOMAIN="example.org lab.example.org"\nDNS1=192.0.2.53\n'
                                         'ZONE="it\'s \\"odd\\""\n')
    spec = dict(name='br1', ports=['ens33'], state='present', stp=True, forward_delay=0, mtu=None, mac=MAC,
                ip='inherit')
    changes = dict((os.path.basename(c.path), c) for c in P.IfcfgProvider(str(root)).changes(spec, P.Addressing()))
    sourced = source_ifcfg(tmp_path, changes['ifcfg-br1'].after, ['DOMAIN', 'IPADDR', 'DNS1'])
    assert sourced == {'DOMAIN': 'example.org lab.example.org', 'IPADDR': '192.0.2.10', 'DNS1': '192.0.2.53'}
    port = source_ifcfg(tmp_path, changes['ifcfg-ens33'].after, ['NAME', 'ZONE', 'BRIDGE'])
    assert port == {'NAME': 'System ens33', 'ZONE': 'it\'s "odd"', 'BRIDGE': 'br1'}


# ---------------------------------------------------------------- ifupdown
def read_interfaces(text):
    """interfaces(5) as ifupdown reads it: [(stanza words, [(option, value)])] and the auto list."""
    lines, pending = [], ''
    for raw in text.split('\n'):
        if raw.endswith('\\'):
            pending += raw[:-1]
            continue
        lines.append(pending + raw)
        pending = ''
    stanzas, autos, current = [], [], None
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        words = stripped.split()
        if words[0] == 'auto' or words[0].startswith('allow-'):
            autos += words[1:]
            current = None
        elif words[0] in ('iface', 'mapping', 'source', 'source-directory'):
            current = (words, [])
            stanzas.append(current)
        else:
            assert current is not None, 'option outside a stanza: %r' % line
            current[1].append((words[0], ' '.join(words[1:])))
    return stanzas, autos


def test_ifupdown_bridge_file_parses_back(tmp_path):
    provider = P.IfupdownProvider(str(tmp_path))
    addressing = P.Addressing('static', ['192.0.2.10/24', '2001:db8::10/64'], '192.0.2.1', '2001:db8::1',
                              ['192.0.2.53', '2001:db8::53'])
    spec = dict(name='br1', ports=['ens33', 'ens34'], state='present', stp=False, forward_delay=5, mtu=9000,
                mac=MAC, ip='static')
    change = provider.changes(spec, addressing)[0]
    stanzas, autos = read_interfaces(change.after)
    assert autos == ['br1']
    assert [words for words, _opts in stanzas] == [['iface', 'br1', 'inet', 'static'], ['iface', 'br1', 'inet6', 'static']]
    assert stanzas[0][1] == [('address', '192.0.2.10/24'), ('gateway', '192.0.2.1'),
                             ('dns-nameservers', '192.0.2.53 2001:db8::53'), ('bridge_ports', 'ens33 ens34'),
                             ('bridge_stp', 'off'), ('bridge_fd', '5'), ('bridge_hw', MAC), ('mtu', '9000')]
    assert stanzas[1][1] == [('address', '2001:db8::10/64'), ('gateway', '2001:db8::1')]


@pytest.mark.parametrize('words, rest', [
    (['iface', 'br1\nauto', 'inet', 'manual'], ''),
    (['iface', 'br 1', 'inet', 'manual'], ''),
    (['iface', '#br1', 'inet', 'manual'], ''),
    (['auto', 'br1\\'], ''),
    (['address'], '192.0.2.10/24\n    up touch /tmp/x'),
    (['address'], '192.0.2.10/24\\'),
])
def test_ifupdown_refuses_line_breaking_words(words, rest):
    with pytest.raises(KvmError):
        P.ifupdown_line(words, rest)


# ---------------------------------------------------------------- NetworkManager keyfiles
GLIB_ESCAPES = {'s': ' ', 'n': '\n', 't': '\t', 'r': '\r', '\\': '\\'}


def read_keyfile(text):
    """GLib's keyfile rules, written independently of the module: {group: {key: string value}}."""
    groups, group = {}, None
    for line in text.split('\n'):
        line = line.lstrip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('['):
            assert line.endswith(']') and line.count('[') == 1, 'bad group line %r' % line
            group = groups.setdefault(line[1:-1], {})
            continue
        assert group is not None and '=' in line, 'bad line %r' % line
        key, value = line.split('=', 1)
        out, index = '', 0
        value = value.lstrip()
        while index < len(value):
            if value[index] == '\\':
                out += GLIB_ESCAPES[value[index + 1]]
                index += 2
            else:
                out += value[index]
                index += 1
        group[key.rstrip()] = out
    return groups


@pytest.mark.parametrize('value', HOSTILE + ['a\nb', 'x\n[connection]\nid=evil', '\\n', 'a\r\tb', '[ipv4]'])
def test_keyfile_values_stay_on_their_line(value):
    text = P.render_keyfile([('connection', [('id', value), ('uuid', 'u')]), ('ipv4', [('method', 'auto')])])
    groups = read_keyfile(text)
    assert groups == {'connection': {'id': value, 'uuid': 'u'}, 'ipv4': {'method': 'auto'}}
    assert P.parse_keyfile(text).get('connection', 'id') == value


@pytest.mark.parametrize('sections', [
    [('conn]\n[x', [('id', 'a')])], [('connection', [('id\n[x]\nk', 'a')])], [('connection', [('a=b', 'c')])],
])
def test_keyfile_refuses_bad_groups_and_keys(sections):
    with pytest.raises(KvmError):
        P.render_keyfile(sections)


def test_networkmanager_profiles_parse_back(tmp_path):
    provider = P.NetworkManagerProvider(str(tmp_path))
    addressing = P.Addressing('static', ['192.0.2.10/24', '2001:db8::10/64'], '192.0.2.1', None,
                              ['192.0.2.53', '2001:db8::53'])
    spec = dict(name='br1', ports=['ens33'], state='present', stp=True, forward_delay=4, mtu=1400, mac=MAC,
                ip='static')
    bridge, port = provider.changes(spec, addressing)
    assert bridge.mode == 0o600 and port.mode == 0o600
    groups = read_keyfile(bridge.after)
    assert groups['connection']['interface-name'] == 'br1' and groups['connection']['type'] == 'bridge'
    assert groups['ethernet'] == {'cloned-mac-address': MAC, 'mtu': '1400'}
    assert groups['bridge'] == {'stp': 'true', 'forward-delay': '4'}
    assert groups['ipv4'] == {'method': 'manual', 'address1': '192.0.2.10/24', 'gateway': '192.0.2.1',
                              'dns': '192.0.2.53;'}
    assert groups['ipv6'] == {'method': 'manual', 'address1': '2001:db8::10/64', 'dns': '2001:db8::53;'}
    assert read_keyfile(port.after)['connection']['master'] == 'br1'


def test_networkmanager_inherited_escapes_are_copied_verbatim(tmp_path):
    conns = tmp_path / 'etc/NetworkManager/system-connections'
    conns.mkdir(parents=True)
    (conns / 'eth.nmconnection').write_text('[connection]\nid=Wired\ninterface-name=ens33\ntype=ethernet\n\n'
                                            '[ipv4]\nmethod=auto\ndhcp-hostname=\\shost\\\\name\n')
    spec = dict(name='br1', ports=['ens33'], state='present', stp=False, forward_delay=0, mtu=None, mac=MAC,
                ip='inherit')
    bridge = P.NetworkManagerProvider(str(tmp_path)).changes(spec, P.Addressing())[0]
    assert 'dhcp-hostname=\\shost\\\\name\n' in bridge.after
    assert read_keyfile(bridge.after)['ipv4'] == {'method': 'auto', 'dhcp-hostname': ' host\\name'}
