"""CSV as other tools write it: the dialect found from the file, the rows parsed a block at a time.

Excel, R, pandas and a lab's instruments all write "CSV", and no two alike:
a byte-order mark and CRLF (Excel's "CSV UTF-8"), cp1252 (Excel's plain
"CSV"), every string quoted, header included (R's ``write.csv``, pandas'
``QUOTE_ALL``), tabs (``.tsv``, ``.tab``), semicolons with decimal commas
(``14,23``: many European locales), gzip (``.csv.gz``). The rules are RFC
4180's: a field in double quotes may hold the delimiter, and a doubled quote
stands for one.

``sniff`` reads the file's first lines with the standard library's ``csv``
and settles a ``Dialect``: the delimiter (given, from the suffix, or the one of
comma, semicolon, tab and pipe that cuts every sampled line into the same
number of fields, most of them numbers), the decimal mark (a comma only where
the delimiter is not one and the sample's numbers use commas and never
points), whether the first line is a header, and its names. The rows are then
parsed by numpy's ``loadtxt`` or Arrow's CSV reader with the same dialect (no
field is split by hand), and both give the same numbers and the same one-line
errors: what Arrow refuses is read again by numpy from where Arrow stopped, and
numpy's failures are named by ``_find_bad_field``, which reads the lines with
``csv`` as a person would. A row must be one line: a quoted line break is
refused in one line, since error messages count lines. Text that is not in the
file's encoding is one line naming the byte.

Missing values (an empty field, NA, NaN, NULL, ...) are one line naming the
line and the column, or, with ``missing="drop"``, read as NaN and left out with
their rows by ``rows.Rows``, which counts them.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import gzip
import io
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .rows import MISSING, column_name

CSV_BLOCK_CHARS = 1 << 24  # numpy parses 16 MB of whole lines at a time
ARROW_BLOCK_BYTES = 1 << 20  # Arrow, 1 MB at a time, joined into blocks of rows
SAMPLE_LINES = 20  # lines read to settle the dialect
DELIMITERS = (",", ";", "\t", "|")
TABS = (".tsv", ".tab")
MISSING_CHOICES = ("error", "drop")
_COMMA_DECIMAL = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")
_POINT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True)
class CsvFormat:
    """How a text table is written, as the user gives it; None: found from the file."""
    delimiter: str | None = None
    decimal: str | None = None
    encoding: str | None = None  # None: UTF-8, with or without a byte-order mark
    missing: str = "error"  # "drop": rows with a missing value are left out, and counted

    def problem(self) -> str | None:
        """Why these options cannot describe a file, or None."""
        if self.delimiter is not None and len(self.delimiter) != 1:
            return f"--delimiter must be one character (\\t for a tab), got {self.delimiter!r}"
        if self.decimal not in (None, ".", ","):
            return f"--decimal must be . or , got {self.decimal!r}"
        if self.decimal == "," and self.delimiter == ",":
            return "--decimal , needs another delimiter than the comma (--delimiter ';')"
        if self.missing not in MISSING_CHOICES:
            return f"--missing must be one of {', '.join(MISSING_CHOICES)}, got {self.missing!r}"
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                return f"--encoding {self.encoding!r} is not an encoding Python knows"
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """How a CSV is written, where it cannot be told from the file; missing values. Shared
    by import and ``distnn.predict``."""
    text = parser.add_argument_group(
        "text tables", "  How a CSV (or .tsv, .csv.gz) is written is found from its first "
        "lines:\n  the delimiter, the decimal mark, whether the first line is a header.\n"
        "  Give them where that guess is wrong. Fields may be quoted (\"a, b\"), as\n"
        "  RFC 4180 has it; a UTF-8 byte-order mark and CRLF line ends are fine.")
    header = text.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the first line names the columns (default: guessed; a "
                             "header of numbers, such as wavelengths, needs --header)")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the first line is a row of data")
    text.add_argument("--delimiter", type=_delimiter_option, metavar="CHAR",
                      help="what separates fields: , ; | or tab (default: found from the "
                           "file; a .tsv or .tab file, tab)")
    text.add_argument("--decimal", choices=(".", ","),
                      help="the decimal mark: , as in 14,23 (default: found from the file, a "
                           "comma only where the delimiter is not one and no number has a "
                           "point)")
    text.add_argument("--encoding", metavar="NAME",
                      help="the text's encoding, e.g. cp1252 for Excel's plain \"CSV\" export "
                           "or latin-1 (default: UTF-8, with or without a byte-order mark)")
    text.add_argument("--missing", choices=MISSING_CHOICES, default="error",
                      help="what to do with a row that misses a value (an empty field, NA, "
                           "NaN, NULL, ...): error names its line and column; drop leaves "
                           "such rows out, and says how many (default: error)")


def _delimiter_option(text: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
             "space": " "}
    value = named.get(text.lower(), text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"one character, or tab, comma, semicolon, pipe: "
                                         f"got {text!r}")
    return value


def from_arguments(args: argparse.Namespace) -> CsvFormat:
    """The CsvFormat that ``add_arguments`` parsed."""
    return CsvFormat(delimiter=args.delimiter, decimal=args.decimal, encoding=args.encoding,
                     missing=args.missing)


@dataclass(frozen=True)
class Dialect:
    """What ``sniff`` settled for one file."""
    delimiter: str
    decimal: str
    encoding: str
    header: list[str] | None  # the first line's names, if it is a header
    width: int  # fields in a row

    def describe(self) -> str:
        """"semicolon-separated, decimal comma, cp1252, a header line", for the import's line."""
        name = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(
            self.delimiter, repr(self.delimiter))
        parts = [f"{name}-separated"]
        if self.decimal == ",":
            parts.append("decimal comma")
        if self.encoding not in ("utf-8-sig", "utf-8"):
            parts.append(self.encoding)
        parts.append("a header line" if self.header else "no header line")
        return ", ".join(parts)


