"""kvm_host's OS-dependent decisions, rendered for every supported platform.

RHEL-family packages cannot be fetched on the Debian test machines, so the
package lists, service units and file paths the role would use there are
checked by running the role's decision step with that platform's facts.
"""

import glob
import json
import os
import re

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
    # ssh: no listener, and those an earlier run may have enabled are turned off.
    prefix = 'virtproxyd-' if modular else 'libvirtd-'
    assert plan['stale_sockets'] == [prefix + 'tls.socket', prefix + 'tcp.socket']


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
    assert plan['stale_sockets'] == [socket.replace('tcp', 'tls')]
    tls = _decide(playbook, tmp_path, facts, {'kvm_host_migration_transport': 'tls'}).task('plan')['_kvm_host_plan']
    assert tls['listen_socket'] == socket.replace('tcp', 'tls') and tls['stale_sockets'] == [socket]


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


# ---------------------------------------------------------------- kvm_host_features
ALL_FEATURES = ['tpm', 'secure_boot', 'virtiofs', 'hugepages']


@pytest.mark.parametrize('distribution, family, version, wanted, virtiofsd', [
    ('Debian', 'Debian', '12', {'swtpm', 'swtpm-tools', 'ovmf', 'qemu-system-common'}, '/usr/lib/qemu/virtiofsd'),
    ('Debian', 'Debian', '13', {'swtpm', 'swtpm-tools', 'ovmf', 'virtiofsd'}, '/usr/libexec/virtiofsd'),
    ('Ubuntu', 'Debian', '22', {'swtpm', 'swtpm-tools', 'ovmf', 'qemu-system-common'}, '/usr/lib/qemu/virtiofsd'),
    ('Ubuntu', 'Debian', '24', {'swtpm', 'swtpm-tools', 'ovmf', 'virtiofsd'}, '/usr/libexec/virtiofsd'),
    ('RedHat', 'RedHat', '8', {'swtpm', 'swtpm-tools', 'edk2-ovmf', 'qemu-kvm-common'}, '/usr/libexec/virtiofsd'),
    ('Rocky', 'RedHat', '9', {'swtpm', 'swtpm-tools', 'edk2-ovmf', 'virtiofsd'}, '/usr/libexec/virtiofsd'),
    ('RedHat', 'RedHat', '10', {'swtpm', 'swtpm-tools', 'edk2-ovmf', 'virtiofsd'}, '/usr/libexec/virtiofsd'),
])
def test_feature_packages(playbook, tmp_path, distribution, family, version, wanted, virtiofsd):
    facts = dict(os_family=family, distribution=distribution, distribution_major_version=version,
                 service_mgr='systemd', processor=[])
    result = _decide(playbook, tmp_path, facts, {'kvm_host_features': ALL_FEATURES, 'kvm_host_hugepages_count': 16})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_kvm_host_plan']
    assert wanted <= set(plan['packages'])
    assert len(plan['packages']) == len(set(plan['packages']))
    # The package of the other virtiofsd generation is not asked for (it does not exist on that release).
    other = {'virtiofsd', 'qemu-system-common', 'qemu-kvm-common'} - wanted
    assert not other & set(plan['packages']) - (DEBIAN_PACKAGES | RHEL_PACKAGES)
    assert plan['virtiofsd'] == virtiofsd
    assert plan['features'] == ALL_FEATURES
    assert plan['hugepages'] == {'count': 16, 'size': '2M', 'size_kb': 2048,
                                 'sysctl_file': '/etc/sysctl.d/61-kvm-host-hugepages.conf'}


def test_no_features_adds_nothing(playbook, tmp_path):
    plain = _decide(playbook, tmp_path, DEBIAN).task('plan')['_kvm_host_plan']
    assert plain['features'] == []
    assert not {'swtpm', 'swtpm-tools', 'virtiofsd'} & set(plain['packages'])
    tpm = _decide(playbook, tmp_path, DEBIAN, {'kvm_host_features': ['tpm']}).task('plan')['_kvm_host_plan']
    assert set(tpm['packages']) - set(plain['packages']) == {'swtpm', 'swtpm-tools'}


