#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_pool
short_description: Define, build, start, stop and remove libvirt storage pools
version_added: 0.1.0
description:
  - Manages a libvirt storage pool of type V(dir), V(fs) (a block device with a filesystem), V(netfs) (an NFS export
    mounted at the target path, the libvirt-managed shared storage migration wants), V(logical) (an LVM volume group)
    or V(iscsi). Replaces C(virsh pool-define), C(pool-build), C(pool-start), C(pool-autostart), C(pool-destroy),
    C(pool-delete) and C(pool-undefine).
  - Only what is specified is compared with libvirt's definition; libvirt's own defaults never count as a change.
    A changed definition of an existing pool is redefined (its UUID kept). An active pool keeps running with its old
    definition until it is restarted (RV(pending_restart) names the options), or restarted at once with O(restart=if_needed).
  - Nothing is deleted unless asked. O(state=absent) stops and undefines the pool and keeps its data;
    the volumes and the pool's directory, filesystem or volume group are deleted only with O(delete_data=true).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Reports what would change without any write (no define, build, mkdir, start or stop).
  diff_mode:
    support: full
    description: The run state and the pool definition before and after.
options:
  name:
    description:
      - Name of the pool (letters, digits and C(_), C(.), C(+), C(:), C(@) and C(-), not starting with C(.) or C(-), at
        most 200 characters).
      - The alias O(pool) is new in 1.0.0.
    type: str
    required: true
    aliases: [pool]
  state:
    description:
      - V(present) defines the pool and leaves its run state alone (a new pool stays stopped).
      - V(active) defines and starts it; V(inactive) defines and stops it.
      - V(absent) stops and undefines it, keeping its data unless O(delete_data=true).
      - The default was V(active) before 1.0.0; it is V(present) now, as for M(kvmops.kvm.kvm_network) and
        M(kvmops.kvm.kvm_domain).
    type: str
    choices: [present, active, inactive, absent]
    default: present
  type:
    description:
      - Pool type. Required to define a new pool; an existing pool's type cannot be changed.
    type: str
    choices: [dir, fs, netfs, logical, iscsi]
  path:
    description:
      - Target path. The directory of a V(dir) pool, the mount point of V(fs) and V(netfs) pools (required for these
        three). Optional for V(logical) (libvirt uses C(/dev/<volume group>)) and V(iscsi)
        (for example C(/dev/disk/by-path)).
      - An absolute path without C(..) components or control characters (repeated slashes and C(.) are normalized);
        refused before anything is defined or built.
    type: path
  source:
    description:
      - Where the pool's storage comes from. Which sub-options apply depends on O(type); any other is rejected.
    type: dict
    suboptions:
      host:
        description: NFS server (V(netfs), required) or iSCSI portal (V(iscsi), required), a host name or an IP address.
        type: str
      port:
        description: Port of O(source.host).
        type: int
      dir:
        description: Exported directory on the NFS server (V(netfs), required), an absolute path without C(..) (for C(cifs), the share name).
        type: str
      devices:
        description:
          - V(fs) - the one block device holding the filesystem (required).
          - V(logical) - the physical volumes of the volume group (required with O(build=true)).
          - V(iscsi) - the one target IQN (libvirt's source device path, required).
          - Devices are absolute paths without C(..); an IQN is an iSCSI name (C(iqn.YYYY-MM.domain:name)).
        type: list
        elements: str
      name:
        description: Volume group name of a V(logical) pool. Defaults to O(name).
        type: str
      format:
        description:
          - V(fs) - filesystem type (V(auto), V(ext4), V(xfs), ...).
          - V(netfs) - V(nfs) (default), V(auto), V(glusterfs) or V(cifs).
          - V(logical) - V(lvm2) only.
        type: str
      initiator:
        description: Initiator IQN for an V(iscsi) pool (an iSCSI name).
        type: str
  owner:
    description:
      - Owner (user name or uid) of the target directory. Names are resolved on the managed host.
      - Changed on the directory itself, never through a symlink.
    type: str
  group:
    description: Group (name or gid) of the target directory. Names are resolved on the managed host.
    type: str
  mode:
    description: Mode of the target directory, an octal string such as V('0750') (quote it in YAML).
    type: raw
  autostart:
    description: Whether libvirt starts the pool when it starts. Left alone when not set.
    type: bool
  build:
    description:
      - Create what the pool needs when the pool is first defined, or when the target directory of an inactive V(dir),
        V(fs) or V(netfs) pool is missing on a local URI - the directory (with O(owner), O(group), O(mode)),
        the filesystem of an V(fs) pool (C(mkfs)), the volume group of a V(logical) pool.
      - Refuses to overwrite a device that already holds a filesystem or volume group label unless O(overwrite=true).
    type: bool
    default: false
  overwrite:
    description: Let O(build) format a device that already holds data. B(Destroys that data.)
    type: bool
    default: false
  refresh:
    description:
      - Rescan the volumes of an active pool (C(virsh pool-refresh)). Not reported as a change; skipped in check mode.
    type: bool
    default: false
  restart:
    description:
      - V(if_needed) restarts an active pool whose definition changed, so the change takes effect now.
      - V(never) leaves it running with the old definition and reports RV(pending_restart).
    type: str
    choices: [never, if_needed]
    default: never
  delete_data:
    description:
      - With O(state=absent), delete every volume of the pool and the pool's storage (C(virsh pool-delete) - the
        directory, or the volume group and its physical volume labels). An inactive pool is started to list its volumes.
      - Refused when a defined guest uses one of the volumes, unless O(force=true). Not supported for V(iscsi).
    type: bool
    default: false
  force:
    description: With O(delete_data=true), delete volumes even when defined guests use them.
    type: bool
    default: false
