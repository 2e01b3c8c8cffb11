"""A file's rows as a reader gives them: names, blocks of floats, and where each row is.

``Rows`` is what every reader of ``distnn.data.readers`` returns (CSV, Parquet,
Feather, NumPy, HDF5): the columns' names where the file has them, and
``blocks()`` of float64 rows, each checked finite, or with a text column (class
labels) beside them. Rows with a missing value are an error naming the row and
the column, or, where the file was opened with ``missing="drop"``, left out and
counted (``dropped``), each kept row keeping its number in the data
(``numbered``). How a person finds a row ("line 12" of a CSV, "row 11") and a
column ("3 (pressure)", or in an image "17 (pixel [2, 4])") is said here once, for
every reader's errors.

An array of images, (N, H, W) or (N, C, H, W), is read as rows of its pixels,
each image flattened in C order (channel by channel, then row by row), and keeps
its ``image_shape``, (H, W) or (C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import DataError

# What tools write for a value that is not there (R, pandas, Excel, SQL exports).
MISSING = ("", "NA", "N/A", "#N/A", "NaN", "nan", "NULL", "null", "None")


class Rows:
    """A file's rows: ``columns`` (names, if the file has them), ``blocks()`` of floats."""

    def __init__(self, path: Path, n_columns: int, columns: list[str] | None,
                 read: Callable[[int | None, list[int]], Iterator], first: str = "row 1",
                 count: int | None = None, text: bool = False, missing: str = "error",
                 dialect: str = "", image_shape: tuple[int, ...] | None = None,
                 dtype: np.dtype | None = None) -> None:
        self.path, self.n_columns, self.columns, self._read = path, n_columns, columns, read
        self.image_shape = image_shape  # (H, W) or (C, H, W) of each row; None: a table
        self.dtype = dtype  # the numbers' dtype where the file says (NumPy, HDF5), else None
        self.count = count  # rows, where the file says so without being read (not a CSV)
        self.text = text  # whether a column may hold text (class labels): a CSV's may
        self.missing = missing  # "error", or "drop": rows with a missing value left out
        self.dialect = dialect  # how a CSV was found to be written, for people
        self.dropped = 0  # rows left out by the last read, for a missing value
        self._unit, number = first.split()
        self._first = int(number)  # how a reader counts the first row: "row 1", "line 2"

    def where(self, row: int) -> str:
        """How a person finds row ``row`` (from 0) of the data: "line 12", "row 11"."""
        return f"{self._unit} {self._first + row}"

    def name(self, col: int) -> str:
        """Column ``col`` (from 0) as a person names it: "3 (pressure)", "3", or in an
        image "17 (pixel [2, 4])", the pixel's index in the image counted from 0."""
        if self.image_shape:
            return f"{col + 1} (pixel {[int(i) for i in np.unravel_index(col, self.image_shape)]})"
        return column_name(col, self.columns)

    def blocks(self, text: int | None = None, use: list[int] | None = None) -> Iterator:
        """float64 blocks (b, n_columns), in the file's order, each checked finite.

        With ``text`` (a column, from 0, of a file whose ``text`` is true), (numbers,
        labels) pairs instead: the other columns as numbers (b, n_columns - 1) and that
        column's fields as stripped strings (b,). With ``use``, only those columns as
        numbers, in that order (b, len(use)): the others are not even parsed."""
        for block, _ in self.numbered(text, use):
            yield block

    def numbered(self, text: int | None = None,
                 use: list[int] | None = None) -> Iterator[tuple[object, np.ndarray]]:
        """(block, the number of each of its rows in the data, from 0): as ``blocks``,
        and where rows with a missing value are dropped, which ones are left."""
        if text is not None and not self.text:
            raise DataError(f"{self.path}: only a CSV, Parquet or Feather file holds text "
                            "labels")
        use = [c for c in range(self.n_columns) if c != text] if use is None else use
        columns = [self.name(c) for c in use]
        start, self.dropped = 0, 0
        for block in self._read(text, use):
            numbers = block if text is None else block[0]
            rows = np.arange(start, start + len(numbers))
            start += len(numbers)
            if self.missing == "drop":
                gone = np.isnan(numbers).any(axis=1)
                if text is not None:
                    gone |= np.isin(block[1], MISSING)
                if gone.any():
                    numbers, rows = numbers[~gone], rows[~gone]
                    block = numbers if text is None else (numbers, block[1][~gone])
                    self.dropped += int(gone.sum())
            _check_finite(numbers, rows, self, columns)
            yield block, rows


def column(spec: str, rows: Rows, purpose: str) -> int:
    """A column named by its header name or its number (from 1), from 0; ``purpose``
    says what for in the error ("to predict")."""
    if rows.columns and spec in rows.columns:
        return rows.columns.index(spec)
    if spec.isdigit() and 1 <= int(spec) <= rows.n_columns:
        return int(spec) - 1
    has = (f"its columns are {', '.join(rows.columns)}" if rows.columns else
           f"it has {rows.n_columns} columns, numbered from 1")
    raise DataError(f"{rows.path}: no column {spec!r} {purpose}; {has}")


def column_name(col: int, columns: list[str] | None) -> str:
    """Column ``col`` (from 0) as a person names it: "3 (pressure)", or "3"."""
    return f"{col + 1} ({columns[col]})" if columns else str(col + 1)


def _check_finite(block: np.ndarray, rows: np.ndarray, where: Rows,
                  columns: list[str]) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = block[row, col]
        what = "a missing value (NaN); leave such rows out with --missing drop" \
            if np.isnan(value) else f"{value} is not a finite number"
        raise DataError(f"{where.path}: {where.where(int(rows[row]))}, column {columns[col]}: "
                        f"{what}")


