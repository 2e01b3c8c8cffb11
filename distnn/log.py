"""What a run tells its user: lines on the terminal, the metrics file, a progress bar.

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
from typing import Any

from distnn.config import Config
from distnn.evaluate import scores_text
from distnn.protocol import POSITION, emit, report_seconds
from distnn.writes import WriteFailed, append


class _NoBar:
    """Stands in for a progress bar where there is none."""

    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


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
        if self.root:
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
        """A progress bar over the epoch's steps, when asked for and stderr is a terminal."""
        if not (self.root and self.cfg.progress and sys.stderr.isatty()):
            return _NoBar()
        try:
            from tqdm import tqdm
        except ImportError:
            return _NoBar()
        return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", leave=False,
                    unit="step", file=sys.stderr)

    def epoch(self, record: dict[str, Any]) -> None:
        """The line and the record of a finished epoch."""
        self.say(f"epoch {record['epoch']}/{self.cfg.epochs}  cost {record['cost']:.4f}  "
                 f"test {scores_text(record)}  time {record['seconds']:.1f}s  "
                 f"{record['samples_per_s']:.0f} samples/s  comm {record['comm_share']:.0%}")
        self.record(record)

    def final(self, text: str) -> None:
        self.say(text)


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
