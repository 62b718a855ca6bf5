"""kvm_info on a remote URI (issue 17): what would read the module's host is refused, never reported as the hypervisor's."""

import pytest

from ansible_collections.kvmops.kvm.plugins.module_utils import _info
from ansible_collections.kvmops.kvm.plugins.module_utils._client import KvmError, LibvirtClient


@pytest.mark.parametrize('gather', [['hardware'], ['hardware', 'host']])
def test_hardware_on_a_remote_uri_is_refused_before_connecting(fake_module, gather):
    client = LibvirtClient(fake_module({'uri': 'qemu+ssh://root@hv01.example.com/system'}))
    with pytest.raises(KvmError) as err:
        _info.gather(client, dict(gather=gather, name=[]))
    assert err.value.msg.startswith('gather: hardware probes the host that runs the module (')
    assert 'not the hypervisor of qemu+ssh://root@hv01.example.com/system' in err.value.msg
    assert client._conn is None  # pylint: disable=protected-access


def test_hardware_on_a_local_uri_is_still_read(fake_module):
    client = LibvirtClient(fake_module({'uri': 'qemu:///system'}))
    result = _info.gather(client, dict(gather=['hardware'], name=[]))
    assert 'dev_kvm' in result['hardware'] and client._conn is None  # pylint: disable=protected-access
