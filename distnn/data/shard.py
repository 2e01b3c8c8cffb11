"""Give each of P ranks its own contiguous block of a split.

Rank r of P gets rows [start, stop) with the first n % P ranks holding one
extra row, so blocks differ in size by at most one and cover the split exactly
once. Because prepare stores the training set in a class-balanced shuffled
order, every block is a fair sample of all classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..memory import shortfall
from .errors import DataError
from .store import NAMES, check_split, open_checked


def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [start, stop) of rank `rank` among `size` ranks sharing `n` rows.

    start = rank * (n // size) + min(rank, n % size); stop adds this rank's count.
    Pure, so every rank computes every other rank's block without talking.
    """
    if size < 1 or not 0 <= rank < size or n < 0:
        raise ValueError(f"need n >= 0, size >= 1 and 0 <= rank < size; got {n=}, {rank=}, {size=}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def read_shard(path: str | Path, split: str, rank: int = 0,
               size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read rank `rank` of `size`'s block of `split` from the data file at `path`.

    Returns features (n_rows, n_features) as stored (images: uint8) and targets:
    class numbers (n_rows,), or real values (n_rows, n_targets).
    """
    return read_rows(path, split, lambda n: shard_range(n, rank, size), f"rank {rank}'s")


def read_rows(path: str | Path, split: str, span, whose: str = "the") -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Rows [start, stop) = span(n) of `split` (n rows) from the data file at `path`.

    The file is opened read-only and validated first; only those rows are read,
    as one hyperslab per dataset. `whose` names the rows in an error.
    """
    check_split(split)
    with open_checked(path) as f:
        images, labels = (f[split][name] for name in NAMES[int(f.attrs["schema_version"])])
        start, stop = span(len(labels))
        if not 0 <= start <= stop <= len(labels):
            raise DataError(f"{path}: /{split} has {len(labels)} rows, not rows "
                            f"{start}..{stop - 1}")
        row = (images.shape[1] * images.dtype.itemsize
               + int(np.prod(labels.shape[1:])) * labels.dtype.itemsize)  # bytes a row
        short = shortfall((stop - start) * row)
        if short:
            raise DataError(f"{path}: {whose} {stop - start} rows of /{split} need {short}")
        try:
            return images[start:stop], labels[start:stop]
        except OSError as err:  # HDF5's word for a damaged file
            raise DataError(f"{path}: cannot read /{split} rows {start}..{stop - 1} "
                            f"({' '.join(str(err).split())})") from None
