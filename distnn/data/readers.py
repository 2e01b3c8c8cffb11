"""Rows of numbers from a lab's own files, a block at a time: CSV, NumPy (.npy, .npz), HDF5.

    rows = open_rows("measurements.csv")          # or .npy, .npz (--key), .h5 (--dataset)
    rows.columns                                  # names from a CSV header, else None
    for block in rows.blocks():                   # float64 (b, n), b <= BLOCK_ROWS
        ...

Memory stays bounded by a block whatever the file's size: a CSV is parsed
BLOCK_ROWS lines at a time (numpy's C parser), a .npy is memory-mapped, an
.npz member is streamed out of the zip, an HDF5 dataset is read by slices.
Bad input is one line naming the file, the row (counted from 1, as a person
reading the file would) and the column: a value that is not a number or not
finite, a row with another number of fields. A NumPy file that holds Python
objects is refused, never unpickled (``allow_pickle=False`` throughout).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from .errors import DataError

BLOCK_ROWS = 1 << 16
KINDS = {".csv": "csv", ".txt": "csv", ".npy": "npy", ".npz": "npz", ".h5": "hdf5",
         ".hdf5": "hdf5", ".hdf": "hdf5"}


class Rows:
    """A file's rows: ``columns`` (names, if the file has them), ``blocks()`` of floats."""

    def __init__(self, path: Path, n_columns: int, columns: list[str] | None,
                 blocks: Iterator[np.ndarray], first: str = "row 1") -> None:
        self.path, self.n_columns, self.columns, self._blocks = path, n_columns, columns, blocks
        self._unit, number = first.split()
        self._first = int(number)  # how a reader counts the first row: "row 1", "line 2"

    def blocks(self) -> Iterator[np.ndarray]:
        """float64 blocks (b, n_columns), in the file's order, each checked finite."""
        first = self._first
        for block in self._blocks:
            _check_finite(block, self.path, f"{self._unit} {first}", self.columns)
            first += len(block)
            yield block


def open_rows(path: str | Path, *, key: str | None = None, dataset: str | None = None,
              header: bool | None = None) -> Rows:
    """The rows of ``path``, by its suffix: .csv/.txt, .npy, .npz (member ``key``, or its
    only one), .h5/.hdf5 (``dataset``). ``header``: a CSV's first line names the
    columns (None: it does when a field of it is not a number)."""
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
    return _hdf5(path, dataset)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv(path: Path, header: bool | None) -> Rows:
    with open(path, newline="") as f:
        first = f.readline()
    fields = [x.strip() for x in first.rstrip("\r\n").split(",")]
    if not first.strip():
        raise DataError(f"{path}: the first line is empty; expected comma-separated numbers")
    named = not all(map(_number, fields)) if header is None else header
    columns = fields if named else None
    return Rows(path, len(fields), columns, _csv_blocks(path, len(fields), int(named), columns),
                f"line {1 + int(named)}")


def _csv_blocks(path: Path, width: int, skip: int,
                columns: list[str] | None) -> Iterator[np.ndarray]:
    with open(path, newline="") as f:
        for _ in range(skip):
            f.readline()
        row = skip + 1  # the file's line number of the next line read
        while True:
            lines = [line for line in (f.readline() for _ in range(BLOCK_ROWS)) if line]
            lines_read = len(lines)
            lines = [line for line in lines if line.strip()]  # blank lines carry nothing
            if not lines:
                return
            try:
                block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError:
                _find_bad_field(lines, row, width, path, columns)
                raise  # _find_bad_field always raises; numpy's own words are the fallback
            if block.shape[1] != width:
                _find_bad_field(lines, row, width, path, columns)
            yield block
            row += lines_read


def _find_bad_field(lines: list[str], first: int, width: int, path: Path,
                    columns: list[str] | None) -> None:
    """Raise DataError for the first line that is not ``width`` numbers."""
    for offset, line in enumerate(lines):
        fields = line.rstrip("\r\n").split(",")
        if len(fields) != width:
            raise DataError(f"{path}: line {first + offset} has {len(fields)} fields, the "
                            f"first line {width}")
        for col, text in enumerate(fields):
            if not _number(text):
                raise DataError(f"{path}: line {first + offset}, column {_name(col, columns)}: "
                                f"{text.strip()!r} is not a number")
    raise DataError(f"{path}: lines {first}..{first + len(lines) - 1} cannot be read as numbers")


def _name(col: int, columns: list[str] | None) -> str:
    return f"{col + 1} ({columns[col]})" if columns else str(col + 1)


def _check_finite(block: np.ndarray, path: Path, first: str, columns: list[str] | None) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        unit, number = first.split()
        raise DataError(f"{path}: {unit} {int(number) + row}, column {_name(col, columns)}: "
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
    return Rows(path, array.shape[1], None, _slices(array))


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
    width = 1 if len(shape) == 1 else shape[1]
    return Rows(path, width, None, _stream(member, shape[0], width, dtype))


def _stream(member: io.BufferedIOBase, rows: int, width: int,
            dtype: np.dtype) -> Iterator[np.ndarray]:
    row_bytes = width * dtype.itemsize
    for start in range(0, rows, BLOCK_ROWS):
        n = min(BLOCK_ROWS, rows - start)
        data = member.read(n * row_bytes)
        if len(data) != n * row_bytes:
            raise DataError(f"{member.name}: ends after {start + len(data) // row_bytes} of its "
                            f"{rows} rows")
        yield np.frombuffer(data, dtype).reshape(n, width).astype(np.float64)


def _hdf5(path: Path, dataset: str | None) -> Rows:
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
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
        raise DataError(f"{path}: /{dataset} is {ds.dtype} {ds.shape}; expected rows of numbers")
    width = 1 if ds.ndim == 1 else ds.shape[1]
    return Rows(path, width, None, _h5_slices(f, ds, width))


def _h5_slices(f: h5py.File, ds: h5py.Dataset, width: int) -> Iterator[np.ndarray]:
    with f:
        for start in range(0, len(ds), BLOCK_ROWS):
            block = ds[start:start + BLOCK_ROWS].astype(np.float64)
            yield block.reshape(len(block), width)
