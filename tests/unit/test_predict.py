"""Predictions out (python -m distnn.predict, distnn.load_model): on the test rows they give
the figures the trainer reported, in every output kind, from every input kind."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import distnn
from distnn.comm import SerialComm
from distnn.data import read_shard
from distnn.data.friedman import make_friedman
from distnn.predict import main as predict
from distnn.protocol import EXIT_IOERR, EXIT_USAGE
from distnn.train import main as train
from tests.support.synthetic import make_dataset

COMMON = ["--batch-size", "16", "--warmup-epochs", "0", "--no-progress", "--commit-every", "0",
          "--epochs", "3"]


@pytest.fixture(scope="module")
def regression(tmp_path_factory) -> tuple[Path, Path, dict]:
    where = tmp_path_factory.mktemp("regression")
    data = make_friedman(where / "f.h5", train_rows=480, test_rows=100, sigma=0.5)
    metrics = where / "m.jsonl"
    assert train(["--data", str(data), "--checkpoint", str(where / "c.h5"), "--layers",
                  "10,16,1", "--lr", "0.05", "--metrics", str(metrics), *COMMON],
                 SerialComm()) == 0
    return data, where / "c.h5", json.loads(metrics.read_text().splitlines()[-1])


def test_the_models_predictions_on_the_test_rows_are_the_reported_figures(regression):
    data, checkpoint, last = regression
    x, y = read_shard(data, "test")
    predicted = distnn.load_model(checkpoint).predict(x)  # raw rows: it scales them itself
    assert predicted.shape == (100, 1)
    assert np.sqrt(np.mean((predicted - y) ** 2)) == pytest.approx(last["test_rmse"], rel=1e-12)
    assert np.mean(np.abs(predicted - y)) == pytest.approx(last["test_mae"], rel=1e-12)


@pytest.mark.parametrize("source", [".csv", ".npy", ".npz", ".h5"])
@pytest.mark.parametrize("out", [".csv", ".npy", ".h5"])
def test_every_input_kind_to_every_output_kind(regression, tmp_path, source, out):
    data, checkpoint, _ = regression
    x, _ = read_shard(data, "test")
    expected = distnn.load_model(checkpoint).predict(x)
    rows = tmp_path / f"rows{source}"
    if source == ".csv":
        np.savetxt(rows, x, delimiter=",", fmt="%.17g")
    elif source == ".npy":
        np.save(rows, x)
    elif source == ".npz":
        np.savez(rows, features=x)
    else:
        with h5py.File(rows, "w") as f:
            f["features"] = x
    target = tmp_path / f"predicted{out}"
    assert predict([str(checkpoint), str(rows), "--out", str(target)]) == 0
    if out == ".csv":
        got = np.loadtxt(target, delimiter=",", skiprows=1)[:, None]
        assert target.read_text().splitlines()[0] == "y"
    elif out == ".npy":
        got = np.load(target)
    else:
        with h5py.File(target) as f:
            got = f["values"][()]
    np.testing.assert_array_equal(got, expected)


def test_a_classifier_gives_classes_and_their_probabilities(tmp_path):
    data = make_dataset(tmp_path / "d.h5")  # images: the model divides pixels by 255
    assert train(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"), "--layers",
                  "16,12,4", "--lr", "0.5", *COMMON], SerialComm()) == 0
    x, y = read_shard(data, "test")
    np.save(tmp_path / "x.npy", x)
    assert predict([str(tmp_path / "c.h5"), str(tmp_path / "x.npy"), "--out",
                    str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "class,p0,p1,p2,p3"
    table = np.loadtxt(lines[1:], delimiter=",")
    np.testing.assert_allclose(table[:, 1:].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(table[:, 0], table[:, 1:].argmax(axis=1))
    net = distnn.load_checkpoint(tmp_path / "c.h5")
    np.testing.assert_array_equal(table[:, 0], net.predict(x.astype(np.float32) / 255))
    assert np.mean(table[:, 0] == y) > 0.9


def test_rows_of_the_wrong_width_are_one_line(regression, tmp_path, capsys):
    _, checkpoint, _ = regression
    (tmp_path / "rows.csv").write_text("1,2,3\n")
    assert predict([str(checkpoint), str(tmp_path / "rows.csv"), "--out",
                    str(tmp_path / "p.csv")]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"distnn.predict: error: {tmp_path / 'rows.csv'} "
                                               "has 3 columns; the model takes 10 features a row")
    assert not list(tmp_path.glob("p.csv*"))


def test_a_full_disk_is_one_line_and_leaves_nothing(regression, tmp_path, capsys, monkeypatch):
    import errno

    from tests.support.full_disk import refusal

    data, checkpoint, _ = regression
    np.save(tmp_path / "x.npy", read_shard(data, "test")[0])

    def full(*args, **kwargs):
        raise refusal(errno.ENOSPC)

    monkeypatch.setattr("distnn.predict._csv_rows", full)
    assert predict([str(checkpoint), str(tmp_path / "x.npy"), "--out",
                    str(tmp_path / "p.csv")]) == EXIT_IOERR
    assert capsys.readouterr().err.startswith(f"distnn.predict: error: cannot write "
                                              f"{tmp_path / 'p.csv'}: no space left on device")
    assert not list(tmp_path.glob("p.csv*"))
