"""kvm_host's OS-dependent decisions, rendered for every supported platform.

RHEL-family packages cannot be fetched on the Debian test machines, so the
package lists, service units and file paths the role would use there are
checked by running the role's decision step with that platform's facts.
"""

import pytest

from role_decisions import decide

DEBIAN_PACKAGES = {'qemu-system-x86', 'libvirt-daemon-system', 'virtinst', 'qemu-utils', 'libguestfs-tools',
                   'python3-libvirt', 'python3-lxml'}
RHEL_PACKAGES = {'qemu-kvm', 'libvirt', 'virt-install', 'qemu-img', 'libguestfs-tools', 'python3-libvirt',
                 'python3-lxml'}
MODULAR = ['virtqemud.socket', 'virtnetworkd.socket', 'virtstoraged.socket', 'virtproxyd.socket']


def _decide(playbook, tmp_path, facts, extra=None):
    return decide(playbook, tmp_path, 'kvm_host', facts, extra)


@pytest.mark.parametrize('family, version, service_mgr, cpu, packages, services, modular, conf', [
    ('Debian', '12', 'systemd', 'GenuineIntel', DEBIAN_PACKAGES, ['libvirtd.service'], False, '/etc/libvirt/libvirtd.conf'),
    ('Debian', '12', 'sysvinit', 'AuthenticAMD', DEBIAN_PACKAGES, ['libvirtd.service'], False, '/etc/libvirt/libvirtd.conf'),
    ('Debian', '24', 'systemd', 'GenuineIntel', DEBIAN_PACKAGES, ['libvirtd.service'], False, '/etc/libvirt/libvirtd.conf'),
    ('RedHat', '8', 'systemd', 'GenuineIntel', RHEL_PACKAGES, ['libvirtd.service'], False, '/etc/libvirt/libvirtd.conf'),
    ('RedHat', '9', 'systemd', 'AuthenticAMD', RHEL_PACKAGES, MODULAR, True, '/etc/libvirt/virtproxyd.conf'),
    ('RedHat', '10', 'systemd', 'GenuineIntel', RHEL_PACKAGES, MODULAR, True, '/etc/libvirt/virtproxyd.conf'),
])
def test_platform_plan(playbook, tmp_path, family, version, service_mgr, cpu, packages, services, modular, conf):
    facts = dict(os_family=family, distribution_major_version=version, service_mgr=service_mgr,
                 processor=['0', cpu, 'model'])
    result = _decide(playbook, tmp_path, facts)
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_kvm_host_plan']
    assert packages <= set(plan['packages'])
    assert plan['package_manager'] == ('dnf' if family == 'RedHat' else 'apt')
    assert plan['services'] == services
    assert plan['modular'] is modular
    assert plan['systemd'] is (service_mgr == 'systemd')
    assert plan['kvm_module'] == ('kvm_amd' if cpu == 'AuthenticAMD' else 'kvm_intel')
    assert plan['daemon_conf'] == conf
    assert plan['sysconfig'] == ('/etc/sysconfig/libvirtd' if family == 'RedHat' else '/etc/default/libvirtd')
    assert plan['listen_socket'] == ''


@pytest.mark.parametrize('family, version, socket', [
    ('Debian', '12', 'libvirtd-tcp.socket'),
    ('RedHat', '9', 'virtproxyd-tcp.socket'),
])
def test_insecure_tcp_only_when_named(playbook, tmp_path, family, version, socket):
    facts = dict(os_family=family, distribution_major_version=version, service_mgr='systemd', processor=[])
    refused = _decide(playbook, tmp_path, facts, {'kvm_host_migration_transport': 'tcp'})
    assert refused.rc != 0
    assert 'kvm_host_migration_insecure_tcp' in refused.stdout
    accepted = _decide(playbook, tmp_path, facts, {'kvm_host_migration_transport': 'tcp',
                                                   'kvm_host_migration_insecure_tcp': True})
    assert accepted.rc == 0
    plan = accepted.task('plan')['_kvm_host_plan']
    assert plan['listen_tcp'] is True and plan['listen_socket'] == socket


def test_bad_input_is_rejected(playbook, tmp_path):
    facts = dict(os_family='Debian', distribution_major_version='12', service_mgr='systemd', processor=[])
    result = _decide(playbook, tmp_path, facts, {'kvm_host_nested': 'sometimes'})
    assert result.rc != 0
    # The argument spec catches it first; the role's own assert is the second line of defence.
    assert 'kvm_host_nested' in result.stdout and 'sometimes' in result.stdout
