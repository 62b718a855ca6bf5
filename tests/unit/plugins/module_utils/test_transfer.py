"""_transfer (checksums, checksum files, image headers, URL errors) and kvm_volume's import_from/export_to input."""

import hashlib
import os
import struct
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _transfer, _volume
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError
from storage_modules import driver_client, module_class

Module = module_class(_volume.ARGUMENT_SPEC)
SHA = hashlib.sha256(b'x').hexdigest()


def qcow2_header(size=1 << 30, version=3, backing=0, crypt=0, incompatible=0):
    head = b'QFI\xfb' + struct.pack('>IQIIQI', version, backing, 0, 16, size, crypt)
    head = head.ljust(72, b'\0') + struct.pack('>Q', incompatible)
    return head.ljust(4096, b'\0')


@pytest.mark.parametrize('value, expected', [
    ('sha256:' + SHA.upper(), dict(algorithm='sha256', digest=SHA, url=None)),
    (' SHA1 : ' + 'a' * 40, dict(algorithm='sha1', digest='a' * 40, url=None)),
    ('sha512:https://example.com/SHA512SUMS', dict(algorithm='sha512', digest=None, url='https://example.com/SHA512SUMS')),
])
def test_parse_checksum(value, expected):
    assert _transfer.parse_checksum(value) == expected


@pytest.mark.parametrize('value, fragment', [
    (SHA, 'must be <algorithm>:<hex digest>'),
    ('md5:' + 'a' * 32, 'algorithm one of sha1, sha256, sha384, sha512'),
    ('sha256:' + 'a' * 63, 'a sha256 digest is 64 hexadecimal digits'),
    ('sha256:' + 'g' * 64, 'a sha256 digest is 64 hexadecimal digits'),
    ('sha256:ftp://example.com/SUMS', 'a sha256 digest is 64'),
    ('sha256:https:///SUMS', 'must be an http:// or https:// URL with a host'),
    ('sha256:https://example.com/a b', 'must not contain spaces'),
    ('sha256:\n' + SHA, 'control characters'),
])
def test_parse_checksum_refuses(value, fragment):
    with pytest.raises(KvmError) as err:
        _transfer.parse_checksum(value)
    assert err.value.msg.startswith('checksum: ') and fragment in err.value.msg


def test_digest_from_sums_gnu_and_bsd_layouts():
    text = ('# signed\n%s  other.qcow2\n%s *images/debian%%202.qcow2\nSHA256 (bsd.img) = %s\nMD5 (bsd.img) = %s\n'
            % ('1' * 64, '2' * 64, '3' * 64, '4' * 32))
    assert _transfer.digest_from_sums(text, 'other.qcow2', 'sha256', 'S') == '1' * 64
    assert _transfer.digest_from_sums(text, 'debian%202.qcow2', 'sha256', 'S') == '2' * 64
    assert _transfer.digest_from_sums(text, 'bsd.img', 'sha256', 'S') == '3' * 64
    with pytest.raises(KvmError) as err:
        _transfer.digest_from_sums(text, 'bsd.img', 'sha512', 'https://h/SUMS')
    assert err.value.msg == 'checksum: https://h/SUMS lists no sha512 digest for bsd.img'
    with pytest.raises(KvmError):
        _transfer.digest_from_sums('%s  prefix-other.qcow2\n' % ('1' * 64), 'other.qcow2', 'sha256', 'S')


def test_url_helpers():
    url = 'https://user:secret@example.com:8443/path/deb%20ian.qcow2?x=1#frag'
    assert _transfer.safe_url(url) == 'https://example.com:8443/path/deb%20ian.qcow2?x=1'
    assert _transfer.url_basename(url) == 'deb ian.qcow2'
    assert _transfer.is_url('HTTPS://x') and not _transfer.is_url('/srv/x') and not _transfer.is_url('ftp://x')


def test_image_header_qcow2_and_raw():
    assert _transfer.image_header('import_from', 'x', qcow2_header(5 << 20)) == dict(format='qcow2', capacity=5 << 20)
    assert _transfer.image_header('import_from', 'x', qcow2_header(version=2)) == dict(format='qcow2', capacity=1 << 30)
    assert _transfer.image_header('import_from', 'x', b'\0' * 4096) == dict(format='raw', capacity=None)
    assert _transfer.image_header('import_from', 'x', b'') == dict(format='raw', capacity=None)
    # format raw says the bytes are a raw disk, whatever they start with (but not a qcow2 header)
    assert _transfer.image_header('import_from', 'x', b'\x1f\x8b' + b'\0' * 100, 'raw')['format'] == 'raw'


