# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``qemu-img`` helpers any module may use (image format, size, backing chain, creation).

Private module (leading underscore): free to change between releases.

Only for images on the machine the module runs on (a local libvirt URI):
``qemu-img`` is always run as an argument list, never through a shell, and
with ``-U`` (force-share) so that images open by a running guest can be read.

Images are created the way _files creates every new file: ``qemu-img`` writes into a private 0700
``mkdtemp`` directory beside the target (it opens its output by name), the image is given mode 0600 and
put in place by ``_files.place_new``, which never replaces nor follows anything at the final path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, one_line
from ansible_collections.kvmops.kvm.plugins.module_utils._files import PRIVATE_MODE, place_new, refuse_link


def _qemu_img(module):
    path = module.get_bin_path('qemu-img')
    if not path:
        raise KvmError('qemu-img is required to inspect images on this host but was not found in PATH')
    return path


def image_info(module, path, chain=False):
    """``qemu-img info --output=json`` of ``path``.

    Returns one dict, or with ``chain=True`` the list of dicts of the whole
    backing chain (the image itself first). Keys are qemu-img's
    (``format``, ``virtual-size``, ``actual-size``, ``backing-filename``, ...).
    """
    cmd = [_qemu_img(module), 'info', '--output=json', '-U']
    if chain:
        cmd.append('--backing-chain')
    cmd.append(path)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        raise KvmError('qemu-img info %s failed: %s' % (path, one_line(err or out)))
    try:
        data = json.loads(out)
    except ValueError:
        raise KvmError('qemu-img info %s printed no JSON: %s' % (path, one_line(out)[:200]))
    if chain and isinstance(data, dict):
        data = [data]
    return data


def chain_summary(infos):
    """The backing chain below an image as a list of ``{path, format, virtual_size}``."""
    out = []
    for info in infos[1:]:
        out.append(dict(path=info.get('filename'), format=info.get('format'),
                        virtual_size=info.get('virtual-size')))
    return out


def image_check(module, path, fmt):
    """``qemu-img check``: a clear KvmError when the image is corrupt (qcow2 only)."""
    if fmt != 'qcow2':
        return
    cmd = [_qemu_img(module), 'check', '-U', '-f', fmt, path]
    rc, out, err = module.run_command(cmd)
    # 0: no errors; 3: leaked clusters only (harmless); others: corruption or failure.
    if rc not in (0, 3):
        raise KvmError('qemu-img check %s reports a damaged %s image (rc %d): %s'
                       % (path, fmt, rc, one_line(out or err)[:400]))


def create_image(module, option, path, fmt, size_bytes=None, backing=None, backing_format=None,
                 preallocation=None):
    """``qemu-img create`` of a new image at ``path``: made in a private temporary directory beside it,
    given mode 0600 and put in place without replacing or following anything there."""
    qemu_img = module.get_bin_path('qemu-img')
    if not qemu_img:
        raise KvmError('%s: qemu-img is needed to create %s and was not found' % (option, path))
    refuse_link(option, path)
    workdir = None
    try:
        workdir = tempfile.mkdtemp(prefix='.kvmops-', dir=os.path.dirname(path) or '.')
        tmp = os.path.join(workdir, 'image')
        cmd = [qemu_img, 'create', '-q', '-f', fmt]
        if backing:
            cmd += ['-b', backing, '-F', backing_format]
        if preallocation:
            cmd += ['-o', 'preallocation=%s' % preallocation]
        cmd.append(tmp)
        if size_bytes is not None:
            cmd.append(str(size_bytes))
        rc, _out, err = module.run_command(cmd)
        if rc != 0:
            raise KvmError('%s: qemu-img create %s failed: %s' % (option, path, one_line(err)))
        os.chmod(tmp, PRIVATE_MODE)
        place_new(option, tmp, path)
    except (IOError, OSError) as exc:
        raise KvmError('%s: cannot create %s: %s' % (option, path, exc))
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
