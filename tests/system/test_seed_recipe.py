"""The seed's recipe reaches >= 94% MNIST test accuracy within 10 epochs, in one process.

Recipe (Nielsen, chapter 1): sizes [784, 30, 10], sigmoid, quadratic cost,
standard-normal init, mini-batches of 10, eta = 3.0, pixels scaled to [0, 1].
Needs data/mnist.h5 (written by the data pipeline); skipped without it.
Run: python -m pytest tests/system/test_seed_recipe.py -m slow -s
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from distnn.network import MLP
from distnn.optim import SGD

MNIST = Path(__file__).resolve().parents[2] / "data" / "mnist.h5"


def seed_recipe_accuracies(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    epochs: int = 10,
    seed: int = 0,
) -> Iterator[float]:
    """Train with the seed's mini-batch SGD; yield the test accuracy after each epoch."""
    net = MLP([784, 30, 10], activation="sigmoid", cost="quadratic", init="standard", seed=seed)
    optimizer = SGD(net.params)
    eta, m = 3.0, 10
    grad = np.empty_like(net.params)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(train_x))
        for k in range(0, len(order) - m + 1, m):
            batch = order[k : k + m]
            net.gradient(train_x[batch], train_y[batch], out=grad)
            grad /= m  # w -> w - (eta/m) sum_x dC_x/dw
            optimizer.step(net.params, grad, eta)
        yield float(np.mean(net.predict(test_x) == test_y))


@pytest.mark.slow
def test_seed_recipe_reaches_94_percent() -> None:
    if not MNIST.exists():
        pytest.skip(f"{MNIST} is missing; build it with the data pipeline first")
    from distnn.data import read_shard

    train_images, train_labels = read_shard(str(MNIST), "train")
    test_images, test_labels = read_shard(str(MNIST), "test")
    train_x = (train_images / np.float32(255.0)).astype(np.float32)
    test_x = (test_images / np.float32(255.0)).astype(np.float32)
    accuracies = []
    for epoch, accuracy in enumerate(
        seed_recipe_accuracies(train_x, train_labels, test_x, test_labels), start=1
    ):
        accuracies.append(accuracy)
        print(f"epoch {epoch}: test accuracy {accuracy:.4f}")
        if accuracy >= 0.94:
            break
    assert max(accuracies) >= 0.94, f"test accuracies per epoch: {accuracies}"
