"""kvm_domain's serials and consoles (issue 16): options -> XML -> facts, comparison by meaning, libvirt's
serial-console rule, the precedence with serial_console, the live plan, and every refusal before any write.

The Manager round trip runs on libvirt's test:/// driver, which parses the XML with libvirt's own domain code
(it adds the ``<console target type='serial'>`` copy of the first serial port, as qemu:///system does)."""

import pytest
from test_domain import CTX, CountingConn, _converge, guest_module, params, vm01

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient
from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, validate
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_plan import plan_config, plan_live
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import OPTIONS_BY_NAME
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_xml_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._validate import ValidationError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import etree, parse, to_string

CHAR = ('serials', 'consoles')


def filled(name, items):
    """A list option as AnsibleModule fills it (suboption defaults)."""
    sub = ARGUMENT_SPEC[name]['options']
    return [dict(dict((k, v.get('default')) for k, v in sub.items()), **item) for item in items]


def spec_of(**kw):
    return validate(params(name='vm01', **dict((k, filled(k, v) if k in CHAR else v) for k, v in kw.items())))


def plan(current, **kw):
    return plan_config(spec_of(**kw), current, CTX)


def options_changed(changes):
    return sorted(set(c['option'] for c in changes))


def virt_install(serial="<serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>"
                 "<console type='pty'><target type='serial' port='0'/></console>"):
    """vm01 with virt-install's serial port and console, as libvirt stores them."""
    root = vm01()
    devices = root.find('devices')
    for elem in devices.findall('serial') + devices.findall('console'):
        devices.remove(elem)
    for elem in etree.fromstring('<x>%s</x>' % serial):
        devices.append(elem)
    return root


def test_options_are_lines_of_the_table_and_documented_types():
    for name in CHAR:
        assert OPTIONS_BY_NAME[name].spec['type'] == 'list' and name in ARGUMENT_SPEC
    assert ARGUMENT_SPEC['serials']['options']['type']['choices'] == ['pty', 'file', 'unix', 'tcp', 'null']


def test_virt_install_serial_is_no_change_and_one_field_is_one_change():
    current = virt_install()
    assert plan(current, serials=[dict(port=0, type='pty')])[1] == []
    assert plan(current, serials=[dict(type='pty', target_type='isa-serial')])[1] == []
    desired, changes, _o = plan(current, serials=[dict(port=0, type='file', path='/var/log/kvmops/vm01-serial.log')])
    assert options_changed(changes) == ['serials']
    assert changes[0]['before'][0]['type'] == 'pty' and changes[0]['after'][0]['path'] == '/var/log/kvmops/vm01-serial.log'
    serial = desired.find('devices/serial')
    assert serial.get('type') == 'file' and serial.find('source').get('path') == '/var/log/kvmops/vm01-serial.log'
    assert serial.find('target').get('type') == 'isa-serial', 'the guest side stays'
    assert desired.find('devices/console') is None, "libvirt makes the serial console again from the first port"


def test_tcp_listens_on_localhost_unless_a_host_is_named():
    desired, _c, _o = plan(virt_install(), serials=[dict(port=0, type='tcp', tcp_port=4555)])
    source = desired.find('devices/serial/source')
    assert (source.get('mode'), source.get('host'), source.get('service')) == ('bind', '127.0.0.1', '4555')
    assert desired.find('devices/serial/protocol').get('type') == 'raw'
    wide, _c, _o = plan(virt_install(), serials=[dict(port=0, type='tcp', tcp_port=4555, host='0.0.0.0', protocol='telnet')])
    assert wide.find('devices/serial/source').get('host') == '0.0.0.0'
    assert wide.find('devices/serial/protocol').get('type') == 'telnet'
    stored = parse(to_string(wide))
    # a task that does not name the protocol leaves telnet as it is; one that does not name the host asks for 127.0.0.1
    assert plan(stored, serials=[dict(port=0, type='tcp', tcp_port=4555, host='0.0.0.0')])[1] == []
    assert options_changed(plan(stored, serials=[dict(port=0, type='tcp', tcp_port=4555)])[1]) == ['serials']


