# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the serial_console role: grub defaults validated and quoted for the shell that sources them.

``/etc/default/grub`` and its drop-ins are shell scripts: grub-mkconfig sources them as root, and the
values end up in grub.cfg (grub's own script language). Every user value is checked against a narrow
character set first; then it is quoted in the shell's own way, so even a value that passed is data.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as v

SPEEDS = (9600, 19200, 38400, 57600, 115200)
PARITIES = {'no': 'n', 'odd': 'o', 'even': 'e'}
WORDS = (5, 6, 7, 8)
STOPS = (1, 2)
TERMINALS = frozenset(('console', 'serial', 'gfxterm', 'vga_text', 'mda_text', 'morse', 'spkmodem', 'ofconsole',
                       'at_keyboard', 'usb_keyboard'))
# Serial devices the kernel names console= after: ttyS0, ttyAMA0, ttyUSB1, ttysclp0, hvc0.
_PORT = re.compile(r'(tty[A-Za-z]{1,8}|hvc)([0-9]{1,3})')
_TERMINAL = re.compile(r'serial_(com|efi|usb)?[0-9]{1,3}')
# A kernel argument: key or key=value of a character set with nothing a shell or grub's script language
# reads specially (no quotes, $, `, ;, &, |, <, >, (, ), {, }, \, #, !, *, ?, whitespace).
_KERNEL_ARG = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*(=[A-Za-z0-9_.,:/@%+=-]*)?')
# Values that mean the same inside double quotes as they read: written "like this".
_DOUBLE_SAFE = re.compile(r'[A-Za-z0-9 _.,:/@%+=-]*')


def _fail(exc):
    raise AnsibleFilterError(str(exc)) from None


def _int(option, value, allowed):
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        v.refuse(option, 'must be one of %s' % ', '.join(str(a) for a in allowed), value)
    return value


def console_port(option, value):
    """A serial device name such as ttyS0 (no /dev/ prefix)."""
    if not isinstance(value, str) or not _PORT.fullmatch(value):
        v.refuse(option, 'must be a serial device name such as ttyS0, ttyAMA0 or hvc0 (no /dev/)', value)
    return value


def grub_terminal(option, value):
    """GRUB_TERMINAL: space-separated grub terminal names (console serial)."""
    if isinstance(value, (list, tuple)):
        value = ' '.join(str(item) for item in value)
    if not isinstance(value, str) or not value.strip():
        v.refuse(option, 'must name grub terminals such as "console serial"', value)
    v.text(option, value, max_length=200)
    names = value.split()
    for name in names:
        if name not in TERMINALS and not _TERMINAL.fullmatch(name):
            v.refuse(option, 'unknown grub terminal %s (known: %s, serial_comN)' % (v.shown(name), ', '.join(sorted(TERMINALS))))
    return ' '.join(names)


def kernel_arg(option, value):
    """One kernel argument (``quiet``, ``mitigations=auto``), with no shell or grub-script characters."""
    if not isinstance(value, str) or len(value) > 512 or not _KERNEL_ARG.fullmatch(value):
        v.refuse(option, 'invalid kernel argument (key or key=value; letters, digits and _ . , : / @ %% + = -, '
                         'no spaces, quotes or shell characters)', value)
    if value.split('=', 1)[0] == 'console':
        v.refuse(option, 'console= is set by the role from serial_console_port and serial_console_speed', value)
    return value


def grub_serial_settings(port='ttyS0', speed=115200, parity='no', word=8, stop=1, keep_tty0=True,
                         terminal='console serial', extra_args=None):
    """The serial_console role's inputs validated, and what it writes computed from them.

    Returns ``console_arg`` (``console=ttyS0,115200n8``), ``kernel_args`` (the role's own arguments, the
    extra ones after them), ``grub_terminal`` and ``grub_serial_command``. A bad value is an
    AnsibleFilterError that names its variable.
    """
    try:
        port = console_port('serial_console_port', port)
        speed = _int('serial_console_speed', speed, SPEEDS)
        if not isinstance(parity, str) or parity not in PARITIES:
            v.refuse('serial_console_parity', 'must be one of no, odd, even', parity)
        word = _int('serial_console_word', word, WORDS)
        stop = _int('serial_console_stop', stop, STOPS)
        if not isinstance(keep_tty0, bool):
            v.refuse('serial_console_keep_tty0', 'must be true or false', keep_tty0)
        terminal = grub_terminal('serial_console_grub_terminal', terminal)
        if extra_args is None:
            extra_args = []
        if isinstance(extra_args, (str, bytes, Mapping)) or not isinstance(extra_args, Sequence):
            v.refuse('serial_console_extra_args', 'must be a list of kernel arguments', extra_args)
        extra = []
        for index, arg in enumerate(extra_args):
            arg = kernel_arg('serial_console_extra_args[%d]' % index, arg)
            if arg not in extra:
                extra.append(arg)
    except v.ValidationError as exc:
        _fail(exc)
    console = 'console=%s,%d%s%d' % (port, speed, PARITIES[parity], word)
    unit = int(_PORT.fullmatch(port).group(2))
    return {
        'console_arg': console,
        'kernel_args': (['console=tty0'] if keep_tty0 else []) + [console],
        'extra_args': extra,
        'grub_terminal': terminal,
        'grub_serial_command': 'serial --speed=%d --unit=%d --word=%d --parity=%s --stop=%d'
                               % (speed, unit, word, parity, stop),
    }


def grub_shell_value(value, append_to=None):
    """The right-hand side of ``NAME=...`` that a POSIX shell reads back as exactly ``value``.

    Plain values are double-quoted (the form grub's own tools and grubby edit); anything else is
    single-quoted, a ``'`` written as ``'\\''``, so nothing in it is ever expanded. ``append_to``: the value
    is appended to that variable's current value, separated by a space (``"$NAME value"``).
    """
    if not isinstance(value, str):
        raise AnsibleFilterError('grub_shell_value: the value must be a string, not %s' % type(value).__name__)
    if '\x00' in value:
        raise AnsibleFilterError('grub_shell_value: a shell variable cannot hold NUL')
    prefix = ''
    if append_to is not None:
        if not isinstance(append_to, str) or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', append_to):
            raise AnsibleFilterError('grub_shell_value: append_to must be a shell variable name')
        prefix = '$' + append_to + ' '
    if _DOUBLE_SAFE.fullmatch(value):
        return '"%s%s"' % (prefix, value)
    quoted = "'" + value.replace("'", "'\\''") + "'"
    return ('"%s"' % prefix + quoted) if prefix else quoted


def grub_shell_words(value, name='GRUB_CMDLINE_LINUX'):
    """The words of the right-hand side of an assignment read from a grub defaults file.

    ``"quiet rhgb"`` -> ``['quiet', 'rhgb']``: the shell reads the quoted word as the variable's value, and
    grub-mkconfig splits that value on blanks. A value the shell would expand (``$``, backquote) or that is
    not one word is refused rather than guessed at.
    """
    if not isinstance(value, str):
        raise AnsibleFilterError('%s: the current value must be a string' % name)
    if '$' in value or '`' in value or '\\' in value:
        raise AnsibleFilterError('%s: the current value in the grub defaults (%s) uses shell expansion or '
                                 'escapes; the role does not rewrite it - edit it by hand first'
                                 % (name, v.shown(value)))
    try:
        words = shlex.split(value, comments=False, posix=True)
    except ValueError as exc:
        raise AnsibleFilterError('%s: the current value in the grub defaults cannot be read (%s)' % (name, exc)) from None
    if len(words) > 1:
        raise AnsibleFilterError('%s: the current value in the grub defaults (%s) is not one shell word (unquoted '
                                 'blanks); edit it by hand first' % (name, v.shown(value)))
    return words[0].split() if words else []


class FilterModule(object):

    def filters(self):
        return dict(grub_serial_settings=grub_serial_settings, grub_shell_value=grub_shell_value,
                    grub_shell_words=grub_shell_words)
