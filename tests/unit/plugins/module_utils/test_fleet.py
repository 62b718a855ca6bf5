"""Unit tests of kvm_guests (_fleet): the spec, the merge, and many guests on libvirt's test driver.

test:///default is one state per process, shared by every open connection (and dropped when the last one
closes: the ``names`` fixture holds one open), so the workers' own connections see the same guests; each
test uses guest names of its own and removes them.
"""

import threading
import uuid

import pytest
from fakes import FakeModule

libvirt = pytest.importorskip('libvirt')

from ansible_collections.kvmops.kvm.plugins.module_utils import _fleet  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient  # noqa: E402
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC as DOMAIN_SPEC  # noqa: E402

URI = 'test:///default'


def fleet_module(guests, check_mode=False, diff=False, **kw):
    params = dict(guests=guests, defaults=None, concurrency=4, fail_fast=False, unlisted='report', uri=URI,
                  uri_allow_ext=False)
    params.update(kw)
    return FakeModule(params, check_mode=check_mode, diff=diff)


def run_main(module):
    """_fleet.main as the module runs it: (exit or fail arguments, whether it failed)."""
    with pytest.raises(SystemExit):
        _fleet.main(module)
    if module.fail_args is not None:
        return module.fail_args, True
    return module.exit_args, False


