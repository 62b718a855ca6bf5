"""kvm_domain's typed hardware options (issue 16) seen from INSIDE a real Linux guest, under TCG.

test_kvm_domain_hardware.py proves the options from libvirt's side on OS-less guests; this module boots one
Linux kernel (busybox_guest: Debian's kernel from /boot and a busybox initramfs, direct kernel boot, TCG - a
Linux kernel does not boot under the nested KVM of this machine) with every device together, so the proof costs
one TCG boot:

* ``tpm`` (tpm-crb, swtpm TPM 2.0): the guest has /dev/tpm0 and /sys/class/tpm/tpm0 (version 2), and a raw
  TPM2_GetRandom command written to /dev/tpm0 gets a TPM_RC_SUCCESS answer with 8 bytes - swtpm answers.
* ``filesystems``: the guest mounts the virtiofs tag and reads a random token the test wrote on the host, and
  writes one back that the host reads; a 9p share with ``readonly: true`` mounts and reads, and a write into it is
  refused (nothing appears on the host). libvirt 9.0 refuses ``readonly`` for virtiofs, so a read-only virtiofs
  share cannot be proven here.
* ``memory_backing`` hugepages (2 MiB pages, memfd; the pages are reserved through /proc/sys/vm/nr_hugepages for
  the test and given back): the host's free huge page count drops by the guest's pages while it runs, and the QEMU
  process's smaps show a hugetlb mapping of the guest's size with huge pages in it.
* ``rng``: the guest's hw_random core offers virtio_rng.0 and /dev/hwrng returns bytes from it.
* ``watchdog`` (i6300esb): the guest sees the PCI device 8086:25ab and its driver registers watchdog0 ("i6300ESB
  timer", /dev/watchdog). The watchdog is never opened, so it never fires.
* ``cputune`` vcpupin changed live twice (CPU 1, then CPU 0): libvirt's vCPU pin info, the CPU affinity the host
  kernel gives the vCPU thread (its thread id from QEMU's query-cpus-fast) and the host CPU the vCPU last ran on
  (libvirt's vCPU info) follow each change.

The guest's init prints what it sees as ``kvmops-guest: key=value`` lines on its serial console, which libvirt
logs to a file (the serial device given through the ``xml`` option, merged with the typed options).

``test_secure_boot_guest_reads_its_own_state``: a UEFI guest with ``secure_boot: true`` and ``enrolled_keys: true``
(libvirt's firmware auto-selection; TCG, as Secure Boot needs SMM, which this machine's nested KVM lacks): the live
XML's loader is a Secure Boot OVMF build (secure='yes') that QEMU runs with SMM, the NVRAM was made from the
enrolled-keys template the XML names (it holds the Microsoft KEK and db certificates; the plain template does not),
and the same busybox kernel, booted through that firmware, reads SecureBoot=1 and SetupMode=0 from its EFI
variables and logs "Secure boot enabled". The Debian image itself cannot boot through the firmware (no EFI system
partition, no boot loader), so the kernel comes by QEMU's direct kernel boot. Not proven: that the firmware refuses
an image no enrolled key signs - OVMF starts Debian's kernel here although it is signed by Debian's key, which the
Microsoft-keys NVRAM does not hold (its QEMU kernel loader falls back to a loader that does not verify), and no
shim is on this machine to boot through a verified chain.
"""

import os
import re
import secrets
import shutil
import time

import pytest

import busybox_guest
from conftest import one_task_play, remove_guest, run_domain

TEST_ROOT = '/var/lib/kvmops-test'
HUGEPAGES = '/sys/kernel/mm/hugepages/hugepages-2048kB'
GUEST_MIB = 128
GUEST_PAGES = GUEST_MIB // 2
BOOT_WAIT = 600   # TCG boot to the init's report: about 30 s on an idle 2-CPU host, much more under load

MODULES = ('virtio_pci', 'virtio_rng', 'i6300esb', 'virtiofs', '9pnet_virtio', '9p')

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "kvmops-guest: $*"; }
for m in $(cat /modules/order); do insmod /modules/$m || say "insmod-failed=$m"; done
n=0
while [ ! -e /sys/class/watchdog/watchdog0 ] || [ ! -e /sys/class/misc/hw_random/rng_available ]; do
  [ $n -ge 30 ] && break; sleep 1; n=$((n + 1))
