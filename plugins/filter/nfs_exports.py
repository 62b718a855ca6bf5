# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the nfs_storage role: its exports and mounts validated, normalized and rendered.

Every user value that reaches ``/etc/exports.d`` or ``/etc/fstab`` passes here first; a refusal is an
AnsibleFilterError whose message starts with the option's name (``nfs_storage_exports[1].clients[0]``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as v


def _fail(exc):
    raise AnsibleFilterError(str(exc)) from None


def _list(option, value):
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        v.refuse(option, 'must be a list', value)
    return list(value)


def _dict(option, value):
    if not isinstance(value, Mapping):
        v.refuse(option, 'must be a dictionary', value)
    return value


# ---------------------------------------------------------------- paths
# Characters written as themselves in an exports(5) path; any other byte is written as \ooo (octal), the
# escape exports(5) documents for "spaces or other unusual characters" (exportfs decodes it). Whitespace
# and control characters are refused outright, so an escape never hides a line break or a field break.
_PATH_PLAIN = re.compile(r'[A-Za-z0-9/_.+,:@%=~-]')


def nfs_path(option, value):
    """An absolute, normalized path without whitespace or control characters."""
    if isinstance(value, str) and any(ch.isspace() for ch in value) and not v.has_control(value):
        v.refuse(option, 'must not contain whitespace', value)
    return v.abs_path(option, value)


def exports_path(path):
    """``path`` written in exports(5) form: unusual bytes as backslash and three octal digits."""
    out = []
    for ch in path:
        if _PATH_PLAIN.fullmatch(ch):
            out.append(ch)
        else:
            out.extend('\\%03o' % byte for byte in ch.encode('utf-8'))
    return ''.join(out)


# ---------------------------------------------------------------- clients
IPV4_ALL = ipaddress.ip_network('0.0.0.0/0')
IPV6_ALL = ipaddress.ip_network('::/0')
IPV4_MAPPED = ipaddress.ip_network('::ffff:0:0/96')
# A union of client networks larger than a /7 counts as the world: no site's hypervisors need more (all of
# RFC 1918 is smaller; fc00::/7 is the whole ULA range), and it catches lists that cover the internet in
# pieces (0.0.0.0/1 + 128.0.0.0/1, or 128 /8s).
WIDEST_V4 = 2 ** (32 - 7)
WIDEST_V6 = 2 ** (128 - 7)
_NETGROUP = re.compile(r'@[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}')
_CLIENT_CHARS = re.compile(r'[A-Za-z0-9@*?.\[\]:/_-]{1,253}')
_WILDCARD = re.compile(r'[*?\[\]]')
_WILDCARD_HOST = re.compile(r'[A-Za-z0-9*?.\[\]-]{1,253}')


def client(option, value):
    """One exports(5) client: ``('host'|'address'|'network'|'netgroup'|'wildcard', normalized, network)``."""
    if not isinstance(value, str) or not value:
        v.refuse(option, 'must be a host name, an IP address, a network (CIDR) or a @netgroup', value)
    if v.has_control(value) or any(ch.isspace() for ch in value):
        v.refuse(option, 'must not contain whitespace or control characters '
                         '(one client per list item; options go in the export\'s options)', value)
    if '(' in value or ')' in value:
        v.refuse(option, "must not carry options in parentheses (set the export's options instead)", value)
    if not _CLIENT_CHARS.fullmatch(value):
        v.refuse(option, 'must be a host name, an IP address, a network (CIDR) or a @netgroup '
                         '(letters, digits and @ * ? . [ ] : / _ -)', value)
    if value.startswith('@'):
        if not _NETGROUP.fullmatch(value):
            v.refuse(option, 'invalid netgroup (@ then letters, digits and _ . -)', value)
        return 'netgroup', value, None
    if _WILDCARD.search(value):
        if not _WILDCARD_HOST.fullmatch(value):
            v.refuse(option, 'invalid host name pattern', value)
        return 'wildcard', value, None
    if '/' in value:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            v.refuse(option, 'not a network in CIDR form such as 192.0.2.0/24 (or address/netmask)', value)
        return 'network', str(net), net
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is not None:
        return 'address', str(addr), ipaddress.ip_network(addr)
    return 'host', v.dns_name(option, value), None


