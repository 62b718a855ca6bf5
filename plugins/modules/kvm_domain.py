#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_domain
short_description: Declarative KVM guests - definition, lifecycle, live vCPU/memory, disks, NICs and cloud-init
version_added: 0.1.0
description:
  - One task describes a guest; the module makes it so, on a stopped or a running guest, and reports exactly what
    it changed. It replaces C(virt-install) and the C(virsh) lifecycle and hot-plug commands.
  - Only what the task specifies is compared with libvirt's inactive XML (the persistent definition) and, for a
    running guest, with the live XML. libvirt's defaults, attribute order and generated addresses are never a change.
  - The definition is written with C(defineXML) over the existing guest, keeping its UUID and MAC addresses. The
    module never undefines and redefines a guest (that would lose UEFI NVRAM and TPM state).
  - On a running guest, what can change live is also applied live and read back - vCPUs up to O(max_vcpus), balloon
    memory up to O(max_memory), disk and NIC attach/detach, cdrom media, link state and autostart. What only
    applies at the next boot is listed in RV(pending_restart); O(restart=if_needed) restarts the guest for it.
  - Options that are not given are not managed (on an existing guest they are left as they are).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Nothing is written - no libvirt call that changes anything, no disk image, no ISO file.
  diff_mode:
    support: full
    description:
      - The persistent definition before and after (graphics passwords and other secrets masked as C(********)),
        preceded by the live changes of a running guest.
