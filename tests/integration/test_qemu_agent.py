"""The kvmops.kvm.qemu_agent connection plugin against a REAL Debian guest (TCG) and its qemu-guest-agent.

One guest is booted for the module from the repository's Debian image (tests/lab/image.sh), as
test_kvm_domain.test_walkthrough_linux_guest boots one: kernel, initrd and command line, a qcow2 overlay,
the `default` network and ``guest_agent: true``. It is never reached over the network: every task of the
play goes through the agent. The refusals use OS-less guests (no OS, so no agent) and a missing guest.
"""

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, URI, _env, one_task_play, osless_virt_type, remove_guest, run_playbook
from test_kvm_domain import TEST_ROOT, _image_paths

PLAYBOOK = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
CONNECTION = 'kvmops.kvm.qemu_agent'

OSLESS = """
<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    {channel}
    <memballoon model='none'/>
  </devices>
</domain>
"""
AGENT_CHANNEL = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"


def _agent_ping(conn, name):
    import libvirt
    import libvirt_qemu
    try:
        libvirt_qemu.qemuAgentCommand(conn.lookupByName(name), '{"execute": "guest-ping"}', 10, 0)
        return True
    except libvirt.libvirtError:
        return False


@pytest.fixture(scope='module')
def linux_guest(conn, tmp_path_factory):
    """A running Debian guest with a connected guest agent: its name. Removed (with its overlay) afterwards.

    KVMOPS_QGA_GUEST names an already running guest with an agent to use instead (left alone), for development.
    """
    if os.environ.get('KVMOPS_QGA_GUEST'):
        yield os.environ['KVMOPS_QGA_GUEST']
        return
    paths = _image_paths()
    if paths is None:
        pytest.skip('the Debian test image is not built (bash tests/lab/image.sh build)')
    import libvirt
    net = conn.networkLookupByName('default')
    net_was_active = bool(net.isActive())
    name = 'kvmops-it-qga-%s' % uuid.uuid4().hex[:8]
    directory = os.path.join(TEST_ROOT, name)
    os.makedirs(directory)
    try:
        if not net_was_active:
            net.create()
        started = time.time()
        args = dict(name=name, virt_type='auto', memory='512MiB', vcpus=1, kernel=paths['KVMOPS_IMAGE_KERNEL'],
                    initrd=paths['KVMOPS_IMAGE_INITRD'], cmdline=paths['KVMOPS_IMAGE_CMDLINE'],
                    disks=[dict(path=os.path.join(directory, 'root.qcow2'), backing=paths['KVMOPS_IMAGE_BASE'])],
                    interfaces=[dict(source='default')], guest_agent=True, state='running')
        result = run_playbook(one_task_play(tmp_path_factory.mktemp('boot'), 'kvmops.kvm.kvm_domain', args, 'domain'))
        task = result.task('domain')
        assert not task.get('failed'), task.get('msg')
        # TCG boot to a running agent: about 2 minutes on an idle 2-CPU host, much more under load.
        deadline = time.time() + 900
        while not _agent_ping(conn, name):
            assert time.time() < deadline, 'the guest agent of %s did not answer within 900 s' % name
            time.sleep(3)
        print('\nboot to a connected guest agent (TCG): %.0f s' % (time.time() - started))
        yield name
    finally:
        remove_guest(conn, name)
        shutil.rmtree(directory, ignore_errors=True)
        if not net_was_active:
            try:
                net.destroy()
            except libvirt.libvirtError:
                pass


