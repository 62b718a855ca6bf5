#!/usr/bin/env bash
# ansible-test sanity on a clean copy of the collection, laid out as
# ansible_collections/kvmops/kvm as ansible-test requires. No ignore files.
# Extra arguments go to ansible-test (e.g. --test validate-modules, or paths).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
# One work tree per checkout; concurrent runs from the same checkout take turns.
WORK=${KVMOPS_SANITY_DIR:-/var/tmp/kvmops-sanity-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)}
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock 9
PYVER=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

DEST=$WORK/ansible_collections/kvmops/kvm
mkdir -p "$DEST"
# Mirror the checkout's files (tracked and new, minus ignored ones) into the copy;
# keep tests/output so ansible-test's venvs and caches are reused between runs.
find "$DEST" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$DEST/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} + 2>/dev/null || true
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf -) \
    | (cd "$DEST" && tar -xf -)
if ls "$DEST"/tests/sanity/ignore-*.txt >/dev/null 2>&1; then
    echo "sanity: ignore files are not allowed" >&2
    exit 1
fi
cd "$DEST"
export PATH=$VENV/bin:$PATH
exec ansible-test sanity --venv --requirements --python "$PYVER" --color no "$@"
