# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A partial domain XML laid over a definition by meaning (kvm_domain ``xml_mode: merge``).

:func:`merge` returns a copy of the current definition with the fragment applied, and a log of what
that changed. Pure functions on parsed trees (the fragment went through :func:`._xml.parse`, which
refuses DTDs, entities and huge trees); no libvirt call.

Rules, element by element from the root down:

* An element of the fragment is **matched** with an element of the same tag under the matching parent:
  devices by their identity (a disk by ``<target dev>``, a NIC by ``<mac address>`` - else its
  ``<alias>``, else the first NIC of the same type and source -, a hostdev by its source address,
  a controller by type and index, a filesystem by ``<target dir>``, a serial or parallel port by
  port, a console by target type and port, a channel by target name, graphics by type...), a device
  with a user ``<alias name>`` by that alias, ``<os><boot>`` by ``dev``, ``<cpu><feature>`` by
  ``name``, ``<clock><timer>`` by ``name``, pinning by vCPU, NUMA nodes by id; every other element
  (the singletons: ``<memory>``, ``<vcpu>``, ``<os>``, ``<features>``, ``<cpu>``, ``<tpm>``,
  ``<rng>``, ``<watchdog>``...) by its position among the siblings of the same tag - the first
  ``<rng>`` of the fragment is the first ``<rng>`` of the guest.
* A matched element gets the fragment's attributes (a value equal by meaning - ``0x1`` and ``0x01``,
  a MAC in capitals - is left as libvirt wrote it) and its text when the fragment has text; its
  children are merged by the same rules. Nothing the fragment does not mention is removed.
* An unmatched element is added, after the last sibling of its tag.
* ``kvmops:remove="true"`` (namespace :data:`NS`) on an element removes every element it names: by its
  identity, else (elements matched by position or attributes) every element of its tag that has the
  attributes it gives - ``<rng kvmops:remove="true"/>`` removes all RNGs - so a second run finds nothing more
  to remove. An element cannot be both removed and given in one fragment.
* ``kvmops:replace="true"`` puts the fragment's element in the place of the matched one instead of merging
  into it (keeping the ``<mac>``, ``<address>`` and ``<alias>`` libvirt generated, unless it gives its own),
  when it differs from it by what it specifies - what libvirt adds back is no difference, as in
  ``xml_mode: replace``. Neither attribute reaches libvirt.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import (
    LIBVIRT_GENERATED,
    SECRET_MASK,
    etree,
    is_secret,
    subset_differences,
)

NS = 'urn:kvmops:xml-merge'
REMOVE = '{%s}remove' % NS
REPLACE = '{%s}replace' % NS
MARKERS = (REMOVE, REPLACE)
TRUE = ('true', 'yes', '1')
FALSE = ('false', 'no', '0')
# A domain definition has tens of elements, a large one a few hundred; a fragment far beyond is refused.
MAX_ELEMENTS = 10000
HEXISH = re.compile(r'[0-9a-fA-Fx:.-]+')
NUMBER = re.compile(r'(0[xX][0-9a-fA-F]+|[0-9]+)')
# Children a kvmops:replace keeps from the element it replaces when the XML has none (libvirt made them).
KEEP_ON_REPLACE = ('mac', 'address', 'alias')


# ---------------------------------------------------------------- values
def _number(value):
    if not NUMBER.fullmatch(value):
        return None
    return int(value, 16) if value[:2].lower() == '0x' else int(value, 10)


def same_value(have, want):
    """True when two attribute or text values mean the same (numbers in any base, hex digits in any case)."""
    if have == want:
        return True
    if have is None or want is None:
        return False
    have, want = have.strip(), want.strip()
    if have == want:
        return True
    left, right = _number(have), _number(want)
    if left is not None and right is not None:
        return left == right
    return bool(HEXISH.fullmatch(have) and HEXISH.fullmatch(want) and have.lower() == want.lower())


def _text(node):
    return (node.text or '').strip()


def _quantity(elem):
    """The field holding a size that ``unit`` qualifies: the text (``<memory>``), else ``size`` or ``memory``."""
    for field in (None, 'size', 'memory'):
        value = _text(elem) if field is None else (elem.get(field) or '').strip()
        if value and value.isdigit():
            return field, value
    return None, None


