"""What streaming the training rows costs beside holding them (``distnn.data.stream``).

One synthetic file of MNIST-shaped rows (uint8 pixels and a label: 785 bytes a
row), 683,008 rows, 536 MB, in 16 partitions of 42,688 rows (33.5 MB). The
trainer's step (``distnn.step``) on the default network and batch trains
through whole epochs of it with the rows held (read into memory, as the
trainer holds rows that fit its budget) and streamed (a budget of just two
windows of each partition), in turn, in rounds: one ``mpirun -n P`` of this
module per window, P and mode per round; medians. The window is the
trainer's default, or each of ``--windows`` (bytes of rows, as the default is
given). Also reported: the memory a streaming rank holds, the reader's own
speed (bytes over the seconds inside its reads), the time steps waited for a
window, and the file's sequential read speed (after dropping the page cache
where this process may, as root can; else from the cache, and the report says
so). ``--cold`` drops the page cache before every launch (root only), so that
streamed rows come from the disk.

Run: python -m distnn.bench --stream [--ranks 1 2] [--rounds 3] [--out DIR]
     python -m distnn.bench.stream --windows 256K 1M 8M [--cold] [...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from distnn.bench.matrix import launch, log
from distnn.comm import Comm, world
from distnn.data import Partitions, default_window, describe
from distnn.data.store import SCHEMA_VERSION, write_atomic
from distnn.data.stream import Stream, stream_bytes
from distnn.memory import parse_bytes, size
from distnn.network import MLP
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.samples import training_rows
from distnn.step import Recipe, Replica, step
from distnn.writes import write_text

SIZES, BATCH, PARTITIONS, ROWS = [784, 100, 10], 128, 16, 683_008
MODES = ("held", "streamed")


def make_file(path: Path) -> Path:
    """The synthetic file: ROWS rows, in PARTITIONS partitions when read."""
    rows = ROWS
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (rows, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, rows).astype(np.uint8)
    test = {"images": images[:1000], "labels": labels[:1000]}
    attrs = {"schema_version": SCHEMA_VERSION, "source": "synthetic (distnn.bench.stream)",
             "source_sha256": "", "image_shape": np.array([28, 28]), "n_classes": 10,
             "shuffle_seed": 0}
    return write_atomic(path, {"train": {"images": images, "labels": labels}, "test": test},
                        attrs)


def drop_page_cache() -> bool:
    """Empty the page cache (root only); whether it was."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def sequential_read(path: Path) -> tuple[float, bool]:
    """MB/s of reading the file start to end, and whether the page cache was dropped."""
    cold = drop_page_cache()
    nbytes, t0 = 0, time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            nbytes += len(chunk)
    return nbytes / (time.perf_counter() - t0) / 1e6, cold


def time_mode(comm: Comm, path: str, mode: str, epochs: int,
              window: int | None = None) -> dict[str, Any]:
    """Samples/s of ``epochs`` epochs of the trainer's step with the rows held or streamed
    (in windows of ``window`` rows: by default, the trainer's)."""
    info = describe(path)
    order = Partitions(info["train_size"], BATCH, PARTITIONS,
                       window or default_window(info["row_bytes"]))
    streamed = stream_bytes(order, comm.rank, comm.size, info["row_bytes"])
    budget = streamed if mode == "streamed" else 1 << 62
    rows = training_rows(path, comm, np.dtype("float32"), info, order, 0, budget)
    assert isinstance(rows, Stream) == (mode == "streamed")
    net = MLP(SIZES, dtype="float32", seed=0)
    optimizer = SGD(net.params)
    replica = Replica(net, optimizer, make_reducer(comm, net, optimizer))
    recipe = Recipe(BATCH, order.share_of(comm.rank, comm.size))
    comm.barrier()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        batches = order.epoch(0, epoch, comm.rank, comm.size)
        rows.begin(epoch, 0)
        for k in range(order.steps):
            step(replica, recipe, rows, batches[k], epoch, k, 1e-3)
    wall = comm.max_(np.array([time.perf_counter() - t0]))[0]
    replica.reducer.close()
    rows.close()
    mine = np.array([getattr(rows, name, 0.0) for name in ("read_bytes", "read_seconds",
                                                            "waited")], dtype=np.float64)
    read_bytes, read_seconds, waited = comm.allreduce_(mine)
    return {"mode": mode, "P": comm.size, "window": order.window,
            "samples_per_s": epochs * order.steps * BATCH / wall,
            "seconds": wall, "reader_mb_s": read_bytes / read_seconds / 1e6 if read_seconds
            else None, "waited_s": waited / comm.size, "bytes_each": streamed}


