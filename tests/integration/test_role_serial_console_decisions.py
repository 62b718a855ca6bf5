"""serial_console's OS-dependent decisions, rendered for every supported platform.

The decision step runs with each platform's facts. The RHEL edit of /etc/default/grub and the Debian drop-in
are also applied to files in a temporary directory (grub regeneration replaced by touching a marker), twice, to show the
result and that a second run changes nothing. Nothing outside the temporary directory changes.
"""

import pytest

from role_decisions import decide_play, source_shell

APPLY = """
    - name: point the plan at the test file
      ansible.builtin.set_fact:
        _serial_console_plan: "{{{{ _serial_console_plan | combine({{'grub_file': grub_file, 'grubby': false,
                                                                     'regenerate': ['touch', marker]}}) }}}}"
    - name: apply
      ansible.builtin.include_role:
        name: kvmops.kvm.serial_console
        tasks_from: {tasks}
"""

ROLE = 'kvmops.kvm.serial_console : '
CONSOLE = ['console=tty0', 'console=ttyS0,115200n8']
SERIAL_COMMAND = 'serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1'
NAMES = ('GRUB_CMDLINE_LINUX', 'GRUB_TERMINAL', 'GRUB_SERIAL_COMMAND')


def _facts(family, version, distribution):
    return dict(os_family=family, distribution_major_version=version, distribution=distribution)


def _run(playbook, tmp_path, text, extra=None):
    path = tmp_path / 'play.yml'
    path.write_text(text)
    return playbook(str(path), extra_vars=extra)


