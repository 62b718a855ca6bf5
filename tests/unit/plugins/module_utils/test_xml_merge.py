"""Unit tests of kvm_domain's ``xml_mode: merge`` (_xml_merge) and how plan_config uses it (issue 16)."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, validate
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import plan_config, plan_live
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import parse, to_string, xml_equal
from ansible_collections.kvmops.kvm.plugins.module_utils._xml_merge import (
    MAX_ELEMENTS,
    NS,
    describe,
    merge,
    removed_paths,
    same_value,
    without_markers,
)

GUEST = """<domain type='kvm'>
  <name>vm01</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <metadata><app1:info xmlns:app1='http://example.org/app1'>one</app1:info></metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/></clock>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/vm01.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'/>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:ab:cd:ef'/>
      <source bridge='br0'/>
      <model type='e1000'/>
      <alias name='ua-uplink'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x06' slot='0x00' function='0x0'/></source>
    </hostdev>
    <filesystem type='mount' accessmode='mapped'>
      <source dir='/srv/share'/>
      <target dir='share'/>
    </filesystem>
    <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <input type='tablet' bus='usb'/>
    <input type='mouse' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga' vram='16384' heads='1' primary='yes'/></video>
    <memballoon model='virtio'/>
  </devices>
</domain>"""

MERGE_NS = "xmlns:kvmops='%s'" % NS


def guest():
    return parse(GUEST)


def frag(body, root_attrs=''):
    return parse("<domain %s %s>%s</domain>" % (MERGE_NS, root_attrs, body))


def merged(body, root_attrs=''):
    return merge(guest(), frag(body, root_attrs))


def paths(log, action=None):
    return [path for act, path, _b, _a in log if action is None or act == action]


# ---------------------------------------------------------------- identity matching
def test_fragment_with_only_a_tpm_keeps_everything_else():
    """The report of issue 16: a <tpm> fragment dropped the disk, the NIC and <os><type>."""
    out, log = merged("<devices><tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices>")
    assert paths(log) == ['domain/devices/tpm'] and paths(log, 'add') == ['domain/devices/tpm']
    assert out.find('os/type').text == 'hvm'
    assert [d.get('dev') for d in out.findall('devices/disk/target')] == ['vda', 'sda']
    assert len(out.findall('devices/interface')) == 2
    assert out.find('devices/tpm/backend').get('version') == '2.0'
    # the new device sits after the devices that were there, the rest is untouched
    out.find('devices').remove(out.find('devices/tpm'))
    assert xml_equal(out, guest())


def test_disk_by_target_dev_nic_by_mac_and_alias():
    out, log = merged("""<devices>
      <disk><target dev='vda'/><driver cache='writeback'/></disk>
      <interface><mac address='52:54:00:12:34:56'/><link state='down'/></interface>
      <interface><alias name='ua-uplink'/><model type='virtio'/></interface>
    </devices>""")
    assert describe(log) == [
        "domain/devices/disk[vda]/driver/@cache: 'none' -> 'writeback'",
        'domain/devices/interface[52:54:00:12:34:56]/link: added',
        "domain/devices/interface[alias=ua-uplink]/model/@type: 'e1000' -> 'virtio'",
    ]
    disk = out.find('devices/disk')
    assert disk.find('driver').get('type') == 'qcow2', 'the attributes the fragment does not give stay'
    assert disk.find('source').get('file') == '/var/lib/libvirt/images/vm01.qcow2'
    assert disk.find('address').get('slot') == '0x04'
    nics = out.findall('devices/interface')
    assert nics[0].find('link').get('state') == 'down' and nics[0].find('model').get('type') == 'virtio'
    assert nics[1].find('model').get('type') == 'virtio' and nics[1].find('source').get('bridge') == 'br0'


def test_nic_without_mac_matches_type_and_source_else_is_added():
    out, log = merged("<devices><interface type='bridge'><source bridge='br0'/><mtu size='9000'/></interface></devices>")
    assert paths(log) == ['domain/devices/interface[bridge,br0]/mtu'] and len(out.findall('devices/interface')) == 2
    out, log = merged("<devices><interface type='network'><source network='isolated'/></interface></devices>")
    assert paths(log, 'add') == ['domain/devices/interface[network,isolated]'] and len(out.findall('devices/interface')) == 3
    again, log = merge(out, frag("<devices><interface type='network'><source network='isolated'/></interface></devices>"))
    assert log == [], 'matched the second time (libvirt gives it a MAC, the fragment has none)'


def test_hostdev_by_source_address_in_any_spelling():
    out, log = merged("<devices><hostdev mode='subsystem' type='pci' managed='no'><source>"
                      "<address domain='0' bus='6' slot='0x0' function='0'/></source></hostdev></devices>")
    assert describe(log) == ["domain/devices/hostdev[pci,bus=6,domain=0,function=0,slot=0]/@managed: 'yes' -> 'no'"]
    out, log = merged("<devices><hostdev mode='subsystem' type='pci'><source>"
                      "<address domain='0x0000' bus='0x07' slot='0x00' function='0x0'/></source></hostdev></devices>")
    assert paths(log, 'add') and len(out.findall('devices/hostdev')) == 2
    out, log = merged("<devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x046D'/>"
                      "<product id='0xc52b'/></source></hostdev></devices>")
    assert paths(log, 'add') == ['domain/devices/hostdev[usb,1133,50475]']
    again, log = merge(out, frag("<devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/>"
                                 "<product id='0xC52B'/></source></hostdev></devices>"))
    assert log == []


def test_controllers_by_type_and_index_filesystems_by_target_dir_consoles_by_port():
    out, log = merged("""<devices>
      <controller type='usb' index='0' model='qemu-xhci'/>
      <controller type='pci' index='1' model='pci-bridge'/>
      <filesystem><target dir='share'/><readonly/></filesystem>
      <serial type='pty'><target port='1'/></serial>
      <console type='pty'><target type='virtio' port='1'/></console>
    </devices>""")
    assert describe(log) == [
        "domain/devices/controller[usb,0]/@model: 'piix3-uhci' -> 'qemu-xhci'",
        'domain/devices/controller[pci,1]: added',
        'domain/devices/filesystem[share]/readonly: added',
        'domain/devices/serial[1]: added',
        'domain/devices/console[virtio,1]: added',
    ]


def test_singletons_by_tag_and_keyed_children_of_singletons():
    out, log = merged("""<memory unit='KiB'>262144</memory><vcpu placement='static'>2</vcpu>
      <os><boot dev='cdrom'/></os><features><pae/></features>
      <cpu><feature policy='require' name='vmx'/></cpu><clock><timer name='pit' tickpolicy='discard'/></clock>""")
    assert describe(log) == [
        "domain/memory: '131072' -> '262144'",
        "domain/vcpu: '1' -> '2'",
        'domain/os/boot[cdrom]: added',
        'domain/features/pae: added',
        'domain/cpu/feature[vmx]: added',
        "domain/clock/timer[pit]/@tickpolicy: 'delay' -> 'discard'",
    ]
    assert [b.get('dev') for b in out.findall('os/boot')] == ['hd', 'cdrom']
    assert out.find('os/type').text == 'hvm' and out.find('features/acpi') is not None
    assert out.find('cpu').get('mode') == 'host-passthrough'


def test_positional_match_of_repeated_singletons():
    base, _log = merged("<devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices>")
    out, log = merge(base, frag("<devices><rng model='virtio'/><rng model='virtio'>"
                                "<backend model='random'>/dev/random</backend></rng></devices>"))
    assert paths(log) == ['domain/devices/rng[2]']
    assert [r.findtext('backend') for r in out.findall('devices/rng')] == ['/dev/urandom', '/dev/random']


# ---------------------------------------------------------------- attributes, text, removal, replacement
def test_attributes_overwritten_text_kept_unless_given():
    out, log = merged("<devices><video><model type='virtio' heads='2'/></video></devices><os><type>hvm</type></os>")
    assert describe(log) == ["domain/devices/video/model/@type: 'vga' -> 'virtio'",
                             "domain/devices/video/model/@heads: '1' -> '2'"]
    model = out.find('devices/video/model')
    assert model.get('vram') == '16384' and model.get('primary') == 'yes'
    assert out.find('os/type').get('machine') == 'pc-i440fx-7.2'


def test_values_equal_by_meaning_are_no_change():
    assert same_value('0x04', '0x4') and same_value('4', '0x4') and same_value('52:54:00:AB:CD:EF', '52:54:00:ab:cd:ef')
    assert same_value(' 2 ', '2') and not same_value('vga', 'VGA') and not same_value(None, '1') and not same_value('1', '2')
    _out, log = merged("<devices><disk><target dev='vda'/><address type='pci' domain='0' bus='0' slot='4' function='0'/>"
                       "</disk><interface><mac address='52:54:00:AB:CD:EF'/></interface></devices>")
    assert log == []


def test_sizes_in_other_units_are_no_change():
    base, _log = merged("<memtune><hard_limit unit='KiB'>1048576</hard_limit></memtune>"
                        "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>")
    _out, log = merge(base, frag("<memtune><hard_limit unit='GiB'>1</hard_limit></memtune>"
                                 "<memoryBacking><hugepages><page size='2' unit='M'/></hugepages></memoryBacking>"
                                 "<memory unit='MiB'>128</memory>"))
    assert log == []
    out, log = merge(base, frag("<memtune><hard_limit unit='GiB'>2</hard_limit></memtune>"))
    assert describe(log) == ["domain/memtune/hard_limit/@unit: 'KiB' -> 'GiB'", "domain/memtune/hard_limit: '1048576' -> '2'"]


def test_remove_marker_removes_the_matched_element_only():
    out, log = merged("""<devices>
      <disk kvmops:remove='true'><target dev='sda'/></disk>
      <interface kvmops:remove='yes'><mac address='52:54:00:ab:cd:ef'/></interface>
      <input type='tablet' kvmops:remove='true'/>
      <watchdog kvmops:remove='true'/>
    </devices><features><apic kvmops:remove='true'/></features><os><boot dev='cdrom' kvmops:remove='true'/></os>""")
    assert paths(log, 'remove') == ['domain/devices/disk[sda]', 'domain/devices/interface[52:54:00:ab:cd:ef]',
                                    'domain/devices/input[type=tablet]', 'domain/features/apic']
    assert paths(log) == paths(log, 'remove'), 'removing what is not there is no change'
    assert [d.get('dev') for d in out.findall('devices/disk/target')] == ['vda']
    assert [i.get('type') for i in out.findall('devices/input')] == ['mouse']
    assert out.find('features/acpi') is not None and out.find('features/apic') is None
    assert NS not in to_string(out)


def test_replace_marker_puts_the_element_in_place():
    out, log = merged("<devices><disk type='file' device='disk' kvmops:replace='true'><source file='/new.raw'/>"
                      "<target dev='vda' bus='virtio'/></disk></devices>")
    assert paths(log, 'replace') == ['domain/devices/disk[vda]']
    disk = out.find('devices/disk')
    assert disk.find('driver') is None and disk.find('source').get('file') == '/new.raw'
    assert out.findall('devices/disk')[1].find('target').get('dev') == 'sda', 'in place: the order is kept'
    assert NS not in to_string(out)
    _again, log = merge(out, frag("<devices><disk type='file' device='disk' kvmops:replace='true'>"
                                  "<source file='/new.raw'/><target dev='vda' bus='virtio'/></disk></devices>"))
    assert log == []


def test_remove_without_identity_removes_every_element_it_names_so_a_second_run_is_a_no_op():
    two, _log = merged("<devices><rng model='virtio'/><rng model='virtio'/><rng model='egd'/></devices>")
    out, log = merge(two, frag("<devices><rng model='virtio' kvmops:remove='true'/></devices>"))
    assert paths(log) == ['domain/devices/rng', 'domain/devices/rng'] and [r.get('model') for r in out.findall('devices/rng')] == ['egd']
    _again, log = merge(out, frag("<devices><rng model='virtio' kvmops:remove='true'/></devices>"))
    assert log == []
    out, log = merged("<devices><interface type='network' kvmops:remove='true'><source network='default'/></interface></devices>")
    assert paths(log) == ['domain/devices/interface[network,default]'] and len(out.findall('devices/interface')) == 1


def test_replace_keeps_what_libvirt_generated_and_is_no_change_when_the_element_already_says_it():
    out, log = merged("<devices><interface type='network' kvmops:replace='true'><source network='isolated'/>"
                      "<alias name='ua-uplink'/></interface></devices>")
    assert paths(log) == ['domain/devices/interface[alias=ua-uplink]']
    nic = out.findall('devices/interface')[1]
    assert nic.find('mac').get('address') == '52:54:00:ab:cd:ef', 'the MAC libvirt gave is kept'
    assert nic.find('model') is None and nic.find('source').get('network') == 'isolated'
    _out, log = merged("<devices><disk type='file' kvmops:replace='true'><target dev='vda'/><driver cache='none'/></disk></devices>")
    assert log == [], 'what it specifies is already there: nothing to replace'


@pytest.mark.parametrize('body, message', [
    ("<devices><disk><source file='/x'/></disk></devices>", r"^xml: domain/devices/disk needs <target dev=\.\.\.>"),
    ("<devices><filesystem><source dir='/x'/></filesystem></devices>", r'^xml: domain/devices/filesystem needs <target dir'),
    ("<devices><hostdev mode='subsystem' type='pci'/></devices>", r'^xml: domain/devices/hostdev needs a <source> address'),
    ("<devices><rng kvmops:delete='true'/></devices>", r'^xml: unknown attribute kvmops:delete'),
    ("<devices><rng kvmops:remove='maybe'/></devices>", r"^xml: kvmops:remove must be true or false, not 'maybe'"),
    ("<devices><rng kvmops:remove='true' kvmops:replace='true'/></devices>", r'^xml: <rng> cannot carry both'),
])
def test_fragments_that_cannot_be_matched_are_refused(body, message):
    with pytest.raises(KvmError, match=message):
        merged(body)


@pytest.mark.parametrize('body', [
    "<disk kvmops:remove='true'><target dev='vda'/></disk><disk><target dev='vda'/></disk>",
    "<rng kvmops:remove='true'/><rng model='virtio'/>",
    "<input type='tablet'/><input type='tablet' kvmops:remove='true'/>",
])
def test_an_element_removed_and_given_again_is_refused(body):
    with pytest.raises(KvmError, match=r'^xml: domain/devices/(disk\[vda\]|rng|input\[type=tablet\]) is both removed'):
        merged('<devices>%s</devices>' % body)
    merged("<devices><rng kvmops:remove='true'/><rng kvmops:remove='true'/></devices>")   # removing all is clear


def test_identities_are_paired_before_attributes_and_positions():
    """A controller without index must not take index 0 that a later sibling names."""
    out, log = merged("<devices><controller type='pci' model='pci-root'/>"
                      "<controller type='pci' index='0' model='pci-root'/></devices>")
    assert describe(log) == ['domain/devices/controller[model=pci-root,type=pci]: added']
    out, log = merged("<devices><controller type='usb'/><controller type='usb' index='0' model='qemu-xhci'/></devices>")
    assert paths(log, 'add') == ['domain/devices/controller[type=usb]']


def test_remove_on_the_root_and_a_foreign_root_are_refused():
    with pytest.raises(KvmError, match=r'^xml: kvmops:remove and kvmops:replace do not apply to <domain>'):
        merged('', "kvmops:remove='true'")
    with pytest.raises(KvmError, match=r'^xml: the root element must be <domain>, not <network>'):
        merge(guest(), parse('<network/>'))


# ---------------------------------------------------------------- namespaces
def test_namespaced_elements_merge_by_namespace_and_tag():
    out, log = merged("<metadata><app2:info xmlns:app2='http://example.org/app2'>two</app2:info>"
                      "<app1:info xmlns:app1='http://example.org/app1'>uno</app1:info></metadata>")
    assert describe(log) == ['domain/metadata/app2:info: added', "domain/metadata/app1:info: 'one' -> 'uno'"]
    infos = dict((child.tag, child.text) for child in out.find('metadata'))
    assert infos == {'{http://example.org/app1}info': 'uno', '{http://example.org/app2}info': 'two'}
    # the same local name in another namespace is another element; a foreign namespace's attribute is kept
    out, log = merged("<devices xmlns:q='http://example.org/q'><q:emulator>x</q:emulator>"
                      "<graphics type='vnc' q:hint='1'/></devices>")
    assert out.findtext('devices/emulator') == '/usr/bin/qemu-system-x86_64'
    assert out.find('devices/graphics').get('{http://example.org/q}hint') == '1'
    assert describe(log) == ['domain/devices/q:emulator: added', "domain/devices/graphics[vnc]/@q:hint: None -> '1'"]


def test_markers_never_reach_libvirt():
    root = frag("<devices><rng model='virtio' kvmops:replace='true'/><watchdog kvmops:remove='true'/></devices>")
    clean = without_markers(root)
    text = to_string(clean)
    assert 'kvmops' not in text and NS not in text and clean.find('devices/watchdog') is None
    assert clean.find('devices/rng') is not None


def test_secrets_are_masked_in_the_log():
    _out, log = merged("<devices><graphics type='vnc' passwd='s3cret'/></devices>")
    assert describe(log) == ["domain/devices/graphics[vnc]/@passwd: None -> '********'"]
    assert 's3cret' not in repr(log)


# ---------------------------------------------------------------- hostile input
def test_a_huge_fragment_is_refused():
    body = '<devices>%s</devices>' % ("<rng model='virtio'/>" * MAX_ELEMENTS)
    with pytest.raises(KvmError, match=r'^xml: more than %d elements' % MAX_ELEMENTS):
        merged(body)


def params(**kw):
    out = dict((k, v.get('default')) for k, v in ARGUMENT_SPEC.items())
    out.update(kw)
    return out


@pytest.mark.parametrize('text, message', [
    ('<!DOCTYPE d [<!ENTITY e "x">]><domain><devices>&e;</devices></domain>', '^xml: .*DOCTYPE'),
    ('<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><domain><description>&c;</description></domain>', '^xml: .*DOCTYPE'),
    ('<domain xmlns:k="%s"><devices><rng k:gone="true"/></devices></domain>' % NS, '^xml: unknown attribute kvmops:gone'),
    ('<domain><devices>%s</devices></domain>' % ('<rng/>' * (MAX_ELEMENTS + 1)), '^xml: more than'),
    ('<domain>' + '<a>' * 300 + '</a>' * 300 + '</domain>', '^xml: malformed domain XML'),
])
def test_hostile_fragments_are_refused_before_anything_is_planned(text, message):
    with pytest.raises(ValidationError, match=message):
        validate(params(name='vm01', xml=text))


# ---------------------------------------------------------------- plan_config: modes and precedence
def plan(current, **kw):
    kw.setdefault('name', 'vm01')
    return plan_config(validate(params(**kw)), current, {})


def test_merge_is_the_default_and_reports_only_the_device():
    fragment = "<domain><devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"
    base, changes, _opts = plan(guest(), xml=fragment)
    assert [(c['option'], c['xml_mode'], c['added'], c['removed']) for c in changes] == \
        [('xml', 'merge', ['domain/devices/rng'], [])]
    assert changes[0]['after'] == ['domain/devices/rng: added']
    assert base.find('os/type').text == 'hvm' and len(base.findall('devices/disk')) == 2
    again, changes, _opts = plan(base, xml=fragment)
    assert changes == [], 'the second run changes nothing'
    assert to_string(again) == to_string(base)


def test_replace_mode_names_what_it_removes():
    fragment = "<domain><devices><tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices></domain>"
    base, changes, _opts = plan(guest(), xml=fragment, xml_mode='replace')
    [change] = changes
    assert change['xml_mode'] == 'replace' and change['after'] == ['domain/devices/tpm: missing']
    for path in ('domain/os/type', 'domain/devices/disk[vda]', 'domain/devices/disk[sda]',
                 'domain/devices/interface[52:54:00:12:34:56]', 'domain/devices/interface[alias=ua-uplink]',
                 'domain/devices/hostdev[pci,bus=6,domain=0,function=0,slot=0]', 'domain/devices/filesystem[share]'):
        assert path in change['removed'], (path, change['removed'])
    assert 'domain/devices/serial[0]' not in change['removed'], 'the serial console is kept (1.0 behaviour)'
    assert 'domain/uuid' not in change['removed'] and 'domain/name' not in change['removed']
    assert base.find('devices/disk') is None
    with pytest.raises(KvmError, match='^xml: kvmops:remove and kvmops:replace need xml_mode merge'):
        plan(guest(), xml_mode='replace',
             xml="<domain xmlns:k='%s'><devices><rng k:remove='true'/></devices></domain>" % NS)


def test_typed_options_win_over_the_fragment():
    fragment = "<domain><memory unit='MiB'>512</memory><vcpu>4</vcpu><devices><rng model='virtio'/></devices></domain>"
    base, changes, _opts = plan(guest(), xml=fragment, vcpus=2, max_vcpus=2, memory='128MiB', max_memory='128MiB')
    by_option = dict((c['option'], c) for c in changes)
    assert set(by_option) == {'xml', 'vcpus', 'max_vcpus'}, 'memory equals the guest once the typed value wins'
    assert by_option['xml']['after'] == ['domain/devices/rng: added'], 'the typed values are not reported as xml'
    assert base.findtext('vcpu') == '2' and base.find('memory').text == '131072'
    # a typed device list owns its devices: the fragment's disks give way
    fragment = "<domain><devices><disk><target dev='vdz'/><source file='/z'/></disk></devices></domain>"
    base, changes, _opts = plan(guest(), xml=fragment,
                                disks=[dict(path='/var/lib/libvirt/images/vm01.qcow2', format='qcow2', target='vda',
                                            bus='virtio', device='disk', allocation='sparse', cache='none')])
    assert 'vdz' not in [t.get('dev') for t in base.findall('devices/disk/target')]
    assert 'xml' not in [c['option'] for c in changes]


def _filled(name, value):
    """A structured option's value as AnsibleModule fills it (suboption defaults)."""
    def one(item, sub):
        full = dict((k, v.get('default')) for k, v in sub.items())
        for key, val in item.items():
            inner = sub[key]
            if inner.get('options') and val is not None:
                val = [one(v, inner['options']) for v in val] if inner['type'] == 'list' else one(val, inner['options'])
            full[key] = val
        return full
    spec = ARGUMENT_SPEC[name]
    return [one(v, spec['options']) for v in value] if spec['type'] == 'list' else one(value, spec['options'])


