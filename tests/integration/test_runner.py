"""The job-template playbooks through ansible-runner, the engine AWX/Tower run jobs with.

Extra variables are passed the way an AWX survey passes them (strings for
multiple-choice answers, integers for integer questions), and the tests assert
on the runner's artifacts: its status and rc, and the per-task job events.
The surveys under playbooks/surveys/ are checked against the variables each
playbook documents at its top.
"""

import json
import os
import re
import shutil

import pytest

from conftest import ROOT, remove_guest

ansible_runner = pytest.importorskip('ansible_runner')

PLAYBOOKS = os.path.join(ROOT, 'playbooks')
SURVEYS = os.path.join(PLAYBOOKS, 'surveys')
JOB_TEMPLATES = ['site', 'guest', 'migrate', 'drain_host', 'snapshot', 'rolling_maintenance', 'rebalance']
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}


def run_job(tmp_path, playbook, extravars, check=False):
    """ansible_runner.run as AWX does it: a private data dir, an inventory, extra vars."""
    private = tmp_path / 'runner'
    (private / 'inventory').mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, 'inventory', 'localhost.yml'), str(private / 'inventory' / 'hosts.yml'))
    result = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=ROOT,                 # AWX: the project checkout
        playbook=os.path.join('playbooks', playbook),
        extravars=extravars,
        cmdline='--check' if check else None,
        envvars={
            # runner starts `ansible-playbook` from PATH: the virtualenv's, as the EE image has its own.
            'PATH': os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''),
            'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.venv', 'collections'),
            'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
            'ANSIBLE_FORCE_COLOR': '0',
        },
        quiet=True,
        timeout=900,
    )
    return result


def task_events(result, event=None, task=None):
    out = []
    for ev in result.events:
        data = ev.get('event_data', {})
        if event and ev.get('event') != event:
            continue
        if task and data.get('task') != task:
            continue
        if ev.get('event', '').startswith('runner_on_') and ev['event'] != 'runner_on_start':
            out.append(ev)
    return out


def one(result, event, task):
    found = task_events(result, event, task)
    assert found, 'no %s event for task %r; events: %s' % (
        event, task, [(e['event'], e['event_data'].get('task')) for e in task_events(result)])
    return found[-1]['event_data']


def stats(result):
    return [ev for ev in result.events if ev.get('event') == 'playbook_on_stats'][-1]['event_data']


def assert_failed_at_check(result, *words):
    assert result.status == 'failed' and result.rc == 2, (result.status, result.rc)
    failed = one(result, 'runner_on_failed', 'Check the variables')
    msg = failed['res']['msg']
    assert msg.startswith('bad variables') or 'set ' in msg, msg
    for word in words:
        assert word in msg, msg
    # Nothing ran after the check.
    names = [e['event_data'].get('task') for e in task_events(result)]
    assert names == ['Check the variables'], names


# ------------------------------------------------------------------ surveys
def documented_variables(playbook):
    """Variables listed in the playbook's header comment: name -> required."""
    found = {}
    in_section = False
    with open(os.path.join(PLAYBOOKS, playbook + '.yml')) as handle:
        for line in handle:
            if line.strip() == '---':
                continue
            if not line.startswith('#'):
                break
            if re.match(r'#\s*Variables\b', line):
                in_section = True
                continue
            if not in_section:
                continue
            match = re.match(r'#\s{2,}([a-z][a-z0-9_]+)\s+(\(required\))?', line)
            if match:
                found[match.group(1)] = bool(match.group(2))
    return found


