"""A tiny guest that runs a real OS: Debian's kernel from /boot and a busybox-static initramfs.

It boots in well under a minute under TCG (a Linux kernel does not boot under the nested KVM of
these machines), so tests use it wherever a guest OS must act: dirty memory for migration, answer
DHCP and pings on a libvirt network or a host bridge. The init is chosen by the test; NET_INIT
brings eth0 up with the address from ``kvmops.ip=A/P`` on the kernel command line, or by DHCP
(busybox udhcpc) when none is given, and prints ``kvmops-guest: ...`` lines on the console.

Kernel modules the init needs (virtio_net and what it depends on) are resolved from the
kernel's modules.dep and loaded in dependency order.
"""

import os
import shutil
import subprocess

import pytest

NET_MODULES = ('virtio_pci', 'virtio_net')

NET_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m; done
IP=
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.ip=*) IP=${arg#kvmops.ip=} ;; esac
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 60 ]; do sleep 1; n=$((n + 1)); done
ip link set eth0 up
if [ -n "$IP" ]; then
  ip addr add "$IP" dev eth0
  echo "kvmops-guest: static $IP"
else
  udhcpc -i eth0 -s /udhcpc.sh -t 60 -T 3 -n -q || echo "kvmops-guest: no lease"
fi
while :; do sleep 3600; done
"""

UDHCPC_HOOK = """#!/bin/busybox sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "kvmops-guest: lease $ip" ;;
esac
"""


def kernel_release():
    kernels = sorted(f for f in os.listdir('/boot') if f.startswith('vmlinuz-'))
    if not kernels or not shutil.which('busybox'):
        pytest.skip('needs a kernel in /boot (linux-image-amd64) and busybox-static')
    return kernels[-1][len('vmlinuz-'):]


def module_chain(release, names):
    """Module files (relative to /lib/modules/<release>) for ``names``, dependencies first."""
    base = os.path.join('/lib/modules', release)
    deps = {}
    with open(os.path.join(base, 'modules.dep')) as handle:
        for line in handle:
            path, _sep, rest = line.partition(':')
            deps[path] = rest.split()
    by_name = dict((os.path.basename(p).split('.ko')[0].replace('-', '_'), p) for p in deps)
    ordered = []

    def visit(path):
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        if path not in ordered:
            ordered.append(path)
    for name in names:
        if name not in by_name:
            pytest.skip('kernel %s has no module %s (built in?)' % (release, name))
        visit(by_name[name])
    return base, ordered


def build(directory, init=NET_INIT, modules=NET_MODULES):
    """Kernel and initramfs under ``directory``; returns dict(kernel=..., initrd=...)."""
    release = kernel_release()
    root = os.path.join(directory, 'root')
    for sub in ('bin', 'proc', 'sys', 'tmp', 'dev', 'modules'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    shutil.copy(shutil.which('busybox'), os.path.join(root, 'bin', 'busybox'))
    for name, text in (('init', init), ('udhcpc.sh', UDHCPC_HOOK)):
        with open(os.path.join(root, name), 'w') as handle:
            handle.write(text)
        os.chmod(os.path.join(root, name), 0o755)
    base, chain = module_chain(release, modules) if modules else ('', [])
    for rel in chain:
        if rel.endswith('.ko'):
            shutil.copy(os.path.join(base, rel), os.path.join(root, 'modules', os.path.basename(rel)))
        else:  # compressed modules (.ko.xz/.ko.zst): busybox insmod wants them plain
            pytest.skip('compressed kernel modules (%s) are not handled' % rel)
    with open(os.path.join(root, 'modules', 'order'), 'w') as handle:
        handle.write(''.join(os.path.basename(rel) + '\n' for rel in chain))
    initrd = os.path.join(directory, 'initrd.gz')
    with open(initrd, 'wb') as out:
        files = subprocess.run(['find', '.'], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run(['cpio', '-o', '-H', 'newc', '--quiet'], cwd=root, input=files,
                              capture_output=True, check=True).stdout
        out.write(subprocess.run(['gzip', '-1'], input=cpio, capture_output=True, check=True).stdout)
    kernel = os.path.join(directory, 'vmlinuz')
    shutil.copy(os.path.join('/boot', 'vmlinuz-' + release), kernel)
    shutil.rmtree(root)
    return dict(kernel=kernel, initrd=initrd)
