"""``--sync-every k``: gradient accumulation, one allreduce per k micro-batches.

Semantics (chosen, and the only ones measured): each rank backpropagates k
micro-batches of m/P samples one after the other, adds their summed gradients
locally, and only then sums over ranks, once. The update that follows is
exactly the seed's rule on a global batch of k*m samples:

    w -> w - eta/(k m) sum_{x in the k*m samples} grad C_x

so ``--sync-every k`` at batch m trains like ``--batch k*m`` (same result up to
rounding, k times fewer updates per epoch), with the memory of a batch of m and
k times fewer messages. It is not local SGD: parameters never drift apart.

Same interface as ``FusedAllreduce``: x, y are the rank's k micro-batches
stacked, shape (k * m_local, n_in).
"""

from __future__ import annotations

import numpy as np

from distnn.comm import Comm
from distnn.reduce import FusedAllreduce


class AccumulatedAllreduce(FusedAllreduce):
    """Sum the gradients of k local micro-batches, then one Allreduce of [grad, cost, stop]."""

    def __init__(self, comm: Comm, net, k: int, optimizer=None) -> None:
        if k < 1:
            raise ValueError(f"sync-every must be >= 1, got {k}")
        super().__init__(comm, net, optimizer)
        self.k = k
        self._micro = np.empty_like(self.grad)  # one micro-batch's gradient

    def __call__(self, x: np.ndarray, y: np.ndarray, stop: bool) -> tuple[float, bool]:
        micro_x, micro_y = np.array_split(x, self.k), np.array_split(y, self.k)
        cost, _ = self.net.gradient(micro_x[0], micro_y[0], out=self.grad)
        for xj, yj in zip(micro_x[1:], micro_y[1:]):
            cost_j, _ = self.net.gradient(xj, yj, out=self._micro)
            self.grad += self._micro
            cost += cost_j
        return self._sum_over_ranks(cost, stop)
