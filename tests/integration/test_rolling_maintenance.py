"""playbooks/rolling_maintenance.yml over three real hypervisors: the main host and two lab hosts.

A private lab instance (tests/lab/lab.sh host2 and host3, own names and addresses) shares
/var/lib/libvirt/images with the main host. One OS-less KVM guest per hypervisor (the main host's with a
qcow2 disk on the shared directory); a poller thread reads every guest's state on every hypervisor
throughout each run and counts the moments a guest was running nowhere. The maintenance hook asks libvirt
which selected guests run on the host it services, and records that.
"""

import json
import os
import re
import subprocess
import threading
import time

import pytest

import test_runner
from conftest import ROOT, _env, osless_virt_type, remove_guest
from lab_instance import private_lab

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'rolling_maintenance.yml')
IMAGES = '/var/lib/libvirt/images'
HOSTS = ('main', 'hv2', 'hv3')

GUEST = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{disk}<serial type='pty'/><memballoon model='none'/></devices>
</domain>
"""

DISK = """<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='{path}'/><target dev='vdb' bus='virtio'/></disk>"""

HOOK = """
- name: Ask libvirt which selected guests run on the host under maintenance
  kvmops.kvm.kvm_info:
    uri: "{{{{ rolling_host_uri }}}}"
    gather: [domains]
    name: ["{prefix}-*"]
    address_sources: []
  delegate_to: localhost
  register: hook_info

- name: Record the maintenance
  ansible.builtin.lineinfile:
    path: "{log}"
    line: >-
      {{{{ inventory_hostname }}}} moved={{{{ rolling_moved_guests | sort | join(',') }}}}
      running={{{{ hook_info.domains | selectattr('active') | map(attribute='name') | sort | join(',') }}}}
    create: true
    mode: "0600"
  delegate_to: localhost

- name: Fail on the second hypervisor when asked
  ansible.builtin.fail:
    msg: "maintenance of {{{{ inventory_hostname }}}} failed on purpose"
  when: inventory_hostname == "{fail_on}"
