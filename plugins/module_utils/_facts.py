# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts of libvirt objects, in the one shape kvm_info and every module return."""

from __future__ import annotations

import re

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._xml import find_text, parse

DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}

# virDomain*Reason enums, per state (libvirt's include/libvirt/libvirt-domain.h).
STATE_REASONS = {
    'running': ['unknown', 'booted', 'migrated', 'restored', 'from_snapshot', 'unpaused',
                'migration_canceled', 'save_canceled', 'wakeup', 'crashed', 'postcopy',
                'postcopy_failed'],
    'blocked': ['unknown'],
    'paused': ['unknown', 'user', 'migration', 'save', 'dump', 'ioerror', 'watchdog',
               'from_snapshot', 'shutting_down', 'snapshot', 'crashed', 'starting_up',
               'postcopy', 'postcopy_failed', 'api_error'],
    'shutdown': ['unknown', 'user'],
    'shutoff': ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed',
                'from_snapshot', 'daemon'],
    'crashed': ['unknown', 'panicked'],
    'pmsuspended': ['unknown'],
    'nostate': ['unknown'],
}

VCPU_STATES = {0: 'offline', 1: 'running', 2: 'blocked'}
POOL_STATES = {0: 'inactive', 1: 'building', 2: 'running', 3: 'degraded', 4: 'inaccessible'}
VOL_TYPES = {0: 'file', 1: 'block', 2: 'dir', 3: 'network', 4: 'netdir', 5: 'ploop'}


def version_string(number):
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + micro."""
    if not number:
        return None
    return '%d.%d.%d' % (number // 1000000, (number // 1000) % 1000, number % 1000)


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def memory_kib(elem, xpath):
    """A memory element (memory/currentMemory) converted to KiB."""
    from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_kib
    found = elem.xpath(xpath)
    if not found:
        return None
    node = found[0]
    return to_kib(node.text, node.get('unit', 'KiB'))


# ---------------------------------------------------------------- domains
IOTUNE_KEYS = ('total_bytes_sec', 'read_bytes_sec', 'write_bytes_sec', 'total_iops_sec', 'read_iops_sec', 'write_iops_sec')


def iotune_facts(node):
    """A disk's ``<iotune>`` limits (the ones kvm_domain types; 0 is no limit), or None without one."""
    if node is None:
        return None
    return dict((key, _int(find_text(node, key), 0)) for key in IOTUNE_KEYS)


def disk_facts(disk):
    source = disk.find('source')
    src = None
    pool = volume = None
    if source is not None:
        src = source.get('file') or source.get('dev') or source.get('dir') or source.get('name')
        pool = source.get('pool')
        volume = source.get('volume')
    driver = disk.find('driver')
    target = disk.find('target')
    boot = disk.find('boot')
    return dict(
        target=target.get('dev') if target is not None else None,
        bus=target.get('bus') if target is not None else None,
        device=disk.get('device', 'disk'),
        type=disk.get('type'),
        source=src,
        pool=pool,
        volume=volume,
        format=driver.get('type') if driver is not None else None,
        cache=driver.get('cache') if driver is not None else None,
        io=driver.get('io') if driver is not None else None,
        discard=driver.get('discard') if driver is not None else None,
        readonly=disk.find('readonly') is not None,
        boot_order=_int(boot.get('order')) if boot is not None else None,
        serial=find_text(disk, 'serial'),
        wwn=find_text(disk, 'wwn'),
        shareable=disk.find('shareable') is not None,
        iotune=iotune_facts(disk.find('iotune')),
    )


def _bandwidth(node):
    if node is None:
        return None
    return dict(average=_int(node.get('average')), peak=_int(node.get('peak')), burst=_int(node.get('burst')))


def interface_facts(iface):
    source = iface.find('source')
    src = None
    if source is not None:
        src = source.get('network') or source.get('bridge') or source.get('dev')
    mac = iface.find('mac')
    model = iface.find('model')
    target = iface.find('target')
    link = iface.find('link')
    return dict(
        type=iface.get('type'),
        source=src,
        model=model.get('type') if model is not None else None,
        mac=mac.get('address') if mac is not None else None,
        target=target.get('dev') if target is not None else None,
        link_state=link.get('state', 'up') if link is not None else 'up',
        mtu=_int(find_text(iface, 'mtu/@size')),
        queues=_int(find_text(iface, 'driver/@queues')),
        vlan=_int(find_text(iface, 'vlan/tag/@id')),
        portgroup=source.get('portgroup') if source is not None else None,
        filterref=find_text(iface, 'filterref/@filter'),
        boot_order=_int(find_text(iface, 'boot/@order')),
        bandwidth=dict(inbound=_bandwidth(iface.find('bandwidth/inbound')),
                       outbound=_bandwidth(iface.find('bandwidth/outbound'))),
    )


