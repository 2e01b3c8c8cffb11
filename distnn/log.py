"""What a run tells its user: lines on the terminal, the metrics file, its progress.

Only rank 0 speaks; the other ranks' ``RunLog`` says nothing, so the trainer
calls it the same way on every rank. Lines go out flushed, and the metrics
file (``--metrics``) is opened, appended to and closed for every record, so a
crash loses nothing that was reported before it. Under a supervisor, rank 0
also prints event lines for it (``distnn.protocol``): where the loop is, and
when training begins.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from distnn.config import Config
from distnn.evaluate import scores_text
from distnn.protocol import POSITION, emit, report_seconds
from distnn.writes import WriteFailed, append


class _NoBar:
    """Stands in for a progress bar where there is none."""

    def step(self, cost: float) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar:
    """tqdm's bar over the epoch's steps, on a terminal."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def step(self, cost: float) -> None:
        self._bar.update()

    def close(self) -> None:
        self._bar.close()


class _Lines:
    """A line of progress every ``every`` seconds, where stderr is a pipe or a file: one
    line, so that a run of hours writes kilobytes, not megabytes."""

    def __init__(self, every: float, epoch: int, epochs: int, steps: int, initial: int,
                 m: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.epoch, self.epochs, self.steps, self.m = every, epoch, epochs, steps, m
        self.clock, self.k = clock, initial
        self._start = self._said = clock()
        self._done_at_start, self._cost, self._costs = initial, 0.0, 0

    def step(self, cost: float) -> None:
        """A step is done; ``cost``: summed over its batch (the line gives it per sample)."""
        self.k += 1
        self._cost, self._costs = self._cost + cost, self._costs + 1
        now = self.clock()
        if now - self._said >= self.every and self.k < self.steps:
            print(self.line(now), file=sys.stderr, flush=True)
            self._said, self._cost, self._costs = now, 0.0, 0

    def line(self, now: float) -> str:
        rate = (self.k - self._done_at_start) / max(now - self._start, 1e-9)  # steps/s
        left = (self.steps - self.k + (self.epochs - self.epoch - 1) * self.steps) / rate
        return (f"distnn: epoch {self.epoch + 1}/{self.epochs}  step {self.k}/{self.steps} "
                f"({self.k / self.steps:.0%})  {rate * self.m:.0f} samples/s  "
                f"{_duration(left)} left  cost {self._cost / (self._costs * self.m):.4f}")

    def close(self) -> None:
        pass


def _comm(record: dict[str, Any]) -> str:
    """Rank 0's time in collectives: waiting for the other ranks, and the summing."""
    return f"wait {record['wait_share']:.0%}  sum {record['sum_share']:.0%}"


def _duration(seconds: float) -> str:
    """3s, 4m05s, 2h03m: what a person reads at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _PositionReport:
    """Rank 0's position, for a supervisor, every ``every`` seconds that it has changed.

    From a thread of its own: a loop that waits for a lost host in a collective
    has still had its last step reported, which tells the supervisor how many
    steps the loss costs.
    """

    def __init__(self, every: float) -> None:
        self.where: tuple[int, int] | None = None  # set by the loop, read by the thread
        self._said: tuple[int, int] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True,
                                        name="distnn-position")
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._done.wait(every):
            self._say()

    def _say(self) -> None:
        where = self.where
        if where is not None and where != self._said:
            emit(POSITION, epoch=where[0], step=where[1])
            self._said = where

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._say()


class RunLog:
    def __init__(self, cfg: Config, rank: int) -> None:
        self.cfg = cfg
        self.root = rank == 0
        self._unwritten: list[str] = []  # metrics lines not yet appended (a full disk)
        self._metrics_failing = False
        every = report_seconds() if self.root else 0.0
        self._report = _PositionReport(every) if every else None

    def say(self, text: str) -> None:
        if self.root:
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A line on stderr about how the run goes, not about its results."""
        if self.root and text:
            print(f"distnn: note: {text}", file=sys.stderr, flush=True)

    def event(self, event: str, **fields: Any) -> None:
        """An event line for a supervisor, if one listens (``distnn.protocol``)."""
        if self.root:
            emit(event, **fields)

    def position(self, epoch: int, step: int) -> None:
        """The loop is about to run this step: a supervisor hears of it (soon)."""
        if self._report is not None:
            self._report.where = (epoch, step)

    def close(self) -> None:
        """The run is over: the last position is reported, and the reporting ends."""
        if self._report is not None:
            self._report.close()

    def warn(self, text: str) -> None:
        """A line on stderr about something that went wrong, which the run survives."""
        if self.root and text:
            print(f"distnn: warning: {text}", file=sys.stderr, flush=True)

    def record(self, record: dict[str, Any]) -> None:
        """One JSON line in the metrics file, if the run keeps one.

        A line that cannot be appended (a full disk) is kept, and written before the
        next one that can be: the metrics are the run's record, not its state, so the
        run goes on (the checkpoint decides whether it can), with one warning, and a
        disk freed later loses no line.
        """
        if not (self.root and self.cfg.metrics):
            return
        self._unwritten.append(json.dumps(record) + "\n")
        try:
            append(self.cfg.metrics, "".join(self._unwritten))
        except WriteFailed as err:
            if not self._metrics_failing:
                self.warn(f"{err}; training goes on, and its records are kept until "
                          "--metrics takes them again")
            self._metrics_failing = True
            return
        if self._metrics_failing:
            self.note(f"{self.cfg.metrics} takes records again: those kept meanwhile "
                      "are written")
            self._metrics_failing = False
        self._unwritten.clear()

    def progress(self, total: int, initial: int, epoch: int):
        """The epoch's progress, told step by step (``.step(cost)``): a bar on a terminal,
        lines every --progress-every seconds on a pipe or in a file (rank 0)."""
        if not (self.root and self.cfg.progress):
            return _NoBar()
        if not sys.stderr.isatty():
            every = self.cfg.progress_every
            return _Lines(every, epoch, self.cfg.epochs, total, initial,
                          self.cfg.batch_size) if every else _NoBar()
        try:
            from tqdm import tqdm
        except ImportError:
            return _NoBar()
        return _Bar(tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", leave=False,
                         unit="step", file=sys.stderr))

    def epoch(self, record: dict[str, Any]) -> None:
        """The line and the record of a finished epoch."""
        self.say(f"epoch {record['epoch']}/{self.cfg.epochs}  cost {record['cost']:.4f}  "
                 f"test {scores_text(record)}  time {record['seconds']:.1f}s  "
                 f"{record['samples_per_s']:.0f} samples/s  {_comm(record)}")
        self.record(record)

    def final(self, text: str) -> None:
        self.say(text)


