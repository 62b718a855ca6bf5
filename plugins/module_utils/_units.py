# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt's size units (virsh setmem/setmaxmem, <memory unit=...>, volumes)."""

from __future__ import annotations

import re

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

# libvirt: b/bytes=1, KB=1000, k/KiB=1024, MB=1000^2, M/MiB=1024^2, ... up to E/EiB.
_POWERS = {'k': 1, 'm': 2, 'g': 3, 't': 4, 'p': 5, 'e': 6}


def unit_factor(unit):
    """Bytes per ``unit``, following libvirt's rules (case-insensitive prefix)."""
    u = (unit or 'b').strip()
    low = u.lower()
    if low in ('b', 'byte', 'bytes'):
        return 1
    if not low or low[0] not in _POWERS:
        raise KvmError('unknown size unit %r (use b, KB, KiB/k, MB, MiB/M, GB, GiB/G, TB, TiB/T, ...)' % unit)
    power = _POWERS[low[0]]
    rest = low[1:]
    if rest in ('', 'ib'):
        return 1024 ** power
    if rest == 'b':
        return 1000 ** power
    raise KvmError('unknown size unit %r (use b, KB, KiB/k, MB, MiB/M, GB, GiB/G, TB, TiB/T, ...)' % unit)


def to_bytes(value, default_unit='b'):
    """Parse ``512``, ``512MiB``, ``1 GiB``, ``2G``, ``1.5G`` into bytes.

    Exact arithmetic (no float), so a huge number is a huge integer for the caller to bound, never an
    overflow; a value longer than 64 characters is refused.
    """
    if isinstance(value, bool):
        raise KvmError('invalid size %r' % (value,))
    if isinstance(value, int):
        return value * unit_factor(default_unit)
    text = str(value)
    match = re.match(r'^[ \t]*([0-9]+)(?:\.([0-9]+))?[ \t]*([A-Za-z]*)[ \t]*$', text) if len(text) <= 64 else None
    if not match or text.endswith('\n'):
        raise KvmError('invalid size %r: expected a number with an optional unit such as 512MiB or 8G' % (value,))
    whole, fraction, unit = match.groups()
    fraction = fraction or ''
    numerator = int(whole + fraction) * unit_factor(unit or default_unit)
    denominator = 10 ** len(fraction)
    return -(-numerator // denominator)  # rounded up


def to_kib(value, default_unit='KiB'):
    """Size in KiB, rounded up as libvirt does."""
    size = to_bytes(value, default_unit)
    return (size + 1023) // 1024
