"""kvm_domain's typed hardware options (issue 16): tpm, Secure Boot firmware, filesystems, memory_backing,
rng, watchdog, boot, iothreads, cputune - options -> XML -> facts, comparison by meaning, refusals.

The round trips go through the planner (pure) and through the Manager on libvirt's test:/// driver, which
parses and stores the XML as libvirt does (check mode writes nothing, a second run is no change)."""

import copy

import pytest
from test_domain import CTX, CountingConn, _converge, guest_module, params, vm01

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, validate
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import plan_config, plan_live
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import OPTIONS, OPTIONS_BY_NAME
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_xml_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, parse, to_string

HARDWARE = ('tpm', 'secure_boot', 'enrolled_keys', 'loader', 'nvram_template', 'filesystems', 'memory_backing',
            'rng', 'watchdog', 'boot', 'iothreads', 'cputune', 'numatune', 'video', 'sound', 'cpu_features', 'cpu_cache', 'inputs', 'channels')


def fill(name, value):
    """A structured option's value as AnsibleModule fills it (suboption defaults)."""
    spec = ARGUMENT_SPEC[name]
    if spec.get('type') not in ('dict', 'list') or 'options' not in spec:
        return value

    def one(item, sub):
        full = dict((k, v.get('default')) for k, v in sub.items())
        for key, val in item.items():
            inner = sub[key]
            if inner.get('options') and val is not None:
                val = [one(v, inner['options']) for v in val] if inner['type'] == 'list' else one(val, inner['options'])
            full[key] = val
        return full
    if spec['type'] == 'list':
        return [one(item, spec['options']) for item in value]
    return one(value, spec['options'])


def hw_params(**kw):
    return params(**dict((k, fill(k, v) if k in HARDWARE else v) for k, v in kw.items()))


def spec_of(**kw):
    return validate(hw_params(name='vm01', **kw))


def plan(current, **kw):
    return plan_config(spec_of(**kw), current, CTX)


def options_changed(changes):
    return sorted(set(c['option'] for c in changes))


# ---------------------------------------------------------------- the declaration
def test_every_hardware_option_is_one_line_of_the_table():
    names = [o.name for o in OPTIONS]
    for name in HARDWARE:
        assert names.count(name) == 1 and name in ARGUMENT_SPEC
        assert OPTIONS_BY_NAME[name].read is not None and OPTIONS_BY_NAME[name].write is not None


# ---------------------------------------------------------------- round trips (pure)
ROUND_TRIPS = [
    ('tpm', dict(model='tpm-crb', backend='emulator', version='2.0', persistent_state=True),
     "devices/tpm[@model='tpm-crb']/backend[@type='emulator'][@version='2.0'][@persistent_state='yes']"),
    ('tpm', dict(model='tpm-tis', device='/dev/tpm0'),
     "devices/tpm[@model='tpm-tis']/backend[@type='passthrough']/device[@path='/dev/tpm0']"),
    ('rng', dict(), "devices/rng[@model='virtio']/backend[@model='random']"),
    ('watchdog', dict(model='ib700', action='poweroff'), "devices/watchdog[@model='ib700'][@action='poweroff']"),
    ('boot', dict(order=['network', 'hd'], menu=True, menu_timeout=3000), "os/bootmenu[@enable='yes'][@timeout='3000']"),
    ('iothreads', 2, "iothreads"),
    ('memory_backing', dict(hugepages=True, pages=[dict(size='2MiB')], locked=True, nosharepages=True),
     "memoryBacking/hugepages/page[@size='2048'][@unit='KiB']"),
    ('cputune', dict(shares=2048, period=100000, quota=50000, vcpupin=[dict(vcpu=0, cpuset='0-1,^1')], emulatorpin='0'),
     "cputune/vcpupin[@vcpu='0'][@cpuset='0']"),
    ('numatune', dict(mode='interleave', nodeset='0-1'), "numatune/memory[@mode='interleave'][@nodeset='0,1']"),
    ('video', dict(model='virtio', heads=2), "devices/video/model[@type='virtio'][@heads='2']"),
    ('sound', dict(model='ich6'), "devices/sound[@model='ich6']"),
    ('filesystems', [dict(source='/srv/share', target='share0')],
     "devices/filesystem[@type='mount'][@accessmode='passthrough']/driver[@type='virtiofs']"),
    ('filesystems', [dict(source='/srv/ro', target='ro', driver='9p', readonly=True, accessmode='mapped')],
     "devices/filesystem[@accessmode='mapped']/readonly"),
]


