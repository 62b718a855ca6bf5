# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_migrate_guests: many migrations in one module run, placed across candidates, a bounded number at a time.

Private module (leading underscore): free to change between releases.

One run goes through four steps; only the last one writes:

1. **Options** (:func:`option_problems`): every contradiction, before anything connects.
2. **Inventory**: the source is read once (which guests, their state, memory, vCPUs, CPU, files,
   networks); each candidate once (reachable, free memory, memory, CPUs, vCPUs of its running guests).
   A guest that no longer runs on the source and runs on a candidate is already moved (unchanged).
3. **Placement** (:func:`place`, pure): kvm_migrate's preflight for every guest on every candidate, then
   the guests, largest first, each to the passing candidate left with the most headroom once it and the
   guests placed before it arrive (see :func:`place`).
4. **Migrations**: at most ``concurrency`` at a time, each one :class:`_migrate.Migration` on its own
   connections (one to the source per worker, one to the destination per guest), with kvm_migrate's
   job watching, timeout and roll-back. A failure is that guest's (it stays on the source, rolled back);
   the others go on. Check mode stops after the placement: every guest says where it would go.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import (
    KvmError,
    LibvirtClient,
    error_text,
    libvirt,
    one_line,
    run,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._migrate import (
    ARGUMENT_SPEC as MIGRATE_SPEC,
    MIB,
    GuestSnapshot,
    Migration,
    argument_problems,
    canonical_uri,
    host_identity,
    preflight,
    validate_destinations,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import find_text, parse, to_string

# kvm_migrate's options that apply to every guest (the per-guest ones are decided here)
PER_GUEST = ('name', 'destination_uri', 'dest_candidates', 'dest_name', 'method')
SHARED = tuple(k for k in MIGRATE_SPEC if k not in PER_GUEST)
# what an offline move can take (the rest of SHARED applies to live migrations only)
OFFLINE_OPTIONS = ('persistent', 'undefine_source', 'p2p', 'tunnelled', 'unsafe')

ARGUMENT_SPEC = dict(
    guests=dict(type='list', elements='str'),
    all_guests=dict(type='bool', default=False),
    exclude=dict(type='list', elements='str', default=[]),
    include_shutoff=dict(type='bool', default=True),
    dest_candidates=dict(type='list', elements='str', required=True),
    concurrency=dict(type='int', default=2),
    max_vcpu_ratio=dict(type='float'),
    mode=dict(type='str', choices=['move', 'rebalance'], default='move'),
    max_moves=dict(type='int'),
    target_spread_mib=dict(type='int'),
    offline_options=dict(type='dict', options=dict(
        persistent=dict(type='bool'),
        undefine_source=dict(type='bool'),
        p2p=dict(type='bool'),
        tunnelled=dict(type='bool'),
        unsafe=dict(type='bool'),
    )),
)
for _key in SHARED:
    ARGUMENT_SPEC[_key] = dict((k, v) for k, v in MIGRATE_SPEC[_key].items())

# guests vs all_guests is checked by option_problems (all_guests has a default)
MODULE_KWARGS = dict(supports_check_mode=True)

MAX_CONCURRENCY = 32
# vCPUs per host CPU that count as a full host when max_vcpu_ratio is not set (placement only)
DEFAULT_VCPU_RATIO = 4.0


# ------------------------------------------------------------------ options
def guest_params(params, name, method, destination_uri):
    """kvm_migrate's params for one guest: the shared options, live-only ones dropped for an offline move."""
    out = dict((k, params.get(k)) for k in SHARED)
    out.update(uri=params.get('uri'), uri_allow_ext=params.get('uri_allow_ext'), name=name, dest_name=None,
               method=method, destination_uri=destination_uri, dest_candidates=None)
    if method == 'offline':
        for key in SHARED:
            if key not in OFFLINE_OPTIONS and key not in ('poll_interval',):
                out[key] = MIGRATE_SPEC[key].get('default')
        out['persistent'] = True
        for key, value in (params.get('offline_options') or {}).items():
            if value is not None:
                out[key] = value
    return out


def option_problems(params, source_uri):
    """Every problem with the options, before anything connects (validation errors raise)."""
    problems = []
    guests = params.get('guests')
    if params['all_guests'] and guests is not None:
        problems.append('guests and all_guests: true are exclusive')
    elif not params['all_guests'] and not guests:
        problems.append('name the guests to move (guests) or set all_guests: true')
    seen = set()
    for index, name in enumerate(guests or []):
        valid.object_name('guests[%d]' % index, name, 'guest name')
        if name in seen:
            problems.append('guests names %s twice' % name)
        seen.add(name)
    for index, name in enumerate(params.get('exclude') or []):
        valid.object_name('exclude[%d]' % index, name, 'guest name')
    if not 1 <= params['concurrency'] <= MAX_CONCURRENCY:
        problems.append('concurrency must be between 1 and %d migrations at a time' % MAX_CONCURRENCY)
    ratio = params.get('max_vcpu_ratio')
    if ratio is not None and not 0 < ratio <= 1000:
        problems.append('max_vcpu_ratio must be a positive number of vCPUs per host CPU')
    validate_destinations(dict(params, destination_uri=None), source_uri)
    live = guest_params(params, 'x', 'live', None)
    live['dest_candidates'] = params['dest_candidates']
    problems.extend(argument_problems(live))
    offline = guest_params(params, 'x', 'offline', None)
    offline['dest_candidates'] = params['dest_candidates']
    problems.extend('offline_options: %s' % p for p in argument_problems(offline) if p not in problems)
    from ansible_collections.kvmops.kvm.plugins.module_utils._rebalance import rebalance_problems
    problems.extend(rebalance_problems(params))
    return problems


# ------------------------------------------------------------------ placement (pure)
def place(guests, candidates, max_vcpu_ratio=None):
    """Choose a destination for each guest; returns ``{name: (uri or None, reason)}``.

    ``guests``: dicts ``name, method (live|offline), memory_bytes, vcpus, reports`` (``reports``: the
    preflight report of each candidate URI). ``candidates``: dicts ``uri, ok, problems, free_memory_bytes,
    memory_bytes, cpus, vcpus`` (vCPUs of the guests running there). Each candidate gets ``planned``
    (names), ``planned_memory_bytes`` and ``planned_vcpus``.

    Guests are placed live ones first, largest memory first. A candidate can take a guest when its
    preflight passed, the guest's vCPUs do not exceed its CPUs, and (live) its free memory less the
    memory of the guests placed there before covers the guest's maximum memory and, with
    ``max_vcpu_ratio``, its vCPUs stay within that many per CPU. Among those, the one left with the most
    headroom wins: the smaller of its free share of memory and its free share of vCPUs (counted against
    CPUs x ``max_vcpu_ratio``, 4 when unset), once the guest has arrived; ties go to the earlier candidate.
    Offline moves are placed the same way but reserve nothing (the guest is not running).
    """
    ratio = max_vcpu_ratio or DEFAULT_VCPU_RATIO
    for cand in candidates:
        cand.update(planned=[], planned_memory_bytes=0, planned_vcpus=0)
    out = {}
    order = sorted(guests, key=lambda g: (g['method'] != 'live', -(g['memory_bytes'] or 0), -(g['vcpus'] or 0)))
    for guest in order:
        live = guest['method'] == 'live'
        need = guest['memory_bytes'] or 0
        scored = []
        rejected = []
        for index, cand in enumerate(candidates):
            uri = cand['uri']
            report = guest['reports'].get(uri)
            if not cand['ok']:
                rejected.append('%s (%s)' % (uri, '; '.join(cand['problems'])))
                continue
            if report is None or not report['ok']:
                rejected.append('%s (%s)' % (uri, '; '.join(report['problems'] if report else ['not checked'])))
                continue
            free_after = (cand['free_memory_bytes'] or 0) - cand['planned_memory_bytes'] - need
            vcpus_after = (cand['vcpus'] or 0) + cand['planned_vcpus'] + (guest['vcpus'] or 0)
            cpus = cand['cpus'] or 0
            problems = []
            if cpus and (guest['vcpus'] or 0) > cpus:
                problems.append('the guest has %d vCPUs, the destination %d CPUs' % (guest['vcpus'], cpus))
            if live and free_after < 0:
                problems.append('not enough free memory once the %d guest(s) placed there before arrive: %d MiB '
                                'left for them, the guest needs %d MiB'
                                % (len(cand['planned']), max(0, free_after + need) // MIB, need // MIB))
            if live and max_vcpu_ratio and cpus and vcpus_after > max_vcpu_ratio * cpus:
                problems.append('%d vCPUs on %d CPUs would exceed max_vcpu_ratio %g'
                                % (vcpus_after, cpus, max_vcpu_ratio))
            if problems:
                rejected.append('%s (%s)' % (uri, '; '.join(problems)))
                continue
            memory_share = float(free_after) / cand['memory_bytes'] if cand['memory_bytes'] else 0.0
            cpu_share = 1.0 - float(vcpus_after) / (cpus * ratio) if cpus else 0.0
            scored.append((min(memory_share, cpu_share), -index, cand, free_after, vcpus_after))
        if not scored:
            out[guest['name']] = (None, 'no candidate can take it: %s' % '; '.join(rejected))
            continue
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        headroom, _index, best, free_after, vcpus_after = scored[0]
        reason = ('%s: the most headroom once it arrives (%.0f%%: %d MiB free of %d MiB, %d vCPUs on %d CPUs, '
                  'with the %d guest(s) placed there before)' % (
                      best['uri'], headroom * 100, free_after // MIB, (best['memory_bytes'] or 0) // MIB,
                      vcpus_after, best['cpus'] or 0, len(best['planned'])))
        if len(scored) > 1:
            others = ['%s (%.0f%%)' % (item[2]['uri'], item[0] * 100) for item in scored[1:]]
            reason += '; also possible: %s' % ', '.join(others)
        if rejected:
            reason += '; rejected: %s' % '; '.join(rejected)
        best['planned'].append(guest['name'])
        if live:
            best['planned_memory_bytes'] += need
            best['planned_vcpus'] += guest['vcpus'] or 0
        out[guest['name']] = (best['uri'], reason)
    return out


def guest_vcpus(root):
    """The vCPUs a guest runs with (``<vcpu current=...>`` or ``<vcpu>``), 1 when the XML says nothing usable."""
    for path in ('vcpu/@current', 'vcpu'):
        text = find_text(root, path)
        try:
            value = int((text or '').strip())
        except ValueError:
            continue
        if 0 < value <= 65536:
            return value
    return 1


# ------------------------------------------------------------------ the run
class _GuestModule(object):
    """What kvm_migrate's Migration needs of a module, for one guest (its own params, the run's check mode)."""

    def __init__(self, module, params):
        self.params = params
        self.check_mode = module.check_mode
        self._diff = False
        self.no_log_values = module.no_log_values


class Candidate(object):
    """One destination: a planning connection, what it reports, and the preflight cache."""

    def __init__(self, module, uri, source):
        self.uri = uri
        self.host_cpu = None
        self.client = LibvirtClient(module, uri=uri)
        self.cache = {}
        self.info = dict(uri=uri, ok=False, problems=[], hostname=None, free_memory_bytes=None, memory_bytes=None,
                         cpus=None, vcpus=None)
        if canonical_uri(uri) == source['uri']:
            self.info['problems'].append('the destination is the source host itself')
            return
        try:
            conn = self.client.conn
        except KvmError as exc:
            self.info['problems'].append('destination unreachable: %s' % exc.msg)
            return
        try:
            node = conn.getInfo()
            self.info.update(memory_bytes=int(node[1]) * MIB, cpus=int(node[2]))
            self.info['free_memory_bytes'] = int(conn.getFreeMemory())
        except (libvirt.libvirtError, TypeError, ValueError, IndexError) as exc:
            self.info['problems'].append('cannot read the node information: %s' % error_text(exc))
            return
        self.info['vcpus'] = self._running_vcpus(conn)
        self.host_cpu = None
        try:
            cpu = parse(conn.getCapabilities(), 'capabilities').find('host/cpu')
            self.host_cpu = to_string(cpu) if cpu is not None else None
        except (libvirt.libvirtError, KvmError):
            pass
        self.cache['ident'] = host_identity(self.client)
        self.info['hostname'] = self.cache['ident']['hostname']
        if source.get('host_cpu'):
            self.cache['source_host_cpu'] = source['host_cpu']
        self.info['ok'] = True

    @staticmethod
    def _running_vcpus(conn):
        """vCPUs of the guests running there (one call); 0 when the driver cannot tell."""
        try:
            stats = conn.getAllDomainStats(getattr(libvirt, 'VIR_DOMAIN_STATS_VCPU', 8),
                                           getattr(libvirt, 'VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE', 1))
        except libvirt.libvirtError:
            return 0
        total = 0
        for _dom, values in stats:
            try:
                total += int(values.get('vcpu.current') or 0)
            except (TypeError, ValueError):
                continue
        return total


class MigrateGuests(object):

    def __init__(self, module, client):
        self.module = module
        self.params = module.params
        self.client = client
        self.check = bool(module.check_mode)
        self.candidates = []
        self.baseline = None
        self.local = threading.local()
        self.worker_clients = []
        self.lock = threading.Lock()

    # -- connections ---------------------------------------------------
    def _worker_source(self, uri=None):
        """This worker thread's connection to the source ``uri`` (the module's uri when None)."""
        uri = uri or self.client.uri
        clients = getattr(self.local, 'clients', None)
        if clients is None:
            clients = self.local.clients = {}
        client = clients.get(uri)
        if client is None:
            client = clients[uri] = LibvirtClient(self.module, uri=uri)
            with self.lock:
                self.worker_clients.append(client)
        return client

    def close(self):
        for client in self.worker_clients + [c.client for c in self.candidates]:
            client.close()

    # -- main ------------------------------------------------------------
    def run(self):
        problems = option_problems(self.params, self.client.uri)
        if problems:
            raise KvmError('invalid options: %s' % '; '.join(problems), problems=problems)
        try:
            return self._run()
        finally:
            self.close()

    def _source_identity(self):
        source = host_identity(self.client)
        try:
            caps = parse(self.client.conn.getCapabilities(), 'capabilities')
            cpu = caps.find('host/cpu')
            if cpu is not None:
                source['host_cpu'] = to_string(cpu)
        except (libvirt.libvirtError, KvmError):
            pass
        return source

    def _cpu_baseline(self, source):
        """The CPU every usable host (the source and the candidates) can give a guest (``baselineCPU``), or None.

        Informational: a guest defined with this CPU can move between all of them. None when a host does not
        report its CPU or the source's driver cannot compute a baseline.
        """
        hosts = [(self.client.uri, source.get('host_cpu'))] + [(c.uri, c.host_cpu) for c in self.candidates
                                                               if c.info['ok']]
        if len(hosts) < 2 or not all(xml for _uri, xml in hosts):
            return None
        try:
            xml = self.client.conn.baselineCPU([xml for _uri, xml in hosts], 0)
            root = parse(xml, 'baseline CPU')
        except (libvirt.libvirtError, KvmError):
            return None
        return dict(model=find_text(root, 'model'), vendor=find_text(root, 'vendor'), xml=xml,
                    hosts=[uri for uri, _xml in hosts])

    def _names(self):
        exclude = set(self.params.get('exclude') or [])
        if self.params['all_guests']:
            with self.client.errors('list guests'):
                names = sorted(dom.name() for dom in self.client.conn.listAllDomains(0))
        else:
            names = list(self.params['guests'])
        return [n for n in names if n not in exclude]

    def _elsewhere(self, name, uuid=None):
        """``(candidate, dom)`` of a candidate that has the guest (running, or defined), else (None, None)."""
        found = (None, None)
        for cand in self.candidates:
            if not cand.info['ok']:
                continue
            dom = cand.client.find_domain(name)
            if dom is None:
                continue
            with cand.client.errors('domain %s' % name):
                if uuid and dom.UUIDString() != uuid:
                    continue
                if dom.isActive():
                    return cand, dom
            if found[0] is None:
                found = (cand, dom)
        return found

    def _run(self):
        params = self.params
        source = self._source_identity()
        # every candidate at once: one slow or unreachable candidate costs its own connect time, not the sum
        uris = params['dest_candidates']
        with ThreadPoolExecutor(max_workers=min(len(uris), MAX_CONCURRENCY)) as pool:
            self.candidates = list(pool.map(lambda uri: Candidate(self.module, uri, source), uris))
        results = {}
        planned = []
        names = self._names()
        for name in names:
            dom = self.client.find_domain(name)
            if dom is None:
                cand, there = self._elsewhere(name)
                if there is None:
                    results[name] = dict(name=name, failed=True, changed=False, changes=[],
                                         msg='guest %s is not on the source %s, nor on any candidate'
                                         % (name, self.client.uri))
                else:
                    results[name] = self._unchanged(name, cand, there)
                continue
            with self.client.errors('domain %s' % name):
                active = bool(dom.isActive())
                persistent = bool(dom.isPersistent())
                uuid = dom.UUIDString()
            if not active:
                cand, there = self._elsewhere(name, uuid)
                if there is not None and there.isActive():
                    results[name] = self._unchanged(name, cand, there)
                    continue
                if not params['include_shutoff']:
                    results[name] = dict(name=name, skipped=True, changed=False, changes=[],
                                         msg='guest %s is shut off; include_shutoff is false' % name)
                    continue
                if not persistent:  # pragma: no cover - a transient guest is never shut off
                    continue
            method = 'live' if active else 'offline'
            gparams = guest_params(params, name, method, None)
            snap = GuestSnapshot(self.client, dom)
            reports = {}
            for cand in self.candidates:
                if cand.info['ok']:
                    reports[cand.uri] = preflight(gparams, snap, source, cand.client, name, cache=cand.cache)
            planned.append(dict(name=name, method=method, memory_bytes=(snap.max_memory_kib or 0) * 1024,
                                vcpus=guest_vcpus(snap.root), reports=reports, uuid=snap.uuid))
        placement = place(planned, [c.info for c in self.candidates], params.get('max_vcpu_ratio'))
        self.baseline = self._cpu_baseline(source)
        jobs = []
        for guest in planned:
            uri, reason = placement[guest['name']]
            preflights = [guest['reports'].get(c.uri) or dict(uri=c.uri, ok=False, problems=list(c.info['problems']),
                                                              notes=[])
                          for c in self.candidates]
            base = dict(name=guest['name'], uuid=guest['uuid'], method=guest['method'], source_uri=self.client.uri,
                        placement=dict(chosen=uri, reason=reason), preflight=preflights)
            if uri is None:
                problems = ['%s: %s' % (r['uri'], p) for r in preflights for p in r['problems']]
                results[guest['name']] = dict(base, failed=True, changed=False, changes=[], problems=problems,
                                              msg='no candidate can take guest %s, nothing was changed: %s'
                                              % (guest['name'], reason))
                continue
            jobs.append((guest, uri, base))
        if jobs:
            workers = min(params['concurrency'], len(jobs))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='kvm_migrate_guests') as pool:
                for guest, outcome in zip(jobs, pool.map(self._migrate_one, jobs)):
                    results[guest[0]['name']] = outcome
        return self._result(names, results)

    def _unchanged(self, name, cand, dom):
        active = bool(dom.isActive())
        return dict(name=name, changed=False, changes=[], method='live' if active else 'offline',
                    source_uri=self.client.uri, destination_uri=cand.uri, domain=domain_facts(cand.client, dom),
                    msg='guest %s is already %s on %s and not running on %s' % (
                        name, 'running' if active else 'defined', cand.uri, self.client.uri))

    def _migrate_one(self, job):
        guest, uri, base = job
        params = guest_params(self.params, guest['name'], guest['method'], uri)
        params['uri'] = base['source_uri']     # mode rebalance: each guest's own host
        report = dict((r['uri'], r) for r in base['preflight'])[uri]
        gmodule = _GuestModule(self.module, params)
        out = dict(base)
        try:
            client = self._worker_source(base['source_uri'])
            migration = Migration(gmodule, client, clients=[LibvirtClient(gmodule, uri=uri)], planned=report)
            out.update(migration.run())
        except KvmError as exc:
            out.update(exc.facts)
            out.update(failed=True, msg=exc.msg)
        except Exception as exc:  # pylint: disable=broad-except
            # one guest's unexpected error is that guest's failure; the others go on
            text = error_text(exc) if libvirt is not None and isinstance(exc, libvirt.libvirtError) else one_line(exc)
            out.update(failed=True, msg='unexpected error (%s) while migrating %s: %s' % (
                type(exc).__name__, guest['name'], text))
        out.setdefault('changes', [])
        out['changed'] = bool(out['changes']) if out.get('failed') else bool(out.get('changed'))
        out['placement'] = base['placement']
        out['preflight'] = base['preflight']
        out['method'] = guest['method']
        for key in ('mode', 'pending_restart'):
            out.pop(key, None)
        return out

    def _result(self, names, results):
        ordered = [results[n] for n in names if n in results]
        summary = dict(moved=[], unchanged=[], failed=[], skipped=[], where={}, by_destination={})
        changes = []
        for item in ordered:
            name = item['name']
            changes.extend(item.get('changes') or [])
            if item.get('failed'):
                summary['failed'].append(name)
                summary['where'][name] = None
                continue
            if item.get('skipped'):
                summary['skipped'].append(name)
                summary['where'][name] = None
                continue
            dest = item.get('destination_uri')
            summary['moved' if item.get('changed') else 'unchanged'].append(name)
            summary['where'][name] = dest
            summary['by_destination'].setdefault(dest, []).append(name)
        candidates = [dict(c.info) for c in self.candidates]
        verb = 'would move' if self.check else 'moved'
        msg = '%s %d guest(s) from %s; %d already there, %d skipped, %d failed' % (
            verb, len(summary['moved']), self.client.uri, len(summary['unchanged']), len(summary['skipped']),
            len(summary['failed']))
        result = dict(changed=bool(changes) or bool(summary['moved']), changes=changes, pending_restart=[],
                      source_uri=self.client.uri, guests=ordered, summary=summary, candidates=candidates,
                      cpu_baseline=self.baseline)
        if summary['failed']:
            reasons = '; '.join('%s: %s' % (i['name'], i['msg']) for i in ordered if i.get('failed'))
            raise KvmError('%d of %d guest(s) could not be moved and stay on the source (%s): %s' % (
                len(summary['failed']), len(ordered), msg, reasons), **result)
        result['msg'] = msg
        return result


def main(module):
    runner = MigrateGuests
    if module.params.get('mode') == 'rebalance':
        from ansible_collections.kvmops.kvm.plugins.module_utils._rebalance import Rebalance as runner
    run(module, lambda client: runner(module, client).run())
