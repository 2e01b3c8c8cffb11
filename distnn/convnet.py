"""A convolutional network: conv-pool layers (``distnn.conv``) in front of an MLP.

Nielsen's chapter 6 network, ``1x28x28,conv20x5,pool2,conv40x5,pool2,100,10``
(``distnn.architecture``), is two ConvPool layers and the fully connected
layers 640, 100, 10. The conv layers turn a batch of images into feature maps;
the last maps, read as rows of H*W*C features, are the MLP's input x; and
backprop runs the other way: the MLP's (BP1)-(BP4) give dC/dx as well
(``MLP.gradient(..., input_delta=)``), which is dC/da of the last conv layer,
and (BP2c)-(BP4c) carry it down through the conv layers.

Every parameter lives in ONE flat vector, as in the MLP, so summing over
ranks, the optimizer, the replica check, checkpoints and streaming see a
vector and nothing else: the conv layers' w^1, b^1, w^2, b^2, ... first, then
the MLP's own layout, which is a view of the vector's tail (``MLP.bind``).

Dropout and max-norm act on the fully connected layers, as Nielsen's
network3 has them: ``weights`` are the MLP's w (max-norm's rows), and
``dense_sizes`` the layers whose inputs dropout thins, the conv features
included (``distnn.dropout``).

Non-goals: anything distributed (numpy only), as for the MLP.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from distnn import architecture
from distnn.activations import Activation
from distnn.conv import ConvPool
from distnn.costs import Cost
from distnn.initializers import Initializer
from distnn.network import MLP, Workspaces

__all__ = ["ConvNet", "Network", "build", "from_config"]

_FORWARD_ROWS = 256  # forward() takes larger batches in pieces of this many rows


class _Workspace:
    """Buffers for one batch size m: each conv layer's, and the images as (m, H, W, C)."""

    def __init__(self, convs: Sequence[ConvPool], m: int, dtype: np.dtype) -> None:
        first = convs[0]
        # a^0 in (m, H, W, C), where x's rows, an image channel by channel, are not
        self.images = np.empty((m, first.h, first.w, first.c_in), dtype) if first.c_in > 1 \
            else None
        # The first layer has no delta to pass down: the input is data.
        self.layers = [layer.workspace(m, dtype, below=l > 0) for l, layer in enumerate(convs)]
        self.features_delta = np.empty((m, self.layers[-1].a[0].size), dtype)  # dC/dx of the MLP