@pytest.mark.parametrize('head, fmt, fragment', [
    (qcow2_header(backing=4096), None, 'has a backing file'),
    (qcow2_header(crypt=1), None, 'encrypted qcow2'),
    (qcow2_header(incompatible=4), None, 'external data file'),
    (qcow2_header(incompatible=2), None, 'marked corrupt'),
    (qcow2_header(), 'raw', 'is a qcow2 image but format is raw'),
    (b'QFI\xfb\0\0\0\3', None, 'truncated qcow2'),
    (b'\xfd7zXZ\x00' + b'\0' * 100, None, 'xz-compressed file; decompress it first'),
    (b'\x1f\x8b\x08' + b'\0' * 100, 'qcow2', 'gzip-compressed'),
    (b'KDMV' + b'\0' * 100, None, 'vmdk image'),
    (b'\0' * 100, 'qcow2', 'is a raw image but format is qcow2'),
])
def test_image_header_refuses(head, fmt, fragment):
    with pytest.raises(KvmError) as err:
        _transfer.image_header('import_from', 'https://h/i', head, fmt)
    assert err.value.msg.startswith('import_from') and fragment in err.value.msg


def test_url_errors_are_one_clear_line():
    params = dict(validate_certs=True, timeout=7)
    http = HTTPError('https://u:p@h/i', 404, 'Not Found', {}, None)
    assert _transfer.url_error('import_from', 'https://u:p@h/i', http, params) == 'import_from: https://h/i answered HTTP 404 Not Found'
    cert = URLError(__import__('ssl').SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate'))
    msg = _transfer.url_error('import_from', 'https://h/i', cert, params)
    assert 'could not be verified' in msg and 'validate_certs: false' in msg
    assert 'within 7 seconds' in _transfer.url_error('import_from', 'http://h/i', URLError(TimeoutError('timed out')), params)


def test_file_source_reads_chunks_and_refuses_non_files(tmp_path):
    path = tmp_path / 'img'
    path.write_bytes(b'a' * 10)
    source = _transfer.FileSource('import_from', str(path))
    assert source.size == 10 and _transfer.read_head(source, 4) == b'aaaa' and source.read(100) == b'a' * 6
    source.close()
    with pytest.raises(KvmError) as err:
        _transfer.FileSource('import_from', str(tmp_path))
    assert 'is not a regular file' in err.value.msg
    with pytest.raises(KvmError) as err:
        _transfer.FileSource('import_from', str(tmp_path / 'missing'))
    assert 'cannot read' in err.value.msg


@pytest.mark.parametrize('value, expected', [
    ('https://h/x.qcow2', dict(kind='url', url='https://h/x.qcow2', label='https://h/x.qcow2')),
    ('/srv//img/./x.raw', dict(kind='file', path='/srv/img/x.raw', label='/srv/img/x.raw')),
    ('images/golden.qcow2', dict(kind='volume', pool='images', name='golden.qcow2', label='images/golden.qcow2')),
    (dict(pool='images', name='g.qcow2'), dict(kind='volume', pool='images', name='g.qcow2', label='images/g.qcow2')),
    (dict(pool='images', volume='g.qcow2'), dict(kind='volume', pool='images', name='g.qcow2', label='images/g.qcow2')),
])
def test_import_ref(value, expected):
    assert _volume.import_ref(value) == expected


@pytest.mark.parametrize('value, fragment', [
    ('rel.img', 'import_from: must be an absolute path'),
    ('a/b/c', 'import_from: must be an absolute path'),
    ('ftp://h/x', 'import_from: must be an absolute path'),
    ('pool/..', 'volume name in pool/volume'),
    ('/srv/../etc/shadow', "must not contain '..'"),
    ('http://h:99999/x', 'not a valid URL'),
    (dict(pool='images'), 'import_from.name: invalid volume name'),
    (dict(pool='images', name='x', path='/y'), 'unknown key path'),
    (42, 'import_from: must be an absolute path'),
])
def test_import_ref_refuses(value, fragment):
    with pytest.raises(KvmError) as err:
        _volume.import_ref(value)
    assert fragment in err.value.msg


def manager(uri_local=True, **params):
    merged = dict(pool='default-pool', name='v.qcow2')
    merged.update(params)
    client = driver_client(Module)
    mgr = _volume.VolumeManager(Module(**merged), client)
    mgr.local = uri_local
    return mgr


@pytest.mark.parametrize('params, fragment', [
    (dict(checksum='sha256:' + SHA), 'checksum: needs import_from'),
    (dict(import_from='/i', timeout=0), 'timeout: must be between 1 and 86400'),
    (dict(export_mode='0644'), 'export_mode: needs export_to'),
    (dict(export_to='/tmp/x', state='absent'), 'export_to: needs state present'),
    (dict(export_to='/no-such-dir-kvmops/x'), 'export_to: the directory /no-such-dir-kvmops does not exist'),
    (dict(export_to='/tmp/x', export_mode='9'), 'export_mode: must be an octal'),
])
def test_validate_refuses_transfer_options(params, fragment):
    with pytest.raises(KvmError) as err:
        manager(**params).validate()
    assert fragment in err.value.msg


def test_validate_refuses_an_export_through_a_link_or_onto_a_directory(tmp_path):
    link = tmp_path / 'link'
    link.symlink_to(tmp_path / 'elsewhere')
    with pytest.raises(KvmError) as err:
        manager(export_to=str(link)).validate()
    assert 'is a symbolic link' in err.value.msg and not os.path.exists(str(tmp_path / 'elsewhere'))
    with pytest.raises(KvmError) as err:
        manager(export_to=str(tmp_path)).validate()
    assert 'is not a regular file' in err.value.msg


def test_remote_uri_refuses_user_and_group_names_not_numbers():
    mgr = manager(uri_local=False, owner='107', group='0', capacity='1M')
    mgr.validate()
    assert (mgr.perms['owner'], mgr.perms['group']) == ('107', '0')
    for key in ('owner', 'group'):
        with pytest.raises(KvmError) as err:
            manager(uri_local=False, capacity='1M', **{key: 'root'}).validate()
        assert 'looked up on the host that runs the module, not on the hypervisor' in err.value.msg
    manager(uri_local=True, owner='root', capacity='1M').validate()


def test_url_password_is_no_log():
    assert _volume.ARGUMENT_SPEC['url_password']['no_log'] is True


def test_import_from_url_check_mode_on_the_test_driver(monkeypatch):
    """Check mode opens the URL only to read the header: the plan (qcow2, its virtual size), no volume."""
    class Source(object):
        label = 'https://h/i.qcow2'
        size = 8192
        closed = False

        def read(self, size):
            return b''

        def close(self):
            Source.closed = True

    head = qcow2_header(64 << 20)
    monkeypatch.setattr(_transfer, 'open_source', lambda option, ref, params: Source())
    monkeypatch.setattr(_transfer, 'read_head', lambda source: head)
    client = driver_client(Module)
    try:
        module = Module(check_mode=True, pool='default-pool', name='url.qcow2', import_from='https://h/i.qcow2')
        result = _volume.ensure(module, client)
        assert result['changed'] and [c['action'] for c in result['changes']] == ['create', 'import']
        assert result['volume']['format'] == 'qcow2' and result['volume']['capacity'] == 64 << 20
        assert result['transfer'] is None and Source.closed
        assert client.find_pool('default-pool').listVolumes().count('url.qcow2') == 0
    finally:
        client.close()


def test_url_source_against_a_loopback_server(tmp_path):
    """A real request: the body in chunks, Content-Length as the size, a 404 and a closed port as one line each."""
    import http.server
    import socket
    import threading
    (tmp_path / 'img').write_bytes(b'z' * 5000)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = 'http://127.0.0.1:%d' % httpd.server_address[1]
    params = dict(validate_certs=True, use_proxy=False, timeout=5)
    try:
        source = _transfer.UrlSource('import_from', base + '/img', params)
        assert source.size == 5000 and _transfer.read_head(source, 10000) == b'z' * 5000
        source.close()
        with pytest.raises(KvmError) as err:
            _transfer.UrlSource('import_from', base + '/missing', params)
        assert err.value.msg == 'import_from: %s/missing answered HTTP 404 File not found' % base
    finally:
        httpd.shutdown()
        httpd.server_close()
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with pytest.raises(KvmError) as err:
        _transfer.UrlSource('import_from', 'http://u:secret@127.0.0.1:%d/x' % port, params)
    assert err.value.msg.startswith('import_from: cannot download http://127.0.0.1:%d/x' % port)
    assert 'secret' not in err.value.msg


def test_a_password_inside_a_url_is_masked():
    mgr = manager(import_from='https://me:s3cret@h/i.qcow2', checksum='sha256:https://me:other@h/SUMS')
    mgr.validate()
    assert mgr.module.no_log_values == set(['s3cret', 'other'])
    mgr = manager(import_from='pool/vol@1')
    mgr.validate()
    assert mgr.module.no_log_values == set()


def test_url_source_uses_the_proxy_from_the_environment(monkeypatch):
    """http_proxy is honoured (ansible-core's open_url), and use_proxy: false goes around it."""
    import http.server
    import threading
    seen = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header('Content-Length', '5')
            self.end_headers()
            self.wfile.write(b'proxy')

        def log_message(self, *_args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Proxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv('http_proxy', 'http://127.0.0.1:%d' % httpd.server_address[1])
    monkeypatch.delenv('no_proxy', raising=False)
    monkeypatch.delenv('NO_PROXY', raising=False)
    try:
        source = _transfer.UrlSource('import_from', 'http://images.example.invalid/disk.raw',
                                     dict(validate_certs=True, use_proxy=True, timeout=5))
        assert _transfer.read_head(source) == b'proxy'
        source.close()
        assert seen == ['http://images.example.invalid/disk.raw']
        with pytest.raises(KvmError) as err:
            _transfer.UrlSource('import_from', 'http://images.example.invalid/disk.raw',
                                dict(validate_certs=True, use_proxy=False, timeout=5))
        assert err.value.msg.startswith('import_from: cannot download http://images.example.invalid/disk.raw')
        assert len(seen) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
