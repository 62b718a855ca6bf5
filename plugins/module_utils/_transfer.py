# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image bytes in and out of libvirt volumes: sources, checksums, image headers and streams.

Private module (leading underscore): free to change between releases.

* **Sources** (:class:`FileSource`, :class:`UrlSource`) are read in chunks, never whole: a URL through
  ansible-core's ``open_url`` (``validate_certs``, proxies from the environment, basic authentication,
  ``timeout``), a file on the host that runs the module.
* **Checksums** are ``<algorithm>:<hex>`` or ``<algorithm>:<URL of a checksum file>`` (``SHA256SUMS`` in
  the GNU or the BSD layout; the line of the image's basename is used).
* **Image headers** are read from the first bytes (:func:`image_header`): the format (raw or qcow2), the
  qcow2 virtual size, and what is refused (a backing file, encryption, an external data file, other
  formats, compressed files). This needs no ``qemu-img`` on the machine that runs the module, so it works
  from a controller or an execution environment.
* **Streams** are libvirt's volume upload and download streams (:func:`upload`, :func:`download`), sparse
  both ways: a chunk of zeros is sent as a hole. They work the same on a local and a remote URI.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import tempfile
import time
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ansible_collections.kvmops.kvm.plugins.module_utils import _validate as valid
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, error_text, libvirt
from ansible_collections.kvmops.kvm.plugins.module_utils._files import refuse_link

CHUNK = 1024 * 1024
ZEROS = bytes(CHUNK)
HEAD = 4096               # bytes read before anything is created, to know the image's format
MAX_SUMS_BYTES = 1024 * 1024
ALGORITHMS = dict(sha1=40, sha256=64, sha384=96, sha512=128)


# ------------------------------------------------------------------ URLs and checksums
def is_url(value):
    return isinstance(value, str) and value[:8].lower().startswith(('http://', 'https://'))


def safe_url(url):
    """``url`` without user name and password, for messages and results."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return '(invalid URL)'
    netloc = parts.netloc.rsplit('@', 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ''))


def check_url(option, value):
    """An http(s) URL with a host, one line, no spaces."""
    valid.text(option, value, max_length=8192)
    if any(ch.isspace() for ch in value):
        valid.refuse(option, 'a URL must not contain spaces (encode them as %20)', safe_url(value))
    try:
        parts = urlsplit(value)
        parts.port  # pylint: disable=pointless-statement  # raises on a bad port
    except ValueError as exc:
        valid.refuse(option, 'not a valid URL (%s)' % exc, safe_url(value))
    if parts.scheme.lower() not in ('http', 'https') or not parts.hostname:
        valid.refuse(option, 'must be an http:// or https:// URL with a host', safe_url(value))
    return value


def url_basename(url):
    """The file name a URL ends with (percent-decoded), as a checksum file lists it."""
    return unquote(urlsplit(url).path.rstrip('/').rsplit('/', 1)[-1])


def parse_checksum(value, option='checksum'):
    """``sha256:<hex>`` or ``sha256:https://.../SHA256SUMS`` -> ``dict(algorithm, digest, url)``."""
    valid.text(option, value, max_length=8192)
    algorithm, sep, rest = value.partition(':')
    algorithm = algorithm.strip().lower()
    if not sep or algorithm not in ALGORITHMS:
        valid.refuse(option, 'must be <algorithm>:<hex digest> or <algorithm>:<URL of a checksum file>, '
                             'with algorithm one of %s' % ', '.join(sorted(ALGORITHMS)), value)
    rest = rest.strip()
    if is_url(rest):
        return dict(algorithm=algorithm, digest=None, url=check_url(option, rest))
    if not re.fullmatch(r'[0-9a-fA-F]{%d}' % ALGORITHMS[algorithm], rest):
        valid.refuse(option, 'a %s digest is %d hexadecimal digits' % (algorithm, ALGORITHMS[algorithm]), value)
    return dict(algorithm=algorithm, digest=rest.lower(), url=None)


_GNU_LINE = re.compile(r'^([0-9a-fA-F]+)\s+[*]?(.+?)\s*$')
_BSD_LINE = re.compile(r'^([A-Za-z0-9-]+)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$')


def digest_from_sums(text, name, algorithm, label):
    """The digest of file ``name`` in a checksum file's ``text`` (``<hex>  name`` or ``SHA256 (name) = <hex>``)."""
    size = ALGORITHMS[algorithm]
    for line in text.splitlines():
        line = line.strip()
        match = _GNU_LINE.match(line)
        if match:
            digest, listed = match.group(1), match.group(2)
        else:
            match = _BSD_LINE.match(line)
            if not match or match.group(1).replace('-', '').lower() != algorithm:
                continue
            listed, digest = match.group(2), match.group(3)
        if len(digest) != size:
            continue
        listed = listed.strip()
        if listed.startswith('./'):
            listed = listed[2:]
        if listed == name or listed.rsplit('/', 1)[-1] == name:
            return digest.lower()
    raise KvmError('checksum: %s lists no %s digest for %s' % (label, algorithm, name))


# ------------------------------------------------------------------ sources
class FileSource(object):
    """A regular file on the host that runs the module, read in chunks."""

    def __init__(self, option, path):
        self.label = path
        try:
            self.fd = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NONBLOCK', 0))
        except OSError as exc:
            raise KvmError('%s: cannot read %s: %s' % (option, path, exc.strerror))
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self.fd)
            raise KvmError('%s: %s is not a regular file' % (option, path))
        self.size = info.st_size

    def read(self, size):
        return os.read(self.fd, size)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ansible.module_utils.urls (with http.client, ssl and cryptography behind it) is imported by the functions below
