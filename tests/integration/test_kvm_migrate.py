"""kvm_migrate against the two-host lab (tests/lab/lab.sh): real ansible-playbook, real migrations.

Guests:
* OS-less guests (no disk or a data disk, serial, 64-128 MiB) under kvm when libvirt offers it:
  they migrate in a few seconds and cover placement, check mode, idempotence, there-and-back,
  offline, p2p/tunnelled, tls, copy_storage, shared storage and the preflight failures.
* One guest that runs an OS and dirties memory (Debian's kernel from /boot and a busybox-static
  initramfs whose init fills a tmpfs file with random data and copies it over a second file in a
  loop, size from the kernel command line ``kvmops.dirty=<MiB>``), under TCG: it covers
  non-convergence with abort and roll-back, a destination libvirtd killed mid-migration,
  post-copy, auto-converge and ``timeout_action: suspend``.

Numbers seen on this machine (2 vCPUs, TCG, libvirt 9.0, QEMU 7.2): the guest rewrites its 32 MiB
working set at about 15-20 MiB/s (QEMU's own dirty-rate calculation); at an 8 MiB/s cap the first
pass (about 110 MiB of non-zero memory) takes about 14 s, then each pass carries about 30 MiB.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

import busybox_guest

from conftest import ROOT, _env, remove_guest

LAB = os.path.join(ROOT, 'tests', 'lab', 'lab.sh')
LAB_URI = 'qemu+tcp://10.254.77.2/system'
LAB_STATE = '/var/lib/kvmops-lab/host2'
TO_LAB = 'tcp://10.254.77.2'
TO_MAIN = 'tcp://10.254.77.1'
UNREACHABLE = 'qemu+tcp://127.0.0.1:1/system'
IMAGES = '/var/lib/libvirt/images'
# /var/lib/libvirt/qemu is private to each host of the lab: not shared storage.
PRIVATE = '/var/lib/libvirt/qemu'

OSLESS = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='KiB'>{memory_kib}</memory>
  <currentMemory unit='MiB'>64</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{devices}<serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""

DISK = """<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>
  <source file='{path}'/><target dev='vdb' bus='virtio'/></disk>"""

# The workload: DIRTY_MIB of random data copied over a second tmpfs file in a loop (the guest's
# tmpfs holds half of its 256 MiB, so both files must fit in 128 MiB), and the cap it outruns.
DIRTY_MIB = 32
BANDWIDTH = 8  # MiB/s

WORKLOAD = """
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{dir}/vmlinuz</kernel>
    <initrd>{dir}/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet kvmops.dirty={dirty_mib}</cmdline>
  </os>
  <devices>{disk}<serial type='file'><source path='{dir}/console.log'/></serial>
    <memballoon model='none'/></devices>
</domain>
"""

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
MB=0
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.dirty=*) MB=${arg#kvmops.dirty=} ;; esac
done
echo "kvmops-guest: up, dirty=${MB}MiB"
if [ "$MB" -gt 0 ]; then
  dd if=/dev/urandom of=/tmp/a bs=1M count=$MB 2>/dev/null
  if [ "$(wc -c < /tmp/a)" = "$((MB * 1048576))" ]; then
    echo "kvmops-guest: dirtying"
    while :; do cat /tmp/a > /tmp/b; done
  fi
  echo "kvmops-guest: cannot fill /tmp/a"
fi
while :; do sleep 3600; done
"""


# ---------------------------------------------------------------- helpers
def lab(*args):
    return subprocess.run(['bash', LAB] + list(args), capture_output=True, text=True, timeout=240, check=False)


def _libvirt():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


def lab_path(path):
    """Where a host2-private path (under /var/lib/libvirt/qemu) is, seen from the main host."""
    assert path.startswith(PRIVATE + '/')
    return os.path.join(LAB_STATE, 'lib-qemu', path[len(PRIVATE) + 1:])


def find(conn, name):
    libvirt = _libvirt()
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None


def assert_rolled_back(result):
    """The module's own roll-back report: still running at home, definition intact, nothing on the destination."""
    rollback = result['rollback']
    assert (rollback['source_state'], rollback['source_definition_intact'], rollback['destination_clean']) == \
        ('running', True, True), rollback


def ensure_pool(conn, name, path):
    libvirt = _libvirt()
    try:
        pool = conn.storagePoolLookupByName(name)
        if not pool.isActive():
            pool.create(0)
        return pool
    except libvirt.libvirtError:
        pass
    return conn.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path), 0)


def drop_pool(conn, name):
    libvirt = _libvirt()
    try:
        pool = conn.storagePoolLookupByName(name)
        pool.destroy()
    except libvirt.libvirtError:
        pass


def migrate(playbook, tmp_path, check=False, ignore_errors=True, **args):
    """Run kvm_migrate once through ansible-playbook; returns the task result."""
    task = {'name': 'migrate', 'kvmops.kvm.kvm_migrate': args, 'ignore_errors': ignore_errors}
    play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [task]}]
    path = tmp_path / ('migrate-%s.yml' % uuid.uuid4().hex[:6])
    path.write_text(json.dumps(play))
    result = playbook(str(path), check=check)
    assert 'Traceback' not in result.stdout, result.stdout[-3000:]
    return result.task('migrate')


