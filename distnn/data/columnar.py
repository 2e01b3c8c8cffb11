"""Rows of a Parquet or Arrow file (Feather v2, Arrow IPC file or stream), a block at a time.

    rows = open_rows("runs.parquet")              # readers.open_rows, by the suffix
    rows.columns                                  # the schema's names: --target NAME
    for block in rows.blocks():                   # float64 (b, n), b <= readers.BLOCK_ROWS
        ...
    for numbers, labels in rows.blocks(text=4):   # column 4 (from 0) as stripped strings
        ...

A column of integers, floats, booleans or decimals is read as float64 (an
integer beyond 2**53 rounds, as it does from a CSV); a column of strings, or a
dictionary (categorical) one, may be the class labels of a classification and
nothing else. Any other type (a timestamp, a list, bytes, ...) is refused when
the file is opened, naming the column: every column but the targets is a
feature, so it could not be left out quietly. The index that pandas stores as a
column of its own (``__index_level_0__``, or a named index; the schema's
"pandas" metadata lists them) is row labels, not a feature, and is left out.

Memory stays bounded by a row group or a record batch whatever the file's size,
never the whole table: a Parquet file is read ``ParquetFile.iter_batches`` at a
time, in batches of BLOCK_ROWS, with pyarrow's pre-buffering off (it would read
every row group asked for, the whole file, first); an Arrow file a record
batch at a time (``get_batch(i)``), a stream as its batches come. A batch is cut into
pieces of at most BLOCK_ROWS rows before it becomes numpy, and small batches are
joined into blocks of BLOCK_ROWS. A writer's single batch of a whole compressed
file still has to be decompressed whole: that one is the writer's choice.

Bad input is one line naming the file, the row (from 1) and the column, as the
CSV reader's is: a null (missing value), NaN or infinity in a column read as
numbers; a text column where numbers are needed. Feather version 1 is refused
with the way out (Arrow has deprecated it, and reads it whole). pyarrow is the
``arrow`` extra; without it, one line saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .rows import Rows
from .errors import DataError

FEATHER_V1 = b"FEA1"
IPC_FILE = b"ARROW1"


def open_columnar(path: Path, kind: str, block_rows: int) -> Rows:
    """The rows of a Parquet (``kind`` "parquet") or Arrow IPC ("arrow") file, in blocks
    of ``block_rows``."""
    pa = _pyarrow(path)
    schema, count, batches = _parquet(path, block_rows) if kind == "parquet" else _ipc(path)
    index = _pandas_index(schema)
    keep = [i for i, name in enumerate(schema.names) if name not in index]
    if not keep:
        raise DataError(f"{path}: holds no columns")
    kinds = [_kind(pa, schema.field(i).type) for i in keep]

    def read(text: int | None, use: list[int]) -> Iterator:
        for j in use:
            if kinds[j] == "text":
                raise DataError(f"{path}: column {rows.name(j)} holds text; only the class "
                                "labels of --task classification may: features and "
                                "regression targets are numbers")
        return _blocks(path, _guarded(path, batches()), keep, rows.name, text, use,
                       rows.missing == "drop", block_rows)
    rows = Rows(path, len(keep), [schema.names[i] for i in keep], read, "row 1",
                count=count, text=True)
    for j, (i, kind_j) in enumerate(zip(keep, kinds)):
        if kind_j is None:
            raise DataError(f"{path}: column {rows.name(j)} holds {schema.field(i).type}; "
                            "distnn reads numbers (integers, floats, booleans) and text class "
                            "labels: convert it, or leave it out")
    return rows


def _pyarrow(path: Path):
    """pyarrow, or the one line that says which extra brings it."""
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError(f"{path}: reading Parquet, Feather and Arrow files needs pyarrow: "
                        "pip install 'distnn[arrow]' (pip install -e '.[arrow]' in a "
                        "checkout)") from None
    return pyarrow


def _parquet(path: Path, block_rows: int) -> tuple:
    """(schema, rows, a function that starts the batches) of a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def opened():
        # pre_buffer (pyarrow's default) would read every row group asked for, the
        # whole file, before the first batch: a row group at a time instead.
        return pq.ParquetFile(path, pre_buffer=False)
    try:
        with opened() as file:
            schema, count = file.schema_arrow, file.metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None

    def batches() -> Iterator:
        with opened() as file:  # decoded a block of rows at a time
            yield from file.iter_batches(batch_size=block_rows)
    return schema, count, batches


