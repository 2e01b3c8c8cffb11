"""Regression and tables (schema 2): the table writer, Friedman's problem, the trainer's
linear output, and its test scores, each against an independent computation."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.comm import SerialComm
from distnn.config import parse_args
from distnn.data import describe, read_shard
from distnn.data.friedman import blocks, friedman1, make_friedman
from distnn.data.store import read_scaling
from distnn.data.table import write_table
from distnn.evaluate import regression_scores, regression_sums
from distnn.network import MLP
from distnn.protocol import EXIT_INTERRUPTED, EXIT_USAGE
from distnn.train import main, run
from tests.support.stopping import StopAtStep

TRAIN = ["--layers", "10,16,1", "--batch-size", "16", "--lr", "0.05", "--warmup-epochs", "0",
         "--no-progress", "--commit-every", "0"]


@pytest.fixture
def friedman(tmp_path: Path) -> Path:
    return make_friedman(tmp_path / "f.h5", train_rows=480, test_rows=120, sigma=0.5, seed=2)


def test_friedman_by_hand_and_its_rows_the_same_in_any_blocks():
    # x = 0.5 everywhere: 10 sin(pi/4) + 20 * 0 + 10 * 0.5 + 5 * 0.5
    assert friedman1(np.full((1, 10), 0.5))[0] == pytest.approx(10 * np.sqrt(0.5) + 7.5)
    few = next(blocks(10, 1.0, 0, 0))
    many = next(blocks(100_000, 1.0, 0, 0))
    np.testing.assert_array_equal(few[0], many[0][:10])
    np.testing.assert_array_equal(few[1], many[1][:10])
    x, y = next(blocks(20_000, 0.0, 1, 0))  # no noise: y is the function itself
    np.testing.assert_array_equal(y[:, 0], friedman1(x))


def test_a_table_reads_back_as_written_with_its_scaling_computed_in_float64(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(100, 3, (1000, 4)).astype(np.float32)
    x[:, 2] = 7.0  # a constant feature
    y = rng.normal(0, 2, (1000, 2))
    test_x, test_y = x[:100] + 1, y[:100] - 1
    path = write_table(tmp_path / "t.h5", {"train": [(x[:300], y[:300]), (x[300:], y[300:])],
                                           "test": [(test_x, test_y)]},
                       task="regression", n_features=4, n_outputs=2, source="test",
                       feature_dtype=np.float32)
    info = describe(path)
    assert (info["task"], info["n_outputs"], info["train_size"], info["test_size"]) == \
        ("regression", 2, 1000, 100)
    features, targets = read_shard(path, "train")
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(targets, y)
    np.testing.assert_array_equal(read_shard(path, "test")[0], test_x)
    scaling = read_scaling(path)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(scaling["feature_mean"], x64.mean(axis=0), rtol=1e-15)
    std = x64.std(axis=0)
    std[2] = 1.0  # constant: read as 0 everywhere
    np.testing.assert_allclose(scaling["feature_std"], std, rtol=1e-12)
    np.testing.assert_allclose(scaling["target_std"], y.std(axis=0), rtol=1e-12)


def test_a_table_of_many_classes(tmp_path):
    labels = np.arange(600) % 300  # 300 classes: more than a byte holds
    path = write_table(tmp_path / "c.h5", {"train": [(np.eye(600)[:, :5], labels)],
                                           "test": [(np.eye(600)[:50, :5], labels[:50])]},
                       task="classification", n_features=5, n_outputs=300, source="test")
    assert describe(path)["n_classes"] == 300
    with h5py.File(path) as f:
        assert f["train/targets"].dtype == np.uint16
    np.testing.assert_array_equal(read_shard(path, "train")[1], labels)


def test_scores_against_numpy_on_the_same_predictions_and_added_over_parts():
    rng = np.random.default_rng(3)
    net = MLP([3, 5, 2], cost="linear", dtype="float64", seed=1)
    x, y = rng.standard_normal((50, 3)), rng.normal(10, 4, (50, 2))
    mean, std = np.array([9.0, 11.0]), np.array([3.0, 5.0])
    e = net.forward(x) * std + mean - y  # the predictions in the targets' units
    whole = regression_sums(net, x, y, mean, std)
    parts = sum(regression_sums(net, x[a:b], y[a:b], mean, std)
                for a, b in ((0, 17), (17, 33), (33, 50)))  # three ranks' rows
    np.testing.assert_allclose(parts, whole, rtol=1e-13)
    scores = regression_scores(parts)
    np.testing.assert_allclose(scores["rmse"], np.sqrt((e ** 2).mean(axis=0)), rtol=1e-12)
    np.testing.assert_allclose(scores["mae"], np.abs(e).mean(axis=0), rtol=1e-12)
    r2 = 1 - (e ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    np.testing.assert_allclose(scores["r2"], r2, rtol=1e-12)


def test_a_regression_learns_and_its_scores_are_its_predictions(friedman, tmp_path):
    metrics = tmp_path / "m.jsonl"
    assert main(["--data", str(friedman), "--checkpoint", str(tmp_path / "c.h5"), *TRAIN,
                 "--epochs", "8", "--dtype", "float64", "--metrics", str(metrics)],
                SerialComm()) == 0
    records = [r for r in map(json.loads, metrics.read_text().splitlines()) if "test_rmse" in r]
    assert records[-1]["test_r2"] > 0.5 and records[-1]["test_rmse"] < records[0]["test_rmse"]
    # Independently: the checkpoint's net on the test rows, scaled by hand.
    net = load_checkpoint(tmp_path / "c.h5")
    scaling = read_scaling(friedman)
    x, y = read_shard(friedman, "test")
    z = (x - scaling["feature_mean"]) / scaling["feature_std"]
    predicted = net.predict(z) * scaling["target_std"] + scaling["target_mean"]
    rmse = float(np.sqrt(np.mean((predicted - y) ** 2)))
    assert records[-1]["test_rmse"] == pytest.approx(rmse, rel=1e-12)
    assert read_checkpoint(tmp_path / "c.h5")["model"]["cost"] == "linear"  # chosen for it


def test_a_regression_resumes_bitwise(friedman, tmp_path):
    args = ["--data", str(friedman), *TRAIN, "--epochs", "3", "--momentum", "0.9"]
    cfg, given = parse_args([*args, "--checkpoint", str(tmp_path / "full.h5")])
    assert run(cfg, given, SerialComm()) == 0

    cfg, given = parse_args([*args, "--checkpoint", str(tmp_path / "cut.h5")])
    stop = StopAtStep(40)  # the 40th step, of 30 an epoch: stopped at epoch 2, step 10
    assert run(cfg, given, SerialComm(), stop=stop) == EXIT_INTERRUPTED
    cfg, given = parse_args([*args, "--checkpoint", str(tmp_path / "cut.h5"), "--resume"])
    assert run(cfg, given, SerialComm()) == 0
    assert np.array_equal(load_checkpoint(tmp_path / "full.h5").params,
                          load_checkpoint(tmp_path / "cut.h5").params)


@pytest.mark.parametrize("extra,message", [
    (["--cost", "cross_entropy"], "holds a regression: --cost cross_entropy is for classes"),
    (["--augment", "shift=1"], "--augment distorts images"),
    (["--layers", "10,16,2"], "has 10 features and 1 targets, but --layers 10,16,2"),
])
def test_settings_that_do_not_fit_a_regression_are_one_line(friedman, tmp_path, capsys, extra,
                                                            message):
    status = main(["--data", str(friedman), "--checkpoint", str(tmp_path / "c.h5"), *TRAIN,
                   *extra], SerialComm())
    assert status == EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert message in line


def test_evaluate_and_plot_show_a_regressions_scores(friedman, tmp_path):
    import subprocess
    import sys

    metrics = tmp_path / "m.jsonl"
    assert main(["--data", str(friedman), "--checkpoint", str(tmp_path / "c.h5"), *TRAIN,
                 "--epochs", "2", "--metrics", str(metrics)], SerialComm()) == 0
    last = json.loads(metrics.read_text().splitlines()[-1])
    shown = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(tmp_path / "c.h5")],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == (f"test RMSE {last['test_rmse']:#.4g}  MAE "
                                    f"{last['test_mae']:#.4g}  R^2 {last['test_r2']:#.4g} "
                                    "(120 rows)")
    pytest.importorskip("matplotlib")
    from distnn.plot import main as plot_main

    assert plot_main([str(metrics)]) == 0 and (tmp_path / "m.png").stat().st_size > 1000
