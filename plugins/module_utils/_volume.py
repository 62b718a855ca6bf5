# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_volume: volumes (raw/qcow2 images) in a libvirt storage pool.

A new volume is checked, described and created by the shared storage layer
(:mod:`._storage`: ``image_plan``, ``volume_xml``, ``create_in_pool`` - libvirt's
``createXML``, ``createXMLFrom`` for clones, an upload stream for imports), the
same layer kvm_domain's disks can use. An existing volume is compared on format, virtual size, backing
chain and permissions as libvirt (and qemu-img, for local images) reports
them; it is never overwritten.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.kvm.plugins.module_utils import _storage, _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import volume_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._qemu_img import chain_summary, image_info
from ansible_collections.kvmops.kvm.plugins.module_utils._storage import StorageManager, round_up
from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_bytes
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import find_text, parse

FORMATS = list(_storage.FORMATS)

ARGUMENT_SPEC = dict(
    pool=dict(type='str', required=True),
    name=dict(type='str', required=True, aliases=['volume']),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    capacity=dict(type='str'),
    format=dict(type='str', choices=FORMATS),
    allocation=dict(type='str', default='sparse', choices=['sparse', 'full']),
    backing=dict(type='str'),
    backing_format=dict(type='str', choices=FORMATS),
    clone_from=dict(type='str'),
    import_from=dict(type='path'),
    shrink=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw'),
)


# ------------------------------------------------------------------ shared helpers
def disk_users(client):
    """Which defined or running guests reference which images.

    Returns ``{path: set(domain names)}`` plus ``{(pool, volume): set(...)}``
    entries, from each guest's persistent and live XML, backing chains included.
    """
    users = {}
    with client.errors('list domains'):
        domains = client.conn.listAllDomains(0)
    for dom in domains:
        with client.errors('domain %s' % dom.name()):
            texts = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)] if dom.isPersistent() else []
            if dom.isActive():
                texts.append(dom.XMLDesc(0))
            name = dom.name()
        for text in texts:
            root = parse(text, 'domain XML')
            for disk in root.findall('devices/disk'):
                sources = [disk.find('source')] + disk.findall('.//backingStore/source')
                for src in sources:
                    if src is None:
                        continue
                    for key in (src.get('file'), src.get('dev')):
                        if key:
                            users.setdefault(key, set()).add(name)
                    if src.get('pool') and src.get('volume'):
                        users.setdefault((src.get('pool'), src.get('volume')), set()).add(name)
    return users


def running_disk_target(client, path):
    """(domain, target dev) of a running guest whose disk is ``path`` itself, or (None, None)."""
    with client.errors('list domains'):
        domains = client.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    for dom in domains:
        with client.errors('domain %s' % dom.name()):
            root = parse(dom.XMLDesc(0), 'domain XML')
        for disk in root.findall('devices/disk'):
            src = disk.find('source')
            if src is not None and path in (src.get('file'), src.get('dev')):
                return dom, find_text(disk, 'target/@dev')
    return None, None


def volume_ref(option, value):
    """``backing`` / ``clone_from``: an absolute, normalized path (no ``..``) or a volume name of the pool."""
    if isinstance(value, str) and value.startswith('/'):
        return valid.abs_path(option, value)
    return valid.object_name(option, value, 'volume name (or an absolute path)')


