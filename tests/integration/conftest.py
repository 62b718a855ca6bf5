"""Integration tier: real ansible-playbook against the real local libvirtd."""

import json
import os
import subprocess
import tempfile
import threading
import time
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


# ansible-core 2.19's controller gives every failed result an ``exception`` key; without traceback
# display enabled (the default) its value is this placeholder, never a traceback.
NO_TRACEBACK = '(traceback unavailable)'


def traceback_of(result):
    """The traceback a task result carries (module or controller), or None."""
    value = result.get('exception')
    return None if value in (None, NO_TRACEBACK) else value


def plain(value):
    """VALUE with every unsafe marker removed. ansible-core 2.16 to 2.18 mark only the strings the plugin
    wrapped (those holding { or }); from 2.19 every value an inventory plugin sets is untrusted and printed
    marked. Tests compare contents with plain(); the marking of hostile values is checked on the raw form."""
    if isinstance(value, dict):
        if list(value) == ['__ansible_unsafe']:
            return value['__ansible_unsafe']
        return dict((plain(key), plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


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


def osless_virt_type(conn):
    """The domain type of an OS-less test guest on ``conn``: kvm when libvirt offers it, else qemu (TCG)."""
    import libvirt
    try:
        conn.getDomainCapabilities(None, 'x86_64', None, 'kvm', 0)
        return 'kvm'
    except libvirt.libvirtError:
        return 'qemu'


def remove_guest(conn, name):
    """Destroy and undefine guest ``name`` on ``conn`` when it is there, with its managed save, snapshot
    metadata, NVRAM and TPM state (never its disks); a missing guest and libvirt errors are tolerated."""
    import libvirt
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        if dom.isPersistent():
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)
    except libvirt.libvirtError:
        pass


@pytest.fixture(scope='session')
def virt_type(conn):
    return osless_virt_type(conn)


@pytest.fixture
def tmpdir_playbook(tmp_path):
    def write(text):
        path = tmp_path / 'play.yml'
        path.write_text(text)
        return str(path)
    return write


def one_task_play(tmp_path, module, args, name='task'):
    """A playbook file with one task, ``module`` with ``args`` (JSON is YAML); returns its path."""
    path = tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps([dict(hosts='localhost', gather_facts=False, tasks=[{'name': name, module: args}])],
                               indent=1))
    return str(path)


@pytest.fixture
def default_network(conn):
    """The `default` NAT network, started if needed and stopped again afterwards when it was down."""
    import libvirt
    net = conn.networkLookupByName('default')
    was_active = bool(net.isActive())
    if not was_active:
        net.create()
    yield net
    if not was_active:
        try:
            net.destroy()
        except libvirt.libvirtError:
            pass


def run_domain(playbook, tmp_path, args, check=False, diff=False):
    """One kvmops.kvm.kvm_domain task with ``args``; its result, asserted not failed and free of tracebacks."""
    result = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain'), check=check, diff=diff)
    task = result.tasks('domain')
    assert task, (result.stdout + result.stderr)[-4000:]
    task = task[-1]
    assert not task.get('failed'), json.dumps(task, indent=1)[-4000:]
    assert 'Traceback' not in result.stdout + result.stderr
    return task


def target_playbook(target, extra_vars_keys=()):
    """A playbook that runs one integration target (a role under targets/)."""
    fd, path = tempfile.mkstemp(prefix='kvmops-target-', suffix='.yml')
    with os.fdopen(fd, 'w') as handle:
        handle.write('- hosts: localhost\n  gather_facts: false\n  roles:\n    - %s\n' % target)
    return path


# ---------------------------------------------------------------- molecule, beside the other tests
# Role scenarios boot Debian guests under TCG and spend most of their time in the guest's dpkg; they run
# in one background lane while the rest of the integration tier runs, and test_molecule.py (moved to
# the end of the run) waits for each result. KVMOPS_MOLECULE names the scenarios (role/scenario, space
# separated, a repeated one runs once; `make test` adds scripts/molecule-changed.sh's choice to
# kvm_host/default); `make molecule` runs every scenario of every role, one after the other.
MOLECULE = list(dict.fromkeys(os.environ.get('KVMOPS_MOLECULE', 'kvm_host/default').split()))
MOLECULE_TIMEOUT = int(os.environ.get('KVMOPS_MOLECULE_TIMEOUT', '2700'))
MOLECULE_LOGS = os.path.join(ROOT, 'build', 'molecule')


class MoleculeLane(object):
    """Runs ``molecule test -s <scenario>`` in each role's directory, one scenario after the other."""

    def __init__(self, scenarios):
        self.scenarios = list(scenarios)
        self.results = {}
        self.done = dict((key, threading.Event()) for key in self.scenarios)
        self.thread = threading.Thread(target=self._run_all, name='molecule-lane', daemon=True)

    def log(self, key):
        return os.path.join(MOLECULE_LOGS, key.replace('/', '-') + '.log')

    def _run_all(self):
        os.makedirs(MOLECULE_LOGS, exist_ok=True)
        env = dict(os.environ, PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.venv', 'collections'), ANSIBLE_FORCE_COLOR='0')
        for key in self.scenarios:
            role, scenario = key.split('/', 1)
            started = time.monotonic()
            try:
                with open(self.log(key), 'w') as out:
                    proc = subprocess.run(['molecule', 'test', '-s', scenario], cwd=os.path.join(ROOT, 'roles', role),
                                          env=env, stdout=out, stderr=subprocess.STDOUT, timeout=MOLECULE_TIMEOUT,
                                          check=False)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = 'timeout after %ds' % MOLECULE_TIMEOUT
            except OSError as exc:
                rc = 'could not run molecule: %s' % exc
            self.results[key] = dict(rc=rc, seconds=round(time.monotonic() - started))
            self.done[key].set()

    def wait(self, key):
        self.done[key].wait()
        return self.results[key]


def pytest_collection_modifyitems(session, config, items):
    """Molecule results are waited for last, so the other tests run while the scenarios do."""
    items.sort(key=lambda item: 'test_molecule.py' in item.nodeid)


@pytest.fixture(scope='session', autouse=True)
def molecule_lane(request):
    """Started with the integration tier when any molecule test is selected; None otherwise."""
    wanted = [key for key in MOLECULE
              if any('test_molecule.py' in item.nodeid and '[%s]' % key in item.nodeid for item in request.session.items)]
    if not wanted:
        yield None
        return
    lane = MoleculeLane(wanted)
    lane.thread.start()
    yield lane
