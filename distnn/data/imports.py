"""A lab's own table (CSV, NumPy, HDF5) into the file distnn trains from.

    python -m distnn.data import runs.csv --task regression --target yield --out data/yield.h5
    python -m distnn.data import iris.csv --task classification --target species --out data/iris.h5
    python -m distnn.data import cells.npz --features x --targets y --task classification \
        --out data/cells.h5                  # x: images (N, H, W) or (N, C, H, W); y: (N,)

Three passes, each a block of rows at a time, so that memory holds a block
(and one bucket of the shuffle) whatever the file's size:

1. read: the source's rows (``readers``), checked, the target columns split
   off, class labels numbered as they are met (``labels``), staged on disk in
   the file's order;
2. split: the test rows chosen by a seeded split stratified by class
   (``split``), or read from a test file of their own; training rows go to
   the buckets of an external shuffle (``staging``);
3. write: the table (``table.write_table``), its training set permuted so
   that any block of rows is a fair sample, its test set in the file's order,
   each row's number in the source, the names of classes, features and
   targets, and the features' (a regression's targets') mean and standard
   deviation in float64.

Images, arrays (N, H, W) or (N, C, H, W) of a .npy, .npz or HDF5 file with
their targets in another array, are rows of their pixels in C order (channel by
channel), and the file keeps their ``image_shape``, (H, W) or (C, H, W). uint8
images stay bytes, read divided by 255 as MNIST's are; any other images (or
uint8 ones stored as floats by ``dtype``) are standardized per channel: one mean
and deviation over all the pixels of a channel, never one per pixel, since a
convolution's filter slides over every position and must see the same scale at
each (and a border pixel that is nearly always dark must not be blown up into
noise).

The scratch files (about twice the data, in float64) lie next to the output
and are removed at the end; the output is written atomically. Bad input is one
line naming the row and the column, and writes nothing.

Where the time goes: ``import_table(passes={})`` fills the dict with the
seconds of each pass (``Passes``), for ``distnn.bench.csv_speed``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import scratch_dir
from ..writes import writing
from .errors import DataError
from .labels import Labels
from .csvfile import CsvFormat
from .readers import PLAIN, open_rows
from .rows import Rows, column
from .split import Split
from .staging import Shuffled, Staged, record
from .table import write_table

BUCKET_BYTES = 64 << 20  # the shuffle holds one bucket of training rows in memory at a time
DTYPES = ("float32", "float64")
HASH_CHUNK = 1 << 20  # the source's sha256 reads this much at a time, beside the parse


@dataclass(frozen=True)
class Layout:
    """Where a file's features and targets are.

    Either one matrix (a CSV, an .npy, an .npz array or HDF5 dataset named by
    ``features``) whose ``target`` columns (names, or numbers from 1; default
    the last) are the targets and the rest the features; or, with ``targets``,
    the features in one matrix and the targets in another: an array or dataset
    of the same .npz or HDF5 file, or a second .csv or .npy file."""
    target: tuple[str, ...] = ()
    features: str | None = None
    targets: str | None = None
    header: bool | None = None
    fmt: CsvFormat = PLAIN  # how a CSV is written, where the user says; missing values


def targets_file(path: Path, targets: str | None) -> Path | None:
    """The file ``--targets`` names, beside ``path``: None where it names an array of
    ``path`` itself (an .npz or HDF5 file holds several) or is not given."""
    if targets is None or path.suffix.lower() in (".npz", ".h5", ".hdf5", ".hdf"):
        return None
    return Path(targets)


class Passes:
    """Wall seconds of each pass of an import, by name: a perf_counter read around each
    block's work, so the breakdown costs nothing that could be measured.

    "parse" is the reader's blocks (the parser, the finite check, the columns taken);
    "stage" numbers labels, counts and appends the rows to the scratch file; "split"
    reads them back and chooses the test rows; "shuffle" scatters the training rows to
    the buckets and reads each bucket back permuted (and the test rows back); "write"
    is the table's HDF5 writes; "scaling" its statistics, check and rename; "checksum
    wait" the time left waiting for the sha256, whose own seconds ("checksum") run
    beside the parse, on another core, and are not part of the sum; "other" is the
    rest (the dialect sniffed, scratch files removed)."""

    CONCURRENT = ("checksum",)

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def timed(self, items: Iterable, name: str) -> Iterator:
        """``items``, the time each takes to come charged to ``name``."""
        items = iter(items)
        while True:
            start = time.perf_counter()
            item = next(items, _END)
            self.add(name, time.perf_counter() - start)
            if item is _END:
                return
            yield item


_END = object()


class _Last:
    """Blocks, and ``taken``: the perf_counter when the last was taken."""

    def __init__(self, blocks: Iterable) -> None:
        self._blocks, self.taken = blocks, time.perf_counter()

    def __iter__(self) -> Iterator:
        for block in self._blocks:
            yield block
            self.taken = time.perf_counter()


def _open(path: Path, name: str | None, layout: Layout) -> Rows:
    return open_rows(path, key=name, dataset=name, header=layout.header, fmt=layout.fmt)


def index_column(rows: Rows) -> list[int]:
    """[0] where the first column has no name in the header: the row numbers that pandas'
    ``to_csv`` and R's ``write.csv`` write by default, never a feature; else []."""
    return [0] if rows.columns and rows.columns[0] == "" and rows.n_columns > 1 else []


