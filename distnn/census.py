"""The stall watchdog's census: where is every rank, and whom do the waiting ones wait for.

A rank that has waited too long in a collective (``distnn.stall``) asks every
other rank where it is, over the watchdog's own communicator, and judges the
answers:

- a rank in the same collective at the same step is waiting too;
- a rank that answers from outside any collective, or from another one, is
  the one the others wait for: stalled in its step, or out of step;
- a rank that does not answer within the time allowed is stopped or cut off
  (its watchdog thread would have answered otherwise).

The lowest waiting rank reports: one line for people, one event line for a
supervisor (``distnn.protocol``). Everything here but ``ask`` is pure, and
``ask`` needs only a communicator's ``post`` and ``collect``, so the verdicts
are tested with a stand-in communicator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

QUERY, ANSWER = 1, 2  # message tags on the watchdog's communicator

# What a rank answers: {"op": the collective it is in or None, "seconds": for how
# long, "where": (epoch, step) of the step it runs, or None before the first}.
State = dict[str, Any]


def where_text(where: tuple[int, ...] | None) -> str:
    """A step as people count it: epoch from 1, steps done from 0."""
    return "start-up" if where is None else f"epoch {where[0] + 1}, step {where[1]}"


def ask(side: Any, mine: State, seconds: float, answer: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> dict[int, State]:
    """Every rank's state, as far as it answers within ``seconds``: this rank's own,
    and the others' answers to a question posted to each. ``answer`` replies to the
    others' questions meanwhile (they may be asking too)."""
    me = side.rank
    for rank in range(side.size):
        if rank != me:
            side.post("where?", rank, QUERY)
    answers = {me: mine}
    deadline = clock() + seconds
    while len(answers) < side.size and clock() < deadline:
        answer()
        got = side.collect(ANSWER)
        if got is None:
            sleep(0.01)
        else:
            answers[got[0]] = got[1]
    return answers


@dataclass(frozen=True)
class Verdict:
    """What a census found: who waits, who they wait for, and who reports it."""
    waiting: list[int]  # ranks in this rank's collective at its step
    silent: list[int]  # ranks that did not answer
    elsewhere: list[int]  # ranks that answered from another place

    @property
    def reporter(self) -> int:
        """The rank that reports the stall and ends the job: the lowest waiting one."""
        return min(self.waiting)


def judge(mine: State, answers: dict[int, State], size: int) -> Verdict:
    """Sort the ranks by their answers, against this (waiting) rank's own state."""
    waiting = [r for r in sorted(answers)
               if (answers[r]["op"], answers[r]["where"]) == (mine["op"], mine["where"])]
    silent = [r for r in range(size) if r not in answers]
    elsewhere = [r for r in range(size) if r in answers and r not in waiting]
    return Verdict(waiting, silent, elsewhere)


def report(verdict: Verdict, mine: State, answers: dict[int, State], hosts: list[str],
           timeout: float, killed: list[int]) -> str:
    """The line that names the stalled ranks, for people."""
    culprits = []
    for rank in sorted(verdict.silent + verdict.elsewhere):
        who = f"rank {rank} on {hosts[rank]}"
        if rank in verdict.silent:
            culprits.append(f"{who} does not answer (stopped, or its host or link is down)"
                            + (", and is killed" if rank in killed else ""))
        else:
            a = answers[rank]
            doing = f"is in {a['op']}" if a["op"] else "is in no collective"
            culprits.append(f"{who} {doing} at {where_text(a['where'])}, "
                            f"for {a['seconds']:.0f} s")
    ranks = ", ".join(map(str, verdict.waiting))
    return (f"distnn.train: stalled: rank(s) {ranks} waited {mine['seconds']:.0f} s in "
            f"{mine['op']} at {where_text(mine['where'])} (--stall-timeout {timeout:g}); "
            + "; ".join(culprits or ["no rank answered from elsewhere"]))


def event(verdict: Verdict, hosts: list[str]) -> dict[str, Any]:
    """The fields of the ``stalled`` event line (``distnn.protocol``), for a supervisor."""
    culprits = [{"rank": r, "host": hosts[r], "state": "silent" if r in verdict.silent
                 else "elsewhere"} for r in sorted(verdict.silent + verdict.elsewhere)]
    return {"waiting": verdict.waiting, "culprits": culprits}
