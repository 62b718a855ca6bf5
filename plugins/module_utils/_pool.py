# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_pool: libvirt storage pools (dir, fs, netfs, logical, iscsi).

The pool XML model: the options become a *wanted* document that holds only
what the user specified; it is compared with libvirt's persistent definition
by :func:`subset_differences`, so libvirt's defaults (uuid, sizes, the target
path libvirt picks for logical pools, ...) never count as a change. A changed
definition is merged into libvirt's own XML and redefined (uuid kept).
"""

from __future__ import annotations

import copy
import grp
import os
import pwd

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import pool_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._storage import StorageManager
from ansible_collections.kvmops.kvm.plugins.module_utils._volume import disk_users, set_permissions
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, find_text, parse, subset_differences, to_string

POOL_TYPES = ['dir', 'fs', 'netfs', 'logical', 'iscsi']

SOURCE_OPTIONS = dict(
    host=dict(type='str'),
    port=dict(type='int'),
    dir=dict(type='str'),
    devices=dict(type='list', elements='str'),
    name=dict(type='str'),
    format=dict(type='str'),
    initiator=dict(type='str'),
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True, aliases=['pool']),
    state=dict(type='str', default='present', choices=['present', 'active', 'inactive', 'absent']),
    type=dict(type='str', choices=POOL_TYPES),
    path=dict(type='path'),
    source=dict(type='dict', options=SOURCE_OPTIONS),
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw'),
    autostart=dict(type='bool'),
    build=dict(type='bool', default=False),
    overwrite=dict(type='bool', default=False),
    refresh=dict(type='bool', default=False),
    restart=dict(type='str', default='never', choices=['never', 'if_needed']),
    delete_data=dict(type='bool', default=False),
    force=dict(type='bool', default=False),
)

# Which source sub-options each type accepts, and which it requires.
TYPE_SOURCE = {
    'dir': (set(), set()),
    'fs': (set(['devices', 'format']), set(['devices'])),
    'netfs': (set(['host', 'port', 'dir', 'format']), set(['host', 'dir'])),
    'logical': (set(['devices', 'name', 'format']), set()),
    'iscsi': (set(['host', 'port', 'devices', 'initiator']), set(['host', 'devices'])),
}
TYPE_NEEDS_PATH = set(['dir', 'fs', 'netfs'])
# Types whose build formats or labels a device: libvirt's NO_OVERWRITE protects existing data.
TYPE_BUILD_FORMATS = set(['fs', 'logical'])
TYPE_BUILDABLE = set(['dir', 'fs', 'netfs', 'logical'])

NETFS_FORMATS = ['auto', 'nfs', 'glusterfs', 'cifs']
FS_FORMATS = ['auto', 'ext2', 'ext3', 'ext4', 'ufs', 'iso9660', 'udf', 'gfs', 'gfs2', 'vfat', 'hfs+', 'xfs', 'ocfs2', 'vmfs']


# ------------------------------------------------------------------ input
MAX_ID = 0xFFFFFFFE  # the largest uid/gid (2^32 - 1 is "no id")


def normalize_mode(value, option='mode'):
    """``'0750'``, ``'750'``, ``'0o750'`` or an int (as YAML gives for 0750) -> libvirt's ``'0750'``."""
    if value is None:
        return None
    if isinstance(value, bool):
        valid.refuse(option, 'must be an octal string such as "0750"', value)
    if isinstance(value, int):
        number = value
    else:
        text = valid.text(option, str(value), max_length=16).strip().lower()
        if text.startswith('0o'):
            text = text[2:]
        if not text or any(ch not in '01234567' for ch in text):
            valid.refuse(option, 'must be an octal string such as "0750"', value)
        number = int(text, 8)
    if number < 0 or number > 0o7777:
        valid.refuse(option, 'is out of range (0000-7777 octal)', value)
    return '%04o' % number


