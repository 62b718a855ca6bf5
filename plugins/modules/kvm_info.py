#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_info
short_description: Facts about a KVM hypervisor, its guests, networks and storage pools
version_added: 0.1.0
description:
  - Read-only. Reports the host (hypervisor and libvirt versions, node CPU and memory, free memory and a
    truthful hardware-virtualization report), the guests (what C(virsh dominfo), C(domblklist), C(domiflist),
    C(vcpuinfo) and C(domstats --balloon) show), the virtual networks and the storage pools with their volumes.
  - The virtualization report does not stop at the vmx/svm CPU flags. It checks C(/dev/kvm) (present, openable,
    usable by the QEMU user), the kvm kernel modules, nested virtualization, and which domain types (V(kvm), V(qemu))
    libvirt's domain capabilities say can really run a full guest operating system.
  - Host-side probes (flags, C(/dev/kvm), modules, nested) run only when O(uri) names the local host.
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Never changes anything.
  diff_mode:
    support: none
    description: Never changes anything.
options:
  gather:
    description:
      - Which sections to report.
      - V(hardware) is the host-side part of the virtualization report alone (CPU flags, C(/dev/kvm), kvm modules,
        nested). It needs neither libvirt nor libvirt-python, so a role can check a host before installing them.
        It probes the host that runs the module, so with a remote O(uri) it is refused (since 1.1.0; it reported
        the module's host before); run it on the hypervisor, or read RV(host.virtualization), libvirt's view.
    type: list
    elements: str
    choices: [host, domains, networks, pools, hardware]
    default: [host, domains, networks, pools]
  name:
    description:
      - Only report guests, networks and pools whose name matches one of these shell-style patterns.
      - Each is a libvirt object name in which the wildcards C(* ? [ ] !) may stand for characters; anything
        else (a newline, C(/), quotes, C($)) is refused with a message naming the entry.
      - A name that matches nothing gives empty lists and RV(msg), not a failure.
    type: list
    elements: str
    default: []
  address_sources:
    description:
      - Where to look for the addresses of each running guest (RV(domains[].addresses)), in this order.
      - V(lease) - the DHCP leases of the libvirt network the interface is on (no guest software needed).
      - V(agent) - the QEMU guest agent inside the guest (needs the agent channel and a running agent).
      - V(arp) - the hypervisor's ARP/neighbour table (the guest must have sent traffic to the host); for a
        local URI this host's C(/proc/net/arp) when libvirt's own ARP source fails or finds nothing.
      - The same sources as the P(kvmops.kvm.libvirt#inventory) inventory plugin's C(address_sources), read by
        the same code. An empty list reads no addresses.
    type: list
    elements: str
    choices: [lease, agent, arp]
    default: [lease, agent, arp]
    version_added: 1.1.0
'''

EXAMPLES = r'''
- name: Report the hypervisor
  kvmops.kvm.kvm_info:
    gather: [host]
  register: hv

- name: Stop early on a host that cannot run full KVM guests
  ansible.builtin.assert:
    that: hv.host.virtualization.preferred_domain_type == 'kvm'
    fail_msg: "{{ hv.host.virtualization.summary | join('; ') }}"

- name: One guest, with its disks, NICs, vCPUs and balloon
  kvmops.kvm.kvm_info:
    gather: [domains]
    name: [vm01-centos7]
  register: vm01

- name: The addresses of one guest, from its DHCP lease only
  kvmops.kvm.kvm_info:
    gather: [domains]
    name: [web01]
    address_sources: [lease]
  register: web01

- name: Show them
  ansible.builtin.debug:
    msg: "{{ web01.domains[0].addresses | map(attribute='address') | list }}"

- name: All hypervisors in a play, one URI
  kvmops.kvm.kvm_info:
    uri: qemu+ssh://root@hv02/system
'''

RETURN = r'''
uri:
  description: The libvirt URI the facts come from.
  returned: always
  type: str
  sample: qemu:///system
gathered_on:
  description: Hostname of the machine the module ran on.
  returned: always
  type: str
hardware:
  description:
    - The host-side hardware-virtualization probes, without libvirt.
    - Same keys as RV(host.virtualization) has for a local URI (cpu_flags, hw_flag, dev_kvm, kvm_modules, nested),
      plus C(firmware_disabled) (flags present, C(/dev/kvm) missing) and C(kvm_usable) (C(/dev/kvm) opens).
  returned: when V(hardware) is gathered
  type: dict
msg:
  description: Set when O(name) matched nothing.
  returned: when nothing matched
  type: str
host:
  description: The hypervisor host.
  returned: when V(host) is gathered
  type: dict
  contains:
    uri:
      description: Canonical URI of the connection.
      type: str
      returned: always
    hostname:
      description: Hostname libvirt reports.
      type: str
      returned: always
    hypervisor:
      description: Hypervisor driver type.
      type: str
      returned: always
      sample: QEMU
    hypervisor_version:
      description: Hypervisor version.
      type: str
      returned: always
      sample: 7.2.0
    libvirt_version:
      description: libvirt version.
      type: str
      returned: always
      sample: 9.0.0
    host_uuid:
      description: The host UUID from the capabilities.
      type: str
      returned: always
    arch:
      description: Host CPU architecture.
      type: str
      returned: always
    cpu_model:
      description: Host CPU model as libvirt names it.
      type: str
      returned: always
    node:
      description: C(virsh nodeinfo).
      type: dict
      returned: always
      sample: {cpu_model: x86_64, memory_mib: 24000, cpus: 2, mhz: 2400, numa_nodes: 1, sockets: 1, cores: 2, threads: 1}
    free_memory_bytes:
      description: Free host memory in bytes.
      type: int
      returned: always
    guest_types:
      description: Arch/domain-type pairs the capabilities list.
      type: list
      elements: str
      returned: always
    virtualization:
      description: The hardware-virtualization report.
      type: dict
      returned: always
      contains:
        local:
          description: Whether host-side probes ran (the URI is local).
          type: bool
          returned: always
        cpu_flags:
          description: vmx, svm and hypervisor flags from /proc/cpuinfo.
          type: dict
          returned: when local
        hw_flag:
          description: 'V(vmx), V(svm) or null.'
          type: str
          returned: when local
        dev_kvm:
          description: /dev/kvm presence, mode, group, whether it opens, and whether the QEMU user may use it.
          type: dict
          returned: when local
        kvm_modules:
          description: Whether kvm, kvm_intel and kvm_amd are loaded.
          type: dict
          returned: when local
        nested:
          description: Nested virtualization module parameter (module, enabled, value).
          type: dict
          returned: when local
        domain_types:
          description:
            - Per domain type (V(kvm), V(qemu)), from libvirt's domain capabilities, whether it is available, which CPU
              modes are supported, the usable CPU models, and whether it runs a full guest OS (C(runs_full_os)).
          type: dict
          returned: always
        kvm_available:
          description: Whether libvirt offers domain type kvm.
          type: bool
          returned: always
        preferred_domain_type:
          description: V(kvm) when KVM can run a full guest OS here, otherwise V(qemu) (TCG).
          type: str
          returned: always
        summary:
          description: Plain-language statements about the host.
          type: list
          elements: str
          returned: always
domains:
  description: The guests, sorted by name.
  returned: when V(domains) is gathered
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
      returned: always
    uuid:
      description: Guest UUID.
      type: str
      returned: always
    id:
      description: Runtime id, null when not running.
      type: int
      returned: always
    state:
      description: running, blocked, paused, shutdown, shutoff, crashed, pmsuspended.
      type: str
      returned: always
    state_reason:
      description: Why it is in that state (libvirt's reason).
      type: str
      returned: always
    active:
      description: Whether it runs.
      type: bool
      returned: always
    persistent:
      description: Whether it is defined (not transient).
      type: bool
      returned: always
    autostart:
      description: Started with the host.
      type: bool
      returned: always
    virt_type:
      description: Domain type (kvm or qemu).
      type: str
      returned: always
    arch:
      description: Guest architecture.
      type: str
      returned: always
    machine:
      description: Machine type.
      type: str
      returned: always
    firmware:
      description: bios or efi.
      type: str
      returned: always
    cpu_mode:
      description: CPU mode.
      type: str
      returned: always
    os_variant:
      description: libosinfo id from the metadata.
      type: str
      returned: always
    vcpus:
      description: current and maximum vCPUs.
      type: dict
      returned: always
    memory:
      description: current_kib and max_kib.
      type: dict
      returned: always
    disks:
      description: C(virsh domblklist) and more.
      type: list
      elements: dict
      returned: always
      sample: [{target: vda, source: /var/lib/libvirt/images/vm01.qcow2, format: qcow2, bus: virtio, cache: none, device: disk}]
    interfaces:
      description: C(virsh domiflist) and more.
      type: list
      elements: dict
      returned: always
      sample: [{type: network, source: default, model: virtio, mac: "52:54:00:a3:19:8b", target: vnet0, link_state: up}]
    graphics:
      description: Consoles (type, listen, port, autoport, keymap, password_set).
      type: list
      elements: dict
      returned: always
    memballoon:
      description: Balloon model.
      type: str
      returned: always
    secure_boot:
      description: Secure Boot as defined (true/false), null when not stated.
      type: bool
      returned: always
      version_added: 1.1.0
    enrolled_keys:
      description: Enrolled-keys firmware feature (true/false), null when not stated.
      type: bool
      returned: always
      version_added: 1.1.0
    loader:
      description: UEFI loader path (the running guest's, or an explicit one).
      type: str
      returned: always
      version_added: 1.1.0
    nvram:
      description: NVRAM file of a UEFI guest (once libvirt made it).
      type: str
      returned: always
      version_added: 1.1.0
    nvram_template:
      description: NVRAM template.
      type: str
      returned: always
      version_added: 1.1.0
    tpm:
      description: The TPM (model, backend, version, persistent_state, device), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    filesystems:
      description: Shared directories (driver, source, target, readonly, accessmode).
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    memory_backing:
      description: Memory backing (hugepages, pages with size_kib and nodeset, source, access, locked, nosharepages),
        null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    rng:
      description: The RNG device (model, backend, source), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    watchdog:
      description: The watchdog (model, action), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    boot:
      description: Boot order (order, a list of devices), menu and menu_timeout.
      type: dict
      returned: always
      version_added: 1.1.0
    iothreads:
      description: Number of I/O threads (0 without).
      type: int
      returned: always
      version_added: 1.1.0
    cputune:
      description: CPU tuning (shares, period, quota, vcpupin with vcpu and cpuset, emulatorpin, iothreadpin with iothread
        and cpuset), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    numatune:
      description: Memory NUMA policy (mode, nodeset), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    cpu:
      description: The CPU model, features (name, policy) and cache (mode, level).
      type: dict
      returned: always
      version_added: 1.1.0
    serials:
      description:
        - Serial ports (port, target_type, type, path, host, tcp_port, mode, protocol, log_file); the fields another
          type does not have are null, and so is a pty's path.
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    consoles:
      description: Consoles, with the fields of serials; target_type V(serial) is the first serial port's.
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    inputs:
      description: Input devices (type, bus).
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    channels:
      description: Channels (name, type, state - connected when the guest side is open).
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    video:
      description: The first video device (model, vram, heads), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    sound:
      description: The first sound device (model), null without one.
      type: dict
      returned: always
      version_added: 1.1.0
    hostdevs:
      description:
        - "Host devices passed through (type; address for pci; vendor, product, bus, device for usb; uuid, model for mdev;
          managed; boot_order), null where a type has no such field. Ids are normalized: V(0000:03:00.0), V(0x046d)."
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
    vcpu_info:
      description: 'C(virsh vcpuinfo) for a running guest (number, state, cpu_time_ns, cpu).'
      type: list
      elements: dict
      returned: always
    balloon:
      description: 'C(virsh domstats --balloon) for a running guest, KiB.'
      type: dict
      returned: always
    addresses:
      description:
        - The IP addresses of a running guest, from the sources of O(address_sources) in that order (empty
          for a guest that does not run, or before it has an address). An address may appear once per source.
        - C(address) (an IP address in its compressed form), C(prefix) (a number or null), C(family) (V(ipv4)
          or V(ipv6)), C(mac) (the MAC it was seen on, or null), C(interface) (the interface name the source
          reports - the host's tap device for V(lease), the guest's own name for V(agent)) and C(source)
          (V(lease), V(agent) or V(arp)).
        - Untrusted - the guest agent and ARP answers are whatever the guest claims. A value that is not an
          IP address is dropped, interface names are cut to 64 characters with control characters replaced
          by C(?), and a source gives at most 256 entries.
        - Loopback and IPv6 link-local addresses the guest agent reports are listed too.
      type: list
      elements: dict
      returned: always
      version_added: 1.1.0
      sample: [{address: 192.168.122.50, prefix: 24, family: ipv4, mac: "52:54:00:a3:19:8b", interface: vnet0, source: lease}]
    address_errors:
      description:
        - Per source that could not answer, libvirt's message (for example V(agent) - the guest has no guest
          agent channel, or its agent is not running). A source that answered with nothing is not listed.
      type: dict
      returned: always
      version_added: 1.1.0
      sample: {agent: QEMU guest agent is not configured}
networks:
  description: The virtual networks, sorted by name.
  returned: when V(networks) is gathered
  type: list
  elements: dict
  contains:
    name:
      description: Network name.
      type: str
      returned: always
    uuid:
      description: Network UUID.
      type: str
      returned: always
    active:
      description: Started.
      type: bool
      returned: always
    autostart:
      description: Started with the host.
      type: bool
      returned: always
    persistent:
      description: Defined.
      type: bool
      returned: always
    bridge:
      description: Host bridge name.
      type: str
      returned: always
    forward_mode:
      description: nat, route, open, bridge, isolated, ...
      type: str
      returned: always
    forward_dev:
      description: Forward device.
      type: str
      returned: always
    domain:
      description: DNS domain.
      type: str
      returned: always
    mtu:
      description: MTU.
      type: int
      returned: always
    mac:
      description: Bridge MAC.
      type: str
      returned: always
    addresses:
      description: IP addresses with DHCP ranges and hosts.
      type: list
      elements: dict
      returned: always
pools:
  description: The storage pools, sorted by name.
  returned: when V(pools) is gathered
  type: list
  elements: dict
  contains:
    name:
      description: Pool name.
      type: str
      returned: always
    uuid:
      description: Pool UUID.
      type: str
      returned: always
    type:
      description: dir, fs, netfs, logical, iscsi, ...
      type: str
      returned: always
    state:
      description: inactive, building, running, degraded, inaccessible.
      type: str
      returned: always
    active:
      description: Started.
      type: bool
      returned: always
    autostart:
      description: Started with the host.
      type: bool
      returned: always
    persistent:
      description: Defined.
      type: bool
      returned: always
    capacity:
      description: Bytes.
      type: int
      returned: always
    allocation:
      description: Bytes.
      type: int
      returned: always
    available:
      description: Bytes.
      type: int
      returned: always
    target_path:
      description: Target path.
      type: str
      returned: always
    source:
      description: Source host, dir, device, name and format.
      type: dict
      returned: always
    volumes:
      description: Volumes of an active pool (name, path, key, type, format, capacity, allocation, backing).
      type: list
      elements: dict
      returned: always
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._info import ARGUMENT_SPEC, main as run_info, needs_libvirt


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, need_libvirt=needs_libvirt)
    run_info(module)


if __name__ == '__main__':
    main()
