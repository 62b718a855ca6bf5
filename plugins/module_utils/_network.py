# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_network: libvirt virtual networks, converged in place.

One table, :data:`OPTIONS`, declares every network option once: its argument-spec entry, its
validation, how it is read from and written to the network XML, and whether libvirt's
virNetworkUpdate changes it live (DHCP hosts, DNS hosts) or it waits for a restart. The argument
spec is generated from it, and everything else walks it:

* :func:`spec_from_params` / :func:`spec_from_xml` turn the module options (or a full network XML)
  into a *spec*: ``{option name: value}``, only the options the user specified;
* :func:`model` reads any network XML (config or live) into the same shape, libvirt's defaults
  filled in, so that comparison is semantic;
* :func:`apply_spec` patches the current definition with the spec (everything the user did not
  specify is kept: UUID, generated MAC and bridge name, ...);
* :func:`differences` compares spec and model option by option, as change entries.

A list option (DHCP ranges and hosts, DNS hosts) is compared as a set; :meth:`ListOption.changes` is
the one add/remove computation, used for the result, for the XML and for virNetworkUpdate.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import network_facts, network_xml_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import (
    etree,
    make_diff,
    parse,
    subset_differences,
    to_string,
)

FORWARD_MODES = ['nat', 'route', 'open', 'isolated', 'bridge']

_LEASE_RE = re.compile(r'^\s*(\d+)\s*([smh]?)\s*$')
_LEASE_UNITS = {'': 60, 's': 1, 'm': 60, 'h': 3600}
_XML_UNITS = {'seconds': 1, 'minutes': 60, 'hours': 3600}
MTU_RANGE = (68, 65535)
MAX_BRIDGE_DELAY = 3600  # seconds; the kernel caps the forward delay far lower
MAX_LEASE_SECONDS = 0xFFFFFFFF  # dnsmasq keeps lease times in 32 bits
MISSING = object()


# ---------------------------------------------------------------- validation helpers
def _ip(value, family, option):
    """An address of ``family`` (the rule is _validate.ip_address), as an ipaddress object."""
    return ipaddress.ip_address(valid.ip_address(option, value, 4 if family == 'ipv4' else 6))


