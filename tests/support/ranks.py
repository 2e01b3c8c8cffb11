"""The first P ranks of a job as a job of their own: P = 1..size in one mpirun."""

from __future__ import annotations

from distnn.comm import MPIComm, SerialComm


def first_ranks(world, p: int):
    """A communicator of world ranks 0..p-1 (None on the others; SerialComm for P = 1).

    Collective over ``world``: every rank calls it, with the same p."""
    sub = world.Split(0 if world.rank < p else 1, world.rank)
    if world.rank >= p:
        sub.Free()
        return None
    return SerialComm() if p == 1 else MPIComm(sub)