def layers_line(cfg: Config, origin: str) -> str:
    """The run's first line: the network's sizes, and where they came from (distnn.start)."""
    return f"distnn: layers {','.join(map(str, cfg.layers))} ({origin})"


def banner(cfg: Config, info: dict[str, Any], ranks: int, summing: str,
           threads: int | None, m_here: int, steps: int) -> str:
    """The run's first line: who sums how, the data, the network, the batch."""
    summing = f", summing by {summing}" if ranks > 1 else ""
    regularised = [f"{name} {value:g}" for name, value in
                   (("dropout", cfg.dropout), ("input dropout", cfg.input_dropout),
                    ("max-norm", cfg.max_norm)) if value]
    regularised += [f"augment {cfg.augment}"] if cfg.augment else []
    return (f"distnn: {ranks} rank(s){summing}, {threads or 'user-set'} BLAS thread(s) each; "
            f"{cfg.data}: {info['train_size']} train / {info['test_size']} test; "
            f"net {','.join(map(str, cfg.layers))} {cfg.activation}/{cfg.cost} {cfg.dtype}"
            + "".join(f", {r}" for r in regularised) +
            f"; m={cfg.batch_size} ({m_here} on rank 0) from {cfg.partitions} partitions, "
            f"{steps} steps/epoch")
