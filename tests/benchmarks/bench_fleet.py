"""Benchmark: converge N OS-less guests with one kvmops.kvm.kvm_guests task, side by side with the alternatives.

Not a test (not collected by pytest, not part of `make test`): a script that prints wall times and
ratios in one run. See tests/benchmarks/README.md.

Each side defines, starts and autostarts its own N guests (first converge), then runs again
unchanged (no-op):

* ``kvm_guests``: one task, the N guests in ``guests`` (shared options in ``defaults``);
* ``kvm_domain``: one task looping over the guests (bench_kvm_domain.py's play);
* ``virt``: community.libvirt.virt the way its users write it, three looping tasks (bench_kvm_domain.py's
  play), when community.libvirt is found (``--virt-collections``, see the README);
* ``raw``: the same libvirt work from one Python process (libvirt-python, no Ansible): for the first
  converge defineXML + create + setAutostart per guest, for the no-op lookupByName + XMLDesc + state +
  autostart per guest; the whole process is timed (interpreter start, import, connect), serially and
  with ``--concurrency`` threads.

All sides run under the same ansible-core and Python (the project's .venv). ``--rounds`` (default 3)
repeats everything with fresh guests, rotating which side goes first; the ratios use the medians.

``--scale 10,100,1000`` instead times kvm_guests' no-op on libvirt's test driver (a node file with that
many guests, no daemon, no QEMU), beside one kvm_domain task per guest for the smaller counts, and
prints the time per guest as the count grows.

    .venv/bin/python tests/benchmarks/bench_fleet.py [--guests 10] [--rounds 3] [--virt-collections DIR]
    .venv/bin/python tests/benchmarks/bench_fleet.py --scale 10,100,1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_kvm_domain as bench  # noqa: E402  the plays, the guest XML, the runner and the clean-up

ROOT = bench.ROOT
VENV = os.path.join(ROOT, '.venv')
DEFAULT_VIRT_COLLECTIONS = '/var/tmp/kvmops-bench-collections'
TARGETS = dict(noop_vs_virt=0.10, first_vs_virt=0.40, first_vs_raw=1.2)

KVM_GUESTS_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Converge guests with kvmops.kvm.kvm_guests
      kvmops.kvm.kvm_guests:
        concurrency: %(concurrency)d
        unlisted: ignore
        defaults:
          virt_type: "{{ virt_type }}"
          memory: %(memory)dMiB
          vcpus: 1
          graphics: {type: vnc}
          state: running
          autostart: true
        guests: "{{ fleet }}"
"""

RAW = r'''
import json, sys, threading, time
import libvirt
libvirt.registerErrorHandler(lambda *_: None, None)
args = json.loads(sys.argv[1])
names, xml, threads, mode = args['names'], args['xml'], args['threads'], args['mode']
conns = [libvirt.open(args['uri']) for _ in range(threads)]

def first(conn, name):
    dom = conn.defineXML(xml.replace('@NAME@', name))
    dom.create()
    dom.setAutostart(1)

def noop(conn, name):
    dom = conn.lookupByName(name)
    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.XMLDesc(0)
    dom.state()
    dom.autostart()

work = first if mode == 'first' else noop
if threads == 1:
    for name in names:
        work(conns[0], name)
else:
    chunks = [names[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda c, ns: [work(c, n) for n in ns], args=(conns[i], chunks[i]))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
'''


def env_for(collections):
    env = bench.env_for(VENV)
    paths = [os.path.join(ROOT, '.venv', 'collections')] + ([collections] if collections else [])
    env['ANSIBLE_COLLECTIONS_PATH'] = ':'.join(paths)
    return env


def run_play(path, extra_vars, collections):
    cmd = [os.path.join(VENV, 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path,
           '-e', json.dumps(extra_vars)]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env_for(collections), capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit('playbook %s failed (rc=%d)' % (os.path.basename(path), proc.returncode))
    return elapsed, proc.stdout


def changed_items(stdout, side):
    """Changed guests: loop items reported changed, or kvm_guests' per-guest results (from its -v output)."""
    if side != 'kvm_guests':
        return stdout.count('changed: [localhost]')
    start = stdout.find('{', stdout.find('[localhost]'))
    try:
        result = json.loads(stdout[start:stdout.rfind('}') + 1])
    except ValueError:
        return -1
    return sum(1 for r in result.get('results', []) if r.get('changed'))


def run_raw(names, xml, threads, mode):
    payload = json.dumps(dict(names=names, xml=xml, threads=threads, mode=mode, uri=bench.URI))
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV, 'bin', 'python'), '-c', RAW, payload], capture_output=True, text=True,
                          check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit('raw libvirt run failed: %s' % proc.stderr[-2000:])
    return elapsed


def raw_xml(memory, virt_type):
    """bench_kvm_domain's community.libvirt template, as plain XML with a name placeholder."""
    return bench.GUEST_XML.format(memory=memory).replace('{{ virt_type }}', virt_type).replace('{{ item }}', '@NAME@')


