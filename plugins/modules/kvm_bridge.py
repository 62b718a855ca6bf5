#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_bridge
short_description: Host bridges that take over a NIC's addressing safely, with persistent configuration
version_added: 0.1.0
description:
  - Creates (or removes) a Linux bridge on the KVM host, puts NICs in it and moves the first NIC's addresses,
    routes and DNS settings to the bridge, so guests attached with C(type=bridge) share the host's network.
    It replaces C(virsh iface-bridge) and C(iface-unbridge), whose libvirt interface driver is gone from
    current distributions.
  - The running kernel is changed at once through iproute2 (C(ip -j) JSON output, no extra Python library
    on the managed host) and the persistent files of the chosen O(provider) are written, so the bridge
    survives a reboot.
  - B(Safe move.) The ports' addresses, routes and files are recorded first. After the change the O(probe)
    address must answer an ICMP echo within O(rollback_timeout) seconds; if it does not (or any step fails)
    the previous kernel state and files are restored and the task fails with one message. SIGHUP is ignored
    meanwhile, so a dropped SSH session does not stop the module half way.
  - O(state=absent) is the C(iface-unbridge) equivalent. The bridge's addresses, routes and file settings go
    back to the first port and the bridge is deleted.
  - Does not need libvirt.
  - Other members of the bridge (for example the C(vnet*) taps of running guests) are never removed by
    O(state=present).
author:
  - kvmops.kvm contributors (@kvmops)
attributes:
  check_mode:
    support: full
    description: Reports the changes, commands and files it would make (RV(changes), RV(commands), RV(files)); changes
      nothing, not even a backup.
  diff_mode:
    support: full
    description: One diff for the kernel state (bridge, ports, addresses, routes) and one per file (a list when there
      is more than one).
