# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that read the answers of an AWX/Tower survey, which arrive as text.

Survey answers are untrusted: whatever they hold, these filters return data or fail with an
AnsibleFilterError naming the variable, never another exception. Input is bounded (text length,
number of items, nesting depth) and the result is marked unsafe, so a ``{{ ... }}`` inside an
answer is never templated later in the play.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

# A survey answer is a line or a small JSON document; anything beyond these bounds is refused.
MAX_TEXT = 65536        # characters of text
MAX_ITEMS = 1000        # list items, or dictionary entries at all levels
MAX_DEPTH = 16          # nesting of lists and dictionaries


def _kind(value):
    """The YAML/JSON kind of VALUE for messages (ansible-core 2.19 hands filters lazy containers whose class
    names mean nothing to a survey user)."""
    if isinstance(value, Mapping):
        return 'dict'
    if isinstance(value, (list, tuple)) or (isinstance(value, Sequence) and not isinstance(value, (str, bytes))):
        return 'list'
    return type(value).__name__


def _name(name):
    if not isinstance(name, str):
        raise AnsibleFilterError('the name argument of the survey filters must be a string, not %s' % _kind(name))
    return name


def _bounded_text(value, name):
    if len(value) > MAX_TEXT:
        raise AnsibleFilterError('%s is longer than %d characters (got %d)' % (name, MAX_TEXT, len(value)))
    return value


def _check_shape(value, name):
    """Refuse nesting deeper than MAX_DEPTH, more than MAX_ITEMS entries and non-string keys (no recursion)."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
            bad = [key for key in item if not isinstance(key, str)]
            if bad:
                raise AnsibleFilterError('%s must have string keys only, not %s' % (name, _kind(bad[0])))
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes, bytearray)):
            children = list(item)
        else:
            continue
        if depth > MAX_DEPTH:
            raise AnsibleFilterError('%s is nested deeper than %d levels' % (name, MAX_DEPTH))
        seen += len(children)
        if seen > MAX_ITEMS:
            raise AnsibleFilterError('%s holds more than %d items' % (name, MAX_ITEMS))
        stack.extend((child, depth + 1) for child in children)


def _no_constant(text):
    raise ValueError('%s is not JSON (use a number or null)' % text)


def _finite_float(text):
    number = float(text)
    if number in (float('inf'), float('-inf')):
        raise ValueError('%s is too large a number' % text)
    return number


def survey_list(value, name='value'):
    """A list, or its comma-separated text, as a list of trimmed non-empty strings."""
    name = _name(name)
    if value is None:
        return []
    if isinstance(value, str):
        items = _bounded_text(value, name).split(',')
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
    else:
        raise AnsibleFilterError('%s must be a list or a comma-separated string, not %s' % (name, _kind(value)))
    if len(items) > MAX_ITEMS:
        raise AnsibleFilterError('%s holds more than %d items' % (name, MAX_ITEMS))
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise AnsibleFilterError('%s must hold strings only, not %s' % (name, ', '.join(sorted(set(_kind(b) for b in bad)))))
    for item in items:
        _bounded_text(item, name)
    return wrap_var([item.strip() for item in items if item.strip()])


def survey_dict(value, name='value'):
    """A dictionary, or its JSON text (empty text is an empty dictionary), as a dictionary."""
    name = _name(name)
    if value is None:
        return {}
    if isinstance(value, str):
        if not _bounded_text(value, name).strip():
            return {}
        try:
            value = json.loads(value, parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError:
            raise AnsibleFilterError('%s is nested deeper than %d levels' % (name, MAX_DEPTH)) from None
        except ValueError as exc:
            raise AnsibleFilterError('%s must be a dictionary or its JSON text, e.g. {"bandwidth": 500}: %s'
                                     % (name, exc)) from None
    if not isinstance(value, Mapping):
        raise AnsibleFilterError('%s must be a dictionary or its JSON text, not %s' % (name, _kind(value)))
    _check_shape(value, name)
    return wrap_var(dict(value))


class FilterModule(object):

    def filters(self):
        return dict(survey_list=survey_list, survey_dict=survey_dict)
