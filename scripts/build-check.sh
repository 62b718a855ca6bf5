#!/usr/bin/env bash
# Build the galaxy tarball and install it into a throw-away collections path,
# then prove the installed copy works (ansible-doc renders, a module runs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
export PATH=$VENV/bin:$PATH
tmp=$(mktemp -d /tmp/kvmops-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
ansible-galaxy collection build "$ROOT" --output-path "$tmp/dist" --force >/dev/null
tarball=$(ls "$tmp"/dist/kvmops-kvm-*.tar.gz)
# Development files never ship: the build, lint and test tooling, caches and EE build contexts.
DEV='^(\.venv|\.git|\.ci|\.ansible|\.pytest_cache|build|context|scripts|inventory|tests/(output|lab|benchmarks|molecule)|docs/docsite)(/|$)'
DEV=$DEV'|^(Makefile|ansible\.cfg|\.ansible-lint|\.gitignore|requirements-dev\.txt|execution-environment\.yml)$'
DEV=$DEV'|^roles/[^/]+/molecule(/|$)|(^|/)__pycache__(/|$)|(^|/)\.hypothesis(/|$)|\.pyc$|\.tar\.gz$'
shipped=$(tar -tzf "$tarball" | sed -e 's|^\./||' -e 's|/$||' | grep -E "$DEV" || true)
if [ -n "$shipped" ]; then
    echo "build: tarball ships development files:" >&2
    printf '%s\n' "$shipped" | sed 's/^/  /' >&2
    exit 1
fi
ansible-galaxy collection install --force "$tarball" -p "$tmp/collections" >/dev/null 2>&1
export ANSIBLE_COLLECTIONS_PATH=$tmp/collections
installed=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' \
    "$tmp/collections/ansible_collections/kvmops/kvm/MANIFEST.json")
[ "$installed" = "$(awk '/^version:/ {print $2}' "$ROOT/galaxy.yml")" ] || { echo "build: installed version '$installed' wrong" >&2; exit 1; }
for path in "$ROOT"/plugins/modules/*.py; do
    module=$(basename "$path" .py)
    ansible-doc "kvmops.kvm.$module" >/dev/null
done
ansible localhost -c local -e "ansible_python_interpreter=$VENV/bin/python" -m kvmops.kvm.kvm_info -a 'gather=networks' >/dev/null
echo "build: $(basename "$tarball") builds, installs, documents and runs"