def _ipc(path: Path) -> tuple:
    """(schema, rows or None, a function that starts the batches) of an Arrow IPC file
    (Feather v2 is one) or stream."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    with open(path, "rb") as f:
        magic = f.read(len(IPC_FILE))
    if magic.startswith(FEATHER_V1):
        raise DataError(f"{path}: Feather version 1, which Arrow has deprecated; write it "
                        "again as version 2 (pyarrow.feather.write_feather's default)")
    # Read, not memory-mapped: a batch's pages would stay resident, and count as this
    # process's memory, until the kernel needed them back.
    open_ = ipc.open_file if magic == IPC_FILE else ipc.open_stream
    try:
        with pa.OSFile(str(path)) as f:
            reader = open_(f)
            count = reader.count_rows() if magic == IPC_FILE and \
                hasattr(reader, "count_rows") else None  # pyarrow >= 15; a stream: unknown
            schema = reader.schema
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Arrow (Feather) file ({err})") from None

    def batches() -> Iterator:
        with pa.OSFile(str(path)) as f:
            reader = open_(f)
            if magic != IPC_FILE:
                yield from reader
                return
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
    return schema, count, batches


def _pandas_index(schema) -> set[str]:
    """The columns pandas wrote for a DataFrame's index (a RangeIndex is metadata only)."""
    try:
        meta = schema.pandas_metadata or {}
    except ValueError:  # metadata that is not JSON: not pandas'
        return set()
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def _kind(pa, type_) -> str | None:
    """"number", "text" (class labels only) or None (neither) for an Arrow type."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if (pa.types.is_integer(type_) or pa.types.is_floating(type_)
            or pa.types.is_boolean(type_) or pa.types.is_decimal(type_)):
        return "number"
    string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or string_view(type_):
        return "text"
    return None


def _guarded(path: Path, batches: Iterator) -> Iterator:
    """The batches; a file Arrow cannot read on (cut short, corrupt) as one line."""
    import pyarrow as pa
    rows = 0
    try:
        for batch in batches:
            yield batch
            rows += batch.num_rows
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: cannot be read after row {rows} ({err})") from None


def _blocks(path: Path, batches: Iterator, keep: list[int], name: Callable[[int], str],
            text: int | None, use: list[int], drop: bool, block_rows: int) -> Iterator:
    """Blocks of ``block_rows`` (the last fewer): float64 (b, len(use)) of the columns
    ``use`` (of ``keep``, from 0), or with ``text`` (numbers, labels (b,)) pairs. A null is an
    error, or with ``drop`` a NaN (a number) or "None" (a label), which ``Rows`` drops."""
    numeric = [keep[j] for j in use]
    label = None if text is None else keep[text]
    pending, held = [], 0  # pieces (numbers, labels) not yet yielded, and their rows
    first = 0  # the file's row (from 0) of the next piece
    for batch in batches:
        for start in range(0, batch.num_rows, block_rows):
            piece = batch.slice(start, block_rows)
            if not drop:
                _refuse_nulls(piece, keep, name, first, path)
            pending.append((_numbers(piece, numeric),
                            None if label is None else _labels(piece.column(label))))
            held += piece.num_rows
            first += piece.num_rows
            if held >= block_rows:
                block = _joined(pending)
                rest = tuple(None if a is None else a[block_rows:] for a in block)
                pending = [rest] if held > block_rows else []
                held -= block_rows
                yield _shaped(tuple(None if a is None else a[:block_rows]
                                    for a in block))
    if held:
        yield _shaped(_joined(pending))


def _joined(pending: list[tuple]) -> tuple:
    return tuple(None if parts[0] is None else np.concatenate(parts)
                 for parts in zip(*pending))


def _shaped(block: tuple):
    numbers, labels = block
    return numbers if labels is None else (numbers, labels)


def _refuse_nulls(piece, keep: list[int], name: Callable[[int], str], first: int,
                  path: Path) -> None:
    """A DataError naming the first null (row from 1, column) of the piece."""
    rows = [(int(np.argmax(piece.column(i).is_null().to_numpy(zero_copy_only=False))), j)
            for j, i in enumerate(keep) if piece.column(i).null_count]
    if rows:
        row, j = min(rows)
        raise DataError(f"{path}: row {first + row + 1}, column {name(j)}: null (a missing "
                        "value); leave such rows out with --missing drop")


def _numbers(piece, columns: list[int]) -> np.ndarray:
    """The piece's ``columns`` as float64 (b, len(columns))."""
    import pyarrow as pa
    import pyarrow.compute as pc
    numbers = np.empty((piece.num_rows, len(columns)))
    for j, i in enumerate(columns):
        column = piece.column(i)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        # safe=False: an integer beyond 2**53 rounds to the nearest float, as a CSV's does
        numbers[:, j] = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return numbers


def _labels(column) -> np.ndarray:
    """A column's values as stripped strings (b,): text as it is, numbers as Arrow
    writes them ("3", "0.5"), which ``labels.canonical`` reads as a CSV's."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.utf8_trim_whitespace(column).to_numpy(zero_copy_only=False).astype(str)

