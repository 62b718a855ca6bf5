"""The one stand-in for AnsibleModule in the unit tier: the part of it the logic layer uses.

``FakeModule(params, check_mode=, diff=, spec=, commands=)``: ``params`` start from ``spec``'s defaults
(an argument spec, optional) and the given values; ``exit_json``/``fail_json`` record and raise
SystemExit like the real ones; ``warn``/``deprecate`` record; ``no_log_values`` collects what the module
masks; ``run_command`` answers from ``commands`` (a callable ``argv -> (rc, out, err)``, or ``'real'``
to run the program), and otherwise refuses, so a test that expects no command proves it.
"""

import shutil
import subprocess


class FakeModule(object):
    def __init__(self, params=None, check_mode=False, diff=False, spec=None, commands=None, bin_path=None):
        defaults = dict((key, option.get('default')) for key, option in (spec or {}).items())
        defaults.update(params or {})
        self.params = defaults
        self.check_mode = check_mode
        self._diff = diff
        self.no_log_values = set()
        self.warnings = []
        self.deprecations = []
        self.commands = []
        self.exit_args = None
        self.fail_args = None
        self._run = commands
        self._bin_path = bin_path

    def exit_json(self, **kwargs):
        self.exit_args = kwargs
        raise SystemExit(0)

    def fail_json(self, **kwargs):
        self.fail_args = kwargs
        raise SystemExit(1)

    def warn(self, msg):
        self.warnings.append(msg)

    def deprecate(self, msg, **kwargs):
        self.deprecations.append(dict(msg=msg, **kwargs))

    def get_bin_path(self, name, required=False):
        if self._bin_path is not None:
            return self._bin_path(name)
        return shutil.which(name) if self._run == 'real' else None

    def run_command(self, args, **_kwargs):
        self.commands.append(args)
        if self._run == 'real':
            proc = subprocess.run(args, capture_output=True, text=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr
        if callable(self._run):
            return self._run(args)
        raise AssertionError('no command expected, got %r' % (args,))
