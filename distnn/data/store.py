"""The HDF5 file distnn trains from: its schema, atomic writing and validation.

Two schema versions are read (both documented in data/README.md). Version 2
holds any table: ``/SPLIT/features`` of any numeric dtype and ``/SPLIT/targets``,
class numbers (``task`` "classification") or real values (``task``
"regression"), with the scaling the trainer applies stored beside them
(``distnn.data.table`` writes it). Version 1 is MNIST's, as ``prepare`` writes it:

    /train/images   uint8 (N_train, n_features)   chunks of CHUNK_ROWS whole rows
    /train/labels   uint8 (N_train,)              chunks of CHUNK_ROWS
    /train/source_index uint32 (N_train,)         row i came from source row source_index[i]
    /test/...       the same for the test split (kept in source order)
    attrs: schema_version, source, source_sha256, image_shape, n_classes, shuffle_seed

Chunks are blocks of whole rows and uncompressed, so a contiguous block of
rows is read by touching only the chunks that hold it. Non-goal: parallel
(MPI-IO) HDF5; every rank opens the file read-only on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..atomic import atomic_path
from ..memory import unstored
from ..writes import new_hdf5, writing
from .errors import DataError

SCHEMA_VERSION = 1  # what prepare writes (images); tables are TABLE_VERSION
TABLE_VERSION = 2
VERSIONS = (SCHEMA_VERSION, TABLE_VERSION)
SPLITS = ("train", "test")
TASKS = ("classification", "regression")
MAX_CLASSES = 1 << 16  # class numbers stored as up to uint16 in a table
# The datasets of a split, by schema version: (features, targets).
NAMES = {SCHEMA_VERSION: ("images", "labels"), TABLE_VERSION: ("features", "targets")}
TABLE_ATTRS = ("schema_version", "source", "source_sha256", "task", "n_features",
               "shuffle_seed", "feature_scaling")
SCALINGS = ("divide_by_255", "standardize", "none")
CHUNK_ROWS = 256  # 256 x 784 B = 196 KiB per image chunk: fits h5py's 1 MiB chunk cache
LABEL_BLOCK = 1 << 20  # labels checked this many at a time
REQUIRED_ATTRS = ("schema_version", "source", "source_sha256", "image_shape", "n_classes",
                  "shuffle_seed")


def write_atomic(path: str | Path, splits: dict[str, dict[str, np.ndarray]],
                 attrs: dict[str, object]) -> Path:
    """Write `splits` ({"train": {"images", "labels", "source_index"}, "test": ...})
    and file `attrs` to `path`, all or nothing (see distnn.atomic).

    The temp file is validated before it is published: never publish a file
    our own reader would reject. On any error whatever was at `path` before is
    untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"output path is a directory: {path}")
    with writing(path), atomic_path(path) as tmp:  # WriteFailed: a full disk, say
        with new_hdf5(tmp) as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            for split, arrays in splits.items():
                _write_split(f, split, arrays)
        validate(tmp)
    return path


def _write_split(f: h5py.File, split: str, arrays: dict[str, np.ndarray]) -> None:
    """Write one split's datasets as row-block chunks."""
    group = f.create_group(split)
    for name, array in arrays.items():
        rows = max(1, min(CHUNK_ROWS, len(array)))
        group.create_dataset(name, data=array, chunks=(rows, *array.shape[1:]))


