"""Test-set evaluation: accuracy, per-class accuracy, confusion matrix; RMSE, MAE and R^2.

    python -m distnn.evaluate runs/checkpoint.h5                 # on the data it trained on
    python -m distnn.evaluate runs/checkpoint.h5 --show 5        # five digits as ASCII art
    mpirun -n 4 python -m distnn.evaluate runs/checkpoint.h5     # sharded over ranks

Each rank counts its own shard of the test set into a confusion matrix; the
matrices are summed over ranks, so every test image counts exactly once. A
regression is scored the same way: each rank sums its rows' errors (in the
target's own units, float64), the sums add over ranks, and

    RMSE = sqrt(sum e^2 / n),   MAE = sum |e| / n,   R^2 = 1 - sum e^2 / sum (y - mean y)^2

per target, with e = prediction - y.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from distnn.data.errors import DataError
from distnn.convnet import Network

EVAL_BATCH = 1000  # rows per forward pass: bounds memory on a large test shard


def confusion(net: Network, x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = how many samples of class i the net predicts as class j."""
    counts = np.zeros((n_classes, n_classes), np.int64)
    for start in range(0, len(y), EVAL_BATCH):
        predicted = net.predict(x[start:start + EVAL_BATCH])
        np.add.at(counts, (y[start:start + EVAL_BATCH], predicted), 1)
    return counts


def confusion_over_ranks(comm, net: Network, x: np.ndarray, y: np.ndarray,
                         n_classes: int) -> np.ndarray:
    """The confusion matrix of the whole split: each rank counts its shard, the counts add."""
    return comm.allreduce_(confusion(net, x, y, n_classes))


def accuracy(counts: np.ndarray) -> float:
    return float(np.trace(counts) / max(1, counts.sum()))


def regression_sums(net: Network, x: np.ndarray, y: np.ndarray, mean: np.ndarray,
                    std: np.ndarray) -> np.ndarray:
    """Per target (columns), in its own units: rows [n, sum e^2, sum |e|, sum d, sum d^2],
    float64, with e = prediction - y and d = y - mean (the training mean: the shift
    keeps sum d^2 - (sum d)^2 / n accurate). The net predicts standardized targets,
    y holds them in their units, (n, k)."""
    sums = np.zeros((5, y.shape[1]))
    for start in range(0, len(y), EVAL_BATCH):
        truth = y[start:start + EVAL_BATCH]
        e = net.forward(x[start:start + EVAL_BATCH]).astype(np.float64) * std + mean - truth
        d = truth - mean
        sums += [np.full(y.shape[1], len(truth)), (e * e).sum(0), np.abs(e).sum(0),
                 d.sum(0), (d * d).sum(0)]
    return sums


def regression_scores(sums: np.ndarray) -> dict[str, list[float]]:
    """RMSE, MAE and R^2 per target from ``regression_sums`` (summed over ranks)."""
    n, sse, sae, sd, sd2 = sums
    sst = sd2 - sd * sd / n  # sum (y - mean y)^2
    return {"rmse": np.sqrt(sse / n).tolist(), "mae": (sae / n).tolist(),
            "r2": (1 - sse / np.where(sst > 0, sst, np.nan)).tolist()}


def test_scores(comm, net: Network, shard, task: str, n_outputs: int,
                scaling: dict[str, np.ndarray]) -> tuple[dict[str, object], str]:
    """The test split scored over every rank, each row once (collective): the fields of
    the epoch's metrics record, and the run's final line."""
    if task == "classification":
        counts = confusion_over_ranks(comm, net, shard.x, shard.y, n_outputs)
        return ({"test_accuracy": accuracy(counts)},
                f"final test accuracy: {accuracy(counts):.2%} "
                f"({np.trace(counts)}/{counts.sum()})")
    mean, std = scaling["target_mean"], scaling["target_std"]
    sums = comm.allreduce_(regression_sums(net, shard.x, shard.units, mean, std))
    scores = regression_scores(sums)
    fields = {f"test_{name}": values[0] if len(values) == 1 else values
              for name, values in scores.items()}
    return fields, f"final test {scores_text(fields)} ({int(sums[0, 0])} rows)"


