"""Predictions take a rows file's columns by name (python -m distnn.predict): in any order,
with the target and an id still in the file, the same predictions as on the features alone,
bitwise; a missing feature is one line; without names, by position as before."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from distnn.comm import SerialComm
from distnn.data.__main__ import main as data_main
from distnn.predict import main as predict
from distnn.protocol import EXIT_USAGE
from distnn.train import main as train

RNG = np.random.default_rng(5)
FEATURES = ["alcohol", "ash", "colour", "hue", "proline"]
N = 200
X = RNG.normal(0, 1, (N, 5)) * [1, 0.3, 2, 0.2, 300] + [13, 2.4, 5, 1, 750]
CLASS = np.array(["Barolo", "Grignolino", "Barbera, old"])[
    np.argmax((X[:, [0, 2, 4]] - [13, 5, 750]) / [1, 2, 300] + RNG.normal(0, 0.3, (N, 3)),
              axis=1)]
COMMON = ["--batch-size", "16", "--warmup-epochs", "0", "--no-progress", "--commit-every", "0",
          "--epochs", "2", "--hidden", "8"]


def write_csv(path, columns: list[str], rows: slice = slice(None), header: bool = True):
    table = {name: X[rows, i] for i, name in enumerate(FEATURES)}
    table["cultivar"] = CLASS[rows]
    table["id"] = np.array([f"wine-{i}" for i in range(N)])[rows]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(columns)
        writer.writerows(zip(*(table[c].tolist() for c in columns)))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    where = tmp_path_factory.mktemp("by-name")
    source = write_csv(where / "wine.csv", ["cultivar", *FEATURES], slice(0, 150))
    assert data_main(["import", str(source), "--out", str(where / "wine.h5"), "--task",
                      "classification", "--target", "cultivar"]) == 0
    assert train(["--data", str(where / "wine.h5"), "--checkpoint", str(where / "c.h5"),
                  *COMMON], SerialComm()) == 0
    return where / "c.h5"


def predicted(checkpoint, rows, out, *options) -> list[str]:
    assert predict([str(checkpoint), str(rows), "--out", str(out), *options]) == 0
    return out.read_text().splitlines()


def test_shuffled_columns_with_target_and_id_predict_as_the_features_alone(model, tmp_path,
                                                                            capsys):
    test = slice(150, N)
    plain = predicted(model, write_csv(tmp_path / "plain.csv", FEATURES, test),
                      tmp_path / "p.csv")
    assert capsys.readouterr().err.count("\n") == 1  # no note: the training order, nothing else
    shuffled = ["hue", "id", "proline", "cultivar", "alcohol", "colour", "ash"]
    other = predicted(model, write_csv(tmp_path / "test.csv", shuffled, test),
                      tmp_path / "q.csv", "--keep", "id")
    note = capsys.readouterr().err
    assert "the 5 features taken by name (in another order); ignored: 'cultivar'" in note, note
    assert other[0] == "id," + plain[0]
    ids = [f"wine-{i}" for i in range(150, N)]
    assert [line.split(",", 1)[0] for line in other[1:]] == ids
    assert [line.split(",", 1)[1] for line in other[1:]] == plain[1:]  # bitwise, as text
    # ... and the columns as the training table had them give other numbers: the order
    # matters, so the by-name test above could fail.
    swapped = predicted(model, write_csv(tmp_path / "swapped.csv", FEATURES[::-1], test,
                                         header=False), tmp_path / "s.csv")
    assert swapped[1:] != plain[1:]


def test_a_missing_feature_is_one_line(model, tmp_path, capsys):
    rows = write_csv(tmp_path / "short.csv", ["id", "alcohol", "ash", "hue", "proline"])
    assert predict([str(model), str(rows), "--out", str(tmp_path / "p.csv")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no column 'colour', which the model was trained on" \
        in err, err
    assert not (tmp_path / "p.csv").exists()


def test_class_names_and_probabilities_as_people_read_them(model, tmp_path):
    """Class names with a comma come out quoted; float32 probabilities in their own
    shortest digits, not float64's 17."""
    source = write_csv(tmp_path / "plain.csv", FEATURES)
    lines = predicted(model, source, tmp_path / "p.csv")
    assert predict([str(model), str(source), "--out", str(tmp_path / "p.h5")]) == 0
    with h5py.File(tmp_path / "p.h5") as f:
        probabilities = f["probabilities"][()]  # float64 holding the network's float32s
    rows = list(csv.reader(lines))
    assert rows[0] == ["class", "p_Barbera, old", "p_Barolo", "p_Grignolino"]
    for row, p in zip(rows[1:], probabilities):
        assert row[0] == rows[0][1 + int(np.argmax(p))][2:]
        np.testing.assert_array_equal(np.array(row[1:], np.float32), p.astype(np.float32))
        assert max(len(v) for v in row[1:]) <= 14  # e.g. 0.99999666, not 0.99999666213989258
    with h5py.File(model) as f:
        assert json.loads(f.attrs["data"])["names"]["features"] == FEATURES


