#!/usr/bin/env bash
# Run the molecule scenarios of every role that changed since the last release, so that no role
# ships changed without its scenarios having passed (docs/molecule.md, "Which roles CI proves").
#
#   scripts/molecule-changed.sh            choose the roles, say why, run each of their scenarios
#   scripts/molecule-changed.sh --list     only print the chosen role/scenario keys (reasons on stderr)
#   options: --base REF (compare with REF instead of the last release tag; also KVMOPS_MOLECULE_BASE),
#            --all (every role), --exclude ROLE/SCENARIO (repeatable; e.g. one `make test` already ran)
#
# The base is the last release tag, `git describe --tags --abbrev=0 --match '[0-9]*'`; in a clone without
# tags, the last commit that added a release to changelogs/changelog.yaml. Without either (no release yet)
# nothing proves any role yet, so every role is chosen.
# A role is chosen when, between the base and the work tree (committed, staged, unstaged or untracked):
#   * a file under roles/<role>/ changed;
#   * the shared molecule driver changed: tests/molecule/ (create, prepare, destroy, vars) or the guest
#     image recipe tests/lab/image.sh: then every role;
#   * a filter plugin file the role's own files call by name (kvmops.kvm.<name>, outside its molecule/
#     directory) changed: the roles' filters hold role logic (grub settings, NFS exports) that only the
#     roles exercise. The shared module_utils under them (_validate, _client) and the modules are not
#     counted: every module and filter has its unit tests, and the integration tier proves every module
#     against the real libvirtd, on each run.
# Each scenario runs as tests/integration/conftest.py's molecule lane runs kvm_host/default:
# `molecule test -s <scenario>` in roles/<role>, the virtualenv first on PATH, the checkout's
# collection link in ANSIBLE_COLLECTIONS_PATH, a timeout of KVMOPS_MOLECULE_TIMEOUT seconds (2700),
# output to the terminal and to build/molecule/<role>-<scenario>.log. All chosen scenarios run, one
# after the other; the exit status is 1 when any failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KVMOPS_VENV:-$ROOT/.venv}
export PATH=$VENV/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$VENV/collections ANSIBLE_FORCE_COLOR=0
TIMEOUT=${KVMOPS_MOLECULE_TIMEOUT:-2700}
LOGS=$ROOT/build/molecule