notes:
  - In check mode, O(build) of a V(fs) or V(logical) pool cannot know whether the device already holds data; the real
    run refuses it then (unless O(overwrite=true)) and undefines the pool it has just defined.
  - Owner and group names are resolved on the host the module runs on; with a remote O(uri) a name is refused (it would be
    looked up on the wrong host; refused since 1.1.0), give numeric ids.
'''

EXAMPLES = r'''
- name: A directory pool, built, started and autostarted
  kvmops.kvm.kvm_pool:
    name: images
    type: dir
    path: /var/lib/libvirt/images
    mode: '0711'
    build: true
    state: active
    autostart: true

- name: NFS shared storage for migration, mounted by libvirt
  kvmops.kvm.kvm_pool:
    name: shared
    type: netfs
    source:
      host: nfs01.example.com
      dir: /exports/vms
    path: /var/lib/libvirt/shared
    build: true
    state: active
    autostart: true

- name: An LVM volume group on a spare disk (refuses a disk that holds data)
  kvmops.kvm.kvm_pool:
    name: vg_guests
    type: logical
    source:
      devices: [/dev/sdb]
    build: true
    state: active

- name: Remove a pool but keep its images
  kvmops.kvm.kvm_pool:
    name: old
    state: absent

- name: Remove a pool and everything in it
  kvmops.kvm.kvm_pool:
    name: scratch
    state: absent
    delete_data: true
'''

RETURN = r'''
pool:
  description:
    - The pool afterwards, in the shape of kvm_info's RV(ignore:pools) entries.
    - In check mode for a pool not defined yet, the predicted definition with null sizes and no uuid.
    - With O(state=absent), the pool as it was before removal (empty when it did not exist).
  returned: always
  type: dict
  contains:
    name: {description: Pool name., type: str, returned: always}
    uuid: {description: Pool UUID., type: str, returned: always}
    type: {description: "dir, fs, netfs, logical, iscsi.", type: str, returned: always}
    state: {description: "inactive, building, running, degraded, inaccessible.", type: str, returned: always}
    active: {description: Started., type: bool, returned: always}
    autostart: {description: Started with libvirt., type: bool, returned: always}
    persistent: {description: Defined., type: bool, returned: always}
    capacity: {description: Bytes., type: int, returned: always}
    allocation: {description: Bytes., type: int, returned: always}
    available: {description: Bytes., type: int, returned: always}
    target_path: {description: Target path., type: str, returned: always}
    source: {description: "Source host, dir, device, name and format.", type: dict, returned: always}
    volumes:
      description: Volumes of an active pool (name, path, key, type, format, capacity, allocation, backing).
      type: list
      elements: dict
      returned: always
  sample:
    name: images
    type: dir
    state: running
    active: true
    autostart: true
    persistent: true
    capacity: 270553174016
    allocation: 25055850496
    available: 245497323520
    target_path: /var/lib/libvirt/images
    volumes: []
changes:
  description:
    - What was changed (or would be in check mode), in order, one entry per change.
    - C(scope) is V(config) (a persistent definition), V(live) (a running object) or V(host) (files and
      directories on the hypervisor); C(option) names what changed, C(action) how; C(before) and C(after)
      are the values around it.
      Actions - V(define), V(redefine), V(undefine) (config); V(start), V(stop) (live); V(build), V(set) of
      O(mode), O(owner), O(group), V(delete) of the pool data (host); V(delete) of a volume (config).
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
  sample: [{scope: config, option: definition, action: define, before: null, after: null}]
actions:
  description:
    - What was done (or would be in check mode), in order, one line each.
    - "Deprecated: use RV(changes); removed in 2.0.0."
  returned: always
  type: list
  elements: str
  sample: [define, build, start, autostart]
pending_restart:
  description:
    - The options whose changed definition waits for a restart of the active pool (for example V(path) or
      V(source.host)); empty when none.
    - Before 1.0.0 this was a boolean.
  returned: always
  type: list
  elements: str
  sample: [path]
deleted_volumes:
  description: Names of the volumes deleted with O(delete_data=true).
  returned: when O(state=absent) and the pool existed
  type: list
  elements: str
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._pool import ARGUMENT_SPEC, main as run_pool


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_pool(module)


if __name__ == '__main__':
    main()