def _same_size(frag, target):
    """The field of a sized element that holds the same number of bytes in both, in whatever units (or None)."""
    field, want = _quantity(frag)
    if want is None:
        return None
    have = _text(target) if field is None else (target.get(field) or '').strip()
    from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_bytes
    try:
        same = have.isdigit() and to_bytes(want, frag.get('unit') or 'KiB') == to_bytes(have, target.get('unit') or 'KiB')
    except KvmError:
        return None
    return (field or '#text') if same else None


def _norm(value):
    """A value as an identity compares it."""
    if value is None:
        return None
    value = value.strip()
    number = _number(value)
    if number is not None:
        return number
    return value.lower() if HEXISH.fullmatch(value) else value


def _attr(elem, path, name, default=None):
    node = elem.find(path) if path else elem
    if node is None:
        return default
    value = node.get(name)
    return _norm(value) if value is not None else default


# ---------------------------------------------------------------- identities
def _hostdev_key(elem):
    source = elem.find('source')
    if source is None:
        return None
    kind = elem.get('type')
    if kind == 'usb' and source.find('vendor') is not None:
        return ('usb', _attr(source, 'vendor', 'id'), _attr(source, 'product', 'id'))
    if kind == 'mdev':
        return ('mdev', _attr(source, 'address', 'uuid'))
    address = source.find('address')
    adapter = source.find('adapter')
    if address is None and adapter is None:
        return None
    parts = [kind]
    for node in (adapter, address):
        if node is not None:
            parts.append(tuple(sorted((k, _norm(v)) for k, v in node.attrib.items())))
    return tuple(parts)


def _nic_key(elem):
    mac = _attr(elem, 'mac', 'address')
    return (mac,) if mac is not None else None


def _one(path, name, default=None):
    def key(elem):
        value = _attr(elem, path, name, default)
        return None if value is None else (value,)
    return key


# (parent tag, tag) -> identity of the element: a tuple, or None when the element does not carry one.
KEYS = {
    ('devices', 'disk'): _one('target', 'dev'),
    ('devices', 'interface'): _nic_key,
    ('devices', 'hostdev'): _hostdev_key,
    ('devices', 'controller'): lambda e: (e.get('type'), _norm(e.get('index'))) if e.get('index') is not None else None,
    ('devices', 'filesystem'): _one('target', 'dir'),
    ('devices', 'serial'): _one('target', 'port', 0),
    ('devices', 'parallel'): _one('target', 'port', 0),
    ('devices', 'console'): lambda e: (_attr(e, 'target', 'type', 'serial'), _attr(e, 'target', 'port', 0)),
    ('devices', 'channel'): _one('target', 'name'),
    ('devices', 'graphics'): _one(None, 'type'),
    ('devices', 'sound'): _one(None, 'model'),
    ('devices', 'shmem'): _one(None, 'name'),
    ('devices', 'panic'): _one(None, 'model'),
    ('devices', 'input'): lambda e: None,      # by the attributes the fragment gives (type, bus)
    ('devices', 'redirdev'): lambda e: None,
    ('devices', 'hub'): lambda e: None,
    ('devices', 'smartcard'): lambda e: None,
    ('os', 'boot'): _one(None, 'dev'),
    ('cpu', 'feature'): _one(None, 'name'),
    ('numa', 'cell'): _one(None, 'id'),
    ('clock', 'timer'): _one(None, 'name'),
    ('cputune', 'vcpupin'): _one(None, 'vcpu'),
    ('cputune', 'iothreadpin'): _one(None, 'iothread'),
    ('cputune', 'vcpusched'): _one(None, 'vcpus'),
    ('cputune', 'iothreadsched'): _one(None, 'iothreads'),
    ('cputune', 'cachetune'): _one(None, 'vcpus'),
    ('cputune', 'memorytune'): _one(None, 'vcpus'),
    ('numatune', 'memnode'): _one(None, 'cellid'),
    ('hugepages', 'page'): _one(None, 'nodeset', ''),
    ('iothreadids', 'iothread'): _one(None, 'id'),
    ('vcpus', 'vcpu'): _one(None, 'id'),
    ('blkiotune', 'device'): lambda e: (e.findtext('path'),) if e.findtext('path') else None,
    ('domain', 'seclabel'): _one(None, 'model', ''),
}
# Elements that cannot be matched without their identity: the fragment is refused (libvirt needs it too).
REQUIRED = {
    ('devices', 'disk'): '<target dev=...>',
    ('devices', 'filesystem'): '<target dir=...>',
    ('devices', 'hostdev'): 'a <source> address (PCI address, USB vendor and product or bus and device, mdev UUID)',
}


