# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: qemu_agent
short_description: Run tasks inside a libvirt guest through the QEMU guest agent
version_added: 1.0.0
author:
  - kvmops.kvm contributors (@kvmops)
description:
  - Runs commands and copies files inside a libvirt guest through its QEMU guest agent, over any libvirt
    URI; the guest needs no network, no SSH server and no account.
  - Commands run as C(<shell> -c <command>) through the agent's C(guest-exec), the command being one
    argument; files move in bounded chunks through C(guest-file-open), C(guest-file-read),
    C(guest-file-write) and C(guest-file-close).
  - The agent runs as root, so every task runs as root inside the guest; C(become) switches to another
    user through Ansible's become plugins (C(sudo) and C(su) need no password when run by root).
  - Whoever may open the libvirt URI read-write may run any command as root in every guest that has an
    agent. See docs/guest-agent.md.
  - Everything the guest returns (command output, fetched files) is data; this plugin never templates it,
    and ansible-core marks module results unsafe (untrusted) before a later task could template them.
requirements:
  - libvirt-python (on the controller)
  - In the guest, a running C(qemu-guest-agent) on the guest's agent channel (M(kvmops.kvm.kvm_domain) O(kvmops.kvm.kvm_domain#module:guest_agent=true)).
extends_documentation_fragment:
  - ansible.builtin.connection_pipelining
notes:
  - Only POSIX guests (Linux); the commands run through O(executable).
  - The agent keeps at most 16 MiB of a command's output per stream; longer output fails the task.
  - A command that outlives O(command_timeout) fails the task but keeps running in the guest; the agent
    has no way to stop it.
