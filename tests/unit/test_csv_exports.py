"""A table as other tools export it (Excel, R, pandas, TSV, European semicolons, gzip) imports
to the same arrays and class names as the plain CSV, under both parsers; what cannot be
read is one line. The files are written here with the standard library's csv, byte by byte
as those tools write them, never with distnn's code."""

from __future__ import annotations

import csv
import gzip
import io

import h5py
import numpy as np
import pytest

import distnn.data.csvfile as csvfile
from distnn.data.__main__ import main as data_main

RNG = np.random.default_rng(11)
N = 60
X = np.round(RNG.normal(0, 1, (N, 4)) * [1, 10, 0.1, 100] + [13, 100, 2, -50], 4)
X[3, 2] = 1.5e-05  # an exponent
NAMES = ["Barbera, \"vecchio\"", "Grignolino", "Nebbiolo é"]  # a comma, quotes, an accent
CLASS = RNG.choice(3, N)
FEATURES = ["alcohol", "magnesium", "malic acid", "proline"]
HEADER = ["cultivar", *FEATURES]


def rows(decimal: str = ".", index: bool = False) -> list[list[str]]:
    out = []
    for i in range(N):
        numbers = [repr(float(v)).replace(".", decimal) for v in X[i]]
        out.append(([str(i + 1)] if index else []) + [NAMES[CLASS[i]], *numbers])
    return out