def graphics_facts(graphics):
    listen = graphics.get('listen')
    listen_elem = graphics.find('listen')
    if listen is None and listen_elem is not None:
        listen = listen_elem.get('address') or listen_elem.get('socket')
    return dict(
        type=graphics.get('type'),
        listen=listen,
        port=_int(graphics.get('port')),
        autoport=graphics.get('autoport') == 'yes',
        keymap=graphics.get('keymap'),
        password_set=graphics.get('passwd') is not None,
    )


def _firmware(root):
    if root.find("os[@firmware='efi']") is not None or root.find("os/loader[@type='pflash']") is not None:
        return 'efi'
    return 'bios'


def _yes(value):
    return None if value is None else value == 'yes'


def tpm_facts(root):
    """The first ``<tpm>`` (option ``tpm``), or None."""
    tpm = root.find('devices/tpm')
    if tpm is None:
        return None
    backend = tpm.find('backend')
    return dict(
        model=tpm.get('model', 'tpm-tis'),
        backend=backend.get('type') if backend is not None else None,
        version=backend.get('version') if backend is not None else None,
        persistent_state=(backend.get('persistent_state') == 'yes') if backend is not None else False,
        device=find_text(backend, 'device/@path') if backend is not None else None,
    )


def secure_boot_of(root):
    """Secure Boot as the definition asks for it: the auto-selection feature, else the loader's ``secure``."""
    feature = root.find("os/firmware/feature[@name='secure-boot']")
    if feature is not None:
        return _yes(feature.get('enabled'))
    return _yes(find_text(root, 'os/loader/@secure'))


def enrolled_keys_of(root):
    feature = root.find("os/firmware/feature[@name='enrolled-keys']")
    return _yes(feature.get('enabled')) if feature is not None else None


def filesystem_facts(elem):
    """One ``<filesystem>`` (option ``filesystems``): virtiofs or 9p."""
    driver = elem.find('driver')
    return dict(
        driver='virtiofs' if driver is not None and driver.get('type') == 'virtiofs' else '9p',
        source=find_text(elem, 'source/@dir'),
        target=find_text(elem, 'target/@dir'),
        readonly=elem.find('readonly') is not None,
        accessmode=elem.get('accessmode', 'passthrough'),
    )


def memory_backing_facts(root):
    """``<memoryBacking>`` (option ``memory_backing``), or None; page sizes in KiB."""
    node = root.find('memoryBacking')
    if node is None:
        return None
    from ansible_collections.kvmops.kvm.plugins.module_utils._units import to_kib
    pages = []
    for page in node.findall('hugepages/page'):
        try:
            size = to_kib(page.get('size'), page.get('unit', 'KiB'))
        except KvmError:   # untrusted text: an unreadable size is shown as None
            size = None
        pages.append(dict(size_kib=size, nodeset=page.get('nodeset')))
    return dict(
        hugepages=node.find('hugepages') is not None,
        pages=pages,
        source=find_text(node, 'source/@type'),
        access=find_text(node, 'access/@mode'),
        locked=node.find('locked') is not None,
        nosharepages=node.find('nosharepages') is not None,
    )


def rng_facts(root):
    rng = root.find('devices/rng')
    if rng is None:
        return None
    backend = rng.find('backend')
    source = (backend.text or '').strip() if backend is not None else ''
    return dict(model=rng.get('model'), backend=backend.get('model') if backend is not None else None,
                source=source or None)


def watchdog_facts(root):
    dog = root.find('devices/watchdog')
    if dog is None:
        return None
    return dict(model=dog.get('model'), action=dog.get('action', 'reset'))


def boot_facts(root):
    menu = root.find('os/bootmenu')
    return dict(order=[b.get('dev') for b in root.findall('os/boot')],
                menu=_yes(menu.get('enable')) if menu is not None else None,
                menu_timeout=_int(menu.get('timeout')) if menu is not None else None)


def cputune_facts(root):
    """``<cputune>`` (option ``cputune``), or None; cpusets as libvirt writes them."""
    node = root.find('cputune')
    if node is None:
        return None
    return dict(
        shares=_int(find_text(node, 'shares')),
        period=_int(find_text(node, 'period')),
        quota=_int(find_text(node, 'quota')),
        vcpupin=[dict(vcpu=_int(p.get('vcpu')), cpuset=p.get('cpuset')) for p in node.findall('vcpupin')],
        emulatorpin=find_text(node, 'emulatorpin/@cpuset'),
        iothreadpin=[dict(iothread=_int(p.get('iothread')), cpuset=p.get('cpuset')) for p in node.findall('iothreadpin')],
    )


