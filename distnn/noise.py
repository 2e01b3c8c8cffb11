"""The random draws of a training step, the same for any number of ranks.

Dropout masks and distortions are drawn afresh every step. The draws of step
``step`` of epoch ``epoch`` all come from one stream, seeded by (seed, epoch,
step), and are laid out sample by sample over the whole global batch of m: a
draw of k numbers per sample takes the next m k numbers of the stream, sample
i's being numbers i k .. (i+1) k - 1 of them. A rank that serves samples
[first, first + count) of the batch (``distnn.data.order``) skips ahead to its
own and draws only those, so every sample gets the same numbers whichever rank
serves it, and each rank pays for its own share of the draws only. The skip is
PCG64's ``advance``, cheap at any distance. It counts 64-bit words, of which a
float64 takes one and a float32 half: a sample's block of float32 is rounded
up to an even count (one left unused when k is odd), so that every sample
begins on a whole word.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Noise"]


class Noise:
    """Step ``step``'s draws for samples [first, first + count) of a batch of m."""

    def __init__(self, seed: int, epoch: int, step: int, m: int, first: int = 0,
                 count: int | None = None) -> None:
        count = m - first if count is None else count
        if not 0 <= first <= first + count <= m:
            raise ValueError(f"samples {first}..{first + count - 1} are not in a batch of {m}")
        # The last word keeps the stream apart from the order's, seeded by (seed,
        # epoch, partition): numpy's seeding reads [a, b, c, 0] as [a, b, c].
        self._bits = np.random.PCG64([seed, epoch, step, 1])
        self._draw = np.random.Generator(self._bits)
        self.m, self.first, self.count = m, first, count
        self._used = 0  # words of the stream taken or skipped so far
        self._block = 0  # where the next draw's block for the whole batch begins

    def uniform(self, per_sample: int, low: float = 0.0, high: float = 1.0,
                dtype: np.dtype | type = np.float32) -> np.ndarray:
        """(count, per_sample) of ``dtype`` (float32 or float64), uniform in [low, high]
        (high itself only by rounding): this rank's samples' part of the next draw for
        the whole batch."""
        dtype = np.dtype(dtype)
        per_word = 8 // dtype.itemsize  # numbers to a 64-bit word: 2 float32, 1 float64
        words = -(-per_sample // per_word)  # per sample, rounded up to whole words
        mine = self._block + self.first * words
        self._bits.advance(mine - self._used)  # also drops a half word kept from before
        values = self._draw.random((self.count, words * per_word), dtype=dtype)
        values = values[:, :per_sample]
        self._used = mine + self.count * words
        self._block += self.m * words
        if (low, high) != (0.0, 1.0):
            values = dtype.type(low) + dtype.type(high - low) * values
        return values
