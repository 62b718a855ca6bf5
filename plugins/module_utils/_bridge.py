# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_bridge: a host bridge that takes over a NIC's addressing safely.

No libvirt here: the kernel is read and changed with iproute2 (``ip -j`` JSON output, list
arguments through ``module.run_command``), and the persistent files come from a provider in
``_bridge_providers.py``.

The kernel side is one idea used three ways: :func:`plan` turns (current state, wanted state) into
``ip`` commands. Applying the change is ``plan(now, wanted)``, rolling back is
``plan(now, snapshot)`` with the snapshot taken before the change, and ``absent`` is
``plan(now, unbridged)``. State is a dict: ``bridge`` (None or its attributes), ``ports``
(master and up flag of each), ``addresses`` and ``routes`` per device (global addresses, and
main-table routes that are not the kernel's own).

A change is a transaction (:func:`transaction`): files written atomically with backups, kernel
commands run, then the probe address must answer within ``rollback_timeout``; on any failure the
files and the kernel are put back and the module fails with one message. SIGHUP is ignored during
the transaction so a dropped SSH session cannot stop it half way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import struct
import time
import traceback

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as V
from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, one_line
from ansible_collections.kvmops.kvm.plugins.module_utils._files import backup_file, replace_file
from ansible_collections.kvmops.kvm.plugins.module_utils._bridge_providers import (
    PROVIDERS,
    Addressing,
    detect,
    get_provider,
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True),
    ports=dict(type='list', elements='str', default=[]),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    stp=dict(type='bool', default=True),
    forward_delay=dict(type='int', default=0),
    mtu=dict(type='int'),
    mac=dict(type='str'),
    ip=dict(type='str', choices=['inherit', 'static', 'dhcp', 'none'], default='inherit'),
    address=dict(type='list', elements='str'),
    gateway=dict(type='str'),
    dns=dict(type='list', elements='str'),
    provider=dict(type='str', choices=['auto'] + sorted(PROVIDERS), default='auto'),
    probe=dict(type='str'),
    rollback_timeout=dict(type='int', default=30),
    config_root=dict(type='path', default='/'),
)

REQUIRED_IF = [('ip', 'static', ['address'])]

UNMANAGED_PROTOCOLS = ('kernel', 'ra', 'redirect')


# ------------------------------------------------------------------ iproute2
class IpRoute(object):
    """iproute2 through ``module.run_command`` with list arguments and JSON output.

    iproute2 rather than pyroute2: it is installed on every Linux host (it is how the distribution
    configures its own network), so kvm_bridge adds no dependency to the managed host, and its JSON
    output (``ip -j``, iproute2 4.13+) is a stable, parseable view of the same netlink data.
    """

    def __init__(self, module):
        self.module = module
        self.ip = module.get_bin_path('ip')
        if not self.ip:
            raise KvmError('iproute2 is needed on the managed host: the ip command was not found')
        self.ran = []

    def run(self, args):
        rc, out, err = self.module.run_command([self.ip] + list(args))
        if rc != 0:
            raise KvmError('ip %s failed: %s' % (' '.join(args), one_line(err or out) or 'exit code %d' % rc))
        return out

    def change(self, args):
        self.ran.append('ip ' + ' '.join(args))
        return self.run(args)

    def json(self, args):
        out = self.run(['-j'] + list(args))
        try:
            return json.loads(out or '[]')
        except ValueError:
            raise KvmError('ip -j %s did not print JSON: iproute2 4.13 or later is needed' % ' '.join(args))

    def links(self):
        result = {}
        for data in self.json(['-d', 'link', 'show']):
            info = data.get('linkinfo') or {}
            bridge = info.get('info_data') or {} if info.get('info_kind') == 'bridge' else {}
            result[data['ifname']] = dict(
                name=data['ifname'],
                index=data.get('ifindex'),
                kind=info.get('info_kind'),
                master=data.get('master'),
                mtu=data.get('mtu'),
                mac=(data.get('address') or '').lower() or None,
                up='UP' in (data.get('flags') or []),
                loopback='LOOPBACK' in (data.get('flags') or []),
                stp=bool(bridge.get('stp_state')) if bridge else None,
                forward_delay=bridge.get('forward_delay') if bridge else None,
            )
        return result

    def addresses(self, dev):
        out = []
        for data in self.json(['addr', 'show', 'dev', dev]):
            for info in data.get('addr_info') or []:
                if info.get('scope') != 'global' or info.get('family') not in ('inet', 'inet6'):
                    continue
                addr = dict(family=info['family'], local=info['local'], prefixlen=info['prefixlen'])
                for key in ('broadcast', 'nodad', 'noprefixroute'):
                    if info.get(key):
                        addr[key] = info[key]
                if info.get('dynamic') or info.get('valid_life_time', 4294967295) != 4294967295:
                    addr['valid_lft'] = info.get('valid_life_time')
                    addr['preferred_lft'] = info.get('preferred_life_time')
                out.append(addr)
        return out

    def routes(self, dev):
        out = []
        for family, flag in (('inet', '-4'), ('inet6', '-6')):
            for data in self.json([flag, 'route', 'show', 'table', 'main', 'dev', dev]):
                if data.get('protocol') in UNMANAGED_PROTOCOLS or data.get('type', 'unicast') != 'unicast':
                    continue
                route = dict(family=family, dst=data['dst'])
                for key in ('gateway', 'metric', 'protocol', 'scope', 'prefsrc'):
                    if data.get(key) not in (None, ''):
                        route[key] = data[key]
                if 'onlink' in (data.get('flags') or []):
                    route['onlink'] = True
                out.append(route)
        return out


