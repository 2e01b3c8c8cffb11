"""Data-parallel training: the seed's mini-batch SGD, one replica per MPI rank.

    python -m distnn.train                      # one process (debug with pdb, profile)
    mpirun -n 4 python -m distnn.train          # four ranks on this machine
    sbatch launch/slurm.sbatch                  # a cluster job (see launch/)

Every rank holds the same network and its own shard of the training set. For
each global mini-batch of m samples, rank r backpropagates its m_r of them,
the ranks sum their gradients with one Allreduce, and every rank applies

    w -> w - (eta/m) sum_x dC_x/dw,    b -> b - (eta/m) sum_x dC_x/db

so the replicas stay identical without ever sending parameters again. On one
node the ranks can do better still: they share one copy of the network, sum
through shared memory and each update a part of it (``--reduce``, see
``distnn.reduce``). The distributed lines are few and marked "# MPI:".

One such step is ``distnn.step.step``. ``fit`` is the loop of epochs and steps
around it, with what happens between steps (replica checks, commits, a stop);
``train`` sets it up from a ``Start`` (``distnn.start``: settings, data and
checkpoint agreed on by every rank), and ``main`` is the command line, which
turns every failure into an exit status for the whole job (``distnn.protocol``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any


from distnn import architecture, blas, ranktimes
from distnn.augment import Augment
from distnn.comm import Comm, world
from distnn.commits import CommitClock
from distnn.config import Config, parse_args
from distnn.dropout import Dropout
from distnn.evaluate import test_scores
from distnn.log import RunLog, banner, layers_line
from distnn.protocol import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_IOERR, EXIT_OK, EXIT_TWICE,
                             EXIT_USAGE, STOP_SIGNALS, TRAINING)
from distnn.reduce import make_reducer
from distnn.replicas import ReplicaMismatch
from distnn.replicas import check as check_replicas
from distnn.data.stream import Stream
from distnn.samples import Shard, training_rows
from distnn.saving import Saver
from distnn.schedules import make_schedule
from distnn.stall import Watch, watch
from distnn.loop import Course, Position, run_epochs
from distnn.start import (USER_ERRORS, OnThisRank, Start, UsageError, agree_on_start,
                          crowded_note, memory_line, network_and_optimizer, streaming_note)
from distnn.step import Diverged, Recipe, Replica
from distnn.trace import Trace
from distnn.writes import WriteFailed


class StopRequest:
    """Set by SIGTERM, SIGINT or SIGUSR1; the loop finishes its step, saves and exits.

    A batch system sends SIGTERM before its time limit kills the job; Ctrl-C
    sends SIGINT. SIGUSR1 is the same request for launchers that take SIGTERM
    as "abort now" and pass only SIGUSR1 and SIGUSR2 on to the ranks (Open
    MPI's mpirun), and is Slurm's --signal default. A second signal a while
    later means "now": it raises KeyboardInterrupt. One event often arrives
    twice within milliseconds (Ctrl-C reaches the rank and mpirun, which
    forwards it; PBS signals every process of the job), so a repeat inside
    REPEAT_SECONDS is the same request.
    """

    REPEAT_SECONDS = 1.0

    def __init__(self) -> None:
        self.requested = False
        self._first = 0.0
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        # Python runs a handler only once the main thread is back in Python, never
        # while it waits in MPI; the stall watch reads this pipe instead.
        self.wakeup, write_end = os.pipe()
        for fd in (self.wakeup, write_end):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first = True, now
        elif now - self._first >= self.REPEAT_SECONDS:
            raise KeyboardInterrupt


@dataclass
class Plan:
    """The run's fixed numbers (what each step does, in what order, at what rate, from
    where: ``distnn.loop.Course``), and where its state goes."""
    cfg: Config
    data: dict[str, Any]  # the data file's shape, task and scaling (distnn.data.describe)
    course: Course
    commits: CommitClock  # when to write the checkpoint mid-epoch (--commit-every)
    saver: Saver  # writes the checkpoints, and knows the last one written
    trace: Trace  # the timeline of a stretch of steps (--trace)

    @property
    def m(self) -> int:
        return self.course.recipe.m

    @property
    def steps(self) -> int:  # per epoch
        return self.course.steps


class RunHooks:
    """What a run of the command line does around the loop's steps (``distnn.loop``):
    where it is, for a stall report and a supervisor; its progress; a trace; replica
    checks and commits between steps; and after each epoch the test split's scores,
    the ranks' times, the epoch's record and its checkpoint."""

    def __init__(self, replica: Replica, test_set: Shard, plan: Plan, comm: Comm, log: RunLog,
                 stop: StopRequest, stall: Watch) -> None:
        self.replica, self.test_set, self.plan, self.comm, self.log = (replica, test_set, plan,
                                                                        comm, log)
        self.stop, self.watch = stop, stall
        self.lapped = dict(replica.lap.seconds)  # this rank's times at the last record
        self.stragglers = ranktimes.Stragglers()
        self.bar: Any = None

    def epoch_begins(self, epoch: int, start: Position) -> None:
        self.bar = self.log.progress(self.plan.steps, start.step, epoch)

    def step_begins(self, epoch: int, k: int, epoch_cost: float) -> None:
        self.watch.at(epoch, k, epoch_cost)  # where a stall report will say the job was
        self.log.position(epoch, k)  # where a supervisor will say the job was
        if self.plan.trace.active:
            self.plan.trace.before(self.replica.lap)  # MPI, on the first

    def step_done(self, done: Position, cost: float, stopping: bool) -> None:
        if self.plan.trace.active:
            self.log.warn(self.plan.trace.after(self.replica.lap, done.epoch, done.step - 1)
                          or "")  # MPI, on the last
        self.bar.step(cost)
        if stopping:
            self.bar.close()
        else:
            _after_step(self.comm, self.replica, self.plan, done)

    def epoch_done(self, epoch: int, start: Position, epoch_cost: float,
                   seconds: float) -> bool:
        comm, replica, plan = self.comm, self.replica, self.plan
        self.bar.close()
        check_replicas(comm, replica.net.params, replica.optimizer.velocity,
                       f"after epoch {epoch + 1}")  # MPI
        scores, _ = _test(comm, replica, self.test_set, plan)  # MPI
        parts = ranktimes.since(replica.lap.seconds, self.lapped, replica.reducer.waited())  # MPI
        self.lapped = dict(replica.lap.seconds)  # the next record has this epoch's save in it
        # The ranks' record (and a straggler's line) first: an epoch's record stays the
        # last line of its epoch in the metrics file, as scripts that read it expect.
        _rank_times(comm, parts, epoch, seconds, self.stragglers, self.log)  # MPI
        self.log.epoch(_epoch_record(epoch, epoch_cost, scores, seconds,
                                     plan.steps - start.step, plan, parts))
        plan.saver.save(Position(epoch + 1))  # MPI
        plan.commits.reset()
        return False


def fit(replica: Replica, train_set: Shard | Stream, test_set: Shard, plan: Plan, comm: Comm,
        log: RunLog, stop: StopRequest, stall: Watch) -> int:
    """The seed's mini-batch SGD, epoch by epoch (``distnn.loop``); returns the exit status.

    Each step (``distnn.step``): this rank's part of the batch, its gradient by
    backprop, the sum over all ranks, and the update w -> w - (eta/m) sum_x dC_x/dw.
    """
    hooks = RunHooks(replica, test_set, plan, comm, log, stop, stall)
    done, stopped = run_epochs(replica, train_set, plan.course, comm.rank, comm.size, hooks)
    if stopped:
        return _interrupted(plan, done, log)
    if plan.trace.active:  # the run was shorter than the stretch: the steps it took
        log.warn(plan.trace.write() or "")  # MPI
    return EXIT_OK


def _rank_times(comm: Comm, mine: dict[str, float], epoch: int, seconds: float,
                stragglers: ranktimes.Stragglers, log: RunLog) -> None:
    """Every rank's time in each part of its steps this epoch, to rank 0 (collective):
    a record of them, and a line naming a straggler, if one held the others back."""
    gathered = comm.allgather((comm.hostname(), mine))  # MPI
    if comm.rank != 0:
        return
    hosts, per_rank = [host for host, _ in gathered], [times for _, times in gathered]
    found = stragglers.find(per_rank, hosts, seconds)
    if found:
        log.warn(ranktimes.straggler_text(found))
    log.record({"event": "ranks", "epoch": epoch + 1, "hosts": hosts,
                "parts": ranktimes.summary(per_rank), "straggler": found,
                "by_rank": {part: [times[part] for times in per_rank]
                            for part in ranktimes.PARTS}})


def _after_step(comm: Comm, replica: Replica, plan: Plan, done: Position) -> None:
    """Between steps: the replica check every --check-every steps, and the commit when due."""
    check_every = plan.cfg.check_every
    if check_every and done.step % check_every == 0:
        check_replicas(comm, replica.net.params, replica.optimizer.velocity,
                       f"at epoch {done.epoch + 1}, step {done.step}")  # MPI
    if plan.commits.due() and done.step < plan.steps:  # the epoch's end writes one anyway
        if comm.rank == 0:  # every replica holds this state: no one waits for it
            plan.saver.commit(done)
        plan.commits.reset()


def _interrupted(plan: Plan, done: Position, log: RunLog) -> int:
    """A stop was asked for: the checkpoint after this step, and the status that says so."""
    plan.saver.save(done)  # MPI
    log.say(f"distnn: interrupted at epoch {done.epoch + 1}, step {done.step}: checkpoint "
            f"written to {plan.cfg.checkpoint}; continue with --resume")
    return EXIT_INTERRUPTED


def _test(comm: Comm, replica: Replica, test_set: Shard,
          plan: Plan) -> tuple[dict[str, Any], str]:
    """The test split's scores over every rank (collective): record fields, final line."""
    info = plan.data
    return test_scores(comm, replica.net, test_set, info["task"], info["n_outputs"],
                       info["scaling"])


