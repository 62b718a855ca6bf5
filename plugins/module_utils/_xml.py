# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lxml helpers shared by every module: parsing, semantic comparison, diff.

Semantic comparison means: attribute order and insignificant whitespace are
never differences, and when comparing what the user asked for against what
libvirt reports, only what the user specified counts (libvirt's own defaults,
generated addresses, aliases and the like are ignored).
"""

from __future__ import annotations

import copy

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError

try:
    from lxml import etree
except ImportError:  # pragma: no cover - reported by kvm_module()
    etree = None

# Elements libvirt adds by itself and that a user never describes.
LIBVIRT_GENERATED = frozenset(['address', 'alias'])

# Secrets in libvirt XML: console passwords (<graphics passwd=...> for VNC, SPICE, RDP), and the values of
# elements that carry one (network disk <cookie>s, any <secret>/<passwd>-like element with text). libvirt
# shows them only with VIR_*_XML_SECURE; a module that reads them must hide them (register_secrets, mask).
SECRET_MASK = '********'
SECRET_ATTRIBUTES = frozenset(['passwd', 'password', 'passphrase'])
SECRET_ELEMENTS = frozenset(['cookie', 'secret', 'passwd', 'password', 'passphrase'])


def _parser():
    """The one XML parser: no entity expansion, no DTD loading, no network, no huge trees."""
    return etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False)


def parse(text, what='XML'):
    """Parse XML text into an element; malformed or entity-bearing input is a clear KvmError.

    libvirt's XML never needs a document type declaration, so any DOCTYPE (the carrier of internal and
    external entities) is refused, as is any entity reference left in the tree.
    """
    if isinstance(text, bytes):
        data = text
    else:
        data = (text or '').encode('utf-8')
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise KvmError('malformed %s: %s' % (what, exc))
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None or tree.docinfo.externalDTD is not None:
        raise KvmError('%s: a DOCTYPE or entity declaration is not accepted in libvirt XML' % what)
    if any(node.tag is etree.Entity for node in root.iter()):
        raise KvmError('%s: entity references are not accepted in libvirt XML' % what)
    return root


def is_secret(node, attribute=None):
    """True when ``node``'s ``attribute`` (or, without one, its text) holds a secret."""
    if attribute is not None:
        return attribute in SECRET_ATTRIBUTES
    return isinstance(node.tag, str) and node.tag in SECRET_ELEMENTS


def find_secrets(elem):
    """Every secret value in the tree ``elem`` (a list without duplicates; empty for None)."""
    found = []
    if elem is None:
        return found
    for node in elem.iter():
        if not isinstance(node.tag, str):
            continue
        values = [value for key, value in node.attrib.items() if is_secret(node, key)]
        if is_secret(node) and node.text and node.text.strip():
            values.append(node.text)
        for value in values:
            if value and value not in found:
                found.append(value)
    return found


def register_secrets(module, elem=None, values=()):
    """Register the secrets of ``elem`` (and ``values``) with ``module.no_log_values``.

    Ansible then masks them in every output of the module: results, diffs, warnings and failure
    messages, at any verbosity. Returns the values registered.
    """
    secrets = find_secrets(elem) + [v for v in values if v]
    no_log = getattr(module, 'no_log_values', None)
    if no_log is not None:
        no_log.update(secrets)
    return secrets


def mask_secrets(elem, mask=SECRET_MASK):
    """A copy of ``elem`` with every secret replaced by ``mask`` (for diffs and messages); None stays None."""
    if elem is None:
        return None
    masked = copy_element(elem)
    for node in masked.iter():
        if not isinstance(node.tag, str):
            continue
        for key in list(node.attrib.keys()):
            if is_secret(node, key):
                node.set(key, mask)
        if is_secret(node) and node.text and node.text.strip():
            node.text = mask
    return masked


def to_string(elem):
    """Pretty, stable text of an element (for diffs and for libvirt)."""
    if elem is None:
        return ''
    elem = _normalized(elem)
    return etree.tostring(elem, pretty_print=True, encoding='unicode')


