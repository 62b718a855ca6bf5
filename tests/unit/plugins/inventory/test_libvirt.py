"""kvmops.kvm.libvirt inventory plugin: values from hypervisors are unsafe, bad options are refused.

In-process, against libvirt's test driver (a node file with hostile guests), no daemon.
"""

import os

import pytest
import yaml

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.doc_fragments import constructed, inventory_cache
from ansible.plugins.loader import inventory_loader
from ansible.template import Templar
from ansible_collections.kvmops.kvm.plugins.inventory import libvirt as plugin
from ansible_collections.kvmops.kvm.plugins.inventory.libvirt import InventoryModule, unsafe  # noqa: F401
from templating import DATA_TAGGING, is_unsafe, template_text

LOOKUP = "{{ lookup('pipe', 'touch $KVMOPS_MARKER') }}"

NODE = """<node>
  <domain type='test'>
    <name>%(lookup)s</name>
    <title>%(lookup)s</title>
    <description>{%% set x = 1 %%}</description>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>plain</name>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
""" % dict(lookup=LOOKUP.replace("'", '&apos;'))


def _declare_options():
    """Declare the plugin's options as ansible-core's loader does, from DOCUMENTATION and its fragments.

    The loader resolves the ``ansible.builtin.*`` fragments through the collection finder, which these
    tests do not install (the collection is imported from sys.path), so the two fragments are merged here.
    """
    if C.config.has_configuration_definition('inventory', 'kvmops.kvm.libvirt'):
        return
    options = yaml.safe_load(plugin.DOCUMENTATION)['options']
    for fragment in (constructed.ModuleDocFragment, inventory_cache.ModuleDocFragment):
        for name, spec in yaml.safe_load(fragment.DOCUMENTATION)['options'].items():
            options.setdefault(name, spec)
    C.config.initialize_plugin_configuration_definitions('inventory', 'kvmops.kvm.libvirt', options)


def new_plugin():
    """The plugin as ansible-core's loader sets it up."""
    _declare_options()
    module = InventoryModule()
    # Keywords: ansible-core 2.19 made these arguments keyword-only.
    inventory_loader._update_object(obj=module, name='kvmops.kvm.libvirt', path=plugin.__file__, resolved='kvmops.kvm.libvirt')
    return module


def parse(tmp_path, config, cache=False):
    """Run the plugin on a configuration file (YAML text): (inventory, plugin)."""
    path = tmp_path / 'kvm.libvirt.yml'
    path.write_text('plugin: kvmops.kvm.libvirt\n' + config)
    inventory = InventoryData()
    module = new_plugin()
    assert module.verify_file(str(path))
    module.parse(inventory, DataLoader(), str(path), cache=cache)
    return inventory, module