@pytest.mark.parametrize('extra, name', [
    ({'kvm_host_features': ['tpm', 'sgx']}, 'kvm_host_features'),
    ({'kvm_host_features': 'tpm'}, 'kvm_host_features'),
    ({'kvm_host_features': ['hugepages'], 'kvm_host_hugepages_count': -4}, 'kvm_host_hugepages_count'),
    ({'kvm_host_features': ['hugepages'], 'kvm_host_hugepages_count': '16\nvm.overcommit_memory = 1'},
     'kvm_host_hugepages_count'),
    ({'kvm_host_features': ['hugepages'], 'kvm_host_hugepages_size': '16M'}, 'kvm_host_hugepages_size'),
], ids=['unknown-feature', 'feature-string', 'count-negative', 'count-newline', 'size-unknown'])
def test_bad_features_are_rejected(playbook, tmp_path, extra, name):
    result = _decide(playbook, tmp_path, DEBIAN, extra)
    assert result.rc != 0
    assert name in result.stdout
    assert not result.tasks('plan')


# The feature checks run for real against this machine (which has swtpm, Debian 12's OVMF and QEMU's
# virtiofsd), in check mode: nothing may be written, and the published status must match the host.
FEATURE_PROBE = """
- hosts: localhost
  gather_facts: true
  tasks:
    - name: decide
      ansible.builtin.include_role:
        name: kvmops.kvm.kvm_host
        tasks_from: decide
    - name: preflight
      ansible.builtin.include_role:
        name: kvmops.kvm.kvm_host
        tasks_from: preflight
    - name: features
      ansible.builtin.include_role:
        name: kvmops.kvm.kvm_host
        tasks_from: features
    - name: status
      ansible.builtin.debug:
        var: kvm_host_features_status
"""


def _probe(playbook, tmp_path, extra):
    path = tmp_path / 'probe.yml'
    path.write_text(FEATURE_PROBE)
    return playbook(str(path), extra_vars=dict({'kvm_host_allow_emulation': True}, **extra), check=True)


def test_feature_status_on_this_host(playbook, tmp_path):
    sysctl_file = '/etc/sysctl.d/61-kvm-host-hugepages.conf'
    before = os.path.exists(sysctl_file)
    pages = int(open('/proc/sys/vm/nr_hugepages').read())
    result = _probe(playbook, tmp_path, {'kvm_host_features': ALL_FEATURES, 'kvm_host_hugepages_count': pages + 3})
    assert result.rc == 0, result.stdout[-3000:]
    status = result.task('status')['kvm_host_features_status']
    assert status['tpm']['usable'] is os.access('/usr/bin/swtpm', os.X_OK)
    wanted = sorted(path for path in glob.glob('/usr/share/qemu/firmware/*.json') + glob.glob('/etc/qemu/firmware/*.json')
                    if {'secure-boot', 'enrolled-keys'} <= set(json.load(open(path)).get('features', [])))
    assert status['secure_boot']['descriptors'] == wanted
    assert status['secure_boot']['usable'] is bool(wanted)
    assert status['virtiofs']['usable'] is os.path.exists('/usr/lib/qemu/virtiofsd')
    # Check mode: nothing reserved, nothing written; the status says the pool is short.
    assert status['hugepages']['reserved'] == pages == int(open('/proc/sys/vm/nr_hugepages').read())
    assert status['hugepages']['wanted'] == pages + 3 and status['hugepages']['usable'] is False
    assert os.path.exists(sysctl_file) is before


def test_hugepages_refused_before_any_write(playbook, tmp_path):
    meminfo = open('/proc/meminfo').read()
    default_kb = int(re.search(r'^Hugepagesize:\s+(\d+) kB', meminfo, re.M).group(1))
    total_kb = int(re.search(r'^MemTotal:\s+(\d+) kB', meminfo, re.M).group(1))
    other = '1G' if default_kb == 2048 else '2M'
    result = _probe(playbook, tmp_path, {'kvm_host_features': ['hugepages'], 'kvm_host_hugepages_size': other,
                                         'kvm_host_hugepages_count': 1})
    assert result.rc != 0
    assert "kernel's default huge page size is %d kB" % default_kb in result.stdout
    assert 'default_hugepagesz=1G' in result.stdout
    too_many = total_kb // default_kb
    result = _probe(playbook, tmp_path, {'kvm_host_features': ['hugepages'], 'kvm_host_hugepages_count': too_many})
    assert result.rc != 0
    assert 'more than 90%' in result.stdout
    assert 'Persist the huge page pool' not in result.stdout