def copy_element(elem):
    """A deep copy of ``elem`` as a new root (no re-parse, so nothing can be resolved on the way)."""
    return copy.deepcopy(elem)


def _text(value):
    return (value or '').strip()


def _normalized(elem):
    """A copy with whitespace-only text removed and attributes sorted."""
    dup = copy_element(elem)
    for node in dup.iter():
        if not isinstance(node.tag, str):
            continue
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
        items = sorted(node.attrib.items())
        node.attrib.clear()
        for key, value in items:
            node.set(key, value)
    return dup


def canonical(elem, ignore=()):
    """A hashable, order-insensitive-on-attributes form of an element tree."""
    if elem is None:
        return None
    children = tuple(canonical(child, ignore) for child in elem
                     if isinstance(child.tag, str) and child.tag not in ignore)
    return (elem.tag, tuple(sorted(elem.attrib.items())), _text(elem.text), children)


def xml_equal(left, right, ignore=()):
    """True when two trees mean the same (attribute order/whitespace aside)."""
    if isinstance(left, (str, bytes)):
        left = parse(left)
    if isinstance(right, (str, bytes)):
        right = parse(right)
    return canonical(left, ignore) == canonical(right, ignore)


def subset_differences(wanted, actual, path=None, ignore=LIBVIRT_GENERATED):
    """What ``wanted`` specifies that ``actual`` does not match.

    Attributes and text present in ``wanted`` must be equal in ``actual``;
    anything only ``actual`` has (libvirt defaults) is not a difference.
    Children are paired by tag, in order among siblings of the same tag.
    Returns a list of human-readable ``path: detail`` strings; a secret (:func:`is_secret`)
    that differs is shown as ``SECRET_MASK`` on both sides.
    """
    path = path or wanted.tag
    diffs = []
    if actual is None:
        return ['%s: missing' % path]
    for key, value in wanted.attrib.items():
        have = actual.get(key)
        if have != value:
            if is_secret(wanted, key):
                have, value = _masked(have), _masked(value)
            diffs.append('%s/@%s: %r -> %r' % (path, key, have, value))
    if _text(wanted.text) and _text(wanted.text) != _text(actual.text):
        have, value = _text(actual.text), _text(wanted.text)
        if is_secret(wanted):
            have, value = _masked(have), _masked(value)
        diffs.append('%s: %r -> %r' % (path, have, value))
    seen = {}
    for child in wanted:
        if not isinstance(child.tag, str) or child.tag in ignore:
            continue
        index = seen.get(child.tag, 0)
        seen[child.tag] = index + 1
        candidates = [c for c in actual if c.tag == child.tag]
        match = candidates[index] if index < len(candidates) else None
        child_path = '%s/%s' % (path, child.tag) if index == 0 else '%s/%s[%d]' % (path, child.tag, index + 1)
        diffs.extend(subset_differences(child, match, child_path, ignore))
    return diffs


def _masked(value):
    return SECRET_MASK if value else value


def find_text(elem, xpath, default=None):
    """Text of the first match of ``xpath`` (or of an attribute xpath)."""
    if elem is None:
        return default
    found = elem.xpath(xpath)
    if not found:
        return default
    value = found[0]
    if isinstance(value, str):
        return str(value)
    return value.text if value.text is not None else default


def make_diff(before, after, before_header=None, after_header=None):
    """The one diff shape every module returns in diff mode.

    ``before``/``after`` may be elements, XML text, dicts or None. Secrets in XML are masked.
    """
    def render(value):
        if value is None:
            return ''
        if etree is not None and isinstance(value, etree._Element):  # pylint: disable=protected-access
            return to_string(mask_secrets(value))
        if isinstance(value, (bytes, str)) and _looks_like_xml(value):
            return to_string(mask_secrets(parse(value)))
        return value

    diff = dict(before=render(before), after=render(after))
    if before_header:
        diff['before_header'] = before_header
    if after_header:
        diff['after_header'] = after_header
    return diff


def _looks_like_xml(value):
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    return value.lstrip().startswith('<')
