"""Stand-ins for AnsibleModule for the storage managers (kvm_pool, kvm_volume, kvm_snapshot) on the test driver."""

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils._client import LibvirtClient

TEST_URI = 'test:///default'


def module_class(argument_spec, uri=TEST_URI):
    """A Module class whose params are the argument spec's defaults (uri: libvirt's test driver) plus the given ones."""
    defaults = dict((k, v.get('default')) for k, v in argument_spec.items())
    defaults['uri'] = uri

    class Module(FakeModule):
        def __init__(self, check_mode=False, diff=True, **params):
            super().__init__(dict(defaults, **params), check_mode=check_mode, diff=diff)

    return Module


def driver_client(module, **params):
    """A LibvirtClient on the test driver; the caller closes it."""
    return LibvirtClient(module(**params), uri=TEST_URI)
