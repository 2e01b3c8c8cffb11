"""Weight initialisers: the seed's standard normal, Xavier/Glorot (normal and uniform) and He.

Each is a tiny class called as ``init(rng, n_out, n_in) -> (w, b)`` with w of shape
(n_out, n_in) and b of shape (n_out,), in float64; the network casts them to its
dtype. Drawing in float64 whatever the network's dtype means a float32 and a
float64 net built with the same seed start from the same numbers (up to rounding).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["INITIALIZERS", "GlorotUniform", "He", "Initializer", "StandardNormal", "Xavier",
           "get_initializer"]


class Initializer(Protocol):
    name: str

    def __call__(
        self, rng: np.random.Generator, n_out: int, n_in: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


class StandardNormal:
    """Nielsen's network.py: w_jk ~ N(0, 1) and b_j ~ N(0, 1)."""

    name = "standard"

    def __call__(self, rng: np.random.Generator, n_out: int, n_in: int):
        w = rng.standard_normal((n_out, n_in))
        b = rng.standard_normal(n_out)
        return w, b


class Xavier:
    """Glorot & Bengio (2010), normal form: w_jk ~ N(0, 2 / (n_in + n_out)), b = 0.

    Keeps the variance of z roughly constant forwards and backwards for tanh/sigmoid.
    """

    name = "xavier"

    def __call__(self, rng: np.random.Generator, n_out: int, n_in: int):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / (n_in + n_out))
        return w, np.zeros(n_out)


class He:
    """He et al. (2015): w_jk ~ N(0, 2 / n_in), b = 0.

    The factor 2 compensates for ReLU zeroing half of its inputs.
    """

    name = "he"

    def __call__(self, rng: np.random.Generator, n_out: int, n_in: int):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        return w, np.zeros(n_out)


class GlorotUniform:
    """Glorot & Bengio (2010), uniform form, as scikit-learn's MLP draws it (biases too):
    w_jk, b_j ~ U(-r, r) with r = sqrt(factor / (n_in + n_out)); factor 6 (2 for a
    logistic network, scikit-learn's choice)."""

    name = "glorot_uniform"

    def __init__(self, factor: float = 6.0) -> None:
        self.factor = factor

    def __call__(self, rng: np.random.Generator, n_out: int, n_in: int):
        r = np.sqrt(self.factor / (n_in + n_out))
        return rng.uniform(-r, r, (n_out, n_in)), rng.uniform(-r, r, n_out)


INITIALIZERS: dict[str, type] = {cls.name: cls
                                 for cls in (StandardNormal, Xavier, He, GlorotUniform)}


def get_initializer(spec: str | Initializer) -> Initializer:
    """An initialiser from its name ("standard", "xavier", "he") or an initialiser object."""
    if isinstance(spec, str):
        if spec not in INITIALIZERS:
            raise ValueError(f"unknown init {spec!r}; choose one of {sorted(INITIALIZERS)}")
        return INITIALIZERS[spec]()
    return spec
