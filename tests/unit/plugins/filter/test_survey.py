import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmops.kvm.plugins.filter.survey import FilterModule, survey_dict, survey_list
from templating import is_unsafe


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


# ------------------------------------------------------------------ hostile input
@pytest.mark.parametrize('value,words', [
    ('[' * 100000, ['opts is longer than 65536 characters']),
    ('[' * 60000, ['opts is nested deeper than 16 levels']),              # json raises RecursionError
    ('{"a": ' * 40 + '1' + '}' * 40, ['opts is nested deeper than 16 levels']),
    ('{"a": ' + '[' * 17 + ']' * 17 + '}', ['opts is nested deeper than 16 levels']),
    ('{"a": NaN}', ['opts must be a dictionary or its JSON text', 'NaN is not JSON']),
    ('{"a": -Infinity}', ['-Infinity is not JSON']),
    ('{"a": 1e999}', ['1e999 is too large a number']),
    ('{"a": [' + ','.join(['1'] * 1001) + ']}', ['opts holds more than 1000 items']),
    (dict((str(i), i) for i in range(1001)), ['opts holds more than 1000 items']),
    ({1: 'a'}, ['opts must have string keys only']),
    ({'a': {('t',): 1}}, ['opts must have string keys only']),
    (b'{}', ['not bytes']),
    (['a'], ['not list']),
])
def test_survey_dict_refuses_hostile_input_naming_the_variable(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        survey_dict(value, 'opts')
    for word in words:
        assert word in str(err.value)


def test_survey_dict_refuses_a_cycle_without_recursing():
    loop = {}
    loop['self'] = loop
    with pytest.raises(AnsibleFilterError, match='opts is nested deeper than 16 levels'):
        survey_dict(loop, 'opts')


@pytest.mark.parametrize('value,words', [
    ('a,' * 40000, ['names is longer than 65536 characters']),
    ([str(i) for i in range(1001)], ['names holds more than 1000 items']),
    (['x' * 70000], ['names is longer than 65536 characters']),
    ({'a'}, ['not set']),
    (b'a,b', ['not bytes']),
])
def test_survey_list_refuses_hostile_input_naming_the_variable(value, words):
    with pytest.raises(AnsibleFilterError) as err:
        survey_list(value, 'names')
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('function', [survey_list, survey_dict])
def test_the_name_argument_must_be_text(function):
    with pytest.raises(AnsibleFilterError, match='the name argument of the survey filters must be a string'):
        function(None, ['opts'])


def test_results_are_unsafe_so_answers_are_never_templated():
    got = survey_dict('{"migrate_uri": "{{ lookup(\'pipe\', \'id\') }}", "n": 1}')
    assert is_unsafe(got['migrate_uri']) and got['n'] == 1
    assert all(is_unsafe(item) for item in survey_list("{{ lookup('pipe', 'id') }}, b"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=40)))
def test_any_input_gives_data_or_a_filter_error(value):
    for function in (survey_list, survey_dict):
        try:
            function(value, 'answer')
        except AnsibleFilterError as exc:
            assert str(exc).startswith(('answer ', 'answer:')), str(exc)
