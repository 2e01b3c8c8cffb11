"""The import of a gigabyte of Parquet (or Feather): its speed, and its memory at the peak.

    python -m distnn.bench.columnar_speed                 # 11,000,000 rows (about 1.0 GB)
    python -m distnn.bench.columnar_speed --rows 1000000 --repeats 1 --formats parquet

The file holds Friedman's rows (``distnn.data.friedman.blocks``: 11 columns of
float64, x1..x10 and y), written a block at a time in row groups (record
batches) of ``--group-rows``, 2**20 by default, pyarrow's own default for
Parquet: never the whole table in memory. Parquet is compressed with snappy and
Feather with lz4, their writers' defaults. Each file is made in ``--dir``, read
once into the page cache, and then, ``--repeats`` times each, in a process of
its own whose peak resident memory is taken from ``getrusage``:

- ``distnn import``: the whole command, ``python -m distnn.data import FILE
  --task regression`` (start-up, the three passes, the table written);
- ``distnn reader``: only the blocks of ``distnn.data.readers.open_rows``.

Medians of the seconds (MB/s of the file) and of the peaks. The files are
deleted at the end unless ``--keep``. pyarrow is the ``arrow`` extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distnn.bench.matrix import cpu_model
from distnn.data.friedman import N_FEATURES, blocks
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

SUFFIX = {"parquet": ".parquet", "feather": ".feather"}
READER = "import sys; from distnn.data.readers import open_rows; " \
         "print(sum(len(b) for b in open_rows(sys.argv[1]).blocks()))"


def write_file(path: Path, fmt: str, rows: int, group_rows: int) -> None:
    """Friedman's rows (seed 0, the training split) as ``fmt``, ``group_rows`` at a time."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    names = [f"x{j + 1}" for j in range(N_FEATURES)] + ["y"]
    schema = pa.schema([(n, pa.float64()) for n in names])
    tmp = path.with_name(path.name + ".part")
    writer = pq.ParquetWriter(tmp, schema) if fmt == "parquet" else \
        ipc.new_file(tmp, schema, options=ipc.IpcWriteOptions(compression="lz4"))
    with writer:
        pending, held, written = [], 0, 0
        for x, y in blocks(rows, 1.0, 0, 0):
            pending.append(np.hstack([x, y]))
            held += len(x)
            if held >= group_rows or written + held == rows:  # a group, or the last
                group = np.concatenate(pending)
                writer.write_table(pa.table(dict(zip(names, group.T)), schema=schema))
                pending, held, written = [], 0, written + held
    tmp.replace(path)


# A child's peak RSS starts at its parent's peak (Linux carries the larger across fork
# and exec), and this process has just written a gigabyte: each run is started by a
# small launcher of its own, whose children's peak is the run's alone.
LAUNCHER = ("import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(argv: list[str]) -> tuple[float, int]:
    """Seconds and peak resident bytes of a process running ``argv``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{argv[2:4]} failed: {done.stderr[-400:]}")
    return seconds, int(done.stdout) * 1024  # kB on Linux


def measure(path: Path, repeats: int) -> dict[str, dict]:
    with open(path, "rb") as f:  # into the page cache: the disk is not what is measured
        while f.read(1 << 24):
            pass
    size = path.stat().st_size / 1e6
    results = {}
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        runs = {"distnn import": [sys.executable, "-m", "distnn.data", "import", str(path),
                                  "--task", "regression", "--out", str(Path(work) / "t.h5")],
                "distnn reader": [sys.executable, "-c", READER, str(path)]}
        for name, argv in runs.items():
            seconds, peaks = zip(*(timed(argv) for _ in range(repeats)))
            median = statistics.median(seconds)
            results[name] = {"seconds": seconds, "median_s": median, "mb_per_s": size / median,
                             "peak_rss_mb": [p / 1e6 for p in peaks],
                             "median_peak_rss_mb": statistics.median(peaks) / 1e6}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnn.bench.columnar_speed",
                                     description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=11_000_000, help="rows of the file")
    parser.add_argument("--group-rows", type=int, default=1 << 20,
                        help="rows of a Parquet row group or an Arrow record batch")
    parser.add_argument("--formats", nargs="+", choices=sorted(SUFFIX),
                        default=["parquet", "feather"])
    parser.add_argument("--dir", default="bench-results/columnar", help="where files are made")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each")
    parser.add_argument("--keep", action="store_true", help="keep the files made")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("distnn.bench.columnar_speed: error: needs pyarrow: pip install -e '.[arrow]'",
              file=sys.stderr)
        return 1
    try:
        return _measure_and_report(args)
    except WriteFailed as err:  # a full disk, say: one line, no traceback
        print(f"distnn.bench.columnar_speed: error: {err}; {err.remedy}, or give --dir or "
              "--json another place", file=sys.stderr)
        return EXIT_IOERR


def _measure_and_report(args: argparse.Namespace) -> int:
    import pyarrow
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    report = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "rows": args.rows,
              "group_rows": args.group_rows, "pyarrow": pyarrow.__version__, "files": {}}
    print(f"{args.rows} rows x 11 columns, groups of {args.group_rows} rows; {cpu_model()}; "
          f"pyarrow {pyarrow.__version__}; {report['date']}; medians of {args.repeats}")
    for fmt in args.formats:
        path = Path(args.dir) / f"friedman-{args.rows}{SUFFIX[fmt]}"
        try:
            if not path.exists():
                print(f"making {path} ...", file=sys.stderr)
                write_file(path, fmt, args.rows, args.group_rows)
            size = path.stat().st_size / 1e6
            results = measure(path, args.repeats)
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
        report["files"][str(path)] = {"mb": size, "results": results}
        print(f"{path}: {size:.0f} MB")
        for name, r in results.items():
            print(f"  {name:14s} {r['mb_per_s']:6.0f} MB/s  {r['median_s']:6.2f} s  peak RSS "
                  f"{r['median_peak_rss_mb']:5.0f} MB (runs: "
                  f"{', '.join(f'{p:.0f}' for p in r['peak_rss_mb'])})")
    if args.json:
        write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
