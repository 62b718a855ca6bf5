"""kvm_migrate's logic: options -> flags/params, preflight on libvirt's test driver, placement, job watching."""

import os
import time

import libvirt
import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _migrate
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import (
    ARGUMENT_SPEC,
    GuestSnapshot,
    JobWatcher,
    Migration,
    argument_problems,
    choose_destination,
    flag_names,
    migration_flags,
    migration_params,
    preflight,
)


def params(**overrides):
    out = {}
    for key, spec in ARGUMENT_SPEC.items():
        out[key] = spec.get('default')
    out.update(name='web01', destination_uri='test:///default')
    out.update(overrides)
    return out


# ------------------------------------------------------------ options
@pytest.mark.parametrize('overrides, fragment', [
    (dict(tunnelled=True), 'tunnelled requires p2p'),
    (dict(tunnelled=True, p2p=True, tls=True), 'tls and tunnelled are exclusive'),
    (dict(tunnelled=True, p2p=True, migrate_uri='tcp://x'), 'migrate_uri cannot be used with tunnelled'),
    (dict(method='offline', persistent=False), 'persistent must stay true'),
    (dict(method='offline', copy_storage='all'), 'copy_storage applies to live migration only'),
    (dict(method='offline', bandwidth=10), 'bandwidth applies to live migration only'),
    (dict(method='offline', tls=True), 'tls applies to live migration only'),
    (dict(bandwidth=0), 'bandwidth must be a positive'),
    (dict(max_downtime=-1), 'max_downtime must be a positive'),
    (dict(timeout=0), 'timeout must be a positive'),
    (dict(parallel=0), 'parallel must be between'),
    (dict(auto_converge_initial=20), 'auto_converge_initial needs auto_converge'),
    (dict(auto_converge=True, auto_converge_increment=120), 'between 1 and 100'),
    (dict(postcopy_after_precopy=True), 'postcopy_after_precopy needs postcopy'),
    (dict(timeout_action='suspend'), 'timeout_action suspend needs a timeout'),
    (dict(destination_uri=None, dest_candidates=[]), 'dest_candidates is empty'),
])
def test_argument_problems(overrides, fragment):
    problems = argument_problems(params(**overrides))
    assert any(fragment in p for p in problems), problems


def test_argument_problems_all_at_once():
    problems = argument_problems(params(tunnelled=True, bandwidth=0, timeout_action='postcopy'))
    assert len(problems) == 3


def test_valid_options_have_no_problems():
    assert argument_problems(params(p2p=True, tunnelled=True, bandwidth=100, timeout=60,
                                    auto_converge=True, auto_converge_initial=30,
                                    auto_converge_increment=10)) == []


@pytest.mark.parametrize('overrides, present, absent', [
    ({}, ['LIVE', 'PERSIST_DEST', 'UNDEFINE_SOURCE', 'ABORT_ON_ERROR'],
     ['UNSAFE', 'TLS', 'TUNNELLED', 'PEER2PEER', 'OFFLINE', 'NON_SHARED_DISK']),
    (dict(unsafe=True), ['UNSAFE'], []),
    (dict(tls=True), ['TLS', 'LIVE'], ['TUNNELLED']),
    (dict(p2p=True, tunnelled=True), ['PEER2PEER', 'TUNNELLED'], ['TLS']),
    (dict(persistent=False, undefine_source=False), ['LIVE'], ['PERSIST_DEST', 'UNDEFINE_SOURCE']),
    (dict(method='offline'), ['OFFLINE', 'PERSIST_DEST', 'UNDEFINE_SOURCE'], ['LIVE', 'ABORT_ON_ERROR']),
    (dict(copy_storage='all'), ['NON_SHARED_DISK'], ['NON_SHARED_INC']),
    (dict(copy_storage='incremental'), ['NON_SHARED_INC'], ['NON_SHARED_DISK']),
    (dict(auto_converge=True, compressed=True, parallel=4), ['AUTO_CONVERGE', 'COMPRESSED', 'PARALLEL'], []),
    (dict(postcopy=True), ['POSTCOPY'], []),
    (dict(timeout=10, timeout_action='postcopy'), ['POSTCOPY'], []),
])
def test_flags(overrides, present, absent):
    names = flag_names(migration_flags(params(**overrides)))
    for name in present:
        assert name in names
    for name in absent:
        assert name not in names