def resolve_id(value, kind):
    """A user or group name or number -> the number libvirt stores (resolved on this host).

    ``kind`` is the option (``owner`` or ``group``).
    """
    if value is None:
        return None
    text = valid.text(kind, str(value), max_length=64)
    if text.isdigit():
        return str(valid.count(kind, int(text), 0, MAX_ID))
    try:
        if kind == 'owner':
            return str(pwd.getpwnam(text).pw_uid)
        return str(grp.getgrnam(text).gr_gid)
    except KeyError:
        raise valid.ValidationError('%s: %r is neither a number nor a known %s on this host'
                                    % (kind, text, 'user' if kind == 'owner' else 'group'))


def _host(option, value):
    """A host name (RFC 1123) or an IP address."""
    try:
        return valid.ip_address(option, value)
    except valid.ValidationError:
        return valid.dns_name(option, value)


def validate_values(params, pool_type):
    """Each value on its own (names, paths, hosts, device names), normalized in ``params``."""
    source = params.get('source') or {}
    if params.get('path') is not None:
        params['path'] = valid.abs_path('path', params['path'])
    if source.get('host') is not None:
        source['host'] = _host('source.host', source['host'])
    if source.get('dir') is not None:
        if source.get('format') == 'cifs':
            # a CIFS share name, not a path
            valid.text('source.dir', source['dir'], max_length=255)
            if '..' in source['dir'].split('/') or '\\' in source['dir']:
                valid.refuse('source.dir', "a share name must not contain '..' components or backslashes", source['dir'])
        else:
            source['dir'] = valid.abs_path('source.dir', source['dir'])
    devices = source.get('devices') or []
    for index, dev in enumerate(devices):
        option = 'source.devices[%d]' % index
        devices[index] = valid.iscsi_name(option, dev) if pool_type == 'iscsi' else valid.abs_path(option, dev)
    if source.get('name') is not None:
        valid.object_name('source.name', source['name'], 'source name')
    if source.get('initiator') is not None:
        valid.iscsi_name('source.initiator', source['initiator'])
    if source.get('port') is not None:
        valid.count('source.port', source['port'], 1, 65535)


def validate(params, pool_type, creating=True):
    """Reject bad input before any write; messages name the option.

    Options a new pool needs are only required when ``creating``.
    """
    source = params.get('source') or {}
    given = set(k for k, v in source.items() if v not in (None, []))
    allowed, required = TYPE_SOURCE[pool_type]
    extra = given - allowed
    if extra:
        raise KvmError('source.%s is not used by %s pools (%s pools accept: %s)'
                       % (sorted(extra)[0], pool_type, pool_type,
                          ', '.join('source.%s' % s for s in sorted(allowed)) or 'no source options'))
    missing = required - given
    if missing and creating:
        raise KvmError('source.%s: required for a new %s pool' % (sorted(missing)[0], pool_type))
    if creating and pool_type in TYPE_NEEDS_PATH and not params.get('path'):
        raise KvmError('path: required for a new %s pool (the target directory)' % pool_type)
    validate_values(params, pool_type)
    if pool_type == 'fs' and 'devices' in given and len(source['devices']) != 1:
        raise KvmError('source.devices: a fs pool takes exactly one device')
    if pool_type == 'iscsi' and 'devices' in given and len(source['devices']) != 1:
        raise KvmError('source.devices: an iscsi pool takes exactly one target IQN')
    if pool_type == 'fs' and source.get('format') and source['format'] not in FS_FORMATS:
        raise KvmError('source.format %r is not a filesystem libvirt knows (%s)' % (source['format'], ', '.join(FS_FORMATS)))
    if pool_type == 'netfs' and source.get('format') and source['format'] not in NETFS_FORMATS:
        raise KvmError('source.format %r is not valid for netfs (%s)' % (source['format'], ', '.join(NETFS_FORMATS)))
    if pool_type == 'logical' and source.get('format') and source['format'] != 'lvm2':
        raise KvmError('source.format of a logical pool can only be lvm2')
    if params.get('build') and pool_type not in TYPE_BUILDABLE:
        raise KvmError('build is not supported for %s pools (nothing to create)' % pool_type)
    if creating and pool_type == 'logical' and params.get('build') and not source.get('devices'):
        raise KvmError('build of a logical pool needs source.devices (the physical volumes of the new volume group)')
    normalize_mode(params.get('mode'))
    resolve_id(params.get('owner'), 'owner')
    resolve_id(params.get('group'), 'group')


