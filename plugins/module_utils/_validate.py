# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one validation layer of kvmops.kvm: every module, filter and plugin checks its input here.

Private module (leading underscore): free to change between releases.

Each checker takes the option's name (as the user wrote it, ``interfaces[2].mac``) and the value, and
returns the normalized value or raises :class:`ValidationError` (a ``KvmError``) whose message starts
with that option's name. Checkers are pure: no I/O, no libvirt, so every refusal happens before any
write. The threat model they serve is in SECURITY.md.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

try:
    from urllib.parse import urlsplit, parse_qsl
except ImportError:  # pragma: no cover - Python 2 is not supported
    urlsplit = parse_qsl = None

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError


class ValidationError(KvmError):
    """Bad input, refused before anything was written; the message names the option."""


def refuse(option, detail, value=None, show_value=True):
    """Raise the one refusal shape: ``option: detail`` (with the offending value shown safely)."""
    if show_value and value is not None:
        raise ValidationError('%s: %s (got %s)' % (option, detail, shown(value)))
    raise ValidationError('%s: %s' % (option, detail))


def shown(value, limit=80):
    """A value quoted for a message: repr (control characters escaped), cut to ``limit`` characters."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + '...(%d characters)' % len(str(value))
    return text


# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators.
_CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u2028\u2029]')


def has_control(value):
    return bool(_CONTROL.search(value))


def text(option, value, max_length=4096, allow_empty=False):
    """A one-line string: no control characters (newline, NUL, escape ...), bounded length."""
    if not isinstance(value, str):
        refuse(option, 'must be a string', value)
    if not value and not allow_empty:
        refuse(option, 'must not be empty')
    if has_control(value):
        refuse(option, 'must not contain control characters such as newlines or NUL', value)
    if len(value) > max_length:
        refuse(option, 'is longer than %d characters' % max_length, value)
    return value


# ---------------------------------------------------------------- names
# libvirt object names (guests, networks, pools, volumes, snapshots): what virsh users type. No '/',
# no whitespace, no quotes or shell metacharacters; it must not start with '-' or '.'.
OBJECT_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,199}')
OBJECT_NAME_RULE = 'letters, digits and _ . + : @ -, not starting with . or -, at most 200 characters'


def object_name(option, value, kind='name'):
    """A libvirt object name (guest, network, pool, volume, snapshot)."""
    if not isinstance(value, str) or not OBJECT_NAME.fullmatch(value):
        refuse(option, 'invalid %s (%s)' % (kind, OBJECT_NAME_RULE), value)
    return value


# Linux interface names: IFNAMSIZ is 16 including the NUL; the kernel refuses '/', ':' and whitespace,
# and anything else would reach shell-sourced files (ifcfg), so the set is letters, digits, '_ . -'.
IFNAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}')
IFNAME_RULE = 'letters, digits and _ . -, not starting with . or -, at most 15 characters'


def ifname(option, value):
    """A Linux network interface name safe in every configuration format."""
    if not isinstance(value, str) or not IFNAME.fullmatch(value) or value in ('.', '..'):
        refuse(option, 'invalid interface name (%s)' % IFNAME_RULE, value)
    return value


_LABEL = re.compile(r'[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?')


def dns_name(option, value, allow_single_label=True):
    """A DNS host or domain name (RFC 1123 labels, at most 253 characters), lower-cased."""
    if not isinstance(value, str) or not value or len(value) > 253:
        refuse(option, 'invalid DNS name (RFC 1123: labels of letters, digits and -, at most 253 characters)', value)
    labels = value.split('.')
    if not all(_LABEL.fullmatch(label) for label in labels) or (not allow_single_label and len(labels) < 2):
        refuse(option, 'invalid DNS name (RFC 1123: labels of letters, digits and -, at most 253 characters)', value)
    return value.lower()


# ---------------------------------------------------------------- addresses
_MAC = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}')


def mac(option, value, unicast=True):
    """A MAC address in libvirt's form (lower case, colons); ``-`` separators are accepted."""
    if not isinstance(value, str):
        refuse(option, 'invalid MAC address (xx:xx:xx:xx:xx:xx)', value)
    norm = value.lower().replace('-', ':')
    if not _MAC.fullmatch(norm):
        refuse(option, 'invalid MAC address (xx:xx:xx:xx:xx:xx)', value)
    if unicast and int(norm[:2], 16) & 1:
        refuse(option, '%s is a multicast address' % norm)
    return norm


