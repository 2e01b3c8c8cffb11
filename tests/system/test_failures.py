"""Whole jobs under mpirun: one rank's failure ends all of them, signals checkpoint.

Serial tests that launch `mpirun -n 2` themselves, because the thing checked is
what mpirun does when a rank raises, dies, or is signalled.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from distnn.checkpoint import read_checkpoint
from tests.support.mpi_envs import FLAVOURS, mpi_env
from tests.support.stopping import stop_after_an_epoch
from tests.support.synthetic import make_dataset

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (pip install mpich)")
FAULTY_TRAIN = Path(__file__).resolve().parents[1] / "support" / "faulty_train.py"
# Long enough that a hung job would be obvious: thousands of steps.
TRAIN = ["--layers", "16,12,4", "--batch-size", "4", "--epochs", "1000", "--no-progress",
         "--warmup-epochs", "0"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "synthetic.h5")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_one_failing_rank_ends_the_job_quickly(mode, flavour, data, tmp_path):
    env = mpi_env(flavour)  # a user's `mpirun` under each MPI
    t0 = time.monotonic()
    result = subprocess.run(
        ["mpirun", "-n", "2", env["PYTHON"], str(FAULTY_TRAIN), mode,
         "--data", str(data), "--checkpoint", str(tmp_path / "c.h5"), *TRAIN],
        capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - t0
    assert result.returncode != 0
    assert elapsed < 30, f"the job took {elapsed:.0f}s to end"
    if mode == "raise":
        assert "injected failure on rank 1" in result.stderr
        assert "rank 1 failed; aborting all ranks" in result.stderr


STALL = 2  # --stall-timeout in the tests below, seconds


def run_fault(mode: str, ranks: int, *args: str,
              then: signal.Signals | None = None) -> tuple[int, float, str]:
    """tests/support/faulty_train.py MODE on ``ranks`` ranks, and once rank 1 says it injects
    the fault, ``then`` (a signal) to mpirun: (status, seconds after the fault, stderr).

    Every wait has a deadline. stderr is read by a thread, because its end comes
    only when every process holding it has closed it (mpirun, its proxies, the
    ranks): one left behind must fail the test with what was said, not hang it.
    """
    job = subprocess.Popen([MPIRUN, "-n", str(ranks), sys.executable,
                            str(FAULTY_TRAIN), mode, *args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # one group: all of it can be killed
    lines: list[str] = []
    faulted = threading.Event()

    def read() -> None:
        for line in job.stderr:
            lines.append(line)
            if line.startswith("fault:"):
                faulted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    try:
        if not faulted.wait(timeout=60):
            raise AssertionError("rank 1 never reached its fault:\n" + "".join(lines))
        t0 = time.monotonic()
        if then is not None:
            job.send_signal(then)
        try:
            job.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("mpirun did not end within 60 s of the fault:\n"
                                 + "".join(lines)) from None
        elapsed = time.monotonic() - t0
        reader.join(timeout=10)
        if reader.is_alive():
            raise AssertionError("mpirun ended, but a process it started still holds its "
                                 "stderr 10 s later:\n" + "".join(lines))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)  # whatever is left of the job
        job.wait()
    return job.returncode, elapsed, "".join(lines)


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
@pytest.mark.parametrize("mode", ["sleep", "stop"])
def test_a_stalled_rank_ends_the_job_and_is_named(mode, reduce, ranks, data, tmp_path):
    """Rank 1 never finishes its 5th step (sleep), or stands still (SIGSTOP): the
    others, waiting in their collective, end the job within the timeout + 10 s,
    and say which rank they waited for and why."""
    status, elapsed, err = run_fault(mode, ranks, "--data", str(data), "--checkpoint",
                                     str(tmp_path / "c.h5"), *TRAIN, "--reduce", reduce,
                                     "--stall-timeout", str(STALL))
    assert status != 0, err
    assert elapsed < STALL + 10, f"the job took {elapsed:.0f} s to end after the stall\n{err}"
    others = ", ".join(str(r) for r in range(ranks) if r != 1)
    why = "does not answer" if mode == "stop" else "is in no collective at epoch 1, step 4"
    assert re.search(rf"distnn.train: stalled: rank\(s\) {others} waited \d+ s in \S+.* at "
                     rf"epoch 1, step 4 \(--stall-timeout {STALL}\); rank 1 on \S+ {why}", err), err


@pytest.mark.parametrize("mode", ["sleep", "stop"])
def test_sigterm_during_a_stall_checkpoints_and_ends_the_job(mode, data, tmp_path):
    """The batch system's SIGTERM reaches no rank that waits in MPI; the stall
    watch sees it, and after its grace (half the stall timeout) rank 0 writes the
    checkpoint of the last completed step and ends the job. The run resumes."""
    ckpt, timeout = tmp_path / "c.h5", 8
    status, elapsed, err = run_fault(mode, 2, "--data", str(data), "--checkpoint", str(ckpt),
                                     *TRAIN, "--stall-timeout", str(timeout),
                                     then=signal.SIGTERM)
    assert status != 0, err
    assert elapsed < timeout / 2 + 5, f"took {elapsed:.0f} s\n{err}"  # the grace, not the timeout
    assert "a signal came while the job was stalled" in err, err
    assert f"rank 0 wrote the checkpoint of epoch 1, step 4 to {ckpt}" in err, err
    position = read_checkpoint(ckpt)["position"]
    assert (position["epoch"], position["step"], position["ranks"]) == (0, 4, 2)
    resumed = subprocess.run(  # one epoch in all: --epochs may change on resume
        [sys.executable, "-m", "distnn.train", "--data", str(data), "--checkpoint", str(ckpt),
         "--resume", *(a if a != "1000" else "1" for a in TRAIN)],
        capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {ckpt} at epoch 1, step 4" in resumed.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_mpirun_checkpoints_every_rank_out(sig, data, tmp_path):
    ckpt = tmp_path / "c.h5"
    position = stop_after_an_epoch(
        [MPIRUN, "-n", "2", sys.executable, "-m", "distnn.train", "--data", str(data),
         "--checkpoint", str(ckpt), *TRAIN], sig, ckpt)
    assert position["ranks"] == 2 and (position["epoch"], position["step"]) > (0, 0)


UNSHARE = shutil.which("unshare")


@functools.cache  # once per session, not per parametrized case
def _can_mount_a_tmpfs() -> bool:
    """Root in a mount namespace of its own (a container without CAP_SYS_ADMIN is not)."""
    if UNSHARE is None or os.geteuid() != 0:
        return False
    probe = subprocess.run([UNSHARE, "--mount", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("reduce", ["auto", "shm"])
def test_a_small_dev_shm_gets_an_answer_not_sigbus(reduce, data, tmp_path):
    """A container's /dev/shm (Docker's default is 64 MiB) can be smaller than the
    shared table: 16,50000,4 has 1.05M parameters, so 2 ranks need 17 MiB; give
    them 8. Without the check, the first write past the end killed the job with
    SIGBUS."""
    if not _can_mount_a_tmpfs():  # checked here, not at collection: MPI runs collect too
        pytest.skip("needs root and unshare to give the job a small /dev/shm")
    small_shm = 'mount -t tmpfs -o size=8M tmpfs /dev/shm && exec "$@"'
    result = subprocess.run(
        [UNSHARE, "--mount", "sh", "-c", small_shm, "sh",
         MPIRUN, "-n", "2", sys.executable, "-m", "distnn.train", "--data", str(data),
         "--checkpoint", str(tmp_path / "c.h5"), "--layers", "16,50000,4", "--epochs", "1",
         "--warmup-epochs", "0", "--no-progress", "--reduce", reduce],
        capture_output=True, text=True, timeout=120)
    assert "Bus error" not in result.stdout + result.stderr
    if reduce == "auto":  # falls back, says why, trains
        assert result.returncode == 0, result.stderr
        assert "summing by allreduce" in result.stdout
        assert "not shm: the shared table needs 17 MiB of /dev/shm" in result.stderr
        assert "final test accuracy" in result.stdout
    else:  # asked for: a usage error before any training
        assert result.returncode == 2, result.stderr
        assert "--reduce shm: the shared table needs 17 MiB of /dev/shm" in result.stderr
        assert "epoch 1/1" not in result.stdout
