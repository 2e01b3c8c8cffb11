"""Training on arrays in memory, in one process or data-parallel under mpirun.

The engine behind ``distnn.sklearn``'s estimators, with nothing of scikit-learn in it:

    comm = job()                                   # every rank of mpirun, or this process
    same_everywhere(comm, x, y)                    # under mpirun: every rank passed the same
    net = MLP([n_features, *hidden, n_outputs], ...)
    fit_arrays(net, SGD(net.params, ...), x, y, Settings(m=200, epochs=50, lr=0.01, seed=0),
               comm, on_epoch=lambda epoch, loss: False)

Every rank holds all the rows (a script run on every rank has them) and trains
on its own: the training set is cut into the canonical partitions of
``distnn.data.order``, each rank serves some of them, and the steps are
``distnn.loop``'s and ``distnn.step``'s, summed by ``distnn.reduce``'s
reducers, as in a run of ``python -m distnn.train``. So the model is the one a
single process gets, on any number of ranks. A fit writes no file, takes no
lock and installs no signal handler: fits may follow one another (a grid
search) in one script.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from distnn.augment import Augment
from distnn.checkpoint import save_checkpoint
from distnn.comm import UNWATCHED, Comm, SerialComm, world
from distnn.config import Config
from distnn.costs import REGRESSION
from distnn.data import Partitions
from distnn.dropout import Dropout
from distnn.loop import Course, Position, run_epochs
from distnn.network import MLP
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.samples import Shard
from distnn.schedules import make_schedule
from distnn.step import Diverged, NoStop, Recipe, Replica
from distnn.threads import limit_blas_threads

MOST_PARTITIONS = 64  # as many ranks as a fit can use (distnn.data.order's default C)


def job() -> Comm:
    """The ranks a fit runs on: every rank of an mpirun job (a communicator of their own,
    so that a script's own MPI messages never meet the fit's), or this process alone.

    A worker process started by a rank (joblib's, for a search's n_jobs) is no MPI
    rank: it fits alone, and never initializes MPI.
    """
    if multiprocessing.parent_process() is not None:
        return SerialComm()
    comm = world()
    if comm.size == 1:
        return comm
    limit_blas_threads(comm.ranks_on_this_node())  # each rank its share of the node's cores
    return comm.dup()  # MPI


def same_everywhere(comm: Comm, *arrays: np.ndarray | None,
                    error: Exception | None = None) -> None:
    """Raise ValueError on every rank unless every rank passed the same arrays (collective).

    ``error``: this rank could not take its data (scikit-learn's checks refused it); it
    is raised here, after the others have heard of it, so that none waits for this rank.
    """
    mine = f"error: {error}" if error is not None else _digest(arrays)
    everyone = comm.allgather(mine)  # MPI
    if error is not None:
        raise error
    failed = [r for r, said in enumerate(everyone) if said.startswith("error: ")]
    if failed:
        raise ValueError(f"rank(s) {', '.join(map(str, failed))} of {comm.size} could not take "
                         f"their data ({everyone[failed[0]][len('error: '):]}): under mpirun "
                         "every rank must pass the same X, y and sample_weight")
    differ = [str(r) for r, d in enumerate(everyone) if d != everyone[0]]
    if differ:
        raise ValueError(f"rank(s) {', '.join(differ)} of {comm.size} passed other data to fit "
                         "than rank 0: under mpirun every rank must pass the same X, y and "
                         "sample_weight (a script that makes or reads them on every rank does)")


def _digest(arrays: tuple[np.ndarray | None, ...]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            digest.update(b"None;")
            continue
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape};".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def shared_seed(comm: Comm, seed: int | None) -> int:
    """``seed``, or where it is None one drawn afresh, the same on every rank: rank 0's."""
    if seed is None and comm.rank == 0:
        seed = int(np.random.SeedSequence().entropy % (1 << 32))
    return int(comm.bcast(seed))  # MPI


def fullest_partitions(n: int, m: int) -> int:
    """C for a fit on n rows in batches of m: of 16 to 64 partitions (fewer for a smaller
    batch or set), the count whose batches leave the fewest rows out of an epoch, and
    the most of those (the most ranks). The choice depends on n and m alone, never on
    the number of ranks, so that every number of ranks up to C trains the same batches."""
    top = min(MOST_PARTITIONS, m, n)
    return max(range(min(16, top), top + 1), key=lambda c: (Partitions(n, m, c).steps, c))


@dataclass(frozen=True)
class Settings:
    """What a fit does besides its network and optimizer."""
    m: int  # the global mini-batch
    epochs: int
    lr: float  # eta
    seed: int  # of the order of the samples and of the dropout masks
    schedule: str = "constant"  # distnn.schedules
    shuffle: bool = True  # False: each partition in its rows' order, every epoch
    dropout: float = 0.0  # p of the hidden units
    max_norm: float = 0.0  # c of each hidden unit's incoming weights; 0 = none
    alpha: float = 0.0  # L2 term of the reported loss, 1/2 alpha ||w||^2 per batch
    cost_scale: float = 1.0  # times C_x in the reported loss
    first_epoch: int = 0  # the epochs before (partial_fit): each epoch's order is its own


class Diverging(ValueError):
    """The training cost is not a finite number; the parameters are those of the last step."""


def fit_arrays(net: MLP, optimizer: SGD, x: np.ndarray, y: np.ndarray, settings: Settings,
               comm: Comm, on_epoch: Callable[[int, float], bool],
               weights: np.ndarray | None = None) -> int:
    """Train ``net`` on the rows ``x`` (n, n_features) of ``net``'s dtype with targets
    ``y`` (class numbers (n,), or values (n, n_outputs)), every rank holding all of them;
    returns the epochs run (``settings.first_epoch`` on: the next epoch's number).

    After each epoch ``on_epoch(epoch, loss)`` is called on every rank, with the
    epoch's mean loss per sample (``Settings``' scale and L2 term included); True
    ends training there. ``weights`` (n,) weigh the samples: each batch's gradient is
    divided by its total weight instead of m.
    """
    n, m = len(x), settings.m
    order = Partitions(n, m, fullest_partitions(n, m), shuffle=settings.shuffle)
    problem = order.problem(comm.size)
    if problem:
        raise ValueError(f"{problem.split(' (')[0]}, chosen for batches of {m} from {n} rows; "
                         "run on fewer ranks, or give a larger batch_size")
    lo, hi = order.rows_of(comm.rank, comm.size)  # this rank's partitions' rows
    shard = Shard(x[lo:hi], y[lo:hi], None, None if weights is None else weights[lo:hi])
    recipe = Recipe(m, order.share_of(comm.rank, comm.size), settings.seed, Augment(),
                    Dropout(net.sizes, settings.dropout, 0.0, net.dtype), settings.max_norm)
    steps, first = order.steps, settings.first_epoch
    schedule = make_schedule(settings.schedule, settings.lr, total_steps=settings.epochs * steps,
                             warmup_steps=0, step_size=max(1, settings.epochs // 2 * steps))
    eta = schedule if not first else (lambda t: schedule(t - first * steps))  # this fit's
    totals = None
    if weights is not None:  # every batch's total weight, from all of it: no communication
        totals = functools.lru_cache(maxsize=1)(
            functools.partial(_totals, weights, order, settings.seed))
    course = Course(recipe, order, eta, first + settings.epochs, Position(first), totals)
    comm.bcast_(net.params)  # MPI: every replica starts from rank 0's parameters
    comm.bcast_(optimizer.velocity)  # MPI: ... and its optimizer state
    reducer = make_reducer(comm, net, optimizer, "auto")  # MPI
    hooks = _Hooks(net, course, settings, on_epoch)
    with reducer:  # leaving it, the network holds its own copy of the parameters again
        try:
            done, _ = run_epochs(Replica(net, optimizer, reducer), shard, course, comm.rank,
                                 comm.size, hooks)
        except Diverged as err:  # every rank saw the same sum
            raise Diverging(f"{err}; try a smaller learning_rate_init") from None
    return done.epoch


def _totals(weights: np.ndarray, order: Partitions, seed: int, epoch: int) -> np.ndarray:
    """Each batch's total weight this epoch, (steps,): the same on every rank."""
    totals = weights[order.epoch(seed, epoch, 0, 1)].sum(axis=1)  # all rows, as one process
    empty = np.flatnonzero(totals <= 0)
    if len(empty):
        raise ValueError(f"batch {empty[0]} of epoch {epoch + 1} has no weight: its samples' "
                         "sample_weight are all 0; give them weight, or a larger batch_size")
    return totals


class _Hooks:
    """A fit around the loop's steps: its loss, and whether to go on. No output, no files."""

    stop, watch = NoStop, UNWATCHED

    def __init__(self, net: MLP, course: Course, settings: Settings,
                 on_epoch: Callable[[int, float], bool]) -> None:
        self.net, self.course, self.settings, self.on_epoch = net, course, settings, on_epoch
        # Where each layer's w lies in the flat parameters: for the L2 term
        self.spans = [(s.start, s.start + a * b)
                      for s, a, b in zip(net.layer_slices, net.sizes[:-1], net.sizes[1:])]
        self.loss, self.squares, self.totals = 0.0, 0.0, None

    def epoch_begins(self, epoch: int, start: Position) -> None:
        self.loss = 0.0
        self.totals = None if self.course.totals is None else self.course.totals(epoch)

    def step_begins(self, epoch: int, k: int, epoch_cost: float) -> None:
        if self.settings.alpha:  # ||w||^2 before the step, as the step's loss has it
            flat = self.net.params
            self.squares = sum(float(np.dot(flat[a:b], flat[a:b])) for a, b in self.spans)

    def step_done(self, done: Position, cost: float, stopping: bool) -> None:
        m = self.settings.m
        total = m if self.totals is None else float(self.totals[done.step - 1])
        self.loss += (self.settings.cost_scale * cost
                      + 0.5 * self.settings.alpha * self.squares) * m / total

    def epoch_done(self, epoch: int, start: Position, epoch_cost: float,
                   seconds: float) -> bool:
        return self.on_epoch(epoch, self.loss / (self.course.steps * self.settings.m))


def parameters(net: MLP) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of the weights and biases in scikit-learn's layout: w^T (n_in, n_out), b."""
    return [w.T.copy() for w in net.weights], [b.copy() for b in net.biases]


def set_parameters(net: MLP, coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> None:
    """Put weights and biases in scikit-learn's layout (``parameters``) into ``net``."""
    for w, b, coef, intercept in zip(net.weights, net.biases, coefs, intercepts):
        w[...] = coef.T
        b[...] = intercept


def save_fitted(path: str, net: MLP, state: dict[str, Any], settings: Settings, partitions: int,
                epochs: int, names: dict[str, list[str]]) -> None:
    """Write a fitted ``net`` as a distnn checkpoint (``distnn.checkpoint``): with the
    settings it was fitted with, its optimizer's ``state``, and as a table's model, rows
    read as they are and a regression's targets in their own units, for
    ``distnn.load_model``, ``python -m distnn.predict`` and ``distnn.evaluate``."""
    classifier = net.cost.name != REGRESSION
    cfg = Config(data="", layers=net.sizes, hidden=net.sizes[1:-1],
                 activation=net.activation.name, cost=net.cost.name, init=net.init.name,
                 dtype=net.dtype.name, dropout=settings.dropout, max_norm=settings.max_norm,
                 epochs=max(1, epochs), batch_size=settings.m, lr=settings.lr,
                 momentum=state["momentum"], nesterov=bool(state["nesterov"]),
                 weight_decay=state["weight_decay"], schedule=settings.schedule,
                 warmup_epochs=0.0, seed=settings.seed, partitions=partitions)
    n = net.sizes[-1]
    data = {"task": "classification" if classifier else "regression",
            "feature_scaling": "none", "n_outputs": n, "names": names}
    scaling = {} if classifier else {"target_mean": np.zeros(n), "target_std": np.ones(n)}
    position = {"epoch": epochs, "step": 0, "steps": 1, "epoch_cost": 0.0, "ranks": 1}
    save_checkpoint(path, net, state, cfg.to_dict(), position, data, scaling)


def comm_done(comm: Comm) -> None:
    """Release a communicator ``job`` made (collective)."""
    if comm.size > 1:
        comm.free()  # MPI


__all__ = ["Diverging", "Settings", "comm_done", "fit_arrays", "fullest_partitions", "job",
           "parameters", "same_everywhere", "save_fitted", "set_parameters", "shared_seed"]