def test_unsafe_only_when_named():
    every_other = params(p2p=True, tunnelled=True, copy_storage='all', auto_converge=True, postcopy=True,
                         compressed=True, persistent=True)
    assert not migration_flags(every_other) & libvirt.VIR_MIGRATE_UNSAFE


def test_typed_params():
    out = migration_params(params(migrate_uri='tcp://10.0.0.2', listen_address='10.0.0.2', bandwidth=100,
                                  auto_converge=True, auto_converge_initial=30, auto_converge_increment=5,
                                  parallel=4), dest_name='renamed')
    assert out == {
        libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://10.0.0.2',
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '10.0.0.2',
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 30,
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT: 5,
        libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4,
        libvirt.VIR_MIGRATE_PARAM_DEST_NAME: 'renamed',
    }
    assert migration_params(params()) == {}


# ------------------------------------------------------------ placement
def _report(uri, ok, free, problems=()):
    return dict(uri=uri, ok=ok, free_memory_bytes=free, problems=list(problems), notes=[])


@pytest.mark.parametrize('reports, chosen', [
    ([_report('a', True, 1), _report('b', True, 5), _report('c', True, 3)], 'b'),
    ([_report('a', True, 5), _report('b', True, 5)], 'a'),
    ([_report('a', False, 9, ['full']), _report('b', True, 1)], 'b'),
    ([_report('a', False, 9, ['x']), _report('b', False, 1, ['y'])], None),
])
def test_choose_destination(reports, chosen):
    best, reason = choose_destination(reports)
    assert (best['uri'] if best else None) == chosen
    for report in reports:
        if not report['ok']:
            assert report['uri'] in reason and report['problems'][0] in reason


# ------------------------------------------------------------ preflight on the test driver
DEST_TEMPLATE = """<?xml version="1.0"?>
<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
       <active>2</active><mhz>2400</mhz><model>x86_64</model></cpu>
  <memory>8388608</memory>
  {domains}
  {networks}
  {pools}
</node>
"""

TAKEN = """<domain type='test'><name>web01</name><uuid>99999999-0000-4000-8000-000000000001</uuid>
  <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"""
UUID_TAKEN = """<domain type='test'><name>other</name><uuid>4e1a2b3c-0000-4000-8000-000000000001</uuid>
  <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"""
DEFAULT_NET = "<network><name>default</name><bridge name='virbr0'/></network>"
IMAGES = """<pool type='dir'><name>images</name><target><path>{path}</path></target>
  <volume type='file'><name>web01.qcow2</name><capacity unit='GiB'>8</capacity>
  <target><path>{path}/web01.qcow2</path><format type='qcow2'/></target></volume>
  <volume type='file'><name>install.iso</name><capacity unit='MiB'>8</capacity>
  <target><path>{path}/install.iso</path></target></volume></pool>"""


@pytest.fixture
def make_dest(tmp_path, fake_module):
    made = []

    def make(domains='', networks='', pools=''):
        path = tmp_path / ('dest%d.xml' % len(made))
        path.write_text(DEST_TEMPLATE.format(domains=domains, networks=networks, pools=pools))
        cli = LibvirtClient(fake_module({}), uri='test://%s' % path)
        made.append(cli)
        return cli
    yield make
    for cli in made:
        cli.close()


@pytest.fixture
def web01(client):
    return GuestSnapshot(client, client.find_domain('web01'))


def test_snapshot_lists_files_and_networks(web01):
    assert web01.files == [('disk vda', '/var/lib/libvirt/images/web01.qcow2'), ('disk sda', '/tmp/install.iso')]
    assert web01.interfaces == [('network', 'default')]
    assert web01.max_memory_kib == 1024 * 1024 and web01.active


def test_preflight_reports_every_problem_at_once(web01, make_dest):
    dest = make_dest(domains=TAKEN)
    report = preflight(params(), web01, None, dest, 'web01')
    problems = report['problems']
    assert not report['ok']
    assert any('a guest named web01 already exists' in p for p in problems)
    assert any('not enough free memory' in p for p in problems)   # the test driver reports 0 free
    assert any('/var/lib/libvirt/images/web01.qcow2 is not visible' in p for p in problems)
    assert any('/tmp/install.iso is not visible' in p for p in problems)
    assert any('network default does not exist' in p for p in problems)
    assert len(problems) == 5, problems


def test_preflight_uuid_and_same_host(web01, make_dest):
    dest = make_dest(domains=UUID_TAKEN)
    report = preflight(params(), web01, dict(uri=('qemu', 'hv01', '/system'), driver='qemu', hostname='hv01', uuid='host-uuid'),
                       dest, 'web01')
    assert any('UUID 4e1a2b3c-0000-4000-8000-000000000001 is already used' in p and 'other' in p
               for p in report['problems'])