# that open or explain a request, not with this module: a run that opens no URL (kvm_volume from a file, kvm_domain)
# does not pay the ~35 ms its import costs from the AnsiballZ zip. The module_utils finder still packs it.
def url_error(option, url, exc, params):
    """One line for a failed request: the HTTP status, a certificate problem (with what to do), or the reason."""
    import socket
    import ssl
    from urllib.error import HTTPError
    from ansible.module_utils.urls import SSLValidationError
    label = safe_url(url)
    if isinstance(exc, HTTPError):
        return '%s: %s answered HTTP %s %s' % (option, label, exc.code, exc.reason)
    reason = getattr(exc, 'reason', exc)
    text = error_text(reason)
    if isinstance(exc, SSLValidationError) or isinstance(reason, ssl.SSLError) or 'CERTIFICATE_VERIFY_FAILED' in text:
        if params.get('validate_certs', True):
            return ('%s: the TLS certificate of %s could not be verified (%s); add its CA to the trust store of the host '
                    'that runs the module, or set validate_certs: false for a server you trust otherwise'
                    % (option, label, text))
        return '%s: TLS error talking to %s: %s' % (option, label, text)
    if isinstance(reason, (socket.timeout, TimeoutError)) or 'timed out' in text:
        return '%s: %s did not answer within %s seconds (timeout)' % (option, label, params.get('timeout'))
    return '%s: cannot download %s: %s' % (option, label, text)


MAX_REDIRECTS = 10


def _origin(url):
    parts = urlsplit(url)
    return (parts.scheme.lower(), (parts.hostname or '').lower(), parts.port or {'http': 80, 'https': 443}.get(parts.scheme.lower()))


def open_source_url(url, params):
    """``open_url`` of ``url``; with ``force_basic_auth`` the redirects are followed here, and the credentials
    go to the URL's own scheme, host and port only (ansible-core forwards the Authorization header it forces
    to whatever host a redirect names)."""
    from urllib.error import HTTPError
    from ansible.module_utils.urls import open_url
    common = dict(validate_certs=params.get('validate_certs', True), use_proxy=params.get('use_proxy', True),
                  timeout=params.get('timeout') or 10, http_agent='ansible-kvmops.kvm', decompress=False)
    auth = dict(url_username=params.get('url_username'), url_password=params.get('url_password'),
                force_basic_auth=params.get('force_basic_auth', False))
    if not auth['force_basic_auth']:   # the basic-auth handler answers the URL's own host only
        return open_url(url, **dict(common, **auth))
    origin = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            return open_url(url, follow_redirects='none', **dict(common, **auth))
        except HTTPError as exc:
            location = exc.headers.get('Location') if exc.code in (301, 302, 303, 307, 308) and exc.headers else None
            if not location:
                raise
        url = urljoin(url, location)
        if urlsplit(url).scheme.lower() not in ('http', 'https'):
            raise ValueError('redirected to %s, which is not an http(s) URL' % safe_url(url))
        if _origin(url) != origin:   # another host: no credentials
            auth = dict(url_username=None, url_password=None, force_basic_auth=False)
    raise ValueError('more than %d redirects' % MAX_REDIRECTS)


