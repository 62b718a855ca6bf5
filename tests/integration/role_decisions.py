"""A role's decision step (tasks_from: decide) run with given facts: the rendered plan, nothing applied.

Each role keeps its OS-dependent choices (packages, services, files, commands) in one ``_<role>_plan``
fact made by ``tasks/decide.yml``; the decision tests render it for platforms this machine is not.
"""

import json
import re
import subprocess

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


# ---------------------------------------------------------------- reading back the files the roles write
def _export_tokens(line):
    """The fields of one exports(5) line, as nfs-utils' xgettok() reads them.

    Fields are separated by blanks; a double quote toggles quoting (blanks kept inside); a backslash and
    three octal digits is that byte.
    """
    tokens, cur, quoted, started, i = [], bytearray(), False, False, 0
    data = line.encode('utf-8')
    while i < len(data):
        ch = data[i:i + 1]
        if ch == b'"':
            quoted, started = not quoted, True
        elif ch.isspace() and not quoted:
            if started:
                tokens.append(bytes(cur))
            cur, started = bytearray(), False
        elif ch == b'\\' and re.match(rb'[0-7]{3}', data[i + 1:i + 4]):
            cur.append(int(data[i + 1:i + 4], 8))
            started = True
            i += 3
        else:
            cur += ch
            started = True
        i += 1
    if quoted:
        raise ValueError('unterminated quote in %r' % line)
    if started:
        tokens.append(bytes(cur))
    return [t.decode('utf-8') for t in tokens]


def parse_exports(text):
    """``[(path, [(client, options), ...]), ...]`` of an exports file, read following exports(5).

    Blank lines and lines whose first non-blank is ``#`` are ignored; a backslash before the newline
    continues the line; the first field is the path, each further field ``client(options)``.
    """
    out = []
    text = re.sub(r'\\\n[ \t]*', ' ', text)
    for line in text.split('\n'):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        tokens = _export_tokens(line)
        clients = []
        for field in tokens[1:]:
            match = re.fullmatch(r'([^()]*)\(([^()]*)\)', field)
            if not match:
                raise ValueError('bad client field %r in %r' % (field, line))
            clients.append((match.group(1), match.group(2)))
        out.append((tokens[0], clients))
    return out


def source_shell(path, names, before='', cwd=None):
    """``{name: value}`` after a clean bash (``env -i``) sources ``path`` as grub-mkconfig does (``set -a; . FILE``)."""
    script = '%s set -a; . "$1"; for n in %s; do eval "printf \'%%s\\0\' \\"\\$$n\\""; done' % (before, ' '.join(names))
    proc = subprocess.run(['env', '-i', 'bash', '-c', script, 'bash', str(path)], capture_output=True, cwd=cwd,
                          check=True)
    return dict(zip(names, proc.stdout.decode('utf-8').split('\0')))
