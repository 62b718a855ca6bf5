# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_migrate: validated live and offline migration with placement, progress and roll-back.

Private module (leading underscore): free to change between releases.

The work is split in small, separately testable pieces:

* :func:`argument_problems` rejects contradictory options before any connection;
* :func:`migration_flags` / :func:`migration_params` map the options to libvirt's
  ``VIR_MIGRATE_*`` flags and typed parameters (nothing else decides them);
* :class:`GuestSnapshot` is what the source says about the guest (state,
  definitions, memory, CPU, files, networks), read once;
* :func:`preflight` checks one destination and returns *every* problem it finds;
* :func:`choose_destination` is the placement among candidates;
* :class:`JobWatcher` polls the running job, applies the timeout action and
  the post-copy switch, and keeps the progress samples;
* :class:`Migration` runs it all: idempotence, preflight, check mode, the
  migration itself, and the roll-back and its verification on failure.
"""

from __future__ import annotations

import posixpath
import socket
import threading
import time

from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._changes import ChangeSet
from ansible_collections.kvmops.kvm.plugins.module_utils._client import (
    KvmError,
    LibvirtClient,
    error_text,
    libvirt,
    one_line,
    run,
)
from ansible_collections.kvmops.kvm.plugins.module_utils._facts import DOMAIN_STATES, domain_facts
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import find_text, parse, to_string, xml_equal

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True),
    destination_uri=dict(type='str', aliases=['dest_uri'],
                         deprecated_aliases=[dict(name='dest_uri', version='2.0.0', collection_name='kvmops.kvm')]),
    dest_candidates=dict(type='list', elements='str'),
    dest_name=dict(type='str'),
    method=dict(type='str', choices=['live', 'offline'], default='live', aliases=['mode'],
                deprecated_aliases=[dict(name='mode', version='2.0.0', collection_name='kvmops.kvm')]),
    persistent=dict(type='bool', default=True),
    undefine_source=dict(type='bool', default=True),
    p2p=dict(type='bool', default=False),
    tunnelled=dict(type='bool', default=False),
    tls=dict(type='bool', default=False),
    copy_storage=dict(type='str', choices=['all', 'incremental']),
    migrate_uri=dict(type='str'),
    listen_address=dict(type='str'),
    bandwidth=dict(type='int'),
    max_downtime=dict(type='int'),
    auto_converge=dict(type='bool', default=False),
    auto_converge_initial=dict(type='int'),
    auto_converge_increment=dict(type='int'),
    postcopy=dict(type='bool', default=False),
    postcopy_after_precopy=dict(type='bool', default=False),
    compressed=dict(type='bool', default=False),
    parallel=dict(type='int'),
    unsafe=dict(type='bool', default=False),
    timeout=dict(type='int'),
    timeout_action=dict(type='str', choices=['abort', 'suspend', 'postcopy'], default='abort'),
    poll_interval=dict(type='float', default=0.5),
)

MODULE_KWARGS = dict(
    mutually_exclusive=[('destination_uri', 'dest_candidates')],
    required_one_of=[('destination_uri', 'dest_candidates')],
    supports_check_mode=True,
)

# Samples of the running job kept in the result (the first and the latest ones).
MAX_SAMPLES = 120
SAMPLE_KEYS = ('elapsed_ms', 'data_processed', 'data_remaining', 'memory_iteration', 'memory_dirty_rate', 'memory_bps',
               'auto_converge_throttle')

MIB = 1024 * 1024


def _c(name, default=0):
    """A libvirt constant, or ``default`` when the bindings are older."""
    return getattr(libvirt, name, default) if libvirt is not None else default


# ------------------------------------------------------------ options -> libvirt
def argument_problems(params):
    """Contradictory or out-of-range options, all of them, before any connection."""
    problems = []
    live = params['method'] == 'live'
    if params.get('dest_candidates') is not None and not params['dest_candidates']:
        problems.append('dest_candidates is empty')
    if params['tunnelled'] and not params['p2p']:
        problems.append('tunnelled requires p2p: true (the source libvirtd carries the data over its own connection)')
    if params['tunnelled'] and params.get('migrate_uri'):
        problems.append('migrate_uri cannot be used with tunnelled (the data goes over the libvirt connection)')
    if params['tunnelled'] and params['tls']:
        problems.append('tls and tunnelled are exclusive (a tunnelled migration is as secure as the libvirt connection)')
    if params['tunnelled'] and params.get('parallel'):
        problems.append('parallel connections cannot be used with tunnelled')
    if params['method'] == 'offline':
        if not params['persistent']:
            problems.append('method offline moves the definition only, so persistent must stay true')
        for opt in ('copy_storage', 'bandwidth', 'max_downtime', 'timeout', 'parallel', 'migrate_uri',
                    'listen_address', 'auto_converge_initial', 'auto_converge_increment'):
            if params.get(opt) not in (None, False):
                problems.append('%s applies to live migration only (method is offline)' % opt)
        for opt in ('auto_converge', 'postcopy', 'postcopy_after_precopy', 'compressed', 'tls'):
            if params.get(opt):
                problems.append('%s applies to live migration only (method is offline)' % opt)
    if params.get('bandwidth') is not None and params['bandwidth'] <= 0:
        problems.append('bandwidth must be a positive number of MiB/s')
    if params.get('max_downtime') is not None and params['max_downtime'] <= 0:
        problems.append('max_downtime must be a positive number of milliseconds')
    if params.get('timeout') is not None and params['timeout'] <= 0:
        problems.append('timeout must be a positive number of seconds')
    if params.get('parallel') is not None and not 1 <= params['parallel'] <= 255:
        problems.append('parallel must be between 1 and 255 connections')
    for opt in ('auto_converge_initial', 'auto_converge_increment'):
        value = params.get(opt)
        if value is not None:
            if live and not params['auto_converge']:
                problems.append('%s needs auto_converge: true' % opt)
            if not 1 <= value <= 100:
                problems.append('%s must be a percentage between 1 and 100' % opt)
    if params['postcopy_after_precopy'] and live and not params['postcopy']:
        problems.append('postcopy_after_precopy needs postcopy: true')
    if params['timeout_action'] != 'abort' and params.get('timeout') is None:
        problems.append('timeout_action %s needs a timeout' % params['timeout_action'])
    if params['poll_interval'] is not None and not 0.05 <= params['poll_interval'] <= 60:
        problems.append('poll_interval must be between 0.05 and 60 seconds')
    return problems


FLAG_NAMES = [
    'LIVE', 'PEER2PEER', 'TUNNELLED', 'PERSIST_DEST', 'UNDEFINE_SOURCE', 'PAUSED', 'NON_SHARED_DISK',
    'NON_SHARED_INC', 'CHANGE_PROTECTION', 'UNSAFE', 'OFFLINE', 'COMPRESSED', 'ABORT_ON_ERROR',
    'AUTO_CONVERGE', 'RDMA_PIN_ALL', 'POSTCOPY', 'TLS', 'PARALLEL',
]


def migration_flags(params):
    """The ``VIR_MIGRATE_*`` flags for these options (an int)."""
    flags = 0
    if params['method'] == 'offline':
        flags |= _c('VIR_MIGRATE_OFFLINE') | _c('VIR_MIGRATE_PERSIST_DEST')
    else:
        flags |= _c('VIR_MIGRATE_LIVE')
        if params['persistent']:
            flags |= _c('VIR_MIGRATE_PERSIST_DEST')
        if params.get('copy_storage') == 'all':
            flags |= _c('VIR_MIGRATE_NON_SHARED_DISK')
        elif params.get('copy_storage') == 'incremental':
            flags |= _c('VIR_MIGRATE_NON_SHARED_INC')
        if params['auto_converge']:
            flags |= _c('VIR_MIGRATE_AUTO_CONVERGE')
        if params['postcopy'] or params['timeout_action'] == 'postcopy':
            flags |= _c('VIR_MIGRATE_POSTCOPY')
        if params['compressed']:
            flags |= _c('VIR_MIGRATE_COMPRESSED')
        if params.get('parallel'):
            flags |= _c('VIR_MIGRATE_PARALLEL')
        if params['tls']:
            flags |= _c('VIR_MIGRATE_TLS')
        # Never let a live migration leave the guest half-running on two hosts.
        flags |= _c('VIR_MIGRATE_ABORT_ON_ERROR')
    if params['undefine_source']:
        flags |= _c('VIR_MIGRATE_UNDEFINE_SOURCE')
    if params['p2p']:
        flags |= _c('VIR_MIGRATE_PEER2PEER')
    if params['tunnelled']:
        flags |= _c('VIR_MIGRATE_TUNNELLED')
    if params['unsafe']:
        flags |= _c('VIR_MIGRATE_UNSAFE')
    return flags


def flag_names(flags):
    return [name for name in FLAG_NAMES if flags & _c('VIR_MIGRATE_' + name)]


def migration_params(params, dest_name=None):
    """The typed parameters of ``migrate3``/``migrateToURI3`` for these options."""
    out = {}
    if dest_name:
        out[_c('VIR_MIGRATE_PARAM_DEST_NAME', 'destination_name')] = dest_name
    if params.get('migrate_uri'):
        out[_c('VIR_MIGRATE_PARAM_URI', 'migrate_uri')] = params['migrate_uri']
    if params.get('listen_address'):
        out[_c('VIR_MIGRATE_PARAM_LISTEN_ADDRESS', 'listen_address')] = params['listen_address']
    if params.get('bandwidth'):
        out[_c('VIR_MIGRATE_PARAM_BANDWIDTH', 'bandwidth')] = int(params['bandwidth'])
    if params.get('auto_converge_initial') is not None:
        out[_c('VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL', 'auto_converge.initial')] = int(params['auto_converge_initial'])
    if params.get('auto_converge_increment') is not None:
        out[_c('VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT', 'auto_converge.increment')] = int(params['auto_converge_increment'])
    if params.get('parallel'):
        out[_c('VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS', 'parallel.connections')] = int(params['parallel'])
    return out


# ------------------------------------------------------------------ the guest
class GuestSnapshot(object):
    """What the source host says about the guest, read once before anything moves."""

    def __init__(self, client, dom):
        self.dom = dom
        with client.errors('domain %s' % dom.name()):
            self.name = dom.name()
            self.uuid = dom.UUIDString()
            self.state = DOMAIN_STATES.get(dom.state()[0], 'unknown')
            self.active = bool(dom.isActive())
            self.persistent = bool(dom.isPersistent())
            self.live_xml = dom.XMLDesc(0)
            self.config_xml = dom.XMLDesc(_c('VIR_DOMAIN_XML_INACTIVE')) if self.persistent else None
            self.max_memory_kib = dom.maxMemory() if self.active else None
        root = parse(self.live_xml, 'domain XML')
        self.root = root
        self.virt_type = root.get('type')
        self.arch = find_text(root, 'os/type/@arch')
        self.machine = find_text(root, 'os/type/@machine')
        if self.max_memory_kib is None:
            from ansible_collections.kvmops.kvm.plugins.module_utils._facts import memory_kib
            self.max_memory_kib = memory_kib(root, 'memory')
        self.cpu = root.find('cpu')
        self.files = guest_files(root)
        self.interfaces = guest_interfaces(root)


def guest_files(root):
    """``[(what, path)]`` every file or device the guest reads from the host."""
    files = []
    for disk in root.findall('devices/disk'):
        source = disk.find('source')
        target = find_text(disk, 'target/@dev') or '?'
        if source is None:
            continue  # an empty CD-ROM drive
        dtype = disk.get('type', 'file')
        if dtype == 'file' and source.get('file'):
            files.append(('disk %s' % target, source.get('file')))
        elif dtype == 'block' and source.get('dev'):
            files.append(('disk %s' % target, source.get('dev')))
        elif dtype == 'volume':
            files.append(('disk %s' % target, 'volume %s/%s' % (source.get('pool'), source.get('volume'))))
        # network disks (rbd, iscsi, nbd, gluster) are shared by definition
    for tag in ('kernel', 'initrd'):
        path = find_text(root, 'os/%s' % tag)
        if path:
            files.append((tag, path))
    return files


def guest_interfaces(root):
    """``[(type, source)]`` of the guest's NICs that need something on the host."""
    out = []
    for iface in root.findall('devices/interface'):
        source = iface.find('source')
        if source is None:
            continue
        kind = iface.get('type')
        if kind == 'network' and source.get('network'):
            out.append(('network', source.get('network')))
        elif kind == 'bridge' and source.get('bridge'):
            out.append(('bridge', source.get('bridge')))
        elif kind == 'direct' and source.get('dev'):
            out.append(('direct', source.get('dev')))
    return out


