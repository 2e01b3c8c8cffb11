"""distnn.sklearn's estimators under `mpirun -n P`: a user's script, unchanged, on every
rank (tests/support/sklearn_script.py). Each rank ends with the model one process gets,
predicts alike, and only rank 0 prints; ranks given different data all refuse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (the sklearn extra)")
from tests.support.mpi_envs import mpi_env  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None,
                                reason="no mpirun on PATH (pip install mpich)")
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "sklearn_script.py"


def run(tmp: Path, mode: str, ranks: int | None) -> tuple[list[dict[str, np.ndarray]], str]:
    """The script on ``ranks`` ranks (None: one process, no mpirun): what each rank
    held, and what the job printed."""
    env = mpi_env("mpich")
    command = [env["PYTHON"], str(SCRIPT), mode, str(tmp / "held")]
    if ranks is not None:
        command = ["mpirun", "-n", str(ranks), *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env,
                            cwd=tmp)
    assert result.returncode == 0, result.stderr
    held = [dict(np.load(tmp / f"held-{r}.npz")) for r in range(ranks or 1)]
    return held, result.stdout


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, np.ndarray]:
    held, _ = run(tmp_path_factory.mktemp("alone"), "fit", None)
    return held[0]


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_rank_ends_with_the_model_one_process_gets(ranks, alone, tmp_path):
    held, printed = run(tmp_path, "fit", ranks)
    for mine in held:
        assert mine.keys() == alone.keys()
        for key, value in alone.items():
            if key.startswith("unseeded"):  # its seed is drawn afresh: not one process's
                continue
            if key in ("clf.predict", "clf.n_iter_", "reg.n_iter_"):  # classes, counts
                np.testing.assert_array_equal(mine[key], value, err_msg=key)
            else:  # float64
                np.testing.assert_allclose(mine[key], value, rtol=0, atol=1e-12, err_msg=key)
    for mine in held[1:]:  # every rank predicts alike; the unseeded fit shared rank 0's seed
        for key in mine:
            np.testing.assert_array_equal(mine[key], held[0][key], err_msg=key)
    assert alone["reg.n_iter_"] < 30  # early stopping ended it, on every rank alike
    # Only rank 0 prints: each of the verbose fit's epochs once
    lines = [line for line in printed.splitlines() if line.startswith("Iteration ")]
    assert [line.split(",")[0] for line in lines] == [f"Iteration {k}" for k in range(1, 9)]


def test_ranks_given_other_data_all_refuse(tmp_path):
    held, _ = run(tmp_path, "differ", 2)
    for mine in held:  # every rank raised, none was left waiting
        assert str(mine["refused"]).startswith("rank(s) 1 of 2 passed other data to fit than "
                                               "rank 0: under mpirun every rank must pass the "
                                               "same X, y and sample_weight")



def test_a_rank_whose_rows_are_refused_takes_every_rank_with_it(tmp_path):
    held, _ = run(tmp_path, "nan", 3)
    assert "Input X contains NaN" in str(held[1]["refused"])  # scikit-learn's own words
    for r in (0, 2):  # the others heard of it, instead of waiting for rank 1
        assert str(held[r]["refused"]).startswith("rank(s) 1 of 3 could not take their data "
                                                  "(Input X contains NaN")
