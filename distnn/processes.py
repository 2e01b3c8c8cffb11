"""Which process is which on this host, and how the stall watchdog ends stopped ones.

A stopped rank (SIGSTOP) takes no signal but SIGKILL, and an MPI launcher that
misses an abort (MPICH's does, now and then) would wait for it for ever. The
rank that ends a stalled job therefore kills the silent ranks on its own host,
once sure each pid is still that rank's process: a process is known by its
host and pid namespace, its pid and its start time, so a pid used again is not
taken for the process that had it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys

Identity = tuple[str, int, int]  # (host and pid namespace, pid, start time)

# Run by a process of its own: the one that starts it is gone by then (MPI_Abort exits).
_KILLER = """
import os, signal, sys, time
time.sleep(float(sys.argv[1]))
for pid, started in zip(sys.argv[2::2], sys.argv[3::2]):
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[19] == started:
                os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""


def kill_later(processes: list[Identity], seconds: float) -> None:
    """SIGKILL these processes ``seconds`` from now, if each is still the one it was."""
    args = [str(x) for _, pid, started in processes for x in (pid, started)]
    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, "-c", _KILLER, str(seconds), *args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def stopped(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] in ("T", "t")  # field 3, state


def identity(pid: int | None = None) -> Identity | None:
    """Who a process is (this one by default), or None where /proc cannot tell."""
    pid = os.getpid() if pid is None else pid
    fields = _stat(pid)
    try:
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        started = int(fields[19])  # field 22, starttime
    except (OSError, TypeError, ValueError, IndexError):
        return None
    return f"{socket.gethostname()}/{namespace}", pid, started


def alive_here(processes: list[Identity | None], me: int) -> list[int]:
    """The ranks (indexes of ``processes``) other than ``me`` that run on this host and
    are still the processes they were."""
    mine = identity()
    return [rank for rank, process in enumerate(processes)
            if rank != me and mine is not None and process is not None
            and process[0] == mine[0] and identity(process[1]) == process]


def stopped_here(processes: list[Identity | None], me: int) -> list[int]:
    """The ranks on this host that are stopped (SIGSTOP): ``alive_here`` and in state T."""
    return [rank for rank in alive_here(processes, me) if stopped(processes[rank][1])]
