# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_migrate_guests ``mode: rebalance``: even out the free memory of a set of hypervisors with live migrations.

Private module (leading underscore): free to change between releases.

The hosts are ``uri`` and ``dest_candidates``. One run:

1. **Inventory**: every host at once (reachable, memory, CPUs, free memory, its running guests with their
   maximum memory and vCPUs). A host's **free memory for guests** is its memory (``getInfo``) less the
   maximum memory of the guests running there: it depends on the guests only, not on page cache or
   balloon drivers, so a plan is the same when nothing changed (and a second run moves nothing).
2. **Plan** (:func:`plan_rebalance`, pure but for the preflight it asks): greedy moves, each the one that
   makes the free memory most even among the moves whose kvm_migrate preflight passes (CPU model, domain
   type, storage visible at the same path, networks, names, the host's real free memory). The preflight
   of a guest on a host is asked only when the plan tries that move (best first), once: a run over many
   guests and hosts preflights a few moves per step, not every guest on every host.
3. **Moves**: kvm_migrate_guests' migrations (kvm_migrate's job watching, timeout and roll-back per guest),
   ``concurrency`` at a time. Check mode stops after the plan.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import MIB, GuestSnapshot, canonical_uri, preflight, same_host
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate_guests import MAX_CONCURRENCY, Candidate, MigrateGuests, guest_params

DEFAULT_MAX_MOVES = 10
DEFAULT_TARGET_SPREAD_MIB = 1024


def _mib(value):
    return int(value) // MIB


# ------------------------------------------------------------------ the plan (pure)
def _listed(guest, dest):
    return dest in guest.get('allowed', ())