def parse_lease(value, option):
    """Lease time as seconds (0 = infinite); a bare number is minutes, like libvirt."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ('infinite', '0'):
        return 0
    match = _LEASE_RE.match(text)
    if not match or valid.has_control(str(value)):
        valid.refuse(option, 'not a duration (e.g. 30m, 12h, 3600s, infinite)', value)
    seconds = int(match.group(1)) * _LEASE_UNITS[match.group(2)]
    if seconds < 120:
        valid.refuse(option, 'shorter than two minutes (dnsmasq minimum)', value)
    if seconds > MAX_LEASE_SECONDS:
        valid.refuse(option, 'longer than %d seconds; use infinite' % MAX_LEASE_SECONDS, value)
    return seconds


def _lease_xml(seconds):
    if seconds == 0:
        return dict(expiry='0')
    for unit, factor in (('hours', 3600), ('minutes', 60)):
        if seconds % factor == 0:
            return dict(expiry=str(seconds // factor), unit=unit)
    return dict(expiry=str(seconds), unit='seconds')


def _interface(family, address, prefix, netmask, option):
    """``option`` is the ip block (``ipv4``); the address, prefix and netmask are its sub-options."""
    if prefix is not None and netmask is not None:
        raise KvmError('%s: give either prefix or netmask, not both' % option)
    valid.text('%s.address' % option, address, max_length=64)
    if '/' in address:
        if prefix is not None or netmask is not None:
            raise KvmError('%s.address: %s already has a prefix; do not also give prefix or netmask' % (option, address))
        address, suffix = address.split('/', 1)
        if '.' in suffix:
            netmask = suffix
        else:
            if not suffix.isdigit():
                valid.refuse('%s.address' % option, 'the prefix is not a prefix length', suffix)
            prefix = int(suffix)
    addr = _ip(address, family, '%s.address' % option)
    if netmask is not None:
        if family == 'ipv6':
            raise KvmError('%s.netmask: IPv6 takes a prefix, not a netmask' % option)
        valid.ip_address('%s.netmask' % option, netmask, 4)
        try:
            prefix = ipaddress.IPv4Network('0.0.0.0/%s' % netmask).prefixlen
        except ValueError:
            valid.refuse('%s.netmask' % option, 'not a netmask', netmask)
    if prefix is None:
        raise KvmError('%s.address: give the address with a prefix (e.g. 192.168.111.1/24) or a netmask' % option)
    limit = 32 if family == 'ipv4' else 128
    if not 1 <= prefix <= limit:
        raise KvmError('%s.prefix: %s is out of range 1-%d' % (option, prefix, limit))
    iface = ipaddress.ip_interface('%s/%d' % (addr, prefix))
    if prefix < limit - 1 and addr in (iface.network.network_address, getattr(iface.network, 'broadcast_address', None)):
        raise KvmError('%s.address: %s is the network or broadcast address of %s, not a usable host address'
                       % (option, addr, iface.network))
    return iface


# ---------------------------------------------------------------- options -> spec
def _host_spec(family, host, subnet, option):
    ip = _ip(host.get('ip'), family, '%s.ip' % option)
    if ip not in subnet:
        raise KvmError('%s.ip: %s is outside %s' % (option, ip, subnet))
    mac = valid.mac('%s.mac' % option, host['mac']) if host.get('mac') else None
    # dnsmasq hands the name to the guest and serves it: a DNS name, never free text.
    name = host['name'] if host.get('name') and valid.dns_name('%s.name' % option, host['name']) else None
    duid = valid.duid('%s.id' % option, host['id']) if host.get('id') else None
    if family == 'ipv4':
        if duid:
            raise KvmError('%s.id: id (DUID) is for IPv6 hosts; IPv4 hosts use mac' % option)
        if not mac and not name:
            raise KvmError('%s: an IPv4 DHCP host needs mac or name' % option)
    else:
        if mac:
            raise KvmError('%s.mac: IPv6 DHCP hosts are matched by id (DUID) or name, not mac' % option)
        if not duid and not name:
            raise KvmError('%s: an IPv6 DHCP host needs id or name' % option)
    return dict(mac=mac, id=duid, name=name, ip=str(ip))


def _dns_hosts_spec(dns_hosts):
    entries = []
    for index, entry in enumerate(dns_hosts):
        option = 'dns_hosts[%d]' % index
        addr = valid.ip_address('%s.ip' % option, entry['ip'])
        # kept as given (DNS is case-insensitive; libvirt stores the spelling it was given)
        names = [n for i, n in enumerate(entry['hostnames']) if valid.dns_name('%s.hostnames[%d]' % (option, i), n)]
        if not names:
            raise KvmError('%s.hostnames: give at least one hostname' % option)
        entries.append(dict(ip=addr, hostnames=names))
    ips = [e['ip'] for e in entries]
    dupes = sorted(set(i for i in ips if ips.count(i) > 1))
    if dupes:
        raise KvmError('dns_hosts: ip %s listed more than once (put all its hostnames in one entry)' % ', '.join(dupes))
    return entries


def _ranges_spec(family, ranges, iface):
    out = []
    subnet = iface.network
    for index, rng in enumerate(ranges):
        option = '%s.dhcp_ranges[%d]' % (family, index)
        start = _ip(rng['start'], family, '%s.start' % option)
        end = _ip(rng['end'], family, '%s.end' % option)
        for key, addr in (('start', start), ('end', end)):
            if addr not in subnet:
                raise KvmError('%s.%s: %s is outside %s' % (option, key, addr, subnet))
        if int(start) > int(end):
            raise KvmError('%s: start %s is after end %s' % (option, start, end))
        if start <= iface.ip <= end:
            raise KvmError('%s: the range contains the network address %s itself' % (option, iface.ip))
        out.append(dict(start=str(start), end=str(end), lease=parse_lease(rng.get('lease'), '%s.lease' % option)))
    return out


def _hosts_spec(family, hosts, iface):
    out = [_host_spec(family, h, iface.network, '%s.dhcp_hosts[%d]' % (family, i)) for i, h in enumerate(hosts)]
    for key in ('mac', 'id', 'ip', 'name'):
        values = [h[key] for h in out if h[key]]
        dupes = sorted(set(v for v in values if values.count(v) > 1))
        if dupes:
            raise KvmError('%s.dhcp_hosts: %s %s used more than once' % (family, key, ', '.join(dupes)))
    return out


# ---------------------------------------------------------------- XML helpers
def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _ip_family(ip):
    family = ip.get('family')
    if family:
        return family
    address = ip.get('address') or ''
    return 'ipv6' if ':' in address else 'ipv4'


def _child(parent, tag, attrib=None):
    elem = parent.find(tag)
    if elem is None:
        elem = etree.SubElement(parent, tag)
    for key, value in (attrib or {}).items():
        if value is None:
            elem.attrib.pop(key, None)
        else:
            elem.set(key, str(value))
    return elem


def _remove(parent, tag):
    for elem in parent.findall(tag):
        parent.remove(elem)


def _drop_if_empty(parent, elem):
    if elem is not None and len(elem) == 0 and not elem.attrib and not (elem.text or '').strip():
        parent.remove(elem)


def _ip_elem(root, family, create=True):
    """The first <ip> of ``family`` (the one the options manage)."""
    for ip in root.findall('ip'):
        if _ip_family(ip) == family:
            return ip
    if not create:
        return None
    ip = etree.SubElement(root, 'ip')
    if family == 'ipv6':
        ip.set('family', 'ipv6')
    return ip


def _prefix_of(ip):
    prefix = _int(ip.get('prefix'))
    if prefix is None and ip.get('netmask'):
        try:
            prefix = ipaddress.IPv4Network('0.0.0.0/%s' % ip.get('netmask')).prefixlen
        except ValueError:
            prefix = None
    return prefix


def host_element(host):
    elem = etree.Element('host')
    for key in ('mac', 'id', 'name', 'ip'):
        if host.get(key):
            elem.set(key, host[key])
    return elem


def _host_of(elem):
    return dict(mac=(elem.get('mac') or '').lower() or None, id=elem.get('id'), name=elem.get('name'), ip=elem.get('ip'))


def range_element(rng):
    elem = etree.Element('range', start=rng['start'], end=rng['end'])
    if rng.get('lease') is not None:
        etree.SubElement(elem, 'lease', _lease_xml(rng['lease']))
    return elem


def _range_of(elem):
    lease = elem.find('lease')
    seconds = None
    if lease is not None:
        seconds = _int(lease.get('expiry'), 0) * _XML_UNITS.get(lease.get('unit', 'minutes'), 60)
    return dict(start=elem.get('start'), end=elem.get('end'), lease=seconds)


def dns_host_element(entry):
    elem = etree.Element('host', ip=entry['ip'])
    for name in entry['hostnames']:
        etree.SubElement(elem, 'hostname').text = name
    return elem


def _dns_host_of(elem):
    return dict(ip=elem.get('ip'), hostnames=[n.text.strip() for n in elem.findall('hostname') if n.text])


def _shown(value):
    """A list entry as it is returned (no empty keys)."""
    return dict((k, v) for k, v in value.items() if v is not None)


# ---------------------------------------------------------------- the option table
class Option(object):
    """One option: argument spec, validation, XML read/write, and how a new value reaches a running network.

    ``name`` is the option as the user writes it (``bridge.stp``); it names the option in messages, in
    ``changes`` and in ``pending_restart``. ``live`` is the virNetworkUpdate section that changes it on a
    running network (None: it waits for a restart). ``bridge_mode``: whether ``forward=bridge`` can take it.
    ``default`` is libvirt's default, written into a new definition (``MISSING``: none written).
    ``xml_default`` is the value when the xml option leaves it out (``MISSING``: the current value is kept).
    """

    live = None

    def __init__(self, name, arg, parse=None, read=None, write=None, bridge_mode=True, modes=None,
                 default=MISSING, xml_default=MISSING):
        self.name = name
        self.parent, _dot, self.leaf = name.rpartition('.')
        self.arg = arg
        self._parse = parse
        self._read = read
        self._write = write
        self.bridge_mode = bridge_mode
        self.modes = modes
        self.default = default
        self.xml_default = xml_default

    # argument spec and validation
    def args(self):
        """The argument-spec entries this option contributes to its parent (``bridge``, ``ipv4``) or the top."""
        return {self.leaf: dict(self.arg)}

    def given(self, params):
        """The module parameter (None when not given)."""
        group = params.get(self.parent) if self.parent else params
        return None if group is None else group.get(self.leaf)

    def parse(self, value, _context):
        return self._parse(self.name, value) if self._parse else value

    def to_param(self, params, value):
        """The xml option: put the value read from the XML where the module parameter would be."""
        if value is None:
            return
        if self.parent:
            params.setdefault(self.parent, {})[self.leaf] = value
        else:
            params[self.name] = value

    # XML
    def read(self, root):
        return self._read(root)

    def write(self, root, value):
        self._write(root, value)

    # comparison
    def same(self, have, want):
        return have == want

    def show(self, value):
        return value

    def changes(self, have, want):
        """Change entries (option, action, before, after) that turn ``have`` into ``want``."""
        if self.same(have, want):
            return []
        return [dict(option=self.name, action='set', before=self.show(have), after=self.show(want))]


class Attribute(Option):
    """An attribute of a child of <network> (``<bridge stp=...>``, ``<mtu size=...>``); None removes it."""

    def __init__(self, name, arg, path, attr, parse=None, to_xml=str, from_xml=None, fallback=None, **kwargs):
        super(Attribute, self).__init__(name, arg, parse=parse, **kwargs)
        self.path, self.attr = path, attr
        self.to_xml, self.from_xml, self.fallback = to_xml, from_xml or (lambda text: text), fallback

    def read(self, root):
        elem = root.find(self.path)
        if elem is None or elem.get(self.attr) is None:
            return self.fallback
        return self.from_xml(elem.get(self.attr))

    def write(self, root, value):
        if self._write is not None:
            self._write(root, value)
            return
        elem = _child(root, self.path, {self.attr: None if value is None else self.to_xml(value)})
        _drop_if_empty(root, elem)


class Address(Option):
    """The address and prefix of the first <ip> of a family (module options address, prefix, netmask)."""

    def __init__(self, family):
        super(Address, self).__init__('%s.address' % family, None, bridge_mode=False, xml_default=None)
        self.family = family

    def args(self):
        return dict(address=dict(type='str', required=True), prefix=dict(type='int'), netmask=dict(type='str'))

    def given(self, params):
        return params.get(self.family)

    def parse(self, value, context):
        iface = _interface(self.family, value['address'], value.get('prefix'), value.get('netmask'), self.family)
        context[self.family] = iface
        return dict(address=str(iface.ip), prefix=iface.network.prefixlen, netmask_form=value.get('netmask') is not None)

    def to_param(self, params, value):
        if value is None:
            return
        if value['prefix'] is None:
            raise KvmError('option xml: <ip address=%r> needs prefix or netmask' % value['address'])
        params[self.family] = dict(address=value['address'], prefix=value['prefix'], netmask=None)

    def read(self, root):
        ip = _ip_elem(root, self.family, create=False)
        if ip is None or not ip.get('address'):
            return None
        return dict(address=ip.get('address'), prefix=_prefix_of(ip))

    def write(self, root, value):
        if value is None:
            ip = _ip_elem(root, self.family, create=False)
            if ip is not None:
                root.remove(ip)
            return
        ip = _ip_elem(root, self.family)
        ip.set('address', value['address'])
        if value.get('netmask_form'):
            ip.set('netmask', str(ipaddress.IPv4Network('0.0.0.0/%d' % value['prefix']).netmask))
            ip.attrib.pop('prefix', None)
        else:
            ip.set('prefix', str(value['prefix']))
            ip.attrib.pop('netmask', None)

    def same(self, have, want):
        return self.show(have) == self.show(want)

    def show(self, value):
        return None if value is None else '%s/%s' % (value['address'], value['prefix'])


class ListOption(Option):
    """A complete list (``[]`` removes all), compared as a set of entries identified by ``key``."""

    def __init__(self, name, arg, tag, element, item_of, key, live=None, parse=None, **kwargs):
        super(ListOption, self).__init__(name, arg, parse=parse, xml_default=[], **kwargs)
        self.tag, self.element, self.item_of, self.key, self.live = tag, element, item_of, key, live

    def container(self, root, create):
        raise NotImplementedError

    def parent_index(self, root):
        """The parent index virNetworkUpdate takes (-1: none)."""
        return -1

    def updatable(self, have, want):
        """Whether virNetworkUpdate can turn ``have``'s list into ``want``'s (models of the two definitions)."""
        return self.live is not None

    def read(self, root):
        box = self.container(root, create=False)
        return [] if box is None else [self.item_of(e) for e in box.findall(self.tag)]

    def same(self, have, want):
        return sorted(map(self.key, have or [])) == sorted(map(self.key, want or []))

    def changes(self, have, want):
        """The one add/remove computation: removals first, each entry once."""
        have, want = have or [], want or []
        have_keys, want_keys = set(map(self.key, have)), set(map(self.key, want))
        out = [dict(option=self.name, action='remove', before=_shown(item), after=None)
               for item in have if self.key(item) not in want_keys]
        out += [dict(option=self.name, action='add', before=None, after=_shown(item))
                for item in want if self.key(item) not in have_keys]
        return out

    def write(self, root, value):
        box = self.container(root, create=True)
        for change in self.changes(self.read(root), value):
            if change['action'] == 'remove':
                gone = self.key(change['before'])
                for elem in box.findall(self.tag):
                    if self.key(self.item_of(elem)) == gone:
                        box.remove(elem)
            else:
                same_tag = box.findall(self.tag)
                index = list(box).index(same_tag[-1]) + 1 if same_tag else self.first_index(box)
                box.insert(index, self.element(change['after']))
        self.tidy(root, box)

    def first_index(self, box):
        return len(box)

    def tidy(self, root, box):
        _drop_if_empty(root, box)


def _host_key(host):
    return (host.get('mac') or '', host.get('id') or '', host.get('name') or '', host.get('ip') or '')


def _range_key(rng):
    return (rng.get('start') or '', rng.get('end') or '', -1 if rng.get('lease') is None else rng['lease'])


def _dns_key(entry):
    return (entry.get('ip') or '', tuple(entry.get('hostnames') or ()))


class DhcpList(ListOption):
    """``<ip><dhcp><range|host>`` of the family's first <ip>."""

    def __init__(self, family, leaf, arg, tag, element, item_of, key, parse, live=None):
        super(DhcpList, self).__init__('%s.%s' % (family, leaf), arg, tag, element, item_of, key, live=live,
                                       parse=parse, bridge_mode=False)
        self.family = family

    def parse(self, value, context):
        return self._parse(self.family, value, context[self.family])

    def to_param(self, params, value):
        if self.family in params:  # the xml has that <ip>
            params[self.family][self.leaf] = [self.as_param(v) for v in value]

    def as_param(self, value):
        if self.tag != 'range':
            return value
        lease = value['lease']
        return dict(value, lease=None if lease is None else '%ds' % lease if lease else 'infinite')

    def container(self, root, create):
        ip = _ip_elem(root, self.family, create=create)
        if ip is None:
            return None
        return _child(ip, 'dhcp') if create else ip.find('dhcp')

    def first_index(self, box):
        return 0 if self.tag == 'range' else len(box)

    def tidy(self, root, box):
        _drop_if_empty(box.getparent(), box)

    def parent_index(self, root):
        return [_ip_family(ip) for ip in root.findall('ip')].index(self.family)

    def updatable(self, have, want):
        """Only on the same subnet: hosts of another subnet apply when the network restarts."""
        address = '%s.address' % self.family
        return self.live is not None and have[address] is not None and ADDRESS[self.family].same(have[address], want[address])


