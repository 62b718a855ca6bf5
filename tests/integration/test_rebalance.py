"""kvm_migrate_guests mode rebalance and playbooks/rebalance.yml over two real hypervisors (private lab hosts).

A private lab instance (tests/lab/lab.sh host2 and host3, own names and addresses; nothing else runs there)
shares /var/lib/libvirt/images with the main host. Five OS-less KVM guests of different memory all run on
host2; one of them has a disk in a directory that only host2 holds in a storage pool, so it may never go to
host3. A poller reads every guest's state on both hosts throughout (zero moments with a guest running nowhere).
Free memory for guests is read back from libvirt here: each host's memory less the maximum memory of the guests
running there.
"""

import json
import os
import shutil
import subprocess
import uuid

import pytest

import test_runner
from conftest import ROOT, _env, osless_virt_type, remove_guest, run_playbook
from lab_instance import private_lab
from test_rolling_maintenance import Poller, where_now

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'rebalance.yml')
IMAGES = '/var/lib/libvirt/images'
MIB = 1024 * 1024
# name suffix -> MiB; 'disk' has a disk only host2 sees (the best first move were it allowed: 320 x (960 - 320))
SIZES = dict(disk=320, g256=256, g192=192, g128=128, g64=64)

GUEST = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{disk}<serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""

DISK = """<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='{path}'/><target dev='vdb' bus='virtio'/></disk>"""


def _libvirt():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


@pytest.fixture(scope='module')
def lab():
    with private_lab('kvmrb', '10.254.81', '/var/lib/kvmops-lab-rebal', 'kvmrb-', 'host2', 'host3') as instance:
        yield instance


@pytest.fixture
def cluster(lab):
    libvirt = _libvirt()
    uris = dict(hv2=lab.uri('host2'), hv3=lab.uri('host3'))
    conns = dict((host, libvirt.open(uri)) for host, uri in uris.items())
    prefix = 'kvmops-it-%s' % uuid.uuid4().hex[:8]
    directory = os.path.join(IMAGES, prefix)
    os.mkdir(directory)
    os.chmod(directory, 0o755)
    disk = os.path.join(directory, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M'], check=True)
    os.chmod(disk, 0o666)
    names = dict((suffix, '%s-%s' % (prefix, suffix)) for suffix in SIZES)
    pool = None
    try:
        # leftovers of an interrupted run on this private lab would skew the free memory
        for handle in conns.values():
            for dom in handle.listAllDomains(0):
                remove_guest(handle, dom.name())
        pool = conns['hv2'].storagePoolCreateXML(
            "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (prefix, directory), 0)
        kind = osless_virt_type(conns['hv2'])
        for suffix, mib in SIZES.items():
            xml = GUEST.format(virt_type=kind, name=names[suffix], mib=mib,
                               disk=DISK.format(path=disk) if suffix == 'disk' else '')
            conns['hv2'].defineXML(xml).create()
        yield dict(uris=uris, conns=conns, names=names, prefix=prefix)
    finally:
        for name in names.values():
            for handle in conns.values():
                remove_guest(handle, name)
        if pool is not None:
            try:
                pool.destroy()
            except libvirt.libvirtError:
                pass
        for handle in conns.values():
            handle.close()
        shutil.rmtree(directory, ignore_errors=True)


def free_for_guests(conn):
    """The host's memory less the maximum memory of its running guests, read from libvirt (bytes)."""
    libvirt = _libvirt()
    used = sum(dom.maxMemory() * 1024 for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    return conn.getInfo()[1] * MIB - used


def spread(conns):
    free = [free_for_guests(handle) for handle in conns.values()]
    return max(free) - min(free)


def rebalance(tmp_path, uris, check=False, **args):
    task = {'name': 'rebalance', 'kvmops.kvm.kvm_migrate_guests': dict(
        dict(mode='rebalance', uri=uris['hv2'], dest_candidates=[uris['hv3']], all_guests=True), **args),
        'ignore_errors': True}
    path = tmp_path / ('rebalance-%s.yml' % uuid.uuid4().hex[:6])
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [task]}]))
    result = run_playbook(str(path), check=check)
    assert 'Traceback' not in result.stdout, result.stdout[-3000:]
    return result.task('rebalance')


def test_survey_matches_the_playbook():
    test_runner.test_survey_matches_the_playbook('rebalance')


