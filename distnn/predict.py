"""Predictions from a trained model, on rows it has never seen.

    python -m distnn.predict runs/checkpoint.h5 new_rows.csv --out predictions.csv
    python -m distnn.predict runs/checkpoint.h5 rows.h5 --dataset x --out predictions.npy

INPUT (CSV, Parquet, Feather, .npy, .npz, HDF5: ``distnn.data.readers``) is read a
block of rows at a time, its columns taken by name where both it and the
checkpoint name them (in any order, others ignored), each row scaled as the
model's training data was (its checkpoint keeps the scaling: pixels / 255, or
a table's standardization), and OUT gets,
per row, the class and each class's probability (a classifier; with the
quadratic cost, its output activations in place of probabilities), or the
predicted values in the target's own units (a regression). OUT's suffix picks
its kind: .csv (a header, then a row per input row), .npy (the classes, or the
values), .h5 (datasets ``classes`` and ``probabilities``, or ``values``). It is
written all at once (``distnn.atomic``): a failed run leaves no half file.

From Python: ``distnn.load_model(path).predict(rows)`` does the same on an array.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from distnn.atomic import atomic_path
from distnn.checkpoint import CheckpointError, network, read_checkpoint
from distnn.data.errors import DataError
from distnn.data import csvfile
from distnn.data.readers import open_rows
from distnn.data.rows import Rows, column
from distnn.convnet import Network
from distnn.outputs import OutputError, check_not_input
from distnn.protocol import EXIT_IOERR, EXIT_OK, EXIT_USAGE
from distnn.samples import scale_features
from distnn.writes import WriteFailed, new_hdf5, writing

OUTPUTS = (".csv", ".npy", ".h5")


class Model:
    """A trained network and the scaling of its training data: predictions on raw rows."""

    def __init__(self, net: Network, data: dict[str, Any] | None,
                 scaling: dict[str, np.ndarray]) -> None:
        self.net, self.scaling = net, scaling
        # A checkpoint of images (schema 1) names no table: pixels, divided by 255.
        self.data = data or {"task": "classification", "feature_scaling": "divide_by_255",
                             "n_outputs": net.sizes[-1]}

    @classmethod
    def load(cls, path: str | Path) -> Model:
        ckpt = read_checkpoint(path)  # read and checked once, for the net and its scaling
        return cls(network(ckpt, path), ckpt["data"], ckpt["scaling"])

    @property
    def regression(self) -> bool:
        return self.data["task"] == "regression"

    def _inputs(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.net.sizes[0]:
            raise DataError(f"rows of shape {rows.shape}: the model takes "
                            f"{self.net.sizes[0]} features a row")
        return scale_features(rows, self.net.dtype, self.data["feature_scaling"], self.scaling)

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        """a^L for raw rows (m, n_features): class probabilities, or values in the
        target's units (m, n_outputs), float64."""
        a = self.net.forward(self._inputs(rows)).astype(np.float64)
        if self.regression:
            return a * self.scaling["target_std"] + self.scaling["target_mean"]
        return a

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Classes (m,), or values in the target's units (m, n_outputs)."""
        a = self.outputs(rows)
        return a if self.regression else np.argmax(a, axis=1)


    @property
    def names(self) -> list[str] | None:
        """The names of the classes, or of the targets, where the training data had them."""
        return self.data.get("names", {}).get("targets" if self.regression else "classes")

    @property
    def features(self) -> list[str] | None:
        """The names of the features, in the network's order, where the checkpoint keeps
        them (a table with a header, trained since distnn kept them)."""
        return self.data.get("names", {}).get("features")