def worker(argv: list[str]) -> None:
    """One launch: ``mpirun -n P python -m distnn.bench.stream --spec S --out R``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    comm = world()
    with threadpool_limits(limits=1):
        result = time_mode(comm, spec["file"], spec["mode"], spec["epochs"], spec.get("window"))
    if comm.rank == 0:
        write_text(args.out, json.dumps({"results": [result]}))


def run(ranks: list[int], rounds: int, out: Path, epochs: int = 1,
        windows: list[int | None] | None = None, cold: bool = False) -> dict[str, Any]:
    """Every window, P and mode in turn, ``rounds`` times; the file made first, its speed
    last. ``windows``: rows of a window (None: the trainer's default)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "stream-bench.h5"
    if not path.exists() or describe(path)["train_size"] != ROWS:
        log(f"writing {path}")
        make_file(path)
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        for window in windows or [None]:
            for P in ranks:
                for mode in MODES:
                    spec = {"file": str(path), "mode": mode, "epochs": epochs, "window": window}
                    if cold and not drop_page_cache():
                        raise SystemExit("distnn.bench.stream: --cold drops the page cache, "
                                         "which only root may")
                    rows += launch("distnn.bench.stream", P, spec, out)
                    log(f"round {r + 1}, window {rows[-1]['window']}, P={P}, {mode}: "
                        f"{rows[-1]['samples_per_s']:.0f} samples/s")
    disk, disk_cold = sequential_read(path)
    return {"rows": rows, "disk_mb_s": disk, "disk_cold": disk_cold, "rounds_cold": cold,
            "file_bytes": path.stat().st_size}


def report(data: dict[str, Any]) -> str:
    """The table: per window and P, median samples/s held and streamed, their ratio, the
    memory a streaming rank holds, the reader."""
    lines = ["| window | P | held samples/s | streamed samples/s | streamed / held "
             "| reader MB/s | steps waited (s) | streamed memory a rank |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for window, P in sorted({(row["window"], row["P"]) for row in data["rows"]}):
        of = {mode: [row for row in data["rows"] if (row["window"], row["P"], row["mode"])
                     == (window, P, mode)] for mode in MODES}
        held = statistics.median(row["samples_per_s"] for row in of["held"])
        streamed = statistics.median(row["samples_per_s"] for row in of["streamed"])
        ratios = [s["samples_per_s"] / h["samples_per_s"]
                  for h, s in zip(of["held"], of["streamed"])]
        reader = statistics.median(row["reader_mb_s"] for row in of["streamed"])
        waited = statistics.median(row["waited_s"] for row in of["streamed"])
        lines.append(f"| {window:,} rows ({size(window * 785)}) | {P} | {held:,.0f} "
                     f"| {streamed:,.0f} | {statistics.median(ratios):.3f} "
                     f"({min(ratios):.3f}-{max(ratios):.3f}) | {reader:,.0f} | {waited:.2f} "
                     f"| {size(of['streamed'][0]['bytes_each'])} |")
    lines.append("\nThe rounds read the file " + ("from the disk (the page cache dropped "
                 "before every launch)." if data.get("rounds_cold") else "from the page "
                 "cache where it holds it."))
    how = "cold: page cache dropped" if data["disk_cold"] else "warm: from the page cache"
    lines.append(f"\nThe file: {data['file_bytes'] / 1e6:,.0f} MB; read start to end at "
                 f"{data['disk_mb_s']:,.0f} MB/s ({how}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--spec" in argv:
        worker(argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--windows", nargs="+", metavar="SIZE",
                        help="windows of these bytes of rows (as 1M), each in turn "
                             "(default: the trainer's)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before every launch (root only)")
    args = parser.parse_args(argv)
    windows = [default_window(785, parse_bytes(w)) for w in args.windows or []]
    data = run(args.ranks, args.rounds, args.out, windows=windows or None, cold=args.cold)
    text = report(data)
    print(text)
    write_text(args.out / "stream.json", json.dumps(data, indent=1))
    write_text(args.out / "stream.md", text)


if __name__ == "__main__":
    main()
