"""Rows of numbers from a lab's own files, a block at a time: CSV, NumPy (.npy, .npz), HDF5.

    rows = open_rows("measurements.csv")          # or .npy, .npz (--key), .h5 (--dataset)
    rows.columns                                  # names from a CSV header, else None
    for block in rows.blocks():                   # float64 (b, n), b <= BLOCK_ROWS
        ...
    for numbers, labels in rows.blocks(text=4):   # a CSV's column 4 (from 0) as text:
        ...                                       # class labels such as "setosa"

Memory stays bounded by a block whatever the file's size: a CSV is parsed
CSV_BLOCK_CHARS of whole lines at a time (numpy's C parser), a .npy is memory-mapped, an
.npz member is streamed out of the zip, an HDF5 dataset is read by slices.
Bad input is one line naming the file, the row (counted from 1, as a person
reading the file would) and the column: a value that is not a number or not
finite, a row with another number of fields. Every call of ``blocks()`` reads
the file afresh from its first row. A NumPy file that holds Python
objects is refused, never unpickled (``allow_pickle=False`` throughout).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from .errors import DataError

BLOCK_ROWS = 1 << 16
CSV_BLOCK_CHARS = 1 << 24  # a CSV is read 16 MB of whole lines at a time
ARROW_BLOCK_BYTES = 1 << 20  # by Arrow, 1 MB at a time, joined into blocks of BLOCK_ROWS
KINDS = {".csv": "csv", ".txt": "csv", ".npy": "npy", ".npz": "npz", ".h5": "hdf5",
         ".hdf5": "hdf5", ".hdf": "hdf5",
         ".parquet": "parquet", ".feather": "arrow", ".arrow": "arrow", ".arrows": "arrow"}


class Rows:
    """A file's rows: ``columns`` (names, if the file has them), ``blocks()`` of floats."""

    def __init__(self, path: Path, n_columns: int, columns: list[str] | None,
                 read: Callable[[int | None], Iterator], first: str = "row 1",
                 count: int | None = None, text: bool = False) -> None:
        self.path, self.n_columns, self.columns, self._read = path, n_columns, columns, read
        self.count = count  # rows, where the file says so without being read (not a CSV)
        self.text = text  # whether a column may hold text (class labels): a CSV's may
        self._unit, number = first.split()
        self._first = int(number)  # how a reader counts the first row: "row 1", "line 2"

    def where(self, row: int) -> str:
        """How a person finds row ``row`` (from 0) of the data: "line 12", "row 11"."""
        return f"{self._unit} {self._first + row}"

    def name(self, col: int) -> str:
        """Column ``col`` (from 0) as a person names it: "3 (pressure)", "3"."""
        return _name(col, self.columns)

    def blocks(self, text: int | None = None) -> Iterator:
        """float64 blocks (b, n_columns), in the file's order, each checked finite.

        With ``text`` (a column, from 0, of a file whose ``text`` is true), (numbers,
        labels) pairs instead: the other columns as numbers (b, n_columns - 1) and that
        column's fields as stripped strings (b,)."""
        if text is not None and not self.text:
            raise DataError(f"{self.path}: only a CSV file holds text labels")
        first = self._first
        columns = [self.name(c) for c in range(self.n_columns) if c != text]
        for block in self._read(text):
            numbers = block if text is None else block[0]
            _check_finite(numbers, self.path, f"{self._unit} {first}", columns)
            first += len(numbers)
            yield block


def open_rows(path: str | Path, *, key: str | None = None, dataset: str | None = None,
              header: bool | None = None) -> Rows:
    """The rows of ``path``, by its suffix: .csv/.txt, .npy, .npz (member ``key``, or its
    only one), .h5/.hdf5 (``dataset``). ``header``: a CSV's first line names the
    columns (None: it does when one of its fields is not a number where the line
    after it has a number)."""
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown kind of file; expected one of "
                        f"{', '.join(sorted(KINDS))}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if kind == "csv":
        return _csv(path, header)
    if kind == "npy":
        return _npy(path)
    if kind == "npz":
        return _npz(path, key)
    if kind in ("parquet", "arrow"):  # imported here: distnn.data.columnar imports this module
        from .columnar import open_columnar
        return open_columnar(path, kind)
    return _hdf5(path, dataset)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(text: str) -> bool:
    return _number(text) and bool(np.isfinite(float(text)))