"""


def _libvirt():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


@pytest.fixture(scope='module')
def lab():
    with private_lab('kvmro', '10.254.79', '/var/lib/kvmops-lab-roll', 'kvmro-', 'host2', 'host3') as instance:
        yield instance


@pytest.fixture(scope='module')
def uris(lab):
    return dict(main='qemu:///system', hv2=lab.uri('host2'), hv3=lab.uri('host3'))


@pytest.fixture
def cluster(conn, uris, unique):
    """One persistent, running guest per hypervisor: name -> home host. The main host's guest has a disk in a
    directory of the shared images directory, which a pool on every hypervisor holds (shared storage)."""
    libvirt = _libvirt()
    conns = dict((host, libvirt.open(uri)) for host, uri in uris.items())
    shared = os.path.join(IMAGES, unique)
    os.mkdir(shared)
    os.chmod(shared, 0o755)
    disk = os.path.join(shared, 'main.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M'], check=True)
    os.chmod(disk, 0o666)
    pools = []
    homes = {}
    try:
        for host in HOSTS:
            pools.append(conns[host].storagePoolCreateXML(
                "<pool type='dir'><name>%s-shared</name><target><path>%s</path></target></pool>" % (unique, shared), 0))
        for host in HOSTS:
            name = '%s-%s' % (unique, host)
            xml = GUEST.format(virt_type=osless_virt_type(conns[host]), name=name,
                               disk=DISK.format(path=disk) if host == 'main' else '')
            conns[host].defineXML(xml).create()
            homes[name] = host
        yield dict(homes=homes, conns=conns, prefix=unique)
    finally:
        for name in homes:
            for handle in conns.values():
                remove_guest(handle, name)
        for pool in pools:
            try:
                pool.destroy()
            except libvirt.libvirtError:
                pass
        for handle in conns.values():
            handle.close()
        if os.path.exists(disk):
            os.unlink(disk)
        os.rmdir(shared)


class Poller(threading.Thread):
    """Reads every guest's state on every hypervisor until stopped: moments when a guest runs nowhere.

    The hypervisors are read one after the other, so one pass can miss a guest that moved between two
    reads (an RPC to a busy libvirtd can take seconds here). A pass that finds a guest nowhere is
    therefore followed at once by a second pass in the other order; only a guest found nowhere by both
    counts as down. A guest that is really off stays off far longer than two passes.
    """

    def __init__(self, uris, names):
        super(Poller, self).__init__(daemon=True)
        self.uris = uris
        self.names = set(names)
        self.samples = 0
        self.rechecks = 0
        self.down = []
        self.bad_states = []
        self.seen = dict((name, []) for name in names)
        self.errors = []
        self._stop_event = threading.Event()

    def _pass(self, libvirt, conns, order):
        """name -> [(host, state or None)] of the guests listed as active (a guest listed is active then,
        even when it is gone before its state is read)."""
        where = dict((name, []) for name in self.names)
        for host in order:
            try:
                doms = conns[host].listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            except libvirt.libvirtError as exc:
                self.errors.append('%s: %s' % (host, exc))
                continue
            for dom in doms:
                name = dom.name()
                if name not in where:
                    continue
                try:
                    state = dom.state()[0]
                except libvirt.libvirtError:
                    state = None
                where[name].append((host, state))
        return where

    def run(self):
        libvirt = _libvirt()
        order = list(self.uris)
        conns = dict((host, libvirt.open(uri)) for host, uri in self.uris.items())
        fine = (None, libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED)
        try:
            while not self._stop_event.is_set():
                where = self._pass(libvirt, conns, order)
                self.samples += 1
                missing = [name for name, places in where.items() if not places]
                if missing:
                    self.rechecks += 1
                    again = self._pass(libvirt, conns, list(reversed(order)))
                    for name in missing:
                        if again[name]:
                            where[name] = again[name]
                        else:
                            self.down.append((time.monotonic(), name))
                for name, places in where.items():
                    # a paused guest is the switch-over of a live migration (both ends paused for a moment)
                    self.bad_states.extend((name, h, state) for h, state in places if state not in fine)
                    running = [h for h, state in places if state == libvirt.VIR_DOMAIN_RUNNING]
                    hosts = running or [h for h, _state in places]
                    if hosts and (not self.seen[name] or self.seen[name][-1] != hosts[0]):
                        self.seen[name].append(hosts[0])
                time.sleep(0.05)
        finally:
            for handle in conns.values():
                handle.close()

    def stop(self):
        self._stop_event.set()
        self.join(30)


def inventory(tmp_path, uris):
    hosts = dict((host, dict(kvm_uri=uri)) for host, uri in uris.items())
    data = dict(all=dict(
        hosts=dict(localhost=dict(ansible_connection='local', ansible_python_interpreter='{{ ansible_playbook_python }}')),
        children=dict(rolllab=dict(hosts=hosts, vars=dict(
            ansible_connection='local', ansible_python_interpreter='{{ ansible_playbook_python }}')))))
    path = tmp_path / 'inventory.json'
    path.write_text(json.dumps(data))
    return str(path)


def roll(tmp_path, uris, prefix, fail_on='', check=False, **extra):
    log = tmp_path / ('hook-%s.log' % (fail_on or 'ok'))
    hook = tmp_path / ('hook-%s.yml' % (fail_on or 'ok'))
    hook.write_text(HOOK.format(prefix=prefix, log=str(log), fail_on=fail_on))
    extra_vars = dict(rolling_hosts='rolllab', rolling_guests='%s-*' % prefix, rolling_maintenance_dir=str(tmp_path),
                      rolling_maintenance_tasks=hook.name,
                      rolling_live_options='{"unsafe": true}', rolling_concurrency=2, rolling_verify_timeout=30)
    extra_vars.update(extra)
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), PLAYBOOK, '-i', inventory(tmp_path, uris),
           '-e', json.dumps(extra_vars)] + (['--check'] if check else [])
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    lines = log.read_text().splitlines() if log.exists() else []
    return proc, lines


def where_now(conns, name):
    libvirt = _libvirt()
    out = []
    for host, handle in conns.items():
        try:
            dom = handle.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            out.append((host, dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING))
    return out


def test_survey_matches_the_playbook():
    test_runner.test_survey_matches_the_playbook('rolling_maintenance')


def test_each_hypervisor_drained_serviced_and_restored_with_every_guest_running(tmp_path, uris, cluster):
    homes = cluster['homes']
    poller = Poller(uris, homes)
    poller.start()
    try:
        proc, hook_lines = roll(tmp_path, uris, cluster['prefix'])
    finally:
        poller.stop()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert not poller.errors, poller.errors[:5]
    assert poller.samples > 20
    assert poller.down == [], poller.down[:5]
    assert poller.bad_states == [], poller.bad_states[:5]
    # the hook ran once per hypervisor, in inventory order, each time with none of the guests on the host
    assert [line.split()[0] for line in hook_lines] == list(HOSTS), hook_lines
    for line, host in zip(hook_lines, HOSTS):
        own = [n for n, h in homes.items() if h == host]
        assert line == '%s moved=%s running=' % (host, ','.join(own)), hook_lines
    # every guest went away from its home and came back, and runs there now
    for name, home in homes.items():
        seen = poller.seen[name]
        assert seen[0] == home and seen[-1] == home and len(seen) >= 3, (name, seen)
        assert where_now(cluster['conns'], name) == [(home, True)], name


def test_a_failing_hook_stops_the_roll_at_that_host(tmp_path, uris, cluster):
    homes = cluster['homes']
    poller = Poller(uris, homes)
    poller.start()
    try:
        proc, hook_lines = roll(tmp_path, uris, cluster['prefix'], fail_on='hv2')
    finally:
        poller.stop()
    assert proc.returncode != 0
    assert 'rolling maintenance stopped at hv2 in step maintenance' in proc.stdout, proc.stdout[-4000:]
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert poller.down == [], poller.down[:5]
    assert poller.bad_states == [], poller.bad_states[:5]
    # main was serviced and restored, hv2 failed in its hook, hv3 was never touched
    assert [line.split()[0] for line in hook_lines] == ['main', 'hv2'], hook_lines
    by_home = dict((h, n) for n, h in homes.items())
    assert poller.seen[by_home['hv3']] == ['hv3']
    assert where_now(cluster['conns'], by_home['main']) == [('main', True)]
    assert where_now(cluster['conns'], by_home['hv3']) == [('hv3', True)]
    # hv2's guest runs on another hypervisor, where the drain put it
    moved = where_now(cluster['conns'], by_home['hv2'])
    assert len(moved) == 1 and moved[0][0] in ('main', 'hv3') and moved[0][1], moved


def test_a_cluster_that_cannot_take_the_guests_stops_before_anything_moves(tmp_path, uris, cluster):
    homes = cluster['homes']
    poller = Poller(uris, homes)
    poller.start()
    try:
        proc, hook_lines = roll(tmp_path, uris, cluster['prefix'], rolling_memory_reserve_mib=1048576)
    finally:
        poller.stop()
    assert proc.returncode != 0
    assert 'would overbook' in proc.stdout and 'rolling maintenance stopped at main in step plan' in proc.stdout, \
        proc.stdout[-4000:]
    assert hook_lines == []
    for name, home in homes.items():
        assert poller.seen[name] == [home], (name, poller.seen[name])


def test_check_mode_two_at_a_time_plans_the_batch_on_the_rest_and_moves_nothing(tmp_path, uris, cluster):
    """--check with rolling_max_unavailable=2: main and hv2 are serviced together, so both their guests are
    planned onto hv3, the only hypervisor outside the batch, then hv3's guest onto main or hv2; nothing moves."""
    homes = cluster['homes']
    poller = Poller(uris, homes)
    poller.start()
    try:
        proc, hook_lines = roll(tmp_path, uris, cluster['prefix'], check=True, rolling_max_unavailable=2)
    finally:
        poller.stop()
    assert proc.returncode == 0, proc.stdout[-4000:]
    for name, home in homes.items():
        assert poller.seen[name] == [home], (name, poller.seen[name])
        assert where_now(cluster['conns'], name) == [(home, True)]
        planned = set(re.findall(r'"%s": "([^"]+)"' % re.escape(name), proc.stdout))
        if home in ('main', 'hv2'):
            assert planned == {uris['hv3']}, (name, planned)
        else:
            assert planned and planned <= {uris['main'], uris['hv2']}, (name, planned)
    assert hook_lines == []      # lineinfile in check mode writes nothing