def compressed(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def open_text(path: Path, encoding: str) -> io.TextIOBase:
    """``path`` as text with universal line ends kept (``newline=""``), gunzipped if .gz."""
    if compressed(path):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _number(text: str, decimal: str = ".") -> bool:
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(text: str, decimal: str) -> bool:
    return _number(text, decimal) and bool(np.isfinite(float(text.replace(",", "."))))


def sniff(path: Path, fmt: CsvFormat, header: bool | None) -> Dialect:
    """The dialect of ``path``: the options the user gave, the rest found from its lines."""
    encoding = fmt.encoding or "utf-8-sig"  # a byte-order mark, if any, is not the data's
    with decoding(path, encoding), open_text(path, encoding) as f:
        sample = list(itertools.islice(f, SAMPLE_LINES + 1))
    try:
        return _settle(path, fmt, header, sample, encoding)
    except csv.Error as err:  # a NUL byte, say: not a text table
        raise DataError(f"{path}: not a delimited text table ({err})") from None


def _settle(path: Path, fmt: CsvFormat, header: bool | None, sample: list[str],
            encoding: str) -> Dialect:
    complete = sample[:SAMPLE_LINES] if len(sample) > SAMPLE_LINES else sample
    lines = [line for line in complete if line.strip()]
    if not lines or not sample[0].strip():
        raise DataError(f"{path}: the first line is empty; expected delimited values")
    suffix = path.suffixes[-2] if compressed(path) and len(path.suffixes) > 1 else path.suffix
    delimiter = fmt.delimiter or ("\t" if suffix.lower() in TABS else _delimiter(lines))
    rows = [[field.strip() for field in row] for row in
            csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True)]
    width = len(rows[0])
    decimal = fmt.decimal or _decimal(rows[1:], delimiter)
    if header is None:
        # A header names columns that hold numbers below it; a first row of data
        # may hold text too (class labels), but so does the row after it.
        below = rows[1] if len(rows) > 1 else [""] * width
        header = any(not _number(a, decimal) and (i >= len(below) or _finite(below[i], decimal))
                     for i, a in enumerate(rows[0]))
    names = rows[0] if header else None
    if names:
        twice = sorted({n for n in names if names.count(n) > 1 and n})
        if twice:
            raise DataError(f"{path}: the header names {', '.join(map(repr, twice))} more than "
                            "once; give every column a name of its own")
    return Dialect(delimiter, decimal, encoding, names, width)