def test_preflight_storage_and_network_present(web01, make_dest):
    dest = make_dest(networks=DEFAULT_NET, pools=IMAGES.format(path='/var/lib/libvirt/images'))
    report = preflight(params(), web01, None, dest, 'web01')
    # only the ISO (another directory) and the memory of the test driver remain
    assert [p for p in report['problems'] if 'memory' not in p] == [
        'disk sda: /tmp/install.iso is not visible on the destination (no active storage pool there holds it)'
        ' and copy_storage is not set']
    assert any('not compared' in n for n in report['notes'])   # the test driver cannot compare CPUs


EMPTY_POOL = """<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"""


def test_preflight_copy_storage_needs_an_image_or_a_pool(web01, make_dest):
    dest = make_dest(networks=DEFAULT_NET)
    report = preflight(params(copy_storage='all'), web01, None, dest, 'web01')
    copy = [p for p in report['problems'] if 'copy_storage needs' in p]
    assert copy == [
        'disk vda: copy_storage needs /var/lib/libvirt/images/web01.qcow2 on the destination, or an active storage '
        'pool there whose target is /var/lib/libvirt/images so that libvirt can create it',
        'disk sda: copy_storage needs /tmp/install.iso on the destination, or an active storage pool there whose '
        'target is /tmp so that libvirt can create it']


def test_preflight_copy_storage_reuses_or_creates(web01, make_dest):
    pools = IMAGES.format(path='/var/lib/libvirt/images') + EMPTY_POOL.format(name='tmp', path='/tmp')
    dest = make_dest(networks=DEFAULT_NET, pools=pools)
    report = preflight(params(copy_storage='all'), web01, None, dest, 'web01')
    assert not any('copy_storage' in p for p in report['problems'])
    assert any('into the image already at that path' in n for n in report['notes'])
    assert any('libvirt creates the image in pool tmp' in n for n in report['notes'])


def test_preflight_offline_ignores_memory(web01, make_dest):
    dest = make_dest(networks=DEFAULT_NET, pools=IMAGES.format(path='/var/lib/libvirt/images'))
    report = preflight(params(method='offline'), web01, None, dest, 'web01')
    assert not any('memory' in p for p in report['problems'])


def test_preflight_unreachable(web01, fake_module):
    dest = LibvirtClient(fake_module({}), uri='test:///nonexistent/file.xml')
    report = preflight(params(), web01, None, dest, 'web01')
    assert not report['ok'] and report['problems'][0].startswith('destination unreachable: ')


# ------------------------------------------------------------ the module run, check mode, idempotence
def test_run_check_mode_fails_preflight_without_writes(fake_module, node_uri, make_dest):
    dest = make_dest(domains=TAKEN)
    module = fake_module(params(destination_uri=dest.uri, uri=node_uri), check_mode=True)
    src = LibvirtClient(module)
    try:
        with pytest.raises(KvmError) as err:
            Migration(module, src, clients=[dest]).run()
        assert err.value.msg.startswith('preflight failed for guest web01, nothing was changed: ')
        assert err.value.facts['changed'] is False and len(err.value.facts['problems']) == 5
        assert src.find_domain('web01').isActive()
    finally:
        src.close()


def test_run_idempotent_when_already_there(fake_module, make_dest, tmp_path):
    # the source does not have the guest; the destination runs it
    empty = tmp_path / 'empty.xml'
    empty.write_text(DEST_TEMPLATE.format(domains='', networks='', pools=''))
    dest = make_dest(domains=TAKEN.replace('web01', 'moved'))
    module = fake_module(params(name='moved', destination_uri=dest.uri, uri='test://%s' % empty))
    src = LibvirtClient(module)
    try:
        result = Migration(module, src, clients=[dest]).run()
    finally:
        src.close()
    assert result['changed'] is False and result['destination_uri'] == dest.uri
    assert 'already running' in result['msg'] and result['domain']['name'] == 'moved'


def test_run_guest_nowhere(fake_module, make_dest, tmp_path):
    empty = tmp_path / 'empty.xml'
    empty.write_text(DEST_TEMPLATE.format(domains='', networks='', pools=''))
    dest = make_dest()
    module = fake_module(params(name='ghost', destination_uri=dest.uri, uri='test://%s' % empty))
    src = LibvirtClient(module)
    try:
        with pytest.raises(KvmError, match='guest ghost not found on the source'):
            Migration(module, src, clients=[dest]).run()
    finally:
        src.close()


