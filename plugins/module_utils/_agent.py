# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU guest agent protocol of the ``kvmops.kvm.qemu_agent`` connection plugin.

Private module (leading underscore): free to change between releases.

Pure logic, no libvirt: request building, polling ``guest-exec-status``, base64 decoding, chunked
file transfer and the mapping of libvirt's agent errors to clear messages. The transport is a
callable ``send(request_dict, timeout) -> reply_dict`` given by the connection plugin (the real one
calls ``libvirt_qemu.qemuAgentCommand``); everything from the guest is treated as data.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import shlex
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, one_line

# The agent commands the plugin needs; a guest whose agent disables one of them (RHEL's default policy
# disables guest-exec and guest-file-*) is refused before anything runs.
REQUIRED_COMMANDS = ('guest-exec', 'guest-exec-status', 'guest-file-open', 'guest-file-read',
                     'guest-file-write', 'guest-file-close')

# Raw bytes per guest-file-read/-write request (its base64 text is a third larger). Measured with
# qemu-guest-agent 7.2 (Debian 12) under TCG: writes of 64 and 128 KiB answer within a second, one of
# 192 KiB never answers (libvirt: "Guest agent not available for now"), so the chunk stays well below.
CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 96 * 1024
# The same limit holds for guest-exec's input-data (one message): ansible-core 2.19's AnsiballZ payload of
# ansible.builtin.command is 181 KB, 242 KB as base64, and a pipelined task sent it as stdin in one request
# that the agent stopped answering under load. Larger stdin goes to a private file in the guest in chunks.
INLINE_STDIN_MAX = CHUNK_SIZE
STAGED_STDIN = re.compile(r'/tmp/\.kvmops-stdin\.[A-Za-z0-9]{10}')

# libvirt error codes (virErrorNumber); numbers, so that this module needs no libvirt import.
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_ERR_AGENT_UNSYNCED = 97


class AgentError(KvmError):
    """A guest agent failure phrased for the user; ``kind`` says which (for callers and tests)."""

    def __init__(self, msg, kind='agent', **facts):
        super().__init__(msg, **facts)
        self.kind = kind


# ---------------------------------------------------------------- requests
def request(command, **arguments):
    """One agent request as a dictionary (the plugin serializes it with json)."""
    req = {'execute': command}
    if arguments:
        req['arguments'] = arguments
    return req


def exec_request(cmd, executable='/bin/sh', in_data=None):
    """``guest-exec`` of ``executable -c cmd``: the whole command is ONE argv element, never re-split.

    ``cmd`` is the command line Ansible built for a POSIX shell; it reaches the guest's shell as it is,
    as ``ssh`` would hand it to the remote shell. ``in_data`` (bytes) becomes the process's stdin.
    """
    if isinstance(cmd, bytes):
        cmd = cmd.decode('utf-8')
    if not isinstance(cmd, str):
        raise AgentError('the command must be text, not %s' % type(cmd).__name__, kind='usage')
    args = dict(path=executable, arg=['-c', cmd], **{'capture-output': True})
    if in_data is not None:
        args['input-data'] = base64.b64encode(in_data).decode('ascii')
    return request('guest-exec', **args)


