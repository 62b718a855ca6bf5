# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of a guest's IP addresses (the inventory plugin, kvm_info and kvm_domain use it).

Private module (leading underscore): free to change between releases.

A running guest's addresses come from up to three sources, asked in the user's order:

* ``lease`` - the DHCP leases of the libvirt network the interface is on (the host's dnsmasq);
* ``agent`` - the QEMU guest agent inside the guest;
* ``arp``   - the hypervisor's neighbour table; for a local URI, when libvirt's own ARP source fails
  (libvirt 9.0 on current kernels answers "wrong nlmsg len") or finds nothing, this machine's
  ``/proc/net/arp`` (it is the hypervisor's) is read instead.

Everything these sources return is untrusted: the guest agent and ARP answers are whatever the guest
claims, and lease data is what a DHCP client sent. Each entry is rebuilt from checked parts - an
address must parse as an IP address (its zone dropped, printed in its compressed form) or the entry
is dropped, a MAC must be a MAC or becomes ``None``, a prefix must be a number in range, an interface
name is cut to :data:`MAX_NAME` characters with control characters replaced - and a source yields at
most :data:`MAX_PER_SOURCE` entries. An entry is ``{address, prefix, family, mac, interface, source}``.

:func:`wait` is kvm_domain's ``wait_for``: it polls until the guest has a usable address (and, when
a port is given, until that TCP port accepts a connection from this machine), or fails at its timeout
with a message naming what was missing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, error_text, is_local_uri, libvirt, one_line

SOURCES = ('lease', 'agent', 'arp')
FAMILIES = ('ipv4', 'ipv6', 'any')
MAX_PER_SOURCE = 256     # a guest agent may report anything; more than this is not an answer to use
MAX_NAME = 64            # interface names (the agent reports the guest's own names)
MAX_ERROR = 300          # a source's error message (libvirt's text may carry the agent's words)
POLL = 2.0               # seconds between two looks while waiting
CONNECT_TIMEOUT = 3.0    # seconds one TCP connection attempt may take while waiting
MAX_WAIT = 86400

# kvm_domain's wait_for (declared here, where it is implemented; _domain.ARGUMENT_SPEC refers to it).
WAIT_FOR_SPEC = dict(
    address=dict(type='bool', default=True),
    sources=dict(type='list', elements='str', choices=list(SOURCES), default=list(SOURCES), aliases=['source']),
    family=dict(type='str', choices=list(FAMILIES), default='ipv4'),
    port=dict(type='int'),
    timeout=dict(type='int', default=300),
)

_MAC = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}')
_CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u2028\u2029]')


# ---------------------------------------------------------------- checked parts of untrusted data
def clean_ip(value):
    """``(address, family)`` of a string that is an IP address (zone dropped, compressed form), else ``(None, None)``."""
    if not isinstance(value, str) or len(value) > 100:
        return None, None
    try:
        addr = ipaddress.ip_address(value.split('%', 1)[0].strip())
    except ValueError:
        return None, None
    return str(addr), 'ipv%d' % addr.version


def clean_mac(value):
    """A MAC in libvirt's form (lower case, colons), else ``None``."""
    if not isinstance(value, str):
        return None
    norm = value.strip().lower().replace('-', ':')
    return norm if _MAC.fullmatch(norm) else None


def clean_prefix(value, family):
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= (32 if family == 'ipv4' else 128) else None


