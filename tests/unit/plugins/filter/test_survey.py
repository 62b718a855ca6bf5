import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmops.kvm.plugins.filter.survey import FilterModule, survey_dict, survey_list


@pytest.mark.parametrize('value,expected', [
    ('qemu+ssh://hv02/system, qemu+ssh://hv03/system', ['qemu+ssh://hv02/system', 'qemu+ssh://hv03/system']),
    (' a ,, b ,', ['a', 'b']),
    ('', []),
    (None, []),
    (['a', ' b ', ''], ['a', 'b']),
    (('a',), ['a']),
])
def test_survey_list_reads_lists_and_their_text(value, expected):
    assert survey_list(value) == expected


@pytest.mark.parametrize('value,words', [
    (5, ['drain_exclude must be a list or a comma-separated string', 'not int']),
    ({'a': 1}, ['not dict']),
    (['a', 3], ['drain_exclude must hold strings only', 'int']),
])
def test_survey_list_names_the_variable_on_bad_input(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        survey_list(value, 'drain_exclude')
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('value,expected', [
    ('{"bandwidth": 500, "auto_converge": true}', {'bandwidth': 500, 'auto_converge': True}),
    ({'bandwidth': 500}, {'bandwidth': 500}),
    ('', {}),
    ('  ', {}),
    (None, {}),
])
def test_survey_dict_reads_dicts_and_their_json(value, expected):
    assert survey_dict(value) == expected


@pytest.mark.parametrize('value,words', [
    ('{"bandwidth": 500', ['opts must be a dictionary or its JSON text', 'line 1']),
    ('[1, 2]', ['opts must be a dictionary', 'not list']),
    (7, ['not int']),
])
def test_survey_dict_names_the_variable_on_bad_input(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        survey_dict(value, 'opts')
    for word in words:
        assert word in str(err.value)


def test_the_filters_are_exported():
    assert set(FilterModule().filters()) == {'survey_list', 'survey_dict'}
