"""Module start cost (issue 18): a kvm_domain or kvm_guests run loads only the module_utils it needs.

Inside the AnsiballZ zip CPython compiles every module it imports (twice, gh-141276) and caches nothing, so
what a run does not import it does not pay for. The storage layer (_storage, _transfer, _qemu_img, _files),
ansible-core's url helpers (with http.client, ssl and cryptography behind them), the XML merge, cloud-init
and the host virtualization report are imported by the functions that use them. Each case runs in a fresh
interpreter (this process has imported everything already) on libvirt's test driver and reports what is in
``sys.modules`` afterwards.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip('libvirt')

MU = 'ansible_collections.kvmops.kvm.plugins.module_utils.'
LAZY = ('_storage', '_transfer', '_qemu_img', '_files', '_xml_merge', '_cloudinit', '_hostvirt')
UNIT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r'''
import json, sys
sys.path[:0] = %(path)r
from fakes import FakeModule
from ansible_collections.kvmops.kvm.plugins.module_utils._client import LibvirtClient
case = sys.argv[1]
if case == 'domain':
    from ansible_collections.kvmops.kvm.plugins.module_utils._domain import ARGUMENT_SPEC, Manager
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    checked = ArgumentSpecValidator(ARGUMENT_SPEC).validate(json.loads(sys.argv[2]))
    assert not checked.error_messages, checked.error_messages
    module = FakeModule(dict(checked.validated_parameters, uri='test:///default'), check_mode=True)
    client = LibvirtClient(module)
    result = Manager(client, module).run()
    client.close()
else:
    from ansible_collections.kvmops.kvm.plugins.module_utils import _fleet
    module = FakeModule(dict(guests=json.loads(sys.argv[2]), defaults=None, concurrency=2, fail_fast=False,
                             unlisted='report', uri='test:///default', uri_allow_ext=False), check_mode=True)
    try:
        _fleet.main(module)
    except SystemExit:
        pass
    result = module.exit_args or module.fail_args
print(json.dumps(dict(changed=result.get('changed'), failed=bool(result.get('failed') or result.get('msg')),
                      modules=sorted(name for name in sys.modules if name.startswith(('ansible_collections.', 'ansible.module_utils.'))))))
'''


def loaded(case, args):
    """``(result summary, modules imported)`` of one run in a fresh interpreter."""
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, 'ansible_collections', 'kvmops', 'kvm'))]
    code = SCRIPT % dict(path=[UNIT] + collections[:1])
    proc = subprocess.run([sys.executable, '-c', code, case, json.dumps(args)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, set(out['modules'])


def lazy_loaded(modules):
    return sorted(name for name in LAZY if MU + name in modules)


def test_kvm_domain_noop_imports_no_storage_url_merge_or_seed_code():
    out, modules = loaded('domain', dict(name='test', state='running', memory='2GiB'))
    assert out['changed'] is False and not out['failed']
    assert MU + '_domain' in modules and MU + '_addresses' in modules   # the run really happened
    assert lazy_loaded(modules) == []
    assert 'ansible.module_utils.urls' not in modules


def test_kvm_guests_noop_imports_no_storage_url_merge_or_seed_code():
    out, modules = loaded('fleet', [dict(name='test', state='running', memory='2GiB')])
    assert out['changed'] is False and not out['failed']
    assert MU + '_fleet' in modules and MU + '_domain' in modules
    assert lazy_loaded(modules) == []
    assert 'ansible.module_utils.urls' not in modules


def test_the_lazy_imports_happen_when_a_run_needs_them():
    # a new disk image (check mode: planned, not written) needs the storage layer, but still no URL helper
    out, modules = loaded('domain', dict(name='test', state='running', memory='2GiB',
                                         disks=[dict(pool='default-pool', volume='lazy-import-check.qcow2', size='1GiB')]))
    assert out['changed'] is True and not out['failed']
    assert lazy_loaded(modules) == ['_files', '_qemu_img', '_storage']
    assert 'ansible.module_utils.urls' not in modules
    # a partial xml is merged by _xml_merge
    out, modules = loaded('domain', dict(name='test', state='running', xml='<domain><description>lazy</description></domain>'))
    assert not out['failed'] and MU + '_xml_merge' in modules


@pytest.mark.parametrize('name, absent', [
    ('_volume', ['ansible.module_utils.urls']),   # kvm_volume from a file or a pool: no url helpers
    ('_pool', ['ansible.module_utils.urls']),
    ('_snapshot', [MU + '_transfer', 'ansible.module_utils.urls']),
])
def test_storage_modules_import_the_url_helpers_only_to_open_a_url(name, absent):
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, 'ansible_collections', 'kvmops', 'kvm'))]
    code = ('import sys; sys.path[:0] = %r; import json, %s%s; print(json.dumps(sorted(sys.modules)))' % (collections[:1], MU, name))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = set(json.loads(proc.stdout))
    assert MU + name in modules
    assert [module for module in absent if module in modules] == []
