# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_info: read-only facts about a hypervisor and its objects."""

from __future__ import annotations

import fnmatch
import re
import socket

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._addresses import SOURCES, domain_addresses
from ansible_collections.kvmops.kvm.plugins.module_utils._client import is_local_uri, libvirt, run
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import (
    domain_facts,
    network_facts,
    pool_facts,
    version_string,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._hostvirt import hardware_report, virtualization_report
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import find_text, parse

GATHER_DEFAULT = ['host', 'domains', 'networks', 'pools']
GATHER_CHOICES = GATHER_DEFAULT + ['hardware']

ARGUMENT_SPEC = dict(
    gather=dict(type='list', elements='str', choices=GATHER_CHOICES, default=GATHER_DEFAULT),
    name=dict(type='list', elements='str', default=[]),
    address_sources=dict(type='list', elements='str', choices=list(SOURCES), default=list(SOURCES)),
)


_GLOB = re.compile(r'[*?\[\]!]')


def name_patterns(patterns):
    """``name``: each entry an object name, where the shell-style wildcards ``* ? [ ] !`` may stand for characters."""
    for index, pattern in enumerate(patterns):
        option = 'name[%d]' % index
        try:
            valid.object_name(option, _GLOB.sub('x', pattern) if isinstance(pattern, str) else pattern)
        except valid.ValidationError:
            valid.refuse(option, 'invalid name or pattern (%s; the wildcards * ? [ ] ! may be used)'
                         % valid.OBJECT_NAME_RULE, pattern)
    return patterns


def _matches(name, patterns):
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def domain_entry(client, dom, sources):
    """A guest's facts with its addresses (``addresses``, ``address_errors``) from the shared reader."""
    facts = domain_facts(client, dom)
    facts.update(domain_addresses(client, dom, facts, sources))
    return facts


def host_facts(client):
    conn = client.conn
    with client.errors('host'):
        model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        caps = parse(conn.getCapabilities(), 'capabilities')
        try:
            hyp_version = version_string(conn.getVersion())
        except libvirt.libvirtError:
            hyp_version = None
        facts = dict(
            uri=conn.getURI(),
            hostname=conn.getHostname(),
            hypervisor=conn.getType(),
            hypervisor_version=hyp_version,
            libvirt_version=version_string(conn.getLibVersion()),
            host_uuid=find_text(caps, 'host/uuid'),
            arch=find_text(caps, 'host/cpu/arch'),
            cpu_model=find_text(caps, 'host/cpu/model'),
            node=dict(cpu_model=model, memory_mib=memory_mib, cpus=cpus, mhz=mhz,
                      numa_nodes=nodes, sockets=sockets, cores=cores, threads=threads),
            free_memory_bytes=conn.getFreeMemory(),
            guest_types=sorted(set(
                '%s/%s' % (find_text(g, 'arch/@name'), d.get('type'))
                for g in caps.findall('guest') for d in g.findall('arch/domain'))),
        )
        facts['virtualization'] = virtualization_report(conn, local=is_local_uri(client.uri))
    return facts


def needs_libvirt(params):
    """Only ``gather: [hardware]`` works without libvirt (before it is installed)."""
    return bool(set(params['gather']) - set(['hardware']))


def gather(client, params):
    # read-only, but what it is given is checked like everywhere else (kvm_module skips the URI for
    # gather: [hardware], which never connects)
    valid.uri('uri', client.uri, allow_ext=bool(params.get('uri_allow_ext')))
    wanted = set(params['gather'])
    names = name_patterns(params['name'])
    result = dict(changed=False, uri=client.uri, gathered_on=socket.gethostname())
    found_any = False
    if 'hardware' in wanted:
        if not is_local_uri(client.uri):   # the probes read this machine: never report it as the hypervisor
            raise valid.ValidationError(
                'gather: hardware probes the host that runs the module (%s), not the hypervisor of %s; run it on the '
                'hypervisor itself (hosts: hypervisors, uri qemu:///system), or gather host for libvirt\'s own view '
                '(host.virtualization)' % (socket.gethostname(), client.uri))
        result['hardware'] = hardware_report()
    if not needs_libvirt(params):
        return result
    conn = client.conn
    if 'host' in wanted:
        result['host'] = host_facts(client)
    if 'domains' in wanted:
        doms = client.call('list domains', conn.listAllDomains, 0)
        asked = params.get('address_sources', SOURCES)
        sources = [s for index, s in enumerate(asked) if s not in asked[:index]]
        result['domains'] = sorted((domain_entry(client, d, sources) for d in doms if _matches(d.name(), names)),
                                   key=lambda d: d['name'])
        found_any = found_any or bool(result['domains'])
    if 'networks' in wanted:
        nets = client.call('list networks', conn.listAllNetworks, 0)
        result['networks'] = sorted((network_facts(client, n) for n in nets if _matches(n.name(), names)),
                                    key=lambda n: n['name'])
        found_any = found_any or bool(result['networks'])
    if 'pools' in wanted:
        pools = client.call('list pools', conn.listAllStoragePools, 0)
        result['pools'] = sorted((pool_facts(client, p) for p in pools if _matches(p.name(), names)),
                                 key=lambda p: p['name'])
        found_any = found_any or bool(result['pools'])
    kinds = wanted - set(['host', 'hardware'])
    if names and not found_any and kinds:
        result['msg'] = 'nothing named %s among %s on %s' % (', '.join(names), ', '.join(sorted(kinds)), client.uri)
    return result


def main(module):
    run(module, lambda client: gather(client, module.params))
