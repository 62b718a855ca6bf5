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


DEBIAN = dict(os_family='Debian', distribution_major_version='12', service_mgr='systemd', processor=[])


@pytest.mark.parametrize('extra, name', [
    ({'kvm_host_migration_listen_address': '0.0.0.0"\nauth_tls = "none'}, 'kvm_host_migration_listen_address'),
    ({'kvm_host_migration_listen_address': '192.0.2.1\n'}, 'kvm_host_migration_listen_address'),
    ({'kvm_host_tls_key_file': '/etc/pki/key.pem"; auth_tls = "none'}, 'kvm_host_tls_key_file'),
    ({'kvm_host_tls_cert_file': '/etc/pki/../../etc/shadow'}, 'kvm_host_tls_cert_file'),
    ({'kvm_host_tls_ca_file': 'cacert.pem'}, 'kvm_host_tls_ca_file'),
    ({'kvm_host_extra_packages': ['https://example.invalid/evil.rpm']}, 'kvm_host_extra_packages'),
    ({'kvm_host_extra_packages': ['-oAPT::Update::Pre-Invoke::=id']}, 'kvm_host_extra_packages'),
    ({'kvm_host_libvirt_users': ['bob;id']}, 'kvm_host_libvirt_users'),
    ({'kvm_host_default_pool_path': '/var/lib/libvirt/../../etc'}, 'kvm_host_default_pool_path'),
], ids=['listen-quote', 'listen-newline', 'key-quote', 'cert-dotdot', 'ca-relative', 'package-url', 'package-option',
        'user-shell', 'pool-dotdot'])
def test_values_reaching_files_are_checked(playbook, tmp_path, extra, name):
    result = _decide(playbook, tmp_path, DEBIAN, extra)
    assert result.rc != 0
    assert name + ' must be' in result.stdout


@pytest.mark.parametrize('extra', [
    {'kvm_host_migration_listen_address': '192.0.2.10'},
    {'kvm_host_migration_listen_address': '2001:db8::10'},
    {'kvm_host_migration_listen_address': 'hv01.example.com'},
    {'kvm_host_extra_packages': ['htop', 'qemu-guest-agent=1:7.2+dfsg-7'], 'kvm_host_libvirt_users': ['alice', 'svc_ops']},
])
def test_plain_values_are_accepted(playbook, tmp_path, extra):
    result = _decide(playbook, tmp_path, DEBIAN, extra)
    assert result.rc == 0, result.stdout[-2000:]
