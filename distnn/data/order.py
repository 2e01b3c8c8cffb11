"""The order in which training samples reach the network, the same for any number of ranks.

The training set's n rows are cut into C canonical partitions, contiguous
blocks (partition c holds rows shard_range(n, c, C)). C is fixed when a run
starts and kept in its checkpoint. Every epoch each partition is shuffled by a
generator of its own, seeded by (seed, epoch, c), and global mini-batch k of m
samples takes the next m_c samples of every partition's shuffle:

    batch_k = union over c of order_c[k m_c : (k+1) m_c],   m_c = |shard_range(m, c, C)|

so the sequence of batches is a function of (seed, epoch) and the partition
alone, never of the number of ranks P. The ranks divide the partitions, not
the samples: rank r of P serves partitions shard_range(C, r, P), and reads only
their rows, one contiguous block of the file. Another P regroups the same
samples of each batch into other ranks' sums, which changes nothing but the
order in which floating-point numbers are added. Hence P <= C, and m >= C so
that every partition gives every batch at least one sample.

With C = P this is the order distnn used before partitions, when each rank
shuffled its own shard by (seed, epoch, rank): a checkpoint written then (which
names no C) resumes with C = the number of ranks that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .shard import shard_range

DEFAULT_PARTITIONS = 64  # at most m of them; at least the ranks a run starts on


def default_partitions(m: int, ranks: int, n: int | None = None) -> int:
    """C for a new run that names none: 64, or fewer for a small batch (or a training set
    of fewer than 64 rows, ``n``), or more for many ranks, so that the run may later go
    on with any number of ranks up to C."""
    return max(ranks, min(DEFAULT_PARTITIONS, m, n or m))


def _size(span: tuple[int, int]) -> int:
    return span[1] - span[0]


@dataclass(frozen=True)
class Partitions:
    """C canonical partitions of n training samples, read m at a time."""
    n: int  # training samples
    m: int  # the global mini-batch
    count: int  # C

    def problem(self, ranks: int) -> str | None:
        """Why ``ranks`` ranks cannot train with these partitions, or None."""
        if self.count < 1:
            return f"--partitions must be at least 1, got {self.count}"
        if self.count > self.m:
            return (f"--partitions {self.count} is more than --batch-size {self.m}: every "
                    "partition gives every batch at least one sample")
        if self.count > self.n:
            return f"--partitions {self.count} is more than the {self.n} training samples"
        if ranks > self.count:
            return (f"{ranks} ranks but the run has {self.count} partitions: each rank serves "
                    f"whole partitions, so at most {self.count} ranks (a new run may set "
                    "--partitions)")
        return None

    def rows(self, c: int) -> tuple[int, int]:
        """Rows [start, stop) of the training set in partition c."""
        return shard_range(self.n, c, self.count)

    def share(self, c: int) -> int:
        """m_c: partition c's samples in every batch."""
        return _size(shard_range(self.m, c, self.count))

    @cached_property
    def steps(self) -> int:
        """Batches per epoch: as many as the partition that runs out first allows."""
        return min(_size(self.rows(c)) // self.share(c) for c in range(self.count))

    def served_by(self, rank: int, ranks: int) -> range:
        """The partitions that rank ``rank`` of ``ranks`` serves."""
        return range(*shard_range(self.count, rank, ranks))

    def rows_of(self, rank: int, ranks: int) -> tuple[int, int]:
        """Rows [start, stop) that rank ``rank`` of ``ranks`` reads: its partitions'."""
        parts = self.served_by(rank, ranks)
        return self.rows(parts.start)[0], self.rows(parts.stop - 1)[1]

    def share_of(self, rank: int, ranks: int) -> tuple[int, int]:
        """(first, count): this rank's samples of every batch, laid out partition by
        partition, are samples first .. first + count - 1 of it."""
        parts = self.served_by(rank, ranks)
        first = shard_range(self.m, parts.start, self.count)[0]
        return first, shard_range(self.m, parts.stop - 1, self.count)[1] - first

    def epoch(self, seed: int, epoch: int, rank: int, ranks: int) -> np.ndarray:
        """This rank's part of every batch of the epoch: (steps, its batch share) row
        numbers, counted from the first row it reads (``rows_of``)."""
        parts = self.served_by(rank, ranks)
        first = self.rows(parts.start)[0]
        steps, blocks = self.steps, []
        for c in parts:
            start, stop = self.rows(c)
            order_c = np.random.default_rng([seed, epoch, c]).permutation(stop - start)
            blocks.append(order_c[:steps * self.share(c)].reshape(steps, -1) + (start - first))
        return np.hstack(blocks)