def _delimiter(lines: list[str]) -> str:
    """Of the usual delimiters, the one that cuts every line into as many fields, most of
    them numbers (then the most fields; then the comma first)."""
    def score(d: str) -> tuple[bool, int, int]:
        rows = list(csv.reader(lines, delimiter=d, quotechar='"'))
        same = len({len(r) for r in rows}) == 1 and len(rows[0]) > 1
        numbers = sum(_number(x.strip(), ".") or _number(x.strip(), ",")
                      for row in rows[1:] or rows for x in row)
        return same, numbers, len(rows[0])
    return max(DELIMITERS, key=score)  # max keeps the first of equals: the comma


def _decimal(rows: list[list[str]], delimiter: str) -> str:
    """"," where the delimiter is not a comma and the sample's numbers have decimal commas
    and no decimal points; else ".". """
    if delimiter == ",":
        return "."
    fields = [x for row in rows for x in row]
    commas = sum(bool(_COMMA_DECIMAL.match(x)) for x in fields)
    points = sum(bool(_POINT_DECIMAL.match(x)) for x in fields)
    return "," if commas and not points else "."


@contextlib.contextmanager
def decoding(path: Path, encoding: str) -> Iterator[None]:
    """Text that is not in ``encoding`` as one line naming its first bad byte."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(_bad_byte(path, encoding)) from None


def _bad_byte(path: Path, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    opener = gzip.open if compressed(path) else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # The decoder may hold back the start of a character from the chunk before.
                at = offset + err.start - len(decoder.getstate()[0])
                byte = err.object[err.start]
                where = " (in the gunzipped text)" if compressed(path) else ""
                return (f"{path}: byte {at}{where} is 0x{byte:02x}, not {encoding} text; give "
                        f"the file's encoding with --encoding (Excel's plain CSV is cp1252), "
                        f"or check that it is a CSV file")
            offset += len(chunk)
    return f"{path}: not {encoding} text"


def numpy_blocks(path: Path, dialect: Dialect, skip: int, columns: list[str] | None,
                 text: int | None, numeric: list[int], missing: str) -> Iterator:
    """numpy's parser, CSV_BLOCK_CHARS of whole lines at a time: the ``numeric`` columns
    as numbers, in that order, and the ``text`` column, if any, as text."""
    with decoding(path, dialect.encoding), open_text(path, dialect.encoding) as f:
        for _ in range(skip):
            f.readline()
        row = skip + 1  # the file's line number of the next line read
        while chunk := f.read(CSV_BLOCK_CHARS):
            if not chunk.endswith("\n"):
                chunk += f.readline()  # whole lines only
            block = _parse_or_name(chunk, row, dialect, path, columns, numeric, text, missing)
            if len(block[0] if text is not None else block):
                yield block
            row += _line_count(chunk)


def _line_count(chunk: str) -> int:
    return chunk.count("\n") + (not chunk.endswith("\n"))  # the file's last may lack one


def _parse_or_name(chunk: str, first: int, dialect: Dialect, path: Path,
                   columns: list[str] | None, numeric: list[int], text: int | None,
                   missing: str):
    """``_parse(chunk)``; where numpy refuses it (its words name no column), the chunk
    without its blank lines (numpy stops at lines of spaces, which carry nothing), or
    with its missing values as NaN (``missing`` "drop"), and failing that a DataError
    naming the line and the field."""
    with contextlib.suppress(ValueError):
        return _parse(chunk, dialect, numeric, text)
    lines = [line for line in chunk.splitlines(True) if line.strip()]
    if len(lines) < _line_count(chunk):
        chunk = "".join(lines)
        with contextlib.suppress(ValueError):
            return _parse(chunk, dialect, numeric, text)
    if missing == "drop":
        with contextlib.suppress(ValueError):
            return _parse(_missing_as_nan(chunk, dialect, numeric), dialect, numeric, text)
    _find_bad_field(chunk.splitlines(True), first, dialect, path, columns, numeric)  # raises


def _missing_as_nan(chunk: str, dialect: Dialect, numeric: list[int]) -> str:
    """The chunk with every missing number written as nan (its rows are dropped later)."""
    d = dialect.delimiter
    out = io.StringIO()
    writer = csv.writer(out, delimiter=d, quotechar='"', lineterminator="\n")
    for row in csv.reader(io.StringIO(chunk), delimiter=d, quotechar='"'):
        writer.writerow([("nan" if c in numeric and x.strip() in MISSING else x)
                         for c, x in enumerate(row)])
    return out.getvalue()


def _parse(chunk: str, dialect: Dialect, numeric: list[int], text: int | None):
    """Whole lines of CSV to floats (b, width), or, with a ``text`` column, to (floats of
    the others, that column's stripped strings); ValueError if they are not that."""
    d, width = dialect.delimiter, dialect.width
    numbers = chunk.replace(",", ".") if dialect.decimal == "," else chunk
    options = {"delimiter": d, "quotechar": '"', "dtype": np.float64, "ndmin": 2}
    if text is None and numeric == list(range(width)):  # every column: numpy checks widths
        block = np.loadtxt(io.StringIO(numbers), **options)
        if block.size and block.shape[1] != width:
            raise ValueError("another number of columns")
        return block if block.size else np.empty((0, width))
    block = np.loadtxt(io.StringIO(numbers), usecols=numeric, **options) if numeric else None
    labels = None if text is None else np.loadtxt(
        io.StringIO(chunk), delimiter=d, dtype=str, usecols=[text], ndmin=1, quotechar='"')
    # A short row fails in one of the two reads; a long row (or a column that is read by
    # neither) is seen in the count of delimiters, or of fields where quotes may hide
    # delimiters; a row over two lines in the count of rows.
    rows = len(block) if block is not None else len(labels)
    if '"' in chunk:
        fields = list(csv.reader(io.StringIO(chunk), delimiter=d, quotechar='"'))
        fields = [r for r in fields if r and any(x.strip() for x in r)]
        if any(len(r) != width for r in fields) or len(fields) != rows or \
                (labels is not None and any("\n" in x or "\r" in x for x in labels)):
            raise ValueError("another number of columns")
    elif chunk.count(d) != (width - 1) * rows:
        raise ValueError("another number of columns")
    block = np.empty((rows, 0)) if block is None else block.reshape(rows, len(numeric))
    if labels is None:
        return block
    if len(labels) != rows:
        raise ValueError("another number of columns")
    return block, np.char.strip(labels)


def _find_bad_field(lines: list[str], first: int, dialect: Dialect, path: Path,
                    columns: list[str] | None, numeric: list[int]) -> None:
    """Raise DataError for the first line that is not ``width`` fields, numbers where
    ``numeric`` says, read as a person would: with ``csv``."""
    width, text = dialect.width, "".join(lines)
    reader = csv.reader(io.StringIO(text), delimiter=dialect.delimiter, quotechar='"')
    line = first
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataError(f"{path}: line {line}: {err}") from None
        where, line = line, first + reader.line_num  # the row's first line; the next row's
        if line - where > 1:
            raise DataError(f"{path}: line {where} holds a line break inside quotes; distnn "
                            "reads a row a line: remove the line breaks inside fields")
        if not any(x.strip() for x in fields):
            continue
        if len(fields) != width:
            raise DataError(f"{path}: line {where} has {len(fields)} fields, the first line "
                            f"{width}" + _delimiter_hint(dialect))
        for col in numeric:
            value, place = fields[col].strip(), f"{path}: line {where}, column " \
                f"{column_name(col, columns)}"
            if value in MISSING:
                shown = f"{value!r}" if value else "an empty field"
                raise DataError(f"{place}: a missing value ({shown}); leave such rows out with "
                                "--missing drop")
            if not _number(value, dialect.decimal):
                hint = "; for decimal commas, give --decimal ," if dialect.decimal == "." and \
                    _number(value, ",") else ""
                raise DataError(f"{place}: {value!r} is not a number{hint}")
    raise DataError(f"{path}: lines {first}..{first + len(lines) - 1} cannot be read as numbers")


def _delimiter_hint(dialect: Dialect) -> str:
    if dialect.width == 1:  # no delimiter found in the first line
        return (f" (read as {dialect.describe().split(',')[0]}: name the delimiter with "
                "--delimiter if that is wrong)")
    return ""


def engine() -> str:
    """"pyarrow" where it is installed (the arrow extra) and DISTNN_CSV is not "numpy";
    else "numpy". Both give the same numbers, correctly rounded, and the same errors."""
    if os.environ.get("DISTNN_CSV", "") == "numpy":
        return "numpy"
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return "numpy"
    return "pyarrow"


def arrow_blocks(path: Path, dialect: Dialect, skip: int, columns: list[str] | None,
                 text: int | None, numeric: list[int], missing: str,
                 block_rows: int) -> Iterator:
    """Arrow's multithreaded CSV reader, joined into blocks of ``block_rows``. Anything it
    refuses is read again by numpy's, from where it stopped, which names the line and
    the column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as arrow_csv

    names = [f"c{i}" for i in range(dialect.width)]
    read = [*numeric, *([] if text is None else [text])]
    types = {names[i]: pa.string() if i == text else pa.float64() for i in read}
    drop = missing == "drop"
    done, pending = 0, []  # rows yielded; batches not yet yielded
    try:
        # Arrow keeps some 35 blocks in flight: blocks of 1 MB bound its memory (and
        # parse as fast as larger ones). Its own UTF-8 path skips a byte-order mark.
        encoding = "utf8" if dialect.encoding in ("utf-8-sig", "utf-8") else dialect.encoding
        reader = arrow_csv.open_csv(
            path,
            read_options=arrow_csv.ReadOptions(
                column_names=names, skip_rows=skip, encoding=encoding,
                block_size=min(ARROW_BLOCK_BYTES, CSV_BLOCK_CHARS)),
            parse_options=arrow_csv.ParseOptions(delimiter=dialect.delimiter, quote_char='"',
                                                 double_quote=True),
            convert_options=arrow_csv.ConvertOptions(
                column_types=types, include_columns=[names[i] for i in read],
                decimal_point=dialect.decimal,
                null_values=list(MISSING) if drop else [], strings_can_be_null=drop,
                quoted_strings_can_be_null=drop))
        for batch in itertools.chain(reader, [None]):
            if batch is not None:
                numbers = [_floats(batch.column(names[i])) for i in numeric]
                labels = None
                if text is not None:
                    column = pc.utf8_trim_whitespace(pc.fill_null(batch.column(names[text]),
                                                                  ""))
                    if pc.any(pc.match_substring_regex(column, "[\r\n]")).as_py():
                        break  # a row over two lines: numpy's reader names it
                    labels = column.to_numpy(zero_copy_only=False).astype(str)
                pending.append((batch.num_rows, numbers, labels))
                if sum(n for n, _, _ in pending) < block_rows:
                    continue
            if not pending:
                return
            numbers = _joined([(n, columns) for n, columns, _ in pending], len(numeric))
            block = numbers if text is None else \
                (numbers, np.concatenate([t for _, _, t in pending]))
            pending = []
            yield block
            done += len(numbers)
        else:
            return  # all read: numpy's reader is for what Arrow refuses, never a second parse
    except pa.ArrowInvalid:
        pass
    # From where Arrow stopped: numpy's reader raises, naming the place.
    for block in numpy_blocks(path, dialect, skip, columns, text, numeric, missing):
        rows = len(block[1] if text is not None else block)
        if done >= rows:
            done -= rows
            continue
        yield tuple(part[done:] for part in block) if text is not None else block[done:]
        done = 0


def _floats(column) -> np.ndarray:
    """An Arrow float64 array as numpy's, NaN where it is null: a view of its buffer where
    none is (``Array.to_numpy`` would import pandas where it is installed: a third of a
    second at each start)."""
    validity, values = column.buffers()
    numbers = np.frombuffer(values, np.float64, len(column), column.offset * 8)
    if column.null_count:
        valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
        numbers = np.where(valid[column.offset:column.offset + len(column)], numbers, np.nan)
    return numbers


def _joined(batches: list[tuple[int, list[np.ndarray]]], width: int) -> np.ndarray:
    """Batches of (rows, ``width`` columns) as one block (rows, width), each value copied
    once (not stacked, then joined)."""
    block = np.empty((sum(n for n, _ in batches), width))
    start = 0
    for n, columns in batches:
        for j, column in enumerate(columns):
            block[start:start + n, j] = column
        start += n
    return block
