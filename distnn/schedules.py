"""Learning-rate schedules: pure functions step -> lr, so a resumed run gets the same lr.

``step`` counts from 0 and is whatever unit the trainer chooses (optimizer steps
or epochs); the schedule does not care. Each schedule is a closure built by a
small function; ``warmup`` wraps any of them:

    constant:  lr(t) = lr
    step:      lr(t) = lr * gamma ** (t // step_size)
    cosine:    lr(t) = floor + (lr - floor) (1 + cos(pi min(t, T) / T)) / 2
    warm-up:   lr(t) = lr (t + 1) / W for t < W, then base(t - W)
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SCHEDULES", "Schedule", "constant", "cosine", "make_schedule", "step_decay", "warmup"]

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "step", "cosine")  # the names make_schedule knows


def constant(lr: float) -> Schedule:
    """lr(t) = lr: the seed's fixed eta."""
    return lambda step: float(lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr(t) = lr * gamma ** floor(t / step_size): drop by gamma every step_size steps."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    return lambda step: float(lr * gamma ** (step // step_size))


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """Half a cosine from lr at t = 0 to min_lr at t = total_steps, then min_lr."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")

    def schedule(step: int) -> float:
        progress = min(step, total_steps) / total_steps
        return float(min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress)))

    return schedule


def warmup(base: Schedule, lr: float, warmup_steps: int) -> Schedule:
    """Linear warm-up lr (t + 1) / W over the first W steps, then base(t - W).

    The base schedule starts its own clock after the warm-up, so a step decay or
    cosine keeps its shape; the warm-up ends at lr, where the base schedule starts.
    """
    if warmup_steps <= 0:
        return base

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return float(lr * (step + 1) / warmup_steps)
        return base(step - warmup_steps)

    return schedule


def make_schedule(
    name: str,
    lr: float,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    step_size: int | None = None,
    gamma: float = 0.1,
    min_lr: float = 0.0,
) -> Schedule:
    """The schedule called ``name`` ("constant", "step", "cosine"), with optional warm-up.

    ``total_steps`` includes the warm-up; cosine decays over the remaining steps.
    """
    if name == "constant":
        base = constant(lr)
    elif name == "step":
        if step_size is None:
            raise ValueError("the 'step' schedule needs step_size")
        base = step_decay(lr, step_size, gamma)
    elif name == "cosine":
        if total_steps is None:
            raise ValueError("the 'cosine' schedule needs total_steps")
        base = cosine(lr, max(total_steps - warmup_steps, 1), min_lr)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return warmup(base, lr, warmup_steps)
