"""distnn.sklearn's estimators beside scikit-learn's own, on the same rows and settings.

    python -m distnn.bench.estimators digits                      # both, one process
    mpirun -n 2 python -m distnn.bench.estimators digits --only distnn
    python -m distnn.bench.estimators friedman --rows 1000000 --epochs 5

- digits: 5-fold ``cross_val_score`` of ``make_pipeline(StandardScaler(),
  MLPClassifier(hidden_layer_sizes=(128,), solver="sgd", learning_rate_init=0.01,
  batch_size=32, max_iter=60))``: the mean accuracy, and the wall time of the 5 fits.
- friedman: Friedman #1 (``make_friedman1``, noise sigma 1, float32) with ``--rows``
  training rows and 100,000 test rows; ``MLPRegressor(hidden_layer_sizes=(256, 256),
  batch_size=128, learning_rate_init=0.01, momentum=0.9, max_iter=--epochs, tol=0)``
  in a ``TransformedTargetRegressor`` that standardizes the target, after a
  ``StandardScaler``: test RMSE over sigma (1 is the floor), and the wall time of the fit.

Each line is a JSON record: the peer, its ranks, the score and the seconds. Under
mpirun rank 0 prints. scikit-learn is the ``sklearn`` extra; ``--only`` picks a peer.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

PEERS = ("sklearn", "distnn")


def estimators(peer: str):
    if peer == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    else:
        from distnn.sklearn import MLPClassifier, MLPRegressor
    return MLPClassifier, MLPRegressor


def digits(peer: str, seed: int) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier, _ = estimators(peer)
    x, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), classifier(
        hidden_layer_sizes=(128,), solver="sgd", learning_rate_init=0.01, batch_size=32,
        max_iter=60, random_state=seed))
    t0 = time.perf_counter()
    scores = cross_val_score(model, x, y, cv=5)
    return {"accuracy": float(scores.mean()), "seconds": time.perf_counter() - t0}


def friedman(peer: str, seed: int, rows: int, epochs: int) -> dict:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.datasets import make_friedman1
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, regressor = estimators(peer)
    x, y = make_friedman1(n_samples=rows + 100_000, noise=1.0, random_state=0)
    x = x.astype(np.float32)
    model = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), regressor(
            hidden_layer_sizes=(256, 256), solver="sgd", batch_size=128,
            learning_rate_init=0.01, momentum=0.9, max_iter=epochs, tol=0.0,
            random_state=seed)),
        transformer=StandardScaler())
    t0 = time.perf_counter()
    model.fit(x[:rows], y[:rows])
    seconds = time.perf_counter() - t0
    rmse = float(np.sqrt(np.mean((model.predict(x[rows:]) - y[rows:]) ** 2)))
    return {"rmse_over_sigma": rmse, "seconds": seconds, "epochs": epochs, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnn.bench.estimators",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("digits", "friedman"))
    parser.add_argument("--only", choices=PEERS, help="one peer (under mpirun: distnn)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="friedman's training rows")
    parser.add_argument("--epochs", type=int, default=5, help="friedman's max_iter")
    parser.add_argument("--seed", type=int, default=0, help="random_state")
    args = parser.parse_args(argv)
    from distnn.comm import world

    comm = world()
    warnings.simplefilter("ignore")  # max_iter is what it is, converged or not
    for peer in [args.only] if args.only else PEERS:
        if args.task == "digits":
            record = digits(peer, args.seed)
        else:
            record = friedman(peer, args.seed, args.rows, args.epochs)
        if comm.rank == 0:
            print(json.dumps({"task": args.task, "peer": peer, "ranks": comm.size, **record}),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
