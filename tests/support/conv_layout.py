"""A ConvNet's flat parameter vector as per-layer arrays and back, for references that
compute with the layers' own shapes (the pixel loop in tests/unit/test_conv.py, torch in
tests/fixtures/make_conv_fixtures.py)."""

from __future__ import annotations

import numpy as np

from distnn.convnet import ConvNet


def layers_of(net: ConvNet, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(w, b) per layer of a vector laid out like ``params``: conv filters as
    (C_out, k, k, C_in), the (i, j, c) order of their columns; dense w as (n_out, n_in)."""
    saved = net.params
    net.bind(flat)
    layers = [(w.reshape(c.c_out, c.k, c.k, c.c_in).copy(), b.copy())
              for c, w, b in zip(net.convs, net.filters, net.conv_biases)]
    layers += [(w.copy(), b.copy()) for w, b in zip(net.head.weights, net.head.biases)]
    net.bind(saved)
    return layers


def flat_of(net: ConvNet, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The inverse of ``layers_of``: a flat vector laid out as distnn's params."""
    flat, saved = np.empty_like(net.params), net.params
    net.bind(flat)
    for w_view, b_view, (w, b) in zip([*net.filters, *net.head.weights],
                                      [*net.conv_biases, *net.head.biases], layers):
        w_view[...] = w.reshape(w_view.shape)
        b_view[...] = b
    net.bind(saved)
    return flat
