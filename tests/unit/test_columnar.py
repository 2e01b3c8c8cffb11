"""Parquet and Arrow files in (distnn.data.columnar): a table imports to the same file as the
same table written as CSV (numpy's parser, no Arrow in that path) and to the arrays it was
made from, in blocks of BLOCK_ROWS whatever the row groups or batches; every kind of bad
input is one line naming the row and the column."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest

import distnn.data.readers as readers
from distnn.data.__main__ import main as data_main
from distnn.data.errors import DataError
from distnn.data.imports import Layout, import_table
from distnn.data.csvfile import CsvFormat
from distnn.data.readers import open_rows
from distnn.data.store import describe

RNG = np.random.default_rng(11)
N = 300
A = RNG.integers(-50, 50, N)  # int64
B = RNG.normal(0, 1e3, N)  # float64
C = RNG.normal(0, 1, N).astype(np.float32)  # float32: read exactly as float64
D = RNG.random(N) < 0.3  # bool
SPECIES = np.array(["setosa", "versicolor", " virginica"])[RNG.choice(3, N, p=[.5, .3, .2])]
Y = np.column_stack([B * 2 + A, np.sin(C)])  # two regression targets
X = np.column_stack([A, B, C, D]).astype(np.float64)
FORMATS = ["parquet", "feather", "arrow-file", "arrow-stream"]


@pytest.fixture
def pa():
    return pytest.importorskip("pyarrow", reason="pyarrow is not installed (arrow extra)")


def write(pa, path, kind, columns, batch):
    """``columns`` (a dict of arrays) as a file of ``kind`` in row groups or record batches
    of ``batch`` rows."""
    import pyarrow.feather as feather
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq
    table = pa.table(columns)
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=batch)
    elif kind == "feather":  # lz4-compressed batches, Feather's default
        feather.write_feather(table, path, chunksize=batch)
    else:
        new = ipc.new_file if kind == "arrow-file" else ipc.new_stream
        with new(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=batch)
    return path


def suffix(kind):
    return {"arrow-file": ".arrow", "arrow-stream": ".arrows"}.get(kind, "." + kind)


def write_csv(path, header, *columns):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in zip(*columns):
            f.write(",".join(repr(float(v)) if not isinstance(v, str) else v
                             for v in row) + "\n")
    return path


def stored(path):
    """Every dataset and attribute of a table but the source's name and hash."""
    with h5py.File(path) as f:
        data = {}
        f.visititems(lambda name, obj: data.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: v for k, v in f.attrs.items() if k not in ("source", "source_sha256")}
    return data, attrs


def assert_same_tables(one, other):
    (data, attrs), (data2, attrs2) = stored(one), stored(other)
    assert sorted(data) == sorted(data2)
    for key in data:
        np.testing.assert_array_equal(data[key], data2[key], err_msg=key)
    assert attrs.keys() == attrs2.keys()
    for key in attrs:
        np.testing.assert_array_equal(attrs[key], attrs2[key], err_msg=key)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_ROWS", 64)
    monkeypatch.setenv("DISTNN_CSV", "numpy")  # the reference path has no Arrow in it


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("batch", [25, 150, N])  # smaller than a block, crossing, whole
@pytest.mark.parametrize("dictionary", [False, True])
def test_classification_as_the_same_table_in_csv(pa, tmp_path, small_blocks, kind, batch,
                                                 dictionary):
    labels = pa.array(SPECIES)
    path = write(pa, tmp_path / f"iris{suffix(kind)}", kind,
                 {"a": A, "b": B, "c": C, "d": D,
                  "species": labels.dictionary_encode() if dictionary else labels}, batch)
    csv = write_csv(tmp_path / "iris.csv", ["a", "b", "c", "d", "species"], A, B, C,
                    D.astype(int), SPECIES)
    for source, out in ((path, "columnar.h5"), (csv, "csv.h5")):
        import_table(source, tmp_path / out, task="classification",
                     layout=Layout(target=("species",)), test_fraction=0.2, seed=4)
    assert_same_tables(tmp_path / "columnar.h5", tmp_path / "csv.h5")
    data, _ = stored(tmp_path / "columnar.h5")
    names = sorted(set(np.char.strip(SPECIES)))  # labels stripped, as a CSV's are
    assert describe(tmp_path / "columnar.h5")["names"] == \
        {"classes": names, "features": ["a", "b", "c", "d"]}
    for split in ("train", "test"):  # and against the arrays themselves
        rows = data[f"{split}/source_row"]
        np.testing.assert_array_equal(data[f"{split}/features"], X[rows])
        np.testing.assert_array_equal(data[f"{split}/targets"],
                                      np.searchsorted(names, np.char.strip(SPECIES))[rows])
    np.testing.assert_array_equal(np.sort(np.concatenate(
        [data["train/source_row"], data["test/source_row"]])), np.arange(N))


