"""How a run starts: every rank agrees on the settings, the data and where to begin.

Rank 0 alone touches the file system: it reads the checkpoint of a resumed
run (whose settings then win over the command line's, see
``config.merge_resumed``), prepares MNIST when the default data file is
missing, takes the network's ends from the data (unless --layers gives them),
and checks that the data fits the network and the number of ranks.
Every rank then receives its verdict, so all of them go on, or all stop with
the same message. The result, a ``Start``, is final: training changes none of it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distnn import architecture
from distnn.augment import Augment, AugmentError
from distnn.checkpoint import CheckpointError, read_checkpoint
from distnn.comm import Comm
from distnn.config import DEFAULT_DATA, Config, ConfigError, merge_resumed
from distnn.costs import REGRESSION
from distnn.data import (DataError, Partitions, default_partitions, default_window, describe,
                         prepare)
from distnn.data.stream import held_bytes, stream_bytes
from distnn.loop import Position
from distnn.memory import Room, parse_bytes, room, shortfall
from distnn.memory import size as show_size
from distnn.convnet import Network, build
from distnn.optim import SGD
from distnn.outputs import Lock, OutputError, check_not_input, check_output
from distnn.threads import limit_blas_threads
from distnn.writes import WriteFailed

USER_ERRORS = (ConfigError, DataError, CheckpointError, OutputError)


class UsageError(Exception):
    """Raised identically on every rank before training: bad settings or data."""


@dataclass(frozen=True)
class Start:
    """Everything a run starts from, the same on every rank."""
    cfg: Config  # final: a resumed run's settings come from its checkpoint
    info: dict[str, Any]  # the data file's shape (distnn.data.describe)
    order: Partitions  # the training set's canonical partitions (cfg.partitions of them)
    position: Position
    resumed: bool
    budget: int = 1 << 62  # bytes of training rows a rank may hold, beyond which it streams
    layers_from: str = "--layers"  # where cfg.layers came from, for the run's first line
    memory: str = ""  # what the default budget came from: "300 MiB available (cgroup ...)"


@dataclass
class OnThisRank:
    """What a rank starts with of its own, beside the ``Start`` every rank shares."""
    ranks_here: int = 1  # ranks on this node
    threads: int | None = None  # the BLAS threads it took (None: the user's setting)
    # Rank 0's only: the checkpoint's arrays (the others receive them by broadcast, see
    # ``network_and_optimizer``), and its hold on the checkpoint: release() it when done.
    arrays: dict[str, Any] | None = None
    lock: Lock | None = None


def agree_on_start(comm: Comm, cfg: Config,
                   given: dict[str, Any]) -> tuple[Start, OnThisRank]:
    """Rank 0 checks settings, data and checkpoint; every rank gets the same verdict.

    ``given`` holds the settings named on the command line: they decide what a
    resumed run may change. Raises UsageError on every rank if anything is wrong.
    """
    ranks_here = comm.ranks_on_this_node()
    try:
        threads = limit_blas_threads(ranks_here)
    except ValueError as err:  # the same environment on every rank: all stop
        raise UsageError(str(err)) from None
    outcome: Any = None
    arrays = lock = None
    if comm.rank == 0:
        try:
            outcome, arrays = _start_on_root(cfg, given, comm.size, ranks_here)
            lock = Lock(outcome.cfg.checkpoint)  # last: nothing is written unless all is well
            lock.acquire(take=outcome.cfg.take_lock)
        except USER_ERRORS as err:
            outcome = str(err)
        except WriteFailed as err:  # the lock, or the data prepared: a full disk, say
            kept = (f"{cfg.checkpoint} is unchanged" if Path(cfg.checkpoint).exists()
                    else "no checkpoint was written")
            outcome = (f"{err}; {kept}", f"{err.remedy} and rerun the same command")
    outcome = comm.bcast(outcome)  # MPI: the others wait here while rank 0 prepares data
    if isinstance(outcome, str):
        raise UsageError(outcome)
    if isinstance(outcome, tuple):
        raise WriteFailed(*outcome)
    return outcome, OnThisRank(ranks_here, threads, arrays, lock)


def _start_on_root(cfg: Config, given: dict[str, Any], ranks: int,
                   ranks_here: int) -> tuple[Start, dict[str, Any] | None]:
    """The checks that need the file system; rank 0 only."""
    _check_not_data(cfg)
    check_output(cfg.checkpoint, "--checkpoint")
    if cfg.metrics:
        check_output(cfg.metrics, "--metrics", append=True)
    ckpt = _checkpoint_to_resume(cfg)
    if ckpt is not None:
        cfg = _resumed_config(ckpt, given, cfg.checkpoint)
        _check_not_data(cfg)  # the data the checkpoint names, if not the command line
    if not Path(cfg.data).exists() and cfg.data == DEFAULT_DATA:
        print(f"distnn: {cfg.data} is missing: preparing MNIST there first", file=sys.stderr)
        prepare(cfg.data)
    info = describe(cfg.data)
    cfg, layers_from = _layers_for_data(cfg, info, resumed=ckpt is not None)
    if ckpt is None:
        cfg = _cost_for_task(cfg, info, given)
    if not cfg.partitions:  # a new run: C is chosen now, and saved with its settings
        cfg = dataclasses.replace(cfg, partitions=default_partitions(cfg.batch_size, ranks,
                                                                       info["train_size"]))
    if not cfg.window and ckpt is None:  # ... and W (a checkpoint without one: whole)
        cfg = dataclasses.replace(cfg, window=default_window(info["row_bytes"]))
    order = _check_fit(cfg, info, ranks, layers_from)
    left = room()  # once: the budget and the check below see the same memory
    budget = memory_budget(cfg, ranks_here, left)
    _check_memory(cfg, info, order, ranks, ranks_here, budget, left)
    memory = "" if cfg.memory_budget or left is None else str(left)
    if ckpt is None:
        return Start(cfg, info, order, Position(), False, budget, layers_from, memory), None
    arrays = {"params": ckpt["params"], "optimizer": ckpt["optimizer"]}
    position = Position.resumed(ckpt["position"], order.steps)
    return Start(cfg, info, order, position, True, budget, layers_from, memory), arrays


def _check_not_data(cfg: Config) -> None:
    """No file the run writes is its data, nor another file it writes (OutputError)."""
    check_not_input([("--checkpoint", cfg.checkpoint), ("--metrics", cfg.metrics),
                     ("--trace", cfg.trace)], [("the data it trains on (--data)", cfg.data)])
    check_not_input([("--metrics", cfg.metrics), ("--trace", cfg.trace)],
                    [("the checkpoint it writes (--checkpoint)", cfg.checkpoint)])
    check_not_input([("--trace", cfg.trace)], [("the metrics it writes (--metrics)",
                                                 cfg.metrics)])


def memory_budget(cfg: Config, ranks_here: int, left: Room | None) -> int:
    """Bytes of training rows a rank may hold: --memory-budget, or half the memory
    available (``left``: on rank 0's node, as the run starts; the least that the machine,
    ulimit -v and its cgroups leave) shared by the node's ranks."""
    if cfg.memory_budget:
        return parse_bytes(cfg.memory_budget)
    return 1 << 62 if left is None else left.nbytes // 2 // ranks_here


