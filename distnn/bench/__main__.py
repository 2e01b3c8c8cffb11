"""Benchmark distnn's training step: samples/s over nets x batches x ranks x dtypes.

One command runs the whole matrix; it launches the P ranks itself:

    python -m distnn.bench                 # full matrix + peers + reducers (< 15 min)
    python -m distnn.bench --smoke         # one tiny cell at P = 1, 2 (CI, < 30 s)
    python -m distnn.bench --sizes 784,100,10 --batches 128 --ranks 1 2 --dtypes float32
    python -m distnn.bench --sizes 1x28x28,conv20x5,pool2,conv40x5,pool2,100,10 \
        --batches 128 --ranks 1 2 --dtypes float32   # a conv net's spec (distnn.architecture)
    python -m distnn.bench --alphabeta     # allreduce alpha/beta fit + multi-node projection
    python -m distnn.bench --commits       # a commit's cost (--commit-every) beside the step
    python -m distnn.bench --stream        # rows streamed from the file against rows held
    python -m distnn.bench --alphabeta --launcher "mpiexec -hosts a:1,b:1" --link-gbps 10
                                           # ... also across two hosts, beside the model

Writes ``results.md`` (the table), ``results.json`` (every round) and
``scaling.png`` (needs matplotlib) to ``--out`` (default bench-results/).
The matrix's nets are MLPs with the seed's sigmoid and quadratic cost; beside
them, the conv row: Nielsen's chapter 6 network (ReLU, cross-entropy) at batch
128, float32, each P (``--no-conv`` leaves it out). Peers (``pip install -e
'.[bench]'``: torch==2.13.0, matplotlib): PyTorch in one process and DDP over
gloo with the same net, batch and P; and the seed's per-sample loop on the
seed's recipe.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from distnn import architecture
from distnn.bench import report
from distnn.bench.matrix import Config, run
from distnn.config import parse_layers
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text


def _sizes(text: str) -> list[int | str]:
    """An MLP's sizes (784,100,10) or a conv net's spec (1x28x28,conv20x5,pool2,100,10)."""
    try:
        return architecture.check(parse_layers(text))
    except architecture.SpecError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m distnn.bench", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", "--quick", action="store_true",
                      help="tiny: [784,30,10], batch 10, float32, P=1,2, few steps")
    mode.add_argument("--alphabeta", action="store_true",
                      help="fit allreduce time = alpha + beta*bytes; project to many nodes")
    mode.add_argument("--stream", action="store_true",
                      help="train on a 536 MB file with its rows held and streamed, in turn: "
                           "what streaming costs, the reader's MB/s and the disk's (file "
                           "written under --out)")
    mode.add_argument("--commits", action="store_true",
                      help="time a checkpoint write beside the step: the cost of --commit-every "
                           "(checkpoints written under --out)")
    parser.add_argument("--sizes", type=_sizes, nargs="+", metavar="N,N,...",
                        help="nets: MLP sizes or conv specs, as --layers of distnn.train "
                             "(default 784,30,10 784,100,10 784,800,10)")
    parser.add_argument("--batches", type=int, nargs="+",
                        help="global batches (default 10 128 1024)")
    parser.add_argument("--ranks", type=int, nargs="+", help="values of P (default 1 2 4)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"])
    parser.add_argument("--out", default="bench-results", help="output directory")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                        help="PyTorch and per-sample-loop peers (default: on, off with --smoke)")
    parser.add_argument("--reducers", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the target cell with --reduce allreduce at P > 1, "
                             "beside the default auto (shm on one node) (default: on, off "
                             "with --smoke)")
    parser.add_argument("--conv", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the conv row: Nielsen's conv net (1x28x28,conv20x5,"
                             "pool2,conv40x5,pool2,100,10) at batch 128, float32, each P "
                             "(default: on, off with --smoke)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved rounds; medians kept (default 3)")
    parser.add_argument("--launcher", metavar="CMD",
                        help="with --alphabeta: also measure across two hosts, launched by "
                             "CMD -n 2 ...")
    parser.add_argument("--link-gbps", type=float, metavar="G",
                        help="with --alphabeta --launcher: the link's calibrated rate, for the "
                             "model's check")
    parser.add_argument("--budget", type=float,
                        help="timed seconds per cell per round (default 0.6)")
    return parser.parse_args(argv)


def config(args: argparse.Namespace) -> Config:
    cfg = Config(out=args.out)
    if args.smoke:
        cfg = Config(
            out=args.out,
            sizes=[[784, 30, 10]],
            batches=[10],
            ranks=[1, 2],
            dtypes=["float32"],
            peers=False,
            reducers=False,
            conv=False,
            rounds=1,
            budget=0.1,
            repeats=3,
            seed_budget=0.2,
        )
    for name in ("sizes", "batches", "ranks", "dtypes", "peers", "reducers", "conv", "rounds",
                 "budget"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if min(cfg.ranks) < 1 or cfg.rounds < 1 or cfg.budget <= 0:
        raise SystemExit("error: --ranks and --rounds must be >= 1 and --budget > 0")
    return cfg


def main(argv: Sequence[str] | None = None) -> None:
    try:
        _main(parse_args(argv))
    except WriteFailed as err:  # a full disk, say: one line, no traceback
        print(f"distnn.bench: error: {err}; {err.remedy} and run it again, or give --out "
              "another place", file=sys.stderr)
        sys.exit(EXIT_IOERR)


def _main(args: argparse.Namespace) -> None:
    if shutil.which("mpirun") is None:
        raise SystemExit("error: no mpirun on PATH; pip install -e '.[mpich]' (or load your MPI)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.alphabeta:
        from distnn.bench import alphabeta

        extra = ["--launcher", args.launcher] if args.launcher else []
        extra += ["--link-gbps", str(args.link_gbps)] if args.link_gbps else []
        extra += ["--rounds", str(args.rounds)] if args.rounds else []
        alphabeta.main(["--out", str(out), *extra])
        return
    if args.stream:
        from distnn.bench import stream

        stream.main(["--out", str(out), *(["--ranks", *map(str, args.ranks)] if args.ranks
                                          else []),
                     *(["--rounds", str(args.rounds)] if args.rounds else [])])
        return
    if args.commits:
        from distnn.bench import commit

        commit.main(["--dir", str(out), *(["--sizes", *map(str, args.sizes[0])]
                                          if args.sizes else [])])
        return
    cfg = config(args)
    t0 = time.perf_counter()
    data = run(cfg)
    text = report.markdown(data)
    print(text)  # first: what a full disk cannot take is still on the terminal
    write_text(out / "results.json", json.dumps(data, indent=1))
    write_text(out / "results.md", text)
    plotted = report.plot(data, str(out / "scaling.png"))
    print(
        f"wrote {out / 'results.md'}, {out / 'results.json'}"
        + (f", {out / 'scaling.png'}" if plotted else " (no plot: pip install matplotlib)")
        + f" in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