def cidr(addr):
    return '%s/%s' % (addr['local'], addr['prefixlen'])


def route_key(route):
    return (route['family'], route['dst'], route.get('gateway') or '', route.get('metric'))


def route_text(route):
    text = route['dst']
    if route.get('gateway'):
        text += ' via %s' % route['gateway']
    if route.get('metric') is not None:
        text += ' metric %s' % route['metric']
    return text


def address_args(verb, addr, dev):
    args = ['addr', verb, cidr(addr)]
    if verb == 'add' and addr.get('broadcast'):
        args += ['broadcast', addr['broadcast']]
    args += ['dev', dev]
    if verb == 'add':
        if addr.get('nodad'):
            args.append('nodad')
        if addr.get('noprefixroute'):
            args.append('noprefixroute')
        if addr.get('valid_lft') is not None:
            args += ['valid_lft', str(addr['valid_lft']), 'preferred_lft', str(addr.get('preferred_lft', 0))]
    return args


def route_args(verb, route, dev):
    args = ['-6' if route['family'] == 'inet6' else '-4', 'route', verb, route['dst']]
    if route.get('gateway'):
        args += ['via', route['gateway']]
    args += ['dev', dev]
    if route.get('metric') is not None:
        args += ['metric', str(route['metric'])]
    if verb != 'del':
        if route.get('protocol'):
            args += ['proto', str(route['protocol'])]
        if route.get('scope') and route['family'] == 'inet':
            args += ['scope', route['scope']]
        if route.get('prefsrc'):
            args += ['src', route['prefsrc']]
        if route.get('onlink'):
            args.append('onlink')
    return args


def effective_delay(stp, seconds):
    """Kernel forward delay in centiseconds: with STP on the kernel keeps it within 2-30 s."""
    value = int(seconds) * 100
    if stp:
        value = min(3000, max(200, value))
    return value


# ------------------------------------------------------------------ state
def read_state(kernel, links, name, ports):
    state = dict(bridge=None, ports={}, addresses={}, routes={})
    link = links.get(name)
    if link is not None and link['kind'] == 'bridge':
        state['bridge'] = dict(stp=link['stp'], forward_delay=link['forward_delay'], mtu=link['mtu'],
                               mac=link['mac'], up=link['up'])
        state['addresses'][name] = kernel.addresses(name)
        state['routes'][name] = kernel.routes(name)
    for port in ports:
        plink = links[port]
        state['ports'][port] = dict(master=plink['master'], up=plink['up'])
        state['addresses'][port] = kernel.addresses(port)
        state['routes'][port] = kernel.routes(port)
    return state


def _merge(items, extra, key):
    out = list(items)
    seen = set(key(i) for i in out)
    for item in extra:
        if key(item) not in seen:
            seen.add(key(item))
            out.append(item)
    return out


