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

from ansible_collections.kvmops.kvm.plugins.module_utils import _storage, _transfer, _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run, url_passwords
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import volume_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._qemu_img import chain_summary, image_check, image_info
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
    import_from=dict(type='raw'),
    checksum=dict(type='str'),
    validate_certs=dict(type='bool', default=True),
    url_username=dict(type='str'),
    url_password=dict(type='str', no_log=True),
    force_basic_auth=dict(type='bool', default=False),
    use_proxy=dict(type='bool', default=True),
    timeout=dict(type='int', default=10),
    export_to=dict(type='path'),
    export_mode=dict(type='raw'),
    shrink=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw'),
)

IMPORT_FROM_RULE = ('must be an absolute path of a file on the host that runs the module, an http(s) URL, '
                    'or another volume as pool/volume (or a dict with pool and name)')


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
        try:
            texts = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)] if dom.isPersistent() else []
            if dom.isActive():
                texts.append(dom.XMLDesc(0))
            name = dom.name()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue   # gone since the listing (a transient guest stopped)
            raise KvmError(client.describe_error(exc, 'domain %s' % dom.name()))
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
        try:
            root = parse(dom.XMLDesc(0), 'domain XML')
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue   # stopped since the listing
            raise KvmError(client.describe_error(exc, 'domain %s' % dom.name()))
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