# ------------------------------------------------------------------ the destination is not the source
LOCAL_HOST_NAMES = ('localhost', 'localhost.localdomain', 'localhost4', 'localhost6', 'ip6-localhost', '::1')
# SMBIOS UUIDs that firmware vendors ship on many machines: they identify no host.
BOGUS_HOST_UUIDS = ('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
                    '03000200-0400-0500-0006-000700080009')


def local_host_names():
    """The names under which a URI reaches the machine that runs the module."""
    names = set(LOCAL_HOST_NAMES)
    for lookup in (socket.gethostname, socket.getfqdn):
        try:
            names.add(lookup().lower().rstrip('.'))
        except (OSError, UnicodeError):
            pass
    return names


# libvirt's default port of each remote transport (no transport with a host is tls)
DEFAULT_PORTS = {'': 16514, 'tls': 16514, 'tcp': 16509, 'ssh': 22, 'libssh': 22, 'libssh2': 22}


def canonical_uri(uri, local_names=None):
    """Which hypervisor a URI names: ``(driver, host, path)``, ``host`` with ``:port`` when not the default.

    The transport, user and query say how to reach a hypervisor, not which one, so they are left out;
    no host, ``localhost``, a loopback address and this machine's own names are all ``localhost``; a port
    other than the transport's default is kept (it may lead to another daemon, e.g. a forwarded one: the
    hostname and host UUID decide once connected); a missing path is the driver's default (``/system`` for
    qemu); repeated slashes and a trailing one do not count.
    """
    parts = urlsplit(uri)
    driver, _plus, transport = parts.scheme.lower().partition('+')
    host = (parts.hostname or '').lower().rstrip('.')
    try:
        port = parts.port
    except ValueError:
        port = None
    names = local_host_names() if local_names is None else local_names
    if not host or host in names or host in LOCAL_HOST_NAMES or host.startswith('127.') or host == '0:0:0:0:0:0:0:1':
        host = 'localhost'
    if port is not None and host and port != DEFAULT_PORTS.get(transport):
        host = '%s:%d' % (host, port)
    path = posixpath.normpath('/' + (parts.path or '').lstrip('/'))
    path = '/' + path.lstrip('/')
    if path == '/' and driver == 'qemu':
        path = '/system'
    return (driver, host, path)


