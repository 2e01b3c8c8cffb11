"""Per-rank times summed up by hand, the straggler rule on hand-made epochs, and the
waiting inside an Allreduce told from its summing on a hand-worked case."""

from __future__ import annotations

import json

import pytest

import numpy as np

from distnn.ranktimes import PARTS, Stragglers, since, straggler_text, summary
from distnn.reduce import FusedAllreduce


def times(backprop: float, wait: float = 0.0, other: float = 0.1, sum_: float = 0.0
          ) -> dict[str, float]:
    """A rank's epoch: its batch and update take ``other`` each; waiting is in ``wait``."""
    t = dict.fromkeys(PARTS, 0.0)
    t.update(batch=other, update=other, backprop=backprop, wait=wait, sum=sum_)
    return t


def straggler(per_rank, hosts, epoch_seconds):
    """One epoch judged alone."""
    return Stragglers().find(per_rank, hosts, epoch_seconds)


def test_since_and_the_summary_by_hand():
    assert since({"batch": 3.0, "sum": 1.5}, {"batch": 1.0})["batch"] == 2.0
    # a part never lapped (no checkpoint on this rank) took 0 s, and nothing waited
    # inside an Allreduce unless said
    assert since({"batch": 3.0, "sum": 1.5}, {}) == {**dict.fromkeys(PARTS, 0.0),
                                                      "batch": 3.0, "sum": 1.5}
    moved = since({"sum": 1.5, "wait": 0.25}, {}, waited=1.0)
    assert (moved["wait"], moved["sum"]) == (1.25, 0.5)
    ranks = [times(1.0, sum_=2.0), times(3.0, sum_=0.5), times(2.0, sum_=1.0)]
    s = summary(ranks)
    assert s["backprop"] == {"min": 1.0, "median": 2.0, "max": 3.0, "max_rank": 1}
    assert s["sum"] == {"min": 0.5, "median": 1.0, "max": 2.0, "max_rank": 0}
    assert s["compute"]["max"] == 3.2 and s["compute"]["max_rank"] == 1


def test_the_slow_rank_is_named_and_a_waiting_rank_never():
    hosts = ["a", "b", "c", "d"]
    # rank 2 works 4 s where the others work 1.2 s; they wait 2.8 s for it, and rank 0
    # writes the checkpoint besides: neither waiting nor writing is work
    ranks = [times(1.0, 2.8), times(1.0, 2.8), times(3.8, 0.0), times(1.0, 2.8)]
    ranks[0]["checkpoint"] = 3.0
    found = straggler(ranks, hosts, epoch_seconds=4.0)
    assert (found["rank"], found["host"]) == (2, "c")
    assert abs(found["times"] - 4.0 / 1.2) < 1e-12
    assert straggler_text(found).startswith("rank 2 on c is a straggler: its own work took "
                                            "4.00 s this epoch, 3.3 times")
    # the same epoch on 2 ranks: the other one's median is its own
    assert straggler(ranks[1:3], hosts[1:3], 4.0)["rank"] == 1


def test_nobody_is_named_for_noise_or_a_small_difference():
    assert straggler([times(1.0), times(1.5)], ["a", "b"], 3.0) is None  # 1.6 < 1.5 x 1.1
    # twice as slow, but a millisecond in an epoch of seconds: noise, not a straggler
    assert straggler([times(0.001, other=0), times(0.003, other=0)], ["a", "b"], 10.0) is None
    # ... and in an epoch of milliseconds, as ranks sharing a core see: still nobody
    assert straggler([times(0.001, other=0), times(0.01, other=0)], ["a", "b"], 0.02) is None
    assert straggler([times(0.1, other=0), times(0.4, other=0)], ["a", "b"], 0.5)
    assert straggler([times(5.0)], ["a"], 6.0) is None  # one rank holds nobody back


def test_the_others_median_is_their_median_and_the_thresholds_are_strict():
    hosts = ["a", "b", "c", "d", "e"]
    # rank 2 works 4 s; the others 1, 3, 2 and 2.5 s (batch and update 0): their median
    # is 2.25 s, so rank 2 is 1.78 times it; against the fastest (1 s) it would be 4 times
    ranks = [times(b, other=0) for b in (1.0, 3.0, 4.0, 2.0, 2.5)]
    found = straggler(ranks, hosts, epoch_seconds=5.0)
    assert (found["rank"], found["others_median_s"], found["compute_s"]) == (2, 2.25, 4.0)
    assert abs(found["times"] - 4.0 / 2.25) < 1e-12
    # ... and 1.5 times a median of 2.75 s is not more than RATIO: nobody
    assert straggler([times(b, other=0) for b in (1.0, 4.125, 2.5, 3.0, 3.5)], hosts, 5.0) \
        is None
    # exactly RATIO times is not more than RATIO times (1.5 against 1.0; the excess, 0.5 s,
    # is enough): nobody; just above, named
    assert straggler([times(1.0, other=0), times(1.5, other=0)], hosts[:2], 2.0) is None
    assert straggler([times(1.0, other=0), times(1.5625, other=0)], hosts[:2], 2.0)
    # the excess must be more than MIN_SECONDS (0.25 s): 0.5 against 0.25 s is twice as
    # slow, but only by 0.25 s; 0.2 against 0.1 s, by 0.1 s (the two summed would be 0.3)
    assert straggler([times(0.25, other=0), times(0.5, other=0)], hosts[:2], 1.0) is None
    assert straggler([times(0.1, other=0), times(0.2, other=0)], hosts[:2], 1.0) is None
    # ... and more than FLOOR (a tenth) of the epoch: 0.8 s more in an epoch of 10 s is
    # not; 1.2 s more is, and below 1 s the ratio is still the ratio
    assert straggler([times(0.8, other=0), times(1.6, other=0)], hosts[:2], 10.0) is None
    found = straggler([times(0.8, other=0), times(2.0, other=0)], hosts[:2], 10.0)
    assert found["rank"] == 1 and abs(found["times"] - 2.5) < 1e-12


