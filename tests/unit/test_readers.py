"""A lab's files in (distnn.data.readers): what is read back equals what was saved, in blocks,
and each kind of bad input is one line naming the row and the column."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import distnn.data.csvfile as csvfile
import distnn.data.readers as readers
from distnn.data.errors import DataError
from distnn.data.readers import open_rows

ROWS = np.random.default_rng(0).normal(0, 1e3, (23, 3))


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch, csv_engine):
    monkeypatch.setattr(readers, "BLOCK_ROWS", 5)  # 23 rows: blocks of 5, and a last of 3
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 100)  # a CSV: 4 or 5 of these lines


def read_all(path, **options) -> np.ndarray:
    rows = open_rows(path, **options)
    blocks = list(rows.blocks())
    assert max(len(b) for b in blocks) <= 5  # never more than a block in memory
    assert len(blocks) >= 5
    return np.concatenate(blocks)


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, header):
    path = tmp_path / "rows.csv"
    np.savetxt(path, ROWS, delimiter=",", fmt="%.17g", header="a,b,c" if header else "",
               comments="")
    if not header:  # savetxt writes an empty first line for an empty header
        path.write_text(path.read_text().lstrip("\n"))
    np.testing.assert_array_equal(read_all(path), ROWS)
    assert open_rows(path).columns == (["a", "b", "c"] if header else None)


def test_numpy_and_hdf5_round_trips(tmp_path):
    np.save(tmp_path / "a.npy", ROWS)
    np.savez_compressed(tmp_path / "a.npz", x=ROWS, other=np.zeros(2))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["group/x"] = ROWS.astype(np.float32)
        f["y"] = np.arange(23)
    np.testing.assert_array_equal(read_all(tmp_path / "a.npy"), ROWS)
    np.testing.assert_array_equal(read_all(tmp_path / "a.npz", key="x"), ROWS)
    np.testing.assert_array_equal(read_all(tmp_path / "a.h5", dataset="group/x"),
                                  ROWS.astype(np.float32))
    np.testing.assert_array_equal(read_all(tmp_path / "a.h5", dataset="y")[:, 0], np.arange(23))


@pytest.mark.parametrize("text,message", [
    ("a,b\n1,2\n3,x7\n", "line 3, column 2 (b): 'x7' is not a number"),
    ("1,2\n3,4\n5\n", "line 3 has 1 fields, the first line 2"),
    ("1,2\n3,4,5\n", "line 2 has 3 fields, the first line 2"),
    ("a,b\n1,2\n" + "3,4\n" * 6 + "5,nan\n",
     "line 9, column 2 (b): a missing value (NaN); leave such rows out with --missing drop"),
    ("1,inf\n", "line 1, column 2: inf is not a finite number"),
])
def test_bad_csv_is_one_line_naming_row_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError) as failed:
        read_all(path)
    assert str(failed.value) == f"{path}: {message}"


def test_a_bad_line_after_good_blocks_is_named_and_no_row_comes_twice(tmp_path):
    """Arrow hands what it refuses to numpy, which goes on from where Arrow stopped."""
    good = "".join(f"{i},{2 * i}\n" for i in range(300))
    path = tmp_path / "late.csv"
    path.write_text(good + "  \n" + good + "7,x\n")  # a line of spaces, then a bad one
    rows = open_rows(path)
    blocks = []
    with pytest.raises(DataError, match=r"line 602, column 2: 'x' is not a number"):
        for block in rows.blocks():
            blocks.append(block)
    np.testing.assert_array_equal(np.concatenate(blocks)[:, 0],
                                  np.tile(np.arange(300), 2)[:len(np.concatenate(blocks))])
    path.write_text(good + "  \n" + good)
    np.testing.assert_array_equal(np.concatenate(list(open_rows(path).blocks()))[:, 0],
                                  np.tile(np.arange(300), 2))


def test_a_numpy_file_of_python_objects_is_refused_and_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "unpickled"), "w"))

    np.save(tmp_path / "obj.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", x=np.array([Boom()], dtype=object))
    assert not (tmp_path / "unpickled").exists()  # saving pickles Boom; loading would run it
    for name in ("obj.npy", "obj.npz"):
        with pytest.raises(DataError, match="Python objects.*never unpickles"):
            read_all(tmp_path / name)
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("name,options,message", [
    ("rows.xlsx", {}, "unknown kind of file"),
    ("a.h5", {}, "holds 2 datasets: name the one to read"),
    ("a.h5", {"dataset": "nope"}, "has no dataset 'nope'"),
    ("a.npz", {}, "holds x, y: name the array to read"),
    ("s.npy", {}, "has shape (); expected rows of numbers"),
])
def test_what_cannot_be_read_as_rows_is_one_line(tmp_path, name, options, message):
    (tmp_path / "rows.xlsx").write_text("")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"], f["y"] = ROWS, ROWS
    np.savez(tmp_path / "a.npz", x=ROWS, y=ROWS)
    np.save(tmp_path / "s.npy", np.float64(3))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_all(tmp_path / name, **options)


def test_a_good_csv_is_parsed_once(tmp_path, monkeypatch, csv_engine):
    """numpy's reader takes over only where Arrow refuses a line: a good file, read by
    Arrow to its end, is never parsed a second time."""
    path = tmp_path / "good.csv"
    np.savetxt(path, ROWS, delimiter=",", fmt="%.17g")
    if csv_engine == "pyarrow":
        monkeypatch.setattr(csvfile, "numpy_blocks", lambda *_: pytest.fail("parsed twice"))
    np.testing.assert_array_equal(read_all(path), ROWS)


def test_a_nan_after_the_first_block_is_named_on_its_own_line(tmp_path):
    """A NaN on line 62 of a CSV (a header, then 60 rows) and on row 38 of a .npy, each
    some blocks in: named where a person finds it."""
    rows = np.arange(120.0).reshape(60, 2)
    text = "a,b\n" + "".join(f"{a:g},{b:g}\n" for a, b in rows) + "1,nan\n"
    (tmp_path / "late.csv").write_text(text)
    with pytest.raises(DataError, match=r"late\.csv: line 62, column 2 \(b\): a missing value"):
        read_all(tmp_path / "late.csv")
    rows[37, 1] = np.nan
    np.save(tmp_path / "late.npy", rows)
    with pytest.raises(DataError, match=r"late\.npy: row 38, column 2: a missing value"):
        read_all(tmp_path / "late.npy")
