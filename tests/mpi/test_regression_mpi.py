"""Regression on several ranks: the same result as one process, scores counted once per row.

    mpirun -n 4 python -m pytest --with-mpi tests/mpi/test_regression_mpi.py

The sub-communicators of the first P ranks give P = 1..4 in one job (as in
tests/mpi/test_train_mpi.py); the batches do not depend on P, so after 5
epochs in float64 the parameters agree to rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.config import parse_args
from distnn.data.friedman import make_friedman
from distnn.data.imports import Layout, import_table
from distnn.train import run
from tests.support.ranks import first_ranks

pytestmark = pytest.mark.mpi(min_size=2)
ROOT = Path(__file__).resolve().parents[2]

ARGS = ["--layers", "10,16,16,1", "--batch-size", "16", "--lr", "0.05", "--momentum", "0.9",
        "--warmup-epochs", "0", "--no-progress", "--commit-every", "0", "--dtype", "float64",
        "--epochs", "5"]


@pytest.fixture
def friedman(world, mpi_tmp_path):
    path = mpi_tmp_path / "f.h5"
    if world.rank == 0:
        make_friedman(path, train_rows=320, test_rows=90, sigma=0.5, seed=4)
    world.Barrier()
    return path


@pytest.mark.parametrize("reduce", ["allreduce", "shm"])
def test_a_regression_on_any_number_of_ranks_ends_where_one_process_does(world, friedman,
                                                                         mpi_tmp_path, reduce):
    for p in range(1, world.size + 1):
        comm = first_ranks(world, p)
        if comm is not None:
            cfg, given = parse_args(["--data", str(friedman), *ARGS, "--reduce", reduce,
                                     "--checkpoint", str(mpi_tmp_path / f"{reduce}{p}.h5"),
                                     "--metrics", str(mpi_tmp_path / f"{reduce}{p}.jsonl")])
            assert run(cfg, given, comm) == 0
        world.Barrier()
    one = load_checkpoint(mpi_tmp_path / f"{reduce}1.h5").params
    scores = json.loads((mpi_tmp_path / f"{reduce}1.jsonl").read_text().splitlines()[-1])
    for p in range(2, world.size + 1):
        many = load_checkpoint(mpi_tmp_path / f"{reduce}{p}.h5").params
        assert np.max(np.abs(many - one)) <= 1e-12 * np.max(np.abs(one))
        theirs = json.loads((mpi_tmp_path / f"{reduce}{p}.jsonl").read_text().splitlines()[-1])
        for key in ("test_rmse", "test_mae", "test_r2"):  # every test row counted once
            assert theirs[key] == pytest.approx(scores[key], rel=1e-10)


def test_an_imported_csv_of_named_classes_on_any_number_of_ranks(world, mpi_tmp_path):
    """The iris table, brought in from its CSV: the same parameters on 1..4 ranks, and
    every rank's checkpoint names the classes."""
    path = mpi_tmp_path / "iris.h5"
    if world.rank == 0:
        import_table(ROOT / "data" / "examples" / "iris.csv", path, task="classification",
                     layout=Layout(target=("species",)), test_fraction=0.2, seed=1)
    world.Barrier()
    args = ["--data", str(path), "--layers", "4,8,3", "--batch-size", "8", "--epochs", "3",
            "--dtype", "float64", "--no-progress", "--commit-every", "0", "--partitions", "4"]
    for p in range(1, world.size + 1):
        comm = first_ranks(world, p)
        if comm is not None:
            cfg, given = parse_args([*args, "--checkpoint", str(mpi_tmp_path / f"i{p}.h5")])
            assert run(cfg, given, comm) == 0
        world.Barrier()
    one = read_checkpoint(mpi_tmp_path / "i1.h5")
    assert one["data"]["names"] == {"classes": ["setosa", "versicolor", "virginica"],
                                    "features": ["sepal_length", "sepal_width",
                                                 "petal_length", "petal_width"]}
    for p in range(2, world.size + 1):
        many = load_checkpoint(mpi_tmp_path / f"i{p}.h5").params
        assert np.max(np.abs(many - one["params"])) <= 1e-12 * np.max(np.abs(one["params"]))


def test_a_table_with_no_layers_given_trains_on_any_number_of_ranks(world, friedman,
                                                                   mpi_tmp_path):
    """No --layers: rank 0 reads the ends off the file, every rank builds 10,256,1 and
    ends where one process does."""
    args = [a for a in ARGS if a != "10,16,16,1" and a != "--layers"]
    for p in range(1, world.size + 1):
        comm = first_ranks(world, p)
        if comm is not None:
            cfg, given = parse_args(["--data", str(friedman), *args, "--epochs", "1",
                                     "--checkpoint", str(mpi_tmp_path / f"n{p}.h5")])
            assert run(cfg, given, comm) == 0
        world.Barrier()
    one = read_checkpoint(mpi_tmp_path / "n1.h5")
    assert one["config"]["layers"] == one["model"]["sizes"] == [10, 256, 1]
    for p in range(2, world.size + 1):
        many = read_checkpoint(mpi_tmp_path / f"n{p}.h5")
        assert many["model"]["sizes"] == [10, 256, 1]
        assert np.max(np.abs(many["params"] - one["params"])) <= \
            1e-12 * np.max(np.abs(one["params"]))