def test_invalid_options_fail_before_connecting(fake_module):
    module = fake_module(params(tunnelled=True, uri='qemu+tcp://192.0.2.1/system'))

    class NoConnect(object):
        uri = 'qemu+tcp://192.0.2.1/system'

        @property
        def conn(self):
            raise AssertionError('connected')
    with pytest.raises(KvmError, match='invalid options: tunnelled requires p2p'):
        Migration(module, NoConnect(), clients=[]).run()


# ------------------------------------------------------------ job watching
class FakeDom(object):
    def __init__(self, stats):
        self.stats = list(stats)
        self.calls = []

    def jobStats(self, flags=0):
        return self.stats.pop(0) if len(self.stats) > 1 else self.stats[0]

    def abortJob(self):
        self.calls.append('abort')

    def suspend(self):
        self.calls.append('suspend')

    def migrateStartPostCopy(self, flags=0):
        self.calls.append('postcopy')

    def migrateSetMaxDowntime(self, ms, flags=0):
        self.calls.append('downtime %d' % ms)


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _stats(iteration, processed=100, elapsed=1000):
    return dict(type=libvirt.VIR_DOMAIN_JOB_UNBOUNDED, memory_iteration=iteration, data_processed=processed,
                data_total=1000, data_remaining=900, time_elapsed=elapsed, memory_dirty_rate=7)


@pytest.mark.parametrize('action, expected', [
    ('abort', ['abort']), ('suspend', ['suspend']), ('postcopy', ['postcopy']),
])
def test_timeout_action_applied_once(action, expected):
    dom = FakeDom([_stats(1)])
    clock = Clock()
    watcher = JobWatcher(dom, params(timeout=10, timeout_action=action), clock=clock)
    watcher.started = 0.0
    for now in (1, 5, 10, 11, 12):
        clock.now = now
        watcher.poll_once()
    assert dom.calls == expected
    assert watcher.timed_out and len(watcher.samples) == 5
    # the module's own pause clock starts when suspend succeeds (libvirt's downtime may not cover it)
    assert watcher.suspended_at == (10 if action == 'suspend' else None)
    assert watcher.last['average_bandwidth_bps'] == 100


def test_no_timeout_no_action():
    dom = FakeDom([_stats(1)])
    watcher = JobWatcher(dom, params(), clock=Clock())
    watcher.started = 0.0
    watcher.poll_once()
    assert dom.calls == [] and not watcher.timed_out


def test_max_downtime_and_postcopy_after_first_pass():
    dom = FakeDom([_stats(1), _stats(1), _stats(2), _stats(3)])
    watcher = JobWatcher(dom, params(max_downtime=50, postcopy=True, postcopy_after_precopy=True), clock=Clock())
    watcher.started = 0.0
    for _step in range(4):
        watcher.poll_once()
    assert dom.calls == ['downtime 50', 'postcopy']


def test_no_job_is_not_a_sample():
    dom = FakeDom([dict(type=libvirt.VIR_DOMAIN_JOB_NONE)])
    watcher = JobWatcher(dom, params(timeout=1), clock=Clock())
    watcher.started = 0.0
    watcher.poll_once()
    assert watcher.samples == [] and dom.calls == []


def test_samples_are_capped():
    dom = FakeDom([_stats(1)])
    watcher = JobWatcher(dom, params(), clock=Clock())
    watcher.started = 0.0
    for _step in range(_migrate.MAX_SAMPLES + 30):
        watcher.poll_once()
    assert len(watcher.samples) == _migrate.MAX_SAMPLES


def test_run_returns_the_result_and_raises_nothing():
    dom = FakeDom([_stats(1)])
    watcher = JobWatcher(dom, params(poll_interval=0.05))
    assert watcher.run(lambda: 'moved') == 'moved' and watcher.error is None

    def boom():
        raise libvirt.libvirtError('nope')
    watcher = JobWatcher(dom, params(poll_interval=0.05))
    watcher.run(boom)
    assert isinstance(watcher.error, libvirt.libvirtError)


def test_module_file_is_thin():
    path = os.path.join(os.path.dirname(_migrate.__file__), '..', 'modules', 'kvm_migrate.py')
    with open(path) as handle:
        code = handle.read().split("'''")[-1]
    assert 'def main' in code and len([line for line in code.splitlines() if line.strip()]) <= 10