def clean_name(value):
    """An interface name as text: control characters replaced by ``?``, at most :data:`MAX_NAME` characters."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    return _CONTROL.sub('?', str(value))[:MAX_NAME] or None


def _error(exc):
    return error_text(exc)[:MAX_ERROR]


# ---------------------------------------------------------------- sources
def _source_flag(source):
    return {
        'lease': libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        'agent': libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        'arp': libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    }[source]


def parse_interfaces(found, source):
    """The entries of what ``virDomainInterfaceAddresses`` returned (``{ifname: {hwaddr, addrs}}``).

    Pure, and safe on any value: what is not an IP address is dropped, the rest is rebuilt from
    checked parts (see the module docstring). Sorted by interface name, deduplicated.
    """
    entries = []
    seen = set()
    if not isinstance(found, dict):
        return entries
    for ifname, data in sorted(found.items(), key=lambda item: str(item[0])):
        if not isinstance(data, dict):
            continue
        mac = clean_mac(data.get('hwaddr'))
        addrs = data.get('addrs')
        for addr in addrs if isinstance(addrs, (list, tuple)) else []:
            if not isinstance(addr, dict):
                continue
            address, family = clean_ip(addr.get('addr'))
            if address is None:
                continue
            name = clean_name(ifname)
            key = (address, mac, name)
            if key in seen:
                continue
            seen.add(key)
            entries.append(dict(address=address, prefix=clean_prefix(addr.get('prefix'), family), family=family,
                                mac=mac, interface=name, source=source))
            if len(entries) >= MAX_PER_SOURCE:
                return entries
    return entries


def interface_addresses(dom, source):
    """Addresses libvirt reports for a running guest from one source: ``(entries, error)``.

    A source that cannot answer (no guest agent, an ARP table without the guest) is no failure: its
    entries are empty and ``error`` is libvirt's own message.
    """
    try:
        found = dom.interfaceAddresses(_source_flag(source), 0)
    except libvirt.libvirtError as exc:
        return [], _error(exc)
    return parse_interfaces(found or {}, source), None


def parse_proc_arp(text, macs):
    """Complete IPv4 neighbour entries (``/proc/net/arp`` format) for the given MACs."""
    wanted = set(m for m in (clean_mac(m) for m in macs) if m)
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6:
            continue
        address, family = clean_ip(fields[0])
        mac = clean_mac(fields[3])
        try:
            complete = int(fields[2], 16) & 0x2
        except ValueError:
            continue
        if address is None or family != 'ipv4' or mac not in wanted or not complete:
            continue
        entry = dict(address=address, prefix=None, family='ipv4', mac=mac, interface=clean_name(fields[5]), source='arp')
        if entry not in found:
            found.append(entry)
        if len(found) >= MAX_PER_SOURCE:
            break
    return found


def proc_arp_addresses(macs, path='/proc/net/arp'):
    """:func:`parse_proc_arp` of this machine's neighbour table (nothing when it cannot be read)."""
    try:
        with open(path) as handle:
            text = handle.read(1 << 20)
    except (IOError, OSError, UnicodeError):
        return []
    return parse_proc_arp(text, macs)


def read(client, dom, sources, macs):
    """Every source's entries and errors for a running guest: ``(by_source, errors)``.

    ``macs`` are the guest's MACs (from its XML), for the ``/proc/net/arp`` fallback of a local URI.
    """
    by_source = {}
    errors = {}
    for source in sources:
        found, error = interface_addresses(dom, source)
        if source == 'arp' and not found and is_local_uri(client.uri):
            # libvirt 9.0's netlink neighbour dump fails ("wrong nlmsg len") or comes back empty on
            # some kernels; for a local URI the kernel's own table says the same thing.
            found = proc_arp_addresses(macs)
            if error and not found:
                error = '%s (no entry in this host\'s ARP table either)' % error
            elif found:
                error = None
        by_source[source] = found
        if error:
            errors[source] = error
    return by_source, errors


def flatten(by_source, sources):
    """All entries, in the order of ``sources``."""
    return [entry for source in sources for entry in by_source.get(source, [])]


def usable(entry, family):
    """An address Ansible could reach the guest at: of ``family``, not loopback, not IPv6 link-local."""
    if family != 'any' and entry['family'] != family:
        return False
    addr = ipaddress.ip_address(entry['address'])
    return not (addr.is_loopback or addr.is_unspecified or addr.is_multicast
                or (addr.version == 6 and addr.is_link_local))


def candidates(entries, family):
    """Usable ``(address, source)`` pairs of ``entries`` (in their order), each address once."""
    out = []
    for entry in entries:
        if usable(entry, family) and entry['address'] not in [a for a, _s in out]:
            out.append((entry['address'], entry['source']))
    return out


def pick_address(by_source, sources, family):
    """The first usable address in the order of ``sources``: ``(address, source)`` or ``(None, None)``."""
    found = candidates(flatten(by_source, sources), family)
    return found[0] if found else (None, None)


def macs_of(facts):
    return [iface.get('mac') for iface in facts.get('interfaces') or [] if iface.get('mac')]


def domain_addresses(client, dom, facts, sources=SOURCES):
    """``addresses`` and ``address_errors`` for a guest's facts (both empty when it does not run)."""
    if not facts.get('active') or dom is None:
        return dict(addresses=[], address_errors={})
    by_source, errors = read(client, dom, sources, macs_of(facts))
    return dict(addresses=flatten(by_source, sources), address_errors=errors)


