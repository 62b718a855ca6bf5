"""The shared module construction: an infinite integer is a message naming the option, whatever the spelling."""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kvmops.kvm.plugins.module_utils._client import _infinite_options, _untyped

SPEC = dict(
    destination_uri=dict(type='str', aliases=['dest_uri'],
                         deprecated_aliases=[dict(name='dest_uri', version='2.0.0', collection_name='kvmops.kvm')]),
    bandwidth=dict(type='int'),
    password=dict(type='str', no_log=True, aliases=['passwd']),
    disks=dict(type='list', elements='dict', options=dict(size=dict(type='int'))),
)


def test_the_untyped_spec_accepts_every_spelling_the_typed_one_does():
    params = dict(dest_uri='qemu+ssh://h/system', bandwidth='inf', passwd='s3cret', disks=[dict(size='-inf')])
    result = ArgumentSpecValidator(_untyped(SPEC)).validate(params)
    assert not result.error_messages, result.error_messages
    assert result.validated_parameters['destination_uri'] == 'qemu+ssh://h/system'
    assert 's3cret' in result._no_log_values
    assert _infinite_options(SPEC, result.validated_parameters) == ['bandwidth', 'disks[0].size']


def test_finite_values_are_not_reported():
    assert _infinite_options(SPEC, dict(bandwidth='12', disks=[dict(size=3)])) == []
