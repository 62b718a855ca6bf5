"""Hostile-input tier: bad input through real ansible-playbook runs is refused before any write.

Every case file under ``tests/integration/hostile/`` is one play run once, at -vvv with --diff, by the
real ansible-playbook. Each case is one task named ``case <id>`` in its own block (a refusal is rescued
so the next case runs). The ``kvmops_hostile`` callback snapshots the libvirt state of the test URI and
the watched file trees around every task. Per case this asserts:

* the task failed (refused), reported changed=false, and wrote nothing: no libvirt object and no
  watched file differs before and after (the sandbox, /etc/network, /etc/exports, grub defaults, ...);
* the failure message matches ``expect`` (the option's name) and carries no traceback;
* the run's whole -vvv output holds none of the case's ``secrets`` and no Python traceback.

Case file format (YAML; ``!unsafe`` keeps a hostile value from being templated by the play itself)::

    vars: {...}            # optional play variables
    setup: [tasks]         # optional, run first (not named 'case ...')
    teardown: [tasks]      # optional, run in always:
    cases:
      - id: bridge-name-command-substitution
        task: {kvmops.kvm.kvm_bridge: {name: !unsafe 'br$(id>x)'}}   # plus task keywords if needed
        expect: '^name: '     # regex searched in the failure message
        secrets: [hunter2]    # optional: strings that must appear nowhere in the output
        check_mode: true      # optional

Play variables always available: ``sandbox`` (a fresh directory, watched) and ``uri``.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from conftest import ROOT, URI, _env, traceback_of

HOSTILE = os.path.join(ROOT, 'tests', 'integration', 'hostile')
# System files the collection writes: a refused input must leave them as they were.
WATCHED = ['/etc/network', '/etc/sysconfig/network-scripts', '/etc/NetworkManager/system-connections',
           '/etc/exports', '/etc/exports.d', '/etc/default/grub', '/etc/default/grub.d',
           '/etc/libvirt/qemu', '/etc/libvirt/storage', '/var/lib/libvirt/images']
TRACEBACK = 'Traceback (most recent call last)'
MIN_CASES = 200
OTHER_RUNS = re.compile(r'^((domain|network|pool|volume|volume/[^/]+)/|/etc/libvirt/(qemu|storage|qemu/networks)/(autostart/)?'
                        r'|/var/lib/libvirt/images/)kvmops-(it|molecule)-')
FILTER_WRAPPER = re.compile(r"^Task failed: .*?The filter plugin '[A-Za-z0-9_.]+' failed: ", re.S)


class Unsafe(str):
    """A ``!unsafe`` scalar, kept as such when the play is written back."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor('!unsafe', lambda loader, node: Unsafe(loader.construct_scalar(node)))
_Dumper.add_representer(Unsafe, lambda dumper, data: dumper.represent_scalar('!unsafe', str(data), style="'"))


def load(path):
    with open(path) as handle:
        return yaml.load(handle, Loader=_Loader) or {}


def case_files():
    if not os.path.isdir(HOSTILE):
        return []
    return sorted(f for f in os.listdir(HOSTILE) if f.endswith('.yml'))


def all_cases():
    out = []
    for name in case_files():
        for case in load(os.path.join(HOSTILE, name)).get('cases', []):
            out.append(pytest.param(name, case['id'], id='%s:%s' % (name[:-4], case['id'])))
    return out


def build_play(spec, sandbox):
    tasks = []
    for case in spec['cases']:
        task = dict(case['task'])
        task['name'] = 'case ' + case['id']
        if case.get('check_mode'):
            task['check_mode'] = True
        tasks.append({'name': 'block %s' % case['id'], 'block': [task],
                      'rescue': [{'ansible.builtin.meta': 'noop'}]})
    play_vars = dict(spec.get('vars') or {})
    play_vars.update(sandbox=sandbox, uri=URI, ansible_python_interpreter=os.path.join(ROOT, '.venv', 'bin', 'python'))
    body = [{'name': 'setup', 'block': list(spec.get('setup') or [{'ansible.builtin.meta': 'noop'}])}] if spec.get('setup') else []
    # The first task of always: closes the last case, so teardown results are nobody's.
    end = {'name': 'case -end-', 'ansible.builtin.debug': {'msg': 'cases done'}}
    body.append({'name': 'cases', 'block': tasks, 'always': [end] + list(spec.get('teardown') or [])})
    return [{'hosts': 'localhost', 'gather_facts': False, 'vars': play_vars, 'tasks': body}]


