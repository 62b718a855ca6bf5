#!/usr/bin/env bash
# Lint the collection's documentation the way the Ansible docsite build does, failing on any finding:
#   * every plugin's and role's documentation (DOCUMENTATION/EXAMPLES/RETURN, filter .yml docs,
#     meta/argument_specs.yml): schema, markup (M(), O(), RV(), L() ...) and that each reference to
#     a plugin, module or role of this collection, ansible.builtin or another installed collection exists;
#   * the RST generated from them, through rstcheck;
#   * docs/docsite extra docs and links, when present, and the collection references in them.
# `make docs` (scripts/docs.sh) runs a quicker subset of this before it renders the docsite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
export PATH=$VENV/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$VENV/collections}
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1

out=$(mktemp /tmp/kvmops-docs-lint.XXXXXX)
trap 'rm -f "$out"' EXIT
rc=0
antsibull-docs lint-collection-docs --plugin-docs --no-skip-rstcheck --check-extra-docs-refs \
    --validate-collection-refs all "$ROOT" >"$out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$out" ]; then
    echo "docs-lint: antsibull-docs reports (exit $rc):" >&2
    sed 's/^/  /' "$out" >&2
    exit 1
fi
echo "docs-lint: plugin and role documentation and extra docs lint clean ($(antsibull-docs --version 2>/dev/null | head -n1))"
