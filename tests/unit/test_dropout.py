"""Dropout: backprop through a fixed mask against finite differences and a smaller network,
and the masks' draws against the seed."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.dropout import Dropout
from distnn.network import MLP
from distnn.noise import Noise


def net_and_batch(activation: str, cost: str, sizes=(10, 7, 5, 3), m: int = 6):
    net = MLP(list(sizes), activation=activation, cost=cost, init="xavier", dtype="float64",
              seed=4)
    rng = np.random.default_rng(9)
    for b in net.biases:  # no z exactly 0 when a layer's whole input is dropped: ReLU's kink
        b[...] = rng.normal(0, 0.5, b.shape)
    return net, rng.random((m, sizes[0])), rng.integers(0, sizes[-1], m)


@pytest.mark.parametrize("activation,cost", [("sigmoid", "quadratic"), ("tanh", "cross_entropy"),
                                             ("relu", "cross_entropy")])
@pytest.mark.parametrize("hidden,inputs", [(0.5, 0.0), (0.0, 0.3), (0.4, 0.2)])
def test_gradient_through_a_fixed_mask_matches_finite_differences(activation, cost, hidden,
                                                                  inputs):
    net, x, y = net_and_batch(activation, cost)
    masks = Dropout(net.sizes, hidden, inputs, "float64").masks(Noise(1, 0, 0, len(y)))
    assert sum(r is not None for r in masks) == (hidden > 0) * 2 + (inputs > 0)
    _, grad = net.gradient(x, y, masks=masks)
    grad = grad.copy()
    eps = 1e-6
    numeric = np.empty_like(grad)
    for i in range(net.params.size):
        kept = net.params[i]
        net.params[i] = kept + eps
        up, _ = net.gradient(x, y, masks=masks)
        net.params[i] = kept - eps
        down, _ = net.gradient(x, y, masks=masks)
        net.params[i] = kept
        numeric[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    plain = net.gradient(x, y)[1]
    assert not np.allclose(grad, plain)  # the masks did change the gradient


def test_masks_of_ones_change_nothing_bitwise():
    net, x, y = net_and_batch("relu", "cross_entropy")
    ones = [np.ones((len(y), n)) for n in net.sizes[:-1]]
    cost, grad = net.gradient(x, y, masks=ones)
    grad = grad.copy()
    cost_0, grad_0 = net.gradient(x, y)
    assert cost == cost_0 and np.array_equal(grad, grad_0)


def test_a_dropped_unit_is_a_network_without_that_unit():
    # An independent network: the 7-unit hidden layer with unit 2 cut out.
    net, x, y = net_and_batch("sigmoid", "quadratic", sizes=(10, 7, 3))
    small = MLP([10, 6, 3], activation="sigmoid", cost="quadratic", dtype="float64")
    keep = np.arange(7) != 2
    small.weights[0][...] = net.weights[0][keep]
    small.biases[0][...] = net.biases[0][keep]
    small.weights[1][...] = net.weights[1][:, keep]
    small.biases[1][...] = net.biases[1]
    mask = np.tile(keep.astype(float), (len(y), 1))  # scale 1: only the dropping
    cost, grad = net.gradient(x, y, masks=[None, mask])
    cost_small, grad_small = small.gradient(x, y)
    assert cost == pytest.approx(cost_small, rel=1e-12)
    nabla_w, nabla_b = net._views(grad)
    small_w, small_b = small._views(grad_small)
    np.testing.assert_allclose(nabla_w[0][keep], small_w[0], rtol=1e-12)
    np.testing.assert_allclose(nabla_w[1][:, keep], small_w[1], rtol=1e-12)
    np.testing.assert_allclose(nabla_b[1], small_b[1], rtol=1e-12)
    # The cut unit learns nothing: its weights in and out, and its bias.
    assert not nabla_w[0][2].any() and nabla_b[0][2] == 0 and not nabla_w[1][:, 2].any()


def test_masks_keep_one_minus_p_scaled_by_its_inverse():
    masks = Dropout([784, 500, 300, 10], 0.5, 0.2).masks(Noise(0, 0, 0, 256))
    assert [r.shape for r in masks] == [(256, 784), (256, 500), (256, 300)]
    for r, p in zip(masks, (0.2, 0.5, 0.5)):
        assert r.dtype == np.float32
        assert set(np.unique(r)) == {0.0, np.float32(1 / (1 - p))}
        kept = np.mean(r > 0)
        assert abs(kept - (1 - p)) < 4 * np.sqrt(p * (1 - p) / r.size)  # 4 sigma
        assert abs(r.mean() - 1) < 0.02  # inverted dropout: the mean input is unchanged


def test_masks_are_reproducible_from_the_seed_and_differ_by_epoch_and_step():
    dropout = Dropout([20, 30, 4], 0.5)
    first = dropout.masks(Noise(3, 1, 7, 16))
    assert first[0] is None  # no input dropout asked for
    again = dropout.masks(Noise(3, 1, 7, 16))
    assert np.array_equal(first[1], again[1])
    for other in [(4, 1, 7), (3, 0, 7), (3, 1, 8)]:
        assert not np.array_equal(first[1], dropout.masks(Noise(*other, 16))[1]), other


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cuts", [[(0, 16)], [(0, 5), (5, 16)], [(0, 1), (1, 8), (8, 16)]])
def test_a_sample_gets_the_same_masks_whichever_rank_serves_it(cuts, dtype):
    """Odd widths (7 inputs, 5 hidden): a sample's float32 numbers do not start on a
    whole word of the stream unless the layout pads them (distnn.noise)."""
    dropout = Dropout([7, 5, 3, 2], 0.4, 0.3, dtype)
    whole = dropout.masks(Noise(3, 1, 7, 16))
    parts = [dropout.masks(Noise(3, 1, 7, 16, a, b - a)) for a, b in cuts]
    for layer, mask in enumerate(whole):
        assert np.array_equal(np.vstack([part[layer] for part in parts]), mask), layer


def test_no_dropout_draws_nothing():
    assert Dropout([4, 3, 2]).masks(Noise(0, 0, 0, 5)) is None
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        Dropout([4, 3, 2], hidden=1.0)


def test_wrong_number_of_masks_is_refused():
    net, x, y = net_and_batch("relu", "cross_entropy")
    with pytest.raises(ValueError, match="expected 3 dropout masks"):
        net.gradient(x, y, masks=[None])
