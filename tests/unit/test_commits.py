"""When the trainer commits its state mid-epoch (distnn.commits)."""

from __future__ import annotations

import pytest

from distnn.commits import CommitClock, CommitError, parse
from distnn.config import parse_args


@pytest.mark.parametrize("spec,expected", [("500", (500, 0.0)), ("30s", (0, 30.0)),
                                           ("1.5s", (0, 1.5)), (" 7 ", (7, 0.0)),
                                           ("0", (0, 0.0)), ("0s", (0, 0.0))])
def test_a_spec_is_steps_or_seconds(spec, expected):
    assert parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "abc", "-1", "5m", "1e3", "s", "10 steps", "nan"])
def test_a_bad_spec_is_refused_on_the_command_line(spec, capsys):
    with pytest.raises(CommitError):
        parse(spec)
    with pytest.raises(SystemExit):
        parse_args(["--commit-every", spec])
    assert "--commit-every" in capsys.readouterr().err


def test_every_n_steps():
    clock = CommitClock("3")
    assert [clock.due() for _ in range(3)] == [False, False, True]
    clock.reset()
    assert [clock.due() for _ in range(4)] == [False, False, True, True]  # due until reset


def test_every_s_seconds_by_the_clock():
    now = [100.0]
    clock = CommitClock("10s", clock=lambda: now[0])
    now[0] = 109.9
    assert not clock.due()
    now[0] = 110.0
    assert clock.due()
    clock.reset()
    assert not clock.due()


def test_never_but_after_each_epoch():
    clock = CommitClock("0", clock=lambda: 1e9)
    assert not any(clock.due() for _ in range(1000))
