"""kvm_migrate_guests' logic: options, per-guest params, placement (pure), and a check-mode run on the test driver."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate_guests import (
    ARGUMENT_SPEC,
    MigrateGuests,
    guest_params,
    guest_vcpus,
    option_problems,
    place,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse

MIB = 1024 * 1024
GIB = 1024 * MIB


def params(**overrides):
    out = dict((key, spec.get('default')) for key, spec in ARGUMENT_SPEC.items())
    out.update(uri='qemu:///system', uri_allow_ext=False, guests=['web01'], dest_candidates=['qemu+ssh://hv02/system'])
    out.update(overrides)
    return out


# ------------------------------------------------------------ options
@pytest.mark.parametrize('overrides, fragment', [
    (dict(guests=None), 'name the guests to move (guests) or set all_guests: true'),
    (dict(guests=[]), 'name the guests to move'),
    (dict(all_guests=True), 'guests and all_guests: true are exclusive'),
    (dict(guests=['a', 'b', 'a']), 'guests names a twice'),
    (dict(concurrency=0), 'concurrency must be between 1 and 32'),
    (dict(concurrency=33), 'concurrency must be between 1 and 32'),
    (dict(max_vcpu_ratio=0.0), 'max_vcpu_ratio must be a positive number'),
    (dict(tunnelled=True), 'tunnelled requires p2p'),
    (dict(offline_options=dict(persistent=False)), 'offline_options: method offline moves the definition only'),
    (dict(dest_candidates=[]), 'dest_candidates is empty'),
])
def test_option_problems(overrides, fragment):
    problems = option_problems(params(**overrides), 'qemu:///system')
    assert any(fragment in p for p in problems), problems


def test_good_options_have_no_problems():
    assert option_problems(params(), 'qemu:///system') == []
    assert option_problems(params(guests=None, all_guests=True, exclude=['keep'], bandwidth=100, auto_converge=True,
                                  timeout=60), 'qemu:///system') == []


@pytest.mark.parametrize('overrides, message', [
    (dict(guests=['ok', 'bad name/../x']), '^guests\\[1\\]: '),
    (dict(guests=None, all_guests=True, exclude=['x\ny']), '^exclude\\[0\\]: '),
    (dict(dest_candidates=['qemu+ssh://hv02/system', 'qemu+ext:///system?command=/bin/true']), '^dest_candidates\\[1\\]: '),
    (dict(dest_candidates=['qemu:///system', 'qemu+unix:///system']), '^dest_candidates: every candidate is the source'),
])
def test_bad_names_and_uris_are_refused_before_connecting(overrides, message):
    import re
    with pytest.raises(valid.ValidationError) as err:
        option_problems(params(**overrides), 'qemu:///system')
    assert re.search(message, str(err.value)), str(err.value)


def test_guest_params_live_keeps_every_shared_option():
    out = guest_params(params(bandwidth=100, auto_converge=True, unsafe=True), 'web01', 'live', 'qemu+ssh://hv02/system')
    assert (out['name'], out['method'], out['destination_uri'], out['dest_candidates'], out['dest_name']) == \
        ('web01', 'live', 'qemu+ssh://hv02/system', None, None)
    assert out['bandwidth'] == 100 and out['auto_converge'] is True and out['unsafe'] is True


def test_guest_params_offline_drops_live_options_and_takes_offline_options():
    out = guest_params(params(bandwidth=100, auto_converge=True, timeout=60, p2p=True, undefine_source=True,
                              offline_options=dict(undefine_source=False, p2p=None, unsafe=None, tunnelled=None,
                                                   persistent=None)),
                       'db01', 'offline', 'qemu+ssh://hv02/system')
    assert out['method'] == 'offline' and out['persistent'] is True
    assert out['bandwidth'] is None and out['auto_converge'] is False and out['timeout'] is None
    assert out['undefine_source'] is False          # from offline_options
    assert out['p2p'] is True                       # unset there: the shared value


@pytest.mark.parametrize('xml, expect', [
    ('<domain><vcpu>4</vcpu></domain>', 4),
    ("<domain><vcpu current='2'>8</vcpu></domain>", 2),
    ('<domain/>', 1),
    ('<domain><vcpu>lots</vcpu></domain>', 1),
    ('<domain><vcpu>-3</vcpu></domain>', 1),
])
def test_guest_vcpus(xml, expect):
    assert guest_vcpus(parse(xml, 'domain XML')) == expect


# ------------------------------------------------------------ placement
def cand(uri, free_gib, memory_gib=64, cpus=16, vcpus=0, ok=True, problems=()):
    return dict(uri=uri, ok=ok, problems=list(problems), free_memory_bytes=free_gib * GIB, memory_bytes=memory_gib * GIB,
                cpus=cpus, vcpus=vcpus)


def guest(name, memory_gib, vcpus=1, method='live', failing=()):
    reports = dict((uri, dict(uri=uri, ok=uri not in failing, problems=['preflight says no'] if uri in failing else []))
                   for uri in ('hv2', 'hv3', 'hv4'))
    return dict(name=name, method=method, memory_bytes=int(memory_gib * GIB), vcpus=vcpus, reports=reports)


def test_place_spreads_by_free_memory_counting_the_guests_placed_before():
    cands = [cand('hv2', 10), cand('hv3', 8)]
    out = place([guest('a', 4), guest('b', 4), guest('c', 4)], cands)
    # a (first, largest equal): hv2 (6 left vs 4); b: hv3 (4 left vs 2); c: hv2 (2 left) vs hv3 (0 left)
    assert {k: v[0] for k, v in out.items()} == {'a': 'hv2', 'b': 'hv3', 'c': 'hv2'}
    assert cands[0]['planned'] == ['a', 'c'] and cands[0]['planned_memory_bytes'] == 8 * GIB
    assert 'with the 1 guest(s) placed there before' in out['c'][1]


def test_place_largest_first_and_rejects_what_no_longer_fits():
    cands = [cand('hv2', 6)]
    out = place([guest('small', 2), guest('big', 5)], cands)
    assert out['big'][0] == 'hv2'                                  # placed first, though listed second
    assert out['small'][0] is None
    assert 'not enough free memory once the 1 guest(s) placed there before arrive: 1 MiB' not in out['small'][1]
    assert 'not enough free memory once the 1 guest(s) placed there before arrive: 1024 MiB left' in out['small'][1]


def test_place_weighs_vcpus():
    # equal memory; hv3 carries many vCPUs already: hv2 wins although it has a little less free memory
    cands = [cand('hv2', 30, cpus=8, vcpus=2), cand('hv3', 32, cpus=8, vcpus=28)]
    assert place([guest('a', 1, vcpus=2)], cands)['a'][0] == 'hv2'


def test_place_max_vcpu_ratio_and_vcpus_above_the_cpus():
    cands = [cand('hv2', 30, cpus=4, vcpus=7), cand('hv3', 30, cpus=2)]
    out = place([guest('a', 1, vcpus=2), guest('wide', 1, vcpus=3)], cands, max_vcpu_ratio=2.0)
    assert out['a'][0] == 'hv3'
    assert out['wide'][0] is None
    assert 'hv2 (10 vCPUs on 4 CPUs would exceed max_vcpu_ratio 2)' in out['wide'][1]
    assert 'hv3 (the guest has 3 vCPUs, the destination 2 CPUs)' in out['wide'][1]


def test_place_skips_failed_preflights_and_bad_candidates():
    cands = [cand('hv2', 30, ok=False, problems=['destination unreachable: refused']), cand('hv3', 30), cand('hv4', 60)]
    out = place([guest('a', 1, failing=('hv4',))], cands)
    assert out['a'][0] == 'hv3'
    assert 'rejected: hv2 (destination unreachable: refused); hv4 (preflight says no)' in out['a'][1]


def test_place_offline_guests_reserve_nothing_and_ignore_free_memory():
    cands = [cand('hv2', 1)]
    out = place([guest('off', 8, method='offline'), guest('on', 0.5)], cands)
    assert out['off'][0] == 'hv2' and out['on'][0] == 'hv2'
    assert cands[0]['planned_memory_bytes'] == int(0.5 * GIB)


def test_place_ties_go_to_the_earlier_candidate():
    cands = [cand('hv2', 10), cand('hv3', 10)]
    assert place([guest('a', 1)], cands)['a'][0] == 'hv2'


# ------------------------------------------------------------ a run on the test driver
def test_check_mode_run_on_the_test_driver_places_nothing_it_cannot_and_writes_nothing(fake_module, node_uri, tmp_path):
    """The test driver reports 0 free memory, so no live guest fits: each fails alone, nothing is touched."""
    dest = tmp_path / 'dest.xml'
    dest.write_text("<node><cpu><mode>host-model</mode></cpu></node>")
    module = fake_module(params(uri=node_uri, guests=['web01', 'missing'], dest_candidates=['test://%s' % dest,
                                                                                            node_uri]),
                         check_mode=True)
    src = LibvirtClient(module)
    try:
        with pytest.raises(KvmError) as err:
            MigrateGuests(module, src).run()
        facts = err.value.facts
        assert err.value.msg.startswith('2 of 2 guest(s) could not be moved and stay on the source')
        assert facts['summary']['failed'] == ['web01', 'missing'] and facts['changed'] is False
        by_name = dict((g['name'], g) for g in facts['guests'])
        assert by_name['missing']['msg'] == 'guest missing is not on the source %s, nor on any candidate' % node_uri
        assert by_name['web01']['msg'].startswith('no candidate can take guest web01, nothing was changed')
        assert [c['ok'] for c in facts['candidates']] == [True, False]
        assert facts['candidates'][1]['problems'] == ['the destination is the source host itself']
        assert facts['cpu_baseline'] is None        # the test driver reports no CPU model and computes no baseline
        assert src.find_domain('web01').isActive()
    finally:
        src.close()


# ------------------------------------------------------------ host-passthrough guests (kvm_migrate's CPU check)
class _CpuConn(object):
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def compareCPU(self, xml, flags):  # noqa: N802 (libvirt's name)
        self.asked.append(xml)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Guest(object):
    def __init__(self, mode):
        self.cpu = parse("<cpu mode='%s'/>" % mode, 'cpu')


@pytest.mark.parametrize('answer, problem, note', [
    (0, 'CPU: host-passthrough guest, and the destination host CPU lacks features of the source host CPU', None),
    (1, None, 'CPU: host-passthrough guest; the destination host CPU is identical to the source host CPU'),
    (2, None, 'CPU: host-passthrough guest; the destination host CPU is a superset of the source host CPU'),
])
def test_host_passthrough_compares_the_host_cpus(answer, problem, note):
    from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import _cpu_check
    conn = _CpuConn(answer)
    problems, notes = [], []
    _cpu_check(conn, _Guest('host-passthrough'), dict(method='live'), problems, notes,
               source_host_cpu='<cpu><arch>x86_64</arch></cpu>')
    assert conn.asked == ['<cpu><arch>x86_64</arch></cpu>']
    assert problems == ([problem] if problem else []) and notes == ([note] if note else [])


def test_host_passthrough_without_the_source_cpu_or_a_driver_that_cannot_compare():
    import libvirt
    from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import _cpu_check
    problems, notes = [], []
    conn = _CpuConn(0)
    _cpu_check(conn, _Guest('host-passthrough'), dict(method='live'), problems, notes)
    assert conn.asked == [] and problems == [] and 'libvirt checks it when the migration starts' in notes[0]
    notes = []
    _cpu_check(_CpuConn(libvirt.libvirtError('not supported')), _Guest('maximum'), dict(method='live'), problems,
               notes, source_host_cpu='<cpu/>')
    assert problems == [] and notes[0].startswith('CPU: maximum guest; the destination cannot compare host CPUs')
