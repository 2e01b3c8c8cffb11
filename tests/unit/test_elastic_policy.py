"""The elastic supervisor's decisions (distnn.elastic.policy), and what it reads and writes.

Plain pytest: no processes, no MPI, no clock. Each test plays events at
``decide`` with the times in them and checks the action, one rule at a time
(tests/system/test_cluster.py runs the same supervisor across stand-in hosts).
"""

from __future__ import annotations

import dataclasses

import pytest

from distnn.elastic import events, launch
from distnn.elastic.policy import (DONE, JOB_STATUS, JOIN_WHY, JOINED, LOST, SIGNALLED,
                                   STALL_WHY, TOO_FEW, Action, JobEnded, Rules, Seen,
                                   Signalled, Stalled, Start, State, Tick, decide)
from distnn.elastic.records import metrics_beside
from distnn.protocol import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_IOERR, EXIT_OK, EXIT_USAGE,
                             POSITION, STALLED, TRAINING, format_event)

RULES = Rules(min_ranks=1, heartbeat=0.5, lost_after=3.0, rejoin_after=60.0)
AB = {"a": 1, "b": 1}


def started(hosts=AB, rules=RULES, now=0.0) -> State:
    """The state once the job runs on ``hosts``."""
    state, action = decide(State(rules, dict(hosts)), Start(now))
    assert action.launch == hosts
    return state


def alive(now: float, since: float = 0.0) -> Seen:
    """A sentinel started at ``since`` that has just spoken."""
    return Seen(started=since, last=now)


def well(now: float, hosts=AB) -> dict[str, Seen]:
    return {h: alive(now) for h in hosts}


def step(state: State, *events_) -> tuple[State, Action]:
    """Play events in order; the last state and action."""
    action = Action()
    for event in events_:
        state, action = decide(state, event)
    return state, action


# -- starting --------------------------------------------------------------------------

def test_the_run_starts_on_every_host_and_watches_each():
    state, action = decide(State(RULES, {"a": 2, "b": 2}), Start(0.0))
    assert action == Action(watch=("a", "b"), launch={"a": 2, "b": 2})
    assert state.running == {"a": 2, "b": 2} and not state.lost


def test_with_too_few_ranks_to_begin_with_the_run_stops_at_once():
    state, action = decide(State(dataclasses.replace(RULES, min_ranks=3), AB), Start(0.0))
    assert (action.exit, action.why, action.launch) == (EXIT_INTERRUPTED, TOO_FEW, None)


def test_while_every_sentinel_speaks_nothing_happens():
    state = started()
    for now in (0.5, 1.0, 2.9, 10.0):
        state, action = decide(state, Tick(now, well(now)))
        assert action == Action(), now


# -- lost hosts ------------------------------------------------------------------------

def test_a_host_whose_sentinel_ended_is_lost_and_the_job_goes_on_without_it():
    state, action = decide(started(), Tick(5.0, {"a": alive(5.0),
                                                 "b": Seen(0.0, 4.9, ended=-9)}))
    assert action.end_job and action.unwatch == ("b",) and action.launch == {"a": 1}
    assert action.change.kind == LOST and action.change.hosts == ("b",)
    assert action.change.why == "b: its sentinel ended (status -9)"
    assert action.exit is None
    assert state.running == {"a": 1} and state.lost == {"b": 5.0}


def test_a_host_silent_past_lost_after_is_lost_and_not_before():
    state = started()
    quiet = {"a": alive(10.0), "b": Seen(0.0, last=7.0)}
    assert decide(state, Tick(10.0, quiet))[1] == Action()  # silent 3.0 s: not past it
    _, action = decide(state, Tick(10.1, quiet))
    assert action.change.hosts == ("b",) and "no heartbeat for 3.1 s" in action.change.why
    assert action.launch == {"a": 1}


def test_a_sentinel_that_never_spoke_counts_from_its_start():
    state = started()
    mute = {"a": alive(3.0), "b": Seen(started=0.0)}
    assert decide(state, Tick(3.0, mute))[1] == Action()
    assert decide(state, Tick(3.2, mute))[1].change.hosts == ("b",)


