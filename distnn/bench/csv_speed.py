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

The readers take turns: each round runs every one once, so that what else the
machine does falls on all of them alike. Each round also runs the import in
this process with its passes timed (``import_table(passes=...)``: parse, stage,
split, shuffle, write, scaling, the wait for the checksum), with each parser;
their medians are printed below the readers'.

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
from distnn.data.imports import Passes, import_table
from distnn.data.readers import open_rows
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

CHUNK = 1 << 20


def _distnn_reader(path: Path) -> int:
    return sum(len(block) for block in open_rows(path).blocks())


def _numpy_parser(read: Callable[[Path], object]) -> Callable[[Path], object]:
    """``read`` with DISTNN_CSV=numpy: distnn without the arrow extra."""
    def forced(path: Path) -> object:
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


def _passes(path: Path) -> dict[str, float]:
    """The seconds of each pass of an import in this process, and in all ("total")."""
    passes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        start = time.perf_counter()
        import_table(path, Path(work) / "t.h5", task="regression", passes=passes)
        passes["total"] = time.perf_counter() - start
    return passes


READERS: dict[str, tuple[Callable[[Path], int], str | None]] = {
    "distnn import": (_import, None),
    "distnn import, numpy": (_numpy_parser(_import), None),
    "distnn reader": (_distnn_reader, None),
    "distnn reader, numpy": (_numpy_parser(_distnn_reader), None),
    "numpy.loadtxt": (_loadtxt, None),
    "pandas.read_csv": (_pandas, "pandas"),
    "pyarrow.csv.open_csv": (_pyarrow, "pyarrow"),
}


PASSES: dict[str, Callable[[Path], object]] = {
    "distnn import": _passes,
    "distnn import, numpy": _numpy_parser(_passes),
}


def measure(path: Path, repeats: int) -> tuple[dict[str, dict], dict[str, dict[str, float]]]:
    """The readers' results by name; the median seconds of each pass of the import, by
    parser. Rounds in turn, each reader once a round."""
    size = path.stat().st_size / 1e6
    with open(path, "rb") as f:  # into the page cache: the disk is not what is measured
        while f.read(1 << 24):
            pass
    results: dict[str, dict] = {}
    for name, (_, module) in READERS.items():
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                results[name] = {"skipped": f"{module} is not installed"}
                continue
        results[name] = {"seconds": []}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PASSES}
    for _ in range(repeats):
        for name, result in results.items():
            if "skipped" not in result:
                start = time.perf_counter()
                READERS[name][0](path)
                result["seconds"].append(time.perf_counter() - start)
        for name, run in PASSES.items():
            runs[name].append(run(path))
    for result in results.values():
        if "skipped" not in result:
            result["median_s"] = statistics.median(result["seconds"])
            result["mb_per_s"] = size / result["median_s"]
    passes = {name: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in rs[0]}
              for name, rs in runs.items()}
    return results, passes


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
    results, passes = measure(path, args.repeats)
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
    print(f"passes of the import in this process, seconds (medians of {args.repeats}):")
    print(f"  {'pass':30s}" + "".join(f"{name.removeprefix('distnn '):>22s}"
                                      for name in passes))
    for key in passes["distnn import"]:
        beside = " (beside the parse)" if key in Passes.CONCURRENT else ""
        print(f"  {key + beside:30s}" + "".join(f"{p.get(key, 0.0):22.2f}"
                                                for p in passes.values()))
    if args.json:
        write_text(args.json, json.dumps({"file": str(path), "mb": size, "rows": args.rows,
                                          "cpu": cpu_model(), "results": results,
                                          "passes": passes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