@pytest.mark.parametrize('name', JOB_TEMPLATES)
def test_survey_matches_the_playbook(name):
    playbook = os.path.join(PLAYBOOKS, name + '.yml')
    if not os.path.exists(playbook):
        pytest.skip('%s.yml does not exist yet' % name)
    with open(os.path.join(SURVEYS, name + '.json')) as handle:
        survey = json.load(handle)
    assert survey['name'] and survey['description']
    documented = documented_variables(name)
    assert documented, 'no variables documented at the top of %s.yml' % name
    variables = [q['variable'] for q in survey['spec']]
    assert len(variables) == len(set(variables))
    for question in survey['spec']:
        assert question['type'] in SURVEY_TYPES
        assert question['question_name']
        assert question['variable'] in documented, '%s asks for undocumented %s' % (name, question['variable'])
        if question['type'] in ('multiplechoice', 'multiselect'):
            assert question['default'] in question['choices']
        if documented[question['variable']]:
            assert question['required'], '%s: %s is required by the playbook' % (name, question['variable'])
    with open(playbook) as handle:
        text = handle.read()
    for var in variables:
        assert re.search(r'\b%s\b' % var, text.split('\n- ', 1)[1]), '%s is not used by %s.yml' % (var, name)
    for var, required in documented.items():
        if required:
            assert var in variables, '%s: required %s is not in the survey' % (name, var)


def survey_defaults(name, **answers):
    with open(os.path.join(SURVEYS, name + '.json')) as handle:
        spec = json.load(handle)['spec']
    values = dict((q['variable'], q['default']) for q in spec if q['default'] not in ('', None))
    values.update(answers)
    return values


# -------------------------------------------------------------------- site
def test_site_check_mode_on_localhost(tmp_path):
    extravars = survey_defaults('site', site_hosts='localhost', site_install_packages='false',
                                site_allow_emulation='true', site_default_network_state='unmanaged')
    result = run_job(tmp_path, 'site.yml', extravars, check=True)
    assert result.status == 'successful', (result.status, result.rc, result.stdout.read()[-3000:])
    assert result.rc == 0
    assert one(result, 'runner_on_ok', 'Check the variables')['host'] == 'localhost'
    probe = one(result, 'runner_on_ok', 'Probe hardware virtualization (no libvirt needed)')
    assert 'hardware' in probe['res']
    report = one(result, 'runner_on_ok', 'Report what the host can run')
    assert 'guests run as domain type' in report['res']['msg']
    assert not task_events(result, 'runner_on_failed')
    summary = stats(result)
    assert summary['failures'] == {} and summary['ok'].get('localhost', 0) > 3


def test_site_rejects_bad_answers(tmp_path):
    result = run_job(tmp_path, 'site.yml', survey_defaults('site', site_nested='maybe'))
    assert_failed_at_check(result, 'site_nested')


# ------------------------------------------------------------------- guest
def test_guest_requires_a_name(tmp_path):
    extravars = survey_defaults('guest')
    result = run_job(tmp_path, 'guest.yml', extravars)
    assert_failed_at_check(result, 'guest_name')


@pytest.mark.parametrize('answers', [
    dict(guest_name='bad name'),
    dict(guest_name='ok', guest_memory='lots'),
    dict(guest_name='ok', guest_vcpus=0),
    dict(guest_name='ok', guest_state='gone'),
    dict(guest_name='ok', guest_disk_size='big'),
    dict(guest_name='ok', guest_autostart='sometimes'),
], ids=['name', 'memory', 'vcpus', 'state', 'disk_size', 'autostart'])
def test_guest_rejects_bad_answers(tmp_path, answers):
    result = run_job(tmp_path, 'guest.yml', survey_defaults('guest', **answers))
    assert_failed_at_check(result)


def _kvm_domain_exists():
    return os.path.exists(os.path.join(ROOT, 'plugins', 'modules', 'kvm_domain.py'))


