"""The stall watchdog's census (distnn.census): whom the waiting ranks wait for, and who says so.

No MPI: a stand-in for the watchdog's communicator answers for every rank
from a table of their states, or stays silent for the ranks that are stopped.
"""

from __future__ import annotations

import pytest

from distnn import census

HOSTS = ["h0", "h1", "h2", "h3"]
ALLREDUCE = {"op": "Allreduce", "seconds": 31.0, "where": (0, 5)}


class Side:
    """The watchdog's communicator for rank ``rank``: ``post`` a question to a rank,
    and its answer (its state) is there to ``collect`` at once, unless it is silent."""

    def __init__(self, rank: int, states: dict[int, dict | None]) -> None:
        self.rank, self.size, self.states = rank, len(states), states
        self.inbox: list[tuple[int, dict]] = []
        self.asked: list[int] = []

    def post(self, obj, dest: int, tag: int) -> None:
        assert tag == census.QUERY
        self.asked.append(dest)
        if self.states[dest] is not None:
            self.inbox.append((dest, self.states[dest]))

    def collect(self, tag: int):
        assert tag == census.ANSWER
        return self.inbox.pop(0) if self.inbox else None


class Clock:
    """Time that passes only when the census sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def take_census(me: int, states: dict[int, dict | None], seconds: float = 3.0):
    side, clock, answered = Side(me, states), Clock(), []
    answers = census.ask(side, states[me], seconds, lambda: answered.append(1), clock,
                         clock.sleep)
    return side, clock, answers, census.judge(states[me], answers, side.size)


def test_a_rank_in_no_collective_is_the_one_the_others_wait_for():
    states = {0: ALLREDUCE, 1: ALLREDUCE, 2: {"op": None, "seconds": 40.0, "where": (0, 5)},
              3: ALLREDUCE}
    side, _, answers, verdict = take_census(1, states)
    assert sorted(side.asked) == [0, 2, 3]  # everyone but itself
    assert (verdict.waiting, verdict.elsewhere, verdict.silent) == ([0, 1, 3], [2], [])
    assert verdict.reporter == 0
    line = census.report(verdict, states[1], answers, HOSTS, 30, killed=[])
    assert line.startswith("distnn.train: stalled: rank(s) 0, 1, 3 waited 31 s in Allreduce "
                           "at epoch 1, step 5 (--stall-timeout 30); ")
    assert line.endswith("rank 2 on h2 is in no collective at epoch 1, step 5, for 40 s")
    assert census.event(verdict, HOSTS) == {
        "waiting": [0, 1, 3], "culprits": [{"rank": 2, "host": "h2", "state": "elsewhere"}]}


@pytest.mark.parametrize("other", [
    {"op": "Allreduce", "seconds": 2.0, "where": (0, 6)},  # the same collective, a step on
    {"op": "Barrier", "seconds": 2.0, "where": (0, 5)},  # another collective, the same step
], ids=["out of step", "another collective"])
def test_a_rank_elsewhere_is_not_waiting_with_the_others(other):
    states = {0: ALLREDUCE, 1: other}
    _, _, answers, verdict = take_census(0, states)
    assert (verdict.waiting, verdict.elsewhere) == ([0], [1])
    line = census.report(verdict, ALLREDUCE, answers, HOSTS, 30, killed=[])
    assert f"rank 1 on h1 is in {other['op']} at epoch 1, step {other['where'][1]}" in line


def test_a_silent_rank_is_named_and_the_census_waits_for_it_no_longer_than_allowed():
    states = {0: None, 1: ALLREDUCE, 2: ALLREDUCE, 3: None}  # rank 0 stopped, rank 3 too
    _, clock, answers, verdict = take_census(2, states, seconds=3.0)
    assert sorted(answers) == [1, 2]
    assert 3.0 <= clock.now < 3.1  # asked until the deadline, then judged
    assert (verdict.waiting, verdict.silent, verdict.elsewhere) == ([1, 2], [0, 3], [])
    assert verdict.reporter == 1  # the lowest waiting rank, though rank 0 is rank 0
    line = census.report(verdict, ALLREDUCE, answers, HOSTS, 30, killed=[3])
    assert ("rank 0 on h0 does not answer (stopped, or its host or link is down); "
            "rank 3 on h3 does not answer (stopped, or its host or link is down), and is "
            "killed") in line
    assert census.event(verdict, HOSTS)["culprits"] == [
        {"rank": 0, "host": "h0", "state": "silent"}, {"rank": 3, "host": "h3", "state": "silent"}]


def test_the_census_stops_asking_once_everyone_has_answered_and_answers_meanwhile():
    states = {0: ALLREDUCE, 1: ALLREDUCE}
    side = Side(0, states)
    clock, answered = Clock(), []
    answers = census.ask(side, ALLREDUCE, 3.0, lambda: answered.append(1), clock, clock.sleep)
    assert answers == {0: ALLREDUCE, 1: ALLREDUCE} and clock.now == 0.0
    assert answered  # the others' questions were answered while it asked its own


def test_when_everyone_waits_in_the_same_place_no_rank_is_blamed():
    states = {r: ALLREDUCE for r in range(3)}
    _, _, answers, verdict = take_census(2, states)
    assert (verdict.waiting, verdict.elsewhere, verdict.silent) == ([0, 1, 2], [], [])
    assert census.report(verdict, ALLREDUCE, answers, HOSTS, 30, []).endswith(
        "no rank answered from elsewhere")
    assert census.event(verdict, HOSTS)["culprits"] == []


def test_a_stall_before_the_first_step_says_start_up():
    start = {"op": "bcast", "seconds": 31.0, "where": None}
    states = {0: start, 1: None}
    _, _, answers, verdict = take_census(0, states)
    assert "in bcast at start-up" in census.report(verdict, start, answers, HOSTS, 30, [])
