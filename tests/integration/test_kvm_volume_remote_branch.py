"""kvm_volume's remote-URI branch against the real libvirtd.

No remote hypervisor is reachable from this machine's tests (qemu+tcp is not listening and
``qemu+unix://host/`` is refused by libvirt), so the manager runs in-process on qemu:///system with
``is_local_uri`` answering False: the same code a ``qemu+ssh://`` URI runs. The module stand-in refuses
every command (no qemu-img on the module's host), and the volumes are read back from the pool.
"""

import hashlib
import http.server
import os
import threading

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _volume
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient

from storage_helpers import dir_pool

BASE = '/var/lib/kvmops-test'
URI = os.environ.get('KVMOPS_TEST_URI', 'qemu:///system')


class Module(object):
    """What the manager uses of AnsibleModule; any command or binary lookup fails the test."""

    def __init__(self, **params):
        self.params = dict((key, spec.get('default')) for key, spec in _volume.ARGUMENT_SPEC.items())
        self.params.update(uri=URI, **params)
        self.check_mode = False
        self._diff = False
        self.no_log_values = set()
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def get_bin_path(self, name, required=False):
        raise AssertionError('the remote branch looked for %s on the module host' % name)

    def run_command(self, args, **_kwargs):
        raise AssertionError('the remote branch ran %r on the module host' % (args,))


@pytest.fixture
def remote(monkeypatch):
    monkeypatch.setattr(_volume, 'is_local_uri', lambda uri: False)


@pytest.fixture
def pool(conn, unique):
    with dir_pool(conn, unique, os.path.join(BASE, unique)) as made:
        yield made


def ensure(**params):
    module = Module(**params)
    client = LibvirtClient(module)
    try:
        return _volume.ensure(module, client)
    finally:
        client.close()


def test_remote_imports_go_through_libvirt(remote, pool, tmp_path):
    data = os.urandom(64 * 1024) + bytes(1024 * 1024) + b'end'
    (tmp_path / 'disk.raw').write_bytes(data)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/disk.raw' % httpd.server_address[1]
        digest = 'sha256:' + hashlib.sha256(data).hexdigest()
        result = ensure(pool=pool['name'], name='web.raw', import_from=url, checksum=digest)
        assert result['changed'] and result['transfer']['bytes'] == len(data)
        assert result['backing_chain'] == [], 'no qemu-img on the module host for a remote URI'
        with open(os.path.join(pool['path'], 'web.raw'), 'rb') as handle:
            assert handle.read() == data
        # a wrong digest: the volume made for the upload is deleted again
        with pytest.raises(KvmError) as err:
            ensure(pool=pool['name'], name='bad.raw', import_from=url, checksum='sha512:' + 'ab' * 64)
        assert err.value.msg.startswith('checksum mismatch for %s: expected sha512:' % url) and 'deleted' in err.value.msg
        pool['pool'].refresh(0)
        assert sorted(pool['pool'].listVolumes()) == ['web.raw'] and os.listdir(pool['path']) == ['web.raw']
        # a file on the module's host is uploaded through the stream too
        result = ensure(pool=pool['name'], name='file.raw', import_from=str(tmp_path / 'disk.raw'), checksum=digest)
        assert result['changed'] and result['checksum_check'] == 'stream'
        with open(os.path.join(pool['path'], 'file.raw'), 'rb') as handle:
            assert handle.read() == data
        again = ensure(pool=pool['name'], name='file.raw', import_from=str(tmp_path / 'disk.raw'), checksum=digest)
        assert again['changed'] is False and again['checksum_check'] == 'content'
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize('params, fragment', [
    (dict(capacity='1M', owner='root'), "owner: 'root' is a name"),
    (dict(capacity='1M', group='root'), "group: 'root' is a name"),
    (dict(backing='/etc/hostname'), 'is not a volume libvirt knows on'),
])
def test_remote_refusals(remote, pool, params, fragment):
    with pytest.raises(KvmError) as err:
        ensure(pool=pool['name'], name='refused.qcow2', **params)
    assert fragment in err.value.msg
    assert os.listdir(pool['path']) == []


def test_remote_broken_download_leaves_nothing_and_export_streams(remote, pool, tmp_path):
    """A server that closes before Content-Length: the new volume is deleted again. export_to uses the download stream."""
    body = os.urandom(300 * 1024)

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', str(len(body) * 4))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Short)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(KvmError) as err:
            ensure(pool=pool['name'], name='short.raw', import_from='http://127.0.0.1:%d/x.raw' % httpd.server_address[1])
        assert 'while reading' in err.value.msg, err.value.msg
    finally:
        httpd.shutdown()
        httpd.server_close()
    pool['pool'].refresh(0)
    assert os.listdir(pool['path']) == [] and pool['pool'].listVolumes() == []

    (tmp_path / 'src.raw').write_bytes(body)
    ensure(pool=pool['name'], name='src.raw', import_from=str(tmp_path / 'src.raw'))
    target = tmp_path / 'out.raw'
    result = ensure(pool=pool['name'], name='src.raw', export_to=str(target), export_mode='0640')
    assert result['changed'] and result['export']['bytes'] == len(body)
    assert target.read_bytes() == body and target.stat().st_mode & 0o777 == 0o640
    assert ensure(pool=pool['name'], name='src.raw', export_to=str(target), export_mode='0640')['changed'] is False