def plan_rebalance(hosts, guests, target_spread_bytes, max_moves, max_vcpu_ratio=None, allowed=_listed):
    """Plan live migrations that even out the free memory of ``hosts``; returns a dict.

    ``hosts``: dicts ``uri, ok, memory_bytes, guest_memory_bytes`` (the maximum memory of its running
    guests), ``free_memory_bytes`` (what the host reports free, None when unknown), ``cpus, vcpus``.
    ``guests``: the movable guests, dicts ``name, host`` (its URI), ``memory_bytes, vcpus``. ``allowed(guest,
    uri)`` says whether the guest may go to that host (its preflight passed); it is asked only for the moves
    tried, best first, so a caller can preflight lazily. By default it looks ``uri`` up in ``guest['allowed']``.

    A host's free memory is ``memory_bytes - guest_memory_bytes``; the spread is the most free less the
    least free. Each step takes, among every guest not moved yet and every host that may take it, the move
    that lowers the sum of the squared free memories the most (moving ``g`` bytes from a host with ``a``
    free to one with ``b`` free lowers it by ``2g(b - a - g)``: only moves with ``g < b - a`` help, and
    none of them widens the spread); ties go to the smaller guest, then the earlier host, then the name.
    A destination must have the guest's memory free for real (less what the plan sends there before),
    at least as many CPUs as the guest has vCPUs, and with ``max_vcpu_ratio`` at most that many vCPUs per
    CPU once the guest arrives. A guest moves at most once. The plan stops when the spread is at most
    ``target_spread_bytes``, after ``max_moves`` moves, or when no allowed move helps.

    Returns ``moves`` (``name, source, destination, memory_bytes, spread_after_bytes, reason``), ``hosts``
    (``uri, free_bytes, planned_free_bytes``), ``spread_before_bytes``, ``planned_spread_bytes``,
    ``stop_reason`` and ``limited`` (for each guest not moved, the hosts a helpful move to was ruled out by
    memory or CPUs, and why: ``['uri: reason']``).
    """
    usable = [h for h in hosts if h.get('ok') and h.get('memory_bytes')]
    order = dict((h['uri'], index) for index, h in enumerate(usable))
    free = dict((h['uri'], int(h['memory_bytes']) - int(h.get('guest_memory_bytes') or 0)) for h in usable)
    real = dict((h['uri'], h.get('free_memory_bytes')) for h in usable)
    cpus = dict((h['uri'], int(h.get('cpus') or 0)) for h in usable)
    vcpus = dict((h['uri'], int(h.get('vcpus') or 0)) for h in usable)
    arrived = dict((uri, 0) for uri in free)
    before = dict(free)

    def spread():
        return max(free.values()) - min(free.values()) if len(free) > 1 else 0

    spread_before = spread()
    moves = []
    moved = set()
    limited = {}
    stop = None
    if len(free) < 2:
        stop = 'fewer than two usable hosts: nothing to balance'
    candidates = sorted(guests, key=lambda g: g['name'])
    while stop is None:
        current = spread()
        if current <= target_spread_bytes:
            stop = 'balanced: the spread of free memory is %d MiB, at most the target %d MiB' % (
                _mib(current), _mib(target_spread_bytes))
            break
        if len(moves) >= max_moves:
            stop = 'max_moves (%d) reached with a spread of %d MiB (target %d MiB)' % (
                max_moves, _mib(current), _mib(target_spread_bytes))
            break
        options = []
        for guest in candidates:
            source = guest['host']
            need = int(guest.get('memory_bytes') or 0)
            if guest['name'] in moved or source not in free or need <= 0:
                continue
            guest_vcpus_ = int(guest.get('vcpus') or 0)
            for dest in free:
                if dest == source:
                    continue
                gain = need * (free[dest] - free[source] - need)
                if gain <= 0 or free[dest] - need < 0:
                    continue
                why = None
                if real[dest] is not None and real[dest] - arrived[dest] < need:
                    why = 'not enough free memory there: %d MiB free less %d MiB planned there, the guest needs %d MiB' % (
                        _mib(real[dest]), _mib(arrived[dest]), _mib(need))
                elif cpus[dest] and guest_vcpus_ > cpus[dest]:
                    why = 'the guest has %d vCPUs, the host %d CPUs' % (guest_vcpus_, cpus[dest])
                elif max_vcpu_ratio and cpus[dest] and vcpus[dest] + guest_vcpus_ > max_vcpu_ratio * cpus[dest]:
                    why = '%d vCPUs on %d CPUs would exceed max_vcpu_ratio %g' % (
                        vcpus[dest] + guest_vcpus_, cpus[dest], max_vcpu_ratio)
                if why:
                    limited.setdefault(guest['name'], {})[dest] = why
                    continue
                options.append(((gain, -need, -order[dest]), guest, source, dest, need, guest_vcpus_))
        # the best move first (a stable sort: equal keys keep the guests' name order); the preflight is
        # asked only for the moves tried, best first, until one passes
        options.sort(key=lambda option: option[0], reverse=True)
        best = None
        for option in options:
            if allowed(option[1], option[3]):
                best = option
                break
        if best is None:
            stop = 'no allowed move makes the free memory more even (spread %d MiB, target %d MiB)' % (
                _mib(current), _mib(target_spread_bytes))
            break
        _key, guest, source, dest, need, guest_vcpus_ = best
        was = (free[source], free[dest])
        free[source] += need
        free[dest] -= need
        arrived[dest] += need
        vcpus[source] -= guest_vcpus_
        vcpus[dest] += guest_vcpus_
        moved.add(guest['name'])
        after = spread()
        moves.append(dict(
            name=guest['name'], source=source, destination=dest, memory_bytes=need, spread_after_bytes=after,
            reason='%s (%d MiB) from %s (%d MiB free) to %s (%d MiB free): the spread goes from %d to %d MiB' % (
                guest['name'], _mib(need), source, _mib(was[0]), dest, _mib(was[1]), _mib(current), _mib(after))))
    return dict(moves=moves, spread_before_bytes=spread_before, planned_spread_bytes=spread(), stop_reason=stop,
                limited=dict((name, ['%s: %s' % (uri, why) for uri, why in sorted(per.items())])
                             for name, per in limited.items() if name not in moved),
                hosts=[dict(uri=uri, free_bytes=before[uri], planned_free_bytes=free[uri]) for uri in free])


def rebalance_problems(params):
    """Problems of the rebalance options (both modes: the rebalance options are refused in mode move)."""
    problems = []
    rebalance = params.get('mode') == 'rebalance'
    for key in ('max_moves', 'target_spread_mib'):
        if params.get(key) is not None and not rebalance:
            problems.append('%s applies to mode rebalance only' % key)
    if params.get('max_moves') is not None and not 1 <= params['max_moves'] <= 1000:
        problems.append('max_moves must be between 1 and 1000 migrations')
    if params.get('target_spread_mib') is not None and not 0 <= params['target_spread_mib'] <= 1 << 40:
        problems.append('target_spread_mib must be a number of MiB of at least 0')
    if rebalance and params.get('include_shutoff') is False:
        problems.append('include_shutoff does not apply to mode rebalance (it moves running guests only)')
    return problems


# ------------------------------------------------------------------ the run
class Host(Candidate):
    """One hypervisor of the rebalance: a Candidate (connection, node information) and its running guests."""

    def __init__(self, module, uri):
        Candidate.__init__(self, module, uri, dict(uri=None))
        self.running = {}
        self.stopped = set()
        self.info['guest_memory_bytes'] = None
        if self.info['ok']:
            try:
                self.read_guests()
            except KvmError as exc:
                self.info['ok'] = False
                self.info['problems'].append(exc.msg)

    def read_guests(self):
        """The running guests (name -> uuid, maximum memory, vCPUs) and the names of the defined ones."""
        conn = self.client.conn
        running = {}
        stopped = set()
        with self.client.errors('list guests'):
            doms = conn.listAllDomains(0)
        for dom in doms:
            try:
                name = dom.name()
                if not dom.isActive():
                    stopped.add(name)
                    continue
                info = dom.info()
                running[name] = dict(uuid=dom.UUIDString(), memory_bytes=int(info[1]) * 1024, vcpus=int(info[3]))
            except (libvirt.libvirtError, TypeError, ValueError, IndexError):
                continue  # went away while listed
        self.running = running
        self.stopped = stopped
        self.info['guest_memory_bytes'] = sum(g['memory_bytes'] for g in running.values())
        return self.info['guest_memory_bytes']


