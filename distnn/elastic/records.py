"""What the supervisor says: a line on stderr for people, a record in its metrics file.

Each change to the job's hosts is one line and one ``"event": "membership"``
record: the hosts and why, where the run was (the job's last position), the
commit it went on from (the checkpoint's), the steps redone, and how long the
relaunch and the recovery took. The supervisor's metrics file is its own, never
the trainer's: ``--metrics`` of the supervisor, or by default beside the
trainer's (``runs/m.jsonl``: ``runs/m.elastic.jsonl``; none if the trainer has
none).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distnn.checkpoint import CheckpointError, read_checkpoint
from distnn.elastic.policy import Change
from distnn.writes import WriteFailed, append

READ_TRIES, READ_PAUSE = 10, 0.1  # a rank that ended the job may have been writing the checkpoint


def metrics_beside(trainer: str | None) -> str | None:
    """The supervisor's metrics file beside the trainer's: m.jsonl -> m.elastic.jsonl."""
    if not trainer:
        return None
    path = Path(trainer)
    return str(path.with_name(f"{path.stem}.elastic{path.suffix}"))


class Records:
    """The supervisor's lines on stderr and its records in its metrics file (if any)."""

    def __init__(self, metrics: Path | None, checkpoint: Path) -> None:
        self.metrics, self.checkpoint = metrics, checkpoint

    def say(self, text: str, record: dict[str, Any] | None = None) -> None:
        print(f"distnn.elastic: {text}", file=sys.stderr, flush=True)
        if self.metrics and record is not None:
            record = {"event": "membership", "time": time.time(), **record}
            try:
                append(self.metrics, json.dumps(record) + "\n")
            except WriteFailed as err:  # the run goes on: the line above said it all
                print(f"distnn.elastic: warning: {err}; this record is on stderr only",
                      file=sys.stderr, flush=True)

    def committed(self) -> tuple[int, int, int] | None:
        """(epoch, step, steps per epoch) of the checkpoint, if there is one."""
        if not self.checkpoint.exists():  # lost before the first commit: from the start
            return None
        for _ in range(READ_TRIES):
            try:
                position = read_checkpoint(self.checkpoint)["position"]
                return position["epoch"], position["step"], position["steps"]
            except CheckpointError as err:
                error = err
                time.sleep(READ_PAUSE)
        print(f"distnn.elastic: no commit to go on from: {error}", file=sys.stderr, flush=True)
        return None

    def change(self, change: Change, detected: float, reached: tuple[int, int] | None,
               before: int) -> dict[str, Any]:
        """The record of a change as it happens; ``report`` completes it."""
        committed, redone = self.committed(), None
        if committed:  # the position lines lag: the commit may be newer than the last one
            steps = committed[2]
            done = committed[0] * steps + committed[1]
            if reached is None or reached[0] * steps + reached[1] < done:
                reached = committed[:2]
            redone = reached[0] * steps + reached[1] - done
        return {"change": change.kind, "hosts": list(change.hosts), "why": change.why,
                "detected": detected, "reached": reached,
                "committed": committed and committed[:2], "steps_redone": redone,
                "ranks_before": before}

    def report(self, change: dict[str, Any], running: Mapping[str, int],
               launched: float | None, training: float | None) -> None:
        """The line and the record of a change: once the job that goes on trains
        (``training``, when it began), or as the run stops (``launched`` None)."""
        change = dict(change)
        detected, where = change.pop("detected"), change["reached"]
        at = f"at epoch {where[0] + 1}, step {where[1]}" if where else "before its first step"
        text = f"{change['change']} {', '.join(change['hosts'])} ({change['why']}) {at}"
        if launched is None or training is None:
            self.say(f"{text}; not going on", {**change, "ranks_after": 0})
            return
        after = sum(running.values())
        relaunch, recovery = launched - detected, training - detected
        committed, redone = change["committed"], change["steps_redone"]
        since = (f"from the commit at epoch {committed[0] + 1}, step {committed[1]}"
                 if committed else "from the start")
        self.say(
            f"{text}; going on with {after} ranks on {', '.join(running)} {since}"
            + (f", {redone} steps redone" if redone is not None else "")
            + f"; relaunched {relaunch:.1f} s after, training again {recovery:.1f} s after",
            {**change, "ranks_after": after, "relaunch_seconds": round(relaunch, 3),
             "recovery_seconds": round(recovery, 3)})
