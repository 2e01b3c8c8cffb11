"""SGD against the seed's rule and hand-worked momentum / Nesterov / decay examples."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.network import MLP
from distnn.optim import SGD

GRADS = [np.array([1.0, -1.0]), np.array([0.5, 0.5]), np.array([0.0, 1.0])]


def test_plain_sgd_is_the_seeds_rule() -> None:
    """w -> w - (eta/m) sum_x dC_x/dw, with grad_mean = sum / m."""
    net = MLP([6, 5, 3], dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    m, eta = 10, 3.0
    x, y = rng.random((m, 6)), rng.integers(0, 3, m)
    per_sample = [net.gradient(x[i : i + 1], y[i : i + 1])[1] for i in range(m)]
    seed_rule = net.params - (eta / m) * sum(per_sample)
    _, grad = net.gradient(x, y)
    grad_mean = grad / m
    exact = net.params - eta * grad_mean
    SGD(net.params).step(net.params, grad_mean, eta)
    np.testing.assert_array_equal(net.params, exact)  # bit for bit
    np.testing.assert_allclose(net.params, seed_rule, rtol=1e-13, atol=1e-15)


def test_momentum_hand_worked() -> None:
    # mu = 0.9, eta = 0.1: v1 = (1, -1), w1 = (0.9, 2.1); v2 = (1.4, -0.4),
    # w2 = (0.76, 2.14); v3 = (1.26, 0.64), w3 = (0.634, 2.076).
    params = np.array([1.0, 2.0])
    optimizer = SGD(params, momentum=0.9)
    expected = [[0.9, 2.1], [0.76, 2.14], [0.634, 2.076]]
    for g, w in zip(GRADS, expected):
        optimizer.step(params, g, 0.1)
        np.testing.assert_allclose(params, w, rtol=1e-14)
    np.testing.assert_allclose(optimizer.velocity, [1.26, 0.64], rtol=1e-14)


def test_nesterov_hand_worked() -> None:
    # Update g + mu v: (1.9, -1.9) -> w1 = (0.81, 2.19); (1.76, 0.14) -> w2 = (0.634, 2.176);
    # (1.134, 1.576) -> w3 = (0.5206, 2.0184).
    params = np.array([1.0, 2.0])
    optimizer = SGD(params, momentum=0.9, nesterov=True)
    expected = [[0.81, 2.19], [0.634, 2.176], [0.5206, 2.0184]]
    for g, w in zip(GRADS, expected):
        optimizer.step(params, g, 0.1)
        np.testing.assert_allclose(params, w, rtol=1e-14)


def test_weight_decay_only_on_masked_entries() -> None:
    # w -> w - eta (g + lmbda w) on the weight, plain SGD on the bias.
    params = np.array([1.0, 2.0])
    optimizer = SGD(params, weight_decay=0.1, decay_mask=np.array([True, False]))
    grad_mean = np.array([0.2, 0.2])
    optimizer.step(params, grad_mean, 0.5)
    np.testing.assert_allclose(params, [1.0 - 0.5 * (0.2 + 0.1), 2.0 - 0.5 * 0.2], rtol=1e-15)
    np.testing.assert_array_equal(grad_mean, [0.2, 0.2])  # the gradient is not touched


def test_weight_decay_with_the_network_mask() -> None:
    net = MLP([4, 3, 2], dtype="float64", seed=0)
    before = net.params.copy()
    SGD(net.params, weight_decay=0.01, decay_mask=net.weight_mask).step(
        net.params, np.zeros_like(net.params), 1.0
    )
    for w, b, s in zip(net.weights, net.biases, net.layer_slices):
        w_before, b_before = np.split(before[s], [w.size])
        np.testing.assert_allclose(w.T.ravel(), 0.99 * w_before, rtol=1e-15)
        np.testing.assert_array_equal(b, b_before)


def test_state_dict_round_trip() -> None:
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(6)]
    params_a = rng.standard_normal(5).astype(np.float32)
    params_b = params_a.copy()
    a = SGD(params_a, momentum=0.9, nesterov=True)
    for g in grads[:3]:
        a.step(params_a, g, 0.05)
    state = a.state_dict()
    assert set(state) >= {"velocity"} and state["velocity"].dtype == np.float32
    b = SGD(params_b, momentum=0.9, nesterov=True)
    for g in grads[:3]:  # b reaches the same params, then is resumed from a's state
        b.step(params_b, g, 0.05)
    b.velocity[...] = 0.0
    b.load_state_dict(state)
    for g in grads[3:]:
        a.step(params_a, g, 0.05)
        b.step(params_b, g, 0.05)
    np.testing.assert_array_equal(params_a, params_b)
    with pytest.raises(ValueError, match="parameters"):
        SGD(4).load_state_dict(state)


def test_float32_stays_float32() -> None:
    params = np.ones(3, np.float32)
    optimizer = SGD(params, momentum=0.5, weight_decay=1e-3)
    optimizer.step(params, np.full(3, 0.1, np.float32), 0.1)
    assert params.dtype == np.float32 and optimizer.velocity.dtype == np.float32
    assert SGD(10).velocity.dtype == np.float32


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}, {"weight_decay": 0.1}],
    ids=["plain", "momentum", "nesterov", "decay"],
)
def test_scale_folds_the_mean_into_the_step(options) -> None:
    """step(w, sum, eta, scale=1/m) == step(w, sum / m, eta) up to rounding; sum is kept."""
    rng = np.random.default_rng(0)
    grad_sums = [rng.standard_normal(6) for _ in range(3)]
    params_a, params_b = np.ones(6), np.ones(6)
    a, b = SGD(params_a, **options), SGD(params_b, **options)
    for grad_sum in grad_sums:
        kept = grad_sum.copy()
        a.step(params_a, grad_sum, 0.5, scale=1 / 10)
        np.testing.assert_array_equal(grad_sum, kept)
        b.step(params_b, grad_sum / 10, 0.5)
        np.testing.assert_allclose(params_a, params_b, rtol=1e-15)
    params = np.array([1.0, 2.0])
    SGD(params).step(params, np.array([10.0, -10.0]), 0.25, scale=1 / 10)  # the seed's rule
    np.testing.assert_array_equal(params, [1.0 - 0.25, 2.0 + 0.25])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nesterov"):
        SGD(3, nesterov=True)
    with pytest.raises(ValueError, match="decay_mask"):
        SGD(3, weight_decay=0.1, decay_mask=np.ones(4, bool))


@pytest.mark.parametrize("momentum, nesterov, decay", [(0.0, False, 0.0), (0.9, False, 0.01),
                                                       (0.9, True, 0.01)])
def test_steps_on_parts_equal_one_step_on_the_whole(momentum, nesterov, decay) -> None:
    """Ranks sharing one parameter vector each update a part: together, the whole step."""
    net = MLP([4, 3, 2], dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    whole_params, parts_params = net.params.copy(), net.params.copy()
    kwargs = dict(momentum=momentum, nesterov=nesterov, weight_decay=decay,
                  decay_mask=net.weight_mask)
    whole, parts = SGD(whole_params, **kwargs), SGD(parts_params, **kwargs)
    cuts = [slice(0, 7), slice(7, 16), slice(16, net.params.size)]  # across w and b
    for _ in range(3):
        grad_sum = rng.standard_normal(net.params.size)
        whole.step(whole_params, grad_sum, 0.1, scale=1 / 8)
        for part in cuts:
            parts.step(parts_params, grad_sum[part], 0.1, scale=1 / 8, part=part)
    np.testing.assert_array_equal(parts_params, whole_params)
    np.testing.assert_array_equal(parts.velocity, whole.velocity)
    assert not np.array_equal(whole_params, net.params)