def _as_v4(net):
    """An IPv6 network inside ::ffff:0:0/96 as the IPv4 network it maps."""
    return ipaddress.ip_network('%s/%d' % (ipaddress.IPv4Address(int(net.network_address) & 0xffffffff),
                                           net.prefixlen - 96))


def reaches_world(networks):
    """True when the union of ``networks`` covers all of IPv4 or IPv6 or is wider than a /7."""
    v4, v6 = [], []
    for net in networks:
        if net.version == 6 and net.subnet_of(IPV4_MAPPED):
            v4.append(_as_v4(net))
        elif net.version == 6:
            if net.supernet_of(IPV4_MAPPED):
                v4.append(IPV4_ALL)
            v6.append(net)
        else:
            v4.append(net)
    for nets, widest in ((v4, WIDEST_V4), (v6, WIDEST_V6)):
        if sum(n.num_addresses for n in ipaddress.collapse_addresses(nets)) > widest:
            return True
    return False


# ---------------------------------------------------------------- export options (exports(5))
FLAGS = frozenset((
    'secure', 'insecure', 'rw', 'ro', 'async', 'sync', 'wdelay', 'no_wdelay', 'hide', 'nohide', 'crossmnt',
    'subtree_check', 'no_subtree_check', 'secure_locks', 'insecure_locks', 'auth_nlm', 'no_auth_nlm',
    'mountpoint', 'mp', 'root_squash', 'no_root_squash', 'all_squash', 'no_all_squash', 'pnfs', 'no_pnfs',
    'security_label', 'nordirplus',
))
CONFLICTS = (('rw', 'ro'), ('sync', 'async'), ('root_squash', 'no_root_squash'), ('all_squash', 'no_all_squash'),
             ('secure', 'insecure'), ('wdelay', 'no_wdelay'), ('hide', 'nohide'), ('subtree_check', 'no_subtree_check'),
             ('secure_locks', 'insecure_locks'), ('auth_nlm', 'no_auth_nlm'), ('pnfs', 'no_pnfs'))
SEC_FLAVORS = frozenset(('sys', 'krb5', 'krb5i', 'krb5p', 'none'))
XPRTSEC = frozenset(('none', 'tls', 'mtls'))
_UUID = re.compile(r'[0-9A-Fa-f]{8}(-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32}')
KNOWN_RULE = ('known options: %s, fsid=, anonuid=, anongid=, sec=, xprtsec=, mountpoint=/path'
              % ', '.join(sorted(FLAGS)))


def export_options(option, value):
    """Comma-separated export options, each one exports(5) knows: a list of normalized options."""
    if isinstance(value, (list, tuple)):
        value = ','.join(str(item) for item in value)
    if not isinstance(value, str) or not value.strip():
        v.refuse(option, 'must be comma-separated export options such as rw,sync', value)
    if v.has_control(value) or any(ch.isspace() for ch in value):
        v.refuse(option, 'must not contain whitespace or control characters', value)
    out, seen = [], set()
    for item in value.split(','):
        key, eq, arg = item.partition('=')
        if not item:
            v.refuse(option, 'has an empty option (two commas in a row, or a trailing comma)', value)
        elif key in FLAGS and not eq:
            pass
        elif key in ('fsid',) and eq:
            if not (arg.isdigit() or arg == 'root' or _UUID.fullmatch(arg)):
                v.refuse(option, 'fsid must be a number, root or a UUID', item)
        elif key in ('anonuid', 'anongid') and eq:
            if not arg.isdigit() or int(arg) > 4294967295:
                v.refuse(option, '%s must be a number' % key, item)
        elif key == 'sec' and eq:
            if not arg or any(f not in SEC_FLAVORS for f in arg.split(':')):
                v.refuse(option, 'sec must be flavors from %s separated by :' % ', '.join(sorted(SEC_FLAVORS)), item)
        elif key == 'xprtsec' and eq:
            if not arg or any(f not in XPRTSEC for f in arg.split(':')):
                v.refuse(option, 'xprtsec must be none, tls or mtls separated by :', item)
        elif key in ('mountpoint', 'mp') and eq:
            nfs_path(option + ' ' + key, arg)
            if not re.fullmatch(r'[A-Za-z0-9/_.+:@%~-]+', arg):
                v.refuse(option, '%s must be a plain absolute path' % key, item)
        else:
            v.refuse(option, 'unknown export option %s (%s)' % (v.shown(item), KNOWN_RULE))
        if key in seen:
            v.refuse(option, 'gives %s twice' % key, value)
        seen.add(key)
        out.append(item)
    for one, other in CONFLICTS:
        if one in seen and other in seen:
            v.refuse(option, 'has both %s and %s' % (one, other), value)
    return out


