import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import (
    SECRET_MASK,
    find_secrets,
    find_text,
    make_diff,
    mask_secrets,
    parse,
    register_secrets,
    subset_differences,
    to_string,
    xml_equal,
)


@pytest.mark.parametrize('left, right, equal', [
    ('<a x="1" y="2"/>', '<a y="2" x="1"/>', True),
    ('<a>\n  <b/>\n</a>', '<a><b/></a>', True),
    ('<a><b>text </b></a>', '<a><b> text</b></a>', True),
    ('<a x="1"/>', '<a x="2"/>', False),
    ('<a><b/><c/></a>', '<a><c/><b/></a>', False),  # element order is meaningful
    ('<a/>', '<a><b/></a>', False),
])
def test_xml_equal(left, right, equal):
    assert xml_equal(left, right) is equal


def test_subset_ignores_what_libvirt_adds():
    wanted = parse("<interface type='network'><source network='default'/><model type='virtio'/></interface>")
    actual = parse("""
      <interface type='network'>
        <mac address='52:54:00:12:34:56'/>
        <source network='default' portid='abc' bridge='virbr0'/>
        <target dev='vnet3'/>
        <model type='virtio'/>
        <alias name='net0'/>
        <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </interface>""")
    assert subset_differences(wanted, actual) == []


def test_subset_reports_what_differs():
    wanted = parse("<disk><driver cache='writeback'/><target dev='vdb'/><readonly/></disk>")
    actual = parse("<disk><driver name='qemu' cache='none'/><target dev='vdb' bus='virtio'/></disk>")
    assert subset_differences(wanted, actual) == [
        "disk/driver/@cache: 'none' -> 'writeback'",
        'disk/readonly: missing',
    ]


def test_subset_pairs_repeated_children_in_order():
    wanted = parse("<r><ip address='10.0.0.1'/><ip address='fd00::1'/></r>")
    actual = parse("<r><ip address='10.0.0.1'/></r>")
    assert subset_differences(wanted, actual) == ['r/ip[2]: missing']


def test_malformed_xml_is_a_clear_error():
    with pytest.raises(KvmError) as err:
        parse('<domain><name>x</domain>', 'domain XML')
    assert err.value.msg.startswith('malformed domain XML')


@pytest.mark.parametrize('doc', [
    '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>',
    '<!DOCTYPE d SYSTEM "http://127.0.0.1:1/x.dtd"><d/>',
    '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><d>&b;</d>',
])
def test_external_entities_and_doctypes_are_refused(doc):
    with pytest.raises(KvmError, match='DOCTYPE') as err:
        parse(doc, 'domain XML')
    assert 'root:' not in err.value.msg


SECRET_XML = """
<domain>
  <devices>
    <graphics type='vnc' passwd='vnc-pw' listen='127.0.0.1'/>
    <graphics type='spice' passwd='spice-pw'/>
    <disk type='network'><source protocol='https' name='x'><cookies><cookie name='s'>cookie-val</cookie></cookies>
      <auth username='u'><secret type='iscsi' usage='t'/></auth></source></disk>
  </devices>
</domain>"""


def test_secrets_are_found_masked_and_registered():
    root = parse(SECRET_XML)
    assert find_secrets(root) == ['vnc-pw', 'spice-pw', 'cookie-val']
    masked = to_string(mask_secrets(root))
    assert not any(s in masked for s in ('vnc-pw', 'spice-pw', 'cookie-val'))
    assert masked.count(SECRET_MASK) == 3 and "usage=\"t\"" in masked
    assert 'vnc-pw' in to_string(root), 'the original is untouched'

    class Module(object):
        no_log_values = set()
    assert register_secrets(Module, root, values=['typed']) == ['vnc-pw', 'spice-pw', 'cookie-val', 'typed']
    assert Module.no_log_values == {'vnc-pw', 'spice-pw', 'cookie-val', 'typed'}
    assert register_secrets(object(), root)   # a module without no_log_values: nothing to do
    assert mask_secrets(None) is None and find_secrets(None) == []


def test_secret_differences_and_diffs_are_masked():
    wanted = parse("<d><graphics type='vnc' passwd='new-pw'/><cookie>c2</cookie></d>")
    actual = parse("<d><graphics type='vnc' passwd='old-pw'/><cookie>c1</cookie></d>")
    diffs = subset_differences(wanted, actual)
    assert diffs == ["d/graphics/@passwd: '********' -> '********'", "d/cookie: '********' -> '********'"]
    diff = make_diff(actual, wanted)
    assert 'old-pw' not in str(diff) and 'new-pw' not in str(diff) and SECRET_MASK in diff['after']
    assert 'c1' not in make_diff(to_string(actual), None)['before']


def test_find_text():
    root = parse("<n><name>x</name><bridge name='br1'/></n>")
    assert find_text(root, 'name') == 'x'
    assert find_text(root, 'bridge/@name') == 'br1'
    assert find_text(root, 'mtu/@size', 'none') == 'none'


def test_diff_shape_is_uniform():
    diff = make_diff("<a y='2' x='1'/>", None, before_header='old', after_header='new')
    assert set(diff) == {'before', 'after', 'before_header', 'after_header'}
    assert diff['before'] == '<a x="1" y="2"/>\n'
    assert diff['after'] == ''
    assert make_diff({'k': 1}, {'k': 2}) == {'before': {'k': 1}, 'after': {'k': 2}}


def test_to_string_is_stable():
    assert to_string(parse("<a b='1'  a='2'>\n <c/>\n</a>")) == '<a a="2" b="1">\n  <c/>\n</a>\n'
