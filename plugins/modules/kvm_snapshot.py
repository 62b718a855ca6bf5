#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_snapshot
short_description: Create, revert to and delete snapshots of libvirt guests
version_added: 0.1.0
description:
  - Replaces C(virsh snapshot-create-as), C(snapshot-revert), C(snapshot-delete) and C(blockcommit).
  - Internal snapshots live inside the guest's qcow2 images; for a running guest they include its memory, so a
    revert brings back the running guest as it was. External disk-only snapshots (O(disk_only=true)) put a new
    qcow2 overlay on top of each disk, optionally with the filesystems frozen by the guest agent (O(quiesce=true)).
  - Deleting an internal snapshot removes it from the images. Deleting an external one merges its overlays back
    into the images below (active block commit, then pivot) while the guest runs, reports the commit in
    RV(commit), and removes the overlay files that no longer hold anything of their own.
  - Reverting discards what the guest did since the snapshot. When the guest is running or paused this needs
    O(force=true).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Reports what would change without any write (no snapshot, revert, commit or file removal).
  diff_mode:
    support: full
    description: The guest's snapshot list (name, location, state, parent, description; current marked) before and after.
options:
  guest:
    description:
      - Name of the guest (letters, digits and C(_), C(.), C(+), C(:), C(@) and C(-), not starting with C(.) or C(-)).
      - Called O(domain) before 1.0.0; the alias O(domain) is deprecated and will be removed in 2.0.0.
    type: str
    required: true
    aliases: [domain]
    version_added: 1.0.0
  name:
    description: Name of the snapshot (the same characters as a guest name, at most 200).
    type: str
    required: true
  description:
    description: Description of the snapshot, one line of at most 4096 characters without control characters. Changed in place on an existing snapshot.
    type: str
  state:
    description:
      - V(present) creates the snapshot when the guest has none of that name.
      - V(absent) deletes it (for an external snapshot, merges it back first).
      - V(current) reverts the guest to it. Nothing is done when it is already the current snapshot and the guest
        has been in the reverted state since (libvirt's state reason C(from_snapshot)); starting, stopping or
        restarting the guest afterwards makes the next run revert again.
    type: str
    choices: [present, absent, current]
    default: present
  memory:
    description:
      - Include the RAM of a running guest (internal snapshot). The default for a running guest; with QEMU an internal
        snapshot of a running guest always includes its memory, so V(false) is refused there unless O(disk_only=true).
      - V(true) is refused for a guest that is not running.
    type: bool
  disk_only:
    description: An external disk-only snapshot (new qcow2 overlays named by libvirt beside the images).
    type: bool
    default: false
  quiesce:
    description: Freeze the guest's filesystems through the QEMU guest agent during a O(disk_only) snapshot.
    type: bool
    default: false
  atomic:
    description: Either every disk is snapshotted or none (libvirt's C(--atomic)).
    type: bool
    default: false
  force:
    description: Allow a revert that discards the state of a running or paused guest (and libvirt's risky reverts).
    type: bool
    default: false
  commit_timeout:
    description: Seconds to wait for the block commit of each disk when an external snapshot is deleted (1 to 604800).
    type: int
    default: 600
notes:
  - Deleting an external snapshot needs the guest running, the snapshot to be the newest (no child snapshots) and
    each disk still to run on its overlay.
  - Reverting to an external snapshot is not supported by libvirt 9.0 and fails with libvirt's message.
'''

EXAMPLES = r'''
- name: Snapshot a running guest with its memory before an upgrade
  kvmops.kvm.kvm_snapshot:
    guest: vm01-centos7
    name: before-upgrade
    description: before yum update

- name: The upgrade failed - go back (the guest runs, so force)
  kvmops.kvm.kvm_snapshot:
    guest: vm01-centos7
    name: before-upgrade
    state: current
    force: true

- name: Consistent external disk-only snapshot for a backup
  kvmops.kvm.kvm_snapshot:
    guest: db01
    name: backup
    disk_only: true
    quiesce: true
    atomic: true

- name: Merge it back when the backup is done
  kvmops.kvm.kvm_snapshot:
    guest: db01
    name: backup
    state: absent
'''

RETURN = r'''
snapshot:
  description: The snapshot afterwards (empty when absent). Same keys as the entries of RV(snapshots).
  returned: always
  type: dict
snapshots:
  description: Every snapshot of the guest afterwards (predicted in check mode), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Snapshot name., type: str, returned: always}
    description: {description: Its description., type: str, returned: always}
    parent: {description: Name of the parent snapshot (null for the first)., type: str, returned: always}
    creation_time: {description: Creation time in seconds since the epoch (null when predicted)., type: int, returned: always}
    state: {description: "State of the guest in the snapshot (running, shutoff, disk-snapshot, ...).", type: str, returned: always}
    location: {description: V(internal) or V(external)., type: str, returned: always}
    memory: {description: Whether the snapshot holds the guest's memory., type: bool, returned: always}
    disk_only: {description: Whether it is a disk-only snapshot., type: bool, returned: always}
    current: {description: Whether it is the guest's current snapshot., type: bool, returned: always}
    disks: {description: "Per disk - target, snapshot kind (internal, external, no) and overlay file.", type: list, elements: dict, returned: always}
  sample:
    - name: before-upgrade
      description: yum update
      parent: null
      creation_time: 1732600000
      state: running
      location: internal
      memory: true
      disk_only: false
      current: true
      disks: [{target: vda, snapshot: internal, file: null}]
domain_state:
  description: State of the guest afterwards (running, shutoff, ...).
  returned: always
  type: str
changes:
  description:
    - What was changed (or would be in check mode), in order, one entry per change.
    - C(scope) is V(config) (a persistent definition), V(live) (a running object) or V(host) (files and
      directories on the hypervisor); C(option) names what changed, C(action) how; C(before) and C(after)
      are the values around it.
      Actions - V(create), V(delete) of the snapshot and V(set) of its O(description) (config); V(revert) and
      V(commit) of a disk (live); V(delete_overlay) of a committed overlay file (host).
  returned: always
  type: list
  elements: dict
  version_added: 1.0.0
  contains:
    scope: {description: "config, live or host.", type: str, returned: always}
    option: {description: The option or object the change is about., type: str, returned: always}
    action: {description: What was done., type: str, returned: always}
    before: {description: The value before (null when none)., type: raw, returned: always}
    after: {description: The value after (null when none)., type: raw, returned: always}
  sample: [{scope: config, option: snapshot, action: create, before: null, after: null}]
actions:
  description:
    - What was done (or would be in check mode), in order, one line each.
    - "Deprecated: use RV(changes); removed in 2.0.0."
  returned: always
  type: list
  elements: str
  sample: [create with memory]
pending_restart:
  description: Always empty (a snapshot needs no restart); the same key as every changing module of the collection.
  returned: always
  type: list
  elements: str
  version_added: 1.0.0
  sample: []
commit:
  description: Per disk, the finished block commit of a deleted external snapshot (target, top, base, bytes, done).
  returned: when an external snapshot was deleted
  type: list
  elements: dict
removed_overlays:
  description: Overlay files removed after their data was committed into the images below.
  returned: when an external snapshot was deleted
  type: list
  elements: str
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._snapshot import ARGUMENT_SPEC, main as run_snapshot


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_snapshot(module)


if __name__ == '__main__':
    main()
