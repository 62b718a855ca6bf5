# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_network: libvirt virtual networks, converged in place.

One XML model for networks:

* :func:`spec_from_params` / :func:`spec_from_xml` turn the module options (or a
  full network XML) into a *spec*: only the keys the user specified;
* :func:`model` reads any network XML (config or live) into the same normalized
  shape, libvirt's defaults filled in, so that comparison is semantic;
* :func:`apply_spec` patches the current definition with the spec (everything
  the user did not specify is kept: UUID, generated MAC and bridge name, ...);
* :func:`differences` compares spec and model key by key.

DHCP host and DNS host entries are changed with virNetworkUpdate on the live
and the persistent definition; any other difference redefines the network and,
when it is active, needs a restart (``pending_restart`` or ``restart=if_needed``).
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

_RANGE_SPEC = dict(
    start=dict(type='str', required=True),
    end=dict(type='str', required=True),
    lease=dict(type='str'),
)
_HOST_SPEC = dict(
    mac=dict(type='str'),
    id=dict(type='str'),
    name=dict(type='str'),
    ip=dict(type='str', required=True),
)


def _ip_spec():
    return dict(
        address=dict(type='str', required=True),
        prefix=dict(type='int'),
        netmask=dict(type='str'),
        dhcp_ranges=dict(type='list', elements='dict', options=dict(_RANGE_SPEC)),
        dhcp_hosts=dict(type='list', elements='dict', options=dict(_HOST_SPEC)),
    )


ARGUMENT_SPEC = dict(
    name=dict(type='str', aliases=['network']),
    state=dict(type='str', default='present', choices=['present', 'active', 'inactive', 'absent']),
    autostart=dict(type='bool'),
    forward=dict(type='str', choices=FORWARD_MODES),
    forward_dev=dict(type='str'),
    nat_ports=dict(type='dict', options=dict(start=dict(type='int', required=True),
                                             end=dict(type='int', required=True))),
    bridge=dict(type='dict', options=dict(
        name=dict(type='str'),
        stp=dict(type='bool'),
        delay=dict(type='int'),
        mtu=dict(type='int'),
        mac=dict(type='str'),
    )),
    domain=dict(type='str'),
    ipv4=dict(type='dict', options=_ip_spec()),
    ipv6=dict(type='dict', options=_ip_spec()),
    dns_hosts=dict(type='list', elements='dict', options=dict(
        ip=dict(type='str', required=True),
        hostnames=dict(type='list', elements='str', required=True),
    )),
    xml=dict(type='str'),
    restart=dict(type='str', default='never', choices=['never', 'if_needed']),
)

STRUCTURED_OPTIONS = ('forward', 'forward_dev', 'nat_ports', 'bridge', 'domain', 'ipv4', 'ipv6', 'dns_hosts')

# Keys of the model that virNetworkUpdate changes without a restart.
LIVE_KEYS = ('ipv4.dhcp_hosts', 'ipv6.dhcp_hosts', 'dns_hosts')

# The option (as the user spells it) of each scalar key of the model.
OPTION_OF = dict(forward='forward', forward_dev='forward_dev', nat_ports='nat_ports', bridge_name='bridge.name',
                 stp='bridge.stp', delay='bridge.delay', mtu='bridge.mtu', mac='bridge.mac', domain='domain')

_LEASE_RE = re.compile(r'^\s*(\d+)\s*([smh]?)\s*$')
_LEASE_UNITS = {'': 60, 's': 1, 'm': 60, 'h': 3600}
_XML_UNITS = {'seconds': 1, 'minutes': 60, 'hours': 3600}
MTU_RANGE = (68, 65535)
MAX_BRIDGE_DELAY = 3600  # seconds; the kernel caps the forward delay far lower
MAX_LEASE_SECONDS = 0xFFFFFFFF  # dnsmasq keeps lease times in 32 bits


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