def wanted_present(spec, current):
    name = spec['name']
    ports = spec['ports']
    first = ports[0] if ports else None
    bridge = dict(stp=spec['stp'], forward_delay=effective_delay(spec['stp'], spec['forward_delay']),
                  mtu=spec['mtu'], mac=spec['mac'], up=True)
    bridge_addrs = current['addresses'].get(name, [])
    bridge_routes = current['routes'].get(name, [])
    if spec['ip'] in ('inherit', 'dhcp'):
        addrs = _merge(bridge_addrs, current['addresses'].get(first, []) if first else [], cidr)
        routes = _merge(bridge_routes, current['routes'].get(first, []) if first else [], route_key)
    elif spec['ip'] == 'static':
        addrs = _merge([a for a in bridge_addrs if cidr(a) in spec['addresses']],
                       [static_address(a) for a in spec['addresses']], cidr)
        routes = list(bridge_routes)
        if spec['gateway']:
            family = 'inet6' if ':' in spec['gateway'] else 'inet'
            routes = [r for r in routes if not (r['dst'] == 'default' and r['family'] == family)]
            routes.append(dict(family=family, dst='default', gateway=spec['gateway'],
                               metric=1024 if family == 'inet6' else None))
            routes[-1] = dict((k, v) for k, v in routes[-1].items() if v is not None)
    else:
        addrs, routes = [], []
    wanted = dict(bridge=bridge, ports={}, addresses={name: addrs}, routes={name: routes})
    for port in ports:
        wanted['ports'][port] = dict(master=name, up=True)
        wanted['addresses'][port] = []
        wanted['routes'][port] = []
    return wanted


def wanted_absent(spec, current):
    name = spec['name']
    ports = spec['ports']
    wanted = dict(bridge=None, ports={}, addresses={}, routes={})
    for index, port in enumerate(ports):
        cur = current['ports'][port]
        wanted['ports'][port] = dict(master=None if cur['master'] == name else cur['master'], up=cur['up'])
        addrs = current['addresses'][port]
        routes = current['routes'][port]
        if index == 0:
            addrs = _merge(addrs, current['addresses'].get(name, []), cidr)
            routes = _merge(routes, current['routes'].get(name, []), route_key)
        wanted['addresses'][port] = addrs
        wanted['routes'][port] = routes
    return wanted


def static_address(text):
    iface = ipaddress.ip_interface(text)
    family = 'inet6' if iface.version == 6 else 'inet'
    addr = dict(family=family, local=str(iface.ip), prefixlen=iface.network.prefixlen)
    if family == 'inet' and iface.network.prefixlen < 31:
        addr['broadcast'] = str(iface.network.broadcast_address)
    return addr


def plan(current, wanted, name):
    """The ip commands (argument lists) that turn ``current`` into ``wanted``."""
    actions = []
    have, want = current['bridge'], wanted['bridge']
    deleting = have is not None and want is None
    if deleting:
        actions.append(['link', 'del', 'dev', name])
    elif want is not None:
        if have is None:
            args = ['link', 'add', 'name', name]
            if want.get('mac'):
                args += ['address', want['mac']]
            actions.append(args + ['type', 'bridge', 'stp_state', '1' if want['stp'] else '0'])
            # the kernel checks forward_delay against the STP state already set: two steps
            actions.append(['link', 'set', 'dev', name, 'type', 'bridge', 'forward_delay', str(want['forward_delay'])])
        else:
            if bool(have['stp']) != bool(want['stp']):
                actions.append(['link', 'set', 'dev', name, 'type', 'bridge', 'stp_state', '1' if want['stp'] else '0'])
            if have['forward_delay'] != want['forward_delay']:
                actions.append(['link', 'set', 'dev', name, 'type', 'bridge',
                                'forward_delay', str(want['forward_delay'])])
            if want.get('mac') and (have['mac'] or '').lower() != want['mac'].lower():
                actions.append(['link', 'set', 'dev', name, 'address', want['mac']])
    for port, pwant in wanted['ports'].items():
        pcur = current['ports'][port]
        if pwant['master'] != pcur['master'] and not (deleting and pcur['master'] == name):
            if pwant['master']:
                actions.append(['link', 'set', 'dev', port, 'master', pwant['master']])
            else:
                actions.append(['link', 'set', 'dev', port, 'nomaster'])
        if pwant['up'] != pcur['up']:
            actions.append(['link', 'set', 'dev', port, 'up' if pwant['up'] else 'down'])
    # after the ports: a port joining resets an MTU the user did not set on the bridge itself
    if want is not None and want.get('mtu') and (have or {}).get('mtu') != want['mtu']:
        actions.append(['link', 'set', 'dev', name, 'mtu', str(want['mtu'])])
    if want is not None and want['up'] and not (have and have['up']):
        actions.append(['link', 'set', 'dev', name, 'up'])
    devices = [d for d in wanted['addresses'] if not (deleting and d == name)]
    adds, route_adds = [], []
    for dev in devices:
        cur_routes = dict((route_key(r), r) for r in current['routes'].get(dev, []))
        want_routes = dict((route_key(r), r) for r in wanted['routes'].get(dev, []))
        for key, route in cur_routes.items():
            if key not in want_routes:
                actions.append(route_args('del', route, dev))
        route_adds += [route_args('replace', r, dev) for k, r in want_routes.items() if k not in cur_routes]
    for dev in devices:
        cur = dict((cidr(a), a) for a in current['addresses'].get(dev, []))
        want_addrs = dict((cidr(a), a) for a in wanted['addresses'].get(dev, []))
        actions += [address_args('del', a, dev) for k, a in cur.items() if k not in want_addrs]
        adds += [address_args('add', a, dev) for k, a in want_addrs.items() if k not in cur]
    return actions + adds + route_adds


