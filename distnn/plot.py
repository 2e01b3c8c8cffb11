"""Plot a run's metrics: training cost and test accuracy (a regression: test RMSE) per epoch,
and where each rank's time went.

    python -m distnn.train --metrics runs/metrics.jsonl
    python -m distnn.plot runs/metrics.jsonl     # writes runs/metrics.png, runs/metrics-ranks.png

The second picture (from the ``ranks`` records, distnn.ranktimes): the parts of
the last epoch's steps, rank by rank, and each rank's own work (compute) in
every epoch, where a straggler stands out.

Needs matplotlib (pip install "distnn[plot]"). A resumed run appends to the
same file; a later record for an epoch replaces an earlier one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from distnn.outputs import OutputError, check_not_input
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


def read_ranks(path: Path) -> list[dict]:
    """The per-epoch ``ranks`` records (each rank's seconds in each part), in epoch order."""
    by_epoch = {}
    for line in path.read_text().splitlines():
        if '"ranks"' in line:
            record = json.loads(line)
            if record.get("event") == "ranks" and "by_rank" in record:
                by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def rank_table(records: list[dict]) -> tuple[list[str], np.ndarray, list[int], np.ndarray]:
    """(parts, seconds (ranks, parts) of the last epoch, epochs, compute (epochs, ranks))."""
    from distnn.ranktimes import COMPUTE, PARTS

    last = records[-1]["by_rank"]
    parts = [p for p in PARTS if any(last.get(p, ()))]  # older records lack some parts
    seconds = np.array([last[p] for p in parts]).T
    compute = np.array([np.sum([r["by_rank"][p] for p in COMPUTE], axis=0) for r in records])
    return parts, seconds, [r["epoch"] for r in records], compute


def plot_ranks(records: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    parts, seconds, epochs, compute = rank_table(records)
    ranks = np.arange(seconds.shape[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.3 * len(ranks) + 3.5))
    start = np.zeros(len(ranks))
    for j, part in enumerate(parts):
        left.barh(ranks, seconds[:, j], left=start, label=part, color=f"C{j}")
        start += seconds[:, j]
    left.set(xlabel="seconds", ylabel="rank", title=f"epoch {epochs[-1]}: each rank's steps")
    left.invert_yaxis()
    # below the bars, not over them
    left.legend(fontsize="small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(ranks) <= 16:
        for r in ranks:
            right.plot(epochs, compute[:, r], marker="o", label=f"rank {r}")
        right.legend(fontsize="small")
    else:  # too many lines to tell apart: the spread, and the slowest
        right.fill_between(epochs, compute.min(axis=1), compute.max(axis=1), alpha=0.3)
        right.plot(epochs, np.median(compute, axis=1), marker="o", label="median rank")
        right.legend(fontsize="small")
    right.set(xlabel="epoch", ylabel="seconds", title="each rank's own work (compute)",
              ylim=(0, None))  # from 0: a straggler stands out, noise does not
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.grid(True, alpha=0.3)
    _save(fig, out, title)


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
    _save(fig, out, title)


def _save(fig, out: Path, title: str) -> None:
    """The figure, titled, to ``out`` (WriteFailed if it cannot be written), then closed."""
    import matplotlib.pyplot as plt

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
    out = args.out or args.metrics.with_suffix(".png")
    by_rank = out.with_name(f"{out.stem}-ranks{out.suffix}")
    try:
        check_not_input([("-o" if args.out else "the picture", out),
                         ("the picture by rank", by_rank)],
                        [("the metrics file it reads", args.metrics)])
        records = read_epochs(args.metrics)
    except (OSError, ValueError, OutputError) as err:
        parser.exit(2, f"distnn.plot: error: {err}\n")
    if not records:
        parser.exit(2, f"distnn.plot: error: {args.metrics} has no epoch records\n")
    ranks = read_ranks(args.metrics)
    try:
        plot(records, out, title=str(args.metrics))
        if ranks:
            plot_ranks(ranks, by_rank, title=str(args.metrics))
    except WriteFailed as err:  # a full disk, say
        print(f"distnn.plot: error: {err}; nothing was replaced; {err.remedy}, or give -o "
              "another place", file=sys.stderr)
        return EXIT_IOERR
    print(out)
    if ranks:
        print(by_rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