def test_guest_create_change_remove(tmp_path, conn, unique):
    if not _kvm_domain_exists():
        pytest.skip('kvm_domain not there yet')
    import libvirt
    answers = survey_defaults('guest', guest_name=unique, guest_memory='64MiB', guest_vcpus=1,
                              guest_network='', guest_disk_size='', guest_state='running')
    try:
        created = run_job(tmp_path / 'create', 'guest.yml', answers)
        assert created.status == 'successful' and created.rc == 0, created.stdout.read()[-3000:]
        made = one(created, 'runner_on_ok', 'Create or change the guest')
        assert made['res']['changed'] is True
        assert one(created, 'runner_on_skipped', 'Remove the guest')
        dom = conn.lookupByName(unique)
        assert dom.isActive() and dom.info()[1] == 64 * 1024

        again = run_job(tmp_path / 'again', 'guest.yml', answers)
        assert again.status == 'successful'
        assert one(again, 'runner_on_ok', 'Create or change the guest')['res']['changed'] is False
        assert stats(again)['changed'] == {}

        shut = run_job(tmp_path / 'shut', 'guest.yml', dict(answers, guest_state='destroyed'))
        assert shut.status == 'successful', shut.stdout.read()[-3000:]
        assert one(shut, 'runner_on_ok', 'Create or change the guest')['res']['changed'] is True
        assert not conn.lookupByName(unique).isActive()

        removed = run_job(tmp_path / 'remove', 'guest.yml', dict(answers, guest_state='absent'))
        assert removed.status == 'successful', removed.stdout.read()[-3000:]
        assert one(removed, 'runner_on_ok', 'Remove the guest')['res']['changed'] is True
        assert one(removed, 'runner_on_skipped', 'Create or change the guest')
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(unique)
    finally:
        remove_guest(conn, unique)


# ----------------------------------------------------------------- migrate
@pytest.mark.parametrize('answers,word', [
    (dict(migrate_guest='web01', migrate_source_uri='qemu:///system'), 'exactly one'),
    (dict(migrate_guest='web01', migrate_source_uri='qemu:///system', migrate_dest_uri='qemu+tcp://a/system',
          migrate_candidates='qemu+tcp://b/system'), 'exactly one'),
    (dict(migrate_guest='web01', migrate_source_uri='qemu:///system', migrate_dest_uri='qemu:///system'),
     'other than the source'),
    (dict(migrate_guest='web01', migrate_source_uri='qemu:///system', migrate_candidates='hv02,qemu+tcp://b/system'),
     'libvirt URIs'),
    (dict(migrate_source_uri='qemu:///system', migrate_dest_uri='qemu+tcp://a/system'), 'migrate_guest'),
    (dict(migrate_guest='web01', migrate_source_uri='qemu:///system', migrate_dest_uri='qemu+tcp://a/system',
          migrate_copy_storage='some'), 'migrate_copy_storage'),
], ids=['no-destination', 'both-destinations', 'same-host', 'not-a-uri', 'no-guest', 'copy-storage'])
def test_migrate_rejects_bad_answers(tmp_path, answers, word):
    result = run_job(tmp_path, 'migrate.yml', survey_defaults('migrate', **answers))
    assert_failed_at_check(result, word)


@pytest.fixture(scope='module')
def lab_uri():
    """The lab's second libvirtd; stopped afterwards only if this module started it."""
    from lab_instance import shared_host2
    with shared_host2() as uri:
        yield uri


