"""Checkpoints: what is saved is read back; a version this distnn does not read is refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from distnn.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from distnn.network import MLP


def _saved(tmp_path) -> tuple[MLP, np.ndarray, object]:
    net = MLP([5, 4, 3], activation="tanh", dtype="float64", seed=1)
    velocity = np.random.default_rng(2).random(net.params.size)
    path = tmp_path / "c.h5"
    save_checkpoint(path, net, {"velocity": velocity, "momentum": 0.9}, {"lr": 0.5},
                    {"epoch": 3, "step": 1, "steps": 7, "epoch_cost": 2.5, "ranks": 2})
    return net, velocity, path


def test_a_checkpoint_reads_back_what_was_saved(tmp_path):
    net, velocity, path = _saved(tmp_path)
    loaded = load_checkpoint(path)
    for w, w_loaded in zip(net.weights, loaded.weights):
        np.testing.assert_array_equal(w_loaded, w)
    for b, b_loaded in zip(net.biases, loaded.biases):
        np.testing.assert_array_equal(b_loaded, b)
    ckpt = read_checkpoint(path)
    np.testing.assert_array_equal(ckpt["optimizer"]["velocity"], velocity)
    assert ckpt["optimizer"]["momentum"] == 0.9
    assert ckpt["config"] == {"lr": 0.5}
    assert ckpt["position"] == {"epoch": 3, "step": 1, "steps": 7, "epoch_cost": 2.5, "ranks": 2}
    assert ckpt["model"] == net.config()


def test_a_version_1_checkpoint_is_refused_with_its_version(tmp_path):
    _, _, path = _saved(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["version"] = 1  # stored each w row by row: loading it as now would scramble w
    with pytest.raises(CheckpointError, match="checkpoint version 1, this distnn reads versions 2"):
        read_checkpoint(path)


def test_an_mlp_checkpoint_written_before_conv_nets_loads_evaluates_and_resumes(tmp_path):
    """A checkpoint b7e42d3 wrote (tests/support/mlp_runs.py: its float64 run on one rank,
    stopped mid-epoch) is an MLP to load_checkpoint, load_model and distnn.evaluate, and
    resumed today, ends where that run ended at b7e42d3: to the bit on a machine that
    computes as the fixture's did."""
    import shutil
    import subprocess
    import sys

    import distnn
    from distnn.comm import SerialComm
    from distnn.config import parse_args
    from distnn.data import read_shard
    from distnn.network import MLP
    from distnn.train import run
    from tests.support.mlp_runs import DATA, FIXTURE, args, before, differs
    from tests.support.synthetic import make_dataset

    old = tmp_path / "old.h5"
    shutil.copyfile(f"{FIXTURE}.h5", old)
    data = make_dataset(tmp_path / "data.h5", **DATA)
    ckpt = read_checkpoint(old)
    assert ckpt["model"] == {"sizes": [16, 8, 4], "activation": "relu", "cost": "cross_entropy",
                             "init": "he", "dtype": "float64", "seed": 0}
    net = load_checkpoint(old)
    assert type(net) is MLP and np.array_equal(net.params, ckpt["params"])
    x, y = read_shard(data, "test")
    predicted = distnn.load_model(old).predict(x)
    np.testing.assert_array_equal(predicted, net.predict(x / 255))
    done = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(old), "--data", str(data)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"test accuracy: {np.mean(predicted == y):.2%}" in done.stdout

    cfg, given = parse_args([*args(data, old, "allreduce", "float64"), "--resume"])
    assert run(cfg, given, SerialComm()) == 0
    then, same_machine = before()
    resumed = read_checkpoint(old)
    for part, now in (("params", resumed["params"]),
                      ("velocity", resumed["optimizer"]["velocity"])):
        assert not differs(now, then[f"p1-allreduce-float64/{part}"], same_machine), part