def change_entry(option, action, before, after, **extra):
    """``(option, action, before, after, extra)``: the arguments of ``ChangeSet.record`` after the scope."""
    return option, action, before, after, extra


def kernel_entry(args, current, name):
    """The change-set entry (scope ``live``, see :func:`change_entry`) of one planned ``ip`` command.

    ``option`` is the kvm_bridge option the change comes from (``name`` for the bridge itself, ``ports``
    for membership, ``ip`` for addresses and routes); ``device`` is the link changed, ``command`` the
    ``ip`` command line.
    """
    extra = dict(command='ip ' + ' '.join(args))
    bridge = current['bridge'] or {}
    if args[0] == 'addr':
        dev = args[args.index('dev') + 1]
        verb = 'add' if args[1] == 'add' else 'remove'
        return change_entry(option='ip', action='%s address' % verb, before=None if verb == 'add' else args[2],
                            after=args[2] if verb == 'add' else None, device=dev, **extra)
    if args[1] == 'route':
        dev = args[args.index('dev') + 1]
        key = (('inet6' if args[0] == '-6' else 'inet'), args[3])
        text = next((route_text(r) for r in current['routes'].get(dev, []) if (r['family'], r['dst']) == key), args[3])
        verb = 'remove' if args[2] == 'del' else 'add'
        if verb == 'add':
            text = args[3] + (' via %s' % args[args.index('via') + 1] if 'via' in args else '') + (
                ' metric %s' % args[args.index('metric') + 1] if 'metric' in args else '')
        return change_entry(option='ip', action='%s route' % verb, before=None if verb == 'add' else text,
                            after=text if verb == 'add' else None, device=dev, **extra)
    if args[1] == 'add':
        return change_entry(option='name', action='create', before=None, after=name, device=name, **extra)
    if args[1] == 'del':
        return change_entry(option='name', action='delete', before=name, after=None, device=name, **extra)
    dev = args[3]
    port = current['ports'].get(dev)
    rest = args[4:]
    if rest[:2] == ['type', 'bridge']:
        key, value = rest[2], rest[3]
        if key == 'stp_state':
            return change_entry(option='stp', action='set', before=bridge.get('stp'), after=value == '1', device=dev, **extra)
        before = bridge.get('forward_delay')
        return change_entry(option='forward_delay', action='set', before=None if before is None else before // 100,
                            after=int(value) // 100, device=dev, **extra)
    if rest[0] == 'address':
        return change_entry(option='mac', action='set', before=bridge.get('mac'), after=rest[1], device=dev, **extra)
    if rest[0] == 'mtu':
        return change_entry(option='mtu', action='set', before=bridge.get('mtu'), after=int(rest[1]), device=dev, **extra)
    if rest[0] == 'master':
        return change_entry(option='ports', action='add port', before=(port or {}).get('master'), after=rest[1],
                            device=dev, **extra)
    if rest[0] == 'nomaster':
        return change_entry(option='ports', action='remove port', before=(port or {}).get('master'), after=None,
                            device=dev, **extra)
    was = (port if port is not None else bridge).get('up')
    return change_entry(option='ports' if port is not None else 'name', action='set %s' % rest[0], before=was,
                        after=rest[0] == 'up', device=dev, **extra)


def file_entry(provider_name, change):
    """The change-set entry (scope ``host``, see :func:`change_entry`) of one file: created, updated or removed."""
    if change.before is None:
        action = 'create'
    elif change.after is None:
        action = 'remove'
    else:
        action = 'update'
    return change_entry(option='provider', action='%s file' % action, before=None, after=None, path=change.path,
                        provider=provider_name)


def render_state(state, name, ports):
    """Readable text of a state, for diff mode."""
    lines = []
    bridge = state['bridge']
    if bridge is None:
        lines.append('bridge %s: absent' % name)
    else:
        lines.append('bridge %s: stp %s, forward_delay %ss, mtu %s, mac %s, %s' % (
            name, 'on' if bridge['stp'] else 'off', (bridge['forward_delay'] or 0) / 100.0,
            bridge.get('mtu') or 'auto', bridge.get('mac') or 'auto', 'up' if bridge['up'] else 'down'))
    for dev in [name] + list(ports):
        if dev != name:
            port = state['ports'][dev]
            lines.append('port %s: master %s, %s' % (dev, port['master'] or '-', 'up' if port['up'] else 'down'))
        elif bridge is None:
            continue
        for addr in state['addresses'].get(dev, []):
            lines.append('  %s address %s' % (dev, cidr(addr)))
        for route in state['routes'].get(dev, []):
            lines.append('  %s route %s' % (dev, route_text(route)))
    return '\n'.join(lines) + '\n'


def facts(state, name, links):
    bridge = state['bridge']
    out = dict(name=name, exists=bridge is not None)
    if bridge is not None:
        out.update(stp=bool(bridge['stp']), forward_delay=(bridge['forward_delay'] or 0) // 100,
                   mtu=bridge['mtu'], mac=bridge['mac'], up=bridge['up'],
                   ports=[link['name'] for link in sorted(links.values(), key=lambda item: item['index'])
                          if link['master'] == name],
                   addresses=[cidr(a) for a in state['addresses'].get(name, [])],
                   routes=[route_text(r) for r in state['routes'].get(name, [])])
    return out


# ------------------------------------------------------------------ validation
MTU_RANGE = (68, 65535)
FORWARD_DELAY_RANGE = (0, 30)
ROLLBACK_TIMEOUT_RANGE = (1, 3600)


def validate_params(params):
    """Every option checked with the shared rules (_validate) before the kernel or a file is touched.

    Pure: no I/O. Returns the normalized values that the kernel-dependent checks of :func:`build_spec`
    start from. Each refusal is a ValidationError whose message starts with the option's name. Every
    value that reaches a generated file (names, addresses, MAC, MTU, STP delay) passes here first; the
    providers then write it in their format's own quoting.
    """
    name = V.ifname('name', params['name'])
    ports = list(params['ports'] or [])
    for index, port in enumerate(ports):
        V.ifname('ports[%d]' % index, port)
    mac = params['mac']
    if mac is not None:
        mac = V.mac('mac', mac)
        if mac == '00:00:00:00:00:00':
            V.refuse('mac', 'the all-zero address is not usable', mac)
    if params['mtu'] is not None:
        V.count('mtu', params['mtu'], *MTU_RANGE)
    V.count('forward_delay', params['forward_delay'], *FORWARD_DELAY_RANGE)
    V.count('rollback_timeout', params['rollback_timeout'], *ROLLBACK_TIMEOUT_RANGE)
    addresses = []
    for index, value in enumerate(params['address'] or []):
        option = 'address[%d]' % index
        iface = V.ip_interface(option, value)
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            V.refuse(option, 'is the network or broadcast address of %s' % iface.network, value)
        addresses.append('%s/%s' % (iface.ip, iface.network.prefixlen))
    gateway = V.ip_address('gateway', params['gateway']) if params['gateway'] is not None else None
    dns = [V.ip_address('dns[%d]' % index, server) for index, server in enumerate(params['dns'] or [])]
    probe = V.ip_address('probe', params['probe']) if params['probe'] is not None else None
    config_root = V.abs_path('config_root', params['config_root'] or '/')
    return dict(name=name, ports=ports, mac=mac, addresses=addresses, gateway=gateway, dns=dns, probe=probe,
                config_root=config_root)


def build_spec(params, links):
    """Check every option, then against the kernel, before anything changes; return the spec."""
    checked = validate_params(params)
    name = checked['name']
    state = params['state']
    link = links.get(name)
    if link is not None and link['kind'] != 'bridge':
        raise KvmError('name: %s is taken by a link that is not a bridge (%s)' % (name, link['kind'] or 'a plain device'))
    ports = checked['ports']
    if len(set(ports)) != len(ports):
        raise KvmError('ports: %s listed more than once' % ', '.join(sorted(set(p for p in ports if ports.count(p) > 1))))
    if state == 'absent' and not ports and link is not None:
        ports = [item['name'] for item in sorted(links.values(), key=lambda item: item['index'])
                 if item['master'] == name]
    for port in ports:
        plink = links.get(port)
        if port == name:
            raise KvmError('ports: %s: a bridge cannot be its own port' % port)
        if plink is None:
            raise KvmError('ports: %s does not exist' % port)
        if plink['loopback']:
            raise KvmError('ports: %s is a loopback device' % port)
        if plink['kind'] == 'bridge':
            raise KvmError('ports: %s is itself a bridge; the kernel does not put a bridge in a bridge' % port)
        master = plink['master']
        if state == 'present' and master and master != name:
            mlink = links.get(master) or {}
            if mlink.get('kind') == 'bridge':
                raise KvmError('ports: %s is already in bridge %s' % (port, master))
            raise KvmError('ports: %s is already enslaved to %s (%s)' % (port, master, mlink.get('kind') or 'device'))
    mac = checked['mac']
    if mac is None and ports:
        mac = links[ports[0]]['mac']
    ip_mode = params['ip']
    addresses = checked['addresses']
    if addresses and ip_mode != 'static':
        raise KvmError('address: only used with ip=static (ip is %s)' % ip_mode)
    gateway = checked['gateway']
    if gateway is not None:
        if ip_mode != 'static':
            raise KvmError('gateway: only used with ip=static (ip is %s)' % ip_mode)
        gw = ipaddress.ip_address(gateway)
        nets = [ipaddress.ip_interface(a).network for a in addresses]
        if not any(gw.version == n.version and gw in n for n in nets):
            raise KvmError('gateway: %s is not inside any of the addresses (%s)' % (gateway, ', '.join(addresses)))
    dns = checked['dns']
    if dns and ip_mode not in ('static', 'dhcp'):
        raise KvmError('dns: only used with ip=static or ip=dhcp; ip=inherit takes the DNS servers from the '
                       "port's configuration")
    return dict(name=name, state=state, ports=ports, stp=params['stp'], forward_delay=params['forward_delay'],
                mtu=params['mtu'], mac=mac, ip=ip_mode, addresses=addresses, gateway=gateway, dns=dns,
                probe=checked['probe'], rollback_timeout=params['rollback_timeout'], provider=params['provider'],
                config_root=checked['config_root'])


def check_port_addresses(spec, current):
    """Only the first port's addressing moves: others must carry none."""
    for port in spec['ports'][1:]:
        addrs = current['addresses'].get(port) or []
        if addrs:
            raise KvmError('ports: %s carries %s; only the first port (%s) gives its addresses to the bridge: remove '
                           'them or list %s first' % (port, ', '.join(cidr(a) for a in addrs), spec['ports'][0], port))


def addressing_for(spec, wanted):
    """Provider-neutral addressing of the bridge after the change (for files rendered from the kernel)."""
    name = spec['name']
    if spec['ip'] == 'none':
        return Addressing('none')
    if spec['ip'] == 'dhcp':
        return Addressing('dhcp', dns=spec['dns'])
    addrs = [cidr(a) for a in wanted['addresses'].get(name, [])]
    routes = wanted['routes'].get(name, [])
    gw4 = next((r.get('gateway') for r in routes if r['dst'] == 'default' and r['family'] == 'inet'), None)
    gw6 = next((r.get('gateway') for r in routes if r['dst'] == 'default' and r['family'] == 'inet6'), None)
    return Addressing('static' if addrs else 'none', addrs, gw4, gw6, spec['dns'])


def default_probe(wanted):
    """The default gateway that the changed devices carry afterwards (IPv4 first)."""
    gateways = []
    for routes in wanted['routes'].values():
        for route in routes:
            if route['dst'] == 'default' and route.get('gateway'):
                gateways.append((route['family'] != 'inet', route['gateway']))
    return sorted(gateways)[0][1] if gateways else None


# ------------------------------------------------------------------ probe
def _checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def icmp_echo(address, timeout, seq=1):
    """One ICMP echo request; True when the reply comes back within ``timeout`` seconds."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        family, proto, request, reply = socket.AF_INET, socket.IPPROTO_ICMP, 8, 0
    else:
        family, proto, request, reply = socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129
    ident = os.getpid() & 0xffff
    payload = b'kvm_bridge probe'
    header = struct.pack('!BBHHH', request, 0, 0, ident, seq)
    if ip.version == 4:
        header = struct.pack('!BBHHH', request, 0, _checksum(header + payload), ident, seq)
    sock = socket.socket(family, socket.SOCK_RAW, proto)
    try:
        sock.settimeout(timeout)
        sock.sendto(header + payload, (str(ip), 0))
        deadline = time.time() + timeout
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            try:
                data, source = sock.recvfrom(2048)
            except socket.timeout:
                return False
            if ip.version == 4:
                data = data[(data[0] & 0x0f) * 4:]
            if len(data) < 8 or ipaddress.ip_address(source[0].split('%')[0]) != ip:
                continue
            kind, _code, _sum, rid, rseq = struct.unpack('!BBHHH', data[:8])
            if kind == reply and rid == ident and rseq == seq:
                return True
    finally:
        sock.close()


def make_pinger(module):
    """A ``ping(address, timeout)``: raw ICMP sockets (root), else the ping command."""
    def raw(address, timeout):
        raw.seq = (raw.seq % 65535) + 1
        return icmp_echo(address, timeout, raw.seq)
    raw.seq = 0
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return raw
    except (OSError, PermissionError):
        pass
    ping = module.get_bin_path('ping')
    if not ping:
        raise KvmError('cannot probe: raw ICMP sockets need root and the ping command was not found')

    def command(address, timeout):
        rc, _out, _err = module.run_command([ping, '-n', '-c', '1', '-W', str(max(1, int(timeout))), address])
        return rc == 0
    return command


def probe_until(pinger, address, timeout):
    deadline = time.time() + timeout
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            return False
        started = time.time()
        if pinger(address, min(1.0, remaining)):
            return True
        time.sleep(max(0.0, 0.2 - (time.time() - started)))


def apply_file(module, change, backups):
    if change.before is not None:
        backups.append(backup_file(change.path, change.backup_dir))
    if change.after is None:
        os.unlink(change.path)
    else:
        replace_file(module, change.path, change.after, change.mode)


def restore_files(module, applied, backups):
    problems = []
    for change, backup in reversed(applied):
        try:
            if change.before is None:
                if os.path.exists(change.path):
                    os.unlink(change.path)
            else:
                replace_file(module, change.path, change.before, change.mode)
            if backup and os.path.exists(backup):
                os.unlink(backup)
                backups.remove(backup)
                if change.backup_dir and not os.listdir(change.backup_dir):
                    os.rmdir(change.backup_dir)
        except (OSError, KvmError) as exc:
            problems.append('%s: %s' % (change.path, exc))
    return problems


# ------------------------------------------------------------------ transaction
class ProbeFailed(Exception):
    pass


def transaction(module, kernel, spec, snapshot, actions, changes, pinger):
    """Files, then kernel, then probe; any failure puts files and kernel back and fails. Returns the backups.

    One host write as a whole: :func:`run_bridge` calls it through ``ChangeSet.host``, so check mode
    never gets here.
    """
    name, ports = spec['name'], spec['ports']
    applied, backups = [], []
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        try:
            for change in changes:
                count = len(backups)
                apply_file(module, change, backups)
                applied.append((change, backups[-1] if len(backups) > count else None))
            for args in actions:
                kernel.change(args)
            if spec['probe'] and actions:
                if not probe_until(pinger, spec['probe'], spec['rollback_timeout']):
                    raise ProbeFailed()
        except Exception as exc:  # pylint: disable=broad-except
            if isinstance(exc, ProbeFailed):
                reason = 'probe %s did not answer within %ss after the change' % (spec['probe'], spec['rollback_timeout'])
            elif isinstance(exc, KvmError):
                reason = exc.msg
            else:
                reason = '%s: %s' % (type(exc).__name__, one_line(exc))
            problems = rollback(kernel, snapshot, name, ports) + restore_files(module, applied, backups)
            if problems:
                raise KvmError('bridge %s: %s; the roll-back was incomplete: %s' % (name, reason, '; '.join(problems)),
                               rolled_back=False, rollback_problems=problems, commands=kernel.ran)
            raise KvmError('bridge %s: %s; the previous kernel state and files were restored' % (name, reason),
                           rolled_back=True, commands=kernel.ran)
    finally:
        signal.signal(signal.SIGHUP, previous)
    return backups


def activate(module, provider, changes):
    """Tell the network service about the files written; a failure is a warning (the files are in place)."""
    try:
        provider.activate(module, changes)
    except KvmError as exc:
        return ['files written, but %s' % exc.msg]
    return []


def rollback(kernel, snapshot, name, ports):
    """Put the kernel back to ``snapshot``, command by command, collecting what fails."""
    problems = []
    try:
        links = kernel.links()
        current = read_state(kernel, links, name, [p for p in ports if p in links])
        restore = dict(snapshot)
        restore['ports'] = dict((p, v) for p, v in snapshot['ports'].items() if p in links)
        actions = plan(current, restore, name)
    except KvmError as exc:
        return ['reading the kernel state: %s' % exc.msg]
    for args in actions:
        try:
            kernel.change(args)
        except KvmError as exc:
            problems.append(exc.msg)
    return problems


# ------------------------------------------------------------------ module
def run_bridge(module):
    params = module.params
    validate_params(params)   # refusals first: before iproute2 runs, before any file is read or written
    kernel = IpRoute(module)
    links = kernel.links()
    spec = build_spec(params, links)
    name, ports = spec['name'], spec['ports']
    current = read_state(kernel, links, name, ports)
    warnings = []
    if spec['state'] == 'present':
        check_port_addresses(spec, current)
        wanted = wanted_present(spec, current)
    else:
        wanted = wanted_absent(spec, current)
    if spec['probe'] is None:
        spec['probe'] = default_probe(wanted)

    provider_name = spec['provider']
    if provider_name == 'auto':
        provider_name = detect(module, spec['config_root'])
        if provider_name == 'runtime':
            warnings.append('no network configuration system found (NetworkManager, ifcfg, ifupdown): the bridge '
                            'is set in the kernel only and will not survive a reboot')
    if provider_name == 'networkmanager' and spec['config_root'] == '/' and not module.get_bin_path('nmcli'):
        raise KvmError('provider networkmanager: nmcli was not found')
    provider = get_provider(provider_name, spec['config_root'])
    if provider_name == 'ifupdown' and spec['state'] == 'present':
        main_text = None
        try:
            with open(provider.main_file) as handle:
                main_text = handle.read()
        except OSError:
            pass
        if main_text is not None and not re.search(r'^\s*source(-directory)?\s+\S*interfaces\.d', main_text, re.M):
            warnings.append('%s does not source interfaces.d: add "source /etc/network/interfaces.d/*" so the '
                            'bridge is configured at boot' % provider.main_file)
    changes = [c for c in provider.changes(spec, addressing_for(spec, wanted)) if c.changed]
    actions = plan(current, wanted, name)

    record = ChangeSet(module)
    for args in actions:
        option, action, before, after, extra = kernel_entry(args, current, name)
        record.record('live', option, action, before, after, **extra)
    for change in changes:
        option, action, before, after, extra = file_entry(provider_name, change)
        record.record('host', option, action, before, after, **extra)
    if actions:
        record.add_diff(render_state(current, name, ports), render_state(wanted, name, ports), 'kernel', 'kernel')
    for change in changes:
        record.add_diff(change.before or '', change.after or '', change.path, change.path)

    def run_transaction():
        pinger = make_pinger(module) if (actions and spec['probe']) else None
        return transaction(module, kernel, spec, current, actions, changes, pinger)

    backups = record.host(run_transaction) if record.changed else None
    if changes:
        warnings += record.host(activate, module, provider, changes) or []
    after = current
    if backups is not None:
        # the change ran: report the kernel as it is now (in check mode and without a change: as it was)
        links = kernel.links()
        after = read_state(kernel, links, name, [p for p in ports if p in links])
    return record.result(name=name, state=spec['state'], provider=provider_name, ports=ports,
                         probe=spec['probe'] if actions else None, commands=['ip ' + ' '.join(a) for a in actions],
                         files=[c.path for c in changes], backups=backups or [], bridge=facts(after, name, links),
                         warnings=warnings)


def main(module):
    # fail_json is called outside the except blocks: inside one, AnsibleModule attaches the traceback of
    # the exception being handled (at -vvv) even to a clean refusal.
    failure = result = None
    try:
        result = run_bridge(module)
    except KvmError as exc:
        failure = dict(exc.facts, msg=exc.msg)
    except Exception as exc:  # pylint: disable=broad-except
        failure = dict(msg='unexpected error (%s): %s' % (type(exc).__name__, one_line(exc)),
                       exception=traceback.format_exc())
    if failure is not None:
        module.fail_json(**failure)
    warnings = result.pop('warnings', [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)
