#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_migrate_guests
short_description: Migrate many guests, or empty a hypervisor, in one task, with placement and per-guest roll-back
version_added: 1.1.0
description:
  - Moves the guests named in O(guests), or every guest of the source (O(all_guests=true)), from the hypervisor named
    by O(uri) (the B(source)) to the best of O(dest_candidates), at most O(concurrency) at a time, in one module run.
    Running (and paused) guests are live-migrated; shut-off persistent guests have their definition moved offline
    (O(include_shutoff)).
  - Each guest goes through M(kvmops.kvm.kvm_migrate)'s checks and migration (the same implementation), with the options
    of this module applied to every guest; see M(kvmops.kvm.kvm_migrate) for the preflight, progress and roll-back.
  - B(Placement) Every guest is preflighted on every candidate (free memory, domain type, CPU model with libvirt's
    hypervisor CPU comparison, storage visible at the same path, networks; a host-passthrough guest's source host CPU is
    compared with the candidate's host CPU). The guests are then placed live ones first, largest memory first; each
    goes to the passing candidate with the most headroom once it and the guests placed there before it arrive. Headroom
    is the smaller of the free share of memory and the free share of vCPUs (vCPUs of the running guests, from libvirt,
    counted against the candidate's CPUs times O(max_vcpu_ratio), 4 when unset). A live guest must fit in the free
    memory left by the guests placed before it; its vCPUs may not exceed the candidate's CPUs.
  - B(Failures) are per guest. A guest whose migration fails is rolled back (it keeps running on the source, nothing is
    left on the destination) and the others go on; a guest no candidate can take is not touched. When any guest failed
    the task fails at the end, with every guest's result and the summary.
  - B(Idempotence) A guest that no longer runs on the source and runs on a candidate is unchanged; after a drain,
    O(all_guests=true) finds nothing to move.
  - B(Rebalance) With O(mode=rebalance) the hosts are O(uri) and O(dest_candidates) together, and the module moves
    running guests between them so that their free memory for guests (the host's memory less the maximum memory of
    the guests running there) evens out. The plan is greedy, each step the move that makes the free memory most even
    (see O(target_spread_mib) and O(max_moves)), never to a host where the guest's preflight (as above, CPU model,
    storage, networks, real free memory) failed; a guest is preflighted on a host only when the plan tries that move. The moves are made as above, at most
    O(concurrency) at a time, each rolled back on failure; check mode shows the plan (RV(rebalance)). Shut-off guests
    stay where they are.
  - This is a sibling of M(kvmops.kvm.kvm_migrate) rather than a list option of it, so that each module keeps one
    argument specification and one result shape; kvm_migrate is for one guest, with O(kvmops.kvm.kvm_migrate#module:dest_name)
    and an explicit O(kvmops.kvm.kvm_migrate#module:destination_uri).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
  - kvmops.kvm.migration
attributes:
  check_mode:
    support: full
    description: Inventory, preflight and placement run; every guest reports where it would go; nothing moves.
  diff_mode:
    support: none
    description: A migration changes where a guest runs, not a definition; see RV(summary).
options:
  mode:
    description:
      - V(move) moves the selected guests off the source (O(uri)) to the best of O(dest_candidates).
      - V(rebalance) evens out the free memory of O(uri) and O(dest_candidates) by moving running guests between them
        (see B(Rebalance) above). O(guests) then names running guests on any of those hosts, and O(all_guests=true)
        selects every running guest on them; O(include_shutoff) and O(offline_options) do not apply.
    type: str
    choices: [move, rebalance]
    default: move
    version_added: 1.1.0
  max_moves:
    description:
      - With O(mode=rebalance), the most migrations one run plans (1 to 1000); 10 when unset. A run that stops here
        says so in RV(rebalance.stop_reason), and the next run goes on from where it is.
    type: int
    version_added: 1.1.0
  target_spread_mib:
    description:
      - With O(mode=rebalance), the plan stops once the difference between the most and the least free memory for
        guests of the hosts is at most this many MiB; 1024 when unset. V(0) balances as far as any move helps.
    type: int
    version_added: 1.1.0
  guests:
    description:
      - Names of the guests to move, on the source (with O(mode=rebalance), running on any of the hosts). Give
        O(guests) or O(all_guests=true).
    type: list
    elements: str
  all_guests:
    description:
      - Move every guest defined or running on the source (a drain), except those in O(exclude). With
        O(mode=rebalance), every running guest of the hosts may move.
    type: bool
    default: false
  exclude:
    description:
      - Guest names to leave where they are.
    type: list
    elements: str
    default: []
  include_shutoff:
    description:
      - Move the definitions of shut-off persistent guests too (offline migration). When false, they are skipped
        (RV(summary.skipped)).
    type: bool
    default: true
  dest_candidates:
    description:
      - libvirt URIs of the destinations to choose from, each checked like O(uri). A candidate that is the source is
        rejected and never connected to; an unreachable one is rejected, not fatal.
    type: list
    elements: str
    required: true
  concurrency:
    description:
      - Migrations at the same time (1 to 32). Each runs on its own connections to the source and the destination.
    type: int
    default: 2
  max_vcpu_ratio:
    description:
      - Most vCPUs per host CPU a candidate may carry once a live guest arrives; unset, there is no limit and 4 is
        used to weigh vCPUs against memory in the placement.
    type: float
  offline_options:
    description:
      - Options for the offline moves of shut-off guests; each unset one takes the value of the option of the same name.
        The live-only options do not apply to offline moves.
    type: dict
    suboptions:
      persistent:
        description: Must stay true for an offline move.
        type: bool
      undefine_source:
        description: See O(undefine_source).
        type: bool
      p2p:
        description: See O(p2p).
        type: bool
      tunnelled:
        description: See O(tunnelled).
        type: bool
      unsafe:
        description: See O(unsafe).
        type: bool
  persistent:
    description:
      - Define each guest persistently on its destination (C(VIR_MIGRATE_PERSIST_DEST)).
    type: bool
    default: true
  undefine_source:
    description:
      - Remove each persistent definition from the source after success (C(VIR_MIGRATE_UNDEFINE_SOURCE)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds after which O(timeout_action) is applied to a live migration that has not finished (per guest).
    type: int
  timeout_action:
    description:
      - V(abort) rolls the guest back; V(suspend) pauses it so its migration finishes; V(postcopy) switches to post-copy.
    type: str
    choices: [abort, suspend, postcopy]
    default: abort
notes:
  - Option problems are reported in one failure before anything connects. The candidates are read concurrently.
  - Guests are read and placed before the first migration starts, so the placement counts the guests already placed on
    each candidate, not memory that other tools take meanwhile.
  - The guests of the source are untrusted input like any hypervisor data; their names only select guests.
seealso:
  - module: kvmops.kvm.kvm_migrate
  - name: drain_host.yml
    description: Empties a hypervisor with this module (C(playbooks/drain_host.yml)).
    link: https://libvirt.org/migration.html
'''

EXAMPLES = r'''
- name: Empty hv01 onto hv02 and hv03, two migrations at a time
  kvmops.kvm.kvm_migrate_guests:
    uri: qemu+ssh://root@hv01/system
    all_guests: true
    exclude: [build-cache]
    dest_candidates:
      - qemu+ssh://root@hv02/system
      - qemu+ssh://root@hv03/system
    concurrency: 2
    auto_converge: true
    timeout: 900
  register: drained

- name: Show where each guest went
  ansible.builtin.debug:
    var: drained.summary.where

- name: Even out the free memory of three hypervisors, at most 5 migrations (check mode shows the plan)
  kvmops.kvm.kvm_migrate_guests:
    mode: rebalance
    uri: qemu+ssh://root@hv01/system
    dest_candidates: [qemu+ssh://root@hv02/system, qemu+ssh://root@hv03/system]
    all_guests: true
    exclude: [build-cache]
    max_moves: 5
    target_spread_mib: 4096
  register: rebalanced

- name: Plan only (check mode), where would web01..web03 go
  kvmops.kvm.kvm_migrate_guests:
    uri: qemu+ssh://root@hv01/system
    guests: [web01, web02, web03]
    dest_candidates: [qemu+ssh://root@hv02/system, qemu+ssh://root@hv03/system]
    max_vcpu_ratio: 4
  check_mode: true
'''

RETURN = r'''
changes:
  description: Every guest's change entries (see M(kvmops.kvm.kvm_migrate)), in the order of RV(guests).
  returned: always
  type: list
  elements: dict
pending_restart:
  description: Always empty; kept so that every kvmops.kvm module returns the same keys.
  returned: always
  type: list
  elements: str
source_uri:
  description: The source URI.
  returned: always
  type: str
msg:
  description: How many guests moved (would move), were already there, were skipped and failed.
  returned: always
  type: str
guests:
  description:
    - One result per guest, in the order of O(guests) (by name with O(all_guests)), in M(kvmops.kvm.kvm_migrate)'s
      shape (C(name), C(uuid), C(method), C(destination_uri), C(placement), C(preflight), C(flags), C(progress),
      C(job_stats), C(samples), C(events), C(domain), C(source_defined), and on failure C(rollback) and C(problems)),
      plus C(changed), C(changes), C(msg), and C(failed) or C(skipped) when true.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: web01, method: live, changed: true, destination_uri: qemu+ssh://root@hv02/system,
       msg: migrated web01 (live) from qemu:///system to qemu+ssh://root@hv02/system in 2.1s}
summary:
  description: Where each guest went.
  returned: always
  type: dict
  contains:
    moved:
      description: Guests moved (in check mode, that would move).
      type: list
      elements: str
      returned: always
    unchanged:
      description: Guests already on a candidate.
      type: list
      elements: str
      returned: always
    failed:
      description: Guests that could not be moved; they stay on the source.
      type: list
      elements: str
      returned: always
    skipped:
      description: Shut-off guests left on the source (O(include_shutoff=false)).
      type: list
      elements: str
      returned: always
    where:
      description: Each guest's destination URI (null when failed or skipped).
      type: dict
      returned: always
    by_destination:
      description: The guests on each destination URI (moved or already there).
      type: dict
      returned: always
cpu_baseline:
  description:
    - The CPU that the source and every usable candidate can all give a guest (libvirt's C(baselineCPU) of their host
      CPUs). Informational; a guest defined with it (C(xml)) can move between all of them. Null when a host does not
      report its CPU or the source cannot compute a baseline.
  returned: always
  type: dict
  contains:
    model:
      description: The CPU model.
      type: str
      returned: when computed
    vendor:
      description: The CPU vendor.
      type: str
      returned: when computed
    xml:
      description: The baseline C(<cpu>) element.
      type: str
      returned: when computed
    hosts:
      description: The URIs of the hosts it covers.
      type: list
      elements: str
      returned: when computed
rebalance:
  description: With O(mode=rebalance), the plan and how far it went. Memory in bytes.
  returned: when O(mode=rebalance)
  type: dict
  version_added: 1.1.0
  contains:
    moves:
      description: The planned migrations in order (C(name), C(source), C(destination), C(memory_bytes),
        C(spread_after_bytes), C(reason)); RV(guests) tells how each went.
      type: list
      elements: dict
      returned: always
    hosts:
      description: Each usable host's free memory for guests before the run (C(free_bytes)), as planned
        (C(planned_free_bytes)), and read back after the moves (C(measured_free_bytes), null in check mode or when
        nothing moved).
      type: list
      elements: dict
      returned: always
    spread_before_bytes:
      description: The most less the least free memory for guests before the run.
      type: int
      returned: always
    planned_spread_bytes:
      description: The spread once the planned moves are made.
      type: int
      returned: always
    spread_after_bytes:
      description: The spread read back from the hosts after the moves; null in check mode or when nothing moved.
      type: int
      returned: always
    stop_reason:
      description: Why the plan stopped (balanced, O(max_moves) reached, or no allowed move helps).
      type: str
      returned: always
    refused:
      description: For each guest, the hosts a helpful move to was refused, and why (the preflight's problems, or
        memory and CPUs); each text starts with the host's URI.
      type: dict
      returned: always
candidates:
  description: What each candidate reported before the placement, and what was placed on it (with O(mode=rebalance),
    every host, O(uri) first, with C(guest_memory_bytes), the maximum memory of its running guests).
  returned: always
  type: list
  elements: dict
  contains:
    uri:
      description: The candidate URI.
      type: str
      returned: always
    ok:
      description: Reachable, not the source, and its node information was read.
      type: bool
      returned: always
    problems:
      description: Why it could take no guest.
      type: list
      elements: str
      returned: always
    free_memory_bytes:
      description: Free memory before the run.
      type: int
      returned: always
    memory_bytes:
      description: Memory of the host.
      type: int
      returned: always
    cpus:
      description: CPUs of the host.
      type: int
      returned: always
    vcpus:
      description: vCPUs of the guests running there before the run.
      type: int
      returned: always
    planned:
      description: Guests placed on it.
      type: list
      elements: str
      returned: when the placement ran
    planned_memory_bytes:
      description: Maximum memory of the live guests placed on it.
      type: int
      returned: when the placement ran
    planned_vcpus:
      description: vCPUs of the live guests placed on it.
      type: int
      returned: when the placement ran
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate_guests import ARGUMENT_SPEC, MODULE_KWARGS, main as run_migrate


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, **MODULE_KWARGS)
    run_migrate(module)


if __name__ == '__main__':
    main()
