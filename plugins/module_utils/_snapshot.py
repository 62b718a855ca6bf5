# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_snapshot: guest snapshots (internal with or without RAM, external disk-only).

The snapshot XML model: a ``<domainsnapshot>`` with name, description and,
for disk-only snapshots, libvirt's own choice of overlay files. Facts of every
snapshot of the guest come from libvirt's snapshot XML.
"""

from __future__ import annotations

import os
import time

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import DOMAIN_STATES, STATE_REASONS
from ansible_collections.kvmops.kvm.plugins.module_utils._storage import StorageManager, delete_image, volume_at_path
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, find_text, parse

ARGUMENT_SPEC = dict(
    guest=dict(type='str', required=True, aliases=['domain'],
               deprecated_aliases=[dict(name='domain', version='2.0.0', collection_name='kvmops.kvm')]),
    name=dict(type='str', required=True),
    description=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent', 'current']),
    memory=dict(type='bool'),
    disk_only=dict(type='bool', default=False),
    quiesce=dict(type='bool', default=False),
    atomic=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
    commit_timeout=dict(type='int', default=600),
)

AGENT_CHANNEL = 'org.qemu.guest_agent.0'
MAX_DESCRIPTION = 4096
MAX_COMMIT_TIMEOUT = 7 * 24 * 3600  # seconds


# ------------------------------------------------------------------ facts
def snapshot_xml_facts(root):
    """One snapshot as the module returns it, from libvirt's snapshot XML."""
    disks = []
    for disk in root.findall('disks/disk'):
        source = disk.find('source')
        disks.append(dict(target=disk.get('name'), snapshot=disk.get('snapshot'),
                          file=source.get('file') if source is not None else None))
    memory = root.find('memory')
    memory_kind = memory.get('snapshot') if memory is not None else None
    state = find_text(root, 'state')
    external = memory_kind == 'external' or any(d['snapshot'] == 'external' for d in disks)
    creation = find_text(root, 'creationTime')
    return dict(
        name=find_text(root, 'name'),
        description=find_text(root, 'description'),
        parent=find_text(root, 'parent/name'),
        creation_time=int(creation) if creation and creation.isdigit() else None,
        state=state,
        location='external' if external else 'internal',
        memory=state in ('running', 'paused') and memory_kind != 'no',
        disk_only=state == 'disk-snapshot',
        disks=disks,
    )


def snapshot_list(client, dom):
    """Every snapshot of the guest, oldest first, marking the current one."""
    out = []
    with client.errors('snapshots of %s' % dom.name()):
        for snap in dom.listAllSnapshots(0):
            facts = snapshot_xml_facts(parse(snap.getXMLDesc(0), 'snapshot XML'))
            facts['current'] = bool(snap.isCurrent(0))
            out.append(facts)
    return sorted(out, key=lambda s: (s['creation_time'] or 0, s['name']))


def _render(snapshots):
    lines = []
    for snap in snapshots:
        lines.append('%s%s: %s, %s, parent %s%s\n' % (
            '* ' if snap.get('current') else '  ', snap['name'], snap['location'], snap['state'],
            snap['parent'] or '-', (', "%s"' % snap['description']) if snap.get('description') else ''))
    return ''.join(lines)