# ------------------------------------------------------------------ XML model
def _sub(parent, tag, **attrs):
    elem = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        if value is not None:
            elem.set(key, str(value))
    return elem


def wanted_xml(params, pool_type):
    """The pool document holding only what the user specified."""
    root = etree.Element('pool', type=pool_type)
    _sub(root, 'name').text = params['name']
    src = params.get('source') or {}
    source = etree.Element('source')
    if src.get('host'):
        _sub(source, 'host', name=src['host'], port=src.get('port'))
    if src.get('dir'):
        _sub(source, 'dir', path=src['dir'])
    for dev in src.get('devices') or []:
        _sub(source, 'device', path=dev)
    if src.get('name') or (pool_type == 'logical'):
        _sub(source, 'name').text = src.get('name') or params['name']
    if src.get('format'):
        _sub(source, 'format', type=src['format'])
    elif pool_type == 'netfs':
        _sub(source, 'format', type='nfs')
    elif pool_type == 'logical':
        _sub(source, 'format', type='lvm2')
    if src.get('initiator'):
        _sub(_sub(source, 'initiator'), 'iqn', name=src['initiator'])
    if len(source):
        root.append(source)
    mode = normalize_mode(params.get('mode'))
    owner = resolve_id(params.get('owner'), 'owner')
    group = resolve_id(params.get('group'), 'group')
    if params.get('path') or mode or owner or group:
        target = _sub(root, 'target')
        if params.get('path'):
            _sub(target, 'path').text = params['path']
        if mode or owner or group:
            perms = _sub(target, 'permissions')
            if mode:
                _sub(perms, 'mode').text = mode
            if owner:
                _sub(perms, 'owner').text = owner
            if group:
                _sub(perms, 'group').text = group
    return root


# Lists libvirt keeps as repeated siblings: the user's list replaces libvirt's.
REPLACED_LISTS = {'source': 'device'}


def merge(wanted, actual):
    """Write what ``wanted`` specifies into a copy of ``actual`` (libvirt's document)."""
    out = copy.deepcopy(actual)
    _merge_into(wanted, out)
    return out


def _merge_into(wanted, actual):
    for key, value in wanted.attrib.items():
        actual.set(key, value)
    if (wanted.text or '').strip():
        actual.text = wanted.text
    replaced = REPLACED_LISTS.get(wanted.tag)
    if replaced and wanted.find(replaced) is not None:
        for old in actual.findall(replaced):
            actual.remove(old)
    seen = {}
    for child in wanted:
        index = seen.get(child.tag, 0)
        seen[child.tag] = index + 1
        candidates = actual.findall(child.tag)
        if index < len(candidates):
            _merge_into(child, candidates[index])
        else:
            actual.append(copy.deepcopy(child))


def _without_permissions(root):
    out = copy.deepcopy(root)
    for perms in out.findall('target/permissions'):
        perms.getparent().remove(perms)
    return out


def describe(root, active, autostart):
    """Text for diff mode: run state first, then the definition."""
    if root is None:
        return ''
    header = '# active: %s, autostart: %s\n' % ('yes' if active else 'no', 'yes' if autostart else 'no')
    return header + to_string(_without_sizes(root))


def _without_sizes(root):
    """Pool XML without the sizes libvirt refreshes (never part of a definition)."""
    out = copy.deepcopy(root)
    for tag in ('capacity', 'allocation', 'available'):
        for elem in out.findall(tag):
            out.remove(elem)
    return out


