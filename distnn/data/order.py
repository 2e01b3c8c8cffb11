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

A partition of more than W rows (``window``, fixed for the run like C) is
shuffled in windows: its rows are cut into blocks of W / WINDOW_BLOCKS rows,
the blocks are shuffled by (seed, epoch, c), each run of WINDOW_BLOCKS blocks
of that order makes a window, and the rows within window w are shuffled by
(seed, epoch, c, w). A rank that streams its rows from the file then needs
only two windows of each partition at a time, read block by block
(``distnn.data.stream``); a rank that holds them takes them in the same
order. The order is still a function of (seed, epoch) and the partition alone.
W = 0, or W at least a partition's rows, is the whole shuffle.

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
WINDOW_BLOCKS = 16  # blocks in a window: each a contiguous read of W / 16 rows


def default_partitions(m: int, ranks: int, n: int | None = None) -> int:
    """C for a new run that names none: 64, or fewer for a small batch (or a training set
    of fewer than 64 rows, ``n``), or more for many ranks, so that the run may later go
    on with any number of ranks up to C."""
    return max(ranks, min(DEFAULT_PARTITIONS, m, n or m))


# Of each partition's rows: a streaming rank holds two windows of each partition it
# serves (128 MiB for 64 partitions on one rank). A constant, so that the order is the same
# on every machine; the smallest that streams at >= 90% of held rows' speed
# (python -m distnn.bench.stream --windows ..., docs/data.md) and no smaller than MNIST's
# partitions (938 rows of 785 bytes: shuffled whole, as before windows).
DEFAULT_WINDOW_BYTES = 1 << 20


def default_window(row_bytes: int, nbytes: int = DEFAULT_WINDOW_BYTES) -> int:
    """W for a new run that names none: 1 MiB of rows (a whole MNIST partition, 938
    rows of 785 bytes, is smaller: shuffled whole), in whole blocks; or ``nbytes`` of rows."""
    return max(WINDOW_BLOCKS, nbytes // row_bytes // WINDOW_BLOCKS * WINDOW_BLOCKS)


def _size(span: tuple[int, int]) -> int:
    return span[1] - span[0]


@dataclass(frozen=True)
class Partitions:
    """C canonical partitions of n training samples, read m at a time."""
    n: int  # training samples
    m: int  # the global mini-batch
    count: int  # C
    window: int = 0  # W, rows of a partition shuffled together; 0: the whole partition
    shuffle: bool = True  # False: each partition's rows in the file's order, every epoch

    def problem(self, ranks: int) -> str | None:
        """Why ``ranks`` ranks cannot train with these partitions, or None."""
        if self.count < 1:
            return f"--partitions must be at least 1, got {self.count}"
        if self.count > self.m:
            return (f"--partitions {self.count} is more than --batch-size {self.m}: every "
                    "partition gives every batch at least one sample")
        if self.count > self.n:
            return f"--partitions {self.count} is more than the {self.n} training samples"
        if self.window and self.window < WINDOW_BLOCKS:
            return (f"--window {self.window} is less than {WINDOW_BLOCKS} rows: a window is "
                    f"{WINDOW_BLOCKS} blocks of at least one row")
        most = max(map(self.share, range(self.count)))
        if not self.whole and WINDOW_BLOCKS * self.block < most:
            return (f"--window {self.window} holds fewer rows than a partition gives each "
                    f"batch ({most}): a step would read more than two windows")
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

    @property
    def whole(self) -> bool:
        """Whether every partition is shuffled whole: no window is smaller than one."""
        return not self.window or self.window >= -(-self.n // self.count)

    @property
    def block(self) -> int:
        """Rows of a block (the partition's last may have fewer): a window is
        WINDOW_BLOCKS of them, or a partition shuffled whole is one."""
        return -(-self.n // self.count) if self.whole else self.window // WINDOW_BLOCKS

    def windows(self, seed: int, epoch: int, c: int) -> list[np.ndarray]:
        """Partition c's windows this epoch, in order: each its block numbers (block b
        holds rows [b B, (b + 1) B) of the partition, B = ``block``)."""
        if self.whole:
            return [np.zeros(1, np.int64)]
        blocks = np.random.default_rng([seed, epoch, c]).permutation(
            -(-_size(self.rows(c)) // self.block))
        return [blocks[i:i + WINDOW_BLOCKS] for i in range(0, len(blocks), WINDOW_BLOCKS)]

    def order(self, seed: int, epoch: int, c: int) -> np.ndarray:
        """Partition c's rows in this epoch's order, counted from its first row."""
        rows = _size(self.rows(c))
        if not self.shuffle:
            return np.arange(rows)
        if self.whole:
            return np.random.default_rng([seed, epoch, c]).permutation(rows)
        out = []
        for w, blocks in enumerate(self.windows(seed, epoch, c)):
            held = (blocks[:, None] * self.block + np.arange(self.block)).ravel()
            held = held[held < rows]  # the partition's last block may be short
            out.append(np.random.default_rng([seed, epoch, c, w]).permutation(held))
        return np.concatenate(out)

    def epoch(self, seed: int, epoch: int, rank: int, ranks: int) -> np.ndarray:
        """This rank's part of every batch of the epoch: (steps, its batch share) row
        numbers, counted from the first row it reads (``rows_of``)."""
        parts = self.served_by(rank, ranks)
        first = self.rows(parts.start)[0]
        steps, blocks = self.steps, []
        for c in parts:
            start = self.rows(c)[0]
            order_c = self.order(seed, epoch, c)
            blocks.append(order_c[:steps * self.share(c)].reshape(steps, -1) + (start - first))
        return np.hstack(blocks)