class UrlSource(object):
    """An http(s) response read in chunks (ansible-core's ``open_url``; nothing stored on disk)."""

    def __init__(self, option, url, params):
        from http.client import HTTPException
        from urllib.error import HTTPError, URLError
        from ansible.module_utils.urls import ConnectionError as UrlConnectionError, MissingModuleError
        self.option = option
        self.label = safe_url(url)
        self.params = params
        failure = None
        try:
            self.response = open_source_url(url, params)
        except (HTTPError, URLError, UrlConnectionError, MissingModuleError, HTTPException, OSError, ValueError) as exc:
            failure = url_error(option, url, exc, params)
        if failure:
            raise KvmError(failure)
        length = self.response.headers.get('Content-Length')
        self.size = int(length) if length and length.isdigit() else None
        self.received = 0

    def read(self, size):
        from http.client import HTTPException
        failure = None
        try:
            data = self.response.read(size)
        except (HTTPException, OSError, ValueError) as exc:
            failure = url_error(self.option, self.label, exc, self.params)
        if failure:
            raise KvmError(failure + ' (while reading)')
        self.received += len(data)
        if not data and self.size is not None and self.received < self.size:
            # http.client returns b'' (no IncompleteRead) when a sized read meets a closed connection
            raise KvmError('%s: the download of %s ended after %d of %d bytes (while reading)'
                           % (self.option, self.label, self.received, self.size))
        return data

    def close(self):
        from http.client import HTTPException
        try:
            self.response.close()
        except (HTTPException, OSError):
            pass


def open_source(option, ref, params):
    """A :class:`UrlSource` for an http(s) URL, else a :class:`FileSource`."""
    if is_url(ref):
        return UrlSource(option, ref, params)
    return FileSource(option, ref)


def read_head(source, size=HEAD):
    """The first ``size`` bytes (fewer at the end of the source)."""
    parts = []
    have = 0
    while have < size:
        data = source.read(size - have)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b''.join(parts)


def fetch_digest(checksum, image_url, params):
    """The expected digest: given, or read from the checksum file (at most 1 MiB) for the image's basename."""
    if checksum['digest'] or not checksum['url']:
        return checksum['digest']
    source = UrlSource('checksum', checksum['url'], params)
    try:
        data = read_head(source, MAX_SUMS_BYTES + 1)
    finally:
        source.close()
    if len(data) > MAX_SUMS_BYTES:
        raise KvmError('checksum: %s is larger than 1 MiB; not a checksum file' % safe_url(checksum['url']))
    name = url_basename(image_url) if is_url(image_url) else os.path.basename(image_url)
    return digest_from_sums(data.decode('utf-8', 'replace'), name, checksum['algorithm'], safe_url(checksum['url']))


# ------------------------------------------------------------------ image headers
OTHER_FORMATS = (
    (b'\x1f\x8b', 'a gzip-compressed file; decompress it first'),
    (b'\xfd7zXZ\x00', 'an xz-compressed file; decompress it first'),
    (b'BZh', 'a bzip2-compressed file; decompress it first'),
    (b'\x28\xb5\x2f\xfd', 'a zstd-compressed file; decompress it first'),
    (b'KDMV', 'a vmdk image; convert it to qcow2 or raw first (qemu-img convert)'),
    (b'# Disk DescriptorFile', 'a vmdk descriptor; convert the image to qcow2 or raw first'),
    (b'vhdxfile', 'a vhdx image; convert it to qcow2 or raw first (qemu-img convert)'),
    (b'conectix', 'a vpc (vhd) image; convert it to qcow2 or raw first (qemu-img convert)'),
    (b'QED\x00', 'a qed image; convert it to qcow2 or raw first (qemu-img convert)'),
    (b'LUKS\xba\xbe', 'a LUKS-encrypted image; only raw and qcow2 can be imported'),
    (b'<<< ', 'probably a vdi image; convert it to qcow2 or raw first (qemu-img convert)'),
)
QCOW2_MAGIC = b'QFI\xfb'


