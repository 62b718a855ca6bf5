#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_guests
short_description: Many declarative KVM guests in one task, each converged exactly as kvm_domain would
version_added: 1.1.0
description:
  - One task describes many guests; the module converges all of them in one run, several at a time, and returns one
    result per guest in M(kvmops.kvm.kvm_domain)'s shape. A hypervisor with many guests is converged without one
    task (and one module start) per guest.
  - Each guest takes exactly M(kvmops.kvm.kvm_domain)'s options and is converged by kvm_domain's own code, with the
    same checks, the same idempotence, the same check and diff mode and the same secret masking.
  - O(defaults) holds options shared by every guest; a guest's own value wins. The dictionaries O(guests[].graphics)
    and O(guests[].cloud_init) are merged key by key; list options (O(guests[].disks), O(guests[].interfaces))
    and every other option are taken whole from the guest when it gives them, else from O(defaults).
  - Every guest (with O(defaults) merged) is checked against kvm_domain's options on its own. A guest whose options
    are refused, or whose run fails, fails alone - the other guests are converged all the same (unless
    O(fail_fast=true)), and the task fails at the end with a message naming every guest that failed.
  - Guests on the host that O(guests) does not name are listed in RV(unlisted); they are never changed unless
    O(unlisted=undefine).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Nothing is written for any guest (as kvm_domain's check mode); RV(results) says what would change.
  diff_mode:
    support: full
    description:
      - Each changed guest's persistent definition before and after (secrets masked as C(********)), one diff
        section per guest, also in that guest's entry of RV(results).
options:
  concurrency:
    description:
      - How many guests are converged at the same time, each worker with its own libvirt connection. From 1 to 32.
      - Guests wait on libvirt and QEMU far more than on the module, so a few workers cut the run time of many
        guests; a guest's slow graceful shutdown or its O(guests[].wait_for) does not hold up the others.
    type: int
    default: 4
  fail_fast:
    description:
      - V(false) - a failed guest does not stop the others; every guest is tried.
      - V(true) - after the first failure, guests not started yet are left alone (their RV(results) entry says
        C(skipped)); those already in progress finish.
    type: bool
    default: false
  unlisted:
    description:
      - What to do with the guests on the host that O(guests) does not name (the guests of other tasks, or ones
        removed from the list).
      - V(report) - list them in RV(unlisted) (name, state, persistent); nothing is changed.
      - V(ignore) - do not look for them.
      - V(undefine) - power off and undefine each persistent unlisted guest, as kvm_domain's O(kvmops.kvm.kvm_domain#module:state=absent)
        does, keeping its disk images; transient guests are left as they are. Only when every listed guest
        converged without failure, and refused with an empty O(guests) list. Use with care - it removes every
        guest the list does not name.
    type: str
    choices: [report, ignore, undefine]
    default: report
  defaults:
    description:
      - Options shared by every guest of O(guests) - any of kvm_domain's options except O(kvmops.kvm.kvm_domain#module:name).
        A guest's own value wins.
      - Types, choices and defaults are kvm_domain's; they are checked for each guest after the merge, so a bad
        value fails the guests that use it (and only those).
    type: dict
    suboptions: &domain_options
      autostart:
        description: As O(kvmops.kvm.kvm_domain#module:autostart).
        type: raw
      boot:
        description: As O(kvmops.kvm.kvm_domain#module:boot).
        type: dict
        suboptions:
          menu:
            description: As O(kvmops.kvm.kvm_domain#module:boot.menu).
            type: raw
          menu_timeout:
            description: As O(kvmops.kvm.kvm_domain#module:boot.menu_timeout).
            type: raw
          order:
            description: As O(kvmops.kvm.kvm_domain#module:boot.order).
            type: raw
      channels:
        description: As O(kvmops.kvm.kvm_domain#module:channels).
        type: list
        elements: dict
        suboptions:
          name:
            description: As O(kvmops.kvm.kvm_domain#module:channels[].name).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:channels[].state).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:channels[].type).
            type: raw
      cloud_init:
        description: As O(kvmops.kvm.kvm_domain#module:cloud_init).
        type: dict
        suboptions:
          directory:
            description: As O(kvmops.kvm.kvm_domain#module:cloud_init.directory).
            type: raw
          meta_data:
            description: As O(kvmops.kvm.kvm_domain#module:cloud_init.meta_data).
            type: raw
          network_config:
            description: As O(kvmops.kvm.kvm_domain#module:cloud_init.network_config).
            type: raw
          pool:
            description: As O(kvmops.kvm.kvm_domain#module:cloud_init.pool).
            type: raw
          user_data:
            description: As O(kvmops.kvm.kvm_domain#module:cloud_init.user_data).
            type: raw
      cmdline:
        description: As O(kvmops.kvm.kvm_domain#module:cmdline).
        type: raw
      consoles:
        description: As O(kvmops.kvm.kvm_domain#module:consoles).
        type: list
        elements: dict
        suboptions:
          host:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].host).
            type: raw
          log_file:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].log_file).
            type: raw
          mode:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].mode).
            type: raw
          path:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].path).
            type: raw
          protocol:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].protocol).
            type: raw
          target_type:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].target_type).
            type: raw
          tcp_port:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].tcp_port).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:consoles[].type).
            type: raw
      cores:
        description: As O(kvmops.kvm.kvm_domain#module:cores).
        type: raw
      cpu_cache:
        description: As O(kvmops.kvm.kvm_domain#module:cpu_cache).
        type: dict
        suboptions:
          level:
            description: As O(kvmops.kvm.kvm_domain#module:cpu_cache.level).
            type: raw
          mode:
            description: As O(kvmops.kvm.kvm_domain#module:cpu_cache.mode).
            type: raw
      cpu_features:
        description: As O(kvmops.kvm.kvm_domain#module:cpu_features).
        type: list
        elements: dict
        suboptions:
          name:
            description: As O(kvmops.kvm.kvm_domain#module:cpu_features[].name).
            type: raw
          policy:
            description: As O(kvmops.kvm.kvm_domain#module:cpu_features[].policy).
            type: raw
      cpu_mode:
        description: As O(kvmops.kvm.kvm_domain#module:cpu_mode).
        type: raw
      cpu_model:
        description: As O(kvmops.kvm.kvm_domain#module:cpu_model).
        type: raw
      cputune:
        description: As O(kvmops.kvm.kvm_domain#module:cputune).
        type: dict
        suboptions:
          emulatorpin:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.emulatorpin).
            type: raw
          iothreadpin:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.iothreadpin).
            type: list
            elements: dict
            suboptions:
              cpuset:
                description: As O(kvmops.kvm.kvm_domain#module:cputune.iothreadpin[].cpuset).
                type: raw
              iothread:
                description: As O(kvmops.kvm.kvm_domain#module:cputune.iothreadpin[].iothread).
                type: raw
          period:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.period).
            type: raw
          quota:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.quota).
            type: raw
          shares:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.shares).
            type: raw
          vcpupin:
            description: As O(kvmops.kvm.kvm_domain#module:cputune.vcpupin).
            type: list
            elements: dict
            suboptions:
              cpuset:
                description: As O(kvmops.kvm.kvm_domain#module:cputune.vcpupin[].cpuset).
                type: raw
              vcpu:
                description: As O(kvmops.kvm.kvm_domain#module:cputune.vcpupin[].vcpu).
                type: raw
      disks:
        description: As O(kvmops.kvm.kvm_domain#module:disks).
        type: list
        elements: dict
        suboptions:
          allocation:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].allocation).
            type: raw
          backing:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].backing).
            type: raw
          boot_order:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].boot_order).
            type: raw
          bus:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].bus).
            type: raw
          cache:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].cache).
            type: raw
          clone_from:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].clone_from).
            type: raw
          device:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].device).
            type: raw
          discard:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].discard).
            type: raw
          format:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].format).
            type: raw
          io:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].io).
            type: raw
          iotune:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune).
            type: dict
            suboptions:
              read_bytes_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.read_bytes_sec).
                type: raw
              read_iops_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.read_iops_sec).
                type: raw
              total_bytes_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.total_bytes_sec).
                type: raw
              total_iops_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.total_iops_sec).
                type: raw
              write_bytes_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.write_bytes_sec).
                type: raw
              write_iops_sec:
                description: As O(kvmops.kvm.kvm_domain#module:disks[].iotune.write_iops_sec).
                type: raw
          path:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].path).
            type: raw
          pool:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].pool).
            type: raw
          readonly:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].readonly).
            type: raw
          serial:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].serial).
            type: raw
          shareable:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].shareable).
            type: raw
          size:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].size).
            type: raw
          target:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].target).
            type: raw
          volume:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].volume).
            type: raw
          wwn:
            description: As O(kvmops.kvm.kvm_domain#module:disks[].wwn).
            type: raw
      enrolled_keys:
        description: As O(kvmops.kvm.kvm_domain#module:enrolled_keys).
        type: raw
      filesystems:
        description: As O(kvmops.kvm.kvm_domain#module:filesystems).
        type: list
        elements: dict
        suboptions:
          accessmode:
            description: As O(kvmops.kvm.kvm_domain#module:filesystems[].accessmode).
            type: raw
          driver:
            description: As O(kvmops.kvm.kvm_domain#module:filesystems[].driver).
            type: raw
          readonly:
            description: As O(kvmops.kvm.kvm_domain#module:filesystems[].readonly).
            type: raw
          source:
            description: As O(kvmops.kvm.kvm_domain#module:filesystems[].source).
            type: raw
          target:
            description: As O(kvmops.kvm.kvm_domain#module:filesystems[].target).
            type: raw
      firmware:
        description: As O(kvmops.kvm.kvm_domain#module:firmware).
        type: raw
      force:
        description: As O(kvmops.kvm.kvm_domain#module:force).
        type: raw
      graphics:
        description: As O(kvmops.kvm.kvm_domain#module:graphics).
        type: dict
        suboptions:
          keymap:
            description: As O(kvmops.kvm.kvm_domain#module:graphics.keymap).
            type: raw
          listen:
            description: As O(kvmops.kvm.kvm_domain#module:graphics.listen).
            type: raw
          password:
            description: As O(kvmops.kvm.kvm_domain#module:graphics.password).
            type: raw
          port:
            description: As O(kvmops.kvm.kvm_domain#module:graphics.port).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:graphics.type).
            type: raw
      guest_agent:
        description: As O(kvmops.kvm.kvm_domain#module:guest_agent).
        type: raw
      hostdevs:
        description: As O(kvmops.kvm.kvm_domain#module:hostdevs).
        type: list
        elements: dict
        suboptions:
          address:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].address).
            type: raw
          boot_order:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].boot_order).
            type: raw
          bus:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].bus).
            type: raw
          device:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].device).
            type: raw
          managed:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].managed).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].model).
            type: raw
          product:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].product).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].state).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].type).
            type: raw
          uuid:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].uuid).
            type: raw
          vendor:
            description: As O(kvmops.kvm.kvm_domain#module:hostdevs[].vendor).
            type: raw
      initrd:
        description: As O(kvmops.kvm.kvm_domain#module:initrd).
        type: raw
      inputs:
        description: As O(kvmops.kvm.kvm_domain#module:inputs).
        type: list
        elements: dict
        suboptions:
          bus:
            description: As O(kvmops.kvm.kvm_domain#module:inputs[].bus).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:inputs[].state).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:inputs[].type).
            type: raw
      interfaces:
        description: As O(kvmops.kvm.kvm_domain#module:interfaces).
        type: list
        elements: dict
        suboptions:
          bandwidth:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth).
            type: dict
            suboptions:
              inbound:
                description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.inbound).
                type: dict
                suboptions:
                  average:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.inbound.average).
                    type: raw
                  burst:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.inbound.burst).
                    type: raw
                  peak:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.inbound.peak).
                    type: raw
              outbound:
                description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.outbound).
                type: dict
                suboptions:
                  average:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.outbound.average).
                    type: raw
                  burst:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.outbound.burst).
                    type: raw
                  peak:
                    description: As O(kvmops.kvm.kvm_domain#module:interfaces[].bandwidth.outbound.peak).
                    type: raw
          boot_order:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].boot_order).
            type: raw
          filterref:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].filterref).
            type: raw
          link_state:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].link_state).
            type: raw
          mac:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].mac).
            type: raw
          mode:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].mode).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].model).
            type: raw
          mtu:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].mtu).
            type: raw
          portgroup:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].portgroup).
            type: raw
          queues:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].queues).
            type: raw
          source:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].source).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].type).
            type: raw
          vlan:
            description: As O(kvmops.kvm.kvm_domain#module:interfaces[].vlan).
            type: raw
      iothreads:
        description: As O(kvmops.kvm.kvm_domain#module:iothreads).
        type: raw
      kernel:
        description: As O(kvmops.kvm.kvm_domain#module:kernel).
        type: raw
      loader:
        description: As O(kvmops.kvm.kvm_domain#module:loader).
        type: raw
      machine:
        description: As O(kvmops.kvm.kvm_domain#module:machine).
        type: raw
      max_memory:
        description: As O(kvmops.kvm.kvm_domain#module:max_memory).
        type: raw
      max_vcpus:
        description: As O(kvmops.kvm.kvm_domain#module:max_vcpus).
        type: raw
      memory:
        description: As O(kvmops.kvm.kvm_domain#module:memory).
        type: raw
      memory_backing:
        description: As O(kvmops.kvm.kvm_domain#module:memory_backing).
        type: dict
        suboptions:
          access:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.access).
            type: raw
          hugepages:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.hugepages).
            type: raw
          locked:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.locked).
            type: raw
          nosharepages:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.nosharepages).
            type: raw
          pages:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.pages).
            type: list
            elements: dict
            suboptions:
              nodeset:
                description: As O(kvmops.kvm.kvm_domain#module:memory_backing.pages[].nodeset).
                type: raw
              size:
                description: As O(kvmops.kvm.kvm_domain#module:memory_backing.pages[].size).
                type: raw
          source:
            description: As O(kvmops.kvm.kvm_domain#module:memory_backing.source).
            type: raw
      numatune:
        description: As O(kvmops.kvm.kvm_domain#module:numatune).
        type: dict
        suboptions:
          mode:
            description: As O(kvmops.kvm.kvm_domain#module:numatune.mode).
            type: raw
          nodeset:
            description: As O(kvmops.kvm.kvm_domain#module:numatune.nodeset).
            type: raw
      nvram_template:
        description: As O(kvmops.kvm.kvm_domain#module:nvram_template).
        type: raw
      os_variant:
        description: As O(kvmops.kvm.kvm_domain#module:os_variant).
        type: raw
      remove_storage:
        description: As O(kvmops.kvm.kvm_domain#module:remove_storage).
        type: raw
      restart:
        description: As O(kvmops.kvm.kvm_domain#module:restart).
        type: raw
      rng:
        description: As O(kvmops.kvm.kvm_domain#module:rng).
        type: dict
        suboptions:
          backend:
            description: As O(kvmops.kvm.kvm_domain#module:rng.backend).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:rng.model).
            type: raw
          source:
            description: As O(kvmops.kvm.kvm_domain#module:rng.source).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:rng.state).
            type: raw
      secure_boot:
        description: As O(kvmops.kvm.kvm_domain#module:secure_boot).
        type: raw
      serial_console:
        description: As O(kvmops.kvm.kvm_domain#module:serial_console).
        type: raw
      serials:
        description: As O(kvmops.kvm.kvm_domain#module:serials).
        type: list
        elements: dict
        suboptions:
          host:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].host).
            type: raw
          log_file:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].log_file).
            type: raw
          mode:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].mode).
            type: raw
          path:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].path).
            type: raw
          port:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].port).
            type: raw
          protocol:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].protocol).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].state).
            type: raw
          target_type:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].target_type).
            type: raw
          tcp_port:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].tcp_port).
            type: raw
          type:
            description: As O(kvmops.kvm.kvm_domain#module:serials[].type).
            type: raw
      shutdown_timeout:
        description: As O(kvmops.kvm.kvm_domain#module:shutdown_timeout).
        type: raw
      sockets:
        description: As O(kvmops.kvm.kvm_domain#module:sockets).
        type: raw
      sound:
        description: As O(kvmops.kvm.kvm_domain#module:sound).
        type: dict
        suboptions:
          model:
            description: As O(kvmops.kvm.kvm_domain#module:sound.model).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:sound.state).
            type: raw
      state:
        description: As O(kvmops.kvm.kvm_domain#module:state).
        type: raw
      threads:
        description: As O(kvmops.kvm.kvm_domain#module:threads).
        type: raw
      tpm:
        description: As O(kvmops.kvm.kvm_domain#module:tpm).
        type: dict
        suboptions:
          backend:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.backend).
            type: raw
          device:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.device).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.model).
            type: raw
          persistent_state:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.persistent_state).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.state).
            type: raw
          version:
            description: As O(kvmops.kvm.kvm_domain#module:tpm.version).
            type: raw
      uuid:
        description: As O(kvmops.kvm.kvm_domain#module:uuid).
        type: raw
      vcpus:
        description: As O(kvmops.kvm.kvm_domain#module:vcpus).
        type: raw
      video:
        description: As O(kvmops.kvm.kvm_domain#module:video).
        type: dict
        suboptions:
          heads:
            description: As O(kvmops.kvm.kvm_domain#module:video.heads).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:video.model).
            type: raw
          vram:
            description: As O(kvmops.kvm.kvm_domain#module:video.vram).
            type: raw
      virt_type:
        description: As O(kvmops.kvm.kvm_domain#module:virt_type).
        type: raw
      wait_for:
        description: As O(kvmops.kvm.kvm_domain#module:wait_for).
        type: dict
        suboptions:
          address:
            description: As O(kvmops.kvm.kvm_domain#module:wait_for.address).
            type: raw
          family:
            description: As O(kvmops.kvm.kvm_domain#module:wait_for.family).
            type: raw
          port:
            description: As O(kvmops.kvm.kvm_domain#module:wait_for.port).
            type: raw
          sources:
            description: As O(kvmops.kvm.kvm_domain#module:wait_for.sources).
            type: raw
            aliases: [source]
          timeout:
            description: As O(kvmops.kvm.kvm_domain#module:wait_for.timeout).
            type: raw
      watchdog:
        description: As O(kvmops.kvm.kvm_domain#module:watchdog).
        type: dict
        suboptions:
          action:
            description: As O(kvmops.kvm.kvm_domain#module:watchdog.action).
            type: raw
          model:
            description: As O(kvmops.kvm.kvm_domain#module:watchdog.model).
            type: raw
          state:
            description: As O(kvmops.kvm.kvm_domain#module:watchdog.state).
            type: raw
      xml:
        description: As O(kvmops.kvm.kvm_domain#module:xml).
        type: raw
      xml_mode:
        description: As O(kvmops.kvm.kvm_domain#module:xml_mode).
        type: raw
  guests:
    description:
      - The guests, each with kvm_domain's options (see M(kvmops.kvm.kvm_domain) for what each does, its type,
        choices and default). Names must be unique.
      - Options are documented here without types because each guest's options (with O(defaults) merged) are
        checked against kvm_domain's own types and choices on their own - a bad value fails only its guest.
        An option name kvm_domain does not know, or a duplicate name, fails the whole task before anything is done.
    type: list
    elements: dict
    required: true
    suboptions:
      <<: *domain_options
      name:
        description: As O(kvmops.kvm.kvm_domain#module:name). Unique in the list.
        type: str
        required: true
        aliases: [guest]
notes:
  - Secrets (graphics passwords, cloud-init data, the O(guests[].xml) text and the secrets inside it) are masked in the
    whole task's output, whichever guest they belong to.
  - One kvm_guests task costs one module start, however many guests it converges; a loop of kvm_domain tasks costs
    one per guest (see the collection's tests/benchmarks/README.md).
seealso:
  - module: kvmops.kvm.kvm_domain
  - module: kvmops.kvm.kvm_info
'''

EXAMPLES = r'''
- name: Small guests, defined, started and autostarted in one task
  kvmops.kvm.kvm_guests:
    defaults:
      memory: 1GiB
      vcpus: 1
      interfaces:
        - source: default
      state: running
      autostart: true
    guests:
      - name: web1
      - name: web2
      - name: web3
        memory: 2GiB
        vcpus: 2

- name: Guests with their own disks from one golden image, shared cloud-init
  kvmops.kvm.kvm_guests:
    concurrency: 4
    defaults:
      memory: 2GiB
      vcpus: 2
      interfaces:
        - source: default
      cloud_init:
        user_data:
          users:
            - name: ops
              ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
      state: running
    guests:
      - name: db01
        memory: 8GiB
        disks:
          - path: /var/lib/libvirt/images/db01.qcow2
            backing: /var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2
            size: 40G
      - name: app01
        disks:
          - path: /var/lib/libvirt/images/app01.qcow2
            backing: /var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2
            size: 20G
  register: fleet

- name: Show what each guest did
  ansible.builtin.debug:
    msg: "{{ item.name }}: changed={{ item.changed }} pending_restart={{ item.pending_restart }}"
  loop: "{{ fleet.results }}"
  loop_control:
    label: "{{ item.name }}"

- name: Which guests on this host does the inventory not describe?
  kvmops.kvm.kvm_guests:
    guests: "{{ hypervisor_guests }}"
  check_mode: true
  register: drift

- name: Report them
  ansible.builtin.debug:
    msg: "{{ drift.unlisted | map(attribute='name') | list }}"
'''

RETURN = r'''
results:
  description:
    - One entry per guest of O(guests), in the same order, in the shape of M(kvmops.kvm.kvm_domain)'s result plus
      RV(results[].name), RV(results[].failed) and RV(results[].msg).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The guest's name., type: str, returned: always}
    changed: {description: "Whether this guest changed (in check mode, would change).", type: bool, returned: always}
    changes:
      description:
        - This guest's changes, as kvm_domain's RV(kvmops.kvm.kvm_domain#module:changes) (scope, option, action,
          before, after); for a failed guest, those recorded before the failure.
      type: list
      elements: dict
      returned: always
    pending_restart:
      description: As kvm_domain's RV(kvmops.kvm.kvm_domain#module:pending_restart), for this guest.
      type: list
      elements: str
      returned: always
    domain:
      description: The guest's facts afterwards, as kvm_domain's RV(kvmops.kvm.kvm_domain#module:domain).
      type: dict
      returned: when the guest did not fail
    address:
      description: As kvm_domain's RV(kvmops.kvm.kvm_domain#module:address), for this guest (its O(guests[].wait_for)).
      type: str
      returned: when the guest's O(guests[].wait_for) is given and the guest did not fail
    address_source:
      description: As kvm_domain's RV(kvmops.kvm.kvm_domain#module:address_source).
      type: str
      returned: when the guest's O(guests[].wait_for) is given and the guest did not fail
    diff:
      description: This guest's diff (diff mode), as kvm_domain returns it.
      type: dict
      returned: in diff mode, when the guest did not fail
    failed: {description: "True when this guest failed (its options were refused or its run failed).", type: bool, returned: when the guest failed}
    msg: {description: "Why the guest failed, or why it was skipped.", type: str, returned: when the guest failed or was skipped}
    skipped:
      description: True when O(fail_fast=true) left this guest alone after another guest failed.
      type: bool
      returned: when the guest was skipped
unlisted:
  description:
    - The guests on the host that O(guests) does not name, sorted by name. Empty with O(unlisted=ignore), and
      when libvirt cannot list the guests (a warning says why; O(unlisted=undefine) then undefines nothing).
    - With O(unlisted=undefine), each entry also holds C(changed), C(changes) and, when its removal failed,
      C(failed) and C(msg).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Guest name., type: str, returned: always}
    state: {description: "running, paused or shutoff (before any O(unlisted=undefine))", type: str, returned: always}
    persistent: {description: Whether the guest is defined (not transient)., type: bool, returned: always}
  sample:
    - {name: old-vm, state: shutoff, persistent: true}
changed:
  description: True when any guest changed (in check mode, would change).
  returned: always
  type: bool
changes:
  description: Every guest's RV(results[].changes) in one list, each entry with the key C(guest) (the guest's name) added.
  returned: always
  type: list
  elements: dict
  sample:
    - {guest: web1, scope: config, option: definition, action: define, before: null, after: web1}
    - {guest: web1, scope: live, option: state, action: start, before: shutoff, after: running}
pending_restart:
  description: Every guest's RV(results[].pending_restart) in one sorted list, as C(guests[<name>].<option>).
  returned: always
  type: list
  elements: str
  sample: ["guests[web1].max_vcpus"]
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._fleet import ARGUMENT_SPEC, main as run_fleet


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_fleet(module)


if __name__ == '__main__':
    main()