list_only=0
selector=(python3 - "$ROOT")
while [ $# -gt 0 ]; do
    case $1 in
        --list) list_only=1 ;;
        --all) selector+=(--all) ;;
        --base) [ $# -ge 2 ] || { echo "molecule-changed: --base needs a git ref" >&2; exit 2; }
                selector+=(--base "$2"); shift ;;
        --exclude) [ $# -ge 2 ] || { echo "molecule-changed: --exclude needs ROLE/SCENARIO" >&2; exit 2; }
                   selector+=(--exclude "$2"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "molecule-changed: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "${KVMOPS_MOLECULE_BASE:-}" ]; then
    selector+=(--base "$KVMOPS_MOLECULE_BASE")
fi

# The selection: reasons on stderr, then the chosen role/scenario keys, one a line, on stdout.
keys=$("${selector[@]}" <<'PYTHON'
import ast
import os
import re
import subprocess
import sys

root, args = sys.argv[1], sys.argv[2:]
base, everything, exclude = None, False, set()
while args:
    arg = args.pop(0)
    if arg == '--all':
        everything = True
    elif arg == '--base':
        base = args.pop(0)
    elif arg == '--exclude':
        exclude.add(args.pop(0))

SHARED = ('tests/molecule/', 'tests/lab/image.sh')


def say(line):
    sys.stderr.write('molecule-changed: %s\n' % line)


def git(*cmd):
    return subprocess.run(('git', '-C', root) + cmd, capture_output=True, text=True, check=False)


def read(path):
    with open(os.path.join(root, path), errors='replace') as handle:
        return handle.read()


def files_under(top):
    for dirpath, _dirs, names in os.walk(os.path.join(root, top)):
        for name in names:
            yield os.path.relpath(os.path.join(dirpath, name), root)


def filter_names(path):
    """The filter names a filter plugin file's FilterModule.filters() returns (dict literal or dict(...))."""
    try:
        tree = ast.parse(read(path))
    except (SyntaxError, OSError, ValueError):
        return set(re.findall(r'[A-Za-z_][A-Za-z0-9_]*', read(path)))    # unparsable: any word counts
    names = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and func.name == 'filters':
            for node in ast.walk(func):
                if isinstance(node, ast.Dict):
                    names.update(key.value for key in node.keys if isinstance(key, ast.Constant))
                elif isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
                    names.update(keyword.arg for keyword in node.keywords if keyword.arg)
    return names


def plugin_files(name):
    """The code behind the filter kvmops.kvm.NAME: the filter plugin file that defines it (modules: none)."""
    found = set()
    filters = 'plugins/filter'
    if os.path.isdir(os.path.join(root, filters)):
        found.update(path for path in files_under(filters) if path.endswith('.py') and name in filter_names(path))
    return found


roles = sorted(name for name in os.listdir(os.path.join(root, 'roles'))
               if os.path.isdir(os.path.join(root, 'roles', name)))
reasons = {role: [] for role in roles}

if everything:
    say('--all: every role')
    for role in roles:
        reasons[role].append('--all')
else:
    if base is None:
        described = git('describe', '--tags', '--abbrev=0', '--match', '[0-9]*')
        base = described.stdout.strip() if described.returncode == 0 else None
        if base:
            say('base: the last release tag %s' % base)
        else:
            # a clone without tags still knows its releases: antsibull-changelog writes each one into
            # changelogs/changelog.yaml, so the last commit that changed it is the last release
            released = git('log', '-1', '--format=%H', '-G', r'^  [0-9]+\.[0-9]+\.[0-9]+:$', '--', 'changelogs/changelog.yaml')
            base = released.stdout.strip() or None
            if base:
                say('base: no release tag; the last release commit by changelogs/changelog.yaml, %s' % base[:12])
    elif git('rev-parse', '--verify', '--quiet', base + '^{commit}').returncode != 0:
        say('base %r is not a commit of this repository' % base)
        sys.exit(2)
    else:
        say('base: %s (given)' % base)
    if not base:
        say('base: no release tag matching [0-9]* (no release yet, or a clone without tags): '
            'nothing has proven any role, so every role')
        for role in roles:
            reasons[role].append('no release tag to compare with')
    else:
        diff = git('diff', '--name-only', '--no-renames', base, '--')
        if diff.returncode != 0:
            say('git diff %s failed: %s' % (base, diff.stderr.strip()))
            sys.exit(2)
        untracked = git('ls-files', '--others', '--exclude-standard')
        changed = sorted(set(diff.stdout.split('\n') + untracked.stdout.split('\n')) - {''})
        say('%d files changed since %s' % (len(changed), base))
        shared = [path for path in changed if path.startswith(SHARED)]
        if shared:
            for role in roles:
                reasons[role].append('shared molecule driver changed: %s' % ', '.join(shared))
        for role in roles:
            own = [path for path in changed if path.startswith('roles/%s/' % role)]
            if own:
                shown = ', '.join(own[:5]) + (' and %d more' % (len(own) - 5) if len(own) > 5 else '')
                reasons[role].append('its files changed: %s' % shown)
            # filters the role itself calls (its modules, and the ones its scenarios boot guests with,
            # are the integration tier's to prove)
            names = set()
            for path in files_under('roles/%s' % role):
                if '/molecule/' in path or not path.endswith(('.yml', '.yaml', '.j2')):
                    continue
                names.update(re.findall(r'\bkvmops\.kvm\.([a-z_][a-z0-9_]*)', read(path)))
            code = set()
            for name in sorted(names):
                code |= plugin_files(name)
            touched = sorted(path for path in code if path in changed)
            if touched:
                reasons[role].append('filters it uses changed: %s' % ', '.join(touched))

keys, missing = [], []
for role in roles:
    if not reasons[role]:
        say('%s: not chosen (nothing it depends on changed)' % role)
        continue
    scenarios = sorted(name for name in os.listdir(os.path.join(root, 'roles', role, 'molecule'))
                       if os.path.isfile(os.path.join(root, 'roles', role, 'molecule', name, 'molecule.yml'))) \
        if os.path.isdir(os.path.join(root, 'roles', role, 'molecule')) else []
    say('%s: chosen, %s; scenarios: %s' % (role, '; '.join(reasons[role]), ', '.join(scenarios) or 'NONE'))
    if not scenarios:
        missing.append(role)
    for scenario in scenarios:
        key = '%s/%s' % (role, scenario)
        if key in exclude:
            say('%s: excluded (--exclude)' % key)
        else:
            keys.append(key)
if missing:
    say('changed roles without a molecule scenario cannot be proven: %s' % ', '.join(missing))
    sys.exit(1)
print('\n'.join(keys))
PYTHON
)

if [ "$list_only" = 1 ]; then
    [ -z "$keys" ] || printf '%s\n' "$keys"
    exit 0
fi
if [ -z "$keys" ]; then
    echo "molecule-changed: no scenario to run"
    exit 0
fi
mkdir -p "$LOGS"
failed=()
summary=()
for key in $keys; do
    role=${key%%/*}
    scenario=${key#*/}
    log=$LOGS/$role-$scenario.log
    echo "molecule-changed: molecule test -s $scenario in roles/$role (log $log)"
    started=$(date +%s)
    rc=0
    (cd "$ROOT/roles/$role" && timeout --kill-after=60 "$TIMEOUT" molecule test -s "$scenario") 2>&1 | tee "$log" \
        || rc=${PIPESTATUS[0]}
    seconds=$(( $(date +%s) - started ))
    [ "$rc" = 124 ] && rc="124 (timeout after ${TIMEOUT}s)"
    summary+=("$key: rc=$rc in $((seconds / 60)) min $((seconds % 60)) s")
    [ "$rc" = 0 ] || failed+=("$key")
done
echo "molecule-changed: results"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "molecule-changed: failed: ${failed[*]}" >&2
    exit 1
fi