def running(dom):
    return dom is not None and dom.isActive() and dom.state()[0] == 1


def qcow2_with_random_data(path, size_mib=32, data_mib=4):
    raw = path + '.raw'
    with open(raw, 'wb') as handle:
        handle.write(os.urandom(data_mib * 1024 * 1024))
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, path], check=True)
    subprocess.run(['qemu-img', 'resize', '-q', path, '%dM' % size_mib], check=True)
    os.unlink(raw)


def guest_checksum(path):
    """sha256 of what the guest sees (qcow2 converted to raw), readable while a guest runs."""
    raw = '/tmp/kvmops-it-%s.raw' % uuid.uuid4().hex[:8]
    try:
        subprocess.run(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'raw', path, raw], check=True,
                       capture_output=True)
        digest = hashlib.sha256()
        with open(raw, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
        return digest.hexdigest()
    finally:
        if os.path.exists(raw):
            os.unlink(raw)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def lab_host():
    # the lab may be shared with another run (a benchmark, another test module): stop it only if started here
    was_running = lab('status', 'host2').returncode == 0
    started = lab('start', 'host2')
    assert started.returncode == 0, started.stdout + started.stderr
    libvirt = _libvirt()
    holder = {'conn': libvirt.open(LAB_URI)}

    class Lab(object):
        @property
        def conn(self):
            try:
                holder['conn'].getHostname()
            except libvirt.libvirtError:
                holder['conn'] = libvirt.open(LAB_URI)
            return holder['conn']

        def restart(self):
            try:
                holder['conn'].close()
            except libvirt.libvirtError:
                pass
            again = lab('start', 'host2')
            assert again.returncode == 0, again.stdout + again.stderr
            holder['conn'] = libvirt.open(LAB_URI)
    try:
        yield Lab()
    finally:
        try:
            holder['conn'].close()
        except libvirt.libvirtError:
            pass
        if not was_running:
            stopped = lab('stop', 'host2')
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture
def guests(conn, lab_host):
    """Names created by a test; removed from both hosts afterwards, whatever happened."""
    names = []
    yield names
    for name in names:          # the main host first, even if the lab went away meanwhile
        remove_guest(conn, name)
    libvirt = _libvirt()
    try:
        for name in names:
            remove_guest(lab_host.conn, name)
    except libvirt.libvirtError:
        pass


def osless(conn, name, virt_type, devices='', memory_kib=128 * 1024, persistent=False, start=True):
    xml = OSLESS.format(virt_type=virt_type, name=name, devices=devices, memory_kib=memory_kib)
    if persistent:
        dom = conn.defineXML(xml)
        if start:
            dom.create()
        return dom
    return conn.createXML(xml, 0)


# ---------------------------------------------------------------- OS-less guests
@pytest.mark.parametrize('dest', [
    'qemu:///system',
    'qemu+tcp://127.0.0.1/system',
    'qemu+ssh://root@localhost/system',
    'qemu+unix:///system?socket=/run/libvirt/libvirt-sock',
    'qemu+tls://[::1]:16514//system/',
])
def test_destination_that_is_the_source_is_refused(conn, unique, virt_type, playbook, tmp_path, dest):
    """The canonical URI is compared before anything connects; the guest is untouched (no lab needed)."""
    try:
        dom = osless(conn, unique, virt_type)
        before = dom.XMLDesc(0)
        for check in (True, False):
            failed = migrate(playbook, tmp_path, check=check, name=unique, uri='qemu:///system', destination_uri=dest)
            assert failed['failed'] and not failed.get('changed'), failed
            assert failed['msg'].startswith('destination_uri: is the source hypervisor'), failed['msg']
            dom = find(conn, unique)
            assert running(dom) and dom.XMLDesc(0) == before
    finally:
        remove_guest(conn, unique)


def test_source_among_candidates_is_never_connected(conn, unique, virt_type, playbook, tmp_path):
    """A drain may list every host: the source candidate is rejected by the preflight, the others are tried."""
    try:
        osless(conn, unique, virt_type)
        failed = migrate(playbook, tmp_path, check=True, name=unique, uri='qemu:///system',
                         dest_candidates=['qemu+ssh://localhost/system', UNREACHABLE])
        assert failed['failed'], failed
        by_uri = dict((r['uri'], r['problems']) for r in failed['preflight'])
        assert by_uri['qemu+ssh://localhost/system'][0].startswith('the destination is the source host itself')
        assert by_uri[UNREACHABLE][0].startswith('destination unreachable')
        assert running(find(conn, unique))
    finally:
        remove_guest(conn, unique)


@pytest.mark.parametrize('args, expect', [
    (dict(destination_uri='qemu+ext:///system?command=/bin/true'), '^destination_uri: the ext transport'),
    (dict(destination_uri='qemu+ssh://localhost/system?netcat=/tmp/nc'), '^destination_uri: the ext transport'),
    # the spelling before 1.0.0 still works (deprecated): the message names the option as it is now
    (dict(dest_uri='qemu+ssh://localhost/system?netcat=/tmp/nc'), '^destination_uri: the ext transport'),
    (dict(dest_candidates=[UNREACHABLE, 'test+ext:///default?command=/bin/true']), r'^dest_candidates\[1\]: the ext'),
])
def test_destination_uris_are_validated(conn, unique, playbook, tmp_path, args, expect):
    import re
    failed = migrate(playbook, tmp_path, name=unique, uri='qemu:///system', **args)
    assert failed['failed'] and re.search(expect, failed['msg']), failed
    if 'dest_uri' in args:
        assert [d['version'] for d in failed['deprecations'] if "'dest_uri'" in d['msg']] == ['2.0.0'], failed


def test_placement_check_mode_live_idempotence_and_back(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    osless(conn, unique, virt_type, persistent=True)
    args = dict(name=unique, dest_candidates=[UNREACHABLE, LAB_URI], migrate_uri=TO_LAB, max_downtime=200)

    checked = migrate(playbook, tmp_path, check=True, **args)
    assert not checked.get('failed'), checked
    assert checked['changed'] is True and checked['destination_uri'] == LAB_URI
    assert checked['placement']['chosen'] == LAB_URI
    reason = checked['placement']['reason']
    assert 'rejected: %s (destination unreachable: cannot connect to libvirt at %s' % (UNREACHABLE, UNREACHABLE) in reason
    assert running(find(conn, unique)) and find(lab_host.conn, unique) is None      # check mode moved nothing

    moved = migrate(playbook, tmp_path, **args)
    assert not moved.get('failed'), moved
    assert moved['changed'] is True and moved['destination_uri'] == LAB_URI
    assert moved['changes'] == [dict(scope='live', option='destination_uri', action='migrate', before='qemu:///system',
                                     after=LAB_URI, guest=unique, dest_name=unique)] and moved['pending_restart'] == []
    assert moved['flags'] == ['LIVE', 'PERSIST_DEST', 'UNDEFINE_SOURCE', 'ABORT_ON_ERROR']
    there = find(lab_host.conn, unique)
    assert running(there) and there.isPersistent() and find(conn, unique) is None
    assert moved['domain']['state'] == 'running' and moved['domain']['state_reason'] == 'migrated'
    assert moved['source_defined'] is False
    progress = moved['progress']
    for key in ('elapsed_ms', 'data_total', 'data_processed', 'memory_iteration', 'downtime_ms',
                'average_bandwidth_bps', 'wall_seconds'):
        assert key in progress, progress
    assert moved['job_stats']['memory_total'] > 0 and moved['samples']
    assert moved['samples'][-1]['data_processed'] == moved['job_stats'].get('data_processed')  # the completed job
    assert any('max downtime set to 200 ms' in e for e in moved['events'])

    again_check = migrate(playbook, tmp_path, check=True, **args)
    again = migrate(playbook, tmp_path, **args)
    for result in (again_check, again):
        assert not result.get('failed') and result['changed'] is False, result
        assert result['destination_uri'] == LAB_URI and 'already running' in result['msg']
        assert result['changes'] == [] and result['method'] == 'live'

    back = migrate(playbook, tmp_path, uri=LAB_URI, name=unique, destination_uri='qemu:///system',
                   migrate_uri=TO_MAIN, listen_address='10.254.77.1')
    assert not back.get('failed'), back
    assert back['changed'] is True
    assert running(find(conn, unique)) and find(conn, unique).isPersistent()
    assert find(lab_host.conn, unique) is None


def test_offline_moves_the_definition(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    osless(conn, unique, virt_type, persistent=True, start=False)
    before = find(conn, unique).UUIDString()
    live_on_shutoff = migrate(playbook, tmp_path, name=unique, destination_uri=LAB_URI)
    assert live_on_shutoff['failed'] and 'a live migration needs it running' in live_on_shutoff['msg']

    moved = migrate(playbook, tmp_path, name=unique, destination_uri=LAB_URI, method='offline')
    assert not moved.get('failed'), moved
    assert moved['changed'] is True and 'OFFLINE' in moved['flags']
    assert [(c['scope'], c['option'], c['action']) for c in moved['changes']] == [('config', 'destination_uri', 'migrate')]
    there = find(lab_host.conn, unique)
    assert there is not None and there.isPersistent() and not there.isActive() and there.UUIDString() == before
    assert find(conn, unique) is None
    # the spellings before 1.0.0 (deprecated aliases) still work
    again = migrate(playbook, tmp_path, name=unique, dest_uri=LAB_URI, mode='offline')
    assert not again.get('failed') and again['changed'] is False, again
    assert again['method'] == again['mode'] == 'offline'
    assert sorted(d['msg'].split("'")[1] for d in again['deprecations']) == ['dest_uri', 'mode'], again


def test_p2p_tunnelled_passes_the_flags(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    osless(conn, unique, virt_type)
    moved = migrate(playbook, tmp_path, name=unique, destination_uri=LAB_URI, p2p=True, tunnelled=True, persistent=False)
    assert not moved.get('failed'), moved
    assert 'PEER2PEER' in moved['flags'] and 'TUNNELLED' in moved['flags'] and 'PERSIST_DEST' not in moved['flags']
    there = find(lab_host.conn, unique)
    assert running(there) and not there.isPersistent() and find(conn, unique) is None


def test_tls_without_certificates_fails_and_rolls_back(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    osless(conn, unique, virt_type, persistent=True)
    config = find(conn, unique).XMLDesc(2)
    failed = migrate(playbook, tmp_path, name=unique, destination_uri=LAB_URI, migrate_uri=TO_LAB, tls=True)
    assert failed['failed'] and 'TLS' in failed['flags'], failed
    assert failed['msg'].startswith('migration of %s to %s failed: ' % (unique, LAB_URI))
    assert_rolled_back(failed)
    dom = find(conn, unique)
    assert running(dom) and dom.XMLDesc(2) == config and find(lab_host.conn, unique) is None


def test_preflight_failures_all_at_once_nothing_touched(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    libvirt = _libvirt()
    guests.append(unique)
    net_name = unique + '-net'
    bridge = 'kvi' + unique[-8:]
    net = conn.networkCreateXML("<network><name>%s</name><bridge name='%s'/></network>" % (net_name, bridge))
    try:
        # maximum memory above what the destination has free (the guest only touches 64 MiB of it)
        free_kib = lab_host.conn.getFreeMemory() // 1024
        total_kib = conn.getInfo()[1] * 1024
        memory_kib = min(free_kib + 512 * 1024, total_kib - 256 * 1024)
        if memory_kib <= free_kib:
            pytest.skip('cannot size a guest above the free memory of the lab host')
        iface = "<interface type='network'><source network='%s'/><model type='virtio'/></interface>" % net_name
        dom = osless(conn, unique, virt_type, devices=iface, memory_kib=memory_kib, persistent=True)
        config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        squatter = osless(lab_host.conn, unique, virt_type)          # the name is taken on the destination
        squatter_uuid = squatter.UUIDString()

        for check in (True, False):
            failed = migrate(playbook, tmp_path, check=check, name=unique, destination_uri=LAB_URI, migrate_uri=TO_LAB)
            assert failed['failed'] and failed['changed'] is False, failed
            assert failed['msg'].startswith('preflight failed for guest %s, nothing was changed: ' % unique)
            problems = failed['problems']
            assert any('a guest named %s already exists on the destination (running' % unique in p for p in problems)
            assert any('network %s does not exist on the destination' % net_name in p for p in problems)
            assert any('not enough free memory on the destination' in p for p in problems)
            assert len(problems) == 3, problems
            dom = find(conn, unique)
            assert running(dom) and dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == config
            assert running(find(lab_host.conn, unique)) and find(lab_host.conn, unique).UUIDString() == squatter_uuid
    finally:
        remove_guest(lab_host.conn, unique)
        remove_guest(conn, unique)
        try:
            net.destroy()
        except libvirt.libvirtError:
            pass


def test_shared_storage_needs_unsafe_on_a_local_fs(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    directory = os.path.join(IMAGES, unique)
    os.makedirs(directory)
    disk = os.path.join(directory, 'data.qcow2')
    try:
        qcow2_with_random_data(disk)
        digest = guest_checksum(disk)
        osless(conn, unique, virt_type, devices=DISK.format(path=disk), persistent=True)
        args = dict(name=unique, destination_uri=LAB_URI, migrate_uri=TO_LAB)

        unseen = migrate(playbook, tmp_path, **args)
        assert unseen['failed'] and any('disk vdb: %s is not visible on the destination' % disk in p
                                        for p in unseen['problems']), unseen
        ensure_pool(lab_host.conn, unique, directory)                 # the shared directory, as host2 sees it

        refused = migrate(playbook, tmp_path, **args)              # libvirt: local fs is not shared storage
        assert refused['failed'] and 'UNSAFE' not in refused['flags'], refused
        assert 'unsafe' in refused['msg'].lower() and refused['rollback']['source_state'] == 'running'
        assert running(find(conn, unique)) and find(lab_host.conn, unique) is None

        moved = migrate(playbook, tmp_path, unsafe=True, **args)
        assert not moved.get('failed'), moved
        assert 'UNSAFE' in moved['flags'] and running(find(lab_host.conn, unique))
        assert moved['domain']['disks'][0]['source'] == disk and guest_checksum(disk) == digest
    finally:
        remove_guest(lab_host.conn, unique)
        remove_guest(conn, unique)
        drop_pool(lab_host.conn, unique)
        shutil.rmtree(directory, ignore_errors=True)


def test_copy_storage_all(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    guests.append(unique)
    directory = os.path.join(PRIVATE, unique)
    os.makedirs(directory)
    disk = os.path.join(directory, 'data.qcow2')
    try:
        qcow2_with_random_data(disk)
        digest = guest_checksum(disk)
        osless(conn, unique, virt_type, devices=DISK.format(path=disk), persistent=True)
        args = dict(name=unique, destination_uri=LAB_URI, migrate_uri=TO_LAB, copy_storage='all')

        nowhere = migrate(playbook, tmp_path, **args)
        assert nowhere['failed'] and any('copy_storage needs %s on the destination' % disk in p
                                         for p in nowhere['problems']), nowhere
        # host2 has its own /var/lib/libvirt/qemu: give it the directory as a pool; libvirt creates the image
        os.makedirs(lab_path(directory))
        ensure_pool(lab_host.conn, unique, directory)

        moved = migrate(playbook, tmp_path, **args)
        assert not moved.get('failed'), moved
        assert 'NON_SHARED_DISK' in moved['flags'] and 'UNSAFE' not in moved['flags']
        assert running(find(lab_host.conn, unique)) and find(conn, unique) is None
        assert guest_checksum(lab_path(disk)) == digest == guest_checksum(disk)
    finally:
        remove_guest(lab_host.conn, unique)
        remove_guest(conn, unique)
        drop_pool(lab_host.conn, unique)
        shutil.rmtree(directory, ignore_errors=True)
        if os.path.isdir(lab_path(directory)):
            shutil.rmtree(lab_path(directory), ignore_errors=True)


# ---------------------------------------------------------------- a guest that dirties memory
@pytest.fixture(scope='module')
def workload(lab_host, conn):
    """A persistent TCG guest running an OS that rewrites DIRTY_MIB of random data in a loop, with a data disk."""
    name = 'kvmops-it-%s-dirty' % uuid.uuid4().hex[:8]
    directory = os.path.join(IMAGES, name)
    busybox_guest.build(directory, init=INIT, modules=())
    disk = os.path.join(directory, 'data.qcow2')
    qcow2_with_random_data(disk)
    dom = conn.defineXML(WORKLOAD.format(name=name, dir=directory, disk=DISK.format(path=disk), dirty_mib=DIRTY_MIB))
    try:
        dom.create()
        console = os.path.join(directory, 'console.log')
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = open(console, errors='replace').read() if os.path.exists(console) else ''
            if 'kvmops-guest: dirtying' in text:
                break
            if 'kvmops-guest: cannot fill' in text:
                pytest.fail('the workload guest could not write its data: %s' % text[-2000:])
            time.sleep(2)
        else:
            pytest.fail('the workload guest did not start dirtying memory within 300s')
        ensure_pool(lab_host.conn, name, directory)
        yield dict(name=name, dir=directory, disk=disk, digest=guest_checksum(disk))
    finally:
        remove_guest(conn, name)
        remove_guest(lab_host.conn, name)
        drop_pool(lab_host.conn, name)
        shutil.rmtree(directory, ignore_errors=True)


def _still_home(conn, lab_host, workload, config):
    libvirt = _libvirt()
    dom = find(conn, workload['name'])
    assert running(dom), 'the guest does not run on the source any more'
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == config
    assert guest_checksum(workload['disk']) == workload['digest']


def _home(conn, lab_host, workload):
    """Bring the workload guest back to the main host (plain libvirt, no cap) if a test left it on the lab."""
    libvirt = _libvirt()
    there = find(lab_host.conn, workload['name'])
    if there is not None and there.isActive():
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                 | libvirt.VIR_MIGRATE_UNSAFE)
        there.migrate3(conn, {libvirt.VIR_MIGRATE_PARAM_URI: TO_MAIN,
                              libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '10.254.77.1'}, flags)
    dom = find(conn, workload['name'])
    assert running(dom) and find(lab_host.conn, workload['name']) is None
    return dom


def guest_dirty_rate_mib(conn, dom, seconds=1):
    """The guest's own dirty rate in MiB/s, from QEMU's page-sampling calculation (calc-dirty-rate).

    libvirt holds the domain's job lock during a migration, so this runs just before one.
    """
    libvirt = _libvirt()
    dom.startDirtyRateCalc(seconds, 0)
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        stats = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
        if stats.get('dirtyrate.calc_status') == libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
            return stats['dirtyrate.megabytes_per_second']
    pytest.fail('the dirty-rate calculation did not finish: %s' % stats)


def test_no_convergence_times_out_aborts_and_rolls_back(lab_host, conn, workload, playbook, tmp_path):
    """A guest dirtying memory faster than the cap does not converge; the timeout aborts; nothing moved.

    What is measured, in this run:

    * the guest dirties memory faster than the cap: QEMU's dirty-rate calculation, just before the
      migration (libvirt cannot run it during one), gives more MiB/s than ``BANDWIDTH``;
    * during the failing migration (the returned ``samples``): the pass number keeps growing (>= 3
      passes), ``data_remaining`` is never 0, and every pass after the first starts with more than
      2 s of the cap left to send, far more than fits in the 300 ms maximum downtime;
    * the job's own ``memory_dirty_rate`` (pages/s x page size) after the first pass reaches at
      least 80% of the cap (seen: 83-96%). Why not "above the cap": QEMU counts the pages dirtied
      *per pass*, and a pass of a guest whose working set is rewritten faster than it is sent
      carries the whole working set, so the job's figure settles at working set / pass time, which
      is the cap. It can only exceed the cap while the dirty set is still growing, and the first,
      much longer pass hides that.
    """
    libvirt = _libvirt()
    dom = _home(conn, lab_host, workload)
    config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    guest_rate = guest_dirty_rate_mib(conn, dom)
    assert guest_rate > BANDWIDTH, 'the guest dirties %s MiB/s, not more than the %s MiB/s cap' % (guest_rate, BANDWIDTH)

    failed = migrate(playbook, tmp_path, name=workload['name'], destination_uri=LAB_URI, migrate_uri=TO_LAB,
                     unsafe=True, bandwidth=BANDWIDTH, timeout=30, poll_interval=1)
    assert failed.get('failed'), failed
    assert 'no convergence within the timeout of 30s (pass ' in failed['msg'], failed['msg']
    assert_rolled_back(failed)
    assert any('timeout of 30s reached; action abort' in e for e in failed['events'])

    samples = [x for x in failed['samples'] if x.get('memory_iteration')]
    passes = [x['memory_iteration'] for x in samples]
    assert passes == sorted(passes) and passes[-1] >= 3, passes
    assert all(x['data_remaining'] > 0 for x in samples), samples
    cap = BANDWIDTH * 1024 * 1024
    page = failed['progress']['memory_page_size']
    for number in range(2, passes[-1] + 1):
        in_pass = [x for x in samples if x['memory_iteration'] == number]
        if in_pass:
            assert max(x['data_remaining'] for x in in_pass) > 2 * cap, (number, in_pass)
    # the rate of pass n-1 is reported during pass n; from pass 2 on, a pass re-dirties about what it sends
    job_rates = [x['memory_dirty_rate'] * page for x in samples if x['memory_iteration'] >= 3]
    assert job_rates and max(job_rates) >= 0.8 * cap, samples
    print('guest dirty rate %.1f MiB/s, cap %d MiB/s; passes %s; job dirty rate per pass (MiB/s) %s' % (
        guest_rate, BANDWIDTH, passes[-1], sorted(set(round(x['memory_dirty_rate'] * page / 1048576.0, 2)
                                                      for x in samples))))
    _still_home(conn, lab_host, workload, config)
    assert find(lab_host.conn, workload['name']) is None


def _lab_libvirtd_pid():
    with open(os.path.join(LAB_STATE, 'holder.pid')) as handle:
        holder = handle.read().strip()
    with open('/proc/%s/root/run/libvirt/libvirtd.pid' % holder) as handle:
        return int(handle.read().strip())


def test_destination_libvirtd_killed_mid_migration(lab_host, conn, workload, tmp_path):
    libvirt = _libvirt()
    dom = _home(conn, lab_host, workload)
    config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    task = {'name': 'migrate', 'ignore_errors': True, 'kvmops.kvm.kvm_migrate': dict(
        name=workload['name'], destination_uri=LAB_URI, migrate_uri=TO_LAB, unsafe=True, bandwidth=2, timeout=40)}
    path = tmp_path / 'kill.yml'
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [task]}]))
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), str(path),
           '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')]
    proc = subprocess.Popen(cmd, env=_env({'ANSIBLE_STDOUT_CALLBACK': 'kvmops_test_json'}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = dom.jobStats(0)
            if stats.get('data_processed', 0) > 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail('the migration job did not start')
        os.kill(_lab_libvirtd_pid(), signal.SIGKILL)
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    data = json.loads(out[out.index('{'):])
    result = data['plays'][0]['tasks'][0]['hosts']['localhost']
    assert result['failed'] and 'Traceback' not in out, result
    assert result['msg'].startswith('migration of %s to %s failed: ' % (workload['name'], LAB_URI))
    assert result['rollback']['source_state'] == 'running'
    _still_home(conn, lab_host, workload, config)
    lab_host.restart()                                   # a new libvirtd; the orphaned incoming qemu is gone
    assert find(lab_host.conn, workload['name']) is None
    ensure_pool(lab_host.conn, workload['name'], workload['dir'])


def test_postcopy_after_the_timeout(lab_host, conn, workload, playbook, tmp_path):
    """``timeout_action: postcopy``: switch to post-copy when the timeout passes, or a clean failure.

    Post-copy needs userfaultfd in the *destination* QEMU. QEMU 7.2 calls the userfaultfd syscall
    (it only learnt /dev/userfaultfd in 8.1), which this machine refuses to the unprivileged QEMU
    process (``vm.unprivileged_userfaultfd = 0``): the lab's QEMU logs "postcopy_ram_supported_by_host:
    userfaultfd not available: Operation not permitted", and libvirt fails the migration at its start
    with "Postcopy is not supported". So here this test proves the failure path is clean (the guest
    still runs on the source with its definition and disk unchanged, nothing on the destination).
    Where the host allows userfaultfd, the same test checks the switch and the guest on the destination.
    """
    libvirt = _libvirt()
    dom = _home(conn, lab_host, workload)
    config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    result = migrate(playbook, tmp_path, name=workload['name'], destination_uri=LAB_URI, migrate_uri=TO_LAB,
                     unsafe=True, bandwidth=BANDWIDTH, timeout=10, timeout_action='postcopy', poll_interval=1)
    assert 'POSTCOPY' in result['flags'], result
    if result.get('failed'):
        assert 'Postcopy is not supported' in result['msg'], result['msg']
        assert_rolled_back(result)
        _still_home(conn, lab_host, workload, config)
        assert find(lab_host.conn, workload['name']) is None
    else:
        assert any('action postcopy' in e for e in result['events']), result['events']
        assert any('switched to post-copy (timeout)' in e for e in result['events']), result['events']
        assert running(find(lab_host.conn, workload['name'])) and find(conn, workload['name']) is None
        assert guest_checksum(workload['disk']) == workload['digest']


def test_auto_converge_completes(lab_host, conn, workload, playbook, tmp_path):
    """The same guest and cap as the non-convergence test, with auto-converge: it completes, throttled.

    The throttle is visible under TCG with libvirt 9.0/QEMU 7.2: ``auto_converge_throttle`` (QEMU's
    cpu-throttle-percentage) rises 60 -> 80 -> 99 in the samples before the job completes.
    """
    _home(conn, lab_host, workload)
    moved = migrate(playbook, tmp_path, name=workload['name'], destination_uri=LAB_URI, migrate_uri=TO_LAB,
                    unsafe=True, bandwidth=BANDWIDTH, auto_converge=True, auto_converge_initial=60,
                    auto_converge_increment=20, timeout=300, poll_interval=1)
    assert not moved.get('failed'), moved
    assert 'AUTO_CONVERGE' in moved['flags']
    assert running(find(lab_host.conn, workload['name'])) and find(conn, workload['name']) is None
    assert moved['progress']['memory_iteration'] >= 3
    throttles = [x.get('auto_converge_throttle') or 0 for x in moved['samples']]
    assert max(throttles) >= 60, moved['samples']
    print('auto-converge: %s passes, throttle %s, %.1fs' % (
        moved['progress']['memory_iteration'], sorted(set(throttles)), moved['elapsed_seconds']))
    assert guest_checksum(workload['disk']) == workload['digest']


def test_timeout_suspend_finishes_paused_and_resumes(lab_host, conn, workload, playbook, tmp_path):
    """``timeout_action: suspend``: paused at the timeout, the rest is copied, running on the destination.

    The destination libvirtd itself resumes the guest (it ran when the migration started, and
    VIR_MIGRATE_PAUSED is not set), so the module's own resume is only a fallback here.
    """
    _home(conn, lab_host, workload)
    moved = migrate(playbook, tmp_path, name=workload['name'], destination_uri=LAB_URI, migrate_uri=TO_LAB,
                    unsafe=True, bandwidth=BANDWIDTH, timeout=10, timeout_action='suspend', poll_interval=1)
    assert not moved.get('failed'), moved
    assert any('timeout of 10s reached; action suspend' in e for e in moved['events']), moved['events']
    there = find(lab_host.conn, workload['name'])
    assert running(there) and find(conn, workload['name']) is None
    assert moved['domain']['state'] == 'running'
    assert there.state()[1] in (2, 3)      # VIR_DOMAIN_RUNNING_MIGRATED or _UNPAUSED (the module's resume)
    # paused from the timeout to the end: seconds, not the usual tens of ms of downtime. libvirt's own
    # downtime_ms was seen to be either (it may count only QEMU's switch-over), so the module measures it.
    assert any('guest paused' in e for e in moved['events']), moved['events']
    assert moved['progress']['paused_ms'] >= 1000, moved['progress']
    assert moved['progress']['elapsed_ms'] >= 10000
    assert guest_checksum(workload['disk']) == workload['digest']


# ---------------------------------------------------------------- kvm_migrate_guests
def migrate_guests(playbook, tmp_path, check=False, **args):
    """Run kvm_migrate_guests once through ansible-playbook; returns the task result."""
    task = {'name': 'migrate guests', 'kvmops.kvm.kvm_migrate_guests': args, 'ignore_errors': True}
    path = tmp_path / ('migrate-guests-%s.yml' % uuid.uuid4().hex[:6])
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [task]}]))
    result = playbook(str(path), check=check)
    assert 'Traceback' not in result.stdout, result.stdout[-3000:]
    return result.task('migrate guests')