# ---------------------------------------------------------------- wait_for
def wait_spec(raw, state):
    """kvm_domain's ``wait_for`` checked (pure): the normalized spec, or ``None`` when there is nothing to wait for."""
    from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
    if raw is None:
        return None
    if not raw.get('address'):
        if raw.get('port') is not None:
            valid.refuse('wait_for.port', 'needs wait_for.address (a port is reached at the guest\'s address)')
        return None
    if state in ('shutdown', 'destroyed', 'paused', 'absent'):
        valid.refuse('wait_for', 'a guest in state %s has no address to wait for (use state running, or present '
                     'on a running guest)' % state)
    sources = []
    for source in raw.get('sources') or []:
        if source not in sources:
            sources.append(source)
    if not sources:
        valid.refuse('wait_for.sources', 'name at least one of %s' % ', '.join(SOURCES))
    port = raw.get('port')
    if port is not None:
        valid.count('wait_for.port', port, minimum=1, maximum=65535)
    timeout = valid.count('wait_for.timeout', raw.get('timeout'), minimum=0, maximum=MAX_WAIT)
    return dict(sources=sources, family=raw.get('family') or 'ipv4', port=port, timeout=timeout)


def port_open(address, port, timeout):
    """Whether ``address:port`` accepts a TCP connection from this machine: ``(True, None)`` or ``(False, why)``."""
    try:
        sock = socket.create_connection((address, port), timeout=max(timeout, 0.1))
    except (OSError, ValueError) as exc:
        return False, one_line(getattr(exc, 'strerror', None) or exc) or type(exc).__name__
    sock.close()
    return True, None


def _missing_address(name, spec, by_source, errors):
    parts = []
    for source in spec['sources']:
        if source in errors:
            parts.append('%s: %s' % (source, errors[source]))
        elif by_source.get(source):
            parts.append('%s: only %s' % (source, ', '.join(e['address'] for e in by_source[source])))
        else:
            parts.append('%s: none yet' % source)
    return ('wait_for: guest %s has no usable %s address from %s after %d s (%s)'
            % (name, 'IP' if spec['family'] == 'any' else spec['family'].replace('ip', 'IP'),
               ', '.join(spec['sources']), spec['timeout'], '; '.join(parts)))


def wait(client, dom, name, macs, spec, clock=time.monotonic, sleep=time.sleep, probe=None):
    """Poll until the guest has a usable address (and ``spec['port']`` accepts a connection), else KvmError.

    Returns ``dict(address, address_source, addresses, address_errors)`` as read at the end.
    """
    probe = probe or port_open
    deadline = clock() + spec['timeout']
    port = spec['port']
    while True:
        if not client.call('domain %s' % name, dom.isActive):
            raise KvmError('wait_for: guest %s is not running, so it has no address to wait for'
                           ' (state running starts it)' % name)
        by_source, errors = read(client, dom, spec['sources'], macs)
        found = candidates(flatten(by_source, spec['sources']), spec['family'])
        refused = []
        for address, source in found:
            if port is not None:
                ok, why = probe(address, port, min(CONNECT_TIMEOUT, max(deadline - clock(), 0.1)))
                if not ok:
                    refused.append('%s: %s' % (address, why))
                    continue
            return dict(address=address, address_source=source, addresses=flatten(by_source, spec['sources']),
                        address_errors=errors)
        now = clock()
        if now >= deadline:
            if not found:
                raise KvmError(_missing_address(name, spec, by_source, errors))
            raise KvmError('wait_for: guest %s has the address %s (%s) but nothing accepted a TCP connection on '
                           'port %d from this host within %d s (%s)'
                           % (name, found[0][0], found[0][1], port, spec['timeout'], '; '.join(refused)))
        sleep(min(POLL, deadline - now))


def guest_addresses(client, dom, name, facts, wait_for=None, check=False):
    """kvm_domain's addresses: ``dict(addresses, address_errors)``, and with ``wait_for`` ``address`` and ``address_source``.

    With ``wait_for`` (the spec of :func:`wait_spec`) it waits first (:func:`wait`), except in check mode,
    which only looks once; ``address`` is then the first usable address in the order of the sources (with
    a port, the first that accepted a connection), ``None`` when there is none.
    """
    if wait_for is None:
        return domain_addresses(client, dom, facts)
    if not check and dom is not None:
        return wait(client, dom, name, macs_of(facts), wait_for)
    found = domain_addresses(client, dom, facts, wait_for['sources'])
    address, source = (candidates(found['addresses'], wait_for['family']) or [(None, None)])[0]
    return dict(found, address=address, address_source=source)
