"""A fully connected network (MLP) trained by backpropagation, as derived in the seed lecture.

Notation is the seed's (and Nielsen's): layer l computes z^l = w^l a^{l-1} + b^l and
a^l = sigma(z^l); delta^l = dC/dz^l. Backpropagation:

    (BP1) delta^L = grad_a C (.) sigma'(z^L)
    (BP2) delta^l = ((w^{l+1})^T delta^{l+1}) (.) sigma'(z^l)
    (BP3) dC/db^l = delta^l
    (BP4) dC/dw^l = delta^l (a^{l-1})^T

Goals: a whole mini-batch per call with matrix products (no per-sample loop);
every parameter and every gradient lives in ONE contiguous flat vector, so a
data-parallel trainer can reduce all gradients with one in-place allreduce and
an optimizer can update them with a handful of vector operations.

Dropout (``distnn.dropout``) multiplies a layer's input by a mask r, a~ = a (.) r;
through the mask the equations read z^l = w^l a~^{l-1} + b^l, (BP4) takes a~^{l-1},
and (BP2) becomes delta^l = ((w^{l+1})^T delta^{l+1}) (.) r^l (.) sigma'(z^l).

Non-goals: convolutions, autograd, anything distributed (this module imports
numpy only; communication and random masks are the trainer's business).

Batches are rows. The seed stacks a sample as a column, z = w a + b; we stack m
samples as the rows of a (m, n_in) matrix, so the same equation transposed reads
z = a w^T + b with z of shape (m, n_out), and (BP2), (BP4) become
delta^{l} = (delta^{l+1} w^{l+1}) (.) sigma'(z^l) and dC/dw = (delta^l)^T a^{l-1},
summed over the batch by the matrix product itself.

Index note: Python lists are 0-based, so ``weights[0]`` is the seed's w^2 (the
first layer with weights; layer 1 is the input), and ``weights[-1]`` is w^L.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distnn.activations import Activation, get_activation
from distnn.costs import Cost, get_cost
from distnn.initializers import Initializer, get_initializer

__all__ = ["MLP", "Workspaces"]


class Workspaces:
    """A network's buffers for each of the last few batch sizes m: made by ``make(m)`` the
    first time, reused by every later call of that size, the least recently used dropped
    beyond ``most`` (the full batch, the last partial batch, evaluation batches)."""

    def __init__(self, make: Callable[[int], Any], most: int = 4) -> None:
        self.make, self.most = make, most
        self.held: dict[int, Any] = {}  # most recently used last

    def __call__(self, m: int) -> Any:
        ws = self.held.pop(m, None)
        if ws is None:
            ws = self.make(m)
            if len(self.held) >= self.most:
                del self.held[next(iter(self.held))]  # least recently used
        self.held[m] = ws
        return ws


class _Workspace:
    """Buffers for one batch size m, reused by every ``gradient`` call of that size."""

    def __init__(self, sizes: Sequence[int], m: int, dtype: np.dtype):
        outs = sizes[1:]
        self.zs = [np.empty((m, n), dtype) for n in outs]  # z^l, (m, n_l)
        self.activations = [np.empty((m, n), dtype) for n in outs]  # a^l, (m, n_l)
        self.deltas = [np.empty((m, n), dtype) for n in outs]  # delta^l, (m, n_l)
        self.primes = [np.empty((m, n), dtype) for n in outs]  # sigma'(z^l), (m, n_l)
        # (BP3) sums delta over the batch as a product, ones @ delta: a BLAS gemv,
        # faster than np.sum(delta, axis=0) at these sizes.
        self.ones = np.ones(m, dtype)  # (m,)
        self.dropped_input = np.empty((m, sizes[0]), dtype)  # a~^0 = x (.) r^0, for dropout


class MLP:
    """A multilayer perceptron with parameters in one flat vector ``params``.

    Layout of ``params``: w^1, b^1, w^2, b^2, ..., so layer l's (w, b) is the
    contiguous slice ``layer_slices[l]``. ``weights[l]`` and ``biases[l]`` are views
    into ``params``: writing either changes the other. Each w, of shape (n_out, n_in)
    as in the seed, is stored column by column (Fortran order), which is w^T row by
    row: then the forward product a w^T is of two row-major matrices, the case
    OpenBLAS does fastest.

    Inputs x must be float arrays of shape (m, sizes[0]); anything else is
    converted to the net's dtype (a copy, so pass the right dtype for speed).
    Labels y are integer classes of shape (m,), or for regression (the linear cost)
    real values of shape (m, sizes[-1]).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | dict[str, Any] | Activation = "sigmoid",
        cost: str | Cost = "quadratic",
        init: str | Initializer = "standard",
        dtype: str | np.dtype = "float32",
        seed: int = 0,
    ):
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes must list >= 2 positive layer widths, got {list(sizes)}")
        self.sizes = [int(n) for n in sizes]
        self.activation = get_activation(activation)
        self.cost = get_cost(cost)
        self.init = get_initializer(init)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = int(seed)

        # One flat vector; each layer's slice holds w (n_out * n_in) then b (n_out).
        self.layer_slices: list[slice] = []
        start = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            stop = start + n_out * n_in + n_out
            self.layer_slices.append(slice(start, stop))
            start = stop
        self.params = np.empty(start, self.dtype)
        self.weights, self.biases = self._views(self.params)

        self.weight_mask = np.zeros(self.params.size, bool)  # True on weights: for L2 decay
        for w_mask, _ in zip(*self._views(self.weight_mask)):
            w_mask[...] = True

        rng = np.random.default_rng(self.seed)
        for w, b in zip(self.weights, self.biases):
            w[...], b[...] = self.init(rng, *w.shape)

        self._workspace = Workspaces(functools.partial(_Workspace, self.sizes, dtype=self.dtype))
        # (nabla_w, nabla_b) views of the last ``out`` given to ``gradient``: the trainer
        # passes the same buffer every step, so they are built once.
        self._grad_views: tuple[np.ndarray, tuple[list[np.ndarray], list[np.ndarray]]] | None
        self._grad_views = None

    # -- layout ---------------------------------------------------------------

    def _views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-layer (w, b) views into a flat vector laid out like ``params``."""
        ws, bs = [], []
        for (n_in, n_out), s in zip(zip(self.sizes[:-1], self.sizes[1:]), self.layer_slices):
            layer = flat[s]
            ws.append(layer[: n_out * n_in].reshape(n_in, n_out).T)  # column by column
            bs.append(layer[n_out * n_in :])
        return ws, bs

    def bind(self, flat: np.ndarray) -> None:
        """Keep the parameters in ``flat`` from now on; its values become the parameters.

        For memory the ranks of a node share (``distnn.reduce``): the network
        reads its parameters wherever they live. Copy the current ones in first
        to keep them.
        """
        if flat.shape != self.params.shape or flat.dtype != self.dtype:
            raise ValueError(f"expected a flat {self.dtype} vector of {self.params.size} "
                             f"parameters, got {flat.dtype} {flat.shape}")
        self.params = flat
        self.weights, self.biases = self._views(flat)

    @property
    def num_layers(self) -> int:
        """Layers with parameters, L - 1 in the seed's counting (which includes the input)."""
        return len(self.sizes) - 1

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments: ``MLP(**net.config())`` rebuilds this architecture."""
        return {
            "sizes": list(self.sizes),
            "activation": self.activation.spec(),
            "cost": self.cost.name,
            "init": self.init.name,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"MLP({args})"

    # -- forward --------------------------------------------------------------

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)  # no copy when already right
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (m, {self.sizes[0]}), got {x.shape}")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Output activations a^L for a batch x of shape (m, n_in): a^l = sigma(a^{l-1} w^T + b)."""
        a = self._as_input(x)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = a @ w.T  # (m, n_out)
            z += b
            if l < self.num_layers - 1:
                a = self.activation.fn(z, out=z)
            else:
                a = self.cost.output(z, self.activation, out=z)
        return a

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices argmax_j a^L_j, shape (m,); for regression (the linear cost) the
        outputs a^L themselves, shape (m, n_L)."""
        a = self.forward(x)
        return a if self.cost.name == "linear" else np.argmax(a, axis=1)

    # -- backprop -------------------------------------------------------------

    def gradient(
        self,
        x: np.ndarray,
        y: np.ndarray,
        out: np.ndarray | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        input_delta: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """Backpropagation (BP1)-(BP4) on a mini-batch: ``(sum_x C_x, sum_x grad C_x)``.

        Sums, not means: a data-parallel trainer adds them across ranks and divides
        by the global batch size once. ``grad`` is a flat vector laid out like
        ``params``, written into ``out`` if given (a trainer passes the same buffer
        every step, and the layer views of it are built once).

        ``masks[l]``, where given and not None, is the dropout mask r of layer l's
        input, shape (m, sizes[l]): the cost and gradient are those of the thinned
        network (``distnn.dropout``).

        ``input_delta``, where given, receives dC/dx, shape (m, sizes[0]): (BP2) carried
        down to the input, for the layers in front of this network (``distnn.convnet``).

        ``weights``, where given, weigh the samples, shape (m,): the cost and gradient
        are sum_x w_x C_x and sum_x w_x grad C_x (delta^L of sample x times w_x).
        """
        x = self._as_input(x)
        y = np.asarray(y)
        m = x.shape[0]
        grad = np.empty(self.params.size, self.dtype) if out is None else out
        if self._grad_views is None or self._grad_views[0] is not grad:
            self._grad_views = (grad, self._views(grad))
        nabla_w, nabla_b = self._grad_views[1]
        ws = self._workspace(m)
        zs, activations, deltas, primes = ws.zs, ws.activations, ws.deltas, ws.primes
        L = self.num_layers
        sigma = self.activation

        masks = [None] * L if masks is None else masks
        if len(masks) != L:
            raise ValueError(f"expected {L} dropout masks (one per layer), got {len(masks)}")
        # Forward pass, keeping every z^l and a^l: z^l = a^{l-1} (w^l)^T + b^l.
        a = x  # a^0, the input, (m, n_0)
        for l in range(L):
            r = masks[l]
            if r is not None and l == 0:  # a~^0 = x (.) r^0: the input is the caller's
                a = x = np.multiply(x, r, out=ws.dropped_input)
            elif r is not None:  # a~ = a (.) r, and r (.) sigma'(z) now, for (BP2)
                sigma.prime(zs[l - 1], a, out=primes[l - 1])
                primes[l - 1] *= r
                a *= r
            np.matmul(a, self.weights[l].T, out=zs[l])  # (m, n_out)
            zs[l] += self.biases[l]
            if l < L - 1:
                a = sigma.fn(zs[l], out=activations[l])
            else:
                a = self.cost.output(zs[l], sigma, out=activations[l])
        # sum_x C_x and (BP1) the output error, sharing a^L - y.
        cost, delta = self.cost.fn_and_delta(
            zs[-1], activations[-1], y, sigma, out=deltas[-1]
        )  # delta: (m, n_L)
        if weights is not None:  # sample x counts w_x times
            cost = float(np.dot(weights, self.cost.each(zs[-1], activations[-1], y)))
            delta *= weights.astype(self.dtype, copy=False)[:, None]
        for l in range(L - 1, -1, -1):
            a_prev = x if l == 0 else activations[l - 1]  # (m, n_in); a~ where dropped
            # (BP3), (BP4) summed over the batch: the product sums over the m rows.
            np.matmul(ws.ones, delta, out=nabla_b[l])  # sum over the rows, (n_out,)
            np.matmul(delta.T, a_prev, out=nabla_w[l])  # (n_out, n_in)
            if l > 0:
                # (BP2): delta^{l-1} = (delta^l w^l) (.) sigma'(z^{l-1}); nothing to
                # propagate below the first layer, so that product is skipped.
                np.matmul(delta, self.weights[l], out=deltas[l - 1])  # (m, n_in)
                delta = deltas[l - 1]
                if masks[l] is None:
                    delta *= sigma.prime(zs[l - 1], activations[l - 1], out=primes[l - 1])
                else:  # r^{l-1} (.) sigma'(z^{l-1}), made in the forward pass
                    delta *= primes[l - 1]
        if input_delta is not None:  # dC/dx = delta^1 w^1, through the input's mask r^0
            np.matmul(delta, self.weights[0], out=input_delta)
            if masks[0] is not None:
                input_delta *= masks[0]
        return cost, grad