def cpu_facts(root):
    """The custom CPU model, features and cache of ``<cpu>``."""
    cpu = root.find('cpu')
    cache = cpu.find('cache') if cpu is not None else None
    return dict(
        model=find_text(cpu, 'model') if cpu is not None else None,
        features=[dict(name=f.get('name'), policy=f.get('policy', 'require')) for f in cpu.findall('feature')]
        if cpu is not None else [],
        cache=dict(mode=cache.get('mode'), level=_int(cache.get('level'))) if cache is not None else None,
    )


def chardev_facts(elem):
    """A ``<serial>`` or ``<console>`` (options ``serials`` and ``consoles``): the guest side (target type and port)
    and the host side (type and its source; the pty path libvirt allocates at start is no field)."""
    kind = elem.get('type')
    source = elem.find('source')

    def attr(name):
        return source.get(name) if source is not None else None
    return dict(
        port=_int(find_text(elem, 'target/@port')),
        target_type=find_text(elem, 'target/@type'),
        type=kind,
        path=attr('path') if kind in ('file', 'unix', 'dev', 'pipe') else None,
        host=attr('host') if kind in ('tcp', 'udp') else None,
        tcp_port=_int(attr('service')) if kind == 'tcp' else None,
        mode=(attr('mode') or 'connect') if kind in ('tcp', 'unix') else None,
        protocol=(find_text(elem, 'protocol/@type') or 'raw') if kind == 'tcp' else None,
        log_file=find_text(elem, 'log/@file'),
    )


def numatune_facts(root):
    memory = root.find('numatune/memory')
    if memory is None:
        return None
    return dict(mode=memory.get('mode', 'strict'), nodeset=memory.get('nodeset'))


def video_facts(root):
    model = root.find('devices/video/model')
    if model is None:
        return None
    return dict(model=model.get('type'), vram=_int(model.get('vram')), heads=_int(model.get('heads')))


def sound_facts(root):
    sound = root.find('devices/sound')
    return dict(model=sound.get('model')) if sound is not None else None


def c_number(text, maximum):
    """An integer written as libvirt reads it (C strtol base 0: 0x hex, leading 0 octal, else decimal) within
    0..``maximum``, or None (untrusted text from the hypervisor)."""
    text = (text or '').strip().lower()
    if len(text) > 12 or not re.fullmatch(r'0x[0-9a-f]+|[0-9]+', text):
        return None
    try:
        if text.startswith('0x'):
            value = int(text[2:], 16)
        elif len(text) > 1 and text.startswith('0'):
            value = int(text[1:], 8)
        else:
            value = int(text, 10)
    except ValueError:
        return None
    return value if 0 <= value <= maximum else None


PCI_ADDRESS_LIMITS = (('domain', 0xffff), ('bus', 0xff), ('slot', 0x1f), ('function', 7))
_MDEV_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def pci_address_of(node):
    """``domain:bus:slot.function`` (0000:03:00.0) of an ``<address>`` element, None when unreadable."""
    if node is None:
        return None
    parts = [c_number(node.get(name, '0' if name == 'domain' else None), limit) for name, limit in PCI_ADDRESS_LIMITS]
    if None in parts:
        return None
    return '%04x:%02x:%02x.%x' % tuple(parts)


def usb_id(text):
    value = c_number(text, 0xffff) if text is not None else None
    return None if value is None else '0x%04x' % value


def hostdev_facts(elem):
    """One ``<hostdev>`` (option ``hostdevs``): a PCI device by address, a USB device by vendor and product ids
    and/or bus and device number, a mediated device by UUID; the fields of other types are null."""
    source = elem.find('source')
    kind = elem.get('type')
    view = dict(type=kind, address=None, vendor=None, product=None, bus=None, device=None, uuid=None, model=None,
                managed=elem.get('managed') == 'yes' if kind in ('pci', 'usb') else None,
                boot_order=_int(find_text(elem, 'boot/@order')))
    if source is None:
        return view
    if kind == 'pci':
        view['address'] = pci_address_of(source.find('address'))
    elif kind == 'usb':
        view['vendor'] = usb_id(find_text(source, 'vendor/@id'))
        view['product'] = usb_id(find_text(source, 'product/@id'))
        address = source.find('address')
        if address is not None:
            view['bus'] = c_number(address.get('bus'), 0xffff)
            view['device'] = c_number(address.get('device'), 0xffff)
    elif kind == 'mdev':
        uuid = (find_text(source, 'address/@uuid') or '').strip().lower()
        view['uuid'] = uuid if _MDEV_UUID.fullmatch(uuid) else None
        view['model'] = elem.get('model')
    return view


