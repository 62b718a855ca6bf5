# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way kvmops.kvm creates and replaces files on the host that runs a module.

Private module (leading underscore): free to change between releases.

* New files (images, seed ISOs): made under a random name in the target directory (``mkstemp``, mode
  0600), then put in place with ``link``, which never replaces nor follows anything at the final path; a
  symbolic link at the final path is refused. Mode 0600 is enough for QEMU: libvirt's dynamic ownership
  gives the file to the QEMU user while the guest runs.
* Replaced files (network configuration): written through a random temporary file in the same
  directory and renamed over the target (a symlink there is replaced, not followed); an existing file
  keeps its mode and owner.
* Backups: new files created exclusively with O_EXCL|O_NOFOLLOW, mode 0600.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

PRIVATE_MODE = 0o600


def refuse_link(option, path):
    """A symbolic link where a module is to create a file is refused, never followed."""
    if os.path.islink(path):
        raise KvmError('%s: %s is a symbolic link; refusing to create a file through it' % (option, path))


def place_new(option, tmp, path):
    """Give the finished temporary file ``tmp`` its final name ``path``, which must not exist."""
    refuse_link(option, path)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise KvmError('%s: %s appeared while it was being created; left as it is' % (option, path))
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
        # a filesystem without hard links: rename, after checking again that nothing is there
        if os.path.lexists(path):
            raise KvmError('%s: %s appeared while it was being created; left as it is' % (option, path))
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def write_private_file(option, path, data):
    """Create ``path`` holding ``data`` (bytes): atomic, mode 0600, never through a symbolic link.

    A KvmError naming ``option`` when ``path`` exists, is a symbolic link or cannot be written.
    """
    refuse_link(option, path)
    directory = os.path.dirname(path) or '.'
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix='.kvmops-', suffix='.tmp', dir=directory)
        with os.fdopen(fd, 'wb') as handle:
            os.fchmod(handle.fileno(), PRIVATE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        place_new(option, tmp, path)
    except (IOError, OSError) as exc:
        raise KvmError('%s: cannot write %s: %s' % (option, path, exc))
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


# Backups hold the old network configuration; nothing but an operator reads them: owner only.
BACKUP_MODE = 0o600
# Directories made for the files (interfaces.d and the like) are the distribution's 0755; the backup
# directory of interfaces.d is owner only, like the backups in it.
DIR_MODE = 0o755
BACKUP_DIR_MODE = 0o700


def _makedirs(directory, mode):
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=mode, exist_ok=True)


def create_exclusive(path, data, mode):
    """Create ``path`` with ``data``; O_EXCL|O_NOFOLLOW: never opens an existing file or a planted symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_file(path, backup_dir=None):
    """Back ``path`` up the way AnsibleModule.backup_local names backups (<name>.<pid>.<time>~), mode 0600.

    The backup is a new file created exclusively (no following a symlink planted at the predictable name,
    no overwriting an existing file: a clash gets a counter), so it cannot be redirected elsewhere.
    """
    directory = backup_dir or os.path.dirname(path)
    _makedirs(directory, BACKUP_DIR_MODE if backup_dir else DIR_MODE)
    with open(path, 'rb') as handle:
        data = handle.read()
    stamp = time.strftime('%Y-%m-%d@%H:%M:%S', time.localtime(time.time()))
    base = os.path.join(directory, '%s.%s.%s' % (os.path.basename(path), os.getpid(), stamp))
    for attempt in range(100):
        dest = '%s%s~' % (base, '.%d' % attempt if attempt else '')
        try:
            create_exclusive(dest, data, BACKUP_MODE)
            return dest
        except FileExistsError:
            continue
    raise KvmError('cannot back up %s: %s* all exist' % (path, base))


def replace_file(module, path, text, mode):
    """Write through a random temporary file in the same directory and rename it over the target.

    tempfile.mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600, so the content is never
    readable by others and never written through a symlink; os.replace then swaps the name atomically
    (a symlink at ``path`` is replaced, not followed). An existing file keeps its mode and owner; a new
    one gets ``mode`` (what the reader of that format needs, see the providers).
    """
    directory = os.path.dirname(path)
    _makedirs(directory, DIR_MODE)
    existing = None
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        existing = None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.kvm_bridge.', suffix='~')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            if existing is not None:
                os.fchmod(handle.fileno(), existing.st_mode & 0o7777)
                os.fchown(handle.fileno(), existing.st_uid, existing.st_gid)
            else:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if module.selinux_enabled():
            context = module.selinux_context(path) if existing is not None else module.selinux_default_context(path)
            module.set_context_if_different(tmp, context, False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
