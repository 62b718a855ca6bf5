"""Progress of long transfers (issue 17: "progress reported for long downloads"): _transfer.Progress."""

from ansible_collections.kvmops.kvm.plugins.module_utils import _transfer


class Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_sample_every_interval_logged_and_kept():
    clock, lines = Clock(), []
    progress = _transfer.Progress('volume p/v: upload http://h/i.raw', total=400 << 20, log=lines.append,
                                  interval=10, clock=clock)
    for step in range(1, 41):          # 40 chunks of 10 MiB, one every 0.5 s: 20 s in all
        clock.now += 0.5
        progress.update(step * (10 << 20))
    assert progress.samples == [dict(seconds=10.0, bytes=200 << 20, percent=50.0),
                                dict(seconds=20.0, bytes=400 << 20, percent=100.0)]
    assert lines == ['volume p/v: upload http://h/i.raw: 200.0 MiB of 400.0 MiB (50.0%) after 10 s (20.0 MiB/s)',
                     'volume p/v: upload http://h/i.raw: 400.0 MiB of 400.0 MiB (100.0%) after 20 s (20.0 MiB/s)']


def test_a_short_transfer_reports_nothing():
    clock, lines = Clock(), []
    progress = _transfer.Progress('x', total=5, log=lines.append, interval=10, clock=clock)
    clock.now += 9.9
    progress.update(5)
    assert progress.samples == [] and lines == []


def test_no_size_known_no_percent():
    clock, lines = Clock(), []
    progress = _transfer.Progress('x', total=None, log=lines.append, interval=1, clock=clock)
    clock.now += 2
    progress.update(3 << 20)
    assert progress.samples == [dict(seconds=2.0, bytes=3 << 20, percent=None)]
    assert lines == ['x: 3.0 MiB after 2 s (1.5 MiB/s)']


def test_samples_are_bounded_first_and_latest_kept():
    clock = Clock()
    progress = _transfer.Progress('x', total=1000, interval=1, clock=clock)
    for step in range(1, 201):
        clock.now += 1
        progress.update(step)
    assert len(progress.samples) == _transfer.MAX_PROGRESS
    assert progress.samples[0]['bytes'] == 1 and progress.samples[-1]['bytes'] == 200
    assert progress.samples[1]['bytes'] == 200 - _transfer.MAX_PROGRESS + 2
