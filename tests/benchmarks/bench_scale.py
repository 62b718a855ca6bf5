"""Benchmark: kvm_info, kvm_guests' no-op and the libvirt inventory plugin as the guest count grows, on libvirt's test driver.

Not a test (not collected by pytest, not part of `make test`): a script that prints wall times and the time
per guest in one run. See tests/benchmarks/README.md.

For each count (default 10, 100, 1,000) it writes libvirt test-driver state files (no daemon, no QEMU):

* one node file with all the guests, for ``kvm_info`` (one task, ``gather: [domains]``) and ``kvm_guests``' no-op
  (one task naming every guest, bench_fleet.py --scale's play);
* ``--uris`` (default 50) node files sharing the same guests round-robin, ``test:///.../nodeNN.xml``, for the
  inventory plugin (``kvmops.kvm.libvirt``): ``ansible-inventory --list`` over the 50 URIs, and the plugin's
  gather step alone in this process (the same code, no ansible-inventory start-up).

Each Ansible side is timed as a whole process (the median of ``--rounds``, default 3); an empty play (ansible-playbook's start-up) and an
``ansible-inventory --list`` of a static inventory are timed too and taken off for the per-guest figures.
Every run checks its answer: kvm_info reports every guest, kvm_guests changes none, the inventory lists
every guest. The time per added guest between two counts is printed too (the start-up cancels out).

Then the black hole: a network namespace created here, joined by a veth pair, whose address drops every
packet (an iptables DROP rule inside the namespace; TCP SYNs go out, nothing answers or refuses). The
inventory over the 50 URIs plus ``qemu+tcp://<that address>/system``, with ``timeout: --timeout`` (2 s),
must finish within the timeout plus one second (the gather step in-process; ansible-inventory's whole run,
the median of the rounds, is shown beside the same run without the black hole), warn about that URI, and list every other guest.
The namespace and the veth are removed at the end, also on failure. Needs root for the namespace
(``--no-black-hole`` skips it).

    .venv/bin/python tests/benchmarks/bench_scale.py [--counts 10,100,1000] [--uris 50] [--timeout 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_fleet as fleet  # noqa: E402  the runners, the test-driver guest and kvm_guests' scale play

ROOT = fleet.ROOT
VENV = fleet.VENV
sys.path.insert(0, os.path.join(VENV, 'collections'))

KVM_INFO_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: kvm_info on the test driver
      kvmops.kvm.kvm_info:
        uri: "{{ uri }}"
        gather: [domains]
      register: info

    - name: Every guest is reported
      ansible.builtin.assert:
        that: info.domains | length == count | int
        quiet: true
"""

INVENTORY_CONFIG = """\
plugin: kvmops.kvm.libvirt
uris: %(uris)s
timeout: %(timeout)s
"""


def node_files(work, count, nodes):
    """One file with ``count`` guests, and ``nodes`` files sharing them round-robin; returns (one, [many])."""
    guests = [fleet.SCALE_GUEST % dict(index=i) for i in range(count)]
    one = os.path.join(work, 'all-%d.xml' % count)
    with open(one, 'w') as handle:
        handle.write('<node>\n%s</node>\n' % ''.join(guests))
    many = []
    for node in range(nodes):
        path = os.path.join(work, 'n%d-node%02d.xml' % (count, node))
        with open(path, 'w') as handle:
            handle.write('<node>\n%s</node>\n' % ''.join(guests[node::nodes]))
        many.append(path)
    return one, many


def inventory_env():
    env = fleet.env_for(None)
    env['ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED'] = 'true'
    return env


