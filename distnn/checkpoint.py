"""Checkpoints: everything needed to continue a run exactly where it stopped.

One HDF5 file, replaced atomically (see ``distnn.atomic``), so a crash while
saving leaves the previous checkpoint intact:

    /params                  the flat parameter vector (net.params, each w column by column)
    /optimizer/<name>        the optimizer's flat state (e.g. velocity); scalars as attrs
    /scaling/<name>          a table's scaling (distnn.data.table), when the run
                             trained on one: what a prediction applies to new rows
    attrs: format, version, model (JSON: the network's constructor arguments, MLP or ConvNet),
           config (JSON: the run's Config), position (JSON: epoch, step, steps
           per epoch, cost so far in that epoch, world size), rng,
           data (JSON, a table's only: task, feature_scaling, n_outputs, and
                 the names of its classes or targets, and of its features, where it
                 has them and they fit in an attribute),
           checksum (sha256 of all of the above but itself)

The random state needs no array of its own: every epoch's shuffle of each
canonical partition is drawn from a generator seeded by (seed, epoch,
partition) (``distnn.data.order``; config's ``partitions``), so (seed, epoch,
step) is the whole random state of the run.

A checkpoint is checked whole before anything uses it: its structure (types,
shapes that fit its own model, a position in range), finite values, and the
checksum, so that flipped bits or a cut copy are reported as a corrupt file,
not found later as a NaN. The checksum is against accidents, not an attacker:
nothing in a checkpoint is ever executed, and where a run writes never comes
from one (``distnn.config.OWN``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from distnn import architecture
from distnn.atomic import atomic_path
from distnn.memory import shortfall, unstored
from distnn.convnet import Network, from_config
from distnn.writes import new_hdf5, writing

FORMAT = "distnn-checkpoint"
VERSION = 3  # 3 added the checksum; 2 is still read. 1 stored each w row by row.
READABLE = (2, 3)
POSITION = {"epoch": 0, "step": 0, "steps": 1, "ranks": 1}  # integer fields and their least value


class CheckpointError(Exception):
    """A checkpoint that cannot be read or written; the message (one line) says why."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _checksum(attrs: dict[str, str], params: np.ndarray, optimizer: dict[str, Any],
              scaling: dict[str, np.ndarray] | None = None) -> str:
    """sha256 over the text attributes, the parameters and the optimizer state, in a fixed order."""
    digest = hashlib.sha256()
    for key in sorted(attrs):
        digest.update(f"{key}={attrs[key]}\n".encode())
    extra = [(f"scaling/{k}", v) for k, v in sorted((scaling or {}).items())]
    for name, value in [("params", params), *sorted(optimizer.items()), *extra]:
        value = np.asarray(value)
        digest.update(f"{name}:{value.dtype.str}:{value.shape}\n".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], net: Network, optimizer_state: dict[str, Any],
                    config: dict[str, Any], position: dict[str, Any],
                    data: dict[str, Any] | None = None,
                    scaling: dict[str, np.ndarray] | None = None) -> None:
    """Write a checkpoint atomically: the old one stays until the new one is complete.

    ``data`` and ``scaling``, for a run on a table: what it is (task,
    feature_scaling, n_outputs) and its scaling, for predictions on new rows.

    A write that fails (a full disk, a read-only place) is a WriteFailed
    (``distnn.writes``), and leaves no temporary file.
    """
    attrs = {"format": FORMAT, "version": str(VERSION), "model": json.dumps(net.config()),
             "config": json.dumps(config), "position": json.dumps(position),
             "rng": "numpy default_rng([seed, epoch, partition]) per epoch; see position"}
    if data is not None:
        attrs["data"] = json.dumps(data)
    with writing(path), atomic_path(path) as tmp, new_hdf5(tmp) as f:
        for key, value in attrs.items():
            f.attrs[key] = VERSION if key == "version" else value
        f.attrs["checksum"] = _checksum(attrs, net.params, optimizer_state, scaling)
        for name, value in (scaling or {}).items():
            f.create_dataset(f"scaling/{name}", data=value)
        f.create_dataset("params", data=net.params)
        group = f.create_group("optimizer")
        for name, value in optimizer_state.items():
            if isinstance(value, np.ndarray):
                group.create_dataset(name, data=value)
            else:
                group.attrs[name] = value


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's parts: model, config, position (dicts), params, optimizer.

    Raises CheckpointError, naming what is wrong, unless the whole file checks out.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except (OSError, KeyError, ValueError, TypeError) as err:  # h5py's word for a damaged file
        raise CheckpointError(f"{path}: corrupt checkpoint, cannot be read ({err})") from None