def _fields(line: str) -> list[str]:
    return [x.strip() for x in line.rstrip("\r\n").split(",")]


def _csv(path: Path, header: bool | None) -> Rows:
    with open(path, newline="") as f:
        first, second = f.readline(), f.readline()
    if not first.strip():
        raise DataError(f"{path}: the first line is empty; expected comma-separated values")
    fields = _fields(first)
    if header is None:
        # A header names columns that hold numbers below it; a first row of data
        # may hold text too (class labels), but so does the row after it.
        below = _fields(second) if second.strip() else [""] * len(fields)
        header = any(not _number(a) and (i >= len(below) or _finite(below[i]))
                     for i, a in enumerate(fields))
    columns = fields if header else None
    skip = int(header)

    def read(text: int | None) -> Iterator:
        if csv_engine() == "pyarrow":
            return _arrow_blocks(path, len(fields), skip, columns, text)
        return _csv_blocks(path, len(fields), skip, columns, text)
    return Rows(path, len(fields), columns, read, f"line {1 + skip}", text=True)


def _csv_blocks(path: Path, width: int, skip: int, columns: list[str] | None,
                text: int | None) -> Iterator:
    numeric = [c for c in range(width) if c != text]
    with open(path, newline="") as f:
        for _ in range(skip):
            f.readline()
        row = skip + 1  # the file's line number of the next line read
        while chunk := f.read(CSV_BLOCK_CHARS):
            if not chunk.endswith("\n"):
                chunk += f.readline()  # whole lines only
            block = _parse_or_name(chunk, row, width, path, columns, numeric, text)
            if len(block[0] if text is not None else block):
                yield block
            row += _line_count(chunk)


def _line_count(chunk: str) -> int:
    return chunk.count("\n") + (not chunk.endswith("\n"))  # the file's last may lack one


def _parse_or_name(chunk: str, first: int, width: int, path: Path, columns: list[str] | None,
                   numeric: list[int], text: int | None):
    """``_parse(chunk)``; where numpy refuses it (its words name no column), the chunk
    without its blank lines (numpy stops at lines of spaces, which carry nothing), and
    failing that a DataError naming the line and the field."""
    try:
        return _parse(chunk, width, numeric, text)
    except ValueError:
        pass
    lines = [line for line in chunk.splitlines(True) if line.strip()]
    if len(lines) < _line_count(chunk):
        with contextlib.suppress(ValueError):
            return _parse("".join(lines), width, numeric, text)
    _find_bad_field(chunk.splitlines(True), first, width, path, columns, numeric)  # raises


def csv_engine() -> str:
    """"pyarrow" where it is installed (the fast-csv extra) and DISTNN_CSV is not "numpy";
    else "numpy". Both give the same numbers, correctly rounded, and the same errors."""
    if os.environ.get("DISTNN_CSV", "") == "numpy":
        return "numpy"
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return "numpy"
    return "pyarrow"


