"""Benchmark: converge N guests with kvmops.kvm.kvm_domain vs community.libvirt.virt.

Not a test (not collected by pytest, not part of `make test`): a script that prints
wall times and ratios. See tests/benchmarks/README.md.

Both sides run under the same ansible-core and the same Python, from a separate
virtualenv holding the `ansible` community package (which bundles community.libvirt),
against the local libvirtd. Each side converges its own N guests (define + start +
autostart), then re-runs the identical playbook (the no-op run). All guests are
OS-less (no disk), so only the management overhead is measured.

    .venv/bin/python tests/benchmarks/bench_kvm_domain.py [--guests 10] [--venv /var/lib/kvmops-bench/venv]
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
import textwrap
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_VENV = '/var/lib/kvmops-bench/venv'
URI = 'qemu:///system'

TARGETS = dict(first=0.6, noop=0.4)

GUEST_XML = textwrap.dedent("""\
    <domain type='{{{{ virt_type }}}}'>
      <name>{{{{ item }}}}</name>
      <memory unit='MiB'>{memory}</memory>
      <currentMemory unit='MiB'>{memory}</currentMemory>
      <vcpu placement='static'>1</vcpu>
      <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
      <features><acpi/><apic/></features>
      <clock offset='utc'/>
      <on_poweroff>destroy</on_poweroff>
      <on_reboot>restart</on_reboot>
      <on_crash>destroy</on_crash>
      <devices>
        <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
          <listen type='address' address='127.0.0.1'/>
        </graphics>
        <serial type='pty'><target port='0'/></serial>
        <memballoon model='virtio'/>
      </devices>
    </domain>
""")

KVM_DOMAIN_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Converge guests with kvmops.kvm.kvm_domain
      kvmops.kvm.kvm_domain:
        name: "{{ item }}"
        virt_type: "{{ virt_type }}"
        memory: %(memory)dMiB
        vcpus: 1
        graphics: {type: vnc}
        state: running
        autostart: true
      loop: "{{ guests }}"
"""

# The way community.libvirt's users write it: define from XML, then state, then autostart.
VIRT_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Define guests
      community.libvirt.virt:
        command: define
        xml: "{{ lookup('template', '%(template)s') }}"
      loop: "{{ guests }}"
    - name: Start guests
      community.libvirt.virt:
        name: "{{ item }}"
        state: running
      loop: "{{ guests }}"
    - name: Autostart guests
      community.libvirt.virt:
        name: "{{ item }}"
        autostart: true
      loop: "{{ guests }}"
"""

PING_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping per item (the floor of one-task-per-item designs)
      ansible.builtin.ping:
      loop: "{{ range(%(items)d) | list }}"
"""

