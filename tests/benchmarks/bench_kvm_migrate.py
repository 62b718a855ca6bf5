"""Benchmark: kvm_migrate, kvm_migrate_guests and drain_host.yml vs `virsh migrate`, on the two-host lab.

Not a test (not collected by pytest, not part of `make test`): a script that prints wall times,
downtimes and ratios. See tests/benchmarks/README.md.

1. One guest, the same flags (live, persistent on the destination, undefine on the source,
   abort on error, migrate URI tcp://10.254.77.2), main host -> lab host:
   kvm_migrate run by ansible-playbook vs `virsh migrate` run as a subprocess. Each side runs
   --rounds times, interleaved; the guest is moved back (unmeasured) between runs. Wall time is
   the whole process (ansible-playbook start to exit / virsh start to exit); the module's own
   migration call (its elapsed_seconds) is shown too, and so are the same virsh migrate run by
   ansible.builtin.command from a play and an empty play (ansible-playbook's start-up), which
   share the module run's harness. Downtime: the module's returned
   progress.downtime_ms, and `virsh domjobinfo --completed` on the destination for virsh.
2. Drain: --guests guests (default 6) on the lab host, drained to the main host, --drain-rounds
   times (default 1; medians), four ways with the same flags, each from the lab back to the lab:
   one kvmops.kvm.kvm_migrate_guests task (a one-task play, concurrency --concurrency, default 3),
   playbooks/drain_host.yml (the same module behind the survey checks and the summary), a serial
   loop of `virsh migrate`, and the floor: the same migrations from this Python process with
   --concurrency threads (libvirt-python migrate3, one connection pair per thread, no Ansible).
   The guests go back to the lab between runs (threaded, not measured), after one unmeasured
   round trip of every guest to warm up.

The guests are OS-less (no disk, 64 MiB, serial pty, type kvm when libvirt offers it), named
kvmops-bench-<hex>-*, and destroyed and undefined on both hosts at the end, also on failure.
The script starts the lab's host2 (tests/lab/lab.sh start host2) and stops it at the end, unless it was
already running when the script started (then it is left running, for whoever started it).

    .venv/bin/python tests/benchmarks/bench_kvm_migrate.py [--rounds 3] [--guests 6] [--concurrency 3]
        [--drain-rounds 1] [--only drain]

Exit status 1 when a target is missed, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, 'tests', 'lab', 'lab.sh')
MAIN_URI = 'qemu:///system'
LAB_URI = 'qemu+tcp://10.254.77.2/system'
TO_LAB = 'tcp://10.254.77.2'
TO_MAIN = 'tcp://10.254.77.1'
MAIN_ADDR = '10.254.77.1'

# issue 18: one drain task <= 0.50x the serial virsh loop and <= 1.3x the threaded libvirt-python floor
TARGETS = dict(single=1.10, drain=0.50, floor=1.30)

GUEST_XML = """<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <currentMemory unit='MiB'>{memory}</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""

# The same flags on both sides: kvm_migrate's live defaults are LIVE, PERSIST_DEST,
# UNDEFINE_SOURCE and ABORT_ON_ERROR.
VIRSH_FLAGS = ['--live', '--persistent', '--undefinesource', '--abort-on-error']
MODULE_FLAGS = ['LIVE', 'PERSIST_DEST', 'UNDEFINE_SOURCE', 'ABORT_ON_ERROR']

MIGRATE_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: migrate
      kvmops.kvm.kvm_migrate:
        name: "{{ guest }}"
        destination_uri: %(lab)s
        migrate_uri: %(to_lab)s
"""

# References that share ansible-playbook's start-up with the module run: the same virsh migrate run
# by ansible.builtin.command (argv, no shell), and an empty play.
COMMAND_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: migrate
      ansible.builtin.command:
        argv: %(argv)s
      changed_when: true
"""