def _arrow_blocks(path: Path, width: int, skip: int, columns: list[str] | None,
                  text: int | None) -> Iterator:
    """Arrow's multithreaded CSV reader, a block at a time. Anything it refuses is read
    again by numpy's, from where it stopped, which names the line and the column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    names = [f"c{i}" for i in range(width)]
    types = {n: pa.string() if i == text else pa.float64() for i, n in enumerate(names)}
    done, pending = 0, []  # rows yielded; batches not yet yielded
    try:
        # Arrow keeps some 35 blocks in flight: blocks of 1 MB bound its memory (and
        # parse as fast as larger ones); they are joined into blocks of BLOCK_ROWS.
        reader = csv.open_csv(
            path, read_options=csv.ReadOptions(column_names=names, skip_rows=skip,
                                               block_size=min(ARROW_BLOCK_BYTES,
                                                              CSV_BLOCK_CHARS)),
            convert_options=csv.ConvertOptions(column_types=types, null_values=[],
                                               strings_can_be_null=False))
        for batch in itertools.chain(reader, [None]):
            if batch is not None:
                numbers = np.column_stack([batch.column(i).to_numpy() for i in range(width)
                                           if i != text]) if width > (text is not None) \
                    else np.empty((batch.num_rows, 0))
                labels = None if text is None else pc.utf8_trim_whitespace(
                    batch.column(text)).to_numpy(zero_copy_only=False).astype(str)
                pending.append((numbers, labels))
                if sum(len(n) for n, _ in pending) < BLOCK_ROWS:
                    continue
            if not pending:
                break
            numbers = np.concatenate([n for n, _ in pending])
            block = numbers if text is None else \
                (numbers, np.concatenate([t for _, t in pending]))
            pending = []
            yield block
            done += len(numbers)
    except pa.ArrowInvalid:
        pass
    else:
        return
    for block in _csv_blocks(path, width, skip, columns, text):  # raises, naming the place
        rows = len(block[1] if text is not None else block)
        if done >= rows:
            done -= rows
            continue
        yield tuple(part[done:] for part in block) if text is not None else block[done:]
        done = 0


def _parse(chunk: str, width: int, numeric: list[int], text: int | None):
    """Whole lines of CSV to floats (b, width), or, with a ``text`` column, to (floats of
    the others, that column's stripped strings); ValueError if they are not that."""
    lines = io.StringIO(chunk)
    if text is None:
        block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
        if block.size and block.shape[1] != width:
            raise ValueError("another number of columns")
        return block if block.size else np.empty((0, width))
    block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, usecols=numeric)
    labels = np.loadtxt(io.StringIO(chunk), delimiter=",", dtype=str, usecols=[text],
                        ndmin=1, quotechar='"')
    # Every column is read by one of the two, so a short row fails in one of them; a
    # long row is seen in the count of commas.
    if chunk.count(",") != (width - 1) * len(labels) or len(block) != len(labels):
        raise ValueError("another number of columns")
    return block.reshape(len(labels), len(numeric)), np.char.strip(labels)


def _find_bad_field(lines: list[str], first: int, width: int, path: Path,
                    columns: list[str] | None, numeric: list[int]) -> None:
    """Raise DataError for the first line that is not ``width`` fields, numbers where
    ``numeric`` says."""
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split(",")
        if len(fields) != width:
            raise DataError(f"{path}: line {first + offset} has {len(fields)} fields, the "
                            f"first line {width}")
        for col in numeric:
            if not _number(fields[col]):
                raise DataError(f"{path}: line {first + offset}, column {_name(col, columns)}: "
                                f"{fields[col].strip()!r} is not a number")
    raise DataError(f"{path}: lines {first}..{first + len(lines) - 1} cannot be read as numbers")


def _name(col: int, columns: list[str] | None) -> str:
    return f"{col + 1} ({columns[col]})" if columns else str(col + 1)


def _check_finite(block: np.ndarray, path: Path, first: str, columns: list[str]) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        unit, number = first.split()
        raise DataError(f"{path}: {unit} {int(number) + row}, column {columns[col]}: "
                        f"{block[row, col]} is not a finite number")


def _as_rows(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    if array.dtype.kind not in "uifb":
        raise DataError(f"{path}: {what} holds {array.dtype}, not numbers")
    if array.ndim not in (1, 2) or 0 in array.shape:
        raise DataError(f"{path}: {what} has shape {array.shape}; expected rows of numbers, "
                        "(rows,) or (rows, columns)")
    return array if array.ndim == 2 else array.reshape(-1, 1)


def _npy(path: Path) -> Rows:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"{path}: holds Python objects or is not a .npy file ({err}); "
                        "refused: distnn never unpickles") from None
    array = _as_rows(array, path, "the array")
    return Rows(path, array.shape[1], None, lambda _: _slices(array), count=len(array))