def feature_columns(model: Model, rows: Rows, keep: int | None = None) -> tuple[list[int], str]:
    """The columns of ``rows`` that hold the model's features, in the network's order, and
    a note for people ("" if none is due). By name where both the rows file and the
    checkpoint name them: any order, other columns ignored (and named in the note), a
    missing feature a DataError. Else by position: the width must be the model's."""
    n, features = model.net.sizes[0], model.features
    if rows.columns and features:
        where = {name: c for c, name in enumerate(rows.columns)}
        missing = [name for name in features if name not in where]
        if missing:
            raise DataError(f"{rows.path} has no column {_listed(missing)}, which the model "
                            f"was trained on; its columns are {_listed(rows.columns)}")
        use = [where[name] for name in features]
        if keep in use:
            raise DataError(f"--keep {rows.columns[keep]!r} is one of the model's features; "
                            "keep a column it does not read, such as an id")
        other = [name for c, name in enumerate(rows.columns) if c not in use and c != keep]
        ignored = f"; ignored: {_listed(other)}" if other else ""
        moved = use != sorted(use)
        return use, (f"the {n} features taken by name{' (in another order)' * moved}"
                     f"{ignored}") if other or moved else ""
    use = [c for c in range(rows.n_columns) if c != keep]
    if len(use) != n:
        kept = " besides --keep's" if keep is not None else ""
        raise DataError(f"{rows.path} has {len(use)} columns{kept}; the model takes {n} "
                        "features a row")
    note = ""
    if rows.columns and not features:
        note = ("the checkpoint names no features (trained on a file without a header, or "
                "before distnn kept them): the columns are taken in order")
    return use, note


