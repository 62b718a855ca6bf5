"""Integration tier: real ansible-playbook against the real local libvirtd."""

import json
import os
import subprocess
import tempfile
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = os.path.join(ROOT, 'tests', 'integration', 'targets')
URI = os.environ.get('KVMOPS_TEST_URI', 'qemu:///system')


def _env(extra=None):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.venv', 'collections'),
        ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
        ANSIBLE_ROLES_PATH=TARGETS,
        ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, 'tests', 'integration', 'callback_plugins'),
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_NOCOLOR='1',
    )
    env.update(extra or {})
    return env


class PlaybookResult(object):
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data

    def tasks(self, name=None):
        """Per-task results for localhost (json callback), optionally by task name."""
        out = []
        for play in (self.data or {}).get('plays', []):
            for task in play.get('tasks', []):
                if name is None or task['task']['name'] == name:
                    out.append(task['hosts'].get('localhost', {}))
        return out

    def task(self, name):
        found = self.tasks(name)
        assert found, 'no task named %r ran' % name
        return found[-1]


def run_playbook(path, extra_vars=None, check=False, diff=False, json_output=True, timeout=1800):
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), path,
           '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')]
    if extra_vars:
        cmd += ['-e', json.dumps(extra_vars)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    env = _env({'ANSIBLE_STDOUT_CALLBACK': 'kvmops_test_json'} if json_output else None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    data = None
    if json_output:
        try:
            data = json.loads(proc.stdout[proc.stdout.index('{'):])
        except ValueError:
            data = None
    return PlaybookResult(proc, data)


@pytest.fixture
def playbook():
    return run_playbook


@pytest.fixture
def unique():
    """A name prefix no other run uses: tests clean up after themselves."""
    return 'kvmops-it-%s' % uuid.uuid4().hex[:8]


@pytest.fixture(scope='session')
def conn():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture
def tmpdir_playbook(tmp_path):
    def write(text):
        path = tmp_path / 'play.yml'
        path.write_text(text)
        return str(path)
    return write


def target_playbook(target, extra_vars_keys=()):
    """A playbook that runs one integration target (a role under targets/)."""
    fd, path = tempfile.mkstemp(prefix='kvmops-target-', suffix='.yml')
    with os.fdopen(fd, 'w') as handle:
        handle.write('- hosts: localhost\n  gather_facts: false\n  roles:\n    - %s\n' % target)
    return path