def test_migrate_guests_in_one_task_with_a_failing_guest(lab_host, conn, guests, unique, virt_type, playbook, tmp_path):
    """Four guests, concurrency 2: three move to the lab; one fails in libvirt and stays running at home.

    The failing guest has a disk on /var/lib/libvirt/images, which the lab host sees through a pool (so the
    preflight passes and the placement takes it), but which is a local file system: without ``unsafe``
    libvirt refuses the migration once it has started, and the guest is rolled back.
    """
    good = ['%s-%d' % (unique, i) for i in range(3)]
    bad = '%s-disk' % unique
    guests.extend(good + [bad])
    directory = os.path.join(IMAGES, unique)
    os.makedirs(directory)
    disk = os.path.join(directory, 'data.qcow2')
    try:
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M'], check=True)
        ensure_pool(lab_host.conn, unique, directory)
        for name in good:
            osless(conn, name, virt_type, persistent=True, memory_kib=64 * 1024)
        osless(conn, bad, virt_type, devices=DISK.format(path=disk), persistent=True, memory_kib=64 * 1024)
        bad_config = find(conn, bad).XMLDesc(2)
        args = dict(guests=good + [bad], dest_candidates=[UNREACHABLE, LAB_URI], concurrency=2, migrate_uri=TO_LAB)

        planned = migrate_guests(playbook, tmp_path, check=True, **args)
        assert not planned.get('failed') and planned['changed'] is True, planned
        assert planned['summary']['where'] == dict((n, LAB_URI) for n in good + [bad])
        assert [c['ok'] for c in planned['candidates']] == [False, True]
        # the lab is this machine: the baseline of the two hosts' CPUs is a model both can give
        assert planned['cpu_baseline']['hosts'] == ['qemu:///system', LAB_URI] and planned['cpu_baseline']['model']
        assert all(UNREACHABLE in g['placement']['reason'] for g in planned['guests'])
        for name in good + [bad]:                                # check mode moved nothing
            assert running(find(conn, name)) and find(lab_host.conn, name) is None

        moved = migrate_guests(playbook, tmp_path, **args)
        assert moved['failed'] and moved['changed'] is True, moved
        assert moved['msg'].startswith('1 of 4 guest(s) could not be moved and stay on the source'), moved['msg']
        assert sorted(moved['summary']['moved']) == sorted(good) and moved['summary']['failed'] == [bad]
        assert moved['summary']['by_destination'] == {LAB_URI: good}
        by_name = dict((g['name'], g) for g in moved['guests'])
        assert 'unsafe' in by_name[bad]['msg'].lower() and by_name[bad]['changed'] is False
        assert_rolled_back(by_name[bad])
        flags = ['LIVE', 'PERSIST_DEST', 'UNDEFINE_SOURCE', 'ABORT_ON_ERROR']
        for name in good:
            assert by_name[name]['changed'] and by_name[name]['flags'] == flags, by_name[name]
        # read back from libvirt on both hosts
        for name in good:
            there = find(lab_host.conn, name)
            assert running(there) and there.isPersistent() and find(conn, name) is None
        home = find(conn, bad)
        assert running(home) and home.XMLDesc(2) == bad_config and find(lab_host.conn, bad) is None

        again_args = dict(args)
        again_args['guests'] = good
        again = migrate_guests(playbook, tmp_path, **again_args)
        assert not again.get('failed') and again['changed'] is False and again['changes'] == [], again
        assert sorted(again['summary']['unchanged']) == sorted(good)
    finally:
        # the main host first: a lab that went away (someone stopped it) must not leave guests here
        for name in good + [bad]:
            remove_guest(conn, name)
        shutil.rmtree(directory, ignore_errors=True)
        libvirt = _libvirt()
        try:
            for name in good + [bad]:
                remove_guest(lab_host.conn, name)
            drop_pool(lab_host.conn, unique)
        except libvirt.libvirtError:
            pass


