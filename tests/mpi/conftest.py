"""The job's communicators, for the tests run under mpirun."""

from __future__ import annotations

import pytest


@pytest.fixture
def world():
    """mpi4py's COMM_WORLD: every rank of the job."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


@pytest.fixture
def comm(world):
    """distnn's communicator of every rank of the job."""
    from distnn.comm import MPIComm
    return MPIComm(world)


@pytest.fixture
def shared_dataset(world, mpi_tmp_path):
    """Factory: a synthetic data file (tests.support.synthetic) that rank 0 writes and
    every rank reads once it is there."""
    from tests.support.synthetic import make_dataset

    def make(name: str = "d.h5", **sizes: int):
        path = mpi_tmp_path / name
        if world.rank == 0:
            make_dataset(path, **sizes)
        world.Barrier()
        return path

    return make
