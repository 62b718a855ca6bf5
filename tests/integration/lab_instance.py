"""A private instance of the multi-host lab (tests/lab/lab.sh) for one test module.

Each test module that starts, stops or purges lab hosts uses its own netns names, /24 and state dir,
so it never stops the default lab (``lab.sh start``) that another test module may be using.
"""

import os
import shlex
import subprocess
from contextlib import contextmanager

from conftest import ROOT

LAB = os.path.join(ROOT, 'tests', 'lab', 'lab.sh')
# The default lab's host2 (lab.sh without KVMLAB_* settings), which several test modules share.
DEFAULT_HOST2_URI = 'qemu+tcp://10.254.77.2/system'


def default_lab(*args):
    """lab.sh ARGS on the default lab."""
    return subprocess.run(['bash', LAB] + list(args), capture_output=True, text=True, timeout=240, check=False)


@contextmanager
def shared_host2():
    """The default lab's host2, started when it is not running; stopped afterwards only if started here
    (another test module, a benchmark or a person may be using it)."""
    was_running = default_lab('status', 'host2').returncode == 0
    started = default_lab('start', 'host2')
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield DEFAULT_HOST2_URI
    finally:
        if not was_running:
            stopped = default_lab('stop', 'host2')
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


class LabInstance(object):
    def __init__(self, netns, net, state_base, hostname_prefix):
        self.settings = dict(KVMLAB_NETNS=netns, KVMLAB_NET=net, KVMLAB_STATE_BASE=state_base,
                             KVMLAB_HOSTNAME_PREFIX=hostname_prefix)
        self.values = self._values()

    def run(self, *args, **kwargs):
        env = dict(os.environ)
        env.update(self.settings)
        return subprocess.run(['bash', LAB] + list(args), capture_output=True, text=True, env=env,
                              timeout=kwargs.get('timeout', 240), check=False)

    def _values(self):
        proc = self.run('env')
        assert proc.returncode == 0, proc.stderr
        out = {}
        for line in proc.stdout.splitlines():
            key, _sep, value = line.partition('=')
            out[key] = shlex.split(value)[0]
        return out

    def uri(self, host):
        return self.values['KVMLAB_%s_URI' % host.upper()]

    def addr(self, host):
        return self.values['KVMLAB_%s_ADDR' % host.upper()]

    def hostname(self, host):
        return self.values['KVMLAB_%s_HOSTNAME' % host.upper()]

    def state_dir(self, host):
        return self.values['KVMLAB_%s_STATE_DIR' % host.upper()]

    @property
    def main_addr(self):
        return self.values['KVMLAB_MAIN_ADDR']

    def start(self, *hosts):
        proc = self.run('start', *hosts)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def stop(self, *hosts):
        proc = self.run('stop', *hosts)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc


@contextmanager
def private_lab(netns, net, state_base, hostname_prefix, *hosts):
    """A LabInstance of its own with ``hosts`` started (all when none are named), purged afterwards."""
    instance = LabInstance(netns, net, state_base, hostname_prefix)
    instance.start(*hosts)
    try:
        yield instance
    finally:
        stopped = instance.run('purge', *hosts)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