def test_a_header_of_numbers_is_a_header_when_said(tmp_path, capsys):
    """Wavelengths as column names: guessed to be a row of data, unless --header says."""
    bands = [f"{w}" for w in (400, 410, 420)]
    x = RNG.normal(0, 1, (60, 3))
    y = (x[:, 0] > 0).astype(int)
    source = tmp_path / "spectra.csv"
    source.write_text(",".join([*bands, "y"]) + "\n" + "".join(
        f"{a!r},{b!r},{c!r},{t}\n" for (a, b, c), t in zip(x.tolist(), y)))
    assert data_main(["import", str(source), "--out", str(tmp_path / "s.h5"), "--task",
                      "classification", "--header"]) == 0
    assert train(["--data", str(tmp_path / "s.h5"), "--checkpoint", str(tmp_path / "c.h5"),
                  *COMMON], SerialComm()) == 0
    rows = tmp_path / "rows.csv"
    rows.write_text("420,400,410\n0.5,1.5,2.5\n-1,2,0.25\n")
    without = predicted(tmp_path / "c.h5", rows, tmp_path / "guessed.csv")
    said = predicted(tmp_path / "c.h5", rows, tmp_path / "said.csv", "--header")
    assert len(without) == 1 + 3 and len(said) == 1 + 2  # 3 rows read as data, or 2
    in_order = tmp_path / "ordered.csv"
    in_order.write_text("400,410,420\n1.5,2.5,0.5\n2,0.25,-1\n")
    assert predicted(tmp_path / "c.h5", in_order, tmp_path / "o.csv", "--header") == said


def test_a_checkpoint_without_feature_names_reads_by_position(tmp_path, capsys):
    """A table imported from a file without a header: its checkpoint names no features,
    so a rows file's header names nothing it can match, and the columns go in order."""
    source = tmp_path / "plain.csv"
    source.write_text("".join(f"{a!r},{b!r},{int(a > b)}\n"
                              for a, b in RNG.normal(0, 1, (80, 2)).tolist()))
    assert data_main(["import", str(source), "--out", str(tmp_path / "p.h5"), "--task",
                      "classification"]) == 0
    assert train(["--data", str(tmp_path / "p.h5"), "--checkpoint", str(tmp_path / "c.h5"),
                  *COMMON], SerialComm()) == 0
    rows = tmp_path / "rows.csv"
    rows.write_text("b,a\n1,2\n")
    predicted(tmp_path / "c.h5", rows, tmp_path / "o.csv")
    assert "names no features" in capsys.readouterr().err
    rows.write_text("b,a,c\n1,2,3\n")
    assert predict([str(tmp_path / "c.h5"), str(rows), "--out", str(tmp_path / "o.csv")]) \
        == EXIT_USAGE
    assert "has 3 columns; the model takes 2 features a row" in capsys.readouterr().err


def test_evaluate_on_another_file_scales_and_orders_as_the_training_file(tmp_path):
    """The same test rows, imported again in a file of their own (columns in another order,
    training rows whose statistics are far from the model's): the same scores, for the
    rows are read with the checkpoint's scaling and its features' order."""
    mine = ["cultivar", *FEATURES]
    write_csv(tmp_path / "train.csv", mine, slice(0, 150))
    write_csv(tmp_path / "test.csv", mine, slice(150, N))
    assert data_main(["import", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                      "--out", str(tmp_path / "wine.h5"), "--task", "classification",
                      "--target", "cultivar"]) == 0
    assert train(["--data", str(tmp_path / "wine.h5"), "--checkpoint", str(tmp_path / "c.h5"),
                  *COMMON], SerialComm()) == 0
    theirs = ["hue", "cultivar", "proline", "alcohol", "ash", "colour"]
    write_csv(tmp_path / "test2.csv", theirs, slice(150, N))
    decoy = tmp_path / "decoy.csv"  # "training" rows ten times the test rows: other statistics
    with open(tmp_path / "test2.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    with open(decoy, "w", newline="") as f:
        csv.writer(f).writerows([header, *([v if i == 1 else str(10 * float(v))
                                            for i, v in enumerate(row)] for row in rows)])
    assert data_main(["import", str(decoy), "--test", str(tmp_path / "test2.csv"), "--out",
                      str(tmp_path / "other.h5"), "--task", "classification", "--target",
                      "cultivar"]) == 0

    def evaluate(*options):
        done = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(tmp_path / "c.h5"),
                               *options], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    own, other = evaluate(), evaluate("--data", str(tmp_path / "other.h5"))
    assert other == own
    assert "Barbera, old" in own and "Grignolino" in own  # classes by name, not number
