#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_migrate
short_description: Validated live and offline guest migration with placement, progress and roll-back
version_added: 0.1.0
description:
  - Moves a guest from the hypervisor named by O(uri) (the B(source)) to O(destination_uri), or to the best of
    O(dest_candidates). Replaces C(virsh migrate) run by hand.
  - B(Preflight) runs first and reports every problem at once, before anything moves. For each destination
    it checks that it is reachable and authenticated, that it is not the source host (canonical URI, hostname and host UUID), that no other guest
    has the name or the UUID, that it has enough free memory for the guest's maximum memory, that it can
    run the guest's domain type, architecture and machine type, that it can provide the guest's CPU
    (libvirt's hypervisor CPU comparison), that every disk, kernel and initrd is visible there at the same
    path as a volume of an active storage pool (shared storage) unless O(copy_storage) is set, and that
    every libvirt network, bridge or direct device of the guest's NICs exists and is active there.
  - B(Placement) with O(dest_candidates) picks the candidate that passes the preflight with the most free
    memory, and RV(placement) says why, including why each other candidate was rejected.
  - B(Progress) The job is polled while it runs; the result has the elapsed time, data total and processed,
    memory iterations, dirty rate, downtime, average bandwidth (RV(progress)) and libvirt's final job
    statistics (RV(job_stats)).
  - B(Roll-back) When the migration fails, or the O(timeout) passes with O(timeout_action=abort), the job is
    aborted and the module verifies that the guest still runs on the source with its persistent definition
    unchanged and that nothing is left on the destination (an incomplete, not running copy with the guest's
    UUID is removed), then fails with what happened and RV(rollback).
  - B(Idempotence) A guest that already runs on a destination (is defined there, for O(method=offline)) and no
    longer runs on the source is not a change.
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
  - kvmops.kvm.migration
attributes:
  check_mode:
    support: full
    description: Runs the preflight and the placement and reports what would happen; nothing moves.
  diff_mode:
    support: none
    description: A migration changes where a guest runs, not a definition; see RV(destination_uri).
options:
  name:
    description:
      - Name of the guest on the source.
    type: str
    required: true
  destination_uri:
    description:
      - libvirt URI of the destination hypervisor, as the machine that runs the module reaches it (and, with
        O(p2p=true), as the source libvirtd reaches it).
      - Named C(dest_uri) before 1.0.0; the alias C(dest_uri) is deprecated and will be removed in 2.0.0.
      - Exactly one of O(destination_uri) and O(dest_candidates) is required.
      - Checked like O(uri) before anything connects (allowed drivers and transports; C(ext) transports and
        C(command=)/C(netcat=) parameters only with O(uri_allow_ext=true)).
      - Refused when it names the source hypervisor. The URIs are compared once normalized (transport, user and
        query left out; no host, C(localhost), loopback addresses and this machine's names are the same host; a
        missing qemu path is C(/system)), and after connecting the hypervisor hostnames and host UUIDs (from the
        capabilities, else the SMBIOS system UUID) are compared too.
    type: str
    aliases: [dest_uri]
    version_added: 1.0.0
  dest_candidates:
    description:
      - libvirt URIs of candidate destinations. Each is preflighted; the passing one with the most free memory
        is chosen. Unreachable candidates are rejected, not fatal.
      - Each is checked like O(destination_uri). A candidate that is the source is rejected by the preflight and never
        connected to (a drain may list every host of a cluster); when every candidate is the source the module fails
        before connecting.
    type: list
    elements: str
  dest_name:
    description:
      - Name of the guest on the destination, a libvirt object name. Defaults to O(name).
    type: str
  method:
    description:
      - V(live) moves a running guest while it runs.
      - V(offline) moves the definition of a shut-off persistent guest (the disks must be shared).
      - Named C(mode) before 1.0.0 (C(mode) is a file mode in M(kvmops.kvm.kvm_pool) and M(kvmops.kvm.kvm_volume));
        the alias C(mode) is deprecated and will be removed in 2.0.0.
    type: str
    choices: [live, offline]
    default: live
    aliases: [mode]
    version_added: 1.0.0
  persistent:
    description:
      - Define the guest persistently on the destination (C(VIR_MIGRATE_PERSIST_DEST)). Always true for
        O(method=offline).
    type: bool
    default: true
  undefine_source:
    description:
      - Remove the persistent definition from the source after success (C(VIR_MIGRATE_UNDEFINE_SOURCE)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds after which O(timeout_action) is applied to a live migration that has not finished.
    type: int
  timeout_action:
    description:
      - V(abort) aborts the job and rolls back (the guest stays on the source).
      - V(suspend) pauses the guest so the migration finishes without more dirtying; the guest is resumed on the
        destination.
      - V(postcopy) switches to post-copy (implies C(VIR_MIGRATE_POSTCOPY), see O(postcopy)).
    type: str
    choices: [abort, suspend, postcopy]
    default: abort
notes:
  - All preflight problems and invalid option combinations are reported in one failure, before anything moves.
  - With local disks that only look shared (the same path on both hosts), libvirt refuses the migration unless
    O(unsafe=true).
seealso:
  - module: kvmops.kvm.kvm_migrate_guests
    description: Many guests, or every guest of a host, in one task, with placement and a concurrency bound.
  - name: drain_host.yml
    description: Empties a hypervisor with kvmops.kvm.kvm_migrate_guests (C(playbooks/drain_host.yml)).
    link: https://libvirt.org/migration.html
'''

EXAMPLES = r'''
- name: Live-migrate vm01 to hv02 over shared storage
  kvmops.kvm.kvm_migrate:
    uri: qemu+ssh://root@hv01/system
    name: vm01
    destination_uri: qemu+ssh://root@hv02/system

- name: Place vm01 on the best of three hosts, capped, aborting after 10 minutes
  kvmops.kvm.kvm_migrate:
    uri: qemu+ssh://root@hv01/system
    name: vm01
    dest_candidates:
      - qemu+ssh://root@hv02/system
      - qemu+ssh://root@hv03/system
      - qemu+ssh://root@hv04/system
    bandwidth: 500
    auto_converge: true
    timeout: 600
  register: moved

- name: Show where it went and why
  ansible.builtin.debug:
    msg: "{{ moved.placement.reason }}"

- name: Copy the disks to a host without shared storage
  kvmops.kvm.kvm_migrate:
    name: vm02
    destination_uri: qemu+tls://hv05/system
    copy_storage: all
    tls: true

- name: Move the definition of a shut-off guest
  kvmops.kvm.kvm_migrate:
    name: vm03
    destination_uri: qemu+ssh://root@hv02/system
    method: offline
'''

RETURN = r'''
name:
  description: The guest name on the source.
  returned: always
  type: str
dest_name:
  description: The guest name on the destination.
  returned: always
  type: str
uuid:
  description: The guest UUID.
  returned: when the guest is on the source
  type: str
source_uri:
  description: The source URI.
  returned: always
  type: str
destination_uri:
  description: The chosen destination (or where the guest already is).
  returned: when a destination passed the preflight, or the guest is already there
  type: str
method:
  description: V(live) or V(offline), as asked by O(method).
  returned: always
  type: str
  version_added: 1.0.0
mode:
  description:
    - V(live) or V(offline).
    - Deprecated, use RV(method); removed in 2.0.0.
  returned: always
  type: str
changes:
  description:
    - What the module changed (in check mode, would change), one entry each; empty when the guest is already on
      the destination.
    - On success, one entry with option V(destination_uri) and action V(migrate), scope V(live) for a live migration
      and V(config) for an offline one, C(before) the source URI and C(after) the destination URI.
    - On failure, what the roll-back changed (the same entries as RV(rollback.changes)).
  returned: always
  type: list
  elements: dict
  version_added: 1.0.0
  contains:
    scope:
      description: V(live) (a running guest), V(config) (a definition).
      type: str
    option:
      description: V(destination_uri) (the migration), V(state) (the guest resumed on the source), V(dest_name) (an
        incomplete copy removed from the destination).
      type: str
    action:
      description: V(migrate), V(resume), V(destroy incomplete copy), V(undefine incomplete copy).
      type: str
    before:
      description: The value before (the source URI, a state, the name of the copy).
      type: str
    after:
      description: The value after (the destination URI, a state; null for a removed copy).
      type: str
pending_restart:
  description: Options whose new value waits for a restart of the guest. Always empty for a migration; kept so that
    every kvmops.kvm module returns the same keys.
  returned: always
  type: list
  elements: str
  version_added: 1.0.0
msg:
  description: What happened (or would happen in check mode).
  returned: success
  type: str
flags:
  description: The C(VIR_MIGRATE_*) flags used (without the prefix).
  returned: when a migration runs or would run
  type: list
  elements: str
  sample: [LIVE, PERSIST_DEST, UNDEFINE_SOURCE, ABORT_ON_ERROR]
preflight:
  description: One report per destination, in the order given.
  returned: when the guest is on the source
  type: list
  elements: dict
  contains:
    uri:
      description: The destination URI.
      type: str
      returned: always
    ok:
      description: Whether it passed.
      type: bool
      returned: always
    problems:
      description: Every reason it cannot take the guest.
      type: list
      elements: str
      returned: always
    notes:
      description: Checks that passed with a remark or could not be made.
      type: list
      elements: str
      returned: always
    free_memory_bytes:
      description: Free memory of the destination.
      type: int
      returned: always
    hostname:
      description: Hostname of the destination.
      type: str
      returned: always
    existing_definition:
      description: An inactive definition of this guest (same name and UUID) is already on the destination.
      type: bool
      returned: when the destination was reachable
placement:
  description: The choice among O(dest_candidates).
  returned: when O(dest_candidates) is used and the guest is on the source
  type: dict
  contains:
    chosen:
      description: The chosen URI, null when none passed.
      type: str
      returned: always
    reason:
      description: Why it was chosen, and why each other candidate was rejected.
      type: str
      returned: always
elapsed_seconds:
  description: Wall time of the migration call.
  returned: when a migration ran
  type: float
progress:
  description: Progress numbers of the job (from the final statistics, else the last poll).
  returned: when a migration ran
  type: dict
  contains:
    elapsed_ms:
      description: Time the job took, as libvirt measured it.
      type: int
      returned: when libvirt reports it
    data_total:
      description: Bytes to transfer in total (memory and disks).
      type: int
      returned: when libvirt reports it
    data_processed:
      description: Bytes transferred.
      type: int
      returned: when libvirt reports it
    data_remaining:
      description: Bytes left.
      type: int
      returned: when libvirt reports it
    memory_iteration:
      description: Number of memory passes.
      type: int
      returned: when libvirt reports it
    memory_dirty_rate:
      description: Pages dirtied per second in the last pass (times RV(progress.memory_page_size) for bytes per second).
      type: int
      returned: when libvirt reports it
    memory_page_size:
      description: Size of a memory page of the guest, in bytes.
      type: int
      returned: when libvirt reports it
    auto_converge_throttle:
      description: Percentage by which auto-converge throttles the guest's vCPUs.
      type: int
      returned: when libvirt reports it (with O(auto_converge=true), once the throttle started)
    downtime_ms:
      description: How long the guest was paused at the switch-over.
      type: int
      returned: when libvirt reports it
    average_bandwidth_bps:
      description: data_processed divided by elapsed_ms, in bytes per second.
      type: int
      returned: when libvirt reports both
    wall_seconds:
      description: Wall time of the migration call, seen by the module.
      type: float
      returned: on success
    paused_ms:
      description:
        - How long the guest stayed paused after O(timeout_action=suspend) paused it, until the migration completed,
          measured by the module. libvirt's RV(progress.downtime_ms) may count only QEMU's final switch-over.
      type: int
      returned: on success, when the guest was paused by the timeout action
  sample: {elapsed_ms: 1830, data_total: 134750208, data_processed: 1408347, memory_iteration: 3, downtime_ms: 21}
job_stats:
  description: libvirt's statistics of the completed job, as C(virsh domjobinfo --completed) shows them.
  returned: on success of a live migration
  type: dict
samples:
  description: Snapshots of the running job (elapsed_ms, data_processed, data_remaining, memory_iteration,
    memory_dirty_rate, memory_bps, auto_converge_throttle), one per poll; the first one and up to 119 of the latest.
      On success the last one is the completed job, so even a migration shorter than one poll has a sample.
  returned: when a migration ran
  type: list
  elements: dict
events:
  description: Actions taken while the job ran (max downtime set, timeout action, post-copy switch).
  returned: when a migration ran
  type: list
  elements: str
rollback:
  description: What the roll-back did and verified after a failed or aborted migration.
  returned: failure of the migration itself
  type: dict
  contains:
    source_state:
      description: State of the guest on the source afterwards (V(missing) if it is gone).
      type: str
      returned: always
    source_definition_intact:
      description: The persistent definition on the source is unchanged (null for a transient guest).
      type: bool
      returned: always
    destination_clean:
      description: Nothing with the guest's UUID is on the destination (null when it could not be checked).
      type: bool
      returned: always
    changes:
      description: What the roll-back changed, as change entries (see RV(changes)).
      type: list
      elements: dict
      returned: always
      version_added: 1.0.0
    actions:
      description:
        - What the roll-back did or found, one line each.
        - Deprecated, use RV(rollback.changes); removed in 2.0.0.
      type: list
      elements: str
      returned: always
problems:
  description: Every preflight or option problem, prefixed with the destination URI.
  returned: when the preflight or the options fail
  type: list
  elements: str
source_defined:
  description: Whether a definition of the guest is left on the source.
  returned: on success
  type: bool
domain:
  description: The guest on the destination, in the shape kvm_info returns.
  returned: on success, unless in check mode
  type: dict
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import ARGUMENT_SPEC, MODULE_KWARGS, main as run_migrate


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, **MODULE_KWARGS)
    run_migrate(module)


if __name__ == '__main__':
    main()
