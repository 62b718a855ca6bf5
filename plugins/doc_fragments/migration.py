# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The live-migration tuning options shared by kvm_migrate and kvm_migrate_guests (kvm_migrate_guests copies
    their argument spec from _migrate.ARGUMENT_SPEC). In kvm_migrate_guests a value applies to every migration."""

    DOCUMENTATION = r'''
options:
  auto_converge:
    description:
      - Throttle the guest's vCPUs when it dirties memory faster than it can be sent (C(VIR_MIGRATE_AUTO_CONVERGE)).
    type: bool
    default: false
  auto_converge_initial:
    description: Initial throttle percentage. Needs O(auto_converge=true).
    type: int
  auto_converge_increment:
    description: Throttle increment percentage per iteration. Needs O(auto_converge=true).
    type: int
  bandwidth:
    description: Bandwidth cap of a migration in MiB/s (C(VIR_MIGRATE_PARAM_BANDWIDTH)).
    type: int
  compressed:
    description: Compress the migration data (C(VIR_MIGRATE_COMPRESSED), QEMU's default method, XBZRLE).
    type: bool
    default: false
  copy_storage:
    description:
      - For hosts without shared storage, copy the disks during a live migration.
      - V(all) copies whole disks (C(VIR_MIGRATE_NON_SHARED_DISK)); V(incremental) copies only the top image of
        each chain and expects the same backing files on the destination (C(VIR_MIGRATE_NON_SHARED_INC)).
      - libvirt creates a missing destination image only when a storage pool there holds its directory;
        otherwise create an image of the same size at the same path on the destination first.
    type: str
    choices: [all, incremental]
  listen_address:
    description: Address the destination listens on for the incoming data (C(VIR_MIGRATE_PARAM_LISTEN_ADDRESS)).
    type: str
  max_downtime:
    description: Longest pause tolerated at the switch-over, in milliseconds; set on the job as soon as it runs.
    type: int
  migrate_uri:
    description:
      - Where the migration data goes, for example V(tcp://10.0.0.2) (C(VIR_MIGRATE_PARAM_URI)). Defaults to what
        the destination advertises (its hostname, or C(migration_host) in its qemu.conf).
    type: str
  p2p:
    description:
      - Peer-to-peer migration, where the source libvirtd connects to the destination URI itself
        (C(VIR_MIGRATE_PEER2PEER)). The source libvirtd must be able to reach and authenticate to that URI.
    type: bool
    default: false
  parallel:
    description: Number of parallel connections for the data of a migration (C(VIR_MIGRATE_PARALLEL)).
    type: int
  poll_interval:
    description: Seconds between two polls of a running migration job.
    type: float
    default: 0.5
  postcopy:
    description:
      - Allow switching to post-copy (C(VIR_MIGRATE_POSTCOPY)). A failure after the switch cannot be rolled back,
        because the guest's state is split between the hosts.
      - The destination QEMU needs C(userfaultfd). With QEMU older than 8.1 and C(vm.unprivileged_userfaultfd=0),
        QEMU refuses it (C(Postcopy is not supported)) before anything moves, and the module rolls back as for
        any other failure.
    type: bool
    default: false
  postcopy_after_precopy:
    description: Switch to post-copy as soon as the first pre-copy pass is done. Needs O(postcopy=true).
    type: bool
    default: false
  tls:
    description:
      - Encrypt the migration data with TLS (C(VIR_MIGRATE_TLS)). Both hosts need the QEMU migration TLS
        certificates (C(migrate_tls_x509_cert_dir) in qemu.conf).
    type: bool
    default: false
  tunnelled:
    description: Carry the data over the libvirt connection (C(VIR_MIGRATE_TUNNELLED)). Needs O(p2p=true).
    type: bool
    default: false
  unsafe:
    description:
      - Pass C(VIR_MIGRATE_UNSAFE) so libvirt does not refuse disks on a local, non-cluster file system or with a
        cache mode other than C(none). Only set it when you know the storage is really shared; it is never set
        unless named.
    type: bool
    default: false
'''
