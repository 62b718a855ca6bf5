# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a Sphinx (intersphinx) inventory of the ansible-core docs targets the reference links to.

antsibull-docs' pages refer to labels and environment variables of the Ansible docs
(``common_return_values``, ``ANSIBLE_CACHE_PLUGIN`` ...). Intersphinx would download
docs.ansible.com's inventory; this machine has no network, so the inventory is generated here
from the installed ansible-core's own configuration definitions (every ``env`` of
ansible/config/base.yml), and the links still point at docs.ansible.com.

Usage: python ansible_inventory.py OUTPUT
"""

from __future__ import annotations

import os
import sys
import zlib

import yaml
import ansible

LABELS = {
    'common_return_values': ('reference_appendices/common_return_values.html#common-return-values',
                             'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html#ansible-configuration-settings',
                                       'Ansible Configuration Settings'),
}


def core_envvars():
    path = os.path.join(os.path.dirname(ansible.__file__), 'config', 'base.yml')
    with open(path) as handle:
        base = yaml.safe_load(handle)
    names = set()
    for setting in base.values():
        for env in (setting or {}).get('env') or []:
            if env.get('name'):
                names.add(env['name'])
    return sorted(names)


def main(output):
    lines = []
    for label, (uri, title) in sorted(LABELS.items()):
        lines.append('%s std:label -1 %s %s' % (label, uri, title))
    for name in core_envvars():
        lines.append('%s std:envvar 1 reference_appendices/config.html#envvar-$ -' % name)
    header = ('# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n'
              '# The remainder of this file is compressed using zlib.\n').encode()
    with open(output, 'wb') as handle:
        handle.write(header + zlib.compress(('\n'.join(lines) + '\n').encode()))


if __name__ == '__main__':
    main(sys.argv[1])
