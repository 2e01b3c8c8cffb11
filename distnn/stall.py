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
it not manage to.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from distnn.comm import UNWATCHED, Comm, MPIComm, Unwatched

QUERY, ANSWER = 1, 2  # message tags on the watchdog's communicator


def watch(comm: Comm, timeout: float) -> Watch | Unwatched:
    """The job's stall watch, told of every collective on ``comm`` and its parts (collective)."""
    if comm.size == 1 or timeout <= 0:
        return UNWATCHED
    comm.watch = Watch(comm, timeout)
    return comm.watch


class Watch:
    """One rank's stall watchdog; ``enter``/``leave`` are the communicator's, ``at`` the loop's."""

    ANSWER_SECONDS = 5.0  # a live rank's watchdog answers well within this (or the timeout)
    POLL_SECONDS = 0.2
    EXIT_STATUS = 1

    def __init__(self, comm: MPIComm, timeout: float) -> None:
        self.timeout = timeout
        self.side = comm.dup()  # collective, like everything here but the thread
        self.hosts = self.side.allgather(self.side.hostname())
        self.op: str | None = None  # the collective this rank is in, if any
        self.since = time.monotonic()
        self.where: tuple[int, int] | None = None  # (epoch, step), counting from 1 and 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distnn-stall-watch", daemon=True)
        self._thread.start()

    def enter(self, op: str) -> None:
        self.op, self.since = op, time.monotonic()

    def leave(self) -> None:
        self.op, self.since = None, time.monotonic()

    def at(self, epoch: int, step: int) -> None:
        """Where the loop is: what a stall report says the job was doing."""
        self.where = (epoch + 1, step)

    def close(self) -> None:
        """Stop the thread and free its communicator (collective: every rank, or none)."""
        self._done.set()
        self._thread.join()
        self.side.free()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._done.wait(self.POLL_SECONDS):
            self._answer()
            if self.op is not None and time.monotonic() - self.since > self.timeout:
                self._census()

    def _state(self) -> dict[str, Any]:
        return {"op": self.op, "seconds": time.monotonic() - self.since, "where": self.where}

    def _answer(self) -> None:
        while (query := self.side.collect(QUERY)) is not None:
            self.side.post(self._state(), query[0], ANSWER)

    def _census(self) -> None:
        """Ask everyone where they are; the lowest waiting rank reports and ends the job."""
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
        if me == min(waiting):
            print(self.report(mine, answers, waiting), file=sys.stderr, flush=True)
        else:  # the reporter ends the job; should it fail to, this rank does
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                self._answer()
                time.sleep(0.05)
        self.side.abort(self.EXIT_STATUS)

    def report(self, mine: dict[str, Any], answers: dict[int, dict[str, Any]],
               waiting: list[int]) -> str:
        """The line that names the stalled ranks."""
        def step(where: tuple[int, int] | None) -> str:
            return "start-up" if where is None else f"epoch {where[0]}, step {where[1]}"

        culprits = []
        for rank in range(self.side.size):
            who = f"rank {rank} on {self.hosts[rank]}"
            if rank not in answers:
                culprits.append(f"{who} does not answer (stopped, or its host or link is down)")
            elif rank not in waiting:
                a = answers[rank]
                doing = f"is in {a['op']}" if a["op"] else "is in no collective"
                culprits.append(f"{who} {doing} at {step(a['where'])}, for {a['seconds']:.0f} s")
        ranks = ", ".join(map(str, sorted(waiting)))
        return (f"distnn.train: stalled: rank(s) {ranks} waited {mine['seconds']:.0f} s in "
                f"{mine['op']} at {step(mine['where'])} (--stall-timeout {self.timeout:g}); "
                + "; ".join(culprits or ["no rank answered from elsewhere"]) + "; ending the job")