options:
  name:
    description:
      - "Guest name: letters, digits and C(_ . + : @ -), starting with a letter, digit or C(_); at most 200 characters."
      - The alias O(guest) (community.libvirt's spelling) was added in version 1.0.0.
    type: str
    required: true
    aliases: [guest]
  uuid:
    description:
      - UUID for a new guest (with or without dashes). On an existing guest it must match (a UUID cannot change).
    type: str
  state:
    description:
      - V(present) - defined; a running guest stays running, a stopped one stays stopped.
      - V(running) - defined and running (started, or resumed when paused).
      - V(shutdown) - graceful shutdown (libvirt asks the QEMU guest agent when one is connected, else presses the
        ACPI power button), repeated every 10 seconds while waiting up to O(shutdown_timeout) seconds; then
        O(force=true) powers it off, otherwise the task fails with a clear message. A Linux guest handles the
        power button through systemd-logind (which needs D-Bus) or acpid.
      - V(destroyed) - hard power-off (C(virsh destroy)).
      - V(paused) - running and suspended.
      - V(absent) - powered off and undefined, with its UEFI NVRAM, emulated TPM state, managed save image and
        snapshot and checkpoint metadata. Disk images are kept unless O(remove_storage=true). Absent on a missing guest is not a change.
    type: str
    choices: [present, running, shutdown, destroyed, paused, absent]
    default: present
  autostart:
    description: Start the guest when the host boots.
    type: bool
  force:
    description: With O(state=shutdown) or a restart, power the guest off when it does not stop in time.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown.
    type: int
    default: 120
  restart:
    description:
      - V(if_needed) - when a running guest has changes that only apply at boot (RV(pending_restart)), shut it
        down gracefully (O(shutdown_timeout), O(force)) and start it again.
      - V(never) - only report them in RV(pending_restart).
    type: str
    choices: [never, if_needed]
    default: never
  remove_storage:
    description:
      - With O(state=absent), also delete the guest's disk images (file disks and pool volumes of device V(disk))
        and its cloud-init seed ISO. Other cdrom images are never deleted.
      - On a remote URI they are deleted as volumes through libvirt; a file in no storage pool of the hypervisor is
        left in place with a warning.
    type: bool
    default: false
  memory:
    description:
      - Current memory (C(<currentMemory>), the balloon target). A number with libvirt's units - V(512MiB), V(1G),
        V(1GiB), V(1000MB), V(524288KiB); a bare number is MiB. Required to create a guest. At most 64 TiB.
      - On a running guest it is applied live through the virtio balloon, up to the guest's maximum.
      - Defaults to and must not exceed O(max_memory).
    type: str
  max_memory:
    description:
      - Maximum memory (C(<memory>), C(virsh setmaxmem)). Same units as O(memory). Applies at the next boot.
      - Defaults to O(memory) for a new guest, and is raised to O(memory) when that is larger.
    type: str
  vcpus:
    description:
      - Current (online) vCPUs. On a running guest, raised live (hot-plug) up to the running maximum; lowering
        vCPUs waits for a restart (hot-unplug is not used).
      - O(vcpus), O(max_vcpus), O(sockets), O(cores) and O(threads) are each between 1 and 4096.
    type: int
  max_vcpus:
    description:
      - Maximum vCPUs. Applies at the next boot. Defaults to O(vcpus) for a new guest, and is raised to O(vcpus)
        when that is larger.
    type: int
  sockets:
    description: CPU topology sockets. O(sockets) x O(cores) x O(threads) must equal O(max_vcpus).
    type: int
  cores:
    description: CPU topology cores per socket (default 1 when a topology is given).
    type: int
  threads:
    description: CPU topology threads per core (default 1 when a topology is given).
    type: int
  cpu_mode:
    description: CPU mode (C(<cpu mode=...>)).
    type: str
    choices: [host-passthrough, host-model, maximum]
  cpu_model:
    description:
      - A named CPU model (C(<cpu mode='custom'><model>), for example V(Haswell-noTSX) or V(EPYC)); the guest's CPU mode
        becomes C(custom), so not with O(cpu_mode). C(virsh domcapabilities) lists the models this host offers.
      - On a running guest it changes at the next boot.
    type: str
    version_added: 1.1.0
  cpu_features:
    description:
      - CPU features (C(<cpu><feature>)). Only the features given are compared and written; others stay as they are.
      - On a running guest the change applies at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      name:
        description: Feature name, for example V(vmx), V(pcid), V(invtsc).
        type: str
        required: true
      policy:
        description: V(require), V(disable), V(force), V(optional) or V(forbid) (the last three for custom models).
        type: str
        choices: [require, disable, force, optional, forbid]
        default: require
  cpu_cache:
    description:
      - The CPU cache the guest sees (C(<cpu><cache>)). V(passthrough) needs O(cpu_mode=host-passthrough). Next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      mode:
        description: V(passthrough) (the host's), V(emulate) or V(disable).
        type: str
        choices: [passthrough, emulate, disable]
        required: true
      level:
        description: Cache level (1-3) of mode V(emulate).
        type: int
  machine:
    description:
      - Machine type, for example V(pc), V(q35) or V(pc-q35-7.2). An alias such as V(q35) matches the
        versioned type libvirt expands it to. Letters, digits and C(_ . + -).
    type: str
  firmware:
    description: V(bios) (SeaBIOS) or V(efi) (OVMF, chosen by libvirt's firmware auto-selection).
    type: str
    choices: [bios, efi]
  secure_boot:
    description:
      - UEFI Secure Boot. Without O(loader), through libvirt's firmware auto-selection (C(<os firmware='efi'>) with
        a C(secure-boot) firmware feature) - libvirt picks a Secure Boot OVMF build from the host's firmware
        descriptors and enables SMM. With O(loader), the loader's C(secure) flag (and SMM).
      - Needs a q35 machine (O(machine=q35)) and, on a KVM host, SMM support in KVM (under nested KVM without SMM use
        O(virt_type=qemu)). Implies UEFI; refused with O(firmware=bios).
      - The NVRAM (the guest's UEFI variables) is kept when the guest is redefined and removed with O(state=absent).
        Changing O(secure_boot) or O(enrolled_keys) does not rewrite an existing NVRAM file.
      - On a running guest the change applies at the next boot.
    type: bool
    version_added: 1.1.0
  enrolled_keys:
    description:
      - With libvirt's firmware auto-selection, whether the NVRAM template has the Microsoft and distribution Secure
        Boot keys enrolled (the C(enrolled-keys) firmware feature; Windows 11 needs V(true)).
      - Not with O(loader) (choose the keys with O(nvram_template) there). V(true) needs O(secure_boot) not V(false).
    type: bool
    version_added: 1.1.0
  loader:
    description:
      - Explicit UEFI loader (for hosts without firmware descriptors), for example
        V(/usr/share/OVMF/OVMF_CODE_4M.secboot.fd). Written as a read-only pflash C(<loader>) instead of
        auto-selection. An empty string goes back to libvirt's auto-selection.
      - Must exist on the host (local URI).
    type: path
    version_added: 1.1.0
  nvram_template:
    description:
      - With O(loader), the variables template the guest's NVRAM is created from, for example
        V(/usr/share/OVMF/OVMF_VARS_4M.ms.fd) (keys enrolled). libvirt creates the NVRAM at the first start; an
        existing NVRAM is kept. An empty string removes the template.
    type: path
    version_added: 1.1.0
  tpm:
    description:
      - A TPM device. On a running guest the change applies at the next boot.
      - The emulator backend runs C(swtpm) for the guest (the host needs the C(swtpm) and C(swtpm-tools) packages,
        checked before any write on a local URI). Its state (C(/var/lib/libvirt/swtpm/<uuid>)) is kept when the
        guest is redefined and removed with O(state=absent).
      - Only the fields given are compared with the guest's first TPM.
    type: dict
    version_added: 1.1.0
    suboptions:
      state:
        description: V(present) or V(absent) (removes the TPM device).
        type: str
        choices: [present, absent]
        default: present
      model:
        description: TPM interface. A new TPM gets V(tpm-crb) (what Windows 11 expects with TPM 2.0).
        type: str
        choices: [tpm-crb, tpm-tis]
      backend:
        description: V(emulator) (swtpm, the default) or V(passthrough) (a host TPM, see O(tpm.device)).
        type: str
        choices: [emulator, passthrough]
      version:
        description: TPM version of the emulator. A new emulated TPM gets V(2.0).
        type: str
        choices: ['2.0', '1.2']
      persistent_state:
        description: Emulator only - keep the TPM state even when a transient guest goes away (libvirt's C(persistent_state)).
        type: bool
      device:
        description: Host TPM device of the passthrough backend (for example V(/dev/tpm0)); implies O(tpm.backend=passthrough).
        type: path
  filesystems:
    description:
      - Host directories shared with the guest, as a complete list matched by O(filesystems[].target) (a filesystem
        the list does not name is removed). When not given, filesystems are not managed.
      - V(virtiofs) needs the guest's memory shared with C(virtiofsd); when the guest has no shared memory backing,
        C(<memoryBacking>) gets C(memfd) and C(shared) access for you (reported as a change of O(filesystems)).
        libvirt starts C(virtiofsd) (found through QEMU's vhost-user descriptors) with the guest.
      - In the guest - C(mount -t virtiofs <target> /mnt), or C(mount -t 9p -o trans=virtio <target> /mnt).
      - On a running guest a new virtiofs filesystem is hot-plugged when the guest's memory is shared already; other
        changes (9p, a changed or removed filesystem, the memory backing) apply at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      source:
        description: Host directory (absolute path; on a local URI it must exist and be reached through no symbolic link - give its real path).
        type: path
        required: true
      target:
        description: "Mount tag the guest sees (at most 36 letters, digits and C(_ . : -))."
        type: str
        required: true
      driver:
        description: V(virtiofs) or V(9p) (virtio-9p).
        type: str
        choices: [virtiofs, 9p]
        default: virtiofs
      readonly:
        description:
          - Read-only export (a new filesystem is read-write). libvirt 9.0 refuses it for V(virtiofs) (libvirt's
            message is returned).
        type: bool
      accessmode:
        description:
          - How guest file ownership maps to the host (9p); a new filesystem gets V(passthrough). V(virtiofs)
            supports V(passthrough) only.
        type: str
        choices: [passthrough, mapped, squash]
  memory_backing:
    description:
      - How guest RAM is backed (C(<memoryBacking>)). Only the fields given are compared and written. On a running
        guest the change applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      hugepages:
        description:
          - Back the guest with huge pages (reserve them on the host first, for example with C(vm.nr_hugepages)).
          - libvirt needs hugetlbfs mounted when libvirtd starts, unless O(memory_backing.source=memfd).
        type: bool
      pages:
        description: Huge page sizes, per guest NUMA node set (implies O(memory_backing.hugepages)); a complete list.
        type: list
        elements: dict
        suboptions:
          size:
            description: Page size with units (V(2MiB), V(1GiB)); a bare number is KiB. The host must offer it.
            type: str
            required: true
          nodeset:
            description: Guest NUMA nodes these pages back (V(0), V(0-1)); only for a guest with NUMA nodes (C(<cpu><numa>)).
              Without it, the pages back all of the guest's memory.
            type: str
      source:
        description: Memory source.
        type: str
        choices: [anonymous, file, memfd]
      access:
        description: V(shared) (needed by virtiofs and vhost-user) or V(private).
        type: str
        choices: [shared, private]
      locked:
        description: Lock guest memory in host RAM (never swapped).
        type: bool
      nosharepages:
        description: Keep KSM from merging the guest's pages.
        type: bool
  rng:
    description:
      - A virtio random number generator. A new one reads the host's V(/dev/urandom).
      - On a running guest a new RNG is hot-plugged; a change or a removal applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
      model:
        description: Device model (V(virtio) for a new one).
        type: str
        choices: [virtio, virtio-transitional, virtio-non-transitional]
      backend:
        description: V(random) (a host file) or V(builtin) (QEMU's own).
        type: str
        choices: [random, builtin]
      source:
        description: Host entropy file of the random backend (V(/dev/urandom) for a new one).
        type: path
  watchdog:
    description:
      - A watchdog device and what happens when the guest stops feeding it.
      - On a running guest a new watchdog is hot-plugged; a change (libvirt cannot update a watchdog live) or a
        removal applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
      model:
        description: Device model (V(i6300esb) for a new one; V(diag288) is for s390x).
        type: str
        choices: [i6300esb, ib700, diag288]
      action:
        description: Action when it fires (V(reset) for a new one).
        type: str
        choices: [reset, shutdown, poweroff, pause, none, dump, inject-nmi]
  boot:
    description:
      - Boot order and menu (C(<os><boot dev=...>), C(<bootmenu>)). Not with per-device O(disks[].boot_order) or a
        direct kernel boot. On a running guest the change applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      order:
        description: Devices to boot from, in order (at least one, each once).
        type: list
        elements: str
        choices: [hd, cdrom, network, fd]
      menu:
        description: Show the boot menu.
        type: bool
      menu_timeout:
        description: Boot menu timeout in milliseconds (0-65535).
        type: int
  iothreads:
    description:
      - Number of I/O threads (C(<iothreads>)) disks can be given to; V(0) removes them.
      - On a running guest more I/O threads are added live (C(virsh iothreadadd)); fewer apply at the next boot.
    type: int
    version_added: 1.1.0
  cputune:
    description:
      - CPU tuning (C(<cputune>)). Only the fields given are compared; cpusets compare by the CPUs they name (V(0-2)
        is V(0,1,2)).
      - On a running guest everything here is also applied live and read back - C(virsh vcpupin), C(virsh
        emulatorpin), C(virsh iothreadpin), C(virsh schedinfo) (C(pinVcpuFlags), C(pinEmulator), C(pinIOThread),
        C(setSchedulerParametersFlags)).
    type: dict
    version_added: 1.1.0
    suboptions:
      shares:
        description: Relative CPU weight (2-262144).
        type: int
      period:
        description: Scheduler period of each vCPU in microseconds (1000-1000000).
        type: int
      quota:
        description: Scheduler quota of each vCPU in microseconds per period (V(-1) is unlimited).
        type: int
      vcpupin:
        description: vCPU to host CPU pinning, a complete list (a vCPU not listed is unpinned).
        type: list
        elements: dict
        suboptions:
          vcpu:
            description: vCPU number (below O(max_vcpus)).
            type: int
            required: true
          cpuset:
            description: Host CPUs, for example V(0-3,^2) or V(1,5).
            type: str
            required: true
      emulatorpin:
        description: Host CPUs for QEMU's emulator threads (a cpuset); an empty string removes the pin.
        type: str
      iothreadpin:
        description: I/O thread to host CPU pinning (C(virsh iothreadpin)), a complete list (a thread not listed is unpinned).
        type: list
        elements: dict
        suboptions:
          iothread:
            description: I/O thread id (1 up to O(iothreads)).
            type: int
            required: true
          cpuset:
            description: Host CPUs, for example V(0-3,^2).
            type: str
            required: true
  inputs:
    description:
      - Input devices that must be there (or, with O(inputs[].state=absent), must not), matched by type and bus;
        input devices the list does not name stay as they are (x86 guests always have a ps2 mouse and keyboard).
      - On a running guest a new usb or virtio device is hot-plugged (a usb tablet gives VNC an absolute pointer);
        a removal applies at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      type:
        description: Device type.
        type: str
        choices: [tablet, mouse, keyboard]
        required: true
      bus:
        description: Bus (V(usb) for a tablet, V(ps2) for a mouse or keyboard when not given).
        type: str
        choices: [usb, virtio, ps2]
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
  serials:
    description:
      - Emulated serial ports (C(<serial>); ttyS0 is port 0), matched by O(serials[].port); ports the list does not
        name stay as they are. The serial console (C(virsh console), the one libvirt shows as C(<console target
        type='serial'>)) is always the first serial port - libvirt's rule.
      - O(serials[].type) is the host side - V(pty) (what C(virsh console) opens), V(file) (output written to
        O(serials[].path); QEMU truncates it when the guest starts), V(unix) (a socket at O(serials[].path)),
        V(tcp) (a socket that listens on 127.0.0.1 unless O(serials[].host) names another address; naming
        V(0.0.0.0) exposes the guest's serial port to the network, without authentication) or V(null).
      - Fields not given are not compared and stay as they are (within the same type), except O(serials[].type)
        (V(pty) when not given), and for V(tcp) the O(serials[].mode) V(bind) and O(serials[].host) V(127.0.0.1).
      - Paths are absolute, without C(..), control characters or newlines, never under C(/etc), C(/usr), C(/boot),
        C(/bin), C(/sbin), C(/lib*), C(/proc), C(/sys) or C(/dev); on a local URI their directory must exist and be
        no symbolic link, a symbolic link at the path is refused, and so is a file where a socket goes (QEMU would
        replace it) or anything but a regular file where a file goes.
      - Precedence with O(serial_console) - O(serials) is applied first. O(serial_console=false) together with a
        present port is refused, and so is O(serial_console=true) when O(serials) leaves the guest no port. A new
        guest gets O(serial_console)'s pty port only when O(serials) is not given.
      - On a running guest a new V(usb-serial) port is hot-plugged; QEMU hot-plugs no ISA or PCI serial port and
        libvirt changes no character device live, so everything else applies at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      port:
        description: Guest port number (0-31; ttyS0 is 0). Default - the lowest port no other entry gives.
        type: int
      state:
        description: V(present), or V(absent) to remove the port (no other field then).
        type: str
        choices: [present, absent]
        default: present
      target_type:
        description: The device the guest sees (libvirt picks V(isa-serial) on x86 when not given).
        type: str
        choices: [isa-serial, usb-serial, pci-serial]
      type:
        description: Host side (V(pty) when not given).
        type: str
        choices: [pty, file, unix, tcp, 'null']
      path:
        description: The file (V(file)) or socket (V(unix), at most 107 characters). Required with those types.
        type: path
      host:
        description:
          - V(tcp) only - the address to listen on (an IP address, V(127.0.0.1) when not given) or, with
            O(serials[].mode=connect), the host to connect to (an IP address or a DNS name).
        type: str
      tcp_port:
        description: V(tcp) only, required - the TCP port (1-65535).
        type: int
      mode:
        description: V(tcp) and V(unix) - V(bind) (listen; the default) or V(connect).
        type: str
        choices: [bind, connect]
      protocol:
        description: V(tcp) only - V(raw) (for a new port) or V(telnet).
        type: str
        choices: [raw, telnet]
      log_file:
        description: A file that also gets everything the port outputs (C(<log>)); V('') removes it. Same path rules.
        type: path
  consoles:
    description:
      - The guest's virtio consoles (C(<console target type='virtio'>), hvc0, hvc1, ... inside the guest), a
        complete list in order - libvirt numbers them by position, so the list's first entry is hvc0; virtio
        consoles beyond the list are removed. O(consoles=[]) removes every virtio console.
      - An entry with O(consoles[].target_type=serial) (only as the first entry, without host-side fields) asks
        for the serial console - the first serial port's, which libvirt shows as a console; a guest without a serial
        port gets a pty port 0 (as with O(serial_console=true)). Its host side is set in O(serials). Leaving it out
        changes nothing about the serial console.
      - The host-side fields are those of O(serials) with the same rules and defaults.
      - On a running guest with a virtio-serial controller new virtio consoles are hot-plugged; a change, a
        removal, and a serial console the guest lacks apply at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      target_type:
        description: V(virtio), or V(serial) for the serial console entry.
        type: str
        choices: [virtio, serial]
        default: virtio
      type:
        description: Host side (V(pty) when not given).
        type: str
        choices: [pty, file, unix, tcp, 'null']
      path:
        description: As O(serials[].path).
        type: path
      host:
        description: As O(serials[].host).
        type: str
      tcp_port:
        description: As O(serials[].tcp_port).
        type: int
      mode:
        description: As O(serials[].mode).
        type: str
        choices: [bind, connect]
      protocol:
        description: As O(serials[].protocol).
        type: str
        choices: [raw, telnet]
      log_file:
        description: As O(serials[].log_file).
        type: path
  channels:
    description:
      - virtio-serial channels that must be there (or, with O(channels[].state=absent), must not), by target name;
        channels the list does not name stay as they are. O(guest_agent) manages the QEMU guest agent's channel.
      - For example V(com.redhat.spice.0) (type V(spicevmc)) - the SPICE agent's clipboard and display resize.
      - On a running guest a new channel is hot-plugged; a removal or another type applies at the next boot.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      name:
        description: Target name the guest sees (letters, digits and C(_ . -)).
        type: str
        required: true
      type:
        description: Host side - V(unix) socket (libvirt picks its path), V(pty), or V(spicevmc) for V(com.redhat.spice.0).
        type: str
        choices: [unix, spicevmc, pty]
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
  numatune:
    description:
      - The host NUMA nodes guest memory comes from (C(<numatune><memory>)). A new policy needs O(numatune.nodeset).
      - On a running guest in mode V(strict) or V(restrictive) a new nodeset applies live (C(virsh numatune --live),
        C(setNumaParameters)); a mode change applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      mode:
        description: Memory policy (V(strict) for a new one).
        type: str
        choices: [strict, preferred, interleave, restrictive]
      nodeset:
        description: Host NUMA nodes, for example V(0) or V(0-1); compared by the nodes it names.
        type: str
  video:
    description:
      - The first video device's model (C(<video><model>)). Only the fields given are compared. On a running guest the
        change applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      model:
        description: Model; V(none) leaves the guest without a display adapter.
        type: str
        choices: [virtio, qxl, vga, cirrus, bochs, ramfb, none]
      vram:
        description: Video memory in KiB (1024-1048576).
        type: int
      heads:
        description: Number of screens (1-16).
        type: int
  sound:
    description:
      - A sound device. On a running guest the change applies at the next boot.
    type: dict
    version_added: 1.1.0
    suboptions:
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
      model:
        description: Model (V(ich9) for a new one).
        type: str
        choices: [ich9, ich6, ac97, es1370, sb16, usb]
  hostdevs:
    description:
      - Host devices passed through to the guest (C(<hostdev mode='subsystem'>)) that must be there (or, with
        O(hostdevs[].state=absent), must not) - a PCI device by its address, a USB device by its vendor and product
        ids or its bus and device number, a mediated device (vGPU, vfio-ccw, vfio-ap) by its UUID. A device is
        matched by that identity in any spelling libvirt writes (V(0x03) and V(3) are the same bus); host devices the
        list does not name stay as they are. Only the fields given are compared.
      - Before any write (and in check mode) each device to add is looked up among libvirt's node devices
        (C(virsh nodedev-list)); a device the host does not have, a USB vendor and product that several devices
        share, or a device another running guest holds is refused. A device the definition has already is not
        checked again (an unplugged USB device does not fail a run that changes nothing).
      - A PCI or mediated device for a running guest is refused when libvirt's domain capabilities list no VFIO
        backend (no IOMMU) - the hot-plug could not work.
      - On a running guest a new device is hot-plugged and a removed one hot-unplugged (a PCI device leaves when
        the guest OS releases it, at the next boot at the latest); another O(hostdevs[].managed),
        O(hostdevs[].boot_order) or O(hostdevs[].model) applies at the next boot.
      - Real assignment needs an IOMMU (VT-d or AMD-Vi) enabled and, for a managed PCI device, the vfio-pci driver.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      type:
        description: V(pci), V(usb) or V(mdev) (a mediated device).
        type: str
        choices: [pci, usb, mdev]
        required: true
      address:
        description:
          - PCI address C(domain:bus:slot.function) in hexadecimal, as C(lspci -D) shows it, for example
            V(0000:03:00.0); without the domain (V(03:00.0)) domain 0. Type V(pci) only, and required for it.
        type: str
      vendor:
        description:
          - USB vendor id, 1 to 4 hexadecimal digits as C(lsusb) shows it (V(046d) or V(0x046d)). With O(hostdevs[].product).
          - Quote it in YAML - an unquoted V(0010) is read by YAML as the octal number 8.
        type: str
      product:
        description: USB product id, 1 to 4 hexadecimal digits (V(c52b) or V(0xc52b)). With O(hostdevs[].vendor).
        type: str
      bus:
        description:
          - USB bus number (1-255, decimal, as C(lsusb) shows it). With O(hostdevs[].device); beside vendor and product
            it names one of several devices that share them.
        type: int
      device:
        description: USB device number on that bus (1-127, decimal). With O(hostdevs[].bus).
        type: int
      uuid:
        description: UUID of the mediated device (C(mdevctl list)). Type V(mdev) only, and required for it.
        type: str
      model:
        description: Device API of the mediated device (V(vfio-pci) for a new one). Type V(mdev) only.
        type: str
        choices: [vfio-pci, vfio-ccw, vfio-ap]
      managed:
        description:
          - libvirt detaches the device from its host driver when the guest starts and gives it back when it stops
            (V(true) for a new PCI or USB device when not given). With V(false) the device must be bound to vfio-pci
            beforehand (C(virsh nodedev-detach)). Types V(pci) and V(usb) only.
        type: bool
      boot_order:
        description: Boot from the device, in this position among the devices with a boot order (1-65535).
        type: int
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
  virt_type:
    description:
      - Domain type. V(auto) chooses V(kvm) where KVM can really run a full guest OS on this host (see
        C(kvm_info)'s C(preferred_domain_type)), else V(qemu) (TCG emulation).
      - When not given, a new guest gets V(auto) and an existing guest keeps its type.
    type: str
    choices: [auto, kvm, qemu]
  os_variant:
    description:
      - libosinfo id stored in the guest metadata (for example V(http://debian.org/debian/12), or a short id such as
        V(debian12)). Informational. An empty string removes it.
    type: str
  kernel:
    description:
      - Host path of a kernel for direct kernel boot (C(<os><kernel>)). An empty string removes it.
      - Paths (here, O(initrd), O(disks[].path), O(disks[].backing), O(cloud_init.directory)) must be absolute,
        without C(..) components and without control characters.
    type: path
  initrd:
    description: Host path of an initrd for direct kernel boot. An empty string removes it.
    type: path
  cmdline:
    description: Kernel command line for direct kernel boot, one line without control characters. An empty string removes it.
    type: str
  disks:
    description:
      - The guest's disks and cdroms, as a complete list - a disk in the definition that is not listed is
        detached (its image is kept). When not given, disks are not managed.
      - Disks are matched by O(disks[].target). A missing image is created with O(disks[].size) and
        O(disks[].format), or as a thin qcow2 overlay of O(disks[].backing). Existing images are never resized
        or overwritten.
      - A created image file is made under a random temporary name beside it, with mode 0600 (libvirt's dynamic
        ownership lets QEMU open it), and then put in place; a symbolic link where the image is to be created is
        refused, never followed. A created pool volume gets mode 0600.
      - On a running guest, virtio, scsi and usb disks are attached and detached live; a cdrom's medium is
        changed live. Other changes wait for a restart.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - Image file (absolute path) or cdrom ISO. For a cdrom, omit it for an empty drive.
          - On a remote URI the path must be in the directory of a storage pool of the hypervisor; the image is found,
            and created (O(disks[].size), O(disks[].backing)), as a volume of that pool through libvirt. A path in no
            pool is refused (nothing on the host that runs the module is the hypervisor's file) - give
            O(disks[].pool) and O(disks[].volume) instead.
        type: path
      pool:
        description: Storage pool of the volume (instead of O(disks[].path)). A libvirt object name.
        type: str
      volume:
        description: Volume name in O(disks[].pool). A libvirt object name (no C(/)).
        type: str
      size:
        description:
          - Size of an image to create, with units (V(8G), V(8GiB), V(500MiB)); a bare number is GiB. At most 64 PiB.
          - With O(disks[].backing) it defaults to the backing image's size and must not be smaller.
        type: str
      format:
        description:
          - Image format. Created images default to V(qcow2) (sparse). An existing file's format is read from
            its header when not given.
        type: str
        choices: [raw, qcow2]
      allocation:
        description: For a created image, V(sparse) or V(full) (preallocated; a qcow2 file with C(preallocation=falloc)).
        type: str
        choices: [sparse, full]
        default: sparse
      backing:
        description:
          - Create the image as a thin qcow2 overlay of this backing image (a raw or qcow2 image, a file or a volume
            libvirt knows). Images are created by the same storage layer as M(kvmops.kvm.kvm_volume)'s.
          - With O(disks[].pool) it may be the name of a volume in that pool.
          - On a remote URI it must be the path (or, with O(disks[].pool), the name) of a volume libvirt knows on the hypervisor.
        type: path
      clone_from:
        description:
          - Create the volume as a full copy of this volume, made by libvirt (C(virsh vol-clone)); the copy keeps the
            source's format and is grown to O(disks[].size) when that is given (never smaller than the source).
          - The path of a volume libvirt knows, or with O(disks[].pool) the name of a volume in that pool.
          - For a volume disk (O(disks[].pool) and O(disks[].volume)) or, on a remote URI, a O(disks[].path) in a pool's
            directory; a disk path on a local URI is refused (it is created with qemu-img). Mutually exclusive with
            O(disks[].backing). An existing image is never replaced.
        type: str
        version_added: 1.1.0
      target:
        description:
          - Guest device name (V(vda), V(sdb), V(hdc)). Default - the first free name for the bus.
        type: str
      bus:
        description: Bus. Default - from the target prefix (V(vd) virtio, V(sd) sata, V(hd) ide), else virtio (sata for a cdrom).
        type: str
        choices: [virtio, sata, scsi, ide, usb]
      cache:
        description: Host cache mode.
        type: str
        choices: [none, writeback, writethrough, directsync, unsafe, default]
      io:
        description: I/O mode.
        type: str
        choices: [native, threads, io_uring]
      discard:
        description: Discard (TRIM) handling.
        type: str
        choices: [unmap, ignore]
      readonly:
        description: Read-only disk (cdroms always are).
        type: bool
      device:
        description: V(disk) or V(cdrom).
        type: str
        choices: [disk, cdrom]
        default: disk
      boot_order:
        description: Per-device boot order (replaces C(<os><boot dev=...>)).
        type: int
      serial:
        description:
          - Serial number the guest sees (1 to 20 letters, digits and C(_ . + -)), for example to find the disk under
            C(/dev/disk/by-id). An empty string removes it. On a running guest it changes at the next boot.
        type: str
        version_added: 1.1.0
      wwn:
        description:
          - World Wide Name of a scsi, sata or ide disk (16 hexadecimal digits). An empty string removes it. On a
            running guest it changes at the next boot.
        type: str
        version_added: 1.1.0
      shareable:
        description:
          - The image may be shared with other guests at the same time (C(<shareable/>); use O(disks[].cache=none) and a
            cluster-aware file system in the guests). On a running guest it changes at the next boot.
        type: bool
        version_added: 1.1.0
      iotune:
        description:
          - I/O throttling (C(virsh blkdeviotune)). Only the limits given are compared and written; V(0) lifts a limit.
            A total limit cannot be combined with the read or write limit of the same kind.
          - On a running guest a change of the limits alone is applied live (C(setBlockIoTune)) and read back.
        type: dict
        version_added: 1.1.0
        suboptions:
          total_bytes_sec:
            description: Total throughput in bytes per second.
            type: int
          read_bytes_sec:
            description: Read throughput in bytes per second.
            type: int
          write_bytes_sec:
            description: Write throughput in bytes per second.
            type: int
          total_iops_sec:
            description: Total I/O operations per second.
            type: int
          read_iops_sec:
            description: Read I/O operations per second.
            type: int
          write_iops_sec:
            description: Write I/O operations per second.
            type: int
  interfaces:
    description:
      - The guest's NICs, as a complete list - a NIC that is not listed is detached. When not given, NICs are not
        managed.
      - A NIC is matched by O(interfaces[].mac) when given, else by type and source; a matched NIC keeps its MAC.
        A new NIC without O(interfaces[].mac) gets one generated by libvirt once, and keeps it.
      - On a running guest, NICs are attached and detached live and the link state, O(interfaces[].bandwidth) and
        O(interfaces[].filterref) are changed live; other changes wait for a restart.
    type: list
    elements: dict
    suboptions:
      type:
        description: V(network) (libvirt network), V(bridge) (host bridge) or V(direct) (macvtap on a host NIC).
        type: str
        choices: [network, bridge, direct]
        default: network
      source:
        description:
          - Network, bridge or host interface name. Must exist.
          - A network is a libvirt object name; a bridge or host interface a Linux interface name (letters, digits
            and C(_ . -), at most 15 characters).
        type: str
        required: true
      model:
        description: NIC model.
        type: str
        choices: [virtio, e1000, e1000e, rtl8139]
        default: virtio
      mac:
        description: MAC address (unicast). KVM MACs usually start with 52:54:00.
        type: str
      link_state:
        description: Link state.
        type: str
        choices: [up, down]
      mode:
        description: macvtap mode for V(direct) (default V(bridge)).
        type: str
        choices: [bridge, vepa, private, passthrough]
      mtu:
        description: MTU of the host side of the NIC (68-65535). On a running guest it changes at the next boot.
        type: int
        version_added: 1.1.0
      queues:
        description:
          - Multiqueue virtio-net queues (1-256, 1 turns multiqueue off; enable the queues in the guest with
            C(ethtool -L)). On a running guest it changes at the next boot.
        type: int
        version_added: 1.1.0
      vlan:
        description:
          - VLAN tag (0-4095) - for networks and bridges that support it (Open vSwitch, macvtap passthrough, SR-IOV).
            On a running guest it changes at the next boot.
        type: int
        version_added: 1.1.0
      portgroup:
        description: Port group of the libvirt network (type V(network)); an empty string removes it. Next boot.
        type: str
        version_added: 1.1.0
      filterref:
        description:
          - nwfilter applied to the NIC (for example V(clean-traffic)); an empty string removes it. Changed live on a
            running guest.
        type: str
        version_added: 1.1.0
      boot_order:
        description: Per-device boot order (PXE boot from this NIC). On a running guest it changes at the next boot.
        type: int
        version_added: 1.1.0
      bandwidth:
        description:
          - Traffic shaping in KiB/s (C(virsh domiftune)). A direction given is compared whole - a peak or burst not
            given is none; C(average=0) removes the limit of that direction. Changed live on a running guest.
        type: dict
        version_added: 1.1.0
        suboptions:
          inbound:
            description: Limits of the traffic to the guest.
            type: dict
            suboptions:
              average:
                description: Average rate in KiB/s (0 - no limit).
                type: int
                required: true
              peak:
                description: Peak rate in KiB/s.
                type: int
              burst:
                description: Burst size in KiB.
                type: int
          outbound:
            description: Limits of the traffic from the guest.
            type: dict
            suboptions:
              average:
                description: Average rate in KiB/s (0 - no limit).
                type: int
                required: true
              peak:
                description: Peak rate in KiB/s.
                type: int
              burst:
                description: Burst size in KiB.
                type: int
  graphics:
    description:
      - The graphical console. A new guest gets VNC on 127.0.0.1 with an automatic port when not given.
      - A new guest gets a pty serial console (see O(serial_console)) and a virtio memory balloon; an existing guest
        gets a balloon when the task sets O(memory) or O(max_memory) and it has no balloon element.
    type: dict
    suboptions:
      type:
        description: V(vnc), V(spice), or V(none) to remove the graphical console.
        type: str
        choices: [vnc, spice, none]
        default: vnc
      listen:
        description:
          - Listen address, an IPv4 or IPv6 address. The default keeps the console on the host; V(0.0.0.0) exposes it
            to the network.
        type: str
        default: 127.0.0.1
      port:
        description: Fixed port (5900-65535). Default - automatic.
        type: int
      keymap:
        description: Keymap, for example V(en-us).
        type: str
      password:
        description:
          - Console password (at most 255 characters, no control characters). Never shown - masked as C(********)
            in RV(changes) and the diff.
        type: str
  cloud_init:
    description:
      - A cloud-init NoCloud seed - an ISO9660 image with volume id C(cidata) built in Python (no genisoimage),
        named C(<name>-cidata-<hash>.iso) after a hash of its content, written to O(cloud_init.directory) (or
        uploaded into O(cloud_init.pool)) and attached as a read-only sata cdrom. Changing the content writes a new
        ISO and swaps the medium.
      - On a remote URI (C(qemu+ssh://), C(qemu+tls://)) the ISO is built on the host that runs the module in a private
        temporary directory and uploaded through libvirt into O(cloud_init.pool) (default V(default)), with the same
        name; O(cloud_init.directory) is refused there (it would name a directory of the wrong host).
      - The ISO holds secrets (passwords, keys), so it is written with mode 0600 under a random temporary name in
        O(cloud_init.directory) and then put in place; a symbolic link at its name is refused, never followed.
        libvirt's dynamic ownership lets QEMU read it while the guest runs.
      - O(cloud_init.user_data), O(cloud_init.meta_data) and O(cloud_init.network_config) are C(no_log) - Ansible
        masks every value in them in all its output. Given as a dictionary, each of its values (a user name, a
        number) is masked wherever it appears in the task's output; give them as text to mask only the whole text.
      - When not given, an existing seed cdrom is left as it is (O(disks) never removes it).
    type: dict
    suboptions:
      user_data:
        description: user-data text (for example starting with C(#cloud-config)), or a dict written as cloud-config. Never logged.
        type: raw
      meta_data:
        description: meta-data text or dict. Default - C(instance-id) and C(local-hostname) set to O(name). Never logged.
        type: raw
      network_config:
        description: network-config text or dict (omitted when not given). Never logged.
        type: raw
      directory:
        description:
          - Directory for the ISO, written as a file (local URI only). Default V(/var/lib/libvirt/images) when
            O(cloud_init.pool) is not given either.
          - Mutually exclusive with O(cloud_init.pool); refused on a remote URI.
        type: path
      pool:
        description:
          - A directory pool (C(dir), C(fs) or C(netfs)) of the hypervisor the ISO is uploaded into as a volume,
            through libvirt's upload stream (its content-hash name is the volume name).
          - Default V(default) on a remote URI; on a local URI the ISO goes into O(cloud_init.directory) unless this is given.
          - O(remove_storage) deletes the volume with the guest.
        type: str
        version_added: 1.1.0
  guest_agent:
    description:
      - Whether the guest has the QEMU guest agent's virtio-serial channel (C(org.qemu.guest_agent.0)).
      - With the channel and C(qemu-guest-agent) running in the guest, vCPUs hot-added live are also brought
        online inside the guest (C(virsh setvcpus --guest)); the C(guest_online) field of the live RV(changes) entry reports them.
    type: bool
  serial_console:
    description:
      - Whether the guest has a serial console (the pty C(virsh console) opens).
      - V(true) adds a pty serial console when the guest has no serial device; V(false) removes its serial devices
        and the consoles on them.
      - Not given - a guest the module creates gets one (unless O(serials) gives its ports); an existing guest
        (defined by the module or elsewhere, for example by virt-install) is left as it is.
      - O(serials) and O(consoles) are applied first; see O(serials) for what is refused together with them.
      - On a running guest the change applies at the next boot (RV(pending_restart) lists V(serial_console)).
    type: bool
    version_added: 1.0.0
  wait_for:
    description:
      - Wait, after everything else is done, until the running guest has an IP address - and, with
        O(wait_for.port), until that TCP port accepts a connection - so that the next task can
        C(ansible.builtin.add_host) it. The address is returned in RV(address) and all of the guest's addresses
        in RV(domain.addresses).
      - The task fails at O(wait_for.timeout) with a message naming what was missing (which source had no
        address and why, or which address did not accept a connection on the port), together with what the task
        changed.
      - In check mode nothing is waited for; the addresses are read once.
      - Refused with O(state) V(shutdown), V(destroyed), V(paused) or V(absent). With V(present) the guest must
        already be running.
      - The addresses of the V(agent) and V(arp) sources are what the guest claims; V(lease) (the host's own DHCP
        server) is the one to trust first.
    type: dict
    version_added: 1.1.0
    suboptions:
      address:
        description: Wait for an address. V(false) waits for nothing (so a variable can turn the wait off).
        type: bool
        default: true
      sources:
        description:
          - Where to look for the address, in this order; the first usable address found wins.
          - V(lease) - the DHCP leases of the libvirt network the interface is on (no guest software needed).
          - V(agent) - the QEMU guest agent inside the guest (needs O(guest_agent) and a running agent).
          - V(arp) - the hypervisor's ARP/neighbour table (the guest must have sent traffic to the host); for a
            local URI this host's C(/proc/net/arp) when libvirt's own ARP source fails or finds nothing.
          - The same sources, read by the same code, as the P(kvmops.kvm.libvirt#inventory) inventory plugin's.
        type: list
        elements: str
        choices: [lease, agent, arp]
        default: [lease, agent, arp]
        aliases: [source]
      family:
        description: Which addresses count. Loopback and IPv6 link-local addresses never do.
        type: str
        choices: [ipv4, ipv6, any]
        default: ipv4
      port:
        description:
          - Also wait until this TCP port (V(22) for SSH) of the address accepts a connection, from the host the
            module runs on. Each usable address is tried in order; the first that accepts is RV(address).
        type: int
      timeout:
        description: Seconds to wait, at most 86400. V(0) looks once.
        type: int
        default: 300
  xml:
    description:
      - A domain XML, full or partial, as the alternative to (or beside) the typed options; O(name) must match
        its C(<name>).
      - On an existing guest, O(xml_mode) says how it applies - V(merge) (the default) lays it over the current
        definition, V(replace) takes it as the whole definition.
      - Precedence - the typed options win. They are applied after the XML (merged or replacing), and a device
        list the task gives (O(disks), O(interfaces), O(graphics)) owns those devices - the XML's elements of that
        kind are then ignored.
      - A new guest may be created from a partial XML. What libvirt cannot do without is added, as virt-install
        would - the domain type (O(virt_type), or what C(auto) picks), C(<os><type>hvm</type></os>), ACPI and APIC
        features, the devices element, a pty serial console and a virtio balloon; C(<memory>) (or O(memory)) is
        required.
      - C(no_log) - never shown. Secrets inside it (graphics C(passwd) of VNC or SPICE, C(<cookie>) and other
        secret values), and those of the guest's current definition, are masked in every output of the task
        (C(********) in RV(changes) and the diff), at any verbosity and in failure messages.
      - Parsed with DTDs, entities and network access off - a C(DOCTYPE) or an entity is refused. Host paths in it
        (disk sources, kernel, initrd, loader, NVRAM, the sources and log files of serial ports, consoles and
        channels) are absolute, without C(..) or control characters, like the typed path options.
    type: str
  xml_mode:
    description:
      - How O(xml) applies to an existing guest (a new guest is created from O(xml) either way).
      - V(merge) - the XML is laid over the current definition by meaning, and nothing it does not mention is
        removed. Elements are matched by identity - a disk by C(<target dev>), a NIC by C(<mac>) (else by its
        C(<alias>), else the first NIC of the same type and source), a hostdev by its source address (PCI address,
        USB vendor and product, mdev UUID), a controller by type and index, a filesystem by C(<target dir>), a
        serial or parallel port by port, a console by target type and port, a channel by target name, graphics by
        type, input devices by the attributes the XML gives them, a device with a user C(<alias name>) by that
        alias, C(<os><boot>) by C(dev), C(<cpu><feature>) and C(<clock><timer>) by C(name), pinning by vCPU;
        every other element (C(<memory>), C(<vcpu>), C(<os>), C(<features>), C(<cpu>), C(<tpm>), C(<rng>),
        C(<watchdog>), ...) by its place among the elements of its
        tag (the first C(<rng>) of the XML is the guest's first). A matched element takes the XML's attributes
        and text, its children are merged the same way; an unmatched element is added.
      - In V(merge), C(kvmops:remove="true") on an element removes what it names - the element of its identity, or,
        for elements matched by place or attributes, every element of its tag with the attributes it gives
        (C(<rng kvmops:remove="true"/>) removes every RNG) - so a second run has nothing more to remove; an element
        cannot be removed and given in one XML. C(kvmops:replace="true") puts the XML's element in the place of the
        matching one instead of merging into it (keeping the C(<mac>), C(<address>) and C(<alias>) libvirt
        generated unless it gives its own), when what it specifies differs. The namespace is declared as
        C(xmlns:kvmops="urn:kvmops:xml-merge"); neither attribute reaches libvirt, and on a new guest an element
        marked removed is left out.
      - V(merge) reports the elements it adds, updates or removes in RV(changes) (C(option=xml), C(added),
        C(removed)); a value libvirt writes differently (C(0x1) and C(0x01), a MAC in capitals, memory units)
        is no change. A disk, filesystem or hostdev without its identity is refused. On a running guest nothing
        of the XML is applied live; elements it adds or removes wait for the next boot (RV(pending_restart)
        lists V(xml)).
      - V(replace) - only what the XML specifies is compared (memory units are normalized; addresses, aliases,
        UUID and MACs are ignored); when it differs, the XML becomes the definition, keeping the guest's UUID, its
        serial console and, for NICs without a C(<mac>), the MACs in the same position. Everything else of the
        current definition that the XML lacks is removed - the RV(changes) entry lists it in C(removed), and the
        diff names it (libvirt adds back its own defaults, such as controllers and input devices).
      - Before 1.1.0 the only behaviour was V(replace).
    type: str
    choices: [merge, replace]
    default: merge
    version_added: 1.1.0
notes:
  - The balloon is set live when the definition's O(memory) changes. libvirt reports only the balloon's actual
    size, which a booting guest reaches late (or never without a balloon driver), so a live-only balloon change
    made outside the module (C(virsh setmem --live)) is not reverted.
  - Hot-unplug of a disk or NIC and ballooning need the guest OS's cooperation. The module waits and reads back;
    when the guest does not respond, it warns and lists the item in RV(pending_restart).
  - File disks and the cloud-init ISO are created on the host the module runs on; for a remote O(uri) use pool
    volumes.
  - Every option is checked before anything is written; a refusal names the option.
seealso:
  - module: kvmops.kvm.kvm_info
'''

EXAMPLES = r'''
- name: The walkthrough's vm01 - 512 MiB of 1 GiB, 1 of 2 vCPUs, 8 GiB qcow2, VNC, NAT network, running
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    memory: 512MiB
    max_memory: 1GiB
    vcpus: 1
    max_vcpus: 2
    disks:
      - path: /var/lib/libvirt/images/vm01-centos7.qcow2
        size: 8G
        format: qcow2
      - path: /tmp/CentOS-7-x86_64-Everything.iso
        device: cdrom
    interfaces:
      - source: default
    graphics:
      type: vnc
      keymap: en-us
    state: running
    autostart: true

- name: Hot-add a vCPU and balloon to 1 GiB (live and persistent)
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    vcpus: 2
    memory: 1GiB

- name: Attach a 2 GiB writeback data disk, live and persistent
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    disks:
      - path: /var/lib/libvirt/images/vm01-centos7.qcow2
      - path: /var/lib/libvirt/images/vm01-data.qcow2
        target: vdb
        size: 2G
        cache: writeback

- name: Cloud image with a thin overlay and a cloud-init seed
  kvmops.kvm.kvm_domain:
    name: web01
    memory: 2GiB
    vcpus: 2
    disks:
      - path: /var/lib/libvirt/images/web01.qcow2
        backing: /var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2
        size: 20G
    interfaces:
      - source: default
    cloud_init:
      user_data:
        users:
          - name: ops
            ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
    state: running

- name: Create and start a guest, and wait until SSH answers at its DHCP address
  kvmops.kvm.kvm_domain:
    name: web02
    memory: 2GiB
    disks:
      - path: /var/lib/libvirt/images/web02.qcow2
        backing: /var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2
        size: 20G
    interfaces:
      - source: default
    cloud_init:
      user_data: "{{ lookup('file', 'user-data.yml') }}"
    state: running
    wait_for:
      sources: [lease, agent]
      port: 22
      timeout: 300
  register: web02

- name: Reach it in the next play
  ansible.builtin.add_host:
    name: web02
    ansible_host: "{{ web02.address }}"
    groups: [new_guests]

- name: Raise the maximums and restart when needed
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    max_vcpus: 4
    max_memory: 4GiB
    restart: if_needed

- name: Graceful shutdown, forced off after 60 s
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    state: shutdown
    shutdown_timeout: 60
    force: true

- name: Add a watchdog and drop the USB tablet of a guest defined elsewhere, keeping everything else
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    xml: |
      <domain xmlns:kvmops="urn:kvmops:xml-merge">
        <devices>
          <watchdog model="i6300esb" action="reset"/>
          <input type="tablet" bus="usb" kvmops:remove="true"/>
        </devices>
      </domain>

- name: Serial port 0 on a TCP socket (127.0.0.1), port 1 logged to a file, a virtio console beside the serial one
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    serials:
      - {port: 0, type: tcp, tcp_port: 4555}
      - {port: 1, type: file, path: /var/log/kvmops/vm01-ttyS1.log}
    consoles:
      - {target_type: serial}
      - {type: pty}

- name: Remove the guest, keep its disks
  kvmops.kvm.kvm_domain:
    name: vm01-centos7
    state: absent
'''

RETURN = r'''
domain:
  description:
    - The guest's facts, in the shape of C(kvm_info)'s C(domains) entries (see there for every field).
    - For O(state=absent) only RV(domain.name) and RV(domain.state) (V(absent)).
    - In check mode for a guest that does not exist yet, the facts of the definition that would be created.
  returned: always
  type: dict
  contains:
    name: {description: Guest name., type: str, returned: always}
    uuid: {description: Guest UUID., type: str, returned: success}
    id: {description: "Runtime id, null when not running.", type: int, returned: success}
    state: {description: "running, paused, shutoff, ... (V(absent) after O(state=absent)).", type: str, returned: always}
    state_reason: {description: Why it is in that state., type: str, returned: success}
    active: {description: Whether it runs., type: bool, returned: success}
    persistent: {description: Whether it is defined., type: bool, returned: success}
    autostart: {description: Started with the host., type: bool, returned: success}
    virt_type: {description: Domain type (kvm or qemu)., type: str, returned: success}
    arch: {description: Guest architecture., type: str, returned: success}
    machine: {description: Machine type., type: str, returned: success}
    firmware: {description: bios or efi., type: str, returned: success}
    cpu_mode: {description: CPU mode., type: str, returned: success}
    os_variant: {description: libosinfo id from the metadata., type: str, returned: success}
    vcpus: {description: current and maximum vCPUs., type: dict, returned: success, sample: {current: 2, maximum: 2}}
    memory: {description: current_kib and max_kib., type: dict, returned: success, sample: {current_kib: 1048576, max_kib: 1048576}}
    disks:
      description:
        - Disks (target, source, pool, volume, format, bus, cache, io, discard, device, readonly, boot_order).
        - Since 1.1.0 also serial, wwn, shareable and iotune (the typed limits in bytes and I/O operations per second; 0 is no
          limit; null without an C(<iotune>)).
      type: list
      elements: dict
      returned: success
    interfaces:
      description:
        - NICs (type, source, model, mac, target, link_state).
        - Since 1.1.0 also mtu, queues, vlan, portgroup, filterref, boot_order and bandwidth (inbound and outbound, each
          average, peak and burst or null).
      type: list
      elements: dict
      returned: success
    graphics:
      description: Consoles (type, listen, port, autoport, keymap, password_set).
      type: list
      elements: dict
      returned: success
    memballoon: {description: Balloon model., type: str, returned: success}
    secure_boot: {description: "Secure Boot as defined (true/false), null when not stated.", type: bool, returned: success, version_added: 1.1.0}
    enrolled_keys: {description: "Enrolled-keys firmware feature (true/false), null when not stated.", type: bool, returned: success, version_added: 1.1.0}
    loader: {description: "UEFI loader path (the running guest's, or an explicit one).", type: str, returned: success, version_added: 1.1.0}
    nvram: {description: NVRAM file of a UEFI guest (once libvirt made it)., type: str, returned: success, version_added: 1.1.0}
    nvram_template: {description: NVRAM template., type: str, returned: success, version_added: 1.1.0}
    tpm:
      description: The TPM (model, backend, version, persistent_state, device), null without one.
      type: dict
      returned: success
      version_added: 1.1.0
    filesystems:
      description: Shared directories (driver, source, target, readonly, accessmode).
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
    memory_backing:
      description: Memory backing (hugepages, pages with size_kib and nodeset, source, access, locked, nosharepages), null without one.
      type: dict
      returned: success
      version_added: 1.1.0
    rng: {description: "The RNG device (model, backend, source), null without one.", type: dict, returned: success, version_added: 1.1.0}
    watchdog: {description: "The watchdog (model, action), null without one.", type: dict, returned: success, version_added: 1.1.0}
    boot: {description: "Boot order (order, a list of devices), menu and menu_timeout.", type: dict, returned: success, version_added: 1.1.0}
    iothreads: {description: Number of I/O threads (0 without)., type: int, returned: success, version_added: 1.1.0}
    cputune:
      description: CPU tuning (shares, period, quota, vcpupin with vcpu and cpuset, emulatorpin, iothreadpin with iothread and cpuset), null without one.
      type: dict
      returned: success
      version_added: 1.1.0
    numatune: {description: "Memory NUMA policy (mode, nodeset), null without one.", type: dict, returned: success, version_added: 1.1.0}
    cpu: {description: "The CPU model, features (name, policy) and cache (mode, level).", type: dict, returned: success, version_added: 1.1.0}
    inputs: {description: "Input devices (type, bus).", type: list, elements: dict, returned: success, version_added: 1.1.0}
    serials:
      description:
        - Serial ports (port, target_type, type, path, host, tcp_port, mode, protocol, log_file); the fields another
          type does not have are null, and so is a pty's path.
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
    consoles:
      description: Consoles, with the fields of RV(domain.serials); target_type V(serial) is the first serial port's.
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
    channels:
      description: Channels (name, type, state - connected when the guest side is open).
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
    video: {description: "The first video device (model, vram, heads), null without one.", type: dict, returned: success, version_added: 1.1.0}
    sound: {description: "The first sound device (model), null without one.", type: dict, returned: success, version_added: 1.1.0}
    hostdevs:
      description:
        - "Host devices passed through (type; address for pci; vendor, product, bus, device for usb; uuid, model for mdev;
          managed; boot_order), null where a type has no such field. Ids are normalized: V(0000:03:00.0), V(0x046d)."
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
    vcpu_info: {description: Per-vCPU state of a running guest., type: list, elements: dict, returned: success}
    balloon: {description: Balloon statistics of a running guest (KiB)., type: dict, returned: success}
    addresses:
      description:
        - The IP addresses of a running guest (empty when it does not run or has none yet), from the sources of
          O(wait_for.sources) in that order (V(lease), V(agent), V(arp) without O(wait_for)), each entry with
          C(address), C(prefix), C(family), C(mac), C(interface) and C(source), as in C(kvm_info)'s C(domains).
        - Untrusted data - the guest agent and ARP answers are whatever the guest claims. A value that is not an
          IP address is dropped, interface names are cut to 64 characters with control characters replaced.
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
      sample: [{address: 192.168.122.50, prefix: 24, family: ipv4, mac: "52:54:00:a3:19:8b", interface: vnet0, source: lease}]
    address_errors:
      description: Per source that could not answer, libvirt's message.
      type: dict
      returned: success
      version_added: 1.1.0
      sample: {agent: QEMU guest agent is not configured}
address:
  description:
    - The address O(wait_for) waited for - the first usable one (of O(wait_for.family)) in the order of
      O(wait_for.sources); with O(wait_for.port), the first that accepted a connection. In check mode the first
      usable one of a single look, null when there is none yet.
    - Untrusted data from the hypervisor (see RV(domain.addresses)).
  returned: when O(wait_for) is given (and O(wait_for.address) is not false)
  type: str
  sample: 192.168.122.50
  version_added: 1.1.0
address_source:
  description: Where RV(address) was found - V(lease), V(agent) or V(arp); null when there is no address.
  returned: when O(wait_for) is given (and O(wait_for.address) is not false)
  type: str
  sample: lease
  version_added: 1.1.0
changes:
  description:
    - What was changed (or, in check mode, would be), one entry per change - C(scope), C(option), C(action),
      C(before) and C(after), as every module of the collection returns them.
    - C(scope) is V(config) (the persistent definition, pool volumes, autostart), V(live) (the running guest,
      including lifecycle) or V(host) (image files and the cloud-init ISO created or deleted on the hypervisor).
    - C(option) is the name of the option that governs the change (V(memory), V(autostart), V(serial_console),
      V(remove_storage), V(state), V(xml), ...) or a path into a list option - V(disks[vdb]) (a disk by its target),
      V(disks[0]) (a disk image created for the first item of O(disks)), V(interfaces[0]), V(interfaces[mac=52:54:00:...]) (a
      NIC the task no longer lists). The one other name is V(definition), the guest's definition itself
      (defined or undefined).
    - C(action) is one of define, undefine, set, add, update, remove, attach, detach, create_image,
      create_volume, delete_file, delete_volume, start, shutdown, destroy, restart, suspend, resume.
    - Live changes carry C(read_back), the value libvirt reports after the call, where one applies, and a vCPU
      hot-add on a guest with the guest agent carries C(guest_online), the vCPUs online inside the guest.
    - The V(xml) entry carries C(xml_mode); its C(after) lists what changed, one line each (an element's path
      followed by added, removed or replaced, or an attribute's path with its old and new value), and C(added) and
      C(removed) the paths of the elements added and removed (V(domain/devices/disk[vda]),
      V(domain/devices/interface[52:54:00:12:34:56])).
  returned: always
  type: list
  elements: dict
  sample:
    - {scope: config, option: vcpus, action: set, before: 1, after: 2}
    - {scope: live, option: vcpus, action: set, before: 1, after: 2, read_back: 2}
    - {scope: live, option: "disks[vdb]", action: attach, before: null, after: {source: /var/lib/libvirt/images/d.qcow2}}
pending_restart:
  description:
    - Options of a running guest whose new value is in the definition but only applies at the next boot
      (for example V(max_vcpus), V(max_memory), V(machine), V(firmware), V(disks[sda]), V(graphics)), and
      hot-unplugs the guest has not completed, sorted. Always a list of option names (or paths into a list option,
      as in RV(changes)); empty after O(restart=if_needed)
      restarted the guest.
  returned: always
  type: list
  elements: str
  sample: [max_vcpus, max_memory]
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, main as run_domain


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_domain(module)


if __name__ == '__main__':
    main()
