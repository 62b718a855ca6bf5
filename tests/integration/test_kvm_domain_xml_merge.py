"""kvm_domain ``xml_mode`` against the real local libvirtd (issue 16): a partial XML merges, replace names what it drops.

An OS-less guest (defined with ``virsh define``-style XML: a qcow2 disk, a NIC, UEFI loader and NVRAM) gets a
fragment holding only an ``<rng>``: check mode reports exactly that device and writes nothing, the real run adds
it and libvirt's definition keeps everything else (read back and compared element by element), the next check
and real runs change nothing. ``kvmops:remove`` takes it away again. ``xml_mode: replace`` with a fragment lists
the disk, the NIC and the loader in ``removed`` and in the diff, and libvirt's definition then indeed lacks them.
That guest is never started (cheap: definitions only). On a running guest, the merged device waits in
``pending_restart`` until ``restart: if_needed`` restarts it.
"""

import copy
import json
import os
import shutil
import subprocess

import pytest

from conftest import one_task_play, osless_virt_type, remove_guest

TEST_ROOT = '/var/lib/kvmops-test'
OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'
NS = 'urn:kvmops:xml-merge'

GUEST_XML = """
<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='KiB'>65536</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>{code}</loader>
    <nvram template='{vars}'>{nvram}</nvram>
  </os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><mac address='{mac}'/><source network='default'/><model type='virtio'/></interface>
  </devices>
</domain>
"""
RNG = "<domain><devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"
RNG_GONE = ("<domain xmlns:kvmops='%s'><devices><rng model='virtio' kvmops:remove='true'/></devices></domain>" % NS)


def _inactive(dom):
    import libvirt
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _canonical(elem):
    """Tag, attributes, text and children, without the addresses libvirt assigns."""
    return (elem.tag, sorted(elem.attrib.items()), (elem.text or '').strip(),
            [_canonical(c) for c in elem if isinstance(c.tag, str) and c.tag != 'address'])


def _run(playbook, tmp_path, args, check=False):
    result = playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain'), check=check, diff=True)
    tasks = result.tasks('domain')
    assert tasks, (result.stdout + result.stderr)[-4000:]
    task = tasks[-1]
    assert not task.get('failed'), json.dumps(task, indent=1)[-4000:]
    assert 'Traceback' not in result.stdout + result.stderr
    return task


@pytest.fixture
def merge_guest(conn, unique):
    """An OS-less guest with a disk, a NIC and UEFI NVRAM, defined outside the module; removed afterwards."""
    if not (os.path.exists(OVMF_CODE) and os.path.exists(OVMF_VARS)):
        pytest.skip('OVMF (4M) is not installed')
    directory = os.path.join(TEST_ROOT, unique)
    os.makedirs(directory)
    disk = os.path.join(directory, 'root.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'], check=True)
    mac = '52:54:00:%02x:%02x:%02x' % tuple(bytes.fromhex(unique[-6:]))
    dom = conn.defineXML(GUEST_XML.format(virt=osless_virt_type(conn), name=unique, code=OVMF_CODE, vars=OVMF_VARS,
                                          nvram=os.path.join(directory, 'VARS.fd'), disk=disk, mac=mac))
    yield dict(name=unique, dom=dom, mac=mac, disk=disk)
    remove_guest(conn, unique)
    shutil.rmtree(directory, ignore_errors=True)