done
# TPM: the device nodes and sysfs, then a raw TPM2_GetRandom(8) command
if [ -c /dev/tpm0 ]; then say "tpm-dev=yes"; else say "tpm-dev=no"; fi
say "tpm-sysfs=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null || echo none)"
if [ -c /dev/tpm0 ] && exec 3<>/dev/tpm0; then
  printf '\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x7b\x00\x08' >&3
  say "tpm-getrandom=$(dd bs=64 count=1 <&3 2>/dev/null | od -An -v -tx1 | tr -d ' \n')"
  exec 3>&-
fi
# RNG: the hw_random core's sources, then bytes read through virtio_rng
say "rng-available=$(cat /sys/class/misc/hw_random/rng_available 2>/dev/null | tr ' ' ',')"
if echo virtio_rng.0 > /sys/class/misc/hw_random/rng_current 2>/dev/null; then
  say "rng-current=$(cat /sys/class/misc/hw_random/rng_current)"
  say "rng-bytes=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n')"
fi
# watchdog: the PCI device and the driver's registration (never opened: it would start counting)
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor):$(cat $d/device)" = "0x8086:0x25ab" ] && say "watchdog-pci=$(basename $d)"
done
say "watchdog-identity=$(cat /sys/class/watchdog/watchdog0/identity 2>/dev/null | tr ' ' '_')"
if [ -c /dev/watchdog ]; then say "watchdog-dev=yes"; else say "watchdog-dev=no"; fi
# virtiofs: mount the tag, read the host's token, write one back
mkdir -p /mnt/fs /mnt/ro
if mount -t virtiofs share0 /mnt/fs; then
  say "virtiofs-mount=$(grep ' /mnt/fs ' /proc/mounts | cut -d' ' -f3)"
  say "virtiofs-read=$(cat /mnt/fs/from-host)"
  echo "guest-saw-$(cat /mnt/fs/from-host)" > /mnt/fs/from-guest && sync && say "virtiofs-write=ok"
fi
# 9p read-only: mount, read, a write must be refused
if mount -t 9p -o trans=virtio,version=9p2000.L ro0 /mnt/ro; then
  say "ninep-mount=$(grep ' /mnt/ro ' /proc/mounts | cut -d' ' -f3)"
  say "ninep-read=$(cat /mnt/ro/from-host)"
  if echo x > /mnt/ro/from-guest 2>/dev/null; then say "ninep-write=allowed"; else say "ninep-write=refused"; fi
fi
say "report-done"
while :; do sleep 3600; done
"""


def _libvirt():
    import libvirt
    return libvirt


def _xml(dom, inactive=False):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE if inactive else 0))


def _pages(name):
    with open(os.path.join(HUGEPAGES, name)) as handle:
        return int(handle.read())


def _add_pages(count):
    """Change the host's 2 MiB huge page pool by ``count`` (relative, so a parallel test's pages are kept); returns
    the change the kernel made (it may reserve fewer pages than asked)."""
    with open('/proc/sys/vm/nr_hugepages', 'r+') as handle:
        before = int(handle.read())
        handle.seek(0)
        handle.write(str(max(0, before + count)))
    with open('/proc/sys/vm/nr_hugepages') as handle:
        return int(handle.read()) - before


def _report(console, deadline):
    """The init's ``kvmops-guest: key=value`` lines from the console log, once it printed report-done."""
    text = ''
    while time.monotonic() < deadline:
        text = open(console, errors='replace').read() if os.path.exists(console) else ''
        if 'kvmops-guest: report-done' in text:
            found = {}
            for line in text.splitlines():
                match = re.search(r'kvmops-guest: ([\w-]+)=(.*)$', line.strip())
                if match:
                    found.setdefault(match.group(1), match.group(2).strip())
            return found, text
        time.sleep(2)
    raise AssertionError('the guest printed no report within %d s; console:\n%s' % (BOOT_WAIT, text[-4000:]))