def _epoch_record(epoch: int, epoch_cost: float, scores: dict[str, Any], seconds: float,
                  steps_run: int, plan: Plan, parts: dict[str, float]) -> dict[str, Any]:
    return {
        "epoch": epoch + 1,
        "cost": epoch_cost / (plan.steps * plan.m),  # per sample; a resumed epoch kept its sum
        **scores,  # the test split's: accuracy, or RMSE, MAE and R^2
        "seconds": seconds,
        "samples_per_s": steps_run * plan.m / seconds,
        # rank 0's time in collectives: waiting for the other ranks, and the summing
        "comm_share": (parts["wait"] + parts["sum"]) / seconds,
        "wait_share": parts["wait"] / seconds,
        "sum_share": parts["sum"] / seconds,
    }


def train(start: Start, mine: OnThisRank, comm: Comm, stop: StopRequest, log: RunLog) -> int:
    """Run (or continue) the training ``start`` describes; returns the process exit status."""
    cfg = start.cfg
    log.say(layers_line(cfg, start.layers_from))
    memory = memory_line(start)
    if memory:
        log.say(memory)
    log.note(crowded_note(mine.ranks_here))
    stall = watch(comm, cfg.stall_timeout)  # MPI
    net, optimizer = network_and_optimizer(start, mine, comm)  # MPI
    train_set = training_rows(cfg.data, comm, net.dtype, start.info, start.order, cfg.seed,
                              start.budget)  # held, or streamed when they exceed the budget
    test_set = Shard.load(cfg.data, "test", comm, net.dtype, start.info)
    if start.resumed:
        log.say(f"distnn: resuming {cfg.checkpoint} at epoch {start.position.epoch + 1}, "
                f"step {start.position.step}")
    try:
        reducer = make_reducer(comm, net, optimizer, cfg.reduce)  # MPI
    except ValueError as err:  # every rank saw the same node sizes and room
        raise UsageError(str(err)) from None
    replica = Replica(net, optimizer, reducer)
    plan = _plan(start, comm, replica, log)
    log.note(reducer.note)
    log.say(banner(cfg, start.info, comm.size, reducer.describe(), mine.threads,
                   plan.course.recipe.share[1], plan.steps))
    log.note(streaming_note(start, comm.size))
    libraries = blas.libraries()  # what does the arithmetic, most of a step's time
    library = blas.describe(libraries)
    log.say(f"distnn: BLAS: {library} each")
    log.note(blas.kernel_warning(libraries) or "")  # advice on speed, not a fault of the run
    first = plan.course.first
    log.record({"event": "start", "ranks": comm.size, "config": cfg.to_dict(),
                "epoch": first.epoch, "step": first.step, "blas": library})
    if comm.rank == 0:  # a signal during a stall: what rank 0 writes before the job ends
        stall.keep(lambda where: plan.saver.write_or_say(Position(*where)), cfg.checkpoint)
    stall.listen(getattr(stop, "wakeup", None))
    log.event(TRAINING, epoch=first.epoch, step=first.step, resumed=start.resumed)
    # Leaving the block normally (or on a stop) frees shared memory; a crash just exits.
    with reducer:
        status = fit(replica, train_set, test_set, plan, comm, log, stop, stall)
    train_set.close()
    if status == EXIT_OK:
        log.final(_test(comm, replica, test_set, plan)[1])  # MPI
    stall.close()  # MPI
    return status


