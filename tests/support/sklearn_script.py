"""A user's script with distnn.sklearn, run alone or on every rank of `mpirun -n P`
(tests/unit/test_sklearn.py): every rank makes the same data and fits on it; each rank
writes what it holds afterwards to OUT-<rank>.npz.

    python sklearn_script.py fit OUT        # the fits
    python sklearn_script.py differ OUT     # rank 1 passes other rows: every rank refuses
    python sklearn_script.py nan OUT        # rank 1's rows hold a NaN: every rank refuses
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from mpi4py import MPI
from sklearn.model_selection import cross_val_score

from distnn.sklearn import MLPClassifier, MLPRegressor


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """300 rows of 6 features; 3 classes, 2 targets, and the rows' weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 6))
    classes = np.argmax(x @ rng.standard_normal((6, 3)) + 0.3 * rng.standard_normal((300, 3)),
                        axis=1)
    targets = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], x[:, 3] - x[:, 4] ** 2], axis=1)
    return x, classes, targets, rng.uniform(0.5, 2.0, 300)


def main(mode: str, out: str) -> None:
    rank = MPI.COMM_WORLD.Get_rank()
    x, classes, targets, weights = data()
    warnings.simplefilter("ignore")  # max_iter is short on purpose
    held: dict[str, np.ndarray] = {}
    if mode in ("differ", "nan"):
        if rank == 1:
            x[7, 2] = np.nan if mode == "nan" else x[7, 2] + 1e-9
        try:
            MLPClassifier(max_iter=2, random_state=0).fit(x, classes)
            held["refused"] = np.array("")
        except ValueError as err:
            held["refused"] = np.array(str(err))
        np.savez(f"{out}-{rank}.npz", **held)
        return
    # Every part of a step: weights, L2, dropout, Nesterov momentum; a verbose fit
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), batch_size=48, learning_rate_init=0.05,
                        max_iter=8, alpha=1e-3, dropout=0.1, random_state=3, verbose=True)
    clf.fit(x, classes, sample_weight=weights)
    # Early stopping on a validation split, max-norm, plain momentum, two targets
    reg = MLPRegressor(hidden_layer_sizes=(12,), batch_size=40, learning_rate_init=0.02,
                       max_iter=30, early_stopping=True, n_iter_no_change=2, max_norm=2.0,
                       nesterovs_momentum=False, tol=1e-3, random_state=5)
    reg.fit(x, targets)
    unseeded = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=None)
    unseeded.fit(x, targets[:, 0])
    # Each call of partial_fit is one data-parallel epoch
    stream = MLPClassifier(hidden_layer_sizes=(10,), batch_size=30, random_state=7)
    for part in (slice(0, 150), slice(150, 300)):
        stream.partial_fit(x[part], classes[part], classes=[0, 1, 2])
    # Each fit of a search is one data-parallel fit over all ranks
    scores = cross_val_score(MLPClassifier(hidden_layer_sizes=(8,), batch_size=32,
                                           max_iter=3, random_state=1), x, classes, cv=3)
    for name, est in (("clf", clf), ("reg", reg), ("unseeded", unseeded), ("stream", stream)):
        for l, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
            held[f"{name}.coefs_{l}"], held[f"{name}.intercepts_{l}"] = w, b
        held[f"{name}.loss_curve_"] = np.array(est.loss_curve_)
        held[f"{name}.n_iter_"] = np.array(est.n_iter_)
        held[f"{name}.predict"] = est.predict(x)
    held["clf.predict_proba"] = clf.predict_proba(x)
    held["reg.validation_scores_"] = np.array(reg.validation_scores_)
    held["scores"] = scores
    held["unseeded.seed"] = np.array(unseeded._seed)  # the seed it drew (rank 0's)
    np.savez(f"{out}-{rank}.npz", **held)


if __name__ == "__main__":
    main(*sys.argv[1:])