EMPTY_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks: []
"""


def env():
    out = dict(os.environ)
    out.update(
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.venv', 'collections'),
        ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
        ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, 'tests', 'integration', 'callback_plugins'),
        ANSIBLE_STDOUT_CALLBACK='kvmops_test_json',
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_RETRY_FILES_ENABLED='0',
        ANSIBLE_LOCALHOST_WARNING='0',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
    )
    return out


def timed(argv, **kwargs):
    """Run argv (a list, no shell); returns (seconds, CompletedProcess). Raises on a non-zero exit."""
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError('%s failed (rc %d): %s%s' % (' '.join(argv[:4]), proc.returncode,
                                                        proc.stdout[-3000:], proc.stderr[-3000:]))
    return seconds, proc


def playbook(path, extra_vars):
    argv = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), path,
            '-i', os.path.join(ROOT, 'inventory', 'localhost.yml'), '-e', json.dumps(extra_vars)]
    seconds, proc = timed(argv, env=env())
    data = json.loads(proc.stdout[proc.stdout.index('{'):])
    return seconds, data


def task_result(data, name):
    for play in data['plays']:
        for task in play['tasks']:
            if task['task']['name'] == name:
                return task['hosts']['localhost']
    raise KeyError(name)


def virsh(uri, *args):
    return timed(['virsh', '-q', '-c', uri] + list(args))


def virsh_migrate_to_lab(name):
    return virsh(MAIN_URI, 'migrate', *(VIRSH_FLAGS + [name, LAB_URI, TO_LAB]))[0]


def virsh_migrate_to_main(name):
    return virsh(LAB_URI, 'migrate', *(VIRSH_FLAGS + [name, MAIN_URI, TO_MAIN, '--listen-address', MAIN_ADDR]))[0]


def completed_downtime_ms(uri, name):
    """Total downtime of the last completed job of ``name`` on ``uri`` (virsh domjobinfo --completed)."""
    out = virsh(uri, 'domjobinfo', '--completed', name)[1].stdout
    match = re.search(r'^Total downtime:\s+(\d+)\s+ms', out, re.M)
    return int(match.group(1)) if match else None


def virt_type():
    out = subprocess.run(['virsh', '-c', MAIN_URI, 'domcapabilities', '--virttype', 'kvm'],
                         capture_output=True, text=True, check=False)
    return 'kvm' if out.returncode == 0 else 'qemu'


def define_and_start(uri, name, vtype, memory):
    with tempfile.NamedTemporaryFile('w', suffix='.xml', delete=False) as handle:
        handle.write(GUEST_XML.format(virt_type=vtype, name=name, memory=memory))
        path = handle.name
    try:
        virsh(uri, 'define', path)
        virsh(uri, 'start', name)
    finally:
        os.unlink(path)


def where(name):
    """'main', 'lab' or None: where ``name`` is defined (the benchmark keeps its guests persistent)."""
    for label, uri in (('main', MAIN_URI), ('lab', LAB_URI)):
        if subprocess.run(['virsh', '-q', '-c', uri, 'dominfo', name], capture_output=True, check=False).returncode == 0:
            return label
    return None


def cleanup(names, uris):
    for uri in uris:
        for name in names:
            subprocess.run(['virsh', '-q', '-c', uri, 'destroy', name], capture_output=True, check=False)
            subprocess.run(['virsh', '-q', '-c', uri, 'undefine', name], capture_output=True, check=False)


def lab_running():
    return subprocess.run(['bash', LAB, 'status', 'host2'], capture_output=True, check=False).returncode == 0


def bench_single(name, rounds, plays):
    rows = dict(module_wall=[], module_call=[], module_down=[], virsh_wall=[], virsh_down=[], command_wall=[],
                empty_wall=[])
    for _round in range(rounds):
        # kvm_migrate, then back; virsh migrate, then back; virsh migrate from a play, then back
        # (the moves back are not measured); an empty play
        seconds, data = playbook(plays['module'], dict(guest=name))
        result = task_result(data, 'migrate')
        if result.get('failed') or result.get('flags') != MODULE_FLAGS:
            raise RuntimeError('kvm_migrate: %s' % json.dumps(result)[:3000])
        rows['module_wall'].append(seconds)
        rows['module_call'].append(result['elapsed_seconds'])
        rows['module_down'].append(result['progress'].get('downtime_ms'))
        virsh_migrate_to_main(name)
        rows['virsh_wall'].append(virsh_migrate_to_lab(name))
        rows['virsh_down'].append(completed_downtime_ms(LAB_URI, name))
        virsh_migrate_to_main(name)
        seconds, data = playbook(plays['command'], {})
        if task_result(data, 'migrate').get('failed') or where(name) != 'lab':
            raise RuntimeError('virsh migrate from a play: %s' % json.dumps(task_result(data, 'migrate'))[:3000])
        rows['command_wall'].append(seconds)
        virsh_migrate_to_main(name)
        rows['empty_wall'].append(playbook(plays['empty'], {})[0])
    return rows


DRAIN_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: drain
      kvmops.kvm.kvm_migrate_guests:
        uri: %(lab)s
        guests: "{{ guests }}"
        dest_candidates: [%(main)s]
        concurrency: "{{ concurrency }}"
        migrate_uri: %(to_main)s
        listen_address: %(main_addr)s
"""


def _libvirt():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