def play(tmp_path, hosts, tasks, env=None, timeout=1800):
    """Run one play over ``hosts`` ({name: hostvars}) through the plugin: (per-task results by name, proc)."""
    inventory = tmp_path / ('inventory-%s.json' % uuid.uuid4().hex[:8])
    inventory.write_text(json.dumps({'all': {'hosts': hosts, 'vars': {
        'ansible_connection': CONNECTION, 'ansible_libvirt_uri': URI,
        'ansible_python_interpreter': '/usr/bin/python3'}}}))
    path = tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps([dict(hosts='all', gather_facts=False, tasks=tasks)], indent=1))
    proc = subprocess.run([PLAYBOOK, str(path), '-i', str(inventory)], capture_output=True, text=True, timeout=timeout,
                          check=False, env=_env(dict(dict(ANSIBLE_STDOUT_CALLBACK='kvmops_test_json'), **(env or {}))))
    try:
        data = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        raise AssertionError('no JSON from ansible-playbook: %s' % (proc.stdout + proc.stderr)[-4000:]) from None
    results = {}
    for task in data['plays'][0]['tasks']:
        for host, result in task['hosts'].items():
            results.setdefault(host, {})[task['task']['name']] = result
    return results, proc


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def test_tasks_run_in_a_real_guest_through_the_agent(linux_guest, tmp_path):
    work = '/root/kvmops-qga-%s' % uuid.uuid4().hex[:8]
    marker = tmp_path / 'templated-marker'
    upload = tmp_path / 'upload.bin'
    upload.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    fetched = tmp_path / 'fetched'
    fetched.mkdir()
    content = u'line one\ncaf\u00e9 \\n $HOME `id` \'q\' "dq"\n'
    # The guest prints a Jinja expression (built from octal escapes, so the task itself holds none): it must
    # come back as text, and templating it later must not run it.
    lookup_octal = ''.join('\\%03o' % ord(ch) for ch in "{{ lookup('pipe', 'touch %s') }}" % marker)
    tasks = [
        dict(name='command', **{'ansible.builtin.command': dict(argv=['sh', '-c', 'echo hello; id -un; echo "$0" "$1"',
                                                                      'zero', 'one two; $(reboot)'])}),
        dict(name='failing', ignore_errors=True, **{'ansible.builtin.command': "sh -c 'echo oops >&2; exit 3'"}),
        dict(name='make blob', **{'ansible.builtin.command': dict(argv=[
            'sh', '-c', 'mkdir -p "$1" && cd "$1" && head -c 4194307 /dev/urandom >blob.bin && sha256sum blob.bin && '
            'stat -c %s blob.bin', 'sh', work])}),
        dict(name='copy content', **{'ansible.builtin.copy': dict(content=content, dest=work + '/copied.txt', mode='0640')}),
        dict(name='copy binary', **{'ansible.builtin.copy': dict(src=str(upload), dest=work + '/upload.bin', mode='0600')}),
        dict(name='check copies', **{'ansible.builtin.command': dict(
            argv=['sh', '-c', 'cat copied.txt; stat -c %a copied.txt; sha256sum upload.bin'], chdir=work)}),
        dict(name='fetch blob', **{'ansible.builtin.fetch': dict(src=work + '/blob.bin', dest=str(fetched) + '/', flat=True)}),
        dict(name='stat', **{'ansible.builtin.stat': dict(path=work + '/blob.bin', checksum_algorithm='sha256')}),
        dict(name='become', become=True, become_user='nobody', **{'ansible.builtin.command': 'id -un'}),
        dict(name='pipelined become', become=True, become_user='nobody', vars=dict(ansible_pipelining=True),
             **{'ansible.builtin.command': 'id -un'}),
        dict(name='untrusted output', register='untrusted', **{'ansible.builtin.command': dict(argv=['printf', lookup_octal])}),
        dict(name='template untrusted', **{'ansible.builtin.debug': dict(msg='{{ untrusted.stdout }}')}),
        dict(name='cleanup', **{'ansible.builtin.raw': 'rm -rf -- ' + work}),
    ]
    started = time.time()
    results, proc = play(tmp_path, {linux_guest: {}}, tasks)
    print('\nplay of %d tasks through the agent: %.0f s' % (len(tasks), time.time() - started))
    res = results[linux_guest]
    assert proc.returncode == 0 and 'Traceback' not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]

    cmd = res['command']
    assert cmd['rc'] == 0 and cmd['stdout'] == 'hello\nroot\nzero one two; $(reboot)', cmd
    bad = res['failing']
    assert bad['failed'] and bad['rc'] == 3 and bad['stderr'] == 'oops', bad

    assert res['copy content']['changed'] and res['copy binary']['changed']
    check = res['check copies']['stdout'].splitlines()
    assert '\n'.join(check[:2]) == content.rstrip('\n'), check
    assert check[2] == '640'
    assert check[3].split()[0] == sha256(upload), 'put_file is binary-safe'

    blob_sum, blob_size = res['make blob']['stdout'].split()[0], int(res['make blob']['stdout'].splitlines()[1])
    assert res['fetch blob']['changed'] and blob_size == 4194307
    assert os.path.getsize(fetched / 'blob.bin') == blob_size and sha256(fetched / 'blob.bin') == blob_sum

    stat = res['stat']['stat']
    assert stat['exists'] and stat['size'] == blob_size and stat['checksum'] == blob_sum and stat['pw_name'] == 'root'

    assert res['become']['stdout'] == 'nobody', res['become']
    assert res['pipelined become']['stdout'] == 'nobody', res['pipelined become']

    assert res['untrusted output']['stdout'] == "{{ lookup('pipe', 'touch %s') }}" % marker
    assert res['template untrusted']['msg'] == "{{ lookup('pipe', 'touch %s') }}" % marker
    assert not marker.exists(), 'output from the guest was templated'
    assert res['cleanup']['rc'] == 0


def test_command_timeout(linux_guest, tmp_path):
    tasks = [dict(name='slow', ignore_unreachable=True, vars=dict(ansible_qemu_agent_command_timeout=3),
                  **{'ansible.builtin.raw': 'sleep 30'})]
    started = time.time()
    results, _proc = play(tmp_path, {linux_guest: {}}, tasks)
    slow = results[linux_guest]['slow']
    assert slow.get('unreachable') and 'did not exit within command_timeout (3 s)' in slow['msg'], slow
    assert time.time() - started < 28