def predicted_facts(root, active, autostart):
    """pool_facts' shape for a pool check mode has not created (sizes unknown)."""
    def text(xpath):
        found = root.xpath(xpath)
        if not found:
            return None
        return found[0] if isinstance(found[0], str) else found[0].text
    return dict(
        name=text('name'), uuid=None, type=root.get('type'),
        state='running' if active else 'inactive', active=active, persistent=True, autostart=bool(autostart),
        capacity=None, allocation=None, available=None, target_path=text('target/path'),
        source=dict(host=text('source/host/@name'), dir=text('source/dir/@path'),
                    device=text('source/device/@path'), name=text('source/name'),
                    format=text('source/format/@type')),
        volumes=[],
    )


# ------------------------------------------------------------------ manager
def restart_options(diffs):
    """The options behind differences of the running pool's XML (``pool/target/path: ...`` -> ``path``)."""
    options = []
    for line in diffs:
        parts = line.split(':', 1)[0].split('/')[1:]
        if not parts:
            continue
        if parts[0] == 'target':
            option = 'path'
        elif parts[0] == 'source' and len(parts) > 1:
            sub = parts[1].split('[', 1)[0]
            sub = dict(device='devices').get(sub, sub)
            if sub == 'host' and parts[-1] == '@port':
                sub = 'port'
            option = 'source.%s' % sub
        else:
            option = parts[0]
        if option not in options:
            options.append(option)
    return options


