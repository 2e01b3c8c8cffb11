"""Data augmentation: each distortion checked on hand-made images, and its draws on the seed."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.augment import Augment, AugmentError, warp
from distnn.noise import Noise

SHAPE = (28, 28)


def blob(m: int = 1, rows=slice(10, 18), cols=slice(11, 15)) -> np.ndarray:
    """m images (m, 28*28) holding one bright block well inside the frame."""
    images = np.zeros((m, *SHAPE), np.float32)
    images[:, rows, cols] = np.linspace(0.2, 1.0, (rows.stop - rows.start)
                                        * (cols.stop - cols.start)).reshape(
        rows.stop - rows.start, cols.stop - cols.start)
    return images.reshape(m, -1)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(m, 2): the intensity-weighted mean (row, column) of each image."""
    images = images.reshape(-1, *SHAPE).astype(np.float64)
    rows, cols = np.indices(SHAPE)
    mass = images.sum(axis=(1, 2))
    return np.stack([(images * rows).sum(axis=(1, 2)) / mass,
                     (images * cols).sum(axis=(1, 2)) / mass], axis=1)


def test_no_augmentation_is_the_same_array():
    x = blob(3)
    assert Augment(shape=SHAPE)(x, Noise(0, 0, 0, 3)) is x
    assert not Augment.parse("", SHAPE)


def test_a_shift_moves_the_centre_of_mass_by_the_shift_and_copies_pixels_exactly():
    x = blob(64)
    out = Augment(shift=3, shape=SHAPE)(x, Noise(0, 0, 0, 64))
    u = Noise(0, 0, 0, 64).uniform(2)  # the same draw, uniform in [0, 1): 7 whole pixels
    shifts = np.floor(u * 7).astype(int) - 3
    assert set(shifts.ravel()) == set(range(-3, 4))  # every shift, and only those
    np.testing.assert_allclose(centre_of_mass(out) - centre_of_mass(x), shifts, atol=1e-9)
    assert len({tuple(s) for s in shifts}) > 20  # the shifts really vary over the batch
    for i, (dy, dx) in enumerate(shifts):  # whole pixels: np.roll, bit for bit
        expected = np.roll(x[i].reshape(SHAPE), (dy, dx), axis=(0, 1))
        assert np.array_equal(out[i].reshape(SHAPE), expected)


def test_whole_pixel_shifts_are_the_interpolation_at_whole_pixels():
    x = np.random.default_rng(4).random((16, *SHAPE)).astype(np.float32)
    t = np.random.default_rng(5).integers(-4, 4, (2, 16), endpoint=True)
    copied = warp(x, t=t)  # the fast path: one gather
    interpolated = warp(x, theta=np.zeros(16), t=t)  # the general path, weights 0 and 1
    assert np.array_equal(copied, interpolated)


def test_a_shift_past_the_edge_fills_with_zeros():
    x = np.ones((1, 28 * 28), np.float32)
    out = warp(x.reshape(1, *SHAPE), t=np.array([[2], [-3]])).reshape(SHAPE)
    assert out[:2].sum() == 0 and out[:, -3:].sum() == 0  # what came in from outside
    assert out[2:, :-3].min() == 1  # everything else is the image


def test_a_quarter_turn_is_rot90():
    x = np.random.default_rng(1).random((2, *SHAPE)).astype(np.float32)
    out = warp(x, theta=np.full(2, np.pi / 2))
    np.testing.assert_allclose(out, np.rot90(x, -1, axes=(1, 2)), atol=1e-5)


def test_rotation_and_scaling_keep_a_centred_digit_centred_and_scale_its_spread():
    centred = np.zeros((1, *SHAPE), np.float32)
    centred[0, 10:18, 10:18] = 1  # a uniform square about the centre, (13.5, 13.5)
    turned = warp(centred, theta=np.array([0.3]))
    np.testing.assert_allclose(centre_of_mass(turned), centre_of_mass(centred), atol=1e-6)
    grown = warp(centred, k=np.array([1.5]))
    np.testing.assert_allclose(centre_of_mass(grown), centre_of_mass(centred), atol=1e-6)
    # Area grows with k^2: the mass of a uniform square, up to its blurred rim.
    assert grown.sum() == pytest.approx(1.5 ** 2 * centred.sum(), rel=0.08)


def test_elastic_distortion_is_smooth_bounded_and_keeps_the_digit_in_place():
    aug = Augment(elastic=8, sigma=4, shape=SHAPE)
    d = aug._displacement(Noise(2, 0, 0, 32), 28, 28, np.dtype(np.float32))
    assert d.shape == (2, 32, 28, 28)
    assert 0.1 < np.abs(d).max() < 8  # moves pixels, less than alpha
    # Smooth: neighbours move nearly alike, far less than independent noise would.
    assert np.abs(np.diff(d, axis=-1)).mean() < 0.2 * np.abs(d).mean()
    x = blob(32)
    out = aug(x, Noise(3, 0, 0, 32))
    assert np.abs(centre_of_mass(out) - centre_of_mass(x)).max() < 2
    assert not np.array_equal(out, x)


