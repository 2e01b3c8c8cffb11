"""Friedman's first regression problem (Friedman 1991): a benchmark whose floor is known.

    y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + e,   e ~ N(0, sigma^2)

with ten features uniform on [0, 1], of which x6..x10 are noise. No model can
predict e, so no test RMSE is below sigma: the distance of a model's RMSE to
sigma is its own error. Rows are made a block at a time, each block from
generators seeded by (seed, split, block), so any number of rows takes the
memory of one block, and a smaller table's rows are the first rows of a
larger one with the same seed. ``write_csv`` writes the same rows as a CSV file
(a header ``x1,...,x10,y``, then the training rows and the test rows), for
``python -m distnn.data import`` and its speed (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..writes import writing
from .table import write_table

N_FEATURES = 10
BLOCK = 1 << 16  # rows a block


def friedman1(x: np.ndarray) -> np.ndarray:
    """The noiseless target of each row of x (n, >= 5): shape (n,)."""
    return (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
            + 10 * x[:, 3] + 5 * x[:, 4])


def blocks(rows: int, sigma: float, seed: int, split: int) -> Iterator[tuple[np.ndarray,
                                                                               np.ndarray]]:
    """(x (b, 10), y (b, 1)) blocks of ``rows`` rows in all."""
    for number, start in enumerate(range(0, rows, BLOCK)):
        n = min(BLOCK, rows - start)
        # Features and noise from streams of their own: the first rows of a table
        # are those of any larger one made with the same seed.
        x = np.random.default_rng([seed, split, number, 0]).random((n, N_FEATURES))
        e = np.random.default_rng([seed, split, number, 1]).standard_normal(n)
        yield x, (friedman1(x) + sigma * e)[:, None]


def make_friedman(out: str | Path, train_rows: int, test_rows: int, sigma: float = 1.0,
                  seed: int = 0) -> Path:
    """Write a Friedman #1 table (regression, one target) to ``out``."""
    return write_table(out, {"train": blocks(train_rows, sigma, seed, 0),
                             "test": blocks(test_rows, sigma, seed, 1)},
                       task="regression", n_features=N_FEATURES, n_outputs=1,
                       source=f"friedman1(sigma={sigma:g}, seed={seed})", seed=seed)


def write_csv(out: str | Path, train_rows: int, test_rows: int, sigma: float = 1.0,
              seed: int = 0) -> Path:
    """The rows of ``make_friedman`` as CSV: the training rows, then the test rows."""
    out = Path(out)
    with writing(out), atomic_path(out) as tmp, open(tmp, "w") as f:
        f.write(",".join([f"x{j + 1}" for j in range(N_FEATURES)] + ["y"]) + "\n")
        for split, rows in enumerate((train_rows, test_rows)):
            for x, y in blocks(rows, sigma, seed, split):
                np.savetxt(f, np.hstack([x, y]), delimiter=",", fmt="%.17g")
    return out