class DnsHosts(ListOption):
    def container(self, root, create):
        return _child(root, 'dns') if create else root.find('dns')


def _read_forward(root):
    forward = root.find('forward')
    return forward.get('mode', 'nat') if forward is not None else 'isolated'


def _write_forward(root, mode):
    if mode == 'isolated':
        _remove(root, 'forward')
        return
    forward = _child(root, 'forward', dict(mode=mode))
    if mode != 'nat':
        _remove(forward, 'nat')


def _read_nat_ports(root):
    if _read_forward(root) != 'nat':
        return None
    port = root.find('forward/nat/port')
    if port is None:
        return dict(start=1024, end=65535)
    return dict(start=_int(port.get('start')), end=_int(port.get('end')))


def _write_nat_ports(root, ports):
    forward = root.find('forward')
    if forward is not None and ports is not None:
        _child(_child(forward, 'nat'), 'port', dict(start=ports['start'], end=ports['end']))


def _parse_nat_ports(option, ports):
    valid.count('%s.start' % option, ports['start'], 1, 65535)
    valid.count('%s.end' % option, ports['end'], 1, 65535)
    if ports['start'] > ports['end']:
        raise KvmError('%s: need 1 <= start <= end <= 65535, got %s-%s' % (option, ports['start'], ports['end']))
    return dict(start=ports['start'], end=ports['end'])