def domain_xml_facts(root):
    """Facts derivable from a domain XML document alone (config or live)."""
    vcpu = root.find('vcpu')
    vcpu_max = _int(vcpu.text) if vcpu is not None else None
    vcpu_cur = _int(vcpu.get('current'), vcpu_max) if vcpu is not None else None
    os_type = root.find('os/type')
    devices = root.find('devices')
    disks = [disk_facts(d) for d in devices.findall('disk')] if devices is not None else []
    ifaces = [interface_facts(i) for i in devices.findall('interface')] if devices is not None else []
    graphics = [graphics_facts(g) for g in devices.findall('graphics')] if devices is not None else []
    balloon = devices.find('memballoon') if devices is not None else None
    return dict(
        name=find_text(root, 'name'),
        uuid=find_text(root, 'uuid'),
        virt_type=root.get('type'),
        arch=os_type.get('arch') if os_type is not None else None,
        machine=os_type.get('machine') if os_type is not None else None,
        firmware=_firmware(root),
        vcpus=dict(current=vcpu_cur, maximum=vcpu_max),
        memory=dict(current_kib=memory_kib(root, 'currentMemory') or memory_kib(root, 'memory'),
                    max_kib=memory_kib(root, 'memory')),
        cpu_mode=root.find('cpu').get('mode') if root.find('cpu') is not None else None,
        disks=disks,
        interfaces=ifaces,
        graphics=graphics,
        serials=[chardev_facts(s) for s in devices.findall('serial')] if devices is not None else [],
        consoles=[chardev_facts(c) for c in devices.findall('console')] if devices is not None else [],
        memballoon=balloon.get('model') if balloon is not None else None,
        os_variant=find_text(root, "metadata/*[local-name()='libosinfo']/*[local-name()='os']/@id"),
        secure_boot=secure_boot_of(root),
        enrolled_keys=enrolled_keys_of(root),
        loader=find_text(root, 'os/loader'),
        nvram=find_text(root, 'os/nvram'),
        nvram_template=find_text(root, 'os/nvram/@template'),
        tpm=tpm_facts(root),
        filesystems=[filesystem_facts(f) for f in devices.findall('filesystem')] if devices is not None else [],
        memory_backing=memory_backing_facts(root),
        rng=rng_facts(root),
        watchdog=watchdog_facts(root),
        boot=boot_facts(root),
        iothreads=_int(find_text(root, 'iothreads'), 0),
        cputune=cputune_facts(root),
        numatune=numatune_facts(root),
        cpu=cpu_facts(root),
        inputs=[dict(type=i.get('type'), bus=i.get('bus')) for i in devices.findall('input')] if devices is not None else [],
        channels=[dict(name=find_text(c, 'target/@name'), type=c.get('type'), state=find_text(c, 'target/@state'))
                  for c in devices.findall('channel')] if devices is not None else [],
        video=video_facts(root),
        sound=sound_facts(root),
        hostdevs=[hostdev_facts(h) for h in devices.findall('hostdev')] if devices is not None else [],
    )


def domain_facts(client, dom, details=True):
    """The domain entry of kvm_info (also returned by kvm_domain)."""
    with client.errors('domain %s' % dom.name()):
        state, reason = dom.state()
        state_name = DOMAIN_STATES.get(state, 'unknown')
        reasons = STATE_REASONS.get(state_name, [])
        active = bool(dom.isActive())
        live_xml = dom.XMLDesc(0)
        facts = domain_xml_facts(parse(live_xml, 'domain XML'))
        facts.update(
            id=dom.ID() if active else None,
            state=state_name,
            state_reason=reasons[reason] if 0 <= reason < len(reasons) else 'unknown',
            active=active,
            persistent=bool(dom.isPersistent()),
            autostart=bool(dom.autostart()) if dom.isPersistent() else False,
        )
        if active and details:
            info = dom.info()
            facts['memory']['current_kib'] = info[2]
            facts['vcpus']['current'] = info[3]
            facts['vcpu_info'] = _vcpu_info(dom)
            facts['balloon'] = _balloon(dom)
        elif details:
            facts['vcpu_info'] = []
            facts['balloon'] = {}
    return facts


def _vcpu_info(dom):
    try:
        vcpus, _pins = dom.vcpus()
    except libvirt.libvirtError:
        return []
    return [dict(number=v[0], state=VCPU_STATES.get(v[1], 'unknown'), cpu_time_ns=v[2], cpu=v[3])
            for v in vcpus]


