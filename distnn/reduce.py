"""Summing the mini-batch gradient over ranks: the trainer's one step across ranks.

Each rank backpropagates its part of the global mini-batch; the seed's update
needs the sum over all m samples, sum_x dC_x/dw, so the ranks add their partial
sums. Because ``net.params`` is one flat vector, so is the gradient, and one
in-place ``Allreduce`` moves it all.

Two scalars ride in the same message for free: the batch cost (summed, for the
epoch's training cost) and a stop flag (a rank that caught SIGTERM sets it to
1, so after the sum every rank knows, in the same step, that the job must stop).

Two reducers, one interface, used once per step like this::

    cost, _ = net.gradient(x, y, out=reducer.local_grad())   # this rank's samples
    cost, stop = reducer.sum(cost, stop, lap)                # over all ranks
    optimizer.step(net.params, reducer.grad, eta, scale=1 / m, part=reducer.part)
    reducer.publish(lap)                                     # the update is everyone's

``lap`` (``distnn.step.Laps``) is told where time went: ``lap("wait")`` ends
a stretch spent waiting for other ranks, where a reducer can tell it apart
from the summing (shm's barriers). Inside one MPI ``Allreduce`` it cannot, so
each reducer keeps how long each step's Allreduce took, and ``waited()``
(collective, once an epoch) estimates the waiting from them: in each step
the rank that arrived last waited for nobody, so the least time any rank
spent in that step's Allreduce is its summing, and the rest of each rank's
time there was waiting.

A change that needs whole units (max-norm) takes the rows ``reducer.units``
of each weight matrix, then publishes again.

- ``FusedAllreduce``: one Allreduce; every rank updates every parameter
  (``part`` is all of them). Works for any placement of ranks, and is the one
  to read first.
- ``SharedMemoryReduce``: the ranks of a node share one copy of the parameters
  and sum through shared memory; each updates its part. Faster on a node
  (``python -m distnn.bench`` measures by how much).

``make_reducer`` picks one (``--reduce`` of ``distnn.train``).
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable

import numpy as np

from distnn.comm import Comm, MPIComm

REDUCERS = ("auto", "allreduce", "shm")  # --reduce: make_reducer's choices


def _unlapped(part: str) -> None:
    """Where no one asks where the time went."""


class _Reducer:
    """``with reducer:`` closes it on a normal exit; after an error the job ends anyway,
    and closing (collective) could wait forever for a rank that failed."""

    # Why make_reducer chose this reducer over the one asked for ("" if it did not);
    # the trainer prints it.
    note = ""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def publish(self, lap: Callable[[str], None] = _unlapped) -> None:
        """After the update: make it every rank's before the next forward pass."""

    def describe(self) -> str:
        """How this reducer sums, in a few words (the trainer's first line says it)."""
        return self.name

    def close(self) -> None:
        pass

    def _timed_allreduce(self, comm: Comm, buf: np.ndarray) -> None:
        t0 = time.perf_counter()
        comm.allreduce_(buf)  # MPI
        self._took.append(time.perf_counter() - t0)

    def waited(self) -> float:
        """Seconds this rank waited inside Allreduce since the last call (collective):
        per step, its time there less the least any rank spent in that step's."""
        took, self._took = np.frombuffer(self._took, dtype=np.float64), array("d")
        comm = self.across
        if comm.size == 1 or took.size == 0:  # every rank of the group alike
            return 0.0
        least = -comm.max_(-took)  # MPI: one small collective an epoch
        return float(np.sum(took - least))


class FusedAllreduce(_Reducer):
    """One Allreduce of [gradient, cost, stop]; every rank updates every parameter."""

    name = "allreduce"

    def __init__(self, comm: Comm, net) -> None:
        n = net.params.size
        self._buf = np.zeros(n + 2, dtype=net.params.dtype)
        self.grad = self._buf[:n]  # this rank's gradient, and after sum() everyone's
        self._extras = self._buf[n:]
        self.part = slice(0, n)  # every rank updates all of the parameters
        self.units = slice(None)  # ... and constrains every unit (distnn.constraints)
        self.across, self._took = comm, array("d")  # its Allreduce, and each step's: waited()

    def local_grad(self) -> np.ndarray:
        """Where this rank's gradient goes: the buffer that is summed in place."""
        return self.grad

    def sum(self, cost: float, stop: bool,
            lap: Callable[[str], None] = _unlapped) -> tuple[float, bool]:
        """Sum ``local_grad()``, ``cost`` and ``stop`` over ranks; the gradient lands in ``grad``.

        Returns (cost summed over the global batch, stop requested anywhere).
        """
        self._extras[0] = cost
        self._extras[1] = 1.0 if stop else 0.0
        self._timed_allreduce(self.across, self._buf)  # MPI
        return float(self._extras[0]), bool(self._extras[1] > 0)


