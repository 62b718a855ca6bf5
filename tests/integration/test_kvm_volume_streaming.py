"""kvm_volume streams a URL into the pool (issue 17): no full copy in memory or on the disk of the module's host; proxies.

The real module runs through ansible-playbook, under an interpreter wrapper that records the peak resident
memory of the module's process (``wait4``'s ``ru_maxrss``). The image (64 MiB of data, no run of zeros, so
every byte is sent) comes from an HTTP server in a separate process, so its memory is not counted. The peak
of a 64 MiB import is compared with the peak of a 1 MiB import by the same module: a copy of the image in
memory would add at least 64 MiB. Meanwhile the temporary directories the module may use (``TMPDIR``,
Ansible's local and remote temp) are new, empty directories, watched while the module runs: they never
hold more than the module's own small files.

The proxy test sets ``http_proxy`` in the task's ``environment`` (where a play sets it) and checks which of two
loopback servers - the image's own and the proxy, each serving other bytes - the volume's content came from.
"""

import os
import subprocess
import sys
import threading
import time

import pytest

from storage_helpers import dir_pool, run_task, write_play

BASE = '/var/lib/kvmops-test'
MIB = 1024 * 1024
BIG = 64
PLAY = """
- name: t
  kvmops.kvm.kvm_volume:
    pool: "{{ pool }}"
    name: "{{ name }}"
    import_from: "{{ import_from }}"
"""
WRAPPER = """#!{python}
import os, subprocess, sys
child = subprocess.Popen([{python!r}] + sys.argv[1:])
_pid, status, usage = os.wait4(child.pid, 0)
with open({log!r}, 'a') as handle:
    handle.write('%d\\n' % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""
SERVER = """
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *args: None
httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


@pytest.fixture
def pool(conn, unique):
    with dir_pool(conn, unique, os.path.join(BASE, unique)) as made:
        yield made


def du(directories):
    total = 0
    for directory in directories:
        for root, _dirs, files in os.walk(directory):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def test_a_url_import_holds_no_copy_in_memory_or_on_disk(pool, playbook, tmp_path, monkeypatch):
    www = tmp_path / 'www'
    www.mkdir()
    chunk = bytes(range(1, 256)) * (MIB // 255 + 1)
    with open(str(www / 'big.raw'), 'wb') as handle:
        for index in range(BIG):
            handle.write(chunk[index % 255:index % 255 + MIB])
    (www / 'small.raw').write_bytes(chunk[:MIB])
    server = subprocess.Popen([sys.executable, '-c', SERVER, str(www)], stdout=subprocess.PIPE, text=True)
    rss_log = tmp_path / 'maxrss'
    wrapper = tmp_path / 'python-wrapper'
    wrapper.write_text(WRAPPER.format(python=sys.executable, log=str(rss_log)))
    wrapper.chmod(0o755)
    temps = [tmp_path / name for name in ('tmpdir', 'local-tmp', 'remote-tmp')]
    for directory in temps:
        directory.mkdir()
    monkeypatch.setenv('TMPDIR', str(temps[0]))
    monkeypatch.setenv('ANSIBLE_LOCAL_TEMP', str(temps[1]))
    monkeypatch.setenv('ANSIBLE_REMOTE_TEMP', str(temps[2]))
    peak_disk = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak_disk[0] = max(peak_disk[0], du(temps))
            time.sleep(0.05)
    try:
        url = 'http://127.0.0.1:%s/' % server.stdout.readline().strip()
        play = write_play(tmp_path, PLAY)
        peaks = []
        for name in ('small.raw', 'big.raw'):
            rss_log.write_text('')
            watcher = threading.Thread(target=watch, daemon=True)
            done.clear()
            watcher.start()
            try:
                result = run_task(playbook, play, dict(pool=pool['name'], name=name, import_from=url + name,
                                                       ansible_python_interpreter=str(wrapper)))
            finally:
                done.set()
                watcher.join()
            assert result['changed'] and result['transfer']['bytes'] == os.path.getsize(str(www / name))
            with open(os.path.join(pool['path'], name), 'rb') as got, open(str(www / name), 'rb') as want:
                assert got.read() == want.read(), 'the volume holds the served bytes'
            recorded = [int(line) for line in rss_log.read_text().split()]
            assert len(recorded) == 1, 'the wrapper ran the module once: %r' % recorded
            peaks.append(recorded[0] * 1024)
        growth = peaks[1] - peaks[0]
        print('\npeak RSS of the module: %.1f MiB (1 MiB import), %.1f MiB (%d MiB import); temp dirs at most %d KiB'
              % (peaks[0] / MIB, peaks[1] / MIB, BIG, peak_disk[0] // 1024))
        assert growth < 16 * MIB, 'the %d MiB import raised the peak memory by %.1f MiB' % (BIG, growth / MIB)
        assert peak_disk[0] < 4 * MIB, 'the temp directories held %d bytes during the import' % peak_disk[0]
    finally:
        server.terminate()
        server.wait(10)


PROXIED = """
- name: t
  environment: "{{ env }}"
  kvmops.kvm.kvm_volume:
    pool: "{{ pool }}"
    name: "{{ name }}"
    import_from: "{{ import_from }}"
    checksum: "{{ checksum }}"
    use_proxy: "{{ use_proxy }}"
"""


def test_a_url_import_goes_through_the_proxy_of_the_task_environment(pool, playbook, tmp_path):
    """http_proxy in the task's environment is used (ansible-core's URL helpers); use_proxy: false goes direct."""
    import hashlib
    import http.server
    direct, proxied, seen = os.urandom(64 * 1024), os.urandom(96 * 1024), []

    def handler(body, log):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                log.append(self.path)
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass
        return Handler

    servers = [http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler(direct, [])),
               http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler(proxied, seen))]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/disk.raw' % servers[0].server_address[1]
        env = dict(http_proxy='http://127.0.0.1:%d' % servers[1].server_address[1], no_proxy='', NO_PROXY='')
        play = write_play(tmp_path, PROXIED)
        through = run_task(playbook, play, dict(pool=pool['name'], name='proxied.raw', import_from=url, env=env, use_proxy=True,
                                                checksum='sha256:' + hashlib.sha256(proxied).hexdigest()))
        assert through['changed'] and through['checksum_check'] == 'stream'
        assert seen == [url], 'the proxy got the absolute URL of the image'
        with open(os.path.join(pool['path'], 'proxied.raw'), 'rb') as handle:
            assert handle.read() == proxied
        around = run_task(playbook, play, dict(pool=pool['name'], name='direct.raw', import_from=url, env=env, use_proxy=False,
                                               checksum='sha256:' + hashlib.sha256(direct).hexdigest()))
        assert around['changed'] and seen == [url], 'use_proxy: false still went through the proxy'
        with open(os.path.join(pool['path'], 'direct.raw'), 'rb') as handle:
            assert handle.read() == direct
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
