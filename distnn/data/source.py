"""`Source`: a data set as read from its origin, before it is stored.

Readers (`idx.py`, `mnist_pickle.py`) return a `Source`; `prepare.py` checks
it once with `check_source` and `store.py` writes it. Keeping the checks here
means every reader gets the same ones and the same error messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


@dataclass(frozen=True)
class Source:
    """Both splits of a data set plus where they came from.

    Images are flattened rows, (N, n_features) uint8 with
    n_features = prod(image_shape); labels are (N,) uint8.
    """

    name: str  # human-readable origin, e.g. "idx:/usr/share/datasets/fashion-mnist"
    sha256: str  # "<hex>  <file>" lines (sha256sum format) of the files read
    image_shape: tuple[int, ...]
    train_images: np.ndarray  # (N_train, n_features) uint8
    train_labels: np.ndarray  # (N_train,) uint8
    test_images: np.ndarray  # (N_test, n_features) uint8
    test_labels: np.ndarray  # (N_test,) uint8


def check_source(src: Source, n_classes: int | None = None) -> int:
    """Validate shapes, dtypes and labels of `src`; return the number of classes.

    Without `n_classes`, it is max(train label) + 1 (so classes are 0..K-1);
    with it, every label must be below it.
    """
    n_features = int(np.prod(src.image_shape))
    for split in ("train", "test"):
        images = getattr(src, f"{split}_images")
        labels = getattr(src, f"{split}_labels")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{src.name}: {split} images and labels must be uint8")
        if images.ndim != 2 or images.shape[1] != n_features:
            raise DataError(
                f"{src.name}: {split} images have shape {images.shape}, "
                f"expected (N, {n_features}) for images of shape {src.image_shape}"
            )
        if labels.ndim != 1:
            raise DataError(f"{src.name}: {split} labels have shape {labels.shape}, expected (N,)")
        if len(images) != len(labels):
            raise DataError(
                f"{src.name}: {split} has {len(images)} images but {len(labels)} labels"
            )
        if len(images) == 0:
            raise DataError(f"{src.name}: {split} split is empty")
    if n_classes is None:
        n_classes = int(src.train_labels.max()) + 1
        empty = np.flatnonzero(np.bincount(src.train_labels, minlength=n_classes) == 0)
        if len(empty):  # a stray label 200 must not silently make 201 classes
            raise DataError(
                f"{src.name}: {len(empty)} of the {n_classes} classes 0..{n_classes - 1} (the "
                f"largest label + 1) have no training samples, e.g. class {int(empty[0])}; "
                f"pass --classes K to keep classes that have none"
            )
    if not 1 <= n_classes <= 256:
        raise DataError(f"number of classes must be in 1..256 (uint8 labels), got {n_classes}")
    for split in ("train", "test"):
        labels = getattr(src, f"{split}_labels")
        top = int(labels.max())
        if top >= n_classes:
            raise DataError(
                f"{src.name}: {split} label {top} is out of range for {n_classes} classes "
                f"(labels must be 0..{n_classes - 1})"
            )
    return n_classes