def _hugetlb_kib(pid):
    """KiB of hugetlb pages (2 MiB) mapped by process ``pid`` and the largest such mapping's size, from smaps."""
    mapped = largest = 0
    size = page = 0
    with open('/proc/%d/smaps' % pid) as handle:
        for line in handle:
            field = line.split()
            if not field:
                continue
            if field[0] == 'Size:':
                size = int(field[1])
            elif field[0] == 'KernelPageSize:':
                page = int(field[1])
                if page == 2048:
                    largest = max(largest, size)
            elif field[0] in ('Shared_Hugetlb:', 'Private_Hugetlb:') and page == 2048:
                mapped += int(field[1])
    return mapped, largest


def _vcpu_thread_cpus(dom):
    """The host CPUs the kernel allows vCPU 0's thread on (thread id from QEMU's query-cpus-fast)."""
    import json
    import libvirt_qemu
    answer = json.loads(libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-cpus-fast"}', 0))
    tid = [cpu['thread-id'] for cpu in answer['return'] if cpu['cpu-index'] == 0][0]
    pid = int(open('/run/libvirt/qemu/%s.pid' % dom.name()).read())
    with open('/proc/%d/task/%d/status' % (pid, tid)) as handle:
        return [line.split()[1] for line in handle if line.startswith('Cpus_allowed_list:')][0]


def _wait_pinned(dom, cpu):
    """Wait until libvirt's live pin info, the affinity the host kernel gives vCPU 0's thread and the host CPU
    libvirt last saw vCPU 0 run on all say only host CPU ``cpu``."""
    libvirt = _libvirt()
    deadline = time.monotonic() + 60
    while True:
        cpumap = dom.vcpuPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)[0]
        allowed = _vcpu_thread_cpus(dom)
        ran_on = dom.vcpus()[0][0][3]
        if [i for i, on in enumerate(cpumap) if on] == [cpu] and allowed == str(cpu) and ran_on == cpu:
            return
        assert time.monotonic() < deadline, dict(pin=cpumap, thread_affinity=allowed, ran_on=ran_on)
        time.sleep(1)


@pytest.fixture
def guest(conn, unique):
    directory = os.path.join(TEST_ROOT, unique)
    os.makedirs(directory)
    try:
        yield dict(name=unique, dir=directory)
    finally:
        remove_guest(conn, unique)
        shutil.rmtree(directory, ignore_errors=True)


