#!/usr/bin/env bash
# tests/lab/image.sh - cached Debian 12 (bookworm) guest image for real-guest tests.
#
# Builds (once per recipe) a minimal bookworm root filesystem with debootstrap,
# turns it into an ext4 disk (no partition table, LABEL=root, no mounting) and
# converts that to a qcow2 base image.  The kernel and initrd are extracted
# next to it for direct kernel boot.  Guests get a qcow2 overlay on top of the
# base and their root ssh key on the kernel command line (kvmops.sshkey=...),
# so the image holds no key material at all (ssh host keys are generated at
# first boot).
#
# Usage: image.sh [build]|paths|overlay|cmdline|gc|purge   (see usage below)
# Output: KEY=value lines on stdout; progress/errors on stderr.
# See tests/lab/IMAGE.md.

set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

IMAGE_DIR=${KVMOPS_IMAGE_DIR:-/var/lib/kvmops-lab/images}
prog=${0##*/}
self=$(readlink -f "$0")

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $prog [build]                       build the image if missing/outdated, print paths
       $prog paths                         print paths for the current recipe (never builds)
       $prog overlay <name|path> [pubkey]  build if needed, create a fresh qcow2 overlay
                                            (name -> \$KVMOPS_IMAGE_DIR/overlays/<name>.qcow2)
                                            and print OVERLAY=, KERNEL=, INITRD=, CMDLINE=
       $prog cmdline [pubkey]              print the kernel command line (key optional)
       $prog domxml <name> <overlay> <pubkey> [network]
                                            print the proven libvirt domain XML
       $prog selftest                      build if needed, boot a TCG guest from an
                                            overlay, ssh in with a per-run key, clean up
       $prog gc                            delete images built from other recipes
       $prog purge                         delete the whole image dir
env: KVMOPS_IMAGE_DIR (default /var/lib/kvmops-lab/images)
     KVMOPS_IMAGE_MIRROR (default: first bookworm mirror of /etc/apt/sources.list*)
EOF
    exit 2
}

# ============================================================== BEGIN RECIPE
# Everything between the RECIPE markers is hashed; changing it (package list,
# rootfs configuration, disk size, ...) makes the next run rebuild the image.
SUITE=bookworm
DISK_SIZE=3G
# dbus: without it systemd-logind does not start (ConditionPathExists=|dbus.service),
# so nothing handles the ACPI power button and qemu-ga's `shutdown -P +0`
# fails ("Failed to connect to bus"): the guest ignores every graceful shutdown.
PACKAGES="linux-image-amd64 systemd-sysv openssh-server openssh-sftp-server
python3 ifupdown isc-dhcp-client udev iproute2 kmod qemu-guest-agent sudo
ca-certificates dbus"
GUEST_HOSTNAME=kvmops-guest

configure_rootfs() {   # $1 = rootfs directory
    r=$1

    printf '%s\n' "$GUEST_HOSTNAME" >"$r/etc/hostname"
    cat >"$r/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$GUEST_HOSTNAME
::1		localhost ip6-localhost ip6-loopback
EOF
    printf 'LABEL=root\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' >"$r/etc/fstab"

    # eth0 via DHCP (kernel cmdline carries net.ifnames=0)
    cat >"$r/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF
    # resolv.conf is written by dhclient; never ship the build host's copy
    rm -f "$r/etc/resolv.conf"
    : >"$r/etc/resolv.conf"

    # serial getty on ttyS0
    mkdir -p "$r/etc/systemd/system/getty.target.wants"
    ln -sfn /lib/systemd/system/serial-getty@.service \
        "$r/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

    # sshd: root by key only
    mkdir -p "$r/etc/ssh/sshd_config.d"
    cat >"$r/etc/ssh/sshd_config.d/10-kvmops.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
EOF
    # no host keys in the image: generated at first boot (ed25519 only:
    # RSA key generation alone costs about a minute under TCG)
    rm -f "$r"/etc/ssh/ssh_host_*
    cat >"$r/etc/systemd/system/kvmops-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=kvmops: generate missing ssh host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
RequiredBy=ssh.service
EOF

    # root authorized_keys from the kernel command line: kvmops.sshkey=<base64>
    # (may be repeated; replaces authorized_keys when at least one is given)
    mkdir -p "$r/usr/local/sbin"
    cat >"$r/usr/local/sbin/kvmops-sshkey" <<'EOF'
#!/bin/sh
# Write /root/.ssh/authorized_keys from kvmops.sshkey=<base64> on /proc/cmdline.
set -eu
tmp=/root/.ssh/authorized_keys.kvmops.$$
umask 077
mkdir -p /root/.ssh
: >"$tmp"
n=0
for arg in $(cat /proc/cmdline); do
    case $arg in
        kvmops.sshkey=?*)
            if printf '%s' "${arg#kvmops.sshkey=}" | base64 -d >>"$tmp" 2>/dev/null; then
                echo >>"$tmp"
                n=$((n + 1))
            else
                echo "kvmops-sshkey: cannot decode a kvmops.sshkey argument" >&2
            fi ;;
    esac
