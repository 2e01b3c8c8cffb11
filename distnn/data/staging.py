"""Rows on their way into a table, kept on disk so that memory holds a block at a time.

``Staged`` appends blocks of rows (features, targets, and each row's number in
the source) to a file of its own, as fixed-size records, and reads them back
in order. ``Shuffled`` is the external shuffle that lets a training set of any
size be stored permuted: each row goes to one of B buckets at random, and each
bucket, sized to fit in memory, is read back in a random order of its own.
Bucket sizes are then multinomial and the orders within them uniform, which
makes the whole order a uniform random permutation (the two-pass shuffle of
Rao, 1961), drawn from the seed alone.

The files are plain records (numpy's ``tofile``), not HDF5: they live only
while a table is made, and appending to them costs a write, no more. Rows stay
records from the staging file to the buckets (``records``, ``append``): each
pass gathers a row once, rather than each of its fields and then the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # features (b, n), targets, source row (b,)
BLOCK = 1 << 16  # rows read back at a time; the shuffle draws the buckets of each such
# block's training rows at once, so another BLOCK would store another order


def record(n_features: int, target_shape: tuple[int, ...],
           target_dtype: np.dtype | type, feature_dtype: np.dtype | type = np.float64
           ) -> np.dtype:
    """One staged row: its features (float64, or uint8 for images kept as bytes, an
    eighth of the scratch), its targets, its row in the source."""
    return np.dtype([("x", feature_dtype, (n_features,)), ("y", target_dtype, target_shape),
                     ("row", np.int64)])


class Staged:
    """Rows appended to, and read back from, the file ``path``."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype, self._rows = path, dtype, 0
        path.touch()

    def __len__(self) -> int:
        return self._rows

    def add(self, rows: Rows) -> None:
        records = np.empty(len(rows[0]), self.dtype)
        records["x"], records["y"], records["row"] = rows
        self.append(records)

    def append(self, records: np.ndarray) -> None:
        """Rows already records of this file's dtype."""
        with open(self.path, "ab") as f:
            records.tofile(f)
        self._rows += len(records)

    def records(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The rows in order, as records, ``size`` (BLOCK) at a time."""
        size = size or BLOCK
        with open(self.path, "rb") as f:
            while len(records := np.fromfile(f, self.dtype, count=size)):
                yield records

    def blocks(self, size: int | None = None) -> Iterator[Rows]:
        for records in self.records(size):
            yield records["x"], records["y"], records["row"]

    def all(self) -> np.ndarray:
        """Every row's record at once: for a bucket, which is sized to fit in memory."""
        return np.fromfile(self.path, self.dtype)


class Shuffled:
    """An external shuffle through ``buckets`` files in ``directory``."""

    def __init__(self, directory: Path, buckets: int, seed: int, dtype: np.dtype) -> None:
        self.seed, self._added = seed, 0
        self.buckets = [Staged(directory / f"bucket-{b}", dtype) for b in range(buckets)]

    def __len__(self) -> int:
        return sum(map(len, self.buckets))

    def add(self, records: np.ndarray, take: np.ndarray | None = None) -> None:
        """Records (the rows ``take`` of them, in that order) each to a bucket drawn from
        the seed and the number of this call: the same rows in the same calls, the same
        buckets."""
        rows = len(records) if take is None else len(take)
        which = np.random.default_rng([self.seed, 5, self._added]).integers(
            len(self.buckets), size=rows)
        self._added += 1
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(self.buckets) + 1))
        # By bucket, in order. take, not [ ]: numpy's fancy indexing of records is five
        # times slower.
        ordered = records.take(order if take is None else take[order])
        for b, bucket in enumerate(self.buckets):
            if bounds[b] < bounds[b + 1]:
                bucket.append(ordered[bounds[b]:bounds[b + 1]])

    def blocks(self, size: int | None = None) -> Iterator[Rows]:
        """Every row once, in the shuffled order, ``size`` rows at a time at most."""
        size = size or BLOCK
        for b, bucket in enumerate(self.buckets):
            if not len(bucket):
                continue
            records = bucket.all()
            order = np.random.default_rng([self.seed, 6, b]).permutation(len(records))
            for start in range(0, len(order), size):
                chosen = records.take(order[start:start + size])
                yield tuple(np.ascontiguousarray(chosen[f]) for f in ("x", "y", "row"))
