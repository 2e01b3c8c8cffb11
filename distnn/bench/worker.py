"""One rank of a benchmark launch: time the trainer's step on every cell of a spec.

Launched by ``python -m distnn.bench`` as

    mpirun -n P python -m distnn.bench.worker --spec cells.json --out result.json

(one process without mpirun works too: P = 1). A cell is a JSON object with
``sizes`` (an MLP's, or a conv net's spec: ``distnn.architecture``), ``batch``
(global), ``dtype``, optionally ``activation`` and ``cost`` (default sigmoid
and quadratic, the seed's) and ``reducer`` ("auto" | "allreduce" | "shm", as
``distnn.train --reduce``; default "auto"). Rank 0 writes one result per cell
to ``--out``.

The timed step is the trainer's own, ``distnn.step.step``: gather this rank's
rows of the batch from its partitions (``distnn.data.order``, as the trainer
serves them); ``net.gradient`` into the reducer's ``local_grad()`` (backprop,
BP1-BP4); ``reducer.sum`` of gradient, cost and stop flag over ranks;
``SGD.step`` of the summed gradient with ``scale=1/m`` on ``reducer.part``
(with "shm", this rank's part of the parameters); ``reducer.publish()`` (with
"shm", a barrier after which every part is visible). Data are synthetic, of
the cell's shape: uniform pixels in [0, 1), random labels.

Timing: per cell, a few warm-up steps, then repeats of n steps each (n chosen on
rank 0 so that a repeat lasts about budget/repeats, then broadcast), a barrier
before each repeat. For each repeat every rank measures wall time, and the step's
own laps (``distnn.step.Laps``): time inside MPI (``wait``, ``sum`` and
``publish``: starting, waiting, load imbalance included), its gather, backprop
and update; the
ranks' figures are averaged and the median repeat (by wall time) is reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from distnn import architecture
from distnn.comm import Comm, world
from distnn.convnet import build
from distnn.data import Partitions, default_partitions
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.samples import Shard
from distnn.step import Recipe, Replica, step
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

LEARNING_RATE = 1e-3  # small: parameters stay in range over thousands of timed steps


def synthetic_shard(cell: dict[str, Any], rank: int, size: int
                    ) -> tuple[np.ndarray, np.ndarray, Partitions]:
    """This rank's rows of a synthetic training set for ``cell`` (pixels uniform in
    [0, 1) in the cell's dtype, random labels), and the partitions that order it."""
    sizes, m = architecture.widths(cell["sizes"]), int(cell["batch"])  # flat, input first
    n = size * max(4096, 4 * -(-m // size))  # enough rows that an epoch has many steps
    order = Partitions(n, m, default_partitions(m, size))
    start, stop = order.rows_of(rank, size)
    rng = np.random.default_rng(1000 + rank)
    x = rng.random((stop - start, sizes[0]), dtype=np.dtype(cell["dtype"]))  # (n_r, n_in)
    return x, rng.integers(0, sizes[-1], stop - start), order


def batches(order: Partitions, rank: int, size: int) -> Iterator[np.ndarray]:
    """This rank's rows of every batch, epoch after epoch, as the trainer serves them."""
    for epoch in itertools.count():
        yield from order.epoch(0, epoch, rank, size)


class Step:
    """The trainer's step (``distnn.step``) on synthetic data, with its phases timed."""

    def __init__(self, comm: Comm, cell: dict[str, Any]) -> None:
        self.global_batch = int(cell["batch"])
        net = build(
            cell["sizes"],
            activation=cell.get("activation", "sigmoid"),
            cost=cell.get("cost", "quadratic"),
            dtype=cell["dtype"],
            seed=0,
        )
        x, y, order = synthetic_shard(cell, comm.rank, comm.size)
        self.shard = Shard(x, y)
        self.rows = batches(order, comm.rank, comm.size)
        self.recipe = Recipe(self.global_batch, order.share_of(comm.rank, comm.size))
        optimizer = SGD(net.params)
        self.replica = Replica(net, optimizer,
                               make_reducer(comm, net, optimizer, cell.get("reducer", "auto")))
        self.net, self.reducer = net, self.replica.reducer
        self.k = 0

    def __call__(self) -> None:
        self.last_rows = next(self.rows)
        step(self.replica, self.recipe, self.shard, self.last_rows, 0, self.k, LEARNING_RATE)
        self.k += 1

    def phase_seconds(self) -> np.ndarray:
        """Seconds so far in [comm, gather, backprop, update]."""
        laps = self.replica.lap.seconds
        return np.array([laps["wait"] + laps["sum"] + laps["publish"], laps["batch"],
                         laps["backprop"], laps["update"]])


def time_cell(comm: Comm, cell: dict[str, Any], budget: float, repeats: int) -> dict[str, Any]:
    timed = Step(comm, cell)
    for _ in range(3):  # warm: workspaces, BLAS buffers, MPI connections
        timed()
    comm.barrier()
    t0 = time.perf_counter()
    timed()
    one = time.perf_counter() - t0
    n_steps = comm.bcast(max(1, int(budget / repeats / max(one, 1e-6))) if comm.rank == 0 else None)
    rows = []
    for _ in range(repeats):
        before = timed.phase_seconds()
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            timed()
        wall = time.perf_counter() - t0
        # Mean over ranks of [wall, comm, gather, backprop, update] per step; max wall too.
        figures = np.concatenate([[wall], timed.phase_seconds() - before]) / n_steps
        total = comm.allreduce_(figures.copy()) / comm.size
        slowest = comm.max_(np.array([wall / n_steps]))[0]
        rows.append((slowest, total))
    # Collective: frees this cell's shared table (shm) before the next cell maps its own,
    # so a long matrix cannot fill /dev/shm and send "auto" to allreduce.
    timed.reducer.close()
    rows.sort(key=lambda row: row[0])
    wall, (mean_wall, comm_s, gather_s, backprop_s, update_s) = rows[len(rows) // 2]
    return {
        **cell,
        "P": comm.size,
        "steps_per_repeat": n_steps,
        "repeats": repeats,
        "step_s": wall,
        "samples_per_s": timed.global_batch / wall,
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
        try:
            write_results(args.out, comm.size, results)
        except WriteFailed as err:  # a full disk, say: the launcher passes the status on
            print(f"distnn.bench: error: {err}", file=sys.stderr)
            sys.exit(EXIT_IOERR)


def write_results(path: str, P: int, results: list[dict[str, Any]]) -> None:
    """What a launch hands back to ``distnn.bench.matrix``: whole, or not at all."""
    write_text(path, json.dumps({"P": P, "results": results}))


if __name__ == "__main__":
    main()
