"""The test suite's own guard (tests/support/watchdog.py): no failure can leave a run hanging.

Serial tests that run small, made-up test files under `mpirun -n 2 pytest
--with-mpi` (and one under plain pytest) with a time limit of a few seconds,
and check that each run ends in time and says which test and rank failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

MPIRUN = shutil.which("mpirun")
REPO = Path(__file__).resolve().parents[2]
LIMIT = 4  # seconds per test in the runs below
ENDS_WITHIN = LIMIT + 3 + 40  # the limit, the grace for the other ranks, start-up under load

TESTS = '''
import os, subprocess, time
import pytest

mpi = pytest.mark.mpi(min_size=2)


@mpi
def test_fails_on_one_rank_inside_a_collective():
    from mpi4py import MPI
    assert MPI.COMM_WORLD.rank != 1, "rank 1 disagrees"
    MPI.COMM_WORLD.Barrier()  # the others wait here for rank 1, which has left


@mpi
def test_fails_on_one_rank_alone():
    from mpi4py import MPI
    assert MPI.COMM_WORLD.rank != 1, "rank 1 disagrees"


@mpi
def test_passes_after_it():
    from mpi4py import MPI
    MPI.COMM_WORLD.Barrier()
    print("RAN AFTER on rank", MPI.COMM_WORLD.rank)


@mpi
def test_every_rank_stuck():
    from mpi4py import MPI
    if MPI.COMM_WORLD.rank == 0:
        MPI.COMM_WORLD.Barrier()  # the others never come
    else:
        time.sleep(1000)


def test_serial_stuck_with_a_child(tmp_path_factory):
    child = subprocess.Popen(["sleep", "1000"])
    with open(os.environ["CHILD_PID_FILE"], "w") as f:
        f.write(str(child.pid))
    time.sleep(1000)
'''


def run(tmp_path: Path, select: str, mpi: bool) -> tuple[subprocess.CompletedProcess, str]:
    """Run the made-up tests that ``select`` picks; returns the result and all its output.

    Checks that the run failed, and ended in time (a hang here is the bug under test).
    """
    (tmp_path / "test_made_up.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    pytest_args = [sys.executable, "-m", "pytest", "-p", "tests.support.watchdog", "-p",
                   "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), "-k", select,
                   "-s", str(tmp_path / "test_made_up.py")]
    command = [MPIRUN, "-n", "2", *pytest_args, "--with-mpi"] if mpi else pytest_args
    env = dict(os.environ, DISTNN_TEST_TIMEOUT=str(LIMIT), PYTHONPATH=str(REPO),
               CHILD_PID_FILE=str(tmp_path / "child.pid"))
    t0 = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    seconds, out = time.monotonic() - t0, result.stdout + result.stderr
    assert result.returncode != 0, out
    assert seconds < ENDS_WITHIN, f"took {seconds:.0f} s\n{out}"
    return result, out


def launches_mpirun(test):
    test = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (pip install mpich)")(test)
    return pytest.mark.skipif(os.environ.get("PMI_SIZE", "1") != "1",
                              reason="launches its own mpirun")(test)


@launches_mpirun
def test_a_failure_that_leaves_the_others_in_a_collective_ends_the_job(tmp_path):
    _, out = run(tmp_path, "inside_a_collective", mpi=True)
    # The failing rank, its test and its assertion, at once ...
    assert "[rank 1/2] FAILED test_made_up.py::test_fails_on_one_rank_inside_a_collective" in out
    assert "[rank 1/2] E       AssertionError: rank 1 disagrees" in out
    # ... then, when the limit runs out, who waits for whom, and the stuck rank's stack.
    assert "[rank 1/2] TIMEOUT after 4 s" in out and "waiting for rank(s) [0]" in out
    assert "[rank 0/2] TIMEOUT after 4 s in test_made_up.py::" in out
    barrier = TESTS.split("\n").index(
        "    MPI.COMM_WORLD.Barrier()  # the others wait here for rank 1, which has left") + 1
    assert f"line {barrier}, in test_fails_on_one_rank_inside_a_collective" in out, out


@launches_mpirun
def test_a_failure_on_one_rank_alone_is_reported_and_the_run_goes_on(tmp_path):
    result, out = run(tmp_path, "alone or after_it", mpi=True)
    assert "TIMEOUT" not in out, out
    assert "[rank 1/2] E       AssertionError: rank 1 disagrees" in out
    assert out.count("RAN AFTER on rank") == 2  # the next test ran on both ranks
    # Rank 0 passed both tests itself, and still names the failure on rank 1.
    assert "FAILED test_made_up.py::test_fails_on_one_rank_alone on rank(s) [1]" in result.stdout
    assert "2 passed" in result.stdout


@launches_mpirun
def test_a_run_in_which_every_rank_is_stuck_ends_with_every_stack(tmp_path):
    _, out = run(tmp_path, "every_rank_stuck", mpi=True)
    for rank in (0, 1):
        assert f"[rank {rank}/2] TIMEOUT after 4 s in test_made_up.py::test_every_rank_stuck" \
            f" (in the test)" in out, out
    assert out.count(", in test_every_rank_stuck") == 2  # the stacks


def test_a_stuck_serial_test_ends_and_takes_its_children_with_it(tmp_path):
    _, out = run(tmp_path, "serial_stuck", mpi=False)
    assert "[rank 0/1] TIMEOUT after 4 s in test_made_up.py::test_serial_stuck_with_a_child" in out
    child = Path(f"/proc/{(tmp_path / 'child.pid').read_text()}/stat")
    deadline = time.monotonic() + 10  # SIGKILL was sent before the run ended; it lands soon
    while _running(child):
        assert time.monotonic() < deadline, "the stuck test's child process is still running"
        time.sleep(0.05)


def _running(stat: Path) -> bool:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
