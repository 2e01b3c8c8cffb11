"""MLP runs whose results conv nets (issue 38) must leave bitwise as they were.

``runs`` trains a small MLP with every regulariser (dropout on its inputs and
hidden units, max-norm, distortions) and momentum, in float64 and float32, on
P = 1 and on P = 2 with each reducer, and returns each run's parameters and
velocity; ``stopped`` writes a checkpoint of the float64 run on one rank, stopped
mid-epoch. The fixture ``tests/fixtures/mlp-b7e42d3.npz`` (and ``.h5``, that
checkpoint) holds what they gave at commit b7e42d3, the last before conv nets,
made once, by hand, by running this file there under two ranks:

    git worktree add --detach /tmp/wt-b7 b7e42d3
    PYTHONPATH=/tmp/wt-b7 mpirun -n 2 python tests/support/mlp_runs.py tests/fixtures/mlp-b7e42d3

(the file, not ``-m``: ``distnn`` and ``tests.support`` then come from that
tree). ``tests/mpi/test_mlp_unchanged_mpi.py`` runs ``runs`` with today's code
and compares; ``tests/unit/test_checkpoint.py`` loads and resumes the checkpoint.

A run's bits depend on the arithmetic of the machine as well as on the code
(BLAS kernels, numpy's vector loops): ``machine()`` names what they ran on, and
the fixture keeps it, so that a test can tell a change of code from a change of
machine.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np

# 240 rows of 4x4 images, 4 classes (tests.support.synthetic's defaults): 20 steps an epoch.
DATA = {"n_train": 240, "n_test": 60}
TRAIN = ["--layers", "16,8,4", "--epochs", "2", "--batch-size", "12", "--lr", "0.3",
         "--momentum", "0.9", "--dropout", "0.2", "--input-dropout", "0.1", "--max-norm", "1.0",
         "--augment", "rotate=5,scale=0.05,elastic=0.3,sigma=1", "--no-progress",
         "--commit-every", "0"]
# name: (ranks, reducer, dtype). On one rank both reducers are the same Allreduce.
RUNS = {f"p{p}-{reduce}-{dtype}": (p, reduce, dtype)
        for dtype in ("float64", "float32")
        for p, reduce in ((1, "allreduce"), (2, "allreduce"), (2, "shm"))}
STOP_AT = 30  # the float64 run on one rank stopped after its 29th step: epoch 2, step 9
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mlp-b7e42d3"  # .npz, .h5
# Where the machine's arithmetic is not the fixture's (other BLAS kernels, another
# numpy), the bits may differ by rounding alone: then the rank-count guarantee's bound.
ROUNDING = {"float64": 1e-12, "float32": 1e-5}


def machine() -> str:
    """What decides the bits besides the code: numpy, its BLAS and the kernels it runs."""
    from threadpoolctl import threadpool_info

    blas = [f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return f"numpy {np.__version__}; " + ", ".join(blas)


def before() -> tuple[dict[str, np.ndarray], bool]:
    """The fixture's arrays, and whether this machine computes as the fixture's did."""
    fixture = np.load(f"{FIXTURE}.npz")
    assert str(fixture["commit"]).startswith("b7e42d3"), fixture["commit"]
    return dict(fixture), str(fixture["machine"]) == machine()


def differs(now: np.ndarray, then: np.ndarray, same_machine: bool) -> str:
    """How ``now`` differs from the fixture's ``then``: "" if not at all (on another
    machine: by no more than rounding)."""
    if now.dtype != then.dtype or now.shape != then.shape:
        return f"{now.dtype} {now.shape}, was {then.dtype} {then.shape}"
    if np.array_equal(now, then):
        return ""
    apart = float(np.max(np.abs(now - then)))
    if not same_machine and apart <= ROUNDING[str(now.dtype)] * float(np.max(np.abs(then))):
        return ""
    return f"up to {apart:.3g} apart"


def args(data: Path, checkpoint: Path, reduce: str, dtype: str) -> list[str]:
    return ["--data", str(data), "--checkpoint", str(checkpoint), *TRAIN, "--reduce", reduce,
            "--dtype", dtype]


def _train(argv: list[str], comm, stop=None) -> int:
    from distnn.config import parse_args
    from distnn.train import run

    cfg, given = parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        return run(cfg, given, comm) if stop is None else run(cfg, given, comm, stop=stop)


def runs(world, where: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every run of ``RUNS`` (collective over ``world``, of 2 ranks or more; ``where`` the
    same directory on every rank): on rank 0 their parameters and velocities, as
    ``{"<run>/params": ..., "<run>/velocity": ...}``, and the runs that did not end with
    status 0, and how (on every rank)."""
    from distnn.checkpoint import read_checkpoint
    from tests.support.ranks import first_ranks
    from tests.support.synthetic import make_dataset

    data = where / "data.h5"
    if world.rank == 0:
        make_dataset(data, **DATA)
    world.Barrier()
    arrays, failed = {}, []
    for name, (p, reduce, dtype) in RUNS.items():
        comm = first_ranks(world, p)
        status = 0
        if comm is not None:
            try:
                status = _train(args(data, where / f"{name}.h5", reduce, dtype), comm)
            except Exception as err:  # the ranks that did not raise must not wait for it
                status = f"{type(err).__name__}: {err}"
        statuses = [s for s in world.allgather(status) if s != 0]
        if statuses:  # every rank goes on together, whatever happened
            failed.append(f"{name} ({statuses[0]})")
            continue
        if world.rank == 0:
            ckpt = read_checkpoint(where / f"{name}.h5")
            arrays[f"{name}/params"] = ckpt["params"]
            arrays[f"{name}/velocity"] = ckpt["optimizer"]["velocity"]
    return arrays, failed


def stopped(data: Path, checkpoint: Path) -> int:
    """The float64 run on one rank, stopped mid-epoch with its checkpoint: status 75."""
    from distnn.comm import SerialComm
    from tests.support.stopping import StopAtStep

    return _train(args(data, checkpoint, "allreduce", "float64"), SerialComm(),
                  stop=StopAtStep(STOP_AT))


def main(out: str) -> None:
    """Write ``out``.npz (every run's arrays, and the machine) and ``out``.h5 (the stopped
    run's checkpoint), under mpirun -n 2."""
    import shutil
    import subprocess
    import tempfile

    from mpi4py import MPI

    import distnn

    world = MPI.COMM_WORLD
    assert world.size == 2, "run under mpirun -n 2"
    where = Path(world.bcast(tempfile.mkdtemp() if world.rank == 0 else None))
    arrays, failed = runs(world, where)
    assert not failed, failed
    if world.rank == 0:
        assert stopped(where / "data.h5", where / "stopped.h5") == 75
        tree = Path(distnn.__file__).resolve().parents[1]
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "distnn"],
                               capture_output=True, text=True).stdout.strip()
        np.savez(f"{out}.npz", commit=np.array(commit + (" (modified)" if dirty else "")),
                 machine=np.array(machine()), **arrays)
        shutil.copyfile(where / "stopped.h5", f"{out}.h5")
        shutil.rmtree(where)
        print(f"{out}.npz, {out}.h5: distnn at {commit}; {machine()}")


if __name__ == "__main__":
    main(sys.argv[1])
