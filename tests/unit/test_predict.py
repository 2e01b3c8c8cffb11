"""Predictions out (python -m distnn.predict, distnn.load_model): on the test rows they give
the figures the trainer reported, in every output kind, from every input kind."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import distnn
import distnn.data.csvfile as csvfile
import distnn.data.readers as readers
from distnn.comm import SerialComm
from distnn.data import read_shard
from distnn.data.imports import Layout, import_table
from distnn.data.friedman import make_friedman
from distnn.predict import main as predict
from distnn.protocol import EXIT_IOERR, EXIT_USAGE
from distnn.train import main as train
from tests.support.synthetic import make_dataset

COMMON = ["--batch-size", "16", "--warmup-epochs", "0", "--no-progress", "--commit-every", "0",
          "--epochs", "3"]


def forward_by_hand(checkpoint: Path, inputs: np.ndarray) -> np.ndarray:
    """a^L for inputs already scaled (m, n), in float64: the lecture's a = sigma(w a + b)
    layer by layer, with the weights and biases read from the checkpoint's flat
    ``params`` (each layer's w, (n_out, n_in), stored column by column, then its b),
    and the output layer as the cost has it (linear, softmax, or sigma again)."""
    with h5py.File(checkpoint) as f:
        model = json.loads(f.attrs["model"])
        params = f["params"][()].astype(np.float64)
    sigma = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)),
             "relu": lambda z: np.maximum(z, 0)}[model["activation"]]
    sizes, start, a = model["sizes"], 0, inputs.T  # samples as columns, as the lecture
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = params[start:start + n_out * n_in].reshape(n_in, n_out).T  # (n_out, n_in)
        b = params[start + n_out * n_in:start + n_out * n_in + n_out][:, None]  # (n_out, 1)
        start += n_out * n_in + n_out
        z = w @ a + b
        if l < len(sizes) - 2 or model["cost"] == "quadratic":
            a = sigma(z)
        elif model["cost"] == "cross_entropy":
            a = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)
        else:
            assert model["cost"] == "linear"
            a = z
    assert start == len(params)
    return a.T


def standardized_by_hand(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(x - mean) / std of the training rows, in float64 (a constant column: / 1)."""
    std = train.std(axis=0)
    return (x - train.mean(axis=0)) / np.where(std == 0, 1, std)


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
def test_every_input_kind_to_every_output_kind(regression, tmp_path, source, out, capsys,
                                               monkeypatch):
    """100 rows, read in blocks of 32 (a CSV: of about 9 lines), against the lecture's
    forward pass by hand, its scaling computed here from the training rows."""
    monkeypatch.setattr(readers, "BLOCK_ROWS", 32)
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 2000)
    data, checkpoint, _ = regression
    x, _ = read_shard(data, "test")
    train_x, train_y = read_shard(data, "train")
    a = forward_by_hand(checkpoint, standardized_by_hand(x, train_x))
    expected = a * train_y.std(axis=0) + train_y.mean(axis=0)  # in the target's units
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
    assert capsys.readouterr().err.endswith(f"100 rows predicted into {target}\n")
    if out == ".csv":
        got = np.loadtxt(target, delimiter=",", skiprows=1)[:, None]
        assert target.read_text().splitlines()[0] == "y"
    elif out == ".npy":
        got = np.load(target)
    else:
        with h5py.File(target) as f:
            got = f["values"][()]
    assert got.shape == (100, 1)
    # float32 against float64, on targets of standard deviation about 5
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


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
    a = forward_by_hand(tmp_path / "c.h5", x / 255)  # images: pixels / 255
    np.testing.assert_allclose(table[:, 1:], a, atol=1e-5)
    top2 = np.sort(a, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # float32 against float64: no near ties
    np.testing.assert_array_equal(table[clear, 0], a[clear].argmax(axis=1))
    assert np.mean(table[:, 0] == y) > 0.9


def test_a_conv_nets_checkpoint_classifies_as_the_net_that_trained(tmp_path, monkeypatch):
    """A conv net (--hidden conv layers; the input, 1x4x4, from the file): its checkpoint,
    through load_model, python -m distnn.predict and python -m distnn.evaluate, gives the
    test rows the classes and probabilities the network in memory gave them as its run
    ended, to the bit."""
    import subprocess
    import sys

    import distnn.train
    from distnn.samples import scale_features

    data = make_dataset(tmp_path / "d.h5")
    nets, make_reducer = [], distnn.train.make_reducer
    monkeypatch.setattr(distnn.train, "make_reducer", lambda comm, net, *args:
                        nets.append(net) or make_reducer(comm, net, *args))
    checkpoint = tmp_path / "c.h5"
    assert train(["--data", str(data), "--checkpoint", str(checkpoint), "--hidden",
                  "conv3x3:same,pool2,conv4x2,6", "--lr", "0.1", *COMMON], SerialComm()) == 0
    [net] = nets  # as the run left it: float32, its conv layers and fully connected ones
    assert type(net) is distnn.ConvNet and net.layers[0] == "1x4x4"
    x, y = read_shard(data, "test")
    a = net.forward(scale_features(x, net.dtype, "divide_by_255", {})).astype(np.float64)
    classes = a.argmax(axis=1)
    assert np.mean(classes == y) > 0.5  # it learned something (4 classes: chance is 0.25)

    model = distnn.load_model(checkpoint)
    assert type(model.net) is distnn.ConvNet and model.net.layers == net.layers
    np.testing.assert_array_equal(model.outputs(x), a)
    np.testing.assert_array_equal(model.predict(x), classes)
    done = subprocess.run([sys.executable, "-m", "distnn.predict", str(checkpoint), str(data),
                           "--dataset", "test/images", "--out", str(tmp_path / "p.h5")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f["classes"][()], classes)
        np.testing.assert_array_equal(f["probabilities"][()], a)
    done = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(checkpoint)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"test accuracy: {np.mean(classes == y):.2%}" in done.stdout
    lines = done.stdout.splitlines()
    heading = lines.index("confusion matrix (rows: true class, columns: predicted)")
    counts = np.array([line.split()[1:] for line in lines[heading + 2:heading + 6]], int)
    np.testing.assert_array_equal(counts, [[np.sum((y == i) & (classes == j)) for j in range(4)]
                                           for i in range(4)])


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


NAMES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict[str, Path]:
    """A lab's own CSV, with a header, imported twice and trained on: the classes named
    (species), and a regression whose target is named (yield)."""
    where = tmp_path_factory.mktemp("lab")
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (300, 3)) * [1, 10, 0.1] + [0, 5, -2]
    species = np.array(NAMES)[np.digitize(x[:, 0] + 10 * x[:, 2] + 20, [-0.5, 0.5])]
    yield_ = x @ [1, 0.2, -3]
    made = {}
    for task, target, last in (("classification", "species", species),
                               ("regression", "yield", yield_)):
        with open(where / f"{task}.csv", "w") as f:
            f.write(f"a,b,c,{target}\n")
            f.writelines(f"{a!r},{b!r},{c!r},{t}\n" for (a, b, c), t in zip(x.tolist(), last))
        table = where / f"{task}.h5"
        import_table(where / f"{task}.csv", table, task=task, layout=Layout(target=(target,)))
        k = 3 if task == "classification" else 1
        assert train(["--data", str(table), "--checkpoint", str(where / f"{task}-c.h5"),
                      "--layers", f"3,8,{k}", "--lr", "0.1", *COMMON], SerialComm()) == 0
        made[task] = table
    return made


def rows_with_ids(data: Path, path: Path) -> tuple[np.ndarray, list[str]]:
    """The test rows of ``data`` to a CSV of columns id, c, b, a (another order)."""
    x, _ = read_shard(data, "test")
    ids = [f"s{i}" for i in range(len(x))]
    with open(path, "w") as f:
        f.write("id,c,b,a\n")
        f.writelines(f"{i},{c!r},{b!r},{a!r}\n" for i, (a, b, c) in zip(ids, x.tolist()))
    return x, ids


def test_a_classifier_names_its_classes_in_csv_and_h5(lab, tmp_path, monkeypatch):
    """Names, probabilities and --keep's column, in blocks of 8 rows, against the forward
    pass by hand."""
    monkeypatch.setattr(readers, "BLOCK_ROWS", 8)
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 300)
    data = lab["classification"]
    x, ids = rows_with_ids(data, tmp_path / "rows.csv")
    a = forward_by_hand(data.parent / "classification-c.h5",
                        standardized_by_hand(x, read_shard(data, "train")[0]))
    top2 = np.sort(a, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # float32 against float64: no near ties
    assert clear.mean() > 0.9
    classes = a.argmax(axis=1)
    for out in ("p.csv", "p.h5"):
        assert predict([str(data.parent / "classification-c.h5"), str(tmp_path / "rows.csv"),
                        "--keep", "id", "--out", str(tmp_path / out)]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "id,class,p_setosa,p_versicolor,p_virginica"
    fields = [line.split(",") for line in lines[1:]]
    assert [f[0] for f in fields] == ids
    assert [f[1] for f in fields if clear[int(f[0][1:])]] == \
        [NAMES[k] for k in classes[clear]]
    np.testing.assert_allclose(np.array([f[2:] for f in fields], float), a, atol=1e-5)
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f["classes"][()][clear], classes[clear])
        np.testing.assert_allclose(f["probabilities"][()], a, atol=1e-5)
        assert [v.decode() for v in f["kept"][()]] == ids
        assert [v.decode() for v in f["names"][()]] == NAMES


def test_a_regressions_csv_names_its_targets(lab, tmp_path):
    data = lab["regression"]
    x, _ = rows_with_ids(data, tmp_path / "rows.csv")
    train_x, train_y = read_shard(data, "train")
    a = forward_by_hand(data.parent / "regression-c.h5", standardized_by_hand(x, train_x))
    assert predict([str(data.parent / "regression-c.h5"), str(tmp_path / "rows.csv"),
                    "--keep", "id", "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "id,yield"
    got = np.array([line.split(",")[1] for line in lines[1:]], float)
    np.testing.assert_allclose(got, a[:, 0] * train_y.std() + train_y.mean(), rtol=1e-4,
                               atol=1e-4 * train_y.std())
