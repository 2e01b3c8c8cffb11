"""Where each rank's time went in an epoch, and which rank, if any, held the others back.

Every rank times the parts of its steps (``distnn.step.Laps``): reading its
batch, its draws (distortions, dropout masks), backprop, the sum over ranks
(waiting for the others included), the update, and making the update seen
(publish). After each epoch the ranks gather these few numbers (one small
collective) and rank 0 records, for each part, the minimum, median and
maximum over ranks and the rank behind the maximum.

A straggler is a rank whose own work, its compute (batch, draws, backprop,
update), took clearly longer than the other ranks': more than RATIO times their
median, by more than FLOOR of the epoch's time and more than MIN_SECONDS (so
that a rank descheduled for a few milliseconds, as ranks that share cores
are, names nobody). Waiting is not work: a rank that waits for a
slow one spends that time in the sum, which is never counted against it.
"""

from __future__ import annotations

import statistics
from typing import Any

PARTS = ("batch", "draws", "backprop", "sum", "update", "publish")
COMPUTE = ("batch", "draws", "backprop", "update")  # a rank's own work, no waiting in it
RATIO = 1.5
FLOOR = 0.1
MIN_SECONDS = 0.25


def since(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Each part's seconds between two readings of ``Laps.seconds``."""
    return {part: now.get(part, 0.0) - before.get(part, 0.0) for part in PARTS}


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


def straggler(per_rank: list[dict[str, float]], hosts: list[str],
              epoch_seconds: float) -> dict[str, Any] | None:
    """The rank that held the others back this epoch, or None."""
    if len(per_rank) < 2:
        return None
    compute = [_value(times, "compute") for times in per_rank]
    rank = max(range(len(compute)), key=compute.__getitem__)
    others = statistics.median(compute[:rank] + compute[rank + 1:])
    excess = compute[rank] - others
    if compute[rank] <= RATIO * others or excess <= max(FLOOR * epoch_seconds, MIN_SECONDS):
        return None
    return {"rank": rank, "host": hosts[rank], "compute_s": compute[rank],
            "others_median_s": others, "times": compute[rank] / max(others, 1e-12)}


def straggler_text(found: dict[str, Any]) -> str:
    return (f"rank {found['rank']} on {found['host']} is a straggler: its own work took "
            f"{found['compute_s']:.2f} s this epoch, {found['times']:.1f} times the other "
            f"ranks' median ({found['others_median_s']:.2f} s); they waited for it")
