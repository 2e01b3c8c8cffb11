"""Learning-rate schedules at hand-computed points."""

from __future__ import annotations

import pytest

from distnn.schedules import constant, cosine, make_schedule, step_decay, warmup


def test_constant() -> None:
    schedule = make_schedule("constant", 3.0)
    assert [schedule(t) for t in (0, 1, 10_000)] == [3.0, 3.0, 3.0]
    assert constant(0.5)(7) == 0.5


def test_step_decay() -> None:
    schedule = make_schedule("step", 1.0, step_size=10, gamma=0.5)
    assert [schedule(t) for t in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    assert step_decay(0.1, 3)(6) == pytest.approx(0.001)


def test_cosine() -> None:
    schedule = make_schedule("cosine", 1.0, total_steps=100)
    assert schedule(0) == 1.0
    assert schedule(25) == pytest.approx(0.5 + 0.5 * 2**-0.5)  # (1 + cos(pi/4)) / 2
    assert schedule(50) == pytest.approx(0.5)
    assert schedule(100) == pytest.approx(0.0, abs=1e-15)
    assert schedule(150) == pytest.approx(0.0, abs=1e-15)  # stays at the floor
    floored = cosine(1.0, 100, min_lr=0.1)
    assert floored(50) == pytest.approx(0.55) and floored(100) == pytest.approx(0.1)


def test_linear_warmup_then_base() -> None:
    schedule = make_schedule("constant", 0.4, warmup_steps=4)
    assert [schedule(t) for t in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    # total_steps includes the warm-up; the cosine runs over the other 100 steps.
    schedule = make_schedule("cosine", 0.4, total_steps=104, warmup_steps=4)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(4) == pytest.approx(0.4)
    assert schedule(54) == pytest.approx(0.2)
    assert schedule(104) == pytest.approx(0.0, abs=1e-15)
    # The step schedule counts its steps after the warm-up.
    schedule = make_schedule("step", 1.0, warmup_steps=2, step_size=3, gamma=0.1)
    assert [schedule(t) for t in range(7)] == pytest.approx([0.5, 1, 1, 1, 1, 0.1, 0.1])
    assert warmup(constant(1.0), 1.0, 0)(0) == 1.0  # no warm-up: the base itself


def test_pure_function_of_step() -> None:
    """A resumed run asks for step 500 first and gets what the original run got."""
    original = make_schedule("cosine", 0.1, total_steps=1000, warmup_steps=50)
    values = [original(t) for t in range(1000)]
    resumed = make_schedule("cosine", 0.1, total_steps=1000, warmup_steps=50)
    assert [resumed(t) for t in range(500, 1000)] == values[500:]
    assert all(isinstance(v, float) for v in values)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step_size"):
        make_schedule("step", 0.1)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("cosine", 0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("exponential", 0.1)