def _name(elem):
    """The tag as a path shows it (``qemu:commandline`` for a namespaced element)."""
    qname = etree.QName(elem)
    if qname.namespace and elem.prefix:
        return '%s:%s' % (elem.prefix, qname.localname)
    return qname.localname if not qname.namespace else elem.tag


def _label(key):
    out = []
    for part in key:
        if isinstance(part, tuple):
            out.extend('%s=%s' % item for item in part)
        elif part is not None:
            out.append(str(part))
    return ','.join(out)


def _is_true(elem, marker):
    value = elem.get(marker)
    return value is not None and value.strip().lower() in TRUE


class _Matcher(object):
    """Pairs the fragment's children with the current children of one element, each used once.

    Elements with an identity (alias, key) are paired first, so that an element matched by its attributes
    or position never takes the one a later sibling names.
    """

    def __init__(self, parent_tag, children):
        self.parent_tag = parent_tag
        self.by_tag = {}
        for child in children:
            if isinstance(child.tag, str):
                self.by_tag.setdefault(child.tag, []).append(child)
        self.keyed = {}   # (tag, rule) -> {identity: [elements]}
        self.used = set()
        self.free = dict((tag, dict((id(c), c) for c in elems)) for tag, elems in self.by_tag.items())

    def _rule(self, elem):
        qname = etree.QName(elem)
        return None if qname.namespace else (self.parent_tag, qname.localname)

    def _take(self, found):
        if found is not None:
            self.used.add(id(found))
            self.free[found.tag].pop(id(found), None)
        return found

    def _free(self, tag):
        """The current elements of ``tag`` not paired yet, in document order (a copy: pairing changes it)."""
        return list(self.free.get(tag, {}).values())

    def _index(self, tag, rule, ident):
        """The current elements of ``tag`` by identity (``ident`` computes it), built once."""
        if (tag, rule) not in self.keyed:
            index = {}
            for child in self.by_tag.get(tag, ()):
                index.setdefault(ident(child), []).append(child)
            self.keyed[(tag, rule)] = index
        return self.keyed[(tag, rule)]

    def kind(self, frag, path):
        """How ``frag`` is matched: ``(kind, identity, label)``; kind is alias, key, nic, attributes or position."""
        name = _name(frag)
        rule = self._rule(frag)
        alias = frag.find('alias')
        if self.parent_tag == 'devices' and alias is not None and alias.get('name'):
            return 'alias', alias.get('name'), '%s[alias=%s]' % (name, alias.get('name'))
        if rule in KEYS:
            key = KEYS[rule](frag)
            if key is not None:
                return 'key', key, '%s[%s]' % (name, _label(key))
            if rule in REQUIRED:
                raise KvmError('xml: %s/%s needs %s to be matched with the guest\'s (xml_mode merge)'
                               % (path, name, REQUIRED[rule]))
            if rule == ('devices', 'interface'):
                source = frag.find('source')
                wanted = tuple(sorted(source.attrib.items())) if source is not None else ()
                return 'nic', wanted, '%s[%s]' % (name, ','.join([frag.get('type') or ''] + [v for _k, v in wanted]))
            wanted = tuple(sorted((k, v) for k, v in frag.attrib.items() if k not in MARKERS))
            return 'attributes', wanted, '%s[%s]' % (name, ','.join('%s=%s' % (_attr_name(frag, k), v) for k, v in wanted))
        return 'position', None, name

    def _matches(self, frag, kind, ident, candidates):
        """The current elements among ``candidates`` that ``frag`` names (lazily, in order)."""
        if kind == 'alias':
            return (c for c in candidates if c.find('alias') is not None and c.find('alias').get('name') == ident)
        if kind == 'key':
            rule = self._rule(frag)
            return (c for c in candidates if KEYS[rule](c) == ident)
        if kind == 'nic':
            return (c for c in candidates if c.get('type') == frag.get('type') and c.find('source') is not None
                    and all(same_value(c.find('source').get(k), v) for k, v in ident))
        wanted = ident if kind == 'attributes' else [(k, v) for k, v in frag.attrib.items() if k not in MARKERS]
        return (c for c in candidates if all(same_value(c.get(k), v) for k, v in wanted))

    def pair(self, frags, path):
        """``[(fragment child, current element or None, path)]`` in the fragment's order.

        A child marked kvmops:remove gets the list of every current element it names (those its siblings did
        not take): by identity, else by the attributes it gives - so removing is the same on a second run.
        """
        frags = [f for f in frags if isinstance(f.tag, str)]   # comments and processing instructions carry nothing
        kinds = [self.kind(f, path) for f in frags]
        found = [None] * len(frags)
        removing = [_is_true(f, REMOVE) for f in frags]
        for index, (frag, (kind, ident, _label)) in enumerate(zip(frags, kinds)):
            if kind == 'alias' and not removing[index]:
                found[index] = self._take(next(self._matches(frag, kind, ident, self._free(frag.tag)), None))
            elif kind == 'key' and not removing[index]:
                rule = self._rule(frag)
                candidates = self._index(frag.tag, rule, KEYS[rule]).get(ident, ())
                found[index] = self._take(next((c for c in candidates if id(c) not in self.used), None))
        positions = {}
        labels = []
        for index, (frag, (kind, ident, label)) in enumerate(zip(frags, kinds)):
            if kind == 'position':
                position = positions.get(frag.tag, 0)
                positions[frag.tag] = position + 1
                same = self.by_tag.get(frag.tag, [])
                if not removing[index] and position < len(same) and id(same[position]) not in self.used:
                    found[index] = self._take(same[position])
                label = label if position == 0 else '%s[%d]' % (label, position + 1)
            elif kind in ('nic', 'attributes') and not removing[index]:
                found[index] = self._take(next(self._matches(frag, kind, ident, self.free.get(frag.tag, {}).values()), None))
            labels.append('%s/%s' % (path, label))
        _check_removals(frags, kinds, labels)
        for index, (frag, (kind, ident, _label)) in enumerate(zip(frags, kinds)):
            if removing[index]:
                found[index] = [self._take(c) for c in list(self._matches(frag, kind, ident, self._free(frag.tag)))]
        return list(zip(frags, found, labels))


