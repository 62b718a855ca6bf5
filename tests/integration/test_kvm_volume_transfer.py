"""kvm_volume import_from (URL, local file, another volume) with checksum, and export_to, against the real libvirtd.

The plain-HTTP server runs in a network namespace the test creates (a veth pair with a private /30 from
10.254.90.0/24 that no interface of the main host uses), bound to the namespace's address, as a separate
process that logs every GET, so the requests per path are counted from outside the module's process. An HTTPS
server (self-signed certificate) on 127.0.0.1, in a thread of the test, serves the same files. Both serve an
image and a SHA256SUMS file; the volumes are read back from the pool's directory.
"""

import hashlib
import http.server
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from storage_helpers import expect_failure, run_task, write_play

BASE = '/var/lib/kvmops-test'
MIB = 1024 * 1024

VOLUME = """
- name: t
  kvmops.kvm.kvm_volume:
    pool: "{{ pool }}"
    name: "{{ name }}"
    capacity: "{{ capacity | default(omit) }}"
    format: "{{ format | default(omit) }}"
    import_from: "{{ import_from | default(omit) }}"
    checksum: "{{ checksum | default(omit) }}"
    validate_certs: "{{ validate_certs | default(omit) }}"
    export_to: "{{ export_to | default(omit) }}"
    export_mode: "{{ export_mode | default(omit) }}"
    force: "{{ force | default(omit) }}"
"""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Server(object):
    """A static file server on 127.0.0.1 (http, or https with ``certfile``) that counts GETs per path."""

    def __init__(self, root, certfile=None):
        counts = self.counts = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)

            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                return super().do_GET()

            def log_message(self, *_args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        scheme = 'http'
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = 'https'
        self.url = '%s://127.0.0.1:%d' % (scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


NS_PREFIX = 'kvmops-http-'
NS_RANGE = ipaddress.ip_network('10.254.90.0/24')
STALE_AFTER = 600   # seconds: a netns of ours this old with no process in it is a leftover of an interrupted run

# Runs inside the namespace: serve ROOT on ADDRESS (any free port), one line per GET in LOG (flushed before the
# response, so a finished download is always counted), the port written to PORTFILE once listening.
SERVER_SCRIPT = """
import http.server, os, sys, threading
root, address, log, portfile = sys.argv[1:5]
out = open(log, 'a', buffering=1)
lock = threading.Lock()


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)

    def do_GET(self):
        with lock:
            out.write('GET %s\\n' % self.path)
            out.flush()
        return super().do_GET()

    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
with open(portfile + '.tmp', 'w') as handle:
    handle.write(str(httpd.server_address[1]))
os.rename(portfile + '.tmp', portfile)
httpd.serve_forever()
"""


def _ip(*args, check=True):
    return subprocess.run(['ip'] + list(args), capture_output=True, text=True, check=check, timeout=30)


def _remove_netns(name, veth):
    """Delete a netns and the host end of its veth pair, whatever of them exists (no error when gone)."""
    _ip('netns', 'del', name, check=False)
    if os.path.exists('/sys/class/net/' + veth):
        _ip('link', 'del', veth, check=False)


def _remove_stale_netns():
    """Leftovers of an interrupted run of this test: a kvmops-http-* netns, old, with no process left in it."""
    for name in os.listdir('/run/netns') if os.path.isdir('/run/netns') else []:
        tag = name[len(NS_PREFIX):]
        if not name.startswith(NS_PREFIX) or len(tag) != 6 or tag.strip('0123456789abcdef'):
            continue
        try:
            age = time.time() - os.stat(os.path.join('/run/netns', name)).st_mtime
        except OSError:
            continue
        if age > STALE_AFTER and not _ip('netns', 'pids', name, check=False).stdout.strip():
            _remove_netns(name, 'kvh%sh' % tag)


def _free_subnet():
    """A /30 of NS_RANGE that overlaps no address or route of the main host (another run's pair included)."""
    used = []
    for line in (_ip('-4', '-o', 'addr', 'show').stdout + _ip('-4', 'route', 'show', 'table', 'all').stdout).splitlines():
        for word in line.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    free = [net for net in NS_RANGE.subnets(new_prefix=30) if not any(net.overlaps(u) for u in used if u.prefixlen)]
    assert free, 'no free /30 left in %s' % NS_RANGE
    return free[int(uuid.uuid4().hex, 16) % len(free)]


class NetnsServer(object):
    """A static file server in a netns of its own, bound to the namespace's address; counts GETs per path.

    The namespace's end of the veth pair gets the /30's second address, the main host's end the first one.
    """

    def __init__(self, root, workdir):
        tag = uuid.uuid4().hex[:6]
        self.netns, self.veth = NS_PREFIX + tag, 'kvh%sh' % tag
        peer = 'kvh%sn' % tag
        _remove_stale_netns()
        _remove_netns(self.netns, self.veth)
        self.proc = None
        try:
            net = _free_subnet()
            host, inside = list(net.hosts())
            _ip('netns', 'add', self.netns)
            _ip('link', 'add', self.veth, 'type', 'veth', 'peer', 'name', peer)
            _ip('link', 'set', peer, 'netns', self.netns)
            _ip('addr', 'add', '%s/30' % host, 'dev', self.veth)
            _ip('link', 'set', self.veth, 'up')
            _ip('-n', self.netns, 'addr', 'add', '%s/30' % inside, 'dev', peer)
            _ip('-n', self.netns, 'link', 'set', peer, 'up')
            _ip('-n', self.netns, 'link', 'set', 'lo', 'up')
            script = os.path.join(workdir, 'server.py')
            with open(script, 'w') as handle:
                handle.write(SERVER_SCRIPT)
            self.log = os.path.join(workdir, 'requests.log')
            portfile = os.path.join(workdir, 'port')
            self.stderr = open(os.path.join(workdir, 'server.err'), 'w+')
            self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.netns, sys.executable, script, root, str(inside),
                                          self.log, portfile], stdout=subprocess.DEVNULL, stderr=self.stderr)
            self.url = self._wait_ready(str(inside), portfile)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, address, portfile, timeout=20):
        """Poll until the server answers across the veth pair (a loaded machine may take a while)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                raise AssertionError('the HTTP server in netns %s exited: %s' % (self.netns, self.stderr.read()[-2000:]))
            if os.path.exists(portfile):
                with open(portfile) as handle:
                    url = 'http://%s:%s' % (address, handle.read().strip())
                try:
                    opener.open(url + '/__ready__', timeout=1).close()
                    return url
                except urllib.error.HTTPError:
                    return url      # a 404 is an answer
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError('the HTTP server in netns %s did not answer within %d s' % (self.netns, timeout))
            time.sleep(0.2)

    @property
    def counts(self):
        counts = {}
        with open(self.log) as handle:
            for line in handle:
                path = line.split(' ', 1)[1].rstrip('\n')
                counts[path] = counts.get(path, 0) + 1
        return counts

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.stderr.close()
        _remove_netns(self.netns, self.veth)


@pytest.fixture
def pool(conn, unique):
    import libvirt
    path = os.path.join(BASE, unique)
    os.makedirs(path)
    obj = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (unique, path), 0)
    obj.create(0)
    try:
        yield dict(name=unique, path=path, pool=obj)
    finally:
        for func in (obj.destroy, obj.undefine):
            try:
                func()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(tmp_path):
    """A qcow2 image with data (and a raw one), SHA256SUMS listing both, served over http from a netns."""
    root = tmp_path / 'www'
    root.mkdir()
    image = root / 'cloud.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(image), '32M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x6b 1M 192k', '-c', 'write -P 0x2e 20M 64k', str(image)],
                   check=True, capture_output=True)
    raw = root / 'disk.raw'
    raw.write_bytes(os.urandom(300 * 1024) + bytes(2 * MIB) + b'tail' * 1024)
    sums = ''.join('%s  %s\n' % (sha256(p.read_bytes()), p.name) for p in (raw, image))
    (root / 'SHA256SUMS').write_text('# comment\n' + sums)
    workdir = tmp_path / 'httpns'
    workdir.mkdir()
    server = NetnsServer(str(root), str(workdir))
    try:
        yield dict(root=root, server=server, image=image.read_bytes(), raw=raw.read_bytes())
    finally:
        server.close()


def test_import_url_checksum_idempotent_and_export(playbook, tmp_path, pool, served, conn):
    play = write_play(tmp_path, VOLUME)
    server = served['server']
    assert ipaddress.ip_address(server.url.split('/')[2].split(':')[0]) in NS_RANGE, server.url
    url = server.url + '/cloud.qcow2'
    dest = os.path.join(pool['path'], 'cloud.qcow2')

    # a wrong digest: the task fails, the volume is deleted again, nothing is left in the pool
    wrong = dict(pool=pool['name'], name='cloud.qcow2', import_from=url, checksum='sha256:' + '0' * 64)
    msg = expect_failure(playbook, play, wrong)
    assert msg.startswith('checksum mismatch for %s' % url) and 'deleted' in msg
    assert os.listdir(pool['path']) == []
    pool['pool'].refresh(0)
    assert pool['pool'].listVolumes() == []

    # the checksum file: check, real, check, real; only the first two open the image's URL
    extra = dict(pool=pool['name'], name='cloud.qcow2', import_from=url, checksum='sha256:%s/SHA256SUMS' % server.url)
    before = server.counts.get('/cloud.qcow2', 0)
    results = [run_task(playbook, play, extra, check=True)]
    assert os.listdir(pool['path']) == [], 'check mode created a volume'
    results.append(run_task(playbook, play, extra))
    assert server.counts['/cloud.qcow2'] - before == 2, server.counts   # the check-mode header read, the import
    imported = server.counts['/cloud.qcow2']
    results += [run_task(playbook, play, extra, check=check) for check in (True, False)]
    assert server.counts['/cloud.qcow2'] == imported, 'a re-run downloaded the image again'
    assert [r['changed'] for r in results] == [True, True, False, False]
    assert results[0]['actions'] == results[1]['actions'] == ['create', 'import %s' % url]
    assert results[2]['changes'] == results[3]['changes'] == []
    with open(dest, 'rb') as handle:
        assert handle.read() == served['image'], 'the volume holds the served bytes'
    info = results[1]
    assert info['transfer']['bytes'] == len(served['image']) and info['transfer']['seconds'] >= 0
    assert info['transfer']['checksum'] == 'sha256:' + sha256(served['image'])
    assert info['checksum_check'] == 'stream' and results[3]['checksum_check'] == 'content'
    assert results[3]['transfer'] is None
    vol = pool['pool'].storageVolLookupByName('cloud.qcow2')
    assert vol.info()[1] == 32 * MIB and 'qcow2' in vol.XMLDesc(0)
    assert results[0]['volume']['capacity'] == 32 * MIB, 'check mode predicted the qcow2 virtual size'

    # another volume as the source (pool/volume), converted to raw by libvirt
    copy = dict(pool=pool['name'], name='copy.raw', import_from='%s/cloud.qcow2' % pool['name'], format='raw')
    first = run_task(playbook, play, copy)
    assert first['changed'] and [c['action'] for c in first['changes']] == ['create', 'import']
    assert run_task(playbook, play, copy)['changed'] is False
    read = subprocess.run(['qemu-io', '-f', 'raw', '-c', 'read -P 0x6b 1M 192k', '-c', 'read -P 0x2e 20M 64k',
                           os.path.join(pool['path'], 'copy.raw')], capture_output=True, text=True, check=False)
    assert read.returncode == 0 and 'Pattern verification failed' not in read.stdout, read.stdout

    # export_to: check mode writes nothing; the file is 0600 and equals the volume; a second run changes nothing
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    target = str(out_dir / 'cloud.qcow2')
    export = dict(pool=pool['name'], name='cloud.qcow2', export_to=target)
    exported = [run_task(playbook, play, export, check=True)]
    assert exported[0]['changed'] and os.listdir(str(out_dir)) == [], 'check mode wrote the export'
    exported += [run_task(playbook, play, export, check=check) for check in (False, True, False)]
    assert [r['changed'] for r in exported] == [True, True, False, False]
    assert os.listdir(str(out_dir)) == ['cloud.qcow2'], 'no temporary file left'
    assert os.stat(target).st_mode & 0o777 == 0o600
    with open(target, 'rb') as handle:
        assert handle.read() == served['image']
    assert exported[1]['export']['checksum'] == 'sha256:' + sha256(served['image'])

    # a planted symlink is refused, and what it points at is untouched
    victim = tmp_path / 'victim'
    victim.write_text('keep')
    link = str(out_dir / 'link.qcow2')
    os.symlink(str(victim), link)
    msg = expect_failure(playbook, play, dict(export, export_to=link))
    assert 'symbolic link' in msg and victim.read_text() == 'keep' and os.path.islink(link)
    # an existing file with other content is replaced only with force
    other = out_dir / 'other.img'
    other.write_bytes(b'other')
    msg = expect_failure(playbook, play, dict(export, export_to=str(other)))
    assert 'force: true' in msg and other.read_bytes() == b'other'


def test_import_raw_over_https_validate_certs(playbook, tmp_path, pool, served):
    cert = tmp_path / 'cert.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-keyout', str(cert), '-out', str(cert)], check=True, capture_output=True)
    server = Server(str(served['root']), certfile=str(cert))
    try:
        play = write_play(tmp_path, VOLUME)
        extra = dict(pool=pool['name'], name='disk.raw', import_from=server.url + '/disk.raw',
                     checksum='sha256:' + sha256(served['raw']))
        msg = expect_failure(playbook, play, extra)
        assert 'certificate' in msg and 'validate_certs: false' in msg, msg
        assert os.listdir(pool['path']) == []
        result = run_task(playbook, play, dict(extra, validate_certs=False))
        assert result['changed'] and result['volume']['format'] == 'raw'
        path = os.path.join(pool['path'], 'disk.raw')
        with open(path, 'rb') as handle:
            assert handle.read() == served['raw']
        assert os.stat(path).st_blocks * 512 < len(served['raw']), 'the run of zeros stayed a hole'
    finally:
        server.close()


GUEST = """<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>"""


def test_a_volume_a_running_guest_uses(playbook, tmp_path, pool, served, conn, unique):
    """Its content is not hashed for checksum (it is expected to change), an export warns, a copy is refused."""
    from conftest import osless_virt_type, remove_guest
    play = write_play(tmp_path, VOLUME)
    url = served['server'].url + '/cloud.qcow2'
    extra = dict(pool=pool['name'], name='used.qcow2', import_from=url, checksum='sha256:' + sha256(served['image']))
    assert run_task(playbook, play, extra)['changed']
    conn.createXML(GUEST.format(virt_type=osless_virt_type(conn), name=unique,
                                disk=os.path.join(pool['path'], 'used.qcow2')), 0)
    try:
        fetched = served['server'].counts['/cloud.qcow2']
        again = run_task(playbook, play, dict(extra, checksum='sha256:' + '1' * 64))
        assert again['changed'] is False and again['checksum_check'] == 'skipped: used by guest %s' % unique
        assert served['server'].counts['/cloud.qcow2'] == fetched
        target = str(tmp_path / 'used.qcow2')
        exported = run_task(playbook, play, dict(pool=pool['name'], name='used.qcow2', export_to=target))
        assert exported['changed'] and os.path.isfile(target)
        assert any('while guest %s runs' % unique in w for w in exported.get('warnings', [])), exported.get('warnings')
        msg = expect_failure(playbook, play, dict(pool=pool['name'], name='copy.qcow2',
                                                  import_from=dict(pool=pool['name'], name='used.qcow2')))
        assert 'is a disk of running guest %s' % unique in msg and 'shut the guest down first' in msg
        assert not os.path.exists(os.path.join(pool['path'], 'copy.qcow2'))
    finally:
        remove_guest(conn, unique)
