# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the storage modules (kvm_pool, kvm_volume, kvm_snapshot) share.

Private module (leading underscore): free to change between releases.

:class:`StorageManager` is the base of the three managers: the module, its parameters and one
:class:`~._changes.ChangeSet`, through which every write goes (``ChangeSet.write`` for libvirt,
``ChangeSet.host`` for files), and which gives the common result keys (``changed``, ``changes``,
``pending_restart``, ``diff``). Next to the structured entries it keeps the one-line ``actions``
of 0.x (deprecated, removed in 2.0.0).
"""

from __future__ import annotations

from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import make_diff


class StorageManager(object):
    """The module, its parameters, the change set and the deprecated ``actions`` of one storage module run."""

    def __init__(self, module, client, what):
        self.module = module
        self.client = client
        self.params = module.params
        self.changes = ChangeSet(module, client)
        # Only to predict check mode's results: writes are guarded by the change set.
        self.check = self.changes.check
        self.what = what
        self.actions = []   # deprecated return value (0.x one-line actions), removed in 2.0.0

    def record(self, scope, option, action, legacy=None, before=None, after=None, **extra):
        """One change entry; ``legacy`` is its line in the deprecated ``actions`` list (None: not listed)."""
        item = self.changes.record(scope, option, action, before, after, **extra)
        if legacy:
            self.actions.append(legacy)
        return item

    def write(self, action, func, *args):
        """A libvirt write through the change set (nothing in check mode); errors name the object and ``action``."""
        return self.changes.write('%s: %s' % (self.what, action), func, *args)

    def diff(self, before, after):
        """The diff-mode section (text before/after, secrets in XML masked)."""
        section = make_diff(before, after)
        self.changes.add_diff(section['before'], section['after'])

    def result(self, **extra):
        """The common result keys, the deprecated ``actions`` and the module's own keys."""
        return self.changes.result(actions=list(self.actions), **extra)
