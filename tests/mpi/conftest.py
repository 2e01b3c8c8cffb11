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
