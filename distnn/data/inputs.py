"""The files a ``python -m distnn.data`` command reads, which its --out must not be.

``distnn.outputs.check_not_input`` compares them with --out before anything is
read: ``import x.csv --out x.csv`` would replace the rows with the table made
from them, and ``prepare --idx DIR --out DIR/train-images-idx3-ubyte`` an IDX
file with the data file.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .errors import DataError
from .idx import FILES, find_file
from .imports import targets_file
from .mnist_pickle import WHEEL


def read_by(args: argparse.Namespace) -> list[tuple[str, Path | str | None]]:
    """(what it is, its path) for each file the command ``args`` names would read."""
    if args.command == "import":
        return [("the source it imports", args.source),
                ("the --targets file it reads", targets_file(Path(args.source), args.targets)),
                ("the --test file it reads", args.test)]
    if args.command == "prepare" and args.idx:
        return [("an IDX file it reads (--idx)", path) for path in _idx_files(Path(args.idx))]
    if args.command == "prepare":
        cache = Path(args.cache) if args.cache else Path(args.out).parent / "cache"
        return [("the MNIST wheel it reads (--cache)", cache / WHEEL)]
    return []  # friedman reads nothing, and info writes nothing


def _idx_files(directory: Path) -> list[Path]:
    """The IDX files prepare would read in ``directory`` (a missing one is refused later)."""
    found = []
    for stem in FILES.values():
        with contextlib.suppress(DataError):
            found.append(find_file(directory, stem))
    return found
