# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: libvirt
short_description: Guests of one or more libvirt hypervisors as inventory hosts
version_added: 0.1.0
author:
  - kvmops.kvm contributors (@kvmops)
description:
  - Every guest (libvirt domain) of every hypervisor in O(uris) becomes an inventory host.
  - C(ansible_host) is the first usable address found in the order of O(address_sources)
    (DHCP lease of a libvirt network, QEMU guest agent, host ARP table). A guest with no address
    (shut off, no network, no lease yet) gets no C(ansible_host).
  - Host variables (prefix O(prefix)) - C(uri), C(hypervisor), C(name), C(uuid), C(title), C(description),
    C(state), C(active),
    C(persistent), C(autostart), C(vcpus), C(max_vcpus), C(memory_mib), C(max_memory_mib),
    C(networks), C(interfaces), C(addresses), C(address_source), C(address_errors), and with
    O(include_facts) the whole C(domain) entry of M(kvmops.kvm.kvm_info).
  - Groups - C(<prefix>guests) (all), C(<prefix>state_<state>), C(<prefix>hypervisor_<hostname>) and
    C(<prefix>network_<network>); names are made safe (C(kvmlab-host2) becomes C(kvmlab_host2)).
  - Uses a YAML configuration file whose name ends with C(libvirt.yml) or C(libvirt.yaml).
  - Everything read from a hypervisor (guest names, titles, descriptions, metadata, guest agent, DHCP lease
    and ARP data, the hypervisor's host name) is untrusted - anyone who can define a guest controls it. The
    plugin marks every such value that Ansible could template (every string holding C({) or C(})) unsafe,
    the inventory host names and the group names made from them included, so Ansible never templates it -
    a guest named C({{ lookup('pipe', 'id') }}) is shown as that text and runs nothing.
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
requirements:
  - libvirt-python (on the controller)
  - lxml (on the controller)
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    required: true
    type: str
    choices: [kvmops.kvm.libvirt]
  uris:
    description:
      - libvirt connection URIs of the hypervisors, for example V(qemu:///system) and V(qemu+ssh://root@hv02/system).
      - A hypervisor that cannot be reached is reported as a warning and skipped, unless O(strict_connections) is set.
      - Only the V(qemu) and V(test) drivers over the local socket, V(unix), V(ssh), V(libssh), V(libssh2),
        V(tls) or V(tcp) are accepted; any other URI fails the inventory before anything connects.
    type: list
    elements: str
    default: [qemu:///system]
  uri_allow_ext:
    description:
      - Accept URIs in O(uris) that make libvirt run a program on the controller, the V(ext) transport
        (V(qemu+ext:///system?command=/path)) and the C(command=) and C(netcat=) parameters.
      - Off by default; turn it on only when whoever writes this file may run programs on the controller.
        See SECURITY.md.
    type: bool
    default: false
    version_added: 1.0.0
  address_sources:
    description:
      - Where to look for a running guest's addresses, in this order; the first usable address found wins.
      - V(lease) - the DHCP leases of the libvirt network the interface is on (no guest software needed).
      - V(agent) - the QEMU guest agent inside the guest (needs the agent channel and a running agent;
        skipped on a O(read_only) connection, which libvirt refuses for agent queries).
      - V(arp) - the hypervisor's ARP/neighbour table (the guest must have sent traffic to the host).
      - A source that cannot answer is recorded in the C(address_errors) host variable, never a failure.
      - M(kvmops.kvm.kvm_info) (C(addresses) of each guest) and M(kvmops.kvm.kvm_domain)
        (O(kvmops.kvm.kvm_domain#module:wait_for)) read the same sources with the same code. A reported value that is not an IP address is dropped, MACs and
        prefixes are checked, interface names are cut to 64 characters, and a source gives at most 256 entries.
    type: list
    elements: str
    choices: [lease, agent, arp]
    default: [lease, agent, arp]
  address_family:
    description: Which addresses may become C(ansible_host). Loopback and IPv6 link-local addresses never do.
    type: str
    choices: [ipv4, ipv6, any]
    default: ipv4
  names:
    description: Only guests whose name matches one of these shell patterns (V(web*)). Empty - every guest.
    type: list
    elements: str
    default: []
  include_inactive:
    description: Also list guests that are defined but not running (they have no address).
    type: bool
    default: true
  hostname:
    description:
      - The inventory host name of a guest.
      - V(name) - the guest name. When a name exists on more than one hypervisor (a migrated guest
        still defined on its source) the running guest wins, else the first URI in O(uris).
      - V(uuid) - the guest UUID.
      - V(name_hypervisor) - C(<name>@<hypervisor hostname>), unique across hypervisors.
    type: str
    choices: [name, uuid, name_hypervisor]
    default: name
  prefix:
    description: Prefix of the host variables and of the generated groups.
    type: str
    default: libvirt_
  include_facts:
    description: Add the whole M(kvmops.kvm.kvm_info) domain entry as the C(<prefix>domain) host variable.
    type: bool
    default: false
  read_only:
    description: Open read-only connections (enough for leases and ARP; the guest agent is skipped).
    type: bool
    default: false
  strict_connections:
    description: Fail the inventory when a hypervisor cannot be reached, instead of warning and skipping it.
    type: bool
    default: false
  timeout:
    description:
      - Seconds one hypervisor may take to connect and answer every query of the inventory.
      - The hypervisors in O(uris) are asked concurrently, each on its own connection, so the inventory
        takes about as long as the slowest one, and a hypervisor that does not answer in time (down,
        or behind a firewall that drops packets) is skipped with a warning (an error with
        O(strict_connections)) instead of stalling the inventory.
    type: float
    default: 30
    version_added: 1.0.0
  agent_connection:
    description:
      - Reach the guests through their QEMU guest agent - every guest gets the host variables
        C(ansible_connection=kvmops.kvm.qemu_agent), C(ansible_libvirt_uri) (the URI of its hypervisor) and
        C(ansible_libvirt_guest) (its libvirt name), which the P(kvmops.kvm.qemu_agent#connection)
        connection plugin reads; C(ansible_host) keeps the guest's address.
      - Guests need the agent channel and a running agent; see the connection plugin.
      - Variables set by O(compose) win over these.
    type: bool
    default: false
    version_added: 1.0.0
'''

EXAMPLES = r'''
# inventory/kvm.libvirt.yml
plugin: kvmops.kvm.libvirt
uris:
  - qemu:///system
  - qemu+ssh://root@hv02.example.com/system
address_sources: [agent, lease, arp]
keyed_groups:
  - key: libvirt_vcpus | string
    prefix: vcpus
groups:
  big: libvirt_memory_mib >= 4096
compose:
  ansible_user: "'cloud'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/kvmops-inventory
cache_timeout: 300

# ansible-inventory -i inventory/kvm.libvirt.yml --graph
'''

import re
from collections.abc import Mapping

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import AnsibleUnsafe, wrap_var

try:
    from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
    from ansible_collections.kvmops.kvm.plugins.module_utils._inventory import gather
    from ansible_collections.kvmops.kvm.plugins.module_utils._validate import uri as valid_uri
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover
    gather = valid_uri = None
    KvmError = Exception
    IMPORT_ERROR = exc

_TEMPLATE_CHARS = re.compile(u'[{}]')
_TEMPLATE_BYTES = re.compile(b'[{}]')


def unsafe(value):
    """``value`` with every string in it (dictionary keys too) that Ansible could template marked unsafe.

    The model is community.general's ``make_unsafe``: containers are copied, a string holding ``{`` or
    ``}`` (every Jinja delimiter has one) is wrapped with ``wrap_var``, ansible-core's own marking
    (2.16 to 2.18; from 2.19, data tagging templates only strings trusted as templates, and ``wrap_var``
    leaves the value untrusted); Ansible never templates a string without them, so the rest stay plain
    and ``ansible-inventory --list`` (what AWX imports) shows them as they are.
    """
    if isinstance(value, AnsibleUnsafe):
        return value
    if isinstance(value, Mapping):
        return dict((unsafe(key), unsafe(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [unsafe(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return set(unsafe(item) for item in value)
    if isinstance(value, str):
        return wrap_var(value) if _TEMPLATE_CHARS.search(value) else value
    if isinstance(value, bytes):
        return wrap_var(value) if _TEMPLATE_BYTES.search(value) else value
    return value


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'kvmops.kvm.libvirt'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('libvirt.yml', 'libvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if gather is None:
            raise AnsibleParserError('kvmops.kvm.libvirt cannot load its libvirt layer: %s' % IMPORT_ERROR)
        try:
            self._load(path, cache, self._checked_options())
        except AnsibleError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever a hypervisor or a stale cache sends, the inventory fails with a message, not a traceback.
            raise AnsibleParserError('kvmops.kvm.libvirt: cannot build the inventory from %s: %s: %s'
                                     % (path, type(exc).__name__, exc)) from None

    # -------------------------------------------------------------- options
    def _checked_options(self):
        """The validated URIs; bad options fail here, before the cache is read or anything connects."""
        uris = self.get_option('uris')
        if not isinstance(uris, list) or not uris:
            raise AnsibleParserError('kvmops.kvm.libvirt: uris must be a list naming at least one hypervisor')
        allow_ext = self.get_option('uri_allow_ext')
        for index, value in enumerate(uris):
            try:
                valid_uri('uris[%d]' % index, value, allow_ext=bool(allow_ext))
            except KvmError as exc:
                raise AnsibleParserError('kvmops.kvm.libvirt: %s' % exc) from None
        for index, pattern in enumerate(self.get_option('names') or []):
            if not isinstance(pattern, str):
                raise AnsibleParserError('kvmops.kvm.libvirt: names[%d]: must be a string (a shell pattern), not %s'
                                         % (index, type(pattern).__name__))
        timeout = self.get_option('timeout')
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
            raise AnsibleParserError('kvmops.kvm.libvirt: timeout must be a number of seconds above 0 and at most 3600')
        return uris

    def _load(self, path, cache, uris):
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache')
        data = None
        update_cache = use_cache and not cache
        if use_cache and cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if data is None:
            data = self._gather(uris)
        if update_cache:
            self._cache[cache_key] = data
        if not isinstance(data, Mapping):
            raise AnsibleParserError('kvmops.kvm.libvirt: the cached inventory is not a dictionary; '
                                     'flush the cache (--flush-cache)')
        self._populate(data)

    # -------------------------------------------------------------- gather
    def _gather(self, uris):
        data = gather(
            uris,
            timeout=self.get_option('timeout'),
            names=self.get_option('names'),
            sources=self.get_option('address_sources'),
            family=self.get_option('address_family'),
            read_only=self.get_option('read_only'),
            include_inactive=self.get_option('include_inactive'),
        )
        if data['errors'] and self.get_option('strict_connections'):
            raise AnsibleParserError('kvmops.kvm.libvirt: ' + '; '.join(e['msg'] for e in data['errors']))
        return data

    # ------------------------------------------------------------ populate
    def _group(self, name):
        return self.inventory.add_group(unsafe(to_safe_group_name(name, force=True, silent=True)))

    def _host_names(self, data):
        """Inventory name of each (uri, uuid); with ``name`` the running copy wins."""
        mode = self.get_option('hostname')
        chosen = {}
        for hv in data['hypervisors']:
            for guest in hv['guests']:
                if mode == 'uuid':
                    name = guest['uuid']
                elif mode == 'name_hypervisor':
                    name = '%s@%s' % (guest['name'], guest['hypervisor'])
                else:
                    name = guest['name']
                if name in chosen and (chosen[name]['active'] or not guest['active']):
                    continue
                chosen[name] = guest
        return chosen

    def _populate(self, data):
        # Everything below comes from hypervisors (or a cache of it): unsafe before Ansible sees any of it.
        data = unsafe(data)
        for error in data.get('errors', []):
            self.display.warning('kvmops.kvm.libvirt: skipping %s: %s' % (error['uri'], error['msg']))
        prefix = self.get_option('prefix')
        strict = self.get_option('strict')
        include_facts = self.get_option('include_facts')
        agent_connection = self.get_option('agent_connection')
        all_group = self._group(prefix + 'guests')
        for host, guest in sorted(self._host_names(data).items()):
            host = unsafe(host)  # built with '%s@%s' for name_hypervisor, which drops the marking
            self.inventory.add_host(host, group=all_group)
            hostvars = dict((prefix + str(key), value) for key, value in guest.items() if key not in ('facts', 'address'))
            if include_facts:
                hostvars[prefix + 'domain'] = guest['facts']
            if guest['address']:
                hostvars['ansible_host'] = guest['address']
            if agent_connection:
                hostvars.update(ansible_connection='kvmops.kvm.qemu_agent', ansible_libvirt_uri=guest['uri'],
                                ansible_libvirt_guest=guest['name'])
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            self.inventory.add_child(self._group('%sstate_%s' % (prefix, guest['state'])), host)
            self.inventory.add_child(self._group('%shypervisor_%s' % (prefix, guest['hypervisor'])), host)
            for network in guest['networks']:
                self.inventory.add_child(self._group('%snetwork_%s' % (prefix, network)), host)
            self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)
