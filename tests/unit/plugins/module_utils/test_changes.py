"""The shared change set: the check-mode guard, the record and the common result keys."""

import pytest

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet, entry


class Client(object):
    def __init__(self):
        self.calls = []

    def call(self, what, func, *args, **kwargs):
        self.calls.append(what)
        return func(*args, **kwargs)


def test_check_mode_writes_nothing():
    written = []
    changes = ChangeSet(FakeModule(check_mode=True), Client())
    changes.record('config', 'memory', before=1, after=2)
    assert changes.write('domain vm', written.append, 'x') is None
    assert changes.host(written.append, 'y') is None
    assert written == [] and changes.client.calls == []
    assert changes.result()['changed'] is True


def test_writes_go_through_the_client_and_name_the_object():
    written = []
    changes = ChangeSet(FakeModule(), Client())
    changes.write('domain vm', written.append, 'x')
    changes.host(written.append, 'y')
    assert written == ['x', 'y'] and changes.client.calls == ['domain vm']


def test_result_keys_are_the_same_for_every_module():
    changes = ChangeSet(FakeModule(diff=True))
    kept = changes.record('live', 'vcpus', before=1, after=2)
    dropped = changes.record('config', 'title', before='a', after='a')
    changes.drop(dropped)
    changes.restart_needed('machine', 'cpu_mode', 'machine')
    changes.add_diff('a\n', 'b\n', before_header='vm (before)')
    out = changes.result(domain={'name': 'vm'})
    assert out['changes'] == [kept] and out['changed'] is True
    assert out['pending_restart'] == ['cpu_mode', 'machine']
    assert out['diff'] == dict(before='a\n', after='b\n', before_header='vm (before)')
    assert out['domain'] == {'name': 'vm'}


def test_nothing_recorded_is_unchanged_and_no_diff_outside_diff_mode():
    changes = ChangeSet(FakeModule())
    changes.add_diff('a', 'a')
    assert changes.result() == dict(changed=False, changes=[], pending_restart=[])


def test_secrets_are_registered_for_masking():
    module = FakeModule()
    ChangeSet(module).secret('s3cret', '', None)
    assert module.no_log_values == {'s3cret'}


def test_scope_is_one_of_three():
    assert entry('host', 'ifcfg', 'write')['scope'] == 'host'
    with pytest.raises(ValueError):
        entry('elsewhere', 'x')


def test_a_restart_clears_what_waited_for_it():
    changes = ChangeSet(FakeModule())
    changes.restart_needed('machine')
    changes.restarted()
    assert changes.result()['pending_restart'] == []
