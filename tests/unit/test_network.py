"""MLP: backprop against central finite differences, layout of the flat parameter
vector, gradients written in place, costs, initialisation, reproducibility and dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distnn.activations import ACTIVATIONS, ELU
from distnn.costs import COSTS, CrossEntropyCost, QuadraticCost
from distnn.network import MLP

ACTIVATION_SPECS = [*ACTIVATIONS, {"name": "elu", "alpha": 0.5}]
ACTIVATION_IDS = [*ACTIVATIONS, "elu0.5"]
SIZES = [[5, 4, 3], [6, 5, 4, 4, 3]]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), the usual measure for gradient checks."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numerical_gradient(net: MLP, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the summed cost, one parameter at a time (forward pass only)."""
    grad = np.empty_like(net.params)
    for i in range(net.params.size):
        old = net.params[i]
        net.params[i] = old + eps
        cost_plus = summed_cost(net, x, y)
        net.params[i] = old - eps
        cost_minus = summed_cost(net, x, y)
        net.params[i] = old
        grad[i] = (cost_plus - cost_minus) / (2 * eps)
    return grad


def pre_activations(net: MLP, x: np.ndarray) -> list[np.ndarray]:
    zs, a = [], x
    for w, b in zip(net.weights, net.biases):
        zs.append(a @ w.T + b)
        a = net.activation.fn(zs[-1])
    return zs


def summed_cost(net: MLP, x: np.ndarray, y: np.ndarray) -> float:
    """sum_x C_x from this file's own forward pass, not the network's backprop code."""
    z = pre_activations(net, x)[-1]
    return net.cost.fn(z, net.cost.output(z, net.activation), y)


def targets(net: MLP, rng: np.random.Generator, m: int) -> np.ndarray:
    """Class numbers (m,), or for regression (the linear cost) reals (m, n_L)."""
    if net.cost.name == "linear":
        return rng.standard_normal((m, net.sizes[-1]))
    return rng.integers(0, net.sizes[-1], m)


