"""kvmops.kvm.qemu_agent: the agent protocol layer (_agent.py) and the plugin's refusals, without a guest.

The protocol tests talk to a small in-memory stand-in for qemu-guest-agent (``FakeAgent``: a scripted
guest-exec and a dictionary of files); the plugin tests use libvirt's test driver for the refusals that
need a hypervisor (guest not found, guest not running, no agent). A real guest is in
tests/integration/test_qemu_agent.py.
"""

import base64
import io
import json
import os

import pytest
import yaml

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.doc_fragments import connection_pipelining
from ansible.plugins.loader import connection_loader

from ansible_collections.kvmops.kvm.plugins.connection import qemu_agent
from ansible_collections.kvmops.kvm.plugins.module_utils import _agent
from ansible_collections.kvmops.kvm.plugins.module_utils._agent import AgentError, AgentSession


# ---------------------------------------------------------------- a stand-in agent
class FakeAgent(object):
    """Answers agent requests like qemu-guest-agent: guest-exec runs a scripted result, files live in a dict."""

    def __init__(self, exec_result=None, polls=0, write_limit=None, fail=None):
        self.files = {}
        self.handles = {}
        self.requests = []
        self.exec_result = exec_result or dict(exitcode=0)
        self.polls = polls
        self.write_limit = write_limit
        self.fail = fail or {}

    def __call__(self, req, timeout):
        json.dumps(req)   # every request must be JSON-serializable, as the real transport sends it
        self.requests.append(req)
        name, args = req['execute'], req.get('arguments', {})
        if name in self.fail:
            raise self.fail[name]
        return {'return': getattr(self, name.replace('-', '_'))(**args)}

    def guest_info(self):
        return dict(supported_commands=[dict(name=n, enabled=True) for n in _agent.REQUIRED_COMMANDS])

    def guest_exec(self, **args):
        return dict(pid=42)

    def guest_exec_status(self, pid):
        assert pid == 42
        if self.polls:
            self.polls -= 1
            return dict(exited=False)
        return dict(self.exec_result, exited=True)

    def guest_file_open(self, path, mode):
        handle = 1000 + len(self.handles)
        if mode == 'rb' and path not in self.files:
            raise AgentError('no such file', kind='agent')
        if mode == 'wb':
            self.files[path] = b''
        self.handles[handle] = [path, 0, True]
        return handle

    def guest_file_write(self, handle, **args):
        path = self.handles[handle][0]
        data = base64.b64decode(args['buf-b64'])
        if self.write_limit:
            data = data[:self.write_limit]
        self.files[path] += data
        return dict(count=len(data), eof=False)

    def guest_file_read(self, handle, count):
        path, pos, _open = self.handles[handle]
        data = self.files[path][pos:pos + count]
        self.handles[handle][1] = pos + len(data)
        return {'count': len(data), 'buf-b64': base64.b64encode(data).decode(), 'eof': pos + len(data) >= len(self.files[path])}

    def guest_file_close(self, handle):
        self.handles[handle][2] = False
        return {}

    def names(self):
        return [r['execute'] for r in self.requests]


def b64(data):
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- guest-exec requests
@pytest.mark.parametrize('cmd', [
    "/bin/sh -c 'echo ~/.ansible/tmp && id -un'",
    'echo "$(touch /tmp/x)"; `reboot`; a b\tc',
    u'printf caf\u00e9',
])
def test_exec_request_is_the_shell_with_the_command_as_one_argument(cmd):
    req = _agent.exec_request(cmd)
    assert req == {'execute': 'guest-exec',
                   'arguments': {'path': '/bin/sh', 'arg': ['-c', cmd], 'capture-output': True}}
    assert json.loads(json.dumps(req)) == req


def test_exec_request_input_data_is_base64_of_the_bytes():
    data = bytes(range(256)) * 3
    req = _agent.exec_request('cat', executable='/bin/bash', in_data=data)
    assert req['arguments']['path'] == '/bin/bash'
    assert base64.b64decode(req['arguments']['input-data']) == data


def test_exec_request_refuses_non_text():
    with pytest.raises(AgentError):
        _agent.exec_request(['ls', '-l'])


