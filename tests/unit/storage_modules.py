"""FakeModule factories for the storage managers (kvm_pool, kvm_volume, kvm_snapshot) on the test driver."""

from fakes import FakeModule

from ansible_collections.kvmops.kvm.plugins.module_utils._client import LibvirtClient

TEST_URI = 'test:///default'


def module_class(argument_spec, uri=TEST_URI):
    """A factory of FakeModules whose params are the argument spec's defaults (uri: libvirt's test driver)
    plus the given ones: ``Module(check_mode=False, diff=True, **params)``."""
    def make(check_mode=False, diff=True, **params):
        return FakeModule(dict(uri=uri, **params), check_mode=check_mode, diff=diff, spec=argument_spec)

    return make


def driver_client(module, **params):
    """A LibvirtClient on the test driver; the caller closes it."""
    return LibvirtClient(module(**params), uri=TEST_URI)
