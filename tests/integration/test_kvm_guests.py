"""kvm_guests against the real local libvirtd: four OS-less guests (KVM) in one task.

One test, five runs of one task at -vvv with --diff (check, real, real again, check again, and
unlisted: undefine in check mode), each result read back from libvirt, not from what the module says:

* check mode defines nothing; the real run defines and starts the four guests (read back with
  libvirt: active, memory, the VNC password in the secure XML); the second run reports changed=false
  for the task and for each guest and writes nothing (the definitions are unchanged);
* one bad guest spec (an unknown network) fails only that guest: the four others converge, and the
  task fails at the end with a message naming it;
* a guest of this test that the list does not name is reported in ``unlisted`` and left alone, also
  by ``unlisted: undefine`` in check mode;
* the graphics password never appears in the output (-vvv, --diff, check and real).
"""

import json
import os
import subprocess
import uuid

from conftest import ROOT, _env, osless_virt_type, remove_guest

PASSWORD = 'Fl3et%s' % uuid.uuid4().hex[:3]   # VNC passwords are at most 8 characters


def _libvirt():
    import libvirt
    return libvirt


def run_fleet(tmp_path, task, check=False):
    """One kvm_guests task at -vvv with --diff: (registered result, the whole output)."""
    result_file = tmp_path / ('result-%s.json' % uuid.uuid4().hex[:8])
    play = [dict(hosts='localhost', gather_facts=False, tasks=[
        {'name': 'fleet', 'kvmops.kvm.kvm_guests': task, 'register': 'r', 'ignore_errors': True},
        {'name': 'keep the result', 'delegate_to': 'localhost', 'check_mode': False, 'diff': False,
         'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': str(result_file), 'mode': '0600'}}])]
    path = tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:8])
    path.write_text(json.dumps(play))
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), str(path), '-vvv', '--diff',
           '-i', os.path.join(ROOT, 'inventory', 'localhost.yml')] + (['--check'] if check else [])
    proc = subprocess.run(cmd, env=_env(dict(ANSIBLE_STDOUT_CALLBACK='default')), capture_output=True, text=True,
                          timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'Traceback' not in output, output[-4000:]
    assert PASSWORD not in output, 'the graphics password is in the output%s' % (' (check mode)' if check else '')
    return json.loads(result_file.read_text()), output


def _defined(conn, name):
    try:
        return conn.lookupByName(name)
    except _libvirt().libvirtError:
        return None


def test_four_guests_in_one_task(conn, unique, tmp_path):
    names = ['%s-%d' % (unique, index) for index in range(4)]
    bad, other = unique + '-bad', unique + '-other'
    virt_type = osless_virt_type(conn)
    defaults = dict(memory='64MiB', vcpus=1, virt_type=virt_type, state='running',
                    graphics=dict(type='vnc', password=PASSWORD))
    guests = [dict(name=names[0]), dict(name=names[1], memory='80MiB'), dict(name=names[2]), dict(name=names[3]),
              dict(name=bad, interfaces=[dict(source='kvmops-no-such-network')])]
    task = dict(defaults=defaults, guests=guests, concurrency=4)
    try:
        # a guest of this host that the list does not name (defined directly, not running)
        conn.defineXML("<domain type='%s'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
                       "<os><type arch='x86_64'>hvm</type></os></domain>" % (virt_type, other))

        check, _out = run_fleet(tmp_path, task, check=True)
        assert check['failed'] is True and [r['changed'] for r in check['results']] == [True] * 4 + [False]
        assert all(_defined(conn, name) is None for name in names + [bad]), 'check mode defined a guest'
        assert len(check['diff']) == 4

        real, _out = run_fleet(tmp_path, task)
        assert real['failed'] is True and real['changed'] is True
        assert real['msg'].startswith('1 guest(s) failed: guest %s: interfaces[0].source: unknown network' % bad), real['msg']
        [failed] = [r for r in real['results'] if r.get('failed')]
        assert failed['name'] == bad and failed['changed'] is False and _defined(conn, bad) is None
        for name, result in zip(names, real['results']):
            dom = _defined(conn, name)
            assert dom is not None and dom.isActive() and dom.isPersistent(), name
            assert result['name'] == name and result['changed'] is True and result['domain']['state'] == 'running'
            secure = dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_SECURE).replace('"', "'")
            assert "passwd='%s'" % PASSWORD in secure, 'the password reached libvirt'
        assert _defined(conn, names[1]).maxMemory() == 80 * 1024 and _defined(conn, names[0]).maxMemory() == 64 * 1024
        unlisted = [u['name'] for u in real['unlisted']]
        assert other in unlisted and not set(names) & set(unlisted)

        before = dict((name, _defined(conn, name).XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE)) for name in names)
        good = dict(task, guests=guests[:4])
        again, _out = run_fleet(tmp_path, good)
        assert not again.get('failed') and again['changed'] is False
        assert [(r['name'], r['changed'], r['changes']) for r in again['results']] == [(n, False, []) for n in names]
        assert all(_defined(conn, n).XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE) == before[n] for n in names)
        [entry] = [u for u in again['unlisted'] if u['name'] == other]
        assert entry == dict(name=other, state='shutoff', persistent=True)

        recheck, _out = run_fleet(tmp_path, good, check=True)
        assert recheck['changed'] is False and all(r['changed'] is False for r in recheck['results'])

        # undefine in check mode: says it would undefine the unlisted guest (and the other guests of this host),
        # and changes nothing
        sweep, _out = run_fleet(tmp_path, dict(good, unlisted='undefine'), check=True)
        [entry] = [u for u in sweep['unlisted'] if u['name'] == other]
        assert entry['changed'] is True and [c['action'] for c in entry['changes']] == ['undefine']
        assert _defined(conn, other) is not None and all(_defined(conn, n).isActive() for n in names)
    finally:
        for name in names + [bad, other]:
            remove_guest(conn, name)
