"""Inverted dropout: a random half-network (or other share) for every sample of every step.

During training each input of a layer, a^{l-1}_k, is kept with probability 1 - p
and otherwise set to 0 (Srivastava et al. 2014). The kept ones are scaled by
1/(1 - p), so a layer's expected input is unchanged and evaluation, ``predict``
and ``distnn.evaluate`` use the whole network as it is:

    a~^{l-1} = a^{l-1} (.) r^{l-1},   r_k = 1/(1 - p) with probability 1 - p, else 0

``masks`` draws the r for one batch; ``MLP.gradient(..., masks=...)`` runs
feed-forward and backprop through them. The draws are the caller's
``distnn.noise.Noise``, seeded by (seed, epoch, step) and laid out sample by
sample: a run is reproducible and resumes bitwise, every step draws other
masks, and a sample's masks are the same whichever rank serves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distnn.noise import Noise

__all__ = ["Dropout"]


class Dropout:
    """Masks for the inputs of each layer of a network with these ``sizes``.

    ``hidden`` is p for the hidden layers' outputs, ``input`` for the input
    pixels; 0 keeps everything (that layer gets no mask).
    """

    def __init__(self, sizes: Sequence[int], hidden: float = 0.0, input: float = 0.0,
                 dtype: str | np.dtype = "float32") -> None:
        for name, p in (("hidden", hidden), ("input", input)):
            if not 0 <= p < 1:  # NaN too
                raise ValueError(f"dropout {name} must be in [0, 1), got {p}")
        # p for the input of each layer: the pixels, then every hidden layer's output.
        self.p = [float(input)] + [float(hidden)] * (len(sizes) - 2)
        self.sizes = list(sizes)
        self.dtype = np.dtype(dtype)

    def __bool__(self) -> bool:
        return any(self.p)

    def masks(self, noise: Noise) -> list[np.ndarray | None] | None:
        """For the noise's batch of m samples: r^{l-1} of shape (m, n_{l-1}) per layer
        (None where p = 0), or None when nothing drops."""
        if not self:
            return None
        masks: list[np.ndarray | None] = []
        for p, n in zip(self.p, self.sizes[:-1]):
            if p == 0:
                masks.append(None)
                continue
            r = noise.uniform(n, dtype=self.dtype)
            keep = r >= self.dtype.type(p)
            masks.append(np.multiply(keep, self.dtype.type(1 / (1 - p)), out=r))
        return masks
