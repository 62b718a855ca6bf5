"""serial_console's grub settings: validated, and quoted so that the shell sourcing them reads back the value."""

import os
import sys

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmops.kvm.plugins.filter.grub_serial import (
    FilterModule, grub_serial_settings, grub_shell_value, grub_shell_words)


sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'integration'))
from role_decisions import source_shell  # noqa: E402  pylint: disable=wrong-import-position


def source(tmp_path, text, before='', names=('GRUB_CMDLINE_LINUX', 'GRUB_TERMINAL', 'GRUB_SERIAL_COMMAND')):
    """Source ``text`` the way grub-mkconfig does (a POSIX shell, nothing inherited); the variables' values."""
    path = tmp_path / 'grub.cfg'
    path.write_text(text)
    return source_shell(path, names, before, cwd=str(tmp_path))


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'grub_serial_settings', 'grub_shell_value', 'grub_shell_words'}


def test_defaults():
    out = grub_serial_settings()
    assert out == {'console_arg': 'console=ttyS0,115200n8', 'kernel_args': ['console=tty0', 'console=ttyS0,115200n8'],
                   'extra_args': [], 'grub_terminal': 'console serial',
                   'grub_serial_command': 'serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1'}


def test_line_settings():
    out = grub_serial_settings('ttyS1', '9600', 'even', 7, 2, False, ['serial', 'console'], ['quiet', 'quiet', 'a=b,c'])
    assert out['kernel_args'] == ['console=ttyS1,9600e7']
    assert out['grub_serial_command'] == 'serial --speed=9600 --unit=1 --word=7 --parity=even --stop=2'
    assert out['grub_terminal'] == 'serial console'
    assert out['extra_args'] == ['quiet', 'a=b,c']


@pytest.mark.parametrize('kwargs, match', [
    ({'port': 'ttyS0$(id)'}, r'^serial_console_port: '),
    ({'port': '/dev/ttyS0'}, r'^serial_console_port: '),
    ({'port': 'ttyS0\n'}, r'^serial_console_port: '),
    ({'port': 'ttyS'}, r'^serial_console_port: '),
    ({'speed': 1234}, r'^serial_console_speed: '),
    ({'speed': '115200;reboot'}, r'^serial_console_speed: '),
    ({'speed': True}, r'^serial_console_speed: '),
    ({'parity': 'mark'}, r'^serial_console_parity: '),
    ({'word': 9}, r'^serial_console_word: '),
    ({'stop': 3}, r'^serial_console_stop: '),
    ({'keep_tty0': 'yes'}, r'^serial_console_keep_tty0: '),
    ({'terminal': 'console serial"; id; "'}, r'^serial_console_grub_terminal: '),
    ({'terminal': 'console\nserial'}, r'^serial_console_grub_terminal: '),
    ({'terminal': ''}, r'^serial_console_grub_terminal: '),
    ({'extra_args': ['quiet; reboot']}, r'^serial_console_extra_args\[0\]: '),
    ({'extra_args': ['ok', '$(id)']}, r'^serial_console_extra_args\[1\]: '),
    ({'extra_args': ['a=`id`']}, r'^serial_console_extra_args\[0\]: '),
    ({'extra_args': ['a b']}, r'^serial_console_extra_args\[0\]: '),
    ({'extra_args': ['console=ttyS1']}, r'^serial_console_extra_args\[0\]: console='),
    ({'extra_args': 'quiet'}, r'^serial_console_extra_args: '),
    ({'extra_args': [3]}, r'^serial_console_extra_args\[0\]: '),
])
def test_refusals_name_the_variable(kwargs, match):
    with pytest.raises(AnsibleFilterError, match=match):
        grub_serial_settings(**kwargs)


HOSTILE = ['$(touch pwned)', '`touch pwned`', '"; touch pwned; "', "'; touch pwned; '", 'a\\', '\\$(touch pwned)',
           '${IFS}$(touch${IFS}pwned)', "it's", 'a\nb', '!!', '*', '$HOME', '%s', '\u00e9']