# ---------------------------------------------------------------- results
def test_exec_result_decodes_binary_output_and_exit_code():
    out, err = b'\x00\xff\n{{ lookup("pipe", "id") }}', b'warn\n'
    assert _agent.exec_result({'exited': True, 'exitcode': 3, 'out-data': b64(out), 'err-data': b64(err)}) == (3, out, err)
    assert _agent.exec_result({'exited': True, 'exitcode': 0}) == (0, b'', b'')


def test_exec_result_signal_is_128_plus_the_signal():
    assert _agent.exec_result({'exited': True, 'signal': 9})[0] == 137


@pytest.mark.parametrize('stream', ['out', 'err'])
def test_exec_result_truncated_output_is_an_error(stream):
    with pytest.raises(AgentError, match='truncated the command.s std%s' % stream) as info:
        _agent.exec_result({'exited': True, 'exitcode': 0, stream + '-truncated': True})
    assert info.value.kind == 'truncated'


@pytest.mark.parametrize('value', ['not base64!', 'YQ', 17])
def test_bad_base64_is_a_clear_error(value):
    with pytest.raises(AgentError, match='stdout'):
        _agent.decode_b64(value, 'stdout')


@pytest.mark.parametrize('reply', [None, [], {'something': 1}, 'x'])
def test_unexpected_replies_are_clear_errors(reply):
    with pytest.raises(AgentError, match='unexpected reply to guest-ping'):
        _agent.returned(reply, 'guest-ping')


def test_agent_error_reply_is_reported():
    with pytest.raises(AgentError, match='refused guest-exec: no'):
        _agent.returned({'error': {'class': 'GenericError', 'desc': 'no'}}, 'guest-exec')


# ---------------------------------------------------------------- policy and error mapping
def test_disabled_commands_lists_missing_and_disabled_ones():
    info = dict(supported_commands=[dict(name=n, enabled=n != 'guest-exec') for n in _agent.REQUIRED_COMMANDS
                                    if n != 'guest-file-write'])
    assert _agent.disabled_commands(info) == ['guest-exec', 'guest-file-write']
    assert _agent.disabled_commands(FakeAgent().guest_info()) == []


def test_session_refuses_an_agent_whose_policy_blocks_exec():
    agent = FakeAgent()
    agent.guest_info = lambda: dict(supported_commands=[dict(name='guest-exec', enabled=False)])
    with pytest.raises(AgentError, match='policy does not permit guest-exec, guest-exec-status') as info:
        AgentSession(agent).check_commands()
    assert info.value.kind == 'policy' and 'BLACKLIST_RPC' in str(info.value)


@pytest.mark.parametrize('code, message, kind, words', [
    (42, "Domain not found: no domain with matching name 'x'", 'not_found', 'no such guest'),
    (74, 'argument unsupported: QEMU guest agent is not configured', 'no_channel', 'guest_agent: true'),
    (55, 'Requested operation is not valid: domain is not running', 'not_running', 'is not running'),
    (86, 'Guest agent is not responding: QEMU guest agent is not connected', 'not_connected', 'qemu-guest-agent installed'),
    (86, 'Guest agent is not responding: Guest agent not available for now', 'not_connected', 'not answering'),
    (1, "internal error: unable to execute QEMU agent command 'guest-exec': The command guest-exec has been disabled "
        "for this instance", 'policy', 'policy does not permit guest-exec'),
    (1, "internal error: unable to execute QEMU agent command 'guest-file-open': Failed to open file '/x': "
        "No such file or directory", 'agent', 'No such file'),
])
def test_libvirt_errors_map_to_clear_messages(code, message, kind, words):
    err = _agent.classify(code, message, 'web01', 'qemu:///system', 'guest-exec')
    assert err.kind == kind
    assert words in str(err) and 'web01' in str(err) and 'qemu:///system' in str(err)
    assert _agent.one_line(message) in str(err)   # libvirt's own text is always included


