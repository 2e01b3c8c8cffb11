"""Data augmentation on the fly: every training image, every step, slightly distorted.

A digit moved by a pixel, turned by a few degrees, a little larger or wavier is
still the same digit, so the network sees many more training images than the
file holds, and learns to ignore what does not change the label. Each output
pixel p samples the input at

    s(p) = c + M (p - c) - t + d(p)        (c the image centre)

by bilinear interpolation, zero outside the image: M = R(theta) / k turns by
theta and scales by k about the centre, t moves the content by whole pixels, and
d is an elastic distortion (Simard, Steinkraus and Platt 2003): a field of
random displacements, smoothed by a Gaussian of width sigma and scaled by alpha.
theta, k, t and d are drawn per image from the caller's ``distnn.noise.Noise``
(seeded by seed, epoch and step, laid out image by image: reproducible,
different on every step, and the same for an image whichever rank serves it).
With only ``shift``, s(p) = p - t lands on whole pixels, and the interpolation
copies them exactly. An image of C channels, (C, h, w), is moved as one: every
channel by the same theta, k, t and d (one draw per image, as for one channel),
so its colours stay in register.

Everything is vectorised over the batch (no per-image loop); the smoothing is
two small matrix products per image. numpy only: scipy.ndimage's
map_coordinates and gaussian_filter do the same per image, and would be a
dependency for a loop.
"""

from __future__ import annotations

import numpy as np

from distnn.noise import Noise

__all__ = ["Augment", "AugmentError"]

KEYS = ("shift", "rotate", "scale", "elastic", "sigma")
SPEC_HELP = ("comma-separated KEY=VALUE: shift=PIXELS (whole pixels, each way), rotate=DEGREES "
             "(up to, each way), scale=FRACTION (k in 1 +- FRACTION), elastic=ALPHA (pixels) "
             "with sigma=PIXELS (default 4); e.g. shift=2,rotate=10,scale=0.1")


class AugmentError(ValueError):
    """An --augment spec that cannot work; the message says why."""


