"""Sharding: exact cover, one-row balance, reading only the own block, class balance."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

from distnn.data import DataError, prepare, read_shard, shard_range
from distnn.data.prepare import balanced_permutation


@pytest.mark.parametrize("n", [*range(40), 1000, 59999, 60000, 60001])
def test_shard_range_covers_exactly_once(n):
    for size in range(1, 18):
        ranges = [shard_range(n, rank, size) for rank in range(size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        for (_, stop), (start, _) in itertools.pairwise(ranges):
            assert stop == start  # contiguous, no gap and no overlap
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
        # The first n % size ranks hold the extra row.
        assert sizes == [n // size + (rank < n % size) for rank in range(size)]


@pytest.mark.parametrize("args", [(10, 0, 0), (10, 2, 2), (10, -1, 2), (-1, 0, 1)])
def test_shard_range_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        shard_range(*args)


@pytest.fixture
def data_file(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir(n_train=1003, n_test=101)
    return prepare(tmp_path / "d.h5", idx_dir=directory)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_shards_reassemble_the_split(data_file, split, size):
    with h5py.File(data_file, "r") as f:
        images, labels = f[split]["images"][:], f[split]["labels"][:]
    shards = [read_shard(data_file, split, rank, size) for rank in range(size)]
    for x, y in shards:
        assert x.dtype == np.uint8 and y.dtype == np.uint8 and x.shape == (len(y), 12)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in shards]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in shards]), labels)


def test_reads_only_its_own_rows(data_file, monkeypatch):
    """Record every selection made on an h5py dataset: one slice, this rank's rows."""
    seen = []
    real = h5py.Dataset.__getitem__

    def spy(self, key, *args, **kwargs):
        seen.append((self.name, key))
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    _, y = read_shard(data_file, "train", 2, 4)
    start, stop = shard_range(1003, 2, 4)
    assert (start, stop) == (502, 753) and len(y) == 251  # ranks 0-2 hold 251 rows
    assert sorted(seen) == [("/train/images", slice(502, 753)), ("/train/labels", slice(502, 753))]


def test_unknown_split(data_file):
    with pytest.raises(DataError, match="unknown split 'valid'; choose one of train, test"):
        read_shard(data_file, "valid")


def test_balanced_permutation_bound():
    """Every contiguous block holds each class in proportion, within 2 + 2 C n_c / N."""
    rng = np.random.default_rng(3)
    sizes = np.array([500, 800, 300, 650, 120, 900, 410, 700, 555, 333])  # unequal classes
    labels = np.repeat(np.arange(10), sizes).astype(np.uint8)  # sorted: the worst case
    order = balanced_permutation(labels, seed=11)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(labels)))
    shuffled = labels[order]
    n = len(labels)
    bound = 2 + 2 * 10 * sizes / n + 1e-9
    for block in (10, 37, 100, 1000, 2500):
        for start in rng.integers(0, n - block, 200):
            counts = np.bincount(shuffled[start:start + block], minlength=10)
            assert np.all(np.abs(counts - block * sizes / n) <= bound)
    # Seeded: the same seed gives the same order, another seed another.
    np.testing.assert_array_equal(order, balanced_permutation(labels, seed=11))
    assert not np.array_equal(order, balanced_permutation(labels, seed=12))


def test_stored_train_blocks_are_class_balanced(make_idx_dir, tmp_path):
    # Source sorted by class; after prepare every rank's shard sees every class.
    directory, _ = make_idx_dir(n_train=6000, n_test=100)
    out = prepare(tmp_path / "d.h5", idx_dir=directory)
    for size in (4, 60):
        for rank in range(size):
            _, y = read_shard(out, "train", rank, size)
            expected = len(y) / 10
            # The proven bound for 10 equal classes is +-4 (see balanced_permutation).
            assert np.all(np.abs(np.bincount(y, minlength=10) - expected) <= 4)
