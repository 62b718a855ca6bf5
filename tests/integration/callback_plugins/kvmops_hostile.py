# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only notification callback of the hostile-input tier.

Around every task it takes a snapshot of what a refused input must not change: the libvirt state of
the test URI (every guest, network, pool and volume with a hash of its XML) and a file tree (the case
sandbox and the system files the collection writes). Per task it writes one JSON line to
``$KVMOPS_HOSTILE_OUT``: the task name, its result (failed, changed, msg, module_args as Ansible
printed them) and the two snapshot differences. The stdout callback stays the default one, so the
run's -vvv output is what an operator would see and is searched for secrets and tracebacks.
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r'''
name: kvmops_hostile
type: aggregate
short_description: Per-task state snapshots for the kvmops.kvm hostile-input tier
description: Records, per task, the result and what changed in libvirt and in the watched file trees.
'''

# Objects other tiers create while this one runs (the molecule lane runs beside the integration tier).
IGNORED_PREFIXES = ('kvmops-molecule',)


def _ignored(name):
    return any(name.startswith(prefix) for prefix in IGNORED_PREFIXES)


def libvirt_state(uri):
    """{kind/name: sha256 of its XML} for every object of ``uri`` (empty when libvirt is unreachable)."""
    try:
        import libvirt
    except ImportError:
        return {}
    libvirt.registerErrorHandler(lambda *_: None, None)
    state = {}
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return {}
    try:
        def digest(text):
            return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]

        for dom in conn.listAllDomains(0):
            if not _ignored(dom.name()):
                state['domain/' + dom.name()] = digest(dom.XMLDesc(2)) + ('/running' if dom.isActive() else '')
        for net in conn.listAllNetworks(0):
            if not _ignored(net.name()):
                state['network/' + net.name()] = digest(net.XMLDesc(2)) + ('/active' if net.isActive() else '')
        for pool in conn.listAllStoragePools(0):
            if _ignored(pool.name()):
                continue
            state['pool/' + pool.name()] = digest(pool.XMLDesc(1)) + ('/active' if pool.isActive() else '')
            if pool.isActive():
                try:
                    pool.refresh(0)
                    for vol in pool.listAllVolumes(0):
                        if not _ignored(vol.name()):
                            state['volume/%s/%s' % (pool.name(), vol.name())] = vol.path()
                except libvirt.libvirtError:
                    pass
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()
    return state


def file_tree(roots):
    """{path: (mode, size, sha256)} of every file under ``roots`` (links recorded by their target)."""
    tree = {}
    for root in roots:
        if not os.path.lexists(root):
            continue
        if not os.path.isdir(root) or os.path.islink(root):
            tree[root] = _stat(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if not _ignored(name):
                    tree[path] = _stat(path)
    return tree


def _stat(path):
    st = os.lstat(path)
    if os.path.islink(path):
        return ('link', os.readlink(path))
    if not os.path.isfile(path):
        return ('%o' % st.st_mode, None)
    if st.st_size > 8 * 1024 * 1024:
        return ('%o' % st.st_mode, st.st_size, st.st_mtime)
    with open(path, 'rb') as handle:
        return ('%o' % st.st_mode, st.st_size, hashlib.sha256(handle.read()).hexdigest()[:16])


def differences(before, after):
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            out.append('%s: %s -> %s' % (key, before.get(key), after.get(key)))
    return out


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'kvmops_hostile'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.out = os.environ.get('KVMOPS_HOSTILE_OUT')
        self.uri = os.environ.get('KVMOPS_HOSTILE_URI', 'qemu:///system')
        self.roots = [r for r in os.environ.get('KVMOPS_HOSTILE_WATCH', '').split(':') if r]
        self.task = None
        self.case = None
        self.before = None

    def _snapshot(self):
        return libvirt_state(self.uri), file_tree(self.roots)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.task = task.get_name()
        if self.task.startswith('case '):
            self.case = self.task[len('case '):]
        self.before = self._snapshot() if self.out else None

    def _record(self, result, status):
        if not self.out or self.before is None:
            return
        after = self._snapshot()
        data = result._result  # pylint: disable=protected-access
        line = dict(
            case=self.case, task=self.task, status=status,
            failed=bool(data.get('failed')) or status in ('failed', 'unreachable'),
            changed=bool(data.get('changed')),
            msg=str(data.get('msg', '')),
            result=json.loads(json.dumps(data, default=str)),
            libvirt_changes=differences(self.before[0], after[0]),
            file_changes=differences(self.before[1], after[1]),
        )
        with open(self.out, 'a') as handle:
            handle.write(json.dumps(line) + '\n')

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')
