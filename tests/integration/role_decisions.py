"""A role's decision step (tasks_from: decide) run with given facts: the rendered plan, nothing applied.

Each role keeps its OS-dependent choices (packages, services, files, commands) in one ``_<role>_plan``
fact made by ``tasks/decide.yml``; the decision tests render it for platforms this machine is not.
"""

import json

DECIDE_PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    ansible_facts: {facts}
  tasks:
    - name: decide
      ansible.builtin.include_role:
        name: kvmops.kvm.{role}
        tasks_from: decide
"""

SHOW_PLAN = """
    - name: plan
      ansible.builtin.debug:
        var: _{role}_plan
"""


def decide_play(role, facts, then=None):
    """The decision step with ``facts``, then ``then`` (task YAML at the tasks' indentation; default: show the plan)."""
    return DECIDE_PLAY.format(role=role, facts=json.dumps(facts)) + (SHOW_PLAN.format(role=role) if then is None else then)


def decide(playbook, tmp_path, role, facts, extra=None):
    """Run the decision step of ``role``; the plan is ``result.task('plan')['_<role>_plan']``."""
    path = tmp_path / 'decide.yml'
    path.write_text(decide_play(role, facts))
    return playbook(str(path), extra_vars=extra)