done
if [ "$n" -gt 0 ]; then
    mv -f "$tmp" /root/.ssh/authorized_keys
    echo "kvmops-sshkey: installed $n key(s) for root"
else
    rm -f "$tmp"
    echo "kvmops-sshkey: no kvmops.sshkey= on the kernel command line"
fi
EOF
    chmod 0755 "$r/usr/local/sbin/kvmops-sshkey"
    cat >"$r/etc/systemd/system/kvmops-sshkey.service" <<'EOF'
[Unit]
Description=kvmops: root authorized_keys from the kernel command line
Before=ssh.service
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kvmops-sshkey

[Install]
RequiredBy=ssh.service
EOF
    chroot "$r" systemctl enable kvmops-ssh-hostkeys.service kvmops-sshkey.service

    # quiet, deterministic guests: no periodic background jobs
    chroot "$r" systemctl mask apt-daily.timer apt-daily-upgrade.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true

    # small initrd with just what a virtio guest needs: MODULES=most makes a
    # 36 MB initrd whose unpacking and module probing cost ~30 s under TCG
    sed -i 's/^MODULES=.*/MODULES=list/' "$r/etc/initramfs-tools/initramfs.conf"
    cat >>"$r/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
sd_mod
virtio_net
virtio_console
ext4
crc32c_generic
EOF
    chroot "$r" update-initramfs -u -k all

    # fresh machine-id (and DHCP DUID) per guest
    : >"$r/etc/machine-id"
    rm -f "$r/var/lib/dbus/machine-id" "$r"/var/lib/dhcp/*.leases

    # slim down
    chroot "$r" apt-get clean
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/log/*.log \
        "$r"/tmp/* "$r"/var/tmp/*
}

check_initrd() {   # $1 = initrd; the guest needs virtio disk/net + ext4 early
    list=$(lsinitramfs "$1") || return 1
    for m in virtio_blk virtio_net virtio_pci ext4 crc32c_generic; do
        printf '%s\n' "$list" | grep -q "/$m\.ko" || { log "initrd lacks $m"; return 1; }
    done
}

build_image() {   # $1 = empty work dir; leaves base.qcow2 vmlinuz initrd.img there
    w=$1
    log "debootstrap $SUITE from $MIRROR (takes a few minutes)"
    debootstrap --variant=minbase --include="$(printf '%s' "$PACKAGES" | tr -s ' \n' ,,)" \
        "$SUITE" "$w/rootfs" "$MIRROR" >"$w/debootstrap.log" 2>&1 ||
        { tail -n 30 "$w/debootstrap.log" >&2; die "debootstrap failed (log: $w/debootstrap.log)"; }
    configure_rootfs "$w/rootfs"

    kernel=$(readlink -f "$w/rootfs/vmlinuz")
    initrd=$(readlink -f "$w/rootfs/initrd.img")
    { [ -f "$kernel" ] && [ -f "$initrd" ]; } || die "no kernel/initrd in rootfs /boot"
    install -m 0644 "$kernel" "$w/vmlinuz"
    install -m 0644 "$initrd" "$w/initrd.img"
    check_initrd "$w/initrd.img" || die "initrd is missing required modules"

    log "mkfs.ext4 -d (no mount) + qcow2 conversion"
    mkfs.ext4 -q -F -d "$w/rootfs" -L root "$w/root.raw" "$DISK_SIZE"
    qemu-img convert -f raw -O qcow2 "$w/root.raw" "$w/base.qcow2"
    rm -f "$w/root.raw"
    chmod 0444 "$w/base.qcow2"
}
# ================================================================ END RECIPE

recipe_hash() {
    sed -n '/^# =* BEGIN RECIPE$/,/^# =* END RECIPE$/p' "$self" | sha256sum | cut -c1-16
}

HASH=$(recipe_hash)
NAME=debian12-$HASH
OUT=$IMAGE_DIR/$NAME

print_paths() {
    ready=no
    [ -f "$OUT/.complete" ] && ready=yes
    echo "KVMOPS_IMAGE_DIR=$IMAGE_DIR"
    echo "KVMOPS_IMAGE_RECIPE=$HASH"
    echo "KVMOPS_IMAGE_READY=$ready"
    echo "KVMOPS_IMAGE_BASE=$OUT/base.qcow2"
    echo "KVMOPS_IMAGE_KERNEL=$OUT/vmlinuz"
    echo "KVMOPS_IMAGE_INITRD=$OUT/initrd.img"
    echo "KVMOPS_IMAGE_CMDLINE=$BASE_CMDLINE"
}

BASE_CMDLINE="root=/dev/vda rw console=ttyS0 net.ifnames=0"

pick_mirror() {
    if [ -n "${KVMOPS_IMAGE_MIRROR:-}" ]; then
        echo "$KVMOPS_IMAGE_MIRROR"
        return
    fi
    # first http(s) URI of a plain (non-security) Debian source, deb822 or one-line
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
            /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
             /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' |
        grep -E '/debian/?$' | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

# Unmount anything left mounted below $1 (an interrupted debootstrap leaves
# proc/sys/dev mounts in the chroot), deepest first, then delete it.
remove_tree() {
    d=$(readlink -f "$1")
    [ -n "$d" ] && [ "$d" != / ] || return 0
    awk -v d="$d" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r mp; do
            umount -l "$mp" 2>/dev/null || log "WARNING: cannot umount $mp"
        done
    rm -rf --one-file-system "$d"
}

cleanup_stale() {   # interrupted builds (we hold the lock, so none is running)
    for d in "$IMAGE_DIR"/.build.*; do
        [ -e "$d" ] || continue
        log "removing interrupted build $d"
        remove_tree "$d"
    done
    # a published dir without .complete cannot happen (we rename complete
    # dirs only), but tolerate hand-made damage
    if [ -d "$OUT" ] && [ ! -f "$OUT/.complete" ]; then
        log "removing incomplete $OUT"
        remove_tree "$OUT"
    fi
}

lock() {
    mkdir -p "$IMAGE_DIR"
    chmod 0755 "$IMAGE_DIR"
    exec 9>"$IMAGE_DIR/.lock"
    flock -w 1800 9 || die "timed out waiting for $IMAGE_DIR/.lock"
}

WORK=
on_exit() {
    rc=$?
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        log "build aborted, removing $WORK"
        remove_tree "$WORK"
    fi
    exit $rc
}

do_build() {
    [ "$(id -u)" = 0 ] || die "must run as root (debootstrap)"
    [ -f "$OUT/.complete" ] && return 0
    for t in debootstrap mkfs.ext4 qemu-img lsinitramfs flock sha256sum; do
        command -v "$t" >/dev/null || die "missing tool: $t"
    done
    lock
    [ -f "$OUT/.complete" ] && return 0   # built by a concurrent run
    cleanup_stale
    MIRROR=$(pick_mirror)
    trap on_exit EXIT
    trap 'exit 130' INT TERM HUP
    WORK=$(mktemp -d "$IMAGE_DIR/.build.XXXXXX")
    start=$(date +%s)
    build_image "$WORK" >&2   # tools chatter on stdout; keep stdout KEY=value only
    remove_tree "$WORK/rootfs"
    printf '%s\n' "$HASH" >"$WORK/recipe.sha256"
    {
        echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "mirror=$MIRROR"
        echo "kernel=${kernel##*/}"
        echo "seconds=$(($(date +%s) - start))"
    } >"$WORK/build.info"
    : >"$WORK/.complete"
    chmod 0755 "$WORK"
    mv -T "$WORK" "$OUT"   # atomic publish (same filesystem)
    WORK=
    trap - EXIT INT TERM HUP
    log "built $OUT in $(($(date +%s) - start))s"
}

