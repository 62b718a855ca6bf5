"""Guest addresses (issue 17): kvm_domain's wait_for, kvm_info's addresses and the inventory, on one REAL guest.

The guest runs an OS (busybox_guest: Debian's kernel and a busybox initramfs, TCG), takes a DHCP lease
from a libvirt NAT network this module creates (its own name, bridge and /24; removed afterwards) and
then serves TCP port 22 (busybox httpd). One guest serves every test: it is created by the first
kvm_domain task, whose wait_for must return the lease address only once port 22 accepts connections.
The address is checked against what ``virsh net-dhcp-leases`` says, and port 22 is connected to by
the test itself.
"""

import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid

import pytest

import busybox_guest
from conftest import ROOT, URI, _env, one_task_play, plain, remove_guest, run_playbook

INVENTORY = os.path.join(ROOT, '.venv', 'bin', 'ansible-inventory')
NETWORK = """<network>
  <name>{name}</name>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='off'/>
  <ip address='{prefix}.1' netmask='255.255.255.0'>
    <dhcp><range start='{prefix}.100' end='{prefix}.150'/></dhcp>
  </ip>
</network>"""
LOOP = 'while :; do sleep 3600; done'
INIT = busybox_guest.NET_INIT.replace(LOOP, 'httpd -p 22 -h /tmp && echo "kvmops-guest: port 22"\n' + LOOP)
BOOT_WAIT = 300   # TCG boot, udhcpc, httpd; about 30 s on an idle host


def free_prefix():
    """A /24 under 10.217.0.0/16 that no route on this machine uses."""
    routes = subprocess.run(['ip', '-4', 'route', 'show', 'table', 'all'], capture_output=True, text=True,
                            check=True).stdout
    for _attempt in range(50):
        prefix = '10.217.%d' % random.randint(1, 254)
        if prefix + '.' not in routes:
            return prefix
    pytest.skip('no free 10.217.x.0/24 for a test network')


def virsh_lease(network, mac):
    """The IPv4 address ``virsh net-dhcp-leases`` lists for ``mac`` (None when it lists none)."""
    out = subprocess.run(['virsh', '-c', URI, 'net-dhcp-leases', network, '--mac', mac], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if mac in fields and 'ipv4' in fields:
            return fields[fields.index('ipv4') + 1].split('/')[0]
    return None


def domain_task(tmp_path, args, check=False):
    started = time.monotonic()
    result = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain'), check=check)
    task = result.task('domain')
    assert 'Traceback' not in result.stdout + result.stderr
    return task, time.monotonic() - started


@pytest.fixture(scope='module')
def world(conn, tmp_path_factory):
    """The network and the guest, created by kvm_domain with wait_for (its task result is in ``created``)."""
    hexid = uuid.uuid4().hex[:6]
    name = 'kvmops-it-addr-%s' % hexid
    prefix = free_prefix()
    directory = os.path.join('/var/lib/libvirt/images', name)
    net = None
    try:
        boot = busybox_guest.build(directory, init=INIT)
        assert INIT != busybox_guest.NET_INIT
        net = conn.networkCreateXML(NETWORK.format(name=name, bridge='kva%s' % hexid, prefix=prefix))
        args = dict(name=name, state='running', memory='128MiB', vcpus=1, virt_type='auto', kernel=boot['kernel'],
                    initrd=boot['initrd'], cmdline='console=ttyS0 quiet net.ifnames=0', graphics=dict(type='none'),
                    interfaces=[dict(source=name)],
                    wait_for=dict(source=['lease'], port=22, timeout=BOOT_WAIT))
        created, seconds = domain_task(tmp_path_factory.mktemp('addr'), args)
        print('\nkvm_domain created %s and waited for port 22 at its lease: %.0f s' % (name, seconds))
        yield dict(name=name, network=name, prefix=prefix, args=args, created=created)
    finally:
        remove_guest(conn, name)
        if net is not None:
            try:
                net.destroy()
            except Exception:  # pylint: disable=broad-except
                pass
        shutil.rmtree(directory, ignore_errors=True)


def test_wait_for_returns_the_lease_once_the_port_answers(world):
    created = world['created']
    assert not created.get('failed'), created.get('msg')
    assert created['changed'] is True and created['domain']['state'] == 'running'
    mac = created['domain']['interfaces'][0]['mac']
    leased = virsh_lease(world['network'], mac)
    assert leased is not None and leased.startswith(world['prefix'] + '.')
    assert (created['address'], created['address_source']) == (leased, 'lease')
    assert [(a['address'], a['mac'], a['family'], a['prefix']) for a in created['domain']['addresses']] == [
        (leased, mac, 'ipv4', 24)]
    # the port wait was real: the guest accepts a connection on port 22 from this host
    socket.create_connection((leased, 22), timeout=10).close()


def test_a_port_nothing_listens_on_fails_at_the_timeout_naming_it(world, tmp_path):
    args = dict(name=world['name'], state='running', wait_for=dict(port=23, timeout=4))
    task, seconds = domain_task(tmp_path, args)
    leased = world['created']['address']
    assert task.get('failed') is True and task['changed'] is False
    assert task['msg'] == ('wait_for: guest %s has the address %s (lease) but nothing accepted a TCP connection on '
                           'port 23 from this host within 4 s (%s: Connection refused)' % (world['name'], leased, leased))
    assert task['domain']['name'] == world['name'] and task['changes'] == []
    assert seconds < 60
    # check mode looks once and never waits: the same task succeeds, without waiting for the port
    task, seconds = domain_task(tmp_path, dict(args, wait_for=dict(port=23, timeout=600)), check=True)
    assert not task.get('failed'), task.get('msg')
    assert task['changed'] is False and task['address'] == leased and seconds < 60


def test_kvm_info_returns_the_same_addresses(world, tmp_path):
    leased = world['created']['address']
    mac = world['created']['domain']['interfaces'][0]['mac']
    result = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_info', dict(gather=['domains'], name=[world['name']]),
                                        'info'))
    domain = result.task('info')['domains'][0]
    by_source = dict((a['source'], a) for a in domain['addresses'])
    assert by_source['lease'] == world['created']['domain']['addresses'][0]
    # this host has talked to the guest (the port waits): its neighbour table knows the address too
    assert (by_source['arp']['address'], by_source['arp']['mac']) == (leased, mac)
    assert sorted(by_source) == ['arp', 'lease']
    assert 'agent' in domain['address_errors']   # no guest agent channel: the source says why


def test_the_inventory_reads_the_same_address(world, tmp_path):
    config = tmp_path / 'kvm.libvirt.yml'
    config.write_text('plugin: kvmops.kvm.libvirt\nuris: [%s]\nnames: [%s]\naddress_sources: [lease]\n'
                      % (json.dumps(URI), json.dumps(world['name'])))
    proc = subprocess.run([INVENTORY, '-i', str(config), '--list'], capture_output=True, text=True, timeout=300,
                          check=False, env=_env({'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}))
    assert proc.returncode == 0, proc.stderr
    hostvars = plain(json.loads(proc.stdout)['_meta']['hostvars'][world['name']])   # marked unsafe from 2.19 on
    assert hostvars['ansible_host'] == world['created']['address']
    assert hostvars['libvirt_address_source'] == 'lease'
