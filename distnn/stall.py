"""A stall watchdog: a rank that waits too long in a collective names whom for, and ends the job.

A dead rank ends an MPI job at once. A stalled one does not: a rank stopped
(SIGSTOP), cut off (its host's link down), stuck in a hung file system or in
a loop, leaves the others in their collective, spinning at 100% CPU, and even
a batch system's SIGTERM cannot reach them there.

So every rank runs a thread that knows whether its rank is in a collective
(the communicator tells it, ``distnn.comm``) and since when. A rank that has
waited longer than ``timeout`` asks every other rank, on a communicator of the
watchdog's own, where it is:

- a rank in the same collective at the same step is waiting too;
- a rank that answers from outside any collective, or from another one, is
  the one the others wait for: stalled in its step, or out of step;
- a rank that does not answer within ANSWER_SECONDS is stopped or cut off
  (its watchdog thread would have answered otherwise).

The lowest waiting rank prints one line naming them (rank and host), and
what the waiting ranks wait in, then ends the job; the others follow, should
it not manage to. If that rank is rank 0 and its replica holds the state of
the last completed step (it does unless it stalled in the middle of an
update), it first writes that checkpoint: a lost host costs only time.

Under a supervisor (``distnn.elastic``, which sets DISTNN_REPORT_SECONDS), rank
0's watch also prints where the loop is, a ``distnn.position:`` line that often,
for the supervisor to count the steps a lost host makes the run redo.

A signal (a batch system's SIGTERM before its time limit) cannot reach a
rank that waits in MPI either: Python runs its handler only once the main
thread is back. The watch reads the signal from StopRequest's wakeup pipe
instead. If the job has not stopped on its own within a grace of half the
timeout (at most GRACE_SECONDS), it ends the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from distnn.comm import UNWATCHED, Comm, MPIComm, Unwatched, drain_output

QUERY, ANSWER = 1, 2  # message tags on the watchdog's communicator
# Rank 0's report of where the loop is (epoch, step, from 0), for distnn.elastic.
REPORT_VARIABLE, POSITION = "DISTNN_REPORT_SECONDS", "distnn.position:"


# Run by a process of its own: this one is gone by then (MPI_Abort exits).
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


def _kill_later(processes: list[tuple[str, int, int]], seconds: float) -> None:
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


def _stopped(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] in ("T", "t")  # field 3, state


def _process(pid: int | None = None) -> tuple[str, int, int] | None:
    """(host and pid namespace, pid, start time) of a process (this one by default),
    None where /proc cannot tell: with the start time, a pid used again is not taken
    for the process that had it."""
    pid = os.getpid() if pid is None else pid
    fields = _stat(pid)
    try:
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        started = int(fields[19])  # field 22, starttime
    except (OSError, TypeError, ValueError, IndexError):
        return None
    return f"{socket.gethostname()}/{namespace}", pid, started


def watch(comm: Comm, timeout: float) -> Watch | Unwatched:
    """The job's stall watch, told of every collective on ``comm`` and its parts (collective)."""
    if comm.size == 1 or timeout <= 0:
        return UNWATCHED
    comm.watch = Watch(comm, timeout)
    return comm.watch