@pytest.mark.parametrize('name, value, xpath', ROUND_TRIPS)
def test_option_to_xml_to_facts_and_stable(name, value, xpath):
    current = vm01()
    desired, changes, _options = plan(current, **{name: value})
    assert options_changed(changes) in ([name], sorted([name, 'filesystems'])), changes
    assert desired.xpath(xpath), to_string(desired)
    # libvirt's own normalized XML holds what was written: the same request is no change
    again = parse(to_string(desired))
    _desired, changes, _options = plan(again, **{name: value})
    assert changes == []
    facts = domain_xml_facts(again)
    assert facts[name] not in (None, [], 0)


def test_cpu_model_features_cache():
    desired, changes, _o = plan(vm01(), cpu_model='Haswell-noTSX', cpu_features=[dict(name='pcid', policy='disable')],
                                cpu_cache=dict(mode='emulate', level=3))
    assert options_changed(changes) == ['cpu_cache', 'cpu_features', 'cpu_model']
    cpu = desired.find('cpu')
    assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'Haswell-noTSX'
    assert cpu.find("feature[@name='pcid']").get('policy') == 'disable'
    assert cpu.find('cache').attrib == {'level': '3', 'mode': 'emulate'}
    stored = parse(to_string(desired))
    assert domain_xml_facts(stored)['cpu'] == dict(model='Haswell-noTSX', features=[dict(name='pcid', policy='disable')],
                                                   cache=dict(mode='emulate', level=3))
    # only the features given are compared: another feature is added, pcid stays
    desired, changes, _o = plan(stored, cpu_features=[dict(name='invtsc')])
    assert [(f.get('name'), f.get('policy')) for f in desired.findall('cpu/feature')] == [('pcid', 'disable'), ('invtsc', 'require')]
    assert plan(parse(to_string(desired)), cpu_model='Haswell-noTSX', cpu_features=[dict(name='pcid', policy='disable')])[1] == []
    with pytest.raises(KvmError, match='cpu_model: a named CPU model is cpu mode custom'):
        plan(vm01(), cpu_model='EPYC', cpu_mode='host-model')
    with pytest.raises(ValidationError, match=r'cpu_features\[0\].name: must be a CPU feature name'):
        spec_of(cpu_features=[dict(name='bad name')])
    with pytest.raises(ValidationError, match='cpu_cache.level: is for mode emulate'):
        spec_of(cpu_cache=dict(mode='passthrough', level=3))


def test_inputs_present_absent_and_live():
    current = vm01()
    spec = spec_of(inputs=[dict(type='tablet'), dict(type='keyboard', bus='virtio')])
    desired, changes, options = plan_config(spec, current, CTX)
    assert options_changed(changes) == ['inputs']
    assert [(i.get('type'), i.get('bus')) for i in desired.findall('devices/input')][-2:] == [('tablet', 'usb'), ('keyboard', 'virtio')]
    assert {'type': 'tablet', 'bus': 'usb'} in domain_xml_facts(desired)['inputs']
    actions, pending = plan_live(spec, options, desired, current, CTX, before=current)
    assert sorted(a['option'] for a in actions) == ['inputs[keyboard/virtio]', 'inputs[tablet/usb]'] and pending == []
    stored = parse(to_string(desired))
    assert plan_config(spec, stored, CTX)[1] == []
    spec = spec_of(inputs=[dict(type='tablet', state='absent')])
    gone, changes, options = plan_config(spec, stored, CTX)
    assert gone.xpath("devices/input[@type='tablet']") == [] and options_changed(changes) == ['inputs']
    assert plan_live(spec, options, gone, stored, CTX, before=stored) == ([], ['inputs'])
    with pytest.raises(ValidationError, match=r'inputs\[0\].bus: a tablet is on usb or virtio'):
        spec_of(inputs=[dict(type='tablet', bus='ps2')])
    with pytest.raises(ValidationError, match=r'inputs\[1\]: the mouse on ps2 is given twice'):
        spec_of(inputs=[dict(type='mouse'), dict(type='mouse', bus='ps2')])


def test_channels_present_absent_and_live():
    current = vm01()
    spec = spec_of(channels=[dict(name='com.redhat.spice.0'), dict(name='org.example.data', type='pty')])
    desired, changes, options = plan_config(spec, current, CTX)
    assert options_changed(changes) == ['channels']
    spice = desired.xpath("devices/channel[target/@name='com.redhat.spice.0']")[0]
    assert spice.get('type') == 'spicevmc' and spice.find('target').get('type') == 'virtio'
    assert plan_live(spec, options, desired, current, CTX, before=current) == ([], ['channels']), 'no virtio-serial controller'
    live = copy.deepcopy(current)
    live.find('devices').append(etree.fromstring("<controller type='virtio-serial' index='0'/>"))
    actions, pending = plan_live(spec, options, desired, live, CTX, before=current)
    assert sorted(a['option'] for a in actions) == ['channels[com.redhat.spice.0]', 'channels[org.example.data]']
    stored = parse(to_string(desired))
    assert plan_config(spec, stored, CTX)[1] == []
    assert dict(name='org.example.data', type='pty', state=None) in domain_xml_facts(stored)['channels']
    spec = spec_of(channels=[dict(name='org.example.data', state='absent')])
    gone, changes, options = plan_config(spec, stored, CTX)
    assert not gone.xpath("devices/channel[target/@name='org.example.data']") and options_changed(changes) == ['channels']
    assert plan_live(spec, options, gone, stored, CTX, before=stored) == ([], ['channels'])
    with pytest.raises(ValidationError, match=r'channels\[0\].type: spicevmc is the SPICE agent channel'):
        spec_of(channels=[dict(name='org.example', type='spicevmc')])