def _listed(names: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _columns(model: Model, keep: str | None = None) -> list[str]:
    k = model.net.sizes[-1]
    kept = [] if keep is None else [keep]
    if model.regression:
        return kept + (model.names or (["y"] if k == 1 else [f"y{j}" for j in range(k)]))
    kind = "p" if model.net.cost.name == "cross_entropy" else "a"
    labels = [f"_{name}" for name in model.names] if model.names else map(str, range(k))
    return kept + ["class", *(kind + label for label in labels)]


def _quoted(texts: Iterable[str]) -> list[str]:
    """Fields as RFC 4180 writes them: in quotes, with quotes doubled, where they need it."""
    return [f'"{t.replace(chr(34), chr(34) * 2)}"' if any(c in t for c in ',"\r\n') else t
            for t in texts]


def _csv_rows(model: Model, a: np.ndarray, kept: np.ndarray | None = None) -> list[str]:
    """The lines of OUT for outputs ``a``: the class (its name, where the model has
    them) and the probabilities, or the values; after the kept column, if any.
    Probabilities are the network's own numbers (float32, say), each written as the
    shortest text that reads back as it; values in the target's units, as float64."""
    values = (a if model.regression else a.astype(model.net.dtype)).astype(str)
    if not model.regression:
        classes = a.argmax(axis=1)
        names = np.array(_quoted(model.names or []), dtype=object)
        label = names[classes] if len(names) else classes.astype(str)
        values = np.column_stack([label, values])
    if kept is not None:
        values = np.column_stack([np.array(_quoted(kept.tolist()), dtype=object), values])
    return [",".join(row) + "\n" for row in values.tolist()]


def write_predictions(model: Model, blocks: Iterator, out: Path, rows: int | None = None,
                      keep: str | None = None) -> int:
    """Predict every block and write OUT (its suffix says how); returns the rows written.
    A .npy needs ``rows`` (the number of input rows) up front. With ``keep`` (a column's
    name), each block is (rows, that column's texts), carried into OUT beside the
    predictions: a CSV's first column, an HDF5 file's dataset ``kept``."""
    kind = out.suffix.lower()
    if kind not in OUTPUTS:
        raise DataError(f"--out {out}: expected a name ending in {', '.join(OUTPUTS)}")
    if keep is not None and kind == ".npy":
        raise DataError(f"--keep: a .npy file holds numbers only; write {out.with_suffix('.csv')}"
                        " or .h5 to carry a column along")
    pairs = ((b, None) for b in blocks) if keep is None else blocks
    written = 0
    with writing(out), atomic_path(out) as tmp:
        if kind == ".csv":
            with open(tmp, "w") as f:
                f.write(",".join(_quoted(_columns(model, keep))) + "\n")
                for block, kept in pairs:
                    f.writelines(_csv_rows(model, model.outputs(block), kept))
                    written += len(block)
        elif kind == ".npy":
            shape = (rows, model.net.sizes[-1]) if model.regression else (rows,)
            array = np.lib.format.open_memmap(tmp, mode="w+", shape=shape,
                                              dtype=np.float64 if model.regression else np.int64)
            for block, _ in pairs:
                array[written:written + len(block)] = model.predict(block)
                written += len(block)
            array.flush()
            del array
        else:
            with new_hdf5(tmp) as f:  # a full disk fails where it is met, not at close
                k = model.net.sizes[-1]
                names = ["values"] if model.regression else ["classes", "probabilities"]
                sets = {name: f.create_dataset(
                    name, (0, k) if name != "classes" else (0,),
                    np.int64 if name == "classes" else np.float64,
                    maxshape=(None, k) if name != "classes" else (None,), chunks=True)
                    for name in names}
                if keep is not None:
                    sets["kept"] = f.create_dataset("kept", (0,), h5py.string_dtype(),
                                                    maxshape=(None,), chunks=True)
                    sets["kept"].attrs["column"] = keep
                for block, kept in pairs:
                    a = model.outputs(block)
                    parts = {"values": a, "probabilities": a, "classes": a.argmax(axis=1),
                             "kept": None if kept is None else kept.astype(object)}
                    for name, ds in sets.items():
                        ds.resize(written + len(block), axis=0)
                        ds[written:] = parts[name]
                    written += len(block)
                if model.names:
                    f.create_dataset("names", data=np.array(model.names, dtype=object),
                                     dtype=h5py.string_dtype())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m distnn.predict", description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by python -m distnn.train")
    parser.add_argument("input", help="rows to predict: .csv (.tsv, .csv.gz), .parquet, "
                                      ".feather, .npy, .npz or .h5")
    parser.add_argument("--out", required=True, help="where the predictions go: .csv, .npy "
                                                     "or .h5")
    parser.add_argument("--dataset", help="the HDF5 dataset of INPUT (if it holds several)")
    parser.add_argument("--key", help="the array of an .npz INPUT (if it holds several)")
    parser.add_argument("--keep", metavar="COLUMN",
                        help="a column of a CSV INPUT (its name, or its number from 1) to carry "
                             "into OUT beside each prediction, such as a sample's id")
    csvfile.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_not_input([("--out", args.out)], [("the checkpoint it reads", args.checkpoint),
                                                ("INPUT, the rows it reads", args.input)])
        model = Model.load(args.checkpoint)
        rows = open_rows(args.input, key=args.key, dataset=args.dataset, header=args.header,
                         fmt=csvfile.from_arguments(args))
        keep = None if args.keep is None else column(args.keep, rows, "for --keep")
        use, note = feature_columns(model, rows, keep)
        if note:
            print(f"distnn.predict: {rows.path}: {note}", file=sys.stderr)
        count = None
        if Path(args.out).suffix.lower() == ".npy":  # its header needs the count first
            count = sum(len(b) for b in rows.blocks(use=use))
        blocks = rows.blocks(text=keep, use=use)
        written = write_predictions(model, blocks, Path(args.out), count,
                                    None if keep is None else
                                    rows.columns[keep] if rows.columns else f"column{keep + 1}")
        if rows.dropped:
            print(f"distnn.predict: {rows.dropped} row(s) with a missing value left out "
                  "(--missing drop)", file=sys.stderr)
    except (CheckpointError, DataError, OutputError) as err:
        print(f"distnn.predict: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WriteFailed as err:
        print(f"distnn.predict: error: {err}; nothing was replaced; {err.remedy}",
              file=sys.stderr)
        return EXIT_IOERR
    print(f"distnn.predict: {written} rows predicted into {args.out}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
