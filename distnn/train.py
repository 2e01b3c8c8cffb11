"""Data-parallel training: the seed's mini-batch SGD, one replica per MPI rank.

    python -m distnn.train                      # one process (debug with pdb, profile)
    mpirun -n 4 python -m distnn.train          # four ranks on this machine
    sbatch launch/slurm.sbatch                  # a cluster job (see launch/)

Every rank holds the same network and its own shard of the training set. For
each global mini-batch of m samples, rank r backpropagates its m_r of them,
the ranks sum their gradients with one Allreduce, and every rank applies

    w -> w - (eta/m) sum_x dC_x/dw,    b -> b - (eta/m) sum_x dC_x/db

so the replicas stay identical without ever sending parameters again. On one
node the ranks can do better still: they share one copy of the network, sum
through shared memory and each update a part of it (``--reduce``, see
``distnn.reduce``). The distributed lines are few and marked "# MPI:".

``fit`` is that loop; ``train`` sets it up from a ``Start`` (``distnn.start``:
settings, data and checkpoint agreed on by every rank), and ``main`` is the
command line, which turns every failure into an exit status for the whole job.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from distnn.augment import Augment
from distnn.checkpoint import save_checkpoint
from distnn.commits import CommitClock
from distnn.comm import Comm, world
from distnn.config import Config, parse_args
from distnn.constraints import max_norm
from distnn.data import Partitions, read_rows, read_shard
from distnn.dropout import Dropout
from distnn.evaluate import accuracy, confusion_over_ranks
from distnn.log import RunLog, banner
from distnn.network import MLP
from distnn.noise import Noise
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.replicas import ReplicaMismatch
from distnn.replicas import check as check_replicas
from distnn.schedules import Schedule, make_schedule
from distnn.stall import Watch, watch
from distnn.start import (USER_ERRORS, Position, Start, UsageError, agree_on_start,
                          crowded_note, replicas)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: checkpoint written, rerun with --resume
# Each asks the run to stop after its step, with a checkpoint (StopRequest).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Diverged(Exception):
    """The training cost is not a finite number; the update was not applied."""


class StopRequest:
    """Set by SIGTERM, SIGINT or SIGUSR1; the loop finishes its step, saves and exits.

    A batch system sends SIGTERM before its time limit kills the job; Ctrl-C
    sends SIGINT. SIGUSR1 is the same request for launchers that take SIGTERM
    as "abort now" and pass only SIGUSR1 and SIGUSR2 on to the ranks (Open
    MPI's mpirun), and is Slurm's --signal default. A second signal a while
    later means "now": it raises KeyboardInterrupt. One event often arrives
    twice within milliseconds (Ctrl-C reaches the rank and mpirun, which
    forwards it; PBS signals every process of the job), so a repeat inside
    REPEAT_SECONDS is the same request.
    """

    REPEAT_SECONDS = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._first = 0.0
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        # Python runs a handler only once the main thread is back in Python, never
        # while it waits in MPI; the stall watch reads this pipe instead.
        self.wakeup, write_end = os.pipe()
        for fd in (self.wakeup, write_end):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first = True, now
        elif now - self._first >= self.REPEAT_SECONDS:
            raise KeyboardInterrupt


@dataclass
class Shard:
    """This rank's rows of one split: pixels scaled to [0, 1] in the network's dtype."""
    x: np.ndarray  # (n_r, n_features)
    y: np.ndarray  # (n_r,) class labels

    @classmethod
    def load(cls, path: str, split: str, comm: Comm, dtype: np.dtype,
             order: Partitions | None = None) -> Shard:
        """The rows of ``order``'s partitions that this rank serves, or without an
        order (the test set) its block of the split."""
        if order is None:
            images, labels = read_shard(path, split, comm.rank, comm.size)
        else:
            images, labels = read_rows(path, split, lambda n: order.rows_of(comm.rank, comm.size),
                                       f"rank {comm.rank}'s")
        return cls(images.astype(dtype) / dtype.type(255), labels.astype(np.intp))


@dataclass
class Plan:
    """The run's fixed numbers: batch sizes, steps, learning rates, where to start."""
    cfg: Config
    m: int  # the global mini-batch
    share: tuple[int, int]  # this rank's part of it: (first, count) of the batch's samples
    steps: int  # per epoch
    order: Partitions  # which samples make up each batch, whatever the number of ranks
    eta: Schedule  # the learning rate at each step of the run
    first: Position
    augment: Augment  # distortions of the training images (none by default)
    dropout: Dropout  # masks of the layers' inputs (none by default)
    commits: CommitClock  # when to write the checkpoint mid-epoch (--commit-every)


def fit(net: MLP, optimizer: SGD, reducer, train_set: Shard, test_set: Shard, plan: Plan,
        comm: Comm, log: RunLog, stop: StopRequest, stall: Watch) -> int:
    """The seed's mini-batch SGD, epoch by epoch; returns the exit status.

    Each step: this rank's part of the batch, its gradient by backprop, the sum
    over all ranks, and the update w -> w - (eta/m) sum_x dC_x/dw.
    """
    cfg, m, steps, first = plan.cfg, plan.m, plan.steps, plan.first
    for epoch in range(first.epoch, cfg.epochs):
        batches = plan.order.epoch(cfg.seed, epoch, comm.rank, comm.size)  # this rank's parts
        start = first if epoch == first.epoch else Position(epoch)
        epoch_cost, reducer.comm_seconds = start.epoch_cost, 0.0
        bar = log.progress(steps, start.step, epoch)
        t0 = time.perf_counter()
        for step in range(start.step, steps):
            stall.at(epoch, step, epoch_cost)  # where a stall report will say the job was
            rows = batches[step]  # this rank's part of the global batch
            x, y = train_set.x.take(rows, axis=0), train_set.y[rows]  # take(): a faster x[rows]
            masks = None
            if plan.augment or plan.dropout:  # its samples' own draws: no communication
                noise = Noise(cfg.seed, epoch, step, m, *plan.share)
                x, masks = plan.augment(x, noise), plan.dropout.masks(noise)
            # sum_x dC_x/dw over this rank's samples (BP1-BP4), then over every rank's
            cost, _ = net.gradient(x, y, out=reducer.local_grad(), masks=masks)
            cost, stopping = reducer.sum(cost, stop.requested)  # MPI
            _check_finite(cost, epoch, step, cfg.checkpoint)
            # w -> w - (eta/m) sum_x dC_x/dw, on the part of w that this rank updates
            stall.updating()  # from here until the next step, no checkpoint of this replica
            eta = plan.eta(epoch * steps + step)
            optimizer.step(net.params, reducer.grad, eta, scale=1 / m, part=reducer.part)
            reducer.publish()  # MPI (shm: a barrier, so the next forward pass sees every part)
            if cfg.max_norm:  # |w_j| <= c for every hidden unit j (this rank's share of them)
                max_norm(net.weights[:-1], cfg.max_norm, units=reducer.units)
                reducer.publish()  # MPI (shm: every share is done before the next pass)
            epoch_cost += cost
            bar.update()
            if cfg.check_every and (step + 1) % cfg.check_every == 0:
                check_replicas(comm, net.params, optimizer.velocity,
                               f"at epoch {epoch + 1}, step {step + 1}")  # MPI
            if stopping:
                bar.close()
                _save(comm, net, optimizer, plan, Position(epoch, step + 1, epoch_cost))
                log.say(f"distnn: interrupted at epoch {epoch + 1}, step {step + 1}: checkpoint "
                        f"written to {cfg.checkpoint}; continue with --resume")
                return EXIT_INTERRUPTED
            if plan.commits.due() and step + 1 < steps:  # the epoch's end writes one anyway
                if comm.rank == 0:  # every replica holds this state: no one waits for it
                    _write(net, optimizer, plan, Position(epoch, step + 1, epoch_cost), comm.size)
                plan.commits.reset()
        bar.close()
        seconds = time.perf_counter() - t0
        check_replicas(comm, net.params, optimizer.velocity, f"after epoch {epoch + 1}")  # MPI
        counts = confusion_over_ranks(comm, net, test_set.x, test_set.y, cfg.layers[-1])  # MPI
        log.epoch(_epoch_record(epoch, epoch_cost, counts, seconds, steps - start.step, plan,
                                reducer.comm_seconds))
        _save(comm, net, optimizer, plan, Position(epoch + 1))
        plan.commits.reset()
    return 0


def _check_finite(cost: float, epoch: int, step: int, checkpoint: str) -> None:
    if not math.isfinite(cost):
        raise Diverged(f"the training cost became {cost} at epoch {epoch + 1}, step {step}; "
                       f"{checkpoint} keeps the last good state (try a smaller --lr)")


def _epoch_record(epoch: int, epoch_cost: float, counts: np.ndarray, seconds: float,
                  steps_run: int, plan: Plan, comm_seconds: float) -> dict[str, Any]:
    return {
        "epoch": epoch + 1,
        "cost": epoch_cost / (plan.steps * plan.m),  # per sample; a resumed epoch kept its sum
        "test_accuracy": accuracy(counts),
        "seconds": seconds,
        "samples_per_s": steps_run * plan.m / seconds,
        "comm_share": comm_seconds / seconds,
    }


def _save(comm: Comm, net: MLP, optimizer: SGD, plan: Plan, position: Position) -> None:
    """The checkpoint at ``position``, written by rank 0."""
    if comm.rank == 0:
        _write(net, optimizer, plan, position, comm.size)
    comm.barrier()  # MPI: nobody exits before the checkpoint is on disk


def _write(net: MLP, optimizer: SGD, plan: Plan, position: Position, ranks: int) -> None:
    save_checkpoint(plan.cfg.checkpoint, net, optimizer.state_dict(), plan.cfg.to_dict(),
                    {"epoch": position.epoch, "step": position.step, "steps": plan.steps,
                     "epoch_cost": position.epoch_cost, "ranks": ranks})


def train(start: Start, comm: Comm, stop: StopRequest) -> int:
    """Run (or continue) the training ``start`` describes; returns the process exit status."""
    cfg = start.cfg
    log = RunLog(cfg, comm.rank)
    log.note(crowded_note(start.ranks_here))
    stall = watch(comm, cfg.stall_timeout)  # MPI
    net, optimizer = replicas(start, comm)  # MPI
    order = start.order
    train_set = Shard.load(cfg.data, "train", comm, net.dtype, order)
    test_set = Shard.load(cfg.data, "test", comm, net.dtype)
    steps = order.steps
    eta = make_schedule(cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps,
                        warmup_steps=round(cfg.warmup_epochs * steps),
                        step_size=cfg.step_epochs * steps, gamma=cfg.gamma)
    plan = Plan(cfg, cfg.batch_size, order.share_of(comm.rank, comm.size), steps, order, eta,
                start.position, Augment.parse(cfg.augment, start.info["image_shape"]),
                Dropout(cfg.layers, cfg.dropout, cfg.input_dropout, net.dtype),
                CommitClock(cfg.commit_every))
    if start.resumed:
        log.say(f"distnn: resuming {cfg.checkpoint} at epoch {plan.first.epoch + 1}, "
                f"step {plan.first.step}")
    try:
        reducer = make_reducer(comm, net, optimizer, cfg.reduce)  # MPI
    except ValueError as err:  # every rank saw the same node sizes and room
        raise UsageError(str(err)) from None
    log.note(reducer.note)
    log.say(banner(cfg, start.info, comm.size, reducer.describe(), start.threads, plan.share[1],
                   steps))
    log.record({"event": "start", "ranks": comm.size, "config": cfg.to_dict(),
                "epoch": plan.first.epoch, "step": plan.first.step})
    if comm.rank == 0:  # a signal during a stall: what rank 0 writes before the job ends
        stall.keep(lambda where: _write(net, optimizer, plan, Position(*where), comm.size),
                   cfg.checkpoint)
    stall.listen(getattr(stop, "wakeup", None))
    # Leaving the block normally (or on a stop) frees shared memory; a crash just exits.
    with reducer:
        status = fit(net, optimizer, reducer, train_set, test_set, plan, comm, log, stop, stall)
    if status == 0:
        log.final(confusion_over_ranks(comm, net, test_set.x, test_set.y, cfg.layers[-1]))  # MPI
    stall.close()  # MPI
    return status


def run(cfg: Config, given: dict[str, Any], comm: Comm, stop: StopRequest | None = None) -> int:
    """Agree on the start (``given``: the settings named on the command line), then train.

    ``stop`` lets a test stand in for the signals.
    """
    stop = stop or StopRequest()  # before the start: a signal while preparing data is kept too
    start = agree_on_start(comm, cfg, given)
    try:
        return train(start, comm, stop)
    finally:
        if start.lock is not None:  # rank 0's; a process killed outright drops it too
            start.lock.release()


def main(argv: list[str] | None = None) -> int:
    comm = world()
    cfg, given = parse_args(argv, quiet=comm.rank != 0)
    try:
        return run(cfg, given, comm)
    except UsageError as err:  # every rank raised it: all exit, rank 0 says why
        if comm.rank == 0:
            print(f"distnn.train: error: {err}", file=sys.stderr)
        return 2
    except (Diverged, ReplicaMismatch) as err:  # every rank saw the same sum, or hashes
        if comm.rank == 0:
            print(f"distnn.train: error: {err}", file=sys.stderr)
        return 1
    except BaseException as err:  # one rank's trouble: end the whole job, not just this rank
        if isinstance(err, USER_ERRORS):
            print(f"distnn.train: rank {comm.rank}: error: {err}", file=sys.stderr)
        elif isinstance(err, KeyboardInterrupt):
            print(f"distnn.train: rank {comm.rank}: interrupted twice, stopping now",
                  file=sys.stderr)
        else:  # the summary first: the line a user needs, even if the traceback is cut
            print(f"distnn.train: rank {comm.rank} failed; aborting all ranks", file=sys.stderr)
            traceback.print_exc()
        comm.abort(130 if isinstance(err, KeyboardInterrupt) else 1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
