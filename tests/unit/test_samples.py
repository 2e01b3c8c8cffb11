"""A rank's rows held as the file stores them and scaled as they are read: bitwise the
rows of the split scaled whole, in a quarter of the memory for uint8 pixels."""

from __future__ import annotations

import numpy as np

from distnn.samples import Scaled, Shard

PIXELS = {"task": "classification", "feature_scaling": "divide_by_255", "scaling": {}}


def test_pixels_stay_bytes_and_read_as_the_whole_split_scaled():
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (50, 12), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    for dtype in (np.dtype("float32"), np.dtype("float64")):
        shard = Shard.scaled(stored, labels, dtype, PIXELS)
        assert isinstance(shard.x, Scaled) and shard.x.stored.dtype == np.uint8
        assert shard.x.stored.nbytes * dtype.itemsize == stored.astype(dtype).nbytes
        whole = stored.astype(dtype) / 255  # by hand: the split scaled at once
        rows = rng.permutation(50)[:7]
        x, y = shard.batch(rows)
        assert x.dtype == dtype and np.array_equal(x, whole[rows])
        assert np.array_equal(y, labels[rows])
        assert np.array_equal(shard.x[10:20], whole[10:20]) and len(shard.x) == 50


def test_features_stored_wider_than_the_network_reads_them_are_scaled_once():
    rng = np.random.default_rng(1)
    stored = rng.normal(3.0, 2.0, (40, 5))  # float64
    info = {"task": "regression", "feature_scaling": "standardize",
            "scaling": {"feature_mean": stored.mean(0), "feature_std": stored.std(0),
                        "target_mean": np.zeros(1), "target_std": np.ones(1)}}
    shard = Shard.scaled(stored, rng.normal(size=(40, 1)), np.dtype("float32"), info)
    assert isinstance(shard.x, np.ndarray) and shard.x.dtype == np.float32  # half the bytes
    by_hand = ((stored - stored.mean(0)) / stored.std(0)).astype(np.float32)
    assert np.array_equal(shard.batch(np.array([3, 1]))[0], by_hand[[3, 1]])