# ---------------------------------------------------------------- drain_host.yml
def test_drain_host_playbook(lab_host, conn, guests, unique, virt_type, playbook):
    """Drain the lab host (only this test's guests live there) into the main host."""
    running_names = ['%s-%d' % (unique, i) for i in range(3)]
    shutoff = '%s-off' % unique
    guests.extend(running_names + [shutoff])
    for name in running_names:
        osless(lab_host.conn, name, virt_type, persistent=True)
    osless(lab_host.conn, shutoff, virt_type, persistent=True, start=False)
    # tolerate leftovers of an interrupted run (or anyone else's guest on the lab): never drain them
    leftovers = [d.name() for d in lab_host.conn.listAllDomains(0) if d.name() not in guests]

    # every answer as text, the way an AWX survey sends it (lists comma-separated, dicts as JSON)
    result = playbook(os.path.join(ROOT, 'playbooks', 'drain_host.yml'), extra_vars=dict(
        drain_source_uri=LAB_URI, drain_candidates='%s, qemu:///system' % UNREACHABLE, drain_concurrency='2',
        drain_exclude=','.join(leftovers),
        drain_live_options=json.dumps(dict(migrate_uri=TO_MAIN, listen_address='10.254.77.1'))))
    assert result.rc == 0, result.stdout[-4000:]
    summary = {entry['guest']: entry for entry in result.task('Show the summary')['drain_summary']}
    assert sorted(summary) == sorted(running_names + [shutoff])
    for name in running_names:
        assert summary[name]['ok'] and summary[name]['mode'] == 'live', summary[name]
        assert summary[name]['destination'] == 'qemu:///system'
        assert UNREACHABLE in summary[name]['why']
        assert running(find(conn, name)) and find(lab_host.conn, name) is None
    assert summary[shutoff]['ok'] and summary[shutoff]['mode'] == 'offline'
    moved = find(conn, shutoff)
    assert moved is not None and moved.isPersistent() and not moved.isActive()
    assert find(lab_host.conn, shutoff) is None
    # one kvm_migrate_guests task did it; run again, there is nothing left to move
    task = result.task('Migrate every guest of the source to the best candidate')
    assert task['changed'] is True and sorted(task['summary']['moved']) == sorted(running_names + [shutoff])
    again = playbook(os.path.join(ROOT, 'playbooks', 'drain_host.yml'), extra_vars=dict(
        drain_source_uri=LAB_URI, drain_candidates='qemu:///system', drain_exclude=','.join(leftovers)))
    assert again.rc == 0, again.stdout[-4000:]
    task = again.task('Migrate every guest of the source to the best candidate')
    assert task['changed'] is False and task['guests'] == [] and again.task('Show the summary')['drain_summary'] == []
