"""MLP runs as they were before conv nets: under mpirun -n 2 (or more) with --with-mpi.

    mpirun -n 2 python -m pytest --with-mpi tests/mpi/test_mlp_unchanged_mpi.py

Conv nets (issue 38) changed the code every MLP run goes through: the network built
from a spec, dropout given the fully connected layers, the memory check, the
checkpoint's model. An MLP must train as before, to the bit: the parameters and
velocity of the runs of ``tests/support/mlp_runs.py`` (P = 1 and 2, both reducers,
float64 and float32, every regulariser) against those that commit b7e42d3, the last
before conv nets, gave (``tests/fixtures/mlp-b7e42d3.npz``).
"""

from __future__ import annotations

import pytest

from tests.support.mlp_runs import before, differs, machine, runs

pytestmark = pytest.mark.mpi(min_size=2)


def test_mlp_runs_end_bitwise_as_before_conv_nets(world, mpi_tmp_path):
    arrays, failed = runs(world, mpi_tmp_path)
    then, same_machine = before()
    changed = []
    if world.rank == 0:  # the runs' arrays are rank 0's
        for key in sorted(then.keys() - {"commit", "machine"}):
            how = differs(arrays[key], then[key], same_machine) if key in arrays else "missing"
            if how:
                changed.append(f"{key}: {how}")
    changed = world.bcast(changed)  # every rank passes or fails alike
    assert not failed, f"runs that did not end with status 0: {failed}"
    assert not changed, (f"MLP runs changed since b7e42d3 (machine: {machine()}"
                         f"{'' if same_machine else ', the fixture: ' + str(then['machine'])}"
                         f"): " + "; ".join(changed))