def _write_forward_dev(root, dev):
    if root.find('forward') is not None:
        _child(root, 'forward', dict(dev=dev))


def _or_none(check):
    """An option where an empty string removes the value."""
    return lambda option, value: check(option, value) and value if value else None


_RANGE_ARG = dict(type='list', elements='dict', options=dict(
    start=dict(type='str', required=True),
    end=dict(type='str', required=True),
    lease=dict(type='str'),
))
_HOST_ARG = dict(type='list', elements='dict', options=dict(
    mac=dict(type='str'),
    id=dict(type='str'),
    name=dict(type='str'),
    ip=dict(type='str', required=True),
))


def _family_options(family):
    return [
        Address(family),
        DhcpList(family, 'dhcp_ranges', _RANGE_ARG, 'range', range_element, _range_of, _range_key, _ranges_spec),
        DhcpList(family, 'dhcp_hosts', _HOST_ARG, 'host', host_element, _host_of, _host_key, _hosts_spec,
                 live='VIR_NETWORK_SECTION_IP_DHCP_HOST'),
    ]


ADDRESS = {}

OPTIONS = [
    Option('forward', dict(type='str', choices=FORWARD_MODES), read=_read_forward, write=_write_forward),
    Attribute('forward_dev', dict(type='str'), 'forward', 'dev', parse=_or_none(valid.ifname), write=_write_forward_dev,
              xml_default=None),
    Option('nat_ports', dict(type='dict', options=dict(start=dict(type='int', required=True),
                                                       end=dict(type='int', required=True))),
           parse=_parse_nat_ports, read=_read_nat_ports, write=_write_nat_ports, bridge_mode=False, modes=('nat',)),
    Attribute('bridge.name', dict(type='str'), 'bridge', 'name', parse=valid.ifname),
    Attribute('bridge.stp', dict(type='bool'), 'bridge', 'stp', to_xml=lambda on: 'on' if on else 'off',
              from_xml=lambda text: text != 'off', fallback=True, bridge_mode=False, default=True),
    Attribute('bridge.delay', dict(type='int'), 'bridge', 'delay', parse=lambda o, v: valid.count(o, v, 0, MAX_BRIDGE_DELAY),
              from_xml=lambda text: _int(text, 0), fallback=0, bridge_mode=False, default=0),
    Attribute('bridge.mtu', dict(type='int'), 'mtu', 'size', parse=lambda o, v: valid.count(o, v, *MTU_RANGE),
              from_xml=_int, xml_default=None),
    Attribute('bridge.mac', dict(type='str'), 'mac', 'address', parse=valid.mac, from_xml=lambda text: text.lower(),
              bridge_mode=False),
    Attribute('domain', dict(type='str'), 'domain', 'name', parse=_or_none(valid.dns_name), bridge_mode=False,
              xml_default=None),
] + _family_options('ipv4') + _family_options('ipv6') + [
    DnsHosts('dns_hosts', dict(type='list', elements='dict', options=dict(
        ip=dict(type='str', required=True),
        hostnames=dict(type='list', elements='str', required=True),
    )), 'host', dns_host_element, _dns_host_of, _dns_key, live='VIR_NETWORK_SECTION_DNS_HOST',
        parse=lambda _o, v: _dns_hosts_spec(v), bridge_mode=False),
]
OPTIONS_BY_NAME = dict((o.name, o) for o in OPTIONS)
ADDRESS.update((o.family, o) for o in OPTIONS if isinstance(o, Address))