options:
  name:
    description:
      - Bridge name, for example C(br1) - 1 to 15 letters, digits, C(_), C(.) and C(-), not starting with C(.) or C(-).
      - The same rule holds for O(ports). Names are written into shell-sourced ifcfg files, interfaces(5) stanzas and
        keyfiles, so anything else (blanks, quotes, C($), backticks, C(;), C(#), C(/), newlines, non-ASCII) is refused
        before anything is read from the kernel or written.
    type: str
    required: true
  ports:
    description:
      - NICs to put in the bridge. The first one gives its addressing to the bridge (O(ip=inherit)) and its
        MAC address (O(mac)). Other ports must carry no addresses.
      - With O(state=absent), the ports to release; default all current members, the first by interface index
        receiving the addressing back.
    type: list
    elements: str
    default: []
  state:
    description: Whether the bridge exists.
    type: str
    choices: [present, absent]
    default: present
  stp:
    description: Spanning tree protocol.
    type: bool
    default: true
  forward_delay:
    description:
      - STP forward delay in seconds (0-30). Written as is to the files; with STP on, the kernel and
        NetworkManager use at least 2 seconds.
    type: int
    default: 0
  mtu:
    description: MTU of the bridge. Default is the kernel's choice.
    type: int
  mac:
    description:
      - MAC address of the bridge. Default is the first port's, so DHCP leases and MAC-bound firewall rules survive.
    type: str
  ip:
    description:
      - V(inherit) moves the first port's addresses and routes (kernel) and its addressing settings, including DNS
        (files), to the bridge; when the port's files have no addressing, the files are written from the kernel state.
        Persisted static routes follow (ifcfg C(route-<port>) files, ifupdown C(up)/C(down) hooks running C(ip route),
        NetworkManager C([ipv4]) routes), with C(dev <port>) renamed to the bridge; V(absent) moves them back.
      - V(static) uses O(address), O(gateway) and O(dns).
      - V(dhcp) writes DHCP into the files; the kernel gets the port's current addresses and routes meanwhile
        (no DHCP client is started by this module).
      - V(none) leaves the bridge without addresses (for example a bridge used only by guests).
      - In every mode the ports lose their addresses.
    type: str
    choices: [inherit, static, dhcp, none]
    default: inherit
  address:
    description: Addresses with prefix (V(192.0.2.10/24), V(2001:db8::10/64)) for O(ip=static).
    type: list
    elements: str
  gateway:
    description: Default gateway for O(ip=static); must be inside one of O(address).
    type: str
  dns:
    description: DNS servers for O(ip=static) or O(ip=dhcp) (written to the files only).
    type: list
    elements: str
  provider:
    description:
      - Which persistent configuration to write.
      - V(ifcfg) RHEL network-scripts, C(ifcfg-<bridge>) with TYPE=Bridge and C(ifcfg-<port>) with BRIDGE=.
      - V(networkmanager) keyfiles, a bridge profile and bridge-port profiles (loaded with C(nmcli connection load)).
      - V(ifupdown) Debian C(/etc/network/interfaces.d/<bridge>) with bridge_ports, bridge_stp and bridge_fd.
      - V(runtime) kernel state only.
      - V(auto) picks NetworkManager when it runs, else ifcfg, else ifupdown, else runtime (with a warning).
    type: str
    choices: [auto, ifcfg, ifupdown, networkmanager, runtime]
    default: auto
  probe:
    description:
      - An IP address that must answer an ICMP echo after the change, or everything is rolled back.
      - Default is the default gateway that the bridge (or, with O(state=absent), the port) carries after the change;
        with no default route there is no probe unless one is given.
    type: str
  rollback_timeout:
    description: Seconds to wait for O(probe) to answer (with STP on, ports need about two forward delays first).
    type: int
    default: 30
  config_root:
    description:
      - Directory that stands for C(/) when reading and writing persistent files, for staging and tests.
        NetworkManager is only told about files (and only detected) when this is C(/).
    type: path
    default: /
notes:
  - Needs root on the managed host (netlink changes and raw ICMP sockets) and iproute2 4.13 or later.
  - Every option is checked (interface names, addresses with prefix, gateway, DNS servers, probe, MAC, MTU, delays,
    O(config_root)) before the kernel is read or anything is written; a refusal names the option. Each file is then
    written in its format's own quoting (shell single quotes for ifcfg, plain validated words for interfaces(5), GLib
    escaping for keyfiles).
  - Files are written through a random temporary file in the target directory (never through a symlink) and renamed
    into place. New ifcfg, route and interfaces(5) files are mode 0644, as the distributions ship them (ifquery and the
    network-scripts helpers read them without root); NetworkManager keyfiles are 0600; an existing file keeps its
    mode. Backups are 0600.
  - Only addresses, the default gateway and DNS are written to the files; other static routes are moved in the
    kernel only.
'''

EXAMPLES = r'''
- name: Bridge ens33 as br1, keeping the host's address, gateway and DNS
  kvmops.kvm.kvm_bridge:
    name: br1
    ports: [ens33]

- name: Static addressing on Debian, probe a specific router
  kvmops.kvm.kvm_bridge:
    name: br0
    ports: [eno1]
    provider: ifupdown
    ip: static
    address: [192.0.2.10/24]
    gateway: 192.0.2.1
    dns: [192.0.2.53]
    probe: 192.0.2.1
    rollback_timeout: 20

- name: A bridge for guests only, no uplink addressing, kernel only
  kvmops.kvm.kvm_bridge:
    name: brguests
    ip: none
    provider: runtime

- name: Undo (iface-unbridge)
  kvmops.kvm.kvm_bridge:
    name: br1
    ports: [ens33]
    state: absent
'''

RETURN = r'''
name:
  description: The bridge name.
  type: str
  returned: always
state:
  description: The state asked for.
  type: str
  returned: always
provider:
  description: The provider used (after V(auto) detection).
  type: str
  returned: always
  sample: ifcfg
ports:
  description: The ports handled.
  type: list
  elements: str
  returned: always
probe:
  description: The address probed after the change (null when nothing changed in the kernel or nothing to probe).
  type: str
  returned: always
changes:
  description:
    - Every change made (in check mode, that would be made), in order, one entry each; empty when nothing changed.
    - Scope V(live) is the running kernel (the bridge link, port membership, addresses and routes, one entry per
      C(ip) command); scope V(host) is a persistent file of the O(provider).
  type: list
  elements: dict
  returned: always
  version_added: 1.0.0
  contains:
    scope:
      description: V(live) (kernel) or V(host) (a file).
      type: str
      sample: live
    option:
      description:
        - The option the change comes from. V(name) the bridge link itself (created, deleted, set up), V(stp),
          V(forward_delay), V(mac), V(mtu), V(ports) (a port joins or leaves, or is set up or down), V(ip)
          (an address or a route), V(provider) (a file).
      type: str
      sample: ports
    action:
      description:
        - V(create), V(delete), V(set), V(set up), V(set down), V(add port), V(remove port), V(add address),
          V(remove address), V(add route), V(remove route), V(create file), V(update file), V(remove file).
      type: str
      sample: add port
    before:
      description: The value before (an address with prefix, a route, a flag, a number), null for a file.
      type: raw
    after:
      description: The value after, null for a file.
      type: raw
    device:
      description: The link changed (scope V(live)).
      type: str
      sample: ens33
    command:
      description: The C(ip) command line (scope V(live)).
      type: str
      sample: ip link set dev ens33 master br1
    path:
      description: The file (scope V(host)).
      type: str
      sample: /etc/sysconfig/network-scripts/ifcfg-br1
    provider:
      description: The provider that writes the file (scope V(host)).
      type: str
      sample: ifcfg
pending_restart:
  description: Options whose new value waits for a restart. Always empty here (every change applies at once); kept
    so that every kvmops.kvm module returns the same keys.
  type: list
  elements: str
  returned: always
  version_added: 1.0.0
  sample: []
commands:
  description:
    - Detail of RV(changes) for scope V(live). The C(ip) commands run (or, in check mode, that would run), in order.
  type: list
  elements: str
  returned: always
files:
  description:
    - Detail of RV(changes) for scope V(host). The files written or removed (or that would be).
  type: list
  elements: str
  returned: always
backups:
  description: Backups of the files changed, beside them (for interfaces.d, in interfaces.d.kvm_bridge-backup).
  type: list
  elements: str
  returned: always
bridge:
  description: The bridge as the kernel reports it afterwards (before, in check mode).
  type: dict
  returned: always
  contains:
    name:
      description: Name.
      type: str
    exists:
      description: Whether the bridge exists.
      type: bool
    stp:
      description: STP on.
      type: bool
    forward_delay:
      description: Kernel forward delay in seconds.
      type: int
    mtu:
      description: MTU.
      type: int
    mac:
      description: MAC address.
      type: str
    up:
      description: Administratively up.
      type: bool
    ports:
      description: All members, in interface index order.
      type: list
      elements: str
    addresses:
      description: Global addresses with prefix.
      type: list
      elements: str
    routes:
      description: Main-table routes through the bridge that are not the kernel's own.
      type: list
      elements: str
rolled_back:
  description: On failure after the change started, whether the previous state was restored completely.
  type: bool
  returned: on failure
'''


from ansible_collections.kvmops.kvm.plugins.module_utils._bridge import ARGUMENT_SPEC, REQUIRED_IF, main as run_bridge
from ansible_collections.kvmops.kvm.plugins.module_utils._client import new_module


def main():
    module = new_module(ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    run_bridge(module)


if __name__ == '__main__':
    main()