def _ip_block_spec(family, params):
    iface = _interface(family, params['address'], params.get('prefix'), params.get('netmask'), family)
    subnet = iface.network
    spec = dict(address=str(iface.ip), prefix=iface.network.prefixlen,
                netmask_form=params.get('netmask') is not None)
    if params.get('dhcp_ranges') is not None:
        ranges = []
        for index, rng in enumerate(params['dhcp_ranges']):
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
            ranges.append(dict(start=str(start), end=str(end), lease=parse_lease(rng.get('lease'), '%s.lease' % option)))
        spec['dhcp_ranges'] = ranges
    if params.get('dhcp_hosts') is not None:
        hosts = [_host_spec(family, h, subnet, '%s.dhcp_hosts[%d]' % (family, i))
                 for i, h in enumerate(params['dhcp_hosts'])]
        for key in ('mac', 'id', 'ip', 'name'):
            values = [h[key] for h in hosts if h[key]]
            dupes = sorted(set(v for v in values if values.count(v) > 1))
            if dupes:
                raise KvmError('%s.dhcp_hosts: %s %s used more than once' % (family, key, ', '.join(dupes)))
        spec['dhcp_hosts'] = hosts
    return spec


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


def spec_from_params(params):
    """The options the user gave, validated and normalized (nothing written yet)."""
    spec = {}
    forward = params.get('forward')
    if forward is not None:
        spec['forward'] = forward
    if params.get('forward_dev') is not None:
        spec['forward_dev'] = valid.ifname('forward_dev', params['forward_dev']) if params['forward_dev'] else None
    if params.get('nat_ports') is not None:
        ports = params['nat_ports']
        valid.count('nat_ports.start', ports['start'], 1, 65535)
        valid.count('nat_ports.end', ports['end'], 1, 65535)
        if ports['start'] > ports['end']:
            raise KvmError('nat_ports: need 1 <= start <= end <= 65535, got %s-%s' % (ports['start'], ports['end']))
        spec['nat_ports'] = dict(start=ports['start'], end=ports['end'])
    bridge = params.get('bridge') or {}
    if bridge.get('name') is not None:
        spec['bridge_name'] = valid.ifname('bridge.name', bridge['name'])
    if bridge.get('stp') is not None:
        spec['stp'] = bridge['stp']
    if bridge.get('delay') is not None:
        spec['delay'] = valid.count('bridge.delay', bridge['delay'], 0, MAX_BRIDGE_DELAY)
    if bridge.get('mtu') is not None:
        spec['mtu'] = valid.count('bridge.mtu', bridge['mtu'], *MTU_RANGE)
    if bridge.get('mac') is not None:
        spec['mac'] = valid.mac('bridge.mac', bridge['mac'])
    if params.get('domain') is not None:
        spec['domain'] = params['domain'] if params['domain'] and valid.dns_name('domain', params['domain']) else None
    for family in ('ipv4', 'ipv6'):
        if params.get(family) is not None:
            spec[family] = _ip_block_spec(family, params[family])
    if params.get('dns_hosts') is not None:
        spec['dns_hosts'] = _dns_hosts_spec(params['dns_hosts'])
    return spec


def check_spec_against_mode(spec, mode, from_xml=False):
    """Options that the (resulting) forward mode cannot take."""
    if mode == 'bridge':
        bad = [k for k in ('ipv4', 'ipv6', 'dns_hosts', 'domain', 'mac', 'stp', 'delay', 'nat_ports')
               if spec.get(k) not in (None, [])]
        if bad:
            raise KvmError('forward=bridge uses an existing host bridge: it takes no %s (libvirt gives such a '
                           'network no IP, DHCP or DNS)' % ', '.join(sorted(bad)))
        if 'bridge_name' not in spec and not from_xml:  # the xml may use <forward><interface> (macvtap) instead
            raise KvmError('forward=bridge needs bridge.name, the existing host bridge to use')
    if 'nat_ports' in spec and mode != 'nat':
        raise KvmError('nat_ports only applies to forward=nat (the network is %s)' % mode)


# ---------------------------------------------------------------- XML -> model
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


def _ip_block_model(ip):
    prefix = _int(ip.get('prefix'))
    if prefix is None and ip.get('netmask'):
        try:
            prefix = ipaddress.IPv4Network('0.0.0.0/%s' % ip.get('netmask')).prefixlen
        except ValueError:
            prefix = None
    ranges = []
    for rng in ip.findall('dhcp/range'):
        lease = rng.find('lease')
        seconds = None
        if lease is not None:
            seconds = _int(lease.get('expiry'), 0) * _XML_UNITS.get(lease.get('unit', 'minutes'), 60)
        ranges.append(dict(start=rng.get('start'), end=rng.get('end'), lease=seconds))
    hosts = []
    for host in ip.findall('dhcp/host'):
        hosts.append(dict(mac=(host.get('mac') or '').lower() or None, id=host.get('id'),
                          name=host.get('name'), ip=host.get('ip')))
    return dict(address=ip.get('address'), prefix=prefix, dhcp_ranges=ranges, dhcp_hosts=hosts)