# The top-level options of the table: what the xml option replaces.
STRUCTURED_OPTIONS = tuple(dict.fromkeys(o.name.split('.')[0] for o in OPTIONS))


def _argument_spec():
    spec = dict(
        name=dict(type='str', aliases=['network']),
        state=dict(type='str', default='present', choices=['present', 'active', 'inactive', 'absent']),
        autostart=dict(type='bool'),
    )
    for option in OPTIONS:
        target = spec
        if option.parent:
            target = spec.setdefault(option.parent, dict(type='dict', options={}))['options']
        target.update(option.args())
    spec.update(
        xml=dict(type='str'),
        restart=dict(type='str', default='never', choices=['never', 'if_needed']),
    )
    return spec


ARGUMENT_SPEC = _argument_spec()


# ---------------------------------------------------------------- options -> spec -> XML
def spec_from_params(params):
    """The options the user gave, validated and normalized (nothing written yet): ``{option name: value}``."""
    spec, context = {}, {}
    for option in OPTIONS:
        value = option.given(params)
        if value is not None:
            spec[option.name] = option.parse(value, context)
    return spec


def check_spec_against_mode(spec, mode, from_xml=False):
    """Options that the (resulting) forward mode cannot take."""
    if mode == 'bridge':
        bad = [o.name for o in OPTIONS if not o.bridge_mode and spec.get(o.name) not in (None, [])]
        if bad:
            raise KvmError('forward=bridge uses an existing host bridge: it takes no %s (libvirt gives such a '
                           'network no IP, DHCP or DNS)' % ', '.join(bad))
        if 'bridge.name' not in spec and not from_xml:  # the xml may use <forward><interface> (macvtap) instead
            raise KvmError('forward=bridge needs bridge.name, the existing host bridge to use')
    for option in OPTIONS:
        if option.modes and option.name in spec and mode not in option.modes:
            raise KvmError('%s only applies to forward=%s (the network is %s)' % (option.name, '/'.join(option.modes), mode))


def model(root):
    """Any network XML (config or live) in the shape of a spec, libvirt's defaults filled in."""
    out = dict((option.name, option.read(root)) for option in OPTIONS)
    out['name'] = root.findtext('name')
    return out


def differences(spec, current):
    """``(live_updatable, needs_redefine)`` lists of changes (dicts: option, action, before, after).

    Only what ``spec`` specifies counts; ``current`` is :func:`model` output (None for a network that
    does not exist).
    """
    if current is None:
        return [], [dict(option='state', action='define', before='absent', after='present')]
    live, other = [], []
    for option in OPTIONS:
        if option.name in spec:
            (live if option.live else other).extend(option.changes(current[option.name], spec[option.name]))
    return live, other


def apply_spec(root, spec, name):
    """A new definition: ``root`` (the current one, or None) patched with ``spec``."""
    values = dict(spec)
    if root is None:
        root = etree.Element('network')
        etree.SubElement(root, 'name').text = name
        mode = spec.get('forward', 'isolated')
        for option in OPTIONS:  # libvirt's defaults, written out as virsh net-define users expect them
            if option.default is not MISSING and (option.bridge_mode or mode != 'bridge'):
                values.setdefault(option.name, option.default)
        current = None
    else:
        root = copy.deepcopy(root)
        current = model(root)
    for option in OPTIONS:
        if option.name in values and (current is None or not option.same(current[option.name], values[option.name])):
            option.write(root, values[option.name])
    return root


# ---------------------------------------------------------------- xml option
# Children of <network> the model manages; any other child is compared as a subset.
MODELLED = frozenset(['name', 'uuid', 'forward', 'bridge', 'mtu', 'mac', 'domain', 'ip', 'dns'])


def spec_from_xml(text, name=None):
    """The ``xml`` option: the full definition (parsed, validated like options)."""
    root = parse(text, 'network XML (option xml)')
    if root.tag != 'network':
        raise KvmError('option xml: the root element must be <network>, not <%s>' % root.tag)
    xml_name = (root.findtext('name') or '').strip()
    if name and xml_name and name != xml_name:
        raise KvmError('option xml names the network %r but option name is %r' % (xml_name, name))
    if not (name or xml_name):
        raise KvmError('give the network name (option name or <name> in xml)')
    name = name or xml_name
    valid.object_name('name' if not xml_name else 'xml', name, 'network name')
    check_xml_values(root)
    if not xml_name:
        etree.SubElement(root, 'name').text = name
    have = model(root)
    params = {}
    for option in OPTIONS:
        if have['forward'] == 'bridge' and option.default is not MISSING:
            continue  # libvirt's bridge defaults (stp, delay) are not for a host bridge
        option.to_param(params, have[option.name])
    try:
        spec = spec_from_params(params)
    except valid.ValidationError as exc:
        raise valid.ValidationError('xml: %s' % exc.msg)  # the value came from the xml option
    # The XML is the whole definition: what it leaves out is libvirt's default (or nothing).
    for option in OPTIONS:
        if option.xml_default is not MISSING:
            spec.setdefault(option.name, copy.deepcopy(option.xml_default))
    return name, root, spec


