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
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from distnn.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from distnn.comm import Comm, world
from distnn.config import DEFAULT_DATA, Config, ConfigError, merge_resumed, parse_args
from distnn.data import DataError, describe, prepare, read_shard, shard_range
from distnn.evaluate import accuracy, confusion_over_ranks
from distnn.network import MLP
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.schedules import make_schedule
from distnn.threads import limit_blas_threads

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: checkpoint written, rerun with --resume
USER_ERRORS = (ConfigError, DataError, CheckpointError)


class UsageError(Exception):
    """Raised identically on every rank before training: bad settings or data."""


class Diverged(Exception):
    """The training cost is not a finite number; the update was not applied."""


# -- pure pieces: how the data is split and ordered ----------------------------

def steps_per_epoch(n_train: int, m: int, ranks: int) -> int:
    """Steps every rank runs per epoch: the fewest any rank's shard allows.

    Rank r holds n_r of the n_train samples and takes m_r of each global batch
    of m (both split by shard_range). All ranks must run the same number of
    steps, or the one with a step more waits forever in the Allreduce.
    """
    def size(n: int, r: int) -> int:
        start, stop = shard_range(n, r, ranks)
        return stop - start

    return min(size(n_train, r) // size(m, r) for r in range(ranks))


def epoch_order(n_local: int, seed: int, epoch: int, rank: int) -> np.ndarray:
    """This epoch's shuffle of this rank's shard: a pure function of (seed, epoch, rank)."""
    return np.random.default_rng([seed, epoch, rank]).permutation(n_local)


# -- stopping on SIGTERM / SIGINT ----------------------------------------------

class StopRequest:
    """Set by SIGTERM or SIGINT; the loop finishes its step, saves and exits.

    A batch system sends SIGTERM before its time limit kills the job; Ctrl-C
    sends SIGINT. A second signal a while later means "now": it raises
    KeyboardInterrupt. One event often arrives twice within milliseconds
    (Ctrl-C reaches the rank and mpirun, which forwards it; PBS signals every
    process of the job), so a repeat inside REPEAT_SECONDS is the same request.
    """

    REPEAT_SECONDS = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._first = 0.0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first = True, now
        elif now - self._first >= self.REPEAT_SECONDS:
            raise KeyboardInterrupt


# -- setup on rank 0, shared with the others -----------------------------------

@dataclass
class Start:
    """Where the run starts: its config, the data's shape, and any checkpoint."""
    cfg: Config
    info: dict[str, Any]
    checkpoint: dict[str, Any] | None  # as read_checkpoint returns it, arrays dropped


def _root_setup(cfg: Config, given: dict[str, Any], ranks: int) -> tuple[Start, dict | None]:
    """Checks that need the file system: data, checkpoint, fit. Runs on rank 0 only."""
    ckpt = None
    if cfg.resume:
        if Path(cfg.checkpoint).exists():
            ckpt = read_checkpoint(cfg.checkpoint)
            cfg = merge_resumed(ckpt["config"], given)
        else:
            print(f"distnn: no checkpoint at {cfg.checkpoint} yet: starting a new run",
                  file=sys.stderr)
    elif Path(cfg.checkpoint).exists():
        print(f"distnn: starting a new run; its first checkpoint will replace "
              f"{cfg.checkpoint} (--resume continues that run instead)", file=sys.stderr)
    if not Path(cfg.data).exists() and cfg.data == DEFAULT_DATA:
        print(f"distnn: {cfg.data} is missing: preparing MNIST there first", file=sys.stderr)
        prepare(cfg.data)
    info = describe(cfg.data)
    if info["n_features"] != cfg.layers[0] or info["n_classes"] != cfg.layers[-1]:
        raise DataError(
            f"{cfg.data} has {info['n_features']} features and {info['n_classes']} classes, "
            f"but --layers {','.join(map(str, cfg.layers))} expects {cfg.layers[0]} and "
            f"{cfg.layers[-1]}"
        )
    if cfg.batch_size < ranks:
        raise ConfigError(f"--batch-size {cfg.batch_size} is smaller than the {ranks} ranks: "
                          "every rank needs at least one sample per step")
    if info["train_size"] < ranks:
        raise ConfigError(f"{ranks} ranks but only {info['train_size']} training samples")
    if steps_per_epoch(info["train_size"], cfg.batch_size, ranks) < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the "
                          f"{info['train_size']} training samples allow")
    arrays = None
    if ckpt is not None:
        arrays = {"params": ckpt.pop("params"), "optimizer": ckpt.pop("optimizer")}
    return Start(cfg, info, ckpt), arrays


