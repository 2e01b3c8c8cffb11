"""Optimizers that update the flat parameter vector in place.

The seed's mini-batch SGD rule, for every weight and bias at once:

    w -> w - (eta/m) sum_x dC_x/dw            (seed)
      =  w - eta * grad_mean,  grad_mean = (1/m) sum_x dC_x/dw

``SGD.step(params, grad_mean, lr)`` with the defaults is exactly
``params -= lr * grad_mean``; ``SGD.step(params, grad_sum, lr, scale=1/m)`` is
``params -= (lr/m) * grad_sum``, the seed's rule as written, in one pass fewer.
Options, each off by default:

- L2 weight decay (Nielsen's lmbda, on weights only via a mask):
  g = grad_mean + weight_decay * w;
- momentum mu (PyTorch's convention): v -> mu v + g, w -> w - eta v;
- Nesterov momentum: v -> mu v + g, w -> w - eta (g + mu v).

State (the velocity) is one flat vector like the parameters, so a checkpoint
stores it with ``state_dict()``. Steps allocate nothing: scratch is preallocated.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SGD"]


class SGD:
    """Mini-batch SGD with optional momentum, Nesterov momentum and masked L2 weight decay.

    ``params`` is either the parameter vector (its size and dtype are used) or its size.
    ``decay_mask`` (bool, True where decay applies, e.g. ``MLP.weight_mask``) defaults
    to all parameters.
    """

    def __init__(
        self,
        params: np.ndarray | int,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decay_mask: np.ndarray | None = None,
        dtype: str | np.dtype | None = None,
    ):
        if isinstance(params, np.ndarray):
            n, dtype = params.size, dtype or params.dtype
        else:
            n, dtype = int(params), dtype or np.float32
        if momentum < 0.0 or weight_decay < 0.0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.dtype = np.dtype(dtype)
        self.velocity = np.zeros(n, self.dtype)  # v; stays 0 without momentum
        self._scratch = np.empty(n, self.dtype)
        self._mean = np.empty(n, self.dtype)  # scale * grad, when step() is given a scale
        # weight_decay on masked entries, 0 elsewhere, so decay is one multiply.
        self._decay: np.ndarray | None = None
        if self.weight_decay > 0.0:
            mask = np.ones(n, bool) if decay_mask is None else np.asarray(decay_mask, bool)
            if mask.shape != (n,):
                raise ValueError(f"decay_mask must have shape ({n},), got {mask.shape}")
            self._decay = np.where(mask, self.weight_decay, 0.0).astype(self.dtype)

    def step(
        self,
        params: np.ndarray,
        grad_mean: np.ndarray,
        lr: float,
        scale: float = 1.0,
        part: slice | None = None,
        decay_scale: float = 1.0,
    ) -> None:
        """Update ``params`` in place from the batch-mean gradient ``scale * grad_mean``.

        A trainer holding the SUM over the batch passes it with ``scale=1/m``, which
        saves a pass over the vector: plain SGD then applies the seed's rule literally,
        w -> w - (eta/m) sum_x dC_x/dw. ``grad_mean`` is not changed.

        ``part`` updates only ``params[part]`` (and that part of the velocity), and
        ``grad_mean`` then holds the gradient of that part alone: ranks that share
        one parameter vector each update their own part of it.

        ``decay_scale`` multiplies the weight decay of this step alone: a batch of
        weighted samples decays by weight_decay * m / (its total weight), as
        scikit-learn's alpha does.
        """
        lr, scale, decay_scale = float(lr), float(scale), float(decay_scale)
        if part is None:
            v, scratch, mean, decay = self.velocity, self._scratch, self._mean, self._decay
        else:
            params, v, scratch, mean = (params[part], self.velocity[part],
                                        self._scratch[part], self._mean[part])
            decay = None if self._decay is None else self._decay[part]
        if decay is None and self.momentum == 0.0:
            # The seed's rule: w -> w - eta * grad_mean, eta and the 1/m folded together.
            params -= np.multiply(grad_mean, lr * scale, out=scratch)
            return
        g = grad_mean if scale == 1.0 else np.multiply(grad_mean, scale, out=mean)
        if decay is not None:
            lmbda_w = np.multiply(params, decay, out=scratch)
            if decay_scale != 1.0:
                lmbda_w *= decay_scale
            g = np.add(lmbda_w, g, out=scratch)  # g + lmbda w
        if self.momentum == 0.0:
            params -= np.multiply(g, lr, out=scratch)
            return
        v *= self.momentum
        v += g  # v -> mu v + g
        if self.nesterov:
            params -= np.multiply(g, lr, out=scratch)  # w - eta g ...
            params -= np.multiply(v, lr * self.momentum, out=scratch)  # ... - eta mu v
        else:
            params -= np.multiply(v, lr, out=scratch)  # w - eta v

    def bind(self, velocity: np.ndarray) -> None:
        """Keep the velocity in ``velocity`` from now on; its values become the state.

        For memory the ranks of a node share (``distnn.reduce``).
        """
        if velocity.shape != self.velocity.shape or velocity.dtype != self.dtype:
            raise ValueError(f"expected a flat {self.dtype} vector of {self.velocity.size} "
                             f"entries, got {velocity.dtype} {velocity.shape}")
        self.velocity = velocity

    def state_dict(self) -> dict[str, np.ndarray | float]:
        """Everything needed to resume: the velocity and the hyperparameters (for the record)."""
        return {
            "velocity": self.velocity.copy(),
            "momentum": self.momentum,
            "nesterov": float(self.nesterov),
            "weight_decay": self.weight_decay,
        }

    def load_state_dict(self, state: dict[str, np.ndarray | float]) -> None:
        """Restore the velocity; hyperparameters stay those given to the constructor."""
        velocity = np.asarray(state["velocity"])
        if velocity.shape != self.velocity.shape:
            raise ValueError(
                f"optimizer state has {velocity.size} parameters, this model {self.velocity.size}"
            )
        self.velocity[...] = velocity
