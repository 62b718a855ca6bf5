# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one shared connection and error layer of kvmops.kvm.

Private module (leading underscore): free to change between releases.

Every module builds its AnsibleModule with :func:`kvm_module`, connects with
:class:`LibvirtClient`, and runs its logic inside :func:`run`, so that:

* the connection options are declared once (``KVM_COMMON_ARGS``) and
  documented once (doc fragment ``kvmops.kvm.connection``);
* a missing libvirt-python or lxml gives ``missing_required_lib``;
* every libvirt error becomes one clear failure naming the URI, the object
  and libvirt's own message, never a traceback.
"""

from __future__ import annotations

import os
import re
import traceback
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

LIBVIRT_IMPORT_ERROR = None
LXML_IMPORT_ERROR = None
try:
    import libvirt
except ImportError:  # pragma: no cover - exercised by the sanity import test
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

try:
    from lxml import etree  # noqa: F401  pylint: disable=unused-import
except ImportError:  # pragma: no cover
    LXML_IMPORT_ERROR = traceback.format_exc()

DEFAULT_URI = 'qemu:///system'

KVM_COMMON_ARGS = dict(
    uri=dict(type='str', fallback=(env_fallback, ['LIBVIRT_DEFAULT_URI'])),
    uri_allow_ext=dict(type='bool', default=False),
)


class KvmError(Exception):
    """A failure that is already phrased for the user."""

    def __init__(self, msg, **facts):
        super().__init__(msg)
        self.msg = msg
        self.facts = facts


def one_line(text):
    """Collapse libvirt's (sometimes multi-line) messages to one line."""
    return re.sub(r'\s+', ' ', str(text or '')).strip()


def error_text(exc):
    """libvirt's own message of ``exc`` on one line (any exception: its text)."""
    text = exc.get_error_message() if hasattr(exc, 'get_error_message') else None
    return one_line(text or exc)


def is_local_uri(uri):
    """True when the URI names no remote host (qemu:///system, test:///default)."""
    rest = uri.split('://', 1)[1] if '://' in uri else ''
    return rest.startswith('/') or rest == ''


def kvm_argument_spec(spec=None):
    """The module's own options merged with the shared connection options."""
    merged = dict(KVM_COMMON_ARGS)
    merged.update(spec or {})
    return merged


def _infinite_options(spec, params, prefix=''):
    """Names of int options whose raw value is an infinite number (``inf``, ``Infinity``, ``1e999``)."""
    found = []
    if not isinstance(params, dict):
        return found
    for key, option in (spec or {}).items():
        value = params.get(key)
        name = prefix + key
        if option.get('type') == 'int' and isinstance(value, (str, float)):
            try:
                if abs(float(value)) == float('inf'):
                    found.append(name)
            except (TypeError, ValueError):
                pass
        elif option.get('options') and isinstance(value, list):
            for index, item in enumerate(value):
                found.extend(_infinite_options(option['options'], item, '%s[%d].' % (name, index)))
        elif option.get('options'):
            found.extend(_infinite_options(option['options'], value, name + '.'))
    return found


def _untyped(spec):
    """``spec`` with no conversions left: leaves raw, containers with their suboptions, aliases and no_log kept."""
    out = {}
    for key, option in spec.items():
        new = dict(aliases=option.get('aliases', []), no_log=option.get('no_log', False), type='raw')
        if option.get('deprecated_aliases'):
            new['deprecated_aliases'] = option['deprecated_aliases']
        if option.get('options'):
            new.update(type=option.get('type', 'dict'), options=_untyped(option['options']))
            if option.get('elements'):
                new['elements'] = option['elements']
        out[key] = new
    return out


# scheme://user:password@host...: the user information of a URL, found without parsing it (a malformed
# URL, or one of a scheme the modules refuse, carries its password all the same).
URL_USERINFO_RE = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://(\S*)@')


def url_passwords(value):
    """The passwords of every URL in ``value`` (a string, or lists and dicts of them), to be masked."""
    found = set()
    if isinstance(value, str):
        for match in URL_USERINFO_RE.finditer(value):
            password = match.group(1).partition(':')[2]
            if password:
                found.add(password)
    elif isinstance(value, dict):
        for item in value.values():
            found.update(url_passwords(item))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.update(url_passwords(item))
    return found


class _Module(AnsibleModule):
    """AnsibleModule whose every result and failure masks the password of any URL in the task's arguments
    (an ``import_from`` URL with credentials is no secret option, and may be refused before a module masks it,
    even by ansible-core's own type checks)."""

    def _mask_url_passwords(self):
        self.no_log_values.update(url_passwords(getattr(self, 'params', None)))

    def exit_json(self, **kwargs):
        self._mask_url_passwords()
        super(_Module, self).exit_json(**kwargs)

    def fail_json(self, msg, **kwargs):
        self._mask_url_passwords()
        super(_Module, self).fail_json(msg, **kwargs)


