"""The training job's configuration: one object, built from the command line.

Configuration flows one way: command line -> ``Config`` -> the functions that
need it. The resolved ``Config`` is printed at start, saved in every
checkpoint and written as the first record of the metrics file, so a result
can always be traced back to the settings that made it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field

from distnn.activations import ACTIVATIONS
from distnn import architecture, commits
from distnn.augment import SPEC_HELP, Augment, AugmentError
from distnn.costs import COSTS
from distnn.initializers import INITIALIZERS
from distnn.protocol import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_IOERR, EXIT_OK, EXIT_TWICE,
                             EXIT_USAGE)
from distnn.data.order import WINDOW_BLOCKS
from distnn.memory import parse_bytes
from distnn.reduce import REDUCERS
from distnn.schedules import SCHEDULES

DEFAULT_DATA = "data/mnist.h5"

# Settings that may differ when a run is resumed: where things are, and how long
# to train. Everything else must match the checkpoint, or the resumed run would
# not be the run that was interrupted.
RESUMABLE_CHANGES = ("data", "checkpoint", "resume", "metrics", "epochs", "progress", "reduce",
                     "stall_timeout", "check_every", "take_lock", "commit_every",
                     "progress_every", "trace", "trace_steps", "memory_budget")
# This invocation's own settings: where the run writes, and whether it may take
# another run's lock. They come from its command line (or the defaults), never
# from a checkpoint: a copied, shared or tampered checkpoint must not choose
# which file the trainer replaces or appends to.
OWN = ("checkpoint", "metrics", "take_lock", "trace")


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


@dataclass
class Config:
    # I/O
    data: str = DEFAULT_DATA
    checkpoint: str = "runs/checkpoint.h5"  # written after every epoch and on SIGTERM
    resume: bool = False
    metrics: str | None = None
    # Model. The defaults reach >= 98% MNIST test accuracy (docs/accuracy.md).
    # Empty: the data file's features, then --hidden, then its classes (or targets),
    # filled in when the run starts (distnn.start) and saved so in the checkpoint.
    layers: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=lambda: [256])  # [] = none: a linear model
    activation: str = "relu"
    cost: str = "cross_entropy"
    init: str = "he"
    dtype: str = "float32"  # float32 is twice as fast and accurate enough for SGD
    # Regularisation, all off by default (docs/accuracy.md, for recipes that use them).
    dropout: float = 0.0  # p of the hidden units (distnn.dropout)
    input_dropout: float = 0.0  # p of the input pixels
    max_norm: float = 0.0  # c of each hidden unit's incoming weights; 0 = none
    augment: str = ""  # distortions of each training image (distnn.augment)
    # Optimizer. batch_size is the seed's m: the *global* mini-batch, split over ranks.
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_epochs: int = 10  # the "step" schedule multiplies lr by gamma this often
    gamma: float = 0.1
    # System
    seed: int = 0
    # C, the canonical partitions of the training set that fix its order for any
    # number of ranks (distnn.data.order); 0 = chosen when the run starts, then kept.
    partitions: int = 0
    # W, rows of each partition shuffled together, read a window at a time when the
    # rows are streamed (distnn.data.order); 0 = chosen when the run starts, then kept.
    window: int = 0
    # The bytes of training rows a rank may hold: beyond them it streams its rows
    # from the file (distnn.data.stream); "" = half the memory available, shared out.
    memory_budget: str = ""
    reduce: str = "auto"  # distnn.reduce.make_reducer
    # A rank waiting this long in a collective ends the job, naming whom it waits
    # for (distnn.stall); long enough for rank 0 to prepare MNIST, 0 turns it off.
    stall_timeout: float = 300.0
    # The replicas are compared after every epoch, and every check_every steps if > 0.
    check_every: int = 0
    # The checkpoint is also written mid-epoch this often: steps, or seconds ("10s").
    commit_every: str = commits.DEFAULT
    progress: bool = True  # a progress bar on a terminal, progress lines elsewhere
    # Where stderr is not a terminal (mpirun, srun, a batch job's file): a progress
    # line from rank 0 every progress_every seconds; 0 turns them off.
    progress_every: float = 10.0
    trace: str | None = None  # a timeline of the first trace_steps steps (distnn.trace)
    trace_steps: int = 100
    take_lock: bool = False  # write the checkpoint even if another run's lock names it

    def validate(self) -> None:
        """Raise ConfigError on any setting that cannot work, before any training."""
        if self.layers:
            try:
                architecture.plan(self.layers)
            except architecture.SpecError as err:
                raise ConfigError(f"--layers {architecture.text(self.layers)}: {err}") from None
        if any(isinstance(n, int) and n < 1 for n in self.hidden):
            raise ConfigError(f"--hidden needs positive widths, or \"\" or 0 for no hidden "
                              f"layer, got {architecture.text(self.hidden)}")
        try:  # between an image input and an output, whatever the data file's are
            architecture.plan(["1x1000x1000", *self.hidden, 1])
        except architecture.SpecError as err:
            raise ConfigError(f"--hidden {architecture.text(self.hidden)}: {err}") from None
        if self.input_dropout and architecture.is_conv(self.layers or self.hidden):
            raise ConfigError("--input-dropout drops an MLP's input pixels; a conv net's "
                              "--dropout drops the inputs of its fully connected layers, "
                              "the conv features among them")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown --activation {self.activation!r}")
        positive = {"epochs": self.epochs, "batch-size": self.batch_size}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} must be at least 1, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs --momentum > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_epochs <= self.epochs:  # NaN too
            raise ConfigError(f"--warmup-epochs must be a number from 0 to --epochs "
                              f"({self.epochs}), got {self.warmup_epochs}")
        if self.step_epochs < 1:
            raise ConfigError(f"--step-epochs must be at least 1, got {self.step_epochs}")
        for flag, p in (("dropout", self.dropout), ("input-dropout", self.input_dropout)):
            if not 0 <= p < 1:  # NaN too
                raise ConfigError(f"--{flag} must be in [0, 1), got {p}")
        if not (math.isfinite(self.max_norm) and self.max_norm >= 0):
            raise ConfigError(f"--max-norm must be >= 0 (0 = none), got {self.max_norm}")
        try:
            Augment.parse(self.augment)
        except AugmentError as err:
            raise ConfigError(f"--augment {self.augment!r}: {err}") from None
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"--gamma must be a positive number, got {self.gamma}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if self.partitions < 0:
            raise ConfigError(f"--partitions must be >= 1 (0 = the default), got "
                              f"{self.partitions}")
        if self.window < 0:
            raise ConfigError(f"--window must be >= {WINDOW_BLOCKS} rows (0 = the default), "
                              f"got {self.window}")
        if self.memory_budget:
            try:
                parse_bytes(self.memory_budget)
            except ValueError as err:
                raise ConfigError(f"--memory-budget {self.memory_budget!r}: {err}") from None
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown --schedule {self.schedule!r}")
        if self.reduce not in REDUCERS:
            raise ConfigError(f"unknown --reduce {self.reduce!r}")
        if not self.checkpoint:
            raise ConfigError("--checkpoint must name a file")
        if self.metrics is not None and not self.metrics:
            raise ConfigError("--metrics must name a file")
        if self.check_every < 0:
            raise ConfigError(f"--check-every must be >= 0 steps, got {self.check_every}")
        try:
            commits.parse(self.commit_every)
        except commits.CommitError as err:
            raise ConfigError(f"--commit-every: {err}") from None
        if not (math.isfinite(self.stall_timeout) and self.stall_timeout >= 0):
            raise ConfigError(f"--stall-timeout must be >= 0 seconds, got {self.stall_timeout}")
        if self.trace_steps < 1:
            raise ConfigError(f"--trace-steps must be at least 1, got {self.trace_steps}")
        if not (self.progress_every == 0 or 1 <= self.progress_every < math.inf):
            # a line a second at most: a long run's output stays readable, and small
            raise ConfigError("--progress-every must be 0 (no lines) or at least 1 second, "
                              f"got {self.progress_every:g}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """The Config a checkpoint saved; a value of the wrong type is a ConfigError.

        Settings it lacks (saved by an older distnn) take their defaults.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"settings must be a JSON object, got {type(d).__name__}")
        defaults = cls()
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            value, default = d[f.name], getattr(defaults, f.name)
            if not _same_kind(value, default, f.name):
                raise ConfigError(f"setting {f.name!r} is {value!r}, expected {f.type}")
            values[f.name] = float(value) if isinstance(default, float) else value
        if "hidden" not in d and len(values.get("layers", [])) >= 2:
            # saved before --hidden existed: its hidden widths are those of its layers
            values["hidden"] = values["layers"][1:-1]
        return cls(**values)


