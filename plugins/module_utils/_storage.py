# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the storage modules (kvm_pool, kvm_volume, kvm_snapshot) share, and the one storage layer for images.

Private module (leading underscore): free to change between releases.

:class:`StorageManager` is the base of the three managers: the module, its parameters and one
:class:`~._changes.ChangeSet`, through which every write goes (``ChangeSet.write`` for libvirt,
``ChangeSet.host`` for files), and which gives the common result keys (``changed``, ``changes``,
``pending_restart``, ``diff``). Next to the structured entries it keeps the one-line ``actions``
of 0.x (deprecated, removed in 2.0.0).

The storage layer (below the manager) creates, imports and deletes disk images - a volume in a pool or
a file at a path - with the same checks wherever they are made: kvm_volume uses it, and kvm_domain's
disks can (see :func:`image_plan`, :func:`create_in_pool`, :func:`create_at_path`, :func:`delete_image`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, error_text, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._qemu_img import create_image, image_check, image_info
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, find_text, make_diff, parse


class StorageManager(object):
    """The module, its parameters, the change set and the deprecated ``actions`` of one storage module run."""

    def __init__(self, module, client, what):
        self.module = module
        self.client = client
        self.params = module.params
        self.changes = ChangeSet(module, client)
        # Only to predict check mode's results: writes are guarded by the change set.
        self.check = self.changes.check
        self.what = what
        self.actions = []   # deprecated return value (0.x one-line actions), removed in 2.0.0

    def record(self, scope, option, action, legacy=None, before=None, after=None, **extra):
        """One change entry; ``legacy`` is its line in the deprecated ``actions`` list (None: not listed)."""
        item = self.changes.record(scope, option, action, before, after, **extra)
        if legacy:
            self.actions.append(legacy)
        return item

    def write(self, action, func, *args):
        """A libvirt write through the change set (nothing in check mode); errors name the object and ``action``."""
        return self.changes.write('%s: %s' % (self.what, action), func, *args)

    def diff(self, before, after):
        """The diff-mode section (text before/after, secrets in XML masked)."""
        section = make_diff(before, after)
        self.changes.add_diff(section['before'], section['after'])

    def result(self, **extra):
        """The common result keys, the deprecated ``actions`` and the module's own keys."""
        return self.changes.result(actions=list(self.actions), **extra)


# ------------------------------------------------------------------ the one storage layer for disk images
# kvm_volume creates, imports and deletes images through these functions, and kvm_domain can create and delete
# its disk images through them too, so both check images the same way. The functions that read (backing_image,
# inspect_import, image_plan) write nothing; the ones that write take the ChangeSet and do nothing in check mode.
# None of them records a change: the caller records it in its own words (option names, labels).

FORMATS = ('raw', 'qcow2')
SECTOR = 512

IMAGE_OPTIONS = dict(capacity='capacity', format='format', backing='backing', backing_format='backing_format')


def round_up(size, unit=SECTOR):
    """``size`` rounded up to whole ``unit`` (512-byte sectors)."""
    return ((size + unit - 1) // unit) * unit


def find_volume(client, pool, name, what=None, refresh=True):
    """The volume ``name`` of ``pool``, or None; a file created outside libvirt is found after a rescan (a read)."""
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise KvmError(client.describe_error(exc, what or 'volume %s' % name))
    if refresh:
        client.call('pool %s: refresh' % pool.name(), pool.refresh, 0)
        return find_volume(client, pool, name, what, refresh=False)
    return None


def backing_image(module, client, option, ref, pool=None, local=True):
    """An image another is made from (backing file, clone source) -> ``dict(path, format, capacity, vol)``.

    ``ref`` is an absolute path (a libvirt volume, else, on a local URI, a file read with ``qemu-img info``)
    or a volume name in ``pool``. ``vol`` is the libvirt volume (None for a plain file). Read-only.
    """
    vol = None
    if ref.startswith('/'):
        try:
            vol = client.conn.storageVolLookupByPath(ref)
        except libvirt.libvirtError:
            vol = None
        path = ref
    else:
        if pool is None:
            raise KvmError('%s: %s is not an absolute path' % (option, ref))
        vol = find_volume(client, pool, ref, '%s %s' % (option, ref))
        if vol is None:
            raise KvmError('%s: no volume %s in pool %s' % (option, ref, pool.name()))
        path = vol.path()
    if vol is not None:
        with client.errors('%s %s' % (option, ref)):
            root = parse(vol.XMLDesc(0), 'volume XML')
            capacity = vol.info()[1]
        return dict(path=path, format=find_text(root, 'target/format/@type'), capacity=capacity, vol=vol)
    if not local:
        raise KvmError('%s: %s is not a volume libvirt knows on %s' % (option, ref, client.uri))
    if not os.path.exists(path):
        raise KvmError('%s: %s does not exist' % (option, path))
    info = image_info(module, path)
    return dict(path=path, format=info.get('format'), capacity=info.get('virtual-size'), vol=None)


def inspect_import(module, client, path, option='import_from', local=True):
    """A local image file to import -> ``dict(path, format, capacity)``: standalone raw or qcow2, qcow2 checked.

    Read-only (``qemu-img info`` and ``qemu-img check``).
    """
    if not local:
        raise KvmError('%s reads a file on the managed host; it needs a local libvirt URI, not %s' % (option, client.uri))
    if not os.path.isfile(path):
        raise KvmError('%s %s is not a file' % (option, path))
    info = image_info(module, path)
    fmt = info.get('format')
    if fmt not in FORMATS:
        raise KvmError('%s %s is a %r image; only raw and qcow2 can be imported' % (option, path, fmt))
    if info.get('backing-filename'):
        raise KvmError('%s %s has a backing file (%s); import a standalone image (qemu-img convert it first)'
                       % (option, path, info['backing-filename']))
    image_check(module, path, fmt)
    return dict(path=path, format=fmt, capacity=info.get('virtual-size'))


def check_capacity(option, capacity, source, source_label):
    """The capacity-vs-source check: a new image is never smaller than its backing image, clone source or import.

    Returns ``capacity``, or the source's virtual size when ``capacity`` is None.
    """
    if capacity is None:
        return source.get('capacity')
    if source.get('capacity') and capacity < source['capacity']:
        raise KvmError('%s: %d is smaller than %s (%d bytes)' % (option, capacity, source_label, source['capacity']))
    return capacity


def image_plan(what, capacity=None, fmt=None, backing=None, backing_format=None, allocation='sparse', names=None):
    """Every check a new image passes before anything is written, the same for a volume and a file.

    ``backing`` is :func:`backing_image`'s dict (or None); ``names`` maps ``capacity``, ``format``, ``backing``
    and ``backing_format`` to the caller's option names (for kvm_domain ``disks[0].size``, ...).
    Returns ``dict(format, capacity, allocation, backing)`` with the capacity in bytes rounded up to 512;
    ``backing`` becomes ``dict(path, format, capacity)``.
    """
    names = dict(IMAGE_OPTIONS, **(names or {}))
    if backing is not None:
        if fmt == 'raw':
            raise KvmError('%s: raw cannot have a backing file; a copy-on-write overlay needs format qcow2' % names['format'])
        if backing_format and backing['format'] and backing_format != backing['format']:
            raise KvmError('%s is %s but %s is a %s image' % (names['backing_format'], backing_format, backing['path'], backing['format']))
        backing = dict(path=backing['path'], format=backing_format or backing['format'], capacity=backing['capacity'])
        if backing['format'] not in FORMATS:
            raise KvmError('%s: %s has format %r; only raw and qcow2 backing files are supported'
                           % (names['backing'], backing['path'], backing['format']))
        fmt = 'qcow2'
        capacity = check_capacity(names['capacity'], capacity, backing, 'the backing image')
    if capacity is None:
        raise KvmError('%s is required to create %s' % (names['capacity'], what))
    return dict(format=fmt or 'qcow2', capacity=round_up(capacity), allocation=allocation or 'sparse', backing=backing)


def preallocation(plan):
    """qemu-img's ``preallocation`` for a fully allocated image (raw: full; qcow2: falloc), else None."""
    if plan.get('allocation') != 'full':
        return None
    return 'full' if plan['format'] == 'raw' else 'falloc'


def volume_xml(name, plan, perms=None, create_size=None):
    """The ``<volume>`` document of a new volume in a pool (``create_size``: the size to create it with, when an
    import must first fit the uploaded image)."""
    size = plan['capacity'] if create_size is None else create_size
    full = plan.get('allocation') == 'full'
    root = etree.Element('volume')
    etree.SubElement(root, 'name').text = name
    etree.SubElement(root, 'capacity', unit='bytes').text = str(size)
    etree.SubElement(root, 'allocation', unit='bytes').text = str(size if full else 0)
    target = etree.SubElement(root, 'target')
    etree.SubElement(target, 'format', type=plan['format'])
    if perms and any(perms.values()):
        elem = etree.SubElement(target, 'permissions')
        for key in ('mode', 'owner', 'group'):
            if perms.get(key):
                etree.SubElement(elem, key).text = perms[key]
    if plan.get('backing'):
        store = etree.SubElement(root, 'backingStore')
        etree.SubElement(store, 'path').text = plan['backing']['path']
        etree.SubElement(store, 'format', type=plan['backing']['format'])
    return etree.tostring(root, encoding='unicode')


def predicted_volume(pool_root, name, plan):
    """volume_facts' shape for a volume check mode has not created (key and allocation unknown)."""
    target_dir = find_text(pool_root, 'target/path')
    backing = plan.get('backing')
    return dict(name=name, path=os.path.join(target_dir, name) if target_dir else None, key=None, type='file',
                format=plan['format'], capacity=plan['capacity'],
                allocation=plan['capacity'] if plan.get('allocation') == 'full' else None,
                backing=[dict(path=backing['path'], format=backing['format'])] if backing else [])


def create_in_pool(changes, client, pool, name, plan, perms=None, clone=None, import_from=None):
    """Create volume ``name`` in ``pool`` as ``plan`` says: empty or an overlay, a copy of the libvirt volume
    ``clone``, or the local file ``import_from`` (:func:`inspect_import`'s dict) uploaded with holes kept sparse.

    Grown to ``plan['capacity']`` when the copy came out smaller; deleted again when the upload fails.
    Through ``changes`` (a ChangeSet): returns the new volume, or None in check mode.
    """
    what = 'volume %s/%s' % (pool.name(), name)
    full = plan.get('allocation') == 'full'
    flags = libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA if (full and plan['format'] == 'qcow2') else 0
    xml = volume_xml(name, plan, perms, create_size=import_from['capacity'] if import_from else None)
    if clone is not None:
        vol = changes.write('%s: clone from %s' % (what, clone.path()), pool.createXMLFrom, xml, clone, flags)
    else:
        vol = changes.write('%s: create' % what, pool.createXML, xml, flags)
    if vol is None:
        return None   # check mode: nothing was created, nothing to fill or grow
    if import_from:
        try:
            changes.write('%s: import %s' % (what, import_from['path']), upload, client, vol, import_from['path'])
        except KvmError:
            try:
                changes.write('%s: delete after a failed import' % what, vol.delete, 0)
            except KvmError:
                pass
            raise
    with client.errors(what):
        have = vol.info()[1]
    if have < plan['capacity']:
        changes.write('%s: resize to %d' % (what, plan['capacity']), vol.resize, plan['capacity'], 0)
    return vol


def create_at_path(changes, module, option, path, plan):
    """Create the image file ``path`` (local URI) as ``plan`` says with ``qemu-img create``: made in a private
    directory beside it, mode 0600, never replacing nor following anything at ``path``. Nothing in check mode."""
    backing = plan.get('backing') or {}
    changes.host(create_image, module, option, path, plan['format'], size_bytes=plan['capacity'],
                 backing=backing.get('path'), backing_format=backing.get('format'), preallocation=preallocation(plan))


def delete_image(changes, client, path=None, vol=None, local=True, option='storage'):
    """Delete an image: the libvirt volume ``vol`` (or the volume at ``path``), else, on a local URI, the file.

    Returns how it goes (``volume``, ``file``, or None when ``path`` is in no pool of a remote host and is
    left in place: the caller warns). Nothing is written in check mode; a missing file is no error.
    On a remote URI a file in a pool's directory that libvirt has not listed yet is found after a refresh.
    """
    if vol is None and path:
        if local:
            try:
                vol = client.conn.storageVolLookupByPath(path)
            except libvirt.libvirtError:
                vol = None
        else:
            vol = volume_at_path(client, path)[1]
    if vol is not None:
        changes.write('volume %s: delete' % (path or vol.name()), vol.delete, 0)
        return 'volume'
    if not local:
        return None
    changes.host(_remove_file, option, path)
    return 'file'


def file_pool_of(client, directory):
    """The file pool (dir, fs, netfs) whose target directory is ``directory``, or None. Read-only.

    Paths are compared as the hypervisor reports them (normalized, no symbolic links resolved: on a
    remote host they cannot be), so a disk path must name the pool's directory as the pool does.
    """
    wanted = os.path.normpath(directory)
    for pool in client.call('list storage pools', client.conn.listAllStoragePools, 0):
        with client.errors('pool %s' % pool.name()):
            root = parse(pool.XMLDesc(0), 'pool XML')
        target = find_text(root, 'target/path')
        if root.get('type') in FILE_POOLS and target and os.path.normpath(target) == wanted:
            return pool   # libvirt refuses a second pool of the same directory
    return None


def volume_at_path(client, path, option=None):
    """``(pool, vol)`` for an image path on the hypervisor, reached only through libvirt (a remote URI).

    ``vol`` is the volume libvirt knows at ``path`` (pools holding that directory are refreshed once to find
    a file made outside libvirt), or None when the directory's pool has no such file. ``pool`` is the active
    file pool of the path's directory (None when the volume was found by path alone). ``(None, None)`` when
    no pool holds that directory. With ``option``, an inactive pool of that directory is refused (it
    cannot be read or written through). Read-only, but for the refresh.
    """
    try:
        return None, client.conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        pass
    pool = file_pool_of(client, os.path.dirname(path))
    if pool is None:
        return None, None
    if not client.call('pool %s' % pool.name(), pool.isActive):
        if option:
            raise KvmError('%s: %s is in pool %r of %s, which is not active; start it (kvm_pool state: active)'
                           % (option, path, pool.name(), client.uri))
        return None, None
    return pool, find_volume(client, pool, os.path.basename(path), '%s %s' % (option or 'image', path))


def upload_bytes(changes, client, pool, name, data, perms=None):
    """Create volume ``name`` in ``pool`` holding exactly ``data`` (small: a cloud-init seed ISO).

    The bytes are written to a file in a private temporary directory on the host that runs the module
    (``mkdtemp``: mode 0700), streamed into the pool by :func:`stream_into_pool` with their sha256
    checked, and the directory is removed again. Nothing at all is written in check mode (returns None).
    """
    if changes.check:
        return None
    from ansible_collections.kvmops.kvm.plugins.module_utils import _transfer   # imported by the runs that stream an image
    plan = dict(format='raw', capacity=round_up(len(data)), allocation='sparse', backing=None)
    workdir = tempfile.mkdtemp(prefix='.kvmops-upload-')
    try:
        path = os.path.join(workdir, 'image')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        source = _transfer.FileSource(name, path)
        try:
            head = _transfer.read_head(source)
            vol, _info = stream_into_pool(changes, client, pool, name, plan, perms, source, head,
                                          expected=hashlib.sha256(data).hexdigest(), algorithm='sha256')
        finally:
            source.close()
    except OSError as exc:
        raise KvmError('%s: cannot stage the image in a temporary directory: %s' % (name, exc.strerror or exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return vol


def _remove_file(option, path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KvmError('%s: cannot delete %s: %s' % (option, path, exc))


# ------------------------------------------------------------------ sparse upload
def _send(_stream, nbytes, fd):
    return os.read(fd, nbytes)


def _in_data(_stream, fd):
    """For libvirt's sparse stream: [in_data, bytes until the next data/hole boundary]."""
    cur = os.lseek(fd, 0, os.SEEK_CUR)
    end = os.fstat(fd).st_size
    if cur >= end:
        return [False, 0]
    try:
        data = os.lseek(fd, cur, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        data = end
    if data > cur:
        result = [False, data - cur]
    else:
        hole = os.lseek(fd, cur, os.SEEK_HOLE)
        result = [True, hole - cur]
    os.lseek(fd, cur, os.SEEK_SET)
    return result


def _skip(_stream, length, fd):
    os.lseek(fd, length, os.SEEK_CUR)
    return 0


def upload(client, vol, path):
    """Copy a local file into a volume through libvirt, keeping holes sparse."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    stream = None
    try:
        with client.errors('upload %s into volume %s' % (path, vol.name())):
            stream = client.conn.newStream(0)
            vol.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            stream.sparseSendAll(_send, _in_data, _skip, fd)
            stream.finish()
    except KvmError:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        raise
    finally:
        os.close(fd)


# ------------------------------------------------------------------ imports through the upload stream
# Used by kvm_volume's import_from (a file on the host that runs the module, or an http(s) URL), on a local and
# a remote URI alike: libvirt creates the volume and writes it, the module only streams bytes.
FILE_POOLS = ('dir', 'fs', 'netfs')
REFRESH_TRIES = 50


def refresh_pool(client, pool):
    """``pool.refresh`` once libvirt's own refresh after an upload has let go of the pool."""
    for attempt in range(REFRESH_TRIES):
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as exc:
            if attempt == REFRESH_TRIES - 1 or 'asynchronous jobs' not in error_text(exc):
                raise KvmError(client.describe_error(exc, 'pool %s: refresh' % pool.name()))
        time.sleep(0.1)


def stream_into_pool(changes, client, pool, name, plan, perms, source, head, expected=None, algorithm=None,
                     check=None):
    """Create volume ``name`` in ``pool`` from ``source`` (a _transfer source whose first bytes ``head`` were
    read already), through libvirt's upload stream, and check it before keeping it.

    In a file pool (dir, fs, netfs) the volume is created empty and receives exactly the source's bytes
    (libvirt then reads the format from the image itself); in other pools it is created with the plan's
    format and the source's size. ``expected`` (a hex digest of ``algorithm``) is compared with the bytes
    streamed; ``check`` (a callable of the new volume) may refuse it. On any failure the new volume is
    deleted again: nothing is left behind. Grown to ``plan['capacity']`` when that is larger.
    Returns ``(vol, transfer)``: ``transfer`` is ``dict(bytes, seconds, checksum, progress)`` (checksum None
    without ``algorithm``; progress the samples of a long upload, also written to the module's log);
    ``(None, None)`` in check mode.
    """
    from ansible_collections.kvmops.kvm.plugins.module_utils import _transfer   # imported by the runs that stream an image
    what = 'volume %s/%s' % (pool.name(), name)
    with client.errors('pool %s' % pool.name()):
        pool_type = parse(pool.XMLDesc(0), 'pool XML').get('type')
    if pool_type in FILE_POOLS:
        xml = volume_xml(name, dict(plan, format='raw', allocation='sparse', backing=None), perms, create_size=0)
        length = 0
    else:
        if not source.size:
            raise KvmError('%s: the size of %s is not known (no Content-Length); a %s pool needs it to create the volume'
                           % (what, source.label, pool_type))
        xml = volume_xml(name, dict(plan, allocation='sparse'), perms, create_size=max(source.size, plan['capacity']))
        length = source.size
    vol = changes.write('%s: create' % what, pool.createXML, xml, 0)
    if vol is None:
        return None, None
    hasher = _transfer.new_hasher(algorithm)   # None without a checksum: a large sparse file is not hashed for nothing
    try:
        label = '%s: upload %s' % (what, source.label)
        progress = _transfer.Progress(label, source.size, getattr(getattr(client, 'module', None), 'log', None))
        stream, transfer = _transfer.upload(client, vol, source, head, hasher, length, label, progress)
        digest = hasher.hexdigest() if hasher is not None else None
        if expected and digest != expected:
            _transfer.abort(stream)
            raise KvmError('checksum mismatch for %s: expected %s:%s, got %s:%s; the new volume %s was deleted'
                           % (source.label, algorithm, expected, algorithm, digest, what))
        _transfer.finish(client, stream, label)
        transfer['checksum'] = '%s:%s' % (algorithm, digest) if digest else None
        refresh_pool(client, pool)
        vol = find_volume(client, pool, name, what, refresh=False)
        if vol is None:
            raise KvmError('%s disappeared after the upload' % what)
        if check is not None:
            check(vol)
        with client.errors(what):
            have = vol.info()[1]
        if round_up(have) < plan['capacity']:   # a raw image of an odd size is not padded to whole sectors
            client.call('%s: resize to %d' % (what, plan['capacity']), vol.resize, plan['capacity'], 0)
    except BaseException:
        try:
            vol.delete(0)
        except libvirt.libvirtError:
            pass
        raise
    return vol, transfer
