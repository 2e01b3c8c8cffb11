"""Shared test fixtures."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

# Time limits, failures reported by rank as they happen, and the ranks meeting
# after each test: no run of this suite can hang (see tests/support/watchdog.py).
pytest_plugins = ["tests.support.watchdog"]

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array, written from the format spec (not distnn's code)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def make_idx_dir(tmp_path: Path):
    """Factory: write a small IDX data set, train sorted by class; return (dir, arrays)."""

    def make(n_train: int = 600, n_test: int = 100, n_classes: int = 10,
             shape: tuple[int, int] = (4, 3), gz: bool = False, name: str = "idx"):
        rng = np.random.default_rng(1)
        arrays = {
            # Sorted by class: the worst case for contiguous sharding.
            ("train", "labels"): np.sort(np.arange(n_train) % n_classes).astype(np.uint8),
            ("test", "labels"): (np.arange(n_test) % n_classes).astype(np.uint8),
            ("train", "images"): rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            ("test", "images"): rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        }
        directory = tmp_path / name
        directory.mkdir()
        for key, array in arrays.items():
            data = idx_bytes(array)
            if gz:
                (directory / (IDX_NAMES[key] + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / IDX_NAMES[key]).write_bytes(data)
        return directory, arrays

    return make


@pytest.fixture(params=["numpy", "pyarrow"])
def csv_engine(request, monkeypatch):
    """Each CSV test twice: numpy's parser, and Arrow's where the arrow extra is in."""
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow.csv", reason="pyarrow is not installed (arrow extra)")
    monkeypatch.setenv("DISTNN_CSV", request.param)
    return request.param
