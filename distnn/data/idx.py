"""Read a data set stored as IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

IDX (http://yann.lecun.com/exdb/mnist/) is a big-endian header followed by
raw data:

    bytes 0-1   zero
    byte  2     element type (0x08 = unsigned byte, the only one MNIST-like
                data sets use and the only one we accept)
    byte  3     number of dimensions d
    4*d bytes   each dimension as a big-endian uint32
    then        prod(dims) elements, row-major

A directory holds the four standard files, each raw or gzip-compressed.
Non-goal: writing IDX, or element types other than unsigned byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ..memory import shortfall
from .errors import DataError
from .source import Source

UBYTE = 0x08
# (split, kind) -> standard file stem; a ".gz" suffix is also accepted.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


MAX_DIMS = 4  # (N, rows, cols, channels): more is not an image data set
_CHUNK = 1 << 20


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes into a uint8 array shaped as its header says."""
    return _read_stream(io.BytesIO(data), name, len(data))


def _read_stream(stream: IO[bytes], name: str, stored: int | None) -> np.ndarray:
    """Read an IDX file from ``stream``: the header, then exactly the bytes it declares.

    ``stored``: the file's size where it is known before reading (a raw file),
    so a wrong size is refused without reading it. Otherwise (gzip) at most one
    byte more than the header declares is ever read: a file that inflates to
    more is refused as soon as it does.
    """
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{name}: truncated IDX file ({len(head)} bytes, no header)")
    zero, dtype, ndim = struct.unpack(">HBB", head)
    if zero != 0:
        magic = int.from_bytes(head, "big")
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{magic:08x})")
    if dtype != UBYTE:
        raise DataError(
            f"{name}: IDX element type 0x{dtype:02x} is not supported (only 0x08, unsigned byte)"
        )
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{name}: IDX header says {ndim} dimensions; distnn reads 1 to {MAX_DIMS}")
    header = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{name}: truncated IDX file (a header of {ndim} dimensions needs "
                        f"{header} bytes, the file has {4 + len(raw_dims)})")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if 0 in dims:
        raise DataError(f"{name}: IDX header {dims} has a dimension of size 0")
    count = math.prod(dims)  # a Python int: no overflow, whatever the header says
    expected = header + count
    if stored is not None and stored != expected:
        what = "truncated" if stored < expected else "too long"
        raise DataError(f"{name}: {what} IDX file: header {dims} needs {expected} bytes, "
                        f"file has {stored}")
    short = shortfall(count)
    if short:
        raise DataError(f"{name}: IDX header {dims} needs {short}")
    array = np.empty(count, np.uint8)
    view, got = memoryview(array), 0
    while got < count:
        n = stream.readinto(view[got:got + _CHUNK])
        if not n:
            raise DataError(f"{name}: truncated IDX file: header {dims} needs {expected} bytes, "
                            f"file has {header + got}")
        got += n
    if stream.read(1):
        raise DataError(f"{name}: too long IDX file: it holds more than the {expected} bytes "
                        f"its header {dims} declares")
    return array.reshape(dims)


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX file (raw or .gz); return (array, sha256 of the file as stored).

    Memory stays within what the header declares (see ``_read_stream``).
    """
    gz = path.suffix == ".gz"
    try:
        stored = path.stat().st_size
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as stream:
            array = _read_stream(stream, str(path), None if gz else stored)
        digest = hashlib.sha256()  # once the file is known to be sound: never of a decoy
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err})") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    return array, digest.hexdigest()


def find_file(directory: Path, stem: str) -> Path:
    """The file for `stem` in `directory`: raw, .gz, or the common "name.idx3-ubyte" spelling."""
    dotted = stem.replace("-idx", ".idx")
    for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    raise DataError(f"{directory}: missing IDX file {stem} (or {stem}.gz)")


def load_idx_dir(directory: str | Path) -> Source:
    """Read the four standard IDX files in `directory` into a `Source`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"IDX directory not found: {directory}")
    arrays: dict[tuple[str, str], np.ndarray] = {}
    sums: list[str] = []
    for (split, kind), stem in FILES.items():
        path = find_file(directory, stem)
        array, digest = read_idx(path)
        sums.append(f"{digest}  {path.name}")
        if kind == "labels" and array.ndim != 1:
            raise DataError(f"{path}: labels must be 1-D, header says {array.shape}")
        if kind == "images" and array.ndim < 2:
            raise DataError(f"{path}: images must be (N, rows, cols), header says {array.shape}")
        arrays[split, kind] = array
    image_shape = tuple(int(d) for d in arrays["train", "images"].shape[1:])
    if arrays["test", "images"].shape[1:] != image_shape:
        raise DataError(
            f"{directory}: train images are {image_shape} but test images are "
            f"{arrays['test', 'images'].shape[1:]}"
        )
    flat = {key: a.reshape(len(a), -1) if key[1] == "images" else a for key, a in arrays.items()}
    return Source(
        name=f"idx:{directory.resolve()}",
        sha256="\n".join(sums),
        image_shape=image_shape,
        train_images=flat["train", "images"],
        train_labels=flat["train", "labels"],
        test_images=flat["test", "images"],
        test_labels=flat["test", "labels"],
    )