@contextmanager
def open_checked(path: str | Path) -> Iterator[h5py.File]:
    """Open `path` read-only after checking it follows the schema."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"data file not found: {path} (create it with: python -m distnn.data prepare)"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        _check_schema(f, path)
        yield f


def validate(path: str | Path) -> None:
    """Raise `DataError` unless `path` is a valid schema-1 data file."""
    with open_checked(path):
        pass


def _check_schema(f: h5py.File, path: Path) -> None:
    """Check attrs, groups, dtypes and shapes; each failure is one clear line."""
    version = f.attrs.get("schema_version")
    if version is None:
        raise DataError(f"{path}: no schema_version attribute; not a distnn data file")
    if int(version) not in VERSIONS:
        raise DataError(
            f"{path}: schema version {int(version)}, this distnn reads "
            f"{' and '.join(map(str, VERSIONS))}; re-run python -m distnn.data prepare"
        )
    if int(version) == TABLE_VERSION:
        _check_table(f, path)
        return
    for key in REQUIRED_ATTRS:
        if key not in f.attrs:
            raise DataError(f"{path}: missing file attribute {key!r}")
    image_shape = np.asarray(f.attrs["image_shape"])
    if image_shape.ndim != 1 or not np.issubdtype(image_shape.dtype, np.integer) \
            or np.any(image_shape < 1):
        raise DataError(f"{path}: attribute image_shape must be positive integers, "
                        f"got {image_shape.tolist()}")
    n_features = int(np.prod(image_shape))
    n_classes = f.attrs["n_classes"]
    if not (np.ndim(n_classes) == 0 and np.issubdtype(np.asarray(n_classes).dtype, np.integer)
            and 1 <= int(n_classes) <= 256):
        raise DataError(f"{path}: attribute n_classes must be an integer in 1..256 (uint8 "
                        f"labels), got {n_classes!r}")
    for split in SPLITS:
        if not isinstance(f.get(split), h5py.Group):
            raise DataError(f"{path}: missing group /{split}")
        for name, ndim in (("images", 2), ("labels", 1)):
            ds = f[split].get(name)
            if not isinstance(ds, h5py.Dataset):
                raise DataError(f"{path}: missing dataset /{split}/{name}")
            if ds.dtype != np.uint8:
                raise DataError(f"{path}: /{split}/{name} has dtype {ds.dtype}, expected uint8")
            if ds.ndim != ndim:
                raise DataError(f"{path}: /{split}/{name} has shape {ds.shape}, expected {ndim}-D")
        images, labels = f[split]["images"], f[split]["labels"]
        if images.shape[1] != n_features:
            raise DataError(
                f"{path}: /{split}/images has {images.shape[1]} features, image_shape "
                f"{tuple(image_shape.tolist())} needs {n_features}"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{path}: /{split} has {len(images)} images but {len(labels)} labels"
            )
        if len(labels) == 0:
            raise DataError(f"{path}: /{split} is empty: no {split} samples")
        for ds in (images, labels):
            problem = unstored(ds)
            if problem:
                raise DataError(f"{path}: {problem}")


def _attr_int(f: h5py.File, key: str, low: int, high: int, path: Path) -> int:
    value = f.attrs.get(key)
    if value is None:
        raise DataError(f"{path}: missing file attribute {key!r}")
    if not (np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.integer)
            and low <= int(value) <= high):
        raise DataError(f"{path}: attribute {key} must be an integer in {low}..{high}, "
                        f"got {value!r}")
    return int(value)


def _check_table(f: h5py.File, path: Path) -> None:
    """Schema 2: a table of features and targets, and its scaling."""
    for key in TABLE_ATTRS:
        if key not in f.attrs:
            raise DataError(f"{path}: missing file attribute {key!r}")
    task, scaling = str(f.attrs["task"]), str(f.attrs["feature_scaling"])
    if task not in TASKS:
        raise DataError(f"{path}: attribute task is {task!r}, expected one of {TASKS}")
    if scaling not in SCALINGS:
        raise DataError(f"{path}: attribute feature_scaling is {scaling!r}, expected one of "
                        f"{SCALINGS}")
    n_features = _attr_int(f, "n_features", 1, 1 << 31, path)
    width = (_attr_int(f, "n_classes", 2, MAX_CLASSES, path) if task == "classification"
             else _attr_int(f, "n_targets", 1, 1 << 16, path))
    if "image_shape" in f.attrs:  # images: what augmentation and conv layers will rely on
        shape = np.asarray(f.attrs["image_shape"])
        if shape.ndim != 1 or len(shape) not in (2, 3) or shape.dtype.kind not in "iu" \
                or np.any(shape < 1) or int(np.prod(shape)) != n_features:
            raise DataError(f"{path}: attribute image_shape must be (H, W) or (C, H, W), "
                            f"positive integers whose product is n_features {n_features}; "
                            f"got {shape.tolist()}")
    for split in SPLITS:
        if not isinstance(f.get(split), h5py.Group):
            raise DataError(f"{path}: missing group /{split}")
        features, targets = (f[split].get(name) for name in NAMES[TABLE_VERSION])
        for ds, name in ((features, "features"), (targets, "targets")):
            if not isinstance(ds, h5py.Dataset):
                raise DataError(f"{path}: missing dataset /{split}/{name}")
        if features.ndim != 2 or features.shape[1] != n_features \
                or not _real(features.dtype):
            raise DataError(f"{path}: /{split}/features is {features.dtype} {features.shape}, "
                            f"expected numbers of shape (rows, {n_features})")
        if scaling == "divide_by_255" and features.dtype != np.uint8:
            raise DataError(f"{path}: feature_scaling divide_by_255 is for uint8 features, "
                            f"/{split}/features is {features.dtype}")
        if task == "classification" and (targets.ndim != 1 or targets.dtype.kind != "u"):
            raise DataError(f"{path}: /{split}/targets is {targets.dtype} {targets.shape}, "
                            "expected class numbers (unsigned integers), one per row")
        if task == "regression" and (targets.shape[1:] != (width,) or targets.dtype.kind != "f"):
            raise DataError(f"{path}: /{split}/targets is {targets.dtype} {targets.shape}, "
                            f"expected floats of shape (rows, {width})")
        if len(features) != len(targets) or len(targets) == 0:
            raise DataError(f"{path}: /{split} has {len(features)} rows of features and "
                            f"{len(targets)} of targets; both must be the same, and not 0")
        for ds in (features, targets):
            problem = unstored(ds)
            if problem:
                raise DataError(f"{path}: {problem}")
    wanted = [("feature", n_features)] if scaling == "standardize" else []
    wanted += [("target", width)] if task == "regression" else []
    for kind, n in wanted:
        for stat in ("mean", "std"):
            ds = f.get(f"scaling/{kind}_{stat}")
            if not isinstance(ds, h5py.Dataset) or ds.dtype != np.float64 or ds.shape != (n,):
                raise DataError(f"{path}: /scaling/{kind}_{stat} must be float64 of shape ({n},)")
            values = ds[()]
            if not np.all(np.isfinite(values)) or (stat == "std" and np.any(values <= 0)):
                raise DataError(f"{path}: /scaling/{kind}_{stat} must be finite"
                                + (" and positive" if stat == "std" else ""))


    lengths = {"classes": width if task == "classification" else 0, "features": n_features,
               "targets": width if task == "regression" else 0}
    for kind, ds in f.get("names", {}).items():
        if kind not in lengths or not isinstance(ds, h5py.Dataset) or ds.shape != \
                (lengths[kind],) or h5py.check_string_dtype(ds.dtype) is None:
            raise DataError(f"{path}: /names/{kind} must be {lengths.get(kind, 0)} strings; "
                            f"names are kept for {', '.join(k for k, n in lengths.items() if n)}")


def names(f: h5py.File) -> dict[str, list[str]]:
    """The names a table keeps: of its classes, features and targets, where it has them."""
    return {kind: [v.decode() for v in ds[()]] for kind, ds in f.get("names", {}).items()}


def _real(dtype: np.dtype) -> bool:
    return dtype.kind in "uif"  # unsigned, signed, float: numbers a network can read


def read_scaling(path: str | Path) -> dict[str, np.ndarray]:
    """The scaling stored with a table (float64): feature_mean and feature_std where its
    features are standardized, target_mean and target_std for regression; none for
    images, which are divided by 255."""
    with open_checked(path) as f:
        return _scaling(f)


def _scaling(f: h5py.File) -> dict[str, np.ndarray]:
    group = f.get("scaling")
    return {} if group is None else {name: group[name][()] for name in group}


def _check_labels(labels: h5py.Dataset, n_classes: int, path: Path) -> None:
    """Every label is a class: found here, not as an IndexError in the middle of an epoch."""
    for start in range(0, len(labels), LABEL_BLOCK):  # a block at a time: bounded memory
        block = labels[start:start + LABEL_BLOCK]
        if block.max() >= n_classes:
            row = start + int(np.argmax(block >= n_classes))
            raise DataError(f"{path}: {labels.name} holds label {int(labels[row])} at row {row}, "
                            f"outside 0..{n_classes - 1} for the file's {n_classes} classes")


def describe(path: str | Path) -> dict:
    """Validate `path`, every label included, and return its schema attrs and split sizes.

    Keys: path, schema_version, source, source_sha256, task ("classification" or
    "regression"), image_shape (a tuple, or None for a table without one),
    n_features, feature_bytes (a stored feature's), row_bytes (a stored row's, target
    included), n_outputs (classes, or targets
    per row), n_classes (classification only), feature_scaling, scaling (the
    arrays of ``read_scaling``), names (of classes, features, targets: what the
    table keeps), shuffle_seed, train_size, test_size.
    """
    with open_checked(path) as f:
        version = int(f.attrs["schema_version"])
        features, targets = NAMES[version]
        task = str(f.attrs.get("task", "classification"))
        if task == "classification":
            for split in SPLITS:  # every row, so only here: a shard's readers read their own
                _check_labels(f[split][targets], int(f.attrs["n_classes"]), Path(path))
        shape = f.attrs.get("image_shape")
        image_shape = None if shape is None else tuple(int(d) for d in shape)
        n_outputs = int(f.attrs["n_classes"] if task == "classification"
                        else f.attrs["n_targets"])
        info = {
            "path": str(path),
            "schema_version": version,
            "source": str(f.attrs["source"]),
            "source_sha256": str(f.attrs["source_sha256"]),
            "task": task,
            "image_shape": image_shape,
            "n_features": int(f["train"][features].shape[1]),
            "feature_bytes": int(f["train"][features].dtype.itemsize),
            # a row's bytes as stored: its features and its target(s)
            "row_bytes": int(f["train"][features].shape[1] * f["train"][features].dtype.itemsize
                             + np.prod(f["train"][targets].shape[1:], dtype=np.int64)
                             * f["train"][targets].dtype.itemsize),
            "n_outputs": n_outputs,
            "feature_scaling": str(f.attrs.get("feature_scaling", "divide_by_255")),
            "scaling": _scaling(f),
            "names": names(f),
            "shuffle_seed": int(f.attrs["shuffle_seed"]),
            "train_size": len(f["train"][targets]),
            "test_size": len(f["test"][targets]),
        }
        if task == "classification":
            info["n_classes"] = n_outputs
        return info


def class_counts(path: str | Path, split: str) -> np.ndarray:
    """Number of rows of each class in `split`, shape (n_classes,)."""
    with open_checked(path) as f:
        check_split(split)
        if str(f.attrs.get("task", "classification")) != "classification":
            raise DataError(f"{path} holds a regression: its rows have no classes")
        labels = f[split][NAMES[int(f.attrs["schema_version"])][1]][:]  # small: a number a row
        return np.bincount(labels, minlength=int(f.attrs["n_classes"]))


def check_split(split: str) -> None:
    """Reject split names the schema does not have."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
