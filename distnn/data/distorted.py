"""An "infinite MNIST" training set: the source's training images and N distorted copies of each.

After Loosli, Canu and Bottou (2007), whose MNIST8M holds 8.1 million images
made by distorting MNIST's 60,000: ``prepare --distorted 134`` makes as many.
The distortions are distnn's own (``distnn.augment``: shifts, rotations,
scalings, elastic fields), drawn once, stored, and the same on every run.

The file is schema 1 (``distnn.data.store``), its training split (n source
images) laid out as N + 1 copies of n rows each:

    rows [0, n)              copy 0: the originals, in prepare's order
                             (``balanced_permutation(labels, seed)``): the
                             first n rows are the file ``prepare`` writes
    rows [j n, (j + 1) n)    copy j = 1..N: the originals in a class-balanced
                             permutation of its own, seeded by (seed, j), each
                             image distorted and rounded back to uint8

``/train/source_index`` says which original each row is (or was distorted
from), ``/train/labels`` are the originals' labels; the test split is the
source's, undistorted. Every copy is a class-balanced permutation, so any
contiguous block of rows, which is what the trainer cuts the set into, is a
fair sample of the classes. The distortion of the image at position i of copy j
takes the draws of sample i of ``Noise(seed, j, 0, n)`` (``distnn.noise``: the
stream of (seed, j), laid out image by image), computed in float64 on pixels
/ 255 and stored as ``rint(255 x)`` clipped to 0..255. An image's distortion is
thus a function of (seed, j, i) alone, not of the block it is computed in, and
the file is the same byte for byte on every run with the same source, seed,
copies and distortions (float64, so that another machine's BLAS, differing in
the last bits, would round a pixel otherwise only in the rarest of cases).

Extra file attributes: ``distorted_copies`` (N) and ``distortions`` (the
canonical ``Augment`` spec). Memory holds the source and one block of BLOCK
images, whatever N: the file is written a block at a time, to a temporary
file renamed over the target when whole (``distnn.atomic``). Its size is known
beforehand, and a file system without room for it is refused before anything
is written.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from ..atomic import atomic_path, remove_orphans
from ..augment import Augment, AugmentError
from ..memory import size
from ..noise import Noise
from ..writes import WriteFailed, writing
from . import mnist_pickle
from .errors import DataError
from .prepare import DEFAULT_SEED, balanced_permutation, load_source
from .source import Source, check_source
from .store import CHUNK_ROWS, SCHEMA_VERSION, _write_split, open_checked, validate

DEFAULT_DISTORTIONS = "shift=2,rotate=10,scale=0.1,elastic=20,sigma=4"
BLOCK = 1024  # images distorted and written at a time: ~0.1 GB of distnn.augment's float64 arrays
PROGRESS_SECONDS = 5.0
INDEX_BYTES = 4  # /SPLIT/source_index is uint32
# HDF5's own bytes (headers, chunk indexes: ~0.1% for 256-row chunks), with room to spare.
OVERHEAD_BYTES, OVERHEAD_FRACTION = 1 << 20, 0.005


def copy_order(labels: np.ndarray, seed: int, copy: int) -> np.ndarray:
    """The source rows of copy ``copy``, in order: prepare's permutation for copy 0,
    one seeded by (seed, copy) for each distorted copy."""
    return balanced_permutation(labels, seed if copy == 0 else [seed, copy])


def distort(images: np.ndarray, augment: Augment, noise: Noise) -> np.ndarray:
    """uint8 images (b, n_features), distorted by ``augment`` with ``noise``'s draws,
    back as uint8: rint(255 x), clipped."""
    x = augment(images.astype(np.float64) / 255.0, noise)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def file_bytes(n_train: int, n_test: int, n_features: int) -> int:
    """What the file will take on disk at most: its rows (images, labels, source
    indexes), HDF5's own bytes, and room to spare."""
    rows = (n_train + n_test) * (n_features + 1 + INDEX_BYTES)
    return rows + int(rows * OVERHEAD_FRACTION) + OVERHEAD_BYTES