# ---------------------------------------------------------------- running a command
def test_run_polls_until_exited_with_a_growing_delay():
    agent = FakeAgent(exec_result={'exitcode': 2, 'out-data': b64(b'out'), 'err-data': b64(b'err')}, polls=6)
    sleeps = []
    rc, out, err = AgentSession(agent, sleep=sleeps.append).run('false', in_data=b'input')
    assert (rc, out, err) == (2, b'out', b'err')
    assert agent.names() == ['guest-exec'] + ['guest-exec-status'] * 7
    assert agent.requests[0]['arguments']['arg'] == ['-c', 'false']
    assert base64.b64decode(agent.requests[0]['arguments']['input-data']) == b'input'
    assert sleeps == sorted(sleeps) and sleeps[-1] <= 0.5 and len(sleeps) == 6


class ShellAgent(FakeAgent):
    """FakeAgent whose guest-exec answers by command: mktemp prints a path, the rest run scripted."""

    def __init__(self, mktemp=b'/tmp/.kvmops-stdin.AbCdE12345\n', **kwargs):
        super().__init__(**kwargs)
        self.mktemp = mktemp
        self.results = []

    def guest_exec(self, **args):
        cmd = args['arg'][1]
        if cmd.startswith('umask 077 && mktemp'):
            self.results.append(dict(exitcode=0, **{'out-data': b64(self.mktemp)}))
        else:
            self.results.append(dict(exitcode=0, **{'out-data': b64(b'ran')}))
        return dict(pid=42)

    def guest_exec_status(self, pid):
        return dict(self.results[-1], exited=True)


def test_small_stdin_is_one_guest_exec():
    agent = ShellAgent()
    AgentSession(agent).run('python3', in_data=b'x' * _agent.INLINE_STDIN_MAX)
    assert agent.names() == ['guest-exec', 'guest-exec-status']


def test_large_stdin_is_staged_in_a_private_file_in_chunks_and_removed():
    # ansible-core 2.19's pipelined AnsiballZ payload (~181 KB) in one input-data stalled the real agent
    payload = bytes(range(256)) * 800     # 204,800 bytes
    agent = ShellAgent()
    rc, out, _err = AgentSession(agent).run("sudo -n -u nobody /bin/sh -c 'python3'", in_data=payload)
    execs = [r['arguments'] for r in agent.requests if r['execute'] == 'guest-exec']
    assert [a['arg'][1] for a in execs] == [
        'umask 077 && mktemp /tmp/.kvmops-stdin.XXXXXXXXXX',
        "{ sudo -n -u nobody /bin/sh -c 'python3'\n} < /tmp/.kvmops-stdin.AbCdE12345",
        'rm -f /tmp/.kvmops-stdin.AbCdE12345']
    assert not any('input-data' in a for a in execs)          # nothing large in one message
    writes = [r for r in agent.requests if r['execute'] == 'guest-file-write']
    assert len(writes) == 4 and all(len(base64.b64decode(w['arguments']['buf-b64'])) <= _agent.CHUNK_SIZE for w in writes)
    assert agent.files['/tmp/.kvmops-stdin.AbCdE12345'] == payload and (rc, out) == (0, b'ran')


@pytest.mark.parametrize('answer', [b'/etc/shadow\n', b'/tmp/.kvmops-stdin.AbCdE12345; reboot\n', b''])
def test_a_hostile_mktemp_answer_is_refused_before_anything_is_written(answer):
    agent = ShellAgent(mktemp=answer)
    with pytest.raises(AgentError, match='cannot stage the command input') as info:
        AgentSession(agent).run('python3', in_data=b'x' * (_agent.INLINE_STDIN_MAX + 1))
    assert info.value.kind == 'transfer' and agent.files == {} and agent.names() == ['guest-exec', 'guest-exec-status']


def test_run_gives_up_after_command_timeout():
    agent = FakeAgent(polls=10 ** 6)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    with pytest.raises(AgentError, match=r'pid 42 .* did not exit within command_timeout \(5 s\)') as info:
        AgentSession(agent, sleep=sleep, clock=lambda: now[0]).run('sleep 60', command_timeout=5)
    assert info.value.kind == 'timeout' and 5 <= now[0] < 6


