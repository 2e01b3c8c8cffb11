"""Starting processes on hosts, and ending them: the launcher's command, process groups,
and Slurm's job steps.

The launcher is a template (``--launcher``): ``{hosts}`` becomes ``a:2,b:2``,
``{ranks}`` their number, ``{nodelist}`` ``a,b``, ``{nodes}`` 2, ``{per_node}`` the
most ranks on one. Every process it starts leads a session of its own, so that
ending it ends its whole process group. Under Slurm the launcher is ``srun``: its
steps run with ``--overlap`` and a name, and are ended with ``scancel``, since a
killed srun leaves its step's tasks running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

DEFAULT_LAUNCHER = "mpiexec -hosts {hosts} -n {ranks}"
STEP, SENTINEL_STEP = "distnn-train", "sentinel"  # names of srun steps, to end them


def default_launcher() -> str:
    """MPICH's mpiexec; inside a Slurm allocation, srun steps that survive a lost node."""
    if not os.environ.get("SLURM_JOB_ID"):
        return DEFAULT_LAUNCHER
    pmi = os.environ.get("SRUN_MPI")
    return ("srun --no-kill --kill-on-bad-exit=0 -N {nodes} -n {ranks} -w {nodelist} "
            "--ntasks-per-node={per_node}" + (f" --mpi={pmi}" if pmi else ""))


def command(template: str, hosts: Mapping[str, int], step: str = STEP) -> list[str]:
    """The launcher's command for one rank per slot of ``hosts``; under srun, a step
    called ``step``."""
    spec = ",".join(f"{h}:{n}" for h, n in hosts.items())
    words = shlex.split(template.format(
        hosts=spec, ranks=sum(hosts.values()), nodelist=",".join(hosts), nodes=len(hosts),
        per_node=max(hosts.values())))
    if is_srun(words):
        # Sentinels run beside the job's step, on its CPUs; and a new job step must not
        # wait for the old one's CPUs, which Slurm keeps until it has given up on the
        # lost node (SlurmdTimeout): its tasks are dead (end).
        words[1:1] = ["--overlap", f"--job-name={step}"]
    return words


def is_srun(words: list[str]) -> bool:
    return Path(words[0]).name == "srun"


def start(words: list[str], env: Mapping[str, str] | None = None,
          quiet: bool = False) -> subprocess.Popen:
    """Start a launcher in a session of its own, its stdout read as text; its stderr is
    ours (or discarded: ``quiet``), never mixed into its stdout."""
    return subprocess.Popen(words, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else None,
                            stdin=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)


def ask_stop(process: subprocess.Popen, signum: int) -> None:
    """Send the launcher's process group ``signum`` (it passes it on to the ranks)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def end(process: subprocess.Popen, step: str = STEP) -> None:
    """End what is left of a launcher and its processes (its srun step's, too)."""
    if is_srun(process.args):
        kill_steps(step)
    kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the launcher's process group. mpiexec's remote processes end with it;
    srun's job step does not (``kill_steps``)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def kill_steps(name: str) -> None:
    """SIGKILL the tasks of this Slurm job's steps called ``name``: a killed srun leaves
    its step's tasks running, and an interrupted one waits for a lost node's."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    listed = subprocess.run(["squeue", "--steps", "--noheader", "--format=%i %j",
                             f"--jobs={job}"], capture_output=True, text=True, timeout=30)
    steps = [line.split()[0] for line in listed.stdout.splitlines()
             if line.strip().partition(" ")[2] == name]
    if steps:
        # slurmctld signals every node at once, but answers only once the lost one has
        # timed out (MessageTimeout, 10 s by default): do not wait for that answer.
        cancel = subprocess.Popen(["scancel", "--signal=KILL", *steps],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cancel.wait(timeout=1)