def _slices(array) -> Iterator[np.ndarray]:
    for start in range(0, len(array), BLOCK_ROWS):
        yield np.asarray(array[start:start + BLOCK_ROWS], dtype=np.float64)


def _npz(path: Path, key: str | None) -> Rows:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path}: not a .npz file ({err})") from None
    names = [n.removesuffix(".npy") for n in archive.namelist()]
    if key is None and len(names) != 1:
        raise DataError(f"{path} holds {', '.join(names)}: name the array to read")
    key = names[0] if key is None else key
    if key not in names:
        raise DataError(f"{path} has no array {key!r}; it holds {', '.join(names)}")
    shape, dtype, _ = _npz_header(archive, path, key)
    width = 1 if len(shape) == 1 else shape[1]

    def read(_: int | None) -> Iterator[np.ndarray]:
        member = _npz_header(archive, path, key)[2]
        return _stream(member, shape[0], width, dtype)
    return Rows(path, width, None, read, count=shape[0])


def _npz_header(archive: zipfile.ZipFile, path: Path,
                key: str) -> tuple[tuple[int, ...], np.dtype, io.BufferedIOBase]:
    """The shape and dtype of an .npz member, and the member opened after its header."""
    member = archive.open(f"{key}.npy")
    version = np.lib.format.read_magic(member)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise DataError(f"{path}: array {key!r} has .npy format {version}; save it with "
                        "numpy.savez (format 1.0 or 2.0)")
    shape, fortran, dtype = read_header(member)
    if dtype.hasobject:
        raise DataError(f"{path}: array {key!r} holds Python objects; refused: distnn never "
                        "unpickles")
    if fortran and len(shape) == 2:
        raise DataError(f"{path}: array {key!r} is stored column by column (Fortran order); "
                        "save it with np.ascontiguousarray first")
    _as_rows(np.empty((1,) * len(shape), dtype), path, f"array {key!r}")
    if 0 in shape:
        raise DataError(f"{path}: array {key!r} has shape {shape}; expected rows of numbers")
    return shape, dtype, member


def _stream(member: io.BufferedIOBase, rows: int, width: int,
            dtype: np.dtype) -> Iterator[np.ndarray]:
    row_bytes = width * dtype.itemsize
    with member:
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            data = member.read(n * row_bytes)
            if len(data) != n * row_bytes:
                raise DataError(f"{member.name}: ends after {start + len(data) // row_bytes} "
                                f"of its {rows} rows")
            yield np.frombuffer(data, dtype).reshape(n, width).astype(np.float64)


def _hdf5(path: Path, dataset: str | None) -> Rows:
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        if dataset is None:
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                         else None)
            if len(found) != 1:
                raise DataError(f"{path} holds {len(found)} datasets: name the one to read")
            dataset = found[0]
        ds = f.get(dataset)
        if not isinstance(ds, h5py.Dataset):
            raise DataError(f"{path} has no dataset {dataset!r}")
        if ds.dtype.kind not in "uifb" or ds.ndim not in (1, 2) or 0 in ds.shape:
            raise DataError(f"{path}: /{dataset} is {ds.dtype} {ds.shape}; expected rows of "
                            "numbers")
        width, count = (1 if ds.ndim == 1 else ds.shape[1]), len(ds)
    return Rows(path, width, None, lambda _: _h5_slices(path, dataset, width), count=count)


def _h5_slices(path: Path, dataset: str, width: int) -> Iterator[np.ndarray]:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        for start in range(0, len(ds), BLOCK_ROWS):
            block = ds[start:start + BLOCK_ROWS].astype(np.float64)
            yield block.reshape(len(block), width)