def batch_away_from_kinks(net: MLP, m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A batch whose z's are all > 1e-3 from 0, where ReLU, leaky ReLU and ELU kink,
    so that finite differences with eps = 1e-6 never straddle a kink."""
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((m, net.sizes[0]))
        if min(np.abs(z).min() for z in pre_activations(net, x)) > 1e-3:
            return x, targets(net, rng, m)
    raise AssertionError("no kink-free batch found")


@pytest.mark.parametrize("sizes", SIZES, ids=["2-layer", "4-layer"])
@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("activation", ACTIVATION_SPECS, ids=ACTIVATION_IDS)
def test_gradient_matches_finite_differences(activation, cost, sizes) -> None:
    net = MLP(sizes, activation=activation, cost=cost, init="xavier", dtype="float64", seed=3)
    net.biases[0][...] = np.random.default_rng(7).standard_normal(net.biases[0].shape)
    x, y = batch_away_from_kinks(net)
    cost_value, grad = net.gradient(x, y)
    numerical = numerical_gradient(net, x, y)
    assert relative_error(grad, numerical) < 1e-6
    assert cost_value == pytest.approx(summed_cost(net, x, y), rel=1e-12)


@pytest.mark.parametrize("cost", list(COSTS))
def test_gradient_is_sum_of_per_sample_gradients(cost) -> None:
    net = MLP([6, 5, 4, 3], activation="tanh", cost=cost, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 6)), targets(net, rng, 7)
    cost_value, grad = net.gradient(x, y)
    per_sample = [net.gradient(x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    np.testing.assert_allclose(grad, sum(g for _, g in per_sample), rtol=1e-12, atol=1e-14)
    assert cost_value == pytest.approx(sum(c for c, _ in per_sample), rel=1e-12)


def test_forward_matches_the_seeds_column_equations() -> None:
    """z = w a + b per sample, with a as a column vector, exactly as in the seed."""
    net = MLP([4, 3, 2], activation="sigmoid", dtype="float64", seed=5)
    x = np.random.default_rng(0).random((3, 4))
    for sample, output in zip(x, net.forward(x)):
        a = sample.reshape(-1, 1)  # column
        for w, b in zip(net.weights, net.biases):
            a = 1.0 / (1.0 + np.exp(-(w @ a + b.reshape(-1, 1))))
        np.testing.assert_allclose(output, a.ravel(), rtol=1e-13)
    np.testing.assert_array_equal(net.predict(x), np.argmax(net.forward(x), axis=1))


def test_params_layout_and_views() -> None:
    net = MLP([5, 4, 3], seed=0)
    assert net.sizes == [5, 4, 3]
    assert [w.shape for w in net.weights] == [(4, 5), (3, 4)]
    assert [b.shape for b in net.biases] == [(4,), (3,)]
    assert net.params.size == 4 * 5 + 4 + 3 * 4 + 3
    assert net.layer_slices == [slice(0, 24), slice(24, 39)]
    for w, b, s in zip(net.weights, net.biases, net.layer_slices):
        # w column by column (w^T row by row), then b, inside the layer's slice
        np.testing.assert_array_equal(net.params[s], np.concatenate([w.T.ravel(), b]))
        assert np.shares_memory(w, net.params) and np.shares_memory(b, net.params)
    net.params[:] = np.arange(net.params.size)  # writing params changes weights
    assert net.weights[0][0, 1] == 4 and net.biases[0][0] == 20 and net.weights[1][0, 0] == 24
    assert net.weights[0][1, 0] == 1  # w[j, k] is at k * n_out + j
    net.weights[1][2, 3] = -7.0  # and writing weights changes params
    net.biases[1][2] = -8.0
    assert net.params[24 + 3 * 3 + 2] == -7.0 and net.params[-1] == -8.0
    mask = net.weight_mask
    assert mask.dtype == bool and mask.sum() == 20 + 12
    assert not mask[20:24].any() and not mask[36:39].any() and mask[24:36].all()


def test_gradient_writes_into_whichever_out_it_is_given() -> None:
    """The reducers hand backprop a buffer (a row of shared memory, say) and keep it."""
    net = MLP([6, 5, 4, 4, 3], cost="cross_entropy", dtype="float64", seed=2)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 6)), rng.integers(0, 3, 8)) for _ in range(3)]
    _, reference = net.gradient(*batches[0])
    first, second = np.full(net.params.size, np.nan), np.full(net.params.size, np.nan)
    for out in (first, second, first):  # the layer views of each buffer are the right ones
        for x, y in batches:
            _, grad = net.gradient(x, y, out=out)
            assert grad is out
            np.testing.assert_array_equal(grad, net.gradient(x, y)[1])
    assert not np.isnan(second).any()
    np.testing.assert_array_equal(net.gradient(*batches[0], out=second)[1], reference)


def test_workspace_reuse_with_changing_batch_sizes() -> None:
    net = MLP([5, 4, 3], cost="cross_entropy", dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((m, 5)), rng.integers(0, 3, m)) for m in (4, 3, 4, 1, 7, 2)]
    first = [net.gradient(x, y)[1].copy() for x, y in batches]
    again = [net.gradient(x, y)[1] for x, y in reversed(batches)][::-1]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_costs_against_direct_formulas() -> None:
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    one_hot = np.eye(4)[y]
    sigmoid = ACTIVATIONS["sigmoid"]()
    quadratic = QuadraticCost()
    a = quadratic.output(z, sigmoid)
    assert quadratic.fn(z, a, y) == pytest.approx(0.5 * np.sum((one_hot - a) ** 2), rel=1e-13)
    np.testing.assert_allclose(quadratic.delta(z, a, y, sigmoid), (a - one_hot) * a * (1 - a))
    ce = CrossEntropyCost()
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ce.output(z, sigmoid), softmax, rtol=1e-13)
    assert ce.fn(z, softmax, y) == pytest.approx(-np.log(softmax[np.arange(5), y]).sum())
    np.testing.assert_allclose(ce.delta(z, softmax, y, sigmoid), softmax - one_hot)
    for cost, a_out in ((quadratic, a), (ce, softmax)):  # backprop's call: the two at once
        fn, delta = cost.fn_and_delta(z, a_out, y, sigmoid)
        assert fn == cost.fn(z, a_out, y)
        np.testing.assert_array_equal(delta, cost.delta(z, a_out, y, sigmoid))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_z(dtype) -> None:
    z = np.array([[1e30, -1e30, 0.0], [-1e4, 1e4, 3.0], [1e30, 1e30, -1e30]], dtype)
    y = np.array([1, 1, 0])
    ce = CrossEntropyCost()
    # e^-2e30 underflowing to 0 is the right answer; overflow or NaN is not.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = ce.output(z, None)
        cost = ce.fn(z, a, y)
        delta = ce.delta(z, a, y, None)
    assert a.dtype == dtype and delta.dtype == dtype
    np.testing.assert_allclose(a, [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]], atol=1e-7)
    assert np.isfinite(cost) and cost == pytest.approx(2e30 + 0.0 + np.log(2.0), rel=1e-6)


def test_reproducible_with_seed() -> None:
    a, b, c = MLP([10, 8, 3], seed=4), MLP([10, 8, 3], seed=4), MLP([10, 8, 3], seed=5)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    d = MLP([10, 8, 3], seed=4, dtype="float64")  # same draws, then rounded to float32
    np.testing.assert_array_equal(a.params, d.params.astype(np.float32))


def test_a_conv_nets_layers_start_from_draws_of_their_own() -> None:
    """A ConvNet's fully connected layers start as the MLP of their sizes and seed does,
    and its filters from other draws of the seed, not scaled copies of those (He draws
    N(0, 1) * sqrt(2 / fan_in) for both). Runs compared with runs cannot see which draws
    a layer took; a filter copied from another layer's draws learns worse."""
    from distnn.convnet import ConvNet

    net = ConvNet(["1x6x6", "conv4x3", "pool2", 8, 3], dtype="float64", seed=4)
    head = MLP(net.dense_sizes, init="he", dtype="float64", seed=4)  # 16 features, 8, 3
    np.testing.assert_array_equal(net.head.params, head.params)
    filters = net.filters[0] / np.sqrt(2 / 9)  # (4, 9): a filter a row, as drawn
    fc = head.weights[0].ravel() / np.sqrt(2 / 16)  # the MLP's draws, in the order drawn
    assert not np.isclose(filters.ravel(), fc[:filters.size]).any()
    assert filters.std() == pytest.approx(1.0, rel=0.5)  # 36 draws of N(0, 1)
    again, other = (ConvNet(net.layers, dtype="float64", seed=s) for s in (4, 5))
    np.testing.assert_array_equal(again.params, net.params)
    assert not np.isclose(other.filters[0], net.filters[0]).any()


def test_initializer_scales() -> None:
    n_in, n_out = 400, 300
    standard = MLP([n_in, n_out], init="standard", dtype="float64", seed=0)
    xavier = MLP([n_in, n_out], init="xavier", dtype="float64", seed=0)
    he = MLP([n_in, n_out], init="he", dtype="float64", seed=0)
    assert standard.weights[0].std() == pytest.approx(1.0, rel=0.02)
    assert standard.biases[0].std() == pytest.approx(1.0, rel=0.15)
    assert xavier.weights[0].std() == pytest.approx(np.sqrt(2 / (n_in + n_out)), rel=0.02)
    assert he.weights[0].std() == pytest.approx(np.sqrt(2 / n_in), rel=0.02)
    assert not xavier.biases[0].any() and not he.biases[0].any()


@pytest.mark.parametrize("factor", [6.0, 2.0])
def test_glorot_uniform_is_scikit_learns(factor) -> None:
    """U(-r, r), r = sqrt(factor / (n_in + n_out)), for weights and biases alike."""
    from distnn.initializers import GlorotUniform

    n_in, n_out = 400, 300
    net = MLP([n_in, n_out], init=GlorotUniform(factor), dtype="float64", seed=0)
    r = np.sqrt(factor / (n_in + n_out))
    for values in (net.weights[0], net.biases[0]):
        assert np.abs(values).max() <= r
        assert np.abs(values).max() > 0.99 * r
    assert net.weights[0].std() == pytest.approx(r / np.sqrt(3), rel=0.02)  # U's deviation


def test_config_round_trip() -> None:
    net = MLP([7, 6, 3], activation=ELU(0.5), cost="cross_entropy", init="he", seed=9)
    config = json.loads(json.dumps(net.config()))
    assert config == {
        "sizes": [7, 6, 3],
        "activation": {"name": "elu", "alpha": 0.5},
        "cost": "cross_entropy",
        "init": "he",
        "dtype": "float32",
        "seed": 9,
    }
    rebuilt = MLP(**config)
    assert rebuilt.config() == net.config()
    assert rebuilt.activation.alpha == 0.5
    np.testing.assert_array_equal(rebuilt.params, net.params)
    assert MLP([3, 2]).config()["activation"] == "sigmoid"


@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("activation", ACTIVATION_SPECS, ids=ACTIVATION_IDS)
def test_float32_everywhere(activation, cost) -> None:
    """No silent upcast: params, gradient, outputs and every buffer stay float32,
    and the float32 gradient agrees with the float64 one to float32 precision."""
    net32 = MLP([6, 5, 4], activation=activation, cost=cost, dtype="float32", seed=0)
    net64 = MLP(**{**net32.config(), "dtype": "float64"})
    net64.params[:] = net32.params  # identical (float32-representable) parameters
    rng = np.random.default_rng(0)
    x, y = rng.random((9, 6)).astype(np.float32), targets(net32, rng, 9)
    if y.dtype.kind == "f":  # regression targets come in the net's dtype, as the trainer's
        y = y.astype(np.float32)
    cost32, grad32 = net32.gradient(x, y)
    assert isinstance(cost32, float)
    assert grad32.dtype == np.float32 and net32.params.dtype == np.float32
    assert net32.forward(x).dtype == np.float32
    for buffers in vars(net32._workspace(9)).values():
        assert all(b.dtype == np.float32 for b in buffers)
    cost64, grad64 = net64.gradient(x.astype(np.float64), y)
    assert cost32 == pytest.approx(cost64, rel=1e-5)
    assert relative_error(grad32, grad64) < 1e-5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown cost"):
        MLP([3, 2], cost="hinge")
    with pytest.raises(ValueError, match="unknown init"):
        MLP([3, 2], init="orthogonal")
    with pytest.raises(ValueError, match="dtype"):
        MLP([3, 2], dtype="float16")
    with pytest.raises(ValueError, match="shape"):
        MLP([3, 2]).forward(np.zeros((4, 5), np.float32))


def test_bind_moves_the_parameters_to_another_vector() -> None:
    net = MLP([5, 4, 3], dtype="float64", seed=0)
    x, y = np.random.default_rng(0).random((6, 5)), np.array([0, 1, 2, 0, 1, 2])
    before = net.gradient(x, y)[1]
    elsewhere = net.params.copy()  # e.g. memory the ranks of a node share
    net.bind(elsewhere)
    assert net.params is elsewhere and np.shares_memory(net.weights[0], elsewhere)
    np.testing.assert_array_equal(net.gradient(x, y)[1], before)
    elsewhere[net.layer_slices[1]] = 0.0  # the network reads the new vector
    assert not net.weights[1].any() and not net.biases[1].any()
    with pytest.raises(ValueError, match="flat float64 vector of 39"):
        net.bind(np.zeros(38))


def test_the_linear_cost_is_the_seeds_quadratic_cost_on_an_identity_output() -> None:
    """By hand: one sample, two outputs, a 1-layer net with w = [[1, 2], [3, 4]], b = 0:
    a = z = w x = (5, 11) for x = (1, 2); y = (4, 13); C = 1/2 (1 + 4) = 2.5;
    delta = a - y = (1, -2); dC/dw = delta x^T = [[1, 2], [-2, -4]], dC/db = delta."""
    net = MLP([2, 2], activation="sigmoid", cost="linear", dtype="float64")
    net.weights[0][...] = [[1, 2], [3, 4]]
    net.biases[0][...] = 0
    x, y = np.array([[1.0, 2.0]]), np.array([[4.0, 13.0]])
    np.testing.assert_array_equal(net.forward(x), [[5.0, 11.0]])  # no sigmoid at the output
    np.testing.assert_array_equal(net.predict(x), [[5.0, 11.0]])  # values, not a class
    cost, grad = net.gradient(x, y)
    assert cost == 2.5
    g_w, g_b = net._views(grad)
    np.testing.assert_array_equal(g_w[0], [[1, 2], [-2, -4]])
    np.testing.assert_array_equal(g_b[0], [1, -2])


def summed_cost_of_x(net: MLP, x: np.ndarray, y: np.ndarray, r0: np.ndarray | None) -> float:
    """sum_x C_x as a function of the input, through the input's dropout mask r0."""
    return summed_cost(net, x if r0 is None else x * r0, y)


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "input-mask"])
@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_input_delta_is_dc_dx_by_central_differences(activation, cost, masked) -> None:
    """What a conv layer in front of the MLP receives: dC/dx of every input."""
    net = MLP([6, 5, 4, 3], activation=activation, cost=cost, init="xavier", dtype="float64",
              seed=2)
    net.biases[0][...] = np.random.default_rng(7).standard_normal(net.biases[0].shape)
    x, y = batch_away_from_kinks(net)
    r0 = (np.random.default_rng(3).random(x.shape) < 0.5) * 2.0 if masked else None
    masks = [r0, None, None] if masked else None
    if masked:  # away from kinks with the input thinned too
        assert min(np.abs(z).min() for z in pre_activations(net, x * r0)) > 1e-3
    input_delta = np.full_like(x, np.nan)
    net.gradient(x, y, masks=masks, input_delta=input_delta)
    numerical = np.empty_like(x)
    eps = 1e-6
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + eps
        plus = summed_cost_of_x(net, x, y, r0)
        x[index] = old - eps
        minus = summed_cost_of_x(net, x, y, r0)
        x[index] = old
        numerical[index] = (plus - minus) / (2 * eps)
    assert relative_error(input_delta, numerical) < 1e-7
    if masked:  # a dropped input has no say
        assert not input_delta[r0 == 0].any()


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "masks"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_input_delta_leaves_the_cost_and_gradient_bitwise_as_they_were(dtype, masked) -> None:
    net = MLP([6, 5, 4, 3], activation="relu", cost="cross_entropy", dtype=dtype, seed=4)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 6)).astype(dtype), rng.integers(0, 3, 7)
    masks = [(rng.random((7, n)) < 0.5).astype(dtype) * 2 for n in (6, 5, 4)] if masked \
        else None
    cost, grad = net.gradient(x, y, masks=masks)
    grad = grad.copy()
    x_before = x.copy()
    with_delta = net.gradient(x, y, masks=masks, input_delta=np.empty_like(x))
    assert with_delta[0] == cost
    np.testing.assert_array_equal(with_delta[1], grad)
    np.testing.assert_array_equal(x, x_before)  # the caller's input untouched