def test_tpm_virtiofs_hugepages_rng_watchdog_vcpupin_in_a_linux_guest(conn, guest, playbook, tmp_path):
    libvirt = _libvirt()
    if os.cpu_count() < 2:
        pytest.skip('the live vCPU pinning needs two host CPUs')
    started = time.monotonic()
    name, directory = guest['name'], guest['dir']
    boot = busybox_guest.build(os.path.join(directory, 'boot'), init=INIT, modules=MODULES)
    share, readonly = os.path.join(directory, 'share'), os.path.join(directory, 'ro')
    token, ro_token = secrets.token_hex(16), secrets.token_hex(16)
    for path, text in ((share, token), (readonly, ro_token)):
        os.makedirs(path)
        os.chmod(path, 0o755)
        with open(os.path.join(path, 'from-host'), 'w') as handle:
            handle.write(text + '\n')
        os.chmod(os.path.join(path, 'from-host'), 0o644)
    console = os.path.join(directory, 'console.log')
    serial = ("<domain><name>%s</name><devices><serial type='pty'><log file='%s' append='off'/>"
              "<target port='0'/></serial></devices></domain>" % (name, console))
    args = dict(name=name, virt_type='qemu', machine='q35', memory='%dMiB' % GUEST_MIB, vcpus=1,
                graphics=dict(type='none'), kernel=boot['kernel'], initrd=boot['initrd'],
                cmdline='console=ttyS0 panic=-1', xml=serial,
                tpm=dict(model='tpm-crb', backend='emulator', version='2.0'),
                filesystems=[dict(source=share, target='share0'),
                             dict(source=readonly, target='ro0', driver='9p', readonly=True)],
                memory_backing=dict(pages=[dict(size='2MiB')], source='memfd'),
                rng=dict(model='virtio', source='/dev/urandom'), watchdog=dict(model='i6300esb', action='poweroff'),
                cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0-1')]), state='running')

    # a read-only virtiofs share: libvirt 9.0 refuses it at define time, and the task says so (nothing defined)
    ro_fs = dict(args, filesystems=[dict(source=share, target='share0', readonly=True)], state='present')
    result = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', ro_fs, 'domain'))
    refused = result.task('domain')
    assert 'Traceback' not in result.stdout + result.stderr
    if refused.get('failed'):
        assert 'virtiofs does not yet support read-only mode' in refused['msg'], refused['msg']
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
    else:   # a libvirt that supports it
        assert _xml(conn.lookupByName(name), True).find('devices/filesystem/readonly') is not None
        remove_guest(conn, name)

    added = 0
    try:
        added = _add_pages(GUEST_PAGES)
        free = _pages('free_hugepages') - _pages('resv_hugepages')
        if free < GUEST_PAGES:
            pytest.skip('the host could not reserve %d free 2 MiB huge pages (%d free)' % (GUEST_PAGES, free))
        run_domain(playbook, tmp_path, args)
        dom = conn.lookupByName(name)
        assert dom.isActive()
        # hugepages, from the host kernel: the pool's free (unreserved) pages dropped by the guest's, and QEMU maps
        # a hugetlb region of the guest's size that holds that many KiB of huge pages
        assert free - (_pages('free_hugepages') - _pages('resv_hugepages')) >= GUEST_PAGES, \
            (free, _pages('free_hugepages'), _pages('resv_hugepages'))
        pid = int(open('/run/libvirt/qemu/%s.pid' % name).read())
        mapped, largest = _hugetlb_kib(pid)
        assert largest >= GUEST_MIB * 1024 and mapped >= GUEST_MIB * 1024, (mapped, largest)

        seen, text = _report(console, time.monotonic() + BOOT_WAIT)
        boot_seconds = time.monotonic() - started
        assert not [k for k in seen if k.startswith('insmod-failed')], text[-4000:]
        # TPM: device node, sysfs class, and swtpm answering TPM2_GetRandom with TPM_RC_SUCCESS and 8 bytes
        assert seen.get('tpm-dev') == 'yes' and seen.get('tpm-sysfs') == '2', text[-4000:]
        answer = seen.get('tpm-getrandom', '')
        assert answer.startswith('80010000001400000000' + '0008') and len(answer) == 40, answer
        # RNG: virtio_rng is a source of the guest's hw_random core and gives bytes
        assert 'virtio_rng.0' in seen.get('rng-available', '').split(','), seen.get('rng-available')
        assert seen.get('rng-current') == 'virtio_rng.0' and re.fullmatch('[0-9a-f]{32}', seen.get('rng-bytes', ''))
        # watchdog: the i6300esb PCI device with its driver bound
        assert seen.get('watchdog-pci') and seen.get('watchdog-identity') == 'i6300ESB_timer', text[-4000:]
        assert seen.get('watchdog-dev') == 'yes'
        # virtiofs: the guest read the host's random token and wrote one back
        assert seen.get('virtiofs-mount') == 'virtiofs' and seen.get('virtiofs-read') == token, text[-4000:]
        assert seen.get('virtiofs-write') == 'ok'
        with open(os.path.join(share, 'from-guest')) as handle:
            assert handle.read().strip() == 'guest-saw-' + token
        # 9p read-only: read, but the write was refused and nothing reached the host
        assert seen.get('ninep-mount') == '9p' and seen.get('ninep-read') == ro_token, text[-4000:]
        assert seen.get('ninep-write') == 'refused' and not os.path.exists(os.path.join(readonly, 'from-guest'))

        # cputune: vCPU 0 pinned live to host CPU 1, then to CPU 0; libvirt and the host kernel follow
        for cpu in (1, 0):
            task = run_domain(playbook, tmp_path, dict(name=name, cputune=dict(vcpupin=[dict(vcpu=0, cpuset=str(cpu))])))
            assert [(c['option'], c['scope']) for c in task['changes'] if c['scope'] == 'live'] == [
                ('cputune.vcpupin[0]', 'live')], task['changes']
            _wait_pinned(dom, cpu)
        assert dom.isActive(), 'the guest still runs (the watchdog never fired)'
        print('\nin-guest report: %s' % ', '.join('%s=%s' % item for item in sorted(seen.items())))
        print('\nTCG boot to the in-guest report: %.0f s, whole test %.0f s' % (boot_seconds, time.monotonic() - started))
    finally:
        remove_guest(conn, name)   # the pages are free again before the pool shrinks
        _add_pages(-added)


SECURE_BOOT_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "kvmops-guest: $*"; }
for m in $(cat /modules/order); do insmod /modules/$m || say "insmod-failed=$m"; done
if [ -d /sys/firmware/efi ]; then say "efi=yes"; else say "efi=no"; fi
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
for v in SecureBoot SetupMode; do
  say "$v=$(od -An -v -tx1 /sys/firmware/efi/efivars/$v-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -d ' \n')"
