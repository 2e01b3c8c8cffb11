"""Evaluation and plotting of a trained run, checked by counting by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distnn import MLP
from distnn.comm import SerialComm
from distnn.config import parse_args
from distnn.evaluate import accuracy, ascii_digit, confusion
from distnn.train import run
from tests.support.synthetic import make_dataset


def test_confusion_counts_every_sample_once():
    rng = np.random.default_rng(0)
    net = MLP([6, 5, 3], dtype="float64", seed=1)
    x, y = rng.random((2500, 6)), rng.integers(0, 3, 2500)  # more than one EVAL_BATCH
    counts = confusion(net, x, y, 3)
    predicted = np.argmax(net.forward(x), axis=1)
    for i in range(3):
        for j in range(3):
            assert counts[i, j] == np.sum((y == i) & (predicted == j))
    assert accuracy(counts) == pytest.approx(np.mean(predicted == y))


def test_ascii_digit_darkens_with_ink():
    lines = ascii_digit(np.array([0.0, 0.5, 0.99, 1.0]), (2, 2))
    assert lines == [" +", "@@"]  # ramp " .:-=+*#%@": 0.5 -> index 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("run")
    data = make_dataset(tmp / "d.h5")
    ckpt, metrics = tmp / "c.h5", tmp / "m.jsonl"
    cfg, given = parse_args(["--data", str(data), "--checkpoint", str(ckpt), "--metrics",
                             str(metrics), "--layers", "16,12,4", "--epochs", "3",
                             "--batch-size", "16", "--lr", "0.5", "--no-progress"])
    assert run(cfg, given, SerialComm()) == 0
    return data, ckpt, metrics


def test_evaluate_cli_reports_accuracy_and_shows_digits(trained):
    data, ckpt, metrics = trained
    result = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(ckpt), "--show", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    last = [json.loads(line) for line in metrics.read_text().splitlines()][-1]
    assert f"test accuracy: {last['test_accuracy']:.2%}" in result.stdout
    assert "confusion matrix" in result.stdout
    assert result.stdout.count("predicted") == 3  # the matrix heading and two digits


def test_evaluate_refuses_data_of_another_shape(trained, tmp_path):
    _, ckpt, _ = trained
    other = make_dataset(tmp_path / "other.h5", shape=(3, 3))
    result = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(ckpt), "--data",
                             str(other)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "has 9 features" in result.stderr and "Traceback" not in result.stderr


def test_plot_writes_a_png(trained, tmp_path):
    pytest.importorskip("matplotlib")
    _, _, metrics = trained
    out = tmp_path / "plot.png"
    result = subprocess.run([sys.executable, "-m", "distnn.plot", str(metrics), "-o", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_stops_quietly_when_the_reader_closes_the_pipe(trained):
    data, ckpt, metrics = trained
    proc = subprocess.Popen([sys.executable, "-m", "distnn.evaluate", str(ckpt), "--show", "500"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # what `| head -1` reads, before it closes the pipe
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_scores_keep_four_significant_digits_with_their_zeros():
    from distnn.evaluate import scores_text
    assert scores_text({"test_rmse": 1.0, "test_mae": 0.5, "test_r2": 0.95}) == \
        "RMSE 1.000  MAE 0.5000  R^2 0.9500"
    assert scores_text({"test_rmse": [1.0, 12.5], "test_mae": [2.0, 0.125],
                        "test_r2": [0.9, 1.0]}) == \
        "RMSE [1.000, 12.50]  MAE [2.000, 0.1250]  R^2 [0.9000, 1.000]"
