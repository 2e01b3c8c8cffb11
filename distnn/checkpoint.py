"""Checkpoints: everything needed to continue a run exactly where it stopped.

One HDF5 file, replaced atomically (see ``distnn.atomic``), so a crash while
saving leaves the previous checkpoint intact:

    /params                  the flat parameter vector (net.params, each w column by column)
    /optimizer/<name>        the optimizer's flat state (e.g. velocity); scalars as attrs
    attrs: format, version, model (JSON: MLP constructor arguments),
           config (JSON: the run's Config), position (JSON: epoch, step,
           cost so far in that epoch, world size), rng

The random state needs no array of its own: every epoch's shuffle is drawn
from a generator seeded by (seed, epoch, rank), so (seed, epoch, step) is the
whole random state of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from distnn.atomic import atomic_path
from distnn.network import MLP

FORMAT = "distnn-checkpoint"
VERSION = 2  # version 1 stored each w row by row; it is no longer read


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message says why."""


def save_checkpoint(path: str | os.PathLike[str], net: MLP, optimizer_state: dict[str, Any],
                    config: dict[str, Any], position: dict[str, Any]) -> None:
    """Write a checkpoint atomically: the old one stays until the new one is complete."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["model"] = json.dumps(net.config())
        f.attrs["config"] = json.dumps(config)
        f.attrs["position"] = json.dumps(position)
        f.attrs["rng"] = "numpy default_rng([seed, epoch, rank]) per epoch; see position"
        f.create_dataset("params", data=net.params)
        group = f.create_group("optimizer")
        for name, value in optimizer_state.items():
            if isinstance(value, np.ndarray):
                group.create_dataset(name, data=value)
            else:
                group.attrs[name] = value


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's parts: model, config, position (dicts), params, optimizer."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a distnn checkpoint")
            version = int(f.attrs["version"])
            if version != VERSION:
                raise CheckpointError(f"{path} has checkpoint version {version}, this distnn "
                                      f"reads version {VERSION}")
            model = json.loads(f.attrs["model"])
            params = f["params"][()]
            optimizer: dict[str, Any] = {k: v[()] for k, v in f["optimizer"].items()}
            optimizer.update({k: v.item() for k, v in f["optimizer"].attrs.items()})
            config, position = json.loads(f.attrs["config"]), json.loads(f.attrs["position"])
    except (OSError, KeyError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    return {"model": model, "config": config, "position": position, "params": params,
            "optimizer": optimizer}


def load_checkpoint(path: str | os.PathLike[str]) -> MLP:
    """The trained network stored in the checkpoint at ``path``."""
    ckpt = read_checkpoint(path)
    net = MLP(**ckpt["model"])
    if ckpt["params"].shape != net.params.shape:
        raise CheckpointError(f"{path}: parameter vector does not fit its own model")
    net.params[...] = ckpt["params"]
    return net