def _host_uuid(client):
    """The host UUID (capabilities, else the SMBIOS system UUID from sysinfo); None when unknown or bogus."""
    conn = client.conn
    uuid = None
    try:
        uuid = find_text(parse(conn.getCapabilities(), 'capabilities'), 'host/uuid')
    except (libvirt.libvirtError, KvmError):
        uuid = None
    if not uuid:
        try:
            uuid = find_text(parse(conn.getSysinfo(0), 'sysinfo'), "system/entry[@name='uuid']")
        except (libvirt.libvirtError, KvmError):
            uuid = None
    uuid = (uuid or '').strip().lower()
    return uuid if uuid and uuid not in BOGUS_HOST_UUIDS else None


def host_identity(client):
    """``dict(uri, driver, hostname, uuid)`` of a hypervisor; what it cannot tell is None."""
    driver, _host, _path = key = canonical_uri(client.uri)
    ident = dict(uri=key, driver=driver, hostname=None, uuid=None)
    try:
        conn = client.conn
    except KvmError:
        return ident
    try:
        ident['hostname'] = (conn.getHostname() or '').lower().rstrip('.') or None
    except libvirt.libvirtError:
        pass
    ident['uuid'] = _host_uuid(client)
    return ident


def same_host(source, dest):
    """Why ``dest`` is the source hypervisor (a reason), or None. Both are :func:`host_identity` dicts.

    The test driver reports this machine's hostname for every instance, so only its URI identifies it.
    """
    if source is None or dest is None:
        return None
    if source['uri'] == dest['uri']:
        driver, host, path = dest['uri']
        return 'the same hypervisor as the source URI once normalized: %s://%s%s' % (
            driver, '' if host == 'localhost' else host, path)
    if source.get('uuid') and source['uuid'] == dest.get('uuid'):
        return 'host UUID %s' % source['uuid']
    if source.get('hostname') and source['hostname'] == dest.get('hostname') and 'test' not in (source['driver'], dest['driver']):
        return 'hostname %s' % source['hostname']
    return None


def validate_destinations(params, source_uri):
    """Every destination URI through _validate.uri (with uri_allow_ext), and none that is the source itself.

    Pure: runs before anything connects. A candidate list may name the source among others (a drain over
    every host of a cluster); that candidate is rejected by the preflight, never connected to.
    """
    allow_ext = bool(params.get('uri_allow_ext'))
    source = canonical_uri(source_uri)
    if params.get('destination_uri') is not None:
        valid.uri('destination_uri', params['destination_uri'], allow_ext=allow_ext)
        if canonical_uri(params['destination_uri']) == source:
            valid.refuse('destination_uri', 'is the source hypervisor (uri %s); a guest cannot migrate to where it is'
                         % source_uri, params['destination_uri'])
    candidates = params.get('dest_candidates') or []
    for index, candidate in enumerate(candidates):
        valid.uri('dest_candidates[%d]' % index, candidate, allow_ext=allow_ext)
    if candidates and all(canonical_uri(c) == source for c in candidates):
        valid.refuse('dest_candidates', 'every candidate is the source hypervisor (uri %s)' % source_uri, candidates)
    if params.get('dest_name') is not None:
        valid.object_name('dest_name', params['dest_name'], 'guest name')
    if params.get('listen_address') is not None:
        try:
            valid.ip_address('listen_address', params['listen_address'])
        except valid.ValidationError:
            valid.dns_name('listen_address', params['listen_address'])
    if params.get('migrate_uri') is not None:
        valid.text('migrate_uri', params['migrate_uri'], max_length=1024)
        if any(ch.isspace() for ch in params['migrate_uri']) or '://' not in params['migrate_uri']:
            valid.refuse('migrate_uri', 'must be a migration URI such as tcp://10.0.0.2 (no whitespace)',
                         params['migrate_uri'])


# ------------------------------------------------------------------ preflight