def test_a_job_that_ended_as_its_host_was_lost_goes_on_without_it():
    state, action = decide(started(), JobEnded(5.0, 137, {"a": alive(5.0),
                                                          "b": Seen(0.0, 4.9, ended=255)}))
    assert not action.end_job and action.change.hosts == ("b",)
    assert action.launch == {"a": 1} and action.exit is None


# -- a stall named ---------------------------------------------------------------------

@pytest.mark.parametrize("named,host", [("b", "b"), ("b.cluster.example", "b"),
                                        ("b", "b.cluster.example")])
def test_a_host_the_stall_watchdog_names_is_lost_by_any_form_of_its_name(named, host):
    state = started({"a": 1, host: 1})
    state, action = decide(state, Stalled(4.0, (named,)))
    assert action.end_job and action.unwatch == (host,) and action.launch == {"a": 1}
    assert action.change == dataclasses.replace(action.change, kind=LOST, hosts=(host,))
    assert STALL_WHY in action.change.why
    assert state.lost == {host: 4.0}


@pytest.mark.parametrize("named,host", [("c", "b.cluster"), ("bb", "b.cluster"),
                                        ("b2.cluster", "b.cluster"), ("cluster", "b.cluster"),
                                        ("b.other", "b.cluster"), ("bb", "b"), ("b", "bb")])
def test_a_stall_that_names_no_host_of_the_job_loses_none(named, host):
    state, action = decide(started({"a": 1, host: 1}), Stalled(4.0, (named,)))
    assert action == Action() and not state.lost


def test_a_stall_reported_as_the_job_ends_loses_its_host_too():
    """The job has ended (its status another rank's): the stall's host is lost all the same."""
    state, _ = decide(started(), JobEnded(4.0, EXIT_FAILED, well(4.0)))
    state, action = decide(state, Stalled(4.2, ("b",)))
    assert not action.end_job and action.launch == {"a": 1}


# -- hosts joining ---------------------------------------------------------------------

def test_a_host_added_to_the_host_file_is_watched_then_joins_at_a_stop():
    state = started({"a": 1})
    state, action = decide(state, Tick(1.0, well(1.0, {"a": 1}), listed=AB))
    assert action == Action(watch=("b",)) and state.hosts == AB
    seen = {"a": alive(2.0), "b": alive(2.0, since=1.0)}  # b's sentinel: 1 s old
    state, action = decide(state, Tick(2.0, seen, listed=AB))
    assert action == Action()  # not two heartbeats yet
    seen = {"a": alive(2.1), "b": alive(2.1, since=1.0)}
    state, action = decide(state, Tick(2.1, seen, listed=AB))
    assert action == Action(ask_stop=True)
    state, action = decide(state, Tick(2.2, seen, listed=AB))
    assert action == Action()  # asked once
    state, action = decide(state, JobEnded(3.0, EXIT_INTERRUPTED, seen))
    assert action.launch == AB and action.exit is None
    assert action.change == dataclasses.replace(action.change, kind=JOINED, hosts=("b",),
                                                why=JOIN_WHY)
    assert state.running == AB


def test_a_host_added_as_another_is_lost_is_watched_too():
    state = started()
    seen = {"a": alive(5.0), "b": Seen(0.0, 4.9, ended=-9)}
    state, action = decide(state, Tick(5.0, seen, listed={**AB, "c": 2}))
    assert action.watch == ("c",) and action.change.hosts == ("b",)
    assert action.launch == {"a": 1} and state.hosts == {**AB, "c": 2}


def test_each_job_is_asked_to_stop_once_for_each_join():
    state = started({"a": 1})
    seen = {"a": alive(2.0), "b": alive(2.0, 0.5)}
    state, action = step(state, Tick(1.0, well(1.0, {"a": 1}), listed=AB),
                         Tick(2.0, seen, listed=AB), JobEnded(2.5, EXIT_INTERRUPTED, seen))
    assert action.launch == AB  # b joined; now c is added and ready
    abc = {**AB, "c": 1}
    seen = {**well(4.0), "c": alive(4.0, 2.6)}
    state, action = step(state, Tick(2.6, well(2.6), listed=abc), Tick(4.0, seen, listed=abc))
    assert action == Action(ask_stop=True)


