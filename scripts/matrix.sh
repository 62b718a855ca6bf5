#!/usr/bin/env bash
# The ansible-core matrix: the unit tier and ansible-test sanity against every ansible-core series the
# collection claims (meta/runtime.yml requires_ansible ">=2.16.0"), on this machine's Python.
#
#   scripts/matrix.sh [--no-main-unit] [SERIES...]     e.g. scripts/matrix.sh 2.16 2.19
#
# Each series runs in its own small venv, .venv/matrix/<series> (ansible-core at the pin below plus the
# unit tier's pins from requirements-dev.txt), made or refreshed only when its pins change. The series
# the main .venv already has (requirements-dev.txt) runs in the main .venv instead, with the same
# sanity work tree as `make sanity`. Each other series gets its own sanity work tree
# (<main work tree>-<series>), so caches of different ansible-test releases never mix.
# --no-main-unit skips the unit tier of the main venv's series (`make test` runs it last anyway).
# Every series runs even when one fails; a summary with timings ends the output; the exit status
# is non-zero when anything failed. Needs no root (the build headers setup.sh installs must be there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAIN_VENV=$ROOT/.venv
MATRIX=$MAIN_VENV/matrix
PY_SYSTEM=/usr/bin/python3

# One line per ansible-core series the collection claims: the latest patch release on PyPI.
# Controller Python: 2.16 and 2.17 support 3.10-3.12, 2.18 and 2.19 support 3.11-3.13; 2.20 needs 3.12+.
PINS=(
    ansible-core==2.16.19
    ansible-core==2.17.14
    ansible-core==2.18.19
    ansible-core==2.19.14
)
# What the unit tier imports besides ansible-core (versions from requirements-dev.txt).
UNIT_DEPS=(pytest hypothesis libvirt-python lxml)

log() { printf '[matrix] %s\n' "$*"; }
die() { printf '[matrix] ERROR: %s\n' "$*" >&2; exit 1; }

main_unit=yes
wanted=()
for arg in "$@"; do
    case $arg in
        --no-main-unit) main_unit=no ;;
        -*) die "unknown option $arg" ;;
        *) wanted+=("$arg") ;;
    esac
done

[ -x "$MAIN_VENV/bin/python" ] || die "no $MAIN_VENV: run 'make setup-python' (or 'make setup') first"
[ -e "$MAIN_VENV/collections/ansible_collections/kvmops/kvm" ] || die "collection not linked into $MAIN_VENV/collections: run 'make setup-python'"
main_core=$("$MAIN_VENV/bin/python" -c 'from ansible.release import __version__; print(__version__)')
py=$("$PY_SYSTEM" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

deps=()
for name in "${UNIT_DEPS[@]}"; do
    line=$(grep -iE "^${name}==" "$ROOT/requirements-dev.txt" || true)
    [ -n "$line" ] || die "requirements-dev.txt pins no $name"
    deps+=("$line")
done

series_of() { local v=${1#ansible-core==}; echo "${v%.*}"; }
selected=()
for pin in "${PINS[@]}"; do
    s=$(series_of "$pin")
    if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $s "* ]]; then selected+=("$pin"); fi
done
[ ${#selected[@]} -gt 0 ] || die "no series matches: ${wanted[*]} (known: $(for p in "${PINS[@]}"; do series_of "$p"; done | tr '\n' ' '))"

# pip's notes about this machine's absent local mirrors are noise; errors still fail the run.
quiet() { { "$@" 2>&1; } | { grep -v '^WARNING: Location' || true; }; }

# Make (or reuse) the venv for one pin; prints nothing on reuse.
ensure_venv() {
    local pin=$1 venv=$2 version stamp want
    version=${pin#ansible-core==}
    stamp=$venv/.kvmops-matrix.sha256
    want=$(printf '%s\n' "$PY_SYSTEM" "$pin" "${deps[@]}" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] \
        && [ "$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)' 2>/dev/null)" = "$version" ]; then
        log "$version: reusing $venv"
        return 0
    fi
    log "$version: installing into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$PY_SYSTEM" -m venv "$venv"
    quiet "$venv/bin/python" -m pip install -q --upgrade pip
    quiet "$venv/bin/python" -m pip install -q "$pin" "${deps[@]}"
    "$venv/bin/python" -c 'import ansible, libvirt, lxml, pytest, hypothesis' || die "$version: the venv's imports fail"
    echo "$want" > "$stamp"
}

# The sanity work tree sanity.sh uses for this checkout (the main venv's series keeps it).
main_work=/var/tmp/kvmops-sanity-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)

declare -A RESULT
failed=0
now() { date +%s; }
for pin in "${selected[@]}"; do
    version=${pin#ansible-core==}
    s=$(series_of "$pin")
    if [ "$version" = "$main_core" ]; then
        venv=$MAIN_VENV
        work=$main_work
        log "$version: the main venv's ansible-core"
        setup_s=0
    else
        venv=$MATRIX/$s
        work=$main_work-$s
        t0=$(now)
        ensure_venv "$pin" "$venv"
        setup_s=$(( $(now) - t0 ))
    fi
    bash "$ROOT/scripts/ansible-test-bootstrap.sh" "$venv"

    unit="skipped"
    unit_s=0
    if [ "$venv" != "$MAIN_VENV" ] || [ "$main_unit" = yes ]; then
        log "$version: unit tier (Python $py)"
        t0=$(now)
        if (cd "$ROOT" && PATH=$venv/bin:$PATH HYPOTHESIS_PROFILE=ci \
                "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra "$ROOT/tests/unit"); then
            unit=passed
        else
            unit=FAILED
            failed=1
        fi
        unit_s=$(( $(now) - t0 ))
    fi

    log "$version: ansible-test sanity (work tree $work)"
    t0=$(now)
    if KVMOPS_VENV=$venv KVMOPS_SANITY_DIR=$work bash "$ROOT/scripts/sanity.sh"; then
        sanity=passed
    else
        sanity=FAILED
        failed=1
    fi
    sanity_s=$(( $(now) - t0 ))
    RESULT[$version]=$(printf '%-9s %-8s %6ss  %-7s %6ss  %6ss' "$version" "$unit" "$unit_s" "$sanity" "$sanity_s" "$setup_s")
done

log "summary (Python $py; seconds; venv = time to make or check the venv)"
printf '[matrix] %-9s %-8s %7s  %-7s %7s  %7s\n' ansible unit time sanity time venv
for pin in "${selected[@]}"; do
    printf '[matrix] %s\n' "${RESULT[${pin#ansible-core==}]}"
done
exit $failed