def import_ref(value):
    """``import_from`` -> ``dict(kind, label, ...)``: ``file`` (path), ``url`` (url) or ``volume`` (pool, name)."""
    option = 'import_from'
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(('pool', 'name', 'volume')))
        if unknown:
            valid.refuse(option, 'a volume is given as {pool: ..., name: ...}; unknown key %s' % ', '.join(unknown))
        pool = valid.object_name('import_from.pool', value.get('pool'), 'pool name')
        name = valid.object_name('import_from.name', value.get('name') or value.get('volume'), 'volume name')
        return dict(kind='volume', pool=pool, name=name, label='%s/%s' % (pool, name))
    if not isinstance(value, str) or not value:
        valid.refuse(option, IMPORT_FROM_RULE, value)
    if _transfer.is_url(value):
        url = _transfer.check_url(option, value)
        return dict(kind='url', url=url, label=_transfer.safe_url(url))
    if value.startswith('~'):
        value = os.path.expanduser(value)
    if value.startswith('/'):
        path = valid.abs_path(option, value)
        return dict(kind='file', path=path, label=path)
    if value.count('/') == 1 and '://' not in value:
        pool, name = value.split('/')
        return dict(kind='volume', pool=valid.object_name('import_from', pool, 'pool name in pool/volume'),
                    name=valid.object_name('import_from', name, 'volume name in pool/volume'), label=value)
    valid.refuse(option, IMPORT_FROM_RULE, value)
    return None


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
        # A password inside a URL is masked like url_password, before anything can refuse the URL.
        self.changes.secret(*url_passwords([p.get('import_from'), p.get('checksum')]))
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
        self.ref = import_ref(p['import_from']) if p.get('import_from') is not None else None
        self.checksum = _transfer.parse_checksum(p['checksum']) if p.get('checksum') else None
        if self.checksum and not self.ref:
            raise valid.ValidationError('checksum: needs import_from (the checksum of the image to import)')
        if p.get('timeout') is not None and not 1 <= p['timeout'] <= 86400:
            raise valid.ValidationError('timeout: must be between 1 and 86400 seconds (got %s)' % p['timeout'])
        self.validate_export()
        self.capacity = None
        if p.get('capacity') is not None:
            try:
                capacity = to_bytes(p['capacity'])
            except KvmError as exc:
                raise valid.ValidationError('capacity: %s' % exc.msg)
            self.capacity = valid.size_bytes('capacity', capacity, valid.MAX_VOLUME_BYTES)
        from ansible_collections.kvmops.kvm.plugins.module_utils._pool import normalize_mode, resolve_id
        for key in ('owner', 'group'):
            if not self.local and p.get(key) is not None and not str(p[key]).isdigit():
                raise valid.ValidationError(
                    '%s: %r is a name, and names are looked up on the host that runs the module, not on the hypervisor '
                    'of %s; give the numeric %s' % (key, p[key], self.client.uri, 'uid' if key == 'owner' else 'gid'))
        self.perms = dict(mode=normalize_mode(p.get('mode')), owner=resolve_id(p.get('owner'), 'owner'),
                          group=resolve_id(p.get('group'), 'group'))

    def validate_export(self):
        """``export_to``: an absolute path whose directory exists, not a link, not anything but a regular file."""
        p = self.params
        self.export = None
        if not p.get('export_to'):
            if p.get('export_mode') is not None:
                raise valid.ValidationError('export_mode: needs export_to')
            return
        from ansible_collections.kvmops.kvm.plugins.module_utils._pool import normalize_mode
        if p['state'] != 'present':
            raise valid.ValidationError('export_to: needs state present (the volume to export)')
        path = valid.abs_path('export_to', p['export_to'])
        if os.path.islink(path):
            raise valid.ValidationError('export_to: %s is a symbolic link; refusing to write through it' % path)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise valid.ValidationError('export_to: %s exists and is not a regular file' % path)
        if not os.path.isdir(os.path.dirname(path)):
            raise valid.ValidationError('export_to: the directory %s does not exist' % os.path.dirname(path))
        directory = os.path.dirname(path)
        if os.path.realpath(directory) != os.path.normpath(directory):   # a planted link to /etc, /root/.ssh, ...
            raise valid.ValidationError('export_to: the directory %s goes through a symbolic link (to %s); give the real '
                                        'directory' % (directory, os.path.realpath(directory)))
        mode = normalize_mode(p.get('export_mode'), 'export_mode') if p.get('export_mode') is not None else '0600'
        if int(mode, 8) & 0o7000:   # the image holds what the guest wrote: never a setuid program
            raise valid.ValidationError('export_mode: %s sets the setuid, setgid or sticky bit; an exported image '
                                        'needs none (for example 0600 or 0640)' % mode)
        self.export = dict(path=path, mode=mode)

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
        self.transfer = self.exported = self.verified = None
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
        if self.export:
            self.export_volume(vol)
        return self.result(volume=facts, backing_chain=chain, transfer=self.transfer, export=self.exported,
                           checksum_check=self.verified)

    # -- create --------------------------------------------------------------
    def create(self, pool):
        """A new volume through the storage layer: checked (format, backing, capacity) before anything is written."""
        p = self.params
        fmt = p.get('format')
        capacity = self.capacity
        backing = clone = None
        if self.ref and self.ref['kind'] != 'volume':
            return self.create_streamed(pool)
        if p.get('backing'):
            backing = self.resolve_ref(pool, p['backing'], 'backing')
        elif p.get('clone_from') or self.ref:
            if self.ref:
                option, label = 'import_from', self.ref['label']
                clone = self.source_volume()
            else:
                option, label = 'clone_from', p['clone_from']
                clone = self.resolve_ref(pool, p['clone_from'], 'clone_from')
                if clone['vol'] is None:
                    raise KvmError('clone_from: %s is not a libvirt volume (use import_from for a plain file)' % clone['path'])
            fmt = fmt or clone['format']
            capacity = _storage.check_capacity('capacity', capacity, clone, '%s %s' % (option, label))
        plan = _storage.image_plan(self.what, capacity, fmt, backing, p.get('backing_format'), p['allocation'])
        after = _storage.predicted_volume(self.pool_root(pool), p['name'], plan)
        if self.ref:
            self.record('config', 'volume', 'create', 'create', after=after)
            self.record('config', 'import_from', 'import', 'import %s' % self.ref['label'], before=self.ref['label'])
        elif clone:
            self.record('config', 'clone_from', 'clone', 'clone from %s' % clone['path'], before=clone['path'], after=after)
        else:
            self.record('config', 'volume', 'create', 'create', after=after)
        vol = _storage.create_in_pool(self.changes, self.client, pool, p['name'], plan, self.perms,
                                      clone=clone['vol'] if clone else None)
        return self.summary(vol, None, after if vol is None else None)

    def pool_root(self, pool):
        with self.client.errors('pool %s' % pool.name()):
            return parse(pool.XMLDesc(0), 'pool XML')

    def source_volume(self):
        """``import_from`` naming another volume -> backing_image's dict; its checksum is verified first when given."""
        ref = self.ref
        other = self.client.find_pool(ref['pool'])
        if other is None:
            raise KvmError('import_from: pool %s does not exist' % ref['pool'])
        with self.client.errors('pool %s' % ref['pool']):
            active = other.isActive()
        if not active:
            raise KvmError('import_from: pool %s is not active' % ref['pool'])
        source = _storage.backing_image(self.module, self.client, 'import_from', ref['name'], pool=other, local=self.local)
        dom = running_disk_target(self.client, source['path'])[0]
        if dom is not None:
            raise KvmError('import_from %s is a disk of running guest %s, which may be writing to it (and QEMU holds a '
                           'lock that libvirt\'s copy cannot open); shut the guest down first' % (ref['label'], dom.name()))
        if self.checksum:
            expected = _transfer.fetch_digest(self.checksum, ref['name'], self.params)
            digest = _transfer.volume_digest(self.client, source['vol'], self.checksum['algorithm'], 'import_from %s' % ref['label'])
            if digest != expected:
                raise KvmError('checksum mismatch for import_from %s: expected %s:%s, got %s:%s; nothing was created'
                               % (ref['label'], self.checksum['algorithm'], expected, self.checksum['algorithm'], digest))
            self.verified = 'source'
        return source

    def create_streamed(self, pool):
        """A new volume from a local file or a URL, through the upload stream (see _storage.stream_into_pool)."""
        p = self.params
        ref = self.ref
        location = ref.get('url') or ref['path']
        expected = _transfer.fetch_digest(self.checksum, location, p) if self.checksum else None
        source = _transfer.open_source('import_from', location, p)
        try:
            head = _transfer.read_head(source)
            header = _transfer.image_header('import_from', ref['label'], head, p.get('format'))
            fmt = header['format']
            if ref['kind'] == 'file' and fmt == 'qcow2' and self.module.get_bin_path('qemu-img'):
                image_check(self.module, ref['path'], fmt)
            size = header['capacity'] if fmt == 'qcow2' else source.size
            capacity = _storage.check_capacity('capacity', self.capacity, dict(capacity=size),
                                               'the virtual size of import_from %s' % ref['label'])
            plan = _storage.image_plan(self.what, capacity or 0, fmt, None, None, p['allocation'])
            after = _storage.predicted_volume(self.pool_root(pool), p['name'], plan)
            self.record('config', 'volume', 'create', 'create', after=after)
            self.record('config', 'import_from', 'import', 'import %s' % ref['label'], before=ref['label'])
            vol, transfer = _storage.stream_into_pool(
                self.changes, self.client, pool, p['name'], plan, self.perms, source, head, expected,
                self.checksum['algorithm'] if self.checksum else None, check=lambda new: self.check_imported(new, fmt))
        finally:
            source.close()
        if transfer is not None:
            transfer['source'] = ref['label']
            self.transfer = transfer
            self.verified = 'stream' if expected else None
        return self.summary(vol, None, after if vol is None else None)

    def check_imported(self, vol, fmt):
        """The new volume as libvirt sees it is the format the header said; a local qcow2 passes qemu-img check."""
        with self.client.errors(self.what):
            root = parse(vol.XMLDesc(0), 'volume XML')
        have = find_text(root, 'target/format/@type')
        if have and (fmt == 'qcow2') != (have == 'qcow2'):
            raise KvmError('%s: libvirt reads the imported image as %s, not %s; it was deleted' % (self.what, have, fmt))
        if self.local and fmt == 'qcow2' and find_text(root, 'target/path') and self.module.get_bin_path('qemu-img'):
            image_check(self.module, find_text(root, 'target/path'), fmt)

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
        if self.checksum:
            self.verify_existing(pool, vol, facts)
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

    def verify_existing(self, pool, vol, facts):
        """An existing volume and ``checksum``: its content is hashed through the download stream (nothing is
        downloaded from import_from) unless a guest uses it - then its content is expected to change and it is
        not hashed. Another content is an error: the volume is never overwritten."""
        users = disk_users(self.client)
        who = users.get(facts['path'], set()) | users.get((pool.name(), facts['name']), set())
        if who:
            self.verified = 'skipped: used by guest %s' % ', '.join(sorted(who))
            return
        if facts.get('type') != 'file':
            self.verified = 'skipped: a %s volume holds more than the imported bytes' % facts.get('type')
            return
        algorithm = self.checksum['algorithm']
        location = self.ref.get('url') or self.ref.get('path') or self.ref['name']
        expected = _transfer.fetch_digest(self.checksum, location, self.params)
        digest = _transfer.volume_digest(self.client, vol, algorithm, self.what)
        if digest != expected:
            raise KvmError('%s exists but its content does not match checksum (it is %s:%s, expected %s:%s); it is not '
                           'overwritten: remove it (state: absent) to import it again, or drop checksum to keep it'
                           % (self.what, algorithm, digest, algorithm, expected))
        self.verified = 'content'

    # -- export_to ---------------------------------------------------------------
    def export_volume(self, vol):
        """Download the volume to ``export_to`` unless the file there has the same content (and mode)."""
        path, mode = self.export['path'], self.export['mode']
        existing = os.path.isfile(path)
        old = new = None
        if existing and vol is not None:
            with self.client.errors(self.what):
                physical = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
            if physical == os.path.getsize(path):
                old = _transfer.file_digest(path, 'sha256')
                new = _transfer.volume_digest(self.client, vol, 'sha256', self.what)
        if old is not None and old == new:
            have = '%04o' % (os.stat(path).st_mode & 0o7777)
            self.exported = dict(path=path, checksum='sha256:%s' % new, bytes=None, seconds=None)
            if have != mode:
                self.record('host', 'export_mode', 'set', 'set export_mode', before=have, after=mode, path=path)
                self.changes.host(set_permissions, path, mode, None, None)
            return
        if existing and not self.params['force']:
            raise KvmError('export_to: %s exists with other content; set force: true to replace it' % path)
        self.record('host', 'export_to', 'export', 'export to %s' % path, before='sha256:%s' % old if old else None,
                    after=path, path=path)
        if vol is None:
            return   # check mode, volume not created yet
        with self.client.errors(self.what):
            dom = running_disk_target(self.client, vol.path())[0]
        if dom is not None:
            self.module.warn('%s is exported while guest %s runs and may write to it; the copy may be inconsistent '
                             '(shut the guest down, or export a snapshot)' % (self.what, dom.name()))
        self.exported = self.changes.host(_transfer.export_file, self.client, vol, 'export_to', path, int(mode, 8))
        if self.exported:
            self.exported['path'] = path

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
