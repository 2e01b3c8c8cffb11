"""Rows on their way into a table, kept on disk so that memory holds a block at a time.

``Staged`` appends blocks of rows (features, targets, and each row's number in
the source) to datasets of a scratch HDF5 file and reads them back in order.
``Shuffled`` is the external shuffle that lets a training set of any size be
stored permuted: each row goes to one of B buckets at random, and each bucket,
sized to fit in memory, is read back in a random order of its own. Bucket
sizes are then multinomial and the orders within them uniform, which makes
the whole order a uniform random permutation (the two-pass shuffle of Rao,
1961), drawn from the seed alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # features (b, n), targets, source row (b,)
BLOCK = 1 << 16  # rows read back at a time


class Staged:
    """Rows appended to, and read back from, one HDF5 group."""

    def __init__(self, group: h5py.Group, n_features: int, target_shape: tuple[int, ...],
                 target_dtype: np.dtype | type) -> None:
        chunk = max(1, min(1024, (1 << 18) // (8 * n_features)))
        self.sets = [group.create_dataset(name, (0, *shape), dtype, maxshape=(None, *shape),
                                          chunks=(chunk, *shape))
                     for name, shape, dtype in (("x", (n_features,), np.float64),
                                                ("y", target_shape, target_dtype),
                                                ("row", (), np.int64))]

    def __len__(self) -> int:
        return len(self.sets[0])

    def add(self, rows: Rows) -> None:
        n = len(self)
        for ds, part in zip(self.sets, rows):
            ds.resize(n + len(part), axis=0)
            ds[n:] = part

    def blocks(self, size: int | None = None) -> Iterator[Rows]:
        size = size or BLOCK
        for start in range(0, len(self), size):
            x, y, row = (ds[start:start + size] for ds in self.sets)
            yield x, y, row


class Shuffled:
    """An external shuffle through ``buckets`` buckets in ``group``."""

    def __init__(self, group: h5py.Group, buckets: int, seed: int, n_features: int,
                 target_shape: tuple[int, ...], target_dtype: np.dtype | type) -> None:
        self.seed, self._added = seed, 0
        self.buckets = [Staged(group.create_group(str(b)), n_features, target_shape,
                               target_dtype) for b in range(buckets)]

    def __len__(self) -> int:
        return sum(map(len, self.buckets))

    def add(self, rows: Rows) -> None:
        which = np.random.default_rng([self.seed, 5, self._added]).integers(
            len(self.buckets), size=len(rows[0]))
        self._added += 1
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(self.buckets) + 1))
        for b, bucket in enumerate(self.buckets):
            take = order[bounds[b]:bounds[b + 1]]
            if len(take):
                bucket.add(tuple(part[take] for part in rows))

    def blocks(self, size: int | None = None) -> Iterator[Rows]:
        """Every row once, in the shuffled order, ``size`` rows at a time at most."""
        size = size or BLOCK
        for b, bucket in enumerate(self.buckets):
            if not len(bucket):
                continue
            x, y, row = (ds[()] for ds in bucket.sets)  # one bucket: sized to fit in memory
            order = np.random.default_rng([self.seed, 6, b]).permutation(len(x))
            for start in range(0, len(order), size):
                take = order[start:start + size]
                yield x[take], y[take], row[take]