def threaded(names, concurrency, to_main=True):
    """The floor: migrate ``names`` with ``concurrency`` threads of libvirt-python; returns the wall seconds."""
    import threading
    libvirt = _libvirt()
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    if to_main:
        src_uri, dst_uri = LAB_URI, MAIN_URI
        mparams = {libvirt.VIR_MIGRATE_PARAM_URI: TO_MAIN, libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: MAIN_ADDR}
    else:
        src_uri, dst_uri = MAIN_URI, LAB_URI
        mparams = {libvirt.VIR_MIGRATE_PARAM_URI: TO_LAB}
    queue = list(names)
    lock = threading.Lock()
    errors = []

    def worker():
        src = libvirt.open(src_uri)
        dst = libvirt.open(dst_uri)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    name = queue.pop(0)
                try:
                    src.lookupByName(name).migrate3(dst, mparams, flags)
                except libvirt.libvirtError as exc:
                    errors.append('%s: %s' % (name, exc))
        finally:
            src.close()
            dst.close()
    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _worker in range(min(concurrency, len(names)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - start
    if errors:
        raise RuntimeError('threaded libvirt-python migration failed: %s' % '; '.join(errors))
    return seconds


def all_on(names, label):
    if any(where(n) != label for n in names):
        raise RuntimeError('not every guest is on %s: %s' % (label, dict((n, where(n)) for n in names)))


def bench_drain(names, concurrency, rounds, play):
    rows = dict(task=[], playbook=[], serial=[], floor=[])
    extra = dict(drain_source_uri=LAB_URI, drain_candidates=[MAIN_URI], drain_concurrency=concurrency,
                 drain_live_options=dict(migrate_uri=TO_MAIN, listen_address=MAIN_ADDR))
    others = [line.strip() for line in virsh(LAB_URI, 'list', '--all', '--name')[1].stdout.splitlines()
              if line.strip() and line.strip() not in names]
    extra['drain_exclude'] = others   # never drain anything but this run's guests
    # warm-up, not measured: one round trip of every guest, so that no side pays for the first migrations
    # of freshly started guests (seen: the first drain of a run 20-40% slower than the next ones)
    threaded(names, concurrency, to_main=True)
    threaded(names, concurrency, to_main=False)
    for _round in range(rounds):
        # one kvm_migrate_guests task
        seconds, data = playbook(play, dict(guests=names, concurrency=concurrency))
        result = task_result(data, 'drain')
        if result.get('failed') or sorted(result['summary']['moved']) != sorted(names):
            raise RuntimeError('kvm_migrate_guests: %s' % json.dumps(result.get('summary') or result.get('msg')))
        all_on(names, 'main')
        rows['task'].append(seconds)
        threaded(names, concurrency, to_main=False)
        # drain_host.yml
        seconds, data = playbook(os.path.join(ROOT, 'playbooks', 'drain_host.yml'), extra)
        summary = task_result(data, 'Show the summary')['drain_summary']
        moved = sorted(e['guest'] for e in summary if e['ok'] and e['destination'] == MAIN_URI)
        if moved != sorted(names):
            raise RuntimeError('drain_host.yml did not move every guest: %s' % json.dumps(summary))
        all_on(names, 'main')
        rows['playbook'].append(seconds)
        threaded(names, concurrency, to_main=False)
        # serial virsh loop
        start = time.monotonic()
        for name in names:
            virsh_migrate_to_main(name)
        rows['serial'].append(time.monotonic() - start)
        all_on(names, 'main')
        threaded(names, concurrency, to_main=False)
        # the floor
        rows['floor'].append(threaded(names, concurrency, to_main=True))
        all_on(names, 'main')
        threaded(names, concurrency, to_main=False)
    return rows


def fmt_ms(values):
    values = [v for v in values if v is not None]
    return '%d ms' % statistics.median(values) if values else 'n/a'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3, help='single-guest runs per side (median reported)')
    parser.add_argument('--guests', type=int, default=6, help='guests to drain')
    parser.add_argument('--concurrency', type=int, default=3, help='migrations at a time in the drains')
    parser.add_argument('--drain-rounds', type=int, default=1, help='drain runs per side (median reported)')
    parser.add_argument('--memory', type=int, default=64, help='MiB per guest')
    parser.add_argument('--only', choices=['single', 'drain'], help='run one part only')
    args = parser.parse_args()
    if os.geteuid() != 0:
        print('run as root (the lab needs it)', file=sys.stderr)
        return 2

    started_lab = not lab_running()
    if started_lab:
        timed(['bash', LAB, 'start', 'host2'])
    prefix = 'kvmops-bench-%s' % uuid.uuid4().hex[:8]
    single = prefix + '-one'
    drained = ['%s-d%d' % (prefix, i) for i in range(args.guests)]
    vtype = virt_type()
    argv = ['virsh', '-q', '-c', MAIN_URI, 'migrate'] + VIRSH_FLAGS + [single, LAB_URI, TO_LAB]
    plays = {}
    for key, text in (('module', MIGRATE_PLAY % dict(lab=LAB_URI, to_lab=TO_LAB)),
                      ('command', COMMAND_PLAY % dict(argv=json.dumps(argv))), ('empty', EMPTY_PLAY),
                      ('drain', DRAIN_PLAY % dict(lab=LAB_URI, main=MAIN_URI, to_main=TO_MAIN, main_addr=MAIN_ADDR))):
        with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as play:
            play.write(text)
        plays[key] = play.name
    rows = drain = None
    try:
        if args.only != 'drain':
            define_and_start(MAIN_URI, single, vtype, args.memory)
            rows = bench_single(single, args.rounds, plays)
        if args.only != 'single':
            for name in drained:
                define_and_start(LAB_URI, name, vtype, args.memory)
            drain = bench_drain(drained, args.concurrency, args.drain_rounds, plays['drain'])
    except (RuntimeError, KeyError, ValueError) as exc:
        print('benchmark failed: %s' % exc, file=sys.stderr)
        return 2
    finally:
        cleanup([single] + drained, [MAIN_URI, LAB_URI])
        for path in plays.values():
            os.unlink(path)
        if started_lab:
            subprocess.run(['bash', LAB, 'stop', 'host2'], capture_output=True, check=False)

    met = []
    ratios = []
    if rows is not None:
        med = {k: statistics.median(v) for k, v in rows.items() if k.endswith(('wall', 'call'))}
        single_ratio = med['module_wall'] / med['virsh_wall']
        met.append(single_ratio <= TARGETS['single'])
        print('kvm_migrate vs virsh migrate: one OS-less %d MiB %s guest, main -> lab, flags %s, %d round(s), medians'
              % (args.memory, vtype, ' '.join(VIRSH_FLAGS), args.rounds))
        print('  %-46s %9s %12s' % ('', 'wall', 'downtime'))
        print('  %-46s %8.2fs %12s' % ('kvm_migrate (ansible-playbook, whole process)', med['module_wall'],
                                       fmt_ms(rows['module_down'])))
        print('  %-46s %8.2fs %12s' % ('  of which the migration call (elapsed_seconds)', med['module_call'], ''))
        print('  %-46s %8.2fs %12s' % ('virsh migrate (whole process)', med['virsh_wall'], fmt_ms(rows['virsh_down'])))
        print('  %-46s %8.2fs' % ('virsh migrate run by ansible-playbook (command)', med['command_wall']))
        print('  %-46s %8.2fs' % ('ansible-playbook start-up (an empty play)', med['empty_wall']))
        print('  runs: kvm_migrate %s; virsh %s' % (
            ', '.join('%.2fs' % v for v in rows['module_wall']), ', '.join('%.2fs' % v for v in rows['virsh_wall'])))
        ratios += [('kvm_migrate / virsh migrate (whole processes)', single_ratio, TARGETS['single']),
                   ('  (migration call only / virsh migrate, for reference)', med['module_call'] / med['virsh_wall'], None),
                   ('  (kvm_migrate / virsh migrate from a play, reference)', med['module_wall'] / med['command_wall'],
                    None)]
    if drain is not None:
        med = {k: statistics.median(v) for k, v in drain.items()}
        task_serial = med['task'] / med['serial']
        task_floor = med['task'] / med['floor']
        met += [task_serial <= TARGETS['drain'], task_floor <= TARGETS['floor']]
        print('drain: %d OS-less %d MiB guests lab -> main, %d at a time, %d round(s), medians'
              % (args.guests, args.memory, args.concurrency, args.drain_rounds))
        for key, label in (('task', 'one kvm_migrate_guests task (ansible-playbook)'),
                           ('playbook', 'drain_host.yml (ansible-playbook)'),
                           ('serial', 'serial virsh migrate loop'),
                           ('floor', 'libvirt-python, %d threads, one process' % args.concurrency)):
            print('  %-46s %8.2fs   runs %s' % (label, med[key], ', '.join('%.2fs' % v for v in drain[key])))
        ratios += [('kvm_migrate_guests task / serial virsh loop', task_serial, TARGETS['drain']),
                   ('kvm_migrate_guests task / threaded libvirt-python', task_floor, TARGETS['floor']),
                   ('  (drain_host.yml / serial virsh loop, reference)', med['playbook'] / med['serial'], None),
                   ('  (threaded libvirt-python / serial virsh loop)', med['floor'] / med['serial'], None)]
    print()
    print('%-52s %7s %8s %s' % ('ratio', 'value', 'target', 'met'))
    for label, value, target in ratios:
        if target is None:
            print('%-52s %7.2f' % (label, value))
        else:
            print('%-52s %7.2f %8s %s' % (label, value, '<= %.2f' % target, 'yes' if value <= target else 'NO'))
    return 0 if all(met) else 1


if __name__ == '__main__':
    sys.exit(main())