def streaming_note(start: Start, ranks: int) -> str:
    """A line saying which ranks stream their training rows, and in what ("" if none)."""
    order, row_bytes = start.order, start.info["row_bytes"]
    streaming = sum(held_bytes(order, r, ranks, row_bytes) > start.budget
                    for r in range(ranks))
    if not streaming:
        return ""
    most = max(stream_bytes(order, r, ranks, row_bytes) for r in range(ranks))
    window = "whole partitions" if order.whole else f"windows of {order.window} rows"
    return (f"{streaming} of {ranks} rank(s) stream their training rows from "
            f"{start.cfg.data}, which exceed the memory budget ({show_size(start.budget)} a "
            f"rank), in {window}: {show_size(most)} a rank at most")


def memory_line(start: Start) -> str:
    """The run's memory budget and the limit it came from ("" where nothing says)."""
    if start.cfg.memory_budget:
        return f"distnn: memory budget {show_size(start.budget)} a rank (--memory-budget)"
    if not start.memory:
        return ""
    return (f"distnn: memory budget {show_size(start.budget)} a rank, half of {start.memory} "
            "shared by the node's ranks; training rows beyond it are streamed")


def data_bytes(info: dict[str, Any], order: Partitions, rank: int, ranks: int,
               budget: int) -> int:
    """The training rows rank ``rank`` holds: its partitions', or what streaming them needs."""
    held = held_bytes(order, rank, ranks, info["row_bytes"])
    return held if held <= budget else stream_bytes(order, rank, ranks, info["row_bytes"])