def test_typed_hardware_options_win_over_the_fragment_s_devices():
    fragment = ("<domain><devices><tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm>"
                "<watchdog model='i6300esb' action='reset'/></devices></domain>")
    base, changes, _opts = plan(guest(), xml=fragment, tpm=_filled('tpm', dict(model='tpm-crb')))
    by_option = dict((c['option'], c) for c in changes)
    assert by_option['xml']['added'] == ['domain/devices/watchdog'], 'the tpm is the typed option\'s'
    assert 'tpm' in by_option and [t.get('model') for t in base.findall('devices/tpm')] == ['tpm-crb']
    again, changes, _opts = plan(base, xml=fragment, tpm=_filled('tpm', dict(model='tpm-crb')))
    assert changes == []


@pytest.mark.parametrize('mode', ['merge', 'replace'])
def test_a_uuid_that_is_not_the_guest_s_is_refused(mode):
    with pytest.raises(KvmError, match=r'^xml: <uuid> 11111111-2222-3333-4444-555555555555 is not the UUID of guest vm01'):
        plan(guest(), xml_mode=mode, xml='<domain><uuid>11111111-2222-3333-4444-555555555555</uuid></domain>')
    _base, changes, _opts = plan(guest(), xml_mode=mode, xml='<domain><uuid>6695EB01F6A4830479AA97F2502E193F</uuid></domain>')
    assert changes == []


