#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_volume
short_description: Create, grow, clone, import and delete volumes (raw and qcow2 images) in a libvirt pool
version_added: 0.1.0
description:
  - Replaces C(qemu-img create), C(virsh vol-create-as), C(vol-clone), C(vol-upload), C(vol-resize) and C(vol-delete).
  - A new volume is empty (O(capacity)), a thin copy-on-write overlay on a backing image (O(backing)), a full copy of
    another volume (O(clone_from)) or a copy of a local image file (O(import_from)).
  - An existing volume is never overwritten. It is compared on format, virtual size and backing file as libvirt and
    qemu-img report them; a larger O(capacity) grows it (through the running guest when one uses it), a smaller one
    is refused unless O(shrink=true). A different format or backing file is an error, never a silent rewrite.
  - A volume is deleted only by O(state=absent) on that volume, and not when a defined guest uses it or another volume
    of the pool is an overlay on it, unless O(force=true).
author:
  - kvmops.kvm contributors (@kvmops)
extends_documentation_fragment:
  - kvmops.kvm.connection
attributes:
  check_mode:
    support: full
    description: Reports what would change without any write (nothing created, uploaded, resized or deleted).
  diff_mode:
    support: full
    description: Name, path, format, capacity and backing files before and after.
options:
  pool:
    description: Name of the pool holding the volume. It must be active.
    type: str
    required: true
  name:
    description:
      - Volume name (the file name in a directory pool); letters, digits and C(_), C(.), C(+), C(:), C(@) and C(-), not
        starting with C(.) or C(-).
      - The alias O(volume) is new in 1.0.0.
    type: str
    required: true
    aliases: [volume]
  state:
    description: V(present) creates or updates the volume; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - Virtual size, with libvirt's units (V(512MiB), V(10G), V(1.5GiB), V(2GB); a bare number is bytes).
      - Required for an empty new volume. With O(backing), O(clone_from) or O(import_from) it defaults to the size
        of that image and may not be smaller.
      - At most 64 PiB (qcow2's own limit).
      - On an existing volume, a larger value grows it, a smaller value is refused unless O(shrink=true).
    type: str
  format:
    description:
      - Image format. Defaults to V(qcow2) for a new volume, to the source's format with O(clone_from), and to the
        detected format with O(import_from) (a different value is refused). An overlay is always V(qcow2).
      - On an existing volume it is checked, never converted.
    type: str
    choices: [raw, qcow2]
  allocation:
    description:
      - V(sparse) allocates on write. V(full) preallocates the whole virtual size when the volume is created or grown
        (a fully allocated raw image; qcow2 gets C(preallocation=falloc)).
    type: str
    choices: [sparse, full]
    default: sparse
  backing:
    description:
      - Create a thin qcow2 overlay on this backing image - a volume name in the same pool, or an absolute path
        (without C(..) components).
      - On an existing volume, checked against its backing file.
    type: str
  backing_format:
    description: Format of O(backing). Detected from libvirt or qemu-img when not set; a mismatch is refused.
    type: str
    choices: [raw, qcow2]
  clone_from:
    description: Create the volume as a full copy of this volume (a name in the same pool, or the absolute path of a libvirt volume, without C(..)).
    type: str
  import_from:
    description:
      - Create the volume from this local image file (on the managed host, local URI only), uploaded through libvirt
        with holes kept sparse.
      - The format is detected with C(qemu-img info); only standalone raw and qcow2 images are accepted, and a qcow2
        image must pass C(qemu-img check).
      - An absolute path without C(..) components. The module writes no file itself; libvirt creates the volume.
    type: path
  shrink:
    description: Allow a smaller O(capacity) to shrink an existing volume. B(Loses the data past the new end.)
    type: bool
    default: false
  force:
    description: With O(state=absent), delete the volume even when a defined guest or an overlay uses it.
    type: bool
    default: false
  owner:
    description:
      - Owner (user name or uid) of the image file. Set on creation; an existing local file is changed with chown.
    type: str
  group:
    description: Group (name or gid) of the image file, like O(owner).
    type: str
  mode:
    description: Mode of the image file, an octal string such as V('0600') (quote it in YAML), like O(owner).
    type: raw
notes:
  - O(backing), O(clone_from) and O(import_from) are mutually exclusive and are only used to create a volume.
  - RV(backing_chain) comes from C(qemu-img info --backing-chain), so only for a local O(uri).
'''

EXAMPLES = r'''
- name: A 20 GiB qcow2 disk
  kvmops.kvm.kvm_volume:
    pool: images
    name: vm01-data.qcow2
    capacity: 20G

- name: A fully allocated raw disk
  kvmops.kvm.kvm_volume:
    pool: images
    name: db01-log.raw
    format: raw
    capacity: 4G
    allocation: full

- name: A thin overlay on a golden image
  kvmops.kvm.kvm_volume:
    pool: images
    name: web01.qcow2
    backing: centos7-golden.qcow2
    capacity: 40G

- name: Import a downloaded cloud image
  kvmops.kvm.kvm_volume:
    pool: images
    name: debian12.qcow2
    import_from: /srv/isos/debian-12-genericcloud-amd64.qcow2

- name: Grow a disk (also while the guest runs)
  kvmops.kvm.kvm_volume:
    pool: images
    name: vm01-data.qcow2
    capacity: 30G

- name: Delete a disk no guest uses
  kvmops.kvm.kvm_volume:
    pool: images
    name: scratch.qcow2
    state: absent
'''

RETURN = r'''
volume:
  description:
    - The volume afterwards, in the shape of kvm_info's volume entries (RV(ignore:pools[].volumes)).
    - In check mode for a volume not created yet, the predicted values (key and allocation null).
    - With O(state=absent), the volume as it was before deletion (empty when it did not exist).
  returned: always
  type: dict
  contains:
    name: {description: Volume name., type: str, returned: always}
    path: {description: Path of the image., type: str, returned: always}
    key: {description: libvirt's volume key., type: str, returned: always}
    type: {description: "file, block, dir, network, ...", type: str, returned: always}
    format: {description: "raw, qcow2, ...", type: str, returned: always}
    capacity: {description: Virtual size in bytes., type: int, returned: always}
    allocation: {description: Allocated bytes on the host., type: int, returned: always}
    backing:
      description: The backing chain as libvirt reports it (path and format of each backing image).
      type: list
      elements: dict
      returned: always
  sample:
    name: web01.qcow2
    path: /var/lib/libvirt/images/web01.qcow2
    key: /var/lib/libvirt/images/web01.qcow2
    type: file
    format: qcow2
    capacity: 42949672960
    allocation: 200704
    backing: [{path: /var/lib/libvirt/images/centos7-golden.qcow2, format: qcow2}]
backing_chain:
  description: The full backing chain below the image from C(qemu-img info --backing-chain) (local URI only).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/libvirt/images/centos7-golden.qcow2, format: qcow2, virtual_size: 10737418240}]
