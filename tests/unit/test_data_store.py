"""Atomic writes and schema validation of the HDF5 data file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from distnn.writes import WriteFailed
from distnn import atomic
from distnn.data import DataError, describe, prepare, read_shard, store


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_file(make_idx_dir, tmp_path, monkeypatch, exc):
    directory, _ = make_idx_dir()
    real = store._write_split

    def fail_on_test(f, split, arrays):
        real(f, split, arrays)  # train is fully written when the crash comes
        if split == "test":
            raise exc

    monkeypatch.setattr(store, "_write_split", fail_on_test)
    out = tmp_path / "out" / "d.h5"
    with pytest.raises(type(exc)):
        prepare(out, idx_dir=directory)
    assert not out.exists()
    assert leftovers(out.parent) == []


def test_failed_overwrite_keeps_good_file(make_idx_dir, tmp_path, monkeypatch):
    directory, _ = make_idx_dir()
    out = prepare(tmp_path / "d.h5", idx_dir=directory)
    before = sha(out)

    def boom(*args, **kwargs):
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(store, "_write_split", boom)
    with pytest.raises(RuntimeError):
        prepare(out, idx_dir=directory, seed=5)
    monkeypatch.undo()
    assert sha(out) == before and describe(out)["shuffle_seed"] == 0
    assert leftovers(tmp_path) == []

    # Bad input never reaches the target either.
    (directory / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09")
    with pytest.raises(DataError, match="truncated"):
        prepare(out, idx_dir=directory)
    assert sha(out) == before and leftovers(tmp_path) == []


def test_failed_rename_is_one_line_and_cleans_up(make_idx_dir, tmp_path, monkeypatch):
    directory, _ = make_idx_dir()

    def no_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", no_replace)
    with pytest.raises(WriteFailed, match="cannot write .*d.h5: permission denied"):
        prepare(tmp_path / "d.h5", idx_dir=directory)
    assert list(tmp_path.glob("d.h5*")) == []


def test_output_is_directory(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir()
    with pytest.raises(DataError, match="output path is a directory"):
        prepare(tmp_path, idx_dir=directory)


def test_layout_chunks_and_attrs(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir(n_train=1000, shape=(28, 28))
    out = prepare(tmp_path / "d.h5", idx_dir=directory, seed=7)
    with h5py.File(out, "r") as f:
        for split in ("train", "test"):
            images = f[split]["images"]
            # Row-block chunks with whole rows and no filter: a block of rows
            # is read from the chunks that hold it and nothing else.
            assert images.chunks[1] == 784 and images.chunks[0] <= 1024
            assert images.compression is None and f[split]["labels"].chunks[0] <= 1024
        assert f.attrs["schema_version"] == 1 and f.attrs["shuffle_seed"] == 7
        assert list(f.attrs["image_shape"]) == [28, 28] and f.attrs["n_classes"] == 10
        assert f.attrs["source"].startswith("idx:")
        assert len(f.attrs["source_sha256"].splitlines()) == 4


def mutate(path: Path, how: str) -> None:
    """Damage a valid file in one specific way."""
    with h5py.File(path, "r+") as f:
        if how == "no_group":
            del f["test"]
        elif how == "no_dataset":
            del f["train/labels"]
        elif how == "dtype":
            labels = f["train/labels"][:]
            del f["train/labels"]
            f["train/labels"] = labels.astype(np.int64)
        elif how == "ndim":
            del f["test/images"]
            f["test/images"] = np.zeros((100, 4, 3), np.uint8)
        elif how == "features":
            del f["test/images"]
            f["test/images"] = np.zeros((100, 11), np.uint8)
        elif how == "count":
            del f["test/labels"]
            f["test/labels"] = np.zeros(99, np.uint8)
        elif how == "version":
            f.attrs["schema_version"] = 3
        elif how == "no_version":
            del f.attrs["schema_version"]
        elif how == "shape_attr":
            f.attrs["image_shape"] = "28x28"
        elif how == "no_attr":
            del f.attrs["n_classes"]


@pytest.mark.parametrize("how, message", [
    ("no_group", "missing group /test"),
    ("no_dataset", "missing dataset /train/labels"),
    ("dtype", "/train/labels has dtype int64, expected uint8"),
    ("ndim", "/test/images has shape (100, 4, 3), expected 2-D"),
    ("features", "/test/images has 11 features, image_shape (4, 3) needs 12"),
    ("count", "/test has 100 images but 99 labels"),
    ("version", "schema version 3, this distnn reads 1 and 2"),
    ("no_version", "no schema_version attribute"),
    ("no_attr", "missing file attribute 'n_classes'"),
    ("shape_attr", "attribute image_shape must be positive integers"),
])
def test_schema_errors(make_idx_dir, tmp_path, how, message):
    directory, _ = make_idx_dir()
    out = prepare(tmp_path / "d.h5", idx_dir=directory)
    mutate(out, how)
    for call in (lambda: describe(out), lambda: read_shard(out, "train", 0, 2)):
        with pytest.raises(DataError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*python -m distnn.data prepare"):
        read_shard(tmp_path / "nope.h5", "train")
    (tmp_path / "junk.h5").write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        describe(tmp_path / "junk.h5")


def test_a_write_removes_temporary_files_whose_writer_is_gone(tmp_path):
    """What a process killed mid-write leaves: removed by the next write to that target,
    when its writer (named in the file's name) no longer runs on this host."""
    import socket

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        target = tmp_path / "c.h5"
        orphan = tmp_path / f"c.h5.tmp-{host}-{gone}-abc123"
        writing = tmp_path / f"c.h5.tmp-{host}-{alive.pid}-def456"
        elsewhere = tmp_path / f"c.h5.tmp-another-host-{gone}-ghi789"
        other_target = tmp_path / f"d.h5.tmp-{host}-{gone}-jkl012"
        for f in (orphan, writing, elsewhere, other_target):
            f.write_bytes(b"half a file")
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"whole")
        assert target.read_bytes() == b"whole"
        assert not orphan.exists()  # its writer is gone
        assert writing.exists() and elsewhere.exists() and other_target.exists()
        # An import's scratch directory, left by a killed import, goes the same way.
        orphan.mkdir()
        (orphan / "bucket-0").write_bytes(b"rows")
        with atomic.scratch_dir(target) as work:
            assert work.is_dir() and work.name.startswith(f"c.h5.tmp-{host}-")
        assert not orphan.exists() and not work.exists()
    finally:
        alive.kill()
        alive.wait()
