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
# Safe to re-run: every step checks before it acts.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
COLLECTIONS=$VENV/collections
PY_SYSTEM=/usr/bin/python3

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (system packages and libvirtd need it)"

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
PACKAGES=(
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils ovmf
    libvirt-dev pkg-config gcc python3-dev python3-venv
    dnsmasq-base iproute2 iptables bridge-utils kmod procps
    debootstrap busybox-static linux-image-amd64 e2fsprogs lvm2
    git make shellcheck
)
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

# ---------------------------------------------------------------- /dev/kvm
if [ -e /dev/kvm ]; then
    if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
        chgrp kvm /dev/kvm && chmod 660 /dev/kvm
        log "/dev/kvm made usable by the kvm group"
    fi
else
    log "no /dev/kvm: guests will run under TCG emulation"
fi

# ---------------------------------------------------------------- daemons
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ -d /run/systemd/system ]; then
    for unit in virtlogd libvirtd; do
        systemctl is-active --quiet "$unit" || { log "starting $unit"; systemctl enable --now "$unit"; }
    done
else
    mkdir -p /run/libvirt
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

# ---------------------------------------------------------------- ansible-test offline pip bootstrap
# ansible-test downloads get-pip-<ver>.py from a host this machine cannot reach
# and runs pip with PIP_CONFIG_FILE=/dev/null. This stand-in bootstraps pip from
# ensurepip and then installs the requested packages with the system CA bundle.
pipver=$("$VENV/bin/python" - <<'EOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
m = re.search(r"pip='([0-9.]+)'", src.read_text())
print(m.group(1) if m else '')
EOF
)
if [ -n "$pipver" ]; then
    cache=$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py
    mkdir -p "$(dirname "$cache")"
    cat > "$cache.tmp" <<'EOF'
"""Offline stand-in for get-pip.py, written by kvmops.kvm scripts/setup.sh."""
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install',
                       '--cert', '/etc/ssl/certs/ca-certificates.crt'] + args)
EOF
    if ! cmp -s "$cache.tmp" "$cache"; then mv "$cache.tmp" "$cache"; log "wrote $cache"; else rm -f "$cache.tmp"; fi
fi

log "ready: $VENV"
