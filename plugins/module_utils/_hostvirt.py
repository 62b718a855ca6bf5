# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A truthful hardware-virtualization report for a hypervisor host.

It does not stop at grepping /proc/cpuinfo: the CPU flags, /dev/kvm, the
kernel modules, nested virtualization, and what libvirt says each domain
type can really run are reported separately, because on nested or cloud
hosts they disagree (flags hidden while /dev/kvm works, or /dev/kvm present
while the exposed CPUID is too thin for a full guest OS).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat

from ansible_collections.kvmops.kvm.plugins.module_utils._client import error_text, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse

# QEMU's default CPU model for x86_64 guests that do not name one.
DEFAULT_CPU_MODEL = 'qemu64'


def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def cpu_flags(cpuinfo=None):
    """vmx/svm as the kernel reports them in /proc/cpuinfo."""
    text = cpuinfo if cpuinfo is not None else _read('/proc/cpuinfo', '')
    flags = set()
    for line in text.splitlines():
        if line.startswith('flags'):
            flags.update(line.split(':', 1)[1].split())
    return dict(vmx='vmx' in flags, svm='svm' in flags, hypervisor='hypervisor' in flags)


def loaded_modules(proc_modules=None):
    text = proc_modules if proc_modules is not None else _read('/proc/modules', '')
    names = set(line.split()[0] for line in text.splitlines() if line.strip())
    # Built-in kvm shows in /sys/module even when /proc/modules does not list it.
    for name in ('kvm', 'kvm_intel', 'kvm_amd'):
        if os.path.isdir('/sys/module/%s' % name) and proc_modules is None:
            names.add(name)
    return dict(kvm='kvm' in names, kvm_intel='kvm_intel' in names, kvm_amd='kvm_amd' in names)


def nested_state():
    """Nested virtualization as the kvm_intel/kvm_amd module parameters say."""
    for module in ('kvm_intel', 'kvm_amd'):
        value = _read('/sys/module/%s/parameters/nested' % module)
        if value is not None:
            value = value.strip()
            return dict(module=module, enabled=value in ('Y', 'y', '1'), value=value)
    return dict(module=None, enabled=None, value=None)


def qemu_identity(qemu_conf='/etc/libvirt/qemu.conf'):
    """User and group libvirt runs QEMU as (qemu.conf, else the distro default)."""
    text = _read(qemu_conf, '') or ''
    user = group = None
    for line in text.splitlines():
        match = re.match(r'^\s*(user|group)\s*=\s*"([^"]*)"', line)
        if match:
            if match.group(1) == 'user':
                user = match.group(2)
            else:
                group = match.group(2)
    if user is None:
        for candidate in ('libvirt-qemu', 'qemu'):
            try:
                pwd.getpwnam(candidate)
                user = candidate
                break
            except KeyError:
                continue
    if group is None:
        for candidate in ('kvm', 'qemu'):
            try:
                grp.getgrnam(candidate)
                group = candidate
                break
            except KeyError:
                continue
    return user, group


def _user_may_rw(path_stat, user, extra_group):
    """Whether ``user`` (plus ``extra_group``) may read and write the file."""
    mode = path_stat.st_mode
    if user in (None, 'root', '+0'):
        return True
    try:
        pw = pwd.getpwnam(user.lstrip('+'))
    except KeyError:
        return None
    if pw.pw_uid == 0:
        return True
    if pw.pw_uid == path_stat.st_uid:
        return bool(mode & stat.S_IRUSR and mode & stat.S_IWUSR)
    gids = set([pw.pw_gid])
    gids.update(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)
    if extra_group:
        try:
            gids.add(grp.getgrnam(extra_group.lstrip('+')).gr_gid)
        except KeyError:
            pass
    if path_stat.st_gid in gids:
        return bool(mode & stat.S_IRGRP and mode & stat.S_IWGRP)
    return bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)


def dev_kvm(path='/dev/kvm'):
    present = os.path.exists(path)
    report = dict(present=present, path=path, mode=None, group=None, openable=False,
                  qemu_user=None, qemu_group=None, usable_by_qemu=False)
    if not present:
        return report
    st = os.stat(path)
    report['mode'] = '%04o' % stat.S_IMODE(st.st_mode)
    try:
        report['group'] = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        report['group'] = str(st.st_gid)
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, 'O_CLOEXEC', 0))
        os.close(fd)
        report['openable'] = True
    except OSError as exc:
        report['open_error'] = exc.strerror
    user, group = qemu_identity()
    report['qemu_user'] = user
    report['qemu_group'] = group
    report['usable_by_qemu'] = bool(report['openable'] and _user_may_rw(st, user, group))
    return report