class Rebalance(MigrateGuests):

    def _run(self):
        params = self.params
        uris = [self.client.uri]
        for uri in params['dest_candidates']:
            if all(canonical_uri(uri) != canonical_uri(u) for u in uris):
                uris.append(uri)
        with ThreadPoolExecutor(max_workers=min(len(uris), MAX_CONCURRENCY)) as pool:
            hosts = list(pool.map(lambda uri: Host(self.module, uri), uris))
        self.candidates = hosts
        # two URIs that reach one hypervisor (host UUID, hostname) would count its guests twice
        for index, host in enumerate(hosts):
            for other in hosts[:index]:
                if host.info['ok'] and other.info['ok']:
                    reason = same_host(other.cache['ident'], host.cache['ident'])
                    if reason:
                        host.info['ok'] = False
                        host.info['problems'].append('the same hypervisor as %s (%s)' % (other.uri, reason))
        usable = [h for h in hosts if h.info['ok']]
        if len(usable) < 2:
            raise KvmError('mode rebalance needs two reachable hypervisors among uri and dest_candidates: %s' % '; '.join(
                '%s: %s' % (h.uri, '; '.join(h.info['problems'])) for h in hosts if not h.info['ok']),
                candidates=[dict(h.info) for h in hosts], changed=False, changes=[])
        results, movable = self._select(usable)
        by_uri = dict((h.uri, h) for h in usable)
        refused = {}

        def allowed(guest, uri):
            """kvm_migrate's preflight of the guest on that host, asked once, only for a move the plan tries."""
            reports = guest.setdefault('reports', {})
            if uri not in reports:
                reports[uri] = self._preflight(guest, by_uri[uri])
                if reports[uri]['problems']:
                    refused.setdefault(guest['name'], []).extend('%s: %s' % (uri, p) for p in reports[uri]['problems'])
            return reports[uri]['ok']

        plan = plan_rebalance([h.info for h in usable], movable, (params.get('target_spread_mib') if params.get(
            'target_spread_mib') is not None else DEFAULT_TARGET_SPREAD_MIB) * MIB,
            params.get('max_moves') or DEFAULT_MAX_MOVES, params.get('max_vcpu_ratio'), allowed)
        for name, reasons in plan['limited'].items():
            refused.setdefault(name, []).extend(r for r in reasons if r not in refused.get(name, []))
        # the baseline of the source (uri, hosts[0]) and the other hosts; self.candidates keeps every host to close
        self.candidates = hosts[1:]
        self.baseline = self._cpu_baseline(dict(host_cpu=hosts[0].host_cpu if hosts[0].info['ok'] else None))
        self.candidates = hosts
        by_name = dict((g['name'], g) for g in movable)
        jobs = []
        for move in plan['moves']:
            guest = by_name[move['name']]
            preflights = [guest['reports'][uri] for uri in sorted(guest['reports'])]
            base = dict(name=guest['name'], uuid=guest['uuid'], method='live', source_uri=move['source'],
                        placement=dict(chosen=move['destination'], reason=move['reason']), preflight=preflights)
            jobs.append((dict(name=guest['name'], method='live'), move['destination'], base))
        if jobs:
            workers = min(params['concurrency'], len(jobs))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='kvm_rebalance') as pool:
                for job, outcome in zip(jobs, pool.map(self._migrate_one, jobs)):
                    results[job[0]['name']] = outcome
        for guest in movable:
            if guest['name'] not in results:
                results[guest['name']] = dict(name=guest['name'], changed=False, changes=[], method='live',
                                              source_uri=guest['host'], destination_uri=guest['host'],
                                              msg='guest %s stays on %s' % (guest['name'], guest['host']))
        measured = None
        if not self.check and jobs:
            measured = {}
            for host in usable:
                try:
                    used = host.read_guests()
                except KvmError:
                    continue
                measured[host.uri] = host.info['memory_bytes'] - used
        return self._rebalance_result(plan, results, refused, measured, [m['name'] for m in plan['moves']])

    def _preflight(self, guest, dest):
        """kvm_migrate's preflight report of ``guest`` (read once from its host) on the host ``dest``."""
        host = guest['home']
        if 'snap' not in guest:
            dom = host.client.find_domain(guest['name'])
            try:
                guest['snap'] = GuestSnapshot(host.client, dom) if dom is not None else None
            except KvmError as exc:
                guest['snap'] = None
                guest['gone'] = exc.msg
        if guest['snap'] is None:
            return dict(uri=dest.uri, ok=False, notes=[], problems=[
                'the guest can no longer be read on %s: %s' % (host.uri, guest.get('gone') or 'not found')])
        gparams = guest_params(self.params, guest['name'], 'live', None)
        gparams['uri'] = host.uri
        source = dict(host.cache['ident'], host_cpu=host.host_cpu)
        # the answers that depend on the pair of hosts only are kept per pair
        cache = host.cache.setdefault(('pair', dest.uri), dict(ident=dest.cache['ident']))
        if host.host_cpu:
            cache['source_host_cpu'] = host.host_cpu
        return preflight(gparams, guest['snap'], source, dest.client, guest['name'], cache=cache)

    def _select(self, usable):
        """``(results, movable)``: the results of named guests that cannot move, and the movable guests."""
        params = self.params
        exclude = set(params.get('exclude') or [])
        if params['all_guests']:
            names = sorted(set(n for h in usable for n in h.running))
        else:
            names = list(params['guests'])
        results = {}
        movable = []
        for name in names:
            if name in exclude:
                continue
            homes = [h for h in usable if name in h.running]
            if len(homes) > 1:
                results[name] = dict(name=name, failed=True, changed=False, changes=[],
                                     msg='guest %s runs on more than one host (%s); it is not moved'
                                     % (name, ', '.join(h.uri for h in homes)))
            elif homes:
                home = homes[0]
                movable.append(dict(name=name, host=home.uri, home=home, uuid=home.running[name]['uuid'],
                                    memory_bytes=home.running[name]['memory_bytes'],
                                    vcpus=home.running[name]['vcpus']))
            elif any(name in h.stopped for h in usable):
                results[name] = dict(name=name, skipped=True, changed=False, changes=[],
                                     msg='guest %s is not running; mode rebalance moves running guests only' % name)
            else:
                results[name] = dict(name=name, failed=True, changed=False, changes=[],
                                     msg='guest %s is not on any of the hosts (%s)'
                                     % (name, ', '.join(h.uri for h in usable)))
        return results, movable

    def _rebalance_result(self, plan, results, refused, measured, moves):
        names = sorted(results)
        ordered = [results[n] for n in moves] + [results[n] for n in names if n not in moves]
        summary = dict(moved=[], unchanged=[], failed=[], skipped=[], where={}, by_destination={})
        changes = []
        for item in ordered:
            name = item['name']
            changes.extend(item.get('changes') or [])
            if item.get('failed') or item.get('skipped'):
                summary['failed' if item.get('failed') else 'skipped'].append(name)
                summary['where'][name] = item.get('source_uri') if item.get('failed') and item.get('uuid') else None
                continue
            dest = item.get('destination_uri')
            summary['moved' if item.get('changed') else 'unchanged'].append(name)
            summary['where'][name] = dest
            summary['by_destination'].setdefault(dest, []).append(name)
        spread_after = None
        if measured is not None and len(measured) > 1:
            spread_after = max(measured.values()) - min(measured.values())
        hosts = []
        for entry in plan['hosts']:
            hosts.append(dict(entry, measured_free_bytes=(measured or {}).get(entry['uri'])))
        rebalance = dict(moves=plan['moves'], hosts=hosts, spread_before_bytes=plan['spread_before_bytes'],
                         planned_spread_bytes=plan['planned_spread_bytes'], spread_after_bytes=spread_after,
                         stop_reason=plan['stop_reason'], refused=refused)
        verb = 'would move' if self.check else 'moved'
        msg = 'rebalance: %s %d guest(s); spread of free memory %d MiB, %s %d MiB; %s' % (
            verb, len(summary['moved']), _mib(plan['spread_before_bytes']),
            'planned' if spread_after is None else 'now', _mib(plan['planned_spread_bytes'] if spread_after is None
                                                               else spread_after), plan['stop_reason'])
        if summary['failed']:
            msg += '; %d failed' % len(summary['failed'])
        result = dict(changed=bool(changes) or bool(summary['moved']), changes=changes, pending_restart=[],
                      source_uri=self.client.uri, guests=ordered, summary=summary,
                      candidates=[dict(c.info) for c in self.candidates], cpu_baseline=self.baseline,
                      rebalance=rebalance)
        if summary['failed']:
            reasons = '; '.join('%s: %s' % (i['name'], i['msg']) for i in ordered if i.get('failed'))
            raise KvmError('%d guest(s) could not be moved and stay where they were (%s): %s' % (
                len(summary['failed']), msg, reasons), **result)
        result['msg'] = msg
        return result
