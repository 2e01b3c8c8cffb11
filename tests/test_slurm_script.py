"""launch/slurm.sbatch's signal forwarding, with stand-ins for Slurm's commands and the launcher.

The real Slurm tests (tests/test_slurm.py) cannot choose what squeue answers at
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

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = """#!/usr/bin/env bash
# srun or mpirun: waits up to 5 s for a signal, as ranks training would.
echo $$ > "$STUB_DIR/launcher.pid"
trap 'echo "launcher got TERM" >> "$STUB_DIR/log"; exit 75' TERM
for _ in $(seq 50); do sleep 0.1; done
exit 0
"""

STUBS = {
    "srun": LAUNCHER,
    "mpirun": LAUNCHER,
    "squeue": '#!/usr/bin/env bash\necho "$STUB_STATE"\n',
    # scancel --signal reaches the steps' tasks: here, the launcher stand-in.
    "scancel": '#!/usr/bin/env bash\necho "scancel $*" >> "$STUB_DIR/log"\n'
               'kill -TERM "$(cat "$STUB_DIR/launcher.pid")"\n',
    "scontrol": '#!/usr/bin/env bash\necho "scontrol $*" >> "$STUB_DIR/log"\n',
}


def run_batch_script(tmp_path: Path, launcher: str, state: str) -> tuple[int, str, str]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
           "STUB_STATE": state, "SLURM_JOB_ID": "7", "LAUNCHER": launcher,
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
    return script.returncode, out, log


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


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_a_cancelled_job_is_signalled_by_slurm_not_twice_by_the_script(tmp_path, launcher):
    status, out, log = run_batch_script(tmp_path, launcher, "CANCELLED")
    assert "job is CANCELLED: Slurm signals the ranks" in out, out
    assert log == "" and status == 0, (out, log)  # nothing forwarded, nothing requeued