def test_a_host_file_being_rewritten_changes_nothing():
    state = started({"a": 1})
    state, action = decide(state, Tick(1.0, well(1.0, {"a": 1}), listed=None))
    assert action == Action() and state.hosts == {"a": 1}


def _lost_b(at: float = 10.0) -> State:
    state, action = decide(started(), Tick(at, {"a": alive(at), "b": Seen(0, at, ended=-9)}))
    assert action.change.hosts == ("b",)
    return state


def test_a_lost_host_is_tried_again_after_rejoin_after_and_joins():
    state = _lost_b(10.0)  # its sentinel stopped: none for it now
    state, action = decide(state, Tick(69.9, {"a": alive(69.9)}))
    assert action == Action()  # not yet
    state, action = decide(state, Tick(70.0, {"a": alive(70.0)}))
    assert action == Action(watch=("b",))
    state, action = decide(state, Tick(71.1, {"a": alive(71.1), "b": alive(71.1, 70.0)}))
    assert action == Action(ask_stop=True)
    state, action = decide(state, JobEnded(71.5, EXIT_INTERRUPTED,
                                           {"a": alive(71.5), "b": alive(71.5, 70.0)}))
    assert action.launch == AB and action.change.kind == JOINED
    assert not state.lost and not state.tried


def test_a_lost_host_does_not_join_before_rejoin_after_even_if_it_speaks():
    state = _lost_b(10.0)
    for now in (12.0, 40.0, 69.9):  # a sentinel of b seen speaking, started long ago
        state, action = decide(state, Tick(now, {"a": alive(now), "b": alive(now, 11.0)}))
        assert action == Action(), now
    _, action = decide(state, Tick(70.0, {"a": alive(70.0), "b": alive(70.0, 11.0)}))
    assert action == Action(ask_stop=True)  # --rejoin-after since it was lost


def test_a_flickering_host_stays_out():
    state = _lost_b(10.0)
    state, _ = decide(state, Tick(70.0, {"a": alive(70.0)}))  # tried again
    # Its new sentinel spoke, then ended: not back, and not tried again for a while.
    gone = {"a": alive(71.5), "b": Seen(70.0, 71.4, ended=255)}
    state, action = decide(state, Tick(71.5, gone))
    assert action == Action()
    state, action = decide(state, Tick(129.9, {**gone, "a": alive(129.9)}))
    assert action == Action()
    state, action = decide(state, Tick(130.0, {**gone, "a": alive(130.0)}))
    assert action == Action(watch=("b",))
    # Its sentinel runs, but has been silent longer than --lost-after: still out.
    silent = {"a": alive(140.0), "b": Seen(130.0, last=136.9)}
    assert decide(state, Tick(140.0, silent))[1] == Action()
    # It has not spoken at all: out.
    assert decide(state, Tick(131.5, {"a": alive(131.5), "b": Seen(130.0)}))[1] == Action()


# -- too few ranks ---------------------------------------------------------------------

def test_below_min_ranks_the_run_stops_keeping_the_checkpoint():
    state = started({"a": 2, "b": 2}, dataclasses.replace(RULES, min_ranks=3))
    state, action = decide(state, Tick(5.0, {"a": alive(5.0), "b": Seen(0, 4.0, ended=-9)}))
    assert action.end_job and action.change.hosts == ("b",)
    assert (action.exit, action.why, action.launch) == (EXIT_INTERRUPTED, TOO_FEW, None)
    assert state.running == {"a": 2}


def test_at_min_ranks_the_run_goes_on():
    state = started({"a": 2, "b": 2}, dataclasses.replace(RULES, min_ranks=2))
    _, action = decide(state, Tick(5.0, {"a": alive(5.0), "b": Seen(0, 4.0, ended=-9)}))
    assert action.launch == {"a": 2} and action.exit is None


# -- the job's own end -----------------------------------------------------------------

