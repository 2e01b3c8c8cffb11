"""Max-norm, against norms computed row by row in float64."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.constraints import max_norm
from distnn.network import MLP


def grown_net(dtype: str = "float32") -> MLP:
    net = MLP([30, 20, 12, 5], activation="relu", init="he", dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    for w in net.weights:  # rows of norm about 0.2 to 4: some longer than c, some shorter
        w *= (rng.uniform(0.2, 4.0, (len(w), 1)) / np.linalg.norm(w, axis=1, keepdims=True))
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_rows_end_on_the_ball_and_the_rest_is_untouched(dtype):
    net, c = grown_net(dtype), 2.0
    before = [w.copy() for w in net.weights]
    biases = net.biases[0].copy(), net.biases[1].copy()
    max_norm(net.weights[:-1], c)
    for w, w0 in zip(net.weights[:-1], before):
        norms = np.linalg.norm(w0.astype(np.float64), axis=1)  # |w_j|, unit j = row j
        long = norms > c
        assert 0 < long.sum() < len(norms)  # the case has both kinds of rows
        np.testing.assert_allclose(np.linalg.norm(w[long].astype(np.float64), axis=1), c,
                                   rtol=1e-6)
        np.testing.assert_allclose(w[long], w0[long] * (c / norms[long])[:, None], rtol=1e-6)
        assert np.array_equal(w[~long], w0[~long])  # bit for bit
    assert np.array_equal(net.weights[-1], before[-1])  # the output layer is not constrained
    assert np.array_equal(net.biases[0], biases[0]) and np.array_equal(net.biases[1], biases[1])


@pytest.mark.parametrize("shares", [2, 3, 4])
def test_ranks_sharing_the_units_get_the_same_result_bitwise(shares):
    whole, split = grown_net(), grown_net()
    max_norm(whole.weights[:-1], 1.5)
    for i in range(shares):  # what the ranks of a node do, each its own units
        max_norm(split.weights[:-1], 1.5, units=slice(i, None, shares))
    assert np.array_equal(whole.params, split.params)