def image_header(option, label, head, fmt=None):
    """What the first bytes of an image say: ``dict(format, capacity)`` (capacity None for raw: its size).

    A qcow2 image with a backing file, encryption or an external data file is refused (it would make the
    hypervisor open other files); so are other formats and compressed files, unless ``fmt`` is raw (the
    caller says the bytes are a raw disk). ``fmt`` given and different from a detected qcow2 is refused.
    """
    if head.startswith(QCOW2_MAGIC):
        if len(head) < 72:
            raise KvmError('%s: %s is a truncated qcow2 image' % (option, label))
        version, backing_offset = struct.unpack('>IQ', head[4:16])
        size, crypt = struct.unpack('>QI', head[24:36])
        incompatible = struct.unpack('>Q', head[72:80])[0] if version >= 3 and len(head) >= 80 else 0
        if backing_offset:
            raise KvmError('%s: %s has a backing file; import a standalone image (qemu-img convert it first)' % (option, label))
        if crypt:
            raise KvmError('%s: %s is an encrypted qcow2 image; only unencrypted images can be imported' % (option, label))
        if incompatible & 0x4:
            raise KvmError('%s: %s is a qcow2 image with an external data file; import a standalone image' % (option, label))
        if incompatible & 0x2:
            raise KvmError('%s: %s is a qcow2 image marked corrupt' % (option, label))
        if fmt and fmt != 'qcow2':
            raise KvmError('%s %s is a qcow2 image but format is %s; omit format or convert the image first' % (option, label, fmt))
        return dict(format='qcow2', capacity=size)
    if fmt != 'raw':
        for magic, what in OTHER_FORMATS:
            if head.startswith(magic):
                raise KvmError('%s: %s is %s (or set format: raw if it really is a raw disk)' % (option, label, what))
        if fmt and fmt != 'raw':
            raise KvmError('%s %s is a raw image but format is %s; omit format or convert the image first' % (option, label, fmt))
    return dict(format='raw', capacity=None)


# ------------------------------------------------------------------ streams
PROGRESS_INTERVAL = 10.0   # seconds between two progress samples of a long transfer
MAX_PROGRESS = 60          # samples kept in the result (the first one and the latest ones)


def _mib(count):
    return '%.1f MiB' % (count / 1048576.0)


class Progress(object):
    """The progress of one long transfer: a sample every :data:`PROGRESS_INTERVAL` seconds (none for a
    transfer that ends sooner), written with ``log`` (the module's ``log``: the journal or syslog of the host
    that runs the module, ``ansible-kvm_volume``) and kept in :attr:`samples` for the task's result.
    ``total`` is the expected size in bytes (None when the server gave no Content-Length)."""

    def __init__(self, what, total=None, log=None, interval=None, clock=time.monotonic):
        self.what, self.total, self.log, self.clock = what, total, log, clock
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.started = self.last = clock()
        self.samples = []

    def update(self, done):
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        seconds = now - self.started
        percent = round(100.0 * done / self.total, 1) if self.total else None
        sample = dict(seconds=round(seconds, 1), bytes=done, percent=percent)
        if len(self.samples) >= MAX_PROGRESS:
            del self.samples[1]
        self.samples.append(sample)
        if self.log is not None:
            self.log('%s: %s%s after %d s (%s/s)' % (
                self.what, _mib(done), ' of %s (%s%%)' % (_mib(self.total), percent) if self.total else '',
                seconds, _mib(done / seconds if seconds > 0 else 0)))


def new_hasher(algorithm):
    return hashlib.new(algorithm) if algorithm else None


def _send_all(stream, data):
    view = memoryview(data)
    while view:
        sent = stream.send(view.tobytes())
        if sent < 0:
            raise libvirt.libvirtError('the upload stream refused data (%d)' % sent)
        view = view[sent:]


