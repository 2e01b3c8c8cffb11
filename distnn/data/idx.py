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
import struct
import zlib
from pathlib import Path

import numpy as np

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


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes into a uint8 array shaped as its header says."""
    if len(data) < 4:
        raise DataError(f"{name}: truncated IDX file ({len(data)} bytes, no header)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{magic:08x})")
    if dtype != UBYTE:
        raise DataError(
            f"{name}: IDX element type 0x{dtype:02x} is not supported (only 0x08, unsigned byte)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX file (header cut short)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        raise DataError(
            f"{name}: {what} IDX file: header {tuple(dims)} needs {expected} bytes, "
            f"file has {len(data)}"
        )
    # frombuffer is a zero-copy view of read-only bytes; copy to own the memory.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX file (raw or .gz); return (array, sha256 of the file as stored)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    data = raw
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt or truncated gzip file ({err})") from None
    return parse_idx(data, str(path)), hashlib.sha256(raw).hexdigest()


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