def new_module(argument_spec, **kwargs):
    """``AnsibleModule(...)``, but an infinite number in an int option is a message, not a traceback.

    ansible-core's int conversion raises OverflowError for ``inf``/``Infinity`` instead of its usual
    type error (seen on 2.18). The module is then made again with every option untyped (aliases and
    no_log kept, so secrets stay masked) only to fail, naming the option.
    """
    overflow = False
    try:
        return _Module(argument_spec=argument_spec, **kwargs)
    except OverflowError:
        overflow = True
    if overflow:
        module = _Module(argument_spec=_untyped(argument_spec), supports_check_mode=True)
        names = _infinite_options(argument_spec, module.params) or ['an integer option']
        module.fail_json(msg='%s: must be a finite integer (got an infinite number)' % names[0])
    return None


def kvm_module(argument_spec=None, need_libvirt=True, need_lxml=None, **kwargs):
    """Create the AnsibleModule with the shared options and dependency checks.

    ``need_libvirt`` may be a callable of the module's params, for modules
    that only sometimes talk to libvirt (kvm_info's ``gather: [hardware]``).
    ``need_lxml`` defaults to whatever ``need_libvirt`` decided.
    """
    kwargs.setdefault('supports_check_mode', True)
    module = new_module(kvm_argument_spec(argument_spec), **kwargs)
    if callable(need_libvirt):
        need_libvirt = need_libvirt(module.params)
    if need_lxml is None:
        need_lxml = need_libvirt
    if need_libvirt and LIBVIRT_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('libvirt-python'), exception=LIBVIRT_IMPORT_ERROR)
    if need_lxml and LXML_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('lxml'), exception=LXML_IMPORT_ERROR)
    if need_libvirt:
        refusal = None
        try:
            check_uri(module)
        except KvmError as exc:
            refusal = exc.msg
        if refusal is not None:
            module.fail_json(msg=refusal)
    return module


def effective_uri(params):
    """The URI a module connects to: its option, else LIBVIRT_DEFAULT_URI, else qemu:///system."""
    return params.get('uri') or os.environ.get('LIBVIRT_DEFAULT_URI') or DEFAULT_URI


def check_uri(module):
    """Refuse a URI outside the allow-list before anything connects (see _validate.uri)."""
    from ansible_collections.kvmops.kvm.plugins.module_utils._validate import uri as valid_uri
    valid_uri('uri', effective_uri(module.params), allow_ext=bool(module.params.get('uri_allow_ext')))


def _silence(_ctx, _err):
    """libvirt prints every error on stderr by default; we report them ourselves."""


class LibvirtClient(object):
    """Owns the connection, the error translation and ``fail_json``."""

    def __init__(self, module, uri=None, read_only=False):
        self.module = module
        self.uri = uri or effective_uri(module.params)
        self.read_only = read_only
        self._conn = None

    # -- connection ----------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            libvirt.registerErrorHandler(_silence, None)
            try:
                if self.read_only:
                    self._conn = libvirt.openReadOnly(self.uri)
                else:
                    self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise KvmError('cannot connect to libvirt at %s: %s' % (self.uri, one_line(exc.get_error_message() or exc)))
            if self._conn is None:  # very old bindings return None
                raise KvmError('cannot connect to libvirt at %s' % self.uri)
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- errors --------------------------------------------------------
    def describe_error(self, exc, what=None):
        msg = error_text(exc)
        where = ' (%s)' % what if what else ''
        return 'libvirt error on %s%s: %s' % (self.uri, where, msg)

    @contextmanager
    def errors(self, what=None):
        """Turn a libvirtError raised inside the block into a KvmError."""
        try:
            yield
        except libvirt.libvirtError as exc:
            raise KvmError(self.describe_error(exc, what))

    def call(self, what, func, *args, **kwargs):
        with self.errors(what):
            return func(*args, **kwargs)

    # -- lookups ---------------------------------------------------------
    def _lookup(self, lookup, no_such_code, name):
        try:
            return lookup(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == no_such_code:
                return None
            raise KvmError(self.describe_error(exc, name))

    def find_domain(self, name):
        return self._lookup(self.conn.lookupByName, libvirt.VIR_ERR_NO_DOMAIN, name)

    def find_network(self, name):
        return self._lookup(self.conn.networkLookupByName, libvirt.VIR_ERR_NO_NETWORK, name)

    def find_pool(self, name):
        return self._lookup(self.conn.storagePoolLookupByName, libvirt.VIR_ERR_NO_STORAGE_POOL, name)


def run(module, func):
    """Run ``func(client)`` and exit: its dict result, or one clear failure.

    ``fail_json`` is called outside the ``except`` blocks: inside one, ansible-core attaches the
    traceback at -vvv even to a clean refusal. Only an unexpected error carries its traceback.
    """
    failure = None
    result = None
    client = LibvirtClient(module)
    try:
        result = func(client)
    except KvmError as exc:
        failure = dict(msg=exc.msg, **exc.facts)
    except Exception as exc:  # pylint: disable=broad-except
        if libvirt is not None and isinstance(exc, libvirt.libvirtError):
            failure = dict(msg=client.describe_error(exc))
        else:
            failure = dict(msg='unexpected error (%s): %s' % (type(exc).__name__, one_line(exc)),
                           exception=traceback.format_exc())
    client.close()
    if failure is not None:
        module.fail_json(**failure)
    module.exit_json(**result)