def domain_type_report(conn, virt_type, arch='x86_64'):
    """What libvirt's domain capabilities say ``virt_type`` can run."""
    report = dict(available=False, default_cpu_model=DEFAULT_CPU_MODEL, default_cpu_usable=False,
                  host_passthrough=False, host_model=False, usable_models=[], runs_full_os=False,
                  emulator=None, machines=[], error=None)
    try:
        xml = conn.getDomainCapabilities(None, arch, None, virt_type, 0)
    except libvirt.libvirtError as exc:
        report['error'] = error_text(exc)
        return report
    root = parse(xml, 'domain capabilities')
    report['available'] = True
    report['emulator'] = root.findtext('path')
    report['machines'] = sorted(set(m for m in [root.findtext('machine')] if m))
    for mode in root.findall('cpu/mode'):
        supported = mode.get('supported') == 'yes'
        if mode.get('name') == 'host-passthrough':
            report['host_passthrough'] = supported
        elif mode.get('name') == 'host-model':
            report['host_model'] = supported
        elif mode.get('name') == 'custom':
            usable = [m.text for m in mode.findall('model') if m.get('usable') == 'yes']
            report['usable_models'] = sorted(set(usable))
            report['default_cpu_usable'] = DEFAULT_CPU_MODEL in usable
    if virt_type == 'qemu':
        # TCG emulates every CPU feature itself: no host CPUID limits it.
        report['runs_full_os'] = True
    else:
        # A 64-bit OS needs at least QEMU's default 64-bit model; nested hosts with a
        # thin CPUID list it as unusable and such guests abort at start.
        report['runs_full_os'] = report['default_cpu_usable']
    return report


def hardware_report():
    """Host-side probes only: no libvirt needed (usable before it is installed)."""
    flags = cpu_flags()
    report = dict(
        cpu_flags=flags,
        hw_flag='vmx' if flags['vmx'] else ('svm' if flags['svm'] else None),
        dev_kvm=dev_kvm(),
        kvm_modules=loaded_modules(),
        nested=nested_state(),
    )
    report['firmware_disabled'] = bool(report['hw_flag'] and not report['dev_kvm']['present'])
    report['kvm_usable'] = bool(report['dev_kvm']['openable'])
    return report


def virtualization_report(conn, local=True):
    """The full report; host-side probes only when libvirt runs on this host."""
    report = dict(local=local)
    if local:
        report.update(hardware_report())
    report['domain_types'] = dict(kvm=domain_type_report(conn, 'kvm'), qemu=domain_type_report(conn, 'qemu'))
    kvm = report['domain_types']['kvm']
    if kvm['available'] and kvm['runs_full_os']:
        report['preferred_domain_type'] = 'kvm'
    else:
        report['preferred_domain_type'] = 'qemu'
    report['kvm_available'] = kvm['available']
    report['summary'] = _summary(report)
    return report


def _summary(report):
    """Plain-language statements; each one true of this host."""
    notes = []
    kvm = report['domain_types']['kvm']
    if report.get('local'):
        has_flag = report['hw_flag'] is not None
        dev = report['dev_kvm']
        if has_flag:
            notes.append('CPU flag %s present' % report['hw_flag'])
        else:
            notes.append('CPU flags show neither vmx nor svm')
        if dev['present'] and dev['openable']:
            notes.append('/dev/kvm present and openable%s' % (
                '' if dev['usable_by_qemu'] else ', but not usable by the QEMU user %s' % dev['qemu_user']))
        elif dev['present']:
            notes.append('/dev/kvm present but cannot be opened (%s)' % dev.get('open_error'))
        else:
            notes.append('/dev/kvm missing')
        if has_flag and not dev['present']:
            notes.append('hardware virtualization is disabled in firmware (BIOS/UEFI) or the kvm module is not loaded')
        if not has_flag and dev['present']:
            notes.append('KVM works although the flags are hidden: this host is itself a guest (nested virtualization)')
        nested = report['nested']
        if nested['module']:
            notes.append('nested virtualization %s (%s)' % ('enabled' if nested['enabled'] else 'disabled', nested['module']))
    if kvm['available'] and not kvm['runs_full_os']:
        notes.append('KVM guests start, but the CPU model %s is not usable under KVM: full operating systems need '
                     'domain type qemu (TCG) here' % kvm['default_cpu_model'])
    elif kvm['available']:
        notes.append('KVM can run full guests')
    else:
        notes.append('domain type kvm unavailable: %s' % kvm['error'])
    notes.append('preferred domain type: %s' % report['preferred_domain_type'])
    return notes
