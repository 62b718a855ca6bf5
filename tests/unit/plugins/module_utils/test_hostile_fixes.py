"""Fixes found by the hostile-input tier (tests/integration/hostile/): each refusal, before any write."""

import os

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import OPTIONS_BY_NAME


def test_filesystems_source_through_a_symlink_is_refused(tmp_path):
    real = tmp_path / 'share'
    real.mkdir()
    link = tmp_path / 'share-link'
    os.symlink(str(tmp_path / 'victim'), str(link))
    (tmp_path / 'victim').mkdir()
    below = tmp_path / 'dir-link'
    os.symlink(str(real), str(below))
    (real / 'sub').mkdir()
    preflight = OPTIONS_BY_NAME['filesystems'].preflight
    preflight([dict(source=str(real), target='a')], True)   # the real directory is fine
    with pytest.raises(KvmError, match=r'^filesystems\[0\]\.source: .* goes through a symlink \(to .*victim\)'):
        preflight([dict(source=str(link), target='a')], True)
    with pytest.raises(KvmError, match=r'^filesystems\[1\]\.source: .* goes through a symlink'):
        preflight([dict(source=str(real), target='a'), dict(source=str(below / 'sub'), target='b')], True)
    preflight([dict(source=str(link), target='a')], False)   # a remote host's paths are not this host's
