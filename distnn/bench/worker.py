"""One rank of a benchmark launch: time the trainer's step on every cell of a spec.

Launched by ``python -m distnn.bench`` as

    mpirun -n P python -m distnn.bench.worker --spec cells.json --out result.json

(one process without mpirun works too: P = 1). A cell is a JSON object with
``sizes``, ``batch`` (global), ``dtype`` and optionally ``reducer`` ("auto" |
"allreduce" | "shm", as ``distnn.train --reduce``; default "auto"). Rank 0
writes one result per cell to ``--out``.

The timed step is the trainer's (``distnn.train``), line by line: gather this
rank's m/P rows of its shuffled shard (``take``); ``net.gradient`` into the
reducer's ``local_grad()`` (backprop, BP1-BP4); ``reducer.sum`` of gradient,
cost and stop flag over ranks; ``SGD.step`` of the summed gradient with
``scale=1/m`` on ``reducer.part`` (with "shm", this rank's part of the
parameters); ``reducer.publish()`` (with "shm", a barrier after which every
part is visible). Data are synthetic, of MNIST's shape: uniform pixels in
[0, 1), random labels.

Timing: per cell, a few warm-up steps, then repeats of n steps each (n chosen on
rank 0 so that a repeat lasts about budget/repeats, then broadcast), a barrier
before each repeat. For each repeat every rank measures wall time, time inside
MPI (``reducer.comm_seconds``, in ``sum`` and ``publish``: starting, waiting,
load imbalance included), and the gather, backprop and update lines' times; the
ranks' figures are averaged and the median repeat (by wall time) is reported.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from distnn.atomic import atomic_path
from distnn.comm import Comm, world
from distnn.network import MLP
from distnn.optim import SGD
from distnn.reduce import make_reducer

LEARNING_RATE = 1e-3  # small: parameters stay in range over thousands of timed steps


def local_rows(n: int, rank: int, size: int) -> int:
    """How many of n rows rank ``rank`` of ``size`` gets (the first n % size get one more)."""
    base, extra = divmod(n, size)
    return base + (rank < extra)


class Step:
    """The trainer's step on synthetic data, with its phases timed."""

    def __init__(self, comm: Comm, cell: dict[str, Any]) -> None:
        self.global_batch = int(cell["batch"])
        self.m = local_rows(self.global_batch, comm.rank, comm.size)
        net = MLP(
            cell["sizes"],
            activation=cell.get("activation", "sigmoid"),
            cost=cell.get("cost", "quadratic"),
            dtype=cell["dtype"],
            seed=0,
        )
        rng = np.random.default_rng(1000 + comm.rank)
        n_rows = max(4096, 4 * self.m)  # this rank's shard of the synthetic training set
        self.x_shard = rng.random((n_rows, net.sizes[0]), dtype=net.dtype)  # (n_rows, n_in)
        self.y_shard = rng.integers(0, net.sizes[-1], n_rows)
        self.order = rng.permutation(n_rows)
        self.pos = 0
        self.net = net
        self.optimizer = SGD(net.params)
        self.reducer = make_reducer(comm, net, self.optimizer, cell.get("reducer", "auto"))
        self.gather_seconds = self.backprop_seconds = self.update_seconds = 0.0

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's next m/P rows of its shuffled shard, as distnn.train takes them."""
        if self.pos + self.m > len(self.order):  # next epoch of the shard
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.m]
        self.pos += self.m
        # take() is faster than fancy indexing, and than np.take(..., out=) into a
        # reused buffer.
        return self.x_shard.take(idx, axis=0), self.y_shard[idx]  # (m/P, n_in), (m/P,)

    def __call__(self) -> None:
        net, reducer = self.net, self.reducer
        t0 = time.perf_counter()
        self.xb, self.yb = self.batch()
        t1 = time.perf_counter()
        cost, _ = net.gradient(self.xb, self.yb, out=reducer.local_grad())  # BP1-BP4
        t2 = time.perf_counter()
        reducer.sum(cost, False)  # MPI: gradient, cost and stop flag over ranks
        t3 = time.perf_counter()
        # The sum's 1/m folded into the step, as distnn.train does.
        self.optimizer.step(net.params, reducer.grad, LEARNING_RATE,
                            scale=1.0 / self.global_batch, part=reducer.part)
        t4 = time.perf_counter()
        reducer.publish()  # MPI: with shm, every rank's part is visible after it
        self.gather_seconds += t1 - t0
        self.backprop_seconds += t2 - t1
        self.update_seconds += t4 - t3

    def phase_seconds(self) -> np.ndarray:
        """Seconds so far in [comm, gather, backprop, update]."""
        return np.array([self.reducer.comm_seconds, self.gather_seconds,
                         self.backprop_seconds, self.update_seconds])


def time_cell(comm: Comm, cell: dict[str, Any], budget: float, repeats: int) -> dict[str, Any]:
    step = Step(comm, cell)
    for _ in range(3):  # warm: workspaces, BLAS buffers, MPI connections
        step()
    comm.barrier()
    t0 = time.perf_counter()
    step()
    one = time.perf_counter() - t0
    n_steps = comm.bcast(max(1, int(budget / repeats / max(one, 1e-6))) if comm.rank == 0 else None)
    rows = []
    for _ in range(repeats):
        before = step.phase_seconds()
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        wall = time.perf_counter() - t0
        # Mean over ranks of [wall, comm, gather, backprop, update] per step; max wall too.
        figures = np.concatenate([[wall], step.phase_seconds() - before]) / n_steps
        total = comm.allreduce_(figures.copy()) / comm.size
        slowest = comm.max_(np.array([wall / n_steps]))[0]
        rows.append((slowest, total))
    # Collective: frees this cell's shared table (shm) before the next cell maps its own,
    # so a long matrix cannot fill /dev/shm and send "auto" to allreduce.
    step.reducer.close()
    rows.sort(key=lambda row: row[0])
    wall, (mean_wall, comm_s, gather_s, backprop_s, update_s) = rows[len(rows) // 2]
    return {
        **cell,
        "P": comm.size,
        "steps_per_repeat": n_steps,
        "repeats": repeats,
        "step_s": wall,
        "samples_per_s": step.global_batch / wall,
        "comm_s": comm_s,
        "compute_s": mean_wall - comm_s,
        "gather_s": gather_s,
        "update_s": update_s,
        "backprop_s": backprop_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON: {'cells': [...], 'budget': s}")
    parser.add_argument("--out", required=True, help="where rank 0 writes the results (JSON)")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    comm = world()
    results = []
    with threadpool_limits(limits=1):  # one BLAS thread per rank
        for cell in spec["cells"]:
            results.append(time_cell(comm, cell, spec["budget"], spec.get("repeats", 5)))
    if comm.rank == 0:
        write_results(args.out, comm.size, results)


def write_results(path: str, P: int, results: list[dict[str, Any]]) -> None:
    """What a launch hands back to ``distnn.bench.matrix``: whole, or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"P": P, "results": results}))


if __name__ == "__main__":
    main()