def test_tpm_facts_and_removal():
    current = vm01()
    desired, _c, _o = plan(current, tpm=dict(persistent_state=True))
    facts = domain_xml_facts(desired)
    assert facts['tpm'] == dict(model='tpm-crb', backend='emulator', version='2.0', persistent_state=True, device=None)
    # only the given fields are compared: another model is a change of exactly that field
    _d, changes, _o = plan(desired, tpm=dict(model='tpm-tis'))
    assert changes[0]['option'] == 'tpm' and changes[0]['after'] == dict(state='present', model='tpm-tis')
    gone, changes, _o = plan(desired, tpm=dict(state='absent'))
    assert gone.find('devices/tpm') is None and options_changed(changes) == ['tpm']
    assert plan(gone, tpm=dict(state='absent'))[1] == []


def test_virtiofs_gets_shared_memory_for_the_user():
    desired, changes, _o = plan(vm01(), filesystems=[dict(source='/srv/share', target='share0')])
    assert desired.find("memoryBacking/source[@type='memfd']") is not None
    assert desired.find("memoryBacking/access[@mode='shared']") is not None
    assert options_changed(changes) == ['filesystems'] and len(changes) == 2
    # hugepages already back the memory: only shared access is added
    huge, _c, _o = plan(vm01(), memory_backing=dict(hugepages=True))
    desired, _c, _o = plan(huge, filesystems=[dict(source='/srv/share', target='share0')])
    assert desired.find('memoryBacking/source') is None and desired.find("memoryBacking/access[@mode='shared']") is not None
    with pytest.raises(KvmError, match='memory_backing.access: virtiofs'):
        plan(vm01(), filesystems=[dict(source='/srv/share', target='s')], memory_backing=dict(access='private'))


def test_filesystems_are_a_complete_list_matched_by_tag():
    two, _c, _o = plan(vm01(), filesystems=[dict(source='/a', target='a'), dict(source='/b', target='b', driver='9p')])
    one, changes, _o = plan(parse(to_string(two)), filesystems=[dict(source='/b2', target='b', driver='9p')])
    assert [f['target'] for f in domain_xml_facts(one)['filesystems']] == ['b']
    assert domain_xml_facts(one)['filesystems'][0]['source'] == '/b2' and options_changed(changes) == ['filesystems']


def test_secure_boot_through_firmware_auto_selection():
    current = vm01()
    current.find('os/type').set('machine', 'pc-q35-7.2')
    desired, changes, _o = plan(current, firmware='efi', secure_boot=True, enrolled_keys=True)
    assert desired.find('os').get('firmware') == 'efi'
    assert desired.find("os/firmware/feature[@name='secure-boot'][@enabled='yes']") is not None
    assert desired.find("os/firmware/feature[@name='enrolled-keys'][@enabled='yes']") is not None
    assert options_changed(changes) == ['enrolled_keys', 'firmware', 'secure_boot']
    facts = domain_xml_facts(desired)
    assert facts['firmware'] == 'efi' and facts['secure_boot'] is True and facts['enrolled_keys'] is True
    assert plan(parse(to_string(desired)), firmware='efi', secure_boot=True, enrolled_keys=True)[1] == []
    _d, changes, _o = plan(desired, secure_boot=False, enrolled_keys=False)
    assert options_changed(changes) == ['enrolled_keys', 'secure_boot']


def test_explicit_loader_and_nvram_template():
    current = vm01()
    current.find('os/type').set('machine', 'q35')
    loader = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd'
    template = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd'
    desired, changes, _o = plan(current, loader=loader, nvram_template=template, secure_boot=True)
    node = desired.find('os/loader')
    assert node.text == loader and node.get('type') == 'pflash' and node.get('secure') == 'yes'
    assert desired.find('os').get('firmware') is None and desired.find("features/smm[@state='on']") is not None
    assert desired.find('os/nvram').get('template') == template
    facts = domain_xml_facts(desired)
    assert facts['loader'] == loader and facts['nvram_template'] == template and facts['firmware'] == 'efi'
    # firmware: efi on an explicit loader is the same firmware (no auto-selection added beside the loader)
    assert plan(parse(to_string(desired)), firmware='efi', loader=loader, nvram_template=template, secure_boot=True)[1] == []
    back, changes, _o = plan(desired, loader='')
    assert back.find('os/loader') is None and back.find('os').get('firmware') == 'efi'
    assert back.find("os/firmware/feature[@name='secure-boot'][@enabled='yes']") is not None