def test_run_refuses_a_reply_without_pid():
    agent = FakeAgent()
    agent.guest_exec = lambda **args: {}
    with pytest.raises(AgentError, match='unexpected guest-exec reply'):
        AgentSession(agent).run('true')


# ---------------------------------------------------------------- files in chunks
@pytest.mark.parametrize('size', [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_put_and_fetch_round_trip_binary_in_bounded_chunks(tmp_path, size):
    data = os.urandom(size)
    agent = FakeAgent()
    session = AgentSession(agent, chunk_size=4096)
    src = tmp_path / 'src'
    src.write_bytes(data)
    with open(src, 'rb') as handle:
        session.put(handle.read, '/tmp/f')
    assert agent.files['/tmp/f'] == data
    writes = [r for r in agent.requests if r['execute'] == 'guest-file-write']
    assert len(writes) == -(-size // 4096)
    assert all(len(base64.b64decode(w['arguments']['buf-b64'])) <= 4096 for w in writes)

    agent.requests = []
    chunks = []
    assert session.fetch('/tmp/f', chunks.append) == size
    assert b''.join(chunks) == data and all(len(c) <= 4096 for c in chunks)
    reads = [r for r in agent.requests if r['execute'] == 'guest-file-read']
    assert all(r['arguments']['count'] == 4096 for r in reads)
    assert not any(open_ for _path, _pos, open_ in agent.handles.values())   # every handle closed


def test_put_resends_what_the_agent_did_not_write():
    agent = FakeAgent(write_limit=1000)
    data = os.urandom(5000)
    chunks = [data, b'']
    AgentSession(agent, chunk_size=8192).put(lambda size: chunks.pop(0), '/tmp/f')
    assert agent.files['/tmp/f'] == data
    assert agent.names().count('guest-file-write') == 5


def test_put_closes_the_handle_when_a_write_fails_and_keeps_the_write_error():
    agent = FakeAgent(fail={'guest-file-write': AgentError('disk full'), 'guest-file-close': AgentError('close failed')})
    with pytest.raises(AgentError, match='disk full'):
        AgentSession(agent).put(lambda size: b'x', '/tmp/f')
    assert agent.names()[-1] == 'guest-file-close'


def test_fetch_of_a_missing_file_fails_clearly():
    with pytest.raises(AgentError, match='no such file'):
        AgentSession(FakeAgent()).fetch('/nope', lambda data: None)


def test_fetch_refuses_more_data_than_asked_for():
    agent = FakeAgent()
    agent.files['/f'] = b'x' * 100
    agent.guest_file_read = lambda handle, count: {'buf-b64': b64(b'y' * (count + 1)), 'eof': True}
    with pytest.raises(AgentError, match='more file data than asked'):
        AgentSession(agent, chunk_size=10).fetch('/f', lambda data: None)
    assert agent.names()[-1] == 'guest-file-close'


def test_chunk_size_is_bounded():
    # A default write request stays below the size that stalled qemu-guest-agent 7.2 (about 260 KiB of JSON).
    agent = FakeAgent()
    data = [os.urandom(_agent.CHUNK_SIZE)] * 2 + [b'']
    AgentSession(agent).put(lambda size: data.pop(0)[:size], '/f')
    assert max(len(json.dumps(r)) for r in agent.requests) < 128 * 1024
    with pytest.raises(AgentError):
        AgentSession(FakeAgent(), chunk_size=_agent.MAX_CHUNK_SIZE + 1)


# ---------------------------------------------------------------- the plugin, against libvirt's test driver
NODE = """<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <domain type='test'>
    <name>running01</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>off01</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>
"""


@pytest.fixture
def node(tmp_path):
    path = tmp_path / 'node.xml'
    path.write_text(NODE)
    return 'test://' + str(path)


def connection(**options):
    """The plugin as ansible-core's loader sets it up, with ``options`` as host variables."""
    spec = yaml.safe_load(qemu_agent.DOCUMENTATION)['options']
    spec.update(yaml.safe_load(connection_pipelining.ModuleDocFragment.DOCUMENTATION)['options'])
    C.config.initialize_plugin_configuration_definitions('connection', 'kvmops.kvm.qemu_agent', spec)
    conn = qemu_agent.Connection(PlayContext(), None)
    # Keywords: ansible-core 2.19 made these arguments keyword-only.
    connection_loader._update_object(obj=conn, name='kvmops.kvm.qemu_agent', path=qemu_agent.__file__, resolved='kvmops.kvm.qemu_agent')
    conn.set_options(var_options=options)
    return conn


@pytest.mark.parametrize('options, words', [
    (dict(inventory_hostname='a b'), 'remote_addr: invalid guest name'),
    (dict(inventory_hostname='-rf'), 'remote_addr: invalid guest name'),
    (dict(inventory_hostname='web01', ansible_libvirt_uri='qemu+ext:///system?command=/bin/id'),
     'uri: the ext transport'),
    (dict(inventory_hostname='web01', ansible_libvirt_uri='qemu:///{{x}}'), 'uri: must not contain {'),
    (dict(inventory_hostname='web01', ansible_libvirt_uri='vbox:///session'), "uri: driver 'vbox' is not supported"),
    (dict(inventory_hostname='web01', ansible_qemu_agent_timeout=0), 'timeout must be a whole number'),
])
def test_bad_options_are_refused_before_connecting(options, words):
    with pytest.raises(AnsibleConnectionFailure, match='kvmops.kvm.qemu_agent: ') as info:
        connection(**options)._connect()
    assert words in str(info.value)


def test_guest_name_precedence():
    conn = connection(inventory_hostname='inv', ansible_host='10.0.0.5', ansible_libvirt_guest='real-name')
    assert conn.get_option('remote_addr') == 'real-name'
    assert connection(inventory_hostname='inv', ansible_host='g2').get_option('remote_addr') == 'g2'
    assert connection(inventory_hostname='inv').get_option('remote_addr') == 'inv'


def test_uri_from_environment(monkeypatch):
    monkeypatch.setenv('LIBVIRT_DEFAULT_URI', 'qemu+ssh://root@hv9/system')
    assert connection(inventory_hostname='g').get_option('uri') == 'qemu+ssh://root@hv9/system'
    assert connection(inventory_hostname='g', ansible_libvirt_uri='test:///default').get_option('uri') == 'test:///default'


def test_ext_uri_accepted_only_when_allowed(node):
    conn = connection(inventory_hostname='g', ansible_libvirt_uri='qemu+ext:///system?command=/bin/true',
                      ansible_libvirt_uri_allow_ext=True)
    assert conn._settings() == ('g', 'qemu+ext:///system?command=/bin/true')


@pytest.mark.parametrize('guest, words', [
    ('nosuchguest', 'guest nosuchguest on test://.*: no such guest'),
    ('off01', 'guest off01 on test://.* is not running'),
    ('running01', 'guest running01 on test://.*: guest agent command guest-info failed'),
])
def test_refusals_from_the_hypervisor(node, guest, words):
    conn = connection(inventory_hostname=guest, ansible_libvirt_uri=node)
    with pytest.raises(AnsibleConnectionFailure, match='kvmops.kvm.qemu_agent: ' + words):
        conn._connect()
    assert not conn.connected and conn._virt is None


def test_fetch_file_is_private_atomic_and_never_follows_a_planted_link(tmp_path):
    agent = FakeAgent()
    data = os.urandom(10000)
    conn = connection(inventory_hostname='g')
    conn._session = AgentSession(agent, chunk_size=4096)
    conn._connected = True
    conn._session.put(io.BytesIO(data).read, '/tmp/f')
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    target = tmp_path / 'fetched'
    target.symlink_to(victim)
    conn.fetch_file('/tmp/f', str(target))
    assert victim.read_bytes() == b'precious', 'the planted link was written through'
    assert not target.is_symlink() and target.read_bytes() == data
    assert target.stat().st_mode & 0o777 == 0o600
    agent.fail['guest-file-read'] = AgentError('agent went away')
    with pytest.raises(AnsibleConnectionFailure, match='cannot fetch'):
        conn.fetch_file('/tmp/f', str(tmp_path / 'partial'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fetched', 'victim'], 'a failed fetch leaves nothing'
