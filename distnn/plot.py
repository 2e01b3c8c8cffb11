"""Plot a run's metrics: training cost and test accuracy (a regression: test RMSE) per epoch.

    python -m distnn.train --metrics runs/metrics.jsonl
    python -m distnn.plot runs/metrics.jsonl            # writes runs/metrics.png

Needs matplotlib (pip install "distnn[plot]"). A resumed run appends to the
same file; a later record for an epoch replaces an earlier one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, save_figure


def read_epochs(path: Path) -> list[dict]:
    """The per-epoch records of a metrics file, one per epoch, in epoch order."""
    by_epoch: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not a JSON line") from None
        if "epoch" in record and ("test_accuracy" in record or "test_rmse" in record):
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot(records: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a cluster node
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["cost"] for r in records], marker="o")
    left.set(xlabel="epoch", ylabel="training cost (per sample)", yscale="log",
             title="training cost")
    if "test_accuracy" in records[-1]:
        right.plot(epochs, [100 * r["test_accuracy"] for r in records], marker="o", color="C1")
        right.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    else:  # a regression: RMSE in the target's units, a line per target
        rmse = np.array([np.atleast_1d(r["test_rmse"]) for r in records])  # (epochs, targets)
        for k, column in enumerate(rmse.T):
            right.plot(epochs, column, marker="o", color=f"C{k + 1}",
                       label=f"target {k}" if rmse.shape[1] > 1 else None)
        right.set(xlabel="epoch", ylabel="test RMSE (the target's units)", title="test RMSE")
        if rmse.shape[1] > 1:
            right.legend()
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    try:
        save_figure(fig, out, dpi=100)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnn.plot",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("metrics", type=Path, help="JSON-lines file written by --metrics")
    parser.add_argument("-o", "--out", type=Path, help="PNG to write (default: METRICS.png)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.exit(2, "distnn.plot: error: matplotlib is not installed "
                       "(pip install 'distnn[plot]')\n")
    try:
        records = read_epochs(args.metrics)
    except (OSError, ValueError) as err:
        parser.exit(2, f"distnn.plot: error: {err}\n")
    if not records:
        parser.exit(2, f"distnn.plot: error: {args.metrics} has no epoch records\n")
    out = args.out or args.metrics.with_suffix(".png")
    try:
        plot(records, out, title=str(args.metrics))
    except WriteFailed as err:  # a full disk, say
        print(f"distnn.plot: error: {err}; nothing was replaced; {err.remedy}, or give -o "
              "another place", file=sys.stderr)
        return EXIT_IOERR
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