@pytest.fixture
def hostile_uri(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    return 'test://' + str(node)


def strings(value):
    """Every string in a nested value, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


# ------------------------------------------------------------------ unsafe
def test_unsafe_marks_every_templatable_string_and_copies_containers():
    data = {'a': [LOOKUP, 'plain', ('{% x %}',)], LOOKUP: {'n': 1, 'b': b'{{ x }}', 's': {'}'}}, 'none': None}
    out = unsafe(data)
    assert out is not data
    for text in strings(out):
        if '{' in text or '}' in text:
            assert is_unsafe(text), text
        else:  # left as it is: not marked (from ansible-core 2.19 on, no string is trusted as a template anyway)
            assert DATA_TAGGING or not is_unsafe(text), text
    assert out['a'][0] == LOOKUP and is_unsafe(out['a'][0])
    assert out['a'][1] is data['a'][1]
    assert is_unsafe(out[LOOKUP]['b'])
    assert out['none'] is None and out[LOOKUP]['n'] == 1
    assert unsafe(out['a'][0]) is out['a'][0]


def test_the_templar_leaves_unsafe_values_alone():
    templar = Templar(loader=DataLoader(), variables={'v': unsafe(LOOKUP)})
    assert templar.template(template_text('{{ v }}')) == LOOKUP


# ---------------------------------------------------------------- populate
def test_hostile_guests_reach_the_inventory_unsafe(tmp_path, hostile_uri):
    inventory, dummy = parse(tmp_path, 'uris: [%r]\ninclude_facts: true\n' % hostile_uri)
    assert set(inventory.hosts) == {LOOKUP, 'plain'}
    host = inventory.get_host(LOOKUP)
    assert is_unsafe(host.name)
    hostvars = host.get_vars()
    assert is_unsafe(hostvars['libvirt_name'])
    assert is_unsafe(hostvars['libvirt_title'])
    assert is_unsafe(hostvars['libvirt_description'])
    assert is_unsafe(hostvars['libvirt_domain']['name'])
    # Every templatable string anywhere in the host's variables is unsafe.
    for text in strings(hostvars):
        if '{' in text or '}' in text:
            assert is_unsafe(text), text
    members = dict((h.name, h.name) for h in inventory.groups['libvirt_guests'].get_hosts())
    assert is_unsafe(members[LOOKUP]) and members['plain'] == 'plain'
    # A host name built from two values (name@hypervisor) is marked again.
    inventory, dummy = parse(tmp_path, 'uris: [%r]\nhostname: name_hypervisor\n' % hostile_uri)
    names = [h for h in inventory.hosts if '{' in h]
    assert names == [LOOKUP + '@vm']
    assert is_unsafe(inventory.get_host(names[0]).name)


def test_populate_marks_cached_data_and_group_names(tmp_path):
    inventory = InventoryData()
    module = new_plugin()
    path = tmp_path / 'kvm.libvirt.yml'
    path.write_text('plugin: kvmops.kvm.libvirt\nuris: [test:///default]\n')
    module.parse(inventory, DataLoader(), str(path), cache=False)
    guest = dict(name=LOOKUP, uuid='u1', uri='test:///default', hypervisor='{{ hv }}', state='running',
                 active=True, networks=['{% net %}'], interfaces=[{'mac': '{{ mac }}'}],
                 address='{{ addr }}', address_errors={'agent': '{{ err }}'}, facts={})
    module._populate(dict(hypervisors=[dict(uri='test:///default', hypervisor='{{ hv }}', guests=[guest])],
                          errors=[]))
    host = inventory.get_host(LOOKUP)
    assert is_unsafe(host.name)
    hostvars = host.get_vars()
    assert is_unsafe(hostvars['ansible_host'])
    assert is_unsafe(hostvars['libvirt_hypervisor'])
    assert is_unsafe(hostvars['libvirt_networks'][0])
    assert is_unsafe(hostvars['libvirt_interfaces'][0]['mac'])
    assert is_unsafe(hostvars['libvirt_address_errors']['agent'])
    # Group names made from hostile values keep only letters, digits and '_': nothing left to template.
    made = [name for name in inventory.groups if name.startswith(('libvirt_hypervisor_', 'libvirt_network_'))]
    assert {'libvirt_hypervisor____hv___', 'libvirt_network____net___'} <= set(made)
    assert not [name for name in inventory.groups if '{' in name or '}' in name or '%' in name]


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize('config,expect', [
    ('uris: [""]', 'uris[0]: must be a libvirt URI'),
    ('uris: [null]', 'uris[0]: must be a libvirt URI'),
    ('uris: [5]', 'uris[0]: must be a libvirt URI'),
    ('uris: [[qemu:///system]]', 'uris[0]: must be a libvirt URI'),
    ('uris: ["test:///default", "qemu+ext:///system?command=/bin/true"]', 'uris[1]: the ext transport'),
    ('uris: ["test+ext:///default?command=/bin/true"]', 'uris[0]: the ext transport'),
    ('uris: ["qemu+ssh://root@hv/system?netcat=/tmp/nc"]', 'uris[0]: the ext transport'),
    ('uris: ["qemu+ssh://root@hv/system?Command=x"]', 'uris[0]: the ext transport'),
    ('uris: ["qemu:///system\\nx"]', 'uris[0]: must not contain whitespace or control characters'),
    ('uris: [" qemu:///system"]', 'uris[0]: must not contain whitespace'),
    ('uris: ["lxc:///"]', "uris[0]: driver 'lxc' is not supported"),
    ('uris: ["qemu+foo:///system"]', "uris[0]: transport 'foo' is not supported"),
    ('uris: ["/etc/passwd"]', 'uris[0]: must be a libvirt URI'),
    ('uris: []', 'uris must be a list naming at least one hypervisor'),
    ('uris: [test:///default]\nnames: [null]', 'names[0]: must be a string'),
])
def test_bad_options_are_refused_naming_the_option(tmp_path, config, expect):
    with pytest.raises(AnsibleParserError) as err:
        parse(tmp_path, config + '\n')
    assert expect in str(err.value)


def test_ext_uris_need_the_opt_in(tmp_path, monkeypatch):
    uri = 'test+ext:///default?command=/bin/true'
    seen = []
    monkeypatch.setattr(plugin, 'gather', lambda uris, **kwargs: seen.append(uris) or dict(hypervisors=[], errors=[]))
    parse(tmp_path, 'uris: [%r]\nuri_allow_ext: true\n' % uri)
    assert seen == [[uri]]


def test_refusal_comes_before_the_cache_and_any_connection(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin, 'gather', lambda *args, **kwargs: pytest.fail('connected'))
    with pytest.raises(AnsibleParserError):
        parse(tmp_path, 'uris: ["qemu+ext:///system?command=/bin/true"]\ncache: true\n'
                        'cache_plugin: memory\n', cache=True)


@pytest.mark.parametrize('error', [RuntimeError('boom'), KeyError('name'), RecursionError('deep')])
def test_unexpected_errors_become_parser_errors(tmp_path, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error
    monkeypatch.setattr(plugin, 'gather', broken)
    with pytest.raises(AnsibleParserError) as err:
        parse(tmp_path, 'uris: [test:///default]\n')
    assert 'kvmops.kvm.libvirt: cannot build the inventory' in str(err.value)


def test_a_stale_cache_that_is_not_a_dictionary_is_an_ansible_error(tmp_path, monkeypatch):
    config = 'uris: [test:///default]\ncache: true\ncache_plugin: jsonfile\ncache_connection: %s\n' % (tmp_path / 'c')
    inventory, module = parse(tmp_path, config, cache=True)
    assert 'test' in inventory.hosts
    module._cache[module.get_cache_key(str(tmp_path / 'kvm.libvirt.yml'))] = ['not', 'a', 'dict']
    module.set_cache_plugin()  # written to the jsonfile cache, as a stale or tampered cache file would be
    with pytest.raises(AnsibleError) as err:
        module.parse(InventoryData(), DataLoader(), str(tmp_path / 'kvm.libvirt.yml'), cache=True)
    assert 'flush the cache' in str(err.value)


def test_hostile_node_file_is_in_the_test_driver(hostile_uri):
    assert os.path.exists(hostile_uri[len('test://'):])
