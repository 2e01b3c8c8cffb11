"""The loop of epochs and steps: the seed's mini-batch SGD over a whole run.

    for epoch in its epochs:
        for k in its steps:  step(...)        one step on every rank (``distnn.step``)

The loop is the same for every way distnn trains: a run of ``python -m
distnn.train`` (``distnn.train``) and an estimator fitted on arrays in memory
(``distnn.estimator``). What a run does around its steps is its own, and goes
through ``Hooks``: a command-line run shows progress, watches for stalls,
commits checkpoints, tests and records each epoch and saves it; an estimator
keeps its loss curve and decides when to stop early, and writes nothing. The
loop knows none of that: it only runs the steps, in the order the partitions
give (``distnn.data.order``), at the rate the schedule gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from distnn.data import Partitions
from distnn.schedules import Schedule
from distnn.step import Recipe, Replica, step


@dataclass
class Position:
    """Where in the run training is: the next step of an epoch, and that epoch's cost so far."""
    epoch: int = 0
    step: int = 0
    epoch_cost: float = 0.0

    @classmethod
    def resumed(cls, saved: dict[str, Any], steps: int) -> Position:
        """The position a checkpoint saved, for a run of ``steps`` steps per epoch.

        With other steps per epoch (a data file of another size), the run goes on at
        the same fraction of the epoch.
        """
        step = saved["step"] if saved["steps"] == steps else saved["step"] * steps // saved["steps"]
        return cls(saved["epoch"], step, saved["epoch_cost"])


@dataclass(frozen=True)
class Course:
    """What the loop runs: which samples make up each step, what each step does, at what
    rate, for how many epochs, from where."""
    recipe: Recipe  # the batch, this rank's share of it, its draws, max-norm
    order: Partitions  # which samples make up each batch, whatever the number of ranks
    eta: Schedule  # the learning rate at each step of the run
    epochs: int
    first: Position = field(default_factory=Position)
    # Weighted samples: epoch -> each batch's total weight, (steps,), the same on every
    # rank; the batch's gradient is divided by it rather than by m. None: every sample 1.
    totals: Callable[[int], np.ndarray] | None = None

    @property
    def steps(self) -> int:
        return self.order.steps


class Hooks(Protocol):
    """What a run does around the loop's steps. ``stop.requested`` is this rank's request
    to stop after the step (every rank stops if any asks); ``watch`` learns where the
    run is (``distnn.stall``, or ``distnn.comm.UNWATCHED``)."""
    stop: Any
    watch: Any

    def epoch_begins(self, epoch: int, start: Position) -> None: ...

    def step_begins(self, epoch: int, k: int, epoch_cost: float) -> None: ...

    def step_done(self, done: Position, cost: float, stopping: bool) -> None: ...

    def epoch_done(self, epoch: int, start: Position, epoch_cost: float,
                   seconds: float) -> bool:
        """After the epoch's last step; True ends the run here."""
        ...


def run_epochs(replica: Replica, train_set: Any, course: Course, rank: int, ranks: int,
               hooks: Hooks) -> tuple[Position, bool]:
    """Train from ``course.first`` to the end of its epochs, or until a rank asks to stop
    or ``hooks.epoch_done`` ends the run. Returns where training stopped and whether a
    stop was asked for (then mid-epoch, after the step that saw it).

    ``train_set`` is this rank's samples (``distnn.samples.Shard``, or a ``Stream``).
    """
    steps, seed = course.steps, course.recipe.seed
    for epoch in range(course.first.epoch, course.epochs):
        batches = course.order.epoch(seed, epoch, rank, ranks)  # this rank's part of each
        totals = None if course.totals is None else course.totals(epoch)
        start = course.first if epoch == course.first.epoch else Position(epoch)
        epoch_cost = start.epoch_cost
        train_set.begin(epoch, start.step)  # a stream starts reading the epoch's windows
        hooks.epoch_begins(epoch, start)
        t0 = time.perf_counter()
        for k in range(start.step, steps):
            hooks.step_begins(epoch, k, epoch_cost)
            cost, stopping = step(replica, course.recipe, train_set, batches[k], epoch, k,
                                  course.eta(epoch * steps + k), hooks.stop, hooks.watch,
                                  total=None if totals is None else float(totals[k]))
            epoch_cost += cost
            done = Position(epoch, k + 1, epoch_cost)
            hooks.step_done(done, cost, stopping)
            if stopping:
                return done, True
        if hooks.epoch_done(epoch, start, epoch_cost, time.perf_counter() - t0):
            return Position(epoch + 1), False
    return Position(course.epochs), False