def upload(client, vol, source, head, hasher=None, length=0, what=None, progress=None):
    """Stream ``head`` and the rest of ``source`` into ``vol`` from offset 0, chunks of zeros as holes.

    Feeds ``hasher`` with every byte, and ``progress`` (a :class:`Progress`) with the bytes sent so far.
    Returns ``(stream, dict(bytes, seconds, progress))``, ``progress`` the samples taken (a list). Neither
    finishes nor aborts the stream on success: the caller finishes it (:func:`finish`) after checking the
    digest, or aborts it.
    """
    what = what or 'upload into volume %s' % vol.name()
    started = time.monotonic()
    stream = client.call(what, client.conn.newStream, 0)
    sent = 0
    try:
        with client.errors(what):
            vol.upload(stream, 0, length, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            chunk = head
            while chunk:
                if hasher is not None:
                    hasher.update(chunk)
                if chunk == ZEROS[:len(chunk)]:
                    stream.sendHole(len(chunk), 0)
                else:
                    _send_all(stream, chunk)
                sent += len(chunk)
                if progress is not None:
                    progress.update(sent)
                chunk = source.read(CHUNK)
            if source.size is not None and sent != source.size:
                raise KvmError('%s: %s changed size while it was read (%d bytes, not %d)' % (what, source.label, sent, source.size))
    except BaseException:
        abort(stream)
        raise
    return stream, dict(bytes=sent, seconds=round(time.monotonic() - started, 3),
                        progress=progress.samples if progress is not None else [])


def finish(client, stream, what):
    try:
        client.call(what, stream.finish)
    except KvmError:
        abort(stream)
        raise


def abort(stream):
    try:
        stream.abort()
    except Exception:  # pylint: disable=broad-except  # the stream may already be finished or broken
        pass


def download(client, vol, data, hole, what=None, progress=None):
    """Stream the volume's bytes: ``data(bytes)`` for data, ``hole(length)`` for holes; ``progress`` (a
    :class:`Progress`) is fed the bytes so far. Returns ``dict(bytes, seconds, progress)``."""
    what = what or 'download volume %s' % vol.name()
    started = time.monotonic()
    stream = client.call(what, client.conn.newStream, 0)
    total = 0
    try:
        with client.errors(what):
            vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            while True:
                got = stream.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
                if got == -3:
                    length = stream.recvHole(0)
                    hole(length)
                    total += length
                elif not isinstance(got, bytes):
                    raise KvmError('%s: unexpected answer %r from the download stream' % (what, got))
                elif not got:
                    break
                else:
                    data(got)
                    total += len(got)
                if progress is not None:
                    progress.update(total)
            stream.finish()
    except BaseException:
        abort(stream)
        raise
    return dict(bytes=total, seconds=round(time.monotonic() - started, 3),
                progress=progress.samples if progress is not None else [])


def hash_zeros(hasher, length):
    while length > 0:
        step = min(length, CHUNK)
        hasher.update(ZEROS[:step])
        length -= step


def volume_digest(client, vol, algorithm, what=None):
    """The ``algorithm`` digest of the volume's bytes, read through the download stream (nothing written)."""
    hasher = hashlib.new(algorithm)
    download(client, vol, hasher.update, lambda length: hash_zeros(hasher, length), what)
    return hasher.hexdigest()


def file_digest(path, algorithm):
    """The digest of a local file, or None when it cannot be read."""
    hasher = hashlib.new(algorithm)
    try:
        with open(path, 'rb') as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b''):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


def export_file(client, vol, option, path, mode, algorithm='sha256', log=None):
    """Download ``vol`` into the file ``path`` on the host that runs the module, atomically.

    The bytes go into a private temporary file beside ``path`` (``mkstemp``: O_EXCL, mode 0600), holes kept
    sparse, fsync'ed, given ``mode`` (an int) and renamed over ``path``: a reader never sees half a file, and a
    symbolic link at ``path`` is refused (and, planted during the download, replaced rather than followed).
    A long download is reported with ``log`` (see :class:`Progress`). Returns ``dict(bytes, seconds, checksum,
    progress)``.
    """
    refuse_link(option, path)
    hasher = hashlib.new(algorithm)
    fd = tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix='.kvmops-export-', suffix='.tmp', dir=os.path.dirname(path) or '.')

        def data(chunk):
            hasher.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]

        def hole(length):
            hash_zeros(hasher, length)
            os.lseek(fd, length, os.SEEK_CUR)

        what = 'export volume %s to %s' % (vol.name(), path)
        with client.errors(what):
            total = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]   # the bytes of the file, not its virtual size
        if log is None:
            log = getattr(getattr(client, 'module', None), 'log', None)
        info = download(client, vol, data, hole, what, Progress(what, total, log))
        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
        os.fchmod(fd, mode)
        os.fsync(fd)
        os.close(fd)
        fd = None
        refuse_link(option, path)
        os.rename(tmp, path)
        tmp = None
    except OSError as exc:
        raise KvmError('%s: cannot write %s: %s' % (option, path, exc.strerror or exc))
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    info['checksum'] = '%s:%s' % (algorithm, hasher.hexdigest())
    return info
