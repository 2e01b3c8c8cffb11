"""A full disk under mpirun: rank 0 cannot write the checkpoint, and every rank hears of it.

    mpirun -n 2 python -m pytest --with-mpi tests/mpi/test_full_disk_mpi.py

Rank 0 alone writes; the others must not wait for a checkpoint that will never
come, nor go on training past one that was not written. tests/unit/test_full_disk.py
has the one-process cases, and why each write site fails as it does.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.config import parse_args
from distnn.train import run
from distnn.writes import WriteFailed
from tests.support.full_disk import refuse_checkpoint_closes, refuse_checkpoints

pytestmark = pytest.mark.mpi(min_size=2)

SMALL = ["--layers", "16,12,4", "--batch-size", "16", "--warmup-epochs", "0", "--no-progress",
         "--momentum", "0.9"]


@pytest.fixture
def data(shared_dataset):
    return shared_dataset("d.h5", n_train=160, n_test=40)


def train(comm, *args: str) -> int:
    cfg, given = parse_args(list(args))
    return run(cfg, given, comm)


@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
def test_every_rank_stops_with_the_same_line_when_the_epochs_checkpoint_is_refused(
        reduce, comm, data, mpi_tmp_path, monkeypatch):
    args = ["--data", str(data), *SMALL, "--epochs", "3", "--commit-every", "0",
            "--reduce", reduce]
    ckpt = mpi_tmp_path / f"c-{reduce}.h5"
    refuse_checkpoints(monkeypatch, errno.ENOSPC, lambda position: position["epoch"] == 2)
    with pytest.raises(WriteFailed) as failed:  # on every rank: none is left waiting
        train(comm, *args, "--checkpoint", str(ckpt))
    messages = comm.allgather(str(failed.value))
    assert messages == [f"cannot write {ckpt}: no space left on device; the checkpoint of "
                        "epoch 2, step 0 is kept"] * comm.size
    comm.barrier()
    if comm.rank == 0:
        assert read_checkpoint(ckpt)["position"]["epoch"] == 1
        assert not [p for p in mpi_tmp_path.iterdir() if ".tmp-" in p.name]
    monkeypatch.undo()  # room again: the run goes on from the checkpoint kept
    assert train(comm, *args, "--checkpoint", str(ckpt), "--resume") == 0
    assert train(comm, *args, "--checkpoint", str(mpi_tmp_path / f"ref-{reduce}.h5")) == 0
    comm.barrier()
    resumed = load_checkpoint(ckpt).params
    assert np.array_equal(resumed, load_checkpoint(mpi_tmp_path / f"ref-{reduce}.h5").params)


def test_a_checkpoint_refused_as_hdf5_closes_it_stops_every_rank_alike(comm, data, mpi_tmp_path,
                                                                      monkeypatch):
    """h5py's RuntimeError naming the errno, on rank 0 alone, is the same refusal."""
    ckpt = mpi_tmp_path / "closed.h5"
    refuse_checkpoint_closes(monkeypatch, errno.ENOSPC, lambda position: position["epoch"] == 2)
    with pytest.raises(WriteFailed) as failed:
        train(comm, "--data", str(data), *SMALL, "--epochs", "3", "--commit-every", "0",
              "--checkpoint", str(ckpt))
    assert comm.allgather(str(failed.value)) == [
        f"cannot write {ckpt}: no space left on device; the checkpoint of epoch 2, step 0 "
        "is kept"] * comm.size
    comm.barrier()
    monkeypatch.undo()
    assert read_checkpoint(ckpt)["position"]["epoch"] == 1


def test_refused_commits_do_not_stop_the_ranks(comm, data, mpi_tmp_path, monkeypatch):
    args = ["--data", str(data), *SMALL, "--epochs", "2", "--commit-every", "3"]
    ckpt, ref = mpi_tmp_path / "commits.h5", mpi_tmp_path / "commits-ref.h5"
    refused = refuse_checkpoints(monkeypatch, errno.EDQUOT, lambda position: position["step"])
    assert train(comm, *args, "--checkpoint", str(ckpt)) == 0
    assert len(refused) == (6 if comm.rank == 0 else 0)  # rank 0 alone writes
    monkeypatch.undo()
    assert train(comm, *args, "--checkpoint", str(ref)) == 0
    comm.barrier()
    assert np.array_equal(load_checkpoint(ckpt).params, load_checkpoint(ref).params)
