"""Streamed training rows under mpirun -n 2 and -n 4: the parameters of one process to
1e-12 in float64, and a run stopped mid-epoch on every rank resumed on one rank (another
number of ranks, as an elastic run goes on) ending as the uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from distnn.checkpoint import read_checkpoint
from distnn.comm import MPIComm, SerialComm
from distnn.config import parse_args
from distnn.protocol import EXIT_INTERRUPTED
from distnn.train import run
from tests.support.stopping import StopOnRank0At

pytestmark = pytest.mark.mpi(min_size=2)

# 480 rows of 17 bytes, 4 partitions of 120, windows of 32 rows: a rank streams two
# windows of each of its partitions, 1,088 bytes a partition, where holding them takes
# 2,040: the budget lets each rank stream, and none hold its rows.
RUN = ["--layers", "16,12,4", "--batch-size", "16", "--lr", "0.5", "--warmup-epochs", "0",
       "--no-progress", "--partitions", "4", "--window", "32", "--epochs", "3",
       "--dtype", "float64", "--commit-every", "0"]


def params(path) -> np.ndarray:
    return read_checkpoint(path)["params"]


def test_streamed_ranks_end_as_one_process_and_resume_on_another_number(world, shared_dataset,
                                                                        mpi_tmp_path, capsys):
    if world.size > 4:
        pytest.skip("4 partitions")
    data = shared_dataset("d.h5")
    args = ["--data", str(data), *RUN, "--memory-budget", str(1100 * 4 // world.size)]
    one, status = mpi_tmp_path / "one.h5", None
    if world.rank == 0:  # one process, its rows streamed too (the budget is per rank)
        cfg, given = parse_args([*args, "--memory-budget", "4400", "--checkpoint", str(one)])
        status = run(cfg, given, SerialComm())
    world.Barrier()
    assert world.bcast(status if world.rank == 0 else None) == 0
    many, cut = mpi_tmp_path / "many.h5", mpi_tmp_path / "cut.h5"
    cfg, given = parse_args([*args, "--checkpoint", str(many)])
    capsys.readouterr()
    assert run(cfg, given, MPIComm(world)) == 0
    if world.rank == 0:
        assert f"{world.size} of {world.size} rank(s) stream" in capsys.readouterr().err
    cfg, given = parse_args([*args, "--checkpoint", str(cut)])
    assert run(cfg, given, MPIComm(world), stop=StopOnRank0At(world, 40)) == EXIT_INTERRUPTED
    world.Barrier()
    resumed = None
    if world.rank == 0:  # epoch 2, step 10; the rest on one rank, streamed
        assert read_checkpoint(cut)["position"]["step"] == 10
        cfg, given = parse_args([*args, "--memory-budget", "4400", "--checkpoint", str(cut),
                                 "--resume"])
        resumed = run(cfg, given, SerialComm())
    assert world.bcast(resumed) == 0
    np.testing.assert_allclose(params(many), params(one), rtol=0, atol=1e-12)
    np.testing.assert_allclose(params(cut), params(one), rtol=0, atol=1e-12)
