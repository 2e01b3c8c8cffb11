"""Peers on Friedman's first regression problem: the rows launch/recipes/friedman.sh trains on.

    python -m distnn.bench.friedman_peers --data data/friedman-1m.h5 [--json out.json]

Reads the table distnn trains from (``/train/features``, ``/train/targets``,
``/test/...`` and the scaling stored beside them, data/README.md) and fits on
the same rows, in this one process:

- hgbr: scikit-learn's ``HistGradientBoostingRegressor`` with its default
  settings (``max_iter`` 100, learning rate 0.1, early stopping on 10% of the
  training rows, as it does by default above 10,000 rows); ``--hgbr-max-iter``
  changes only ``max_iter``. Raw features and targets: trees need no scaling.
- torch: a PyTorch MLP with the recipe's net and settings, 10-256-256-1 ReLU,
  linear output, cost 0.5 (a - y)^2 averaged over the batch, SGD with momentum
  0.9 and weight decay on the weights only (as ``distnn.train``), batch 128,
  a one-cycle rate (``OneCycleLR``: cosine warm-up over the first epoch to
  ``--torch-lr``, cosine decay to ~0 by the end, momentum held fixed); features
  and targets standardized with the file's stored mean and standard deviation,
  float32, every epoch's rows in a fresh random order.

Both run on ``--threads`` threads (2 by default: BLAS/OpenMP for sklearn,
intra-op for torch). wall = seconds from data in memory to test predictions
made (reading the file is timed apart as read_s); RMSE is in the target's
units and divided by the noise sigma the file was made with (its ``source``
attribute), so 1 is the floor no model can beat. torch and scikit-learn are
the ``bench`` extra, never distnn dependencies.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

PEERS = ("hgbr", "torch")
LAYERS = (10, 256, 256, 1)


def read_table(path: str | Path, sigma: float | None = None) -> dict[str, Any]:
    """Both splits' rows (float32 features, float64 targets), the stored scaling and sigma
    (``sigma``, or as the file's source says: ``friedman`` writes it there; else 1)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("task") != "regression":
            raise SystemExit(f"friedman_peers: error: {path} holds no regression table")
        source = str(f.attrs.get("source", ""))
        found = re.search(r"sigma=([0-9.eE+-]+)", source)
        table = {
            "source": source,
            "sigma": sigma if sigma is not None else float(found.group(1)) if found else 1.0,
            "x_train": f["train/features"][:].astype(np.float32),
            "y_train": f["train/targets"][:, 0].astype(np.float64),
            "x_test": f["test/features"][:].astype(np.float32),
            "y_test": f["test/targets"][:, 0].astype(np.float64),
        }
        for name in ("feature_mean", "feature_std", "target_mean", "target_std"):
            table[name] = f[f"scaling/{name}"][:]
    return table


def rmse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(prediction, np.float64) - target) ** 2)))


def fit_hgbr(table: dict[str, Any], threads: int, max_iter: int, seed: int) -> dict[str, Any]:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        raise SystemExit("friedman_peers: error: the hgbr peer needs scikit-learn "
                         "(pip install 'distnn[bench]' or scikit-learn)") from None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        model = HistGradientBoostingRegressor(max_iter=max_iter, random_state=seed)
        model.fit(table["x_train"], table["y_train"])
        prediction = model.predict(table["x_test"])
        wall = time.perf_counter() - start
    return {"peer": "hgbr", "wall_s": wall, "test_rmse": rmse(prediction, table["y_test"]),
            "settings": {"max_iter": max_iter, "iterations_run": int(model.n_iter_),
                         "early_stopping": "auto (on)", "random_state": seed}}