def check_xml_values(root):
    """The xml option: no attribute value or text may hold a control character (a newline in a name would
    reach dnsmasq's configuration). libvirt's schema validation (:func:`define_network`) checks the rest
    where the daemon has it."""
    for elem in root.iter():
        if not isinstance(elem.tag, str):
            continue
        for key, value in elem.attrib.items():
            if valid.has_control(value):
                valid.refuse('xml', '<%s %s> must not contain control characters such as newlines' % (elem.tag, key), value)
        content = (elem.text or '').strip()
        if content and valid.has_control(content):
            valid.refuse('xml', '<%s> must not contain control characters such as newlines' % elem.tag, content)


def define_network(client, name, xml):
    """Define with libvirt's schema validation (VIR_NETWORK_DEFINE_VALIDATE, libvirt 7.8) where the bindings
    and the daemon have it; elsewhere the module's own validation (spec_from_params) is what checked it."""
    what = 'network %s' % name
    flag = getattr(libvirt, 'VIR_NETWORK_DEFINE_VALIDATE', None)
    conn = client.conn
    if flag is not None and hasattr(conn, 'networkDefineXMLFlags'):
        try:
            return conn.networkDefineXMLFlags(xml, flag)
        except libvirt.libvirtError as exc:
            if not _flag_unsupported(exc):
                raise KvmError(client.describe_error(exc, what))
    return client.call(what, conn.networkDefineXML, xml)


def _flag_unsupported(exc):
    """True when the daemon lacks networkDefineXMLFlags or the validate flag (an older libvirtd)."""
    code = exc.get_error_code()
    if code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
        return True
    return code == libvirt.VIR_ERR_RPC and 'unknown procedure' in (exc.get_error_message() or '')


def _unmodelled(root):
    return [child for child in root if isinstance(child.tag, str) and child.tag not in MODELLED]


def xml_other_differences(wanted, current):
    """Differences in the children the model does not know (portgroup, route, ...)."""
    diffs = []
    for child in _unmodelled(wanted):
        index = [c for c in wanted if c.tag == child.tag].index(child)
        candidates = [c for c in current if c.tag == child.tag] if current is not None else []
        match = candidates[index] if index < len(candidates) else None
        diffs.extend(subset_differences(child, match, 'network/%s' % child.tag))
    return diffs


def xml_definition(user_root, current_root):
    """The xml option's definition, with the UUID, MAC and bridge name libvirt generated kept."""
    root = copy.deepcopy(user_root)
    if current_root is not None:
        for tag, attr in (('uuid', None), ('mac', 'address'), ('bridge', 'name')):
            have = current_root.find(tag)
            if have is None:
                continue
            mine = root.find(tag)
            if attr is None:
                if mine is None:
                    root.insert(1, copy.deepcopy(have))
            elif mine is None:
                if tag == 'mac':
                    root.append(copy.deepcopy(have))
                elif have.get(attr):
                    etree.SubElement(root, tag, {attr: have.get(attr)})
            elif not mine.get(attr) and have.get(attr):
                mine.set(attr, have.get(attr))
    return root


# ---------------------------------------------------------------- preflight
def config_xml(client, net):
    """The persistent definition (the live one for a transient network, or a driver without the flag)."""
    what = 'network %s' % client.call('network', net.name)
    if not client.call(what, net.isPersistent):
        return client.call(what, net.XMLDesc, 0)
    try:
        return net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise KvmError(client.describe_error(exc, what))
    return client.call(what, net.XMLDesc, 0)


def _networks_of(ip_model):
    if not ip_model or ip_model.get('prefix') is None:
        return None
    try:
        return ipaddress.ip_interface('%s/%s' % (ip_model['address'], ip_model['prefix'])).network
    except ValueError:
        return None


def _host_routes():
    """IPv4 and IPv6 routes of this host: [(network, device)] (default routes skipped)."""
    routes = []
    try:
        with open('/proc/net/route') as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if len(fields) < 8:
                    continue
                dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, 'little'))
                mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, 'little'))
                net = ipaddress.IPv4Network('%s/%s' % (dest, mask), strict=False)
                if net.prefixlen:
                    routes.append((net, fields[0]))
    except (IOError, OSError, ValueError):
        pass
    try:
        with open('/proc/net/ipv6_route') as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 10:
                    continue
                prefixlen = int(fields[1], 16)
                if not prefixlen or fields[9] == 'lo':
                    continue
                dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                net = ipaddress.IPv6Network('%s/%d' % (dest, prefixlen), strict=False)
                if net.is_link_local or net.is_multicast:
                    continue
                routes.append((net, fields[9]))
    except (IOError, OSError, ValueError):
        pass
    return routes


def _host_interfaces(client, local):
    names = set()
    if local:
        try:
            names.update(os.listdir('/sys/class/net'))
        except OSError:
            pass
    else:
        try:
            names.update(i.name() for i in client.conn.listAllInterfaces(0))
        except libvirt.libvirtError:
            pass
    return names


