"""launch/slurm.sbatch on a real, throwaway, single-node Slurm cluster.

    python -m pytest tests/system/test_slurm.py -v -s      # -s shows the sacct lines

The session fixture starts munged, mariadbd + slurmdbd (for sacct), slurmctld
and slurmd on 127.0.0.1 with tests/slurm/start_slurm.sh, all as root, and
stops them at the end. Needs Debian's packages:

    apt-get install -y slurm-wlm slurmdbd munge mariadb-server

Skipped where they are missing or we are not root. Without slurmdbd or
mariadb the cluster still runs, and job states come from `scontrol show job`
instead of `sacct`. The test is serial: it launches its own 2-rank jobs, so
it is skipped inside an MPI run (pytest --with-mpi, or a world of > 1 rank).

What it checks, with the real trainer on a small synthetic data file:
- a job trains to the end under srun with each MPI (MPICH and Intel MPI with
  --mpi=pmi2, Open MPI with --mpi=pmix), summing by shm: state COMPLETED 0:0
  and the final accuracy line;
- a job whose time limit runs out (--time=1 with --signal=B:TERM@15) gets the
  early SIGTERM, its ranks write the checkpoint, the job requeues itself and
  its second run resumes from that checkpoint; resubmitted under the same
  job name it resumes again (epoch > 0) and completes. With LAUNCHER=srun
  (--mpi=pmi2, which the mpich wheel speaks) under MPICH, and with
  LAUNCHER=mpirun under MPICH, Open MPI and Intel MPI, all at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from distnn.checkpoint import read_checkpoint
from tests.support.slurm_jobs import (FINAL_STATES, SBATCH_SCRIPT, START, STOP, job_env,
                                      job_state, release_requeued, wait, why_not)
from tests.support.synthetic import make_dataset

LAYERS = "784,30,10"


@pytest.fixture(scope="session")
def slurm(request, tmp_path_factory) -> dict[str, str]:
    """A running single-node cluster; returns the environment that reaches it."""
    if request.config.getoption("with_mpi", default=False):
        pytest.skip("serial test: runs in the plain pytest pass, not under --with-mpi")
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # Short path: munge's socket path must fit in 108 bytes.
    state = Path(tmp_path_factory.mktemp("slurm"))
    env = dict(os.environ, DISTNN_SLURM_CPUS="8")
    started = subprocess.run(["bash", str(START), str(state)], env=env, capture_output=True,
                             text=True, timeout=180)
    try:
        assert started.returncode == 0, f"start_slurm.sh failed:\n{started.stdout}{started.stderr}"
        env["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
        env["DISTNN_SLURM_STATE"] = str(state)
        yield env
    finally:
        subprocess.run(["bash", str(STOP), str(state)], timeout=120)


@pytest.fixture(scope="module")
def workdir(slurm, tmp_path_factory) -> Path:
    """Where jobs are submitted from: the data file, then runs/ and the job outputs."""
    path = tmp_path_factory.mktemp("jobs")
    make_dataset(path / "synthetic.h5", n_train=2000, n_test=500, shape=(28, 28),
                 n_classes=10)
    return path


def submit(cwd: Path, env: dict[str, str], options: list[str], train_args: list[str]) -> str:
    """sbatch launch/slurm.sbatch with 2 ranks; returns the job id."""
    out = subprocess.run(
        ["sbatch", "--parsable", "--ntasks-per-node=2", *options, str(SBATCH_SCRIPT),
         "--data", "synthetic.h5", "--layers", LAYERS, *train_args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"sbatch failed: {out.stderr}"
    return out.stdout.strip().split(";")[0]


def output(cwd: Path, job: str) -> str:
    return (cwd / f"distnn-{job}.out").read_text()


@pytest.mark.parametrize("flavour,pmi", [("mpich", "pmi2"), ("openmpi", "pmix"),
                                         ("intel", "pmi2")])
def test_job_trains_to_completion(slurm, workdir, flavour, pmi):
    """srun with the PMI each MPI speaks; both ranks on one node sum by shm."""
    env = job_env(slurm, flavour, LAUNCHER="srun", SRUN_MPI=pmi)
    name = f"complete-{flavour}"
    job = submit(workdir, env, [f"--job-name={name}"], ["--epochs", "3"])
    state, code, _ = wait(env, [job])[job]
    text = output(workdir, job)
    assert (state, code) == ("COMPLETED", "0:0"), text
    assert "2 rank(s), summing by shm (2 ranks on one node)" in text, text
    assert "epoch 3/3" in text, text
    final = re.search(r"final test accuracy: ([\d.]+)% \((\d+)/500\)", text)
    assert final and float(final.group(1)) > 90, text
    assert f"launcher srun ({flavour})" in text, text
    assert (workdir / "runs" / name / "checkpoint.h5").exists()


# (launcher, MPI) of the time-limited jobs: srun with MPICH (pmi2), and each MPI's mpirun.
LIMITED = [("srun", "mpich"), ("mpirun", "mpich"), ("mpirun", "openmpi"), ("mpirun", "intel")]


@pytest.fixture(scope="module")
def interrupted(slurm, workdir) -> dict[tuple[str, str], tuple]:
    """One time-limited job per launcher and MPI, all at once, requeueing themselves.

    --time=1 with --signal=B:TERM@15. slurmctld looks at time limits every
    30 s and sends the signal at the first look at which at most W + 30 s
    are left (W = 15), so the batch shell gets SIGTERM 15-45 s after the
    start, and the time-limit kill would come at 60-90 s: at least 15 s to
    write the checkpoint. (With W >= 30 the signal could come at once.) The
    epochs are far more than fit. All four at once (the cluster declares 8
    CPUs): the time limits run out together, and 8 ranks on 2 cores still take
    well under a second to checkpoint. Once a job has requeued itself, its
    hold is lifted; its second run resumes, and is cancelled: it would train
    (and be time-limited) forever. Returns {(launcher, MPI): (job, env, text)}
    or the reason it was skipped.
    """
    started = {}
    for launcher, flavour in LIMITED:
        try:
            env = job_env(slurm, flavour, LAUNCHER=launcher, SRUN_MPI="pmi2")
        except pytest.skip.Exception as skipped:
            started[launcher, flavour] = str(skipped)
            continue
        job = submit(workdir, env, [f"--job-name=limit-{launcher}-{flavour}", "--time=1",
                                    "--signal=B:TERM@15"],
                     ["--epochs", "1000000", "--batch-size", "10"])
        started[launcher, flavour] = (job, env)
    deadline = time.monotonic() + 150
    done = {}
    for case, (job, env) in ((c, s) for c, s in started.items() if isinstance(s, tuple)):
        out = workdir / f"distnn-{job}.out"
        while "=== requeued job" not in (out.read_text() if out.exists() else ""):
            if job_state(env, job)[0] in FINAL_STATES or time.monotonic() > deadline:
                done[case] = (job, env, out.read_text() if out.exists() else "")
                break
            time.sleep(1)
        else:
            release_requeued(env, job)
            while "(restart 1)" not in out.read_text() or "resuming" not in \
                    out.read_text().split("(restart 1)")[1]:
                assert time.monotonic() < deadline + 60, f"job {job} did not run again"
                time.sleep(0.5)
            subprocess.run(["scancel", job], env=env, check=True, timeout=30)
            wait(env, [job])
            done[case] = (job, env, out.read_text())
    return {case: done.get(case, skipped) for case, skipped in started.items()}


@pytest.mark.parametrize("launcher,flavour", LIMITED)
def test_a_time_limit_checkpoints_requeues_and_resubmission_finishes(workdir, interrupted,
                                                                   launcher, flavour):
    if isinstance(interrupted[launcher, flavour], str):
        pytest.skip(interrupted[launcher, flavour])
    job, env, text = interrupted[launcher, flavour]
    first = text.split("(restart 1)")[0]
    assert f"launcher {launcher} ({flavour})" in first, text
    assert "batch shell got SIGTERM" in first, text
    cut = re.search(r"distnn: interrupted at epoch (\d+), step (\d+): checkpoint written", first)
    assert cut, text
    assert "final test accuracy" not in text, text
    assert f"=== requeued job {job}" in first, text
    # The requeued run (same job, restart 1) resumed where the first stopped.
    name = f"limit-{launcher}-{flavour}"
    assert f"resuming runs/{name}/checkpoint.h5 at epoch {cut.group(1)}, step {cut.group(2)}" \
        in text.split("(restart 1)")[1], text
    epoch = read_checkpoint(workdir / "runs" / name / "checkpoint.h5")["position"]["epoch"]
    assert epoch > 0, "no epoch finished before the time-limit signal"

    # Resubmitted: a new job id, the same name, so the same run directory. Two
    # more epochs (--epochs may change on resume) keep it short.
    again = submit(workdir, env, [f"--job-name={name}", "--time=5"],
                   ["--epochs", str(epoch + 2), "--batch-size", "10"])
    assert again != job
    state, code, _ = wait(env, [again])[again]
    text = output(workdir, again)
    assert (state, code) == ("COMPLETED", "0:0"), text
    resumed = re.search(r"distnn: resuming \S+ at epoch (\d+), step (\d+)", text)
    assert resumed, text
    assert int(resumed.group(1)) - 1 == epoch, text  # the message counts epochs from 1
    assert f"epoch {epoch + 2}/{epoch + 2}" in text, text
    assert f"epoch 1/{epoch + 2}" not in text, text  # did not start over
    assert re.search(r"final test accuracy: [\d.]+%", text), text