def test_rebalance_evens_out_free_memory_with_every_guest_running(tmp_path, cluster):
    uris, conns, names = cluster['uris'], cluster['conns'], cluster['names']
    before = spread(conns)
    assert before >= 960 * MIB            # every guest on hv2, hv3 empty
    poller = Poller(uris, list(names.values()))
    poller.start()
    try:
        # check mode: the plan, nothing moves. The disk guest would be the best first move, but host3 has no
        # pool holding its disk: it is refused there and never planned.
        plan = rebalance(tmp_path, uris, check=True, target_spread_mib=64)
        assert not plan.get('failed') and plan['changed'] is True, plan
        moves = [(m['name'], m['source'], m['destination']) for m in plan['rebalance']['moves']]
        assert moves == [(names['g256'], uris['hv2'], uris['hv3']), (names['g192'], uris['hv2'], uris['hv3'])], moves
        assert plan['rebalance']['planned_spread_bytes'] == 64 * MIB and plan['rebalance']['spread_after_bytes'] is None
        assert plan['rebalance']['stop_reason'].startswith('balanced')
        assert any('is not visible on the destination' in p for p in plan['rebalance']['refused'][names['disk']])
        assert spread(conns) == before
        for name in names.values():
            assert where_now(conns, name) == [('hv2', True)], name

        # the playbook, with every answer as text the way an AWX survey sends it
        result = run_playbook(PLAYBOOK, extra_vars=dict(
            rebalance_hosts='%s, %s' % (uris['hv2'], uris['hv3']), rebalance_target_spread_mib='64',
            rebalance_max_moves='5', rebalance_concurrency='2', rebalance_live_options='{"timeout": 120}'))
        assert result.rc == 0, result.stdout[-4000:]
        summary = result.task('Show the summary')['rebalance_summary']
        assert [(m['guest'], m['to'], m['ok']) for m in summary['moves']] == [
            (names['g256'], uris['hv3'], True), (names['g192'], uris['hv3'], True)], summary
        assert int(summary['spread_after_mib']) == 64 and int(summary['spread_before_mib']) >= 960, summary
    finally:
        poller.stop()
    assert not poller.errors, poller.errors[:5]
    assert poller.samples > 5
    assert poller.down == [], poller.down[:5]
    assert poller.bad_states == [], poller.bad_states[:5]
    # read back from libvirt: the spread went from >= 960 MiB to 64, the two guests run on hv3, the rest on hv2
    after = spread(conns)
    assert after == 64 * MIB and after < before
    for suffix, name in names.items():
        home = 'hv3' if suffix in ('g256', 'g192') else 'hv2'
        assert where_now(conns, name) == [(home, True)], (name, where_now(conns, name))
        assert poller.seen[name] == (['hv2', 'hv3'] if home == 'hv3' else ['hv2']), (name, poller.seen[name])

    # the second run finds nothing to move
    again = rebalance(tmp_path, uris, target_spread_mib=64)
    assert not again.get('failed') and again['changed'] is False and again['changes'] == [], again
    assert again['rebalance']['moves'] == [] and again['rebalance']['stop_reason'].startswith('balanced')
    assert spread(conns) == after


def test_a_move_that_fails_is_rolled_back_and_the_guest_keeps_running(tmp_path, lab):
    """A guest whose disk is in a pool on both hosts (so the preflight passes and the plan moves it) but on a
    local file system: without unsafe, libvirt refuses the migration once it has started; the guest is rolled
    back, keeps running on its host, the task fails naming it, and nothing is left on the other host."""
    libvirt = _libvirt()
    uris = dict(hv2=lab.uri('host2'), hv3=lab.uri('host3'))
    conns = dict((host, libvirt.open(uri)) for host, uri in uris.items())
    prefix = 'kvmops-it-%s' % uuid.uuid4().hex[:8]
    directory = os.path.join(IMAGES, prefix)
    name = prefix + '-local'
    fixed = prefix + '-fixed'
    pools = []
    try:
        for handle in conns.values():
            for dom in handle.listAllDomains(0):
                remove_guest(handle, dom.name())
        os.mkdir(directory)
        os.chmod(directory, 0o755)
        disk = os.path.join(directory, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M'], check=True)
        os.chmod(disk, 0o666)
        for handle in conns.values():
            pools.append(handle.storagePoolCreateXML(
                "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (prefix, directory), 0))
        kind = osless_virt_type(conns['hv2'])
        conns['hv2'].defineXML(GUEST.format(virt_type=kind, name=name, mib=256, disk=DISK.format(path=disk))).create()
        # a guest that is not selected: it stays, and makes moving the 256 MiB one worth it (a gap of 384 MiB)
        conns['hv2'].defineXML(GUEST.format(virt_type=kind, name=fixed, mib=128, disk='')).create()
        config = conns['hv2'].lookupByName(name).XMLDesc(2)
        poller = Poller(uris, [name])
        poller.start()
        try:
            result = rebalance(tmp_path, uris, guests=[name], all_guests=False, target_spread_mib=0)
        finally:
            poller.stop()
        assert result.get('failed') and result['changed'] is False, (result['msg'], result.get('rebalance'))
        assert result['msg'].startswith('1 guest(s) could not be moved and stay where they were'), result['msg']
        assert result['summary']['failed'] == [name] and result['summary']['where'] == {name: uris['hv2']}
        move = result['guests'][0]
        assert move['placement']['chosen'] == uris['hv3'] and 'unsafe' in move['msg'].lower(), move
        assert (move['rollback']['source_state'], move['rollback']['source_definition_intact'],
                move['rollback']['destination_clean']) == ('running', True, True), move['rollback']
        assert poller.down == [] and poller.bad_states == [], (poller.down[:5], poller.bad_states[:5])
        assert where_now(conns, name) == [('hv2', True)]
        assert conns['hv2'].lookupByName(name).XMLDesc(2) == config
        with pytest.raises(libvirt.libvirtError):
            conns['hv3'].lookupByName(name)
    finally:
        for handle in conns.values():
            remove_guest(handle, name)
            remove_guest(handle, fixed)
        for pool in pools:
            try:
                pool.destroy()
            except libvirt.libvirtError:
                pass
        for handle in conns.values():
            handle.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_bad_rebalance_answers_are_refused_before_anything_runs(tmp_path):
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), PLAYBOOK,
           '-i', os.path.join(ROOT, 'inventory', 'localhost.yml'),
           '-e', json.dumps(dict(rebalance_hosts='qemu:///system', rebalance_max_moves='0',
                                 rebalance_guests='a b', rebalance_live_options='{"nope": 1}'))]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    for word in ('rebalance_hosts: at least two different libvirt URIs', 'rebalance_max_moves: a whole number',
                 'rebalance_guests'):
        assert word in proc.stdout, proc.stdout[-3000:]
    assert 'Even out the free memory' not in proc.stdout
    cmd[-1] = json.dumps(dict(rebalance_hosts='qemu:///system, qemu+ssh://hv2.invalid/system', rebalance_live_options='{"nope": 1}'))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and 'rebalance_live_options: unknown kvm_migrate options nope' in ' '.join(proc.stdout.split()), \
        proc.stdout[-3000:]
