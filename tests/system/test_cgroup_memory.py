"""A job in a memory cgroup whose limit is below its training rows, with no --memory-budget:
it streams, finishes, exits 0, and the kernel's OOM killer kills nothing in the cgroup.
(With the budget from MemAvailable alone, the same job holds its rows and is killed.)

Needs root and the cgroup v1 memory controller (CI's machine); the full-size check, 2
ranks in 450 MiB on 0.62 GB of MNIST, is ``python -m distnn.bench.cgroup``."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from distnn.bench.cgroup import memory_cgroup, own_v1_memory_cgroup, run_in
from tests.system.test_stream_memory import pixels

MiB = 1 << 20

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="makes a memory cgroup: needs root"),
    pytest.mark.skipif(own_v1_memory_cgroup() is None,
                       reason="needs the cgroup v1 memory controller, writable"),
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (pip install mpich)"),
    pytest.mark.skipif(os.environ.get("PMI_SIZE", "1") != "1",
                       reason="launches its own mpirun; run it without mpirun"),
]


def test_two_ranks_whose_rows_exceed_their_cgroup_stream_them_and_are_not_killed(tmp_path):
    data = pixels(tmp_path / "rows.h5", 255_000)  # 200 MB of training rows
    limit = 200 * MiB  # two ranks take some 100 MiB before they read a row
    with memory_cgroup(limit, "distnn-test") as cgroup:
        done = run_in(cgroup, ["mpirun", "-n", "2", sys.executable, "-m", "distnn.train",
                               "--data", str(data), "--layers", "784,32,10", "--epochs", "1",
                               "--partitions", "4", "--window", "1024", "--no-progress",
                               "--commit-every", "0", "--checkpoint", str(tmp_path / "c.h5")],
                      timeout=120)
    assert done["returncode"] == 0 and done["oom_kills"] == 0, done
    assert "2 of 2 rank(s) stream their training rows" in done["stderr"], done["stderr"]
    assert f"available (cgroup {cgroup}: limit 200.0 MiB)" in done["stdout"], done["stdout"]