def test_new_guest_from_a_fragment_with_markers():
    base, _changes, _opts = plan(None, virt_type='qemu', xml="<domain xmlns:k='%s'><memory unit='MiB'>64</memory>"
                                 "<devices><rng model='virtio' k:replace='true'/><watchdog k:remove='true'/></devices>"
                                 "</domain>" % NS)
    assert base.find('devices/rng') is not None and base.find('devices/watchdog') is None
    assert 'kvmops' not in to_string(base) and NS not in to_string(base)


def test_a_merged_fragment_on_a_running_guest_waits_for_the_restart():
    spec = validate(params(name='vm01', xml="<domain><devices><rng model='virtio'/></devices></domain>"))
    wanted, _changes, options = plan_config(spec, guest(), {})
    _actions, pending = plan_live(spec, options, wanted, guest(), {}, before=guest())
    assert pending == ['xml']
    _actions, pending = plan_live(spec, options, wanted, wanted, {}, before=wanted)
    assert pending == [], 'after the restart the live guest has it'


def test_removed_paths_names_elements_not_their_children():
    current = guest()
    assert removed_paths(current, guest()) == []
    slim = guest()
    slim.find('devices').remove(slim.find('devices/disk'))
    slim.find('os').remove(slim.find('os/boot'))
    slim.find('devices/interface').remove(slim.find('devices/interface/model'))
    assert removed_paths(current, slim) == ['domain/os/boot[hd]', 'domain/devices/disk[vda]',
                                            'domain/devices/interface[52:54:00:12:34:56]/model']
