"""ConvNet's cost and gradient against three independent answers, and its buffers.

1. PyTorch autograd on the same weights, float64, relative error <= 1e-10: the
   fixtures in tests/fixtures/conv/, written once by
   tests/fixtures/make_conv_fixtures.py (torch is a test-only peer; nothing here
   imports it).
2. A direct loop over samples, pixels and filters, written below from the
   equations of ``distnn.conv``'s docstring and nothing else: (FF), max-pooling
   routing delta to the first of equals, (BP2c) as the full convolution with the
   flipped kernel, (BP3c), (BP4c), and the dense layers sample by sample.
3. Central differences of the cost from ``forward``.

Then float32 against float64, ``forward`` in pieces against row by row, and the
workspaces: reused, and never leaking one call into the next.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distnn import architecture
from distnn.convnet import ConvNet, build
from tests.support.conv_layout import flat_of, layers_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "conv"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz"))


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), the usual measure for gradient checks."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def load(name: str, dtype: str = "float64") -> tuple[ConvNet, dict[str, np.ndarray]]:
    """The fixture's net with its parameters, and its arrays."""
    with np.load(FIXTURES / f"{name}.npz") as f:
        data = dict(f)
    net = ConvNet(architecture.parse(str(data["spec"])), json.loads(str(data["activation"])),
                  str(data["cost"]), dtype=dtype)
    net.params[...] = data["params"]
    return net, data


def masks_of(net: ConvNet, data: dict[str, np.ndarray]) -> list[np.ndarray | None]:
    return [data.get(f"mask_{l}") for l in range(len(net.dense_sizes) - 1)]


def random_net(spec: str, activation: str = "tanh", cost: str = "cross_entropy",
               seed: int = 0, dtype: str = "float64") -> ConvNet:
    """A seeded net whose biases are not all zero (He's are)."""
    net = ConvNet(architecture.parse(spec), activation, cost, init="he", dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 50)
    for b in [*net.conv_biases, *net.head.biases]:
        b[...] = 0.1 * rng.standard_normal(b.shape)
    return net


def batch(net: ConvNet, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, net.sizes[0])).astype(net.dtype)
    if net.cost.name == "linear":
        return x, rng.standard_normal((m, net.dense_sizes[-1])).astype(net.dtype)
    return x, rng.integers(0, net.dense_sizes[-1], m)


# -- 1. PyTorch's answers ------------------------------------------------------------


def test_the_fixtures_cover_what_they_are_for():
    """Ties that change the gradient, 'same' padding, several input channels, partial
    windows, dropout, every activation and cost: if a fixture is rewritten without
    them, this says so."""
    assert len(CASES) >= 5
    seen = {"activation": set(), "cost": set()}
    same = channels = partial = masks = False
    for name in CASES:
        net, data = load(name)
        seen["activation"].add(net.activation.name)
        seen["cost"].add(net.cost.name)
        same |= any(c.pad for c in net.convs) and any(c.pool > 1 for c in net.convs)
        channels |= net.convs[0].c_in > 1 and len(net.convs) > 1
        partial |= any(c.conv_shape[0] % c.pool for c in net.convs)
        masks |= "mask_0" in data
    assert seen["activation"] == {"relu", "sigmoid", "tanh", "leaky_relu", "elu"}
    assert seen["cost"] == {"cross_entropy", "quadratic", "linear"}
    assert same and channels and partial and masks
    # Routing delta to the last of equal values instead of the first changes torch's
    # gradient: the ties in this fixture matter.
    _, ties = load("ties")
    assert ties["x"].mean() < 0.3 and set(np.unique(ties["x"])) == {0.0, 1.0}
    assert relative_error(ties["grad"], ties["grad_last_max"]) > 1e-3


@pytest.mark.parametrize("name", CASES)
def test_cost_and_gradient_equal_pytorch_autograd(name):
    net, data = load(name)
    cost, grad = net.gradient(data["x"], data["y"], masks=masks_of(net, data))
    assert relative_error(grad, data["grad"]) <= 1e-10
    assert cost == pytest.approx(float(data["cost_value"]), rel=1e-10)
    if "grad_last_max" in data:  # and not the gradient of the other tie-break
        assert relative_error(grad, data["grad_last_max"]) > 1e-3


# -- 2. A direct loop over pixels --------------------------------------------------------


