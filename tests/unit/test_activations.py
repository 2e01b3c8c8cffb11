"""Activations: values against their textbook formulas, derivatives against finite
differences, and stability for huge |z| in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.activations import ACTIVATIONS, ELU, LeakyReLU, Sigmoid, get_activation

ALL = [cls() for cls in ACTIVATIONS.values()] + [ELU(alpha=0.5)]
IDS = [repr(a) if isinstance(a, ELU) else a.name for a in ALL]

# Independent references, written the obvious (overflow-prone) way, for moderate z.
REFERENCE = {
    "sigmoid": lambda z, act: 1.0 / (1.0 + np.exp(-z)),
    "tanh": lambda z, act: np.tanh(z),
    "relu": lambda z, act: np.maximum(0.0, z),
    "leaky_relu": lambda z, act: np.maximum(0.1 * z, z),
    "elu": lambda z, act: np.where(z >= 0, z, act.alpha * (np.exp(z) - 1.0)),
}


def moderate_z(seed: int = 0) -> np.ndarray:
    """(4, 5) values in [-6, 6] kept away from the kink at 0."""
    z = np.random.default_rng(seed).uniform(-6.0, 6.0, (4, 5))
    return np.where(np.abs(z) < 1e-2, 0.5, z)


@pytest.mark.parametrize("activation", ALL, ids=IDS)
def test_fn_matches_formula(activation) -> None:
    z = moderate_z()
    expected = REFERENCE[activation.name](z, activation)
    np.testing.assert_allclose(activation.fn(z), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ALL, ids=IDS)
def test_prime_matches_central_difference(activation) -> None:
    z, eps = moderate_z(1), 1e-6
    numerical = (activation.fn(z + eps) - activation.fn(z - eps)) / (2 * eps)
    analytic = activation.prime(z, activation.fn(z))
    np.testing.assert_allclose(analytic, numerical, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ALL, ids=IDS)
def test_stable_for_huge_z(activation, dtype) -> None:
    z = np.array([[-1e30, -1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, 1e30]], dtype)
    with np.errstate(all="raise"):  # any overflow, NaN or even underflow is an error
        a = activation.fn(z)
        prime = activation.prime(z, a)
    assert np.isfinite(a).all() and np.isfinite(prime).all()
    assert a.dtype == dtype and prime.dtype == dtype
    # The limits are the right ones.
    lo, hi = {
        "sigmoid": (0.0, 1.0),
        "tanh": (-1.0, 1.0),
        "relu": (0.0, 1e30),
        "leaky_relu": (-1e29, 1e30),
        "elu": (-activation.alpha if activation.name == "elu" else 0.0, 1e30),
    }[activation.name]
    np.testing.assert_allclose(a[0, [0, -1]], np.array([lo, hi], dtype), rtol=1e-6)


@pytest.mark.parametrize("activation", ALL, ids=IDS)
def test_in_place_and_out(activation) -> None:
    z = moderate_z(2)
    expected_a = activation.fn(z)
    expected_prime = activation.prime(z, expected_a)
    out = np.empty_like(z)
    assert activation.fn(z, out=out) is out
    np.testing.assert_array_equal(out, expected_a)
    prime_out = np.empty_like(z)
    assert activation.prime(z, expected_a, out=prime_out) is prime_out
    np.testing.assert_array_equal(prime_out, expected_prime)
    in_place = z.copy()
    activation.fn(in_place, out=in_place)
    np.testing.assert_array_equal(in_place, expected_a)


def test_float32_stays_float32() -> None:
    z = moderate_z().astype(np.float32)
    for activation in ALL:
        a = activation.fn(z)
        assert a.dtype == np.float32, activation
        assert activation.prime(z, a).dtype == np.float32, activation


def test_leaky_slope_is_the_seeds() -> None:
    z = np.array([-2.0, 3.0])
    np.testing.assert_array_equal(LeakyReLU().fn(z), [-0.2, 3.0])
    np.testing.assert_array_equal(LeakyReLU().prime(z, LeakyReLU().fn(z)), [0.1, 1.0])


def test_get_activation() -> None:
    assert isinstance(get_activation("sigmoid"), Sigmoid)
    elu = get_activation({"name": "elu", "alpha": 0.3})
    assert isinstance(elu, ELU) and elu.alpha == 0.3
    assert get_activation(elu.spec()).alpha == 0.3
    assert ELU().spec() == "elu"
    obj = ELU(2.0)
    assert get_activation(obj) is obj
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("swish")