def _agree_on_start(comm: Comm, cfg: Config, given: dict[str, Any]) -> tuple[Start, dict | None]:
    """Rank 0 does the setup; every rank gets its verdict, so all go on or all stop."""
    outcome: Any = None
    arrays = None
    if comm.rank == 0:
        try:
            start, arrays = _root_setup(cfg, given, comm.size)
            outcome = start
        except USER_ERRORS as err:
            outcome = str(err)
    outcome = comm.bcast(outcome)  # MPI: the others wait here while rank 0 prepares data
    if isinstance(outcome, str):
        raise UsageError(outcome)
    return outcome, arrays


# -- the run -------------------------------------------------------------------

def _load(path: str, split: str, comm: Comm, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """This rank's shard, pixels scaled to [0, 1] in the network's dtype."""
    images, labels = read_shard(path, split, comm.rank, comm.size)
    return images.astype(dtype) / dtype.type(255), labels.astype(np.intp)


def _progress(enabled: bool, total: int, initial: int, epoch: int):
    if not (enabled and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", leave=False,
                unit="step", file=sys.stderr)


def train(cfg: Config, given: dict[str, Any], comm: Comm,
          stop: StopRequest | None = None) -> int:
    """Run (or continue) training; returns the process exit status.

    ``given`` holds the settings named on the command line (they decide what a
    resumed run may change); ``stop`` lets a test stand in for the signals.
    """
    ranks_here = comm.ranks_on_this_node()
    try:
        threads = limit_blas_threads(ranks_here)
    except ValueError as err:  # the same environment on every rank: all stop
        raise UsageError(str(err)) from None
    stop = stop or StopRequest()
    start, arrays = _agree_on_start(comm, cfg, given)
    cfg, info = start.cfg, start.info
    root = comm.rank == 0
    say: Callable[..., None] = print if root else (lambda *a, **k: None)
    cores = os.cpu_count() or 1
    if ranks_here > cores:  # MPI ranks wait by spinning: they take cores from the working ones
        say(f"distnn: note: {ranks_here} ranks share {cores} cores on this node; a rank "
            f"that waits keeps its core busy, so -n {cores} is likely faster", file=sys.stderr)

    net = MLP(cfg.layers, activation=cfg.activation, cost=cfg.cost, init=cfg.init,
              dtype=cfg.dtype, seed=cfg.seed)
    optimizer = SGD(net.params, momentum=cfg.momentum, nesterov=cfg.nesterov,
                    weight_decay=cfg.weight_decay, decay_mask=net.weight_mask)
    if arrays is not None:
        net.params[...] = arrays["params"]
        optimizer.load_state_dict(arrays["optimizer"])
    comm.bcast_(net.params)  # MPI: every replica starts from rank 0's parameters
    comm.bcast_(optimizer.velocity)  # MPI: ... and its optimizer state

    x_train, y_train = _load(cfg.data, "train", comm, net.dtype)
    x_test, y_test = _load(cfg.data, "test", comm, net.dtype)
    m = cfg.batch_size
    m_start, m_stop = shard_range(m, comm.rank, comm.size)
    m_local = m_stop - m_start  # this rank's part of the global mini-batch
    steps = steps_per_epoch(info["train_size"], m, comm.size)
    lr_at = make_schedule(cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps,
                          warmup_steps=round(cfg.warmup_epochs * steps),
                          step_size=cfg.step_epochs * steps, gamma=cfg.gamma)

    first_epoch, first_step, epoch_cost = 0, 0, 0.0
    if start.checkpoint is not None:
        pos = start.checkpoint["position"]
        first_epoch, epoch_cost = pos["epoch"], pos["epoch_cost"]
        # Mid-epoch on another number of ranks: continue at the same fraction of the epoch.
        first_step = pos["step"] * steps // pos["steps"] if pos["steps"] != steps else pos["step"]
        say(f"distnn: resuming {cfg.checkpoint} at epoch {first_epoch + 1}, step {first_step}")

    try:
        reducer = make_reducer(comm, net, optimizer, cfg.reduce)  # MPI
    except ValueError as err:  # every rank saw the same node sizes and room
        raise UsageError(str(err)) from None
    if reducer.note:
        say(f"distnn: note: {reducer.note}", file=sys.stderr)
    summing = f", summing by {reducer.name}" if comm.size > 1 else ""
    say(f"distnn: {comm.size} rank(s){summing}, {threads or 'user-set'} BLAS thread(s) each; "
        f"{cfg.data}: {info['train_size']} train / {info['test_size']} test; "
        f"net {','.join(map(str, cfg.layers))} {cfg.activation}/{cfg.cost} {cfg.dtype}; "
        f"m={m} ({m_local} on rank 0), {steps} steps/epoch", flush=True)

    def log(record: dict[str, Any]) -> None:
        if root and cfg.metrics:  # appended and closed each time: a crash loses nothing
            with open(cfg.metrics, "a") as metrics:
                metrics.write(json.dumps(record) + "\n")

    log({"event": "start", "ranks": comm.size, "config": cfg.to_dict(), "epoch": first_epoch,
         "step": first_step})

    def save(epoch: int, step: int, cost: float) -> None:
        if root:
            save_checkpoint(cfg.checkpoint, net, optimizer.state_dict(), cfg.to_dict(),
                            {"epoch": epoch, "step": step, "steps": steps,
                             "epoch_cost": cost, "ranks": comm.size})
        comm.barrier()  # MPI: nobody exits before the checkpoint is on disk

    # Leaving the block normally (or on a stop) frees shared memory; a crash just exits.
    with reducer as reduce:
        for epoch in range(first_epoch, cfg.epochs):
            order = epoch_order(len(y_train), cfg.seed, epoch, comm.rank)
            reduce.comm_seconds = 0.0
            bar = _progress(root and cfg.progress, steps, first_step, epoch)
            t0 = time.perf_counter()
            for step in range(first_step, steps):
                batch = order[step * m_local:(step + 1) * m_local]
                # take(): 10-15% faster than x_train[batch] for a batch of rows
                x, y = x_train.take(batch, axis=0), y_train[batch]
                cost, stopping = reduce(x, y, stop.requested)  # MPI
                if not math.isfinite(cost):
                    raise Diverged(
                        f"the training cost became {cost} at epoch {epoch + 1}, step {step}; "
                        f"{cfg.checkpoint} keeps the last good state (try a smaller --lr)"
                    )
                # sum_x dC_x/dw times 1/m is its mean, so the step is eta/m sum (the seed's rule).
                reduce.apply(lr_at(epoch * steps + step), scale=1 / m)  # MPI (shm: a barrier)
                epoch_cost += cost
                if bar:
                    bar.update()
                if stopping:
                    if bar:
                        bar.close()
                    save(epoch, step + 1, epoch_cost)
                    say(f"distnn: interrupted at epoch {epoch + 1}, step {step + 1}: checkpoint "
                        f"written to {cfg.checkpoint}; continue with --resume", flush=True)
                    return EXIT_INTERRUPTED
            if bar:
                bar.close()
            seconds = time.perf_counter() - t0
            counts = confusion_over_ranks(comm, net, x_test, y_test, cfg.layers[-1])  # MPI
            record = {
                "epoch": epoch + 1,
                # per sample; a resumed epoch kept its partial sum
                "cost": epoch_cost / (steps * m),
                "test_accuracy": accuracy(counts),
                "seconds": seconds,
                "samples_per_s": (steps - first_step) * m / seconds,
                "comm_share": reduce.comm_seconds / seconds,
            }
            say(f"epoch {epoch + 1}/{cfg.epochs}  cost {record['cost']:.4f}  "
                f"test accuracy {record['test_accuracy']:.2%}  time {seconds:.1f}s  "
                f"{record['samples_per_s']:.0f} samples/s  comm {record['comm_share']:.0%}",
                flush=True)
            log(record)
            first_step, epoch_cost = 0, 0.0
            save(epoch + 1, 0, 0.0)
    if first_epoch >= cfg.epochs:  # resumed a finished run: evaluate what it holds
        counts = confusion_over_ranks(comm, net, x_test, y_test, cfg.layers[-1])  # MPI
    say(f"final test accuracy: {accuracy(counts):.2%} ({np.trace(counts)}/{counts.sum()})",
        flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    comm = world()
    cfg, given = parse_args(argv, quiet=comm.rank != 0)
    try:
        return train(cfg, given, comm)
    except UsageError as err:  # every rank raised it: all exit, rank 0 says why
        if comm.rank == 0:
            print(f"distnn.train: error: {err}", file=sys.stderr)
        return 2
    except Diverged as err:  # every rank saw the same summed cost
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
