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
    another volume (O(clone_from)), or an import (O(import_from)) of an image file on the host that runs the module,
    of an http(s) URL streamed into the pool, or of a volume of another pool, optionally verified with O(checksum).
  - O(export_to) downloads the volume into a file on the host that runs the module.
  - Everything the module creates is created by libvirt (a volume, written through libvirt's upload stream), so it
    works the same with a remote O(uri) such as C(qemu+ssh://root@hv/system); what only works on a local URI is
    refused on a remote one with the reason.
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
      - Create the volume from this image. Only used to create a volume; an existing volume is never overwritten.
      - An absolute path (or C(~/...)) - a file on the host that runs the module, uploaded through libvirt's upload
        stream (also to a remote O(uri)). The file is read as it is; a qcow2 image is checked with C(qemu-img check)
        when C(qemu-img) is installed there.
      - An C(http://) or C(https://) URL - streamed from the server into the pool in chunks, never stored whole in
        memory or on a disk of the host that runs the module. See O(validate_certs), O(url_username), O(timeout);
        proxies come from the C(http_proxy), C(https_proxy) and C(no_proxy) environment variables (O(use_proxy)).
        In check mode the URL is opened only to read the image's header (format and size).
      - "A volume of another pool, as V(pool/volume) (for example V(images/debian12.qcow2)) or as a dictionary
        C({pool: images, name: debian12.qcow2}); libvirt copies it (and converts it when O(format) differs).
        A volume of the same pool can also be given with O(clone_from). A volume a running guest uses is refused
        as a source (the guest may be writing to it)."
      - The format is read from the image's first bytes. Only standalone raw and qcow2 images are accepted; a qcow2
        image with a backing file, an external data file or encryption is refused, and so are other formats and
        compressed files (C(.xz), C(.gz), ...) unless O(format=raw) says the bytes are a raw disk.
      - A failed import (a broken download, a wrong O(checksum)) deletes the new volume again, so nothing is left behind.
      - Before 1.1.0 this option took only a local path, and only with a local O(uri).
    type: raw
  checksum:
    description:
      - The checksum the image given by O(import_from) must have, as V(sha256:<hex digest>) (also V(sha512:),
        V(sha384:) and V(sha1:)), or as V(sha256:<URL of a checksum file>) such as
        V(sha256:https://cloud.debian.org/images/cloud/bookworm/latest/SHA256SUMS); the line of the image's file
        name is used (GNU C(sha256sum) and BSD layouts).
      - Verified while the image is streamed; on a mismatch the new volume is deleted and the task fails.
      - When the volume exists already, nothing is downloaded, and the volume's content is hashed through libvirt's
        download stream and compared - unless a guest uses it (its content is expected to change then) or it is not
        a file; RV(checksum_check) says which. Another content is an error; the volume is never overwritten.
        A checksum file URL is fetched on every run (it is small).
    type: str
    version_added: 1.1.0
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https://) O(import_from) and O(checksum) URL.
      - Set V(false) only for a server you trust by other means (a self-signed lab server).
    type: bool
    default: true
    version_added: 1.1.0
  url_username:
    description: User name for HTTP basic authentication of O(import_from) and O(checksum) URLs.
    type: str
    version_added: 1.1.0
  url_password:
    description: Password for HTTP basic authentication (never logged).
    type: str
    version_added: 1.1.0
  force_basic_auth:
    description:
      - Send the basic authentication header with the first request instead of waiting for a 401.
      - The header goes to the URL's own scheme, host and port only; a redirect to another host is followed without it.
    type: bool
    default: false
    version_added: 1.1.0
  use_proxy:
    description: Use the proxy of the C(http_proxy)/C(https_proxy) environment variables for URLs (C(no_proxy) honoured).
    type: bool
    default: true
    version_added: 1.1.0
  timeout:
    description: Seconds to wait for the server of a URL, to connect and for each read (not for the whole download).
    type: int
    default: 10
    version_added: 1.1.0
  export_to:
    description:
      - Download the volume into this file on the host that runs the module (also from a remote O(uri)), through
        libvirt's download stream, with holes kept sparse.
      - The file is written under a temporary name in the same directory and renamed into place (never half written),
        with mode O(export_mode). A symbolic link at the path is refused, never followed; the directory must exist
        and be reached through no symbolic link (give its real path).
      - Nothing is written when the file there has the same content already (compared by SHA-256); a file with
        other content is replaced only with O(force=true). In check mode nothing is written.
      - An absolute path without C(..) components. Needs O(state=present); the volume is created first if needed.
      - A volume a running guest writes to is exported with a warning (the copy may be inconsistent).
    type: path
    version_added: 1.1.0
  export_mode:
    description: Mode of the O(export_to) file, an octal string such as V('0640'). Default V('0600') (owner only).
      A mode with the setuid, setgid or sticky bit is refused.
    type: raw
    version_added: 1.1.0
  shrink:
    description: Allow a smaller O(capacity) to shrink an existing volume. B(Loses the data past the new end.)
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), delete the volume even when a defined guest or an overlay uses it.
      - With O(export_to), replace a file with other content.
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
  - "With a remote O(uri): O(owner) and O(group) must be numbers (names would be looked up on the wrong host);
    O(backing) and O(clone_from) must be volumes libvirt knows there, not plain paths; O(mode), O(owner) and
    O(group) of an existing volume cannot be changed."
  - In a directory-like pool (dir, fs, netfs) an imported volume holds exactly the image's bytes, and libvirt reads
    its format from them; in other pools (logical, ...) it is created with the image's size first.
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

- name: Import a cloud image from a URL, verified with the distribution's checksum file
  kvmops.kvm.kvm_volume:
    pool: images
    name: debian12.qcow2
    import_from: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS

- name: The same on a remote hypervisor, from the controller
  kvmops.kvm.kvm_volume:
    uri: qemu+ssh://root@hv01.example.com/system
    pool: images
    name: debian12.qcow2
    import_from: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
  delegate_to: localhost

- name: Copy a golden image from another pool
  kvmops.kvm.kvm_volume:
    pool: vms
    name: web01.qcow2
    import_from: images/debian12.qcow2

- name: Download a volume into a file (0600, written atomically)
  kvmops.kvm.kvm_volume:
    pool: images
    name: db01.qcow2
    export_to: /srv/backup/db01.qcow2

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
transfer:
  description:
    - The import streamed in this run (O(import_from) as a file or URL), or null when nothing was streamed.
  returned: always
  type: dict
  version_added: 1.1.0
  contains:
    source: {description: The file or URL (without user name and password)., type: str, returned: success}
    bytes: {description: Bytes streamed into the volume., type: int, returned: success}
    seconds: {description: How long the stream took., type: float, returned: success}
    checksum: {description: "The digest of the streamed bytes with the O(checksum) algorithm (null without O(checksum)).", type: str, returned: success}
    progress:
      description:
        - The progress of a long import, one sample every 10 seconds (empty for a shorter one; at most 60, the first
          and the latest). Each sample is also written to the system log of the host that runs the module
          (the journal or syslog, identifier C(ansible-kvm_volume)) while the import runs.
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
      contains:
        seconds: {description: Seconds since the stream started., type: float}
        bytes: {description: Bytes streamed by then., type: int}
        percent: {description: Per cent of the image's size (null when the server sent no C(Content-Length))., type: float}
  sample: {source: "https://cloud.example.com/debian-12.qcow2", bytes: 343490560, seconds: 12.4, checksum: "sha256:3f0c...",
           progress: [{seconds: 10.0, bytes: 276824064, percent: 80.6}]}
export:
  description:
    - With O(export_to), the file and its digest; C(bytes) and C(seconds) are null when the file was up to date
      already. Null without O(export_to), or in check mode.
  returned: always
  type: dict
  version_added: 1.1.0
  contains:
    path: {description: The file., type: str, returned: success}
    bytes: {description: Bytes downloaded (holes included)., type: int, returned: success}
    seconds: {description: How long the download took., type: float, returned: success}
    checksum: {description: The SHA-256 of the file (V(sha256:...))., type: str, returned: success}
    progress:
      description: The progress of a long download, as in RV(transfer.progress) (absent when the file was up to date).
      type: list
      elements: dict
      returned: success
      version_added: 1.1.0
  sample: {path: /srv/backup/db01.qcow2, bytes: 21474836480, seconds: 48.2, checksum: "sha256:9b1e...", progress: []}
checksum_check:
  description:
    - "How O(checksum) was verified - V(stream) (while importing), V(source) (the source volume, before copying it),
      V(content) (the existing volume, hashed through libvirt), or C(skipped: ) and the reason (a guest uses the
      volume, or it is not a file). Null without O(checksum), and in check mode for a volume not created yet."
  returned: always
  type: str
  version_added: 1.1.0
  sample: content
changes:
  description:
    - What was changed (or would be in check mode), in order, one entry per change.
    - C(scope) is V(config) (a persistent definition), V(live) (a running object) or V(host) (files and
      directories on the hypervisor); C(option) names what changed, C(action) how; C(before) and C(after)
      are the values around it.
      Actions - V(create) of the volume, V(clone) (O(clone_from)), V(import) (O(import_from)), V(resize) of
      O(capacity) (live through a running guest), V(delete) (config); V(set) of O(mode), O(owner), O(group),
      O(export_mode), and V(export) (O(export_to)) (host).
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