def fit_torch(table: dict[str, Any], threads: int, epochs: int, batch: int, lr: float,
              weight_decay: float, warmup_epochs: float, seed: int) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise SystemExit("friedman_peers: error: the torch peer needs PyTorch "
                         "(pip install 'distnn[bench]')") from None
    torch.set_num_threads(threads)
    start = time.perf_counter()
    torch.manual_seed(seed)
    mean, std = table["feature_mean"], table["feature_std"]
    y_mean, y_std = float(table["target_mean"][0]), float(table["target_std"][0])
    x = torch.from_numpy(((table["x_train"] - mean) / std).astype(np.float32))
    y = torch.from_numpy(((table["y_train"] - y_mean) / y_std).astype(np.float32))[:, None]
    x_test = torch.from_numpy(((table["x_test"] - mean) / std).astype(np.float32))

    layers: list[Any] = []
    for n_in, n_out in zip(LAYERS[:-1], LAYERS[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])  # linear output
    weights = [p for p in model.parameters() if p.dim() > 1]
    biases = [p for p in model.parameters() if p.dim() == 1]
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": weight_decay},
                                 {"params": biases, "weight_decay": 0.0}],
                                lr=lr, momentum=0.9)
    rows = x.shape[0]
    steps = rows // batch  # whole batches only, as distnn.train
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps,
        pct_start=min(warmup_epochs / epochs, 0.5),
        anneal_strategy="cos", cycle_momentum=False)

    def predict() -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = model(x_test)[:, 0].double().numpy() * y_std + y_mean
        model.train()
        return out

    trajectory = []
    for _ in range(epochs):
        order = torch.randperm(rows)
        xs, ys = x[order], y[order]
        for i in range(steps):
            rows_i = slice(i * batch, (i + 1) * batch)
            loss = 0.5 * torch.nn.functional.mse_loss(model(xs[rows_i]), ys[rows_i])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        trajectory.append([round(time.perf_counter() - start, 2),
                           round(rmse(predict(), table["y_test"]), 5)])
    wall = time.perf_counter() - start
    return {"peer": "torch", "wall_s": wall, "test_rmse": trajectory[-1][1],
            "trajectory": trajectory,
            "settings": {"layers": list(LAYERS), "epochs": epochs, "batch": batch, "lr": lr,
                         "momentum": 0.9, "weight_decay": weight_decay,
                         "warmup_epochs": warmup_epochs, "schedule": "OneCycleLR cos",
                         "torch": torch.__version__}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m distnn.bench.friedman_peers",
        description="Fit scikit-learn's HistGradientBoostingRegressor and a PyTorch MLP on "
                    "a Friedman #1 table made by python -m distnn.data friedman, and print "
                    "wall time and test RMSE / sigma for each.")
    parser.add_argument("--data", default="data/friedman-1m.h5",
                        help="the table (default %(default)s)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated, of hgbr,torch (default %(default)s)")
    parser.add_argument("--sigma", type=float,
                        help="the noise the rows were made with (default: as the file's source "
                             "says, which an imported CSV does not: then 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads each (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="fits of each peer (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first fit; +1 a repeat")
    parser.add_argument("--hgbr-max-iter", type=int, default=100,
                        help="boosting iterations at most (default 100, sklearn's)")
    parser.add_argument("--torch-epochs", type=int, default=20, help="(default %(default)s)")
    parser.add_argument("--torch-batch", type=int, default=128, help="(default %(default)s)")
    parser.add_argument("--torch-lr", type=float, default=0.05, help="peak (default %(default)s)")
    parser.add_argument("--torch-weight-decay", type=float, default=1e-4,
                        help="(default %(default)s)")
    parser.add_argument("--torch-warmup-epochs", type=float, default=1.0,
                        help="(default %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    if not peers or any(p not in PEERS for p in peers):
        parser.error(f"--peers takes a comma-separated list of {','.join(PEERS)}")
    if not Path(args.data).exists():
        parser.error(f"{args.data} is missing: launch/recipes/friedman.sh makes it (or python "
                     f"-m distnn.data friedman --out {args.data})")

    start = time.perf_counter()
    table = read_table(args.data, args.sigma)
    read_s = time.perf_counter() - start
    sigma = table["sigma"]
    print(f"{args.data}: {len(table['y_train'])} train / {len(table['y_test'])} test rows, "
          f"{table['source']}; read in {read_s:.1f} s; {args.threads} threads", flush=True)
    results = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        for peer in peers:
            if peer == "hgbr":
                result = fit_hgbr(table, args.threads, args.hgbr_max_iter, seed)
            else:
                result = fit_torch(table, args.threads, args.torch_epochs, args.torch_batch,
                                   args.torch_lr, args.torch_weight_decay,
                                   args.torch_warmup_epochs, seed)
            result.update(repeat=repeat, seed=seed, read_s=read_s,
                          rmse_over_sigma=result["test_rmse"] / sigma)
            results.append(result)
            print(f"  {peer:5s} repeat {repeat}: {result['wall_s']:7.1f} s  "
                  f"test RMSE {result['test_rmse']:.4f}  = {result['rmse_over_sigma']:.4f} sigma",
                  flush=True)

    print(medians_table(results, peers))
    if args.json:
        record = {"data": args.data, "source": table["source"], "sigma": sigma,
                  "threads": args.threads, "results": results}
        try:
            write_text(args.json, json.dumps(record, indent=1) + "\n")
        except WriteFailed as err:  # a full disk, say: one line, no traceback
            print(f"friedman_peers: error: {err}; {err.remedy}", file=sys.stderr)
            return EXIT_IOERR
    return 0 if all(math.isfinite(r["test_rmse"]) for r in results) else 1


def medians_table(results: list[dict[str, Any]], peers: list[str]) -> str:
    """A Markdown table of each peer's median wall time and RMSE / sigma."""
    lines = ["", "| peer  | fits | median wall (s) | median RMSE / sigma |",
             f"|{'-' * 7}|{'-' * 6}|{'-' * 17}|{'-' * 21}|"]
    for peer in peers:
        mine = [r for r in results if r["peer"] == peer]
        wall = float(np.median([r["wall_s"] for r in mine]))
        ratio = float(np.median([r["rmse_over_sigma"] for r in mine]))
        lines.append(f"| {peer:5s} | {len(mine):4d} | {wall:15.1f} | {ratio:19.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