def _check_removals(frags, kinds, labels):
    """An element removed and given again (same identity, or the same tag matched by position) is ambiguous:
    the second run would remove what the first one added."""
    groups = {}
    for frag, (kind, _ident, _label), label in zip(frags, kinds, labels):
        group = ('position', frag.tag) if kind == 'position' else label
        groups.setdefault(group, []).append((_is_true(frag, REMOVE), label))
    for members in groups.values():
        if len(set(removed for removed, _label in members)) > 1:
            raise KvmError('xml: %s is both removed (kvmops:remove) and given; a second run would remove what the '
                           'first added (elements matched by position: remove them all, or use kvmops:replace)'
                           % members[0][1])


# ---------------------------------------------------------------- markers
def check_markers(root):
    """Refuse what the merge cannot honour: unknown kvmops: attributes, bad values, a removed root, a huge tree."""
    count = 0
    for node in root.iter():
        count += 1
        if count > MAX_ELEMENTS:
            raise KvmError('xml: more than %d elements; a domain definition has far fewer' % MAX_ELEMENTS)
        if not isinstance(node.tag, str):
            continue
        for key, value in node.attrib.items():
            if not key.startswith('{%s}' % NS):
                continue
            if key not in MARKERS:
                raise KvmError('xml: unknown attribute kvmops:%s (kvmops:remove and kvmops:replace are known)'
                               % etree.QName(key).localname)
            if value.strip().lower() not in TRUE + FALSE:
                raise KvmError('xml: kvmops:%s must be true or false, not %r' % (etree.QName(key).localname, value[:40]))
        if node is root and any(_is_true(node, m) for m in MARKERS):
            raise KvmError('xml: kvmops:remove and kvmops:replace do not apply to <domain> (state: absent removes a guest)')
        if _is_true(node, REMOVE) and _is_true(node, REPLACE):
            raise KvmError('xml: <%s> cannot carry both kvmops:remove and kvmops:replace' % _name(node))


def has_markers(root):
    return any(key in MARKERS for node in root.iter() if isinstance(node.tag, str) for key in node.attrib)


def without_markers(root):
    """A copy of ``root`` without the elements marked removed and without any marker attribute."""
    root = copy.deepcopy(root)
    for node in list(root.iter()):
        if not isinstance(node.tag, str):
            continue
        if _is_true(node, REMOVE) and node.getparent() is not None:
            node.getparent().remove(node)
            continue
        for marker in MARKERS:
            node.attrib.pop(marker, None)
    etree.cleanup_namespaces(root)   # the markers' namespace declaration goes with them
    return root


# ---------------------------------------------------------------- merge
def _show(node, key, value):
    if value is None:
        return None
    return SECRET_MASK if is_secret(node, key) else value


