import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_bytes, to_kib


@pytest.mark.parametrize('value, expected', [
    (512, 512),
    ('512', 512),
    ('1KB', 1000),
    ('1k', 1024),
    ('1KiB', 1024),
    ('512MiB', 512 * 1024 ** 2),
    ('512M', 512 * 1024 ** 2),
    ('512MB', 512 * 1000 ** 2),
    ('1 GiB', 1024 ** 3),
    ('2G', 2 * 1024 ** 3),
    ('1.5G', 3 * 1024 ** 3 // 2),
    ('1TB', 1000 ** 4),
    ('8 gib', 8 * 1024 ** 3),
])
def test_to_bytes(value, expected):
    assert to_bytes(value) == expected


@pytest.mark.parametrize('value, unit, expected', [
    ('1024', 'KiB', 1024),
    ('1', 'MiB', 1024),
    ('1000', 'b', 1),        # rounded up to a whole KiB, as libvirt does
    ('1025', 'b', 2),
    ('1GB', 'KiB', 976563),
    (512, 'MiB', 524288),
])
def test_to_kib(value, unit, expected):
    assert to_kib(value, unit) == expected


@pytest.mark.parametrize('bad', ['', 'lots', '12 furlongs', '1.2.3G', '-5M', True])
def test_bad_sizes_are_clear_errors(bad):
    with pytest.raises(KvmError) as err:
        to_bytes(bad)
    assert 'size' in err.value.msg


@pytest.mark.parametrize('bad', ['9' * 400, '10G\n', '1\n0G', '1e9'])
def test_hostile_sizes_are_clear_errors(bad):
    """No float: never an OverflowError; a trailing newline is not whitespace to skip."""
    with pytest.raises(KvmError, match='invalid size'):
        to_bytes(bad)


def test_huge_sizes_are_exact_integers():
    assert to_bytes('9' * 40 + 'E') == int('9' * 40) * 1024 ** 6
    assert to_bytes('1.5G') == 3 * 1024 ** 3 // 2
    assert to_bytes('0.1b') == 1
