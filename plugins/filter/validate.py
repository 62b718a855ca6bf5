# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that check an untrusted answer (an AWX survey, an extra variable) with the collection's own rules.

Each one applies the rule the modules apply (module_utils/_validate.py), so a playbook can refuse a
bad answer before anything runs, with the same message a module would give. The value is returned as
it was given (a path normalized) and marked unsafe, so it is never templated later in the play.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError, abs_path, object_name, uri


def _name(name):
    if not isinstance(name, str):
        raise AnsibleFilterError('the name argument of the kvmops.kvm checking filters must be a string, not %s'
                                 % type(name).__name__)
    return name


def _checked(check, name, value, *args, **kwargs):
    try:
        return wrap_var(check(_name(name), value, *args, **kwargs))
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def libvirt_uri(value, name='value', allow_ext=False):
    """A libvirt URI of an allowed driver and transport (``ext``, ``command=``, ``netcat=`` only with allow_ext)."""
    if not isinstance(allow_ext, bool):
        raise AnsibleFilterError('%s: allow_ext must be true or false, not %s' % (_name(name), type(allow_ext).__name__))
    return _checked(uri, name, value, allow_ext=allow_ext)


def libvirt_name(value, name='value', kind='name'):
    """A libvirt object name (guest, network, pool, volume, snapshot)."""
    if not isinstance(kind, str):
        raise AnsibleFilterError('%s: kind must be a string' % _name(name))
    return _checked(object_name, name, value, kind=kind)


def absolute_path(value, name='value'):
    """An absolute path without ``..``, NUL or newline, returned normalized."""
    return _checked(abs_path, name, value)


RULES = dict(uri=uri, name=object_name, path=abs_path)


def refusal(value, rule, name='value', **options):
    """The refusal message of ``value`` under ``rule`` (uri, name or path), or '' when it passes.

    For checks that collect every bad answer into one message (an assert's fail_msg) instead of
    stopping at the first; ``options`` go to the rule (``allow_ext`` for uri, ``kind`` for name).
    """
    if rule not in RULES:
        raise AnsibleFilterError('%s: rule must be one of %s, not %r' % (_name(name), ', '.join(sorted(RULES)), rule))
    if not set(options) <= {'allow_ext', 'kind'} or not isinstance(options.get('allow_ext', False), bool) \
            or not isinstance(options.get('kind', ''), str):
        raise AnsibleFilterError('%s: the options of the refusal filter are allow_ext (a bool) and kind (a string)'
                                 % _name(name))
    try:
        RULES[rule](_name(name), value, **options)
    except ValidationError as exc:
        return wrap_var(str(exc))
    return ''


class FilterModule(object):

    def filters(self):
        return dict(libvirt_uri=libvirt_uri, libvirt_name=libvirt_name, absolute_path=absolute_path, refusal=refusal)
