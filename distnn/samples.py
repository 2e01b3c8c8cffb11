"""This rank's samples: the rows of a split it serves, as the network reads them.

The trainer holds, on each rank, the rows of the training set's partitions that
it serves (``distnn.data.order``) and its block of the test set. It holds them
as the file stores them (MNIST's pixels as uint8 bytes, a quarter of their
float32 size) and scales the rows a step or an evaluation reads, as the data
file says (``distnn.data.table``): pixels to [0, 1], other features and
real-valued targets standardized, in the network's dtype. Scaling is
elementwise, so a batch scaled alone is bitwise the rows of the split scaled
whole. A step asks for the rows of its part of the batch by number
(``batch``), counted from the first row this rank reads.

Training rows that exceed the rank's memory budget are not held but streamed
from the file (``distnn.data.stream``), which answers ``batch`` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from distnn.comm import Comm
from distnn.data import Partitions, read_rows, read_shard
from distnn.data.stream import Stream, held_bytes


def scale_features(features: np.ndarray, dtype: np.dtype, feature_scaling: str,
                   scaling: dict[str, np.ndarray]) -> np.ndarray:
    """Features as stored, as the network reads them (a data file's ``feature_scaling``):
    pixels divided by 255, or standardized with the training split's mean and deviation
    (in float64, then ``dtype``). The trainer and ``distnn.predict`` both read rows so."""
    if feature_scaling == "divide_by_255":
        return features.astype(dtype) / dtype.type(255)
    if feature_scaling == "standardize":
        return ((features - scaling["feature_mean"]) / scaling["feature_std"]).astype(dtype)
    return features.astype(dtype)


class Scaled:
    """Rows held as stored, read scaled: ``x[i:j]`` and ``x.take(rows, axis=0)`` give
    them as the network reads them, as an array of scaled rows would."""

    def __init__(self, stored: np.ndarray, scale: Callable[[np.ndarray], np.ndarray]) -> None:
        self.stored, self.scale = stored, scale

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.scale(self.stored[index])

    def take(self, rows: np.ndarray, axis: int = 0) -> np.ndarray:
        return self.scale(self.stored.take(rows, axis=axis))


def readers(dtype: np.dtype, info: dict[str, Any]
            ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """How stored rows are read, as ``info`` (the file's ``describe``) says: features
    (``scale_features``), and targets: class numbers, or real values standardized with
    the training split's mean and deviation (in float64, then ``dtype``)."""
    scaling = info.get("scaling", {})
    x_of = partial(scale_features, dtype=dtype, feature_scaling=info["feature_scaling"],
                   scaling=scaling)
    if info["task"] == "classification":
        return x_of, partial(np.asarray, dtype=np.intp)
    return x_of, partial(_standardized, mean=scaling.get("target_mean"),
                         std=scaling.get("target_std"), dtype=dtype)


def _standardized(targets: np.ndarray, mean: np.ndarray, std: np.ndarray,
                  dtype: np.dtype) -> np.ndarray:
    return ((targets.astype(np.float64) - mean) / std).astype(dtype)


def training_rows(path: str, comm: Comm, dtype: np.dtype, info: dict[str, Any],
                  order: Partitions, seed: int, budget: int) -> Shard | Stream:
    """This rank's training rows: held in memory when they fit ``budget`` bytes as
    stored, else streamed from the file a window at a time (``distnn.data.stream``)."""
    if held_bytes(order, comm.rank, comm.size, info["row_bytes"]) <= budget:
        return Shard.load(path, "train", comm, dtype, info, order)
    return Stream(path, order, comm.rank, comm.size, seed, *readers(dtype, info))


@dataclass
class Shard:
    """This rank's rows of one split, read as the network reads them."""
    x: np.ndarray | Scaled  # (n_r, n_features): images / 255, or standardized features
    y: np.ndarray  # (n_r,) class labels, or (n_r, n_targets) standardized targets
    units: np.ndarray | None = None  # regression: the targets in their own units, float64
    w: np.ndarray | None = None  # (n_r,) the samples' weights, where they have them

    @classmethod
    def load(cls, path: str, split: str, comm: Comm, dtype: np.dtype, info: dict[str, Any],
             order: Partitions | None = None) -> Shard:
        """The rows of ``order``'s partitions that this rank serves, or without an
        order (the test set) its block of the split; scaled as ``info`` (the file's
        ``describe``, with its ``scaling``) says."""
        if order is None:
            features, targets = read_shard(path, split, comm.rank, comm.size)
        else:
            features, targets = read_rows(path, split,
                                          lambda n: order.rows_of(comm.rank, comm.size),
                                          f"rank {comm.rank}'s")
        return cls.scaled(features, targets, dtype, info)

    @classmethod
    def scaled(cls, features: np.ndarray, targets: np.ndarray, dtype: np.dtype,
               info: dict[str, Any]) -> Shard:
        """Rows as stored, to be read scaled (``readers``)."""
        x_of, y_of = readers(dtype, info)
        # Held as stored where that is smaller than scaled (uint8 pixels), else scaled once
        x = Scaled(features, x_of) if features.itemsize < dtype.itemsize else x_of(features)
        units = None if info["task"] == "classification" else targets.astype(np.float64)
        return cls(x, y_of(targets), units)

    def begin(self, epoch: int, step: int) -> None:
        """An epoch's steps are next (``distnn.data.stream`` reads ahead; memory need not)."""

    def close(self) -> None:
        pass

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples ``rows``: (len(rows), n_features) and their targets."""
        return self.x.take(rows, axis=0), self.y[rows]  # take(): a faster x[rows]

    def weights(self, rows: np.ndarray) -> np.ndarray | None:
        """The weights of the samples ``rows``, or None where every sample counts once."""
        return None if self.w is None else self.w[rows]