def test_a_rank_slow_steadily_but_below_the_ratio_is_named_after_three_epochs():
    judge, hosts = Stragglers(), ["a", "b", "c"]
    epoch = [times(1.0, 0.4), times(1.0, 0.4), times(1.4, 0.0)]  # 1.6 s against 1.2: 1.33x
    assert judge.find(epoch, hosts, 2.0) is None
    assert judge.find(epoch, hosts, 2.0) is None
    found = judge.find(epoch, hosts, 2.0)
    assert (found["rank"], found["epochs"]) == (2, 3)
    assert abs(found["compute_s"] - 4.8) < 1e-12 and abs(found["others_median_s"] - 3.6) < 1e-12
    assert "4.80 s over the last 3 epochs, 1.3 times" in straggler_text(found)
    # a rank that is not the slowest in one of the three epochs is not steady
    judge = Stragglers()
    for e in (epoch, [times(1.4, 0.0), times(1.0, 0.4), times(1.0, 0.4)], epoch):
        found = judge.find(e, hosts, 2.0)
    assert found is None
    # ... nor one that is only slightly slower each time (1.1x)
    judge = Stragglers()
    for _ in range(5):
        found = judge.find([times(1.0), times(1.0), times(1.12)], hosts, 1.3)
    assert found is None
    # ... nor one that is slow enough in one epoch of three but not in the others
    judge = Stragglers()
    for e in ([times(1.0), times(1.0), times(1.12)], epoch, [times(1.0), times(1.0), times(1.12)]):
        found = judge.find(e, hosts, 2.0)
    assert found is None
    # a rank that stays slow is named again each epoch, over the last three
    judge = Stragglers()
    for _ in range(2):
        assert judge.find(epoch, hosts, 2.0) is None
    for _ in range(3):
        found = judge.find(epoch, hosts, 2.0)
        assert (found["rank"], found["epochs"]) == (2, 3)
        assert abs(found["compute_s"] - 4.8) < 1e-12
    # an elastic run that goes on with another number of ranks starts its memory again:
    # two epochs on three ranks, then three on four, rank 2 slow by 1.33x throughout; it
    # is named after three epochs on four ranks, not before
    judge, wider = Stragglers(), [*epoch, times(1.0, 0.4)]
    for e, expected in ((epoch, None), (epoch, None), (wider, None), (wider, None), (wider, 2)):
        found = judge.find(e, hosts + ["d"], 2.0)
        assert (found and found["rank"]) == expected


class _TwoRanks:
    """The comm of a rank whose partner spent ``theirs`` in each step's Allreduce."""
    size = 2

    def __init__(self, theirs):
        self.theirs = np.asarray(theirs)

    def max_(self, buf):
        return np.maximum(buf, -self.theirs)  # what max_(-took) gives over the two ranks


def test_waiting_inside_an_allreduce_by_hand():
    reducer = FusedAllreduce.__new__(FusedAllreduce)
    reducer.across = _TwoRanks([1.0, 1.0, 4.0])
    reducer._took = np.array([3.0, 1.0, 2.0]).tobytes()
    # least per step [1, 1, 2]: this rank waited 2 s in the first step, none in the others
    assert reducer.waited() == 2.0
    assert reducer.waited() == 0.0  # counted once: the next epoch starts afresh


def test_the_ranks_picture_from_the_metrics_records(tmp_path):
    """The table the picture draws, by hand; both pictures written beside the metrics."""
    pytest.importorskip("matplotlib")
    from distnn.plot import main, rank_table, read_ranks

    def ranks(epoch: int, backprop: list[float]) -> dict:
        by_rank = {p: [0.0] * len(backprop) for p in PARTS}
        by_rank.update(batch=[0.1] * len(backprop), backprop=backprop, sum=[0.5, 0.2])
        return {"event": "ranks", "epoch": epoch, "by_rank": by_rank}

    lines = [{"epoch": 1, "cost": 1.0, "test_accuracy": 0.5}, ranks(1, [1.0, 2.0]),
             {"epoch": 2, "cost": 0.5, "test_accuracy": 0.7}, ranks(2, [1.5, 3.0])]
    metrics = tmp_path / "m.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    parts, seconds, epochs, compute = rank_table(read_ranks(metrics))
    assert parts == ["batch", "backprop", "sum"]  # parts no rank spent time in are left out
    assert seconds.tolist() == [[0.1, 1.5, 0.5], [0.1, 3.0, 0.2]]
    assert epochs == [1, 2] and compute.tolist() == [[1.1, 2.1], [1.6, 3.1]]
    assert main([str(metrics)]) == 0
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "m-ranks.png").stat().st_size