_DUID = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){1,129}')


def duid(option, value):
    """A DHCPv6 DUID / DHCP client identifier as hex octets with colons (RFC 8415: 2 to 130 octets)."""
    if not isinstance(value, str) or not _DUID.fullmatch(value.lower()):
        refuse(option, 'invalid DUID (2 to 130 hex octets separated by colons, such as 00:01:00:01:2c:1f)', value)
    return value.lower()


def ip_address(option, value, version=None):
    """An IPv4 or IPv6 address (``version`` 4 or 6 to require one); returned in its compressed form."""
    try:
        addr = ipaddress.ip_address(value if isinstance(value, str) else None)
    except ValueError:
        refuse(option, 'not an IP%s address' % ('v%d' % version if version else ''), value)
    if version and addr.version != version:
        refuse(option, 'not an IPv%d address' % version, value)
    return str(addr)


def ip_network(option, value, version=None, strict=False):
    """A network in CIDR form (``10.0.0.0/24``); host bits allowed unless ``strict``."""
    if not isinstance(value, str) or '/' not in value:
        refuse(option, 'not a network in CIDR form such as 10.0.0.0/24', value)
    try:
        net = ipaddress.ip_network(value, strict=strict)
    except ValueError:
        refuse(option, 'not a network in CIDR form such as 10.0.0.0/24', value)
    if version and net.version != version:
        refuse(option, 'not an IPv%d network' % version, value)
    return net


def ip_interface(option, value, version=None):
    """An address with its prefix (``192.168.1.10/24``)."""
    if not isinstance(value, str) or '/' not in value:
        refuse(option, 'not an address with a prefix such as 192.168.1.10/24', value)
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        refuse(option, 'not an address with a prefix such as 192.168.1.10/24', value)
    if version and iface.version != version:
        refuse(option, 'not an IPv%d address' % version, value)
    return iface


# iSCSI names (RFC 3720 3.2.6): iqn.YYYY-MM.reversed.domain[:unique], eui.<16 hex>, naa.<16 or 32 hex>.
_ISCSI_NAME = re.compile(r'iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[A-Za-z0-9.:_-]+)?'
                         r'|eui\.[0-9A-Fa-f]{16}|naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})')


def iscsi_name(option, value):
    """An iSCSI qualified name (target or initiator IQN, EUI or NAA form), at most 223 characters."""
    if not isinstance(value, str) or len(value) > 223 or not _ISCSI_NAME.fullmatch(value):
        refuse(option, 'invalid iSCSI name (iqn.YYYY-MM.reversed.domain:name, eui.<16 hex> or naa.<hex>)', value)
    return value


# ---------------------------------------------------------------- paths
def abs_path(option, value, max_length=4095):
    """An absolute, normalized path: no ``..`` component, no NUL, newline or other control character.

    Repeated and trailing slashes and ``.`` components are normalized away (returned); ``..`` is refused,
    never resolved, because what it points at depends on symlinks the module must not guess about.
    """
    if not isinstance(value, str) or not value:
        refuse(option, 'must be an absolute path', value)
    if has_control(value):
        refuse(option, 'must not contain control characters such as newlines or NUL', value)
    if not value.startswith('/'):
        refuse(option, 'must be an absolute path', value)
    if '..' in value.split('/'):
        refuse(option, "must not contain '..' components", value)
    if len(value) > max_length:
        refuse(option, 'is longer than %d characters' % max_length, value)
    norm = posixpath.normpath(value)
    if norm.startswith('//'):
        norm = '/' + norm.lstrip('/')
    return norm


# ---------------------------------------------------------------- sizes and counts
KIB = 1024
MAX_MEMORY_BYTES = 64 * 1024 ** 4        # 64 TiB: beyond any x86 host QEMU supports today
MAX_VCPUS = 4096                          # QEMU's largest x86 machine limit
MAX_VOLUME_BYTES = 64 * 1024 ** 5         # 64 PiB: qcow2's own limit


