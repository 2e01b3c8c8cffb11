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

A NumPy or HDF5 array of images, (N, H, W) or (N, C, H, W), is read as N rows
of its pixels, flattened in C order a block of images at a time, and says its
``image_shape``; an array of other dimensions, or with a dimension of 0, is one
line.
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


def _row_shape(shape: tuple[int, ...], dtype: np.dtype, path: Path,
               what: str) -> tuple[int, ...] | None:
    """The image shape of an array's rows, (H, W) or (C, H, W), or None for rows of a
    table; an array whose rows are neither, or are not numbers, is one line."""
    if dtype.kind not in "uifb":
        raise DataError(f"{path}: {what} holds {dtype}, not numbers")
    if len(shape) not in (1, 2, 3, 4) or 0 in shape:
        raise DataError(f"{path}: {what} has shape {tuple(shape)}; expected rows of numbers, "
                        "(rows,) or (rows, columns), or images, (rows, height, width) or "
                        "(rows, channels, height, width)")
    return tuple(int(n) for n in shape[1:]) if len(shape) > 2 else None


def _width(shape: tuple[int, ...]) -> int:
    """Numbers a row: an image's pixels (C H W), a table's columns, or 1."""
    return int(np.prod(shape[1:], dtype=np.int64))


def _npy(path: Path) -> Rows:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"{path}: holds Python objects or is not a .npy file ({err}); "
                        "refused: distnn never unpickles") from None
    image_shape = _row_shape(array.shape, array.dtype, path, "the array")
    width = _width(array.shape)
    return Rows(path, width, None, lambda _, use: _slices(array, width, use), count=len(array),
                image_shape=image_shape, dtype=array.dtype)


def _slices(array, width: int, use: list[int]) -> Iterator[np.ndarray]:
    # A block of the memory map at a time, flattened in C order whatever the file's
    # order: a Fortran-ordered image array is read as rows too, never whole.
    for start in range(0, len(array), BLOCK_ROWS):
        block = np.asarray(array[start:start + BLOCK_ROWS], dtype=np.float64)
        yield _columns(block.reshape(len(block), width), use)


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
    width = _width(shape)

    def read(_: int | None, use: list[int]) -> Iterator[np.ndarray]:
        member = _npz_header(archive, path, key)[2]
        return (_columns(block, use) for block in _stream(member, shape[0], width, dtype))
    return Rows(path, width, None, read, count=shape[0],
                image_shape=_row_shape(shape, dtype, path, f"array {key!r}"), dtype=dtype)


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
    _row_shape(shape, dtype, path, f"array {key!r}")
    if fortran and len(shape) >= 2:  # its bytes are not rows: streamed, they cannot be read
        raise DataError(f"{path}: array {key!r} is stored column by column (Fortran order); "
                        "save it with np.ascontiguousarray first")
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
        image_shape = _row_shape(ds.shape, ds.dtype, path, f"/{dataset.lstrip('/')}")
        width, count, dtype = _width(ds.shape), len(ds), ds.dtype
    return Rows(path, width, None,
                lambda _, use: (_columns(b, use) for b in _h5_slices(path, dataset, width)),
                count=count, image_shape=image_shape, dtype=dtype)


def _h5_slices(path: Path, dataset: str, width: int) -> Iterator[np.ndarray]:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        for start in range(0, len(ds), BLOCK_ROWS):
            block = ds[start:start + BLOCK_ROWS].astype(np.float64)
            yield block.reshape(len(block), width)
