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

from ansible_collections.kvmops.kvm.plugins.module_utils._validate import (
    ValidationError,
    abs_path,
    count,
    dns_name,
    ifname,
    ip_address,
    ip_interface,
    ip_network,
    mac,
    object_name,
    uri,
)


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


RULES = dict(uri=uri, name=object_name, path=abs_path, ifname=ifname, dns=dns_name, mac=mac, ip=ip_address,
             cidr=ip_interface, network=ip_network, count=count)
# The options each rule takes, and their types.
RULE_OPTIONS = dict(uri=dict(allow_ext=bool), name=dict(kind=str), count=dict(minimum=int, maximum=int))


def refusal(value, rule, name='value', **options):
    """The refusal message of ``value`` under ``rule``, or '' when it passes.

    ``rule`` is one of the shared rules (uri, name, path, ifname, dns, mac, ip, cidr, network, count), so
    roles check their variables with the very rules the modules apply. For checks that collect every bad
    answer into one message (an assert's fail_msg) instead of stopping at the first; ``options`` go to
    the rule (``allow_ext`` for uri, ``kind`` for name, ``minimum``/``maximum`` for count).
    """
    if not isinstance(rule, str) or rule not in RULES:
        raise AnsibleFilterError('%s: rule must be one of %s, not %r' % (_name(name), ', '.join(sorted(RULES)), rule))
    allowed = RULE_OPTIONS.get(rule, {})
    for key, option in options.items():
        if key not in allowed or isinstance(option, bool) != (allowed[key] is bool) or not isinstance(option, allowed[key]):
            raise AnsibleFilterError('%s: the %s rule takes the options %s' % (
                _name(name), rule, ', '.join('%s (%s)' % (k, t.__name__) for k, t in sorted(allowed.items())) or 'none'))
    try:
        RULES[rule](_name(name), value, **options)
    except ValidationError as exc:
        return wrap_var(str(exc))
    return ''


class FilterModule(object):

    def filters(self):
        return dict(libvirt_uri=libvirt_uri, libvirt_name=libvirt_name, absolute_path=absolute_path, refusal=refusal)