def run_inventory(source):
    """ansible-inventory --list of ``source``: (seconds, the parsed output, stderr)."""
    cmd = [os.path.join(VENV, 'bin', 'ansible-inventory'), '-i', source, '--list']
    start = time.monotonic()
    proc = subprocess.run(cmd, env=inventory_env(), capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        raise SystemExit('ansible-inventory -i %s failed (rc=%d)' % (source, proc.returncode))
    return elapsed, json.loads(proc.stdout), proc.stderr


def guests_listed(data):
    return sorted(h for h in data.get('_meta', {}).get('hostvars', {}) if h.startswith('fleet-'))


def write_config(work, name, uris, timeout):
    path = os.path.join(work, name + '.libvirt.yml')
    with open(path, 'w') as handle:
        handle.write(INVENTORY_CONFIG % dict(uris=json.dumps(uris), timeout=timeout))
    return path


def gather_in_process(uris, timeout):
    """The plugin's gather step (concurrent, one connection per URI), timed in this process."""
    from ansible_collections.kvmops.kvm.plugins.module_utils._inventory import gather
    start = time.monotonic()
    data = gather(uris, timeout=timeout)
    elapsed = time.monotonic() - start
    return elapsed, data


# ------------------------------------------------------------------ the black hole
class BlackHole(object):
    """A veth into a namespace of our own whose address drops every packet (iptables DROP in the namespace)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.netns = 'kvmops-bhs-' + tag
        self.here = 'kbs%sa' % tag
        self.there = 'kbs%sb' % tag
        self.net = '10.254.97'
        self.address = self.net + '.2'

    @staticmethod
    def _ip(*args, **kwargs):
        return subprocess.run(['ip'] + list(args), check=kwargs.get('check', True), capture_output=True, text=True)

    def __enter__(self):
        try:
            self._ip('netns', 'add', self.netns)
            self._ip('link', 'add', self.here, 'type', 'veth', 'peer', 'name', self.there, 'netns', self.netns)
            self._ip('addr', 'add', self.net + '.1/30', 'dev', self.here)
            self._ip('link', 'set', self.here, 'up')
            self._ip('-n', self.netns, 'addr', 'add', self.address + '/30', 'dev', self.there)
            self._ip('-n', self.netns, 'link', 'set', self.there, 'up')
            subprocess.run(['ip', 'netns', 'exec', self.netns, 'iptables', '-A', 'INPUT', '-j', 'DROP'], check=True,
                           capture_output=True)
        except (subprocess.CalledProcessError, OSError):
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self._ip('link', 'del', self.here, check=False)
        self._ip('netns', 'del', self.netns, check=False)

    def probe(self, port=16509, wait=1.0):
        """True when a TCP connect gets no answer at all within ``wait`` (neither accepted nor refused)."""
        sock = socket.socket()
        sock.settimeout(wait)
        try:
            sock.connect((self.address, port))
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            sock.close()
        return False


# ------------------------------------------------------------------ main
def main():
    work = tempfile.mkdtemp(prefix='kvmops-bench-scale-')
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--counts', default='10,100,1000', help='comma-separated guest counts')
    parser.add_argument('--uris', type=int, default=50, help='test-driver URIs for the inventory')
    parser.add_argument('--timeout', type=float, default=2.0, help="the inventory's per-URI timeout (black hole)")
    parser.add_argument('--concurrency', type=int, default=4, help="kvm_guests' concurrency")
    parser.add_argument('--no-black-hole', action='store_true', help='skip the black-holed URI (needs root)')
    parser.add_argument('--rounds', type=int, default=3, help='runs of each measurement (the median is shown)')
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(',')]
    plays = {}
    for key, text in (('info', KVM_INFO_PLAY), ('fleet', fleet.SCALE_FLEET_PLAY % dict(concurrency=args.concurrency)),
                      ('empty', fleet.bench.EMPTY_PLAY)):
        plays[key] = os.path.join(work, key + '.yml')
        with open(plays[key], 'w') as handle:
            handle.write(text)
    print('load average at the start: %s' % ' '.join('%.2f' % v for v in os.getloadavg()))
    # warm up (first runs fill the page cache and compile the bytecode), then the start-up costs
    fleet.run_play(plays['empty'], {}, None)
    run_inventory('localhost,')
    empty = statistics.median(fleet.run_play(plays['empty'], {}, None)[0] for _round in range(max(3, args.rounds)))
    static = statistics.median(run_inventory('localhost,')[0] for _round in range(max(3, args.rounds)))
    print('libvirt test driver (no daemon, no QEMU); an empty play %.2f s; ansible-inventory of a static '
          'inventory %.2f s; %d URIs for the inventory' % (empty, static, args.uris))
    header = ('guests', 'kvm_info (s)', 'ms/guest', 'kvm_guests no-op (s)', 'ms/guest', 'inventory (s)', 'ms/guest',
              'gather (s)', 'ms/guest')
    print('%7s | %12s %9s | %20s %9s | %13s %9s | %10s %9s' % header)
    biggest = None
    totals = {}
    for count in counts:
        one, many = node_files(work, count, args.uris)
        uri = 'test://' + one
        uris = ['test://' + path for path in many]
        names = [dict(name='fleet-%04d' % i) for i in range(count)]
        config = write_config(work, 'scale-%d' % count, uris, 30)
        times = dict(info=[], noop=[], inv=[], gather=[])
        for _round in range(args.rounds):
            times['info'].append(fleet.run_play(plays['info'], dict(uri=uri, count=count), None)[0])
            noop, out = fleet.run_play_verbose(plays['fleet'], dict(uri=uri, fleet=names), None)
            times['noop'].append(noop)
            changed = fleet.changed_items(out, 'kvm_guests')
            inv, data, _stderr = run_inventory(config)
            times['inv'].append(inv)
            listed = len(guests_listed(data))
            gathered, gdata = gather_in_process(uris, 30)
            times['gather'].append(gathered)
            ggot = sum(len(h['guests']) for h in gdata['hypervisors'])
        info, noop, inv, gathered = (statistics.median(times[k]) for k in ('info', 'noop', 'inv', 'gather'))
        totals[count] = (info, noop, inv, gathered)
        print('%7d | %12.2f %9.1f | %20.2f %9.1f | %13.2f %9.1f | %10.2f %9.2f   changed %d, listed %d, gathered %d%s'
              % (count, info, 1000 * (info - empty) / count, noop, 1000 * (noop - empty) / count,
                 inv, 1000 * (inv - static) / count, gathered, 1000 * gathered / count, changed, listed, ggot,
                 '' if changed == 0 and listed == count and ggot == count and not gdata['errors'] else '   MISMATCH'))
        biggest = (count, uris, inv)
    ordered = sorted(totals)
    for low, high in zip(ordered, ordered[1:]):
        added = float(high - low)
        marginal = tuple(1000 * (totals[high][i] - totals[low][i]) / added for i in range(4))
        print('from %d to %d guests, per added guest (ms): kvm_info %.2f, kvm_guests no-op %.2f, inventory %.2f, '
              'gather step %.2f' % ((low, high) + marginal))
    print('load average after the scale runs: %s' % ' '.join('%.2f' % v for v in os.getloadavg()))
    if args.no_black_hole:
        return 0
    count, uris, clean = biggest
    status = 0
    with BlackHole() as hole:
        silent = 'qemu+tcp://%s/system' % hole.address
        print('black hole: %s (namespace %s drops every packet; a TCP connect gets no answer: %s)'
              % (silent, hole.netns, hole.probe()))
        elapsed, gdata = gather_in_process(uris + [silent], args.timeout)
        ggot = sum(len(h['guests']) for h in gdata['hypervisors'])
        errors = [e['msg'] for e in gdata['errors']]
        within = elapsed <= args.timeout + 1
        print('  gather step, %d URIs + the black hole, timeout %g s: %.2f s (timeout + 1 s = %.1f s: %s); '
              '%d guests gathered; errors: %s'
              % (len(uris), args.timeout, elapsed, args.timeout + 1, 'met' if within else 'MISSED', ggot, errors))
        config = write_config(work, 'black-hole', uris + [silent], args.timeout)
        config_clean = write_config(work, 'no-black-hole', uris, args.timeout)
        with_hole, without = [], []
        for _round in range(args.rounds):
            elapsed_hole, data, stderr = run_inventory(config)
            with_hole.append(elapsed_hole)
            without.append(run_inventory(config_clean)[0])
        with_hole, without = statistics.median(with_hole), statistics.median(without)
        warned = 'no answer from libvirt at %s within %g seconds' % (silent, args.timeout) in ' '.join(stderr.split())
        listed = len(guests_listed(data))
        print('  ansible-inventory --list, timeout %g s: %.2f s with the black hole, %.2f s without (+%.2f s); '
              'warning shown: %s; %d of %d guests listed'
              % (args.timeout, with_hole, without, with_hole - without, warned, listed, count))
        if not (within and warned and listed == count and ggot == count):
            status = 1
    print('load average at the end: %s' % ' '.join('%.2f' % v for v in os.getloadavg()))
    return status


if __name__ == '__main__':
    sys.exit(main())