class Watch:
    """One rank's stall watchdog; ``enter``/``leave`` are the communicator's, ``at`` the loop's."""

    ANSWER_SECONDS = 3.0  # a live rank's watchdog answers well within this (or the timeout)
    LINGER_SECONDS = 1.0  # for the reporter to end the job, before another rank does
    POLL_SECONDS = 0.2
    GRACE_SECONDS = 30.0  # after a signal, for the job to stop by itself (or the timeout)
    EXIT_STATUS = 1
    EXIT_CHECKPOINTED = 75  # distnn.train.EXIT_INTERRUPTED: rerun with --resume
    # MPI_Abort must reach the launcher, which a rank cut off from it cannot: after
    # this long the rank ends by itself.
    ABORT_SECONDS = 4
    SAVE_SECONDS = 60  # for rank 0's checkpoint as the job ends
    KILL_AFTER_SECONDS = 1.0  # the silent ranks on this host die this long after the abort

    def __init__(self, comm: MPIComm, timeout: float) -> None:
        self.timeout = timeout
        self.side = comm.dup()  # collective, like everything here but the thread
        # Who each rank is: its host, and the process (for _kill_silent).
        self.hosts, self.processes = zip(*self.side.allgather(
            (self.side.hostname(), _process())))
        self.op: str | None = None  # the collective this rank is in, if any
        self.since = time.monotonic()
        self.where: tuple[int, int, float] | None = None  # (epoch, step, epoch's cost so far)
        self.consistent = False  # this replica holds the state at ``where``
        self.signalled: float | None = None  # when a stop signal (SIGTERM, SIGINT, SIGUSR1) came
        self._signals: int | None = None  # StopRequest's wakeup pipe
        self._save: Callable[[tuple[int, int, float]], None] | None = None
        self._path = ""
        self.killed: list[int] = []  # ranks on this host that _abort ends too
        every = float(os.environ.get(REPORT_VARIABLE) or 0) if self.side.rank == 0 else 0.0
        self._report_every, self._next_report = every, time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distnn-stall-watch", daemon=True)
        self._thread.start()

    def enter(self, op: str) -> None:
        self.op, self.since = op, time.monotonic()

    def leave(self) -> None:
        self.op, self.since = None, time.monotonic()

    def at(self, epoch: int, step: int, epoch_cost: float) -> None:
        """The loop starts a step: the replica holds the state of the steps before it."""
        self.where, self.consistent = (epoch, step, epoch_cost), True

    def updating(self) -> None:
        """The loop updates the replica: until the next step, it is no state to save."""
        self.consistent = False

    def keep(self, save: Callable[[tuple[int, int, float]], None], path: str) -> None:
        """On rank 0: how to write the checkpoint of ``where`` (to ``path``) as a stall ends
        the job."""
        self._save, self._path = save, path

    def listen(self, signals: int | None) -> None:
        """Read signals from this non-blocking pipe (``signal.set_wakeup_fd``'s)."""
        self._signals = signals

    def close(self) -> None:
        """Stop the thread and free its communicator (collective: every rank, or none)."""
        self._done.set()
        self._thread.join()
        self.side.free()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        grace = min(self.GRACE_SECONDS, self.timeout / 2)
        while not self._done.wait(self.POLL_SECONDS):
            self._answer()
            now = time.monotonic()
            if self.op is not None and now - self.since > self.timeout:
                self._census()
            if self._report_every and now >= self._next_report and self.where is not None:
                self._next_report = now + self._report_every
                sys.stdout.write(f"{POSITION} {self.where[0]} {self.where[1]}\n")
                sys.stdout.flush()
            if self.signalled is None and self._signal_came():
                self.signalled = now
            if (self.signalled is not None and now - self.signalled > grace
                    and self.op is not None and self.since < self.signalled):
                self._end_on_signal()

    def _signal_came(self) -> bool:
        if self._signals is None:
            return False
        try:
            return bool(os.read(self._signals, 64))
        except (BlockingIOError, OSError):
            return False

    def _end_on_signal(self) -> None:
        """A signal, and the job still waits in the collective it was in: end it now."""
        where = self._step(self.where)
        if self.side.rank != 0:  # rank 0 saves and ends the job; if it cannot, this rank does
            self._linger(self.ANSWER_SECONDS + self.LINGER_SECONDS)
            print(f"distnn.train: rank {self.side.rank}: a signal came while the job was stalled "
                  f"at {where}, and rank 0 did not end it: ending it", file=sys.stderr, flush=True)
            self._abort(self.EXIT_STATUS)
        self._end(f"distnn.train: a signal came while the job was stalled in {self.op} at "
                  f"{where}")

    def _end(self, why: str) -> None:
        """Say why the job ends, and end it; on rank 0 write the checkpoint first, if it can."""
        status, did = self.EXIT_STATUS, "no checkpoint written"
        if self._save is not None and self.consistent:
            signal.alarm(self.SAVE_SECONDS)  # a hung file system must not keep the job
            try:
                self._save(self.where)
                status, did = self.EXIT_CHECKPOINTED, (
                    f"rank 0 wrote the checkpoint of {self._step(self.where)} to {self._path} "
                    "(continue with --resume)")
            except Exception as err:  # the job ends anyway: say why there is no checkpoint
                did = f"rank 0 could not write the checkpoint ({err})"
        elif self._save is not None:
            did = "no checkpoint written: rank 0 was in the middle of an update"
        print(f"{why}; {did}; ending the job", file=sys.stderr, flush=True)
        self._abort(status)

    def _abort(self, status: int) -> None:
        # The kernel's alarm, not a Python timer: a thread blocked in MPI_Abort may
        # hold the GIL. Nothing in distnn handles SIGALRM, so it ends the process.
        signal.alarm(self.ABORT_SECONDS)
        drain_output()  # what this rank said is out before the launcher ends the job
        if not self.killed:  # no census (a signal ended the job): the stopped ones
            self.killed = self._silent_here()
        if self.killed:  # after the abort: a launcher that sees a rank killed first reports 9
            _kill_later([self.processes[rank] for rank in self.killed], self.KILL_AFTER_SECONDS)
        self.side.abort(status)

    def _linger(self, seconds: float) -> None:
        """Answer the others' questions for a while (the job may end meanwhile)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._answer()
            time.sleep(0.05)

    @staticmethod
    def _step(where: tuple[int, int, float] | None) -> str:
        return "start-up" if where is None else f"epoch {where[0] + 1}, step {where[1]}"

    def _state(self) -> dict[str, Any]:
        where = self.where and self.where[:2]
        return {"op": self.op, "seconds": time.monotonic() - self.since, "where": where}

    def _answer(self) -> None:
        while (query := self.side.collect(QUERY)) is not None:
            self.side.post(self._state(), query[0], ANSWER)

    def _census(self) -> None:
        """Ask everyone where they are; the lowest waiting rank reports and ends the job."""
        # From here on this rank ends, whatever MPI does with messages to ranks it
        # cannot reach: the kernel's alarm (SIGALRM, which nothing handles) sees to it.
        signal.alarm(int(self.ANSWER_SECONDS + self.LINGER_SECONDS) + self.ABORT_SECONDS)
        me = self.side.rank
        mine = self._state()
        for rank in range(self.side.size):
            if rank != me:
                self.side.post("where?", rank, QUERY)
        answers = {me: mine}
        deadline = time.monotonic() + min(self.ANSWER_SECONDS, max(1.0, self.timeout))
        while len(answers) < self.side.size and time.monotonic() < deadline:
            self._answer()  # the others ask too
            got = self.side.collect(ANSWER)
            if got is None:
                time.sleep(0.01)
            else:
                answers[got[0]] = got[1]
        waiting = [r for r, a in answers.items()
                   if (a["op"], a["where"]) == (mine["op"], mine["where"])]
        self.killed = self._silent_here(answers)
        if me != min(waiting):  # the reporter ends the job; should it fail to, this rank does
            signal.alarm(int(self.LINGER_SECONDS) + self.ABORT_SECONDS)
            self._linger(self.LINGER_SECONDS)
            self._abort(self.EXIT_STATUS)
        self._end(self.report(mine, answers, waiting))

    def _silent_here(self, answers: dict[int, dict[str, Any]] | None = None) -> list[int]:
        """The ranks on this host that did not answer (or, without a census, that are
        stopped), for ``_abort`` to have killed.

        A stopped rank (SIGSTOP) takes no signal but SIGKILL, and an MPI launcher
        that misses the abort (MPICH's does, now and then) would wait for it
        for ever. The job is ending: the rank that ends it ends these too, once
        sure each pid is still that rank's process.
        """
        mine = _process()
        here = [rank for rank, process in enumerate(self.processes)
                if rank != self.side.rank and mine is not None and process is not None
                and process[0] == mine[0] and _process(process[1]) == process]
        if answers is not None:
            return [rank for rank in here if rank not in answers]
        return [rank for rank in here if _stopped(self.processes[rank][1])]

    def report(self, mine: dict[str, Any], answers: dict[int, dict[str, Any]],
               waiting: list[int]) -> str:
        """The line that names the stalled ranks."""
        step = self._step
        culprits = []
        for rank in range(self.side.size):
            who = f"rank {rank} on {self.hosts[rank]}"
            if rank not in answers:
                culprits.append(f"{who} does not answer (stopped, or its host or link is down)"
                                + (", and is killed" if rank in self.killed else ""))
            elif rank not in waiting:
                a = answers[rank]
                doing = f"is in {a['op']}" if a["op"] else "is in no collective"
                culprits.append(f"{who} {doing} at {step(a['where'])}, for {a['seconds']:.0f} s")
        ranks = ", ".join(map(str, sorted(waiting)))
        return (f"distnn.train: stalled: rank(s) {ranks} waited {mine['seconds']:.0f} s in "
                f"{mine['op']} at {step(mine['where'])} (--stall-timeout {self.timeout:g}); "
                + "; ".join(culprits or ["no rank answered from elsewhere"]))
