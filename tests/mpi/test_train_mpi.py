"""Data parallelism checked against one process: run under mpirun with --with-mpi.

    mpirun -n 2 python -m pytest --with-mpi tests/mpi/test_train_mpi.py
    mpirun -n 4 python -m pytest --with-mpi tests/mpi/test_train_mpi.py

Sub-communicators of the first P ranks give P = 1, 2, 3, 4 in one job, so a
4-rank run checks every P up to 4 against the same one-process answer.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from distnn import MLP, load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.comm import MPIComm
from distnn.config import parse_args
from distnn.data import shard_range
from distnn.reduce import FusedAllreduce, SharedMemoryReduce
from distnn.protocol import EXIT_INTERRUPTED, EXIT_USAGE
from distnn.train import main, run
from tests.support.stopping import StopOnRank0At
from tests.support.ranks import first_ranks

pytestmark = pytest.mark.mpi(min_size=2)

SMALL = ["--layers", "16,12,4", "--dtype", "float64", "--warmup-epochs", "0", "--no-progress"]
# Every regulariser: each rank's own masks and distortions, max-norm shared out over a node.
REGULARISED = ["--dropout", "0.2", "--input-dropout", "0.1", "--max-norm", "1.0",
               "--augment", "rotate=5,scale=0.05,elastic=0.3,sigma=1"]
# A conv net on the same 4x4 images: a conv, a padded conv taking its 3 channels (its
# delta carried down through the padding), a pool that drops a partial window, then fully
# connected layers; its regularisers drop the conv features (no --input-dropout). At
# --lr 0.3 (and momentum 0.9) such small conv nets go through an unstable phase that
# amplifies the rounding of the sums over P ranks, as chaos does: this one to 6e-13 after
# 5 epochs, conv3x3:same,pool2,conv4x2 to 9e-10 (their gradients' sums 2e-16 apart);
# at 0.1, both to 5e-16.
CONV = ["--layers", "1x4x4,conv3x2,conv4x3:same,pool2,6,4", "--lr", "0.1"]
CONV_REGULARISED = [*CONV, "--dropout", "0.2", "--max-norm", "1.0",
                    "--augment", "rotate=5,scale=0.05,elastic=0.3,sigma=1"]


def _name(extra) -> str | None:
    """A test id for a list of extra flags."""
    names = {id(REGULARISED): "regularised", id(CONV): "conv",
             id(CONV_REGULARISED): "conv-regularised"}
    return "plain" if extra == [] else names.get(id(extra))


@pytest.fixture
def data(shared_dataset):
    return shared_dataset("synthetic.h5", n_train=240, n_test=60)



def test_allreduced_gradient_equals_one_process_gradient(world):
    rng = np.random.default_rng(7)
    m = 37  # not a multiple of any P: the remainder is spread over ranks
    x, y = rng.random((m, 16)), rng.integers(0, 4, m)
    net = MLP([16, 12, 8, 4], activation="tanh", cost="cross_entropy", init="xavier",
              dtype="float64", seed=3)
    cost_1, grad_1 = net.gradient(x, y)
    for p in range(1, world.size + 1):
        comm = first_ranks(world, p)
        if comm is None:
            continue
        start, stop = shard_range(m, comm.rank, comm.size)
        reduce = FusedAllreduce(comm, net)
        cost, _ = net.gradient(x[start:stop], y[start:stop], out=reduce.local_grad())
        cost_p, stopping = reduce.sum(cost, stop=False)
        assert not stopping
        np.testing.assert_allclose(reduce.grad, grad_1, rtol=1e-12, atol=1e-14)
        assert cost_p == pytest.approx(cost_1, rel=1e-12)


def test_stop_flag_of_one_rank_reaches_all(world):
    net = MLP([4, 3], dtype="float64")
    reduce = FusedAllreduce(MPIComm(world), net)
    assert reduce.sum(0.0, stop=world.rank == world.size - 1)[1] is True
    assert reduce.sum(0.0, stop=False)[1] is False


@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
def test_full_batch_training_matches_across_rank_counts(world, data, mpi_tmp_path, reduce):
    # Full batch: every step sees every sample, so only the summation order differs.
    args = ["--data", str(data), "--epochs", "3", "--batch-size", "240", "--lr", "2.0",
            "--momentum", "0.5", "--reduce", reduce, *SMALL]
    counts = [p for p in (1, 2, 4) if p <= world.size]
    for p in counts:
        comm = first_ranks(world, p)
        if comm is not None:
            cfg, given = parse_args([*args, "--checkpoint", str(mpi_tmp_path / f"p{p}.h5")])
            assert run(cfg, given, comm) == 0
        world.Barrier()
    one = load_checkpoint(mpi_tmp_path / "p1.h5").params
    for p in counts[1:]:
        np.testing.assert_allclose(load_checkpoint(mpi_tmp_path / f"p{p}.h5").params, one,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("extra", [[], REGULARISED], ids=["plain", "regularised"])
def test_replicas_stay_identical_and_evaluation_counts_each_image_once(world, data,
                                                                     mpi_tmp_path, extra):
    metrics = mpi_tmp_path / "m.jsonl"
    args = ["--data", str(data), "--checkpoint", str(mpi_tmp_path / "c.h5"), "--epochs", "2",
            "--batch-size", "12", "--lr", "0.5", "--metrics", str(metrics), *SMALL, *extra]
    cfg, given = parse_args(args)
    seen = []

    def two_nodes(comm, net, optimizer, kind):
        """The shared-memory reducer on two stand-in nodes, so that two copies exist;
        keeps this rank's net, to compare the replicas afterwards."""
        seen.append(net)
        return SharedMemoryReduce(comm, net, optimizer, node=comm.split(comm.rank * 2 // comm.size))

    import distnn.train
    original, distnn.train.make_reducer = distnn.train.make_reducer, two_nodes
    try:
        assert run(cfg, given, MPIComm(world)) == 0
    finally:
        distnn.train.make_reducer = original
    params = seen[0].params
    everyone = world.allgather(params)
    for other in everyone:
        assert np.array_equal(other, params)  # bitwise: same updates from the same sums
    assert not np.array_equal(params, MLP(cfg.layers, activation=cfg.activation,
                                          dtype="float64", init=cfg.init).params)
    # The sharded, summed evaluation equals one process counting the whole test set.
    import json

    import h5py
    with h5py.File(data) as f:
        x, y = f["test/images"][()] / 255.0, f["test/labels"][()]
    reported = json.loads(metrics.read_text().splitlines()[-1])["test_accuracy"]
    assert reported == np.mean(seen[0].predict(x) == y)


@pytest.mark.parametrize("extra", [[], REGULARISED, CONV_REGULARISED], ids=_name)
def test_resume_equals_uninterrupted_for_same_ranks(world, data, mpi_tmp_path, extra):
    args = ["--data", str(data), "--epochs", "3", "--batch-size", "12", "--lr", "0.3",
            "--momentum", "0.9", "--schedule", "cosine", *SMALL, *extra]
    full, cut = str(mpi_tmp_path / "full.h5"), str(mpi_tmp_path / "cut.h5")
    cfg, given = parse_args([*args, "--checkpoint", full])
    assert run(cfg, given, MPIComm(world)) == 0
    cfg, given = parse_args([*args, "--checkpoint", cut])
    assert run(cfg, given, MPIComm(world), stop=StopOnRank0At(world, 27)) == EXIT_INTERRUPTED
    assert read_checkpoint(cut)["position"]["step"] == 7  # 20 steps/epoch: epoch 2, step 7
    cfg, given = parse_args([*args, "--checkpoint", cut, "--resume"])
    assert run(cfg, given, MPIComm(world)) == 0
    assert np.array_equal(load_checkpoint(cut).params, load_checkpoint(full).params)


def test_regularised_training_is_the_same_whichever_reducer_sums(world, data, mpi_tmp_path):
    # The same masks and distortions on each rank; shm shares max-norm out over the
    # node's ranks, allreduce has every rank do all of it: only rounding may differ.
    args = ["--data", str(data), "--epochs", "2", "--batch-size", "12", "--lr", "0.3",
            *SMALL, *REGULARISED]
    for reduce in ("allreduce", "shm"):
        cfg, given = parse_args([*args, "--reduce", reduce,
                                 "--checkpoint", str(mpi_tmp_path / f"{reduce}.h5")])
        assert run(cfg, given, MPIComm(world)) == 0
    shm, allreduce = (load_checkpoint(mpi_tmp_path / f"{r}.h5") for r in ("shm", "allreduce"))
    np.testing.assert_allclose(shm.params, allreduce.params, rtol=1e-9, atol=1e-12)
    norms = np.linalg.norm(shm.weights[0], axis=1)
    assert np.isclose(norms.max(), 1.0)  # the constraint binds, and holds


# Mini-batch training on P ranks sums the same samples of each batch in P groups:
# only the order of the floating-point additions differs from one process. Measured
# after 5 epochs: about 3e-16 in float64, 4e-7 in float32.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the parameters, relative to the largest |b|."""
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def _on_first(world, p: int, argv: list[str], stop=None) -> None:
    """``run`` on world ranks 0..p-1 (the others wait): status 0, or 75 given ``stop``."""
    comm = first_ranks(world, p)
    if comm is not None:
        cfg, given = parse_args(argv)
        status = run(cfg, given, comm, stop=stop and stop(comm))
        assert status == (EXIT_INTERRUPTED if stop else 0), status
    world.Barrier()


@pytest.mark.parametrize("dtype,reduce,extra", [
    ("float64", "allreduce", []), ("float64", "shm", []), ("float32", "allreduce", []),
    ("float32", "shm", []), ("float64", "shm", REGULARISED), ("float32", "allreduce", REGULARISED),
    ("float64", "allreduce", CONV), ("float64", "shm", CONV_REGULARISED)],
    ids=lambda v: v if isinstance(v, str) else _name(v))
def test_mini_batch_training_is_the_same_on_every_number_of_ranks(world, data, mpi_tmp_path,
                                                                  dtype, reduce, extra):
    """5 epochs of batches of 12 (20 steps each, momentum, a schedule) on P = 1 .. the
    world's size: each batch is the same samples whatever P (distnn.data.order), and
    each sample the same masks and distortions (distnn.noise)."""
    args = ["--data", str(data), "--epochs", "5", "--batch-size", "12", "--lr", "0.3",
            "--momentum", "0.9", *SMALL, "--dtype", dtype, "--reduce", reduce, *extra]
    for p in range(1, world.size + 1):
        _on_first(world, p, [*args, "--checkpoint", str(mpi_tmp_path / f"p{p}.h5")])
    one = load_checkpoint(mpi_tmp_path / "p1.h5").params
    assert read_checkpoint(mpi_tmp_path / "p1.h5")["config"]["partitions"] == 12
    for p in range(2, world.size + 1):
        other = load_checkpoint(mpi_tmp_path / f"p{p}.h5").params
        assert _relative(other, one) < TOLERANCE[dtype], p
    assert _relative(one + 1e-3, one) > TOLERANCE[dtype]  # the comparison can fail


@pytest.mark.parametrize("dtype,extra", [("float64", []), ("float32", []), ("float64", CONV)],
                         ids=lambda v: v if isinstance(v, str) else _name(v))
def test_a_run_resumed_on_another_number_of_ranks_goes_on_the_same(world, data, mpi_tmp_path,
                                                                   dtype, extra):
    """2 ranks stopped mid-epoch, then resumed on 1 rank and on 3 (where the world has
    them): both end where the uninterrupted 2-rank run does."""
    args = ["--data", str(data), "--epochs", "4", "--batch-size", "12", "--lr", "0.3",
            "--momentum", "0.9", *SMALL, "--dtype", dtype, *extra]
    whole = str(mpi_tmp_path / "whole.h5")
    _on_first(world, 2, [*args, "--checkpoint", whole])
    for p in [q for q in (1, 3) if q <= world.size]:
        cut = str(mpi_tmp_path / f"cut{p}.h5")
        _on_first(world, 2, [*args, "--checkpoint", cut],
                  stop=lambda comm: StopOnRank0At(comm, 27))
        if world.rank == 0:
            assert read_checkpoint(cut)["position"] | {"epoch_cost": 0} == {
                "epoch": 1, "step": 7, "steps": 20, "epoch_cost": 0, "ranks": 2}
        _on_first(world, p, [*args, "--checkpoint", cut, "--resume"])
        resumed = load_checkpoint(cut).params
        assert _relative(resumed, load_checkpoint(whole).params) < TOLERANCE[dtype], p


def test_oversubscribed_node_gets_a_note(world, data, mpi_tmp_path, capsys):
    args = ["--data", str(data), "--checkpoint", str(mpi_tmp_path / "o.h5"), "--epochs", "1",
            "--batch-size", "12", *SMALL]
    cfg, given = parse_args(args)
    assert run(cfg, given, MPIComm(world)) == 0
    import os
    noted = "ranks share" in capsys.readouterr().err
    assert noted == (world.rank == 0 and world.size > (os.cpu_count() or 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
def test_a_replica_that_drifts_stops_the_run_naming_its_ranks(world, data, mpi_tmp_path,
                                                              monkeypatch, reduce, dtype):
    """The last rank's replica gets 1e-3 added to one weight after its 3rd gradient.
    With shm the ranks stand in for two nodes, whose replicas are separate; every
    rank of the second node then holds the drifted one."""
    import distnn.train
    from distnn.replicas import ReplicaMismatch

    last = world.size - 1

    def drifting(comm, net, optimizer, kind):
        if kind == "shm":
            reducer = SharedMemoryReduce(comm, net, optimizer,
                                         node=comm.split(comm.rank * 2 // comm.size))
        else:
            reducer = FusedAllreduce(comm, net)
        if comm.rank == last:
            gradient, calls = net.gradient, [0]

            def drifting_gradient(*args, **kwargs):
                calls[0] += 1
                if calls[0] == 3:
                    net.params[0] += 1e-3
                return gradient(*args, **kwargs)

            net.gradient = drifting_gradient
        return reducer

    monkeypatch.setattr(distnn.train, "make_reducer", drifting)
    args = ["--data", str(data), "--checkpoint", str(mpi_tmp_path / "c.h5"), "--epochs", "2",
            "--batch-size", "12", "--reduce", reduce, *SMALL, "--dtype", dtype]
    cfg, given = parse_args(args)
    with pytest.raises(ReplicaMismatch) as raised:  # on every rank alike: nobody is left waiting
        run(cfg, given, MPIComm(world))
    message = str(raised.value)
    drifted = [r for r in range(world.size)
               if r == last or (reduce == "shm" and r * 2 // world.size == 1)]
    named = [int(r) for r in re.findall(r"rank (\d+) on \S+ by up to \S+ in the parameters",
                                        message)]
    assert message.startswith("the replicas differ after epoch 1, against rank 0's"), message
    assert named == drifted, message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
def test_replicas_checked_every_step_raise_no_false_alarm(world, data, mpi_tmp_path, reduce,
                                                          dtype):
    args = ["--data", str(data), "--checkpoint", str(mpi_tmp_path / "c.h5"), "--epochs", "2",
            "--batch-size", "12", "--reduce", reduce, "--check-every", "1", "--momentum", "0.9",
            *SMALL, "--dtype", dtype]
    cfg, given = parse_args(args)
    assert run(cfg, given, MPIComm(world)) == 0


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_a_checkpoint_that_is_the_data_stops_every_rank_alike(how, world, data, mpi_tmp_path,
                                                              capsys):
    """Rank 0 sees it, by any name, before anything is read; every rank stops with 2, and
    rank 0 says why in one line; the data is as it was, and no lock is left."""
    target = data if how == "same" else mpi_tmp_path / f"{how}-to-data.h5"
    if world.rank == 0 and how != "same":
        (target.symlink_to if how == "symlink" else target.hardlink_to)(data)
    world.Barrier()
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    status = main(["--data", str(data), "--checkpoint", str(target), *SMALL, "--epochs", "1"],
                  MPIComm(world))
    lines = world.allgather([line for line in capsys.readouterr().err.splitlines()
                             if "error" in line])
    assert world.allgather(status) == [EXIT_USAGE] * world.size
    assert lines == [[f"distnn.train: error: --checkpoint {target} is the data it trains on "
                      "(--data); give another path"]] + [[]] * (world.size - 1)
    world.Barrier()
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    assert not Path(f"{target}.lock").exists()
