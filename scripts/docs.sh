#!/usr/bin/env bash
# Build the kvmops.kvm docsite into build/docs/html (`make docs`), offline, failing on any warning.
#   * reference: antsibull-docs renders every module, the inventory plugin and the roles from
#     their DOCUMENTATION blocks and meta/argument_specs.yml (after linting them);
#   * guides: docs/*.md (MyST), next to it;
#   * sphinx-build -W: a warning is an error, so CI (`make test` depends on `docs`) catches them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
export PATH=$VENV/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$VENV/collections}
SRC=$ROOT/docs/docsite
BUILD=${KVMOPS_DOCS_DIR:-$ROOT/build/docs}

rm -rf "$BUILD"
mkdir -p "$BUILD/rst/guides"
chmod og-w "$BUILD/rst"   # antsibull-docs wants its destination writable only by itself

antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck "$ROOT"
antsibull-docs --config-file "$SRC/antsibull-docs.cfg" collection --use-current \
    --dest-dir "$BUILD/rst" kvmops.kvm
cp "$SRC/index.rst" "$BUILD/rst/index.rst"
cp "$ROOT"/docs/*.md "$BUILD/rst/guides/"

python "$SRC/ansible_inventory.py" "$BUILD/ansible_devel.inv"
KVMOPS_ANSIBLE_INVENTORY=$BUILD/ansible_devel.inv \
    sphinx-build -q -W --keep-going -b html -c "$SRC" -d "$BUILD/doctrees" "$BUILD/rst" "$BUILD/html"
echo "docs: $BUILD/html/index.html"