key_arg() {   # $1 = public key file -> kvmops.sshkey=<base64>
    [ -r "$1" ] || die "cannot read public key $1"
    grep -q '^\(ssh-\|ecdsa-\|sk-\)' "$1" || die "$1 does not look like an ssh public key"
    printf 'kvmops.sshkey=%s' "$(head -n 1 "$1" | tr -d '\n' | base64 -w0)"
}

cmdline() {   # [pubkey]
    if [ $# -ge 1 ] && [ -n "$1" ]; then
        k=$(key_arg "$1")
        echo "$BASE_CMDLINE $k"
    else
        echo "$BASE_CMDLINE"
    fi
}

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e "s/'/\&apos;/g"; }

# The domain XML proven by `selftest`: TCG (Linux does not boot under nested
# KVM here), direct kernel boot, virtio disk/net, serial pty logged to a file,
# guest-agent channel, virtio-rng (entropy for first-boot ssh-keygen).
domxml() {   # name overlay pubkey network
    name=$1 overlay=$2 net=$4
    cl=$(cmdline "$3")
    cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$OUT/vmlinuz</kernel>
    <initrd>$OUT/initrd.img</initrd>
    <cmdline>$(printf '%s' "$cl" | xml_escape)</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$(printf '%s' "$overlay" | xml_escape)'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/kvmops-test/$name.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
EOF
}