def test_refusals(conn, linux_guest, tmp_path):
    """A guest without an agent channel, one whose agent does not answer, a missing guest, a shut-off guest."""
    prefix = 'kvmops-it-qga-%s' % uuid.uuid4().hex[:6]
    bare, silent, missing = prefix + '-bare', prefix + '-silent', prefix + '-missing'
    virt_type = osless_virt_type(conn)
    try:
        for name, channel in ((bare, ''), (silent, AGENT_CHANNEL)):
            remove_guest(conn, name)
            conn.defineXML(OSLESS.format(virt_type=virt_type, name=name, channel=channel)).create()
        tasks = [dict(name='ping', **{'ansible.builtin.raw': 'true'})]
        results, _proc = play(tmp_path, {bare: {}, silent: {}, missing: {}}, tasks)
        msgs = dict((host, results[host]['ping'].get('msg', '')) for host in (bare, silent, missing))
        assert all(results[host]['ping'].get('unreachable') for host in msgs), results
        assert 'has no guest agent channel; define it with guest_agent: true' in msgs[bare], msgs[bare]
        assert 'QEMU guest agent is not configured' in msgs[bare]     # libvirt's own words
        assert 'the guest agent is not connected or not answering' in msgs[silent], msgs[silent]
        assert 'QEMU guest agent is not connected' in msgs[silent]
        assert 'guest %s on %s: no such guest' % (missing, URI) in msgs[missing], msgs[missing]

        conn.lookupByName(bare).destroy()
        results, _proc = play(tmp_path, {bare: {}}, tasks)
        assert 'guest %s on %s is not running' % (bare, URI) in results[bare]['ping']['msg']

        # Bad names and URIs are refused before libvirt is asked.
        results, _proc = play(tmp_path, {'bad-uri': {'ansible_libvirt_uri': 'qemu+ext:///system?command=/bin/id',
                                                     'ansible_libvirt_guest': linux_guest}}, tasks)
        assert 'uri: the ext transport' in results['bad-uri']['ping']['msg']
    finally:
        remove_guest(conn, bare)
        remove_guest(conn, silent)


def test_through_the_libvirt_inventory(linux_guest, tmp_path):
    """agent_connection: true in the kvmops.kvm.libvirt inventory reaches the guest through its agent."""
    config = tmp_path / 'kvm.libvirt.yml'
    config.write_text('plugin: kvmops.kvm.libvirt\nuris: [%s]\nnames: [%s]\naddress_sources: [lease]\n'
                      'agent_connection: true\n' % (json.dumps(URI), json.dumps(linux_guest)))
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps([dict(hosts='libvirt_guests', gather_facts=False, tasks=[
        dict(name='raw', **{'ansible.builtin.raw': 'id -un; cat /etc/hostname'})])]))
    proc = subprocess.run([PLAYBOOK, str(path), '-i', str(config)], capture_output=True, text=True, timeout=900,
                          check=False, env=_env(dict(ANSIBLE_STDOUT_CALLBACK='kvmops_test_json',
                                                     ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED='true')))
    data = json.loads(proc.stdout[proc.stdout.index('{'):])
    raw = data['plays'][0]['tasks'][0]['hosts'][linux_guest]
    assert raw['rc'] == 0 and raw['stdout_lines'][:2] == ['root', 'kvmops-guest'], raw


def test_kvm_domain_waits_for_the_agent_and_the_lease_address(conn, linux_guest, tmp_path):
    """kvm_domain wait_for on this real guest (issue 17): the agent source and the lease source each give its address."""
    import libvirt_qemu
    found = {}
    for source in ('agent', 'lease'):
        args = dict(name=linux_guest, state='running', wait_for=dict(sources=[source], timeout=300))
        task = run_playbook(one_task_play(tmp_path, 'kvmops.kvm.kvm_domain', args, 'domain')).task('domain')
        assert not task.get('failed'), task.get('msg')
        assert task['changed'] is False and task['address_source'] == source
        found[source] = task
    # the agent's own answer, asked directly: the guest's eth0 holds the address the agent source gave
    reply = json.loads(libvirt_qemu.qemuAgentCommand(conn.lookupByName(linux_guest),
                                                     '{"execute": "guest-network-get-interfaces"}', 30, 0))
    guest_ips = dict((i['name'], [a['ip-address'] for a in i.get('ip-addresses', []) if a['ip-address-type'] == 'ipv4'])
                     for i in reply['return'])
    assert found['agent']['address'] in guest_ips['eth0'], guest_ips
    agent_entries = [a for a in found['agent']['domain']['addresses'] if a['source'] == 'agent']
    assert set(a['interface'] for a in agent_entries) >= {'lo', 'eth0'}   # the guest's own interface names
    # the lease source gives what virsh net-dhcp-leases lists for the guest's MAC: the same address
    mac = found['lease']['domain']['interfaces'][0]['mac']
    leases = subprocess.run(['virsh', '-c', URI, 'net-dhcp-leases', found['lease']['domain']['interfaces'][0]['source'],
                             '--mac', mac], capture_output=True, text=True, timeout=60, check=True).stdout
    assert '%s/' % found['lease']['address'] in leases, leases
    assert found['lease']['address'] == found['agent']['address']