@pytest.mark.parametrize('family, version, distribution, firmware, method, grub_file, regenerate, grubby', [
    ('Debian', '12', 'Debian', 'bios', 'dropin', '/etc/default/grub.d/90-kvmops-serial-console.cfg',
     ['/usr/sbin/update-grub'], False),
    ('Debian', '12', 'Debian', 'efi', 'dropin', '/etc/default/grub.d/90-kvmops-serial-console.cfg',
     ['/usr/sbin/update-grub'], False),
    ('Debian', '24', 'Ubuntu', 'efi', 'dropin', '/etc/default/grub.d/90-kvmops-serial-console.cfg',
     ['/usr/sbin/update-grub'], False),
    ('RedHat', '8', 'RedHat', 'bios', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/grub2/grub.cfg'], True),
    ('RedHat', '8', 'RedHat', 'efi', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/efi/EFI/redhat/grub.cfg'], True),
    ('RedHat', '8', 'Rocky', 'efi', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/efi/EFI/rocky/grub.cfg'], True),
    ('RedHat', '8', 'AlmaLinux', 'efi', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/efi/EFI/almalinux/grub.cfg'], True),
    # EL 9+: the EFI grub.cfg is a stub that loads /boot/grub2/grub.cfg.
    ('RedHat', '9', 'RedHat', 'efi', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/grub2/grub.cfg'], True),
    ('RedHat', '10', 'CentOS', 'bios', 'default_grub', '/etc/default/grub',
     ['/usr/sbin/grub2-mkconfig', '-o', '/boot/grub2/grub.cfg'], True),
])
def test_platform_plan(playbook, tmp_path, family, version, distribution, firmware, method, grub_file,
                       regenerate, grubby):
    result = _run(playbook, tmp_path, decide_play('serial_console', _facts(family, version, distribution)),
                  {'serial_console_firmware': firmware})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_serial_console_plan']
    assert plan['method'] == method
    assert plan['grub_file'] == grub_file
    assert plan['regenerate'] == regenerate
    assert plan['grubby'] is grubby
    assert plan['efi'] is (firmware == 'efi')
    assert plan['kernel_args'] == CONSOLE
    assert plan['grub_terminal'] == 'console serial'
    assert plan['grub_serial_command'] == SERIAL_COMMAND
    assert plan['getty'] == 'serial-getty@ttyS0.service'


def test_auto_firmware_reads_the_efi_directory(playbook, tmp_path):
    facts = _facts('RedHat', '8', 'RedHat')
    for efi, target in ((True, '/boot/efi/EFI/redhat/grub.cfg'), (False, '/boot/grub2/grub.cfg')):
        result = _run(playbook, tmp_path, decide_play('serial_console', facts), {'_serial_console_efi': efi})
        assert result.rc == 0, result.stdout[-2000:]
        assert result.task('plan')['_serial_console_plan']['regenerate'][-1] == target


@pytest.mark.parametrize('service_mgr, command', [('systemd', 'systemd-run --on-active=3 systemctl reboot'), ('sysvinit', '')])
def test_reboot_command(playbook, tmp_path, service_mgr, command):
    # `shutdown -r` (the reboot module's default) needs D-Bus; systemctl talks to systemd directly.
    facts = dict(_facts('Debian', '12', 'Debian'), service_mgr=service_mgr)
    result = _run(playbook, tmp_path, decide_play('serial_console', facts), {'serial_console_firmware': 'bios'})
    assert result.rc == 0, result.stdout[-2000:]
    assert result.task('plan')['_serial_console_plan']['reboot_command'] == command


def test_other_port_and_speed(playbook, tmp_path):
    result = _run(playbook, tmp_path, decide_play('serial_console', _facts('Debian', '12', 'Debian')),
                  {'serial_console_port': 'ttyS1', 'serial_console_speed': 9600, 'serial_console_keep_tty0': False,
                   'serial_console_firmware': 'bios'})
    assert result.rc == 0, result.stdout[-2000:]
    plan = result.task('plan')['_serial_console_plan']
    assert plan['kernel_args'] == ['console=ttyS1,9600n8']
    assert plan['grub_serial_command'] == 'serial --speed=9600 --unit=1 --word=8 --parity=no --stop=1'
    assert plan['getty'] == 'serial-getty@ttyS1.service'


@pytest.mark.parametrize('extra, name', [
    ({'serial_console_port': '/dev/ttyS0'}, 'serial_console_port'),
    ({'serial_console_port': 'ttyS0$(id)'}, 'serial_console_port'),
    ({'serial_console_speed': 1234}, 'serial_console_speed'),
    ({'serial_console_grub_terminal': 'console"; id; "'}, 'serial_console_grub_terminal'),
    ({'serial_console_extra_args': ['quiet;reboot']}, 'serial_console_extra_args[0]'),
    ({'serial_console_parity': 'mark'}, 'serial_console_parity'),
])
def test_bad_input_is_rejected(playbook, tmp_path, extra, name):
    result = _run(playbook, tmp_path, decide_play('serial_console', _facts('Debian', '12', 'Debian')), extra)
    assert result.rc != 0
    assert name in result.stdout


def test_line_settings_and_extra_args(playbook, tmp_path):
    dropin = tmp_path / 'grub.d' / '90-kvmops-serial-console.cfg'
    text = decide_play('serial_console', _facts('Debian', '12', 'Debian'), APPLY.format(tasks='grub_dropin'))
    extra = {'grub_file': str(dropin), 'serial_console_firmware': 'bios', 'marker': str(tmp_path / 'regenerated'),
             'serial_console_port': 'ttyS1', 'serial_console_speed': 57600, 'serial_console_parity': 'even',
             'serial_console_word': 7, 'serial_console_stop': 2, 'serial_console_extra_args': ['quiet', 'mitigations=auto']}
    result = _run(playbook, tmp_path, text, extra)
    assert result.rc == 0, result.stdout[-3000:]
    assert source_shell(dropin, NAMES, before='GRUB_CMDLINE_LINUX=rhgb;', cwd=str(tmp_path)) == {
        'GRUB_CMDLINE_LINUX': 'rhgb console=tty0 console=ttyS1,57600e7 quiet mitigations=auto',
        'GRUB_TERMINAL': 'console serial',
        'GRUB_SERIAL_COMMAND': 'serial --speed=57600 --unit=1 --word=7 --parity=even --stop=2'}


def test_rhel_current_value_with_expansion_is_not_rewritten(playbook, tmp_path):
    grub = tmp_path / 'grub'
    grub.write_text(RHEL_GRUB.replace('rhgb quiet"', 'rhgb quiet $(touch pwned)"'))
    before = grub.read_text()
    text = decide_play('serial_console', _facts('RedHat', '9', 'RedHat'), APPLY.format(tasks='grub_default'))
    result = _run(playbook, tmp_path, text, {'grub_file': str(grub), 'serial_console_firmware': 'bios',
                                             'marker': str(tmp_path / 'regenerated')})
    assert result.rc != 0
    assert 'GRUB_CMDLINE_LINUX: ' in result.stdout and 'edit it by hand' in result.stdout
    assert grub.read_text() == before
    assert not (tmp_path / 'pwned').exists()


RHEL_GRUB = '''GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M rd.lvm.lv=rhel/root console=ttyS0,9600 rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
'''


def test_rhel_default_grub_edit(playbook, tmp_path):
    grub = tmp_path / 'grub'
    grub.write_text(RHEL_GRUB)
    text = decide_play('serial_console', _facts('RedHat', '9', 'RedHat'), APPLY.format(tasks='grub_default'))
    marker = tmp_path / 'regenerated'
    extra = {'grub_file': str(grub), 'serial_console_firmware': 'bios', 'marker': str(marker)}
    first = _run(playbook, tmp_path, text, extra)
    assert first.rc == 0, first.stdout[-3000:]
    lines = grub.read_text().splitlines()
    # The stale console=ttyS0,9600 gives way; the other arguments keep their order.
    assert ('GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M rd.lvm.lv=rhel/root rhgb quiet '
            'console=tty0 console=ttyS0,115200n8"') in lines
    assert 'GRUB_TERMINAL="console serial"' in lines
    assert 'GRUB_SERIAL_COMMAND="%s"' % SERIAL_COMMAND in lines
    assert 'GRUB_ENABLE_BLSCFG=true' in lines
    # What grub-mkconfig reads: the file sourced by a clean shell.
    assert source_shell(grub, NAMES, cwd=str(tmp_path)) == {
        'GRUB_CMDLINE_LINUX': 'crashkernel=1G-4G:192M rd.lvm.lv=rhel/root rhgb quiet console=tty0 console=ttyS0,115200n8',
        'GRUB_TERMINAL': 'console serial', 'GRUB_SERIAL_COMMAND': SERIAL_COMMAND}
    assert first.task(ROLE + 'Kernel arguments for future kernels (GRUB_CMDLINE_LINUX)')['changed'] is True
    assert marker.exists()  # the handler regenerated grub.cfg
    marker.unlink()
    content = grub.read_text()
    second = _run(playbook, tmp_path, text, extra)
    assert second.rc == 0, second.stdout[-3000:]
    assert grub.read_text() == content
    assert second.task(ROLE + 'Kernel arguments for future kernels (GRUB_CMDLINE_LINUX)')['changed'] is False
    assert not marker.exists()  # nothing changed, nothing regenerated


def test_debian_dropin(playbook, tmp_path):
    dropin = tmp_path / 'grub.d' / '90-kvmops-serial-console.cfg'
    text = decide_play('serial_console', _facts('Debian', '12', 'Debian'), APPLY.format(tasks='grub_dropin'))
    marker = tmp_path / 'regenerated'
    extra = {'grub_file': str(dropin), 'serial_console_firmware': 'bios', 'marker': str(marker)}
    first = _run(playbook, tmp_path, text, extra)
    assert first.rc == 0, first.stdout[-3000:]
    assert marker.exists()
    marker.unlink()
    lines = dropin.read_text().splitlines()
    assert lines[0].startswith('#')
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0 console=ttyS0,115200n8"' in lines
    assert 'GRUB_TERMINAL="console serial"' in lines
    assert 'GRUB_SERIAL_COMMAND="%s"' % SERIAL_COMMAND in lines
    # Sourced after /etc/default/grub (its GRUB_CMDLINE_LINUX set first), as update-grub does.
    assert source_shell(dropin, NAMES, before='GRUB_CMDLINE_LINUX="quiet";', cwd=str(tmp_path)) == {
        'GRUB_CMDLINE_LINUX': 'quiet console=tty0 console=ttyS0,115200n8',
        'GRUB_TERMINAL': 'console serial', 'GRUB_SERIAL_COMMAND': SERIAL_COMMAND}
    second = _run(playbook, tmp_path, text, extra)
    assert second.rc == 0
    assert second.task(ROLE + 'The serial console drop-in')['changed'] is False
    assert not marker.exists()