@pytest.mark.parametrize("kind", ["parquet", "feather"])
def test_regression_with_two_targets_as_the_same_table_in_csv(pa, tmp_path, small_blocks,
                                                              kind):
    path = write(pa, tmp_path / f"runs{suffix(kind)}", kind,
                 {"a": A, "y1": Y[:, 0], "b": B, "c": C, "y2": Y[:, 1]}, 40)
    csv = write_csv(tmp_path / "runs.csv", ["a", "y1", "b", "c", "y2"], A, Y[:, 0], B, C,
                    Y[:, 1])
    for source, out in ((path, "columnar.h5"), (csv, "csv.h5")):
        import_table(source, tmp_path / out, task="regression",
                     layout=Layout(target=("y1", "y2")), seed=2)
    assert_same_tables(tmp_path / "columnar.h5", tmp_path / "csv.h5")
    data, _ = stored(tmp_path / "columnar.h5")
    rows = data["train/source_row"]
    np.testing.assert_array_equal(data["train/features"], X[rows, :3])
    np.testing.assert_array_equal(data["train/targets"], Y[rows])
    assert describe(tmp_path / "columnar.h5")["names"]["targets"] == ["y1", "y2"]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("batch", [7, 23, 60])
def test_blocks_are_block_rows_whatever_the_batches(pa, tmp_path, monkeypatch, kind, batch):
    monkeypatch.setattr(readers, "BLOCK_ROWS", 20)
    path = write(pa, tmp_path / f"x{suffix(kind)}", kind, {"a": A[:97], "b": B[:97]}, batch)
    rows = open_rows(path)
    sizes = [len(block) for block in rows.blocks()]
    assert sizes == [20, 20, 20, 20, 17]
    np.testing.assert_array_equal(np.concatenate(list(rows.blocks())), X[:97, :2])
    assert rows.columns == ["a", "b"] and rows.where(0) == "row 1"
    assert rows.count == (None if kind == "arrow-stream" else 97)


@pytest.mark.parametrize("kind", ["parquet", "arrow-file"])
def test_every_kind_of_number_as_numpy_converts_it(pa, tmp_path, kind):
    """Integers of any width (beyond 2**53 rounded to the nearest float, as from a CSV),
    floats of any width, booleans, decimals, a dictionary of numbers; text labels
    stripped, numbers as labels in their shortest form."""
    import decimal
    big = np.array([2**60 + 1, -(2**62) - 3, 7], np.int64)
    columns = {"i8": np.array([-128, 0, 127], np.int8), "u64": np.array([2**64 - 1, 0, 5],
                                                                        np.uint64),
               "big": big, "f16": np.array([0.1, -2, 65504], np.float16),
               "f32": np.array([0.1, 1e-40, 3e38], np.float32), "bool": [True, False, True],
               "dec": pa.array([decimal.Decimal("1.25"), decimal.Decimal("-3.5"),
                                decimal.Decimal("0")]),
               "cat": pa.array([3, 3, 10]).dictionary_encode(),
               "label": [" a", "b ", " c d "], "n": [1.0, 0.5, 3]}
    path = write(pa, tmp_path / f"t{suffix(kind)}", kind, columns, 2)
    rows = open_rows(path)
    ((numbers, labels),) = rows.blocks(text=rows.columns.index("label"))
    expect = np.column_stack([np.asarray(columns[k]).astype(np.float64) for k in
                              ("i8", "u64", "big", "f16", "f32", "bool")]
                             + [[1.25, -3.5, 0], [3, 3, 10], [1, 0.5, 3]])
    assert rows.columns[-1] == "n"
    np.testing.assert_array_equal(numbers, expect)
    assert labels.tolist() == ["a", "b", "c d"]
    path = write(pa, tmp_path / f"n{suffix(kind)}", kind, {"x": [1, 2, 3], "n": columns["n"]},
                 2)
    ((_, labels),) = open_rows(path).blocks(text=1)
    assert labels.tolist() == ["1", "0.5", "3"]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("column,row", [("b", 1), ("b", 57), ("species", 90)])