def preflight(client, name, wanted, current_live, check_host):
    """Conflicts of the wanted definition with other networks and the host.

    ``wanted`` is the model of the definition about to be written or started,
    ``current_live`` the model of this network's live definition when it is
    active (its own bridge and routes are not conflicts).
    """
    problems = []
    own_bridge = current_live['bridge.name'] if current_live else None
    wanted_nets = [n for n in (_networks_of(wanted['ipv4.address']), _networks_of(wanted['ipv6.address'])) if n]
    others = client.call('list networks', client.conn.listAllNetworks, 0)
    other_bridges = {}
    for net in others:
        other_name = client.call('network %s' % net.name(), net.name)
        if other_name == name:
            continue
        defs = [client.call('network %s' % other_name, net.XMLDesc, 0), config_xml(client, net)]
        for text in defs:
            other = model(parse(text, 'network XML of %s' % other_name))
            if other['bridge.name']:
                other_bridges.setdefault(other['bridge.name'], other_name)
            if wanted['bridge.name'] and other['bridge.name'] == wanted['bridge.name'] \
                    and not (wanted['forward'] == 'bridge' and other['forward'] == 'bridge'):
                msg = 'bridge %s is already used by libvirt network %s' % (wanted['bridge.name'], other_name)
                if msg not in problems:
                    problems.append(msg)
            for family in ('ipv4', 'ipv6'):
                theirs = _networks_of(other['%s.address' % family])
                for mine in wanted_nets:
                    if theirs is not None and mine.version == theirs.version and mine.overlaps(theirs):
                        msg = 'subnet %s overlaps %s of libvirt network %s' % (mine, theirs, other_name)
                        if msg not in problems:
                            problems.append(msg)
    if check_host is not None:
        local = check_host
        host_ifaces = _host_interfaces(client, local)
        bridge = wanted['bridge.name']
        if wanted['forward'] == 'bridge':
            if bridge and host_ifaces and bridge not in host_ifaces:
                problems.append('host bridge %s does not exist (forward=bridge uses an existing bridge, '
                                'e.g. one made by kvm_bridge)' % bridge)
        elif bridge and bridge != own_bridge and bridge in host_ifaces and bridge not in other_bridges:
            problems.append('bridge %s already exists on the host' % bridge)
        if local:
            for net, dev in _host_routes():
                if dev == own_bridge or dev in other_bridges:
                    continue
                for mine in wanted_nets:
                    if mine.version == net.version and mine.overlaps(net):
                        problems.append('subnet %s overlaps the host route %s on %s' % (mine, net, dev))
    if problems:
        raise KvmError('network %s: %s; nothing was changed' % (name, '; '.join(problems)), conflicts=problems)


# ---------------------------------------------------------------- live changes and restarts
def update_operations(have_root, want_root):
    """virNetworkUpdate calls that turn the live-updatable lists of ``have_root`` into ``want_root``'s.

    Returns [(command, option name, parent_index, xml, change)], deletions first; ``change`` is the
    change entry (option, action, before, after) the call makes.
    """
    have, want = model(have_root), model(want_root)
    ops = []
    for option in OPTIONS:
        if option.live is None or not option.updatable(have, want):
            continue
        index = option.parent_index(have_root)
        for change in option.changes(have[option.name], want[option.name]):
            item = change['before'] if change['action'] == 'remove' else change['after']
            ops.append(('delete' if change['action'] == 'remove' else 'add', option.name, index,
                        etree.tostring(option.element(item), encoding='unicode'), change))
    ops.sort(key=lambda op: 0 if op[0] == 'delete' else 1)
    return ops


def _restart_differences(live, wanted):
    """The options whose running value differs from the definition and only a restart applies."""
    return [o.name for o in OPTIONS if o.live is None and not o.same(live[o.name], wanted[o.name])]


def _xml_changes(texts):
    """Differences in the parts of the xml option the options do not model, as changes."""
    return [dict(option='xml', action='set', before=None, after=None, detail=text) for text in texts]


