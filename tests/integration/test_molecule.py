"""Role scenarios (molecule, real Debian guests under TCG) as part of the integration tier.

The scenarios run in a background lane started with the tier (conftest.molecule_lane); these tests
are sorted last and wait for each result. Which scenarios: KVMOPS_MOLECULE (default kvm_host/default);
the full set is `make molecule` (docs/molecule.md).
"""

import os

import pytest

from conftest import MOLECULE, ROOT


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