def count(option, value, minimum=0, maximum=None):
    """An integer within ``minimum``..``maximum`` (bools are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        refuse(option, 'must be an integer', value)
    if value < minimum:
        refuse(option, 'must be at least %d' % minimum, value)
    if maximum is not None and value > maximum:
        refuse(option, 'must be at most %d' % maximum, value)
    return value


def size_bytes(option, value, maximum, minimum=1):
    """A size already converted to bytes, within bounds; the message speaks in human units."""
    if value < minimum:
        refuse(option, 'must be at least %s' % human(minimum), value)
    if value > maximum:
        refuse(option, 'must be at most %s' % human(maximum), value)
    return value


def human(size):
    for unit, factor in (('PiB', 1024 ** 5), ('TiB', 1024 ** 4), ('GiB', 1024 ** 3), ('MiB', 1024 ** 2), ('KiB', 1024)):
        if size >= factor and size % factor == 0:
            return '%d %s' % (size // factor, unit)
    return '%d bytes' % size


# ---------------------------------------------------------------- tokens written into XML attributes
_TOKEN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}')


def token(option, value):
    """An identifier such as a machine type or CPU model (``pc-q35-7.2``, ``Haswell-noTSX``)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        refuse(option, 'invalid value (letters, digits and _ . + -, at most 100 characters)', value)
    return value


# libosinfo ids are URIs (http://debian.org/debian/12); short ids (debian12) are plain tokens.
_OSINFO_ID = re.compile(r'[a-z][a-z0-9+.-]{0,19}://[A-Za-z0-9._~/+:-]{1,200}')


def osinfo_id(option, value):
    """A libosinfo OS id: ``http://debian.org/debian/12`` or a short id such as ``debian12``."""
    if isinstance(value, str) and _OSINFO_ID.fullmatch(value):
        return value
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    refuse(option, 'invalid libosinfo id (such as http://debian.org/debian/12: letters, digits and _ . + - / : ~)',
           value)
    return value


_UUID = re.compile(r'[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}')


def uuid(option, value):
    """A UUID (with or without dashes), returned lower-case in its dashed form."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        refuse(option, 'invalid UUID', value)
    hexa = value.replace('-', '').lower()
    return '%s-%s-%s-%s-%s' % (hexa[:8], hexa[8:12], hexa[12:16], hexa[16:20], hexa[20:])


# ---------------------------------------------------------------- libvirt URIs
URI_DRIVERS = ('qemu', 'test')
URI_TRANSPORTS = ('', 'unix', 'ssh', 'libssh', 'libssh2', 'tls', 'tcp')
# Query parameters that make libvirt run a program: ext's command=, and the ssh transports' netcat=
# (a command run by the remote shell).
URI_COMMAND_PARAMS = ('command', 'netcat')


def uri(option, value, allow_ext=False):
    """A libvirt connection URI of an allowed driver and transport.

    ``ext`` transports and ``command=``/``netcat=`` parameters make libvirt run a program; they are
    refused unless ``allow_ext`` (the documented opt-in ``uri_allow_ext``) is true.
    """
    if not isinstance(value, str) or not value:
        refuse(option, 'must be a libvirt URI such as qemu:///system', value)
    if has_control(value) or any(ch.isspace() for ch in value):
        refuse(option, 'must not contain whitespace or control characters', value)
    if '{' in value or '}' in value:
        refuse(option, 'must not contain { or } (template markers have no place in a URI)', value)
    match = re.match(r'^([a-z0-9]+)(?:\+([a-z0-9]+))?://', value)
    if not match:
        refuse(option, 'must be a libvirt URI such as qemu:///system or qemu+ssh://root@host/system', value)
    driver, transport = match.group(1), match.group(2) or ''
    if driver not in URI_DRIVERS:
        refuse(option, 'driver %r is not supported (use %s)' % (driver, ', '.join(URI_DRIVERS)))
    try:
        parts = urlsplit(value)
        query = parse_qsl(parts.query, keep_blank_values=True)
        parts.port  # pylint: disable=pointless-statement  # raises on a bad port
    except ValueError as exc:
        refuse(option, 'not a valid URI (%s)' % exc, value)
    if transport == 'ext' or any(key.lower() in URI_COMMAND_PARAMS for key, _dummy in query):
        if not allow_ext:
            refuse(option, 'the ext transport and the command= and netcat= parameters make libvirt run a program; '
                           'they are refused unless uri_allow_ext is true', value)
    elif transport not in URI_TRANSPORTS:
        refuse(option, 'transport %r is not supported (use %s)'
               % (transport, ', '.join(t for t in URI_TRANSPORTS if t) + ', or none'))
    return value