def model(root):
    """Any network XML (config or live) in the normalized shape of a spec."""
    forward = root.find('forward')
    mode = forward.get('mode', 'nat') if forward is not None else 'isolated'
    nat_ports = None
    if mode == 'nat':
        port = forward.find('nat/port')
        nat_ports = dict(start=_int(port.get('start')), end=_int(port.get('end'))) if port is not None \
            else dict(start=1024, end=65535)
    bridge = root.find('bridge')
    out = dict(
        name=root.findtext('name'),
        forward=mode,
        forward_dev=forward.get('dev') if forward is not None else None,
        nat_ports=nat_ports,
        bridge_name=bridge.get('name') if bridge is not None else None,
        stp=(bridge.get('stp', 'on') != 'off') if bridge is not None else True,
        delay=_int(bridge.get('delay'), 0) if bridge is not None else 0,
        mtu=_int(root.find('mtu').get('size')) if root.find('mtu') is not None else None,
        mac=(root.find('mac').get('address') or '').lower() if root.find('mac') is not None else None,
        domain=root.find('domain').get('name') if root.find('domain') is not None else None,
        ipv4=None,
        ipv6=None,
        dns_hosts=[dict(ip=h.get('ip'), hostnames=[n.text.strip() for n in h.findall('hostname') if n.text])
                   for h in root.findall('dns/host')],
    )
    for ip in root.findall('ip'):
        family = _ip_family(ip)
        if out[family] is None:  # the first block of each family is the one the options manage
            out[family] = _ip_block_model(ip)
    return out


def _host_key(host):
    return (host.get('mac') or '', host.get('id') or '', host.get('name') or '', host.get('ip') or '')


def _range_key(rng):
    return (rng.get('start') or '', rng.get('end') or '', -1 if rng.get('lease') is None else rng['lease'])


def _dns_key(entry):
    return (entry.get('ip') or '', tuple(entry.get('hostnames') or ()))


def _item(value):
    """A list entry as it is returned (no empty keys)."""
    return dict((k, v) for k, v in value.items() if v is not None)


def _list_change(key, have, want, keyfunc):
    have_keys = set(keyfunc(x) for x in have)
    want_keys = set(keyfunc(x) for x in want)
    out = []
    for item in have:
        if keyfunc(item) not in want_keys:
            out.append(dict(option=key, action='remove', before=_item(item), after=None))
    for item in want:
        if keyfunc(item) not in have_keys:
            out.append(dict(option=key, action='add', before=None, after=_item(item)))
    return out


def _address(block):
    return None if block is None else '%s/%s' % (block['address'], block['prefix'])


def differences(spec, current):
    """``(live_updatable, needs_redefine)`` lists of changes (dicts: option, action, before, after).

    Only what ``spec`` specifies counts; ``current`` is :func:`model` output
    (None for a network that does not exist).
    """
    live, other = [], []
    if current is None:
        return live, [dict(option='state', action='define', before='absent', after='present')]
    for key in ('forward', 'forward_dev', 'nat_ports', 'bridge_name', 'stp', 'delay', 'mtu', 'mac', 'domain'):
        if key in spec and spec[key] != current.get(key):
            other.append(dict(option=OPTION_OF[key], action='set', before=current.get(key), after=spec[key]))
    for family in ('ipv4', 'ipv6'):
        if family not in spec:
            continue
        want, have = spec[family], current.get(family)
        if have is None:
            other.append(dict(option='%s.address' % family, action='set', before=None, after=_address(want)))
            continue
        if (want['address'], want['prefix']) != (have['address'], have['prefix']):
            other.append(dict(option='%s.address' % family, action='set', before=_address(have), after=_address(want)))
        if 'dhcp_ranges' in want:
            if sorted(map(_range_key, want['dhcp_ranges'])) != sorted(map(_range_key, have['dhcp_ranges'])):
                other.extend(_list_change('%s.dhcp_ranges' % family, have['dhcp_ranges'], want['dhcp_ranges'],
                                          _range_key))
        if 'dhcp_hosts' in want:
            live.extend(_list_change('%s.dhcp_hosts' % family, have['dhcp_hosts'], want['dhcp_hosts'], _host_key))
    if 'dns_hosts' in spec:
        live.extend(_list_change('dns_hosts', current['dns_hosts'], spec['dns_hosts'], _dns_key))
    return live, other


