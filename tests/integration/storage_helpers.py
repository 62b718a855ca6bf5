"""Playbook helpers shared by the storage tests (kvm_pool, kvm_volume, kvm_snapshot).

The storage modules return ``changes`` (structured entries: what they did, or would do in check
mode) and the deprecated one-line ``actions``; these helpers build a one-task play and run the
four-step proof on it.
"""

import os
import shutil
import textwrap
from contextlib import contextmanager


def write_play(tmp_path, tasks, name='play.yml'):
    body = '- hosts: localhost\n  gather_facts: false\n  tasks:\n' + textwrap.indent(textwrap.dedent(tasks), '    ')
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def run_task(playbook, path, extra, check=False, task='t'):
    result = playbook(path, extra_vars=extra, check=check, diff=True)
    assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
    return result.task(task)


def four_step(playbook, path, extra, task='t', same_actions=True):
    """check -> real -> check -> real: changed, changed, not changed, not changed."""
    results = [run_task(playbook, path, extra, check=check, task=task) for check in (True, False, True, False)]
    assert [r['changed'] for r in results] == [True, True, False, False], [r.get('actions') for r in results]
    if same_actions:
        assert results[0]['actions'] == results[1]['actions'], 'check mode predicted other actions'
        assert ([(c['scope'], c['option'], c['action']) for c in results[0]['changes']]
                == [(c['scope'], c['option'], c['action']) for c in results[1]['changes']]), 'check mode predicted other changes'
    assert results[2]['actions'] == [] and results[3]['actions'] == []
    assert results[2]['changes'] == [] and results[3]['changes'] == []
    assert all(isinstance(r['pending_restart'], list) for r in results)
    return results


def expect_failure(playbook, path, extra, task='t'):
    """The task fails with one line, no traceback; returns the message."""
    result = playbook(path, extra_vars=extra)
    assert result.rc != 0
    out = result.task(task)
    assert out['failed'] is True
    assert 'Traceback' not in result.stdout and '\n' not in out['msg']
    return out['msg']


@contextmanager
def dir_pool(conn, name, path):
    """A transient directory pool ``name`` at a new ``path`` on ``conn``; destroyed and the directory removed
    afterwards. Yields dict(name, path, pool)."""
    import libvirt
    os.makedirs(path)
    obj = conn.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path), 0)
    try:
        yield dict(name=name, path=path, pool=obj)
    finally:
        try:
            obj.destroy()
        except libvirt.libvirtError:
            pass
        shutil.rmtree(path, ignore_errors=True)