options:
  remote_addr:
    description:
      - The libvirt name of the guest (letters, digits and C(_), C(.), C(+), C(:), C(@), C(-)).
      - C(ansible_libvirt_guest) wins over C(ansible_host), which wins over the inventory host name; the
        P(kvmops.kvm.libvirt#inventory) inventory sets C(ansible_libvirt_guest) with O(kvmops.kvm.libvirt#inventory:agent_connection=true).
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_libvirt_guest
  uri:
    description:
      - libvirt connection URI of the hypervisor that runs the guest, for example V(qemu:///system) or
        V(qemu+ssh://root@hv01/system).
      - Only the V(qemu) and V(test) drivers over the local socket, V(unix), V(ssh), V(libssh), V(libssh2),
        V(tls) or V(tcp) are accepted; anything else fails before a connection is attempted.
    type: str
    default: qemu:///system
    env:
      - name: LIBVIRT_DEFAULT_URI
    vars:
      - name: ansible_libvirt_uri
  uri_allow_ext:
    description:
      - Accept URIs that make libvirt run a program on the controller, the V(ext) transport and the
        C(command=) and C(netcat=) parameters. Off because a URI is often an inventory value; see SECURITY.md.
    type: bool
    default: false
    vars:
      - name: ansible_libvirt_uri_allow_ext
  timeout:
    description:
      - Seconds one guest agent request (start a command, ask for its status, move one chunk of a file) may take.
    type: int
    default: 30
    env:
      - name: ANSIBLE_QEMU_AGENT_TIMEOUT
    vars:
      - name: ansible_qemu_agent_timeout
  command_timeout:
    description:
      - Seconds a command may run before the task fails; V(0) waits as long as it runs.
    type: int
    default: 0
    env:
      - name: ANSIBLE_QEMU_AGENT_COMMAND_TIMEOUT
    vars:
      - name: ansible_qemu_agent_command_timeout
  executable:
    description: The POSIX shell in the guest that runs each command as C(<executable> -c <command>).
    type: str
    default: /bin/sh
    vars:
      - name: ansible_qemu_agent_executable
'''

EXAMPLES = r'''
# inventory.yml - guests of the local hypervisor, reached through their agents
# all:
#   children:
#     guests:
#       hosts:
#         web01:
#         db01:
#           ansible_libvirt_uri: qemu+ssh://root@hv02.example.com/system
#       vars:
#         ansible_connection: kvmops.kvm.qemu_agent
#         ansible_python_interpreter: /usr/bin/python3

- name: Configure guests without network access
  hosts: guests
  gather_facts: false
  tasks:
    - name: Run a command
      ansible.builtin.command: uname -r
      register: kernel
      changed_when: false

    - name: Run as another user
      ansible.builtin.command: id -un
      become: true
      become_user: nobody
      changed_when: false
'''

import json
import os
import tempfile

try:
    import libvirt
    import libvirt_qemu
    LIBVIRT_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the controller
    libvirt = libvirt_qemu = None
    LIBVIRT_IMPORT_ERROR = exc

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.kvmops.kvm.plugins.module_utils._agent import AgentError, AgentSession, classify
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import object_name, uri as valid_uri

display = Display()


class Connection(ConnectionBase):
    """Commands and files inside a libvirt guest through its QEMU guest agent."""

    transport = 'kvmops.kvm.qemu_agent'
    has_pipelining = True
    has_tty = False
    default_user = 'root'   # the agent runs every command as root

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._virt = None
        self._domain = None
        self._session = None
        self._guest = None
        self._uri = None

    # -------------------------------------------------------------- options
    def _settings(self):
        """The validated guest name, URI and timeouts; refused before anything connects."""
        try:
            guest = object_name('remote_addr', self.get_option('remote_addr'), 'guest name')
            uri = valid_uri('uri', self.get_option('uri'), allow_ext=bool(self.get_option('uri_allow_ext')))
        except KvmError as exc:
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: %s' % exc) from None
        for option in ('timeout', 'command_timeout'):
            value = self.get_option(option)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if option == 'timeout' else 0):
                raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: %s must be a whole number of seconds%s'
                                               % (option, ' above 0' if option == 'timeout' else ''))
        return guest, uri

    # -------------------------------------------------------------- transport
    def _send(self, req, timeout):
        """One agent request through libvirt; libvirt errors become clear AgentErrors."""
        try:
            reply = libvirt_qemu.qemuAgentCommand(self._domain, json.dumps(req), timeout, 0)
        except libvirt.libvirtError as exc:
            raise classify(exc.get_error_code(), exc.get_error_message() or str(exc), self._guest, self._uri,
                           req.get('execute')) from None
        if reply is None:
            raise AgentError('guest %s on %s: the guest agent sent no reply to %s'
                             % (self._guest, self._uri, req.get('execute')), kind='protocol')
        try:
            return json.loads(reply)
        except ValueError:
            raise AgentError('guest %s on %s: the guest agent sent a reply that is not JSON to %s'
                             % (self._guest, self._uri, req.get('execute')), kind='protocol') from None

    def _connect(self):
        if LIBVIRT_IMPORT_ERROR is not None:
            raise AnsibleError('kvmops.kvm.qemu_agent needs libvirt-python on the controller: %s' % LIBVIRT_IMPORT_ERROR)
        if self._connected:
            return self
        self._guest, self._uri = self._settings()
        self._play_context.remote_user = self.default_user
        display.vvv('QEMU AGENT: guest %s on %s' % (self._guest, self._uri), host=self._guest)
        try:
            self._virt = libvirt.open(self._uri)
        except libvirt.libvirtError as exc:
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: cannot connect to %s: %s'
                                           % (self._uri, exc.get_error_message() or exc)) from None
        try:
            try:
                self._domain = self._virt.lookupByName(self._guest)
                active = self._domain.isActive()
            except libvirt.libvirtError as exc:
                raise classify(exc.get_error_code(), exc.get_error_message() or str(exc), self._guest, self._uri)
            if not active:
                raise AgentError('guest %s on %s is not running; start it first' % (self._guest, self._uri),
                                 kind='not_running')
            self._session = AgentSession(self._send, timeout=self.get_option('timeout'))
            self._session.check_commands()
        except AgentError as exc:
            self._disconnect()
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: %s' % exc) from None
        self._connected = True
        return self

    def _disconnect(self):
        if self._virt is not None:
            try:
                self._virt.close()
            except libvirt.libvirtError:
                pass
        self._virt = self._domain = self._session = None

    # -------------------------------------------------------------- commands
    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Run ``cmd`` in the guest through ``executable -c``; returns (rc, stdout, stderr) as bytes."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv('EXEC %s' % cmd, host=self._guest)
        try:
            return self._session.run(to_text(cmd, errors='surrogate_or_strict'), in_data=in_data,
                                     executable=self.get_option('executable'),
                                     command_timeout=self.get_option('command_timeout'))
        except (AgentError, UnicodeError) as exc:
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: guest %s: %s' % (self._guest, exc)) from None

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv('PUT %s TO %s' % (in_path, out_path), host=self._guest)
        local = to_bytes(in_path, errors='surrogate_or_strict')
        if not os.path.exists(local):
            raise AnsibleFileNotFound('kvmops.kvm.qemu_agent: file or module does not exist: %s' % in_path)
        try:
            with open(local, 'rb') as source:
                self._session.put(source.read, to_text(out_path, errors='surrogate_or_strict'))
        except (AgentError, UnicodeError) as exc:
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: guest %s: cannot copy %s to %s: %s'
                                           % (self._guest, in_path, out_path, exc)) from None
        except OSError as exc:
            raise AnsibleError('kvmops.kvm.qemu_agent: cannot read %s: %s' % (in_path, exc)) from None

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv('FETCH %s TO %s' % (in_path, out_path), host=self._guest)
        local = to_bytes(out_path, errors='surrogate_or_strict')
        # The guest's bytes go to a private (0600, O_EXCL|O_NOFOLLOW) temporary file beside the target and
        # take its name only once complete: a failed fetch leaves nothing behind, and a symlink planted at
        # the target is replaced, never written through.
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(local) or b'.', prefix=b'.qemu_agent.', suffix=b'~')
            with os.fdopen(fd, 'wb') as target:
                self._session.fetch(to_text(in_path, errors='surrogate_or_strict'), target.write)
                target.flush()
                os.fsync(target.fileno())
            os.replace(tmp, local)
            tmp = None
        except (AgentError, UnicodeError) as exc:
            raise AnsibleConnectionFailure('kvmops.kvm.qemu_agent: guest %s: cannot fetch %s: %s'
                                           % (self._guest, in_path, exc)) from None
        except OSError as exc:
            raise AnsibleError('kvmops.kvm.qemu_agent: cannot write %s: %s' % (out_path, exc)) from None
        finally:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)

    def reset(self):
        self.close()

    def close(self):
        self._disconnect()
        self._connected = False