def _no_support(exc):
    return exc.get_error_code() in (_c('VIR_ERR_NO_SUPPORT', 3), _c('VIR_ERR_OPERATION_UNSUPPORTED', 84))


def _volume_visible(conn, path, notes):
    """True when ``path`` is a volume of an active storage pool of ``conn``.

    A pool that holds the path's directory is refreshed once (a rescan of the
    directory; nothing is written) when the first lookup fails.
    """
    if path.startswith('volume '):
        pool_name, vol_name = path[len('volume '):].split('/', 1)
        try:
            conn.storagePoolLookupByName(pool_name).storageVolLookupByName(vol_name)
            return True
        except libvirt.libvirtError:
            return False
    try:
        conn.storageVolLookupByPath(path)
        return True
    except libvirt.libvirtError:
        pass
    try:
        pools = conn.listAllStoragePools(_c('VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE', 2))
    except libvirt.libvirtError:
        return False
    for pool in pools:
        try:
            target = find_text(parse(pool.XMLDesc(0), 'pool XML'), 'target/path')
        except (libvirt.libvirtError, KvmError):
            continue
        if target and path.startswith(target.rstrip('/') + '/'):
            try:
                pool.refresh(0)
                conn.storageVolLookupByPath(path)
                notes.append('%s found after a rescan of pool %s' % (path, pool.name()))
                return True
            except libvirt.libvirtError:
                continue
    return False


