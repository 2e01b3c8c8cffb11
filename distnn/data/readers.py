"""Rows of numbers from a lab's own files, a block at a time: CSV (TSV), Parquet, Feather,
NumPy, HDF5.

    rows = open_rows("measurements.csv")          # or .tsv, .csv.gz, .npy, .npz (--key),
    rows.columns                                  # .h5 (--dataset); names from a header
    for block in rows.blocks():                   # float64 (b, n), b <= BLOCK_ROWS
        ...
    for numbers, labels in rows.blocks(text=4):   # a CSV's column 4 (from 0) as text:
        ...                                       # class labels such as "setosa"

Memory stays bounded by a block whatever the file's size: a CSV is parsed
a block of whole lines at a time (``distnn.data.csvfile``, which finds how the
file is written: delimiter, quotes, decimal mark, encoding), Parquet and
Feather a row group or record batch at a time (``distnn.data.columnar``), a .npy is
memory-mapped, an .npz member is streamed out of the zip, an HDF5 dataset is
read by slices. Bad input is one line naming the file, the row (counted from
1, as a person reading the file would) and the column: a value that is not a
number or not finite, a row with another number of fields. A missing value
(NaN, a null, or in a CSV an empty field, NA, ...) is such a line too, unless the rows
were opened with ``missing="drop"``: then its row is left out, and counted in
``Rows.dropped``. Every call of ``blocks()`` reads the file afresh from its
first row. A NumPy file that holds Python objects is refused, never unpickled
(``allow_pickle=False`` throughout).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from . import csvfile
from .csvfile import CsvFormat
from .errors import DataError
from .rows import Rows

BLOCK_ROWS = 1 << 16
KINDS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".tab": "csv", ".npy": "npy",
         ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5",
         ".parquet": "parquet", ".feather": "arrow", ".arrow": "arrow", ".arrows": "arrow"}
PLAIN = CsvFormat()  # everything found from the file; a missing value is an error
GZIPPED = (".csv", ".tsv", ".tab", ".txt")  # text that may come gzipped: rows.csv.gz


def kind_of(path: Path) -> str | None:
    """"csv", "npy", "npz", "hdf5" by the suffix (a text table's may end in .gz), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] == ".gz" and suffixes[-2] in GZIPPED:
        return "csv"
    return KINDS.get(path.suffix.lower())


def open_rows(path: str | Path, *, key: str | None = None, dataset: str | None = None,
              header: bool | None = None, fmt: CsvFormat = PLAIN) -> Rows:
    """The rows of ``path``, by its suffix: .csv/.txt/.tsv/.tab (or any of them .gz), .npy,
    .npz (member ``key``, or its only one), .h5/.hdf5 (``dataset``). ``header``: a CSV's
    first line names the columns (None: it does when one of its fields is not a number
    where the line after it has a number). ``fmt``: how a CSV is written, where the user
    says so, and what to do with missing values (any kind of file)."""
    path = Path(path)
    kind = kind_of(path)
    if kind is None:
        raise DataError(f"{path}: unknown kind of file; expected one of "
                        f"{', '.join(sorted(KINDS))} (text ones may be .gz)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    problem = fmt.problem()
    if problem:
        raise DataError(problem)
    if kind == "csv":
        return _csv(path, header, fmt)
    if kind in ("parquet", "arrow"):
        from .columnar import open_columnar  # imported here: pyarrow only where it is used
        rows = open_columnar(path, kind, BLOCK_ROWS)
    else:
        rows = _npy(path) if kind == "npy" else _npz(path, key) if kind == "npz" else \
            _hdf5(path, dataset)
    rows.missing = fmt.missing
    return rows


def _csv(path: Path, header: bool | None, fmt: CsvFormat) -> Rows:
    dialect = csvfile.sniff(path, fmt, header)
    skip = int(dialect.header is not None)

    def read(text: int | None, use: list[int]) -> Iterator:
        if csvfile.engine() == "pyarrow":
            return csvfile.arrow_blocks(path, dialect, skip, dialect.header, text, use,
                                        fmt.missing, BLOCK_ROWS)
        return csvfile.numpy_blocks(path, dialect, skip, dialect.header, text, use, fmt.missing)
    return Rows(path, dialect.width, dialect.header, read, f"line {1 + skip}", text=True,
                missing=fmt.missing, dialect=dialect.describe())


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
    return Rows(path, array.shape[1], None, lambda _, use: _slices(array, use), count=len(array))


def _slices(array, use: list[int]) -> Iterator[np.ndarray]:
    for start in range(0, len(array), BLOCK_ROWS):
        yield _columns(np.asarray(array[start:start + BLOCK_ROWS], dtype=np.float64), use)


def _columns(block: np.ndarray, use: list[int]) -> np.ndarray:
    return block if use == list(range(block.shape[1])) else block[:, use]


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

    def read(_: int | None, use: list[int]) -> Iterator[np.ndarray]:
        member = _npz_header(archive, path, key)[2]
        return (_columns(block, use) for block in _stream(member, shape[0], width, dtype))
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
    return Rows(path, width, None,
                lambda _, use: (_columns(b, use) for b in _h5_slices(path, dataset, width)),
                count=count)


def _h5_slices(path: Path, dataset: str, width: int) -> Iterator[np.ndarray]:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        for start in range(0, len(ds), BLOCK_ROWS):
            block = ds[start:start + BLOCK_ROWS].astype(np.float64)
            yield block.reshape(len(block), width)