class ConvNet:
    """Conv-pool layers then an MLP, with every parameter in one flat vector ``params``.

    ``layers`` is the spec (``distnn.architecture``), input image first. Inputs x
    are rows of C*H*W features, an image channel by channel (as the data files
    store them); labels y as for the MLP.
    """

    def __init__(
        self,
        layers: Sequence[int | str],
        activation: str | dict[str, Any] | Activation = "relu",
        cost: str | Cost = "cross_entropy",
        init: str | Initializer = "he",
        dtype: str | np.dtype = "float32",
        seed: int = 0,
    ):
        self.layers = architecture.check(layers)  # as parse would read them: saved so
        self.convs, dense = architecture.plan(self.layers)
        if not self.convs:
            raise ValueError(f"{architecture.text(self.layers)} has no conv layer: build an MLP")
        self.image_shape = architecture.shape_of(self.layers[0])  # (C, H, W)
        # The MLP draws its initial weights from the seed; the conv layers from another
        # stream of the same seed, so no layer starts as a copy of another's draws.
        self.head = MLP(dense, activation, cost, init, dtype, seed)
        self.activation, self.cost, self.init = self.head.activation, self.head.cost, \
            self.head.init
        self.dtype, self.seed = self.head.dtype, int(seed)
        self.sizes = architecture.widths(self.layers)  # flat widths, input first, as MLP's

        # One flat vector: each conv layer's w (C_out * k*k*C_in) then b (C_out), then the MLP's.
        self.layer_slices: list[slice] = []
        start = 0
        for layer in self.convs:
            stop = start + layer.c_out * (layer.fan_in + 1)
            self.layer_slices.append(slice(start, stop))
            start = stop
        self._head_slice = slice(start, start + self.head.params.size)
        self.params = np.empty(self._head_slice.stop, self.dtype)
        self.params[self._head_slice] = self.head.params
        self.bind(self.params)

        self.weight_mask = np.zeros(self.params.size, bool)  # True on weights: for L2 decay
        for w_mask, _ in zip(*self._views(self.weight_mask)):
            w_mask[...] = True
        self.weight_mask[self._head_slice] = self.head.weight_mask

        rng = np.random.default_rng([self.seed, 1])
        for layer, w, b in zip(self.convs, self.filters, self.conv_biases):
            w[...], b[...] = self.init(rng, layer.c_out, layer.fan_in)

        self._workspace = Workspaces(functools.partial(_Workspace, self.convs, dtype=self.dtype))
        self._grad_views: tuple[np.ndarray, Any] | None = None

    # -- layout -----------------------------------------------------------------

    def _views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per conv layer (w, b) views into a flat vector laid out like ``params``: w is
        (C_out, k*k*C_in), a filter a row, its columns in (i, j, c) order, stored column by
        column so that the forward product cols w^T is of two row-major matrices."""
        ws, bs = [], []
        for layer, s in zip(self.convs, self.layer_slices):
            n = layer.c_out * layer.fan_in
            ws.append(flat[s][:n].reshape(layer.fan_in, layer.c_out).T)
            bs.append(flat[s][n:])
        return ws, bs

    def bind(self, flat: np.ndarray) -> None:
        """Keep the parameters in ``flat`` from now on (``MLP.bind``)."""
        if flat.shape != self.params.shape or flat.dtype != self.dtype:
            raise ValueError(f"expected a flat {self.dtype} vector of {self.params.size} "
                             f"parameters, got {flat.dtype} {flat.shape}")
        self.params = flat
        self.filters, self.conv_biases = self._views(flat)
        self.head.bind(flat[self._head_slice])

    @property
    def weights(self) -> list[np.ndarray]:
        """The fully connected layers' w, as MLP's: what max-norm keeps in its ball."""
        return self.head.weights

    @property
    def dense_sizes(self) -> list[int]:
        """The fully connected layers' sizes, their input (the conv features) first."""
        return self.head.sizes

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments: ``ConvNet(**net.config())`` rebuilds it."""
        return {"layers": list(self.layers), **{k: v for k, v in self.head.config().items()
                                                 if k != "sizes"}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"ConvNet({args})"

    # -- forward ------------------------------------------------------------------

    def _features(self, x: np.ndarray, ws: _Workspace) -> np.ndarray:
        """(FF) through the conv layers: the MLP's input, (m, H*W*C) of the last maps."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (m, {self.sizes[0]}), got {x.shape}")
        c, h, w = self.image_shape
        if c == 1:  # (m, H, W, 1) is the rows as they are
            a = x.reshape(len(x), h, w, 1)
        else:
            a = ws.images
            np.copyto(a, x.reshape(len(x), c, h, w).transpose(0, 2, 3, 1))  # (m, H, W, C)
        for layer, w_l, b_l, lws in zip(self.convs, self.filters, self.conv_biases, ws.layers):
            a = layer.forward(a, w_l, b_l, self.activation, lws)
        return a.reshape(len(a), -1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Output activations a^L for a batch x of shape (m, C*H*W)."""
        x = np.asarray(x)
        a = np.empty((len(x), self.sizes[-1]), self.dtype)
        for i in range(0, len(x), _FORWARD_ROWS):  # in pieces: im2col copies each pixel k*k times
            piece = x[i:i + _FORWARD_ROWS]
            a[i:i + len(piece)] = self.head.forward(self._features(piece,
                                                                   self._workspace(len(piece))))
        return a

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices (or, for regression, the outputs), as ``MLP.predict``."""
        a = self.forward(x)
        return a if self.cost.name == "linear" else np.argmax(a, axis=1)

    # -- backprop -----------------------------------------------------------------

    def gradient(
        self,
        x: np.ndarray,
        y: np.ndarray,
        out: np.ndarray | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """``(sum_x C_x, sum_x grad C_x)`` on a mini-batch, as ``MLP.gradient``; ``masks``
        are the dropout masks of the fully connected layers' inputs, ``weights`` the
        samples' weights."""
        ws = self._workspace(len(x))
        grad = np.empty(self.params.size, self.dtype) if out is None else out
        if self._grad_views is None or self._grad_views[0] is not grad:
            self._grad_views = (grad, self._views(grad), grad[self._head_slice])
        _, (nabla_w, nabla_b), head_grad = self._grad_views

        features = self._features(x, ws)
        # (BP1)-(BP4) through the fully connected layers, and dC/dx of their input
        cost, _ = self.head.gradient(features, y, out=head_grad, masks=masks,
                                     input_delta=ws.features_delta, weights=weights)
        below = ws.features_delta.reshape(ws.layers[-1].a.shape)  # dC/da^l of the last maps
        for l in range(len(self.convs) - 1, -1, -1):
            layer, lws = self.convs[l], ws.layers[l]
            # delta^l = dC/da^l (.) sigma'(z^l)
            np.multiply(below, self.activation.prime(lws.z, lws.a, out=lws.prime),
                        out=lws.delta)
            below = layer.backward(nabla_w[l], nabla_b[l], lws, below=l > 0)
        return cost, grad


Network = MLP | ConvNet  # what the trainer trains


def build(layers: Sequence[int | str], **settings: Any) -> Network:
    """The network a spec names (``distnn.architecture``): a ConvNet if it has conv
    layers, else the MLP of those sizes. ``settings``: activation, cost, init, dtype, seed."""
    return ConvNet(layers, **settings) if architecture.is_conv(layers) else MLP(layers, **settings)


def from_config(model: dict[str, Any]) -> Network:
    """The network a checkpoint's model config describes: ``net.config()`` round trips."""
    return ConvNet(**model) if "layers" in model else MLP(**model)