class TableFile:
    """A file's rows as (features, targets, where) blocks, as a ``Layout`` says."""

    def __init__(self, path: Path, layout: Layout, task: str) -> None:
        self.path, self.task, self.files = path, task, [path]
        self.rows = _open(path, layout.features, layout)
        self.image_shape = self.rows.image_shape
        self.index = index_column(self.rows)
        if layout.targets is None and self.image_shape:
            raise DataError(f"{path}: images of shape {self.image_shape} have no column of "
                            "targets; give them with --targets (an array or dataset of the "
                            "same file, or a file of their own)")
        if layout.targets is None:
            self.target_rows = None
            specs = layout.target or (str(self.rows.n_columns),)
            self.targets = sorted({column(s, self.rows, "to predict") for s in specs})
            if len(self.targets) == self.rows.n_columns:
                raise DataError(f"{path}: every column is a target; no features are left")
            names = self.rows.columns
        else:
            if layout.target:
                raise DataError("--target chooses columns of one matrix; with --targets every "
                                "column of that array is a target")
            second = targets_file(path, layout.targets) or path
            if layout.fmt.missing == "drop":
                raise DataError("--missing drop needs the targets in the same file as the "
                                "features, so that a row is dropped whole")
            self.target_rows = _open(second, layout.targets if second == path else None,
                                     layout)
            if self.target_rows.image_shape:
                raise DataError(f"{second}: targets of shape (rows, "
                                f"{', '.join(map(str, self.target_rows.image_shape))}); "
                                "expected (rows,) or (rows, columns)")
            self.files = [path] if second == path else [path, second]
            self.targets = []
            names = None
        n_targets = len(self.targets) if self.target_rows is None else \
            self.target_rows.n_columns
        if task == "classification" and n_targets != 1:
            raise DataError(f"{path}: a classifier predicts one column of class labels, "
                            f"not {n_targets}")
        keep = [c for c in range(self.rows.n_columns)
                if c not in self.targets and c not in self.index]
        self.n_features = len(keep)
        self.feature_names = [names[c] for c in keep] if names else None
        self.target_names = [names[c] for c in self.targets] if names else None
        self.n_targets = n_targets
        self._keep = keep

    def align(self, names: list[str]) -> None:
        """Take the features by ``names`` (another file's), in their order: a test file
        whose columns come in another order is read as the training file is."""
        where = {name: c for c, name in enumerate(self.rows.columns)}
        missing = [name for name in names if name not in where or where[name] in self.targets]
        if missing:
            raise DataError(f"{self.path} has no feature column "
                            f"{', '.join(map(repr, missing[:8]))}, which the training file has")
        extra = [name for name in self.feature_names if name not in names]
        if extra:
            raise DataError(f"{self.path} has column(s) {', '.join(map(repr, extra[:8]))}, "
                            "which the training file lacks")
        self._keep = [where[name] for name in names]
        self.feature_names = list(names)

    def notes(self) -> list[str]:
        """What a person should know of how the file was read: its dialect, an index
        column left out, rows dropped for a missing value (after ``blocks`` was read)."""
        name = self.rows.path.name
        return ([f"{name}: {self.rows.dialect}"] if self.rows.dialect else []) + \
            ([f"{name}: its first column has no name: the row numbers pandas and R write, "
              "left out"] if self.index else []) + \
            ([f"{name}: {self.rows.dropped} row(s) with a missing value left out"]
             if self.rows.dropped else [])

    def label_column(self) -> str:
        rows, col = (self.rows, self.targets[0]) if self.target_rows is None else \
            (self.target_rows, 0)
        return f"{rows.path}, column {rows.name(col)}"

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray, Rows, np.ndarray]]:
        """(features (b, n), targets (b, k) floats or (b,) label texts, rows, the number
        of each row in the source (b,))."""
        if self.target_rows is not None:
            yield from self._two_files()
            return
        text = self.task == "classification" and self.rows.text
        numeric = [c for c in range(self.rows.n_columns) if not text or c != self.targets[0]]
        keep = [numeric.index(c) for c in self._keep]  # the features among the numbers
        for block, number in self.rows.numbered(text=self.targets[0] if text else None):
            if text:
                x, y = block
                x = x if keep == list(range(x.shape[1])) else x[:, keep]
            else:
                x, y = _columns(block, self._keep), _columns(block, self.targets)
                y = y[:, 0] if self.task == "classification" else y
            yield x, y, self.rows, number

    def _two_files(self) -> Iterator[tuple[np.ndarray, np.ndarray, Rows, np.ndarray]]:
        text = self.task == "classification" and self.target_rows.text
        blocks = self.target_rows.blocks(text=0 if text else None)
        first, targets = 0, _Reblocked(block[1] for block in blocks) if text else \
            _Reblocked(blocks)
        for x in self.rows.blocks():
            y = targets.take(len(x))
            if len(y) < len(x):
                raise DataError(f"{self.target_rows.path}: {first + len(y)} rows of targets, "
                                f"fewer than the rows of features in {self.path}")
            if self.task == "classification" and y.ndim == 2:
                y = y[:, 0]
            yield x, y, self.rows, np.arange(first, first + len(x))
            first += len(x)
        if len(targets.take(1)):
            raise DataError(f"{self.target_rows.path}: more rows of targets than the {first} "
                            f"rows of features in {self.path}")