class PoolManager(StorageManager):

    def __init__(self, module, client):
        super(PoolManager, self).__init__(module, client, 'pool %s' % module.params['name'])
        self.name = self.params['name']

    def inactive_xml(self, pool):
        """The persistent definition (drivers without VIR_STORAGE_XML_INACTIVE: the only one)."""
        with self.client.errors(self.what):
            try:
                text = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    raise
                text = pool.XMLDesc(0)
            return parse(text, 'pool XML')

    def live_xml(self, pool):
        with self.client.errors(self.what):
            return parse(pool.XMLDesc(0), 'pool XML')

    def run(self):
        params = self.params
        valid.object_name('name', self.name, 'pool name')
        pool = self.client.find_pool(self.name)
        if params['state'] == 'absent':
            return self.absent(pool)
        return self.present(pool)

    # -- present / active / inactive -----------------------------------
    def present(self, pool):
        params = self.params
        state = params['state']
        if not is_local_uri(self.client.uri):
            for key in ('owner', 'group'):
                if params.get(key) is not None and not str(params[key]).isdigit():
                    raise valid.ValidationError(
                        '%s: %r is a name, and names are looked up on the host that runs the module, not on the hypervisor '
                        'of %s; give the numeric %s' % (key, params[key], self.client.uri, 'uid' if key == 'owner' else 'gid'))
        if pool is None:
            if not params.get('type'):
                raise KvmError('pool %s does not exist; type is required to define it' % self.name)
            pool_type = params['type']
        else:
            before_root = self.inactive_xml(pool)
            pool_type = before_root.get('type')
            if params.get('type') and params['type'] != pool_type:
                raise KvmError('pool %s is a %s pool; changing type to %s is not supported (remove it first)'
                               % (self.name, pool_type, params['type']))
            if pool_type not in POOL_TYPES:
                raise KvmError('pool %s is a %s pool, which this module does not manage' % (self.name, pool_type))
        validate(params, pool_type, creating=pool is None)
        wanted = wanted_xml(params, pool_type)
        local = is_local_uri(self.client.uri)

        defined_here = pool is None
        if pool is None:
            before_text = ''
            was_active, was_autostart = False, False
            after_root = wanted
            self.record('config', 'definition', 'define', 'define', after=self.name, type=pool_type)
            pool = self.write('define', self.client.conn.storagePoolDefineXML, etree.tostring(wanted, encoding='unicode'), 0)
            if params['build']:
                self._build(pool, pool_type, rollback=True)
            active = False
        else:
            with self.client.errors(self.what):
                was_active = bool(pool.isActive())
                was_autostart = bool(pool.autostart())
            active = was_active
            before_text = describe(before_root, was_active, was_autostart)
            after_root = before_root
            diffs = subset_differences(wanted, before_root)
            if diffs:
                after_root = merge(wanted, before_root)
                self.record('config', 'definition', 'redefine', 'redefine', after=diffs)
                self.write('redefine', self.client.conn.storagePoolDefineXML, etree.tostring(after_root, encoding='unicode'), 0)
            self._fix_permissions(pool, after_root, active, local)

        if not defined_here:
            target_path = find_text(after_root, 'target/path')
            if state == 'active' and not active:
                self._maybe_build(pool, pool_type, target_path, local)
                self._start(pool)
                active = True
            elif state == 'inactive' and active:
                self._stop(pool)
                active = False
            elif active:
                # The running pool keeps its old definition until restarted (permissions apply at once).
                live_diffs = subset_differences(_without_permissions(wanted), self.live_xml(pool))
                if live_diffs and state == 'active' and params['restart'] == 'if_needed':
                    self._stop(pool)
                    self._maybe_build(pool, pool_type, target_path, local)
                    self._start(pool)
                elif live_diffs:
                    self.changes.restart_needed(*restart_options(live_diffs))
        elif state == 'active':
            self._start(pool)
            active = True

        autostart = was_autostart
        if params['autostart'] is not None and params['autostart'] != was_autostart:
            self.record('config', 'autostart', 'set', 'autostart' if params['autostart'] else 'no autostart',
                        before=was_autostart, after=params['autostart'])
            self.write('autostart', lambda: pool.setAutostart(1 if params['autostart'] else 0))
            autostart = params['autostart']

        if params['refresh'] and active and 'start' not in self.actions:
            # A rescan of the volumes: it changes nothing and is not reported as a change (skipped in check mode).
            self.write('refresh', lambda: pool.refresh(0))

        if pool is not None:
            facts = pool_facts(self.client, pool)
            if not self.check:
                after_root = self.inactive_xml(pool)
        else:
            facts = predicted_facts(after_root, active, autostart)
        if self.check:
            facts['active'] = active
            facts['autostart'] = autostart
        self.diff(before_text, describe(after_root, active, autostart))
        return self.result(pool=facts)

    def _maybe_build(self, pool, pool_type, target_path, local):
        """build: true on an existing pool creates a missing target directory (local URI)."""
        if (self.params['build'] and local and pool_type in TYPE_NEEDS_PATH
                and target_path and not os.path.isdir(target_path)):
            self._build(pool, pool_type, rollback=False)

    def _fix_permissions(self, pool, root, active, local):
        """Owner/group/mode of an existing pool's directory, applied at once (libvirt only sets them on build)."""
        wanted = dict(mode=normalize_mode(self.params.get('mode')),
                      owner=resolve_id(self.params.get('owner'), 'owner'),
                      group=resolve_id(self.params.get('group'), 'group'))
        if not any(wanted.values()):
            return
        path = find_text(root, 'target/path')
        if not path or not local or not os.path.isdir(path):
            return  # applied by build / libvirt when the directory is created
        info = os.stat(path)
        have = dict(mode='%04o' % (info.st_mode & 0o7777), owner=str(info.st_uid), group=str(info.st_gid))
        wrong = [k for k in ('mode', 'owner', 'group') if wanted[k] and wanted[k] != have[k]]
        if not wrong:
            return
        for index, key in enumerate(wrong):
            self.record('host', key, 'set', 'set %s' % ', '.join(wrong) if index == 0 else None,
                        before=have[key], after=wanted[key], path=path)
        try:
            self.changes.host(set_permissions, path, wanted['mode'] if 'mode' in wrong else None,
                              wanted['owner'] if 'owner' in wrong else None,
                              wanted['group'] if 'group' in wrong else None)
        except OSError as exc:
            raise KvmError('pool %s: cannot set %s on %s: %s' % (self.name, ', '.join(wrong), path, exc.strerror))
        if active:
            self.write('refresh', pool.refresh, 0)

    def _build(self, pool, pool_type, rollback):
        flags = 0
        if pool_type in TYPE_BUILD_FORMATS:
            flags = (libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE if self.params['overwrite']
                     else libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
        self.record('host', 'build', 'build', 'build', after=self.params.get('path') or pool_type,
                    overwrite=bool(flags & libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE))
        try:
            self.write('build', lambda: pool.build(flags))
        except KvmError as exc:
            if rollback:
                try:
                    self.write('undefine after a failed build', pool.undefine)
                except KvmError:
                    pass
            hint = ''
            if pool_type in TYPE_BUILD_FORMATS and not self.params['overwrite']:
                hint = ' (build never overwrites existing data unless overwrite: true)'
            raise KvmError('%s%s' % (exc.msg, hint))

    def _start(self, pool):
        self.record('live', 'state', 'start', 'start', before='inactive', after='active')
        try:
            self.write('start', lambda: pool.create(0))
        except KvmError as exc:
            hint = '' if self.params['build'] else ' (set build: true to create the target/filesystem/volume group)'
            raise KvmError('%s%s' % (exc.msg, hint))

    def _stop(self, pool):
        self.record('live', 'state', 'stop', 'stop', before='active', after='inactive')
        self.write('stop', pool.destroy)

    # -- absent -----------------------------------------------------------
    def absent(self, pool):
        params = self.params
        if pool is None:
            self.diff('', '')
            return self.result(pool={})
        root = self.inactive_xml(pool)
        with self.client.errors(self.what):
            active = bool(pool.isActive())
            autostart = bool(pool.autostart())
        before_text = describe(root, active, autostart)
        facts = pool_facts(self.client, pool)
        deleted_volumes = []
        if params['delete_data'] and root.get('type') == 'iscsi':
            raise KvmError('pool %s: delete_data is not supported for iscsi pools (LUNs are managed on the target)'
                           % self.name)
        if params['delete_data']:
            started_here = False
            if not active:
                # The volumes can only be listed (and deleted) through an active pool.
                started_here = True
                self._start(pool)
            volumes = []
            if not self.check or active:
                with self.client.errors('pool %s: list volumes' % self.name):
                    volumes = [(v.name(), v.path(), v) for v in pool.listAllVolumes(0)]
            if not params['force'] and volumes:
                users = disk_users(self.client)
                busy = []
                for vname, vpath, _vol in volumes:
                    who = users.get(vpath, set()) | users.get((self.name, vname), set())
                    if who:
                        busy.append('%s (used by %s)' % (vname, ', '.join(sorted(who))))
                if busy:
                    if started_here:
                        self.write('stop', pool.destroy)
                    raise KvmError('pool %s: refusing delete_data, volumes are used by defined guests: %s; '
                                   'set force: true to delete them anyway' % (self.name, '; '.join(busy)))
            for vname, vpath, vol in volumes:
                deleted_volumes.append(vname)
                self.record('config', 'volumes', 'delete', 'delete volume %s' % vname, before=vpath)
                self.write('delete volume %s' % vname, vol.delete, 0)
            self._stop(pool)
            self.record('host', 'delete_data', 'delete', 'delete data', before=find_text(root, 'target/path'))
            self.write('delete data', pool.delete, 0)
        elif active:
            self._stop(pool)
        self.record('config', 'definition', 'undefine', 'undefine', before=self.name)
        self.write('undefine', pool.undefine)
        self.diff(before_text, '')
        return self.result(pool=facts, deleted_volumes=deleted_volumes)


def ensure(module, client):
    return PoolManager(module, client).run()


def main(module):
    run(module, lambda client: ensure(module, client))