@pytest.mark.parametrize('machine, kw, message', [
    ('pc-i440fx-7.2', dict(secure_boot=True), 'secure_boot: Secure Boot needs a q35 machine'),
    ('q35', dict(firmware='bios', secure_boot=True), 'secure_boot: needs firmware efi'),
    ('q35', dict(secure_boot=False, enrolled_keys=True), 'enrolled_keys: enrolled Secure Boot keys need'),
    ('q35', dict(nvram_template='/x/VARS.fd'), 'nvram_template: needs an explicit loader'),
    ('q35', dict(loader='/x/CODE.fd', enrolled_keys=True), 'enrolled_keys: chooses a firmware'),
    ('q35', dict(boot=dict(order=['hd']), kernel='/boot/vmlinuz'), 'boot.order: a guest with direct kernel boot'),
    ('q35', dict(cputune=dict(vcpupin=[dict(vcpu=3, cpuset='0')])), 'cputune.vcpupin: vCPU 3 does not exist'),
    ('q35', dict(memory_backing=dict(pages=[dict(size='2M', nodeset='0')])), 'memory_backing.pages: nodeset needs guest NUMA'),
    ('q35', dict(numatune=dict(mode='strict')), 'numatune.nodeset: required'),
    ('q35', dict(cputune=dict(iothreadpin=[dict(iothread=1, cpuset='0')])), 'cputune.iothreadpin: I/O thread 1 does not exist'),
])
def test_combinations_are_refused_before_any_write(machine, kw, message):
    current = vm01()
    current.find('os/type').set('machine', machine)
    with pytest.raises(KvmError, match=message):
        plan(current, **kw)


