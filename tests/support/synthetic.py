"""Small learnable data files for tests: class prototypes plus noise, in distnn's schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distnn.data.store import SCHEMA_VERSION, write_atomic


def make_dataset(path: str | Path, n_train: int = 480, n_test: int = 120,
                 shape: tuple[int, int] = (4, 4), n_classes: int = 4, seed: int = 0) -> Path:
    """Write a data file whose classes a small MLP can tell apart; return its path."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (n_classes, int(np.prod(shape))))

    def split(n: int) -> dict[str, np.ndarray]:
        labels = rng.integers(0, n_classes, n).astype(np.uint8)
        noise = rng.normal(0, 40, (n, prototypes.shape[1]))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return {"images": images, "labels": labels}

    attrs = {"schema_version": SCHEMA_VERSION, "source": "synthetic (tests)",
             "source_sha256": "", "image_shape": np.array(shape), "n_classes": n_classes,
             "shuffle_seed": seed}
    return write_atomic(path, {"train": split(n_train), "test": split(n_test)}, attrs)