def set_permissions(path, mode, owner, group):
    """chmod/chown ``path`` itself, never what a symlink there points at."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    try:
        if mode:
            os.fchmod(fd, int(mode, 8))
        if owner or group:
            os.fchown(fd, int(owner or -1), int(group or -1))
    finally:
        os.close(fd)


# ------------------------------------------------------------------ manager
class VolumeManager(StorageManager):

    def __init__(self, module, client):
        super(VolumeManager, self).__init__(
            module, client, 'volume %s/%s' % (module.params['pool'], module.params['name']))
        self.local = is_local_uri(client.uri)

    # -- input -------------------------------------------------------------
    def validate(self):
        p = self.params
        valid.object_name('pool', p['pool'], 'pool name')
        valid.object_name('name', p['name'], 'volume name')
        sources = [k for k in ('backing', 'clone_from', 'import_from') if p.get(k)]
        if len(sources) > 1:
            raise KvmError('backing, clone_from and import_from are mutually exclusive (got %s)' % ', '.join(sources))
        for option in ('backing', 'clone_from'):
            if p.get(option):
                p[option] = volume_ref(option, p[option])
        if p.get('backing_format') and not p.get('backing'):
            raise KvmError('backing_format needs backing')
        if p.get('backing') and p.get('format') == 'raw':
            raise KvmError('format raw cannot have a backing file; a copy-on-write overlay needs format qcow2')
        if p.get('import_from'):
            p['import_from'] = valid.abs_path('import_from', p['import_from'])
        self.capacity = None
        if p.get('capacity') is not None:
            try:
                capacity = to_bytes(p['capacity'])
            except KvmError as exc:
                raise valid.ValidationError('capacity: %s' % exc.msg)
            self.capacity = valid.size_bytes('capacity', capacity, valid.MAX_VOLUME_BYTES)
        from ansible_collections.kvmops.kvm.plugins.module_utils._pool import normalize_mode, resolve_id
        self.perms = dict(mode=normalize_mode(p.get('mode')), owner=resolve_id(p.get('owner'), 'owner'),
                          group=resolve_id(p.get('group'), 'group'))

    # -- lookups -----------------------------------------------------------
    def find_pool(self):
        pool = self.client.find_pool(self.params['pool'])
        if pool is None:
            raise KvmError('pool %s does not exist' % self.params['pool'])
        with self.client.errors('pool %s' % self.params['pool']):
            if not pool.isActive():
                raise KvmError('pool %s is not active; start it first (kvmops.kvm.kvm_pool state=active)'
                               % self.params['pool'])
        return pool

    def find_volume(self, pool, name):
        return _storage.find_volume(self.client, pool, name, self.what)

    def resolve_ref(self, pool, ref, option):
        """A volume name in the same pool or an absolute path -> (path, format, capacity, vol)."""
        return _storage.backing_image(self.module, self.client, option, ref, pool=pool, local=self.local)

    # -- run ---------------------------------------------------------------
    def run(self):
        self.validate()
        pool = self.find_pool()
        vol = self.find_volume(pool, self.params['name'])
        if self.params['state'] == 'absent':
            return self.absent(pool, vol)
        if vol is None:
            return self.create(pool)
        return self.update(pool, vol)

    def summary(self, vol, before, after):
        """The module result; ``after`` is the predicted summary (check mode, or no volume yet)."""
        facts = volume_facts(self.client, vol) if vol is not None else after
        chain = []
        if (vol is not None and self.local and facts.get('type') in ('file', 'block') and facts.get('path')
                and os.path.exists(facts['path'])):
            chain = chain_summary(image_info(self.module, facts['path'], chain=True))
        elif vol is None:
            chain = [dict(path=b['path'], format=b['format'], virtual_size=None) for b in after.get('backing', [])]
        self.diff(_render(before), _render(after if after is not None else _summary(facts)))
        return self.result(volume=facts, backing_chain=chain)

    # -- create --------------------------------------------------------------
    def create(self, pool):
        """A new volume through the storage layer: checked (format, backing, capacity) before anything is written."""
        p = self.params
        fmt = p.get('format')
        capacity = self.capacity
        backing = clone = imported = None
        if p.get('backing'):
            backing = self.resolve_ref(pool, p['backing'], 'backing')
        elif p.get('clone_from'):
            clone = self.resolve_ref(pool, p['clone_from'], 'clone_from')
            if clone['vol'] is None:
                raise KvmError('clone_from: %s is not a libvirt volume (use import_from for a plain file)' % clone['path'])
            fmt = fmt or clone['format']
            capacity = _storage.check_capacity('capacity', capacity, clone, 'clone_from %s' % p['clone_from'])
        elif p.get('import_from'):
            imported = _storage.inspect_import(self.module, self.client, p['import_from'], local=self.local)
            if fmt and fmt != imported['format']:
                raise KvmError('import_from %s is a %s image but format is %s; omit format or convert the image first'
                               % (p['import_from'], imported['format'], fmt))
            fmt = imported['format']
            capacity = _storage.check_capacity('capacity', capacity, imported,
                                               'the virtual size of import_from %s' % p['import_from'])
        plan = _storage.image_plan(self.what, capacity, fmt, backing, p.get('backing_format'), p['allocation'])

        with self.client.errors('pool %s' % pool.name()):
            pool_root = parse(pool.XMLDesc(0), 'pool XML')
        after = _storage.predicted_volume(pool_root, p['name'], plan)
        if clone:
            self.record('config', 'clone_from', 'clone', 'clone from %s' % clone['path'], before=clone['path'], after=after)
        else:
            self.record('config', 'volume', 'create', 'create', after=after)
        if imported:
            self.record('config', 'import_from', 'import', 'import %s' % p['import_from'], before=p['import_from'])
        vol = _storage.create_in_pool(self.changes, self.client, pool, p['name'], plan, self.perms,
                                      clone=clone['vol'] if clone else None, import_from=imported)
        return self.summary(vol, None, after if vol is None else None)

    # -- existing --------------------------------------------------------------
    def update(self, pool, vol):
        p = self.params
        facts = volume_facts(self.client, vol)
        before = _summary(facts)
        if p.get('format') and facts['format'] != p['format']:
            raise KvmError('%s exists with format %s, not %s; libvirt cannot convert a volume in place '
                           '(remove it or use another name)' % (self.what, facts['format'], p['format']))
        if p.get('backing'):
            backing = self.resolve_ref(pool, p['backing'], 'backing')
            have = facts['backing'][0]['path'] if facts['backing'] else None
            if have != backing['path']:
                raise KvmError('%s exists with backing file %s, not %s; the backing chain of an existing volume is not changed'
                               % (self.what, have or '(none)', backing['path']))
        after = dict(before)
        if self.capacity is not None:
            wanted = round_up(self.capacity)
            have = facts['capacity']
            if wanted != have:
                self.resize(vol, facts, wanted, have)
                after['capacity'] = wanted
        self.fix_permissions(vol, facts)
        return self.summary(vol, before, after if self.check else None)

    def resize(self, vol, facts, wanted, have):
        p = self.params
        path = facts['path']
        dom, dev = running_disk_target(self.client, path)
        if wanted < have:
            if not p['shrink']:
                raise KvmError('%s is %d bytes; capacity %d would shrink it and lose data at its end; '
                               'set shrink: true to allow it' % (self.what, have, wanted))
            if dom is not None:
                raise KvmError('%s is in use by running guest %s; it cannot be shrunk while running' % (self.what, dom.name()))
        if dom is not None:
            self.record('live', 'capacity', 'resize', 'resize to %d' % wanted, before=have, after=wanted,
                        guest=dom.name(), target=dev)
            self.write('resize', dom.blockResize, dev, wanted, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return
        flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if wanted < have else 0
        if wanted > have and p['allocation'] == 'full':
            flags |= libvirt.VIR_STORAGE_VOL_RESIZE_ALLOCATE
        self.record('config', 'capacity', 'resize', 'resize to %d' % wanted, before=have, after=wanted)
        self.write('resize', vol.resize, wanted, flags)

    def fix_permissions(self, vol, facts):
        if not any(self.perms.values()):
            return
        with self.client.errors(self.what):
            root = parse(vol.XMLDesc(0), 'volume XML')
        have = dict(mode=find_text(root, 'target/permissions/mode'), owner=find_text(root, 'target/permissions/owner'),
                    group=find_text(root, 'target/permissions/group'))
        wrong = [k for k in ('mode', 'owner', 'group') if self.perms[k] and self.perms[k] != have[k]]
        if not wrong:
            return
        if not self.local or facts['type'] != 'file':
            raise KvmError('%s: %s differs (%s) and libvirt cannot change it on an existing volume; '
                           'this module changes it only for files on a local URI'
                           % (self.what, ', '.join(wrong), ', '.join('%s=%s' % (k, have[k]) for k in wrong)))
        for index, key in enumerate(wrong):
            self.record('host', key, 'set', 'set %s' % ', '.join(wrong) if index == 0 else None,
                        before=have[key], after=self.perms[key], path=facts['path'])
        try:
            self.changes.host(set_permissions, facts['path'], self.perms['mode'] if 'mode' in wrong else None,
                              self.perms['owner'] if 'owner' in wrong else None,
                              self.perms['group'] if 'group' in wrong else None)
        except OSError as exc:
            raise KvmError('%s: cannot set %s on %s: %s' % (self.what, ', '.join(wrong), facts['path'], exc.strerror))

    # -- absent ------------------------------------------------------------------
    def absent(self, pool, vol):
        if vol is None:
            self.diff('', '')
            return self.result(volume={}, backing_chain=[])
        facts = volume_facts(self.client, vol)
        if not self.params['force']:
            users = disk_users(self.client)
            who = users.get(facts['path'], set()) | users.get((pool.name(), facts['name']), set())
            if who:
                raise KvmError('%s is used by guest %s; set force: true to delete it anyway'
                               % (self.what, ', '.join(sorted(who))))
            overlays = self.overlays_of(pool, facts['path'])
            if overlays:
                raise KvmError('%s is the backing file of %s; deleting it would break them; set force: true to delete it anyway'
                               % (self.what, ', '.join(overlays)))
        self.record('config', 'volume', 'delete', 'delete', before=facts['path'])
        _storage.delete_image(self.changes, self.client, path=facts['path'], vol=vol, local=self.local, option='name')
        self.diff(_render(_summary(facts)), '')
        return self.result(volume=facts, backing_chain=[])

    def overlays_of(self, pool, path):
        out = []
        with self.client.errors('pool %s' % pool.name()):
            for other in pool.listAllVolumes(0):
                root = parse(other.XMLDesc(0), 'volume XML')
                if path in root.xpath('backingStore/path/text()'):
                    out.append(other.name())
        return sorted(out)


def _summary(facts):
    return dict(name=facts.get('name'), path=facts.get('path'), format=facts.get('format'),
                capacity=facts.get('capacity'),
                backing=[b['path'] for b in facts.get('backing') or []])


def _render(summary):
    if not summary:
        return ''
    summary = dict(summary)
    if 'backing' in summary and summary['backing'] and isinstance(summary['backing'][0], dict):
        summary['backing'] = [b['path'] for b in summary['backing']]
    keys = ('name', 'path', 'format', 'capacity', 'backing')
    return ''.join('%s: %s\n' % (k, summary.get(k)) for k in keys)


def ensure(module, client):
    return VolumeManager(module, client).run()


def main(module):
    run(module, lambda client: ensure(module, client))