def test_migrate_a_running_guest_to_the_lab_host(tmp_path, conn, lab_uri, unique):
    if not os.path.exists(os.path.join(ROOT, 'plugins', 'modules', 'kvm_migrate.py')):
        pytest.skip('kvm_migrate not there yet')
    import libvirt
    guest = survey_defaults('guest', guest_name=unique, guest_memory='64MiB', guest_network='', guest_disk_size='')
    answers = survey_defaults('migrate', migrate_guest=unique, migrate_source_uri='qemu:///system',
                              migrate_dest_uri=lab_uri)
    try:
        created = run_job(tmp_path / 'guest', 'guest.yml', guest)
        assert created.status == 'successful', created.stdout.read()[-3000:]
        moved = run_job(tmp_path / 'move', 'migrate.yml', answers)
        assert moved.status == 'successful' and moved.rc == 0, moved.stdout.read()[-3000:]
        res = one(moved, 'runner_on_ok', 'Migrate the guest')['res']
        assert res['changed'] is True and res['destination_uri'] == lab_uri
        assert '(moved)' in one(moved, 'runner_on_ok', 'Report where the guest went')['res']['msg']
        lab_conn = libvirt.open(lab_uri)
        try:
            assert lab_conn.lookupByName(unique).isActive()
        finally:
            lab_conn.close()
        names = [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        assert unique not in names
        again = run_job(tmp_path / 'again', 'migrate.yml', answers)
        assert again.status == 'successful', again.stdout.read()[-3000:]
        assert one(again, 'runner_on_ok', 'Migrate the guest')['res']['changed'] is False
        assert stats(again)['changed'] == {}
    finally:
        for uri in ('qemu:///system', lab_uri):
            try:
                handle = libvirt.open(uri)
            except libvirt.libvirtError:
                continue
            try:
                remove_guest(handle, unique)
            finally:
                handle.close()


# -------------------------------------------------------------- drain_host
def test_drain_host_rejects_the_source_among_the_candidates(tmp_path):
    if not os.path.exists(os.path.join(PLAYBOOKS, 'drain_host.yml')):
        pytest.skip('drain_host.yml does not exist yet')
    answers = survey_defaults('drain_host', drain_source_uri='qemu:///system',
                              drain_candidates='qemu:///system')
    result = run_job(tmp_path, 'drain_host.yml', answers)
    assert result.status == 'failed' and result.rc == 2
    failed = one(result, 'runner_on_failed', 'Check the variables')
    assert 'drain_candidates' in failed['res']['msg']


READ = 'Read the lists and the option dictionaries (a survey sends them as text)'


@pytest.mark.parametrize('answers,task,words', [
    (dict(drain_live_options='{"bandwidth": 500'), READ, ['drain_live_options must be a dictionary or its JSON text']),
    (dict(drain_live_options='{"bandwith": 500}'), 'Check the option dictionaries', ['unknown: bandwith', 'bandwidth']),
    (dict(drain_offline_options='[1, 2]'), READ, ['drain_offline_options must be a dictionary', 'not list']),
    (dict(drain_concurrency='0'), 'Check the variables', ['drain_concurrency']),
    (dict(drain_candidates='qemu+tcp://10.254.77.2/system, lab'), 'Check the variables', ['libvirt URIs']),
], ids=['bad-json', 'unknown-option', 'not-a-dict', 'zero-concurrency', 'not-a-uri'])
def test_drain_host_rejects_bad_answers_before_listing_guests(tmp_path, answers, task, words):
    given = dict(dict(drain_source_uri='qemu:///system', drain_candidates='qemu+tcp://10.254.77.2/system'), **answers)
    result = run_job(tmp_path, 'drain_host.yml', survey_defaults('drain_host', **given))
    assert result.status == 'failed' and result.rc == 2
    failed = one(result, 'runner_on_failed', task)
    for word in words:
        assert word in failed['res']['msg'], failed['res']['msg']
    started = [e['event_data'].get('task') for e in result.events if e['event'] == 'runner_on_start']
    assert 'Migrate every guest of the source to the best candidate' not in started


# ---------------------------------------------------------------- snapshot
@pytest.mark.parametrize('answers,word', [
    (dict(snapshot_name='s1'), 'snapshot_guest'),
    (dict(snapshot_guest='web01'), 'snapshot_name'),
    (dict(snapshot_guest='web01', snapshot_name='bad name'), 'snapshot_name'),
    (dict(snapshot_guest='web01', snapshot_name='s1', snapshot_state='revert'), 'snapshot_state'),
    (dict(snapshot_guest='web01', snapshot_name='s1', snapshot_memory='maybe'), 'snapshot_memory'),
], ids=['no-guest', 'no-name', 'bad-name', 'bad-state', 'bad-memory'])
def test_snapshot_rejects_bad_answers(tmp_path, answers, word):
    result = run_job(tmp_path, 'snapshot.yml', survey_defaults('snapshot', **answers))
    assert_failed_at_check(result, word)


def test_snapshot_of_a_missing_guest_fails_in_the_module(tmp_path, unique):
    result = run_job(tmp_path, 'snapshot.yml', survey_defaults('snapshot', snapshot_guest=unique, snapshot_name='s1'))
    assert result.status == 'failed' and result.rc == 2
    assert one(result, 'runner_on_ok', 'Check the variables')
    failed = one(result, 'runner_on_failed', 'Apply the snapshot state')
    assert unique in failed['res']['msg'] and 'Traceback' not in failed['res']['msg']