EMPTY_PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks: []
"""


def env_for(venv):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.venv', 'collections'),
        ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
        ANSIBLE_STDOUT_CALLBACK='default',
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_RETRY_FILES_ENABLED='0',
        ANSIBLE_PYTHON_INTERPRETER=os.path.join(venv, 'bin', 'python'),
        ANSIBLE_LOCALHOST_WARNING='0',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
        LIBVIRT_DEFAULT_URI=URI,
    )
    return env


def run_play(venv, path, extra_vars):
    cmd = [os.path.join(venv, 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path,  # noqa
           '-e', json.dumps(extra_vars)]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env_for(venv), capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit('playbook %s failed (rc=%d)' % (os.path.basename(path), proc.returncode))
    changed = len(re.findall(r'^changed: \[localhost\]', proc.stdout, re.M))
    return elapsed, changed


def preferred_virt_type():
    """kvm when libvirt offers it (an OS-less guest runs there), else qemu."""
    import libvirt
    conn = libvirt.open(URI)
    try:
        conn.getDomainCapabilities(None, 'x86_64', None, 'kvm', 0)
        return 'kvm'
    except libvirt.libvirtError:
        return 'qemu'
    finally:
        conn.close()


def cleanup(names):
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(URI)
    try:
        for name in names:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                dom.setAutostart(0)
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError as exc:
                sys.stderr.write('cleanup %s: %s\n' % (name, exc))
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--guests', type=int, default=10)
    parser.add_argument('--memory', type=int, default=128, help='MiB per guest')
    parser.add_argument('--venv', default=DEFAULT_VENV,
                        help='virtualenv with the ansible package (community.libvirt), libvirt-python and lxml')
    parser.add_argument('--no-floor', action='store_true', help='skip the ansible.builtin.ping reference run')
    parser.add_argument('--rounds', type=int, default=3,
                        help='rounds (fresh guests each, sides alternating first); the ratios use the medians')
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.venv, 'bin', 'ansible-playbook')):
        raise SystemExit('no ansible-playbook in %s: see tests/benchmarks/README.md' % args.venv)

    virt_type = preferred_virt_type()
    work = tempfile.mkdtemp(prefix='kvmops-bench-')
    template = os.path.join(work, 'guest.xml.j2')
    with open(template, 'w') as handle:
        handle.write(GUEST_XML.format(memory=args.memory))
    plays = {}
    for key, text in (('kvm_domain', KVM_DOMAIN_PLAY % dict(memory=args.memory)),
                      ('virt', VIRT_PLAY % dict(template=template)),
                      ('ping', PING_PLAY % dict(items=3 * args.guests)), ('empty', EMPTY_PLAY)):
        plays[key] = os.path.join(work, key + '.yml')
        with open(plays[key], 'w') as handle:
            handle.write(text)

    rounds = []   # per round: {side: {'first': (seconds, changed), 'noop': (seconds, changed)}}
    for number in range(args.rounds):
        tag = uuid.uuid4().hex[:6]
        names = dict(kvm_domain=['kvmops-bench-%s-k%02d' % (tag, i) for i in range(args.guests)],
                     virt=['kvmops-bench-%s-v%02d' % (tag, i) for i in range(args.guests)])
        order = ('kvm_domain', 'virt') if number % 2 == 0 else ('virt', 'kvm_domain')
        results = {}
        try:
            for side in order:
                extra = dict(guests=names[side], virt_type=virt_type)
                results[side] = dict(first=run_play(args.venv, plays[side], extra),
                                     noop=run_play(args.venv, plays[side], extra))
        finally:
            cleanup(names['kvm_domain'] + names['virt'])
        rounds.append(results)
    floor = None if args.no_floor else run_play(args.venv, plays['ping'], {})
    empty = statistics.median(run_play(args.venv, plays['empty'], {})[0] for _round in range(3))

    def median(side, run):
        return statistics.median(r[side][run][0] for r in rounds)

    print('guests: %d (%s, %d MiB, OS-less), %d round(s), medians; ansible venv: %s'
          % (args.guests, virt_type, args.memory, args.rounds, args.venv))
    print('%-34s %10s %10s' % ('', 'first (s)', 'no-op (s)'))
    for side, label in (('kvm_domain', 'kvmops.kvm.kvm_domain (1 task)'),
                        ('virt', 'community.libvirt.virt (3 tasks)')):
        print('%-34s %10.1f %10.1f   changed items (last round): %d / %d' % (
            label, median(side, 'first'), median(side, 'noop'),
            rounds[-1][side]['first'][1], rounds[-1][side]['noop'][1]))
    if floor is not None:
        print('%-34s %10.1f' % ('ansible.builtin.ping x %d items' % (3 * args.guests), floor[0]))
    print('%-34s %10.1f' % ('an empty play (start-up)', empty))
    # What one loop item costs on each side once the start-up is taken off, and what the no-op
    # target asks of one kvm_domain item: the floor of a one-task-per-item design.
    per_item = dict(kvm_domain=(median('kvm_domain', 'noop') - empty) / args.guests,
                    virt=(median('virt', 'noop') - empty) / (3 * args.guests))
    needed = (TARGETS['noop'] * median('virt', 'noop') - empty) / args.guests
    item_ratio = per_item['kvm_domain'] / per_item['virt']
    values = (per_item['kvm_domain'], per_item['virt'], item_ratio, needed, needed / per_item['virt'])
    print('no-op per loop item: kvm_domain %.3f s, virt %.3f s (%.2fx); the target needs a kvm_domain item '
          '<= %.3f s (%.2fx a virt item)' % values)
    for run in ('first', 'noop'):
        print('per round %-6s kvm_domain / virt: %s' % (run, ', '.join(
            '%.2f' % (r['kvm_domain'][run][0] / r['virt'][run][0]) for r in rounds)))
    ok = True
    for run in ('first', 'noop'):
        ratio = median('kvm_domain', run) / median('virt', run)
        passed = ratio <= TARGETS[run]
        ok = ok and passed
        verdict = 'met' if passed else 'MISSED'
        print('ratio %-6s kvm_domain / virt = %.2f  (target <= %.1f: %s)' % (run, ratio, TARGETS[run], verdict))
    noop_changed = max(r['kvm_domain']['noop'][1] for r in rounds)
    print('kvm_domain no-op changed items: %d (target 0: %s)' % (noop_changed, 'met' if noop_changed == 0 else 'MISSED'))
    ok = ok and noop_changed == 0
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