def test_ports_added_in_order_removed_by_port_and_facts():
    desired, _c, _o = plan(virt_install(), serials=[dict(port=2, type='null'), dict(port=1, type='unix', path='/run/kvmops/vm01.sock')])
    ports = [int(s.find('target').get('port')) for s in desired.findall('devices/serial')]
    assert ports == [0, 1, 2]
    facts = domain_xml_facts(desired)['serials']
    assert facts[1] == dict(port=1, target_type=None, type='unix', path='/run/kvmops/vm01.sock', host=None, tcp_port=None,
                            mode='bind', protocol=None, log_file=None)
    stored = parse(to_string(desired))
    gone, changes, _o = plan(stored, serials=[dict(port=1, state='absent')])
    assert [int(s.find('target').get('port')) for s in gone.findall('devices/serial')] == [0, 2]
    assert options_changed(changes) == ['serials']
    assert plan(parse(to_string(gone)), serials=[dict(port=1, state='absent')])[1] == []


def test_log_file_kept_unless_given_and_removed_with_empty():
    desired, _c, _o = plan(virt_install(), serials=[dict(port=0, log_file='/var/log/kvmops/vm01.log')])
    assert desired.find('devices/serial/log').get('file') == '/var/log/kvmops/vm01.log'
    stored = parse(to_string(desired))
    assert plan(stored, serials=[dict(port=0)])[1] == []
    bare, changes, _o = plan(stored, serials=[dict(port=0, log_file='')])
    assert bare.find('devices/serial/log') is None and options_changed(changes) == ['serials']


def test_consoles_virtio_in_order_and_the_serial_entry():
    current = virt_install()
    desired, changes, _o = plan(current, consoles=[dict(target_type='serial'), dict(), dict(type='file', path='/var/log/kvmops/hvc1.log')])
    virtio = [c for c in desired.findall('devices/console') if c.find('target').get('type') == 'virtio']
    assert [c.find('target').get('port') for c in virtio] == ['0', '1'] and virtio[1].get('type') == 'file'
    assert options_changed(changes) == ['consoles']
    stored = parse(to_string(desired))
    assert plan(stored, consoles=[dict(target_type='serial'), dict(), dict(type='file', path='/var/log/kvmops/hvc1.log')])[1] == []
    fewer, changes, _o = plan(stored, consoles=[dict()])
    assert len([c for c in fewer.findall('devices/console') if c.find('target').get('type') == 'virtio']) == 1
    assert fewer.find('devices/serial') is not None, 'the serial console is not the list of virtio consoles'
    no_serial = virt_install(serial='')
    added, changes, _o = plan(no_serial, consoles=[dict(target_type='serial')])
    assert added.find("devices/serial[@type='pty']") is not None and options_changed(changes) == ['consoles']


def test_serial_console_precedence():
    # a new guest: serial_console's pty by default, none when serials gives the ports
    assert plan(None, memory='128MiB')[0].find('devices/serial') is not None
    new, _c, _o = plan(None, memory='128MiB', serials=[dict(port=0, type='null')])
    assert [s.get('type') for s in new.findall('devices/serial')] == ['null']
    bare, _c, _o = plan(None, memory='128MiB', serials=[dict(port=0, state='absent')])
    assert bare.find('devices/serial') is None
    # an adopted guest: untouched unless given
    current = virt_install()
    assert plan(current, autostart=True)[1] == [] and plan(current, serial_console=True)[1] == []
    with pytest.raises(KvmError, match='serial_console: false removes every serial port'):
        plan(current, serial_console=False, serials=[dict(port=0)])
    with pytest.raises(KvmError, match='serial_console: false removes every serial port'):
        plan(current, serial_console=False, consoles=[dict(target_type='serial')])
    with pytest.raises(KvmError, match='serial_console: true asks for a serial port'):
        plan(current, serial_console=True, serials=[dict(port=0, state='absent')])
    both, changes, _o = plan(current, serial_console=True, serials=[dict(port=0, type='null')])
    assert [s.get('type') for s in both.findall('devices/serial')] == ['null'] and options_changed(changes) == ['serials']


