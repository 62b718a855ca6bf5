"""The README's module_defaults pattern works for every module of the action group.

Every member of ``group/kvmops.kvm.kvm`` must accept the connection options, so a play that sets them
once for the group runs any member; a module that takes no ``uri`` (kvm_bridge) is not a member. The
play runs each member in check mode against libvirt's in-process test driver (nothing is written).
"""

import os

import yaml

from conftest import ROOT

RUNTIME = os.path.join(ROOT, 'meta', 'runtime.yml')
MODULES = os.path.join(ROOT, 'plugins', 'modules')

# One harmless task per member (check mode, test:///default): enough for the module to parse its options.
TASKS = {
    'kvm_info': {'gather': ['host']},
    'kvm_domain': {'name': 'kvmops-group-check', 'memory': '128MiB', 'state': 'present'},
    'kvm_guests': {'guests': [{'name': 'kvmops-group-check', 'memory': '128MiB'}], 'unlisted': 'ignore'},
    'kvm_pool': {'name': 'default-pool', 'state': 'active'},
    'kvm_volume': {'pool': 'default-pool', 'name': 'kvmops-group-check.qcow2', 'capacity': '1MiB'},
    'kvm_snapshot': {'guest': 'test', 'name': 'kvmops-group-check'},
    'kvm_network': {'name': 'kvmops-group-check', 'forward': 'isolated'},
    'kvm_migrate': {'name': 'test', 'destination_uri': 'qemu+ssh://kvmops-group-check.invalid/system'},
    'kvm_migrate_guests': {'guests': ['test'], 'dest_candidates': ['qemu+ssh://kvmops-group-check.invalid/system']},
}


def group():
    with open(RUNTIME) as handle:
        return yaml.safe_load(handle)['action_groups']['kvm']


def test_every_member_takes_the_connection_options_and_every_taker_is_a_member():
    members = set(group())
    takers = set()
    for name in sorted(os.listdir(MODULES)):
        if not name.endswith('.py') or name.startswith('_'):   # __pycache__ of a local run, __init__.py
            continue
        with open(os.path.join(MODULES, name)) as handle:
            text = handle.read()
        if 'kvmops.kvm.connection' in text:
            takers.add(name[:-3])
    assert members == takers


def test_module_defaults_for_the_group_reach_every_member(playbook, tmp_path):
    assert set(TASKS) == set(group()), 'add a task for every member of the action group'
    play = [{'hosts': 'localhost', 'gather_facts': False,
             'module_defaults': {'group/kvmops.kvm.kvm': {'uri': 'test:///default'}},
             'tasks': [dict({'name': member, 'kvmops.kvm.' + member: args}, check_mode=True, ignore_errors=True)
                       for member, args in TASKS.items()]}]
    path = tmp_path / 'group.yml'
    path.write_text(yaml.safe_dump(play))
    result = playbook(str(path))
    assert result.rc == 0, result.stdout[-3000:]
    for member in TASKS:
        task = result.task(member)
        # whatever the module decides about the test driver's objects, it never refuses the group's options
        assert 'Unsupported parameters' not in str(task.get('msg', '')), (member, task.get('msg'))
        assert 'uri' not in str(task.get('msg', '')).split(':', maxsplit=1)[0], (member, task.get('msg'))
