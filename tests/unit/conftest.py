"""Unit tier: in-process, libvirt's test driver, no daemon."""

import os

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


class FakeModule(object):
    """The part of AnsibleModule the logic layer uses."""

    def __init__(self, params=None, check_mode=False):
        self.params = dict(params or {})
        self.check_mode = check_mode
        self.exit_args = None
        self.fail_args = None

    def exit_json(self, **kwargs):
        self.exit_args = kwargs
        raise SystemExit(0)

    def fail_json(self, **kwargs):
        self.fail_args = kwargs
        raise SystemExit(1)


@pytest.fixture
def node_uri():
    return 'test://' + os.path.join(FIXTURES, 'node.xml')


@pytest.fixture
def fake_module():
    return FakeModule


@pytest.fixture
def client(node_uri):
    from ansible_collections.kvmops.kvm.plugins.module_utils._client import LibvirtClient
    cli = LibvirtClient(FakeModule({'uri': node_uri}))
    yield cli
    cli.close()
