# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that read the answers of an AWX/Tower survey, which arrive as text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError


def _kind(value):
    return type(value).__name__


def survey_list(value, name='value'):
    """A list, or its comma-separated text, as a list of trimmed non-empty strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(',')
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
    else:
        raise AnsibleFilterError('%s must be a list or a comma-separated string, not %s' % (name, _kind(value)))
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise AnsibleFilterError('%s must hold strings only, not %s' % (name, ', '.join(sorted(set(_kind(b) for b in bad)))))
    return [item.strip() for item in items if item.strip()]


def survey_dict(value, name='value'):
    """A dictionary, or its JSON text (empty text is an empty dictionary), as a dictionary."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise AnsibleFilterError('%s must be a dictionary or its JSON text, e.g. {"bandwidth": 500}: %s'
                                     % (name, exc)) from None
    if not isinstance(value, Mapping):
        raise AnsibleFilterError('%s must be a dictionary or its JSON text, not %s' % (name, _kind(value)))
    return dict(value)


class FilterModule(object):

    def filters(self):
        return dict(survey_list=survey_list, survey_dict=survey_dict)
