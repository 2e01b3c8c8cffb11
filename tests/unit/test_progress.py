"""Progress where the run is watched: a line every --progress-every seconds on a pipe or in
a file, from rank 0 only; a bar on a terminal; nothing when asked for nothing."""

from __future__ import annotations

import io

import pytest

from distnn.config import Config, ConfigError
from distnn.log import RunLog, _duration, _Lines, _NoBar


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_what_a_hand_count_gives(capsys):
    """Epoch 2 of 3, 50 steps, from step 10, a step every 0.5 s, m = 64, a line every 10 s:
    lines at steps 30 and 50 - no, 50 is the epoch's end, which its own line reports."""
    clock = Clock()
    lines = _Lines(10, epoch=1, epochs=3, steps=50, initial=10, m=64, clock=clock)
    for k in range(40):
        clock.now += 0.5
        lines.step(cost=0.1 * (k + 1) * 64)  # summed over the batch, as step() gives it
    out = capsys.readouterr().err.splitlines()
    # step 30: 20 steps in 10 s = 2 steps/s = 128 samples/s; left: 20 + 50 steps = 35 s;
    # the cost per sample, as the epoch line gives it, over steps 11..30:
    # 0.1 * (1 + ... + 20) / 20 = 1.05
    assert out == ["distnn: epoch 2/3  step 30/50 (60%)  128 samples/s  35s left  cost 1.0500"]


def test_durations_read_at_a_glance():
    assert [_duration(s) for s in (3.4, 59.6, 245, 3599, 3600, 7380)] == [
        "3s", "1m00s", "4m05s", "59m59s", "1h00m", "2h03m"]


def runlog(monkeypatch, stderr, rank=0, **settings) -> RunLog:
    monkeypatch.setattr("sys.stderr", stderr)
    return RunLog(Config(**settings), rank)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_on_a_pipe_a_bar_on_a_terminal_nothing_when_asked(monkeypatch):
    assert isinstance(runlog(monkeypatch, io.StringIO()).progress(50, 0, 0), _Lines)
    # what the lines count with: the interval, epochs and batch asked; the epoch's steps,
    # the step it resumes from and its index, as given
    lines = runlog(monkeypatch, io.StringIO(), progress_every=30, epochs=7,
                   batch_size=48).progress(50, 20, 4)
    assert (lines.every, lines.epochs, lines.m, lines.steps, lines.k, lines.epoch) == \
        (30, 7, 48, 50, 20, 4)
    assert isinstance(runlog(monkeypatch, io.StringIO(), rank=1).progress(50, 0, 0), _NoBar)
    assert isinstance(runlog(monkeypatch, io.StringIO(), progress_every=0).progress(50, 0, 0),
                      _NoBar)
    assert isinstance(runlog(monkeypatch, io.StringIO(), progress=False).progress(50, 0, 0),
                      _NoBar)
    pytest.importorskip("tqdm")
    terminal = Terminal()
    bar = runlog(monkeypatch, terminal).progress(50, 0, 0)
    bar.step(0.5)
    bar.close()
    assert "epoch 1:" in terminal.getvalue() and "/50" in terminal.getvalue()


@pytest.mark.parametrize("every", [0.5, -1, float("inf"), float("nan")])
def test_an_interval_that_would_flood_or_never_come_is_refused(every):
    with pytest.raises(ConfigError, match="--progress-every must be 0"):
        Config(progress_every=every).validate()



def test_each_line_gives_the_cost_since_the_line_before(capsys):
    """The same epoch with 60 steps, run to its end: lines at steps 30 and 50, none at 60.
    Step 50: 40 steps in 20 s = 2 steps/s = 128 samples/s; left: 10 + 60 steps = 35 s; the
    cost over steps 31..50, not 11..50: 0.1 * (21 + ... + 40) / 20 = 3.05."""
    clock = Clock()
    lines = _Lines(10, epoch=1, epochs=3, steps=60, initial=10, m=64, clock=clock)
    for k in range(50):
        clock.now += 0.5
        lines.step(cost=0.1 * (k + 1) * 64)
    out = capsys.readouterr().err.splitlines()
    assert out == ["distnn: epoch 2/3  step 30/60 (50%)  128 samples/s  45s left  cost 1.0500",
                   "distnn: epoch 2/3  step 50/60 (83%)  128 samples/s  35s left  cost 3.0500"]
