"""Max-norm: every hidden unit's incoming weights kept within a ball of radius c.

After each update, a unit j whose incoming weights w_j (row j of its layer's w)
have grown longer than c is scaled back onto the ball:

    w_j -> w_j * c / max(|w_j|, c)

so that a large learning rate cannot make the weights blow up; the usual
companion of dropout (Srivastava et al. 2014, section 5.1). Biases and the
output layer are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["max_norm"]


def max_norm(hidden_weights: Sequence[np.ndarray], c: float,
             units: slice = slice(None)) -> None:
    """Apply the constraint in place to the rows ``units`` of each hidden layer's w.

    ``units`` lets the ranks that share one copy of the weights each take their
    own rows. A row's norm sums its squares in the same order whichever rows are
    taken with it, so the split changes no result.
    """
    for w in hidden_weights:  # (n_out, n_in), stored as w^T row by row
        rows = w.T[:, units]  # (n_in, k): unit j is a column of w^T
        norms = np.sqrt(np.square(rows).sum(axis=0))  # (k,) one |w_j| per unit
        rows *= (c / np.maximum(norms, c)).astype(w.dtype)  # 1 exactly where |w_j| <= c