def test_samples_keep_the_throttle_and_progress_the_page_size():
    stats = dict(_stats(4), memory_page_size=4096, auto_converge_throttle=60)
    watcher = JobWatcher(FakeDom([stats]), params(), clock=Clock())
    watcher.started = 0.0
    watcher.poll_once()
    assert watcher.samples[0]['auto_converge_throttle'] == 60 and watcher.samples[0]['memory_dirty_rate'] == 7
    assert watcher.last['memory_page_size'] == 4096


def test_convergence_note():
    last = dict(memory_iteration=5, data_remaining=3 * _migrate.MIB, memory_dirty_rate=2560, memory_page_size=4096)
    assert _migrate.convergence_note(last) == ' (pass 5, 3.0 MiB left, the guest dirtied 10.0 MiB/s in the last pass)'
    assert _migrate.convergence_note(dict(memory_iteration=1, memory_dirty_rate=0)) == ' (pass 1)'
    assert _migrate.convergence_note({}) == ''


def test_abort_uses_the_given_call_and_survives_its_failure():
    calls = []
    dom = FakeDom([_stats(1)])
    watcher = JobWatcher(dom, params(timeout=1), clock=Clock(), abort_job=lambda: calls.append('fresh'))
    watcher.started = 0.0
    watcher.clock.now = 2
    watcher.poll_once()
    assert calls == ['fresh'] and dom.calls == [] and watcher.aborted

    def unreachable():
        raise KvmError('cannot connect to libvirt at qemu:///system')
    watcher = JobWatcher(dom, params(), clock=Clock(), abort_job=unreachable)
    watcher.started = 0.0
    watcher.abort()
    assert watcher.events == ['0.0s: abort failed: cannot connect to libvirt at qemu:///system']


def test_short_job_is_seen_before_the_first_full_interval():
    # a job shorter than poll_interval still gets max_downtime: the watcher polls eagerly until it sees the job
    dom = FakeDom([_stats(1)])
    watcher = JobWatcher(dom, params(poll_interval=30, max_downtime=200))
    began = time.monotonic()
    watcher.run(lambda: time.sleep(0.3) or 'done')
    assert time.monotonic() - began < 5
    assert 'downtime 200' in dom.calls and len(watcher.samples) == 1


def test_completed_job_closes_the_samples():
    watcher = JobWatcher(FakeDom([{}]), params(), clock=Clock())
    watcher.record(dict(_stats(3, processed=4096), type=libvirt.VIR_DOMAIN_JOB_COMPLETED))
    assert watcher.samples[-1]['data_processed'] == 4096 and watcher.samples[-1]['memory_iteration'] == 3


# ------------------------------------------------------------ the destination is never the source
LOCAL = frozenset(['localhost', 'hv01', 'hv01.example.com'])


@pytest.mark.parametrize('one, other', [
    ('qemu:///system', 'qemu:///system'),
    ('qemu:///system', 'qemu+ssh://root@localhost/system'),
    ('qemu:///system', 'qemu+tcp://127.0.0.1/system'),
    ('qemu:///system', 'qemu+tls://[::1]/system'),
    ('qemu:///system', 'qemu+ssh://hv01/system'),
    ('qemu:///system', 'qemu+unix:///system?socket=/run/libvirt/libvirt-sock'),
    ('qemu:///system', 'qemu+ssh://HV01.example.com./system/'),
    ('qemu:///system', 'qemu+ssh://hv01:22//system'),
    ('qemu:///system', 'qemu+tcp://127.0.0.1:16509/system'),
    ('qemu+ssh://root@hv02/system', 'qemu+libssh2://admin@HV02:22/system'),
    ('qemu+ssh://hv02/system', 'qemu+ssh://hv02'),
    ('test:///default', 'test:///default'),
])
def test_canonical_uri_same(one, other):
    assert _migrate.canonical_uri(one, LOCAL) == _migrate.canonical_uri(other, LOCAL)


@pytest.mark.parametrize('one, other', [
    ('qemu:///system', 'qemu:///session'),
    ('qemu:///system', 'qemu+ssh://hv02/system'),
    ('qemu:///system', 'test:///system'),
    ('test:///default', 'test:///tmp/node.xml'),
    ('qemu:///system', 'qemu+tcp://127.0.0.1:1/system'),
    ('qemu:///system', 'qemu+ssh://localhost:2222/system'),
])
def test_canonical_uri_different(one, other):
    assert _migrate.canonical_uri(one, LOCAL) != _migrate.canonical_uri(other, LOCAL)


