"""--trace on a hand-made timeline: a fake clock, a barrier that takes time, laps with known
marks and hosts with known names; the file's events worked out by hand."""

from __future__ import annotations

import json

from distnn.trace import Trace, events


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Comm:
    """Rank ``rank`` of two on ``host``; the other rank, on ``theirs``, gave ``their_spans``.
    Its barrier waits ``waits`` seconds on the clock, for a rank that comes late."""
    size = 2

    def __init__(self, clock: Clock, waits: float, rank: int = 0, host: str = "node0",
                 theirs: str = "node7", their_spans: list | None = None) -> None:
        self.clock, self.waits, self.rank, self.host = clock, waits, rank, host
        self.theirs, self.their_spans = theirs, their_spans or []
        self.barriers = 0

    def barrier(self) -> None:
        self.barriers += 1
        self.clock.now += self.waits

    def hostname(self) -> str:
        return self.host

    def allgather(self, mine):
        other = (self.theirs, self.their_spans)
        return [mine, other] if self.rank == 0 else [other, mine]


class Lap:
    marks: list | None = None


def take_step(trace: Trace, clock: Clock, parts: list[tuple[str, float]], epoch: int, k: int):
    """One step whose parts last the seconds given, one after the other, from the clock's now."""
    lap = Lap()
    trace.before(lap)
    for part, seconds in parts:
        lap.marks.append((part, clock.now, clock.now + seconds))
        clock.now += seconds
    return trace.after(lap, epoch, k)


def test_a_trace_worked_out_by_hand(tmp_path):
    """The run reaches the trace at t = 1000 s; the barrier waits 5 s for the other rank, so
    time 0 is t = 1005. Step 3 of epoch 1: batch 1 s, backprop 2 s, sum 0.5 s (0 to 3.5 s);
    step 4: batch 1 s, backprop 1 s (3.5 to 5.5 s). The other rank, on node7, sent one span."""
    clock, path = Clock(1000.0), tmp_path / "t.json"
    comm = Comm(clock, waits=5.0, their_spans=[("step 3", 0.25, 4.0, {"epoch": 1, "step": 3})])
    trace = Trace(str(path), 2, comm, clock=clock)
    assert take_step(trace, clock, [("batch", 1.0), ("backprop", 2.0), ("sum", 0.5)], 0, 3) \
        is None
    assert trace.active and not path.exists()  # one step of two: nothing written yet
    assert take_step(trace, clock, [("batch", 1.0), ("backprop", 1.0)], 0, 4) is None
    assert not trace.active and comm.barriers == 1  # the clocks met once, before the first

    document = json.loads(path.read_text())
    # the Chrome trace event format's own names: the events, and the unit Perfetto shows
    assert sorted(document) == ["displayTimeUnit", "traceEvents"]
    assert document["displayTimeUnit"] == "ms"
    got = document["traceEvents"]
    us = 1e6

    def span(name, tid, start, end, args=None):
        return {"name": name, "cat": "step" if args else "part", "ph": "X", "pid": 0,
                "tid": tid, "ts": start * us, "dur": (end - start) * us, "args": args or {}}

    assert got == [
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": 0, "args": {"name": "rank 0 on node0"}},
        span("step 3", 0, 0.0, 3.5, {"epoch": 1, "step": 3}),
        span("batch", 0, 0.0, 1.0), span("backprop", 0, 1.0, 3.0), span("sum", 0, 3.0, 3.5),
        span("step 4", 0, 3.5, 5.5, {"epoch": 1, "step": 4}),
        span("batch", 0, 3.5, 4.5), span("backprop", 0, 4.5, 5.5),
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": 1, "args": {"name": "rank 1 on node7"}},
        span("step 3", 1, 0.25, 4.0, {"epoch": 1, "step": 3}),
    ]


def test_every_row_is_named_after_its_own_host():
    gathered = [("node0", []), ("node7", []), ("node7", []), ("gpu-3", [])]
    names = [e["args"]["name"] for e in events(gathered)["traceEvents"] if e["ph"] == "M"]
    assert names == ["rank 0 on node0", "rank 1 on node7", "rank 2 on node7", "rank 3 on gpu-3"]


def test_a_rank_other_than_0_hands_its_spans_over_and_writes_nothing(tmp_path):
    clock, path = Clock(7.0), tmp_path / "t.json"
    comm = Comm(clock, waits=0.0, rank=1, host="node7")
    trace = Trace(str(path), 1, comm, clock=clock)
    assert take_step(trace, clock, [("batch", 0.5)], 1, 0) is None
    assert not path.exists() and not trace.active


def test_no_path_no_trace():
    trace = Trace(None, 100, Comm(Clock(0.0), waits=0.0))
    assert not trace.active
