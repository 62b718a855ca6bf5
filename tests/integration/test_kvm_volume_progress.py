"""kvm_volume reports the progress of a long import and export (issue 17), against the real libvirtd.

The manager runs in-process on qemu:///system with ``is_local_uri`` answering False (the branch a
``qemu+ssh://`` URI runs), so the progress interval can be shortened from its 10 s to a fraction of a
second. The image comes from a loopback HTTP server that sends it slowly, a piece at a time; the
module's log lines (the module's ``log``, which is the journal or syslog of the host that runs it) and
the samples in ``transfer.progress`` / ``export.progress`` are checked against the bytes really sent,
and the volume and the exported file are read back.
"""

import http.server
import os
import threading
import time

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _transfer, _volume
from ansible_collections.kvmops.kvm.plugins.module_utils._client import LibvirtClient

from storage_helpers import dir_pool

BASE = '/var/lib/kvmops-test'
URI = os.environ.get('KVMOPS_TEST_URI', 'qemu:///system')
MIB = 1024 * 1024
PIECES = 6             # MiB sent, one every PAUSE seconds
PAUSE = 0.3


class Module(object):
    """What the manager uses of AnsibleModule, with ``log`` recorded; no command may run on the module's host."""

    def __init__(self, **params):
        self.params = dict((key, spec.get('default')) for key, spec in _volume.ARGUMENT_SPEC.items())
        self.params.update(uri=URI, **params)
        self.check_mode = False
        self._diff = False
        self.no_log_values = set()
        self.warnings = []
        self.logged = []

    def warn(self, msg):
        self.warnings.append(msg)

    def log(self, msg):
        self.logged.append((time.monotonic(), msg))

    def get_bin_path(self, name, required=False):
        raise AssertionError('the remote branch looked for %s on the module host' % name)

    def run_command(self, args, **_kwargs):
        raise AssertionError('the remote branch ran %r on the module host' % (args,))


def ensure(**params):
    module = Module(**params)
    client = LibvirtClient(module)
    try:
        return _volume.ensure(module, client), module
    finally:
        client.close()


@pytest.fixture
def pool(conn, unique, monkeypatch):
    monkeypatch.setattr(_volume, 'is_local_uri', lambda uri: False)
    with dir_pool(conn, unique, os.path.join(BASE, unique)) as made:
        yield made


@pytest.fixture
def slow_server():
    body = b''.join(bytes([65 + i]) * MIB for i in range(PIECES))   # no run of zeros: every byte is sent
    sent = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            for offset in range(0, len(body), MIB):
                sent.append((time.monotonic(), offset + MIB))   # before the write: an upper bound at any time
                self.wfile.write(body[offset:offset + MIB])
                self.wfile.flush()
                time.sleep(PAUSE)

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield dict(url='http://127.0.0.1:%d/slow.raw' % httpd.server_address[1], body=body, sent=sent)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_slow_import_and_its_export_report_progress(pool, slow_server, tmp_path, monkeypatch):
    monkeypatch.setattr(_transfer, 'PROGRESS_INTERVAL', 0.5)
    started = time.monotonic()
    result, module = ensure(pool=pool['name'], name='slow.raw', import_from=slow_server['url'])
    assert result['changed'] and result['transfer']['bytes'] == len(slow_server['body'])
    with open(os.path.join(pool['path'], 'slow.raw'), 'rb') as handle:
        assert handle.read() == slow_server['body']
    samples = result['transfer']['progress']
    assert len(samples) >= 2, samples     # about 1.8 s at 0.5 s intervals
    assert [s['bytes'] for s in samples] == sorted(s['bytes'] for s in samples)
    assert all(0 < s['bytes'] < len(slow_server['body']) for s in samples[:-1])
    assert [s['percent'] for s in samples] == [round(100.0 * s['bytes'] / len(slow_server['body']), 1) for s in samples]
    assert all(s['seconds'] >= 0.5 for s in samples)
    # every sample was taken while the server was still sending: no more bytes than it had begun to send by then
    lines = [msg for _when, msg in module.logged]
    assert len(lines) == len(samples) and all(
        msg.startswith('volume %s/slow.raw: upload %s: ' % (pool['name'], slow_server['url'])) for msg in lines)
    for (when, _msg), sample in zip(module.logged, samples):
        had = max([count for at, count in slow_server['sent'] if at <= when] or [0])
        assert sample['bytes'] <= had, (sample, had)
        assert when - started < PIECES * PAUSE + 30
    assert ' of 6.0 MiB (' in lines[0]

    # the export: a sample per piece once the interval is 0, the last one the whole file
    monkeypatch.setattr(_transfer, 'PROGRESS_INTERVAL', 0)
    target = tmp_path / 'slow.raw'
    result, module = ensure(pool=pool['name'], name='slow.raw', export_to=str(target))
    assert result['changed'] and target.read_bytes() == slow_server['body']
    samples = result['export']['progress']
    assert samples and samples[-1]['bytes'] == len(slow_server['body']) and samples[-1]['percent'] == 100.0
    assert len(module.logged) == len(samples)
