"""launch/local.sh under each MPI: SIGTERM mid-epoch checkpoints, ends every rank, resumes bitwise.

MPICH is the suite's own; Open MPI and Intel MPI run from the environments
that tests/run.sh builds (tests/support/mpi_envs.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.protocol import EXIT_INTERRUPTED
from tests.support.mpi_envs import FLAVOURS, ROOT, mpi_env
from tests.support.synthetic import make_dataset

# Many short steps per epoch, so that the signal lands inside one.
TRAIN = ["--layers", "16,64,4", "--batch-size", "4", "--lr", "0.1", "--warmup-epochs", "0",
         "--schedule", "constant",  # the same rate whatever --epochs the run is given
         "--no-progress"]


def ranks_of(checkpoint: Path) -> list[int]:
    """Processes still running the trainer on this checkpoint."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"distnn.train" in cmdline and str(checkpoint).encode() in cmdline:
            found.append(int(proc.name))
    return found


def local(env: dict, run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(ROOT / "launch" / "local.sh"), "-n", "2", *args],
                            env={**env, "DISTNN_RUN_DIR": str(run_dir)}, cwd=run_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigterm_to_local_sh_checkpoints_mid_epoch_and_resumes_bitwise(tmp_path, flavour):
    env = mpi_env(flavour)
    data = make_dataset(tmp_path / "synthetic.h5", n_train=400)
    args = ["--data", str(data), *TRAIN]
    cut = tmp_path / "cut"
    job = local(env, cut, *args, "--epochs", "1000")
    try:
        for line in job.stdout:  # the ranks are training
            if line.startswith("epoch 2/"):
                break
        else:
            pytest.fail("local.sh ended before training")
        time.sleep(0.2)
        sent = time.monotonic()
        job.send_signal(signal.SIGTERM)  # kill, not a terminal: only the script gets it
        out, _ = job.communicate(timeout=30)
        seconds = time.monotonic() - sent
    finally:
        job.kill()
    checkpoint = cut / "checkpoint.h5"
    assert job.returncode == EXIT_INTERRUPTED, out
    assert seconds < 10, out
    assert "interrupted at epoch" in out and "Error" not in out, out
    assert ranks_of(checkpoint) == [], "a rank outlived the launcher"
    position = read_checkpoint(checkpoint)["position"]
    assert position["step"] > 0, position  # taken mid-epoch
    epochs = str(position["epoch"] + 2)
    resumed = local(env, cut, *args, "--epochs", epochs)
    whole = local(env, tmp_path / "whole", *args, "--epochs", epochs)
    for job in (resumed, whole):
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 0, out
    assert np.array_equal(load_checkpoint(checkpoint).params,
                          load_checkpoint(tmp_path / "whole" / "checkpoint.h5").params)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_plain_mpirun_run_prints_no_error_and_sums_through_shared_memory(tmp_path, flavour):
    """`mpirun -n 2 python -m distnn.train`, as a user types it under each MPI: nothing
    on stdout or stderr that looks like an error (Open MPI's UCX one-sided
    component prints one per rank unless told otherwise: distnn.comm does), and
    the `shm` reducer, whose shared-memory window that component would serve."""
    env = mpi_env(flavour)
    data = make_dataset(tmp_path / "synthetic.h5", n_train=400)
    done = subprocess.run(["mpirun", "-n", "2", env["PYTHON"], "-m", "distnn.train", "--data",
                           str(data), "--checkpoint", str(tmp_path / "c.h5"), "--epochs", "2",
                           *TRAIN], env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "summing by shm" in out, out
    assert "error" not in out.lower() and "warning" not in out.lower(), out
