"""Checkpoints written by an older distnn still load, with the same weights."""

from __future__ import annotations

import json

import h5py
import numpy as np

from distnn.checkpoint import load_checkpoint, read_checkpoint
from distnn.network import MLP


def _row_by_row(net: MLP) -> np.ndarray:
    """The flat vector as version 1 laid it out: per layer, w row by row, then b."""
    return np.concatenate([part for w, b in zip(net.weights, net.biases)
                           for part in (w.ravel(order="C"), b)])


def test_version_1_checkpoint_loads_with_the_same_matrices(tmp_path):
    net = MLP([5, 4, 3], activation="tanh", dtype="float64", seed=1)
    velocity_net = MLP([5, 4, 3], dtype="float64", seed=2)  # any other vector of that layout
    path = tmp_path / "v1.h5"
    with h5py.File(path, "w") as f:  # what distnn wrote before version 2
        f.attrs["format"] = "distnn-checkpoint"
        f.attrs["version"] = 1
        f.attrs["model"] = json.dumps(net.config())
        f.attrs["config"] = json.dumps({})
        f.attrs["position"] = json.dumps({"epoch": 3, "step": 0})
        f.create_dataset("params", data=_row_by_row(net))
        f.create_group("optimizer").create_dataset("velocity", data=_row_by_row(velocity_net))
        f["optimizer"].attrs["momentum"] = 0.9
    assert not np.array_equal(_row_by_row(net), net.params)  # the layouts do differ
    loaded = load_checkpoint(path)
    for w, w_loaded in zip(net.weights, loaded.weights):
        np.testing.assert_array_equal(w_loaded, w)
    for b, b_loaded in zip(net.biases, loaded.biases):
        np.testing.assert_array_equal(b_loaded, b)
    state = read_checkpoint(path)["optimizer"]
    np.testing.assert_array_equal(state["velocity"], velocity_net.params)
    assert state["momentum"] == 0.9