def decode_b64(value, what):
    """Bytes from the agent's base64 text; a malformed value is a clear error, never a traceback."""
    if value is None:
        return b''
    if not isinstance(value, str):
        raise AgentError('the guest agent sent %s that is not base64 text' % what, kind='protocol')
    try:
        return base64.b64decode(value.encode('ascii'), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        raise AgentError('the guest agent sent %s that is not valid base64' % what, kind='protocol') from None


def returned(reply, command):
    """The ``return`` member of an agent reply, or a clear error for anything else."""
    if isinstance(reply, dict) and 'return' in reply:
        return reply['return']
    if isinstance(reply, dict) and isinstance(reply.get('error'), dict):
        raise AgentError('the guest agent refused %s: %s' % (command, one_line(reply['error'].get('desc'))))
    raise AgentError('the guest agent sent an unexpected reply to %s' % command, kind='protocol')


def exec_result(status):
    """``(rc, stdout, stderr)`` from a final ``guest-exec-status`` reply.

    A process killed by a signal has no exit code: the shell convention 128 + signal is used.
    Output the agent cut off (it keeps at most 16 MiB per stream) is an error, since half a module
    result is worse than none.
    """
    if not isinstance(status, dict):
        raise AgentError('the guest agent sent an unexpected guest-exec-status reply', kind='protocol')
    for stream in ('out', 'err'):
        if status.get(stream + '-truncated'):
            raise AgentError('the guest agent truncated the command\'s std%s (it keeps at most 16 MiB); '
                             'write large output to a file and fetch it' % stream, kind='truncated')
    stdout = decode_b64(status.get('out-data'), 'stdout')
    stderr = decode_b64(status.get('err-data'), 'stderr')
    if isinstance(status.get('exitcode'), int):
        rc = status['exitcode']
    elif isinstance(status.get('signal'), int):
        rc = 128 + status['signal']
    else:
        rc = -1
    return rc, stdout, stderr


def disabled_commands(info):
    """The required commands the agent (``guest-info`` reply) lacks or has disabled, in order."""
    supported = {}
    for entry in (info or {}).get('supported_commands') or []:
        if isinstance(entry, dict) and isinstance(entry.get('name'), str):
            supported[entry['name']] = bool(entry.get('enabled', True))
    return [name for name in REQUIRED_COMMANDS if not supported.get(name, False)]


POLICY_HINT = ('the guest agent\'s policy does not permit %s; allow it in the guest (RHEL and Fedora: '
               'remove it from --block-rpcs / BLACKLIST_RPC or add it to --allow-rpcs in /etc/sysconfig/qemu-ga, '
               'then restart qemu-guest-agent)')


def classify(code, message, guest, uri, command=None):
    """An :class:`AgentError` with a clear message for a libvirt error (``code``, libvirt's ``message``)."""
    text = one_line(message)
    where = 'guest %s on %s' % (guest, uri)
    if code == VIR_ERR_NO_DOMAIN:
        return AgentError('%s: no such guest (%s)' % (where, text), kind='not_found')
    if code == VIR_ERR_ARGUMENT_UNSUPPORTED and 'not configured' in text:
        return AgentError('%s has no guest agent channel; define it with guest_agent: true (kvm_domain) and restart '
                          'the guest (libvirt: %s)' % (where, text), kind='no_channel')
    if code == VIR_ERR_OPERATION_INVALID and 'not running' in text:
        return AgentError('%s is not running (libvirt: %s)' % (where, text), kind='not_running')
    if 'has been disabled' in text or 'CommandDisabled' in text:
        return AgentError('%s: %s (libvirt: %s)' % (where, POLICY_HINT % (command or 'this command'), text),
                          kind='policy')
    if code in (VIR_ERR_AGENT_UNRESPONSIVE, VIR_ERR_AGENT_UNSYNCED, VIR_ERR_OPERATION_TIMEOUT):
        return AgentError('%s: the guest agent is not connected or not answering; is qemu-guest-agent installed and '
                          'running in the guest? (libvirt: %s)' % (where, text), kind='not_connected')
    return AgentError('%s: guest agent command %s failed: %s' % (where, command or '', text), kind='agent')


# ---------------------------------------------------------------- the session
class AgentSession(object):
    """Commands and file transfers over one guest's agent.

    ``send(request_dict, timeout)`` returns the decoded reply dictionary or raises :class:`AgentError`.
    ``timeout`` bounds each request; ``command_timeout`` (0 - no bound) bounds a whole command.
    """

    def __init__(self, send, timeout=30, chunk_size=CHUNK_SIZE, sleep=time.sleep, clock=time.monotonic):
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise AgentError('chunk size must be between 1 and %d bytes' % MAX_CHUNK_SIZE, kind='usage')
        self.send = send
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.sleep = sleep
        self.clock = clock

    def call(self, command, **arguments):
        return returned(self.send(request(command, **arguments), self.timeout), command)

    def check_commands(self):
        """Refuse an agent that lacks or disables a command the plugin needs (its policy)."""
        missing = disabled_commands(self.call('guest-info'))
        if missing:
            raise AgentError(POLICY_HINT % ', '.join(missing), kind='policy')

    def run(self, cmd, in_data=None, executable='/bin/sh', command_timeout=0, poll_max=0.5):
        """Run ``cmd`` through ``executable -c``; ``(rc, stdout, stderr)`` once it exited."""
        if in_data is not None and len(in_data) > INLINE_STDIN_MAX:
            return self._run_staged(cmd, in_data, executable, command_timeout, poll_max)
        started = returned(self.send(exec_request(cmd, executable, in_data), self.timeout), 'guest-exec')
        if not isinstance(started, dict) or not isinstance(started.get('pid'), int):
            raise AgentError('the guest agent sent an unexpected guest-exec reply', kind='protocol')
        pid = started['pid']
        deadline = self.clock() + command_timeout if command_timeout else None
        delay = 0.02
        while True:
            status = self.call('guest-exec-status', pid=pid)
            if not isinstance(status, dict):
                raise AgentError('the guest agent sent an unexpected guest-exec-status reply', kind='protocol')
            if status.get('exited'):
                return exec_result(status)
            if deadline is not None and self.clock() >= deadline:
                raise AgentError('the command (pid %d in the guest) did not exit within command_timeout (%s s); '
                                 'it may still be running' % (pid, command_timeout), kind='timeout')
            self.sleep(delay)
            delay = min(delay * 2, poll_max)

    def _run_staged(self, cmd, in_data, executable, command_timeout, poll_max):
        """``run`` with stdin too large for one agent message: written in chunks to a new private file in the
        guest (mktemp, umask 077), redirected into the command, and removed whatever happened."""
        rc, out, err = self.run('umask 077 && mktemp /tmp/.kvmops-stdin.XXXXXXXXXX', executable=executable)
        path = out.decode('ascii', 'replace').strip()
        if rc != 0 or not STAGED_STDIN.fullmatch(path):   # the guest is not trusted: only a path of that shape
            raise AgentError('cannot stage the command input in the guest (mktemp: rc=%s, %s)'
                             % (rc, one_line(err.decode('utf-8', 'replace'))[:200] or 'unexpected answer'), kind='transfer')
        quoted = shlex.quote(path)
        try:
            self.put(io.BytesIO(in_data).read, path)
            return self.run('{ %s\n} < %s' % (cmd, quoted), executable=executable, command_timeout=command_timeout,
                            poll_max=poll_max)
        finally:
            try:
                self.run('rm -f %s' % quoted, executable=executable)
            except AgentError:
                pass   # the first error is the one to report; /tmp is the guest's to clean

    def _open(self, path, mode):
        handle = self.call('guest-file-open', path=path, mode=mode)
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise AgentError('the guest agent sent an unexpected guest-file-open reply', kind='protocol')
        return handle

    def _close(self, handle, pending):
        try:
            self.call('guest-file-close', handle=handle)
        except AgentError:
            if pending is None:   # the transfer worked: a failed close (lost data) is the error
                raise

    def put(self, reader, path):
        """Write everything ``reader(size)`` yields (bytes, b'' at the end) to ``path`` in the guest."""
        handle = self._open(path, 'wb')
        error = None
        try:
            while True:
                chunk = reader(self.chunk_size)
                if not chunk:
                    break
                done = 0
                while done < len(chunk):   # the agent may write less than it was given
                    part = chunk[done:]
                    reply = self.call('guest-file-write', handle=handle,
                                      **{'buf-b64': base64.b64encode(part).decode('ascii')})
                    count = reply.get('count') if isinstance(reply, dict) else None
                    if not isinstance(count, int) or not 0 < count <= len(part):
                        raise AgentError('the guest agent wrote %r of %d bytes to %s' % (count, len(part), path),
                                         kind='transfer')
                    done += count
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._close(handle, error)

    def fetch(self, path, writer):
        """Read ``path`` in the guest chunk by chunk, handing each chunk to ``writer(bytes)``; returns the size."""
        handle = self._open(path, 'rb')
        error = None
        total = 0
        try:
            while True:
                reply = self.call('guest-file-read', handle=handle, count=self.chunk_size)
                if not isinstance(reply, dict):
                    raise AgentError('the guest agent sent an unexpected guest-file-read reply', kind='protocol')
                data = decode_b64(reply.get('buf-b64'), 'file data')
                if len(data) > self.chunk_size:
                    raise AgentError('the guest agent sent more file data than asked for', kind='protocol')
                if data:
                    writer(data)
                    total += len(data)
                if reply.get('eof') or not data:
                    return total
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._close(handle, error)