def _same_kind(value, default, name: str) -> bool:
    """Whether saved ``value`` can stand where ``default`` does (JSON has no bool/int split)."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if name == "metrics":
        return value is None or isinstance(value, str)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return number(value) and isinstance(value, int)
    if isinstance(default, float):
        return number(value)
    if isinstance(default, list):  # a network spec's items (distnn.architecture)
        return isinstance(value, list) and all(isinstance(v, str) or number(v)
                                               and isinstance(v, int) for v in value)
    return isinstance(value, type(default))


def parse_layers(text: str) -> list[int | str]:
    """'784,100,10' -> [784, 100, 10], '1x28x28,conv20x5,pool2,10' -> ['1x28x28', 'conv20x5',
    'pool2', 10] (``distnn.architecture``); an argparse type, so a bad list is a usage error."""
    try:
        return architecture.parse(text)
    except architecture.SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_hidden(text: str) -> list[int | str]:
    """'256,128' -> [256, 128]; "" or "0" -> [], no hidden layer (0 = none, as for
    --max-norm and --check-every)."""
    return [] if text.strip() in ("", "0") else parse_layers(text)


class _Parser(argparse.ArgumentParser):
    """An argparse parser that stays quiet on all but rank 0.

    Every rank parses the same command line and reaches the same verdict, so
    all of them exit with the same status, but only one says why.
    """

    def __init__(self, *args, quiet: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.quiet = quiet

    def _print_message(self, message: str, file=None) -> None:
        if not self.quiet:
            super()._print_message(message, file)


DESCRIPTION = """\
Train a fully connected network on MNIST (or any file made by
`python -m distnn.data prepare`) with data-parallel SGD over MPI.

