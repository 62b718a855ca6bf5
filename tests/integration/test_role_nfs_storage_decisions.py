"""nfs_storage's OS-dependent decisions, rendered for every supported platform.

The role's decision step runs with each platform's facts; nothing on this machine changes.
"""

import os

import pytest

from conftest import ROOT
from role_decisions import decide, decide_play, parse_exports


EXPORTS = [{'path': '/exports/vms', 'clients': ['192.0.2.11', '192.0.2.12']},
           {'path': '/exports/iso', 'clients': ['192.0.2.0/24'], 'options': 'ro,sync', 'owner': 'qemu'}]
MOUNTS = [{'server': 'nfs01', 'export': '/exports/vms'},
          {'server': 'nfs01', 'export': '/exports/iso', 'path': '/var/lib/libvirt/iso', 'pool': {'name': 'iso'}}]


def _facts(family, selinux='disabled'):
    return dict(os_family=family, distribution_major_version='9' if family == 'RedHat' else '12',
                selinux={'status': selinux})


def _decide(playbook, tmp_path, facts, extra=None):
    return decide(playbook, tmp_path, 'nfs_storage', facts, extra)


@pytest.mark.parametrize('family, exports, mounts, packages, service', [
    ('Debian', EXPORTS, [], ['nfs-kernel-server'], 'nfs-kernel-server'),
    ('Debian', [], MOUNTS, ['nfs-common'], 'nfs-kernel-server'),
    ('Debian', EXPORTS, MOUNTS, ['nfs-kernel-server', 'nfs-common'], 'nfs-kernel-server'),
    ('RedHat', EXPORTS, [], ['nfs-utils'], 'nfs-server'),
    ('RedHat', [], MOUNTS, ['nfs-utils'], 'nfs-server'),
    ('RedHat', EXPORTS, MOUNTS, ['nfs-utils'], 'nfs-server'),
    ('Debian', [], [], [], 'nfs-kernel-server'),
])
def test_packages_and_service(playbook, tmp_path, family, exports, mounts, packages, service):
    result = _decide(playbook, tmp_path, _facts(family),
                     {'nfs_storage_exports': exports, 'nfs_storage_mounts': mounts})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_nfs_storage_plan']
    assert plan['packages'] == packages
    assert plan['service'] == service
    assert plan['server'] is bool(exports) and plan['client'] is bool(mounts)
    assert plan['exports_file'] == '/etc/exports.d/kvmops.exports'
    assert plan['firewall_services'] == ['nfs', 'mountd', 'rpc-bind']


def test_export_lines_and_mounts(playbook, tmp_path):
    result = _decide(playbook, tmp_path, _facts('Debian'), {'nfs_storage_exports': EXPORTS, 'nfs_storage_mounts': MOUNTS})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_nfs_storage_plan']
    assert plan['export_lines'] == [
        '/exports/vms 192.0.2.11(rw,sync,no_root_squash) 192.0.2.12(rw,sync,no_root_squash)',
        '/exports/iso 192.0.2.0/24(ro,sync)',
    ]
    assert [(e['owner'], e['group'], e['mode']) for e in plan['exports']] == [('root', 'root', '0755'), ('qemu', 'root', '0755')]
    vms, iso = plan['mounts']
    # Same path as the export unless told otherwise: migration needs the same path on every host.
    assert vms == {'server': 'nfs01', 'export': '/exports/vms', 'path': '/exports/vms', 'src': 'nfs01:/exports/vms',
                   'options': 'rw,hard,_netdev', 'by': 'fstab'}
    assert iso['by'] == 'libvirt' and iso['pool'] == {'name': 'iso', 'autostart': True}
    assert iso['path'] == '/var/lib/libvirt/iso'


@pytest.mark.parametrize('family, selinux, mounts, boolean', [
    ('RedHat', 'enabled', MOUNTS, 'virt_use_nfs'),
    ('RedHat', 'disabled', MOUNTS, ''),
    ('RedHat', 'enabled', [], ''),          # a server only: QEMU does not run there
    ('Debian', 'enabled', MOUNTS, ''),      # no SELinux policy for virt on Debian
])
def test_selinux_boolean(playbook, tmp_path, family, selinux, mounts, boolean):
    result = _decide(playbook, tmp_path, _facts(family, selinux), {'nfs_storage_mounts': mounts})
    assert result.rc == 0, result.stdout[-2000:]
    assert result.task('plan')['_nfs_storage_plan']['selinux_boolean'] == boolean


@pytest.mark.parametrize('clients', [['*'], ['192.0.2.11', '0.0.0.0/0'], ['::/0'], ['0.0.0.0/1', '128.0.0.0/1'],
                                     ['*.example.com'], ['::ffff:0:0/96']])
def test_world_export_only_when_named(playbook, tmp_path, clients):
    # Computed: wildcards, and networks whose union covers all of IPv4 or IPv6, are the world.
    exports = [{'path': '/exports/vms', 'clients': clients}]
    refused = _decide(playbook, tmp_path, _facts('Debian'), {'nfs_storage_exports': exports})
    assert refused.rc != 0
    assert 'nfs_storage_exports[0].clients: ' in refused.stdout and 'nfs_storage_allow_world' in refused.stdout
    # Even then, root on every client is refused: no_root_squash (the default) only for listed hosts.
    still = _decide(playbook, tmp_path, _facts('Debian'),
                    {'nfs_storage_exports': exports, 'nfs_storage_allow_world': True})
    assert still.rc != 0 and 'no_root_squash' in still.stdout
    accepted = _decide(playbook, tmp_path, _facts('Debian'),
                       {'nfs_storage_exports': [dict(exports[0], options='ro,sync')], 'nfs_storage_allow_world': True})
    assert accepted.rc == 0, accepted.stdout[-2000:]


