"""One ConvPool layer against a direct loop over samples, pixels and filters.

The layer's im2col, its blocks of rows by window position, the pooling masks and
col2im are ways to compute equations (FF), (BP2c)-(BP4c) of ``distnn.conv``
fast; the loops below are those equations as written, in float64, with max-pooling
routing delta to the first of equal maxima in row-major order, pooling before the
bias and sigma. Geometries: one and several channels, ``same`` padding, pooling
windows that do not tile the map, no pooling, patch rows short and long (im2col's
two ways), and inputs with zero regions, whose windows tie.
"""

from __future__ import annotations

import numpy as np
import pytest

from distnn.activations import get_activation
from distnn.conv import ConvPool


def loop_forward(layer: ConvPool, a_prev, w, b):
    """z (pooled, with b) and which conv position won each window, by loops."""
    m = len(a_prev)
    k, p = layer.k, layer.pool
    padded = np.pad(a_prev, ((0, 0), (layer.pad,) * 2, (layer.pad,) * 2, (0, 0)))
    hc, wc, c_out = layer.conv_shape
    filters = w.reshape(c_out, k, k, layer.c_in)  # row f: (i, j, c) order
    conv = np.zeros((m, hc, wc, c_out))
    for s in range(m):
        for x in range(hc):
            for y in range(wc):
                for f in range(c_out):
                    conv[s, x, y, f] = np.sum(filters[f] * padded[s, x:x + k, y:y + k, :])
    ho, wo, _ = layer.out_shape
    z = np.zeros((m, ho, wo, c_out))
    winner = np.zeros((m, ho, wo, c_out, 2), int)
    for s in range(m):
        for X in range(ho):
            for Y in range(wo):
                for f in range(c_out):
                    window = conv[s, p * X:p * X + p, p * Y:p * Y + p, f]
                    i, j = np.unravel_index(np.argmax(window), window.shape)  # first max
                    z[s, X, Y, f] = window[i, j] + b[f]
                    winner[s, X, Y, f] = p * X + i, p * Y + j
    return z, winner, padded


def loop_backward(layer: ConvPool, padded, w, delta, winner):
    """dC/dw, dC/db and dC/da^{l-1} from delta^l by loops: each window's delta goes to
    the conv position that won it, and from there to the filter and the patch."""
    m = len(delta)
    k = layer.k
    _, _, c_out = layer.conv_shape
    filters = w.reshape(c_out, k, k, layer.c_in)
    nabla_w, nabla_b = np.zeros_like(filters), np.zeros(c_out)
    d_padded = np.zeros_like(padded)
    ho, wo, _ = layer.out_shape
    for s in range(m):
        for X in range(ho):
            for Y in range(wo):
                for f in range(c_out):
                    x, y = winner[s, X, Y, f]
                    d = delta[s, X, Y, f]
                    nabla_b[f] += d
                    nabla_w[f] += d * padded[s, x:x + k, y:y + k, :]
                    d_padded[s, x:x + k, y:y + k, :] += d * filters[f]
    q = layer.pad
    d_input = d_padded[:, q:q + layer.h, q:q + layer.w, :] if q else d_padded
    return nabla_w.reshape(c_out, -1), nabla_b, d_input


@pytest.mark.parametrize("layer", [
    ConvPool(12, 12, 1, 3, 5, pool=2),  # Nielsen's first layer, small
    ConvPool(8, 8, 3, 4, 3, pool=2),  # several channels in
    ConvPool(7, 9, 2, 3, 3, pad=1, pool=2),  # "same", odd maps: partial windows dropped
    ConvPool(11, 10, 2, 2, 4, pool=3),  # 8x7 conv, 3x3 windows: rows and columns left over
    ConvPool(6, 5, 2, 3, 3, pad=1),  # no pooling
    ConvPool(5, 5, 1, 2, 1, pool=2),  # 1x1 kernel
    ConvPool(8, 8, 6, 3, 3, pool=2),  # patch rows of 18 numbers: im2col in one copy
    ConvPool(7, 6, 8, 2, 3, pad=1, pool=3),  # ... padded, partial windows
])
@pytest.mark.parametrize("m", [1, 4])
def test_a_conv_pool_layer_is_its_loops(layer, m):
    rng = np.random.default_rng(layer.k * 100 + m)
    a_prev = rng.random((m, layer.h, layer.w, layer.c_in))
    a_prev[:, : layer.h // 2, : layer.w // 2, :] = 0.0  # zero regions: windows that tie
    a_prev[-1, ::2] = 0.25  # equal rows: more ties
    w = rng.normal(size=(layer.c_out, layer.fan_in))
    b = rng.normal(size=layer.c_out)
    relu = get_activation("relu")
    ws = layer.workspace(m, np.dtype("float64"), below=True)

    a = layer.forward(a_prev, w, b, relu, ws)
    z, winner, padded = loop_forward(layer, a_prev, w, b)
    np.testing.assert_allclose(ws.z, z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a, np.maximum(z, 0.0), rtol=1e-12, atol=1e-12)

    ws.delta[...] = rng.normal(size=ws.delta.shape)
    nabla_w, nabla_b = np.empty_like(w), np.empty_like(b)
    d_input = layer.backward(nabla_w, nabla_b, ws, below=True)
    expected_w, expected_b, expected_input = loop_backward(layer, padded, w, ws.delta, winner)
    np.testing.assert_allclose(nabla_w, expected_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nabla_b, expected_b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_input, expected_input, rtol=1e-12, atol=1e-12)

    # A second batch through the same workspace: nothing of the first one stays.
    layer.forward(a_prev[::-1].copy(), w, b, relu, ws)
    z, winner, padded = loop_forward(layer, a_prev[::-1], w, b)
    np.testing.assert_allclose(ws.z, z, rtol=1e-12, atol=1e-12)
    d_input = layer.backward(nabla_w, nabla_b, ws, below=True)
    np.testing.assert_allclose(d_input, loop_backward(layer, padded, w, ws.delta, winner)[2],
                               rtol=1e-12, atol=1e-12)