def test_live_plan_hot_plugs_usb_serial_and_virtio_consoles_only():
    current = virt_install()
    current.find('devices').append(etree.fromstring("<controller type='virtio-serial' index='0'/>"))
    spec = spec_of(serials=[dict(port=1, type='null', target_type='usb-serial')], consoles=[dict()])
    desired, _c, options = plan_config(spec, current, CTX)
    actions, pending = plan_live(spec, options, desired, current, CTX, before=current)
    assert sorted(a['option'] for a in actions) == ['consoles[0]', 'serials[1]'] and pending == []
    assert {a['xml'].tag for a in actions} == {'serial', 'console'}
    spec = spec_of(serials=[dict(port=1, type='null')])   # isa-serial: no hot-plug
    desired, _c, options = plan_config(spec, current, CTX)
    assert plan_live(spec, options, desired, current, CTX, before=current) == ([], ['serials'])
    spec = spec_of(serials=[dict(port=0, type='null')])   # libvirt updates no character device live
    desired, _c, options = plan_config(spec, current, CTX)
    assert plan_live(spec, options, desired, current, CTX, before=current) == ([], ['serials'])
    live = parse(to_string(current).replace("<serial type='pty'>", "<serial type='pty'><source path='/dev/pts/3'/>"))
    spec = spec_of(serials=[dict(port=0, type='pty')])
    desired, changes, options = plan_config(spec, live, CTX)
    assert changes == [] and plan_live(spec, options, desired, live, CTX, before=current) == ([], []), \
        'the pty path libvirt allocates is no difference'


@pytest.mark.parametrize('kw, message', [
    (dict(serials=[dict(type='file')]), r'serials\[0\].path: required with type file'),
    (dict(serials=[dict(type='file', path='relative.log')]), r'serials\[0\].path: must be an absolute path'),
    (dict(serials=[dict(type='file', path='/var/log/../../etc/shadow')]), r"serials\[0\].path: must not contain '..'"),
    (dict(serials=[dict(type='file', path='/var/log/a\nb')]), r'serials\[0\].path: must not contain control characters'),
    (dict(serials=[dict(type='file', path='/tmp/a\x00b')]), r'serials\[0\].path: must not contain control characters'),
    (dict(serials=[dict(type='file', path='/etc/passwd')]), r'serials\[0\].path: must not be / or under /etc'),
    (dict(serials=[dict(type='unix', path='/' + 'a' * 120)]), r'serials\[0\].path: is longer than 107'),
    (dict(serials=[dict(type='pty', path='/tmp/x')]), r'serials\[0\].path: is not for type pty'),
    (dict(serials=[dict(type='tcp')]), r'serials\[0\].tcp_port: required with type tcp'),
    (dict(serials=[dict(type='tcp', tcp_port=70000)]), r'serials\[0\].tcp_port'),
    (dict(serials=[dict(type='tcp', tcp_port=0)]), r'serials\[0\].tcp_port'),
    (dict(serials=[dict(type='tcp', tcp_port=4555, host='evil.example\n')]), r'serials\[0\].host'),
    (dict(serials=[dict(type='tcp', tcp_port=4555, host='example.com')]), r'serials\[0\].host: not an IP address'),
    (dict(serials=[dict(port=40)]), r'serials\[0\].port'),
    (dict(serials=[dict(port=0), dict(port=0)]), r'serials\[1\].port: serial port given twice'),
    (dict(serials=[dict(port=0, state='absent', type='null')]), r'serials\[0\].type: is for state present'),
    (dict(serials=[dict(log_file='/proc/self/mem')]), r'serials\[0\].log_file: must not be / or under'),
    (dict(consoles=[dict(), dict(target_type='serial')]), r'consoles\[1\].target_type: the serial console is the first'),
    (dict(consoles=[dict(target_type='serial', type='tcp')]), r"consoles\[0\].type: the serial console is the first serial port"),
])
def test_bad_input_is_refused_naming_the_field(kw, message):
    with pytest.raises(ValidationError, match=message):
        spec_of(**kw)