def test_the_poller_sees_a_guest_that_is_off(uris, cluster):
    """The poller can fail: a guest destroyed for a moment is counted as down."""
    homes = cluster['homes']
    name = [n for n, h in homes.items() if h == 'hv3'][0]
    poller = Poller(uris, homes)
    poller.start()
    try:
        time.sleep(1)
        dom = cluster['conns']['hv3'].lookupByName(name)
        dom.destroy()
        time.sleep(1)
        dom.create()
        time.sleep(1)
    finally:
        poller.stop()
    assert poller.down and set(n for _moment, n in poller.down) == {name}


def test_bad_answers_are_refused_before_anything_runs(tmp_path, uris):
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), PLAYBOOK, '-i', inventory(tmp_path, uris),
           '-e', json.dumps(dict(rolling_hosts='rolllab', rolling_max_unavailable=3, rolling_guests='a b',
                                 rolling_maintenance_tasks='/etc/x.yml', rolling_live_options='{"nope": 1}'))]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    out = proc.stdout
    for word in ('rolling_max_unavailable: a whole number from 1 to one less', 'rolling_guests:',
                 'rolling_maintenance_tasks:'):
        assert word in out, out[-3000:]
    assert 'Roll through the hypervisors' not in out
    cmd[-1] = json.dumps(dict(rolling_hosts='rolllab', rolling_maintenance_tasks='hooks/../../x.yml'))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and 'rolling_maintenance_tasks: empty, or the relative path' in proc.stdout, proc.stdout[-3000:]
    cmd[-1] = json.dumps(dict(rolling_hosts='rolllab', rolling_maintenance_tasks='no-such-hook.yml'))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and 'rolling_maintenance_tasks: no such file on the controller' in proc.stdout, \
        proc.stdout[-3000:]
