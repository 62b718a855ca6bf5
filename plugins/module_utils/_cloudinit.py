# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cloud-init NoCloud seed (volume id ``cidata``) as an ISO9660 image, in pure Python.

No genisoimage/xorriso: a minimal ISO9660 writer (one root directory, a few
files, no Joliet or Rock Ridge). Linux maps plain ISO9660 names to lower case
and drops the ``.;1`` suffix, so ``USER-DATA.;1`` is read as ``user-data``,
which is what cloud-init's NoCloud datasource opens.

The image is a pure function of its content (fixed timestamps), so its name
can carry a hash of that content and a second run finds the same file - or,
on a remote URI (or with ``cloud_init.pool``), the same volume: kvm_domain then
uploads the bytes into the pool through libvirt (``_storage.upload_bytes``).
"""

from __future__ import annotations

import hashlib
import json
import struct

SECTOR = 2048
VOLUME_ID = 'cidata'
# A fixed date keeps the image byte-for-byte reproducible.
_DATE7 = bytes([120, 1, 1, 0, 0, 0, 0])  # 2020-01-01 00:00:00 GMT (years since 1900)
_DATE17 = b'2020010100000000' + b'\x00'


def _both16(value):
    return struct.pack('<H', value) + struct.pack('>H', value)


def _both32(value):
    return struct.pack('<I', value) + struct.pack('>I', value)


def _pad(text, length, fill=b' '):
    data = text.encode('ascii') if isinstance(text, str) else text
    return data[:length] + fill * (length - len(data[:length]))


def _dir_record(extent, size, ident, is_dir):
    """One ISO9660 directory record (ECMA-119 9.1)."""
    length = 33 + len(ident)
    if length % 2:
        length += 1
    record = struct.pack('<BB', length, 0)
    record += _both32(extent) + _both32(size) + _DATE7
    record += struct.pack('<BBB', 2 if is_dir else 0, 0, 0)
    record += _both16(1)
    record += struct.pack('<B', len(ident)) + ident
    return record + b'\x00' * (length - len(record))


def _sectors(size):
    return max(1, (size + SECTOR - 1) // SECTOR)


def iso_name(name):
    """The ISO9660 identifier of a file name (upper case, ``.;1`` suffix)."""
    upper = name.upper()
    return (upper + ('' if '.' in upper else '.') + ';1').encode('ascii')


def build_iso(files, volume_id=VOLUME_ID):
    """Bytes of an ISO9660 image holding ``files`` ({name: bytes}) in its root."""
    names = sorted(files)
    root_extent = 20          # 16 system sectors, PVD, terminator, L and M path tables
    first_file = root_extent + 1
    layout = []
    extent = first_file
    for name in names:
        data = files[name]
        layout.append((name, extent, data))
        extent += _sectors(len(data))
    total = extent

    root = _dir_record(root_extent, SECTOR, b'\x00', True) + _dir_record(root_extent, SECTOR, b'\x01', True)
    for name, ext, data in layout:
        root += _dir_record(ext, len(data), iso_name(name), False)
    if len(root) > SECTOR:
        raise ValueError('too many files for a one-sector root directory')
    root += b'\x00' * (SECTOR - len(root))

    path_l = struct.pack('<BBIH', 1, 0, root_extent, 1) + b'\x00\x00'
    path_m = struct.pack('>BBIH', 1, 0, root_extent, 1) + b'\x00\x00'
    path_size = 10

    pvd = b'\x01CD001\x01\x00'
    pvd += _pad('', 32) + _pad(volume_id, 32)
    pvd += b'\x00' * 8 + _both32(total) + b'\x00' * 32
    pvd += _both16(1) + _both16(1) + _both16(SECTOR) + _both32(path_size)
    pvd += struct.pack('<I', 18) + struct.pack('<I', 0) + struct.pack('>I', 19) + struct.pack('>I', 0)
    pvd += _dir_record(root_extent, SECTOR, b'\x00', True)
    pvd += _pad('', 128) * 4 + _pad('', 37) * 3
    pvd += _DATE17 * 2 + b'0' * 16 + b'\x00' + _DATE17
    pvd += b'\x01\x00'
    pvd += b'\x00' * (SECTOR - len(pvd))

    term = b'\xffCD001\x01' + b'\x00' * (SECTOR - 7)
    out = bytearray(b'\x00' * (16 * SECTOR))
    out += pvd + term
    out += path_l + b'\x00' * (SECTOR - len(path_l))
    out += path_m + b'\x00' * (SECTOR - len(path_m))
    out += root
    for _name, _ext, data in layout:
        out += data + b'\x00' * (_sectors(len(data)) * SECTOR - len(data))
    return bytes(out)


def read_iso(image):
    """Volume id and {name: bytes} of an image written by :func:`build_iso` (for tests)."""
    pvd = image[16 * SECTOR:17 * SECTOR]
    if pvd[1:6] != b'CD001':
        raise ValueError('not an ISO9660 image')
    volume_id = pvd[40:72].decode('ascii').rstrip()
    root_rec = pvd[156:190]
    root_extent, root_size = struct.unpack('<I', root_rec[2:6])[0], struct.unpack('<I', root_rec[10:14])[0]
    data = image[root_extent * SECTOR:root_extent * SECTOR + root_size]
    files = {}
    pos = 0
    while pos < len(data) and data[pos]:
        length = data[pos]
        rec = data[pos:pos + length]
        extent, size = struct.unpack('<I', rec[2:6])[0], struct.unpack('<I', rec[10:14])[0]
        ident = rec[33:33 + rec[32]]
        if ident not in (b'\x00', b'\x01'):
            name = ident.decode('ascii').lower()
            name = name[:-3] if name.endswith('.;1') else name.split(';')[0]
            files[name] = image[extent * SECTOR:extent * SECTOR + size]
        pos += length
    return volume_id, files


def _text(value, cloud_config=False):
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        # JSON is YAML: no YAML library needed on the managed host.
        body = json.dumps(value, indent=2, sort_keys=True) + '\n'
        return ('#cloud-config\n' + body) if cloud_config else body
    text = str(value)
    return text if text.endswith('\n') else text + '\n'


def seed_files(name, user_data=None, meta_data=None, network_config=None):
    """The NoCloud files for guest ``name`` (meta-data defaults to its name)."""
    files = {
        'user-data': _text(user_data, cloud_config=True) or '#cloud-config\n{}\n',
        'meta-data': _text(meta_data) or 'instance-id: %s\nlocal-hostname: %s\n' % (name, name),
    }
    if network_config is not None:
        files['network-config'] = _text(network_config)
    return dict((k, v.encode('utf-8')) for k, v in files.items())


def seed_image(name, user_data=None, meta_data=None, network_config=None):
    """(file name, ISO bytes): the name carries a hash of the content."""
    image = build_iso(seed_files(name, user_data, meta_data, network_config))
    digest = hashlib.sha256(image).hexdigest()[:12]
    return '%s-cidata-%s.iso' % (name, digest), image
