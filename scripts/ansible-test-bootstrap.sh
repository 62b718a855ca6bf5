#!/usr/bin/env bash
# Offline pip bootstrap for `ansible-test --venv --requirements`, for the ansible-test of one venv.
#
#   scripts/ansible-test-bootstrap.sh [VENV]     (default: $KVMOPS_VENV or .venv)
#
# ansible-test creates each of its virtualenvs empty and then runs get-pip-<ver>.py, downloaded from
# a host this machine cannot reach, into ~/.ansible/test/cache/get_pip_<ver>.py (used from there when
# present). Each ansible-core series pins its own pip (2.16/2.17: pip 23.1.2 with setuptools and wheel;
# 2.18/2.19: pip 24.2), so every venv whose ansible-test runs needs the stand-in under its own name.
# ansible-test runs it with PIP_CONFIG_FILE=/dev/null. The stand-in bootstraps pip from ensurepip and
# then installs the requested packages (pip, and for the older series setuptools and wheel, at
# ansible-test's pins) from PyPI with the system CA bundle.
# Needs no root: it writes only under $HOME. Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-${KVMOPS_VENV:-$ROOT/.venv}}

log() { printf '[bootstrap] %s\n' "$*"; }

pipver=$("$VENV/bin/python" - <<'EOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
m = re.search(r"\bpip='([0-9.]+)'", src.read_text())
print(m.group(1) if m else '')
EOF
)
if [ -z "$pipver" ]; then
    printf '[bootstrap] ERROR: cannot find the pip version ansible-test pins in %s\n' "$VENV" >&2
    exit 1
fi
cache=$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py
mkdir -p "$(dirname "$cache")"
cat > "$cache.tmp" <<'EOF'
"""Offline stand-in for get-pip.py, written by kvmops.kvm scripts/ansible-test-bootstrap.sh."""
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install',
                       '--cert', '/etc/ssl/certs/ca-certificates.crt'] + args)
EOF
if ! cmp -s "$cache.tmp" "$cache"; then
    mv "$cache.tmp" "$cache"
    log "wrote $cache (pip $pipver)"
else
    rm -f "$cache.tmp"
fi