def test_a_null_is_one_line_naming_row_and_column(pa, tmp_path, monkeypatch, kind, column,
                                                  row):
    monkeypatch.setattr(readers, "BLOCK_ROWS", 16)
    b, species = B[:100].tolist(), SPECIES[:100].tolist()
    (b if column == "b" else species)[row - 1] = None
    if column == "b":
        b[row + 5] = None  # a later one, in the same block or the next: the first is named
    path = write(pa, tmp_path / f"n{suffix(kind)}", kind,
                 {"a": A[:100], "b": b, "species": species}, 30)
    number = {"b": "2 (b)", "species": "3 (species)"}[column]
    with pytest.raises(DataError) as failed:
        import_table(path, tmp_path / "t.h5", task="classification")
    assert str(failed.value) == (f"{path}: row {row}, column {number}: null (a missing value); "
                                 "leave such rows out with --missing drop")
    assert not (tmp_path / "t.h5").exists()


def test_nan_is_named_as_in_a_csv(pa, tmp_path):
    b = B[:10].copy()
    b[6] = np.nan
    path = write(pa, tmp_path / "nan.parquet", "parquet", {"a": A[:10], "b": b}, 4)
    with pytest.raises(DataError, match=r"nan.parquet: row 7, column 2 \(b\): a missing "
                                        r"value \(NaN\)"):
        list(open_rows(path).blocks())
    # ... and left out with --missing drop, a null too, each row keeping its number
    with_null = pa.array(b.tolist(), mask=np.arange(10) == 2)  # a null, not a NaN
    assert with_null.null_count == 1
    path = write(pa, tmp_path / "null.parquet", "parquet", {"a": A[:10], "b": with_null}, 4)
    rows = open_rows(path, fmt=CsvFormat(missing="drop"))
    blocks = list(rows.numbered())
    kept = np.concatenate([number for _, number in blocks])
    np.testing.assert_array_equal(kept, [0, 1, 3, 4, 5, 7, 8, 9])
    np.testing.assert_array_equal(np.concatenate([x for x, _ in blocks])[:, 0], A[kept])
    assert rows.dropped == 2


def test_columns_of_other_types_are_one_line(pa, tmp_path, capsys):
    import datetime
    when = [datetime.datetime(2026, 12, 7)] * 5
    path = write(pa, tmp_path / "t.parquet", "parquet",
                 {"a": A[:5], "when": pa.array(when, pa.timestamp("ms")), "y": B[:5]}, 5)
    assert data_main(["import", str(path), "--task", "regression", "--out",
                      str(tmp_path / "t.h5")]) == 1
    err = capsys.readouterr().err
    assert err == (f"distnn.data: error: {path}: column 2 (when) holds timestamp[ms]; distnn "
                   "reads numbers (integers, floats, booleans) and text class labels: convert "
                   "it, or leave it out\n")
    path = write(pa, tmp_path / "l.feather", "feather", {"v": [[1, 2]] * 5, "y": B[:5]}, 5)
    with pytest.raises(DataError, match=r"column 1 \(v\) holds list<item: int64>"):
        open_rows(path)
    path = write(pa, tmp_path / "s.feather", "feather",
                 {"a": A[:6], "s": SPECIES[:6], "y": B[:6]}, 5)
    with pytest.raises(DataError, match=r"column 2 \(s\) holds text; only the class labels"):
        import_table(path, tmp_path / "t.h5", task="regression")