def _plan(start: Start, comm: Comm, replica: Replica, log: RunLog) -> Plan:
    """The run's fixed numbers, on this rank, and its saver."""
    cfg, order, dtype = start.cfg, start.order, replica.net.dtype
    steps = order.steps
    eta = make_schedule(cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps,
                        warmup_steps=round(cfg.warmup_epochs * steps),
                        step_size=cfg.step_epochs * steps, gamma=cfg.gamma)
    convs, dense = architecture.plan(cfg.layers)
    # A conv net's conv features are hidden units: they drop as the others do (network3)
    dropout = Dropout(dense, cfg.dropout, cfg.dropout if convs else cfg.input_dropout, dtype)
    recipe = Recipe(cfg.batch_size, order.share_of(comm.rank, comm.size), cfg.seed,
                    Augment.parse(cfg.augment, start.info["image_shape"]), dropout, cfg.max_norm)
    saver = Saver(cfg, steps, comm, replica, log, start.position if start.resumed else None,
                  start.info)
    course = Course(recipe, order, eta, cfg.epochs, start.position)
    return Plan(cfg, start.info, course, CommitClock(cfg.commit_every), saver,
                Trace(cfg.trace, cfg.trace_steps, comm))


def run(cfg: Config, given: dict[str, Any], comm: Comm, stop: StopRequest | None = None) -> int:
    """Agree on the start (``given``: the settings named on the command line), then train.

    ``stop`` lets a test stand in for the signals.
    """
    stop = stop or StopRequest()  # before the start: a signal while preparing data is kept too
    start, mine = agree_on_start(comm, cfg, given)
    log = RunLog(start.cfg, comm.rank)
    try:
        return train(start, mine, comm, stop, log)
    finally:
        log.close()
        if mine.lock is not None:  # rank 0's; a process killed outright drops it too
            mine.lock.release()


