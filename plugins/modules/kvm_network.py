#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_network
short_description: libvirt virtual networks (NAT, routed, open, isolated, host bridge), converged in place
version_added: 0.1.0
description:
  - Defines, starts, stops, autostarts and removes libvirt virtual networks, and converges an existing network
    to a new definition. Replaces C(virsh net-define), C(net-start), C(net-autostart), C(net-destroy),
    C(net-undefine) and hand-written network XML.
  - Only what you specify is compared and changed. An option you leave out keeps the network's current value;
    libvirt's own defaults and generated values (UUID, bridge MAC, auto-assigned bridge name) never count as
    differences and are kept.
  - DHCP host and DNS host entries are changed with libvirt's network update call on the live and the
    persistent definition, without restarting the network (guests keep their link).
  - Any other difference redefines the network. If it is active, the running network keeps its old settings
    until it is restarted; the module lists it in RV(pending_restart), or restarts it with O(restart=if_needed)
    and re-plugs the interfaces of running guests into the bridge (RV(replugged)).
  - Every value is validated before anything is written, and the failure names the option. Names that reach
    dnsmasq (O(domain), O(dns_hosts[].hostnames), DHCP host names) must be DNS names (RFC 1123); bridge and
    forward devices must be interface names (letters, digits and C(_ . -), at most 15 characters); addresses,
    MACs, DUIDs, ranges, lease times, ports and the MTU are checked too. New and changed definitions are
    defined with libvirt's schema validation (C(VIR_NETWORK_DEFINE_VALIDATE)) where the daemon has it
    (libvirt 7.8 and later); with an older daemon the module's own checks are what protects dnsmasq.
  - Before anything is written, the module fails with a message naming the conflict when the bridge name is
    used by another libvirt network or already exists on the host, or when a subnet overlaps another libvirt
    network or a route of the host.
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Nothing is written; the result and the diff show what would change.
  diff_mode:
    support: full
    description: The persistent definition before and after.