def _balloon(dom):
    """``virsh domstats --balloon``: values in KiB as libvirt reports them."""
    try:
        stats = dom.memoryStats()
    except libvirt.libvirtError:
        return {}
    names = {'actual': 'current', 'swap_in': 'swap_in', 'swap_out': 'swap_out',
             'major_fault': 'major_fault', 'minor_fault': 'minor_fault', 'unused': 'unused',
             'available': 'available', 'rss': 'rss', 'usable': 'usable',
             'last_update': 'last_update', 'disk_caches': 'disk_caches'}
    out = {names.get(k, k): v for k, v in stats.items()}
    try:
        out['maximum'] = dom.maxMemory()
    except libvirt.libvirtError:
        pass
    return out


# ---------------------------------------------------------------- networks
def network_xml_facts(root):
    forward = root.find('forward')
    bridge = root.find('bridge')
    ips = []
    for ip in root.findall('ip'):
        ranges = [dict(start=r.get('start'), end=r.get('end')) for r in ip.findall('dhcp/range')]
        hosts = [dict(mac=h.get('mac'), name=h.get('name'), ip=h.get('ip')) for h in ip.findall('dhcp/host')]
        ips.append(dict(
            family=ip.get('family', 'ipv4'),
            address=ip.get('address'),
            netmask=ip.get('netmask'),
            prefix=_int(ip.get('prefix')),
            dhcp_ranges=ranges,
            dhcp_hosts=hosts,
        ))
    return dict(
        name=find_text(root, 'name'),
        uuid=find_text(root, 'uuid'),
        bridge=bridge.get('name') if bridge is not None else None,
        forward_mode=(forward.get('mode', 'nat') if forward is not None else 'isolated'),
        forward_dev=forward.get('dev') if forward is not None else None,
        domain=find_text(root, 'domain/@name'),
        mtu=_int(find_text(root, 'mtu/@size')),
        mac=find_text(root, 'mac/@address'),
        addresses=ips,
    )


def network_facts(client, net):
    with client.errors('network %s' % net.name()):
        facts = network_xml_facts(parse(net.XMLDesc(0), 'network XML'))
        facts.update(
            active=bool(net.isActive()),
            persistent=bool(net.isPersistent()),
            autostart=bool(net.autostart()) if net.isPersistent() else False,
        )
    return facts


# ---------------------------------------------------------------- storage
def volume_facts(client, vol):
    with client.errors('volume %s' % vol.name()):
        root = parse(vol.XMLDesc(0), 'volume XML')
        vtype, capacity, allocation = vol.info()
        backing = []
        node = root.find('backingStore')
        while node is not None and node.find('path') is not None:
            backing.append(dict(path=find_text(node, 'path'), format=find_text(node, 'format/@type')))
            node = node.find('backingStore')
        return dict(
            name=vol.name(),
            path=vol.path(),
            key=vol.key(),
            type=VOL_TYPES.get(vtype, 'unknown'),
            format=find_text(root, 'target/format/@type'),
            capacity=capacity,
            allocation=allocation,
            backing=backing,
        )


def pool_facts(client, pool, volumes=True):
    with client.errors('pool %s' % pool.name()):
        root = parse(pool.XMLDesc(0), 'pool XML')
        state, capacity, allocation, available = pool.info()
        active = bool(pool.isActive())
        facts = dict(
            name=pool.name(),
            uuid=pool.UUIDString(),
            type=root.get('type'),
            state=POOL_STATES.get(state, 'unknown'),
            active=active,
            persistent=bool(pool.isPersistent()),
            autostart=bool(pool.autostart()) if pool.isPersistent() else False,
            capacity=capacity,
            allocation=allocation,
            available=available,
            target_path=find_text(root, 'target/path'),
            source=dict(
                host=find_text(root, 'source/host/@name'),
                dir=find_text(root, 'source/dir/@path'),
                device=find_text(root, 'source/device/@path'),
                name=find_text(root, 'source/name'),
                format=find_text(root, 'source/format/@type'),
            ),
            volumes=[],
        )
        if volumes and active:
            facts['volumes'] = sorted((volume_facts(client, v) for v in pool.listAllVolumes(0) if _still_there(v)),
                                      key=lambda v: v['name'])
    return facts


def _still_there(vol):
    """False for a volume the pool still lists but whose file went away behind libvirt's back (removed by
    hand or by another program since the pool's last refresh): a read-only listing skips it, never fails."""
    try:
        vol.info()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True
