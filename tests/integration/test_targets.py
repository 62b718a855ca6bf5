"""Run every integration target under tests/integration/targets with ansible-playbook.

Each target is a role whose tasks do the four-step proof (check mode -> real ->
check mode again -> real again) and assert on what libvirt reports afterwards.
A target fails the test when any task fails; the recap must show no failures.
"""

import os
import uuid

import pytest

from conftest import TARGETS, run_playbook, target_playbook

NAMES = sorted(
    name for name in os.listdir(TARGETS)
    if os.path.isfile(os.path.join(TARGETS, name, 'tasks', 'main.yml'))
)


@pytest.mark.parametrize('target', NAMES)
def test_target(target):
    path = target_playbook(target)
    try:
        prefix = 'kvmops-it-%s' % uuid.uuid4().hex[:6]
        result = run_playbook(path, extra_vars={'kvm_test_prefix': prefix}, json_output=False)
    finally:
        os.unlink(path)
    tail = '\n'.join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.rc == 0, 'target %s failed (rc=%s):\n%s' % (target, result.rc, tail)
    assert 'failed=0' in result.stdout, tail
