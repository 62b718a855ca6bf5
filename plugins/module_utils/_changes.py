# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one change set every changing module records its work in.

Private module (leading underscore): free to change between releases.

A :class:`ChangeSet` owns three things, so that no manager has its own:

* **the check-mode guard.** Every write (a libvirt call, a host command, a file) goes through
  :meth:`ChangeSet.write` or :meth:`ChangeSet.host`; in check mode they record and return None, so
  nothing can write when ``--check`` is given;
* **the record.** Each entry is a dict ``{scope, option, action, before, after}`` (plus any extra keys):
  ``scope`` is ``config`` (the persistent definition), ``live`` (the running object) or ``host`` (files,
  links and processes on the hypervisor); values registered as secrets are masked by Ansible in every
  output, and :meth:`ChangeSet.secret` registers them;
* **the common result keys.** :meth:`ChangeSet.result` gives ``changed``, ``changes`` (the entries),
  ``pending_restart`` (always a sorted list of option names whose new value waits for a restart) and,
  in diff mode, ``diff``.
"""

from __future__ import annotations

SCOPES = ('config', 'live', 'host')


def entry(scope, option, action='set', before=None, after=None, **extra):
    """One change: what (``option``), where (``scope``), how (``action``), and the values around it."""
    if scope not in SCOPES:
        raise ValueError('scope must be one of %s, not %r' % (', '.join(SCOPES), scope))
    item = dict(scope=scope, option=option, action=action, before=before, after=after)
    item.update(extra)
    return item


class ChangeSet(object):
    """The guard, the record and the result of one module run (see the module docstring)."""

    def __init__(self, module, client=None):
        self.module = module
        self.client = client
        self.check = bool(getattr(module, 'check_mode', False))
        self.entries = []
        self.pending = []
        self.diffs = []

    # -- record ------------------------------------------------------------
    def record(self, scope, option, action='set', before=None, after=None, **extra):
        """Add one entry and return it (callers may add detail to it or drop it with :meth:`drop`)."""
        item = entry(scope, option, action, before, after, **extra)
        self.entries.append(item)
        return item

    def drop(self, item):
        """Take back an entry that turned out to change nothing."""
        if item in self.entries:
            self.entries.remove(item)

    def restart_needed(self, *options):
        """Options whose new value applies at the next restart of the object."""
        for option in options:
            if option not in self.pending:
                self.pending.append(option)

    def restarted(self):
        """The object was restarted: nothing waits for a restart any more."""
        del self.pending[:]

    def secret(self, *values):
        """Mask ``values`` in everything the module prints (results, diffs, warnings, failures)."""
        no_log = getattr(self.module, 'no_log_values', None)
        if no_log is not None:
            no_log.update(v for v in values if v)

    def add_diff(self, before, after, before_header=None, after_header=None):
        """One diff section (text or dicts); several sections become a list, as Ansible allows."""
        section = dict(before=before, after=after)
        if before_header:
            section['before_header'] = before_header
        if after_header:
            section['after_header'] = after_header
        self.diffs.append(section)

    @property
    def changed(self):
        return bool(self.entries)

    # -- the guard ---------------------------------------------------------------
    def write(self, what, func, *args, **kwargs):
        """Call libvirt (``func``) outside check mode; a libvirt error names ``what``. None in check mode."""
        if self.check:
            return None
        if self.client is None:
            return func(*args, **kwargs)
        return self.client.call(what, func, *args, **kwargs)

    def host(self, func, *args, **kwargs):
        """Change the host (a file, a link, a process) outside check mode. None in check mode."""
        if self.check:
            return None
        return func(*args, **kwargs)

    # -- result --------------------------------------------------------------
    def result(self, **extra):
        """``changed``, ``changes``, ``pending_restart`` and (diff mode) ``diff``, plus ``extra``."""
        out = dict(changed=self.changed, changes=list(self.entries), pending_restart=sorted(self.pending))
        if getattr(self.module, '_diff', False) and self.diffs:
            out['diff'] = self.diffs[0] if len(self.diffs) == 1 else self.diffs
        out.update(extra)
        return out
