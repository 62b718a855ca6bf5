"""nfs_storage's OS-dependent decisions, rendered for every supported platform.

The role's decision step runs with each platform's facts; nothing on this machine changes.
"""

import pytest

from role_decisions import decide


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


@pytest.mark.parametrize('clients', [['*'], ['192.0.2.11', '0.0.0.0/0'], ['::/0']])
def test_world_export_only_when_named(playbook, tmp_path, clients):
    exports = [{'path': '/exports/vms', 'clients': clients}]
    refused = _decide(playbook, tmp_path, _facts('Debian'), {'nfs_storage_exports': exports})
    assert refused.rc != 0
    assert 'nfs_storage_allow_world' in refused.stdout
    accepted = _decide(playbook, tmp_path, _facts('Debian'),
                       {'nfs_storage_exports': exports, 'nfs_storage_allow_world': True})
    assert accepted.rc == 0, accepted.stdout[-2000:]


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
], ids=['relative-path', 'no-clients', 'same-mount-point', 'no-export'])
def test_bad_input_is_rejected(playbook, tmp_path, extra):
    result = _decide(playbook, tmp_path, _facts('Debian'), extra)
    assert result.rc != 0
    assert 'nfs_storage' in result.stdout
