"""A seeded test split, stratified by class, decided a block of rows at a time.

Class k's n_k rows (a regression's rows are one class) give

    t_k = min(floor(n_k f + u_k), n_k - 1),   u_k uniform on [0, 1) from the seed,

rows to the test set, so every class is in the test set in its share f, and
in the training set at least once. Which rows: the class's rows, in the order
the file has them, are cut into windows of WINDOW; window w gets

    T(end_w) - T(start_w) test rows,   T(j) = floor((j t_k + U_k) / n_k),

(integers, U_k uniform on 0..n_k-1), which add up to exactly t_k and spread
them evenly over the file (a file sorted by time puts early and late rows in
both sets alike), and within a window a seeded permutation picks which ones.
Memory is one window per class, whatever the file's size; the answer depends
only on the seed and the class of each row, not on how the rows are blocked.
"""

from __future__ import annotations

import numpy as np

WINDOW = 4096


class Split:
    """Which rows go to the test set, given ``counts[k]`` rows of each class k."""

    def __init__(self, counts: np.ndarray, fraction: float, seed: int) -> None:
        self.counts, self.seed = [int(n) for n in counts], seed
        u = [np.random.default_rng([seed, 3, k]) for k in range(len(self.counts))]
        self.offsets = [int(g.integers(n)) if n else 0 for g, n in zip(u, self.counts)]
        self.wanted = [min(int(np.floor(n * fraction + g.random())), max(n - 1, 0))
                       for g, n in zip(u, self.counts)]
        self._seen = [0] * len(self.counts)
        self._window: dict[int, tuple[int, np.ndarray]] = {}

    @property
    def test_rows(self) -> int:
        return sum(self.wanted)

    def take(self, classes: np.ndarray) -> np.ndarray:
        """For the next block of rows, in file order, of these classes: test or not (b,)."""
        test = np.zeros(len(classes), bool)
        order = np.argsort(classes, kind="stable")
        ordered = classes[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        for start, stop in zip(starts, [*starts[1:], len(classes)]):
            k = int(ordered[start])
            first = self._seen[k]
            self._seen[k] += stop - start
            test[order[start:stop]] = self._chosen(k, first, stop - start)
        return test

    def _chosen(self, k: int, first: int, count: int) -> np.ndarray:
        """Class k's occurrences first..first + count - 1: test or not. They are
        consecutive, so each window's share is a slice of its picks."""
        chosen = np.empty(count, bool)
        at, end = first, first + count
        while at < end:
            w, place = divmod(at, WINDOW)
            n = min(WINDOW - place, end - at)
            chosen[at - first:at - first + n] = self._picks(k, w)[place:place + n]
            at += n
        return chosen

    def _picks(self, k: int, w: int) -> np.ndarray:
        """Window w of class k: which of its places are test rows."""
        cached = self._window.get(k)
        if cached is None or cached[0] != w:
            n, t, u = self.counts[k], self.wanted[k], self.offsets[k]
            start, stop = w * WINDOW, min((w + 1) * WINDOW, n)
            tests = (stop * t + u) // n - (start * t + u) // n
            picks = np.random.default_rng([self.seed, 4, k, w]).permutation(stop - start) < tests
            cached = self._window[k] = (w, picks)
        return cached[1]