def write(path, text: str, encoding: str = "utf-8", bom: bool = False) -> None:
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def table(delimiter=",", quoting=csv.QUOTE_MINIMAL, newline="\n", decimal=".",
          index=False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    writer.writerow(([""] if index else []) + HEADER)
    writer.writerows(rows(decimal, index))
    return out.getvalue()


def r_write_csv() -> str:
    """R's write.csv(df): row names first, under "", every string and name in quotes,
    numbers bare, a quote inside doubled."""
    def q(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'
    lines = [",".join(q(h) for h in ["", *HEADER])]
    lines += [",".join([q(r[0]), q(r[1]), *r[2:]]) for r in rows(index=True)]
    return "\n".join(lines) + "\n"


EXPORTS = {  # name: (file, its bytes, options a user gives)
    "plain": ("plain.csv", lambda p: write(p, table()), []),
    "excel-utf8": ("excel.csv", lambda p: write(p, table(newline="\r\n"), bom=True), []),
    "excel-cp1252": ("excel-ansi.csv",
                     lambda p: write(p, table(newline="\r\n"), encoding="cp1252"),
                     ["--encoding", "cp1252"]),
    "r-write-csv": ("r.csv", lambda p: write(p, r_write_csv()), []),
    "pandas-quote-all": ("pandas.csv",
                         lambda p: write(p, table(quoting=csv.QUOTE_ALL, index=True)), []),
    "tsv": ("table.tsv", lambda p: write(p, table(delimiter="\t")), []),
    "semicolon-decimal-comma": ("europe.csv",
                                lambda p: write(p, table(delimiter=";", decimal=",",
                                                         newline="\r\n")), []),
    "gzip": ("plain.csv.gz", lambda p: write(p, table()), []),
    "tsv-gzip": ("table.tsv.gz", lambda p: write(p, table(delimiter="\t")), []),
}


def imported(tmp_path, name: str, *options: str) -> dict[str, np.ndarray]:
    file, make, given = EXPORTS[name]
    path = tmp_path / file
    make(path)
    out = tmp_path / f"{name}.h5"
    assert data_main(["import", str(path), "--out", str(out), "--task", "classification",
                      "--target", "cultivar", "--seed", "2", *given, *options]) == 0
    with h5py.File(out) as f:
        return {key: f[key][()] for key in
                ("train/features", "train/targets", "train/source_row", "test/features",
                 "test/targets", "test/source_row", "names/classes", "names/features")}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_every_export_imports_to_the_table_itself(tmp_path, name, csv_engine, capsys):
    stored = imported(tmp_path, name)
    classes = sorted(NAMES)  # classes are numbered in sorted order of their names
    assert [c.decode() for c in stored["names/classes"]] == classes
    assert [c.decode() for c in stored["names/features"]] == FEATURES
    number = np.array([classes.index(NAMES[k]) for k in CLASS])
    for split in ("train", "test"):
        source = stored[f"{split}/source_row"]
        np.testing.assert_array_equal(stored[f"{split}/features"], X[source])
        np.testing.assert_array_equal(stored[f"{split}/targets"], number[source])
    assert len(stored["train/source_row"]) + len(stored["test/source_row"]) == N
    said = capsys.readouterr().out
    if name in ("r-write-csv", "pandas-quote-all"):
        assert "first column has no name" in said


def test_every_export_is_split_alike(tmp_path, csv_engine):
    """The same rows, so the same seeded split and order as the plain CSV's."""
    plain = imported(tmp_path, "plain")
    for name in ("excel-cp1252", "pandas-quote-all", "semicolon-decimal-comma"):
        other = imported(tmp_path, name)
        for key in plain:
            np.testing.assert_array_equal(other[key], plain[key], err_msg=f"{name}: {key}")


def test_the_dialect_is_found_and_can_be_given(tmp_path, csv_engine, capsys):
    imported(tmp_path, "semicolon-decimal-comma")
    assert "semicolon-separated, decimal comma, a header line" in capsys.readouterr().out
    # Given wrongly, the numbers are not numbers: one line that names the cure.
    path = tmp_path / "europe.csv"
    assert data_main(["import", str(path), "--out", str(tmp_path / "x.h5"), "--task",
                      "classification", "--target", "cultivar", "--decimal", ".", "--header"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a number; for decimal commas, give --decimal ," \
        in err, err
    # A one-column file with a delimiter the guess does not know: named with --delimiter.
    path = tmp_path / "colon.csv"
    path.write_text("a:b:y\n" + "".join(f"{i}:{i * 2}:{i % 2}\n" for i in range(30)))
    assert data_main(["import", str(path), "--out", str(tmp_path / "c.h5"), "--task",
                      "classification", "--delimiter", ":"]) == 0


@pytest.mark.parametrize("text,message", [
    ("a,b,y\n1,2,0\n3,,1\n", "line 3, column 2 (b): a missing value (an empty field); leave "
                             "such rows out with --missing drop"),
    ("a,b,y\n1,2,0\n3,NA,1\n", "line 3, column 2 (b): a missing value ('NA')"),
    ("a,b,y\n1,2,0\n3,NaN,1\n", "line 3, column 2 (b): a missing value (NaN)"),
    ("a,b,a\n1,2,0\n", "the header names 'a' more than once"),
    ("a,b,y\n1,\"2\n5\",0\n3,4,1\n", "line 2 holds a line break inside quotes"),
    ("a;b;y\n1.5;2,5;0\n", "line 2, column 2 (b): '2,5' is not a number; for decimal commas"),
])
def test_what_cannot_be_read_is_one_line(tmp_path, capsys, csv_engine, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with open(path, "a") as f:
        f.write("".join(f"{i},{i},{i % 2}\n" for i in range(3)).replace(
            ",", ";" if ";" in text else ","))
    assert data_main(["import", str(path), "--out", str(tmp_path / "t.h5"), "--task",
                      "regression"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "t.h5").exists()


def test_bytes_that_are_not_text_are_one_line_naming_the_byte(tmp_path, capsys, csv_engine):
    path = tmp_path / "random.csv"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert data_main(["import", str(path), "--out", str(tmp_path / "t.h5"), "--task",
                      "regression"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is 0x" in err and "not utf-8-sig text" in err, err
    # cp1252 text read as UTF-8: the first é, at its byte offset, is named.
    text = "a,b,y\n" + "1,2,0\n" * 200_000 + "1,2,Nebbiolo é\n"  # past the first MiB
    (tmp_path / "ansi.csv").write_bytes(text.encode("cp1252"))
    assert data_main(["import", str(tmp_path / "ansi.csv"), "--out", str(tmp_path / "t.h5"),
                      "--task", "classification"]) == 1
    err = capsys.readouterr().err
    assert f"byte {len(text.encode('cp1252')) - 2} is 0xe9" in err and "--encoding" in err, err


def test_missing_values_dropped_and_counted(tmp_path, capsys, csv_engine, monkeypatch):
    """--missing drop leaves out exactly the rows with a missing value, keeps each row's
    number in the source, and says how many; in every block, not just the first."""
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 64)
    values = np.arange(40.0).reshape(20, 2)
    gone = [2, 7, 8, 15, 19]
    tokens = ["", "NA", "NaN", "NULL", "#N/A"]
    lines = ["a,b,y"]
    for i, (a, b) in enumerate(values.tolist()):
        field = tokens[gone.index(i)] if i in gone else repr(b)
        lines.append(f"{a!r},{field},{['x', 'y'][i % 2]}")
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "t.h5"
    assert data_main(["import", str(path), "--out", str(out), "--task", "classification",
                      "--missing", "drop", "--test-fraction", "0.3"]) == 0
    assert "5 row(s) with a missing value left out" in capsys.readouterr().out
    with h5py.File(out) as f:
        source = np.concatenate([f["train/source_row"][()], f["test/source_row"][()]])
        features = np.concatenate([f["train/features"][()], f["test/features"][()]])
    kept = [i for i in range(20) if i not in gone]
    np.testing.assert_array_equal(np.sort(source), kept)
    np.testing.assert_array_equal(features, values[source])


def test_a_test_file_with_its_columns_in_another_order_is_read_by_name(tmp_path, csv_engine):
    """--test FILE whose columns come in another order: its features are taken by name."""
    EXPORTS["plain"][1](tmp_path / "train.csv")
    columns = ["proline", "cultivar", "alcohol", "malic acid", "magnesium"]
    order = [HEADER.index(c) for c in columns]
    with open(tmp_path / "test.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[row[i] for i in order] for row in rows()[:10]])
    out = tmp_path / "t.h5"
    assert data_main(["import", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                      "--out", str(out), "--task", "classification", "--target", "cultivar"]) == 0
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["test/features"][()], X[:10])