# ------------------------------------------------------------------ selftest
# Boot a throw-away guest from an overlay, ssh in as root with a per-run key,
# run python3 --version, tear everything down.  Prints timings.
ST_NAME='' ST_NET_CREATED='' ST_TMP='' ST_OVERLAY=''
V="virsh -q -c qemu:///system"
selftest_cleanup() {
    rc=$?
    if [ -n "$ST_NAME" ]; then
        $V destroy "$ST_NAME" >/dev/null 2>&1 || true
        $V undefine "$ST_NAME" >/dev/null 2>&1 || true
    fi
    [ -z "$ST_OVERLAY" ] || rm -f "$ST_OVERLAY"
    if [ -n "$ST_NET_CREATED" ]; then
        $V net-destroy "$ST_NET_CREATED" >/dev/null 2>&1 || true
        $V net-undefine "$ST_NET_CREATED" >/dev/null 2>&1 || true
    fi
    [ -z "$ST_TMP" ] || rm -rf "$ST_TMP"
    exit $rc
}

selftest_network() {   # sets NET (no subshell: ST_NET_CREATED must stick)
    state=$($V net-info default 2>/dev/null | awk '$1 == "Active:" { print $2 }')
    if [ "$state" = yes ]; then NET=default; return; fi
    if [ -n "$state" ] && $V net-start default >/dev/null 2>&1; then
        log "started libvirt network 'default' (left running)"
        NET=default
        return
    fi
    n=kvmops-st$$
    log "network 'default' unusable; creating $n (10.254.200.0/24)"
    cat >"$ST_TMP/net.xml" <<EOF
<network>
  <name>$n</name>
  <forward mode='nat'/>
  <bridge name='kvst$$' stp='off'/>
  <ip address='10.254.200.1' netmask='255.255.255.0'>
    <dhcp><range start='10.254.200.10' end='10.254.200.250'/></dhcp>
  </ip>
</network>
EOF
    $V net-define "$ST_TMP/net.xml" >/dev/null
    ST_NET_CREATED=$n
    $V net-start "$n" >/dev/null
    NET=$n
}

