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
  - Host variables (prefix O(prefix)) - C(uri), C(hypervisor), C(name), C(uuid), C(state), C(active),
    C(persistent), C(autostart), C(vcpus), C(max_vcpus), C(memory_mib), C(max_memory_mib),
    C(networks), C(interfaces), C(addresses), C(address_source), C(address_errors), and with
    O(include_facts) the whole C(domain) entry of M(kvmops.kvm.kvm_info).
  - Groups - C(<prefix>guests) (all), C(<prefix>state_<state>), C(<prefix>hypervisor_<hostname>) and
    C(<prefix>network_<network>); names are made safe (C(kvmlab-host2) becomes C(kvmlab_host2)).
  - Uses a YAML configuration file whose name ends with C(libvirt.yml) or C(libvirt.yaml).
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
    type: list
    elements: str
    default: [qemu:///system]
  address_sources:
    description:
      - Where to look for a running guest's addresses, in this order; the first usable address found wins.
      - V(lease) - the DHCP leases of the libvirt network the interface is on (no guest software needed).
      - V(agent) - the QEMU guest agent inside the guest (needs the agent channel and a running agent;
        skipped on a O(read_only) connection, which libvirt refuses for agent queries).
      - V(arp) - the hypervisor's ARP/neighbour table (the guest must have sent traffic to the host).
      - A source that cannot answer is recorded in the C(address_errors) host variable, never a failure.
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

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    from ansible_collections.kvmops.kvm.plugins.module_utils._inventory import gather
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover
    gather = None
    IMPORT_ERROR = exc


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'kvmops.kvm.libvirt'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('libvirt.yml', 'libvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if gather is None:
            raise AnsibleParserError('kvmops.kvm.libvirt cannot load its libvirt layer: %s' % IMPORT_ERROR)

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
            data = self._gather()
        if update_cache:
            self._cache[cache_key] = data
        self._populate(data)

    # -------------------------------------------------------------- gather
    def _gather(self):
        uris = self.get_option('uris')
        if not uris:
            raise AnsibleParserError('kvmops.kvm.libvirt: uris must name at least one hypervisor')
        data = gather(
            uris,
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
        return self.inventory.add_group(to_safe_group_name(name, force=True, silent=True))

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
        for error in data.get('errors', []):
            self.display.warning('kvmops.kvm.libvirt: skipping %s: %s' % (error['uri'], error['msg']))
        prefix = self.get_option('prefix')
        strict = self.get_option('strict')
        include_facts = self.get_option('include_facts')
        all_group = self._group(prefix + 'guests')
        for host, guest in sorted(self._host_names(data).items()):
            self.inventory.add_host(host, group=all_group)
            hostvars = dict((prefix + key, value) for key, value in guest.items() if key not in ('facts', 'address'))
            if include_facts:
                hostvars[prefix + 'domain'] = guest['facts']
            if guest['address']:
                hostvars['ansible_host'] = guest['address']
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            self.inventory.add_child(self._group('%sstate_%s' % (prefix, guest['state'])), host)
            self.inventory.add_child(self._group('%shypervisor_%s' % (prefix, guest['hypervisor'])), host)
            for network in guest['networks']:
                self.inventory.add_child(self._group('%snetwork_%s' % (prefix, network)), host)
            self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)