options:
  name:
    description:
      - Name of the network. Required unless O(xml) contains C(<name>).
      - Letters, digits and C(_), C(.), C(+), C(:), C(@) and C(-), not starting with C(.) or C(-), at most 200 characters.
      - The alias O(network) (the alias C(community.libvirt.virt_net) has) is new in 1.0.0.
    type: str
    aliases: [network]
  state:
    description:
      - V(present) the network is defined; whether it runs is left as it is.
      - V(active) defined and started.
      - V(inactive) defined and stopped.
      - V(absent) stopped and undefined; a missing network is not a change. Only this state removes a network.
    type: str
    choices: [present, active, inactive, absent]
    default: present
  autostart:
    description:
      - Start the network when libvirt starts. Left as it is when not given.
    type: bool
  forward:
    description:
      - How the network reaches the outside.
      - V(nat) masquerades the subnet behind the host; V(route) routes it without NAT; V(open) adds no firewall
        rules at all; V(isolated) has no forwarding (guests reach each other and the host only).
      - V(bridge) uses an existing host bridge (for example one made by C(kvm_bridge)), named in O(bridge.name);
        such a network has no IP, DHCP or DNS of its own.
      - When not given, an existing network keeps its mode and a new one is V(isolated) (libvirt's meaning of
        no C(<forward>)).
    type: str
    choices: [nat, route, open, isolated, bridge]
  forward_dev:
    description:
      - Restrict forwarding to this host interface (C(<forward dev=...>)), an interface name. An empty string removes it.
    type: str
  nat_ports:
    description:
      - Source port range used for NAT (libvirt's default is 1024-65535). Only with O(forward=nat).
    type: dict
    suboptions:
      start:
        description: First port.
        type: int
        required: true
      end:
        description: Last port.
        type: int
        required: true
  bridge:
    description:
      - The bridge of the network.
    type: dict
    suboptions:
      name:
        description:
          - Bridge device name, at most 15 letters, digits and C(_ . -). When left out for a new network, libvirt assigns one
            (C(virbrN)), which is then kept.
          - With O(forward=bridge), the existing host bridge to use.
        type: str
      stp:
        description: Spanning tree protocol on the bridge. A new network gets V(true).
        type: bool
      delay:
        description: Bridge forward delay in seconds. A new network gets V(0).
        type: int
      mtu:
        description: MTU of the bridge, 68 to 65535.
        type: int
      mac:
        description:
          - MAC address of the bridge. When left out, libvirt generates one, which is then kept.
        type: str
  domain:
    description:
      - DNS domain of the network (DHCP clients get it, dnsmasq answers for it), a DNS name. An empty string removes it.
    type: str
  ipv4:
    description:
      - The IPv4 address of the network (the host's address on the bridge), its DHCP ranges and static hosts.
      - O(ipv4.dhcp_ranges) and O(ipv4.dhcp_hosts) are the complete lists when given (entries not listed are
        removed; V([]) removes all); when left out, the current entries are kept.
    type: dict
    suboptions:
      address:
        description: Address, with the prefix (V(192.168.111.1/24)) or with O(ipv4.prefix) or O(ipv4.netmask).
        type: str
        required: true
      prefix:
        description: Prefix length.
        type: int
      netmask:
        description: Netmask (IPv4 only), for example V(255.255.255.0).
        type: str
      dhcp_ranges:
        description: DHCP address ranges.
        type: list
        elements: dict
        suboptions:
          start:
            description: First address.
            type: str
            required: true
          end:
            description: Last address.
            type: str
            required: true
          lease:
            description:
              - Lease time such as V(30m), V(12h), V(3600s) or V(infinite); a bare number is minutes.
                When not given, dnsmasq's default (one hour).
            type: str
      dhcp_hosts:
        description:
          - Static DHCP hosts. IPv4 hosts need O(ipv4.dhcp_hosts[].mac) or O(ipv4.dhcp_hosts[].name);
            IPv6 hosts O(ipv4.dhcp_hosts[].id) (DUID) or O(ipv4.dhcp_hosts[].name).
          - Changed in place on an active network, without a restart.
        type: list
        elements: dict
        suboptions:
          mac:
            description: MAC address of the guest interface (IPv4).
            type: str
          id:
            description: DHCP client identifier / DUID (IPv6), hex octets separated by colons.
            type: str
          name:
            description: Hostname given to the guest, a DNS name.
            type: str
          ip:
            description: The fixed address.
            type: str
            required: true
  ipv6:
    description:
      - The IPv6 address of the network, like O(ipv4) (with a prefix, not a netmask).
    type: dict
    suboptions:
      address:
        description: Address, with the prefix (V(fd00:1::1/64)) or with O(ipv6.prefix).
        type: str
        required: true
      prefix:
        description: Prefix length.
        type: int
      netmask:
        description: Not used for IPv6 (rejected).
        type: str
      dhcp_ranges:
        description: DHCPv6 address ranges.
        type: list
        elements: dict
        suboptions:
          start:
            description: First address.
            type: str
            required: true
          end:
            description: Last address.
            type: str
            required: true
          lease:
            description: Lease time, as for IPv4.
            type: str
      dhcp_hosts:
        description: Static DHCPv6 hosts (O(ipv6.dhcp_hosts[].id) or O(ipv6.dhcp_hosts[].name), and ip).
        type: list
        elements: dict
        suboptions:
          mac:
            description: Not used for IPv6 (rejected).
            type: str
          id:
            description: DUID of the guest, hex octets separated by colons.
            type: str
          name:
            description: Hostname of the guest, a DNS name.
            type: str
          ip:
            description: The fixed address.
            type: str
            required: true
  dns_hosts:
    description:
      - DNS host entries served by the network's dnsmasq. The complete list when given (V([]) removes all);
        kept when left out. Changed in place on an active network, without a restart.
    type: list
    elements: dict
    suboptions:
      ip:
        description: Address.
        type: str
        required: true
      hostnames:
        description: Names for the address, each a DNS name (RFC 1123, at most 253 characters).
        type: list
        elements: str
        required: true
  xml:
    description:
      - The full network definition as XML, instead of the options above (it cannot be combined with them).
      - Its values are validated like the options; attribute values and texts may not hold control characters.
      - It is the whole definition, except that the UUID, the bridge MAC and the bridge name libvirt generated
        are kept when the XML leaves them out. It is compared semantically, not as text.
    type: str
  restart:
    description:
      - What to do when an active network's running settings differ from its definition in a way that only a
        restart applies (anything but DHCP and DNS host entries).
      - V(never) leaves it running and lists it in RV(pending_restart).
      - V(if_needed) restarts it and re-plugs the interfaces of running guests on it (on a local URI; on a remote
        one they are reported in RV(replugged) with C(replugged=false) and a warning names them, since libvirt has
        no call that re-attaches a tap - run the module on the hypervisor itself to have them re-plugged).
    type: str
    choices: [never, if_needed]
    default: never
notes:
  - Host-side checks (bridges and routes of the host) run for a local URI; for a remote URI only the interfaces
    libvirt reports are checked.
seealso:
  - module: kvmops.kvm.kvm_info
'''

EXAMPLES = r'''
- name: NAT network, as in the walkthrough (virsh net-define / net-start / net-autostart)
  kvmops.kvm.kvm_network:
    name: nat_network_01
    state: active
    autostart: true
    forward: nat
    bridge:
      name: virbr1
      stp: true
      delay: 0
    ipv4:
      address: 192.168.111.1/24
      dhcp_ranges:
        - start: 192.168.111.2
          end: 192.168.111.254

- name: Pin a guest's address, without restarting the network
  kvmops.kvm.kvm_network:
    name: nat_network_01
    ipv4:
      address: 192.168.111.1/24
      dhcp_hosts:
        - mac: "52:54:00:a3:19:8b"
          name: vm01
          ip: 192.168.111.10

- name: Move the network to another subnet and restart it now
  kvmops.kvm.kvm_network:
    name: nat_network_01
    ipv4:
      address: 192.168.112.1/24
      dhcp_ranges: [{start: 192.168.112.2, end: 192.168.112.254, lease: 12h}]
      dhcp_hosts: []
    restart: if_needed

- name: Isolated lab network with local DNS names
  kvmops.kvm.kvm_network:
    name: lab
    state: active
    forward: isolated
    domain: lab.internal
    ipv4:
      address: 10.10.0.1
      netmask: 255.255.255.0
      dhcp_ranges: [{start: 10.10.0.100, end: 10.10.0.199}]
    dns_hosts:
      - ip: 10.10.0.5
        hostnames: [nfs, nfs.lab.internal]

- name: Guests on an existing host bridge
  kvmops.kvm.kvm_network:
    name: host-br1
    state: active
    autostart: true
    forward: bridge
    bridge:
      name: br1

- name: From full XML
  kvmops.kvm.kvm_network:
    xml: "{{ lookup('file', 'routed.xml') }}"
    state: active

- name: Remove (virsh net-destroy + net-undefine)
  kvmops.kvm.kvm_network:
    name: nat_network_01
    state: absent
'''

RETURN = r'''
network:
  description:
    - The network, in the shape of one entry of C(kvm_info)'s RV(kvmops.kvm.kvm_info#module:networks).
    - In check mode, what it would be. Null when the network is (or would be) absent.
  returned: always
  type: dict
  contains:
    name: {description: Network name., type: str, returned: always}
    uuid: {description: Network UUID (null for a network not yet defined in check mode)., type: str, returned: always}
    active: {description: Started., type: bool, returned: always}
    autostart: {description: Started with the host., type: bool, returned: always}
    persistent: {description: Defined., type: bool, returned: always}
    bridge: {description: Host bridge name., type: str, returned: always, sample: virbr1}
    forward_mode: {description: "nat, route, open, bridge or isolated.", type: str, returned: always}
    forward_dev: {description: Forward device., type: str, returned: always}
    domain: {description: DNS domain., type: str, returned: always}
    mtu: {description: MTU., type: int, returned: always}
    mac: {description: Bridge MAC., type: str, returned: always}
    addresses:
      description: IP addresses with DHCP ranges and hosts.
      type: list
      elements: dict
      returned: always
      sample:
        - family: ipv4
          address: 192.168.111.1
          netmask: null
          prefix: 24
          dhcp_ranges: [{start: 192.168.111.2, end: 192.168.111.254}]
          dhcp_hosts: [{mac: "52:54:00:a3:19:8b", name: vm01, ip: 192.168.111.10}]
changes:
  description:
    - What was (or in check mode would be) changed, one entry per change, in the shape every kvmops.kvm module returns.
    - Changed in 1.0.0; before, one readable line per change.
  returned: always
  type: list
  elements: dict
  contains:
    scope:
      description:
        - V(config) the persistent definition; V(live) the running network (libvirt's network update call, a start,
          stop or restart); V(host) the hypervisor.
      type: str
      returned: always
      choices: [config, live, host]
    option:
      description:
        - The option as you spell it (V(bridge.stp), V(ipv4.address), V(ipv4.dhcp_hosts), V(dns_hosts), V(autostart));
          V(state) for define, undefine, start, stop and restart; V(xml) for a part of O(xml) the options do not model.
      type: str
      returned: always
    action:
      description:
        - V(set) a value; V(add) or V(remove) an entry of a list option; V(define), V(undefine), V(start), V(stop) or
          V(restart) for O(state).
      type: str
      returned: always
    before:
      description: The value before (for V(remove), the entry removed); null when there was none.
      type: raw
      returned: always
    after:
      description: The value after (for V(add), the entry added); null when there is none.
      type: raw
      returned: always
    options:
      description: For a restart, the options whose new values it applies.
      type: list
      elements: str
      returned: when action is restart
    detail:
      description: For O(xml), the part of the definition that differs.
      type: str
      returned: when option is xml
  sample:
    - {scope: config, option: ipv4.dhcp_hosts, action: add, before: null, after: {mac: "52:54:00:a3:19:8b", name: vm01, ip: 192.168.111.10}}
    - {scope: live, option: ipv4.dhcp_hosts, action: add, before: null, after: {mac: "52:54:00:a3:19:8b", name: vm01, ip: 192.168.111.10}}
pending_restart:
  description:
    - The options whose new value the running network does not have yet and gets only when it is restarted
      (O(restart=if_needed) does it); sorted. Empty when the network runs as defined or is not running.
    - Changed in 1.0.0; before, it held the network's name.
  returned: always
  type: list
  elements: str
  sample: [bridge.stp, ipv4.address]
restarted:
  description: Whether the network was (or would be) restarted.
  returned: always
  type: bool
replugged:
  description: Interfaces of running guests on the network when it was restarted, and whether they were re-plugged.
  returned: always
  type: list
  elements: dict
  contains:
    guest: {description: Guest name., type: str, returned: always, version_added: 1.0.0}
    domain: {description: "Deprecated: use RV(replugged[].guest); removed in 2.0.0.", type: str, returned: always}
    mac: {description: Interface MAC., type: str, returned: always}
    interface: {description: Host tap device., type: str, returned: always}
    bridge: {description: Bridge it was plugged into., type: str, returned: always}
    replugged: {description: Whether it was re-plugged (false in check mode or on a remote URI)., type: bool, returned: always}
uri:
  description: The libvirt URI used.
  returned: always
  type: str
diff:
  description: The persistent definition before and after (diff mode).
  returned: when diff mode is on
  type: dict
  contains:
    before: {description: Definition before., type: str, returned: always}
    after: {description: Definition after., type: str, returned: always}
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._network import ARGUMENT_SPEC, main as run_network


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_network(module)


if __name__ == '__main__':
    main()
