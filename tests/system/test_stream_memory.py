"""A run whose training rows are four times its memory budget streams them, finishes, and
its peak resident memory stays within the budget above that of the same run on a file of
a few rows: measured, run by run, by each process's own high-water mark (Linux's VmHWM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distnn.data.store import SCHEMA_VERSION, write_atomic

MB = 1 << 20
RUN = ["--layers", "784,32,10", "--batch-size", "256", "--epochs", "1", "--partitions", "4",
       "--window", "1024", "--no-progress", "--commit-every", "0"]
# Peak memory of a process as it ends, in bytes: VmHWM, the most its memory ever held
# (getrusage's ru_maxrss would start from the parent's at fork, and keep it across exec).
PEAK = ("import runpy, sys\n"
        "sys.argv = ['distnn.train', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('distnn.train', run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
        "print('peak', int(hwm[0].split()[1]) * 1024)\n")


def pixels(path, n_train: int):
    rng = np.random.default_rng(0)
    split = {n: {"images": rng.integers(0, 256, (n, 784), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n).astype(np.uint8)} for n in (n_train, 1000)}
    attrs = {"schema_version": SCHEMA_VERSION, "source": "random pixels (tests)",
             "source_sha256": "", "image_shape": np.array([28, 28]), "n_classes": 10,
             "shuffle_seed": 0}
    return write_atomic(path, {"train": split[n_train], "test": split[1000]}, attrs)


def peak(data, tmp_path, name: str, *extra: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", PEAK, "--data", str(data), *RUN,
                           "--checkpoint", str(tmp_path / f"{name}-checkpoint.h5"), *extra],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("peak ")[-1]), done.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's VmHWM")
def test_a_run_under_a_budget_far_below_its_rows_stays_within_it(tmp_path):
    big = pixels(tmp_path / "big.h5", 128_000)  # 100 MB of training rows
    small = pixels(tmp_path / "small.h5", 1_024)
    budget = 8 * MB  # streamed: two windows of 4 partitions, 6.4 MB
    base, _ = peak(small, tmp_path, "small")
    streamed, err = peak(big, tmp_path, "streamed", "--memory-budget", str(budget))
    assert "1 of 1 rank(s) stream their training rows" in err
    held, _ = peak(big, tmp_path, "held")
    # here (2026-12-04): 79, 88 and 188 MB; the budget's 8, and 6 for the net and its batch
    assert streamed <= base + budget + 6 * MB, (base, streamed, held)
    assert held >= streamed + 60 * MB, (base, streamed, held)  # holding them costs their size
