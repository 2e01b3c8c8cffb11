"""The speed of the way in: ``python -m distnn.data import`` on a CSV of a gigabyte, beside
the common readers of the same file.

    python -m distnn.bench.csv_speed                      # 5,000,000 rows (about 1.06 GB)
    python -m distnn.bench.csv_speed --rows 500000 --repeats 1

The file is Friedman's rows as CSV (``distnn.data.friedman.write_csv``: 11
columns of up to 17 significant digits), made once in ``--dir`` and read from
the page cache (it is read once before timing). Timed, each ``--repeats``
times, in MB/s of the file (medians):

- ``distnn import``: the whole command, ``python -m distnn.data import``, in a
  process of its own (its start-up, the three passes, the table written),
  with Arrow's parser where pyarrow is installed, and ``, numpy`` with
  numpy's (``DISTNN_CSV=numpy``: distnn without the arrow extra);
- ``distnn reader``: only the parse, the blocks of ``distnn.data.readers``;
- ``numpy.loadtxt``: numpy's C parser on chunks of 2**20 lines;
- ``pandas.read_csv``: the C engine, in chunks of 2**20 rows (pandas extra);
- ``pyarrow.csv.open_csv``: Arrow's streaming reader (pyarrow extra).

A reader that is not installed is skipped with a note. Peers are benchmark
extras, never dependencies of distnn.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from distnn.bench.matrix import cpu_model
from distnn.data.friedman import write_csv
from distnn.data.readers import open_rows
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

CHUNK = 1 << 20


def _distnn_reader(path: Path) -> int:
    return sum(len(block) for block in open_rows(path).blocks())


def _numpy_parser(read: Callable[[Path], int]) -> Callable[[Path], int]:
    """``read`` with DISTNN_CSV=numpy: distnn without the arrow extra."""
    def forced(path: Path) -> int:
        saved = os.environ.get("DISTNN_CSV")
        os.environ["DISTNN_CSV"] = "numpy"
        try:
            return read(path)
        finally:
            os.environ.pop("DISTNN_CSV")
            if saved is not None:
                os.environ["DISTNN_CSV"] = saved
    return forced


def _loadtxt(path: Path) -> int:
    rows = 0
    with open(path) as f:
        f.readline()
        while lines := list(itertools.islice(f, CHUNK)):
            rows += len(np.loadtxt(lines, delimiter=",", ndmin=2))
    return rows


def _pandas(path: Path) -> int:
    import pandas as pd
    return sum(len(chunk.to_numpy(np.float64)) for chunk in
               pd.read_csv(path, chunksize=CHUNK, engine="c", dtype=np.float64))


def _pyarrow(path: Path) -> int:
    from pyarrow import csv
    rows = 0
    for batch in csv.open_csv(path):
        rows += len(np.column_stack([c.to_numpy() for c in batch.columns]))
    return rows


def _import(path: Path) -> int:
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        subprocess.run([sys.executable, "-m", "distnn.data", "import", str(path), "--task",
                        "regression", "--out", str(Path(work) / "t.h5")], check=True,
                       capture_output=True)
    return 0


READERS: dict[str, tuple[Callable[[Path], int], str | None]] = {
    "distnn import": (_import, None),
    "distnn import, numpy": (_numpy_parser(_import), None),
    "distnn reader": (_distnn_reader, None),
    "distnn reader, numpy": (_numpy_parser(_distnn_reader), None),
    "numpy.loadtxt": (_loadtxt, None),
    "pandas.read_csv": (_pandas, "pandas"),
    "pyarrow.csv.open_csv": (_pyarrow, "pyarrow"),
}


def measure(path: Path, repeats: int) -> dict[str, dict]:
    size = path.stat().st_size / 1e6
    with open(path, "rb") as f:  # into the page cache: the disk is not what is measured
        while f.read(1 << 24):
            pass
    results = {}
    for name, (read, module) in READERS.items():
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                results[name] = {"skipped": f"{module} is not installed"}
                continue
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            read(path)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        results[name] = {"seconds": seconds, "median_s": median, "mb_per_s": size / median}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnn.bench.csv_speed",
                                     description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the CSV")
    parser.add_argument("--dir", default="bench-results/csv", help="where the CSV is made")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each reader")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    path = Path(args.dir) / f"friedman-{args.rows}.csv"
    try:
        return _measure_and_report(args, path)
    except WriteFailed as err:  # a full disk, say: one line, no traceback
        print(f"distnn.bench.csv_speed: error: {err}; {err.remedy}, or give --dir or --json "
              "another place", file=sys.stderr)
        return EXIT_IOERR


def _measure_and_report(args: argparse.Namespace, path: Path) -> int:
    if not path.exists():
        print(f"making {path} ...", file=sys.stderr)
        write_csv(path, args.rows, 0)
    results = measure(path, args.repeats)
    size = path.stat().st_size / 1e6
    base = results["distnn import"]["mb_per_s"]
    print(f"{path}: {size:.0f} MB, {args.rows} rows x 11 columns; {cpu_model()}; "
          f"{time.strftime('%Y-%m-%d')}; medians of {args.repeats}")
    for name, r in results.items():
        if "skipped" in r:
            print(f"  {name:22s} skipped: {r['skipped']}")
        else:
            print(f"  {name:22s} {r['mb_per_s']:7.0f} MB/s  {r['median_s']:7.2f} s  "
                  f"x{r['mb_per_s'] / base:.2f} of distnn import")
    if args.json:
        write_text(args.json, json.dumps({"file": str(path), "mb": size, "rows": args.rows,
                                          "cpu": cpu_model(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