def test_a_job_that_ends_well_ends_the_run():
    _, action = decide(started(), JobEnded(5.0, EXIT_OK, well(5.0)))
    assert action == Action(exit=EXIT_OK, why=DONE)


@pytest.mark.parametrize("status", [EXIT_INTERRUPTED, EXIT_USAGE, EXIT_IOERR])
def test_a_job_that_stopped_unasked_or_was_refused_ends_the_run_with_its_status(status):
    """75 not asked for, 2 (its settings), 74 (it could not write its checkpoint): a
    relaunch would meet the same, so the run stops at once, with the job's status."""
    _, action = decide(started(), JobEnded(5.0, status, well(5.0)))
    assert action == Action(exit=status, why=JOB_STATUS)


def test_a_job_that_stopped_when_asked_for_a_join_goes_on_with_the_host():
    state = started({"a": 1}, now=0.0)
    seen = {"a": alive(2.0), "b": alive(2.0, 0.5)}
    state, action = step(state, Tick(1.0, well(1.0, {"a": 1}), listed=AB),
                         Tick(2.0, seen, listed=AB))
    assert action.ask_stop
    state, action = decide(state, JobEnded(2.5, EXIT_INTERRUPTED, seen))
    assert action.launch == AB and action.exit is None


def test_a_failed_job_with_no_host_lost_ends_the_run_with_its_status_after_a_wait():
    """Lost-after and a heartbeat: a host's death can end the job before its sentinel."""
    state, action = decide(started(), JobEnded(5.0, EXIT_FAILED, well(5.0)))
    assert action == Action()
    state, action = decide(state, Tick(8.4, well(8.4)))
    assert action == Action()
    _, action = decide(state, Tick(8.5, well(8.5)))
    assert action == Action(exit=EXIT_FAILED, why=JOB_STATUS)


def test_a_failed_job_whose_host_is_found_lost_meanwhile_goes_on():
    state, _ = decide(started(), JobEnded(5.0, EXIT_FAILED, well(5.0)))
    state, action = decide(state, Tick(6.0, {"a": alive(6.0), "b": Seen(0, 5.0, ended=-9)}))
    assert not action.end_job and action.launch == {"a": 1} and action.exit is None
    _, action = decide(state, Tick(20.0, well(20.0, {"a": 1})))
    assert action == Action()  # the new job runs: the old one's status is forgotten


# -- a signal to the supervisor ----------------------------------------------------------

def test_a_signal_is_passed_on_and_the_run_ends_with_the_jobs_status():
    state, action = decide(started(), Signalled(5.0))
    assert action == Action(ask_stop=True)
    _, action = decide(state, JobEnded(6.0, EXIT_INTERRUPTED, well(6.0)))
    assert action == Action(exit=EXIT_INTERRUPTED, why=SIGNALLED)


def test_after_a_signal_nothing_is_launched_again():
    state, _ = decide(started({"a": 1}), Signalled(5.0))
    lost = {"a": Seen(0, 5.0, ended=-9), "b": alive(8.0, 0.0)}
    state, action = decide(state, Tick(8.0, lost, listed=AB))  # lost, and a host to join
    assert action == Action()
    state, action = decide(state, Stalled(8.0, ("a",)))
    assert action == Action()
    _, action = decide(state, JobEnded(9.0, EXIT_FAILED, lost))  # its host lost: still stop
    assert action == Action(exit=EXIT_FAILED, why=SIGNALLED)


def test_a_signal_while_a_failed_job_waits_ends_the_run_at_once():
    state, _ = decide(started(), JobEnded(5.0, EXIT_FAILED, well(5.0)))
    _, action = decide(state, Signalled(5.5))
    assert action == Action(exit=EXIT_FAILED, why=SIGNALLED)


def test_a_signal_while_a_join_is_asked_ends_the_run():
    state = started({"a": 1})
    seen = {"a": alive(2.0), "b": alive(2.0, 0.5)}
    state, action = step(state, Tick(1.0, well(1.0, {"a": 1}), listed=AB),
                         Tick(2.0, seen, listed=AB), Signalled(2.1))
    _, action = decide(state, JobEnded(2.5, EXIT_INTERRUPTED, seen))
    assert action == Action(exit=EXIT_INTERRUPTED, why=SIGNALLED)