def test_canonical_uri_knows_this_machine():
    import socket
    assert _migrate.canonical_uri('qemu+ssh://%s/system' % socket.gethostname()) == _migrate.canonical_uri('qemu:///system')


@pytest.mark.parametrize('overrides, message', [
    (dict(uri='qemu:///system', destination_uri='qemu+ssh://localhost/system'), '^destination_uri: is the source hypervisor'),
    (dict(uri='qemu:///system', destination_uri='qemu+tcp://127.0.0.1:16509/system'), '^destination_uri: is the source hypervisor'),
    (dict(uri='qemu+ssh://hv02/system', destination_uri='qemu+libssh2://root@HV02.:22/system/'), '^destination_uri: is the source'),
    (dict(uri='test:///default', destination_uri='test:///default'), '^destination_uri: is the source hypervisor'),
    (dict(destination_uri='test+ext:///default?command=/bin/sh'), '^destination_uri: the ext transport'),
    (dict(destination_uri='qemu+ssh://hv02/system?netcat=/tmp/x'), '^destination_uri: the ext transport'),
    (dict(destination_uri='qemu+ssh://hv02/system?COMMAND=/tmp/x'), '^destination_uri: the ext transport'),
    (dict(destination_uri='xen://hv02/'), "^destination_uri: driver 'xen' is not supported"),
    (dict(destination_uri='qemu+ssh://hv02/system\n'), '^destination_uri: must not contain whitespace'),
    (dict(destination_uri='qemu+ssh://hv02:99999/system'), '^destination_uri: not a valid URI'),
    (dict(destination_uri=None, dest_candidates=['qemu+ssh://hv02/system', 'qemu+ext://hv03/system?command=/x']),
     r'^dest_candidates\[1\]: the ext transport'),
    (dict(uri='qemu:///system', destination_uri=None, dest_candidates=['qemu:///system', 'qemu+ssh://localhost/system']),
     '^dest_candidates: every candidate is the source'),
    (dict(dest_name='web01\nx'), '^dest_name: invalid guest name'),
    (dict(listen_address='0.0.0.0;id'), '^listen_address: invalid DNS name'),
    (dict(migrate_uri='tcp://10.0.0.2 -o x'), '^migrate_uri: must be a migration URI'),
])
def test_validate_destinations_refuses(overrides, message):
    prm = params(**overrides)
    with pytest.raises(KvmError, match=message):
        _migrate.validate_destinations(prm, prm.get('uri') or 'qemu+ssh://hv01/system')


def test_validate_destinations_ext_opt_in_and_mixed_candidates():
    prm = params(destination_uri='test+ext:///default?command=/bin/true', uri_allow_ext=True)
    _migrate.validate_destinations(prm, 'qemu:///system')
    # a drain lists every host, the source among them: that one is rejected by the preflight, not fatal
    prm = params(destination_uri=None, dest_candidates=['qemu:///system', 'qemu+ssh://hv02/system'])
    _migrate.validate_destinations(prm, 'qemu:///system')


def ident(uri, hostname=None, uuid=None):
    key = _migrate.canonical_uri(uri, LOCAL)
    return dict(uri=key, driver=key[0], hostname=hostname, uuid=uuid)


@pytest.mark.parametrize('dest, reason', [
    (ident('qemu+ssh://localhost/system'), 'the same hypervisor as the source URI'),
    (ident('qemu+ssh://10.0.0.9/system', uuid='4c4c4544-0042-3510-8052-b4c04f4e4e32'), 'host UUID 4c4c4544'),
    (ident('qemu+ssh://10.0.0.9/system', hostname='hv01.example.com'), 'hostname hv01.example.com'),
    (ident('qemu+ssh://10.0.0.9/system', hostname='hv02', uuid='other'), None),
])
def test_same_host(dest, reason):
    source = ident('qemu:///system', hostname='hv01.example.com', uuid='4c4c4544-0042-3510-8052-b4c04f4e4e32')
    got = _migrate.same_host(source, dest)
    assert (got is None) if reason is None else (reason in got), got


def test_same_host_ignores_the_test_drivers_hostname():
    """Every test-driver instance reports this machine's hostname; only its URI identifies it."""
    assert _migrate.same_host(ident('test:///a.xml', hostname='h'), ident('test:///b.xml', hostname='h')) is None