def sigma_and_prime(net: ConvNet):
    """sigma and sigma' from their definitions, not from distnn.activations."""
    name = net.activation.name
    if name == "relu":
        return lambda z: np.maximum(z, 0.0), lambda z: (z > 0) * 1.0
    if name == "leaky_relu":
        return lambda z: np.where(z > 0, z, 0.1 * z), lambda z: np.where(z > 0, 1.0, 0.1)
    if name == "sigmoid":
        return lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2
    if name == "tanh":
        return np.tanh, lambda z: 1 - np.tanh(z) ** 2
    alpha = net.activation.alpha  # elu
    return (lambda z: np.where(z >= 0, z, alpha * (np.exp(z) - 1)),
            lambda z: np.where(z >= 0, 1.0, alpha * np.exp(z)))


def loop_conv_forward(a, w, b, pad, p, sigma):
    """One sample through one layer, the lecture's order: conv, sigma, then max-pool.
    a[x, y, c] is (H, W, C_in), w[f, i, j, c] is (C_out, k, k, C_in)."""
    k = w.shape[1]
    a_pad = np.pad(a, ((pad, pad), (pad, pad), (0, 0)))
    hc, wc = a_pad.shape[0] - k + 1, a_pad.shape[1] - k + 1
    z = np.empty((hc, wc, len(b)))
    for x in range(hc):
        for y in range(wc):
            for f in range(len(b)):  # (FF)
                z[x, y, f] = b[f] + np.sum(w[f] * a_pad[x:x + k, y:y + k, :])
    s = sigma(z)
    out = np.empty((hc // p, wc // p, len(b)))
    won = {}  # pooled position -> the position of the conv map that won
    for X in range(hc // p):
        for Y in range(wc // p):
            for f in range(len(b)):
                best = None
                for i in range(p):
                    for j in range(p):  # row by row, the first of equals kept
                        if best is None or s[p * X + i, p * Y + j, f] > best:
                            best, won[X, Y, f] = s[p * X + i, p * Y + j, f], (p * X + i,
                                                                               p * Y + j)
                out[X, Y, f] = best
    return out, (a_pad, z, won)


def loop_conv_backward(d_out, w, pad, prime, tape):
    """dC/da of the pooled output -> (nabla_w, nabla_b, dC/da of the layer's input)."""
    a_pad, z, won = tape
    k = w.shape[1]
    hc, wc, n_f = z.shape
    d_s = np.zeros_like(z)
    for (X, Y, f), (x, y) in won.items():  # max-pooling: delta to the winner, 0 elsewhere
        d_s[x, y, f] = d_out[X, Y, f]
    delta = d_s * prime(z)
    nabla_b = np.array([np.sum(delta[:, :, f]) for f in range(n_f)])  # (BP3c)
    nabla_w = np.empty_like(w)
    for f in range(n_f):
        for i in range(k):
            for j in range(k):
                for c in range(w.shape[3]):  # (BP4c)
                    nabla_w[f, i, j, c] = np.vdot(delta[:, :, f], a_pad[i:i + hc, j:j + wc, c])
    # (BP2c): delta padded with k - 1 zeros, correlated with the flipped kernel.
    d_pad = np.pad(delta, ((k - 1, k - 1), (k - 1, k - 1), (0, 0)))
    flipped = w[:, ::-1, ::-1, :]
    d_a = np.empty(a_pad.shape)
    for x in range(a_pad.shape[0]):
        for y in range(a_pad.shape[1]):
            for c in range(a_pad.shape[2]):
                d_a[x, y, c] = np.sum(d_pad[x:x + k, y:y + k, :]
                                      * flipped[:, :, :, c].transpose(1, 2, 0))
    h, w_ = a_pad.shape[0] - 2 * pad, a_pad.shape[1] - 2 * pad
    return nabla_w, nabla_b, d_a[pad:pad + h, pad:pad + w_, :]


def loop_gradient(net: ConvNet, x, y, masks=None) -> tuple[float, np.ndarray]:
    """sum_x C_x and its gradient, one sample at a time, every layer by its equations."""
    sigma, prime = sigma_and_prime(net)
    layers = layers_of(net, net.params)
    n_conv = len(net.convs)
    grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    masks = masks or [None] * (len(layers) - n_conv)
    total = 0.0
    c_in, h, w_ = net.image_shape
    for s in range(len(x)):
        a = x[s].reshape(c_in, h, w_).transpose(1, 2, 0)  # a[x, y, c]
        tapes = []
        for conv, (w, b) in zip(net.convs, layers):
            a, tape = loop_conv_forward(a, w, b, conv.pad, conv.pool, sigma)
            tapes.append(tape)
        maps_shape = a.shape
        a = a.reshape(-1)  # the features in (H, W, C) order
        ins, zs = [], []
        for l, (w, b) in enumerate(layers[n_conv:]):
            if masks[l] is not None:
                a = a * masks[l][s]
            ins.append(a)
            zs.append(w @ a + b)
            a = sigma(zs[-1])
        z = zs[-1]
        if net.cost.name == "cross_entropy":
            out = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            total -= np.log(out[y[s]])
            delta = out - np.eye(len(z))[y[s]]  # (BP1) with the softmax
        elif net.cost.name == "quadratic":
            total += 0.5 * np.sum((sigma(z) - np.eye(len(z))[y[s]]) ** 2)
            delta = (sigma(z) - np.eye(len(z))[y[s]]) * prime(z)  # (BP1)
        else:  # linear
            total += 0.5 * np.sum((z - y[s]) ** 2)
            delta = z - y[s]
        for l in range(len(zs) - 1, -1, -1):
            w, _ = layers[n_conv + l]
            grads[n_conv + l][0][...] += np.outer(delta, ins[l])  # (BP4)
            grads[n_conv + l][1][...] += delta  # (BP3)
            d_in = w.T @ delta
            if masks[l] is not None:
                d_in = d_in * masks[l][s]
            if l > 0:
                delta = d_in * prime(zs[l - 1])  # (BP2)
        d_a = d_in.reshape(maps_shape)
        for l in range(n_conv - 1, -1, -1):
            conv, (w, _) = net.convs[l], layers[l]
            nabla_w, nabla_b, d_a = loop_conv_backward(d_a, w, conv.pad, prime, tapes[l])
            grads[l][0][...] += nabla_w
            grads[l][1][...] += nabla_b
    return total, flat_of(net, grads)


@pytest.mark.parametrize("name", CASES)
def test_gradient_equals_a_direct_loop_over_pixels(name):
    """Also against torch: the loop is a reference only if it agrees with the other one."""
    net, data = load(name)
    masks = masks_of(net, data)
    cost, grad = net.gradient(data["x"], data["y"], masks=masks)
    loop_cost, loop_grad = loop_gradient(net, data["x"], data["y"], masks)
    assert relative_error(grad, loop_grad) <= 1e-12
    assert cost == pytest.approx(loop_cost, rel=1e-12)
    assert relative_error(loop_grad, data["grad"]) <= 1e-12


@pytest.mark.parametrize("spec,activation,cost", [
    ("2x7x5,conv2x5:same,pool2,3", "relu", "linear"),  # pad 2, non-square, partial window
    ("3x6x6,conv2x3,conv3x3:same,pool2,conv2x2,3", "sigmoid", "quadratic"),  # three convs
    ("1x5x5,conv2x5,2", "tanh", "cross_entropy"),  # the kernel the map's size: a 1x1 map
])
def test_gradient_equals_the_loop_on_other_shapes(spec, activation, cost):
    net = random_net(spec, activation, cost, seed=4)
    x, y = batch(net, 3, seed=5)
    x[:, ::3] = 0.0  # background
    cost_value, grad = net.gradient(x, y)
    loop_cost, loop_grad = loop_gradient(net, x, y)
    assert relative_error(grad, loop_grad) <= 1e-12
    assert cost_value == pytest.approx(loop_cost, rel=1e-12)


# -- 3. Central differences ------------------------------------------------------------


def summed_cost(net: ConvNet, x: np.ndarray, y: np.ndarray) -> float:
    """sum_x C_x from the outputs of ``forward``, by the costs' definitions."""
    a = net.forward(x)
    if net.cost.name == "cross_entropy":
        return float(-np.sum(np.log(a[np.arange(len(y)), y])))
    target = y if net.cost.name == "linear" else np.eye(a.shape[1])[y]
    return float(0.5 * np.sum((a - target) ** 2))


def numerical_gradient(net: ConvNet, x, y, eps: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(net.params)
    for i in range(net.params.size):
        old = net.params[i]
        net.params[i] = old + eps
        plus = summed_cost(net, x, y)
        net.params[i] = old - eps
        minus = summed_cost(net, x, y)
        net.params[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def far_from_kinks_and_ties(net: ConvNet, x: np.ndarray, margin: float = 1e-4) -> bool:
    """No conv z within ``margin`` of 0 and no pooling window whose two largest are within
    it: central differences with eps = 1e-6 then cross neither (the loop's forward)."""
    sigma, _ = sigma_and_prime(net)
    layers = layers_of(net, net.params)
    c_in, h, w_ = net.image_shape
    for sample in x:
        a = sample.reshape(c_in, h, w_).transpose(1, 2, 0)
        for conv, (w, b) in zip(net.convs, layers):
            a, (_, z, _) = loop_conv_forward(a, w, b, conv.pad, conv.pool, sigma)
            if np.abs(z).min() < margin:
                return False
            p = conv.pool
            hp, wp = z.shape[0] // p * p, z.shape[1] // p * p
            windows = z[:hp, :wp].reshape(hp // p, p, wp // p, p, -1).transpose(0, 2, 4, 1, 3)
            top2 = np.sort(windows.reshape(*windows.shape[:3], -1), axis=-1)[..., -2:]
            if p > 1 and (top2[..., 1] - top2[..., 0]).min() < margin:
                return False
    return True


@pytest.mark.parametrize("spec,activation,cost", [
    ("2x6x6,conv3x3:same,pool2,conv2x2,4,3", "tanh", "cross_entropy"),
    ("2x7x5,conv2x3:same,pool2,conv3x2,3", "relu", "quadratic"),
    ("1x7x7,conv3x2,pool3,4,2", "elu", "linear"),
])
def test_gradient_equals_central_differences(spec, activation, cost):
    net = random_net(spec, activation, cost, seed=1)
    assert net.params.size < 400
    for seed in range(100):
        x, y = batch(net, 3, seed=seed)
        if far_from_kinks_and_ties(net, x):
            break
    else:
        raise AssertionError("no batch away from kinks and ties")
    cost_value, grad = net.gradient(x, y)
    assert relative_error(grad, numerical_gradient(net, x, y)) < 1e-7
    assert cost_value == pytest.approx(summed_cost(net, x, y), rel=1e-12)


# -- float32, batches, forward in pieces ---------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_float32_gives_the_float64_answer(name):
    net64, data = load(name)
    net32, _ = load(name, dtype="float32")
    masks = masks_of(net64, data)
    cost64, grad64 = net64.gradient(data["x"], data["y"], masks=masks)
    x32 = data["x"].astype(np.float32)
    y32 = data["y"].astype(np.float32) if net32.cost.name == "linear" else data["y"]
    masks32 = [None if r is None else r.astype(np.float32) for r in masks]
    cost32, grad32 = net32.gradient(x32, y32, masks=masks32)
    assert grad32.dtype == np.float32 and net32.forward(x32).dtype == np.float32
    assert relative_error(grad32, grad64) < 1e-5
    assert cost32 == pytest.approx(cost64, rel=1e-5)


def test_a_batch_gradient_is_the_sum_of_the_samples():
    net = random_net("2x6x5,conv3x3:same,pool2,conv2x2,4,3", "tanh", seed=2)
    x, y = batch(net, 5)
    cost, grad = net.gradient(x, y)
    per_sample = [net.gradient(x[i:i + 1], y[i:i + 1]) for i in range(len(x))]
    np.testing.assert_allclose(grad, sum(g for _, g in per_sample), rtol=1e-12, atol=1e-14)
    assert cost == pytest.approx(sum(c for c, _ in per_sample), rel=1e-12)


def test_forward_in_pieces_equals_forward_row_by_row():
    """forward() takes more than 256 rows in pieces; every row comes back, in order."""
    net = random_net("1x6x6,conv2x3,pool2,3", "relu", seed=3)
    x, _ = batch(net, 600)
    whole = net.forward(x)
    assert whole.shape == (600, 3)
    rows = np.concatenate([net.forward(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(whole, rows, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(net.predict(x), np.argmax(rows, axis=1))
    assert net.forward(x[:0]).shape == (0, 3)


def test_the_flat_vector_holds_each_layer_where_the_docstring_says():
    """Conv layers' w (columns in (i, j, c) order, stored column by column) then b,
    then the MLP's layout; the views are into ``params``, as checkpoints need."""
    net = random_net("2x5x5,conv3x2,pool2,conv2x3:same,4,3", seed=1)
    start = 0
    for conv, w, b in zip(net.convs, net.filters, net.conv_biases):
        assert w.shape == (conv.c_out, conv.k * conv.k * conv.c_in)
        assert np.shares_memory(w, net.params) and np.shares_memory(b, net.params)
        n = w.size
        np.testing.assert_array_equal(net.params[start:start + n], w.T.ravel())
        np.testing.assert_array_equal(net.params[start + n:start + n + conv.c_out], b)
        start += n + conv.c_out
    np.testing.assert_array_equal(net.params[start:], net.head.params)
    assert net.params.size == architecture.n_params(net.layers)
    assert net.dense_sizes == [2 * 2 * 2, 4, 3]
    assert net.sizes == [50, 3 * 2 * 2, 2 * 2 * 2, 4, 3]


def test_config_rebuilds_the_same_network():
    net = random_net("1x6x6,conv2x3:same,pool2,4,3", "tanh", seed=7)
    again = build(**json.loads(json.dumps(net.config())))
    assert isinstance(again, ConvNet) and again.layers == net.layers
    np.testing.assert_array_equal(again.params, ConvNet(net.layers, "tanh", seed=7,
                                                        dtype="float64").params)


# -- workspaces -------------------------------------------------------------------------


def buffers(net: ConvNet, m: int) -> list[int]:
    """The ids of every buffer the network keeps for batches of m."""
    ws = net._workspace.held[m]
    arrays = [ws.images, ws.features_delta]
    for lws in ws.layers:
        arrays += [v for v in vars(lws).values() if isinstance(v, np.ndarray)]
    head = net.head._workspace.held[m]
    arrays += [a for v in vars(head).values() for a in (v if isinstance(v, list) else [v])]
    return [id(a) for a in arrays]


def test_workspaces_are_reused_and_keep_nothing_from_one_call_to_the_next():
    # Padding, a partial window (7 -> 3) and a second conv: every buffer kind is made.
    net = random_net("2x7x7,conv3x3:same,pool2,conv2x2,4,3", "relu", seed=6)
    x, y = batch(net, 4)
    x[:, ::2] = 0.0  # ties at 0 in the background
    x2, y2 = batch(net, 4, seed=1)
    out = np.empty_like(net.params)
    cost, grad = net.gradient(x, y, out=out)
    assert grad is out
    first, ids = grad.copy(), buffers(net, 4)
    cost_again, grad = net.gradient(x, y, out=out)
    assert buffers(net, 4) == ids  # the same arrays, not new ones
    np.testing.assert_array_equal(grad, first)
    assert cost_again == cost
    # Other data of the same size, or another size, in between: bit for bit the same.
    for other in ((x2, y2), batch(net, 3)):
        net.gradient(*other, out=out if len(other[0]) == 4 else None)
        cost_again, grad = net.gradient(x, y, out=out)
        assert buffers(net, 4) == ids
        np.testing.assert_array_equal(grad, first)
        assert cost_again == cost
    # More sizes than the network keeps workspaces for, and forward's pieces: the first
    # batch's workspace is made again, and gives the same.
    for m in (1, 5, 2, 6):
        net.gradient(*batch(net, m, seed=m))
    net.forward(batch(net, 300)[0])
    cost_later, grad = net.gradient(x, y, out=out)
    np.testing.assert_array_equal(grad, first)
    assert cost_later == cost
    # And a fresh network of the same parameters agrees.
    fresh = ConvNet(net.layers, "relu", dtype="float64")
    fresh.params[...] = net.params
    np.testing.assert_array_equal(fresh.gradient(x, y)[1], first)


def test_the_workspace_of_a_size_is_kept_between_calls():
    net = random_net("1x6x6,conv2x3,pool2,3", seed=2)
    x, y = batch(net, 4)
    net.gradient(x, y)
    ids = buffers(net, 4)
    net.gradient(*batch(net, 3))
    net.gradient(x, y)
    assert buffers(net, 4) == ids
