# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_bridge persistent-configuration providers (pattern 8: backends behind a small interface).

Every provider turns the bridge spec into a list of :class:`FileChange` (path, content before,
content after); the transaction in ``_bridge.py`` writes them atomically with backups and can put
the old content back. Providers never touch the kernel and never write anything themselves.

The addressing of a bridge is kept in each provider's own vocabulary (an "addressing blob"):

* ifcfg: the addressing keys (BOOTPROTO, IPADDR*, PREFIX*, GATEWAY, DNS*, IPV6*...);
* ifupdown: the ``iface`` stanzas' method and address options;
* networkmanager: the ``[ipv4]`` and ``[ipv6]`` sections of the keyfile.

``ip: inherit`` moves the first port's blob verbatim to the bridge, and ``state: absent`` moves
it back, so nothing the operator wrote (PEERDNS, dns-search, may-fail...) is lost either way.
When the port has no addressing in the files, the blob is rendered from the kernel state.
"""

from __future__ import annotations

import glob
import io
import os
import re
import shlex
import uuid

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as V
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

HEADER = 'Managed by kvmops.kvm.kvm_bridge'
UUID_NAMESPACE = uuid.UUID('1f1b3c9e-5d4a-4f53-8a55-6b766d6f7073')


class Addressing(object):
    """Provider-neutral addressing: what ``ip: static/dhcp/none`` asks, or what the kernel has."""

    def __init__(self, method='none', addresses=(), gateway4=None, gateway6=None, dns=()):
        self.method = method              # static | dhcp | none
        self.addresses = list(addresses)  # 'a.b.c.d/p' and 'x::y/p'
        self.gateway4 = gateway4
        self.gateway6 = gateway6
        self.dns = list(dns)

    @property
    def v4(self):
        return [a for a in self.addresses if ':' not in a]

    @property
    def v6(self):
        return [a for a in self.addresses if ':' in a]


class FileChange(object):
    """One persistent file: ``before``/``after`` are its text, None meaning 'does not exist'.

    ``mode`` is for a new file (an existing one keeps its own). 0644 is what Debian and RHEL give
    /etc/network/interfaces(.d) and ifcfg/route files: ifquery, ifup and network-scripts helpers read them
    without root, and they hold no secrets. NetworkManager keyfiles are 0600 (NetworkManager ignores a
    keyfile readable by others, as it may hold secrets). Backups are always 0600 (see _bridge.backup_file).
    """

    def __init__(self, path, before, after, mode=0o644, backup_dir=None):
        self.path = path
        self.before = before
        self.after = after
        self.mode = mode
        self.backup_dir = backup_dir   # None: back up beside the file

    @property
    def changed(self):
        return self.before != self.after

    def __repr__(self):
        return 'FileChange(%r)' % self.path


def read_text(path):
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KvmError('cannot read %s: %s' % (path, exc))


def rename_dev(text, old, new):
    """``dev <old>`` -> ``dev <new>`` in route lines (ifcfg route files, ifupdown up/down hooks)."""
    return re.sub(r'(\bdev\s+)%s\b' % re.escape(old), lambda m: m.group(1) + new, text)


class Provider(object):
    """The interface: inherit/present/absent file changes, and activation after a write."""

    name = None

    def __init__(self, root='/'):
        self.root = root or '/'

    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip('/') for p in parts])

    def changes(self, spec, addressing):
        """FileChanges for ``spec`` (dict from _bridge.build_spec) in state present or absent."""
        raise NotImplementedError

    def activate(self, module, changes):
        """Tell the network service about written files (only when config_root is /)."""
        return []


class RuntimeProvider(Provider):
    """Kernel state only: nothing persistent."""

    name = 'runtime'

    def changes(self, spec, addressing):
        return []


# ---------------------------------------------------------------- ifcfg
IFCFG_ADDRESSING = re.compile(
    r'^(BOOTPROTO|IPADDR\d*|PREFIX\d*|NETMASK\d*|GATEWAY\d*|BROADCAST\d*|NETWORK\d*|DNS\d+|DOMAIN|DEFROUTE|PEERDNS|'
    r'PEERROUTES|IPV4_FAILURE_FATAL|IPV6INIT|IPV6_AUTOCONF|IPV6ADDR|IPV6ADDR_SECONDARIES|IPV6_DEFAULTGW|'
    r'IPV6_DEFROUTE|IPV6_PEERDNS|IPV6_PEERROUTES|IPV6_FAILURE_FATAL|DHCPV6C|DHCP_HOSTNAME|DHCP_CLIENT_ID)$')
IFCFG_BRIDGE_KEYS = ('DEVICE', 'NAME', 'TYPE', 'ONBOOT', 'STP', 'DELAY', 'MACADDR', 'MTU')


IFCFG_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
# Characters a shell word may hold unquoted in an assignment (no expansion, no word splitting, no
# tilde at the start): anything else is single-quoted.
IFCFG_PLAIN = re.compile(r'[A-Za-z0-9_.,:/@%+=-]+')


def parse_ifcfg(text):
    """Ordered (key, value) pairs of a shell-style ifcfg file; comments and blanks dropped.

    Values are read with POSIX shell quoting rules (shlex): single quotes, double quotes and
    backslashes mean what they mean to the ``.`` that network-scripts use. Parameter expansions are
    not performed: ``"$X"`` is read as the literal text ``$X`` (and written back single-quoted).
    """
    pairs = []
    for number, line in enumerate((text or '').splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        key = key.strip()
        if not IFCFG_KEY.fullmatch(key):
            continue
        try:
            words = shlex.split(value, comments=True, posix=True)
        except ValueError as exc:
            raise KvmError('cannot parse line %d of an ifcfg file (%s): %s' % (number, key, exc))
        pairs.append((key, ' '.join(words)))
    return pairs


def ifcfg_value(key, value):
    """One value in shell syntax: plain when it needs no quoting, else single-quoted (shlex.quote).

    Inside single quotes the shell expands nothing ($, backticks, backslashes are literal), so a value
    can never run code when network-scripts source the file. Control characters (a newline would end
    the assignment for line-based readers such as NetworkManager's ifcfg-rh) are refused.
    """
    if not IFCFG_KEY.fullmatch(key):
        raise KvmError('ifcfg: refusing to write the key %s' % V.shown(key))
    value = str(value)
    if V.has_control(value):
        raise KvmError('%s: refusing to write a value with control characters to an ifcfg file (got %s)'
                       % (key, V.shown(value)))
    if IFCFG_PLAIN.fullmatch(value):
        return value
    return shlex.quote(value)


def render_ifcfg(pairs, header=True):
    out = ['# %s' % HEADER] if header else []
    for key, value in pairs:
        out.append('%s=%s' % (key, ifcfg_value(key, value)))
    return '\n'.join(out) + '\n'


class IfcfgProvider(Provider):
    """RHEL network-scripts: ifcfg-<bridge> (TYPE=Bridge) and ifcfg-<port> with BRIDGE=<bridge>."""

    name = 'ifcfg'
    directory = '/etc/sysconfig/network-scripts'

    def file(self, device):
        return self.path(self.directory, 'ifcfg-%s' % device)

    def route_changes(self, source, target):
        """Move route-<source>/route6-<source> (static routes) to <target>, unless <target> has its own."""
        changes = []
        for kind in ('route', 'route6'):
            src = self.path(self.directory, '%s-%s' % (kind, source))
            dst = self.path(self.directory, '%s-%s' % (kind, target))
            text, there = read_text(src), read_text(dst)
            if text is None or there is not None:
                continue
            changes.append(FileChange(dst, None, rename_dev(text, source, target)))
            changes.append(FileChange(src, text, None))
        return changes

    def addressing_of(self, text):
        return [(k, v) for k, v in parse_ifcfg(text) if IFCFG_ADDRESSING.match(k)]

    @staticmethod
    def render_addressing(addr):
        pairs = [('BOOTPROTO', 'dhcp' if addr.method == 'dhcp' else 'none')]
        if addr.method == 'static':
            for index, address in enumerate(addr.v4):
                ip, prefix = address.split('/')
                suffix = '' if index == 0 else str(index)
                pairs += [('IPADDR%s' % suffix, ip), ('PREFIX%s' % suffix, prefix)]
            if addr.gateway4:
                pairs.append(('GATEWAY', addr.gateway4))
            if addr.v6 or addr.gateway6:
                pairs.append(('IPV6INIT', 'yes'))
            if addr.v6:
                pairs.append(('IPV6ADDR', addr.v6[0]))
            if addr.v6[1:]:
                pairs.append(('IPV6ADDR_SECONDARIES', ' '.join(addr.v6[1:])))
            if addr.gateway6:
                pairs.append(('IPV6_DEFAULTGW', addr.gateway6))
        for index, server in enumerate(addr.dns):
            pairs.append(('DNS%d' % (index + 1), server))
        return pairs

    def changes(self, spec, addressing):
        name = spec['name']
        bridge_path = self.file(name)
        bridge_before = read_text(bridge_path)
        ports = spec['ports']
        changes = []
        if spec['state'] == 'present':
            port_texts = dict((p, read_text(self.file(p))) for p in ports)
            blob = None
            if spec['ip'] == 'inherit' and ports:
                blob = self.addressing_of(port_texts[ports[0]]) or None
                blob = blob if blob and not (len(blob) == 1 and blob[0] == ('BOOTPROTO', 'none')) else None
                if blob is None:
                    blob = self.addressing_of(bridge_before) or None
            if blob is None:
                blob = self.render_addressing(addressing)
            managed = [('DEVICE', name), ('NAME', name), ('TYPE', 'Bridge'), ('ONBOOT', 'yes'),
                       ('STP', 'on' if spec['stp'] else 'off'), ('DELAY', str(spec['forward_delay']))]
            if spec.get('mac'):
                managed.append(('MACADDR', spec['mac']))
            if spec.get('mtu'):
                managed.append(('MTU', str(spec['mtu'])))
            others = [(k, v) for k, v in parse_ifcfg(bridge_before)
                      if k not in IFCFG_BRIDGE_KEYS and not IFCFG_ADDRESSING.match(k)]
            changes.append(FileChange(bridge_path, bridge_before, render_ifcfg(managed + blob + others)))
            for port in ports:
                text = port_texts[port]
                pairs = [(k, v) for k, v in parse_ifcfg(text) if not IFCFG_ADDRESSING.match(k)
                         and k not in ('BRIDGE', 'ONBOOT')]
                keys = [key for key, dummy in pairs]
                head = []
                if 'DEVICE' not in keys:
                    head.append(('DEVICE', port))
                if 'NAME' not in keys:
                    head.append(('NAME', port))
                if 'TYPE' not in keys:
                    head.append(('TYPE', 'Ethernet'))
                after = head + pairs + [('ONBOOT', 'yes'), ('BOOTPROTO', 'none'), ('BRIDGE', name)]
                changes.append(FileChange(self.file(port), text, render_ifcfg(after)))
            if spec['ip'] == 'inherit' and ports:
                changes += self.route_changes(ports[0], name)
        else:
            blob = self.addressing_of(bridge_before)
            if bridge_before is not None:
                changes.append(FileChange(bridge_path, bridge_before, None))
            for index, port in enumerate(ports):
                path = self.file(port)
                text = read_text(path)
                pairs = parse_ifcfg(text)
                if text is None or dict(pairs).get('BRIDGE') != name:
                    continue
                pairs = [(k, v) for k, v in pairs if k != 'BRIDGE' and not IFCFG_ADDRESSING.match(k)]
                if index == 0:
                    pairs += blob or [('BOOTPROTO', 'none')]
                    changes += self.route_changes(name, port)
                else:
                    pairs += [('BOOTPROTO', 'none')]
                changes.append(FileChange(path, text, render_ifcfg(pairs, header=False)))
        return changes


# ---------------------------------------------------------------- ifupdown
STANZA_START = re.compile(r'^\s*(iface|auto|allow-\S+|mapping|source|source-directory|no-auto-down|no-scripts|'
                          r'rename)\b')
IFUPDOWN_ADDRESS_OPTS = re.compile(r'^(address|netmask|broadcast|network|gateway|pointopoint|scope|metric|'
                                   r'dns-\S+|hostname|leasetime|vendor|client|accept_ra|autoconf|privext|dhcp|'
                                   r'request_prefix|ll-attempts|ll-interval)$')


IFUPDOWN_HOOKS = re.compile(r'^(pre-up|up|post-up|pre-down|down|post-down)$')


def is_addressing_option(key, value):
    """Address options, and the up/down hooks that add static routes (they follow the addresses)."""
    return bool(IFUPDOWN_ADDRESS_OPTS.match(key) or (IFUPDOWN_HOOKS.match(key) and re.search(r'\broute\b', value)))


def parse_interfaces(text):
    """Blocks of an interfaces(5) file: dicts with kind, words, options [(key, rest)], lines."""
    blocks = []
    current = None
    for line in (text or '').splitlines():
        stripped = line.strip()
        if STANZA_START.match(line):
            words = stripped.split()
            current = dict(kind=words[0], words=words, options=[], lines=[line])
            blocks.append(current)
        elif current is not None and current['kind'] == 'iface' and stripped and not stripped.startswith('#'):
            key, dummy, rest = stripped.partition(' ')
            current['options'].append((key, rest.strip()))
            current['lines'].append(line)
        elif current is not None and current['kind'] == 'iface':
            # comments and blank lines inside a stanza stay with it, in place
            current['lines'].append(line)
            current.setdefault('extra', []).append(line)
        else:
            blocks.append(dict(kind='text', words=[], options=[], lines=[line]))
            current = None
    return blocks


# A word of an interfaces(5) line: no blanks (they separate words), no '#' (a comment at a line's
# start), no backslash (a trailing one continues the line), no control characters.
IFUPDOWN_WORD = re.compile(r'[^\s#\\\x00-\x1f\x7f]+')


def ifupdown_line(words, rest=''):
    """One stanza line; refuses anything that could end the line early or continue, or comment it out."""
    for word in words:
        if not IFUPDOWN_WORD.fullmatch(word):
            raise KvmError('ifupdown: refusing to write %s into an interfaces file (blanks, #, backslashes and '
                           'control characters cannot be written there)' % V.shown(word))
    if rest and (V.has_control(rest) or rest.endswith('\\')):
        raise KvmError('%s: refusing to write %s into an interfaces file' % (words[-1], V.shown(rest)))
    return ' '.join(words) + (' ' + rest if rest else '')


def render_interfaces(blocks):
    out = []
    for block in blocks:
        if block['kind'] == 'iface' and block.get('rebuilt'):
            out.append(ifupdown_line(block['words']))
            out.extend('    ' + ifupdown_line([key], rest) for key, rest in block['options'])
            out.extend(block.get('extra', []))
        else:
            out.extend(block['lines'])
    text = '\n'.join(out).rstrip('\n')
    return text + '\n' if text else ''


def iface_block(name, family, method, options, extra=None):
    return dict(kind='iface', words=['iface', name, family, method], options=list(options), lines=[], rebuilt=True,
                extra=list(extra or []))


class IfupdownProvider(Provider):
    """Debian ifupdown: /etc/network/interfaces.d/<bridge> with bridge_ports/bridge_stp/bridge_fd.

    The port's own ``iface`` stanzas (in /etc/network/interfaces or interfaces.d) are edited in place:
    ``inet`` becomes ``manual`` and gives its method and address options to the bridge; ``inet6`` is moved.
    Backups of files under interfaces.d go to interfaces.d.kvm_bridge-backup/ because
    ``source /etc/network/interfaces.d/*`` would read a backup beside the file.
    """

    name = 'ifupdown'

    @property
    def main_file(self):
        return self.path('/etc/network/interfaces')

    @property
    def directory(self):
        return self.path('/etc/network/interfaces.d')

    @property
    def backup_dir(self):
        return self.path('/etc/network/interfaces.d.kvm_bridge-backup')

    def bridge_file(self, name):
        return os.path.join(self.directory, name)

    def _backup_dir_for(self, path):
        return self.backup_dir if os.path.dirname(path) == self.directory else None

    def candidate_files(self, exclude):
        files = [self.main_file] + sorted(glob.glob(os.path.join(self.directory, '*')))
        return [f for f in files if f != exclude and os.path.isfile(f)]

    def find_stanzas(self, device, exclude):
        """(path, text, blocks) of the file holding ``iface <device>`` stanzas, or None."""
        for path in self.candidate_files(exclude):
            text = read_text(path)
            blocks = parse_interfaces(text)
            if any(b['kind'] == 'iface' and len(b['words']) > 1 and b['words'][1] == device for b in blocks):
                return path, text, blocks
        return None

    @staticmethod
    def split_addressing(blocks, device):
        """Take the device's addressing out of ``blocks``: returns [(family, method, options)]."""
        taken = []
        kept = []
        for block in blocks:
            if block['kind'] == 'iface' and len(block['words']) >= 4 and block['words'][1] == device:
                family, method = block['words'][2], block['words'][3]
                addr = [(k, v) for k, v in block['options'] if is_addressing_option(k, v)]
                rest = [(k, v) for k, v in block['options'] if not is_addressing_option(k, v)]
                if method not in ('manual',) or addr:
                    taken.append((family, method, addr))
                if family == 'inet':
                    block = iface_block(device, 'inet', 'manual', rest, block.get('extra'))
                elif rest:
                    block = iface_block(device, family, 'manual', rest, block.get('extra'))
                else:
                    continue
            kept.append(block)
        return taken, kept

    @staticmethod
    def stanza_addressing(blocks, device):
        """[(family, method, address options)] of the device's iface stanzas, left in place."""
        return [(b['words'][2], b['words'][3], [(k, v) for k, v in b['options'] if is_addressing_option(k, v)])
                for b in blocks if b['kind'] == 'iface' and len(b['words']) >= 4 and b['words'][1] == device]

    @staticmethod
    def moved(blob, source, target):
        """The addressing ``blob`` of ``source`` as ``target``'s: route hooks name the new device."""
        return [(family, method, [(k, rename_dev(v, source, target) if IFUPDOWN_HOOKS.match(k) else v)
                                  for k, v in opts]) for family, method, opts in blob]

    @staticmethod
    def render_addressing(addr):
        stanzas = []
        if addr.method == 'dhcp':
            opts = [('dns-nameservers', ' '.join(addr.dns))] if addr.dns else []
            return [('inet', 'dhcp', opts)]
        if addr.method == 'none':
            return [('inet', 'manual', [])]
        v4 = [('address', a) for a in addr.v4]
        if addr.gateway4:
            v4.append(('gateway', addr.gateway4))
        if addr.dns and addr.v4:  # resolvconf reads dns-* from any stanza: all servers go to the first
            v4.append(('dns-nameservers', ' '.join(addr.dns)))
        stanzas.append(('inet', 'static' if addr.v4 else 'manual', v4))
        if addr.v6:
            v6 = [('address', a) for a in addr.v6]
            if addr.gateway6:
                v6.append(('gateway', addr.gateway6))
            if addr.dns and not addr.v4:
                v6.append(('dns-nameservers', ' '.join(addr.dns)))
            stanzas.append(('inet6', 'static', v6))
        return stanzas

    def changes(self, spec, addressing):
        name = spec['name']
        ports = spec['ports']
        bridge_path = self.bridge_file(name)
        bridge_before = read_text(bridge_path)
        bridge_blocks = parse_interfaces(bridge_before)
        changes = []
        if spec['state'] == 'present':
            blob = None
            for index, port in enumerate(ports):
                found = self.find_stanzas(port, bridge_path)
                if not found:
                    continue
                path, text, blocks = found
                taken, kept = self.split_addressing(blocks, port)
                if index == 0 and spec['ip'] == 'inherit' and taken:
                    blob = self.moved(taken, port, name)
                changes.append(FileChange(path, text, render_interfaces(kept), backup_dir=self._backup_dir_for(path)))
            if blob is None and spec['ip'] == 'inherit':
                blob = self.stanza_addressing(bridge_blocks, name) or None
            if blob is None:
                blob = self.render_addressing(addressing)
            if 'inet' not in [entry[0] for entry in blob]:
                blob = [('inet', 'manual', [])] + list(blob)
            bridge_opts = [('bridge_ports', ' '.join(ports) or 'none'),
                           ('bridge_stp', 'on' if spec['stp'] else 'off'),
                           ('bridge_fd', str(spec['forward_delay']))]
            if spec.get('mac'):
                bridge_opts.append(('bridge_hw', spec['mac']))
            if spec.get('mtu'):
                bridge_opts.append(('mtu', str(spec['mtu'])))
            blocks = [dict(kind='text', words=[], options=[], lines=['# %s' % HEADER]),
                      dict(kind='auto', words=['auto', name], options=[], lines=[ifupdown_line(['auto', name])])]
            for _word, value in bridge_opts:
                ifupdown_line(value.split())   # every word of a bridge option is a plain token
            for family, method, opts in blob:
                extra = bridge_opts if family == 'inet' else []
                blocks.append(iface_block(name, family, method, list(opts) + extra))
            changes.insert(0, FileChange(bridge_path, bridge_before, render_interfaces(blocks),
                                         backup_dir=self.backup_dir))
        else:
            if bridge_before is None:
                return changes
            blob = [entry for entry in self.stanza_addressing(bridge_blocks, name) if entry[1] != 'manual' or entry[2]]
            blob = self.moved(blob, name, ports[0]) if ports else blob
            changes.append(FileChange(bridge_path, bridge_before, None, backup_dir=self.backup_dir))
            if ports and blob:
                port = ports[0]
                found = self.find_stanzas(port, bridge_path)
                if found:
                    path, text, blocks = found
                    out = []
                    families = dict((family, (method, opts)) for family, method, opts in blob)
                    for block in blocks:
                        if (block['kind'] == 'iface' and len(block['words']) >= 4 and block['words'][1] == port
                                and block['words'][2] in families):
                            method, opts = families.pop(block['words'][2])
                            block = iface_block(port, block['words'][2], method, list(opts) + list(block['options']),
                                                block.get('extra'))
                        out.append(block)
                    for family, (method, opts) in families.items():
                        out.append(dict(kind='text', words=[], options=[], lines=['']))
                        out.append(iface_block(port, family, method, opts))
                    changes.append(FileChange(path, text, render_interfaces(out), backup_dir=self._backup_dir_for(path)))
                else:
                    path = os.path.join(self.directory, port)
                    blocks = [dict(kind='text', words=[], options=[], lines=['# %s' % HEADER]),
                              dict(kind='auto', words=['auto', port], options=[], lines=[ifupdown_line(['auto', port])])]
                    blocks += [iface_block(port, family, method, opts) for family, method, opts in blob]
                    changes.append(FileChange(path, None, render_interfaces(blocks), backup_dir=self.backup_dir))
        return changes


# ---------------------------------------------------------------- NetworkManager
class KeyfileRaw(str):
    """A keyfile value kept as written in a file (already in GLib's escaped form): written back as is."""


_KEYFILE_UNESCAPE = {'s': ' ', 'n': '\n', 't': '\t', 'r': '\r', '\\': '\\'}
_KEYFILE_KEY = re.compile(r'[A-Za-z0-9_.@-]+(\[[A-Za-z0-9_.@-]+\])?')   # key, or key[locale]
_KEYFILE_GROUP = re.compile(r'[^\[\]\x00-\x1f\x7f]+')


def keyfile_escape(value):
    """GLib keyfile string escaping (g_key_file_set_string): a value stays on its line, whatever it holds."""
    out = []
    for index, char in enumerate(str(value)):
        if char == '\\':
            out.append('\\\\')
        elif char == '\n':
            out.append('\\n')
        elif char == '\t':
            out.append('\\t')
        elif char == '\r':
            out.append('\\r')
        elif char == ' ' and index == 0:
            out.append('\\s')
        elif V.has_control(char):
            raise KvmError('NetworkManager keyfile: refusing to write the control character %r' % char)
        else:
            out.append(char)
    return ''.join(out)


def keyfile_unescape(raw):
    """GLib's reading of a string value (g_key_file_get_string); unknown escapes are kept as written."""
    out = []
    chars = iter(raw)
    for char in chars:
        if char != '\\':
            out.append(char)
            continue
        nxt = next(chars, '')
        out.append(_KEYFILE_UNESCAPE.get(nxt, '\\' + nxt))
    return ''.join(out)


class KeyFile(object):
    """A NetworkManager keyfile read the way GLib reads it (line based: no continuation lines).

    ``items`` gives the values as written (escaped, for copying to another file); ``get`` unescapes.
    """

    def __init__(self):
        self.groups = {}

    def has_section(self, group):
        return group in self.groups

    def items(self, group):
        return [(key, KeyfileRaw(value)) for key, value in self.groups[group].items()]

    def get(self, group, key, fallback=None):
        if key not in self.groups.get(group, {}):
            return fallback
        return keyfile_unescape(self.groups[group][key])


def parse_keyfile(text):
    keyfile = KeyFile()
    group = None
    for number, line in enumerate((text or '').splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('['):
            if not line.rstrip().endswith(']'):
                raise KvmError('cannot parse NetworkManager keyfile: line %d is not a [group]' % number)
            group = line.rstrip()[1:-1]
            keyfile.groups.setdefault(group, {})
            continue
        if group is None or '=' not in line:
            raise KvmError('cannot parse NetworkManager keyfile: line %d is not key=value in a group' % number)
        key, value = line.split('=', 1)
        keyfile.groups[group][key.rstrip()] = value.lstrip()
    return keyfile


def render_keyfile(sections):
    """Sections [(group, [(key, value)])] in GLib keyfile syntax: every value escaped unless already raw."""
    out = io.StringIO()
    out.write('# %s\n' % HEADER)
    first = True
    for section, items in sections:
        if not _KEYFILE_GROUP.fullmatch(section):
            raise KvmError('NetworkManager keyfile: refusing to write the group %s' % V.shown(section))
        if not first:
            out.write('\n')
        first = False
        out.write('[%s]\n' % section)
        for key, value in items:
            if not _KEYFILE_KEY.fullmatch(key):
                raise KvmError('NetworkManager keyfile: refusing to write the key %s' % V.shown(key))
            if isinstance(value, KeyfileRaw):
                if V.has_control(value):
                    raise KvmError('%s: refusing to write a value with control characters' % key)
            else:
                value = keyfile_escape(value)
            out.write('%s=%s\n' % (key, value))
    return out.getvalue()


class NetworkManagerProvider(Provider):
    """NetworkManager keyfiles: a bridge profile and one bridge-port profile per port.

    The port's own profiles are never edited: the bridge-port profile has a higher
    autoconnect-priority, and ``absent`` deletes only the profiles written here. When
    config_root is / and NetworkManager runs, the files are loaded with ``nmcli connection load``
    (and removed ones forgotten with ``nmcli connection reload``), always with list arguments.
    """

    name = 'networkmanager'
    directory = '/etc/NetworkManager/system-connections'
    PORT_PRIORITY = '100'

    def bridge_file(self, name):
        return self.path(self.directory, '%s.nmconnection' % name)

    def port_file(self, name, port):
        return self.path(self.directory, '%s-port-%s.nmconnection' % (name, port))

    @staticmethod
    def profile_uuid(kind, *names):
        return str(uuid.uuid5(UUID_NAMESPACE, '%s:%s' % (kind, ':'.join(names))))

    def profiles_of(self, device, exclude):
        """Keyfiles (path, parser) of other profiles bound to ``device`` by interface-name."""
        found = []
        for path in sorted(glob.glob(os.path.join(self.path(self.directory), '*'))):
            if path in exclude or path.endswith('~') or not os.path.isfile(path):
                continue
            try:
                parser = parse_keyfile(read_text(path))
            except KvmError:
                continue   # NetworkManager does not load a keyfile GLib cannot parse either
            if parser.has_section('connection') and parser.get('connection', 'interface-name', fallback=None) == device:
                found.append((path, parser))
        return found

    @staticmethod
    def ip_sections(parser):
        out = []
        for section in ('ipv4', 'ipv6'):
            if parser is not None and parser.has_section(section):
                out.append((section, list(parser.items(section))))
        return out

    @staticmethod
    def render_addressing(addr):
        v4 = []
        v6 = []
        if addr.method == 'dhcp':
            v4 = [('method', 'auto')]
            v6 = [('method', 'auto')]
        elif addr.method == 'none' or not addr.addresses:
            v4 = [('method', 'disabled')]
            v6 = [('method', 'ignore')]
        else:
            v4 = [('method', 'manual')] if addr.v4 else [('method', 'disabled')]
            for index, address in enumerate(addr.v4):
                v4.append(('address%d' % (index + 1), address))
            if addr.gateway4:
                v4.append(('gateway', addr.gateway4))
            v6 = [('method', 'manual')] if addr.v6 else [('method', 'ignore')]
            for index, address in enumerate(addr.v6):
                v6.append(('address%d' % (index + 1), address))
            if addr.gateway6:
                v6.append(('gateway', addr.gateway6))
        dns4 = [s for s in addr.dns if ':' not in s]
        dns6 = [s for s in addr.dns if ':' in s]
        if dns4:
            v4.append(('dns', ';'.join(dns4) + ';'))
        if dns6:
            v6.append(('dns', ';'.join(dns6) + ';'))
        return [('ipv4', v4), ('ipv6', v6)]

    def changes(self, spec, addressing):
        name = spec['name']
        ports = spec['ports']
        bridge_path = self.bridge_file(name)
        bridge_before = read_text(bridge_path)
        ours = set([bridge_path] + [self.port_file(name, p) for p in ports])
        changes = []
        if spec['state'] == 'present':
            blob = None
            if spec['ip'] == 'inherit' and ports:
                for _path, parser in self.profiles_of(ports[0], ours):
                    blob = self.ip_sections(parser) or None
                    if blob:
                        break
                if blob is None and bridge_before is not None:
                    blob = self.ip_sections(parse_keyfile(bridge_before)) or None
            if blob is None:
                blob = self.render_addressing(addressing)
            ethernet = []
            if spec.get('mac'):
                ethernet.append(('cloned-mac-address', spec['mac']))
            if spec.get('mtu'):
                ethernet.append(('mtu', str(spec['mtu'])))
            bridge = [('stp', 'true' if spec['stp'] else 'false')]
            if spec['stp']:
                # NetworkManager, like the kernel, needs 2-30 s with STP on
                bridge.append(('forward-delay', str(min(30, max(2, spec['forward_delay'])))))
            sections = [('connection', [('id', name), ('uuid', self.profile_uuid('bridge', name)), ('type', 'bridge'),
                                        ('interface-name', name), ('autoconnect', 'true')])]
            if ethernet:
                sections.append(('ethernet', ethernet))
            sections.append(('bridge', bridge))
            sections += blob
            changes.append(FileChange(bridge_path, bridge_before, render_keyfile(sections), mode=0o600))
            for port in ports:
                path = self.port_file(name, port)
                port_id = '%s-port-%s' % (name, port)
                sections = [('connection', [('id', port_id), ('uuid', self.profile_uuid('port', name, port)),
                                            ('type', 'ethernet'), ('interface-name', port), ('master', name),
                                            ('slave-type', 'bridge'), ('autoconnect', 'true'),
                                            ('autoconnect-priority', self.PORT_PRIORITY)])]
                changes.append(FileChange(path, read_text(path), render_keyfile(sections), mode=0o600))
        else:
            blob = self.ip_sections(parse_keyfile(bridge_before)) if bridge_before is not None else []
            for path in sorted(ours):
                text = read_text(path)
                if text is not None:
                    changes.append(FileChange(path, text, None, mode=0o600))
            if ports and bridge_before is not None and not self.profiles_of(ports[0], ours):
                # nothing else configures the port: give it the bridge's addressing back
                port = ports[0]
                sections = [('connection', [('id', port), ('uuid', self.profile_uuid('ethernet', port)),
                                            ('type', 'ethernet'), ('interface-name', port), ('autoconnect', 'true')])]
                sections += blob
                path = self.path(self.directory, '%s.nmconnection' % port)
                changes.append(FileChange(path, read_text(path), render_keyfile(sections), mode=0o600))
        return changes

    def activate(self, module, changes):
        if self.root != '/':
            return []
        nmcli = module.get_bin_path('nmcli')
        if not nmcli:
            return []
        commands = []
        written = [c.path for c in changes if c.changed and c.after is not None]
        if written:
            commands.append([nmcli, 'connection', 'load'] + written)
        if any(c.changed and c.after is None for c in changes):
            commands.append([nmcli, 'connection', 'reload'])
        for cmd in commands:
            rc, _out, err = module.run_command(cmd)
            if rc != 0:
                raise KvmError('%s failed: %s' % (' '.join(cmd[1:]), (err or '').strip()))
        return commands


PROVIDERS = dict((cls.name, cls) for cls in (IfcfgProvider, IfupdownProvider, NetworkManagerProvider, RuntimeProvider))


def networkmanager_running(module):
    nmcli = module.get_bin_path('nmcli')
    if not nmcli:
        return False
    rc, out, _err = module.run_command([nmcli, '-t', '-f', 'RUNNING', 'general'])
    return rc == 0 and out.strip() == 'running'


def detect(module, root):
    """The provider for provider=auto: NetworkManager if it runs, else ifcfg, else ifupdown, else runtime."""
    root = root or '/'
    if root == '/' and networkmanager_running(module):
        return 'networkmanager'
    if os.path.isdir(os.path.join(root, 'etc/sysconfig/network-scripts')):
        return 'ifcfg'
    if os.path.isfile(os.path.join(root, 'etc/network/interfaces')) or \
            os.path.isdir(os.path.join(root, 'etc/network/interfaces.d')):
        return 'ifupdown'
    if os.path.isdir(os.path.join(root, 'etc/NetworkManager/system-connections')):
        return 'networkmanager'
    return 'runtime'


def get_provider(name, root):
    return PROVIDERS[name](root)
