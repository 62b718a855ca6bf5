"""Role scenarios (molecule, real Debian guests under TCG) as part of the integration tier.

The scenarios run in a background lane started with the tier (conftest.molecule_lane); these tests
are sorted last and wait for each result. Which scenarios: KVMOPS_MOLECULE (default kvm_host/default);
the full set is `make molecule`, the roles changed since the last release scripts/molecule-changed.sh
(docs/molecule.md), whose choice the test_changed_* tests check in a throw-away clone (no guest booted).
"""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import MOLECULE, ROOT

CHANGED = os.path.join(ROOT, 'scripts', 'molecule-changed.sh')
ALL_SCENARIOS = sorted('%s/%s' % (path.split(os.sep)[-4], path.split(os.sep)[-2])
                       for path in glob.glob(os.path.join(ROOT, 'roles', '*', 'molecule', '*', 'molecule.yml')))


def test_every_named_scenario_exists():
    for key in MOLECULE:
        role, scenario = key.split('/', 1)
        assert os.path.isfile(os.path.join(ROOT, 'roles', role, 'molecule', scenario, 'molecule.yml')), key


@pytest.mark.parametrize('key', MOLECULE)
def test_scenario(key, molecule_lane):
    assert molecule_lane is not None, 'the molecule lane did not start'
    result = molecule_lane.wait(key)
    with open(molecule_lane.log(key), errors='replace') as handle:
        tail = handle.read()[-6000:]
    print('molecule %s: rc=%s in %ss (log %s)' % (key, result['rc'], result['seconds'], molecule_lane.log(key)))
    # molecule test's sequence includes idempotence (changed=0 on the second converge) and verify
    assert result['rc'] == 0, 'molecule test %s: rc=%s after %ss\n%s' % (key, result['rc'], result['seconds'], tail)


@pytest.fixture
def clone(tmp_path):
    """A clone of the committed checkout with the work tree's molecule-changed.sh, tagged as a release."""
    repo = tmp_path / 'repo'
    subprocess.run(['git', 'clone', '-q', '--no-hardlinks', ROOT, str(repo)], check=True, timeout=120)
    shutil.copy(CHANGED, str(repo / 'scripts' / 'molecule-changed.sh'))
    subprocess.run(['git', '-C', str(repo), 'add', 'scripts/molecule-changed.sh'], check=True)
    subprocess.run(['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q',
                    '--allow-empty', '-m', 'script under test'], check=True)
    for tag in subprocess.run(['git', '-C', str(repo), 'tag', '-l'], capture_output=True, text=True,
                              check=True).stdout.split():
        subprocess.run(['git', '-C', str(repo), 'tag', '-d', tag], capture_output=True, check=True)
    subprocess.run(['git', '-C', str(repo), 'tag', '9.9.9'], check=True)
    return repo


def changed(repo, *args):
    proc = subprocess.run(['bash', str(repo / 'scripts' / 'molecule-changed.sh'), '--list'] + list(args),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split(), proc.stderr


def touch(repo, path):
    with open(str(repo / path), 'a') as handle:
        handle.write('\n# changed\n')


def test_changed_all_lists_every_scenario():
    proc = subprocess.run(['bash', CHANGED, '--list', '--all'], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ALL_SCENARIOS
    assert 'kvm_host/default' in ALL_SCENARIOS


def test_changed_nothing_since_the_tag(clone):
    keys, reasons = changed(clone)
    assert keys == [], reasons
    assert 'base: the last release tag 9.9.9' in reasons and 'not chosen' in reasons


def test_changed_role_files_choose_that_role(clone):
    touch(clone, 'roles/serial_console/tasks/main.yml')
    keys, reasons = changed(clone)
    assert keys == [key for key in ALL_SCENARIOS if key.startswith('serial_console/')], reasons
    assert 'its files changed: roles/serial_console/tasks/main.yml' in reasons
    keys, reasons = changed(clone, '--exclude', 'serial_console/default')
    assert 'serial_console/default' not in keys and 'excluded' in reasons


def test_changed_plugin_chooses_the_roles_calling_it(clone):
    touch(clone, 'plugins/filter/grub_serial.py')    # grub_serial_settings & co., called by serial_console only
    keys, reasons = changed(clone)
    assert keys == [key for key in ALL_SCENARIOS if key.startswith('serial_console/')], reasons
    assert 'filters it uses changed: plugins/filter/grub_serial.py' in reasons


def test_changed_shared_driver_chooses_every_role(clone):
    touch(clone, 'tests/molecule/shared/destroy.yml')
    keys, reasons = changed(clone)
    assert sorted(keys) == ALL_SCENARIOS, reasons
    assert 'shared molecule driver changed: tests/molecule/shared/destroy.yml' in reasons


def test_changed_without_a_release_tag_compares_with_the_changelogs_last_release(clone):
    # a clone without tags: the last commit that added a release to changelogs/changelog.yaml is the base
    subprocess.run(['git', '-C', str(clone), 'tag', '-d', '9.9.9'], capture_output=True, check=True)
    released = subprocess.run(['git', '-C', str(clone), 'log', '-1', '--format=%h', '--', 'changelogs/changelog.yaml'],
                              capture_output=True, text=True, check=True).stdout.strip()
    before, reasons = changed(clone)
    assert 'no release tag; the last release commit by changelogs/changelog.yaml, %s' % released in reasons
    touch(clone, 'roles/nfs_storage/defaults/main.yml')
    keys, reasons = changed(clone)
    assert set(keys) == set(before) | set(key for key in ALL_SCENARIOS if key.startswith('nfs_storage/')), reasons
    assert 'nfs_storage: chosen, its files changed: roles/nfs_storage/defaults/main.yml' in reasons


def test_changed_module_does_not_choose_a_role(clone):
    # modules and module_utils are the unit and integration tiers' to prove (host_bridge calls kvm_bridge,
    # nfs_storage kvm_pool, the filters import _validate)
    touch(clone, 'plugins/modules/kvm_bridge.py')
    touch(clone, 'plugins/module_utils/_pool.py')
    touch(clone, 'plugins/module_utils/_validate.py')   # under the grub and NFS filters too (unit-tested)
    keys, reasons = changed(clone)
    assert keys == [], reasons


def test_changed_refuses_an_unknown_base(clone):
    proc = subprocess.run(['bash', str(clone / 'scripts' / 'molecule-changed.sh'), '--list', '--base', 'no-such-ref'],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and 'not a commit' in proc.stderr
