"""The replica check: every rank's parameters and optimizer state must be the same, bit for bit.

Data parallelism keeps the replicas identical by construction: the same start
(rank 0's, broadcast), the same summed gradient, the same update. A fault
that breaks that (a bit flip, a bug, a rank that missed an update) would
otherwise go on silently, each replica training a model of its own. So the
trainer compares them at the end of every epoch (and every ``--check-every``
steps): each rank hashes its parameters and optimizer state, and one
Allreduce of the hashes' MAX and MIN says whether they all agree. A hash, not
a floating-point checksum: summing the same numbers on two kinds of CPU can
round differently, and hashing the bytes cannot.

Only when they differ does the check find out by how much: rank 0 sends its
replica to all, and each rank measures its own against it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from distnn.comm import Comm


class ReplicaMismatch(Exception):
    """The replicas differ; raised on every rank alike, with the same message."""


def _hash(*arrays: np.ndarray) -> np.ndarray:
    """Two int64 halves of a 16-byte hash of the arrays' bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        digest.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return np.frombuffer(digest.digest(), np.int64).copy()


def check(comm: Comm, params: np.ndarray, state: np.ndarray, when: str) -> None:
    """Raise ReplicaMismatch, on every rank, unless every rank holds the same arrays."""
    if comm.size == 1:
        return
    h = _hash(params, state)
    both = comm.max_(np.concatenate([h, ~h]))  # MPI: max of h, and (as ~max ~h) its min
    if np.array_equal(both[:2], ~both[2:]):
        return
    theirs = [comm.bcast_(a.copy()) for a in (params, state)]  # MPI: rank 0's replica
    mine = [float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in
            zip((params, state), theirs)]
    everyone = comm.allgather(mine)  # MPI
    hosts = comm.allgather(comm.hostname())  # MPI
    differ = [f"rank {r} on {hosts[r]} by up to {p:.3g} in the parameters and {s:.3g} in the "
              f"optimizer state" for r, (p, s) in enumerate(everyone) if p or s]
    raise ReplicaMismatch(f"the replicas differ {when}, against rank 0's: "
                          + "; ".join(differ or ["in bits that compare equal as numbers"]))