def test_tcp_connect_takes_a_host_name():
    spec = spec_of(serials=[dict(type='tcp', tcp_port=514, mode='connect', host='logs.example.com')])
    assert spec['options']['serials'][0]['host'] == 'logs.example.com'


def test_preflight_refuses_symlinks_and_what_qemu_would_replace(tmp_path):
    preflight = OPTIONS_BY_NAME['serials'].preflight
    regular = tmp_path / 'data.txt'
    regular.write_text('keep me')
    link = tmp_path / 'link.log'
    link.symlink_to(regular)
    with pytest.raises(KvmError, match='is a symbolic link'):
        preflight(spec_of(serials=[dict(type='file', path=str(link))])['options']['serials'], True)
    with pytest.raises(KvmError, match='exists and is no socket'):
        preflight(spec_of(serials=[dict(type='unix', path=str(regular))])['options']['serials'], True)
    with pytest.raises(KvmError, match='does not exist on this host'):
        preflight(spec_of(serials=[dict(type='file', path=str(tmp_path / 'no' / 'x.log'))])['options']['serials'], True)
    (tmp_path / 'real').mkdir()
    (tmp_path / 'via').symlink_to(tmp_path / 'real')
    with pytest.raises(KvmError, match='goes through a symlink'):
        preflight(spec_of(serials=[dict(type='file', path=str(tmp_path / 'via' / 'x.log'))])['options']['serials'], True)
    preflight(spec_of(serials=[dict(type='file', path=str(regular))])['options']['serials'], True)
    assert regular.read_text() == 'keep me'


@pytest.fixture
def char_client():
    client = LibvirtClient(guest_module(name='x'), uri='test:///default')
    log = []
    client._conn = CountingConn(client.conn, log)
    client.write_log = log
    yield client
    client.close()


def test_manager_check_real_noop_through_libvirt(char_client, tmp_path):
    name = 'kvmops-unit-serials'
    args = dict(name=name, memory='128MiB', virt_type='qemu', graphics=dict(type='none'),
                serials=filled('serials', [dict(port=0, type='tcp', tcp_port=4555), dict(port=1, type='file', path=str(tmp_path / 's1.log'))]),
                consoles=filled('consoles', [dict(target_type='serial'), dict()]))
    first = _converge(char_client, args, check=True)
    assert first['changed'] is True and char_client.write_log == []
    real = _converge(char_client, args)
    assert real['changed'] is True and char_client.write_log == ['defineXMLFlags']
    facts = real['domain']
    assert [(s['port'], s['type'], s['host']) for s in facts['serials']] == [(0, 'tcp', '127.0.0.1'), (1, 'file', None)]
    assert [c['target_type'] for c in facts['consoles']] == ['serial', 'virtio']
    again = _converge(char_client, args)
    assert again['changed'] is False and again['changes'] == [] and char_client.write_log == ['defineXMLFlags']
    one = _converge(char_client, dict(name=name, serials=filled('serials', [dict(port=1, state='absent')])), diff=True)
    assert [c['option'] for c in one['changes']] == ['serials'] and [s['port'] for s in one['domain']['serials']] == [0]
    assert [c['target_type'] for c in one['domain']['consoles']] == ['serial', 'virtio']
    _converge(char_client, dict(name=name, state='absent'))


@pytest.mark.parametrize('device', [
    "<serial type='file'><source path='/var/log/../../etc/shadow'/><target port='0'/></serial>",
    "<console type='unix'><source mode='bind' path='run/x.sock'/><target type='virtio'/></console>",
    "<serial type='pty'><log file='/var/log/a&#10;b'/><target port='0'/></serial>",
])
def test_character_device_paths_in_xml_follow_the_path_rules(device):
    xml = "<domain><name>vm01</name><memory unit='MiB'>64</memory><devices>%s</devices></domain>" % device
    with pytest.raises(ValidationError, match=r'^xml \(devices/(serial|console)/'):
        validate(params(name='vm01', xml=xml))
