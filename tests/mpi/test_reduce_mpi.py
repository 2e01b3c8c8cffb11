"""The shared-memory reducer sums and updates like one process and like Allreduce.

    mpirun -n 2 python -m pytest --with-mpi tests/mpi/test_reduce_mpi.py
    mpirun -n 4 python -m pytest --with-mpi tests/mpi/test_reduce_mpi.py

Several nodes are stood in for by splitting this node's ranks into groups
("nodes" of 1 rank each at P=2, of 2 ranks at P=4), so the Allreduce across
nodes runs too. Reference: the gradient of every rank's batch together,
computed in one process.
"""

from __future__ import annotations

import numpy as np
import pytest

from distnn.comm import MPIComm, SerialComm
from distnn.network import MLP
from distnn.optim import SGD
from distnn.reduce import FusedAllreduce, SharedMemoryReduce, make_reducer

pytestmark = pytest.mark.mpi(min_size=2)

SIZES = [9, 7, 5, 3]  # small enough that the parts of 4 ranks are of unequal length


def _node(comm: MPIComm, layout: str) -> MPIComm:
    """This node's ranks, or a group of them standing in for one of two nodes."""
    return comm.node() if layout == "one node" else comm.split(comm.rank // (comm.size // 2))


def _batch(rank: int, step: int, m: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([rank, step])
    return rng.random((m, SIZES[0])), rng.integers(0, SIZES[-1], m)


def _net() -> tuple[MLP, SGD]:
    net = MLP(SIZES, activation="tanh", cost="cross_entropy", init="xavier", dtype="float64",
              seed=5)
    return net, SGD(net.params, momentum=0.9, weight_decay=0.01, decay_mask=net.weight_mask)


@pytest.mark.parametrize("layout", ["one node", "two nodes"])
def test_sum_equals_one_process_gradient(comm, layout):
    batches = [_batch(r, 0) for r in range(comm.size)]
    x_all, y_all = np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    cost_1, grad_1 = _net()[0].gradient(x_all, y_all)  # one process, every rank's batch
    net, optimizer = _net()
    with SharedMemoryReduce(comm, net, optimizer, node=_node(comm, layout)) as reduce:
        x, y = batches[comm.rank]
        cost, _ = net.gradient(x, y, out=reduce.local_grad())
        cost, stop = reduce.sum(cost, stop=comm.rank == comm.size - 1)  # one rank asks
        np.testing.assert_allclose(reduce.grad, grad_1[reduce.part], rtol=1e-12, atol=1e-14)
        assert cost == pytest.approx(cost_1, rel=1e-12)
        assert stop is True
        assert ("allreduce across" in reduce.describe()) == (layout == "two nodes")
        cost, _ = net.gradient(x, y, out=reduce.local_grad())
        assert reduce.sum(cost, stop=False)[1] is False
        # The parts of one node's ranks tile the whole vector.
        spans = reduce.node._comm.allgather((reduce.part.start, reduce.part.stop))
    assert spans[0][0] == 0 and spans[-1][1] == net.params.size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("layout", ["one node", "two nodes"])
@pytest.mark.parametrize("kind", ["shm", "allreduce"])
def test_back_to_back_sums_are_all_right(comm, layout, kind):
    """Thousands of sums with nothing in between (no update, no publish()): a rank
    that runs ahead must not write its next gradient, cost or stop flag over one
    another rank still adds up. With shm, every other call sums the same rows
    again without asking for local_grad(): only its cost and flag are new
    (allreduce sums its buffer in place, so it is always written anew).

    Each rank's "gradient" is a known integer pattern of (rank, call), so every
    sum, cost and stop flag has an exact expected value. Nothing is asserted
    inside the loop: a rank that failed there would leave the others waiting
    in the next call's collective.
    """
    calls, n, P = 3000, 4099, comm.size  # n: not a multiple of the cache line
    net = MLP([n - 1, 1], activation="sigmoid", cost="quadratic", dtype="float64")
    optimizer = SGD(net.params)
    columns = np.arange(n, dtype=np.float64)

    def pattern(rank: int, call: int) -> np.ndarray:
        return (columns * (rank + 1) + call * 7) % 4096

    if kind == "shm":
        reducer = SharedMemoryReduce(comm, net, optimizer, node=_node(comm, layout))
    else:
        reducer = FusedAllreduce(comm, net)
    wrong = {"sum": 0, "cost": 0, "stop": 0}
    with reducer as reduce:
        for call in range(calls):
            if kind == "allreduce" or call % 2 == 0:
                written = call
                reduce.local_grad()[...] = pattern(comm.rank, call)  # where backprop would write
            asking = call % (P + 1)  # one rank asks to stop, or (== P) none
            cost, stop = reduce.sum(float(comm.rank + call), stop=comm.rank == asking)
            expected = sum(pattern(r, written)[reduce.part] for r in range(P))
            wrong["sum"] += not np.array_equal(reduce.grad, expected)
            wrong["cost"] += cost != sum(r + call for r in range(P))
            wrong["stop"] += stop != (asking < P)
    everyone = comm._comm.allgather(wrong)
    assert all(w == {"sum": 0, "cost": 0, "stop": 0} for w in everyone), \
        f"wrong results out of {calls} calls, by rank: {everyone}"


@pytest.mark.parametrize("layout", ["one node", "two nodes"])
def test_updates_equal_allreduce_updates(comm, layout):
    net_a, opt_a = _net()
    net_s, opt_s = _net()
    fused = FusedAllreduce(comm, net_a)
    with SharedMemoryReduce(comm, net_s, opt_s, node=_node(comm, layout)) as shared:
        assert np.shares_memory(net_s.params, shared._shared.array)
        for step in range(5):
            x, y = _batch(comm.rank, step)
            for reduce, net, optimizer in ((fused, net_a, opt_a), (shared, net_s, opt_s)):
                cost, _ = net.gradient(x, y, out=reduce.local_grad())
                reduce.sum(cost, stop=False)
                optimizer.step(net.params, reduce.grad, 0.5, scale=1 / (6 * comm.size),
                               part=reduce.part)
                reduce.publish()
    # close() gave the net and optimizer private copies of the final values.
    assert net_s.params.flags.owndata and opt_s.velocity.flags.owndata
    np.testing.assert_allclose(net_s.params, net_a.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt_s.velocity, opt_a.velocity, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(net_s.params, _net()[0].params)  # it did train
    everyone = comm._comm.allgather(net_s.params)  # every node's copy, bitwise the same
    assert all(np.array_equal(other, everyone[0]) for other in everyone)


def test_make_reducer_picks_shared_memory_on_one_node(comm):
    net, optimizer = _net()
    with make_reducer(comm, net, optimizer, "auto") as reduce:
        assert reduce.name == "shm"
    assert make_reducer(comm, net, optimizer, "allreduce").name == "allreduce"
    assert make_reducer(SerialComm(), net, optimizer, "shm").name == "allreduce"  # one rank
    with pytest.raises(ValueError, match="unknown reducer"):
        make_reducer(comm, net, optimizer, "ring")


def test_make_reducer_falls_back_when_nodes_differ(comm, monkeypatch):
    """Placements a cluster can give, stood in for by groups of this node's ranks:
    one rank per node has nothing to share; unequal nodes cannot split the
    gradient into the same parts on each, so "auto" takes Allreduce and "shm"
    is refused on every rank (the trainer turns that into a usage error)."""
    net, optimizer = _net()
    if comm.size == 2:  # two nodes of one rank
        monkeypatch.setattr(comm, "node", lambda: comm.split(comm.rank))
        assert make_reducer(comm, net, optimizer, "auto").name == "allreduce"
        return
    # size - 1 ranks on one node, 1 on the other
    monkeypatch.setattr(comm, "node", lambda: comm.split(comm.rank == comm.size - 1))
    reduce = make_reducer(comm, net, optimizer, "auto")
    assert isinstance(reduce, FusedAllreduce)
    with pytest.raises(ValueError, match=f"these nodes hold 1 to {comm.size - 1}"):
        make_reducer(comm, net, optimizer, "shm")


def test_one_node_short_of_dev_shm_turns_every_rank_to_allreduce(comm, monkeypatch):
    """Only the last rank sees a full /dev/shm; all must still choose alike, or
    the job would hang with half its ranks in a window and half in Allreduce."""
    import distnn.reduce

    net, optimizer = _net()
    per_node = comm.ranks_on_this_node()
    need = SharedMemoryReduce.table_size(net.params.size, per_node) * net.params.itemsize
    full = comm.rank == comm.size - 1
    monkeypatch.setattr(distnn.reduce, "shm_room", lambda: need // 2 if full else 1 << 40)
    reduce = make_reducer(comm, net, optimizer, "auto")
    assert reduce.name == "allreduce"
    assert "/dev/shm" in reduce.note and "MiB short" in reduce.note
    with pytest.raises(ValueError, match="--reduce shm: the shared table needs"):
        make_reducer(comm, net, optimizer, "shm")
    room = need + distnn.reduce._SHM_SLACK  # just enough
    monkeypatch.setattr(distnn.reduce, "shm_room", lambda: room)
    with make_reducer(comm, net, optimizer, "auto") as reduce:
        assert reduce.name == "shm" and reduce.note == ""
