"""Unit tier: in-process, libvirt's test driver, no daemon."""

import os

import pytest

from fakes import FakeModule

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


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