def test_draws_are_reproducible_from_the_seed_and_differ_by_epoch_and_step():
    aug = Augment.parse("shift=2,rotate=10,scale=0.1,elastic=6", SHAPE)
    x = blob(8)
    first = aug(x, Noise(5, 1, 3, 8))
    assert np.array_equal(first, aug(x, Noise(5, 1, 3, 8)))
    for other in [(6, 1, 3), (5, 2, 3), (5, 1, 4)]:
        assert not np.array_equal(first, aug(x, Noise(*other, 8))), other
    assert first.dtype == x.dtype and first.shape == x.shape


def test_an_image_gets_the_same_distortion_whichever_rank_serves_it():
    """A batch of 8 cut at 3 and 5, as ranks serve it: each part's distortions are
    those of the same images distorted in one piece."""
    aug = Augment.parse("shift=2,rotate=10,scale=0.1,elastic=6", SHAPE)
    x = blob(8)
    whole = aug(x, Noise(5, 1, 3, 8))
    parts = [aug(x[a:b], Noise(5, 1, 3, 8, a, b - a)) for a, b in ((0, 3), (3, 5), (5, 8))]
    assert np.array_equal(np.vstack(parts), whole)


def test_the_spec_reads_back():
    aug = Augment.parse("rotate=10, shift=2,scale=0.1,elastic=6,sigma=5")
    assert (aug.shift, aug.rotate, aug.scale, aug.elastic, aug.sigma) == (2, 10, 0.1, 6, 5)
    assert Augment.parse(aug.spec()).spec() == aug.spec() == \
        "shift=2,rotate=10,scale=0.1,elastic=6,sigma=5"


@pytest.mark.parametrize("spec,message", [
    ("shift", "expected KEY=VALUE"),
    ("turn=3", "expected KEY=VALUE"),
    ("shift=1.5", "whole number"),
    ("shift=-1", "whole number"),
    ("shift=nan", "whole number"),
    ("rotate=inf", "rotate must be from 0"),
    ("scale=1", "scale must be from 0"),
    ("elastic=-2", "elastic must be from 0"),
    ("sigma=0", "sigma must be from 0.5"),
    ("shift=two", "shift needs a number"),
    ("shift=1,shift=2", "given twice"),
])
def test_a_bad_spec_is_one_clear_error(spec, message):
    with pytest.raises(AugmentError, match=message):
        Augment.parse(spec)


def test_rows_that_are_not_images_cannot_be_augmented():
    for shape in ((784,), (2, 3, 28, 28)):
        with pytest.raises(AugmentError, match=r"needs images \(h, w\) or \(c, h, w\)"):
            Augment.parse("shift=1", shape)
    assert not Augment.parse("", (784,))  # no augmentation needs no shape


@pytest.mark.parametrize("spec", ["shift=2", "shift=2,rotate=20,scale=0.2,elastic=3,sigma=1"])
def test_the_channels_of_an_image_move_as_one(spec):
    """(c, h, w) images: channel j of the result is what the same draws make of channel j
    alone (one draw per image, not per channel), bit for bit, on the whole-pixel path and
    the interpolating one."""
    m, c, h, w = 6, 3, 7, 5
    x = np.random.default_rng(8).random((m, c, h, w)).astype(np.float32)
    out = Augment.parse(spec, (c, h, w))(x.reshape(m, -1), Noise(3, 1, 2, m))
    out = out.reshape(m, c, h, w)
    assert not np.array_equal(out, x)
    for j in range(c):
        alone = Augment.parse(spec, (h, w))(x[:, j].reshape(m, -1), Noise(3, 1, 2, m))
        np.testing.assert_array_equal(out[:, j], alone.reshape(m, h, w))


def test_warp_equals_a_pixel_by_pixel_reference_including_far_outside_samples():
    rng = np.random.default_rng(6)
    m, h, w = 5, 6, 5
    images = rng.random((m, h, w)).astype(np.float64)
    theta, k = rng.uniform(-3, 3, m), rng.uniform(0.3, 2, m)
    t = rng.integers(-3, 3, (2, m), endpoint=True)
    d = rng.normal(0, 4, (2, m, h, w))  # moves some samples far past the edges
    out = warp(images, theta, k, t, d)

    def pixel(i: int, y: float, x: float) -> float:
        value = 0.0
        for yy in (np.floor(y), np.floor(y) + 1):
            for xx in (np.floor(x), np.floor(x) + 1):
                weight = (1 - abs(y - yy)) * (1 - abs(x - xx))
                if 0 <= yy < h and 0 <= xx < w:
                    value += weight * images[i, int(yy), int(xx)]
        return value

    cy, cx = (h - 1) / 2, (w - 1) / 2
    for i in range(m):
        c, s = np.cos(theta[i]) / k[i], np.sin(theta[i]) / k[i]
        for r in range(h):
            for q in range(w):
                y = cy + c * (r - cy) - s * (q - cx) - t[0, i] + d[0, i, r, q]
                x = cx + s * (r - cy) + c * (q - cx) - t[1, i] + d[1, i, r, q]
                assert out[i, r, q] == pytest.approx(pixel(i, y, x), abs=1e-12), (i, r, q)