Every rank holds a replica of the network and reads its own part of the
training set (whole partitions of it: see --partitions). Each step the ranks
backpropagate their part of the global mini-batch, sum the gradients with one
Allreduce, and apply the same update.
(Ranks on one node share one replica instead: see --reduce.)
"""

EPILOG = f"""\
examples:
  mpirun -n 4 python -m distnn.train                 # 4 ranks, defaults: >= 98% on MNIST
  python -m distnn.train --epochs 1                  # one process, to debug
  python -m distnn.train --data data/iris.h5 --hidden 16   # a table: 4,16,3 from its widths
  python -m distnn.train --layers 784,30,10 --activation sigmoid --cost quadratic \\
      --init standard --batch-size 10 --lr 3.0 --momentum 0 --weight-decay 0 \\
      --schedule constant --warmup-epochs 0 --epochs 10   # the seed lecture's recipe
  mpirun -n 4 python -m distnn.train --resume       # continue an interrupted run

exit status: {EXIT_OK} trained; {EXIT_USAGE} bad arguments, data or checkpoint, a --checkpoint or
--metrics that cannot be written or is the --data file, or a checkpoint another run writes (its
PATH.lock); {EXIT_INTERRUPTED} interrupted by SIGTERM, SIGINT or SIGUSR1 after writing the
checkpoint (rerun with --resume), also after a stall (see --stall-timeout)
when rank 0 could write it; {EXIT_TWICE} stopped at once by a second signal (the last
checkpoint is kept); {EXIT_IOERR} a file could not be written (a full disk, a quota, a
read-only file system: free space, then --resume); {EXIT_FAILED} any other failure, a
stall without a checkpoint, or replicas that differ (see --check-every).