class SharedMemoryReduce(_Reducer):
    """Sum through each node's shared memory; each rank then updates its part of the parameters.

    Within a node, MPI ranks can read each other's memory, so instead of
    Allreduce (which copies every gradient through MPI's own buffers) the
    ``per_node`` ranks of a node keep ONE copy of the parameters and of the
    optimizer's velocity, in memory they all map, and each backpropagates
    straight into its own row of a shared table:

        rows[i] = [cost_i, stop_i, sum_x dC_x/dw over the i-th rank's samples]

    After a barrier, the node's i-th rank adds up its 1/per_node of the
    columns over the node's rows; across nodes, the ranks with the same i sum
    their parts with one Allreduce (none on one node). The optimizer then
    updates that part of the parameters (``part``), and ``publish()``, a
    second barrier, makes the whole update visible before the next forward
    pass. Per step each rank reads its share of every row and updates its
    share of the parameters, where Allreduce copies the whole vector through
    MPI's buffers and every rank updates everything.

    The second barrier also tells every rank that the others have finished
    reading the rows. A caller that asks for its row again without
    ``publish()`` in between gets a barrier first instead, so that no rank
    rewrites its row while another still adds it up: the sums are right
    whatever comes between calls.

    Needs the same number of ranks on every node. The cost and stop flag are
    summed by every rank (per_node numbers each), so all of them know both
    before anyone updates, as with ``FusedAllreduce``.

    ``node`` defaults to the ranks sharing this node's memory; tests pass part of
    it to stand in for several nodes.
    """

    name = "shm"

    def __init__(self, comm: MPIComm, net, optimizer, node: MPIComm | None = None) -> None:
        self.net, self.optimizer = net, optimizer
        self.node = node or comm.node()
        per_node, i = self.node.size, self.node.rank
        # The i-th rank of every node: one rank on a single node, so no Allreduce at all.
        self.across = comm.split(i)
        n, dtype = net.params.size, net.params.dtype
        width = self._width(n)
        self._shared = self.node.shared_array(self.table_size(n, per_node), dtype)
        table = self._shared.array
        params, velocity = table[:n], table[width:width + n]
        rows = table[2 * width:].reshape(per_node, width)
        if i == 0:
            params[...] = net.params
            velocity[...] = optimizer.velocity
        self._shared.sync()
        net.bind(params)
        optimizer.bind(velocity)
        edges = [min(n, _round_up(n * j // per_node, _LINE)) for j in range(per_node + 1)]
        self.part = slice(edges[i], edges[i + 1])  # the parameters this rank updates
        self.units = slice(i, None, per_node)  # the hidden units it constrains (max-norm)
        self._mine = rows[i]  # [cost, stop, gradient ...]
        self._my_grad = self._mine[2:2 + n]  # one view for every step: gradient() caches it
        # What this rank adds up: every row's [cost, stop] and its columns of the gradient.
        columns = slice(2 + self.part.start, 2 + self.part.stop)
        self._terms = [(row[:2], row[columns]) for row in rows]
        # This rank's sums, [cost, stop, its part of the gradient]: private, and
        # contiguous for the Allreduce across nodes.
        self._sum = np.empty(2 + self.part.stop - self.part.start, dtype)
        self.grad = self._sum[2:]  # after sum(): the summed gradient of params[part]
        # True from a sum until the next sync: another rank may still be adding up
        # the rows, so this rank must not write its row again before a sync.
        self._rows_in_use = False
        self._took = array("d")  # each step's Allreduce across nodes: waited()

    @staticmethod
    def _width(n: int) -> int:
        return _round_up(2 + n, _LINE)  # rows start on cache lines: no false sharing

    @classmethod
    def table_size(cls, n: int, per_node: int) -> int:
        """Elements of the shared table for n parameters and per_node ranks on a node:
        the parameters, the velocity, and per_node rows [cost, stop, gradient]."""
        return (2 + per_node) * cls._width(n)

    def local_grad(self) -> np.ndarray:
        """Where this rank's gradient goes: its row of the shared table.

        Ask again for every sum: after a sum, other ranks may still read the row
        until the next local_grad() or publish(), which wait for them.
        """
        if self._rows_in_use:  # no publish() since the last sum: others may still read my row
            self._sync()  # MPI
        return self._my_grad

    def sum(self, cost: float, stop: bool,
            lap: Callable[[str], None] = _unlapped) -> tuple[float, bool]:
        """Sum the rows' gradients (this rank's part), costs and stop flags over ranks.

        Returns (cost summed over the global batch, stop requested anywhere);
        ``grad`` then holds the summed gradient of ``params[part]``.
        """
        if self._rows_in_use:  # a second sum with no local_grad() or publish() between
            self._sync()  # MPI
        self._mine[0] = cost
        self._mine[1] = 1.0 if stop else 0.0
        self._shared.sync()  # MPI: every rank's row is written
        lap("wait")  # for the node's slowest rank
        extras, grad = self._sum[:2], self.grad
        np.copyto(extras, self._terms[0][0])
        np.copyto(grad, self._terms[0][1])
        for row_extras, row_grad in self._terms[1:]:  # row by row: faster than np.sum(axis=0)
            extras += row_extras
            grad += row_grad
        if self.across.size > 1:
            self._timed_allreduce(self.across, self._sum)  # MPI: the same part on other nodes
        self._rows_in_use = True
        return float(self._sum[0]), bool(self._sum[1] > 0)

    def describe(self) -> str:
        if self.across.size == 1:
            return f"shm ({self.node.size} ranks on one node)"
        return (f"shm within each node ({self.node.size} ranks), allreduce across "
                f"{self.across.size} nodes")

    def publish(self, lap: Callable[[str], None] = _unlapped) -> None:
        """After the update of ``part``: returns when every rank's part is done and seen."""
        self._sync()  # MPI: the next forward pass reads every part
        lap("wait")  # for the node's slowest rank

    def _sync(self) -> None:
        self._shared.sync()
        self._rows_in_use = False  # ... and every rank has finished reading the rows

    def close(self) -> None:
        """Give the network and optimizer private copies again, and free the shared memory.

        Collective: call it on every rank, or not at all (a failing job just exits).
        """
        self.net.bind(self.net.params.copy())
        self.optimizer.bind(self.optimizer.velocity.copy())
        self._shared.sync()  # nobody frees while another still copies
        self._shared.free()
        self.across.free()
        self.node.free()


_LINE = 16  # float32s in a 64-byte cache line (8 float64s: two lines, still aligned)


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


SHM_DIR = "/dev/shm"  # where Linux MPIs keep shared-memory windows
# MPI's own buffers live in SHM_DIR too, and pages round up: room to spare.
_SHM_SLACK = 4 << 20


def shm_room() -> int | None:
    """Bytes free in ``SHM_DIR``, or None where there is none to measure (not Linux)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def make_reducer(comm: Comm, net, optimizer, kind: str = "auto"):
    """The reducer ``kind`` names: "allreduce", "shm", or "auto".

    "auto" is "shm" when every node holds the same number (>= 2) of ranks and
    has room for the shared table in /dev/shm, else "allreduce" (with a
    ``note`` saying why when the room was short). "shm" with unequal nodes, or
    without the room, raises ValueError: writing past a full /dev/shm would
    kill the job with SIGBUS at the first step instead.
    """
    if kind not in REDUCERS:
        raise ValueError(f"unknown reducer {kind!r}; choose one of {', '.join(REDUCERS)}")
    if kind == "allreduce" or comm.size == 1:
        return FusedAllreduce(comm, net)
    node = comm.node()
    need = SharedMemoryReduce.table_size(net.params.size, node.size) * net.params.itemsize
    room = shm_room()
    short = 0 if room is None else max(0, need + _SHM_SLACK - room)
    # MPI: ranks per node, and the most any node lacks, the same answer on every rank
    most, fewest, short = comm.max_(np.array([node.size, -node.size, short], np.int64))
    fewest = -fewest
    wanted = most == fewest and (kind == "shm" or most >= 2)  # auto: nothing to share at 1
    if wanted and short == 0:
        return SharedMemoryReduce(comm, net, optimizer, node)
    node.free()
    if kind == "shm" and most != fewest:
        raise ValueError(f"--reduce shm needs the same number of ranks on every node; "
                         f"these nodes hold {fewest} to {most}")
    if not wanted:
        return FusedAllreduce(comm, net)
    mib = 1 << 20
    why = (f"the shared table needs {-(-need // mib)} MiB of {SHM_DIR} on each node, and a "
           f"node is {-(-short // mib)} MiB short (a container's default is often 64 MiB: "
           f"docker run --shm-size, or a larger tmpfs)")
    if kind == "shm":
        raise ValueError(f"--reduce shm: {why}; --reduce allreduce needs none")
    reducer = FusedAllreduce(comm, net)
    reducer.note = f"summing by allreduce, not shm: {why}"
    return reducer
