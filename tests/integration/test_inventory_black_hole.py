"""The libvirt inventory with a black-holed hypervisor finishes within its timeout plus a second.

The black hole is a network namespace created here, joined by a veth pair, whose address drops every packet
with an iptables DROP rule inside the namespace: a TCP connect to it gets neither an answer nor a refusal
(TCP alone would keep retrying its SYN for about two minutes). Beside it, three test-driver hypervisors with
guests. test_inventory.py covers the same through ansible-inventory with a looser bound (its start-up
included); here the plugin's gather step is timed alone, with a 2 s timeout, and the whole ansible-inventory
run is compared with the same run without the black hole.
"""

import json
import os
import socket
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, _env
from ansible_collections.kvmops.kvm.plugins.module_utils._inventory import gather

TIMEOUT = 2.0
GUEST = """<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>"""


def _ip(*args, **kwargs):
    return subprocess.run(['ip'] + list(args), check=kwargs.get('check', True), capture_output=True, text=True)


@pytest.fixture
def black_hole():
    tag = uuid.uuid4().hex[:6]
    netns, here, there = 'kvmops-bhi-' + tag, 'kbi%sa' % tag, 'kbi%sb' % tag
    try:
        _ip('netns', 'add', netns)
        _ip('link', 'add', here, 'type', 'veth', 'peer', 'name', there, 'netns', netns)
        _ip('addr', 'add', '10.254.98.1/30', 'dev', here)
        _ip('link', 'set', here, 'up')
        _ip('-n', netns, 'addr', 'add', '10.254.98.2/30', 'dev', there)
        _ip('-n', netns, 'link', 'set', there, 'up')
        subprocess.run(['ip', 'netns', 'exec', netns, 'iptables', '-A', 'INPUT', '-j', 'DROP'], check=True,
                       capture_output=True)
        yield '10.254.98.2'
    finally:
        _ip('link', 'del', here, check=False)
        _ip('netns', 'del', netns, check=False)


@pytest.fixture
def hypervisors(tmp_path):
    """Three test-driver URIs with two guests each: name -> URI."""
    out = {}
    for node in range(3):
        names = ['bh-%d-%d' % (node, i) for i in range(2)]
        path = tmp_path / ('node%d.xml' % node)
        path.write_text('<node>%s</node>' % ''.join(GUEST % n for n in names))
        out.update((n, 'test://%s' % path) for n in names)
    return out


def inventory(tmp_path, uris, name):
    path = tmp_path / ('%s.libvirt.yml' % name)
    path.write_text('plugin: kvmops.kvm.libvirt\nuris: %s\ntimeout: %g\n' % (json.dumps(uris), TIMEOUT))
    started = time.monotonic()
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-inventory'), '-i', str(path), '--list'],
                          env=_env({'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}), capture_output=True,
                          text=True, timeout=300, check=False)
    return time.monotonic() - started, proc


def test_a_black_holed_hypervisor_costs_its_timeout_plus_at_most_a_second(black_hole, hypervisors, tmp_path):
    probe = socket.socket()
    probe.settimeout(1)
    try:
        with pytest.raises(socket.timeout):       # really black-holed: no answer, no refusal
            probe.connect((black_hole, 16509))
    finally:
        probe.close()
    silent = 'qemu+tcp://%s/system' % black_hole
    good = sorted(set(hypervisors.values()))
    started = time.monotonic()
    data = gather([silent] + good, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert elapsed <= TIMEOUT + 1, 'the gather step took %.2f s with timeout %g s' % (elapsed, TIMEOUT)
    assert data['errors'] == [dict(uri=silent, msg='no answer from libvirt at %s within 2 seconds (timeout)' % silent)]
    assert sorted(g['name'] for h in data['hypervisors'] for g in h['guests']) == sorted(hypervisors)

    with_hole, proc = inventory(tmp_path, [silent] + good, 'hole')
    without, clean = inventory(tmp_path, good, 'clean')
    assert proc.returncode == 0 and clean.returncode == 0, proc.stderr + clean.stderr
    assert 'skipping %s: no answer from libvirt at %s within 2 seconds' % (silent, silent) in ' '.join(proc.stderr.split())
    listed = json.loads(proc.stdout)['_meta']['hostvars']
    assert sorted(h for h in listed if h.startswith('bh-')) == sorted(hypervisors)
    # the whole ansible-inventory run: the black hole costs its timeout, plus a margin for a loaded machine
    assert with_hole - without <= TIMEOUT + 2, (with_hole, without)
