"""A timeline of a stretch of the run, every rank's steps part by part, for Perfetto.

``--trace FILE`` records the first ``--trace-steps`` steps (100) that the run
takes, on every rank: each step, and inside it each of its parts (the laps of
``distnn.step``: batch, draws, backprop, wait, sum, update, publish) as a span. When
the stretch is over the ranks hand their spans to rank 0 (one collective),
which writes FILE in the Chrome trace event format, JSON that Perfetto
(ui.perfetto.dev) and chrome://tracing open: one row per rank, named "rank 3
on node7". Times are microseconds from a barrier that every rank left
together, so the rows line up (across nodes, to within that barrier's
latency). A run that ends before the stretch does writes the steps it took; a
run stopped by a signal writes none. FILE is written once, atomically; a file
that cannot be written is a warning, and training goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from distnn.writes import WriteFailed, write_text


class Trace:
    """The stretch being recorded on this rank, and its writing (rank 0)."""

    def __init__(self, path: str | None, steps: int, comm: Any,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """``clock``: the laps' clock (``distnn.step.Laps``), which tests replace."""
        self.path, self.left, self.comm, self.clock = path, steps if path else 0, comm, clock
        self.spans: list[tuple[str, float, float, dict[str, int]]] = []
        self._zero: float | None = None

    @property
    def active(self) -> bool:
        return self.left > 0

    def before(self, lap: Any) -> None:
        """A step is about to run: its laps are kept (on the first, the clocks meet)."""
        if self._zero is None:
            self.comm.barrier()  # MPI: every rank's time 0 is this moment
            self._zero = self.clock()
        lap.marks = []

    def after(self, lap: Any, epoch: int, k: int) -> str | None:
        """The step ran: its spans kept; at the stretch's end the file is written (a
        collective). Returns a warning if the file could not be written."""
        marks, lap.marks = lap.marks, None
        if marks:
            self.spans.append((f"step {k}", marks[0][1], marks[-1][2],
                               {"epoch": epoch + 1, "step": k}))
            self.spans += [(part, start, end, {}) for part, start, end in marks]
        self.left -= 1
        return self.write() if self.left == 0 else None

    def write(self) -> str | None:
        """Every rank's spans to rank 0, which writes the file (collective)."""
        self.left = 0
        zero = self._zero or 0.0  # each rank's own: clocks of other nodes are not this one's
        mine = [(name, start - zero, end - zero, args) for name, start, end, args in self.spans]
        gathered = self.comm.allgather((self.comm.hostname(), mine))  # MPI
        self.spans = []
        if self.comm.rank != 0:
            return None
        try:
            write_text(self.path, json.dumps(events(gathered)))
        except WriteFailed as err:
            return f"{err}; the trace is lost, training goes on"
        return None


def events(gathered: list[tuple[str, list]]) -> dict[str, Any]:
    """The trace event format: a name for each rank's row, and complete ("X") events;
    ``gathered``: each rank's host and spans (name, start, end in seconds, args)."""
    out: list[dict[str, Any]] = []
    for rank, (host, spans) in enumerate(gathered):
        out.append({"ph": "M", "name": "thread_name", "pid": 0, "tid": rank,
                    "args": {"name": f"rank {rank} on {host}"}})
        out += [{"name": name, "cat": "step" if args else "part", "ph": "X", "pid": 0,
                 "tid": rank, "ts": start * 1e6, "dur": (end - start) * 1e6,
                 "args": args} for name, start, end, args in spans]
    return {"traceEvents": out, "displayTimeUnit": "ms"}