done
say "dmesg-secureboot=$(dmesg | grep -o 'Secure boot [a-z]*' | head -1 | tr ' ' '_')"
mount -t securityfs securityfs /sys/kernel/security
say "lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null | tr ' ' ',')"
say "report-done"
while :; do sleep 3600; done
"""
MS_CERTS = (b'Microsoft Corporation KEK CA 2011', b'Microsoft Windows Production PCA 2011', b'Microsoft Corporation UEFI CA 2011')


def test_secure_boot_guest_reads_its_own_state(conn, guest, playbook, tmp_path):
    """secure_boot: true with enrolled keys, through libvirt's firmware auto-selection: the live XML and QEMU's
    command line name a Secure Boot OVMF build, the NVRAM was made from the enrolled-keys template the XML names
    (it holds the Microsoft KEK and db certificates, the plain template does not), and a Linux kernel booted through
    that firmware (direct kernel boot, TCG: Secure Boot needs SMM, which this machine's nested KVM lacks) reads
    SecureBoot=1 and SetupMode=0 from its EFI variables."""
    started = time.monotonic()
    name, directory = guest['name'], guest['dir']
    boot = busybox_guest.build(os.path.join(directory, 'boot'), init=SECURE_BOOT_INIT, modules=('efivarfs',))
    console = os.path.join(directory, 'console.log')
    serial = ("<domain><name>%s</name><devices><serial type='pty'><log file='%s' append='off'/>"
              "<target port='0'/></serial></devices></domain>" % (name, console))
    run_domain(playbook, tmp_path, dict(name=name, virt_type='qemu', machine='q35', memory='256MiB', vcpus=1,
                                        graphics=dict(type='none'), firmware='efi', secure_boot=True,
                                        enrolled_keys=True, kernel=boot['kernel'], initrd=boot['initrd'],
                                        cmdline='console=ttyS0 panic=-1', xml=serial, state='running'))
    dom = conn.lookupByName(name)
    assert dom.isActive()
    live = _xml(dom)
    loader = live.find('os/loader')
    assert (loader.get('secure'), loader.get('type'), loader.get('readonly')) == ('yes', 'pflash', 'yes')
    assert re.search(r'secboot|\.ms\.fd$', os.path.basename(loader.text)), loader.text
    nvram = live.find('os/nvram')
    template = nvram.get('template')
    assert re.fullmatch(r'OVMF_VARS.*\.ms\.fd', os.path.basename(template)), template
    # the QEMU process runs that loader with this NVRAM, and SMM is on
    pid = int(open('/run/libvirt/qemu/%s.pid' % name).read())
    cmdline = open('/proc/%d/cmdline' % pid, 'rb').read().decode(errors='replace')
    assert loader.text in cmdline and nvram.text in cmdline and 'smm=on' in cmdline, cmdline.split('\0')
    # the NVRAM came from the enrolled-keys template: same size, the Microsoft certificates in it
    with open(nvram.text, 'rb') as handle:
        have = handle.read()
    assert len(have) == os.path.getsize(template) and all(cert in have for cert in MS_CERTS)
    with open(template.replace('.ms.fd', '.fd'), 'rb') as handle:
        assert not any(cert in handle.read() for cert in MS_CERTS), 'the plain template has no keys: the check can fail'

    seen, text = _report(console, time.monotonic() + BOOT_WAIT)
    assert not [k for k in seen if k.startswith('insmod-failed')], text[-4000:]
    assert seen.get('efi') == 'yes', text[-4000:]
    # efivarfs: 4 bytes of attributes, then the value
    assert seen.get('SecureBoot', '')[8:] == '01' and seen.get('SetupMode', '')[8:] == '00', text[-4000:]
    assert seen.get('dmesg-secureboot') == 'Secure_boot_enabled', text[-4000:]
    print('\nUEFI Secure Boot guest to its report (TCG): %.0f s; lockdown: %s'
          % (time.monotonic() - started, seen.get('lockdown')))
