"""Experiment: sum the gradient through one node's shared memory instead of Allreduce.

Every rank of the node backpropagates straight into its own row of an MPI
shared-memory window (``MPI.Win.Allocate_shared``), laid out (P + 1, 2 + n):
rows 0..P-1 hold each rank's [cost, stop | gradient], row P the sum. After a
barrier, rank r adds up column block r of all rows into row P (each rank
reads 2/P of the data and writes 1/P); after a second barrier every rank
reads the whole sum in place, so nothing is copied back. Two barriers and
one pass over the data, against MPICH's Allreduce (copies through its own
shared-memory queues, reduce-scatter then allgather).

Only for ranks that share one node's memory (``ranks_on_this_node() ==
size``); several nodes would add a leader allreduce across nodes. Same call
interface as ``FusedAllreduce``. Measured by ``python -m distnn.bench`` as the
reducer "shared-window"; not used by the trainer.
"""

from __future__ import annotations

import time

import numpy as np

from distnn.comm import Comm


class SharedWindowAllreduce:
    """Backprop into a shared-memory row, barrier, sum a block of columns, barrier."""

    def __init__(self, comm: Comm, net) -> None:
        self.comm = comm
        self.net = net
        n = net.params.size
        width = n + 2
        dtype = net.params.dtype
        self.comm_seconds = 0.0
        if comm.size == 1:
            self._rows = np.zeros((1, width), dtype)
            self._sum = self._rows[0]
            self._mpi = None
        else:
            from mpi4py import MPI

            mpi_comm = comm._comm  # comm.py offers no shared windows
            if mpi_comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size() != comm.size:
                raise ValueError("SharedWindowAllreduce needs every rank on one node")
            nbytes = (comm.size + 1) * width * dtype.itemsize if comm.rank == 0 else 0
            self._win = MPI.Win.Allocate_shared(nbytes, dtype.itemsize, comm=mpi_comm)
            self._win.Lock_all(MPI.MODE_NOCHECK)  # one passive epoch; Sync + Barrier order it
            buf, _ = self._win.Shared_query(0)
            self._rows = np.ndarray((comm.size + 1, width), dtype, buffer=buf)
            self._sum = self._rows[comm.size]
            self._mpi = mpi_comm
            edges = np.linspace(0, width, comm.size + 1).astype(int)
            self._block = slice(edges[comm.rank], edges[comm.rank + 1])
        self._mine = self._rows[comm.rank]
        self.grad = self._sum[2:]  # view: the summed gradient, shared by all ranks

    def __call__(self, x: np.ndarray, y: np.ndarray, stop: bool) -> tuple[float, bool]:
        cost, _ = self.net.gradient(x, y, out=self._mine[2:])
        self._mine[0] = cost
        self._mine[1] = 1.0 if stop else 0.0
        if self._mpi is None:  # one rank: its row is the sum
            return float(cost), bool(stop)
        t0 = time.perf_counter()
        self._win.Sync()
        self._mpi.Barrier()  # every row written
        self._win.Sync()
        block = self._rows[:-1, self._block]  # (P, width/P)
        np.sum(block, axis=0, out=self._sum[self._block])
        self._win.Sync()
        self._mpi.Barrier()  # every block summed
        self._win.Sync()
        self.comm_seconds += time.perf_counter() - t0
        return float(self._sum[0]), bool(self._sum[1] > 0)
