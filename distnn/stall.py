"""A stall watchdog: a rank that waits too long in a collective names whom for, and ends the job.

A dead rank ends an MPI job at once. A stalled one does not: a rank stopped
(SIGSTOP), cut off (its host's link down), stuck in a hung file system or in
a loop, leaves the others in their collective, spinning at 100% CPU, and even
a batch system's SIGTERM cannot reach them there.

So every rank runs a thread that knows whether its rank is in a collective
(the communicator tells it, ``distnn.comm``) and since when. A rank that has
waited longer than ``timeout`` takes a census (``distnn.census``): it asks every
other rank, on a communicator of the watchdog's own, where it is, and names
the ranks the waiting ones wait for. The lowest waiting rank prints one line
naming them (rank and host), and the same as an event line for a supervisor
(``distnn.protocol``), then ends the job; the others follow, should it not
manage to. If that rank is rank 0 and its replica holds the state of the last
completed step (it does unless it stalled in the middle of an update), it
first writes that checkpoint: a lost host costs only time.

A signal (a batch system's SIGTERM before its time limit) cannot reach a
rank that waits in MPI either: Python runs its handler only once the main
thread is back. The watch reads the signal from StopRequest's wakeup pipe
instead. If the job has not stopped on its own within a grace of half the
timeout (at most GRACE_SECONDS), it ends the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from distnn import census
from distnn.comm import UNWATCHED, Comm, MPIComm, Unwatched, drain_output
from distnn.processes import alive_here, identity, kill_later, stopped_here
from distnn.protocol import EXIT_FAILED, EXIT_INTERRUPTED, STALLED, emit


def _readable(fd: int | None) -> bool:
    """Whether something came on this non-blocking pipe (a signal, on StopRequest's)."""
    if fd is None:
        return False
    try:
        return bool(os.read(fd, 64))
    except (BlockingIOError, OSError):
        return False


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
    # MPI_Abort must reach the launcher, which a rank cut off from it cannot: after
    # this long the rank ends by itself.
    ABORT_SECONDS = 4
    SAVE_SECONDS = 60  # for rank 0's checkpoint as the job ends
    KILL_AFTER_SECONDS = 1.0  # the silent ranks on this host die this long after the abort

    def __init__(self, comm: MPIComm, timeout: float) -> None:
        self.timeout = timeout
        self.side = comm.dup()  # collective, like everything here but the thread
        # Who each rank is: its host, and its process (for _abort to kill, if silent).
        self.hosts, self.processes = zip(*self.side.allgather(
            (self.side.hostname(), identity())))
        self.op: str | None = None  # the collective this rank is in, if any
        self.since = time.monotonic()
        self.where: tuple[int, int, float] | None = None  # (epoch, step, epoch's cost so far)
        self.consistent = False  # this replica holds the state at ``where``
        self.signalled: float | None = None  # when a stop signal (SIGTERM, SIGINT, SIGUSR1) came
        self._signals: int | None = None  # StopRequest's wakeup pipe
        self._save: Callable[[tuple[int, int, float]], None] | None = None
        self._path = ""
        self.killed: list[int] = []  # ranks on this host that _abort ends too
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
            if self.signalled is None and _readable(self._signals):
                self.signalled = now
            if (self.signalled is not None and now - self.signalled > grace
                    and self.op is not None and self.since < self.signalled):
                self._end_on_signal()

    def _end_on_signal(self) -> None:
        """A signal, and the job still waits in the collective it was in: end it now."""
        where = census.where_text(self.where)
        if self.side.rank != 0:  # rank 0 saves and ends the job; if it cannot, this rank does
            self._linger(self.ANSWER_SECONDS + self.LINGER_SECONDS)
            print(f"distnn.train: rank {self.side.rank}: a signal came while the job was stalled "
                  f"at {where}, and rank 0 did not end it: ending it", file=sys.stderr, flush=True)
            self._abort(EXIT_FAILED)
        self._end(f"distnn.train: a signal came while the job was stalled in {self.op} at "
                  f"{where}")

    def _end(self, why: str, stalled: dict[str, Any] | None = None) -> None:
        """Say why the job ends, and end it; on rank 0 write the checkpoint first, if it can.

        A census's verdict (``stalled``) goes to a supervisor last: it may end the job
        as soon as it reads it.
        """
        status, did = EXIT_FAILED, "no checkpoint written"
        if self._save is not None and self.consistent:
            signal.alarm(self.SAVE_SECONDS)  # a hung file system must not keep the job
            try:
                self._save(self.where)
                status, did = EXIT_INTERRUPTED, (
                    f"rank 0 wrote the checkpoint of {census.where_text(self.where)} to "
                    f"{self._path} (continue with --resume)")
            except Exception as err:  # the job ends anyway: say why there is no checkpoint
                did = f"rank 0 could not write the checkpoint ({err})"
        elif self._save is not None:
            did = "no checkpoint written: rank 0 was in the middle of an update"
        print(f"{why}; {did}; ending the job", file=sys.stderr, flush=True)
        if stalled is not None:
            emit(STALLED, **stalled)
        self._abort(status)

    def _abort(self, status: int) -> None:
        # The kernel's alarm, not a Python timer: a thread blocked in MPI_Abort may
        # hold the GIL. Nothing in distnn handles SIGALRM, so it ends the process.
        signal.alarm(self.ABORT_SECONDS)
        drain_output()  # what this rank said is out before the launcher ends the job
        if not self.killed:  # no census (a signal ended the job): the stopped ones
            self.killed = stopped_here(list(self.processes), self.side.rank)
        if self.killed:  # after the abort: a launcher that sees a rank killed first reports 9
            kill_later([self.processes[rank] for rank in self.killed], self.KILL_AFTER_SECONDS)
        self.side.abort(status)

    def _linger(self, seconds: float) -> None:
        """Answer the others' questions for a while (the job may end meanwhile)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._answer()
            time.sleep(0.05)

    def _state(self) -> census.State:
        where = self.where and self.where[:2]
        return {"op": self.op, "seconds": time.monotonic() - self.since, "where": where}

    def _answer(self) -> None:
        while (query := self.side.collect(census.QUERY)) is not None:
            self.side.post(self._state(), query[0], census.ANSWER)

    def _census(self) -> None:
        """Ask everyone where they are; the lowest waiting rank reports and ends the job."""
        # From here on this rank ends, whatever MPI does with messages to ranks it
        # cannot reach: the kernel's alarm (SIGALRM, which nothing handles) sees to it.
        signal.alarm(int(self.ANSWER_SECONDS + self.LINGER_SECONDS) + self.ABORT_SECONDS)
        mine = self._state()
        answers = census.ask(self.side, mine, min(self.ANSWER_SECONDS, max(1.0, self.timeout)),
                             self._answer)
        verdict = census.judge(mine, answers, self.side.size)
        self.killed = [r for r in alive_here(list(self.processes), self.side.rank)
                       if r in verdict.silent]  # for _abort to end: they would hold the job
        if self.side.rank != verdict.reporter:  # it ends the job; should it fail to, this does
            signal.alarm(int(self.LINGER_SECONDS) + self.ABORT_SECONDS)
            self._linger(self.LINGER_SECONDS)
            self._abort(EXIT_FAILED)
        self._end(census.report(verdict, mine, answers, self.hosts, self.timeout, self.killed),
                  census.event(verdict, self.hosts))