# ---------------------------------------------------------------- spec -> XML
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


def _ip_elem(root, family, create=True):
    for ip in root.findall('ip'):
        if _ip_family(ip) == family:
            return ip
    if not create:
        return None
    ip = etree.SubElement(root, 'ip')
    if family == 'ipv6':
        ip.set('family', 'ipv6')
    return ip


def host_element(family, host):
    elem = etree.Element('host')
    for key in ('mac', 'id', 'name', 'ip'):
        if host.get(key):
            elem.set(key, host[key])
    return elem


def dns_host_element(entry):
    elem = etree.Element('host', ip=entry['ip'])
    for name in entry['hostnames']:
        etree.SubElement(elem, 'hostname').text = name
    return elem


def _apply_ip(root, family, want):
    ip = _ip_elem(root, family)
    have = _ip_block_model(ip) if ip.get('address') else None
    if have is None or (have['address'], have['prefix']) != (want['address'], want['prefix']):
        ip.set('address', want['address'])
        if want.get('netmask_form'):
            ip.set('netmask', str(ipaddress.IPv4Network('0.0.0.0/%d' % want['prefix']).netmask))
            ip.attrib.pop('prefix', None)
        else:
            ip.set('prefix', str(want['prefix']))
            ip.attrib.pop('netmask', None)
    dhcp = ip.find('dhcp')
    if 'dhcp_ranges' in want:
        if dhcp is None:
            dhcp = etree.SubElement(ip, 'dhcp')
        if sorted(map(_range_key, want['dhcp_ranges'])) != sorted(map(_range_key, have['dhcp_ranges'] if have else [])):
            _remove(dhcp, 'range')
            for index, rng in enumerate(want['dhcp_ranges']):
                elem = etree.Element('range', start=rng['start'], end=rng['end'])
                if rng.get('lease') is not None:
                    etree.SubElement(elem, 'lease', _lease_xml(rng['lease']))
                dhcp.insert(index, elem)
    if 'dhcp_hosts' in want:
        if dhcp is None:
            dhcp = etree.SubElement(ip, 'dhcp')
        if sorted(map(_host_key, want['dhcp_hosts'])) != sorted(map(_host_key, have['dhcp_hosts'] if have else [])):
            _remove(dhcp, 'host')
            for host in want['dhcp_hosts']:
                dhcp.append(host_element(family, host))
    if dhcp is not None and len(dhcp) == 0 and not dhcp.attrib:
        ip.remove(dhcp)