# Not in check mode: the feature checks write nothing (hugepages, the one feature that writes, is left out), so
# they run for real here; the paths they look at are pointed at a temporary directory to prove each verdict.
FEATURE_CHECKS = """
- hosts: localhost
  gather_facts: true
  tasks:
    - name: decide
      ansible.builtin.include_role:
        name: kvmops.kvm.kvm_host
        tasks_from: decide
    - name: features
      ansible.builtin.include_role:
        name: kvmops.kvm.kvm_host
        tasks_from: features
    - name: status
      ansible.builtin.debug:
        var: kvm_host_features_status
"""


def _checks(playbook, tmp_path, extra):
    path = tmp_path / 'checks.yml'
    path.write_text(FEATURE_CHECKS)
    return playbook(str(path), extra_vars=dict({'kvm_host_features': ['tpm', 'secure_boot', 'virtiofs']}, **extra))


def _descriptor(directory, name, features):
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(json.dumps({'interface-types': ['uefi'], 'features': features}, indent=4))


def test_feature_checks_find_what_is_there(playbook, tmp_path):
    firmware = tmp_path / 'firmware'
    _descriptor(firmware, '30-sb-enrolled.json', ['acpi-s3', 'enrolled-keys', 'requires-smm', 'secure-boot'])
    _descriptor(firmware, '50-sb-no-keys.json', ['requires-smm', 'secure-boot'])
    _descriptor(firmware, '60-plain.json', ['acpi-s3'])
    (tmp_path / 'swtpm').write_text('')
    (tmp_path / 'swtpm_setup').write_text('')
    (tmp_path / 'virtiofsd').write_text('')
    result = _checks(playbook, tmp_path, {
        '_kvm_host_swtpm_binaries': [str(tmp_path / 'swtpm'), str(tmp_path / 'swtpm_setup')],
        '_kvm_host_firmware_dirs': [str(firmware), str(tmp_path / 'missing')],
        '_kvm_host_virtiofsd_paths': [str(tmp_path / 'virtiofsd')],
    })
    assert result.rc == 0, result.stdout[-3000:]
    status = result.task('status')['kvm_host_features_status']
    assert status['tpm']['usable'] is True
    assert status['secure_boot'] == {'usable': True, 'descriptors': [str(firmware / '30-sb-enrolled.json')],
                                     'detail': 'descriptor %s' % (firmware / '30-sb-enrolled.json')}
    # /usr/lib/qemu/virtiofsd (Debian 12's plan path) is looked at first when this machine has it.
    assert status['virtiofs']['usable'] is True
    assert status['virtiofs']['path'] in (str(tmp_path / 'virtiofsd'), '/usr/lib/qemu/virtiofsd')


def test_unusable_features_fail_the_run(playbook, tmp_path):
    firmware = tmp_path / 'firmware'
    _descriptor(firmware, '50-sb-no-keys.json', ['requires-smm', 'secure-boot'])
    (tmp_path / 'swtpm').write_text('')
    missing = str(tmp_path / 'nothing' / 'virtiofsd')
    result = _checks(playbook, tmp_path, {
        '_kvm_host_swtpm_binaries': [str(tmp_path / 'swtpm'), str(tmp_path / 'swtpm_setup')],
        '_kvm_host_firmware_dirs': [str(firmware)],
        '_kvm_host_virtiofsd_paths': [missing],
        '_kvm_host_virtiofsd': {'separate_from': {'default': 1}, 'separate': {'package': 'virtiofsd', 'path': missing},
                                'bundled': {'package': 'virtiofsd', 'path': missing}},
    })
    assert result.rc != 0
    assert not result.tasks('status')
    failed = [task for task in result.tasks() if task.get('failed')]
    assert len(failed) == 1
    failed = failed[0]
    assert failed.get('failed') is True
    assert 'kvm_host: tpm, secure_boot, virtiofs not usable' in failed['msg']
    assert 'missing %s' % (tmp_path / 'swtpm_setup') in failed['msg']
    assert 'no firmware descriptor with secure-boot and enrolled-keys' in failed['msg']
    assert 'no virtiofsd (looked for %s)' % missing in failed['msg']