def test_decide_takes_only_events():
    with pytest.raises(TypeError):
        decide(started(), "tick")


# -- the trainer's event lines ---------------------------------------------------------

def test_event_lines_are_read_as_facts():
    assert events.hear(format_event(POSITION, epoch=3, step=17)) == ("", events.Position(3, 17))
    assert events.hear(format_event(TRAINING, epoch=2, step=50, resumed=True)) == \
        ("", events.Training(2, 50, True))
    assert events.hear(format_event(TRAINING, epoch=0, step=0, resumed=False))[1].resumed is False
    stalled = format_event(STALLED, waiting=[0, 1], culprits=[
        {"rank": 2, "host": "dnn2", "state": "silent"},
        {"rank": 3, "host": "dnn2", "state": "silent"},
        {"rank": 4, "host": "dnn3.x", "state": "elsewhere"}])
    assert events.hear(stalled) == ("", events.Stall(("dnn2", "dnn3.x"), (0, 1)))


def test_an_event_line_after_a_fragment_of_other_output_is_read_and_the_fragment_kept():
    """As seen through mpiexec: a rank's sentence on stderr, its newline not yet out."""
    line = "distnn.train: stalled: ...; ending the job" + format_event(
        STALLED, waiting=[0], culprits=[{"rank": 1, "host": "dnn2", "state": "silent"}])
    assert events.hear(line) == ("distnn.train: stalled: ...; ending the job\n",
                                 events.Stall(("dnn2",), (0,)))


@pytest.mark.parametrize("line", ["epoch 2/120, cost 0.5\n", "distnn: resuming c.h5 at epoch 3\n",
                                  "distnn.train: stalled: rank(s) 0 waited 3 s; rank 1 on b "
                                  "does not answer\n", "distnn.events are not this\n", ""])
def test_other_lines_are_not_events_and_are_passed_on(line):
    assert events.hear(line) == (line, None)


@pytest.mark.parametrize("line", [
    "distnn.event {not json\n",
    "distnn.event [1, 2]\n",
    format_event("checkpoint", epoch=1),
    format_event(POSITION, epoch=1),
    format_event(POSITION, epoch=True, step=1),
    format_event(POSITION, epoch=-1, step=1),
    format_event(POSITION, epoch="1", step=1),
    format_event(TRAINING, epoch=1, step=1, resumed="yes"),
    format_event(STALLED, waiting=[0], culprits=[{"rank": 1}]),
    format_event(STALLED, waiting=[0], culprits=[{"rank": 1, "host": 7}]),
    format_event(STALLED, waiting=[0], culprits="b"),
])
def test_event_lines_the_supervisor_cannot_use_are_ignored_not_passed_on(line):
    assert events.hear(line) == ("", events.IGNORED)


# -- its metrics file and its launcher -------------------------------------------------

@pytest.mark.parametrize("trainer,ours", [("runs/metrics.jsonl", "runs/metrics.elastic.jsonl"),
                                          ("m.jsonl", "m.elastic.jsonl"), ("m", "m.elastic"),
                                          (None, None), ("", None)])
def test_the_supervisors_metrics_file_is_beside_the_trainers(trainer, ours):
    assert metrics_beside(trainer) == ours


def test_the_launcher_template_names_the_hosts_and_ranks():
    words = launch.command("mpiexec -hosts {hosts} -n {ranks}", {"a": 2, "b": 3})
    assert words == ["mpiexec", "-hosts", "a:2,b:3", "-n", "5"]
    words = launch.command("srun -N {nodes} -n {ranks} -w {nodelist} --ntasks-per-node="
                           "{per_node}", {"a": 2, "b": 3}, step=launch.SENTINEL_STEP)
    assert words == ["srun", "--overlap", f"--job-name={launch.SENTINEL_STEP}", "-N", "2",
                     "-n", "5", "-w", "a,b", "--ntasks-per-node=3"]