def apply_spec(root, spec, name):
    """A new definition: ``root`` (the current one, or None) patched with ``spec``."""
    if root is None:
        root = etree.Element('network')
        etree.SubElement(root, 'name').text = name
        new = True
    else:
        root = copy.deepcopy(root)
        new = False
    current = model(root)
    mode = spec.get('forward', current['forward'])
    if 'forward' in spec and spec['forward'] != current['forward'] or (new and mode != 'isolated'):
        if mode == 'isolated':
            _remove(root, 'forward')
        else:
            forward = _child(root, 'forward', dict(mode=mode))
            if mode != 'nat':
                _remove(forward, 'nat')
    forward = root.find('forward')
    if 'forward_dev' in spec and spec['forward_dev'] != current['forward_dev'] and forward is not None:
        _child(root, 'forward', dict(dev=spec['forward_dev']))
    if 'nat_ports' in spec and spec['nat_ports'] != current['nat_ports'] and forward is not None:
        _child(_child(forward, 'nat'), 'port', dict(start=spec['nat_ports']['start'], end=spec['nat_ports']['end']))
    bridge_attrs = {}
    if 'bridge_name' in spec and spec['bridge_name'] != current['bridge_name']:
        bridge_attrs['name'] = spec['bridge_name']
    if mode != 'bridge':
        if 'stp' in spec and spec['stp'] != current['stp'] or new:
            bridge_attrs['stp'] = 'on' if spec.get('stp', True) else 'off'
        if 'delay' in spec and spec['delay'] != current['delay'] or new:
            bridge_attrs['delay'] = spec.get('delay', 0)
    if bridge_attrs:
        _child(root, 'bridge', bridge_attrs)
    if 'mtu' in spec and spec['mtu'] != current['mtu']:
        _child(root, 'mtu', dict(size=spec['mtu']))
    if 'mac' in spec and spec['mac'] != current['mac']:
        _child(root, 'mac', dict(address=spec['mac']))
    if 'domain' in spec and spec['domain'] != current['domain']:
        if spec['domain']:
            _child(root, 'domain', dict(name=spec['domain']))
        else:
            _remove(root, 'domain')
    for family in ('ipv4', 'ipv6'):
        if family in spec:
            _apply_ip(root, family, spec[family])
    if 'dns_hosts' in spec and sorted(map(_dns_key, spec['dns_hosts'])) != sorted(map(_dns_key, current['dns_hosts'])):
        dns = _child(root, 'dns')
        _remove(dns, 'host')
        for entry in spec['dns_hosts']:
            dns.append(dns_host_element(entry))
        if len(dns) == 0 and not dns.attrib:
            root.remove(dns)
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
    params = dict(forward=have['forward'], forward_dev=have['forward_dev'], domain=have['domain'],
                  nat_ports=have['nat_ports'] if root.find('forward/nat/port') is not None else None,
                  bridge=dict(name=have['bridge_name'], mtu=have['mtu'], mac=have['mac'],
                              stp=have['stp'] if root.find('bridge') is not None and have['forward'] != 'bridge' else None,
                              delay=have['delay'] if root.find('bridge') is not None and have['forward'] != 'bridge' else None),
                  dns_hosts=have['dns_hosts'])
    for family in ('ipv4', 'ipv6'):
        block = have[family]
        if block is not None:
            params[family] = dict(address=block['address'], prefix=block['prefix'], netmask=None,
                                  dhcp_ranges=[dict(start=r['start'], end=r['end'],
                                                    lease=None if r['lease'] is None else '%ds' % r['lease'] if r['lease'] else 'infinite')
                                               for r in block['dhcp_ranges']],
                                  dhcp_hosts=block['dhcp_hosts'])
            if block['prefix'] is None:
                raise KvmError('option xml: <ip address=%r> needs prefix or netmask' % block['address'])
    try:
        spec = spec_from_params(params)
    except valid.ValidationError as exc:
        raise valid.ValidationError('xml: %s' % exc.msg)  # the value came from the xml option
    # The XML is the whole definition: what it leaves out is libvirt's default (or nothing).
    for key in ('forward_dev', 'domain', 'mtu'):
        spec.setdefault(key, None)
    if have['forward'] != 'bridge':
        spec.setdefault('stp', True)
        spec.setdefault('delay', 0)
    if have['forward'] == 'nat':
        spec.setdefault('nat_ports', dict(start=1024, end=65535))
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


def _networks_of(ip_model, family):
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
    own_bridge = current_live['bridge_name'] if current_live else None
    wanted_nets = [n for n in (_networks_of(wanted['ipv4'], 'ipv4'), _networks_of(wanted['ipv6'], 'ipv6')) if n]
    others = client.call('list networks', client.conn.listAllNetworks, 0)
    other_bridges = {}
    for net in others:
        other_name = client.call('network %s' % net.name(), net.name)
        if other_name == name:
            continue
        defs = [client.call('network %s' % other_name, net.XMLDesc, 0), config_xml(client, net)]
        for text in defs:
            other = model(parse(text, 'network XML of %s' % other_name))
            if other['bridge_name']:
                other_bridges.setdefault(other['bridge_name'], other_name)
            if wanted['bridge_name'] and other['bridge_name'] == wanted['bridge_name'] \
                    and not (wanted['forward'] == 'bridge' and other['forward'] == 'bridge'):
                msg = 'bridge %s is already used by libvirt network %s' % (wanted['bridge_name'], other_name)
                if msg not in problems:
                    problems.append(msg)
            for family in ('ipv4', 'ipv6'):
                theirs = _networks_of(other[family], family)
                for mine in wanted_nets:
                    if theirs is not None and mine.version == theirs.version and mine.overlaps(theirs):
                        msg = 'subnet %s overlaps %s of libvirt network %s' % (mine, theirs, other_name)
                        if msg not in problems:
                            problems.append(msg)
    if check_host is not None:
        local = check_host
        host_ifaces = _host_interfaces(client, local)
        bridge = wanted['bridge_name']
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