def test_partial_xml_merges_and_replace_names_what_it_removes(merge_guest, playbook, tmp_path):
    name, dom, mac = merge_guest['name'], merge_guest['dom'], merge_guest['mac']
    before = _inactive(dom)
    assert before.find('devices/rng') is None

    # merge (the default): check, real, check, real
    outcomes = [_run(playbook, tmp_path, dict(name=name, xml=RNG), check=check) for check in (True, False, True, False)]
    assert [t['changed'] for t in outcomes] == [True, True, False, False], json.dumps([t['changes'] for t in outcomes])
    for task in outcomes[:2]:
        [change] = task['changes']   # only that device: no serial console, no balloon, nothing pending
        assert (change['option'], change['xml_mode'], change['added'], change['removed']) == \
            ('xml', 'merge', ['domain/devices/rng'], []), change
        assert change['after'] == ['domain/devices/rng: added']
        assert task['pending_restart'] == []
    assert outcomes[2]['changes'] == [] and outcomes[3]['changes'] == []

    after = _inactive(dom)   # read back from libvirt
    rng = after.find('devices/rng')
    assert rng is not None and rng.get('model') == 'virtio' and rng.findtext('backend') == '/dev/urandom'
    assert [t.get('dev') for t in after.findall('devices/disk/target')] == ['vda']
    assert after.find('devices/disk/source').get('file') == merge_guest['disk']
    assert [m.get('address') for m in after.findall('devices/interface/mac')] == [mac]
    assert after.findtext('os/type') == 'hvm' and after.findtext('os/loader') == OVMF_CODE
    assert after.find('os/nvram').get('template') == OVMF_VARS
    assert after.findtext('uuid') == before.findtext('uuid')
    # nothing else of the definition moved: the same tree but the new device (and the address libvirt gave it)
    without_rng = copy.deepcopy(after)
    without_rng.find('devices').remove(without_rng.find('devices/rng'))
    assert _canonical(without_rng) == _canonical(before)

    # kvmops:remove takes it out again (its second run is a no-op: unit tests), back to the definition we began with
    gone = _run(playbook, tmp_path, dict(name=name, xml=RNG_GONE))
    assert gone['changed'] is True and [c['removed'] for c in gone['changes']] == [['domain/devices/rng']]
    assert _canonical(_inactive(dom)) == _canonical(before)

    # replace: check mode names what the new definition lacks, and writes nothing
    replacement = ("<domain type='%s'><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='%s'>hvm</type></os>"
                   "<devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"
                   % (before.get('type'), before.find('os/type').get('machine')))
    args = dict(name=name, xml=replacement, xml_mode='replace')
    checked = _run(playbook, tmp_path, args, check=True)
    [change] = checked['changes']
    assert change['xml_mode'] == 'replace' and change['after'] == ['domain/devices/rng: missing']
    for path in ('domain/devices/disk[vda]', 'domain/devices/interface[%s]' % mac, 'domain/os/loader', 'domain/os/nvram'):
        assert path in change['removed'], (path, change['removed'])
        assert '# removed by xml: %s' % path in checked['diff']['after']
    assert _canonical(_inactive(dom)) == _canonical(before), 'check mode wrote nothing'
    replaced = _run(playbook, tmp_path, args)
    assert replaced['changed'] is True and replaced['changes'][0]['removed'] == change['removed']
    now = _inactive(dom)   # what it said it removes is gone from libvirt's definition
    assert now.find('devices/disk') is None and now.find('devices/interface') is None
    assert now.find('os/loader') is None and now.find('devices/rng') is not None
    assert now.findtext('uuid') == before.findtext('uuid')


RUNNING_XML = """
<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='KiB'>65536</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><graphics type='vnc' listen='127.0.0.1' autoport='yes'/></devices>
</domain>
"""
WATCHDOG = "<domain><devices><watchdog model='i6300esb' action='reset'/></devices></domain>"


def test_merged_xml_on_a_running_guest_waits_for_the_restart(conn, unique, playbook, tmp_path):
    """Nothing of a merged fragment is applied live: the added device is pending until restart: if_needed."""
    try:
        dom = conn.defineXML(RUNNING_XML.format(virt=osless_virt_type(conn), name=unique))
        dom.create()
        task = _run(playbook, tmp_path, dict(name=unique, xml=WATCHDOG))
        assert task['changed'] is True and task['pending_restart'] == ['xml']
        assert [c['added'] for c in task['changes']] == [['domain/devices/watchdog']]
        live = _live(dom)
        assert _inactive(dom).find('devices/watchdog') is not None and live.find('devices/watchdog') is None
        restarted = _run(playbook, tmp_path, dict(name=unique, xml=WATCHDOG, restart='if_needed', force=True,
                                                  shutdown_timeout=1))
        assert restarted['pending_restart'] == [] and dom.isActive()
        assert _live(dom).find('devices/watchdog').get('model') == 'i6300esb'
    finally:
        remove_guest(conn, unique)


def _live(dom):
    from lxml import etree
    return etree.fromstring(dom.XMLDesc(0))