# ---------------------------------------------------------------- owner, group, mode
_ACCOUNT = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}')
_MODE = re.compile(r'0?[0-7]{3,4}')


def account(option, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
        v.refuse(option, 'invalid user or group (a name of letters, digits and _ . -, or a number)', value)
    return value


def file_mode(option, value):
    if isinstance(value, int) and not isinstance(value, bool):
        v.refuse(option, 'must be an octal string such as "0755" (quote it: YAML reads 0755 as a number)', value)
    if not isinstance(value, str) or not _MODE.fullmatch(value):
        v.refuse(option, 'must be an octal mode such as "0755"', value)
    return value


# ---------------------------------------------------------------- the filters
def nfs_exports_check(exports, options='rw,sync,no_root_squash', owner='root', group='root', mode='0755',
                      allow_world=False, allow_async=False, name='nfs_storage_exports'):
    """``nfs_storage_exports`` validated, with defaults applied and each exports(5) line rendered.

    Refused (AnsibleFilterError naming the option): a path that is relative, not normalized (``..``), or
    has whitespace or control characters; a client that is not a host name, address, network or netgroup;
    a client list whose union reaches the world (``*`` or any wildcard, 0.0.0.0/0, ::/0, pieces that add up
    to them) unless ``allow_world``; unknown or conflicting options; an export without ``sync`` unless
    ``allow_async``; ``no_root_squash`` for anything but listed hosts, addresses and networks.
    """
    try:
        return _check_exports(exports, options, owner, group, mode, allow_world, allow_async, name)
    except v.ValidationError as exc:
        _fail(exc)


def _check_exports(exports, options, owner, group, mode, allow_world, allow_async, name):
    if exports is None:
        return []
    out, paths = [], {}
    for index, export in enumerate(_list(name, exports)):
        where = '%s[%d]' % (name, index)
        export = _dict(where, export)
        unknown = sorted(set(export) - {'path', 'clients', 'options', 'owner', 'group', 'mode'})
        if unknown:
            v.refuse(where, 'unknown key(s) %s (path, clients, options, owner, group, mode)' % ', '.join(map(str, unknown)))
        if 'path' not in export:
            v.refuse(where, 'needs a path')
        path = nfs_path(where + '.path', export['path'])
        if path in paths:
            v.refuse(where + '.path', '%s is exported twice (also %s[%d])' % (path, name, paths[path]))
        paths[path] = index
        raw_clients = export.get('clients')
        if raw_clients is None:
            v.refuse(where + '.clients', 'needs at least one client')
        raw_clients = _list(where + '.clients', raw_clients)
        if not raw_clients:
            v.refuse(where + '.clients', 'needs at least one client')
        clients, kinds, networks = [], set(), []
        for cindex, raw in enumerate(raw_clients):
            kind, norm, net = client('%s.clients[%d]' % (where, cindex), raw)
            if norm in clients:
                v.refuse('%s.clients[%d]' % (where, cindex), 'is listed twice', raw)
            clients.append(norm)
            kinds.add(kind)
            if net is not None:
                networks.append(net)
        world = 'wildcard' in kinds or reaches_world(networks)
        if world and not allow_world:
            v.refuse(where + '.clients', 'exports %s to everyone: a wildcard, or networks whose union reaches all '
                     'of IPv4 or IPv6 (or more than a /7). Name the hypervisors, or set nfs_storage_allow_world: '
                     'true to accept that any host may mount it' % path, raw_clients)
        opt_name = where + '.options' if 'options' in export else 'nfs_storage_export_options'
        opts = export_options(opt_name, export.get('options', options))
        if ('sync' not in opts or 'async' in opts) and not allow_async:
            v.refuse(opt_name, '%s would be exported without sync. Guest images need sync (an async server '
                     'acknowledges writes it has not stored; a crash corrupts the disks). Set '
                     'nfs_storage_allow_async: true to accept that' % path, ','.join(opts))
        if 'no_root_squash' in opts and (world or kinds - {'host', 'address', 'network'}):
            v.refuse(opt_name, 'no_root_squash gives root on every client root on %s; it is accepted only when '
                     'every client is a listed host, address or network (no wildcard, netgroup or world)'
                     % path, ','.join(opts))
        item = {
            'path': path,
            'clients': clients,
            'options': ','.join(opts),
            'owner': account(where + '.owner' if 'owner' in export else 'nfs_storage_export_owner',
                             export.get('owner', owner)),
            'group': account(where + '.group' if 'group' in export else 'nfs_storage_export_group',
                             export.get('group', group)),
            'mode': file_mode(where + '.mode' if 'mode' in export else 'nfs_storage_export_mode',
                              export.get('mode', mode)),
            'world': world,
        }
        item['line'] = exports_path(path) + ' ' + ' '.join('%s(%s)' % (c, item['options']) for c in clients)
        out.append(item)
    return out


# Mount options written into /etc/fstab: comma-separated key or key=value of a plain character set.
_MOUNT_OPTION = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.:@+/-]*(=[A-Za-z0-9_.:@+/-]+)?')


