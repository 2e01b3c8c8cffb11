"""The accuracy recipes (docs/accuracy.md) reach what it says, on real MNIST: slow, minutes each.

    python -m pytest -m slow tests/system/test_recipes.py -s

Needs mpirun (the mpich extra); the default data/mnist.h5 is prepared first if
missing. The accuracy is counted again here from the checkpoint, by the whole
network in one process, not taken from the trainer's report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_recipe(script: str, tmp_path: Path, *args: str, timeout: float) -> tuple[float, list]:
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not found (pip install -e '.[mpich]')")
    env = {**os.environ, "DISTNN_RUN_DIR": str(tmp_path / "run"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "launch" / "recipes" / script), *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    print(result.stderr[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "test_accuracy" in r]
    net = load_checkpoint(tmp_path / "run" / "checkpoint.h5")
    import h5py
    with h5py.File(ROOT / records[0]["config"]["data"]) as f:
        x, y = f["test/images"][()] / np.float32(255), f["test/labels"][()]
    counted = float(np.mean(net.predict(x.astype(net.dtype)) == y))
    assert counted == pytest.approx(epochs[-1]["test_accuracy"])
    return counted, epochs


@pytest.mark.slow
@pytest.mark.parametrize("recipe, minutes, bar", [
    pytest.param("mnist-99.sh", 15, 0.99, marks=pytest.mark.time_limit(20 * 60), id="mlp-99"),
    pytest.param("mnist-cnn.sh", 25, 0.995, marks=pytest.mark.time_limit(30 * 60),
                 id="conv-99.5"),
])
def test_an_mnist_recipe_reaches_its_bar_on_2_ranks(recipe, minutes, bar, tmp_path):
    accuracy, epochs = run_recipe(recipe, tmp_path, "-n", "2", timeout=minutes * 60)
    seconds = sum(e["seconds"] for e in epochs)
    print(f"test accuracy {accuracy:.2%} after {len(epochs)} epochs, {seconds:.0f} s training")
    assert accuracy >= bar


@pytest.mark.slow
@pytest.mark.time_limit(30 * 60)
def test_the_fashion_conv_net_recipe_reaches_92_percent_on_2_ranks(tmp_path):
    if not (ROOT / "data" / "fashion-mnist.h5").exists() \
            and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST is not here (apt-get install dataset-fashion-mnist)")
    accuracy, epochs = run_recipe("fashion-mnist-cnn.sh", tmp_path, "-n", "2",
                                  timeout=25 * 60)
    print(f"test accuracy {accuracy:.2%} after {len(epochs)} epochs")
    assert accuracy >= 0.92
