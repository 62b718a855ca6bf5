"""kvm_volume over a real qemu+ssh:// URI: the lab's host4 (private images, reached only through sshd).

The module runs on the main host (the "controller"); the image is served by an HTTP server on the main
host's 127.0.0.1, which host4 cannot reach, so the bytes can only get into host4's pool through libvirt's
upload stream. The volume is then found in host4's private image directory and not on the main host.
A private lab instance (own netns names, /24 and state dir) is used, so no other test's lab is touched.
"""

import hashlib
import http.server
import os
import threading

import pytest

from ssh_lab import host4_images, private_host4
from storage_helpers import expect_failure, run_task, write_play

PLAY = """
- name: t
  kvmops.kvm.kvm_volume:
    uri: "{{ uri }}"
    pool: default
    name: "{{ name }}"
    state: "{{ state | default('present') }}"
    import_from: "{{ import_from | default(omit) }}"
    checksum: "{{ checksum | default(omit) }}"
    export_to: "{{ export_to | default(omit) }}"
    capacity: "{{ capacity | default(omit) }}"
    owner: "{{ owner | default(omit) }}"
"""


@pytest.fixture(scope='module')
def host4():
    with private_host4('kvmvt', '10.254.83', '/var/lib/kvmops-lab-vol', 'kvmvt-') as lab:
        yield lab


@pytest.fixture
def served(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    data = os.urandom(200 * 1024) + bytes(1024 * 1024) + os.urandom(4096)
    (root / 'disk.raw').write_bytes(data)
    (root / 'SHA256SUMS').write_text('%s  disk.raw\n' % hashlib.sha256(data).hexdigest())
    counts = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            counts[self.path] = counts.get(self.path, 0) + 1
            return super().do_GET()

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield dict(url='http://127.0.0.1:%d' % httpd.server_address[1], data=data, counts=counts)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_import_export_delete_over_qemu_ssh(playbook, tmp_path, host4, served, unique):
    play = write_play(tmp_path, PLAY)
    name = unique + '.raw'
    remote_file = os.path.join(host4_images(host4), name)
    main_file = os.path.join('/var/lib/libvirt/images', name)
    extra = dict(uri=host4.uri('host4'), name=name, import_from=served['url'] + '/disk.raw',
                 checksum='sha256:%s/SHA256SUMS' % served['url'])
    try:
        first = run_task(playbook, play, extra)
        assert first['changed'] and first['transfer']['bytes'] == len(served['data'])
        assert first['volume']['path'] == '/var/lib/libvirt/images/' + name   # the path as host4 sees it
        with open(remote_file, 'rb') as handle:
            assert handle.read() == served['data'], 'the volume on host4 holds the served bytes'
        assert not os.path.exists(main_file), 'nothing was written on the main host'
        assert served['counts']['/disk.raw'] == 1

        again = run_task(playbook, play, extra)
        assert again['changed'] is False and again['checksum_check'] == 'content'
        assert served['counts']['/disk.raw'] == 1, 'the re-run downloaded the image again'

        target = tmp_path / 'back.raw'
        exported = run_task(playbook, play, dict(uri=extra['uri'], name=name, export_to=str(target)))
        assert exported['changed'] and target.read_bytes() == served['data']
        assert target.stat().st_mode & 0o777 == 0o600

        gone = run_task(playbook, play, dict(uri=extra['uri'], name=name, state='absent'))
        assert gone['changed'] and not os.path.exists(remote_file)

        # a user name would be looked up on the main host, not on host4: refused before anything is created
        msg = expect_failure(playbook, play, dict(uri=extra['uri'], name=name, capacity='1M', owner='root'))
        assert "owner: 'root' is a name" in msg and 'give the numeric uid' in msg
        assert not os.path.exists(remote_file)
    finally:
        if os.path.exists(remote_file):
            os.remove(remote_file)
