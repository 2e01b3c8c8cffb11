"""Activation functions sigma(z) and their derivatives sigma'(z), from the seed lecture.

Each activation is a tiny class with two methods, written in the same shape:

- ``fn(z, out=None)``: a = sigma(z), elementwise;
- ``prime(z, a, out=None)``: sigma'(z), given both z and a = sigma(z), because
  several derivatives are cheapest in terms of a (sigmoid: a(1 - a), tanh: 1 - a^2).

Both accept ``out=`` so the network's backprop can reuse preallocated buffers,
and ``out`` may be ``z`` itself (in-place). They keep the dtype of z: no silent
upcast of float32 to float64. They never overflow, even for |z| = 1e30.

Non-goals: automatic differentiation, activations with learnable parameters.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "Activation",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "get_activation",
]


class Activation(Protocol):
    """What the network needs from an activation."""

    name: str

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...

    def spec(self) -> str | dict[str, Any]: ...


def _out_like(z: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    return np.empty_like(z) if out is None else out


class Sigmoid:
    """sigma(z) = 1 / (1 + e^-z);  sigma'(z) = sigma(z) (1 - sigma(z))."""

    name = "sigmoid"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # sigma(z) = (1 + tanh(z/2)) / 2 is the same function, but e^-z would
        # overflow for z << 0 and tanh never does.
        out = np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        out *= 0.5
        out += 0.5
        return out

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.subtract(1.0, a, out=out)  # 1 - a
        out *= a  # a (1 - a)
        return out

    def spec(self) -> str:
        return self.name


class Tanh:
    """sigma(z) = tanh(z);  sigma'(z) = 1 - tanh(z)^2."""

    name = "tanh"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.tanh(z, out=out)

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.multiply(a, a, out=out)
        np.subtract(1.0, out, out=out)
        return out

    def spec(self) -> str:
        return self.name


class ReLU:
    """sigma(z) = max(0, z);  sigma'(z) = 1 if z > 0 else 0 (we take 0 at the kink)."""

    name = "relu"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.maximum(z, 0.0, out=out)

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.greater(z, 0.0, out=_out_like(z, out))  # bool -> 0.0 / 1.0 in z's dtype

    def spec(self) -> str:
        return self.name


class LeakyReLU:
    """sigma(z) = max(0.1 z, z) (the seed's slope 0.1);  sigma'(z) = 1 if z > 0 else 0.1."""

    name = "leaky_relu"
    slope = 0.1

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # The temporary slope * z keeps this right when out is z itself.
        return np.maximum(z, self.slope * z, out=out)

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.greater(z, 0.0, out=_out_like(z, out))  # 1 or 0
        out *= 1.0 - self.slope
        out += self.slope  # 1 or slope
        return out

    def spec(self) -> str:
        return self.name


class ELU:
    """sigma(z) = z if z >= 0 else alpha (e^z - 1).

    sigma'(z) = 1 if z >= 0 else sigma(z) + alpha.
    """

    name = "elu"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        positive = np.maximum(z, 0.0)  # before `out` (which may be z) is overwritten
        # e^min(z, 0) - 1 cannot overflow; expm1 keeps precision near 0.
        out = np.minimum(z, 0.0, out=out)
        np.expm1(out, out=out)
        out *= self.alpha
        out += positive  # exactly one of the two terms is nonzero
        return out

    def prime(self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # For z < 0, d/dz alpha (e^z - 1) = alpha e^z = a + alpha: no second exp.
        out = np.add(a, self.alpha, out=out)
        np.copyto(out, 1.0, where=z >= 0.0)
        return out

    def spec(self) -> str | dict[str, Any]:
        return self.name if self.alpha == 1.0 else {"name": self.name, "alpha": self.alpha}

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"


ACTIVATIONS: dict[str, type] = {cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU, ELU)}


def get_activation(spec: str | dict[str, Any] | Activation) -> Activation:
    """An activation from a name ("sigmoid"), a spec dict ({"name": "elu", "alpha": 0.5},
    what ``Activation.spec()`` and ``MLP.config()`` write) or an activation object."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[name](**kwargs)
    return spec
