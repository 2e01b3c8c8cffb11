"""distnn.estimator, the engine of distnn.sklearn, without scikit-learn: the partitions a
fit chooses, and its guards under mpirun, with stand-ins for the other ranks."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.data import Partitions
from distnn.estimator import fullest_partitions, same_everywhere, shared_seed


@pytest.mark.parametrize("n, m", [(1000, 200), (1437, 32), (1000, 67), (5000, 199), (300, 48),
                                  (999, 7), (60, 60), (1, 1)])
def test_a_fit_trains_every_full_batch_of_its_rows(n, m):
    """As scikit-learn's epochs do, but for the last, partial batch: n // m steps."""
    c = fullest_partitions(n, m)
    assert min(16, m, n) <= c <= 64
    assert Partitions(n, m, c).steps == n // m


def test_the_default_partitions_would_leave_rows_out():
    """What the choice is for: 64 partitions of 1,000 rows give 4 batches of 200, not 5."""
    assert Partitions(1000, 200, 64).steps == 4


class Ranks:
    """Rank ``rank`` of a job whose other ranks' answers are given."""

    def __init__(self, rank: int, others: list) -> None:
        self.rank, self.size, self.others = rank, len(others) + 1, others

    def allgather(self, obj):
        return [obj if r == self.rank else self.others[r - (r > self.rank)]
                for r in range(self.size)]

    def bcast(self, obj):
        return obj if self.rank == 0 else self.others[0]


def digest_of(*arrays):
    seen = []
    same_everywhere(type("Alone", (), {"rank": 0, "size": 1,
                                       "allgather": lambda self, d: seen.append(d) or [d]})(),
                    *arrays)
    return seen[0]


def test_ranks_with_other_rows_are_named():
    x, y = np.arange(12.0).reshape(4, 3), np.arange(4)
    other = x.copy()
    other[3, 2] += 1e-12
    mine = digest_of(x, y)
    assert digest_of(x.astype(np.float32), y) != mine  # the dtype counts
    assert digest_of(x.reshape(3, 4), y) != mine  # and the shape: the same bytes
    assert digest_of(x, y, None) != digest_of(x, y, np.ones(4))
    same_everywhere(Ranks(0, [mine, mine]), x, y)  # all alike: no error
    with pytest.raises(ValueError, match=r"^rank\(s\) 2 of 3 passed other data to fit than "
                                         "rank 0"):
        same_everywhere(Ranks(0, [mine, digest_of(other, y)]), x, y)


def test_an_unseeded_fit_takes_rank_0s_seed():
    assert shared_seed(Ranks(1, [1234]), None) == 1234
    assert shared_seed(Ranks(1, [1234]), 5) == 1234  # rank 0's, whatever this rank has
    drawn = {shared_seed(Ranks(0, [None]), None) for _ in range(3)}
    assert len(drawn) == 3  # afresh each time


def test_a_fit_that_goes_on_starts_its_own_schedule():
    """first_epoch (partial_fit's) numbers the epochs for their order; a schedule still
    starts at this fit's first step: a cosine over 2 steps gives them the whole rate and
    half of it, worked out here step by step with the network's own gradient."""
    from distnn.comm import SerialComm
    from distnn.estimator import Settings, fit_arrays
    from distnn.network import MLP
    from distnn.optim import SGD

    x = np.random.default_rng(0).standard_normal((8, 3))
    y = np.arange(8) % 2
    net = MLP([3, 2], cost="cross_entropy", dtype="float64", seed=1)
    epochs = fit_arrays(net, SGD(net.params), x, y,
                        Settings(m=4, epochs=1, lr=0.5, seed=0, schedule="cosine",
                                 first_epoch=2), SerialComm(), lambda e, l: False)
    assert epochs == 3
    ref = MLP([3, 2], cost="cross_entropy", dtype="float64", seed=1)
    batches = Partitions(8, 4, fullest_partitions(8, 4)).epoch(0, 2, 0, 1)  # epoch 2's
    for rate, rows in zip([0.5, 0.25], batches):
        _, grad = ref.gradient(x[rows], y[rows])
        ref.params -= rate * grad / 4
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


def test_a_rank_that_cannot_take_its_data_is_heard_by_all():
    x = np.arange(6.0).reshape(2, 3)
    with pytest.raises(ValueError, match=r"^rank\(s\) 1 of 2 could not take their data "
                                         r"\(Input X contains NaN\.\): under mpirun"):
        same_everywhere(Ranks(0, ["error: Input X contains NaN."]), x)
    own = TypeError("its own words")
    with pytest.raises(TypeError, match="^its own words$"):  # the rank's own error, as it was
        same_everywhere(Ranks(1, [digest_of(x)]), None, error=own)