@pytest.mark.filterwarnings("ignore:Feather V1 files are deprecated")
def test_what_is_not_such_a_file_is_one_line(pa, tmp_path):
    import pyarrow.feather as feather
    (tmp_path / "junk.parquet").write_bytes(b"a,b\n1,2\n")
    (tmp_path / "junk.arrow").write_bytes(b"a,b\n1,2\n")
    feather.write_feather(pa.table({"a": [1.0, 2.0]}), tmp_path / "v1.feather", version=1)
    for name, message in (("junk.parquet", "not a readable Parquet file"),
                          ("junk.arrow", "not a readable Arrow"),
                          ("v1.feather", "Feather version 1, which Arrow has deprecated")):
        with pytest.raises(DataError, match=message) as failed:
            open_rows(tmp_path / name)
        assert "\n" not in str(failed.value)


def test_a_file_cut_short_is_one_line(pa, tmp_path):
    path = write(pa, tmp_path / "cut.arrows", "arrow-stream", {"a": A, "b": B}, 50)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut.arrows: cannot be read after row \d+"):
        list(open_rows(path).blocks())


def test_the_index_pandas_stored_is_no_feature(pa, tmp_path):
    """pandas writes a DataFrame's index as a column and names it in its metadata: those
    are row labels (here the row numbers left after a filter), never a feature."""
    import pyarrow.parquet as pq
    table = pa.table({"a": A[:8], "y": B[:8], "__index_level_0__": np.arange(10, 18)})
    meta = b'{"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": []}'
    pq.write_table(table.replace_schema_metadata({b"pandas": meta}), tmp_path / "df.parquet")
    rows = open_rows(tmp_path / "df.parquet")
    assert rows.columns == ["a", "y"]
    np.testing.assert_array_equal(np.concatenate(list(rows.blocks())),
                                  np.column_stack([A[:8], B[:8]]))


def test_without_pyarrow_one_line_says_which_extra(tmp_path, monkeypatch, capsys):
    for module in ("pyarrow", "pyarrow.compute", "pyarrow.ipc", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)  # import pyarrow: ImportError
    for name in ("x.parquet", "x.feather"):
        (tmp_path / name).write_bytes(b"PAR1")
        assert data_main(["import", str(tmp_path / name), "--task", "regression", "--out",
                          str(tmp_path / "t.h5")]) == 1
        err = capsys.readouterr().err
        assert err == (f"distnn.data: error: {tmp_path / name}: reading Parquet, Feather and "
                       "Arrow files needs pyarrow: pip install 'distnn[arrow]' (pip install "
                       "-e '.[arrow]' in a checkout)\n")


@pytest.mark.parametrize("kind", ["parquet", "feather"])
def test_memory_is_a_row_group_not_the_file(pa, tmp_path, monkeypatch, kind):
    """Four times the row groups, the same Arrow memory at the peak (which tracemalloc does
    not see); Parquet's reader, by default, pre-buffers every row group asked for."""
    monkeypatch.setattr(readers, "BLOCK_ROWS", 4096)
    x = np.random.default_rng(0).random((20_000, 10))  # a row group: 1.6 MB
    peaks = []
    for groups in (8, 32):
        path = write(pa, tmp_path / f"{groups}{suffix(kind)}", kind,
                     {f"x{j}": np.tile(x[:, j], groups) for j in range(10)}, len(x))
        before, peak, rows = pa.total_allocated_bytes(), 0, 0
        for block in open_rows(path).blocks():
            peak, rows = max(peak, pa.total_allocated_bytes() - before), rows + len(block)
        assert rows == groups * len(x)
        peaks.append(peak)
    assert 0 < peaks[1] < 1.25 * peaks[0] and peaks[1] < 32 * x.nbytes / 8, peaks
