# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_guests: many guests in one task, converged by kvm_domain's own manager.

Private module (leading underscore): free to change between releases.

Each guest of ``guests`` (with ``defaults`` merged under it) is checked against kvm_domain's
argument spec (``_domain.ARGUMENT_SPEC``) and converged by ``_domain.Manager``, exactly as one
kvm_domain task would, through a :class:`GuestModule`: a per-guest stand-in for the AnsibleModule
that shares the real module's check mode, diff mode, commands and ``no_log_values`` (so every
secret a guest's run finds is masked in the whole task's output). Guests run on ``concurrency``
worker threads, each with its own libvirt connection (libvirt-python releases the GIL in its
calls). A guest's failure is its own result; the task fails at the end, naming the guests that
failed, and ``fail_fast`` leaves the guests not yet started alone.

The module's argument spec declares each guest's options untyped (:func:`shadow_spec`): the
containers keep their suboptions and every ``no_log``, so Ansible masks the secrets from the
start, but no default is filled in and no value is converted - ``defaults`` can be merged under
what a guest leaves out, and a bad value fails only its guest.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kvmops.kvm.plugins.module_utils._client import (
    KvmError,
    _infinite_options,
    LibvirtClient,
    effective_uri,
    libvirt,
    one_line,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC as DOMAIN_SPEC
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import Manager
from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid

MAX_CONCURRENCY = 32
UNLISTED = ('report', 'ignore', 'undefine')
# dict options whose keys ``defaults`` fills one by one (a guest's list options replace the default list)
MERGED_DICTS = ('graphics', 'cloud_init')


def shadow_spec(spec):
    """``spec`` with every leaf untyped and without default or required; containers, aliases and no_log kept."""
    out = {}
    for key, option in spec.items():
        # no_log as kvm_domain declares it, explicit either way (an untyped leaf named like a secret, such as
        # enrolled_keys, a bool in kvm_domain, is not one)
        new = dict(type='raw', no_log=bool(option.get('no_log', False)))
        if option.get('aliases'):
            new['aliases'] = list(option['aliases'])
        if option.get('options'):
            new.update(type=option.get('type', 'dict'), options=shadow_spec(option['options']))
            if option.get('elements'):
                new['elements'] = option['elements']
        out[key] = new
    return out


DEFAULTS_SPEC = shadow_spec(dict((key, value) for key, value in DOMAIN_SPEC.items() if key != 'name'))
GUEST_SPEC = dict(DEFAULTS_SPEC, name=dict(type='str', required=True, aliases=['guest']))

# what each guest (defaults merged) is checked against: kvm_domain's own options
GUEST_CHECK_SPEC = dict(DOMAIN_SPEC, uri=dict(type='str'), uri_allow_ext=dict(type='bool', default=False))
DOMAIN_SPEC_DEFAULTS = dict((key, option.get('default')) for key, option in DOMAIN_SPEC.items())

ARGUMENT_SPEC = dict(
    guests=dict(type='list', elements='dict', required=True, options=GUEST_SPEC),
    defaults=dict(type='dict', options=DEFAULTS_SPEC),
    concurrency=dict(type='int', default=4),
    fail_fast=dict(type='bool', default=False),
    unlisted=dict(type='str', choices=list(UNLISTED), default='report'),
)


# ---------------------------------------------------------------- specs (no I/O)
def prune(value):
    """``value`` without the keys Ansible set to None (options not given), at every depth."""
    if isinstance(value, dict):
        return dict((key, prune(item)) for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def merge(defaults, guest):
    """One guest's options: ``guest`` over ``defaults`` (both pruned); graphics and cloud_init key by key."""
    merged = dict(defaults or {})
    for key, value in guest.items():
        if key in MERGED_DICTS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = dict(merged[key], **value)
        merged[key] = value
    return merged


def guest_params(defaults, guest, connection, secrets=None):
    """kvm_domain's parameters of one guest (defaults filled, types converted), or a KvmError.

    ``secrets`` (a set, the module's ``no_log_values``) gets the guest's no_log values first, whatever else fails.
    """
    name = guest.get('name')
    merged = merge(prune(defaults), prune(guest))
    merged.update(connection)
    try:
        result = ArgumentSpecValidator(GUEST_CHECK_SPEC).validate(merged)
    except OverflowError:   # ansible-core's int conversion of inf (see _client.new_module)
        names = _infinite_options(GUEST_CHECK_SPEC, merged) or ['an integer option of guest %s' % name]
        raise KvmError('%s: must be a finite integer (got an infinite number)' % names[0])
    if secrets is not None:
        secrets.update(getattr(result, '_no_log_values', ()))
    if result.error_messages:
        raise KvmError('; '.join(one_line(error) for error in result.error_messages))
    return result.validated_parameters


def check_names(guests):
    """The guests' names are unique; the refusal names the duplicate (before anything is read or written)."""
    seen = {}
    for index, guest in enumerate(guests):
        name = guest['name']
        if name in seen:
            raise valid.ValidationError('guests[%d].name: %s is also guests[%d]; each guest appears once'
                                        % (index, name, seen[name]))
        seen[name] = index


# ---------------------------------------------------------------- one guest
class GuestModule(object):
    """What ``_domain.Manager`` uses of an AnsibleModule, for one guest of the task.

    ``no_log_values`` is the real module's own set: a secret one guest's run registers is masked in
    the whole output. Commands (qemu-img) run through the real module; warnings are kept per guest.
    """

    def __init__(self, module, params):
        self._module = module
        self.params = params
        self.check_mode = module.check_mode
        self._diff = module._diff
        self.no_log_values = module.no_log_values
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def get_bin_path(self, *args, **kwargs):
        return self._module.get_bin_path(*args, **kwargs)

    def run_command(self, *args, **kwargs):
        return self._module.run_command(*args, **kwargs)


def _count_writes(changes, written):
    """Note each write of ``changes`` that returned (check mode: none), so a failed guest says whether it changed."""
    for method in ('write', 'host'):
        def counted(*args, _call=getattr(changes, method), **kwargs):
            value = _call(*args, **kwargs)
            if not changes.check:
                written.append(args[0] if args else method)
            return value
        setattr(changes, method, counted)


def converge_guest(client, module, params):
    """One guest converged by kvm_domain's manager: its result, or its failure as a result (never raises)."""
    name = params['name']
    proxy = GuestModule(module, params)
    manager = None
    failure = None
    written = []
    try:
        manager = Manager(client, proxy)
        _count_writes(manager.changes, written)
        result = manager.run()
    except KvmError as exc:
        failure = dict(msg=exc.msg, **exc.facts)
    except Exception as exc:  # pylint: disable=broad-except
        if libvirt is not None and isinstance(exc, libvirt.libvirtError):
            failure = dict(msg=client.describe_error(exc, name))
        else:
            failure = dict(msg='unexpected error (%s): %s' % (type(exc).__name__, one_line(exc)),
                           exception=traceback.format_exc())
    if failure is None:
        result['warnings'] = proxy.warnings + result.get('warnings', [])
        return dict(name=name, **result)
    changes = list(manager.changes.entries) if manager is not None else []
    out = dict(name=name, changed=bool(written), changes=changes, pending_restart=[])
    out.update(failure)   # a failure may carry the guest's result so far (changed, changes, domain)
    out.update(failed=True, warnings=proxy.warnings)
    return out


# ---------------------------------------------------------------- the fleet
class Fleet(object):
    """Converge every guest of the task on ``concurrency`` threads, each with its own connection."""

    def __init__(self, module, client_factory=None):
        self.module = module
        self.params = module.params
        self.uri = effective_uri(module.params)
        self.connection = dict(uri=self.uri, uri_allow_ext=bool(module.params.get('uri_allow_ext')))
        self._factory = client_factory or (lambda: LibvirtClient(module, uri=self.uri))
        self._local = threading.local()
        self._clients = []
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def client(self):
        """This thread's own libvirt connection (made on first use, closed at the end of the run)."""
        client = getattr(self._local, 'client', None)
        if client is None:
            client = self._factory()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self):
        for client in self._clients:
            client.close()
        del self._clients[:]

    def one(self, name, params):
        """The worker: one guest's result (a refused spec or a fail_fast skip is a result too)."""
        if self.stop.is_set():
            return dict(name=name, changed=False, changes=[], pending_restart=[], skipped=True,
                        msg='not run: fail_fast and another guest failed')
        if isinstance(params, KvmError):
            result = dict(name=name, failed=True, changed=False, changes=[], pending_restart=[], msg=params.msg)
        else:
            result = converge_guest(self.client(), self.module, params)
        if result.get('failed') and self.params['fail_fast']:
            self.stop.set()
        return result

    def converge(self, jobs):
        """``jobs``: (name, params or KvmError) pairs; their results in the same order."""
        workers = max(1, min(self.params['concurrency'], len(jobs)))
        if workers == 1:
            return [self.one(name, params) for name, params in jobs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self.one, name, params) for name, params in jobs]
            return [future.result() for future in futures]

    def unlisted(self, names):
        """The host's guests that the task does not name: name, state, persistent (a read)."""
        client = self.client()
        domains = client.call('list guests', client.conn.listAllDomains, 0)
        found = []
        for dom in domains:
            name = client.call('guest name', dom.name)
            if name in names:
                continue
            try:
                state = client.call('guest %s' % name, dom.state)[0]
                persistent = bool(client.call('guest %s' % name, dom.isPersistent))
            except KvmError:   # gone meanwhile
                continue
            found.append(dict(name=name, persistent=persistent,
                              state={1: 'running', 2: 'running', 3: 'paused', 7: 'paused'}.get(state, 'shutoff')))
        return sorted(found, key=lambda item: item['name'])

    def run(self):
        params = self.params
        valid.count('concurrency', params['concurrency'], minimum=1, maximum=MAX_CONCURRENCY)
        guests = params['guests']
        check_names(guests)
        if params['unlisted'] == 'undefine' and not guests:
            raise valid.ValidationError('unlisted: undefine with an empty guests list would remove every guest of %s; '
                                        'refused' % self.uri)
        jobs = []
        for guest in guests:
            try:
                jobs.append((guest['name'], guest_params(params['defaults'], guest, self.connection,
                                                         self.module.no_log_values)))
            except KvmError as exc:
                jobs.append((guest['name'], exc))
        results = self.converge(jobs)
        out = dict(results=results, unlisted=[])
        failed = [r['name'] for r in results if r.get('failed')]
        if params['unlisted'] != 'ignore':
            try:
                out['unlisted'] = self.unlisted(set(r['name'] for r in results))
            except KvmError as exc:   # the guests' results stand; the listing is reported
                self.module.warn('unlisted: cannot list the guests of %s: %s' % (self.uri, exc.msg))
                self.stop.set()   # nothing is undefined on a list that could not be read
        if params['unlisted'] == 'undefine' and not failed and not self.stop.is_set():
            self.undefine(out['unlisted'])
            failed += [u['name'] for u in out['unlisted'] if u.get('failed')]
        out['changed'] = any(r.get('changed') for r in results + out['unlisted'])
        out['changes'] = [dict(change, guest=r['name']) for r in results + out['unlisted'] for change in r.get('changes', [])]
        out['pending_restart'] = sorted(set('guests[%s].%s' % (r['name'], option) for r in results
                                            for option in r.get('pending_restart', [])))
        if getattr(self.module, '_diff', False):
            out['diff'] = [r['diff'] for r in results + out['unlisted'] if r.get('changed') and r.get('diff')]
        out['failed_guests'] = failed
        return out

    def undefine(self, unlisted):
        """``unlisted: undefine``: each persistent unlisted guest stopped and undefined, its disks kept."""
        jobs = []
        for item in unlisted:
            if item['persistent']:
                jobs.append((item['name'], dict(DOMAIN_SPEC_DEFAULTS, name=item['name'], state='absent',
                                                remove_storage=False, **self.connection)))
        results = dict((r['name'], r) for r in self.converge(jobs))
        for item in unlisted:
            result = results.get(item['name'])
            if result is None:
                item.update(changed=False, changes=[], msg='transient guest: left as it is')
                continue
            result.pop('domain', None)
            item.update((key, value) for key, value in result.items() if key != 'name')


def main(module):
    """Run the fleet and exit: every guest's result, failing at the end when a guest failed."""
    fleet = Fleet(module)
    result = None
    failure = None
    try:
        result = fleet.run()
    except KvmError as exc:
        failure = dict(msg=exc.msg, **exc.facts)
    except Exception as exc:  # pylint: disable=broad-except
        failure = dict(msg='unexpected error (%s): %s' % (type(exc).__name__, one_line(exc)),
                       exception=traceback.format_exc())
    fleet.close()
    if failure is not None:
        module.fail_json(**failure)
    for item in result['results'] + result['unlisted']:
        for warning in item.pop('warnings', None) or []:
            module.warn('guest %s: %s' % (item['name'], warning))
    failed = result.pop('failed_guests')
    if failed:
        reasons = ['guest %s: %s' % (r['name'], r['msg']) for r in result['results'] if r.get('failed')]
        reasons += ['guest %s (unlisted): %s' % (r['name'], r['msg']) for r in result['unlisted'] if r.get('failed')]
        module.fail_json(msg='%d guest(s) failed: %s' % (len(failed), '; '.join(reasons)), **result)
    module.exit_json(**result)
