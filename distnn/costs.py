"""Cost functions C and their output errors delta^L = dC/dz^L, as tiny classes (Nielsen's
network2 pattern): a new cost is a new class and nothing else changes.

The network asks a cost for three things about the output layer L:

- ``output(z, activation, out)``: a^L; the quadratic cost keeps the hidden
  activation, the cross-entropy cost uses a softmax;
- ``fn(z, a, y) -> float``: the cost SUMMED over the batch, sum_x C_x;
- ``each(z, a, y)``: C_x for every sample, shape (m,), to weigh samples;
- ``delta(z, a, y, activation, out)``: delta^L for every sample, shape (m, n_L);
- ``fn_and_delta(z, a, y, activation, out) -> (fn, delta)``: both at once, which
  backprop uses (the quadratic cost computes a^L - y once for the two).

Targets y are integer class labels of shape (m,); the seed's one-hot vectors
(y_j = 1 for j = label, else 0) are rows of an identity matrix picked per batch.
For regression (the linear cost) they are real values of shape (m, n_L).
Arrays are batches of rows: z, a have shape (m, n_L).
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np

from distnn.activations import Activation

__all__ = ["COSTS", "Cost", "CrossEntropyCost", "LinearCost", "QuadraticCost", "get_cost"]


class Cost(Protocol):
    name: str

    def output(
        self, z: np.ndarray, activation: Activation, out: np.ndarray | None = None
    ) -> np.ndarray: ...

    def fn(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> float: ...

    def each(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray: ...

    def fn_and_delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]: ...


@functools.cache
def _identity(n: int, dtype: np.dtype) -> np.ndarray:
    """The (n, n) identity: row j is the one-hot vector of class j. Shared, so read-only."""
    eye = np.eye(n, dtype=dtype)
    eye.flags.writeable = False
    return eye


def _minus_one_hot(a: np.ndarray, y: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """a - y with y the one-hot vectors of the labels: (m, n_L).

    Two numpy calls (pick the identity's rows, subtract): per-call overhead, not
    arithmetic, is what costs at these sizes.
    """
    one_hot = _identity(a.shape[1], a.dtype)[y]  # (m, n_L)
    return np.subtract(a, one_hot, out=out)


class QuadraticCost:
    """The seed's C_x = 1/2 ||y - a^L||^2;  delta^L = (a^L - y) (.) sigma'(z^L).

    (The seed's slide writes sigma(z^L) in the matrix form; the derivation above it,
    delta_j^L = dC/da_j^L sigma'(z_j^L), has the derivative, which is what we use.)
    """

    name = "quadratic"

    def output(
        self, z: np.ndarray, activation: Activation, out: np.ndarray | None = None
    ) -> np.ndarray:
        return activation.fn(z, out=out)

    def fn(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> float:
        diff = _minus_one_hot(a, y, None)
        return 0.5 * float(np.vdot(diff, diff))  # sum_x 1/2 ||a - y||^2

    def each(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        diff = _minus_one_hot(a, y, None)
        return 0.5 * np.einsum("ij,ij->i", diff, diff)  # 1/2 ||a - y||^2 per sample

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        return self.fn_and_delta(z, a, y, activation, out)[1]

    def fn_and_delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        out = _minus_one_hot(a, y, out)  # a^L - y
        cost = 0.5 * float(np.vdot(out, out))  # sum_x 1/2 ||a - y||^2
        out *= activation.prime(z, a)  # delta^L = (a^L - y) (.) sigma'(z^L)
        return cost, out


class CrossEntropyCost:
    """Softmax output a^L_j = e^{z_j} / sum_k e^{z_k} with C_x = -ln a^L_y;  delta^L = a^L - y.

    The softmax Jacobian cancels against d(-ln a_y)/da, which is why delta^L does
    not involve the hidden activation at all.
    """

    name = "cross_entropy"

    def output(
        self, z: np.ndarray, activation: Activation, out: np.ndarray | None = None
    ) -> np.ndarray:
        # Subtracting the row max changes nothing mathematically and keeps e^z <= 1.
        out = np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def fn(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> float:
        # -ln softmax(z)_y = logsumexp(z) - z_y, computed stably from z rather than
        # from a, where ln(0) would appear once a_y underflows.
        z_max = z.max(axis=1)  # (m,)
        log_sum_exp = z_max + np.log(np.exp(z - z_max[:, None]).sum(axis=1))  # (m,)
        return float(np.sum(log_sum_exp - z[np.arange(len(y)), y]))

    def each(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        z_max = z.max(axis=1)  # -ln a_y per sample, as fn
        return z_max + np.log(np.exp(z - z_max[:, None]).sum(axis=1)) - z[np.arange(len(y)), y]

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        return _minus_one_hot(a, y, out)

    def fn_and_delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        return self.fn(z, a, y), self.delta(z, a, y, activation, out)


class LinearCost:
    """Regression: a linear output a^L = z^L with the quadratic cost C_x = 1/2 ||y - a^L||^2;
    delta^L = a^L - y (BP1 with sigma' = 1).

    The seed's cost for its regression task, predicting real values: targets y are
    rows of reals, shape (m, n_L), not class numbers, and the output layer has no
    activation, so it can reach any value.
    """

    name = "linear"

    def output(
        self, z: np.ndarray, activation: Activation, out: np.ndarray | None = None
    ) -> np.ndarray:
        if out is None:
            return z
        np.copyto(out, z)
        return out

    def fn(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> float:
        diff = a - y
        return 0.5 * float(np.vdot(diff, diff))  # sum_x 1/2 ||a - y||^2

    def each(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        diff = a - y
        return 0.5 * np.einsum("ij,ij->i", diff, diff)  # 1/2 ||a - y||^2 per sample

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        return np.subtract(a, y, out=out)  # delta^L = a^L - y

    def fn_and_delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        out = self.delta(z, a, y, activation, out)  # a^L - y
        return 0.5 * float(np.vdot(out, out)), out


COSTS: dict[str, type] = {cls.name: cls for cls in (QuadraticCost, CrossEntropyCost, LinearCost)}
REGRESSION = LinearCost.name  # the one cost for real-valued targets


def get_cost(spec: str | Cost) -> Cost:
    """A cost from its name ("quadratic", "cross_entropy", "linear") or a cost object."""
    if isinstance(spec, str):
        if spec not in COSTS:
            raise ValueError(f"unknown cost {spec!r}; choose one of {sorted(COSTS)}")
        return COSTS[spec]()
    return spec