def _merge_into(target, frag, path, log):
    # a size in other units (<memory unit='GiB'>1</memory> and libvirt's 1048576 KiB) is no change
    same_size = _same_size(frag, target) if frag.get('unit') is not None else None
    for key, value in frag.attrib.items():
        if key in MARKERS or (same_size and key in ('unit', same_size)):
            continue
        have = target.get(key)
        if not same_value(have, value):
            target.set(key, value)
            log.append(('update', '%s/@%s' % (path, _attr_name(frag, key)), _show(frag, key, have), _show(frag, key, value)))
    if _text(frag) and same_size != '#text' and not same_value(_text(target), _text(frag)):
        before = _text(target) or None
        target.text = frag.text
        log.append(('update', path, _show(frag, None, before), _show(frag, None, _text(frag))))
    for child, found, label in _Matcher(etree.QName(target).localname, list(target)).pair(list(frag), path):
        if _is_true(child, REMOVE):
            for elem in found:
                target.remove(elem)
                log.append(('remove', label, None, None))
            continue
        if found is None:
            new = without_markers(child)
            same = [c for c in target if c.tag == child.tag]
            if same:
                same[-1].addnext(new)
            else:
                target.append(new)
            log.append(('add', label, None, None))
        elif _is_true(child, REPLACE):
            new = without_markers(child)
            for tag in KEEP_ON_REPLACE:   # what libvirt generated stays unless the XML gives its own
                if new.find(tag) is None and found.find(tag) is not None and (tag != 'mac' or found.tag == 'interface'):
                    new.append(copy.deepcopy(found.find(tag)))
            # compared as xml_mode replace compares a definition: what libvirt adds back is no difference
            if subset_differences(new, found, ignore=LIBVIRT_GENERATED):
                new.tail = found.tail
                target.replace(found, new)
                log.append(('replace', label, None, None))
        else:
            _merge_into(found, child, label, log)


def _attr_name(node, key):
    qname = etree.QName(key)
    if not qname.namespace:
        return key
    prefix = next((p for p, uri in node.nsmap.items() if uri == qname.namespace and p), None)
    return '%s:%s' % (prefix, qname.localname) if prefix else key


def merge(current, fragment):
    """``(merged, log)``: a copy of ``current`` with ``fragment`` laid over it (rules in the module docstring).

    ``log`` is a list of ``(action, path, before, after)`` - action ``add``, ``remove``, ``replace``
    or ``update`` (an attribute or a text), paths like ``domain/devices/disk[vda]`` - empty when the
    fragment changes nothing. Secret values show as ``********``. A fragment that cannot be matched
    is a KvmError starting with ``xml:``.
    """
    check_markers(fragment)
    if etree.QName(fragment).localname != etree.QName(current).localname:
        raise KvmError('xml: the root element must be <%s>, not <%s>' % (_name(current), _name(fragment)))
    merged = copy.deepcopy(current)
    log = []
    _merge_into(merged, fragment, _name(current), log)
    return merged, log


def describe(log):
    """The log of :func:`merge` as the lines a change entry shows."""
    lines = []
    for action, path, before, after in log:
        if action == 'update':
            lines.append('%s: %r -> %r' % (path, before, after))
        else:
            lines.append('%s: %s' % (path, {'add': 'added', 'remove': 'removed', 'replace': 'replaced'}[action]))
    return lines


# ---------------------------------------------------------------- what a replacement drops
def removed_paths(current, replacement, ignore=LIBVIRT_GENERATED):
    """The elements of ``current`` that ``replacement`` has no counterpart for (matched as :func:`merge` does).

    libvirt generated elements (``<address>``, ``<alias>``) are left out; an element that is gone is named,
    not its children.
    """
    out = []
    _removed(current, replacement, _name(current), out, ignore)
    return out


def _removed(have, want, path, out, ignore):
    try:
        pairs = _Matcher(etree.QName(want).localname, list(have)).pair(list(want), path)
        named = _Matcher(etree.QName(have).localname, list(want)).pair(list(have), path)
    except KvmError:   # not matchable (a replacement may be anything): named by tag, compared by tag
        pairs, named = [], [(c, None, '%s/%s' % (path, _name(c))) for c in have if isinstance(c.tag, str)]
    kept = dict((id(found), child) for child, found, _label in pairs if found is not None)
    for child, _found, label in named:
        if etree.QName(child).localname in ignore:
            continue
        if id(child) in kept:
            _removed(child, kept[id(child)], label, out, ignore)
        else:
            out.append(label)