class NetworkManager(object):
    """Read the network, decide, and write (through the change set: never in check mode)."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.changes = ChangeSet(module, client)
        self.replugged = []
        self.restarted = False
        self.name = None

    # -- small helpers -------------------------------------------------
    def _what(self, detail=None):
        return 'network %s%s' % (self.name, ': %s' % detail if detail else '')

    def _record(self, scope, change):
        extra = dict((k, v) for k, v in change.items() if k not in ('option', 'action', 'before', 'after'))
        return self.changes.record(scope, change['option'], change['action'], change['before'], change['after'], **extra)

    def _host_checks(self):
        """True: local host checks; False: libvirt's interface list only; None: none (test driver)."""
        uri = self.client.uri
        if uri.startswith('test:'):
            return None
        return is_local_uri(uri)

    def _config_root(self, net):
        return parse(config_xml(self.client, net), 'network XML')

    def _live_root(self, net):
        return parse(self.client.call(self._what(), net.XMLDesc, 0), 'network XML')

    # -- entry ---------------------------------------------------------
    def run(self):
        params = self.params
        state = params['state']
        user_root = None
        if params.get('xml'):
            given = [k for k in STRUCTURED_OPTIONS if params.get(k) is not None]
            if given:
                raise KvmError('option xml is the whole definition; do not combine it with %s' % ', '.join(given))
            self.name, user_root, spec = spec_from_xml(params['xml'], params.get('name'))
        else:
            self.name = params.get('name')
            if not self.name:
                raise KvmError('option name is required (or give the definition in xml)')
            spec = spec_from_params(params) if state != 'absent' else {}
        valid.object_name('name', self.name, 'network name')
        net = self.client.find_network(self.name)
        if state == 'absent':
            return self.absent(net)
        return self.present(net, spec, user_root)

    def result(self, net, before, after, predicted=None):
        if predicted is not None:
            facts = predicted
        elif net is not None:
            facts = network_facts(self.client, net)
        else:
            facts = None
        if self.module._diff:
            diff = make_diff(before, after, before_header='%s (defined)' % self.name,
                             after_header='%s (wanted)' % self.name)
            self.changes.add_diff(diff['before'], diff['after'], diff.get('before_header'), diff.get('after_header'))
        return self.changes.result(network=facts, restarted=self.restarted, replugged=self.replugged,
                                   uri=self.client.uri)

    # -- absent ----------------------------------------------------------
    def absent(self, net):
        if net is None:
            return self.result(None, None, None)
        before = self._config_root(net)
        if self.client.call(self._what(), net.isActive):
            self.changes.record('live', 'state', 'stop', 'active', 'inactive')
            self.changes.write(self._what(), net.destroy)
        if self.client.call(self._what(), net.isPersistent):
            self.changes.record('config', 'state', 'undefine', 'present', 'absent')
            self.changes.write(self._what(), net.undefine)
        return self.result(None, before, None)

    # -- present / active / inactive -------------------------------------
    def present(self, net, spec, user_root):
        params = self.params
        state = params['state']
        before = self._config_root(net) if net is not None else None
        active = bool(net is not None and self.client.call(self._what(), net.isActive))
        persistent = bool(net is not None and self.client.call(self._what(), net.isPersistent))
        current = model(before) if before is not None else None
        mode = spec.get('forward', current['forward'] if current else 'isolated')
        check_spec_against_mode(spec, mode, from_xml=user_root is not None)
        if mode == 'bridge' and current is not None and 'forward' in spec and current['forward'] != 'bridge' \
                and (current['ipv4.address'] or current['ipv6.address'] or current['dns_hosts'] or current['domain']):
            raise KvmError('network %s has IP/DHCP/DNS settings that forward=bridge cannot keep; remove the network '
                           '(state=absent) or give its full definition in xml' % self.name)

        # The wanted persistent definition.
        live_diffs, other_diffs = differences(spec, current)
        if user_root is not None:
            wanted_root = xml_definition(user_root, before)
            if current is not None:
                other_diffs += _xml_changes(xml_other_differences(user_root, before))
        else:
            wanted_root = apply_spec(before, spec, self.name)
        wanted = model(wanted_root)
        if mode == 'nat' and wanted['ipv4.address'] is None and current is None:
            raise KvmError('forward=nat needs an ipv4 address for the network')

        will_start = state == 'active' and not active
        if other_diffs or current is None or will_start:
            preflight(self.client, self.name, wanted, model(self._live_root(net)) if active else None,
                      self._host_checks())

        # 1. the persistent definition
        if current is None or not persistent or other_diffs:
            for change in (live_diffs + other_diffs if current is not None else other_diffs):
                self._record('config', change)
            if current is not None and not persistent:
                self.changes.record('config', 'state', 'define', 'transient', 'persistent')
            defined = self.changes.write(self._what(), define_network, self.client, self.name, to_string(wanted_root))
            if defined is not None:
                net = defined
        elif live_diffs:
            self._update(net, before, wanted_root, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG, 'config')

        # 2. the running network
        if active and state != 'inactive':
            live_root = self._live_root(net)
            restart = _restart_differences(model(live_root), wanted)
            if user_root is not None and xml_other_differences(wanted_root, live_root):
                restart.append('xml')
            if restart and params['restart'] == 'if_needed':
                self.changes.record('live', 'state', 'restart', 'active', 'active', options=restart)
                self.restart(net, wanted)
            else:
                if update_operations(live_root, wanted_root):
                    self._update(net, live_root, wanted_root, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, 'live')
                self.changes.restart_needed(*restart)
        elif state == 'active' and not active:
            self.changes.record('live', 'state', 'start', 'inactive', 'active')
            if net is not None:
                self.changes.write(self._what(), net.create)
        elif state == 'inactive' and active:
            self.changes.record('live', 'state', 'stop', 'active', 'inactive')
            self.changes.write(self._what(), net.destroy)

        # 3. autostart
        if params.get('autostart') is not None:
            have = bool(persistent and self.client.call(self._what(), net.autostart)) if net is not None else False
            if have != params['autostart']:
                self.changes.record('config', 'autostart', 'set', have, params['autostart'])
                if net is not None:
                    self.changes.write(self._what(), net.setAutostart, 1 if params['autostart'] else 0)

        predicted = None
        if self.changes.check and self.changes.changed:
            predicted = network_xml_facts(wanted_root)
            predicted.update(
                active=(state == 'active') or (active and state != 'inactive'),
                persistent=True,
                autostart=params['autostart'] if params.get('autostart') is not None
                else bool(net is not None and persistent and self.client.call(self._what(), net.autostart)),
            )
        after = wanted_root if (current is None or other_diffs or live_diffs or not persistent) else before
        return self.result(net, before, after, predicted)

    def _update(self, net, have_root, want_root, flags, scope):
        for command, section, index, xml, change in update_operations(have_root, want_root):
            self._record(scope, change)
            cmd = libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE if command == 'delete' \
                else libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
            self.changes.write(self._what('%s %s' % (change['option'], change['action'])), net.update, cmd,
                               getattr(libvirt, OPTIONS_BY_NAME[section].live), index, xml, flags)

    # -- restart and re-plug ---------------------------------------------
    def _attached_guests(self):
        """Running guests with an interface on this network: [(domain, mac, tap)]."""
        out = []
        doms = self.client.call('list domains', self.client.conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        for dom in doms:
            root = parse(self.client.call('domain %s' % dom.name(), dom.XMLDesc, 0), 'domain XML')
            for iface in root.findall('devices/interface'):
                source = iface.find('source')
                if iface.get('type') == 'network' and source is not None and source.get('network') == self.name:
                    mac = iface.find('mac')
                    target = iface.find('target')
                    out.append((dom.name(), mac.get('address') if mac is not None else None,
                                target.get('dev') if target is not None else None))
        return out

    def restart(self, net, wanted):
        guests = self._attached_guests()
        self.changes.write(self._what(), net.destroy)
        self.changes.write(self._what(), net.create)
        self.restarted = True
        bridge = wanted['bridge.name']
        if not self.changes.check:  # a read: the bridge name libvirt gave the restarted network
            bridge = model(self._live_root(net))['bridge.name']
        local = self._host_checks()
        for dom, mac, tap in guests:
            entry = dict(guest=dom, domain=dom, mac=mac, interface=tap, bridge=bridge, replugged=False)
            if local and tap and bridge:
                done = self.changes.host(self.module.run_command, ['ip', 'link', 'set', 'dev', tap, 'master', bridge])
                if done is not None:
                    rc, _out, err = done
                    if rc != 0:
                        raise KvmError('network %s restarted, but re-plugging %s (%s of guest %s) into bridge %s failed: %s'
                                       % (self.name, tap, mac, dom, bridge, err.strip()), replugged=self.replugged)
                    entry['replugged'] = True
            self.replugged.append(entry)
        stranded = [e for e in self.replugged if not e['replugged']]
        if stranded and not self.changes.check:
            # a remote URI (or a guest without a tap name): libvirt has no call that re-attaches a tap
            self.module.warn('network %s was restarted on %s; these guest interfaces are off its bridge %s until '
                             're-plugged on that host (ip link set dev TAP master %s): %s'
                             % (self.name, self.client.uri, bridge, bridge,
                                ', '.join('%s of %s' % (e['interface'] or e['mac'], e['domain']) for e in stranded)))


def main(module):
    run(module, lambda client: NetworkManager(module, client).run())