def mount_options(option, value):
    if not isinstance(value, str) or not value:
        v.refuse(option, 'must be comma-separated mount options such as rw,hard', value)
    if v.has_control(value) or any(ch.isspace() for ch in value):
        v.refuse(option, 'must not contain whitespace or control characters', value)
    for item in value.split(','):
        if not _MOUNT_OPTION.fullmatch(item):
            v.refuse(option, 'invalid mount option %s (letters, digits and _ . : @ + / -, key or key=value)'
                     % v.shown(item))
    return value


def nfs_server(option, value):
    """An NFS server: a DNS name or an IP address (IPv6 in brackets in the mount source)."""
    if isinstance(value, str) and value.startswith('[') and value.endswith(']'):
        value = value[1:-1]
    try:
        addr = ipaddress.ip_address(value if isinstance(value, str) else '')
    except ValueError:
        return v.dns_name(option, value), False
    return str(addr), addr.version == 6


def nfs_mounts_check(mounts, options='rw,hard,_netdev', name='nfs_storage_mounts'):
    """``nfs_storage_mounts`` validated, with defaults applied; ``src`` is the fstab source field."""
    try:
        return _check_mounts(mounts, options, name)
    except v.ValidationError as exc:
        _fail(exc)


def _check_mounts(mounts, options, name):
    if mounts is None:
        return []
    out, paths = [], {}
    for index, mount in enumerate(_list(name, mounts)):
        where = '%s[%d]' % (name, index)
        mount = _dict(where, mount)
        unknown = sorted(set(mount) - {'server', 'export', 'path', 'options', 'pool'})
        if unknown:
            v.refuse(where, 'unknown key(s) %s (server, export, path, options, pool)' % ', '.join(map(str, unknown)))
        for key in ('server', 'export'):
            if key not in mount:
                v.refuse(where, 'needs %s' % key)
        server, bracket = nfs_server(where + '.server', mount['server'])
        export = nfs_path(where + '.export', mount['export'])
        path = nfs_path(where + '.path', mount['path']) if 'path' in mount else export
        if path in paths:
            v.refuse(where + '.path', '%s is also the mount point of %s[%d]' % (path, name, paths[path]))
        paths[path] = index
        opt_name = where + '.options' if 'options' in mount else 'nfs_storage_mount_options'
        item = {'server': server, 'export': export, 'path': path,
                'src': ('[%s]' % server if bracket else server) + ':' + export,
                'options': mount_options(opt_name, mount.get('options', options)),
                'by': 'libvirt' if mount.get('pool') is not None else 'fstab'}
        if mount.get('pool') is not None:
            pool = _dict(where + '.pool', mount['pool'])
            if 'name' not in pool:
                v.refuse(where + '.pool', 'needs a name')
            autostart = pool.get('autostart', True)
            if not isinstance(autostart, bool):
                v.refuse(where + '.pool.autostart', 'must be true or false', autostart)
            item['pool'] = {'name': v.object_name(where + '.pool.name', pool['name'], 'pool name'),
                            'autostart': autostart}
        out.append(item)
    return out


class FilterModule(object):

    def filters(self):
        return dict(nfs_exports_check=nfs_exports_check, nfs_mounts_check=nfs_mounts_check)