BLAS threads: each rank uses cores/ranks-on-node threads; set DISTNN_THREADS=n,
or OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, to choose yourself.
"""


def build_parser(quiet: bool = False) -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m distnn.train",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        quiet=quiet,
        argument_default=argparse.SUPPRESS,  # absent flags stay absent: see parse_args
    )
    d = Config()
    _files_arguments(p.add_argument_group("data and files"), d)
    _model_arguments(p.add_argument_group("model"), d)
    _regularisation_arguments(p.add_argument_group("regularisation"), d)
    _optimizer_arguments(p.add_argument_group("optimizer"), d)
    _system_arguments(p.add_argument_group("system"), d)
    return p


def _files_arguments(io, d: Config) -> None:
    io.add_argument("--data", metavar="PATH",
                    help=f"HDF5 data file (default {d.data}; if that default is missing, "
                         "rank 0 prepares MNIST there first)")
    io.add_argument("--checkpoint", metavar="PATH",
                    help=f"checkpoint file, rewritten atomically after every epoch and on "
                         f"SIGTERM/SIGINT/SIGUSR1 (default {d.checkpoint})")
    io.add_argument("--resume", action="store_true",
                    help="continue from --checkpoint; starts afresh, with a notice, if it "
                         "does not exist yet (so batch scripts can always pass it)")
    io.add_argument("--metrics", metavar="PATH",
                    help="append one JSON line per epoch here (plot: python -m distnn.plot PATH); "
                         "a resumed run writes metrics only if given it again, as it writes "
                         "only to the --checkpoint it is given: never to paths stored in the "
                         "checkpoint")
    io.add_argument("--take-lock", action="store_true", dest="take_lock",
                    help="write --checkpoint even if its lock (PATH.lock) names another run "
                         "that may still be running; a lock whose run has ended, or that an "
                         "earlier run of this batch job holds, is taken over without it")


def _model_arguments(model, d: Config) -> None:
    hidden = ",".join(map(str, d.hidden))
    model.add_argument("--hidden", type=parse_hidden, metavar="LAYER,...",
                       help="the hidden layers, between the data file's features (or images) "
                            "and its classes (or targets), which the run takes from the file: "
                            "widths of fully connected layers, after convolutional layers "
                            "convFxK (F filters of KxK; convFxK:same keeps the map's size) each "
                            "optionally followed by poolP (PxP max-pooling), for images; "
                            f"\"\" or 0 = none, a linear model (softmax regression for "
                            f"classes) (default {hidden}: on MNIST, 784,{hidden},10; Nielsen's "
                            "conv net: conv20x5,pool2,conv40x5,pool2,100)")
    model.add_argument("--layers", type=parse_layers, metavar="N,LAYER,...,N",
                       help="every layer, from input to classes, instead of --hidden: the "
                            "input is the features (784) or the image shape (1x28x28, CxHxW, "
                            "for conv layers); the ends must be the data file's (default: the "
                            "file's, with --hidden between them)")
    model.add_argument("--activation", choices=sorted(ACTIVATIONS),
                       help=f"hidden (and, with the quadratic cost, output) activation "
                            f"(default {d.activation})")
    model.add_argument("--cost", choices=sorted(COSTS),
                       help=f"cost function (default {d.cost}; cross_entropy has a softmax "
                            "output layer)")
    model.add_argument("--init", choices=sorted(INITIALIZERS),
                       help=f"weight initialisation (default {d.init})")
    model.add_argument("--dtype", choices=["float32", "float64"],
                       help=f"floating-point type of parameters and arithmetic "
                            f"(default {d.dtype})")


def _regularisation_arguments(reg, d: Config) -> None:
    reg.add_argument("--dropout", type=float, metavar="P",
                     help="drop each hidden unit with probability P in every training step "
                          "(inverted dropout: evaluation uses the whole network) "
                          f"(default {d.dropout:g}: none)")
    reg.add_argument("--input-dropout", type=float, dest="input_dropout", metavar="P",
                     help=f"drop each input pixel with probability P (default "
                          f"{d.input_dropout:g}: none)")
    reg.add_argument("--max-norm", type=float, dest="max_norm", metavar="C",
                     help="after every update, scale each hidden unit's incoming weights "
                          f"back to length C if longer (default {d.max_norm:g}: none)")
    reg.add_argument("--augment", metavar="SPEC",
                     help="distort every training image afresh each step, drawn from the "
                          f"seed: {SPEC_HELP} (default: none)")


def _optimizer_arguments(opt, d: Config) -> None:
    opt.add_argument("--epochs", type=int,
                     help=f"passes over the training set (default {d.epochs})")
    opt.add_argument("--batch-size", type=int, dest="batch_size", metavar="M",
                     help=f"global mini-batch m, split over the ranks; needs m >= ranks "
                          f"(default {d.batch_size})")
    opt.add_argument("--lr", type=float, metavar="ETA",
                     help=f"learning rate eta of w -> w - (eta/m) sum_x dC_x/dw "
                          f"(default {d.lr})")
    opt.add_argument("--momentum", type=float, help=f"momentum (default {d.momentum})")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    opt.add_argument("--weight-decay", type=float, dest="weight_decay", metavar="LAMBDA",
                     help=f"L2 weight decay on weights, not biases (default {d.weight_decay})")
    opt.add_argument("--schedule", choices=sorted(SCHEDULES),
                     help=f"learning-rate schedule over the run (default {d.schedule})")
    opt.add_argument("--warmup-epochs", type=float, dest="warmup_epochs", metavar="E",
                     help=f"linear warm-up from 0 to --lr over E epochs "
                          f"(default {d.warmup_epochs})")
    opt.add_argument("--step-epochs", type=int, dest="step_epochs", metavar="K",
                     help=f"with --schedule step: multiply lr by --gamma every K epochs "
                          f"(default {d.step_epochs})")
    opt.add_argument("--gamma", type=float, help=f"step schedule factor (default {d.gamma})")


def _system_arguments(system, d: Config) -> None:
    system.add_argument("--seed", type=int,
                        help=f"seeds the initial weights, every epoch's shuffle, and every "
                             f"step's dropout masks and distortions "
                             f"(default {d.seed})")
    system.add_argument("--partitions", type=int, metavar="C",
                        help="cut the training set into C fixed partitions that every batch "
                             "draws from alike, so that the run's batches, and its result, "
                             "are the same on any number of ranks up to C, also when it "
                             "resumes on another number; needs C <= --batch-size. Fixed for "
                             "the run (default: 64, at most --batch-size, at least the "
                             "ranks it starts on)")
    system.add_argument("--window", type=int, metavar="ROWS",
                        help="rows of each partition shuffled together each epoch: a rank "
                             "that streams its rows from the file holds two windows of each "
                             "of its partitions at a time; fixed for the run like "
                             "--partitions, so the batches are the same however the rows are "
                             "held (default: 1 MiB of rows, or the whole partition when it "
                             "is smaller: a full shuffle)")
    system.add_argument("--memory-budget", dest="memory_budget", metavar="SIZE",
                        help="bytes of training rows a rank may hold, as 800M or 4G: a rank "
                             "whose partitions need more streams them from the file, a window "
                             "at a time, in the background (default: half the memory "
                             "available, shared by the node's ranks: the least that "
                             "MemAvailable, ulimit -v and the job's cgroups leave)")
    system.add_argument("--reduce", choices=REDUCERS,
                        help="how ranks sum gradients: allreduce = one MPI Allreduce, every "
                             "rank updates every parameter; shm = the ranks of a node share "
                             "one copy of the parameters, sum through shared memory and "
                             "each update a part (needs the same number of ranks on every "
                             "node, and room in /dev/shm); auto = shm where it applies, "
                             "else allreduce "
                             f"(default {d.reduce})")
    system.add_argument("--stall-timeout", type=float, dest="stall_timeout", metavar="SECONDS",
                        help="a rank that waits this long in a collective (for a rank that is "
                             "stopped, cut off or stuck) ends the job, naming that rank; 0 = "
                             f"never (default {d.stall_timeout:g})")
    system.add_argument("--check-every", type=int, dest="check_every", metavar="N",
                        help="compare every rank's parameters and optimizer state (a hash) "
                             "every N steps too, not only after each epoch; a difference "
                             f"stops the run, naming the ranks (default {d.check_every}: "
                             "after each epoch only)")
    system.add_argument("--commit-every", dest="commit_every", metavar="N|Ss",
                        help="also write the checkpoint mid-epoch, every N steps or every S "
                             "seconds, so that a lost rank or host costs at most that "
                             "much work; rank 0 writes it, atomically, as after each epoch; "
                             f"{commits.HELP} (default {commits.DEFAULT})")
    system.add_argument("--no-progress", action="store_false", dest="progress",
                        help="no progress bar and no progress lines")
    system.add_argument("--progress-every", type=float, dest="progress_every",
                        metavar="SECONDS",
                        help="where stderr is not a terminal (under mpirun or srun, into a "
                             "batch job's file), rank 0 writes a line of progress every "
                             "SECONDS: epoch, step, samples/s, the time left, the training "
                             "cost; a terminal gets a progress bar instead (the progress "
                             f"extra); 0 = no lines (default {d.progress_every:g})")
    system.add_argument("--trace", metavar="FILE",
                        help="write a timeline of the run's first --trace-steps steps, every "
                             "rank's, each step's parts as spans (reading the batch, backprop, "
                             "the sum, the update...), to FILE in the Chrome trace event format "
                             "(JSON) that ui.perfetto.dev and chrome://tracing open (default: "
                             "none)")
    system.add_argument("--trace-steps", type=int, dest="trace_steps", metavar="N",
                        help=f"the steps --trace records (default {d.trace_steps})")


def parse_args(argv: list[str] | None = None, quiet: bool = False) -> tuple[Config, dict]:
    """The Config for ``argv``, and the settings given explicitly on the command line.

    Exits with status 2 and a usage message on bad arguments (argparse's way).
    """
    parser = build_parser(quiet=quiet)
    given = vars(parser.parse_args(sys.argv[1:] if argv is None else argv))
    cfg = Config(**given)
    try:
        if "layers" in given and "hidden" in given:  # two answers to one question
            raise ConfigError("--layers and --hidden both give the hidden widths: give "
                              "--hidden alone (the data file gives the ends) or --layers alone")
        cfg.validate()
    except ConfigError as err:
        parser.error(str(err))
    if "layers" in given:  # an image input without conv layers: an MLP of its C*H*W pixels
        cfg.layers = given["layers"] = architecture.check(given["layers"])
    return cfg, given


def merge_resumed(saved: dict, given: dict) -> Config:
    """The config of a resumed run: the checkpoint's, with only resumable changes.

    An explicit setting that differs from the saved one and is not resumable is an
    error: silently ignoring it would surprise, silently taking it would break the
    promise that a resumed run equals the uninterrupted one.
    """
    cfg = Config.from_dict(saved)
    kept = Config.from_dict(saved)  # what the checkpoint says, its defaults for settings it lacks
    for name in OWN:
        setattr(cfg, name, getattr(Config(), name))
    for name, value in given.items():
        if name in RESUMABLE_CHANGES:
            setattr(cfg, name, value)
        elif getattr(kept, name) != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the checkpoint's {getattr(kept, name)}; a resumed "
                f"run keeps its settings (start a new run with another --checkpoint to change it)"
            )
    cfg.validate()
    return cfg
