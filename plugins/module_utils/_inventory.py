# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guests of one or more hypervisors as inventory records (kvmops.kvm.libvirt).

Private module (leading underscore): free to change between releases.

:func:`gather` connects to each URI through the shared :class:`LibvirtClient`,
describes every guest with the shared :func:`domain_facts` and every network
with :func:`network_facts`, and reads the guest's addresses with the one shared
reader, ``_addresses.read`` (which kvm_info and kvm_domain use too), from the
sources the user chose, in the user's order. The result is plain data (lists
and dicts of strings and numbers), so the inventory plugin can cache it.

Everything in the result was read from a hypervisor and is untrusted: the
plugin marks it unsafe (never templated) before it reaches Ansible. The URIs
are checked by the plugin (``_validate.uri``) before :func:`gather` runs.
"""

from __future__ import annotations

import fnmatch
import threading
import time

from ansible_collections.kvmops.kvm.plugins.module_utils._addresses import SOURCES, flatten, macs_of, pick_address, read
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import domain_facts, network_facts

ADDRESS_SOURCES = SOURCES


def _matches(name, patterns):
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _gone(find, obj):
    """True when the object no longer exists under its name."""
    try:
        name = obj.name()
    except libvirt.libvirtError:
        return True
    try:
        return find(name) is None
    except KvmError:
        return False


def _networks_by_bridge(client, conn):
    networks = {}
    for net in client.call('list networks', conn.listAllNetworks, 0):
        try:
            facts = network_facts(client, net)
        except KvmError:
            if _gone(client.find_network, net):
                continue  # removed while we listed it
            raise
        if facts.get('bridge'):
            networks[facts['bridge']] = facts['name']
    return networks


def _metadata(dom, kind):
    """The guest's title or description (``None`` when it has none)."""
    try:
        return dom.metadata(kind, None, 0)
    except libvirt.libvirtError:
        return None  # libvirt raises "metadata not found" when the element is absent


def guest_record(client, dom, bridges, sources, family, hypervisor):
    """One guest: the shared domain facts plus where it runs and its addresses.

    Every string in it comes from the hypervisor (names, title, description, metadata, agent, lease
    and ARP data): untrusted, the inventory plugin marks the whole record unsafe before Ansible sees it.
    """
    facts = domain_facts(client, dom, details=False)
    by_source, unavailable = read(client, dom, sources, macs_of(facts)) if facts['active'] else ({}, {})
    facts.update(addresses=flatten(by_source, sources), address_errors=unavailable)
    interfaces = []
    networks = []
    for iface in facts['interfaces']:
        network = None
        if iface['type'] == 'network':
            network = iface['source']
        elif iface['type'] == 'bridge':
            network = bridges.get(iface['source'])
        if network and network not in networks:
            networks.append(network)
        mac = (iface['mac'] or '').lower()
        interfaces.append(dict(
            iface,
            network=network,
            addresses=sorted(set(a['address'] for found in by_source.values() for a in found
                                 if a['mac'] and a['mac'] == mac)),
        ))
    address, address_source = pick_address(by_source, sources, family)
    return dict(
        name=facts['name'],
        uuid=facts['uuid'],
        title=_metadata(dom, libvirt.VIR_DOMAIN_METADATA_TITLE),
        description=_metadata(dom, libvirt.VIR_DOMAIN_METADATA_DESCRIPTION),
        uri=client.uri,
        hypervisor=hypervisor,
        state=facts['state'],
        active=facts['active'],
        persistent=facts['persistent'],
        autostart=facts['autostart'],
        vcpus=facts['vcpus']['current'],
        max_vcpus=facts['vcpus']['maximum'],
        memory_mib=(facts['memory']['current_kib'] or 0) // 1024,
        max_memory_mib=(facts['memory']['max_kib'] or 0) // 1024,
        networks=networks,
        interfaces=interfaces,
        addresses=facts['addresses'],
        address=address,
        address_source=address_source,
        address_errors=unavailable,
        facts=facts,
    )


def gather_uri(uri, names=(), sources=ADDRESS_SOURCES, family='ipv4', read_only=False,
               include_inactive=True):
    """Every matching guest on one hypervisor (raises KvmError when unreachable)."""
    if libvirt is None:
        raise KvmError('the libvirt inventory needs libvirt-python on the controller')
    if read_only and 'agent' in sources:
        # libvirt refuses guest-agent queries on a read-only connection.
        sources = [s for s in sources if s != 'agent']
    client = LibvirtClient(None, uri=uri, read_only=read_only)
    try:
        conn = client.conn
        with client.errors('host'):
            hypervisor = conn.getHostname()
        bridges = _networks_by_bridge(client, conn)
        guests = []
        for dom in client.call('list domains', conn.listAllDomains, 0):
            try:
                name = dom.name()
                active = bool(dom.isActive())
            except libvirt.libvirtError:
                continue  # removed while we listed it
            if not _matches(name, names) or (not include_inactive and not active):
                continue
            try:
                guests.append(guest_record(client, dom, bridges, sources, family, hypervisor))
            except KvmError:
                if _gone(client.find_domain, dom):
                    continue  # went away while we listed it (migrated, transient guest stopped)
                raise
        return dict(uri=uri, hypervisor=hypervisor, guests=sorted(guests, key=lambda g: g['name']))
    finally:
        client.close()


def gather(uris, timeout=None, **kwargs):
    """Records of every URI, asked concurrently; an unreachable or silent URI is reported in ``errors``.

    Each URI is read in its own daemon thread (its own connection), so one black-holed hypervisor costs
    at most ``timeout`` seconds (connection and reads together) and never stalls the others; a thread
    still waiting after that is abandoned (daemon threads do not keep the process alive). Results keep
    the order of ``uris``.
    """
    results = [None] * len(uris)

    def read(index, uri):
        try:
            results[index] = ('ok', gather_uri(uri, **kwargs))
        except KvmError as exc:
            results[index] = ('error', exc.msg)
        except Exception as exc:  # pylint: disable=broad-except
            results[index] = ('error', 'unexpected error (%s): %s' % (type(exc).__name__, exc))

    threads = [threading.Thread(target=read, args=(index, uri), name='kvmops-inventory-%d' % index, daemon=True)
               for index, uri in enumerate(uris)]
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    hosts = []
    errors = []
    for uri, outcome in zip(uris, results):
        if outcome is None:
            errors.append(dict(uri=uri, msg='no answer from libvirt at %s within %g seconds (timeout)' % (uri, timeout)))
        elif outcome[0] == 'ok':
            hosts.append(outcome[1])
        else:
            errors.append(dict(uri=uri, msg=outcome[1]))
    return dict(hypervisors=hosts, errors=errors)
