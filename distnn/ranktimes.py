"""Where each rank's time went in an epoch, and which rank, if any, held the others back.

Every rank times the parts of its steps (``distnn.step.Laps``): reading its
batch, its draws (distortions, dropout masks), backprop, waiting for the other
ranks, the sum itself, the update, making the update seen (publish), and
writing checkpoints (rank 0). After each epoch the ranks gather these few
numbers (one small collective) and rank 0 records, for each part, the minimum,
median and maximum over ranks and the rank behind the maximum.

A straggler is a rank whose own work, its compute (batch, draws, backprop,
update), took clearly longer than the other ranks': more than RATIO times their
median in one epoch, or more than STEADY_RATIO times in each of the last STEADY
epochs; and by more than FLOOR of the time and more than MIN_SECONDS (so that a
rank descheduled for a few milliseconds, as ranks that share cores are, names
nobody). Waiting is not work: a rank that waits for a slow one spends that
time in ``wait``, which is never counted against it; nor is writing the
checkpoint, which is rank 0's alone by design.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

PARTS = ("batch", "draws", "backprop", "wait", "sum", "update", "publish", "checkpoint")
COMPUTE = ("batch", "draws", "backprop", "update")  # a rank's own work, no waiting in it
RATIO = 1.5
STEADY, STEADY_RATIO = 3, 1.2  # epochs in a row, and by how much each
FLOOR = 0.1
MIN_SECONDS = 0.25


def since(now: dict[str, float], before: dict[str, float], waited: float = 0.0
          ) -> dict[str, float]:
    """Each part's seconds between two readings of ``Laps.seconds``; ``waited``, the
    waiting inside an Allreduce (``distnn.reduce``'s ``waited()``), moves from sum to wait."""
    parts = {part: now.get(part, 0.0) - before.get(part, 0.0) for part in PARTS}
    parts["wait"] += waited
    parts["sum"] -= waited
    return parts


def summary(per_rank: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """For each part (and compute): min, median, max over ranks, and max_rank."""
    out = {}
    for part in (*PARTS, "compute"):
        values = [_value(times, part) for times in per_rank]
        slowest = max(range(len(values)), key=values.__getitem__)
        out[part] = {"min": min(values), "median": statistics.median(values),
                     "max": values[slowest], "max_rank": slowest}
    return out


def _value(times: dict[str, float], part: str) -> float:
    return sum(times[p] for p in COMPUTE) if part == "compute" else times[part]


class Stragglers:
    """Rank 0's judge of stragglers, which remembers the last STEADY epochs."""

    def __init__(self) -> None:
        self._recent: deque[tuple[list[float], float]] = deque(maxlen=STEADY)

    def find(self, per_rank: list[dict[str, float]], hosts: list[str],
             epoch_seconds: float) -> dict[str, Any] | None:
        """The rank that held the others back this epoch, or steadily of late, or None."""
        compute = [_value(times, "compute") for times in per_rank]
        if self._recent and len(self._recent[-1][0]) != len(compute):
            self._recent.clear()  # an elastic run went on with another number of ranks
        self._recent.append((compute, epoch_seconds))
        if len(compute) < 2:
            return None
        found = _slower([compute], [epoch_seconds], RATIO)
        if found is None and len(self._recent) == STEADY:
            found = _slower(*zip(*self._recent), STEADY_RATIO)
        if found is None:
            return None
        rank, mine, others, epochs = found
        return {"rank": rank, "host": hosts[rank], "compute_s": mine, "others_median_s": others,
                "times": mine / max(others, 1e-12), "epochs": epochs}


def _slower(computes: list[list[float]], seconds: list[float], ratio: float
            ) -> tuple[int, float, float, int] | None:
    """The rank that was slowest in every epoch given, by more than ``ratio`` times the
    other ranks' median in each, and by enough in all: (rank, its compute, theirs, epochs)."""
    slowest = {max(range(len(c)), key=c.__getitem__) for c in computes}
    if len(slowest) != 1:
        return None
    rank = slowest.pop()
    mine = [c[rank] for c in computes]
    others = [statistics.median(c[:rank] + c[rank + 1:]) for c in computes]
    excess = sum(mine) - sum(others)
    if any(a <= ratio * b for a, b in zip(mine, others)):
        return None
    if excess <= max(FLOOR * sum(seconds), MIN_SECONDS):
        return None
    return rank, sum(mine), sum(others), len(computes)


def straggler_text(found: dict[str, Any]) -> str:
    when = "this epoch" if found["epochs"] == 1 else f"over the last {found['epochs']} epochs"
    return (f"rank {found['rank']} on {found['host']} is a straggler: its own work took "
            f"{found['compute_s']:.2f} s {when}, {found['times']:.1f} times the other "
            f"ranks' median ({found['others_median_s']:.2f} s); they waited for it")
