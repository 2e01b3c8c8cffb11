"""What distnn's processes tell one another: exit statuses, stop signals, event lines.

Three kinds of process cooperate in a run, and this module is all they share:

- the trainer (``distnn.train``, one process per rank);
- whoever started it: a launch script (``launch/``), a batch system, or the
  elastic supervisor (``distnn.elastic``);
- and, under a supervisor, the sentinels on each host (which only print a
  heartbeat; ``distnn.elastic.hosts``).

Who writes what, and who reads it:

- **Exit statuses**: the trainer's process (every rank, or the launcher on its
  behalf) ends with one of ``EXIT_*``; the launch scripts, the supervisor and
  the user's shell read it. ``python -m distnn.protocol`` prints them as shell
  assignments, for the scripts to ``eval``: a number is written only here.
- **Stop signals**: any of ``STOP_SIGNALS`` asks the trainer to stop after its
  step with a checkpoint (``distnn.train.StopRequest``). The supervisor, the
  launch scripts and batch systems send them.
- **Event lines**: when ``EVENTS_VARIABLE`` is set in its environment (the
  supervisor sets it), the trainer prints machine-readable lines on stdout,
  ``distnn.event {"event": ..., ...}``, one JSON object each: where the loop is
  (rank 0, every ``REPORT_VARIABLE`` seconds), that training has started or
  resumed (rank 0), and the stall watchdog's verdict (the rank that reports
  it). The supervisor reads these and nothing else of the trainer's output;
  the sentences beside them are for people and may be reworded freely.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

# -- exit statuses (sysexits.h where one fits) ---------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1  # a failure a rerun will not mend as it is (a bug, a divergence, a stall)
EXIT_USAGE = 2  # bad settings or data, found before training: nothing was written
EXIT_IOERR = 74  # EX_IOERR: a file the run must write could not be (a full disk, a quota,
#                  a read-only file system): the last good checkpoint is kept; free space,
#                  then rerun with --resume (rerunning before that fails the same way)
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped with the checkpoint written; rerun with --resume
EXIT_TWICE = 130  # a second stop signal: stopped at once, the last checkpoint kept

# -- stop signals --------------------------------------------------------------------
# Each asks the trainer to finish its step, write the checkpoint and exit
# EXIT_INTERRUPTED. SIGUSR1 is for launchers that take SIGTERM as "abort now" and
# pass only SIGUSR1/SIGUSR2 on to the ranks (Open MPI's mpirun); it is also
# Slurm's --signal default.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

# -- event lines ---------------------------------------------------------------------
EVENTS_VARIABLE = "DISTNN_EVENTS"  # "1": the trainer prints event lines
REPORT_VARIABLE = "DISTNN_REPORT_SECONDS"  # how often rank 0 prints its position
PREFIX = "distnn.event "

POSITION = "position"  # {"epoch", "step"}: the next step rank 0 runs (both from 0)
TRAINING = "training"  # {"epoch", "step", "resumed"}: the loop begins here
STALLED = "stalled"  # {"waiting": [rank], "culprits": [{"rank", "host", "state"}]}


def events_on() -> bool:
    """Whether this process was asked for event lines (by its supervisor)."""
    return bool(os.environ.get(EVENTS_VARIABLE))


def report_seconds() -> float:
    """How often rank 0 reports its position (0: never)."""
    if not events_on():
        return 0.0
    try:
        return max(0.0, float(os.environ.get(REPORT_VARIABLE) or 0))
    except ValueError:
        return 0.0


def format_event(event: str, **fields: Any) -> str:
    return PREFIX + json.dumps({"event": event, **fields}) + "\n"


def emit(event: str, **fields: Any) -> None:
    """Print an event line for the supervisor, if there is one listening."""
    if events_on():
        sys.stdout.write(format_event(event, **fields))
        sys.stdout.flush()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event a line carries, or None for any other line (people's sentences)."""
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def shell_assignments() -> str:
    """The exit statuses as shell variables, for the launch scripts to ``eval``."""
    names = {k: v for k, v in globals().items() if k.startswith("EXIT_")}
    return "".join(f"DISTNN_{name}={value}\n" for name, value in names.items())


if __name__ == "__main__":
    sys.stdout.write(shell_assignments())