@pytest.mark.parametrize('kw, message', [
    (dict(tpm=dict(backend='passthrough')), 'tpm.device: required with backend passthrough'),
    (dict(tpm=dict(backend='emulator', device='/dev/tpm0')), 'tpm.device: is for backend passthrough only'),
    (dict(tpm=dict(device='/dev/tpm0', version='2.0')), 'tpm.version: is for backend emulator only'),
    (dict(tpm=dict(device='dev/tpm0')), 'tpm.device: must be an absolute path'),
    (dict(filesystems=[dict(source='/a', target='bad tag')]), r'filesystems\[0\].target: must be a mount tag'),
    (dict(filesystems=[dict(source='/a', target='t'), dict(source='/b', target='t')]), r'filesystems\[1\].target: duplicate'),
    (dict(filesystems=[dict(source='/a/../b', target='t')]), r"filesystems\[0\].source: must not contain '..'"),
    (dict(filesystems=[dict(source='/a', target='t', accessmode='mapped')]), 'virtiofs supports passthrough only'),
    (dict(memory_backing=dict(pages=[dict(size='3KiB')])), r'memory_backing.pages\[0\].size: must be a page size'),
    (dict(memory_backing=dict(hugepages=False, pages=[dict(size='2MiB')])), 'memory_backing.pages: needs hugepages'),
    (dict(memory_backing=dict(pages=[dict(size='2MiB', nodeset='0;1')])), r'memory_backing.pages\[0\].nodeset: must be a cpuset'),
    (dict(rng=dict(backend='builtin', source='/dev/random')), 'rng.source: is for backend random only'),
    (dict(boot=dict(order=['hd', 'hd'])), 'boot.order: names a device twice'),
    (dict(boot=dict(order=[])), 'boot.order: must name at least one device'),
    (dict(iothreads=-1), 'iothreads: must be at least 0'),
    (dict(cputune=dict(shares=1)), 'cputune.shares: must be at least 2'),
    (dict(cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0-')])), r'cputune.vcpupin\[0\].cpuset: must be a cpuset'),
    (dict(cputune=dict(vcpupin=[dict(vcpu=0, cpuset='1,^1')])), r'cputune.vcpupin\[0\].cpuset: names no CPU'),
    (dict(cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0'), dict(vcpu=0, cpuset='1')])), 'vCPU pinned twice'),
    (dict(cputune=dict(emulatorpin='5-2')), 'cputune.emulatorpin: has an invalid range'),
    (dict(cputune=dict(iothreadpin=[dict(iothread=0, cpuset='0')])), r'cputune.iothreadpin\[0\].iothread: must be at least 1'),
    (dict(numatune=dict(nodeset='x')), 'numatune.nodeset: must be a cpuset'),
    (dict(video=dict(model='none', vram=16384)), 'video: model none has no vram or heads'),
    (dict(video=dict(vram=10)), 'video.vram: must be at least 1024'),
])
def test_bad_input_is_refused_naming_the_option(kw, message):
    with pytest.raises(ValidationError, match=message):
        spec_of(**kw)


def test_hugepage_nodesets_on_a_numa_guest():
    current = vm01()
    current.append(etree.fromstring("<cpu><numa><cell id='0' cpus='0' memory='512' unit='MiB'/>"
                                    "<cell id='1' cpus='1' memory='512' unit='MiB'/></numa></cpu>"))
    pages = [dict(size='1GiB', nodeset='1'), dict(size='2048', nodeset='0')]
    desired, changes, _o = plan(current, memory_backing=dict(pages=pages))
    assert [(p.get('size'), p.get('nodeset')) for p in desired.findall('memoryBacking/hugepages/page')] == [
        ('2048', '0'), ('1048576', '1')]
    assert plan(parse(to_string(desired)), memory_backing=dict(pages=list(reversed(pages))))[1] == []


def test_cpusets_compare_by_meaning():
    current = vm01()
    desired, _c, _o = plan(current, max_vcpus=2, cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0-3,^2')]))
    stored = parse(to_string(desired))
    assert stored.find('cputune/vcpupin').get('cpuset') == '0,1,3'
    assert plan(stored, cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0-1,3')]))[1] == []
    stored.find('cputune/vcpupin').set('cpuset', '0-1,3')     # libvirt writes ranges: the same CPUs
    assert plan(stored, cputune=dict(vcpupin=[dict(vcpu=0, cpuset='0,1,3')]))[1] == []


def test_live_plan_hot_plugs_pins_and_leaves_the_rest_for_the_next_boot():
    current = vm01()
    spec = spec_of(tpm=dict(), cputune=dict(shares=512, vcpupin=[dict(vcpu=0, cpuset='1')]), rng=dict(),
                   watchdog=dict(), iothreads=2)
    desired, _changes, options = plan_config(spec, current, CTX)
    live = copy.deepcopy(current)
    actions, pending = plan_live(spec, options, desired, live, CTX, before=current)
    assert pending == ['tpm'], 'a TPM is never hot-plugged'
    kinds = sorted((a['option'], a['kind']) for a in actions)
    assert kinds == [('cputune', 'call'), ('cputune.vcpupin[0]', 'call'), ('iothreads', 'call'), ('iothreads', 'call'),
                     ('rng', 'attach'), ('watchdog', 'attach')]
    assert [a['after'] for a in actions if a['option'] == 'iothreads'] == [dict(iothread_id=1), dict(iothread_id=2)]
    # the running guest has them all: nothing to do but the TPM
    for xml in ("<cputune><shares>512</shares><vcpupin vcpu='0' cpuset='1'/></cputune>",
                "<iothreads>2</iothreads>"):
        live.append(etree.fromstring(xml))
    for tag in ('rng', 'watchdog'):
        live.find('devices').append(copy.deepcopy(desired.find('devices/' + tag)))
    assert plan_live(spec, options, desired, live, CTX, before=current) == ([], ['tpm'])
    # a changed watchdog, fewer I/O threads: the next boot
    spec = spec_of(watchdog=dict(action='pause'), iothreads=1)
    desired, _changes, options = plan_config(spec, live, CTX)
    actions, pending = plan_live(spec, options, desired, live, CTX, before=live)
    assert actions == [] and sorted(pending) == ['iothreads', 'watchdog']


def test_auto_selected_loader_on_a_running_guest_is_no_pending_change():
    """The live XML of an auto-selected UEFI guest names the loader libvirt chose: loader '' is no restart."""
    current = vm01()
    current.find('os').set('firmware', 'efi')
    live = copy.deepcopy(current)
    del live.find('os').attrib['firmware']
    live.find('os').append(etree.fromstring("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"))
    live.find('os').append(etree.fromstring("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/n/vm01_VARS.fd</nvram>"))
    spec = spec_of(loader='', nvram_template='')
    desired, changes, options = plan_config(spec, current, CTX)
    assert changes == []
    assert plan_live(spec, options, desired, live, CTX, before=current) == ([], [])
    spec = spec_of(loader='/x/CODE.fd')
    desired, changes, options = plan_config(spec, current, CTX)
    assert options_changed(changes) == ['loader']
    assert plan_live(spec, options, desired, live, CTX, before=current) == ([], ['loader'])


def test_numatune_and_iothreadpin_live():
    current = vm01()
    current.append(etree.fromstring("<numatune><memory mode='strict' nodeset='0'/></numatune>"))
    current.append(etree.fromstring("<iothreads>2</iothreads>"))
    spec = spec_of(numatune=dict(nodeset='0-1'), cputune=dict(iothreadpin=[dict(iothread=2, cpuset='1')]))
    desired, changes, options = plan_config(spec, current, CTX)
    assert options_changed(changes) == ['cputune', 'numatune']
    assert desired.find('cputune/iothreadpin').attrib == {'iothread': '2', 'cpuset': '1'}
    actions, pending = plan_live(spec, options, desired, current, CTX, before=current)
    assert pending == [] and sorted((a['option'], a['after']) for a in actions) == [
        ('cputune.iothreadpin[2]', '1'), ('numatune', dict(numa_nodeset='0,1'))]
    spec = spec_of(numatune=dict(mode='interleave'))   # the mode of a running guest never changes live
    desired, changes, options = plan_config(spec, current, CTX)
    assert plan_live(spec, options, desired, current, CTX, before=current) == ([], ['numatune'])


def test_live_plan_of_filesystems():
    shared = vm01()
    shared.append(etree.fromstring("<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"))
    for current, attach in ((shared, True), (vm01(), False)):
        spec = spec_of(filesystems=[dict(source='/srv/a', target='a')])
        desired, _changes, options = plan_config(spec, current, CTX)
        actions, pending = plan_live(spec, options, desired, current, CTX, before=current)
        if attach:   # virtiofs on a guest whose memory is shared already: hot-plugged
            assert [(a['option'], a['kind']) for a in actions] == [('filesystems[a]', 'attach')] and pending == []
        else:        # the memory backing changes too: the next boot
            assert actions == [] and pending == ['filesystems']
    spec = spec_of(filesystems=[dict(source='/srv/a', target='a', driver='9p')])
    desired, _changes, options = plan_config(spec, shared, CTX)
    assert plan_live(spec, options, desired, shared, CTX, before=shared) == ([], ['filesystems'])


def test_adopted_guest_with_hardware_changes_only_the_named_option():
    """A guest with every hardware option set elsewhere: a task naming one option reports only that one."""
    current = vm01()
    current.find('os/type').set('machine', 'pc-q35-7.2')
    everything = dict(tpm=dict(), firmware='efi', secure_boot=True, rng=dict(), watchdog=dict(action='pause'),
                      filesystems=[dict(source='/srv/s', target='s')], boot=dict(menu=True), iothreads=1,
                      memory_backing=dict(locked=True), cputune=dict(shares=100))
    full, _c, _o = plan(current, **everything)
    adopted = parse(to_string(full))
    assert plan(adopted, autostart=True)[1] == []
    _d, changes, _o = plan(adopted, watchdog=dict(action='reset'))
    assert options_changed(changes) == ['watchdog']
    assert changes[0]['before'] == dict(model='i6300esb', action='pause')


# ---------------------------------------------------------------- through the Manager (test:/// driver)
GUEST = dict(name='kvmops-unit-hw', memory='128MiB', vcpus=2, virt_type='qemu', machine='q35', graphics=dict(type='none'))


@pytest.fixture
def hw_client():
    """kvm_domain's Manager on libvirt's test driver, its libvirt writes logged (as test_domain's fixture)."""
    client = LibvirtClient(guest_module(name='x'), uri='test:///default')
    log = []
    client._conn = CountingConn(client.conn, log)
    client.write_log = log
    yield client
    client.close()


def test_manager_check_real_noop_and_facts(hw_client):
    test_client = hw_client
    args = hw_params(**dict(GUEST, tpm=dict(), rng=dict(), watchdog=dict(action='poweroff'), iothreads=1,
                            boot=dict(order=['hd', 'cdrom'], menu=True), cputune=dict(vcpupin=[dict(vcpu=1, cpuset='0')])))
    first = _converge(test_client, args, check=True, diff=True)
    assert first['changed'] is True and test_client.write_log == []
    real = _converge(test_client, args)
    assert real['changed'] is True and test_client.write_log == ['defineXMLFlags']
    facts = real['domain']
    assert facts['tpm']['model'] == 'tpm-crb' and facts['rng']['source'] == '/dev/urandom'
    assert facts['watchdog'] == dict(model='i6300esb', action='poweroff') and facts['iothreads'] == 1
    assert facts['boot']['order'] == ['hd', 'cdrom'] and facts['boot']['menu'] is True
    assert facts['cputune']['vcpupin'] == [dict(vcpu=1, cpuset='0')]
    again = _converge(test_client, args)
    assert again['changed'] is False and again['changes'] == [] and test_client.write_log == ['defineXMLFlags']
    one = _converge(test_client, hw_params(name=GUEST['name'], watchdog=dict(action='reset')), diff=True)
    assert [c['option'] for c in one['changes']] == ['watchdog'] and one['domain']['watchdog']['action'] == 'reset'
    assert "action='poweroff'" in one['diff']['before'].replace('"', "'")
    untpm = _converge(test_client, hw_params(name=GUEST['name'], tpm=dict(state='absent')))
    assert [c['option'] for c in untpm['changes']] == ['tpm'] and untpm['domain']['tpm'] is None
    _converge(test_client, dict(name=GUEST['name'], state='absent'))   # the test driver knows no UNDEFINE_TPM
    assert test_client.find_domain(GUEST['name']) is None


# ---------------------------------------------------------------- per-disk serial, wwn, shareable, iotune
DISK = '/var/lib/libvirt/images/vm01.qcow2'


def disk_params(**extra):
    if 'iotune' in extra:
        extra['iotune'] = dict(dict((k, None) for k in ARGUMENT_SPEC['disks']['options']['iotune']['options']), **extra['iotune'])
    return hw_params(name='vm01', disks=[dict(path=DISK, **extra)])


def test_disk_extras_round_trip_and_compare():
    spec = validate(disk_params(serial='VM01-ROOT', shareable=True, format='raw',
                                iotune=dict(read_iops_sec=200, write_bytes_sec=1048576)))
    desired, changes, _o = plan_config(spec, vm01(), CTX)
    assert options_changed(changes) == ['disks[vda]']
    disk = desired.find('devices/disk')
    assert disk.findtext('serial') == 'VM01-ROOT' and disk.find('shareable') is not None
    assert disk.findtext('iotune/read_iops_sec') == '200' and disk.findtext('iotune/write_bytes_sec') == '1048576'
    stored = parse(to_string(desired))
    facts = domain_xml_facts(stored)['disks'][0]
    assert facts['serial'] == 'VM01-ROOT' and facts['shareable'] is True and facts['wwn'] is None
    assert facts['iotune']['read_iops_sec'] == 200 and facts['iotune']['total_bytes_sec'] == 0
    assert plan_config(spec, stored, CTX)[1] == []
    # a limit kvm_domain does not type survives a change of one it does; 0 lifts a limit
    stored.find('devices/disk/iotune').append(etree.fromstring('<read_iops_sec_max>400</read_iops_sec_max>'))
    spec = validate(disk_params(iotune=dict(read_iops_sec=0, write_bytes_sec=2097152)))
    desired, changes, _o = plan_config(spec, stored, CTX)
    assert changes[0]['before'] == dict(iotune=dict(read_iops_sec=200, write_bytes_sec=1048576))
    tune = desired.find('devices/disk/iotune')
    assert tune.find('read_iops_sec') is None and tune.findtext('write_bytes_sec') == '2097152'
    assert tune.findtext('read_iops_sec_max') == '400' and desired.findtext('devices/disk/serial') == 'VM01-ROOT'
    # serial '' removes it
    desired, changes, _o = plan_config(validate(disk_params(serial='')), stored, CTX)
    assert desired.find('devices/disk/serial') is None and options_changed(changes) == ['disks[vda]']
    assert plan_config(validate(disk_params(serial='')), parse(to_string(desired)), CTX)[1] == []


def test_disk_iotune_changes_live_the_rest_at_the_next_boot():
    current = vm01()
    for kw, kind in ((dict(iotune=dict(total_iops_sec=100)), 'call'), (dict(serial='X1'), None)):
        spec = validate(disk_params(**kw))
        desired, _changes, options = plan_config(spec, current, CTX)
        actions, pending = plan_live(spec, options, desired, current, CTX, before=current)
        if kind:
            assert [(a['option'], a['kind'], a['after']) for a in actions] == [
                ('disks[vda]', 'call', dict(iotune=dict(total_iops_sec=100)))] and pending == []
        else:
            assert actions == [] and pending == ['disks[vda]']


@pytest.mark.parametrize('extra, message', [
    (dict(serial='has space'), r'disks\[0\].serial: must be 1 to 20'),
    (dict(wwn='5000c50015ea71ac'), r'disks\[0\].wwn: is for scsi, sata and ide disks, not virtio'),
    (dict(wwn='xyz', bus='scsi'), r'disks\[0\].wwn: must be 16 hexadecimal digits'),
    (dict(iotune=dict(total_bytes_sec=1, read_bytes_sec=2)), r'disks\[0\].iotune.total_bytes_sec: cannot be combined'),
    (dict(iotune=dict(read_iops_sec=-1)), r'disks\[0\].iotune.read_iops_sec: must be at least 0'),
])
def test_disk_extras_refused_naming_the_field(extra, message):
    with pytest.raises(ValidationError, match=message):
        validate(disk_params(**extra))


def test_shareable_qcow2_is_refused_before_any_write():
    with pytest.raises(KvmError, match=r'disks\[0\].shareable: a disk shared between guests needs a raw image'):
        plan_config(validate(disk_params(shareable=True, format='qcow2')), vm01(), CTX)


# ---------------------------------------------------------------- per-NIC mtu, queues, vlan, portgroup, filterref, boot, bandwidth
def nic_params(**extra):
    if 'bandwidth' in extra:
        extra['bandwidth'] = dict((d, dict(dict(peak=None, burst=None), **r) if r else None)
                                  for d, r in dict(dict(inbound=None, outbound=None), **extra['bandwidth']).items())
    return hw_params(name='vm01', interfaces=[dict(source='default', **extra)])


def test_nic_details_round_trip_compare_and_live():
    extra = dict(mtu=1400, queues=2, portgroup='web', filterref='clean-traffic', boot_order=2,
                 bandwidth=dict(inbound=dict(average=1000, peak=2000)))
    spec = validate(nic_params(**extra))
    current = vm01()
    desired, changes, options = plan_config(spec, current, CTX)
    assert options_changed(changes) == ['interfaces[0]']
    nic = desired.find('devices/interface')
    assert nic.find('mtu').get('size') == '1400' and nic.find('driver').get('queues') == '2'
    assert nic.find('source').get('portgroup') == 'web' and nic.find('filterref').get('filter') == 'clean-traffic'
    assert nic.find('boot').get('order') == '2' and nic.find('bandwidth/inbound').attrib == {'average': '1000', 'peak': '2000'}
    assert nic.find('mac').get('address') == current.find('devices/interface/mac').get('address')
    stored = parse(to_string(desired))
    facts = domain_xml_facts(stored)['interfaces'][0]
    assert (facts['mtu'], facts['queues'], facts['portgroup'], facts['filterref'], facts['boot_order']) == (
        1400, 2, 'web', 'clean-traffic', 2)
    assert facts['bandwidth'] == dict(inbound=dict(average=1000, peak=2000, burst=None), outbound=None)
    assert plan_config(spec, stored, CTX)[1] == []
    # bandwidth and the filter change live; the MTU waits for the next boot
    for kw, live_kind in ((dict(bandwidth=dict(inbound=dict(average=0), outbound=dict(average=500))), 'update'),
                          (dict(filterref=''), 'update'), (dict(mtu=9000), None)):
        spec = validate(nic_params(**kw))
        desired, changes, options = plan_config(spec, stored, CTX)
        assert options_changed(changes) == ['interfaces[0]']
        actions, pending = plan_live(spec, options, desired, stored, CTX, before=stored)
        if live_kind:
            assert [a['kind'] for a in actions] == [live_kind] and pending == []
        else:
            assert actions == [] and pending == ['interfaces[0]']
    desired, _c, _o = plan_config(validate(nic_params(bandwidth=dict(inbound=dict(average=0)))), stored, CTX)
    assert desired.find('devices/interface/bandwidth') is None


@pytest.mark.parametrize('extra, message', [
    (dict(mtu=10), r'interfaces\[0\].mtu: must be at least 68'),
    (dict(queues=2, model='e1000'), r'interfaces\[0\].queues: multiqueue is for virtio NICs'),
    (dict(vlan=5000), r'interfaces\[0\].vlan: must be at most 4095'),
    (dict(portgroup='a/b'), r'interfaces\[0\].portgroup'),
    (dict(filterref='no spaces'), r'interfaces\[0\].filterref: must be an nwfilter name'),
    (dict(bandwidth=dict(outbound=dict(average=-1))), r'interfaces\[0\].bandwidth.outbound.average: must be at least 0'),
])
def test_nic_details_refused_naming_the_field(extra, message):
    with pytest.raises(ValidationError, match=message):
        validate(nic_params(**extra))


def test_live_details_the_task_does_not_give_are_left_alone():
    """Live-only I/O limits (virsh blkdeviotune --live) and a network's QoS in the live XML: no change unless the
    task gives iotune / bandwidth."""
    current = vm01()
    live = copy.deepcopy(current)
    live.find('devices/disk').append(etree.fromstring('<iotune><total_iops_sec>50</total_iops_sec></iotune>'))
    live.find('devices/interface').append(etree.fromstring("<bandwidth><inbound average='100'/></bandwidth>"))
    spec = validate(hw_params(name='vm01', disks=[dict(path=DISK)], interfaces=[dict(source='default')]))
    desired, changes, options = plan_config(spec, current, CTX)
    assert changes == [] and plan_live(spec, options, desired, live, CTX, before=current) == ([], [])
    spec = validate(disk_params(iotune=dict(total_iops_sec=0)))
    desired, changes, options = plan_config(spec, current, CTX)
    actions, _pending = plan_live(spec, options, desired, live, CTX, before=current)
    assert [(a['option'], a['kind']) for a in actions] == [('disks[vda]', 'call')]
