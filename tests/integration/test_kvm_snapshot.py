"""kvm_snapshot against the real local libvirtd with a running OS-less guest on a qcow2 disk."""

import os
import shutil
import subprocess

import pytest

from conftest import osless_virt_type, remove_guest
from storage_helpers import expect_failure, four_step, run_task, write_play

BASE = '/var/lib/kvmops-test'

DOMAIN_XML = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
  </devices>
</domain>
"""


def qemu_io(path, command, running=False):
    cmd = ['qemu-io', '-f', 'qcow2'] + (['-r', '-U'] if running else []) + ['-c', command, path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode == 0 and 'Pattern verification failed' not in proc.stdout + proc.stderr


@pytest.fixture
def guest(conn, unique):
    path = os.path.join(BASE, unique)
    os.makedirs(path)
    disk = os.path.join(path, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'], check=True)
    assert qemu_io(disk, 'write -P 0x11 0 64k')
    dom = conn.defineXML(DOMAIN_XML.format(virt_type=osless_virt_type(conn), name=unique, disk=disk))
    dom.create()
    try:
        yield dict(name=unique, disk=disk, dom=dom, dir=path)
    finally:
        remove_guest(conn, unique)
        shutil.rmtree(path, ignore_errors=True)


SNAP = """
- name: t
  kvmops.kvm.kvm_snapshot:
    guest: "{{ domain }}"
    name: "{{ name }}"
    state: "{{ state | default('present') }}"
    description: "{{ description | default(omit) }}"
    memory: "{{ memory | default(omit) }}"
    disk_only: "{{ disk_only | default(omit) }}"
    quiesce: "{{ quiesce | default(omit) }}"
    force: "{{ force | default(omit) }}"
"""


def _state(dom):
    return dom.state()[0]


def test_memory_snapshot_revert_restores_disk_and_run_state(playbook, tmp_path, guest, conn):
    import libvirt
    play = write_play(tmp_path, SNAP)
    dom, disk = guest['dom'], guest['disk']
    base = dict(domain=guest['name'])

    created = four_step(playbook, play, dict(base, name='snap1', description='before the change'))
    assert created[1]['actions'] == ['create with memory']
    snap = created[3]['snapshot']
    assert (snap['state'], snap['location'], snap['memory'], snap['current']) == ('running', 'internal', True, True)
    assert snap['description'] == 'before the change' and snap['parent'] is None and snap['creation_time'] > 0
    assert created[0]['snapshots'][0]['creation_time'] is None, 'check mode predicts the snapshot'
    assert [s.getName() for s in dom.listAllSnapshots()] == ['snap1']
    assert _state(dom) == libvirt.VIR_DOMAIN_RUNNING

    # Change the disk of the shut-off guest, then revert: the disk content and the run state come back.
    dom.destroy()
    assert qemu_io(disk, 'write -P 0xab 0 64k') and qemu_io(disk, 'read -P 0xab 0 64k')
    reverted = four_step(playbook, play, dict(base, name='snap1', state='current'))
    assert reverted[1]['actions'] == ['revert'] and reverted[3]['domain_state'] == 'running'
    assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT]
    assert qemu_io(disk, 'read -P 0x11 0 64k', running=True), 'disk content is back'

    # A second snapshot; reverting the running guest to the first discards its state: refused without force.
    run_task(playbook, play, dict(base, name='snap2'))
    msg = expect_failure(playbook, play, dict(base, name='snap1', state='current'))
    assert 'force: true' in msg and 'running' in msg
    forced = four_step(playbook, play, dict(base, name='snap1', state='current', force=True))
    assert [s['current'] for s in forced[3]['snapshots']] == [True, False]
    assert forced[3]['snapshots'][1]['parent'] == 'snap1'

    # Description changed in place; then delete both.
    desc = four_step(playbook, play, dict(base, name='snap2', description='second'))
    assert desc[1]['actions'] == ['set description'] and desc[3]['snapshot']['description'] == 'second'
    for name in ('snap2', 'snap1'):
        gone = four_step(playbook, play, dict(base, name=name, state='absent'))
        assert gone[1]['actions'] == ['delete'] and gone[3]['snapshot'] == {}
    assert dom.listAllSnapshots() == [] and _state(dom) == libvirt.VIR_DOMAIN_RUNNING


def test_external_disk_only_snapshot_merged_back_on_delete(playbook, tmp_path, guest, conn):
    import libvirt
    play = write_play(tmp_path, SNAP)
    dom, disk = guest['dom'], guest['disk']
    base = dict(domain=guest['name'], name='ext1')
    created = four_step(playbook, play, dict(base, disk_only=True))
    assert created[1]['actions'] == ['create disk-only']
    snap = created[3]['snapshot']
    assert snap['location'] == 'external' and snap['disk_only'] is True and snap['memory'] is False
    overlay = snap['disks'][0]['file']
    assert snap['disks'][0]['target'] == 'vda' and os.path.isfile(overlay) and overlay != disk
    assert "<source file='%s'" % overlay in dom.XMLDesc(0)

    gone = four_step(playbook, play, dict(base, state='absent'))
    assert gone[1]['actions'] == ['commit vda', 'delete']
    [commit] = gone[1]['commit']
    assert commit['target'] == 'vda' and commit['top'] == overlay and commit['base'] == disk and commit['done']
    assert gone[1]['removed_overlays'] == [overlay] and not os.path.exists(overlay)
    assert "<source file='%s'" % disk in dom.XMLDesc(0) and dom.listAllSnapshots() == []
    assert _state(dom) == libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize('extra, fragment', [
    (dict(name='s', quiesce=True), 'quiesce needs disk_only: true'),
    (dict(name='s', memory=True, disk_only=True), 'exclude each other'),
    (dict(name='s', memory=False), 'always includes its memory'),
    (dict(name='s', disk_only=True, quiesce=True), 'quiesce needs a guest agent'),
    (dict(name='missing', state='current'), 'does not exist; nothing to revert to'),
    (dict(name='s', domain='kvmops-no-such-domain'), 'guest: domain kvmops-no-such-domain does not exist'),
])
def test_bad_input_rejected_before_any_write(playbook, tmp_path, guest, extra, fragment):
    params = dict(domain=guest['name'])
    params.update(extra)
    msg = expect_failure(playbook, write_play(tmp_path, SNAP), params)
    assert fragment in msg
    assert guest['dom'].listAllSnapshots() == []


ALIAS = """
- name: t
  kvmops.kvm.kvm_snapshot:
    domain: "{{ domain }}"
    name: "{{ name }}"
    state: absent
"""


def test_domain_still_names_the_guest_with_a_deprecation(playbook, tmp_path, guest):
    result = playbook(write_play(tmp_path, ALIAS), extra_vars=dict(domain=guest['name'], name='never-made'))
    assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
    out = result.task('t')
    assert out['changed'] is False and out['changes'] == [] and out['pending_restart'] == []
    assert "'domain' is deprecated" in str(out.get('deprecations')) + result.stdout + result.stderr