RENDER = """
    - name: render the role's exports template into the test directory
      ansible.builtin.template:
        src: "{{ template }}"
        dest: "{{ dest }}"
        mode: "0644"
"""


def test_exports_file_parses_back(playbook, tmp_path):
    """The role's own template, rendered from its plan and read back following exports(5): what was asked."""
    asked = [{'path': '/exports/vms', 'clients': ['hv01.example.com', '192.0.2.0/24', '2001:db8::/64']},
             {'path': '/exports/odd_#name"(x)', 'clients': ['@hypervisors'], 'options': 'ro,sync,no_subtree_check'},
             {'path': '/exports/caf\u00e9/$(id)', 'clients': ['192.0.2.11'], 'options': 'rw,sync,fsid=7'}]
    play = tmp_path / 'render.yml'
    play.write_text(decide_play('nfs_storage', _facts('Debian'), RENDER))
    dest = tmp_path / 'kvmops.exports'
    result = playbook(str(play), extra_vars={
        'nfs_storage_exports': asked,
        'template': os.path.join(ROOT, 'roles', 'nfs_storage', 'templates', 'exports.j2'), 'dest': str(dest)})
    assert result.rc == 0, result.stdout[-3000:]
    text = dest.read_text()
    assert parse_exports(text) == [
        ('/exports/vms', [('hv01.example.com', 'rw,sync,no_root_squash'), ('192.0.2.0/24', 'rw,sync,no_root_squash'),
                          ('2001:db8::/64', 'rw,sync,no_root_squash')]),
        ('/exports/odd_#name"(x)', [('@hypervisors', 'ro,sync,no_subtree_check')]),
        ('/exports/caf\u00e9/$(id)', [('192.0.2.11', 'rw,sync,fsid=7')]),
    ]
    # One line per export; comments only in the header.
    body = [line for line in text.splitlines() if line.strip() and not line.startswith('#')]
    assert len(body) == 3


@pytest.mark.parametrize('exports, message', [
    ([{'path': '/exports/vms\n/ *(rw,no_root_squash)', 'clients': ['h1']}], 'nfs_storage_exports[0].path: '),
    ([{'path': '/exports/vms', 'clients': ['10.0.0.1 *']}], 'nfs_storage_exports[0].clients[0]: '),
    ([{'path': '/exports/../etc', 'clients': ['h1']}], 'nfs_storage_exports[0].path: '),
    ([{'path': '/exports/vms', 'clients': ['h1'], 'options': 'rw,sync,bogus'}], 'nfs_storage_exports[0].options: '),
    ([{'path': '/exports/vms', 'clients': ['@hv']}], 'nfs_storage_export_options: no_root_squash'),
], ids=['path-newline', 'client-space-star', 'path-dotdot', 'unknown-option', 'root-for-a-netgroup'])
def test_hostile_exports_are_refused_by_name(playbook, tmp_path, exports, message):
    result = _decide(playbook, tmp_path, _facts('Debian'), {'nfs_storage_exports': exports})
    assert result.rc != 0
    assert message in result.stdout


@pytest.mark.parametrize('options', ['rw,async,no_root_squash', 'rw,no_root_squash'])
def test_export_without_sync_only_when_named(playbook, tmp_path, options):
    exports = [{'path': '/exports/vms', 'clients': ['h1'], 'options': options}]
    refused = _decide(playbook, tmp_path, _facts('Debian'), {'nfs_storage_exports': exports})
    assert refused.rc != 0
    assert 'nfs_storage_allow_async' in refused.stdout
    accepted = _decide(playbook, tmp_path, _facts('Debian'),
                       {'nfs_storage_exports': exports, 'nfs_storage_allow_async': True})
    assert accepted.rc == 0, accepted.stdout[-2000:]


@pytest.mark.parametrize('extra', [
    {'nfs_storage_exports': [{'path': 'relative/dir', 'clients': ['h1']}]},
    {'nfs_storage_exports': [{'path': '/exports/vms', 'clients': []}]},
    {'nfs_storage_mounts': [{'server': 'a', 'export': '/x'}, {'server': 'b', 'export': '/y', 'path': '/x'}]},
    {'nfs_storage_mounts': [{'server': 'a'}]},
    {'nfs_storage_mounts': [{'server': 'nfs01 /dev/sda1', 'export': '/x'}]},
    {'nfs_storage_mounts': [{'server': 'nfs01', 'export': '/x', 'options': 'rw 0 0'}]},
], ids=['relative-path', 'no-clients', 'same-mount-point', 'no-export', 'server-with-space', 'options-with-space'])
def test_bad_input_is_rejected(playbook, tmp_path, extra):
    result = _decide(playbook, tmp_path, _facts('Debian'), extra)
    assert result.rc != 0
    assert 'nfs_storage' in result.stdout
