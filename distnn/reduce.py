"""Summing the mini-batch gradient over ranks.

Each rank backpropagates its part of the global mini-batch; the seed's update
needs the sum over all m samples, sum_x dC_x/dw, so the ranks add their partial
sums. Because ``net.params`` is one flat vector, so is the gradient, and one
in-place ``Allreduce`` moves it all.

Two scalars ride in the same message for free: the batch cost (summed, for the
epoch's training cost) and a stop flag (a rank that caught SIGTERM sets it to
1, so after the sum every rank knows, in the same step, that the job must stop).
"""

from __future__ import annotations

import time

import numpy as np

from distnn.comm import Comm


class FusedAllreduce:
    """Backprop the local batch, then one Allreduce of [grad, cost, stop]."""

    def __init__(self, comm: Comm, net) -> None:
        self.comm = comm
        self.net = net
        n = net.params.size
        self._buf = np.zeros(n + 2, dtype=net.params.dtype)
        self.grad = self._buf[:n]  # view: the summed gradient lands here
        self._extras = self._buf[n:]
        self.comm_seconds = 0.0  # time inside the collective, waiting included

    def __call__(self, x: np.ndarray, y: np.ndarray, stop: bool) -> tuple[float, bool]:
        """Sum over ranks of the gradient and cost of (x, y), and whether any rank stops.

        Returns (cost summed over the global batch, stop requested anywhere);
        the summed gradient is in ``self.grad``.
        """
        cost, _ = self.net.gradient(x, y, out=self.grad)
        return self._sum_over_ranks(cost, stop)

    def _sum_over_ranks(self, cost: float, stop: bool) -> tuple[float, bool]:
        """One Allreduce of this rank's [grad, cost, stop], already in the buffer's parts."""
        self._extras[0] = cost
        self._extras[1] = 1.0 if stop else 0.0
        t0 = time.perf_counter()
        self.comm.allreduce_(self._buf)
        self.comm_seconds += time.perf_counter() - t0
        return float(self._extras[0]), bool(self._extras[1] > 0)
