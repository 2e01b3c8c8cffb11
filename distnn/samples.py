"""This rank's samples: the rows of a split it serves, as the network reads them.

The trainer holds, on each rank, the rows of the training set's partitions that
it serves (``distnn.data.order``) and its block of the test set, with the
pixels scaled to [0, 1] in the network's dtype. A step asks for the rows of its
part of the batch by number (``batch``), counted from the first row this rank
reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distnn.comm import Comm
from distnn.data import Partitions, read_rows, read_shard


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

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples ``rows``: (len(rows), n_features) and (len(rows),)."""
        return self.x.take(rows, axis=0), self.y[rows]  # take(): a faster x[rows]