class _Conn(object):
    def __init__(self, caps, sysinfo):
        self.caps, self.sysinfo = caps, sysinfo

    def getCapabilities(self):
        return self.caps

    def getSysinfo(self, _flags):
        if self.sysinfo is None:
            raise libvirt.libvirtError('no sysinfo')
        return self.sysinfo


class _Client(object):
    def __init__(self, conn):
        self.conn = conn


@pytest.mark.parametrize('caps, sysinfo, expected', [
    ('<capabilities><host><uuid>ABC-1</uuid></host></capabilities>', None, 'abc-1'),
    ('<capabilities><host/></capabilities>',
     "<sysinfo type='smbios'><system><entry name='uuid'>DEF-2</entry></system></sysinfo>", 'def-2'),
    ('<capabilities><host><uuid>03000200-0400-0500-0006-000700080009</uuid></host></capabilities>', None, None),
    ('<capabilities><host/></capabilities>', None, None),
])
def test_host_uuid_from_capabilities_or_sysinfo(caps, sysinfo, expected):
    assert _migrate._host_uuid(_Client(_Conn(caps, sysinfo))) == expected


def test_preflight_never_connects_to_the_source(web01, fake_module, node_uri):
    source = dict(uri=_migrate.canonical_uri(node_uri), driver='test', hostname=None, uuid=None)

    class NoConnect(object):
        uri = node_uri

        @property
        def conn(self):
            raise AssertionError('connected')
    report = preflight(params(), web01, source, NoConnect(), 'web01')
    assert not report['ok']
    assert report['problems'] == ['the destination is the source host itself (the same hypervisor as the source URI '
                                  'once normalized: test://%s)' % _migrate.canonical_uri(node_uri)[2]]


def test_preflight_same_host_by_uuid(web01, make_dest, monkeypatch):
    dest = make_dest()
    monkeypatch.setattr(_migrate, '_host_uuid', lambda client: 'same-uuid')
    source = dict(uri=('qemu', 'hv01', '/system'), driver='qemu', hostname='hv01', uuid='same-uuid')
    report = preflight(params(), web01, source, dest, 'web01')
    assert 'the destination is the source host itself (host UUID same-uuid)' in report['problems']


def test_run_refuses_dest_equal_to_source_before_connecting(fake_module, node_uri):
    module = fake_module(params(uri=node_uri, destination_uri='test://' + node_uri[len('test://'):].replace('/', '//')))

    class NoConnect(object):
        uri = node_uri

        @property
        def conn(self):
            raise AssertionError('connected')
    with pytest.raises(KvmError, match='^destination_uri: is the source hypervisor'):
        Migration(module, NoConnect(), clients=[]).run()


def test_run_with_the_source_among_candidates_rejects_it(fake_module, node_uri, make_dest):
    dest = make_dest(domains=TAKEN)
    source_again = LibvirtClient(fake_module({}), uri=node_uri)
    module = fake_module(params(uri=node_uri, destination_uri=None, dest_candidates=[node_uri, dest.uri]), check_mode=True)
    src = LibvirtClient(module)
    try:
        with pytest.raises(KvmError) as err:
            Migration(module, src, clients=[source_again, dest]).run()
        reports = err.value.facts['preflight']
        assert reports[0]['problems'][0].startswith('the destination is the source host itself')
        assert source_again._conn is None   # never connected
        assert src.find_domain('web01').isActive()
    finally:
        src.close()
        source_again.close()


# ------------------------------------------------------------ 1.0 contract: names, the change set
def test_deprecated_spellings_still_work_with_a_warning():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    kwargs = dict((k, v) for k, v in _migrate.MODULE_KWARGS.items() if k != 'supports_check_mode')
    spec = dict(ARGUMENT_SPEC, uri=dict(type='str'))
    checked = ArgumentSpecValidator(spec, **kwargs).validate(
        dict(name='web01', dest_uri='qemu+ssh://hv02/system', mode='offline'))
    assert checked.error_messages == []
    assert checked.validated_parameters['destination_uri'] == 'qemu+ssh://hv02/system'
    assert checked.validated_parameters['method'] == 'offline'
    deprecated = sorted((d['msg'].split("'")[1], d['version'], d['collection_name']) for d in checked._deprecations)
    assert deprecated == [('dest_uri', '2.0.0', 'kvmops.kvm'), ('mode', '2.0.0', 'kvmops.kvm')]


