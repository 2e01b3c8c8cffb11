"""The README's "Your own data" commands, run as written: import a CSV, train, predict.

The commands are read from the README itself (the first ``sh`` block under the
heading), and run one by one in a directory of their own that holds a copy of
data/examples/, so that what a reader types is what is tested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distnn.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Your own data\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_own_data_example_runs_as_written(tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not found (pip install -e '.[mpich]')")
    shutil.copytree(ROOT / "data" / "examples", tmp_path / "data" / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = readme_commands()
    assert any("distnn.data import" in c for c in commands) and \
        any("distnn.predict" in c for c in commands)
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    # The three new flowers are one of each species, as a botanist would say.
    lines = (tmp_path / "runs" / "iris" / "predicted.csv").read_text().splitlines()
    assert lines[0] == "class,p_setosa,p_versicolor,p_virginica"
    assert [line.split(",")[0] for line in lines[1:]] == ["setosa", "versicolor", "virginica"]
    # The regression learnt most of what can be learnt: R^2 well above what the mean gives.
    data = read_checkpoint(tmp_path / "runs" / "friedman-csv" / "checkpoint.h5")["data"]
    assert data["task"] == "regression" and data["names"] == {
        "targets": ["y"], "features": [f"x{i}" for i in range(1, 11)]}
    r2 = float(re.search(r"final test RMSE .* R\^2 ([-\d.]+)", done.stdout + done.stderr)[1])
    assert r2 > 0.9, done.stdout + done.stderr