_RUNS = {}


def run_file(name):
    """Run one case file once per session: (records by case, -vvv output, spec)."""
    if name in _RUNS:
        return _RUNS[name]
    spec = load(os.path.join(HOSTILE, name))
    sandbox = tempfile.mkdtemp(prefix='kvmops-hostile-', dir='/var/tmp')
    workdir = tempfile.mkdtemp(prefix='kvmops-hostile-run-')
    try:
        play = os.path.join(workdir, 'play.yml')
        with open(play, 'w') as handle:
            yaml.dump(build_play(spec, sandbox), handle, Dumper=_Dumper, sort_keys=False)
        out = os.path.join(workdir, 'records.jsonl')
        env = _env(dict(
            ANSIBLE_CALLBACKS_ENABLED='kvmops_hostile',
            ANSIBLE_STDOUT_CALLBACK='default',
            KVMOPS_HOSTILE_OUT=out, KVMOPS_HOSTILE_URI=URI,
            KVMOPS_HOSTILE_WATCH=':'.join([sandbox] + WATCHED),
        ))
        cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), play, '-vvv', '--diff',
               '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
        records = {}
        if os.path.exists(out):
            with open(out) as handle:
                for line in handle:
                    rec = json.loads(line)
                    records.setdefault(rec['case'], []).append(rec)
        _RUNS[name] = (records, proc.stdout + proc.stderr, spec, proc.returncode)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(sandbox, ignore_errors=True)
    return _RUNS[name]


def output_of(output, case_id):
    """The -vvv output of one case's task (from its TASK header to the next)."""
    match = re.search(r'^TASK \[case %s\].*?(?=^TASK \[|^PLAY RECAP)' % re.escape(case_id), output, re.M | re.S)
    return match.group(0) if match else ''


@pytest.mark.parametrize('name,case_id', all_cases())
def test_hostile(name, case_id):
    records, output, spec, rc = run_file(name)
    assert rc == 0, 'the case play itself failed (rc %d):\n%s' % (rc, output[-4000:])
    case = [c for c in spec['cases'] if c['id'] == case_id][0]
    recs = records.get(case_id)
    assert recs, 'case %s did not run:\n%s' % (case_id, output[-3000:])
    failed = [r for r in recs if r['failed']]
    assert failed, 'case %s was not refused: %s' % (case_id, json.dumps(recs[-1]['result'])[:2000])
    assert not any(r['changed'] for r in recs), 'case %s reported changed' % case_id
    # Objects of other test runs sharing the host (the integration and molecule tiers' names) are theirs.
    written = [c for r in recs for c in r['libvirt_changes'] + r['file_changes'] if not OTHER_RUNS.search(c)]
    assert not written, 'case %s wrote: %s' % (case_id, written)
    # ansible-core 2.19 puts the filter's own message after "Task failed: Finalization of task args for ...
    # The filter plugin 'kvmops.kvm.X' failed: "; the message the filter raised is what the case checks
    msg = FILTER_WRAPPER.sub('', failed[0]['msg'], count=1)
    assert re.search(case['expect'], msg), 'case %s: message %r does not match %r' % (case_id, msg, case['expect'])
    for rec in recs:
        text = json.dumps(rec['result'])
        assert TRACEBACK not in text and traceback_of(rec['result']) is None, 'case %s: traceback in %s' % (case_id, text[:3000])
    own = output_of(output, case_id)
    assert own, 'case %s: no output section' % case_id
    assert TRACEBACK not in own
    for secret in case.get('secrets') or []:
        assert secret not in output, 'case %s: secret %r appears in the -vvv output' % (case_id, secret)


def test_hostile_tier_size():
    """The tier keeps at least MIN_CASES cases across the modules, roles, filters and plugins."""
    assert len(all_cases()) >= MIN_CASES, '%d hostile cases, want at least %d' % (len(all_cases()), MIN_CASES)