def _resumed_config(ckpt: dict[str, Any], given: dict[str, Any], path: str) -> Config:
    """The settings a resumed run goes on with: the checkpoint's, checked against its model."""
    try:
        Config.from_dict(ckpt["config"]).validate()
    except ConfigError as err:
        raise CheckpointError(f"{path}: corrupt checkpoint: its settings: {err}") from None
    # Written before partitions: each rank shuffled its own shard, which is the
    # order of one partition per rank (distnn.data.order).
    saved = {"partitions": ckpt["position"]["ranks"], **ckpt["config"]}
    cfg = merge_resumed(saved, given)
    model = ckpt["model"]
    if (model.get("sizes", model.get("layers")), model.get("dtype")) != (cfg.layers, cfg.dtype) \
            or ckpt["params"].dtype != np.dtype(cfg.dtype) \
            or not isinstance(ckpt["optimizer"].get("velocity"), np.ndarray):
        raise CheckpointError(f"{path}: corrupt checkpoint: its model, its parameters and its "
                              "settings do not agree")
    return cfg


def _check_memory(cfg: Config, info: dict[str, Any], order: Partitions, ranks: int,
                  ranks_here: int, budget: int, left: Room | None) -> None:
    """Each rank's training rows fit the budget, held or streamed, and the ranks on this
    node fit its memory: their rows, networks and workspaces."""
    itemsize = np.dtype(cfg.dtype).itemsize
    rows = max(data_bytes(info, order, r, ranks, budget) for r in range(ranks))
    if rows > budget:  # streamed, and still too much
        given = (f"--memory-budget {show_size(budget)}" if cfg.memory_budget or left is None
                 else f"the memory budget, {show_size(budget)} a rank (half of {left}, "
                      f"shared by {ranks_here} rank(s)),")
        raise ConfigError(
            f"{given} is less than a rank needs to stream its "
            f"rows of {cfg.data}: two windows of each of its partitions, {show_size(rows)}; "
            "give a larger budget, a smaller --window, or more ranks")
    # The test rows as stored; tables are standardized in float64 on the way in.
    test = -(-info["test_size"] // ranks) * info["row_bytes"]
    read = 8 * info["n_features"] if info["feature_scaling"] == "standardize" else 0
    shards = rows + test + read * -(-(info["train_size"] + info["test_size"]) // ranks)
    # The epoch's order of a rank's rows, held or streamed: int64 row numbers, built with
    # a copy or two (distnn.data.order).
    shards += 3 * 8 * max(b - a for a, b in (order.rows_of(r, ranks) for r in range(ranks)))
    params = architecture.n_params(cfg.layers)
    m_here = -(-cfg.batch_size // ranks)
    workspace = m_here * architecture.workspace(cfg.layers) * itemsize
    each = shards + 4 * params * itemsize + workspace  # params, velocity, gradient, a copy
    short = shortfall(ranks_here * each, left)
    if short:
        raise ConfigError(f"{ranks_here} rank(s) on this node would need about {short} "
                          f"({show_size(each)} each: the shards of {cfg.data} and their "
                          f"order, the network's {params} parameters and its workspace); use "
                          "fewer ranks per node, float32, or a smaller --hidden (or --layers) or "
                          "--batch-size")


def _checkpoint_to_resume(cfg: Config) -> dict[str, Any] | None:
    """The checkpoint ``--resume`` continues, if there is one; notes what happens otherwise."""
    exists = Path(cfg.checkpoint).exists()
    if cfg.resume and exists:
        return read_checkpoint(cfg.checkpoint)
    if cfg.resume:
        print(f"distnn: no checkpoint at {cfg.checkpoint} yet: starting a new run",
              file=sys.stderr)
    elif exists:
        print(f"distnn: starting a new run; its first checkpoint will replace "
              f"{cfg.checkpoint} (--resume continues that run instead)", file=sys.stderr)
    return None


def _layers_for_data(cfg: Config, info: dict[str, Any], resumed: bool) -> tuple[Config, str]:
    """The network's sizes, and where they came from: --layers (a resumed run: its
    checkpoint's) as they are, or else the data file's features, --hidden, its outputs.

    ``hidden`` is made the layers' own either way, so that the saved settings agree
    with themselves and a resumed run's --hidden is checked against what it trains.
    """
    if cfg.layers:  # _check_fit checks its ends against the data
        origin = "the checkpoint's" if resumed else "--layers"
        return dataclasses.replace(cfg, hidden=cfg.layers[1:-1]), origin
    n_in, n_out = info["n_features"], info["n_outputs"]
    outputs = ("class", "classes") if info["task"] == "classification" else ("target", "targets")
    hidden = f"hidden {architecture.text(cfg.hidden)}" if cfg.hidden else "no hidden layer"
    if architecture.is_conv(cfg.hidden):  # the input is the file's images
        first = _images(info)
        if first is None:
            raise ConfigError(f"--hidden {architecture.text(cfg.hidden)} has conv layers, "
                              f"which take images, and {_not_images(cfg.data, info)}")
        origin = f"{first} images and {n_out} {outputs[n_out != 1]} from {cfg.data}, {hidden}"
        layers = [first, *cfg.hidden, n_out]
        try:
            architecture.plan(layers)
        except architecture.SpecError as err:  # a kernel or window the images cannot take
            raise ConfigError(f"--hidden {architecture.text(cfg.hidden)} on {first} images: "
                              f"{err}") from None
    else:
        origin = (f"{n_in} feature{'s' * (n_in != 1)} and {n_out} {outputs[n_out != 1]} from "
                  f"{cfg.data}, {hidden}")
        layers = [n_in, *cfg.hidden, n_out]
    return dataclasses.replace(cfg, layers=layers), origin


def _images(info: dict[str, Any]) -> str | None:
    """The input item of the data file's images (1x28x28), which conv layers take; None
    for a table, or for rows whose image shape is not H x W or C x H x W."""
    shape = info["image_shape"]
    return architecture.image(shape) if shape is not None and len(shape) in (2, 3) else None


def _not_images(data: str, info: dict[str, Any]) -> str:
    """Why conv layers cannot take the rows of ``data`` (``_images`` is None)."""
    if info["image_shape"] is None:
        return f"{data} is a table of {info['n_features']} features without an image shape"
    return (f"{data} holds images of shape {'x'.join(map(str, info['image_shape']))}, not "
            "H x W or C x H x W")


def _cost_for_task(cfg: Config, info: dict[str, Any], given: dict[str, Any]) -> Config:
    """A new run's cost, from its data: the linear output with the quadratic cost for a
    regression (unless named), and no regression cost for classes."""
    regression = info["task"] == "regression"
    if regression and "cost" not in given:
        return dataclasses.replace(cfg, cost=REGRESSION)
    if regression != (cfg.cost == REGRESSION):
        raise ConfigError(f"{cfg.data} holds a {info['task']}: --cost {cfg.cost} is for "
                          + ("classes; a regression takes --cost linear" if regression else
                             "real-valued targets; choose quadratic or cross_entropy"))
    return cfg


def _check_fit(cfg: Config, info: dict[str, Any], ranks: int,
               layers_from: str = "--layers") -> Partitions:
    """The data fits the network, and the batch and the training set fit the partitions
    and the ranks; returns the partitions, whose steps per epoch are then defined.
    ``layers_from`` says where the network's sizes came from, for the error."""
    outputs = "classes" if info["task"] == "classification" else "targets"
    sizes = architecture.text(cfg.layers)
    network = f"--layers {sizes}" if layers_from == "--layers" else \
        f"the network {sizes} ({layers_from})"
    n_in = architecture.widths(cfg.layers)[0]
    if info["n_features"] != n_in or info["n_outputs"] != cfg.layers[-1]:
        raise DataError(
            f"{cfg.data} has {info['n_features']} features and {info['n_outputs']} {outputs}, "
            f"but {network} expects {n_in} and {cfg.layers[-1]}"
        )
    if architecture.is_conv(cfg.layers):  # its first layer is an image shape
        images = _images(info)
        if images is None:
            raise ConfigError(f"{network} has conv layers, which take images, and "
                              f"{_not_images(cfg.data, info)}")
        if images != cfg.layers[0]:
            raise DataError(f"{cfg.data} holds {images} images, but {network} expects "
                            f"{cfg.layers[0]}")
    if cfg.augment and info["image_shape"] is None:
        raise ConfigError(f"--augment distorts images, and {cfg.data} holds none")
    if cfg.batch_size < ranks:
        raise ConfigError(f"--batch-size {cfg.batch_size} is smaller than the {ranks} ranks: "
                          "every rank needs at least one sample per step")
    if info["train_size"] < ranks:
        raise ConfigError(f"{ranks} ranks but only {info['train_size']} training samples")
    try:
        Augment.parse(cfg.augment, info["image_shape"])
    except AugmentError as err:
        raise ConfigError(f"{cfg.data}: {err}") from None
    order = Partitions(info["train_size"], cfg.batch_size, cfg.partitions, cfg.window)
    problem = order.problem(ranks)
    if problem:
        raise ConfigError(problem)
    if order.steps < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the "
                          f"{info['train_size']} training samples allow")
    return order


def network_and_optimizer(start: Start, mine: OnThisRank, comm: Comm) -> tuple[Network, SGD]:
    """This rank's network and optimizer to start from, the same on every rank: rank 0's."""
    cfg = start.cfg
    net = build(cfg.layers, activation=cfg.activation, cost=cfg.cost, init=cfg.init,
                dtype=cfg.dtype, seed=cfg.seed)
    optimizer = SGD(net.params, momentum=cfg.momentum, nesterov=cfg.nesterov,
                    weight_decay=cfg.weight_decay, decay_mask=net.weight_mask)
    if mine.arrays is not None:
        net.params[...] = mine.arrays["params"]
        optimizer.load_state_dict(mine.arrays["optimizer"])
    comm.bcast_(net.params)  # MPI: every replica starts from rank 0's parameters
    comm.bcast_(optimizer.velocity)  # MPI: ... and its optimizer state
    return net, optimizer


def crowded_note(ranks_here: int) -> str:
    """A note when ranks outnumber this node's cores ("" when they do not)."""
    cores = os.cpu_count() or 1
    if ranks_here <= cores:
        return ""
    # MPI ranks wait by spinning: they take cores from the working ones.
    return (f"{ranks_here} ranks share {cores} cores on this node; a rank that waits keeps "
            f"its core busy, so -n {cores} is likely faster")

