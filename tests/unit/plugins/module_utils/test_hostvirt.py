"""The hardware-virtualization report: each source of truth on its own."""

import os

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _hostvirt

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures')


def _fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class FakeConn(object):
    """getDomainCapabilities from captured XML; missing types raise like libvirt."""

    def __init__(self, caps):
        self.caps = caps

    def getDomainCapabilities(self, _emulator, _arch, _machine, virt_type, _flags):
        import libvirt
        if virt_type not in self.caps:
            raise libvirt.libvirtError('invalid argument: KVM is not supported by \'/usr/bin/qemu-system-x86_64\' on this host')
        return self.caps[virt_type]


@pytest.mark.parametrize('cpuinfo, expected', [
    ('flags\t\t: fpu vme vmx sse\n', dict(vmx=True, svm=False, hypervisor=False)),
    ('flags\t\t: fpu svm hypervisor\n', dict(vmx=False, svm=True, hypervisor=True)),
    ('flags\t\t: fpu hypervisor\nflags\t\t: fpu hypervisor\n', dict(vmx=False, svm=False, hypervisor=True)),
    ('', dict(vmx=False, svm=False, hypervisor=False)),
])
def test_cpu_flags(cpuinfo, expected):
    assert _hostvirt.cpu_flags(cpuinfo) == expected


def test_loaded_modules():
    text = 'kvm_amd 155648 0 - Live 0x0\nkvm 1146880 1 kvm_amd, Live 0x0\nbridge 1 0 - Live 0x0\n'
    assert _hostvirt.loaded_modules(text) == dict(kvm=True, kvm_intel=False, kvm_amd=True)


def test_nested_thin_cpuid_prefers_tcg():
    conn = FakeConn({'kvm': _fixture('domcaps_kvm_nested_thin_cpuid.xml'), 'qemu': _fixture('domcaps_qemu.xml')})
    kvm = _hostvirt.domain_type_report(conn, 'kvm')
    assert kvm['available'] is True
    assert kvm['host_passthrough'] is True
    assert kvm['default_cpu_usable'] is False     # qemu64 listed usable='no' under nested KVM here
    assert kvm['runs_full_os'] is False
    assert 'pentium3' in kvm['usable_models']
    qemu = _hostvirt.domain_type_report(conn, 'qemu')
    assert qemu['available'] is True and qemu['runs_full_os'] is True


def test_kvm_missing_is_reported_with_libvirts_reason():
    conn = FakeConn({'qemu': _fixture('domcaps_qemu.xml')})
    report = _hostvirt.virtualization_report(conn, local=False)
    assert report['kvm_available'] is False
    assert 'KVM is not supported' in report['domain_types']['kvm']['error']
    assert report['preferred_domain_type'] == 'qemu'
    assert report['summary'][-1] == 'preferred domain type: qemu'


def test_full_kvm_prefers_kvm():
    usable = _fixture('domcaps_kvm_nested_thin_cpuid.xml').replace(
        "<model usable='no' vendor='unknown'>qemu64</model>", "<model usable='yes' vendor='unknown'>qemu64</model>")
    conn = FakeConn({'kvm': usable, 'qemu': _fixture('domcaps_qemu.xml')})
    report = _hostvirt.virtualization_report(conn, local=False)
    assert report['preferred_domain_type'] == 'kvm'
    assert 'KVM can run full guests' in report['summary']


def _summary(hw_flag, present, openable=True, usable=True):
    report = dict(local=True, hw_flag=hw_flag,
                  dev_kvm=dict(present=present, openable=openable and present, usable_by_qemu=usable,
                               qemu_user='libvirt-qemu', open_error='Permission denied'),
                  nested=dict(module=None, enabled=None, value=None),
                  domain_types=dict(kvm=dict(available=present, runs_full_os=True, default_cpu_model='qemu64',
                                             error='no kvm')),
                  preferred_domain_type='kvm' if present else 'qemu')
    return _hostvirt._summary(report)  # pylint: disable=protected-access


def test_summary_flags_without_dev_kvm_blames_firmware():
    notes = _summary('vmx', present=False)
    assert any('disabled in firmware (BIOS/UEFI)' in n for n in notes)


def test_summary_dev_kvm_without_flags_says_nested():
    notes = _summary(None, present=True)
    assert 'CPU flags show neither vmx nor svm' in notes
    assert any('nested virtualization' in n for n in notes)


def test_summary_dev_kvm_not_usable_by_qemu():
    notes = _summary('svm', present=True, usable=False)
    assert any('not usable by the QEMU user libvirt-qemu' in n for n in notes)


def test_dev_kvm_missing_path():
    report = _hostvirt.dev_kvm('/nonexistent/kvm')
    assert report['present'] is False and report['openable'] is False and report['usable_by_qemu'] is False


def test_qemu_identity_reads_qemu_conf(tmp_path):
    conf = tmp_path / 'qemu.conf'
    conf.write_text('#user = "nobody"\nuser = "root"\ngroup = "root"\n')
    assert _hostvirt.qemu_identity(str(conf)) == ('root', 'root')