SCALE_GUEST = """  <domain type='test'>
    <name>fleet-%(index)04d</name>
    <memory unit='MiB'>64</memory>
    <currentMemory unit='MiB'>64</currentMemory>
    <vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/><memballoon model='virtio'/></devices>
  </domain>
"""

SCALE_FLEET_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: kvm_guests no-op on the test driver
      kvmops.kvm.kvm_guests:
        uri: "{{ uri }}"
        concurrency: %(concurrency)d
        defaults: {memory: 64MiB, vcpus: 1}
        guests: "{{ fleet }}"
"""

SCALE_DOMAIN_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: kvm_domain no-op on the test driver, one task per guest
      kvmops.kvm.kvm_domain:
        uri: "{{ uri }}"
        name: "{{ item }}"
        memory: 64MiB
        vcpus: 1
      loop: "{{ guests }}"
"""


def scale(counts, concurrency, loop_limit):
    """kvm_guests' no-op over 10, 100, 1,000 test-driver guests: seconds in all and per guest."""
    work = tempfile.mkdtemp(prefix='kvmops-bench-fleet-scale-')
    plays = {}
    for key, text in (('fleet', SCALE_FLEET_PLAY % dict(concurrency=concurrency)), ('domain', SCALE_DOMAIN_PLAY),
                      ('empty', bench.EMPTY_PLAY)):
        plays[key] = os.path.join(work, key + '.yml')
        with open(plays[key], 'w') as handle:
            handle.write(text)
    empty = statistics.median(run_play(plays['empty'], {}, None)[0] for _round in range(3))
    print("libvirt test driver (no daemon, no QEMU); kvm_guests concurrency %d; an empty play %.2f s" % (concurrency, empty))
    print('%8s %14s %16s %18s %20s' % ('guests', 'kvm_guests (s)', 'per guest (ms)', 'kvm_domain loop (s)',
                                       'per guest (ms)'))
    for count in counts:
        node = os.path.join(work, 'node-%d.xml' % count)
        with open(node, 'w') as handle:
            handle.write('<node>\n%s</node>\n' % ''.join(SCALE_GUEST % dict(index=i) for i in range(count)))
        names = ['fleet-%04d' % i for i in range(count)]
        uri = 'test://' + node
        elapsed, out = run_play_verbose(plays['fleet'], dict(uri=uri, fleet=[dict(name=n) for n in names]), None)
        changed = changed_items(out, 'kvm_guests')
        line = '%8d %14.2f %16.1f' % (count, elapsed, 1000.0 * (elapsed - empty) / count)
        if count <= loop_limit:
            loop = run_play(plays['domain'], dict(uri=uri, guests=names), None)[0]
            line += ' %18.2f %20.1f' % (loop, 1000.0 * (loop - empty) / count)
        print(line + ('   changed guests: %d' % changed))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--guests', type=int, default=10)
    parser.add_argument('--memory', type=int, default=128, help='MiB per guest')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--concurrency', type=int, default=4, help="kvm_guests' concurrency and the raw threads")
    parser.add_argument('--virt-collections', default=DEFAULT_VIRT_COLLECTIONS,
                        help='a collections path holding community.libvirt (empty: skip the virt side)')
    parser.add_argument('--scale', help='comma-separated guest counts: the test-driver scale run only')
    parser.add_argument('--scale-loop-limit', type=int, default=100,
                        help='largest count also timed as one kvm_domain task per guest')
    args = parser.parse_args()
    if args.scale:
        return scale([int(c) for c in args.scale.split(',')], args.concurrency, args.scale_loop_limit)

    virt_dir = args.virt_collections
    if virt_dir and not os.path.isdir(os.path.join(virt_dir, 'ansible_collections', 'community', 'libvirt')):
        print('no community.libvirt under %s: the virt side is skipped (see tests/benchmarks/README.md)' % virt_dir)
        virt_dir = None
    virt_type = bench.preferred_virt_type()
    work = tempfile.mkdtemp(prefix='kvmops-bench-fleet-')
    template = os.path.join(work, 'guest.xml.j2')
    with open(template, 'w') as handle:
        handle.write(bench.GUEST_XML.format(memory=args.memory))
    texts = dict(kvm_guests=KVM_GUESTS_PLAY % dict(memory=args.memory, concurrency=args.concurrency),
                 kvm_domain=bench.KVM_DOMAIN_PLAY % dict(memory=args.memory),
                 virt=bench.VIRT_PLAY % dict(template=template), empty=bench.EMPTY_PLAY)
    plays = {}
    for key, text in texts.items():
        plays[key] = os.path.join(work, key + '.yml')
        with open(plays[key], 'w') as handle:
            handle.write(text)
    sides = ['kvm_guests', 'kvm_domain'] + (['virt'] if virt_dir else []) + ['raw', 'raw_threads']
    xml = raw_xml(args.memory, virt_type)

    rounds = []
    for number in range(args.rounds):
        tag = uuid.uuid4().hex[:6]
        order = sides[number % len(sides):] + sides[:number % len(sides)]
        results = {}
        for side in order:
            names = ['kvmops-bench-%s-%s%02d' % (tag, side[0] + side[-1], i) for i in range(args.guests)]
            try:
                if side.startswith('raw'):
                    threads = args.concurrency if side == 'raw_threads' else 1
                    results[side] = dict(first=(run_raw(names, xml, threads, 'first'), args.guests),
                                         noop=(run_raw(names, xml, threads, 'noop'), 0))
                    continue
                extra = dict(guests=names, fleet=[dict(name=name) for name in names], virt_type=virt_type)
                verbose = side == 'kvm_guests'
                runs = {}
                for run in ('first', 'noop'):
                    path = plays[side]
                    if verbose:   # the task's result on stdout (-v) tells the changed guests
                        elapsed, out = run_play_verbose(path, extra, virt_dir)
                    else:
                        elapsed, out = run_play(path, extra, virt_dir)
                    runs[run] = (elapsed, changed_items(out, side))
                results[side] = runs
            finally:
                bench.cleanup(names)
        rounds.append(results)
    empty = statistics.median(run_play(plays['empty'], {}, virt_dir)[0] for _round in range(3))

    def median(side, run):
        return statistics.median(r[side][run][0] for r in rounds)

    labels = dict(kvm_guests='kvmops.kvm.kvm_guests (1 task)', kvm_domain='kvmops.kvm.kvm_domain (1 task, loop)',
                  virt='community.libvirt.virt (3 tasks)', raw='libvirt-python, 1 process, serial',
                  raw_threads='libvirt-python, 1 process, %d threads' % args.concurrency)
    print('guests: %d (%s, %d MiB, OS-less), %d round(s), medians; kvm_guests concurrency %d; %d cores'
          % (args.guests, virt_type, args.memory, args.rounds, args.concurrency, os.cpu_count()))
    print('%-40s %10s %10s   %s' % ('', 'first (s)', 'no-op (s)', 'changed guests first / no-op (last round)'))
    for side in sides:
        last = rounds[-1][side]
        counts = '' if side.startswith('raw') else '%d / %d' % (last['first'][1], last['noop'][1])
        print('%-40s %10.2f %10.2f   %s' % (labels[side], median(side, 'first'), median(side, 'noop'), counts))
    print('%-40s %10.2f' % ('an empty play (ansible-playbook start-up)', empty))
    print()
    print('%-40s %10s %10s' % ('kvm_guests / ...', 'first', 'no-op'))
    for side in sides[1:]:
        print('%-40s %9.2fx %9.2fx' % (labels[side], median('kvm_guests', 'first') / median(side, 'first'),
                                       median('kvm_guests', 'noop') / median(side, 'noop')))
    for run in ('first', 'noop'):
        for side in sides[1:]:
            print('per round %-5s kvm_guests / %-12s %s' % (run, side, ', '.join(
                '%.2f' % (r['kvm_guests'][run][0] / r[side][run][0]) for r in rounds)))
    raw_floor = min(median('raw', 'first'), median('raw_threads', 'first'))
    print('kvm_guests minus the empty play: first %.2f s, no-op %.2f s (the module run and its task)'
          % (median('kvm_guests', 'first') - empty, median('kvm_guests', 'noop') - empty))
    checks = []
    if virt_dir:
        checks.append(('no-op vs virt', median('kvm_guests', 'noop') / median('virt', 'noop'), TARGETS['noop_vs_virt']))
        checks.append(('first vs virt', median('kvm_guests', 'first') / median('virt', 'first'), TARGETS['first_vs_virt']))
    checks.append(('first vs raw libvirt (faster of serial/threads)', median('kvm_guests', 'first') / raw_floor,
                   TARGETS['first_vs_raw']))
    ok = True
    for what, ratio, target in checks:
        passed = ratio <= target
        ok = ok and passed
        print('target %-48s %.2fx (<= %.2fx: %s)' % (what, ratio, target, 'met' if passed else 'MISSED'))
    noop_changed = max(r['kvm_guests']['noop'][1] for r in rounds)
    print('kvm_guests no-op changed guests: %d (target 0: %s)' % (noop_changed, 'met' if noop_changed == 0 else 'MISSED'))
    return 0 if ok and noop_changed == 0 else 1


def run_play_verbose(path, extra_vars, collections):
    """run_play with -v and the json-ish default output of the task's result."""
    cmd = [os.path.join(VENV, 'bin', 'ansible-playbook'), '-v', '-i', 'localhost,', '-c', 'local', path,
           '-e', json.dumps(extra_vars)]
    env = env_for(collections)
    env['ANSIBLE_CALLBACK_RESULT_FORMAT'] = 'json'
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit('playbook %s failed (rc=%d)' % (os.path.basename(path), proc.returncode))
    return elapsed, proc.stdout


if __name__ == '__main__':
    sys.exit(main())
