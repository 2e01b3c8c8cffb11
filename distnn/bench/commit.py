"""What a commit (``--commit-every``, ``distnn.commits``) costs beside the training step.

A commit is rank 0 writing the checkpoint: the same atomic, fsynced HDF5 file
as after each epoch. Its cost per step is the write's time spread over the
steps between commits; the target is at most 1% of the step's time at the
defaults (the default network and batch, a commit every 10 s). Timed here,
one after the other in interleaved repeats (medians): a checkpoint write of
the network to ``--dir`` (put it on the file system your checkpoints go to:
a cluster's shared one is slower than a local disk), and the training step on
one core, BLAS pinned to 1 thread.

Run: python -m distnn.bench.commit [--sizes 784 256 10] [--batch 128] [--dir runs]
     (python -m distnn.bench --commits)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from distnn.bench.step import make_step, time_per_call
from distnn.checkpoint import save_checkpoint
from distnn.commits import DEFAULT, parse
from distnn.config import Config
from distnn.network import MLP
from distnn.optim import SGD


def run(sizes: Sequence[int], batch: int, directory: Path, repeats: int) -> dict[str, float]:
    """Median seconds of a checkpoint write and of a training step."""
    net = MLP(list(sizes), dtype="float32", seed=0)
    optimizer = SGD(net.params, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.random((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    step = make_step(net, x, y)
    config = Config(layers=list(sizes)).to_dict()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".distnn-bench-") as tmp:
        path = Path(tmp) / "commit.h5"

        def write() -> None:
            save_checkpoint(path, net, optimizer.state_dict(), config,
                            {"epoch": 0, "step": 1, "steps": 2, "epoch_cost": 0.0, "ranks": 1})

        writes, steps = [], []
        write()
        step()
        for _ in range(repeats):
            t0 = time.perf_counter()
            write()
            writes.append(time.perf_counter() - t0)
            steps.append(time_per_call(step, 10))
    return {"write": statistics.median(writes), "step": statistics.median(steps),
            "bytes": 2 * net.params.nbytes}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # MNIST's default network: the trainer's takes its ends from the data file
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, *Config().hidden, 10])
    parser.add_argument("--batch", type=int, default=Config().batch_size)
    parser.add_argument("--dir", type=Path, default=Path("."),
                        help="where the test checkpoints are written (default: here)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1):
        result = run(args.sizes, args.batch, args.dir, args.repeats)
    write, step = result["write"], result["step"]
    print(f"sizes {args.sizes}, batch {args.batch}, float32, one core; checkpoint "
          f"{result['bytes'] / 2**20:.1f} MiB of parameters and velocity to {args.dir}; "
          f"medians of {args.repeats} interleaved repeats")
    print(f"  checkpoint write (atomic, fsynced): {write * 1e6:10.1f} us")
    print(f"  training step:                      {step * 1e6:10.1f} us")
    print("  cost of commits, as a share of the step time:")
    for spec in ("60s", DEFAULT, "1000", "100", "10"):
        steps, seconds = parse(spec)
        between = steps or seconds / step  # steps between two commits
        print(f"    --commit-every {spec:>5}: {100 * write / (between * step):7.3f}%  "
              f"(a commit every {between:,.0f} steps)")


if __name__ == "__main__":
    main()