class Augment:
    """Random distortions of a batch of (m, h*w) images of ``shape`` (h, w), or of
    (m, c*h*w) images of ``shape`` (c, h, w).

    ``Augment()`` changes nothing; ``shape`` may be left out until the data is known.
    """

    def __init__(self, shift: int = 0, rotate: float = 0.0, scale: float = 0.0,
                 elastic: float = 0.0, sigma: float = 4.0,
                 shape: tuple[int, ...] | None = None) -> None:
        if not 0 <= shift <= 64 or shift != int(shift):  # NaN too
            raise AugmentError(f"shift must be a whole number of pixels, 0 to 64, got {shift}")
        for name, value, top in (("rotate", rotate, 180.0), ("scale", scale, 0.9),
                                 ("elastic", elastic, 1000.0)):
            if not 0 <= value <= top:  # NaN too
                raise AugmentError(f"{name} must be from 0 to {top:g}, got {value}")
        if not 0.5 <= sigma <= 100:
            raise AugmentError(f"sigma must be from 0.5 to 100 pixels, got {sigma}")
        self.shift, self.rotate, self.scale = int(shift), float(rotate), float(scale)
        self.elastic, self.sigma = float(elastic), float(sigma)
        if shape is not None and self and len(shape) not in (2, 3):
            raise AugmentError(f"--augment needs images (h, w) or (c, h, w); the data's "
                               f"image_shape is {tuple(shape)}")
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self._smoothers: dict[int, np.ndarray] = {}

    @classmethod
    def parse(cls, spec: str, shape: tuple[int, ...] | None = None) -> Augment:
        """``Augment`` from "shift=2,rotate=10"; "" is no augmentation."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, text = item.partition("=")
            if not sep or key not in KEYS:
                raise AugmentError(f"expected KEY=VALUE with KEY one of {', '.join(KEYS)}, "
                                   f"got {item!r}")
            if key in values:
                raise AugmentError(f"{key} is given twice")
            try:
                values[key] = float(text)
            except ValueError:
                raise AugmentError(f"{key} needs a number, got {text!r}") from None
        return cls(**values, shape=shape)

    def __bool__(self) -> bool:
        return bool(self.shift or self.rotate or self.scale or self.elastic)

    def spec(self) -> str:
        """The canonical spec string (what ``parse`` reads back)."""
        parts = [f"shift={self.shift}"] if self.shift else []
        parts += [f"{k}={getattr(self, k):g}" for k in ("rotate", "scale", "elastic")
                  if getattr(self, k)]
        if self.elastic:
            parts.append(f"sigma={self.sigma:g}")
        return ",".join(parts)

    def __call__(self, x: np.ndarray, noise: Noise) -> np.ndarray:
        """A distorted copy of the images x (m, c*h*w), one draw each from ``noise`` (for
        m samples); x itself if no distortion."""
        if not self:
            return x
        *c, h, w = self.shape
        c = c[0] if c else 1
        m = x.shape[0]
        theta = k = t = d = None
        if self.rotate:
            theta = np.deg2rad(noise.uniform(1, -self.rotate, self.rotate)[:, 0].astype(float))
        if self.scale:
            k = noise.uniform(1, 1 - self.scale, 1 + self.scale)[:, 0].astype(float)
        if self.shift:  # whole pixels from -shift to shift, each as likely
            n = 2 * self.shift + 1
            t = np.minimum(noise.uniform(2, 0, n).astype(np.intp), n - 1).T - self.shift
        if self.elastic:
            d = self._displacement(noise, h, w, x.dtype)
        if c > 1:  # image i's channels, rows i c .. i c + c - 1 of (m c, h, w), share its draw
            theta, k = (None if v is None else np.repeat(v, c) for v in (theta, k))
            t, d = (None if v is None else np.repeat(v, c, axis=1) for v in (t, d))
        return warp(x.reshape(m * c, h, w), theta, k, t, d).reshape(m, -1)

    def _displacement(self, noise: Noise, h: int, w: int, dtype: np.dtype) -> np.ndarray:
        """d = alpha (G * u) for u uniform in [-1, 1], (2, m, h, w): G u G^T per image."""
        u = noise.uniform(2 * h * w, -1, 1).reshape(-1, 2, h, w).transpose(1, 0, 2, 3)
        d = self._smoother(h, dtype) @ u.astype(dtype) @ self._smoother(w, dtype).T
        d *= dtype.type(self.elastic)
        return d

    def _smoother(self, n: int, dtype: np.dtype) -> np.ndarray:
        """The (n, n) matrix of a Gaussian filter of width sigma, zero past the edges."""
        g = self._smoothers.get(n)
        if g is None:
            i = np.arange(n)
            g = np.exp(-((i[:, None] - i[None, :]) ** 2) / (2 * self.sigma ** 2))
            # Normalised as a whole kernel (truncated at 4 sigma, as scipy's gaussian_filter),
            # so near the edge, where the kernel is cut off, the field is weaker.
            radius = int(4 * self.sigma + 0.5)
            g[np.abs(i[:, None] - i[None, :]) > radius] = 0
            full = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * self.sigma ** 2)).sum()
            g = self._smoothers[n] = (g / full).astype(dtype)
        return g


def warp(images: np.ndarray, theta: np.ndarray | None = None, k: np.ndarray | None = None,
         t: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
    """images (m, h, w) resampled at s(p) = c + R(theta) (p - c) / k - t + d(p).

    theta (m,) radians, k (m,) scale factors, t (2, m) whole-pixel shifts (rows,
    columns), d (2, m, h, w) displacements; None is none of that kind.
    """
    if theta is None and k is None and d is None:
        return images.copy() if t is None else _shifted(images, t)
    m, h, w = images.shape
    dtype = images.dtype
    cy, cx = (h - 1) / 2, (w - 1) / 2
    py = (np.arange(h, dtype=dtype) - dtype.type(cy))[None, :, None]  # p - c, by row
    px = (np.arange(w, dtype=dtype) - dtype.type(cx))[None, None, :]  # ... and by column
    cos = np.ones(m, dtype) if theta is None else np.cos(theta).astype(dtype)
    sin = np.zeros(m, dtype) if theta is None else np.sin(theta).astype(dtype)
    if k is not None:
        cos, sin = cos / k.astype(dtype), sin / k.astype(dtype)
    ty, tx = np.zeros((2, m), dtype) if t is None else t.astype(dtype)
    # Per image i: (sy, sx) = c - t + M (p - c) with M = [[cos, -sin], [sin, cos]] / k.
    sy = (cy - ty)[:, None, None] + cos[:, None, None] * py - sin[:, None, None] * px
    sx = (cx - tx)[:, None, None] + sin[:, None, None] * py + cos[:, None, None] * px
    if d is not None:
        sy, sx = sy + d[0], sx + d[1]
    return _bilinear(images, sy, sx)


def _shifted(images: np.ndarray, t: np.ndarray) -> np.ndarray:
    """s(p) = p - t on whole pixels: what _bilinear gives there, as one gather."""
    m, h, w = images.shape
    r = int(np.abs(t).max())
    padded = np.zeros((m, h + 2 * r, w + 2 * r), images.dtype)
    padded[:, r:r + h, r:r + w] = images
    # Output pixel p of image i is padded pixel p + r - t_i: in the flat padded
    # images, a fixed pattern plus one offset per image.
    width, size = w + 2 * r, (h + 2 * r) * (w + 2 * r)
    pattern = (np.arange(h)[:, None] * width + np.arange(w)).reshape(-1)  # (h*w,)
    offset = np.arange(m) * size + (r - t[0]) * width + (r - t[1])  # (m,)
    return padded.reshape(-1)[offset[:, None] + pattern].reshape(m, h, w)


def _bilinear(images: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """images (m, h, w) sampled at (sy, sx) (m, h, w) each, bilinearly; zero outside."""
    m, h, w = images.shape
    # Zeros around each image, one row and column before it and two after. A
    # sample outside is first moved to the edge of that frame, where it reads
    # zeros (weight 1) and at most one more neighbour (weight 0).
    padded = np.zeros((m, h + 3, w + 3), images.dtype)
    padded[:, 1:h + 1, 1:w + 1] = images
    width = w + 3
    sy, sx = np.clip(sy, -1, h), np.clip(sx, -1, w)
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = sy - y0, sx - x0  # weights of the lower and right neighbours
    # Flat index of the upper-left neighbour; the others are +1, +width, +width+1.
    corner = (y0.astype(np.intp) + 1) * width + (x0.astype(np.intp) + 1)
    corner += (np.arange(m) * ((h + 3) * width))[:, None, None]
    flat = padded.reshape(-1)
    top = flat[corner] * (1 - fx) + flat[corner + 1] * fx
    bottom = flat[corner + width] * (1 - fx) + flat[corner + width + 1] * fx
    return top * (1 - fy) + bottom * fy