def test_check_mode_records_the_migration_and_moves_nothing(fake_module, node_uri, make_dest, monkeypatch):
    dest = make_dest()
    monkeypatch.setattr(_migrate, 'preflight', lambda prm, guest, source, client, name: dict(
        uri=client.uri, ok=True, problems=[], notes=[]))
    module = fake_module(params(destination_uri=dest.uri, uri=node_uri), check_mode=True)
    src = LibvirtClient(module)
    try:
        result = Migration(module, src, clients=[dest]).run()
        assert src.find_domain('web01').isActive()
    finally:
        src.close()
    assert result['changed'] is True and result['pending_restart'] == []
    assert result['changes'] == [dict(scope='live', option='destination_uri', action='migrate', before=src.uri,
                                      after=dest.uri, guest='web01', dest_name='web01')]
    assert result['method'] == result['mode'] == 'live'
    assert result['msg'].startswith('would migrate web01 (live)')


class _Dom(object):
    def __init__(self, name, state, reason=0, active=True, persistent=True):
        self._name, self._state, self._reason, self.active, self.persistent = name, state, reason, active, persistent
        self.calls = []

    def name(self):
        return self._name

    def state(self):
        return [self._state, self._reason]

    def isActive(self):
        return self.active

    def isPersistent(self):
        return self.persistent

    def resume(self):
        self.calls.append('resume')
        self._state = libvirt.VIR_DOMAIN_RUNNING

    def destroy(self):
        self.calls.append('destroy')
        self.active = False

    def undefine(self):
        self.calls.append('undefine')


def test_rollback_reports_what_it_changed_as_entries(fake_module, monkeypatch):
    source = _Dom('web01', libvirt.VIR_DOMAIN_PAUSED, reason=libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
    left = _Dom('web01', libvirt.VIR_DOMAIN_PAUSED)

    class Source(object):
        uri = 'qemu:///system'

        @staticmethod
        def find_domain(name):
            return source

        @staticmethod
        def errors(what):
            import contextlib
            return contextlib.nullcontext()

    class Fresh(object):
        def __init__(self, module, uri):
            self.conn = self

        @staticmethod
        def lookupByUUIDString(uuid):
            return left

        def close(self):
            pass

    class Dest(object):
        uri = 'qemu+ssh://hv02/system'

    class Guest(object):
        state, config_xml, uuid = 'running', None, 'a-uuid'

    monkeypatch.setattr(_migrate, 'LibvirtClient', Fresh)
    module = fake_module(params(destination_uri=Dest.uri))
    migration = Migration(module, Source(), clients=[])
    out = migration.verify_rollback(Guest(), Dest())
    assert source.calls == ['resume'] and left.calls == ['destroy', 'undefine']
    assert [(c['scope'], c['option'], c['action']) for c in out['changes']] == [
        ('live', 'state', 'resume'), ('live', 'dest_name', 'destroy incomplete copy'),
        ('config', 'dest_name', 'undefine incomplete copy')]
    assert out['actions'] == ['resumed the guest on the source', 'removed the incomplete copy of web01 from the destination']
    assert (out['source_state'], out['destination_clean']) == ('running', True)
    assert migration.outcome()['changes'] == out['changes'] and migration.outcome()['changed'] is True


def test_failure_keeps_its_message_and_reports_only_what_the_rollback_changed(fake_module, monkeypatch):
    class Source(object):
        uri = 'qemu:///system'

    class Dest(object):
        uri = 'qemu+ssh://hv02/system'

    class Watcher(object):
        error, timed_out, aborted, last = RuntimeError('boom'), False, False, {}

    module = fake_module(params(destination_uri=Dest.uri))
    migration = Migration(module, Source(), clients=[])
    migration.migration = migration.record.record('live', 'destination_uri', 'migrate', before=Source.uri,
                                                  after=Dest.uri)
    migration.result['msg'] = 'from an earlier step'
    monkeypatch.setattr(migration, 'verify_rollback', lambda guest, dest, existing=False: dict(
        changes=[], actions=[], source_state='running', source_definition_intact=True, destination_clean=True))
    with pytest.raises(KvmError) as err:
        migration._fail(None, Dest(), Watcher())
    assert err.value.msg == ('migration of web01 to qemu+ssh://hv02/system failed: RuntimeError: boom; the guest is '
                             'running on the source with its definition intact; the destination is clean')
    assert err.value.facts['changed'] is False and err.value.facts['changes'] == []
    assert err.value.facts['method'] == err.value.facts['mode'] == 'live'
