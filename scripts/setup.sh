#!/usr/bin/env bash
# Build the local development/test environment for kvmops.kvm, idempotently.
#
#   * system packages (Debian/Ubuntu only; anything else is refused clearly)
#   * a virtualenv (.venv) with the pinned Python toolchain
#   * the collection linked into the venv's collections path
#   * virtlogd + libvirtd running (started directly when no init system runs them)
#   * /dev/kvm usable by the kvm group
#   * an offline pip bootstrap for `ansible-test --venv --requirements`
#
#   scripts/setup.sh            everything above (as root)
#   scripts/setup.sh --python   only the Python side: venv, pip, collection link, pip bootstrap. Needs no
#                               root when the build packages (libvirt-dev, pkg-config, gcc, python3-dev,
#                               python3-venv) are installed; as root it installs those that are missing.
#
# Safe to re-run: every step checks before it acts.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
COLLECTIONS=$VENV/collections
PY_SYSTEM=/usr/bin/python3

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

MODE=all
case ${1:-} in
    "") ;;
    --python) MODE=python ;;
    *) die "unknown argument '$1' (use --python for the Python side only)" ;;
esac
[ "$MODE" = python ] || [ "$(id -u)" -eq 0 ] || die "run as root (system packages and libvirtd need it); 'make unit' needs no root"

# ---------------------------------------------------------------- platform
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
fi
case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*|*" ubuntu "*) ;;
    *) die "unsupported platform '${PRETTY_NAME:-unknown}': this setup supports Debian/Ubuntu only" ;;
esac

# ---------------------------------------------------------------- packages
# What building the venv needs (libvirt-python compiles against libvirt-dev).
BUILD_PACKAGES=(libvirt-dev pkg-config gcc python3-dev python3-venv)
PACKAGES=(
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools
    "${BUILD_PACKAGES[@]}"
    dnsmasq-base iproute2 iptables bridge-utils kmod procps openssh-server
    debootstrap busybox-static linux-image-amd64 e2fsprogs lvm2
    git make shellcheck
)
[ "$MODE" = all ] || PACKAGES=("${BUILD_PACKAGES[@]}")
missing=()
installed_now=0
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing system packages: ${missing[*]} (run 'make setup' as root once)"
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    installed_now=1
else
    log "system packages present"
fi

# ---------------------------------------------------------------- venv
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PY_SYSTEM" -m venv "$VENV"
fi
stamp=$VENV/.requirements.sha256
want=$(cat "$ROOT/requirements-dev.txt" "$ROOT/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python requirements into $VENV"
    # pip's notes about this machine's absent local mirrors are noise; errors still fail the run.
    quiet() { { "$@" 2>&1; } | { grep -v '^WARNING: Location' || true; }; }
    quiet "$VENV/bin/python" -m pip install -q --upgrade pip
    quiet "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements-dev.txt" -r "$ROOT/requirements.txt"
    echo "$want" > "$stamp"
else
    log "Python requirements up to date"
fi

# ---------------------------------------------------------------- collection
# Development install: the venv's collections path points at this checkout, so
# every change is live. `make build` checks the galaxy tarball separately.
mkdir -p "$COLLECTIONS/ansible_collections/kvmops"
link=$COLLECTIONS/ansible_collections/kvmops/kvm
if [ "$(readlink "$link" 2>/dev/null || true)" != "$ROOT" ]; then
    rm -rf "$link"
    ln -s "$ROOT" "$link"
    log "linked collection kvmops.kvm -> $ROOT"
fi

# ---------------------------------------------------------------- ansible-test offline pip bootstrap
# ansible-test downloads get-pip-<ver>.py from a host this machine cannot reach: write a stand-in.
bash "$ROOT/scripts/ansible-test-bootstrap.sh" "$VENV"

if [ "$MODE" = python ]; then
    log "ready: $VENV (Python side only)"
    exit 0
fi

# ---------------------------------------------------------------- /dev/kvm
if [ -e /dev/kvm ]; then
    if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
        chgrp kvm /dev/kvm && chmod 660 /dev/kvm
        log "/dev/kvm made usable by the kvm group"
    fi
else
    log "no /dev/kvm: guests will run under TCG emulation"
fi

# ---------------------------------------------------------------- swtpm's local CA
# libvirt runs swtpm_setup as tss (root only when libvirtd started before the tss user existed). Files
# a root run left in the CA directory would make every later TPM guest fail to start: give them back.
if getent passwd tss >/dev/null && [ -d /var/lib/swtpm-localca ] \
        && [ -n "$(find /var/lib/swtpm-localca -mindepth 1 ! -user tss -print -quit)" ]; then
    chown -R --no-dereference tss:tss /var/lib/swtpm-localca
    chown tss:root /var/lib/swtpm-localca
    log "swtpm's local CA (/var/lib/swtpm-localca) given back to tss"
fi

# ---------------------------------------------------------------- daemons
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ -d /run/systemd/system ]; then
    for unit in virtlogd libvirtd; do
        systemctl is-active --quiet "$unit" || { log "starting $unit"; systemctl enable --now "$unit"; }
    done
else
    mkdir -p /run/libvirt
    # A libvirtd older than the packages just installed does not know them: it started before swtpm-tools
    # created the tss user, so it would run swtpm as root (libvirt's fallback) and leave root-owned files
    # in swtpm's local CA that the next libvirtd, running swtpm as tss, cannot open. Guests keep running.
    if [ "$installed_now" = 1 ] && alive /run/libvirt/libvirtd.pid; then
        log "restarting libvirtd (packages were installed under it)"
        kill "$(cat /run/libvirt/libvirtd.pid)"
        for _ in $(seq 1 50); do alive /run/libvirt/libvirtd.pid || break; sleep 0.2; done
    fi
    if ! alive /run/libvirt/virtlogd.pid; then
        pkill -x virtlogd 2>/dev/null || true
        log "starting virtlogd (no init system)"
        virtlogd -d -p /run/libvirt/virtlogd.pid
    fi
    if ! alive /run/libvirt/libvirtd.pid; then
        log "starting libvirtd (no init system)"
        libvirtd -d -p /run/libvirt/libvirtd.pid
    fi
fi
for _ in $(seq 1 50); do
    [ -S /run/libvirt/libvirt-sock ] && virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
done
virsh -c qemu:///system version >/dev/null 2>&1 || die "libvirtd did not come up on qemu:///system"
log "libvirtd answers on qemu:///system"

log "ready: $VENV"