def preflight(params, guest, source, dest, dest_name, cache=None):
    """Check one destination; returns ``dict(uri, ok, problems, notes, free_memory_bytes)``.

    ``source`` is the source's :func:`host_identity` (None: not compared), ``dest`` a LibvirtClient.
    Every check runs; all problems are returned. A destination whose URI names the source is never
    connected to. ``cache`` (a dict kept per destination by a caller that checks many guests) keeps the
    destination's identity and domain-capability answers between calls; with ``source_host_cpu`` (the
    source's host CPU XML) in it, host-passthrough guests are compared too (see :func:`_cpu_check`).
    """
    cache = {} if cache is None else cache
    report = dict(uri=dest.uri, ok=False, problems=[], notes=[], free_memory_bytes=None, hostname=None)
    problems = report['problems']
    notes = report['notes']
    if source is not None and canonical_uri(dest.uri) == source['uri']:
        problems.append('the destination is the source host itself (%s)' % same_host(source, dict(uri=source['uri'])))
        return report
    try:
        conn = dest.conn
    except KvmError as exc:
        problems.append('destination unreachable: %s' % exc.msg)
        return report
    # the same host (hostname and host UUID)
    if 'ident' not in cache:
        cache['ident'] = host_identity(dest)
    ident = cache['ident']
    report['hostname'] = ident['hostname']
    reason = same_host(source, ident)
    if reason:
        problems.append('the destination is the source host itself (%s)' % reason)
    # name and UUID
    report['existing_definition'] = False
    try:
        other = conn.lookupByName(dest_name)
        if other.UUIDString() == guest.uuid and not other.isActive() and other.isPersistent():
            # left by an earlier migration without undefine_source: libvirt replaces it
            report['existing_definition'] = True
            notes.append('an inactive definition of this guest (same name and UUID) is on the destination; '
                         'the migration replaces it')
        else:
            problems.append('a guest named %s already exists on the destination (%s, UUID %s)'
                            % (dest_name, DOMAIN_STATES.get(other.state()[0], 'unknown'), other.UUIDString()))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != _c('VIR_ERR_NO_DOMAIN', 42):
            problems.append('cannot look up %s on the destination: %s' % (dest_name, error_text(exc)))
    try:
        other = conn.lookupByUUIDString(guest.uuid)
        if other.name() != dest_name:
            problems.append('UUID %s is already used on the destination by guest %s' % (guest.uuid, other.name()))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != _c('VIR_ERR_NO_DOMAIN', 42):
            problems.append('cannot look up UUID %s on the destination: %s' % (guest.uuid, error_text(exc)))
    live = params['method'] == 'live'
    # memory
    try:
        free = conn.getFreeMemory()
        report['free_memory_bytes'] = free
        need = (guest.max_memory_kib or 0) * 1024
        if live and need and free < need:
            problems.append('not enough free memory on the destination: %d MiB free, the guest needs %d MiB'
                            % (free // MIB, need // MIB))
    except libvirt.libvirtError as exc:
        if _no_support(exc):
            notes.append('free memory: not reported by the destination driver')
        else:
            problems.append('cannot read free memory on the destination: %s' % error_text(exc))
    # hypervisor: domain type, arch and machine type
    caps_key = ('domcaps', guest.arch, guest.machine, guest.virt_type)
    if caps_key not in cache:
        cache[caps_key] = (None, None)
        try:
            conn.getDomainCapabilities(None, guest.arch, guest.machine, guest.virt_type, 0)
        except libvirt.libvirtError as exc:
            if _no_support(exc):
                cache[caps_key] = (None, 'domain capabilities: not reported by the destination driver')
            else:
                cache[caps_key] = ('the destination cannot run domain type %s, arch %s, machine %s: %s'
                                   % (guest.virt_type, guest.arch, guest.machine, error_text(exc)), None)
    problem, note = cache[caps_key]
    if problem:
        problems.append(problem)
    if note:
        notes.append(note)
    # CPU
    _cpu_check(conn, guest, params, problems, notes, source_host_cpu=cache.get('source_host_cpu'))
    # storage
    for what, path in guest.files:
        if params.get('copy_storage') and what.startswith('disk'):
            _copy_target_check(conn, what, path, params['copy_storage'], problems, notes)
            continue
        if not _volume_visible(conn, path, notes):
            hint = ' and copy_storage is not set' if what.startswith('disk') and live else ''
            problems.append('%s: %s is not visible on the destination (no active storage pool there holds it)%s'
                            % (what, path, hint))
    # networks
    for kind, source in guest.interfaces:
        _network_check(conn, kind, source, problems, notes)
    report['ok'] = not problems
    return report


def _pool_with_target(conn, directory):
    """The active pool of ``conn`` whose target path is exactly ``directory``."""
    try:
        pools = conn.listAllStoragePools(_c('VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE', 2))
    except libvirt.libvirtError:
        return None
    for pool in pools:
        try:
            target = find_text(parse(pool.XMLDesc(0), 'pool XML'), 'target/path')
        except (libvirt.libvirtError, KvmError):
            continue
        if target and target.rstrip('/') == directory:
            return pool
    return None


def _copy_target_check(conn, what, path, how, problems, notes):
    """copy_storage: libvirt reuses an image at the same path, or creates one in the pool of that directory."""
    if path.startswith('volume '):
        notes.append('%s (%s): copied (copy_storage %s)' % (what, path, how))
        return
    if _volume_visible(conn, path, notes):
        notes.append('%s (%s): copied (copy_storage %s) into the image already at that path on the destination'
                     % (what, path, how))
        return
    directory = path.rsplit('/', 1)[0] or '/'
    pool = _pool_with_target(conn, directory)
    if pool is not None:
        notes.append('%s (%s): copied (copy_storage %s); libvirt creates the image in pool %s'
                     % (what, path, how, pool.name()))
        return
    problems.append('%s: copy_storage needs %s on the destination, or an active storage pool there whose target '
                    'is %s so that libvirt can create it' % (what, path, directory))


def _cpu_check(conn, guest, params, problems, notes, source_host_cpu=None):
    """The guest's CPU against the destination.

    A custom or host-model CPU goes through ``compareHypervisorCPU``. A host-passthrough (or maximum)
    guest runs the source's host CPU: with ``source_host_cpu`` (the source's ``<cpu>`` of its
    capabilities) the destination's host CPU must be the same or a superset (``compareCPU``);
    without it, libvirt checks when the migration starts.
    """
    if params['method'] != 'live':
        notes.append('CPU: not compared (offline migration)')
        return
    cpu = guest.cpu
    mode = cpu.get('mode', 'custom') if cpu is not None else None
    if cpu is None or (mode == 'custom' and cpu.find('model') is None):
        notes.append('CPU: the guest names no CPU model (hypervisor default); not compared')
        return
    if mode in ('host-passthrough', 'maximum'):
        if source_host_cpu:
            try:
                result = conn.compareCPU(source_host_cpu, 0)
            except libvirt.libvirtError as exc:
                notes.append('CPU: %s guest; the destination cannot compare host CPUs (%s); libvirt checks it when '
                             'the migration starts' % (mode, error_text(exc)))
                return
            if result == _c('VIR_CPU_COMPARE_INCOMPATIBLE', 0):
                problems.append('CPU: %s guest, and the destination host CPU lacks features of the source host CPU'
                                % mode)
            else:
                notes.append('CPU: %s guest; the destination host CPU is %s the source host CPU' % (
                    mode, 'identical to' if result == _c('VIR_CPU_COMPARE_IDENTICAL', 1) else 'a superset of'))
            return
        notes.append('CPU: %s guests need the same host CPU on both sides; libvirt checks it when the migration starts'
                     % mode)
        return
    xml = to_string(cpu)
    try:
        result = conn.compareHypervisorCPU(None, guest.arch, guest.machine, guest.virt_type, xml, 0)
    except libvirt.libvirtError as exc:
        if _no_support(exc):
            notes.append('CPU: the destination driver cannot compare CPUs; not compared')
        else:
            problems.append('CPU: the destination cannot provide the guest CPU: %s' % error_text(exc))
        return
    if result == _c('VIR_CPU_COMPARE_INCOMPATIBLE', 0):
        problems.append('CPU: the guest CPU (%s) is incompatible with what the destination hypervisor provides'
                        % (find_text(cpu, 'model') or mode))
    else:
        notes.append('CPU: compatible (%s)' % ('identical' if result == _c('VIR_CPU_COMPARE_IDENTICAL', 1) else 'superset'))


def _network_check(conn, kind, source, problems, notes):
    if kind == 'network':
        try:
            net = conn.networkLookupByName(source)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == _c('VIR_ERR_NO_NETWORK', 43):
                problems.append('network %s does not exist on the destination' % source)
            else:
                problems.append('cannot look up network %s on the destination: %s'
                                % (source, error_text(exc)))
            return
        try:
            if not net.isActive():
                problems.append('network %s exists on the destination but is not active' % source)
        except libvirt.libvirtError as exc:
            problems.append('network %s on the destination: %s' % (source, error_text(exc)))
        return
    # bridge or direct: a host interface
    try:
        iface = conn.interfaceLookupByName(source)
        if not iface.isActive():
            problems.append('%s %s exists on the destination but is down' % (kind, source))
    except libvirt.libvirtError as exc:
        if _no_support(exc):
            notes.append('%s %s: the destination cannot list host interfaces; not checked' % (kind, source))
        elif exc.get_error_code() == _c('VIR_ERR_NO_INTERFACE', 52):
            problems.append('%s %s does not exist on the destination' % (kind, source))
        else:
            problems.append('cannot look up %s %s on the destination: %s' % (kind, source, error_text(exc)))


def choose_destination(reports):
    """The passing report with the most free memory, and why.

    ``reports`` keep the order of the candidates; ties go to the earlier one.
    """
    passing = [r for r in reports if r['ok']]
    rejected = ['%s (%s)' % (r['uri'], '; '.join(r['problems'])) for r in reports if not r['ok']]
    if not passing:
        return None, 'no candidate passed the preflight: %s' % '; '.join(rejected)
    best = passing[0]
    for report in passing[1:]:
        if (report['free_memory_bytes'] or 0) > (best['free_memory_bytes'] or 0):
            best = report
    reason = '%s passed the preflight with the most free memory (%s MiB) among %d passing candidate(s)' % (
        best['uri'], (best['free_memory_bytes'] or 0) // MIB, len(passing))
    if rejected:
        reason += '; rejected: %s' % '; '.join(rejected)
    return best, reason


# ------------------------------------------------------------------ the job
def _job_summary(stats):
    """The progress numbers of a jobStats() dict, with stable names."""
    if not stats:
        return {}
    elapsed = stats.get('time_elapsed')
    processed = stats.get('data_processed')
    out = dict(
        elapsed_ms=elapsed,
        data_total=stats.get('data_total'),
        data_processed=processed,
        data_remaining=stats.get('data_remaining'),
        memory_total=stats.get('memory_total'),
        memory_processed=stats.get('memory_processed'),
        memory_remaining=stats.get('memory_remaining'),
        memory_iteration=stats.get('memory_iteration'),
        memory_dirty_rate=stats.get('memory_dirty_rate'),
        memory_page_size=stats.get('memory_page_size'),
        memory_bps=stats.get('memory_bps'),
        disk_total=stats.get('disk_total'),
        disk_processed=stats.get('disk_processed'),
        downtime_ms=stats.get('downtime'),
        auto_converge_throttle=stats.get('auto_converge_throttle'),
    )
    if elapsed and processed:
        out['average_bandwidth_bps'] = int(processed * 1000 // elapsed)
    return {k: v for k, v in out.items() if v is not None}


def convergence_note(last):
    """`` (pass N, X MiB left, the guest dirtied Y MiB/s in the last pass)`` from a job summary, or ''."""
    parts = []
    if last.get('memory_iteration') is not None:
        parts.append('pass %d' % last['memory_iteration'])
    if last.get('data_remaining') is not None:
        parts.append('%.1f MiB left' % (last['data_remaining'] / float(MIB)))
    if last.get('memory_dirty_rate') and last.get('memory_page_size'):
        parts.append('the guest dirtied %.1f MiB/s in the last pass'
                     % (last['memory_dirty_rate'] * last['memory_page_size'] / float(MIB)))
    return ' (%s)' % ', '.join(parts) if parts else ''


class JobWatcher(object):
    """Runs ``start()`` in a thread and polls ``dom.jobStats()`` until it returns.

    On timeout it applies the timeout action once (abort, suspend or switch to
    post-copy). ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, dom, params, clock=time.monotonic, sleep=time.sleep, abort_job=None):
        self.dom = dom
        # how to abort: by default on the watched domain's connection (see Migration._abort_job)
        self.abort_job = abort_job or dom.abortJob
        self.params = params
        self.clock = clock
        self.sleep = sleep
        self.samples = []
        self.last = {}
        self.events = []
        self.timed_out = False
        self.aborted = False
        self.suspended_at = None
        self.postcopy_started = False
        self.downtime_set = False
        self.result = None
        self.error = None
        self.started = None
        self.ended = None

    def record(self, stats):
        summary = _job_summary(stats)
        if not summary:
            return
        self.last = summary
        sample = dict((k, summary.get(k)) for k in SAMPLE_KEYS)
        if len(self.samples) >= MAX_SAMPLES:
            del self.samples[1]  # keep the first sample and the latest ones
        self.samples.append(sample)

    def _event(self, text):
        self.events.append('%.1fs: %s' % (self.clock() - self.started, text))

    def poll_once(self):
        try:
            stats = self.dom.jobStats(0)
        except libvirt.libvirtError:
            return
        if not stats or stats.get('type') in (None, _c('VIR_DOMAIN_JOB_NONE', 0)):
            return
        self.record(stats)
        params = self.params
        if params.get('max_downtime') and not self.downtime_set:
            self.downtime_set = True
            try:
                self.dom.migrateSetMaxDowntime(int(params['max_downtime']), 0)
                self._event('max downtime set to %d ms' % params['max_downtime'])
            except libvirt.libvirtError as exc:
                self._event('could not set max downtime: %s' % error_text(exc))
        if (params.get('postcopy_after_precopy') and not self.postcopy_started
                and (stats.get('memory_iteration') or 0) >= 2):
            self._start_postcopy('the first pre-copy pass is done')
        timeout = params.get('timeout')
        if timeout and not self.timed_out and self.clock() - self.started >= timeout:
            self.timed_out = True
            action = params.get('timeout_action', 'abort')
            self._event('timeout of %ss reached; action %s' % (timeout, action))
            if action == 'abort':
                self.abort()
            elif action == 'suspend':
                try:
                    self.dom.suspend()
                    self.suspended_at = self.clock()
                    self._event('guest paused; the rest is copied while it stays paused')
                except libvirt.libvirtError as exc:
                    self._event('suspend failed: %s' % error_text(exc))
            elif action == 'postcopy' and not self.postcopy_started:
                self._start_postcopy('timeout')

    def _start_postcopy(self, why):
        self.postcopy_started = True
        try:
            self.dom.migrateStartPostCopy(0)
            self._event('switched to post-copy (%s)' % why)
        except libvirt.libvirtError as exc:
            self._event('switch to post-copy failed: %s' % error_text(exc))

    def abort(self):
        if self.aborted:
            return
        self.aborted = True
        try:
            self.abort_job()
            self._event('job aborted')
        except libvirt.libvirtError as exc:
            self._event('abort failed: %s' % error_text(exc))
        except KvmError as exc:
            self._event('abort failed: %s' % exc.msg)

    def run(self, start):
        """Run ``start()`` (the blocking migrate call) and watch it; returns its result or raises its error."""
        def worker():
            try:
                self.result = start()
            except Exception as exc:  # pylint: disable=broad-except
                self.error = exc

        self.started = self.clock()
        thread = threading.Thread(target=worker, name='kvm_migrate')
        thread.daemon = True
        thread.start()
        interval = self.params.get('poll_interval') or 0.5
        # poll quickly until the job shows up, so max_downtime applies even to a short migration
        eager = min(interval, 0.05)
        try:
            while thread.is_alive():
                thread.join(interval if self.last else eager)
                if thread.is_alive():
                    self.poll_once()
        except BaseException:
            # interrupted: never leave the job running behind our back
            self.abort()
            thread.join(60)
            raise
        self.ended = self.clock()
        return self.result


# ------------------------------------------------------------------ the run
class Migration(object):

    def __init__(self, module, client, clients=None, planned=None, source=None):
        """``planned``: a passing preflight report of the one destination, made by a caller that placed many
        guests (kvm_migrate_guests); the preflight is then not repeated. ``source``: the source's
        :func:`host_identity`, when the caller has it already."""
        self.module = module
        self.planned = planned
        self.source = source
        self.params = module.params
        self.client = client
        self.record = ChangeSet(module)
        self.name = self.params['name']
        self.dest_name = self.params.get('dest_name') or self.name
        uris = [self.params['destination_uri']] if self.params.get('destination_uri') else list(self.params['dest_candidates'] or [])
        self.uris = uris
        self.chosen_report = {}
        self.dests = clients if clients is not None else [LibvirtClient(module, uri=u) for u in uris]
        # mode: deprecated spelling of method, returned until 2.0.0
        self.result = dict(name=self.name, dest_name=self.dest_name, source_uri=client.uri,
                           method=self.params['method'], mode=self.params['method'])
        self.migration = None

    def outcome(self):
        """The result so far with the common keys (changed, changes, pending_restart)."""
        return self.record.result(**self.result)

    def close(self):
        for dest in self.dests:
            dest.close()

    # -- idempotence --------------------------------------------------
    def _already_there(self, src_dom):
        """The (client, domain) where the guest already is, when the source no longer runs it."""
        live = self.params['method'] == 'live'
        src_uuid = None
        if src_dom is not None:
            with self.client.errors('domain %s' % self.name):
                if src_dom.isActive():
                    return None, None
                src_uuid = src_dom.UUIDString()
                if self.params['method'] == 'offline' and self.params['undefine_source']:
                    return None, None  # still defined here: not moved yet
        source = canonical_uri(self.client.uri)
        for dest in self.dests:
            if canonical_uri(dest.uri) == source:
                continue  # never the source itself
            try:
                conn = dest.conn
            except KvmError:
                continue
            try:
                dom = conn.lookupByName(self.dest_name)
            except libvirt.libvirtError:
                continue
            try:
                if src_uuid and dom.UUIDString() != src_uuid:
                    continue
                if live and not dom.isActive():
                    continue
                if not live and not dom.isPersistent():
                    continue
            except libvirt.libvirtError:
                continue
            return dest, dom
        return None, None

    # -- main ---------------------------------------------------------
    def run(self):
        valid.object_name('name', self.name, 'guest name')
        validate_destinations(self.params, self.client.uri)
        problems = argument_problems(self.params)
        if problems:
            raise KvmError('invalid options: %s' % '; '.join(problems), problems=problems)
        try:
            return self._run()
        finally:
            self.close()

    def _run(self):
        params = self.params
        result = self.result
        src_dom = self.client.find_domain(self.name)
        dest, there = self._already_there(src_dom)
        if there is not None:
            result.update(
                destination_uri=dest.uri,
                msg='guest %s is already %s on %s and not running on %s' % (
                    self.dest_name, 'running' if params['method'] == 'live' else 'defined', dest.uri, self.client.uri),
                domain=domain_facts(dest, there),
            )
            return self.outcome()
        if src_dom is None:
            raise KvmError('guest %s not found on the source %s, nor on %s'
                           % (self.name, self.client.uri, ', '.join(self.uris)))
        guest = GuestSnapshot(self.client, src_dom)
        result['uuid'] = guest.uuid
        problems = self._state_problems(guest)
        if self.planned is not None:
            reports = [self.planned]
        else:
            source = self.source or host_identity(self.client)
            reports = [preflight(params, guest, source, d, self.dest_name) for d in self.dests]
        result['preflight'] = reports
        if params.get('dest_candidates'):
            chosen, reason = choose_destination(reports)
            result['placement'] = dict(chosen=chosen['uri'] if chosen else None, reason=reason)
        else:
            chosen = reports[0] if reports[0]['ok'] else None
            reason = None
        if problems or chosen is None:
            all_problems = list(problems)
            for report in reports:
                all_problems.extend('%s: %s' % (report['uri'], p) for p in report['problems'])
            msg = 'preflight failed for guest %s, nothing was changed: %s' % (self.name, '; '.join(all_problems))
            raise KvmError(msg, problems=all_problems, preflight=reports, placement=result.get('placement'),
                           changed=False)
        dest = self.dests[reports.index(chosen)]
        self.chosen_report = chosen
        flags = migration_flags(params)
        mparams = migration_params(params, self.dest_name if params.get('dest_name') else None)
        result.update(destination_uri=dest.uri, flags=flag_names(flags))
        # a live migration moves the running guest; an offline one moves its definition
        self.migration = self.record.record('live' if params['method'] == 'live' else 'config', 'destination_uri',
                                            'migrate', before=self.client.uri, after=dest.uri, guest=self.name,
                                            dest_name=self.dest_name)
        if self.record.write('domain %s' % self.name, self._migrate, guest, dest, flags, mparams) is None:
            # check mode: the guard called nothing
            result['msg'] = 'would migrate %s (%s) from %s to %s%s' % (
                self.name, params['method'], self.client.uri, dest.uri, ' (%s)' % reason if reason else '')
        return self.outcome()

    def _state_problems(self, guest):
        problems = []
        if self.params['method'] == 'live':
            if not guest.active:
                problems.append('guest %s is %s; a live migration needs it running (use method offline to move its definition)'
                                % (self.name, guest.state))
        else:
            if guest.active:
                problems.append('guest %s is %s; method offline moves only shut-off guests' % (self.name, guest.state))
            if not guest.persistent:
                problems.append('guest %s is transient; there is no definition to move offline' % self.name)
        return problems

    def _migrate(self, guest, dest, flags, mparams):
        params = self.params
        result = self.result
        watcher = JobWatcher(guest.dom, params, abort_job=lambda: self._abort_job(guest))
        dconn = dest.conn

        def start():
            if params['p2p']:
                return guest.dom.migrateToURI3(dest.uri, mparams, flags)
            return guest.dom.migrate3(dconn, mparams, flags)
        wall_start = time.monotonic()
        if params['method'] == 'offline':
            watcher.started = watcher.clock()
            try:
                start()
            except Exception as exc:  # pylint: disable=broad-except
                watcher.error = exc
        else:
            watcher.run(start)
        wall = time.monotonic() - wall_start
        result['elapsed_seconds'] = round(wall, 3)
        result['events'] = watcher.events
        result['samples'] = watcher.samples
        if watcher.error is not None or (watcher.aborted and params['method'] == 'live'):
            self._fail(guest, dest, watcher)
        # success: the guest on the destination
        new = dest.find_domain(self.dest_name)
        if new is None:
            facts = self.outcome()
            facts.pop('msg', None)
            raise KvmError('libvirt reported success, but %s is not on %s' % (self.dest_name, dest.uri), **facts)
        final = {}
        if params['method'] == 'live':
            with dest.errors('domain %s' % self.dest_name):
                try:
                    final = new.jobStats(_c('VIR_DOMAIN_JOB_STATS_COMPLETED', 1)) or {}
                except libvirt.libvirtError:
                    final = {}
                if guest.state == 'running' and new.state()[0] == _c('VIR_DOMAIN_PAUSED', 3):
                    new.resume()
                    watcher.events.append('resumed %s on the destination' % self.dest_name)
        result['job_stats'] = dict((k, v) for k, v in final.items() if k != 'type')
        # the completed job closes the series (a migration faster than one poll still has a sample) and is
        # the progress reported; without completed stats, the last poll's
        watcher.record(final)
        progress = dict(watcher.last)
        progress['wall_seconds'] = result['elapsed_seconds']
        if watcher.suspended_at is not None and watcher.ended is not None:
            # measured here: libvirt's downtime may cover only QEMU's final switch-over, not the pause
            progress['paused_ms'] = int((watcher.ended - watcher.suspended_at) * 1000)
        result['progress'] = progress
        result['domain'] = domain_facts(dest, new)
        result['source_defined'] = self.client.find_domain(self.name) is not None
        result['msg'] = 'migrated %s (%s) from %s to %s in %.1fs' % (
            self.name, params['method'], self.client.uri, dest.uri, wall)
        return result

    def _abort_job(self, guest):
        """Abort the migration job on a new connection to the source.

        The module's own connection carries the blocking migrate call; an abort sent on it was seen
        to wait forever for its reply after the destination libvirtd was killed, while the same
        abort on a new connection returned at once. Falls back to the shared connection.
        """
        fresh = LibvirtClient(self.module, uri=self.client.uri)
        try:
            try:
                dom = fresh.conn.lookupByUUIDString(guest.uuid)
            except (KvmError, libvirt.libvirtError):
                dom = guest.dom
            dom.abortJob()
        finally:
            fresh.close()

    # -- roll-back ----------------------------------------------------
    def _fail(self, guest, dest, watcher):
        if watcher.error is not None and libvirt is not None and isinstance(watcher.error, libvirt.libvirtError):
            what = error_text(watcher.error)
        elif watcher.error is not None:
            what = '%s: %s' % (type(watcher.error).__name__, one_line(watcher.error))
        else:
            what = 'job aborted'
        if watcher.timed_out and watcher.aborted:
            what = 'no convergence within the timeout of %ss%s; job aborted (%s)' % (
                self.params['timeout'], convergence_note(watcher.last), what)
        # the guest did not move: what is left to report is what the roll-back changed
        self.record.drop(self.migration)
        rollback = self.verify_rollback(guest, dest, existing=self.chosen_report.get('existing_definition'))
        self.result['rollback'] = rollback
        self.result['progress'] = dict(watcher.last)
        state = 'the guest is %s on the source with its definition %s; the destination is %s' % (
            rollback['source_state'],
            'intact' if rollback['source_definition_intact'] else (
                'CHANGED' if rollback['source_definition_intact'] is False else 'n/a (transient)'),
            'clean' if rollback['destination_clean'] else (
                'NOT clean' if rollback['destination_clean'] is False else 'unreachable'))
        facts = self.outcome()
        facts.pop('msg', None)   # the failure's own message replaces any earlier one
        raise KvmError('migration of %s to %s failed: %s; %s' % (self.name, dest.uri, what, state), **facts)

    def verify_rollback(self, guest, dest, existing=False):
        """After a failed or aborted job: the guest still runs on the source, nothing is left on the destination.

        ``changes`` are the change-set entries of what the roll-back changed (also in the module's ``changes``);
        ``actions`` (deprecated, removed in 2.0.0) says everything it did or found, one line each.
        """
        out = dict(changes=[], actions=[], source_state=None, source_definition_intact=None, destination_clean=None)
        src = self.client.find_domain(self.name)
        if src is None:
            out['source_state'] = 'missing'
        else:
            with self.client.errors('domain %s' % self.name):
                state, reason = src.state()
                if (guest.state == 'running' and state == _c('VIR_DOMAIN_PAUSED', 3)
                        and reason != _c('VIR_DOMAIN_PAUSED_POSTCOPY_FAILED', 13)
                        and reason != _c('VIR_DOMAIN_PAUSED_POSTCOPY', 12)):
                    self.record.write('domain %s' % self.name, src.resume)
                    out['changes'].append(self.record.record('live', 'state', 'resume', before='paused', after='running',
                                                             guest=self.name, uri=self.client.uri))
                    out['actions'].append('resumed the guest on the source')
                    state = src.state()[0]
                out['source_state'] = DOMAIN_STATES.get(state, 'unknown')
                if guest.config_xml is not None:
                    now = src.XMLDesc(_c('VIR_DOMAIN_XML_INACTIVE')) if src.isPersistent() else None
                    out['source_definition_intact'] = now is not None and xml_equal(now, guest.config_xml)
        # the destination, on a fresh connection (the old one may be dead)
        fresh = LibvirtClient(self.module, uri=dest.uri)
        try:
            conn = fresh.conn
            try:
                left = conn.lookupByUUIDString(guest.uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != _c('VIR_ERR_NO_DOMAIN', 42):
                    raise
                left = None
            if left is None:
                out['destination_clean'] = True
            elif existing and not left.isActive():
                out['destination_clean'] = True
                out['actions'].append('kept the inactive definition that was on the destination before')
            elif out['source_state'] in ('running', 'paused') and not (
                    left.isActive() and left.state()[0] == _c('VIR_DOMAIN_RUNNING', 1)):
                # a half-arrived copy (paused incoming guest or a definition): ours, remove it
                left_name = left.name()
                if left.isActive():
                    self.record.write('domain %s' % left_name, left.destroy)
                    out['changes'].append(self.record.record('live', 'dest_name', 'destroy incomplete copy',
                                                             before=left_name, after=None, uri=dest.uri))
                if left.isPersistent():
                    self.record.write('domain %s' % left_name, left.undefine)
                    out['changes'].append(self.record.record('config', 'dest_name', 'undefine incomplete copy',
                                                             before=left_name, after=None, uri=dest.uri))
                out['actions'].append('removed the incomplete copy of %s from the destination' % left.name())
                out['destination_clean'] = True
            else:
                out['destination_clean'] = False
                out['actions'].append('left %s on the destination untouched: it runs there' % left.name())
        except (KvmError, libvirt.libvirtError) as exc:
            out['actions'].append('could not check the destination: %s' % (
                exc.msg if isinstance(exc, KvmError) else error_text(exc)))
        finally:
            fresh.close()
        return out


def main(module):
    run(module, lambda client: Migration(module, client).run())
