"""Writing a table (schema 2): features and targets a block of rows at a time, and their scaling.

A table holds what a lab brings: features of any numeric dtype, and targets that
are class numbers (``task`` "classification") or real values, one or several per
row (``task`` "regression"). The trainer reads features scaled so that every
input has a comparable range: uint8 images divided by 255, as MNIST's are
(``feature_scaling`` "divide_by_255"), anything else standardized with the
training split's mean and standard deviation ("standardize"), which are
computed here in float64, in two passes over the rows written (the mean, then
the mean squared deviation from it), and stored in ``/scaling``. A feature
that is constant in the training split gets a standard deviation of 1: it then
reads as 0 everywhere, and carries no weight. Regression targets are
standardized the same way for training, and every figure is reported back in
their own units.

Images that are not uint8 (``image_shape`` (H, W) or (C, H, W), rows of C H W
pixels in C order) are standardized per channel, as torchvision's ``Normalize``
does: channel c's mean and deviation are over all its pixels of all training
images,

    mu_c = sum_i sum_p x_icp / (n P),   sigma_c^2 = sum_i sum_p (x_icp - mu_c)^2 / (n P)

(P = H W pixels), and are stored for each pixel of the channel in the same
``/scaling`` arrays, so the trainer reads them as any table's. One scale for
every position is what a convolution's filter, which slides over them all,
needs; a scale of each pixel's own would blow up a border that is nearly always
dark into noise.

Memory is bounded by a block of rows: the blocks come from an iterator, the
datasets grow as they arrive, and the statistics are read back a block at a
time. The file is written atomically (``distnn.atomic``) and checked against
the schema before it replaces anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from ..atomic import atomic_path
from ..writes import new_hdf5, writing
from .errors import DataError
from .store import CHUNK_ROWS, MAX_CLASSES, SPLITS, TABLE_VERSION, TASKS, validate

# (features (b, n), targets (b,) or (b, k)), and optionally each row's number in the source (b,)
Blocks = Iterable[tuple[np.ndarray, ...]]
STAT_BLOCK = 1 << 16  # rows read back at a time for the statistics
# A chunk holds whole rows, at least CHUNK_ROWS, and as many as an image chunk has
# bytes (196 KiB, within h5py's 1 MiB chunk cache): a table's rows are narrow, and
# chunks of 256 of them (2 KiB of one target) made HDF5's bookkeeping cost more than
# the bytes (0.50 s for 4.5 million rows of 10 features and a target, 0.19 with these).
CHUNK_BYTES = CHUNK_ROWS * 784


def write_table(path: str | Path, splits: dict[str, Blocks], *, task: str, n_features: int,
                n_outputs: int, source: str, seed: int = 0, source_sha256: str = "",
                feature_dtype: np.dtype | str = np.float64,
                image_shape: tuple[int, ...] | None = None,
                names: dict[str, list[str]] | None = None) -> Path:
    """Write the blocks of each split ("train", "test") to ``path`` as a table.

    Blocks that carry a third array, each row's number in the source, store it
    as ``/SPLIT/source_row``. ``names`` ("classes", "features", "targets": lists
    of strings) are stored as ``/names/...``, for people and predictions.

    ``n_outputs`` is the number of classes (classification) or of targets per row
    (regression). The training split must already be in the order it is to be
    trained in (a fair sample in every block: ``distnn.data.order``). Raises
    DataError on bad blocks, WriteFailed (``distnn.writes``) if the file cannot be
    written.
    """
    if task not in TASKS:
        raise DataError(f"task must be one of {TASKS}, got {task!r}")
    feature_dtype = np.dtype(feature_dtype)
    images = feature_dtype == np.uint8 and image_shape is not None
    path = Path(path)
    with writing(path), atomic_path(path) as tmp:
        with new_hdf5(tmp) as f:
            f.attrs.update({"schema_version": TABLE_VERSION, "source": source,
                            "source_sha256": source_sha256, "task": task,
                            "n_features": n_features, "shuffle_seed": seed,
                            "feature_scaling": "divide_by_255" if images else "standardize"})
            f.attrs["n_classes" if task == "classification" else "n_targets"] = n_outputs
            if image_shape is not None:
                f.attrs["image_shape"] = np.asarray(image_shape, np.int64)
            for split in SPLITS:
                _write_split(f.create_group(split), splits[split], task, n_features,
                             n_outputs, feature_dtype)
            for kind, values in (names or {}).items():
                f.create_dataset(f"names/{kind}", data=np.array(values, dtype=object),
                                 dtype=h5py.string_dtype())
            if not images:
                _store_stats(f, "feature", f["train/features"],
                             _channels(image_shape) if image_shape is not None else None)
            if task == "regression":
                _store_stats(f, "target", f["train/targets"])
        validate(tmp)
    return path


def _write_split(group: h5py.Group, blocks: Blocks, task: str, n_features: int,
                 n_outputs: int, feature_dtype: np.dtype) -> None:
    regression = task == "regression"
    target_dtype = np.float64 if regression else (np.uint8 if n_outputs <= 256 else np.uint16)
    target_shape = (n_outputs,) if regression else ()
    features = group.create_dataset("features", (0, n_features), feature_dtype,
                                    maxshape=(None, n_features),
                                    chunks=(_chunk_rows(feature_dtype, n_features), n_features))
    targets = group.create_dataset("targets", (0, *target_shape), target_dtype,
                                   maxshape=(None, *target_shape),
                                   chunks=(_chunk_rows(np.dtype(target_dtype),
                                                       int(np.prod(target_shape))),
                                           *target_shape))
    for x, y, *source_row in blocks:
        n = len(features)
        features.resize(n + len(x), axis=0)
        targets.resize(n + len(x), axis=0)
        features[n:] = x
        targets[n:] = y
        if source_row:
            if "source_row" not in group:
                group.create_dataset("source_row", (0,), np.int64, maxshape=(None,),
                                     chunks=(1 << 14,))
            group["source_row"].resize(n + len(x), axis=0)
            group["source_row"][n:] = source_row[0]
    if regression:
        return
    if len(targets) and int(_blockwise_max(targets)) >= min(n_outputs, MAX_CLASSES):
        raise DataError(f"{group.name}: a class number is not below the {n_outputs} classes")


def _chunk_rows(dtype: np.dtype, width: int) -> int:
    return max(CHUNK_ROWS, CHUNK_BYTES // max(1, dtype.itemsize * width))


def _blockwise_max(ds: h5py.Dataset) -> int:
    return max(int(ds[i:i + STAT_BLOCK].max()) for i in range(0, len(ds), STAT_BLOCK))


def _channels(image_shape: tuple[int, ...]) -> int:
    """C of (C, H, W); 1 of (H, W)."""
    return int(image_shape[0]) if len(image_shape) == 3 else 1


def _store_stats(f: h5py.File, kind: str, ds: h5py.Dataset, channels: int | None = None) -> None:
    """/scaling/KIND_mean and KIND_std of a dataset's columns, in float64, two passes; with
    ``channels``, of each channel's pixels together (the columns being that many blocks of
    pixels), repeated for every pixel of the channel."""
    n, width = len(ds), ds.shape[1]
    total = np.zeros(width)
    for i in range(0, n, STAT_BLOCK):
        total += ds[i:i + STAT_BLOCK].astype(np.float64, copy=False).sum(axis=0)
    mean = _pooled(total, channels) / n
    squares = np.zeros(width)
    for i in range(0, n, STAT_BLOCK):
        squares += np.square(ds[i:i + STAT_BLOCK].astype(np.float64, copy=False) - mean).sum(axis=0)
    std = np.sqrt(_pooled(squares, channels) / n)
    std[std == 0] = 1.0  # a constant column reads as 0: no information, and no division by 0
    f.create_dataset(f"scaling/{kind}_mean", data=mean)
    f.create_dataset(f"scaling/{kind}_std", data=std)


def _pooled(sums: np.ndarray, channels: int | None) -> np.ndarray:
    """Column sums (width,) as they are, or (channels given) the mean of each channel's
    P columns, repeated P times: sum over its pixels and rows / P, so that divided by n
    it is the channel's mean over n P values."""
    if channels is None:
        return sums
    per_channel = sums.reshape(channels, -1)  # (C, P)
    return np.repeat(per_channel.mean(axis=1), per_channel.shape[1])