@pytest.fixture
def names():
    """Unique guest names; the guests are removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    made = ['kvmops-unit-fleet-%s-%d' % (tag, i) for i in range(4)]
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(URI)
    yield made
    for name in made + ['kvmops-unit-fleet-%s-other' % tag]:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    conn.close()


def defined(name):
    conn = libvirt.open(URI)
    try:
        return name in [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()


def state(name):
    conn = libvirt.open(URI)
    try:
        return conn.lookupByName(name).state()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------- spec and documentation
def _shape(spec):
    out = {}
    for name, option in spec.items():
        item = dict((key, option.get(key)) for key in ('type', 'choices', 'default', 'elements')
                    if option.get(key) is not None)
        item['required'] = bool(option.get('required'))
        item['aliases'] = sorted(option.get('aliases') or [])
        sub = option.get('options', option.get('suboptions'))
        if sub:
            item['options'] = _shape(sub)
        out[name] = item
    return out


def test_documentation_matches_the_argument_spec_and_every_kvm_domain_option():
    import yaml
    from ansible_collections.kvmops.kvm.plugins.modules import kvm_guests
    documented = yaml.safe_load(kvm_guests.DOCUMENTATION)['options']
    assert _shape(_fleet.ARGUMENT_SPEC) == _shape(documented), 'run scripts/kvm_guests_docs.py'
    # every kvm_domain option (and suboption) is an option of each guest and of the defaults
    missing = set(_shape(DOMAIN_SPEC)) ^ set(documented['guests']['suboptions'])
    assert not missing, 'kvm_guests DOCUMENTATION: guests[] options differ from kvm_domain: %s' % sorted(missing)
    for key, option in DOMAIN_SPEC.items():
        if option.get('options'):
            assert set(option['options']) == set(documented['guests']['suboptions'][key]['suboptions']), key
    assert set(documented['defaults']['suboptions']) == set(DOMAIN_SPEC) - {'name'}


def test_shadow_spec_keeps_no_log_aliases_and_containers_only():
    guest = _fleet.GUEST_SPEC
    assert guest['graphics']['options']['password'] == dict(type='raw', no_log=True)
    assert guest['cloud_init']['options']['user_data']['no_log'] is True and guest['xml']['no_log'] is True
    assert guest['disks']['type'] == 'list' and guest['disks']['elements'] == 'dict'
    assert guest['name'] == dict(type='str', required=True, aliases=['guest'])
    assert guest['state'] == dict(type='raw', no_log=False), 'no default, no choices: checked per guest after the merge'
    assert 'name' not in _fleet.DEFAULTS_SPEC


def test_merge_guest_wins_and_dicts_merge_key_by_key():
    defaults = dict(memory='1GiB', vcpus=None, state='running', graphics=dict(type='vnc', password='pw', port=None),
                    interfaces=[dict(source='default')])
    guest = dict(name='a', memory='2GiB', vcpus=None, graphics=dict(listen='::1', type=None), interfaces=[])
    merged = _fleet.merge(_fleet.prune(defaults), _fleet.prune(guest))
    assert merged == dict(name='a', memory='2GiB', state='running', graphics=dict(type='vnc', password='pw', listen='::1'),
                          interfaces=[])


def test_guest_params_fill_kvm_domain_defaults_and_refuse_per_guest():
    connection = dict(uri=URI, uri_allow_ext=False)
    params = _fleet.guest_params(dict(memory='128MiB'), dict(name='a', vcpus='2'), connection)
    assert params['vcpus'] == 2 and params['state'] == 'present' and params['shutdown_timeout'] == 120
    assert params['memory'] == '128MiB' and params['uri'] == URI
    with pytest.raises(KvmError, match='state must be one of'):
        _fleet.guest_params(None, dict(name='a', state='bogus'), connection)
    with pytest.raises(KvmError, match='vcpus'):
        _fleet.guest_params(dict(vcpus='many'), dict(name='a'), connection)
    # 2.18 and later raise OverflowError for int('inf') (the message names the option); 2.16/2.17 a type error
    with pytest.raises(KvmError, match=r"^vcpus: must be a finite integer|^argument 'vcpus' is of type"):
        _fleet.guest_params(dict(vcpus='inf'), dict(name='a'), connection)
    with pytest.raises(KvmError, match='source'):
        _fleet.guest_params(None, dict(name='a', interfaces=[dict(model='virtio')]), connection)


def test_duplicate_names_are_refused_before_anything(names):
    module = fleet_module([dict(name=names[0], memory='64MiB'), dict(name=names[0], memory='64MiB')])
    out, failed = run_main(module)
    assert failed and out['msg'].startswith('guests[1].name: ') and not defined(names[0])


def test_undefine_with_an_empty_list_is_refused(names):
    out, failed = run_main(fleet_module([], unlisted='undefine'))
    assert failed and out['msg'].startswith('unlisted: undefine with an empty guests list') and defined('test')


def test_concurrency_is_bounded(names):
    out, failed = run_main(fleet_module([dict(name=names[0], memory='64MiB')], concurrency=0))
    assert failed and out['msg'].startswith('concurrency: must be at least 1')


# ---------------------------------------------------------------- many guests on the test driver
def test_check_then_real_then_noop_and_one_bad_guest_fails_alone(names):
    guests = [dict(name=n) for n in names[:3]] + [dict(name=names[3], state='bogus')]
    common = dict(defaults=dict(memory='64MiB', vcpus=1, state='running', graphics=dict(type='vnc', password='Pw9-fleet')))

    check, failed = run_main(fleet_module(guests, check_mode=True, diff=True, **common))
    assert failed and not any(defined(n) for n in names), 'check mode writes nothing'
    assert [r['changed'] for r in check['results']] == [True, True, True, False]
    assert check['results'][3]['failed'] is True and 'state must be one of' in check['results'][3]['msg']
    assert check['msg'].startswith('1 guest(s) failed: guest %s: ' % names[3])
    assert len(check['diff']) == 3 and all('<name>%s</name>' % n in d['after'] for n, d in zip(names, check['diff']))

    module = fleet_module(guests, **common)
    real, failed = run_main(module)
    assert failed and real["changed"] is True, real["results"]
    assert [defined(n) for n in names] == [True, True, True, False]
    assert all(state(n) == libvirt.VIR_DOMAIN_RUNNING for n in names[:3])
    assert [r['domain']['state'] for r in real['results'][:3]] == ['running'] * 3
    assert 'Pw9-fleet' in module.no_log_values, 'the password is masked in the whole output'
    assert set(c['guest'] for c in real['changes']) == set(names[:3])

    again, failed = run_main(fleet_module(guests[:3], **common))
    assert not failed and again['changed'] is False
    assert [(r['name'], r['changed'], r['changes']) for r in again['results']] == [(n, False, []) for n in names[:3]]
    assert 'test' in [u['name'] for u in again['unlisted']], "test:///default's own guest is unlisted"
    assert not set(names[:3]) & set(u['name'] for u in again['unlisted'])


def test_each_worker_has_its_own_connection(names, monkeypatch):
    made = []

    def factory():
        client = LibvirtClient(FakeModule(dict(uri=URI)), uri=URI)
        made.append((threading.get_ident(), client))
        return client

    module = fleet_module([dict(name=n, memory='64MiB') for n in names], concurrency=2, unlisted='ignore')
    fleet = _fleet.Fleet(module, client_factory=factory)
    try:
        out = fleet.run()
    finally:
        fleet.close()
    assert [r['changed'] for r in out['results']] == [True] * 4 and out['unlisted'] == []
    threads = [ident for ident, _client in made]
    assert 1 <= len(made) <= 2 and len(set(threads)) == len(threads), 'one connection per worker thread'
    assert all(client._conn is None for _ident, client in made), 'closed at the end'


def test_fail_fast_leaves_the_guests_not_started(names):
    guests = [dict(name=names[0], memory='64MiB'), dict(name=names[1]), dict(name=names[2], memory='64MiB')]
    out, failed = run_main(fleet_module(guests, concurrency=1, fail_fast=True))
    assert failed
    first, bad, skipped = out['results']
    assert first['changed'] is True and bad['failed'] is True and bad['msg'].startswith('memory: required')
    assert skipped['skipped'] is True and not skipped.get('failed') and not defined(names[2])
    assert out['msg'] == '1 guest(s) failed: guest %s: %s' % (names[1], bad['msg'])


def test_unlisted_undefine_keeps_listed_and_removes_only_the_unlisted(names):
    other = names[0].rsplit('-', 1)[0] + '-other'
    run_main(fleet_module([dict(name=other, memory='64MiB')], unlisted='ignore'))
    assert defined(other)
    # a scoped host: the test driver's own guest is listed too, so only ``other`` is unlisted
    listed = [dict(name=names[0], memory='64MiB'), dict(name='test')]
    check, failed = run_main(fleet_module(listed, check_mode=True, unlisted='undefine'))
    assert not failed and defined(other)
    [entry] = [u for u in check['unlisted'] if u['name'] == other]
    assert entry['changed'] is True and [c['action'] for c in entry['changes']] == ['undefine']
    real, failed = run_main(fleet_module(listed, unlisted='undefine'))
    assert not failed and not defined(other) and defined(names[0]) and defined('test')
    assert [u['name'] for u in real['unlisted'] if u['name'].startswith('kvmops-unit-fleet')] == [other]


def test_unlisted_undefine_is_not_run_when_a_guest_failed(names):
    other = names[0].rsplit('-', 1)[0] + '-other'
    run_main(fleet_module([dict(name=other, memory='64MiB')], unlisted='ignore'))
    out, failed = run_main(fleet_module([dict(name=names[0]), dict(name='test')], unlisted='undefine'))
    assert failed and defined(other)
    assert 'changes' not in [u for u in out['unlisted'] if u['name'] == other][0]


def test_a_guest_failing_after_a_write_says_it_changed(names, monkeypatch):
    def start(self, dom):
        self.changes.record('live', 'state', 'start', before='shutoff', after='running')
        raise KvmError('start %s: refused by the test' % dom.name())
    monkeypatch.setattr(_fleet.Manager, 'start', start)
    guests = [dict(name=names[0], memory='64MiB', state='running'), dict(name=names[1], memory='64MiB')]
    out, failed = run_main(fleet_module(guests))
    bad, good = out['results']
    assert failed and bad['failed'] is True and bad['changed'] is True, 'defined before the start failed'
    assert [c['action'] for c in bad['changes']] == ['define', 'start'] and defined(names[0])
    assert good['changed'] is True and not good.get('failed') and out['changed'] is True
    run_main(fleet_module([dict(name=names[2], memory='64MiB')]))   # defined, shut off
    check, failed = run_main(fleet_module([dict(name=names[2], state='running')], check_mode=True))
    assert failed and check['results'][0]['changed'] is False, 'check mode wrote nothing'


def test_a_failed_listing_keeps_the_results_and_undefines_nothing(names, monkeypatch):
    def unlisted(self, _names):
        raise KvmError('listAllDomains refused by the test')
    monkeypatch.setattr(_fleet.Fleet, 'unlisted', unlisted)
    undefined = []
    monkeypatch.setattr(_fleet.Fleet, 'undefine', lambda self, items: undefined.append(items))
    module = fleet_module([dict(name=names[0], memory='64MiB')], unlisted='undefine')
    out, failed = run_main(module)
    assert not failed and out['results'][0]['changed'] is True and out['unlisted'] == [] and undefined == []
    assert module.warnings == ['unlisted: cannot list the guests of %s: listAllDomains refused by the test' % URI]