selftest() {
    timeout=${KVMOPS_SELFTEST_TIMEOUT:-600}
    do_build
    trap selftest_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    ST_TMP=$(mktemp -d)
    ssh-keygen -q -t ed25519 -N '' -C kvmops-selftest -f "$ST_TMP/key"
    selftest_network
    ST_NAME=kvmops-imgtest-$$
    ST_OVERLAY=$IMAGE_DIR/overlays/$ST_NAME.qcow2
    mkdir -p "$IMAGE_DIR/overlays" /var/log/kvmops-test
    qemu-img create -q -f qcow2 -b "$OUT/base.qcow2" -F qcow2 "$ST_OVERLAY"
    domxml "$ST_NAME" "$ST_OVERLAY" "$ST_TMP/key.pub" "$NET" >"$ST_TMP/dom.xml"
    $V define "$ST_TMP/dom.xml" >/dev/null
    t0=$(date +%s)
    $V start "$ST_NAME" >/dev/null
    mac=$($V domiflist "$ST_NAME" | awk 'NF >= 5 { print $5; exit }')
    log "started $ST_NAME (mac $mac, network $NET, serial log /var/log/kvmops-test/$ST_NAME.log)"
    ip=
    while [ -z "$ip" ]; do
        [ $(($(date +%s) - t0)) -lt "$timeout" ] || die "no DHCP lease after ${timeout}s"
        sleep 2
        ip=$($V net-dhcp-leases "$NET" --mac "$mac" |
            awk '$5 ~ /^[0-9.]+\// { sub(/\/.*/, "", $5); print $5; exit }')
    done
    t_ip=$(($(date +%s) - t0))
    log "DHCP lease $ip after ${t_ip}s"
    sshopt="-i $ST_TMP/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR"
    # shellcheck disable=SC2086
    until ssh $sshopt "root@$ip" true 2>/dev/null; do
        [ $(($(date +%s) - t0)) -lt "$timeout" ] || die "no ssh after ${timeout}s"
        sleep 2
    done
    t_ssh=$(($(date +%s) - t0))
    # shellcheck disable=SC2086
    pyver=$(ssh $sshopt "root@$ip" python3 --version)
    # shellcheck disable=SC2086
    ssh $sshopt "root@$ip" 'systemctl is-system-running --wait >/dev/null 2>&1; systemctl --failed --no-legend --plain' >"$ST_TMP/failed" || true
    t_settled=$(($(date +%s) - t0))
    agent=no
    $V qemu-agent-command "$ST_NAME" '{"execute":"guest-ping"}' >/dev/null 2>&1 && agent=yes
    log "ssh ok after ${t_ssh}s ($pyver), boot settled after ${t_settled}s, guest agent: $agent"
    [ ! -s "$ST_TMP/failed" ] || { log "failed units in guest:"; cat "$ST_TMP/failed" >&2; }
    echo "SELFTEST=ok"
    echo "SELFTEST_LEASE_SECONDS=$t_ip"
    echo "SELFTEST_SSH_SECONDS=$t_ssh"
    echo "SELFTEST_SETTLED_SECONDS=$t_settled"
    echo "SELFTEST_PYTHON=$pyver"
    echo "SELFTEST_AGENT=$agent"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case $cmd in
    build)
        [ $# -eq 0 ] || usage
        do_build
        print_paths
        ;;
    paths)
        [ $# -eq 0 ] || usage
        print_paths
        ;;
    overlay)
        { [ $# -ge 1 ] && [ $# -le 2 ]; } || usage
        case $1 in
            */*) ov=$(realpath -m -- "$1") ;;
            '' | .* | *[!A-Za-z0-9_.-]*) die "bad overlay name: $1" ;;
            *) ov=$IMAGE_DIR/overlays/$1.qcow2 ;;
        esac
        # validate the key before doing any work
        [ $# -lt 2 ] || key_arg "$2" >/dev/null
        do_build
        mkdir -p "$(dirname "$ov")"
        rm -f "$ov"
        qemu-img create -q -f qcow2 -b "$OUT/base.qcow2" -F qcow2 "$ov"
        echo "OVERLAY=$ov"
        echo "KERNEL=$OUT/vmlinuz"
        echo "INITRD=$OUT/initrd.img"
        echo "CMDLINE=$(cmdline "${2:-}")"
        ;;
    cmdline)
        [ $# -le 1 ] || usage
        cmdline "${1:-}"
        ;;
    gc)
        [ $# -eq 0 ] || usage
        [ -d "$IMAGE_DIR" ] || exit 0
        lock
        cleanup_stale
        for d in "$IMAGE_DIR"/debian12-*; do
            { [ -e "$d" ] && [ "$d" != "$OUT" ]; } || continue
            log "removing $d (other recipe; overlays backed by it become unusable)"
            remove_tree "$d"
        done
        ;;
    purge)
        [ $# -eq 0 ] || usage
        [ -d "$IMAGE_DIR" ] || exit 0
        lock
        for d in "$IMAGE_DIR"/* "$IMAGE_DIR"/.build.*; do
            [ -e "$d" ] && remove_tree "$d"
        done
        rm -f "$IMAGE_DIR/.lock"
        rmdir "$IMAGE_DIR" 2>/dev/null || true
        ;;
    domxml)
        { [ $# -ge 3 ] && [ $# -le 4 ]; } || usage
        domxml "$1" "$2" "$3" "${4:-default}"
        ;;
    selftest)
        [ $# -eq 0 ] || usage
        selftest
        ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