# ------------------------------------------------------------------ manager
class SnapshotManager(StorageManager):

    def __init__(self, module, client):
        super(SnapshotManager, self).__init__(
            module, client, 'snapshot %s of %s' % (module.params['name'], module.params['guest']))
        self.extra = {}

    def validate(self):
        p = self.params
        if p['quiesce'] and not p['disk_only']:
            raise KvmError('quiesce needs disk_only: true (only external disk-only snapshots can be quiesced)')
        if p['memory'] and p['disk_only']:
            raise KvmError('memory: true and disk_only: true exclude each other')
        valid.object_name(self.guest_option(), p['guest'], 'guest name')
        valid.object_name('name', p['name'], 'snapshot name')
        if p.get('description') is not None:
            valid.text('description', p['description'], max_length=MAX_DESCRIPTION, allow_empty=True)
        valid.count('commit_timeout', p['commit_timeout'], 1, MAX_COMMIT_TIMEOUT)

    def guest_option(self):
        """The name the user gave the guest option (``domain`` is its deprecated alias), for messages."""
        return 'domain' if self.params.get('domain') is not None else 'guest'

    def run(self):
        self.validate()
        dom = self.client.find_domain(self.params['guest'])
        if dom is None:
            raise KvmError('%s: domain %s does not exist' % (self.guest_option(), self.params['guest']))
        before = snapshot_list(self.client, dom)
        snap = self.find(dom)
        state = self.params['state']
        if state == 'present':
            self.present(dom, snap)
        elif state == 'absent':
            self.absent(dom, snap, before)
        else:
            self.current(dom, snap)
        after = before if self.check else snapshot_list(self.client, dom)
        if self.check:
            after = self.predict(before)
        mine = [s for s in after if s['name'] == self.params['name']]
        with self.client.errors('domain %s' % dom.name()):
            domain_state = DOMAIN_STATES.get(dom.state()[0], 'unknown')
        self.diff(_render(before), _render(after))
        return self.result(snapshots=after, snapshot=mine[0] if mine else {}, domain_state=domain_state, **self.extra)

    def find(self, dom):
        try:
            return dom.snapshotLookupByName(self.params['name'], 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return None
            raise KvmError(self.client.describe_error(exc, self.what))

    def predict(self, before):
        """The snapshot list check mode expects afterwards (creation time unknown)."""
        name = self.params['name']
        after = [dict(s) for s in before]
        if self.params['state'] == 'absent':
            return [s for s in after if s['name'] != name]
        if self.params['state'] == 'current':
            for snap in after:
                snap['current'] = snap['name'] == name
            return after
        if any(s['name'] == name for s in after):
            for snap in after:
                if snap['name'] == name and self.params['description'] is not None:
                    snap['description'] = self.params['description']
            return after
        parent = [s['name'] for s in after if s.get('current')]
        for snap in after:
            snap['current'] = False
        disk_only = self.params['disk_only']
        after.append(dict(name=name, description=self.params['description'], parent=parent[0] if parent else None,
                          creation_time=None, state='disk-snapshot' if disk_only else self.expected_state,
                          location='external' if disk_only else 'internal',
                          memory=self.expected_state in ('running', 'paused') and not disk_only,
                          disk_only=disk_only, disks=[], current=True))
        return after

    # -- present -------------------------------------------------------------
    def present(self, dom, snap):
        p = self.params
        if snap is not None:
            facts = snapshot_xml_facts(parse(snap.getXMLDesc(0), 'snapshot XML'))
            if p['disk_only'] and not facts['disk_only']:
                raise KvmError('%s exists and is not a disk-only snapshot' % self.what)
            if p['memory'] and not facts['memory']:
                raise KvmError('%s exists without memory state' % self.what)
            if p['description'] is not None and (facts['description'] or '') != p['description']:
                root = parse(snap.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE), 'snapshot XML')
                desc = root.find('description')
                if desc is None:
                    desc = etree.Element('description')
                    root.insert(1, desc)
                desc.text = p['description']
                flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
                if snap.isCurrent(0):
                    flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
                self.record('config', 'description', 'set', 'set description', before=facts['description'],
                            after=p['description'])
                self.write('set description', dom.snapshotCreateXML, etree.tostring(root, encoding='unicode'), flags)
            return
        with self.client.errors('domain %s' % dom.name()):
            running = bool(dom.isActive())
            self.expected_state = DOMAIN_STATES.get(dom.state()[0], 'shutoff')
            dom_root = parse(dom.XMLDesc(0), 'domain XML')
        root = etree.Element('domainsnapshot')
        etree.SubElement(root, 'name').text = p['name']
        if p['description'] is not None:
            etree.SubElement(root, 'description').text = p['description']
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC if p['atomic'] else 0
        if p['disk_only']:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            if p['quiesce']:
                if not running:
                    raise KvmError('quiesce needs a running guest (the guest agent freezes its filesystems)')
                if not dom_root.xpath("devices/channel/target[@name='%s']" % AGENT_CHANNEL):
                    raise KvmError('quiesce needs a guest agent: domain %s has no %s channel' % (dom.name(), AGENT_CHANNEL))
                flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
            self.record('config', 'snapshot', 'create', 'create disk-only', after=p['name'], location='external',
                        memory=False)
            self.write('create disk-only', dom.snapshotCreateXML, etree.tostring(root, encoding='unicode'), flags)
            return
        if running and p['memory'] is False:
            raise KvmError('an internal snapshot of running guest %s always includes its memory; '
                           'set disk_only: true for a disk-only snapshot, or shut the guest down' % dom.name())
        if not running and p['memory']:
            raise KvmError('memory: true needs a running guest; %s is %s' % (dom.name(), self.expected_state))
        for disk in dom_root.findall('devices/disk'):
            if disk.get('device', 'disk') != 'disk' or disk.find('readonly') is not None:
                continue
            fmt = find_text(disk, 'driver/@type')
            if fmt and fmt != 'qcow2':
                raise KvmError('an internal snapshot needs qcow2 disks; disk %s of %s is %s (use disk_only: true)'
                               % (find_text(disk, 'target/@dev'), dom.name(), fmt))
        self.record('config', 'snapshot', 'create', 'create with memory' if running else 'create', after=p['name'],
                    location='internal', memory=running)
        self.write('create', dom.snapshotCreateXML, etree.tostring(root, encoding='unicode'), flags)

    # -- current -------------------------------------------------------------
    def current(self, dom, snap):
        if snap is None:
            raise KvmError('%s does not exist; nothing to revert to' % self.what)
        with self.client.errors('domain %s' % dom.name()):
            state, reason = dom.state()
            state_name = DOMAIN_STATES.get(state, 'unknown')
            reasons = STATE_REASONS.get(state_name, [])
            reason_name = reasons[reason] if 0 <= reason < len(reasons) else 'unknown'
            is_current = bool(snap.isCurrent(0))
            active = bool(dom.isActive())
        if is_current and reason_name == 'from_snapshot':
            return  # reverted to it and not restarted since
        if active and not self.params['force']:
            raise KvmError('reverting %s to snapshot %s discards its current %s state; set force: true to revert anyway'
                           % (dom.name(), self.params['name'], state_name))
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE if self.params['force'] else 0
        self.record('live', 'state', 'revert', 'revert', before=state_name, after=self.params['name'])
        self.write('revert', dom.revertToSnapshot, snap, flags)

    # -- absent --------------------------------------------------------------
    def absent(self, dom, snap, snapshots):
        if snap is None:
            return
        facts = [s for s in snapshots if s['name'] == self.params['name']][0]
        if facts['location'] == 'internal':
            self.record('config', 'snapshot', 'delete', 'delete', before=self.params['name'])
            self.write('delete', snap.delete, 0)
            return
        self.delete_external(dom, snap, facts, snapshots)

    def delete_external(self, dom, snap, facts, snapshots):
        """Merge an external snapshot's overlays back (active block commit + pivot), then drop it."""
        children = [s['name'] for s in snapshots if s['parent'] == facts['name']]
        if children:
            raise KvmError('%s has child snapshots (%s); delete those first' % (self.what, ', '.join(children)))
        with self.client.errors('domain %s' % dom.name()):
            running = bool(dom.isActive())
            live = parse(dom.XMLDesc(0), 'domain XML')
        if not running:
            raise KvmError('%s is external; merging it back needs the guest running (libvirt %s cannot delete '
                           'external snapshots of a shut-off guest)' % (self.what, 'here'))
        current_files = {}
        for disk in live.findall('devices/disk'):
            current_files[find_text(disk, 'target/@dev')] = find_text(disk, 'source/@file')
        commits = []
        for disk in facts['disks']:
            if disk['snapshot'] != 'external':
                continue
            if current_files.get(disk['target']) != disk['file']:
                raise KvmError('%s: disk %s no longer runs on the snapshot overlay %s; cannot merge it back'
                               % (self.what, disk['target'], disk['file']))
            commits.append(disk)
        progress = []
        for disk in commits:
            self.record('live', 'disks', 'commit', 'commit %s' % disk['target'], before=disk['file'], target=disk['target'])
            done = self.write('commit %s' % disk['target'], self.block_commit, dom, disk['target'], disk['file'])
            if done is not None:
                progress.append(done)
        self.record('config', 'snapshot', 'delete', 'delete', before=self.params['name'])
        self.write('delete', snap.delete, libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        removed = []
        local = is_local_uri(self.client.uri)
        for disk in commits:
            path = disk['file']
            if not path:
                continue
            # A file is only ever looked at, or removed, on the module's host when that host is the hypervisor;
            # on a remote URI an overlay is reached through libvirt (its pool) or left where it is.
            vol = None if local else volume_at_path(self.client, path)[1]
            if local and not os.path.isfile(path):
                continue
            if not local and vol is None:
                self.module.warn('%s: the committed overlay %s is in no storage pool of the remote host, so it is left '
                                 'there; remove it on the hypervisor' % (self.what, path))
                continue
            self.record('host', 'disks', 'delete_overlay', before=path, target=disk['target'])
            delete_image(self.changes, self.client, path=path, vol=vol, local=local, option='disks')
            if not self.check:
                removed.append(path)
        self.extra = dict(commit=progress, removed_overlays=removed)

    def block_commit(self, dom, target, top):
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
        self.client.call('%s: block commit %s' % (self.what, target), dom.blockCommit, target, None, None, 0, flags)
        deadline = time.time() + self.params['commit_timeout']
        info = {}
        while True:
            info = self.client.call('%s: block job %s' % (self.what, target), dom.blockJobInfo, target, 0)
            if info and info.get('end', 0) > 0 and info.get('cur') == info.get('end'):
                # Active commit reaches "ready" when cur == end; pivot switches the disk to the base image.
                try:
                    self.client.call('%s: pivot %s' % (self.what, target), dom.blockJobAbort, target,
                                     libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                    break
                except KvmError:
                    if time.time() > deadline:
                        raise
            if not info and time.time() > deadline:
                raise KvmError('%s: block commit of %s vanished before it was ready' % (self.what, target))
            if time.time() > deadline:
                try:
                    dom.blockJobAbort(target, 0)
                except libvirt.libvirtError:
                    pass
                raise KvmError('%s: block commit of %s did not finish within commit_timeout (%ss); aborted, '
                               'the snapshot is kept' % (self.what, target, self.params['commit_timeout']))
            time.sleep(0.2)
        live = parse(dom.XMLDesc(0), 'domain XML')
        now = live.xpath("devices/disk[target/@dev='%s']/source/@file" % target)
        return dict(target=target, top=top, base=str(now[0]) if now else None,
                    bytes=info.get('end'), done=True)


def ensure(module, client):
    return SnapshotManager(module, client).run()


def main(module):
    run(module, lambda client: ensure(module, client))
