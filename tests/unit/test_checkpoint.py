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