def _columns(block: np.ndarray, columns: list[int]) -> np.ndarray:
    """block[:, columns], a view where they are side by side (the staging copies it)."""
    if columns and columns == list(range(columns[0], columns[0] + len(columns))):
        return block[:, columns[0]:columns[0] + len(columns)]
    return block[:, columns]


class _Reblocked:
    """Rows from blocks of one size, taken in blocks of another."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks, self._pending = iter(blocks), []

    def take(self, n: int) -> np.ndarray:
        """The next n rows, or fewer at the end."""
        while sum(map(len, self._pending)) < n:
            block = next(self._blocks, None)
            if block is None:
                break
            self._pending.append(block)
        if not self._pending:
            return np.empty((0, 1))
        joined = np.concatenate(self._pending)
        self._pending = [joined[n:]]
        return joined[:n]


def import_table(source: str | Path, out: str | Path, *, task: str, layout: Layout = Layout(),
                 test: str | Path | None = None, test_fraction: float = 0.1, seed: int = 0,
                 dtype: str | None = None, passes: dict[str, float] | None = None) -> str:
    """Write the table of ``source`` (and ``test``) to ``out``; returns what was written,
    in a line. Raises DataError for bad input, WriteFailed if ``out`` cannot be written.
    ``dtype``: how the features are stored, one of DTYPES (None: float64, or uint8 for
    uint8 images). ``passes``, a dict, is filled with the seconds of each pass
    (``Passes``)."""
    started = time.perf_counter()
    clock = Passes()
    source, out = Path(source), Path(out)
    if dtype is not None and dtype not in DTYPES:
        raise DataError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if test is None and not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if out.is_dir():
        raise DataError(f"--out {out} is a directory")
    table = TableFile(source, layout, task)
    test_table = None if test is None else TableFile(Path(test), layout, task)
    if test_table is not None and test_table.image_shape != table.image_shape:
        raise DataError(f"{test} holds {_form(test_table)}, {source} {_form(table)}: the test "
                        "rows must be of the training rows' form")
    dtype = dtype or _stored(table, test_table)
    if test_table is not None and table.feature_names and test_table.feature_names:
        test_table.align(table.feature_names)
    if test_table is not None and test_table.n_features != table.n_features:
        raise DataError(f"{test}: {test_table.n_features} features a row, {source} has "
                        f"{table.n_features}")
    classes = task == "classification"
    labels = Labels(table.label_column()) if classes else None
    y_shape, y_dtype = ((), np.uint32) if classes else ((table.n_targets,), np.float64)
    files = [*table.files, *(test_table.files if test_table else ())]
    stop = threading.Event()  # set, the hashing ends early: after an error, or Ctrl-C
    with writing(out), scratch_dir(out) as work, ThreadPoolExecutor(1) as hashing, \
            _setting(stop):
        digest = hashing.submit(_sha256, files, stop)  # beside the parse, on a core it leaves
        rec = record(table.n_features, y_shape, y_dtype,
                     np.uint8 if dtype == "uint8" else np.float64)
        staged = Staged(work / "source", rec)
        counts = _stage(table, staged, labels, clock)
        test_staged = None
        if test_table is not None:
            test_staged = Staged(work / "test-source", rec)
            _stage(test_table, test_staged, labels, clock)
        names, number = labels.classes() if classes else (None, None)
        if classes:  # rows of each class, by class number
            counts = np.bincount(number[:len(counts)], weights=counts,
                                 minlength=len(names)).astype(np.int64)
        train_set, test_set, trained = _split(staged, test_staged, work, rec, counts, number,
                                              test_fraction, seed, clock)
        if classes and not trained.all():
            raise DataError(f"class {names[int(np.argmin(trained))]!r} of the test file has no "
                            "training rows: a classifier cannot learn it")
        for done in (staged, test_staged):  # its rows are in the buckets now: free the space
            if done is not None:
                done.path.unlink()
        convert = (lambda y: number[y]) if classes else (lambda y: y)
        kept = {"features": table.feature_names, "classes": names,
                "targets": None if classes else table.target_names}
        with clock.timing("checksum wait"):
            checksum = digest.result()[0]
        scattered, write_started = clock.seconds.get("shuffle", 0.0), time.perf_counter()
        last = _Last(clock.timed(test_set.blocks(), "shuffle"))  # the test rows come last
        write_table(out, {"train": ((x.astype(dtype, copy=False), convert(y), row)
                                    for x, y, row in clock.timed(train_set.blocks(), "shuffle")),
                          "test": ((x.astype(dtype, copy=False), convert(y), row)
                                   for x, y, row in last)},
                    task=task, n_features=table.n_features,
                    n_outputs=len(names) if classes else table.n_targets,
                    source=f"import {source.name}" + (f" (test: {Path(test).name})"
                                                      if test else ""),
                    source_sha256=checksum, seed=seed, feature_dtype=dtype,
                    image_shape=table.image_shape,
                    names={k: v for k, v in kept.items() if v})
        clock.add("write", last.taken - write_started - clock.seconds["shuffle"] + scattered)
        clock.add("scaling", time.perf_counter() - last.taken)
        sizes = len(train_set), len(test_set)
    seconds = time.perf_counter() - started
    if passes is not None:
        clock.add("checksum", digest.result()[1])
        sequential = sum(v for k, v in clock.seconds.items() if k not in Passes.CONCURRENT)
        passes.update(clock.seconds, other=seconds - sequential)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    what = f"{len(names)} classes" if classes else f"{table.n_targets} target(s)"
    features = f"{table.n_features} features" if not table.image_shape else (
        f"{_form(table)} ({table.n_features} features, " +
        ("uint8, read divided by 255)" if dtype == "uint8" else "standardized per channel)"))
    return "".join(f"{note}\n" for t in (table, test_table) if t for note in t.notes()) + (
        f"{out}: {sizes[0]} training rows (permuted), {sizes[1]} test rows, "
        f"{features}, {what}; read {megabytes:.3g} MB in {seconds:.3g} s "
        f"({megabytes / seconds:.3g} MB/s)")


def _form(table: TableFile) -> str:
    """What a file's rows are, for a line: "images of shape (28, 28)", or a table's."""
    return f"images of shape {table.image_shape}" if table.image_shape else \
        f"a table of {table.n_features} features a row"


def _stored(table: TableFile, test_table: TableFile | None) -> str:
    """How features are stored unless --dtype says: uint8 images (the test's too) as the
    bytes they are, which the trainer divides by 255 as it does MNIST's; all else float64,
    exactly as read."""
    images = [t for t in (table, test_table) if t is not None]
    return "uint8" if all(t.image_shape and t.rows.dtype == np.uint8 for t in images) \
        else "float64"


def _stage(table: TableFile, staged: Staged, labels: Labels | None,
           clock: Passes) -> np.ndarray:
    """Stage the rows of ``table``; returns how many rows each label id has (a
    classification), or how many rows there are."""
    counts = np.zeros(1, np.int64)
    for x, y, rows, number in clock.timed(table.blocks(), "parse"):
        with clock.timing("stage"):
            if labels is not None:
                y = labels.ids(y, lambda i, rows=rows, number=number: f"{rows.path}: "
                               f"{rows.where(int(number[i]))}")
                ids = np.bincount(y)
                counts = np.pad(counts, (0, max(0, len(ids) - len(counts))))
                counts[:len(ids)] += ids
            else:
                counts[0] += len(x)
            staged.add((x, y, number))
    return counts


def _split(staged: Staged, test_staged: Staged | None, work: Path, rec: np.dtype,
           counts: np.ndarray, number: np.ndarray | None, fraction: float,
           seed: int, clock: Passes) -> tuple[Shuffled, Staged, np.ndarray]:
    """The training rows into the shuffle's buckets, the test rows in the file's order,
    and how many training rows each class has. ``counts``: the rows of each class (one
    count for a regression); ``number``: each label id's class number (classification)."""
    n = len(staged)
    test_set = Staged(work / "test", rec)
    splitter = None
    if test_staged is None:
        splitter = Split(counts, fraction, seed)
        if splitter.test_rows == 0:
            raise DataError(f"--test-fraction {fraction} of {n} rows leaves no test rows; "
                            "raise it, or give the test rows with --test FILE")
    buckets = max(1, math.ceil(n * rec.itemsize / BUCKET_BYTES))
    train_set = Shuffled(work, buckets, seed, rec)
    trained = np.zeros(len(counts), np.int64)  # training rows of each class
    for records in clock.timed(staged.records(), "split"):
        y = records["y"]
        if splitter is None:
            with clock.timing("shuffle"):
                train_set.add(records)
            trained += np.bincount(number[y], minlength=len(counts)) if number is not None \
                else len(y)
            continue
        with clock.timing("split"):
            chosen = splitter.take(number[y] if number is not None else
                                   np.zeros(len(y), np.int64))
            test_set.append(records.take(np.flatnonzero(chosen)))
        with clock.timing("shuffle"):
            train_set.add(records, np.flatnonzero(~chosen))
    with clock.timing("split"):
        for records in test_staged.records() if test_staged is not None else ():
            test_set.append(records)
    if splitter is not None:
        trained = counts - np.array(splitter.wanted)
    return train_set, test_set, trained


@contextmanager
def _setting(event: threading.Event) -> Iterator[None]:
    try:
        yield
    finally:
        event.set()


def _sha256(paths: list[Path], stop: threading.Event) -> tuple[str, float]:
    """One line per file read: its sha256 and name, as sha256sum prints them; and the
    seconds it took."""
    started, lines = time.perf_counter(), []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while (chunk := f.read(HASH_CHUNK)) and not stop.is_set():
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.name}")
    return "\n".join(lines), time.perf_counter() - started
