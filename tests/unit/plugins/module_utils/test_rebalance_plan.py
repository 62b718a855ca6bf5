"""kvm_migrate_guests mode rebalance: the planner (pure, table cases), its options, and a check-mode run on the test driver."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate_guests import ARGUMENT_SPEC, option_problems
from ansible_collections.kvmops.kvm.plugins.module_utils._rebalance import Rebalance, plan_rebalance

MIB = 1024 * 1024
GIB = 1024 * MIB


def host(uri, used_mib, memory_mib=16384, real_free_mib=None, cpus=8, vcpus=0, ok=True):
    return dict(uri=uri, ok=ok, memory_bytes=memory_mib * MIB, guest_memory_bytes=used_mib * MIB,
                free_memory_bytes=None if real_free_mib is None else real_free_mib * MIB, cpus=cpus, vcpus=vcpus)


def guest(name, where, mib, allowed=('a', 'b', 'c'), vcpus=1):
    return dict(name=name, host=where, memory_bytes=mib * MIB, vcpus=vcpus, allowed=set(allowed) - {where})


def moves(plan):
    return [(m['name'], m['source'], m['destination']) for m in plan['moves']]


# (id, hosts, guests, target MiB, max_moves, max_vcpu_ratio, expected moves, stop reason starts with, spread MiB after)
CASES = [
    ('already-balanced', [host('a', 1000), host('b', 1000)], [guest('x', 'a', 1000)], 64, 10, None,
     [], 'balanced', 0),
    ('within-target', [host('a', 1000), host('b', 900)], [guest('x', 'a', 100)], 128, 10, None,
     [], 'balanced', 100),
    # a: 960 used, b: 0. The 320 MiB guest helps most (320 x (960 - 320)), then 128 or 192 (equal): the smaller
    ('two-moves-to-target', [host('a', 960), host('b', 0)],
     [guest('d256', 'a', 256), guest('d192', 'a', 192), guest('d128', 'a', 128), guest('d64', 'a', 64),
      guest('d320', 'a', 320)], 64, 10, None,
     [('d320', 'a', 'b'), ('d128', 'a', 'b')], 'balanced', 64),
    # the same, with the 320 MiB guest's storage missing on b: it never goes there
    ('preflight-refused-host-is-never-chosen', [host('a', 960), host('b', 0)],
     [guest('d256', 'a', 256), guest('d192', 'a', 192), guest('d128', 'a', 128), guest('d64', 'a', 64),
      guest('d320', 'a', 320, allowed=())], 64, 10, None,
     [('d256', 'a', 'b'), ('d192', 'a', 'b')], 'balanced', 64),
    ('max-moves-bounds-the-plan', [host('a', 4096), host('b', 0)],
     [guest('g%d' % i, 'a', 512) for i in range(8)], 0, 2, None,
     [('g0', 'a', 'b'), ('g1', 'a', 'b')], 'max_moves (2) reached', 2048),
    # a guest bigger than the gap makes nothing more even: it stays
    ('a-move-that-only-swaps-the-imbalance-is-not-made', [host('a', 1024), host('b', 0)],
     [guest('big', 'a', 1024)], 0, 10, None, [], 'no allowed move', 1024),
    # three hosts: the most loaded gives to the least loaded; then a 1 GiB guest would only swap a 1 GiB gap
    ('three-hosts-whole-guests', [host('a', 3072), host('b', 1024), host('c', 0)],
     [guest('a1', 'a', 1024), guest('a2', 'a', 1024), guest('a3', 'a', 1024), guest('b1', 'b', 1024)], 0, 10, None,
     [('a1', 'a', 'c')], 'no allowed move', 1024),
    ('three-hosts-to-both', [host('a', 3072), host('b', 512), host('c', 0)],
     [guest('a%d' % i, 'a', 512) for i in range(6)], 0, 10, None,
     [('a0', 'a', 'c'), ('a1', 'a', 'b'), ('a2', 'a', 'c')], 'no allowed move', 512),
    # the real free memory of b cannot take the guest: nothing moves
    ('real-free-memory-counts', [host('a', 2048), host('b', 0, real_free_mib=100)],
     [guest('x', 'a', 512)], 0, 10, None, [], 'no allowed move', 2048),
    # the real free memory is counted with the guests sent there before
    ('real-free-memory-counts-the-planned-arrivals', [host('a', 4096), host('b', 0, real_free_mib=1200)],
     [guest('x', 'a', 1024), guest('y', 'a', 1024), guest('z', 'a', 1024)], 0, 10, None,
     [('x', 'a', 'b')], 'no allowed move', 2048),
    ('vcpus-above-the-cpus', [host('a', 2048), host('b', 0, cpus=2)], [guest('x', 'a', 512, vcpus=4)], 0, 10, None,
     [], 'no allowed move', 2048),
    ('max-vcpu-ratio', [host('a', 2048), host('b', 0, cpus=2, vcpus=3)],
     [guest('x', 'a', 512, vcpus=2), guest('y', 'a', 512, vcpus=1)], 0, 10, 2.0,
     [('y', 'a', 'b')], 'no allowed move', 1024),
    ('unreachable-host-takes-nothing', [host('a', 2048), host('b', 0, ok=False)], [guest('x', 'a', 512)], 0, 10, None,
     [], 'fewer than two usable hosts', 0),
    # equal gains: the smaller guest moves (cheaper), then the earlier host
    ('ties-go-to-the-smaller-guest-then-the-earlier-host', [host('a', 1536), host('b', 0), host('c', 0)],
     [guest('m', 'a', 512), guest('n', 'a', 1024)], 512, 1, None,
     [('m', 'a', 'b')], 'max_moves', 1024),
    ('a-guest-moves-at-most-once', [host('a', 3000), host('b', 0)], [guest('only', 'a', 1000)], 0, 10, None,
     [('only', 'a', 'b')], 'no allowed move', 1000),
]


@pytest.mark.parametrize('hosts, guests, target, max_moves, ratio, expect, stop, spread',
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_rebalance(hosts, guests, target, max_moves, ratio, expect, stop, spread):
    plan = plan_rebalance(hosts, guests, target * MIB, max_moves, ratio)
    assert moves(plan) == expect, plan
    assert plan['stop_reason'].startswith(stop), plan['stop_reason']
    assert plan['planned_spread_bytes'] == spread * MIB, plan
    assert plan['planned_spread_bytes'] <= plan['spread_before_bytes']
    # every step narrows or keeps the spread, and the hosts' free memory adds up
    last = plan['spread_before_bytes']
    for move in plan['moves']:
        assert move['spread_after_bytes'] <= last
        last = move['spread_after_bytes']
    assert sum(h['free_bytes'] for h in plan['hosts']) == sum(h['planned_free_bytes'] for h in plan['hosts'])


def test_plan_is_deterministic_and_a_second_plan_on_its_result_moves_nothing():
    hosts = [host('a', 960), host('b', 0)]
    guests = [guest('d256', 'a', 256), guest('d192', 'a', 192), guest('d128', 'a', 128), guest('d64', 'a', 64)]
    first = plan_rebalance(hosts, guests, 64 * MIB, 10)
    assert first == plan_rebalance(hosts, list(reversed(guests)), 64 * MIB, 10)
    # apply the plan: the next run plans nothing
    used = dict(a=960, b=0)
    where = dict((g['name'], g['host']) for g in guests)
    for move in first['moves']:
        used[move['source']] -= move['memory_bytes'] // MIB
        used[move['destination']] += move['memory_bytes'] // MIB
        where[move['name']] = move['destination']
    again = plan_rebalance([host('a', used['a']), host('b', used['b'])],
                           [guest(g['name'], where[g['name']], g['memory_bytes'] // MIB) for g in guests], 64 * MIB, 10)
    assert again['moves'] == [] and again['stop_reason'].startswith('balanced')


def test_the_preflight_is_asked_only_for_the_moves_tried_best_first():
    asked = []

    def allowed(guest, uri):
        asked.append((guest['name'], uri))
        return guest['name'] != 'd320'          # e.g. its storage is not on b

    guests = [guest('d320', 'a', 320), guest('d256', 'a', 256), guest('d192', 'a', 192), guest('d64', 'a', 64)]
    plan = plan_rebalance([host('a', 832), host('b', 0)], guests, 64 * MIB, 10, allowed=allowed)
    assert moves(plan) == [('d256', 'a', 'b'), ('d192', 'a', 'b')]
    # step 1: d320 is the best move and refused, d256 the next; step 2 (a gap of 320 MiB): d320 would no longer
    # help and is not asked, d192 is the best move. Nothing else is asked.
    assert asked == [('d320', 'b'), ('d256', 'b'), ('d192', 'b')]


def test_moves_ruled_out_by_memory_or_cpus_are_reported():
    plan = plan_rebalance([host('a', 2048), host('b', 0, real_free_mib=100, cpus=2)],
                          [guest('x', 'a', 512), guest('y', 'a', 256, vcpus=4)], 0, 10)
    assert plan['moves'] == []
    assert plan['limited'] == {
        'x': ['b: not enough free memory there: 100 MiB free less 0 MiB planned there, the guest needs 512 MiB'],
        'y': ['b: not enough free memory there: 100 MiB free less 0 MiB planned there, the guest needs 256 MiB']}
    plan = plan_rebalance([host('a', 2048), host('b', 0, cpus=2)], [guest('y', 'a', 256, vcpus=4)], 0, 10)
    assert plan['limited'] == {'y': ['b: the guest has 4 vCPUs, the host 2 CPUs']}


def test_move_reasons_name_the_numbers():
    plan = plan_rebalance([host('a', 960), host('b', 0)], [guest('d256', 'a', 256)], 0, 10)
    assert plan['moves'][0]['reason'] == ('d256 (256 MiB) from a (15424 MiB free) to b (16384 MiB free): '
                                          'the spread goes from 960 to 448 MiB')


# ------------------------------------------------------------ options
def params(**overrides):
    out = dict((key, spec.get('default')) for key, spec in ARGUMENT_SPEC.items())
    out.update(uri='qemu:///system', uri_allow_ext=False, guests=None, all_guests=True, mode='rebalance',
               dest_candidates=['qemu+ssh://hv02/system'])
    out.update(overrides)
    return out


@pytest.mark.parametrize('overrides, fragment', [
    (dict(mode='move', max_moves=3), 'max_moves applies to mode rebalance only'),
    (dict(mode='move', target_spread_mib=3), 'target_spread_mib applies to mode rebalance only'),
    (dict(max_moves=0), 'max_moves must be between 1 and 1000'),
    (dict(max_moves=1001), 'max_moves must be between 1 and 1000'),
    (dict(target_spread_mib=-1), 'target_spread_mib must be a number of MiB of at least 0'),
    (dict(include_shutoff=False), 'include_shutoff does not apply to mode rebalance'),
    (dict(all_guests=False), 'name the guests to move (guests) or set all_guests: true'),
])
def test_rebalance_option_problems(overrides, fragment):
    problems = option_problems(params(**overrides), 'qemu:///system')
    assert any(fragment in p for p in problems), problems


def test_good_rebalance_options():
    assert option_problems(params(max_moves=5, target_spread_mib=0, exclude=['x']), 'qemu:///system') == []
    assert option_problems(params(mode='move', all_guests=False, guests=['a']), 'qemu:///system') == []


# ------------------------------------------------------------ a check-mode run on the test driver
def test_check_mode_rebalance_on_the_test_driver_plans_only_what_the_preflight_allows(fake_module, node_uri, tmp_path):
    """Two test-driver hosts of 8 GiB: the node fixture's running guests and an empty host. The test driver
    reports no free memory, so every helpful move is ruled out: nothing is planned, nothing moves, and the
    result says why for every guest."""
    empty = tmp_path / 'empty.xml'
    empty.write_text("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
                     "<active>4</active><mhz>2400</mhz><model>x86_64</model></cpu><memory>8388608</memory></node>")
    module = fake_module(params(uri=node_uri, dest_candidates=['test://%s' % empty, node_uri], target_spread_mib=0),
                         check_mode=True)
    src = LibvirtClient(module)
    try:
        before = sorted(d.name() for d in src.conn.listAllDomains(1))
        result = Rebalance(module, src).run()
        assert result['changed'] is False and result['rebalance']['moves'] == []
        assert result['rebalance']['stop_reason'].startswith('no allowed move'), result['rebalance']
        assert result['rebalance']['spread_before_bytes'] == 3 * GIB and result['rebalance']['spread_after_bytes'] is None
        assert sorted(result['summary']['unchanged']) == before
        assert set(result['rebalance']['refused']) == set(before)
        assert all('test://%s: not enough free memory there: 0 MiB free' % empty in ' '.join(v)
                   for v in result['rebalance']['refused'].values()), result['rebalance']['refused']
        # the second URI naming the source is dropped, not counted twice
        assert [c['uri'] for c in result['candidates']] == [node_uri, 'test://%s' % empty]
        assert sorted(d.name() for d in src.conn.listAllDomains(1)) == before
    finally:
        src.close()


def test_rebalance_needs_two_reachable_hosts(fake_module, node_uri, tmp_path):
    module = fake_module(params(uri=node_uri, dest_candidates=['test://%s' % (tmp_path / 'missing.xml')]),
                         check_mode=True)
    src = LibvirtClient(module)
    try:
        with pytest.raises(KvmError) as err:
            Rebalance(module, src).run()
        assert err.value.msg.startswith('mode rebalance needs two reachable hypervisors'), err.value.msg
    finally:
        src.close()