def scores_text(fields: dict[str, object]) -> str:
    """"RMSE 1.02  MAE 0.81  R^2 0.957", or accuracy, from a metrics record's fields."""
    if "test_accuracy" in fields:
        return f"accuracy {fields['test_accuracy']:.2%}"

    def show(value: object) -> str:
        # '#': four significant digits, the zeros kept (1.000, not 1)
        return (f"{value:#.4g}" if isinstance(value, float)
                else "[" + ", ".join(f"{v:#.4g}" for v in value) + "]")

    return (f"RMSE {show(fields['test_rmse'])}  MAE {show(fields['test_mae'])}  "
            f"R^2 {show(fields['test_r2'])}")


def ascii_digit(pixels: np.ndarray, shape: tuple[int, int]) -> list[str]:
    """A greyscale image (values 0..1) as lines of text, darker pixels denser glyphs."""
    ramp = " .:-=+*#%@"
    levels = np.clip((pixels.reshape(shape) * len(ramp)).astype(int), 0, len(ramp) - 1)
    return ["".join(ramp[v] for v in row) for row in levels]


def report(counts: np.ndarray, names: list[str] | None = None) -> str:
    """Accuracy, per-class accuracy and the confusion matrix, as a printable table; the
    classes by their ``names`` where the data file keeps them (the matrix's columns then
    by number, with a key)."""
    n = counts.shape[0]
    per_class = np.diag(counts) / np.maximum(1, counts.sum(axis=1))
    label = [str(i) for i in range(n)] if not names else \
        [f"{i} {name}" for i, name in enumerate(names)]
    w = max(5, *map(len, label))
    lines = [f"test accuracy: {accuracy(counts):.2%} ({np.trace(counts)}/{counts.sum()})", "",
             f"{'class':<{w}}  accuracy   count" if names else "class  accuracy   count"]
    side = "<" if names else ">"  # names read from the left, numbers line up on the right
    lines += [f"{label[i]:{side}{w}}  {per_class[i]:>8.2%}  {counts[i].sum():>6}"
              for i in range(n)]
    width = max(5, len(str(counts.max())) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * (w + 1) + "".join(f"{j:>{width}}" for j in range(n))]
    lines += [f"{label[i]:{side}{w}} " + "".join(f"{v:>{width}}" for v in counts[i])
              for i in range(n)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from distnn.checkpoint import CheckpointError, network, read_checkpoint
    from distnn.comm import world
    from distnn.data import DataError, describe, read_shard
    from distnn.samples import Shard

    comm = world()
    parser = argparse.ArgumentParser(
        prog="python -m distnn.evaluate",
        description="Evaluate a trained checkpoint on the test set of an HDF5 data file.",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by python -m distnn.train")
    parser.add_argument("--data", help="HDF5 data file (default: the one the run trained on)")
    parser.add_argument("--show", type=int, default=0, metavar="N",
                        help="print the first N test images as ASCII art with label and prediction")
    args = parser.parse_args(argv)
    if args.show < 0:
        parser.error(f"--show must be >= 0, got {args.show}")
    try:
        ckpt = read_checkpoint(args.checkpoint)
        net = network(ckpt, args.checkpoint)
        data = args.data or ckpt["config"].get("data")
        if not isinstance(data, str) or not data:
            raise CheckpointError(f"{args.checkpoint}: corrupt checkpoint: it names no data "
                                  "file (give one with --data)")
        info = describe(data)
        columns, classes = matching(ckpt["data"], info, data)
        outputs = "classes" if info["task"] == "classification" else "targets"
        n_features = info["n_features"] if columns is None else len(columns)
        if n_features != net.sizes[0] or info["n_outputs"] != net.sizes[-1] \
                or (info["task"] == "regression") != (net.cost.name == "linear"):
            raise DataError(
                f"{data} has {info['n_features']} features and {info['n_outputs']} {outputs} "
                f"({info['task']}); the network expects {net.sizes[0]} and {net.sizes[-1]} "
                f"({'regression' if net.cost.name == 'linear' else 'classification'})"
            )
        features, targets = read_shard(data, "test", comm.rank, comm.size)
    except (CheckpointError, DataError) as err:
        if comm.rank == 0:
            print(f"distnn.evaluate: error: {err}", file=sys.stderr)
        return 2
    if columns is not None:
        features = features[:, columns]
    if classes is not None:
        targets = classes[targets]
    if ckpt["data"] is not None:  # a table: its rows read as the training rows were
        info = {**info, "feature_scaling": ckpt["data"]["feature_scaling"],
                "scaling": ckpt["scaling"], "names": ckpt["data"].get("names", {})}
    shard = Shard.scaled(features, targets, net.dtype, info)
    if info["task"] == "regression":
        _, line = test_scores(comm, net, shard, "regression", net.sizes[-1], info["scaling"])
        if comm.rank == 0:
            print(line.removeprefix("final "))
        return 0
    counts = confusion_over_ranks(comm, net, shard.x, shard.y, net.sizes[-1])
    if comm.rank == 0:
        _print_classes(counts, args.show, data, net, info)
    return 0


def matching(trained: dict | None, info: dict,
             data: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """How a data file's test rows map onto a checkpoint's table, where both name them:
    the file's columns that hold the model's features, in its order, and each of the
    file's class numbers as the model's. None where there is nothing to map: no names
    on either side (then by position), or the same order already."""
    if not trained:
        return None, None
    names, theirs = trained.get("names", {}), info["names"]
    # Every feature the model reads must be in the file; every class in the file, the model's.
    columns = _positions(names.get("features"), theirs.get("features"),
                         f"{data} has no feature {{}}, which the model was trained on")
    classes = _positions(theirs.get("classes"), names.get("classes"),
                         f"{data} holds class {{}}, which the model never saw")
    return columns, classes


def _positions(wanted: list[str] | None, given: list[str] | None,
               missing: str) -> np.ndarray | None:
    """Where each of ``wanted`` stands in ``given`` (None if either is absent, or they
    are the same); a DataError, ``missing`` naming those not there."""
    if not wanted or not given or wanted == given:
        return None
    absent = [name for name in wanted if name not in given]
    if absent:
        raise DataError(missing.format(", ".join(map(repr, absent[:8]))))
    return np.array([given.index(name) for name in wanted])


def _pictures(rows: np.ndarray, info: dict, dtype: np.dtype) -> np.ndarray:
    """Stored image rows as greyscale pictures (m, h, w) in [0, 1]: uint8 pixels / 255, as
    the network reads them; other images each stretched from its darkest pixel to its
    brightest (their standardized values are not brightness); several channels, their
    mean."""
    *_, h, w = info["image_shape"]
    images = rows.reshape(len(rows), -1, h, w).astype(dtype).mean(axis=1)  # over channels
    if info["feature_scaling"] == "divide_by_255":
        return images / 255
    low = images.min(axis=(1, 2), keepdims=True)
    return (images - low) / np.maximum(images.max(axis=(1, 2), keepdims=True) - low, 1e-30)


def _print_classes(counts: np.ndarray, show: int, data: str, net: Network, info: dict) -> None:
    """The report of a classifier, and its first ``show`` test images, when they are images."""
    from distnn.data import read_shard
    from distnn.samples import scale_features

    try:
        print(report(counts, info["names"].get("classes")))
        if show > 0 and info["image_shape"] is not None:
            shown, show_y = read_shard(data, "test", 0, 1)
            shown, show_y = shown[:show], show_y[:show]
            guesses = net.predict(scale_features(shown, net.dtype, info["feature_scaling"],
                                                 info.get("scaling", {})))
            for pixels, label, guess in zip(_pictures(shown, info, net.dtype), show_y,
                                            guesses):
                mark = "right" if label == guess else "WRONG"
                print(f"\nlabel {label}, predicted {guess} ({mark})")
                print("\n".join(ascii_digit(pixels, pixels.shape)))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (``| head``) has what it wanted. Point stdout at /dev/null so
        # that Python's flush at exit does not fail again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