changes:
  description:
    - What was changed (or would be in check mode), in order, one entry per change.
    - C(scope) is V(config) (a persistent definition), V(live) (a running object) or V(host) (files and
      directories on the hypervisor); C(option) names what changed, C(action) how; C(before) and C(after)
      are the values around it.
      Actions - V(create) of the volume, V(clone) (O(clone_from)), V(import) (O(import_from)), V(resize) of
      O(capacity) (live through a running guest), V(delete) (config); V(set) of O(mode), O(owner), O(group) (host).
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
  sample: [{scope: config, option: volume, action: create, before: null, after: null}]
actions:
  description:
    - What was done (or would be in check mode), in order, one line each.
    - "Deprecated: use RV(changes); removed in 2.0.0."
  returned: always
  type: list
  elements: str
  sample: [create]
pending_restart:
  description: Always empty (a volume needs no restart); the same key as every changing module of the collection.
  returned: always
  type: list
  elements: str
  version_added: 1.0.0
  sample: []
'''

from ansible_collections.kvmops.kvm.plugins.module_utils._client import kvm_module
from ansible_collections.kvmops.kvm.plugins.module_utils._volume import ARGUMENT_SPEC, main as run_volume


def main():
    module = kvm_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_volume(module)


if __name__ == '__main__':
    main()