@pytest.mark.parametrize('value', HOSTILE + ['console serial', 'serial --speed=115200 --unit=0', ''])
def test_shell_value_reads_back_and_runs_nothing(tmp_path, value):
    text = 'GRUB_TERMINAL=%s\n' % grub_shell_value(value)
    assert source(tmp_path, text, names=('GRUB_TERMINAL',))['GRUB_TERMINAL'] == value
    assert not os.path.exists(tmp_path / 'pwned')


@pytest.mark.parametrize('value', HOSTILE + ['console=tty0 console=ttyS0,115200n8'])
def test_appended_value_reads_back(tmp_path, value):
    text = 'GRUB_CMDLINE_LINUX=%s\n' % grub_shell_value(value, 'GRUB_CMDLINE_LINUX')
    got = source(tmp_path, text, before='GRUB_CMDLINE_LINUX="quiet splash";', names=('GRUB_CMDLINE_LINUX',))
    assert got['GRUB_CMDLINE_LINUX'] == 'quiet splash ' + value
    assert not os.path.exists(tmp_path / 'pwned')


def test_plain_values_keep_the_double_quoted_form():
    # grubby and the distribution's own tools edit GRUB_CMDLINE_LINUX="..." lines.
    assert grub_shell_value('console=tty0 console=ttyS0,115200n8') == '"console=tty0 console=ttyS0,115200n8"'
    assert grub_shell_value('quiet', 'GRUB_CMDLINE_LINUX') == '"$GRUB_CMDLINE_LINUX quiet"'
    assert grub_shell_value('$(id)') == "'$(id)'"


def test_rendered_defaults_source_back(tmp_path):
    """The role's settings, written the way its template and lineinfile lines write them, sourced by bash."""
    out = grub_serial_settings('ttyS1', 57600, 'odd', 8, 1, True, 'console serial', ['quiet', 'mitigations=auto'])
    args = ' '.join(out['kernel_args'] + out['extra_args'])
    text = ''.join('%s=%s\n' % (k, val) for k, val in (
        ('GRUB_CMDLINE_LINUX', grub_shell_value(args, 'GRUB_CMDLINE_LINUX')),
        ('GRUB_TERMINAL', grub_shell_value(out['grub_terminal'])),
        ('GRUB_SERIAL_COMMAND', grub_shell_value(out['grub_serial_command']))))
    got = source(tmp_path, text, before='GRUB_CMDLINE_LINUX=rhgb;')
    assert got == {'GRUB_CMDLINE_LINUX': 'rhgb console=tty0 console=ttyS1,57600o8 quiet mitigations=auto',
                   'GRUB_TERMINAL': 'console serial',
                   'GRUB_SERIAL_COMMAND': 'serial --speed=57600 --unit=1 --word=8 --parity=odd --stop=1'}


@pytest.mark.parametrize('value, words', [
    ('"crashkernel=1G-4G:192M rd.lvm.lv=rhel/root rhgb quiet"', ['crashkernel=1G-4G:192M', 'rd.lvm.lv=rhel/root', 'rhgb', 'quiet']),
    ("'quiet  splash'", ['quiet', 'splash']),
    ('quiet', ['quiet']),
    ('""', []),
    ('', []),
])
def test_current_value_words(value, words):
    assert grub_shell_words(value) == words


@pytest.mark.parametrize('value', ['"$(id)"', '"`id`"', '"a\\"b"', 'quiet reboot', '"unterminated'])
def test_current_value_refused_when_not_plain(value):
    with pytest.raises(AnsibleFilterError, match='^GRUB_CMDLINE_LINUX: '):
        grub_shell_words(value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters='\x00', blacklist_categories=('Cs',)), max_size=30))
def test_property_any_value_reads_back(tmp_path_factory, value):
    tmp_path = tmp_path_factory.mktemp('q')
    text = 'GRUB_TERMINAL=%s\n' % grub_shell_value(value)
    assert source(tmp_path, text, names=('GRUB_TERMINAL',))['GRUB_TERMINAL'] == value
    assert os.listdir(tmp_path) == ['grub.cfg']
