"""Rewrite kvm_guests' documentation of each guest's options from kvm_domain's argument spec.

kvm_guests takes exactly kvm_domain's options for each guest (and in ``defaults``); its DOCUMENTATION
lists them (untyped, by reference to kvm_domain) so that validate-modules can hold the docs to the
argument spec. When kvm_domain gains or loses an option, run this script (the unit test
test_fleet.py says so when they differ):

    .venv/bin/python scripts/kvm_guests_docs.py          # --check: exit 1 when the file would change
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'kvm_guests.py')
START = '    suboptions: &domain_options\n'
END = '  guests:\n'


def block(spec, indent=6, path=''):
    lines = []
    for key in sorted(spec):
        option = spec[key]
        ref = path + key
        pad = ' ' * (indent + 2)
        lines.append(' ' * indent + key + ':')
        lines.append(pad + 'description: As O(kvmops.kvm.kvm_domain#module:%s).' % ref)
        lines.append(pad + 'type: ' + option['type'])
        if option.get('elements'):
            lines.append(pad + 'elements: ' + option['elements'])
        if option.get('aliases'):
            lines.append(pad + 'aliases: [%s]' % ', '.join(option['aliases']))
        if option.get('options'):
            lines.append(pad + 'suboptions:')
            lines.extend(block(option['options'], indent + 4, ref + ('[].' if option['type'] == 'list' else '.')))
    return lines


def main():
    sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))
    from ansible_collections.kvmops.kvm.plugins.module_utils._fleet import DEFAULTS_SPEC
    with open(MODULE) as handle:
        text = handle.read()
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    new = head + START + '\n'.join(block(DEFAULTS_SPEC)) + '\n' + END + tail
    if new == text:
        return 0
    if '--check' in sys.argv:
        print('%s: the guests[] option docs differ from kvm_domain; run %s' % (MODULE, sys.argv[0]))
        return 1
    with open(MODULE, 'w') as handle:
        handle.write(new)
    print('rewrote %s' % MODULE)
    return 0


if __name__ == '__main__':
    sys.exit(main())