def _read(f: h5py.File, path: Path) -> dict[str, Any]:
    if f.attrs.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a distnn checkpoint")
    version = f.attrs.get("version")
    if not isinstance(version, (int, np.integer)) or int(version) not in READABLE:
        raise CheckpointError(f"{path} has checkpoint version {version}, this distnn reads "
                              f"versions {', '.join(map(str, READABLE))}")
    texts = {}
    for key in ("model", "config", "position"):
        try:
            texts[key] = json.loads(f.attrs[key])
        except (KeyError, TypeError, ValueError):
            texts[key] = None
        if not isinstance(texts[key], dict):
            raise CheckpointError(f"{path}: corrupt checkpoint: attribute {key!r} is missing "
                                  "or not a JSON object")
    model, position = texts["model"], texts["position"]
    size = _parameter_count(model, path)
    _check_position(position, path)
    params = _array(f, "params", size, path)
    group = f.get("optimizer")
    if not isinstance(group, h5py.Group):
        raise CheckpointError(f"{path}: corrupt checkpoint: no /optimizer group")
    optimizer: dict[str, Any] = {k: _array(group, k, size, path) for k in group}
    for k, v in group.attrs.items():
        if not (np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number)):
            raise CheckpointError(f"{path}: corrupt checkpoint: /optimizer attribute {k!r} "
                                  "is not a number")
        optimizer[k] = np.asarray(v).item()
    data, scaling = _data(f, path)
    if int(version) >= 3:
        attrs = {k: str(f.attrs[k]) for k in ("format", "model", "config", "position", "rng")}
        attrs["version"] = str(int(version))
        if data is not None:
            attrs["data"] = str(f.attrs["data"])
        stored = f.attrs.get("checksum")
        if stored != _checksum(attrs, params, optimizer, scaling):
            raise CheckpointError(f"{path}: corrupt checkpoint: its checksum does not match its "
                                  "contents (flipped bits, or changed after it was written)")
    return {"model": model, "config": texts["config"], "position": position, "params": params,
            "optimizer": optimizer, "data": data, "scaling": scaling}


def _data(f: h5py.File, path: Path) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """What table the run trained on, and its scaling (None and {} for images)."""
    if "data" not in f.attrs:
        return None, {}
    try:
        data = json.loads(f.attrs["data"])
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: corrupt checkpoint: attribute 'data' is not a JSON "
                              "object")
    group = f.get("scaling", {})
    scaling = {}
    for name in group:
        values = group[name][()]
        if values.dtype != np.float64 or values.ndim != 1 or not np.all(np.isfinite(values)):
            raise CheckpointError(f"{path}: corrupt checkpoint: /scaling/{name} is not a "
                                  "finite float64 vector")
        scaling[name] = values
    return data, scaling


def _parameter_count(model: Any, path: Path) -> int:
    """Parameters of the checkpoint's own model, from its layers: an MLP's sizes or a
    ConvNet's spec (``distnn.architecture``)."""
    layers = (model.get("layers", model.get("sizes")) if isinstance(model, dict) else None)
    if isinstance(model, dict) and "sizes" in model and not all(
            isinstance(n, int) and not isinstance(n, bool) for n in model["sizes"]):
        layers = None  # an MLP's sizes are numbers
    try:
        if not isinstance(layers, list) or any(isinstance(n, bool) for n in layers):
            raise architecture.SpecError("not a list of layers")
        return architecture.n_params(layers)
    except (architecture.SpecError, TypeError):
        raise CheckpointError(f"{path}: corrupt checkpoint: its model has no valid layer "
                              "sizes") from None


def _check_position(position: Any, path: Path) -> None:
    fields = isinstance(position, dict) and all(
        isinstance(position.get(k), int) and not isinstance(position.get(k), bool)
        and position[k] >= least for k, least in POSITION.items())
    cost = position.get("epoch_cost") if isinstance(position, dict) else None
    if not (fields and position["step"] <= position["steps"]
            and isinstance(cost, (int, float)) and math.isfinite(cost)):
        raise CheckpointError(f"{path}: corrupt checkpoint: position {position} is out of range")


def _array(group: h5py.Group, name: str, size: int, path: Path) -> np.ndarray:
    """A float vector of ``size`` finite values, checked before it is read in."""
    where = f"{group.name.rstrip('/')}/{name}"
    ds = group.get(name)
    if not isinstance(ds, h5py.Dataset) or ds.shape != (size,) \
            or ds.dtype not in (np.float32, np.float64):
        shape = getattr(ds, "shape", None)
        raise CheckpointError(f"{path}: corrupt checkpoint: {where} is not a float vector of "
                              f"the model's {size} parameters (found {shape})")
    problem = unstored(ds)
    short = shortfall(ds.size * ds.dtype.itemsize)
    if problem or short:
        raise CheckpointError(f"{path}: corrupt checkpoint: {problem}" if problem else
                              f"{path}: {where} needs {short}")
    values = ds[()]
    if not np.all(np.isfinite(values)):
        raise CheckpointError(f"{path}: corrupt checkpoint: {where} holds "
                              f"{np.count_nonzero(~np.isfinite(values))} values that are not "
                              "finite")
    return values


def load_checkpoint(path: str | os.PathLike[str]) -> Network:
    """The trained network stored in the checkpoint at ``path``."""
    return network(read_checkpoint(path), path)


def network(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> Network:
    """The network of a checkpoint ``read_checkpoint`` has read (from ``path``)."""
    try:
        net = from_config(ckpt["model"])
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: corrupt checkpoint: its model cannot be built "
                              f"({err})") from None
    if ckpt["params"].dtype != net.dtype:
        raise CheckpointError(f"{path}: corrupt checkpoint: parameters are "
                              f"{ckpt['params'].dtype}, its model says {net.dtype}")
    net.params[...] = ckpt["params"]
    return net