# ---------------------------------------------------------------- the manager
UPDATE_SECTIONS = {
    'ipv4.dhcp_hosts': 'VIR_NETWORK_SECTION_IP_DHCP_HOST',
    'ipv6.dhcp_hosts': 'VIR_NETWORK_SECTION_IP_DHCP_HOST',
    'dns_hosts': 'VIR_NETWORK_SECTION_DNS_HOST',
}


def update_operations(have_root, want_root):
    """virNetworkUpdate calls that turn ``have_root``'s host lists into ``want_root``'s.

    Returns [(command, section_name, parent_index, xml, change)], deletions first; ``change`` is the
    change (option, action, before, after) the call makes.
    """
    have, want = model(have_root), model(want_root)
    ops = []
    for family in ('ipv4', 'ipv6'):
        if have[family] is None or want[family] is None:
            continue
        if (have[family]['address'], have[family]['prefix']) != (want[family]['address'], want[family]['prefix']):
            continue  # a different subnet: the hosts apply when the network restarts
        index = [_ip_family(ip) for ip in have_root.findall('ip')].index(family)
        for change in _list_change('%s.dhcp_hosts' % family, have[family]['dhcp_hosts'], want[family]['dhcp_hosts'],
                                   _host_key):
            host = change['before'] or change['after']
            ops.append(('delete' if change['action'] == 'remove' else 'add', change['option'], index,
                        etree.tostring(host_element(family, host), encoding='unicode'), change))
    for change in _list_change('dns_hosts', have['dns_hosts'], want['dns_hosts'], _dns_key):
        entry = change['before'] or change['after']
        ops.append(('delete' if change['action'] == 'remove' else 'add', 'dns_hosts', -1,
                    etree.tostring(dns_host_element(entry), encoding='unicode'), change))
    ops.sort(key=lambda op: 0 if op[0] == 'delete' else 1)
    return ops


def _restart_differences(live, wanted):
    """The options whose running value differs from the definition, apart from host lists."""
    diffs = []
    for key in ('forward', 'forward_dev', 'nat_ports', 'bridge_name', 'stp', 'delay', 'mtu', 'mac', 'domain'):
        if live.get(key) != wanted.get(key):
            diffs.append(OPTION_OF[key])
    for family in ('ipv4', 'ipv6'):
        have, want = live.get(family), wanted.get(family)
        if _address(have) != _address(want):
            diffs.append('%s.address' % family)
        if have is None or want is None:
            continue
        if sorted(map(_range_key, have['dhcp_ranges'])) != sorted(map(_range_key, want['dhcp_ranges'])):
            diffs.append('%s.dhcp_ranges' % family)
    return diffs


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
                and (current['ipv4'] or current['ipv6'] or current['dns_hosts'] or current['domain']):
            raise KvmError('network %s has IP/DHCP/DNS settings that forward=bridge cannot keep; remove the network '
                           '(state=absent) or give its full definition in xml' % self.name)

        # The wanted persistent definition.
        live_diffs, other_diffs = differences(spec, current)
        if user_root is not None:
            wanted_root = xml_definition(user_root, before)
            if current is not None:
                other_diffs += _xml_changes(xml_other_differences(user_root, before))
                for family in ('ipv4', 'ipv6'):
                    if family not in spec and current[family] is not None:
                        other_diffs.append(dict(option='%s.address' % family, action='remove',
                                                before=_address(current[family]), after=None))
        else:
            wanted_root = apply_spec(before, spec, self.name)
        wanted = model(wanted_root)
        if mode == 'nat' and wanted['ipv4'] is None and current is None:
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
                               getattr(libvirt, UPDATE_SECTIONS[section]), index, xml, flags)

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
        bridge = wanted['bridge_name']
        if not self.changes.check:  # a read: the bridge name libvirt gave the restarted network
            bridge = model(self._live_root(net))['bridge_name']
        local = self._host_checks()
        for dom, mac, tap in guests:
            entry = dict(domain=dom, mac=mac, interface=tap, bridge=bridge, replugged=False)
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
