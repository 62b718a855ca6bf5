"""Fixes found by the hostile-input tier (tests/integration/hostile/): each refusal, before any write."""

import os

import pytest
from test_transfer import manager

from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, url_passwords
from ansible_collections.kvmops.kvm.plugins.module_utils._domain_xml import OPTIONS_BY_NAME


def test_filesystems_source_through_a_symlink_is_refused(tmp_path):
    real = tmp_path / 'share'
    real.mkdir()
    link = tmp_path / 'share-link'
    os.symlink(str(tmp_path / 'victim'), str(link))
    (tmp_path / 'victim').mkdir()
    below = tmp_path / 'dir-link'
    os.symlink(str(real), str(below))
    (real / 'sub').mkdir()
    preflight = OPTIONS_BY_NAME['filesystems'].preflight
    preflight([dict(source=str(real), target='a')], True)   # the real directory is fine
    with pytest.raises(KvmError, match=r'^filesystems\[0\]\.source: .* goes through a symlink \(to .*victim\)'):
        preflight([dict(source=str(link), target='a')], True)
    with pytest.raises(KvmError, match=r'^filesystems\[1\]\.source: .* goes through a symlink'):
        preflight([dict(source=str(real), target='a'), dict(source=str(below / 'sub'), target='b')], True)
    preflight([dict(source=str(link), target='a')], False)   # a remote host's paths are not this host's


@pytest.mark.parametrize('value, passwords', [
    ('https://admin:Pw-1@host/i.raw', {'Pw-1'}),
    ('ftp://admin:Pw-2@127.0.0.1/img.raw', {'Pw-2'}),                  # a scheme the modules refuse
    ('http://admin:Pw-3@[::1/img.raw', {'Pw-3'}),                       # urlsplit raises on it
    ('sha256:https://u:Pw-4@h/SUMS', {'Pw-4'}),                         # a checksum file URL
    ('https://u:p@ss-5@h/x', {'p@ss-5'}),                               # an unencoded @ in the password
    (['/srv/i.raw', dict(a='https://u:Pw-6@h/x')], {'Pw-6'}),
    ('https://user@host/x', set()), ('/srv/i.raw', set()), (None, set()), (42, set()),
])
def test_url_passwords(value, passwords):
    assert url_passwords(value) == passwords


@pytest.mark.parametrize('url', ['ftp://admin:Leak-1@127.0.0.1/x', 'https://admin:Leak-1@[::1/x',
                                 'https://admin:Leak-1@h/a b', 'https://admin:Leak-1@h:99999/x'])
def test_a_refused_import_url_has_its_password_masked_first(url):
    mgr = manager(import_from=url)
    with pytest.raises(KvmError) as err:
        mgr.validate()
    assert err.value.msg.startswith('import_from: ') and 'Leak-1' in mgr.module.no_log_values


def test_export_through_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / 'victim-dir').mkdir()
    (tmp_path / 'dir-link').symlink_to(tmp_path / 'victim-dir')
    with pytest.raises(KvmError, match=r'^export_to: the directory .*dir-link goes through a symbolic link \(to .*victim-dir\)'):
        manager(export_to=str(tmp_path / 'dir-link' / 'new.raw')).validate()
    assert not os.listdir(str(tmp_path / 'victim-dir'))
    manager(export_to=str(tmp_path / 'victim-dir' / 'new.raw')).validate()   # the real directory is fine


@pytest.mark.parametrize('mode', ['4755', '2640', '1600', 0o6777])
def test_export_mode_with_special_bits_is_refused(tmp_path, mode):
    with pytest.raises(KvmError, match=r'^export_mode: [0-7]{4} sets the setuid, setgid or sticky bit'):
        manager(export_to=str(tmp_path / 'out.raw'), export_mode=mode).validate()
    assert manager(export_to=str(tmp_path / 'out.raw'), export_mode='0640').validate() is None


@pytest.fixture
def redirecting_servers():
    """Two loopback HTTP servers: ``a`` (127.0.0.1) redirects /other to ``b`` (127.0.0.2), /same and /ftp as
    named; each records the Authorization header it got."""
    import http.server
    import threading
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.setdefault(self.server.server_address[0], []).append((self.path, self.headers.get('Authorization')))
            target = dict(other='http://127.0.0.2:%d/img' % servers[1].server_port, same='/img', ftp='ftp://127.0.0.1/img')
            where = target.get(self.path.strip('/'))
            if where:
                self.send_response(302)
                self.send_header('Location', where)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header('Content-Length', '2')
            self.end_headers()
            self.wfile.write(b'ok')

        def log_message(self, *_args):
            pass

    servers = [http.server.HTTPServer((host, 0), Handler) for host in ('127.0.0.1', '127.0.0.2')]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://127.0.0.1:%d' % servers[0].server_port, seen
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_forced_basic_auth_is_not_forwarded_to_another_host(redirecting_servers):
    from ansible_collections.kvmops.kvm.plugins.module_utils._transfer import open_source_url
    base, seen = redirecting_servers
    params = dict(url_username='u', url_password='Redirect-Secret', force_basic_auth=True, use_proxy=False, timeout=5)
    assert open_source_url(base + '/other', params).read() == b'ok'
    assert seen['127.0.0.1'][0][1].startswith('Basic ')          # the URL's own host gets the credentials
    assert seen['127.0.0.2'] == [('/img', None)]                 # the host a redirect names does not
    seen.clear()
    assert open_source_url(base + '/same', params).read() == b'ok'
    assert [auth is not None for _path, auth in seen['127.0.0.1']] == [True, True]   # same origin: kept
    with pytest.raises(ValueError, match='not an http'):
        open_source_url(base + '/ftp', params)
