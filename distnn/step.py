"""One training step on one rank: the seed's mini-batch SGD, summed over the ranks.

For step k of an epoch, with the global mini-batch of m samples, each rank

    x, y   <- its samples of batch k (``distnn.data.order``), with their draws
    g_r    =  sum_x dC_x/dw over them                 BP1-BP4 (``MLP.gradient``)
    g      =  sum_r g_r                               one collective (``distnn.reduce``)
    w      -> w - (eta/m) g                           the part of w this rank updates
    |w_j|  <= c                                       max-norm, when asked for

and every replica ends the step holding the same w. ``step`` is the only place
where this is written: the trainer's loop (``distnn.train``) and the
benchmarks (``distnn.bench``) call it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distnn.augment import Augment
from distnn.comm import UNWATCHED
from distnn.constraints import max_norm
from distnn.dropout import Dropout
from distnn.convnet import Network
from distnn.noise import Noise
from distnn.optim import SGD
from distnn.samples import Shard


class Diverged(Exception):
    """The training cost is not a finite number; the update was not applied."""


class Laps:
    """Seconds this rank spent in each part of its steps so far: ``lap(part)`` ends one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()
        self.marks: list[tuple[str, float, float]] | None = None  # kept for a trace

    def start(self) -> None:
        self._last = time.perf_counter()

    def __call__(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] += now - self._last
        if self.marks is not None:
            self.marks.append((part, self._last, now))
        self._last = now


@dataclass
class Replica:
    """This rank's copy of what is trained, and how it sums with the other ranks' copies."""
    net: Network
    optimizer: SGD
    reducer: Any  # distnn.reduce's FusedAllreduce or SharedMemoryReduce
    lap: Laps = field(default_factory=Laps)  # where its steps' time goes


@dataclass(frozen=True)
class Recipe:
    """What every step of a run does alike: the batch, this rank's share, the draws."""
    m: int  # the global mini-batch
    share: tuple[int, int]  # this rank's samples of every batch: (first, count)
    seed: int = 0  # of the draws (dropout masks, distortions)
    augment: Augment = field(default_factory=Augment)  # distortions (none by default)
    dropout: Dropout | None = None  # masks of the layers' inputs (none by default)
    max_norm: float = 0.0  # c of |w_j| <= c for every hidden unit j (0: none)


class NoStop:
    """A stop request never made: a caller with no signals to hear (``step``'s default)."""
    requested = False


def step(replica: Replica, recipe: Recipe, shard: Shard, rows: np.ndarray, epoch: int, k: int,
         eta: float, stop: Any = NoStop, watch: Any = UNWATCHED,
         total: float | None = None) -> tuple[float, bool]:
    """Step ``k`` of ``epoch`` on the samples ``rows`` of this rank's ``shard``.

    Returns the cost summed over the whole batch and whether any rank asked to
    stop: ``stop.requested`` is this rank's ask (``distnn.train.StopRequest``),
    read as the sum begins, so a signal during backprop stops the job after this
    step. ``watch`` (``distnn.stall``) learns when the replica starts to change.
    Raises Diverged, on every rank alike, before the update if the cost is not
    finite.

    Samples with weights (``shard.weights``): the gradient and cost are sums of
    w_x dC_x/dw, and ``total``, the whole batch's sum of w_x, takes the place of m
    in the update and in the weight decay (as scikit-learn's MLP weighs them).
    """
    net, optimizer, reducer, lap = replica.net, replica.optimizer, replica.reducer, replica.lap
    lap.start()
    x, y = shard.batch(rows)  # this rank's part of the global batch
    weights = shard.weights(rows)
    lap("batch")
    masks = None
    if recipe.augment or recipe.dropout:  # its samples' own draws: no communication
        noise = Noise(recipe.seed, epoch, k, recipe.m, *recipe.share)
        x = recipe.augment(x, noise)
        masks = recipe.dropout.masks(noise) if recipe.dropout else None
        lap("draws")
    # sum_x dC_x/dw over this rank's samples (BP1-BP4), then over every rank's
    cost, _ = net.gradient(x, y, out=reducer.local_grad(), masks=masks, weights=weights)
    lap("backprop")
    cost, stopping = reducer.sum(cost, stop.requested, lap)  # MPI (its waiting: lap("wait"))
    lap("sum")
    if not math.isfinite(cost):
        raise Diverged(f"the training cost became {cost} at epoch {epoch + 1}, step {k}")
    # w -> w - (eta/m) sum_x dC_x/dw, on the part of w that this rank updates
    watch.updating()  # from here until the next step, no checkpoint of this replica
    m = recipe.m if total is None else total
    optimizer.step(net.params, reducer.grad, eta, scale=1 / m, part=reducer.part,
                   decay_scale=recipe.m / m)
    lap("update")
    reducer.publish(lap)  # MPI (shm: a barrier, so the next forward pass sees every part)
    if recipe.max_norm:  # |w_j| <= c for every hidden unit j (this rank's share of them)
        max_norm(net.weights[:-1], recipe.max_norm, units=reducer.units)
        reducer.publish(lap)  # MPI (shm: every share is done before the next pass)
    lap("publish")
    return cost, stopping
