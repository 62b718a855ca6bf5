#!/usr/bin/env bash
# Run galaxy-importer, the tool Galaxy and Automation Hub run on every upload, on the collection tarball
# with the hub's settings (scripts/galaxy-importer.cfg), offline. Fails on any error or warning line.
#   scripts/galaxy-import.sh [TARBALL]   without TARBALL, builds one from this checkout first
# The importer sees only the tarball: no ansible.cfg and no collections path of the checkout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
export PATH=$VENV/bin:$PATH
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
export GALAXY_IMPORTER_CONFIG=$ROOT/scripts/galaxy-importer.cfg

tmp=$(mktemp -d /tmp/kvmops-import.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if [ $# -gt 1 ]; then
    echo "usage: $0 [kvmops-kvm-X.Y.Z.tar.gz]" >&2
    exit 2
elif [ $# -eq 1 ]; then
    tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    [ -f "$tarball" ] || { echo "galaxy-import: no such file: $1" >&2; exit 2; }
else
    ansible-galaxy collection build "$ROOT" --output-path "$tmp/dist" --force >/dev/null
    tarball=$(ls "$tmp"/dist/kvmops-kvm-*.tar.gz)
fi

# The importer writes importer_result.json into the current directory.
cd "$tmp"
rc=0
python -m galaxy_importer.main "$tarball" >"$tmp/import.log" 2>&1 || rc=$?
# Its log lines are "WARNING: ..." / "ERROR: ..."; ansible-doc and ansible-lint use "[WARNING]" etc.
findings=$(grep -E '^(WARNING|ERROR|CRITICAL)\b|\[(WARNING|ERROR|DEPRECATION WARNING)\]' "$tmp/import.log" || true)
if [ "$rc" -ne 0 ] || [ -n "$findings" ] || ! grep -q '^Importer processing completed successfully' "$tmp/import.log"; then
    echo "galaxy-import: $(basename "$tarball") fails the hub's import checks (importer exit $rc):" >&2
    if [ -n "$findings" ]; then
        printf '%s\n' "$findings" | sed 's/^/  /' >&2
    else
        tail -n 40 "$tmp/import.log" | sed 's/^/  /' >&2
    fi
    exit 1
fi
version=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["version"])' importer_result.json)
echo "galaxy-import: $(basename "$tarball") (version $version) imports with no error or warning" \
     "($(python -c 'import galaxy_importer; print(galaxy_importer.__version__)' 2>/dev/null || echo galaxy-importer))"