def main(argv: list[str] | None = None, comm: Comm | None = None) -> int:
    """The command line: train, and turn every outcome into the process's exit status
    (``distnn.protocol``). ``comm`` lets a test run it in one process without MPI."""
    comm = comm or world()
    cfg, given = parse_args(argv, quiet=comm.rank != 0)
    try:
        return run(cfg, given, comm)
    except UsageError as err:  # every rank raised it: all exit, rank 0 says why
        if comm.rank == 0:
            print(f"distnn.train: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WriteFailed as err:  # every rank: rank 0 could not write, and told the others
        if comm.rank == 0:
            print(f"distnn.train: {err}; {err.remedy}", file=sys.stderr)
        return EXIT_IOERR
    except Diverged as err:  # every rank saw the same sum
        if comm.rank == 0:
            print(f"distnn.train: error: {err}; {cfg.checkpoint} keeps the last good state "
                  "(try a smaller --lr)", file=sys.stderr)
        return EXIT_FAILED
    except ReplicaMismatch as err:  # every rank saw the same hashes
        if comm.rank == 0:
            print(f"distnn.train: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except BaseException as err:  # one rank's trouble: end the whole job, not just this rank
        if isinstance(err, USER_ERRORS):
            print(f"distnn.train: rank {comm.rank}: error: {err}", file=sys.stderr)
        elif isinstance(err, KeyboardInterrupt):
            print(f"distnn.train: rank {comm.rank}: interrupted twice, stopping now",
                  file=sys.stderr)
        else:  # the summary first: the line a user needs, even if the traceback is cut
            print(f"distnn.train: rank {comm.rank} failed; aborting all ranks", file=sys.stderr)
            traceback.print_exc()
        comm.abort(EXIT_TWICE if isinstance(err, KeyboardInterrupt) else EXIT_FAILED)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