def prepare_distorted(out: str | Path, copies: int,
                      distortions: str = DEFAULT_DISTORTIONS,
                      idx_dir: str | Path | None = None,
                      cache_dir: str | Path | None = None, *, seed: int = DEFAULT_SEED,
                      n_classes: int | None = None) -> Path:
    """Write the source's training images and ``copies`` distorted copies of each to
    ``out`` (the module docstring says how); return its path.

    The source is ``prepare``'s (MNIST, or the IDX files in ``idx_dir``). Raises
    DataError on bad input, WriteFailed if the file cannot be written or will not
    fit. Progress, and a last line with the file's size and the time taken, go
    to stderr.
    """
    started = time.monotonic()
    if copies < 1:
        raise DataError(f"--distorted needs 1 or more copies, got {copies}")
    if seed < 0:
        raise DataError(f"shuffle seed must be >= 0, got {seed}")
    _augment(distortions, None)  # a bad spec is refused before MNIST is fetched
    out = Path(out)
    if out.is_dir():
        raise DataError(f"output path is a directory: {out}")
    src = load_source(idx_dir, Path(cache_dir) if cache_dir is not None
                      else out.parent / "cache")
    if idx_dir is None and n_classes is None:
        n_classes = mnist_pickle.N_CLASSES
    n_classes = check_source(src, n_classes)
    augment = _augment(distortions, src.image_shape)
    n, n_features = src.train_images.shape
    rows = n * (copies + 1)
    if rows >= 1 << 40:
        raise DataError(f"--distorted {copies} makes {rows} rows: too many")
    size = file_bytes(rows, len(src.test_labels), n_features)
    _check_room(out, size)
    progress = Progress(rows, n_features + 1 + INDEX_BYTES, started)
    with writing(out), atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({
                "schema_version": SCHEMA_VERSION, "source": src.name,
                "source_sha256": src.sha256,
                "image_shape": np.asarray(src.image_shape, dtype=np.int64),
                "n_classes": n_classes, "shuffle_seed": seed,
                "distorted_copies": copies, "distortions": augment.spec()})
            _write_copies(f.create_group("train"), src, copies, augment, seed, progress)
            _write_split(f, "test", {
                "images": src.test_images, "labels": src.test_labels,
                "source_index": np.arange(len(src.test_labels), dtype=np.uint32)})
        validate(tmp)
        stored = tmp.stat().st_size
    seconds = time.monotonic() - started
    print(f"distnn.data: wrote {out}: {rows:,} training rows (the {n:,} images and {copies} "
          f"distorted copies of each), {len(src.test_labels):,} test rows, {n_classes} "
          f"classes; {stored:,} bytes ({stored / 1e9:.2f} GB) in {_duration(seconds)} "
          f"({stored / 1e6 / seconds:.1f} MB/s)", file=sys.stderr, flush=True)
    return out


def _write_copies(train: h5py.Group, src: Source, copies: int, augment: Augment, seed: int,
                  progress: Progress) -> None:
    """The training split: copy 0, then ``copies`` distorted copies, a block at a time."""
    n, n_features = src.train_images.shape
    rows = n * (copies + 1)
    images = train.create_dataset("images", (rows, n_features), np.uint8,
                                  chunks=(CHUNK_ROWS, n_features))
    labels = train.create_dataset("labels", (rows,), np.uint8, chunks=(CHUNK_ROWS,))
    index = train.create_dataset("source_index", (rows,), np.uint32, chunks=(CHUNK_ROWS,))
    for copy in range(copies + 1):
        order = copy_order(src.train_labels, seed, copy)
        base = copy * n
        labels[base:base + n] = src.train_labels[order]
        index[base:base + n] = order.astype(np.uint32)
        for start in range(0, n, BLOCK):
            block = src.train_images[order[start:start + BLOCK]]
            if copy:
                block = distort(block, augment, Noise(seed, copy, 0, n, start, len(block)))
            images[base + start:base + start + len(block)] = block
            progress.advance(len(block))


def _augment(spec: str, shape: tuple[int, ...] | None) -> Augment:
    if shape is not None and len(shape) != 2:
        raise DataError(f"--distorted needs 2-D images; these are {shape}")
    try:
        augment = Augment.parse(spec, shape)
    except AugmentError as err:
        raise DataError(f"--distortions: {err}") from None
    if not augment:
        raise DataError(f"--distortions {spec!r} distorts nothing: every copy would be the "
                        "originals")
    return augment


def _check_room(out: Path, needed: int) -> None:
    """WriteFailed, before anything is written, if ``out``'s file system has no room for
    ``needed`` bytes (a file it replaces is only freed after the new one is whole)."""
    remove_orphans(out, socket.gethostname())  # a killed run's temporary file: its room too
    where = out.absolute().parent
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < needed:
        raise WriteFailed(f"cannot write {out}: it needs {size(needed)} and "
                          f"{where} has {size(free)} free", "free some space, or "
                          "write it elsewhere with --out")


class Progress:
    """A line on stderr every PROGRESS_SECONDS: rows written, rate, time left."""

    def __init__(self, rows: int, row_bytes: int, started: float) -> None:
        self.rows, self.row_bytes, self.started = rows, row_bytes, started
        self.done, self.last = 0, time.monotonic()

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS or self.done == self.rows:
            return
        self.last, seconds = now, now - self.started
        left = seconds * (self.rows - self.done) / self.done
        print(f"distnn.data: {self.done:,} of {self.rows:,} training rows "
              f"({self.done / self.rows:.0%}), {self.done * self.row_bytes / 1e6 / seconds:.1f} "
              f"MB/s, {_duration(seconds)} so far, about {_duration(left)} left",
              file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def describe_copies(path: str | Path) -> dict[str, object]:
    """A file's distorted_copies and distortions (0 and "" for a file without copies)."""
    with open_checked(path) as f:
        return {"distorted_copies": int(f.attrs.get("distorted_copies", 0)),
                "distortions": str(f.attrs.get("distortions", ""))}
