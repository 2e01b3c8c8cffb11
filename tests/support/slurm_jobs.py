"""Helpers for tests that run jobs on a throwaway Slurm cluster (tests/slurm/start_slurm.sh)."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.mpi_envs import mpi_env

REPO = Path(__file__).resolve().parents[2]
SBATCH_SCRIPT = REPO / "launch" / "slurm.sbatch"
START = REPO / "tests" / "slurm" / "start_slurm.sh"
STOP = REPO / "tests" / "slurm" / "stop_slurm.sh"
NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
FINAL_STATES = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def why_not() -> str | None:
    """Why this machine cannot run the test, or None if it can."""
    if sys.platform != "linux":
        return "Slurm test runs on Linux only"
    missing = [cmd for cmd in NEEDED if shutil.which(cmd) is None]
    if missing:
        return (f"Slurm not installed ({', '.join(missing)} missing): "
                "apt-get install -y slurm-wlm slurmdbd munge mariadb-server")
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster runs its daemons as root"
    if any(os.environ.get(v, "1") not in ("", "1") for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return "serial test: not run inside an MPI job"
    return None


def job_env(slurm: dict[str, str], flavour: str = "mpich", **extra: str) -> dict[str, str]:
    """The job's environment (sbatch exports ours): the repo's distnn, and the launcher
    and Python of MPI ``flavour`` (tests/support/mpi_envs.py; skips where it is missing)."""
    return dict(mpi_env(flavour, slurm), **extra)


def job_state(env: dict[str, str], job: str) -> tuple[str, str, list[str]]:
    """(state, exit code, lines) of a job: from sacct when there is accounting."""
    if shutil.which("sacct") and "accounting_storage/slurmdbd" in Path(
            env["SLURM_CONF"]).read_text():
        out = subprocess.run(["sacct", "-j", job, "-o", "JobID,JobName,State,ExitCode", "-n", "-P"],
                             env=env, capture_output=True, text=True, timeout=30).stdout
        lines = out.splitlines()
        for line in lines:
            job_id, _, state, code = line.split("|")
            if job_id == job:
                return state.split()[0], code, lines
        return "", "", lines
    out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True,
                         text=True, timeout=30).stdout
    state = re.search(r"JobState=(\S+)", out)
    code = re.search(r"ExitCode=(\S+)", out)
    return (state.group(1) if state else "", code.group(1) if code else "",
            [out.strip()])


def wait(env: dict[str, str], jobs: list[str], timeout: float = 150) -> dict[str, tuple]:
    """Poll until every job is in a final state; returns {job: (state, exit code, lines)}."""
    deadline = time.monotonic() + timeout
    done: dict[str, tuple] = {}
    while True:
        for job in jobs:
            if job not in done:
                state, code, lines = job_state(env, job)
                if state in FINAL_STATES:
                    done[job] = (state, code, lines)
        if len(done) == len(jobs):
            for job in jobs:
                print(f"\n[job {job}]", *done[job][2], sep="\n  ")
            return done
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *jobs], env=env, timeout=30)
            raise AssertionError(f"jobs {jobs} not finished after {timeout:.0f} s: "
                                 f"{[job_state(env, j)[:2] for j in jobs]}\n{logs(env)}")
        time.sleep(1)


def logs(env: dict[str, str]) -> str:
    log = Path(env["DISTNN_SLURM_STATE"]) / "log" / "slurmctld.log"
    return "slurmctld.log:\n" + "\n".join(log.read_text().splitlines()[-15:])




def _job_steps_alive(job: str) -> bool:
    """Whether any slurmstepd of ``job`` runs on this machine (stand-in hosts included:
    they share its processes)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(f"slurmstepd: [{job}.".encode()):
                return True
        except OSError:  # it has just ended
            pass
    return False


def release_requeued(env: dict[str, str], job: str, timeout: float = 60) -> None:
    """Let a job that requeued itself start again now, not after Slurm's hold.

    Slurm 22.05 holds a requeued job about two minutes before it may start again.
    Not before its first run is over on the nodes (its steps gone, the job
    PENDING: no longer COMPLETING), and not within the second in which the nodes
    revoked its credential: a node compares a launch's credential with that
    revocation in whole seconds, and refused the second run ("Job credential
    revoked") when it came within the same second.
    """
    deadline = time.monotonic() + timeout
    while _job_steps_alive(job) or "JobState=PENDING" not in subprocess.run(
            ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True,
            timeout=30).stdout:
        assert time.monotonic() < deadline, f"job {job}'s first run does not end\n{logs(env)}"
        time.sleep(0.2)
    time.sleep(math.ceil(time.time()) - time.time() + 1)  # into the second after the next
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True,
                   timeout=30)
