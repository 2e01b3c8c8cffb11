"""The supervisor's loop: what it sees made events, the policy's actions carried out.

Every ``POLL_SECONDS`` it looks, in this order, at the stop signals it was sent,
at the hosts the job's stall watchdog named, at whether the job has ended, and
else at the sentinels and the host file; it hands what it saw to
``policy.decide`` and does what that returns: start or stop sentinels, signal or
end the job, record a change, launch the job again, or end. The job's stderr is
ours; its stdout passes through to ours, but for its event lines (``events``),
which the supervisor keeps: where the loop is, when it trains again, whom a
stall names.

A change is reported once the job that goes on has begun training (or as the
run stops): one line on stderr and one record in the supervisor's metrics file
(``Records``).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from distnn import protocol
from distnn.config import parse_args
from distnn.elastic import events, launch
from distnn.elastic.hosts import Sentinels, read_hosts, reread
from distnn.elastic.policy import (JOB_STATUS, SIGNALLED, TOO_FEW, Action, Event, JobEnded,
                                   Rules, Signalled, Stalled, Start, State, Tick, decide,
                                   ranks)
from distnn.elastic.records import Records, metrics_beside

POLL_SECONDS = 0.05
REPORT_SECONDS = 0.05  # how often rank 0 says where the loop is
SETTLE_SECONDS = 0.1  # after the job ends, for a sentinel that ends with it to be seen


# What the job's own status means for the run, where a relaunch would not mend it.
_MEANING = {
    protocol.EXIT_INTERRUPTED: "",
    protocol.EXIT_IOERR: ": it could not write its checkpoint (a full disk, a quota, a read-only "
                         "file system; its line above says which); a relaunch would fail the "
                         "same way: free some space, then run the same command again",
}
_NOT_MENDED = " and no host was lost: not a failure a relaunch would mend"

class Job:
    """One launch of the trainer: its launcher's process, and what its event lines said."""

    def __init__(self, words: list[str]) -> None:
        env = dict(os.environ, **{protocol.EVENTS_VARIABLE: "1",
                                  protocol.REPORT_VARIABLE: str(REPORT_SECONDS)})
        self.process = launch.start(words, env=env)
        self.position: tuple[int, int] | None = None  # where its loop was, last heard
        self.training_at: float | None = None  # when its loop began
        self._named: queue.SimpleQueue[tuple[str, ...]] = queue.SimpleQueue()
        self._relay = threading.Thread(target=self._read, daemon=True)
        self._relay.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            text, fact = events.hear(line)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
            if isinstance(fact, events.Position):
                self.position = (fact.epoch, fact.step)
            elif isinstance(fact, events.Training):
                self.training_at = time.monotonic()
            elif isinstance(fact, events.Stall):
                self._named.put(fact.hosts)

    def named(self) -> tuple[str, ...]:
        """The hosts stall reports have named since the last call."""
        hosts: list[str] = []
        while not self._named.empty():
            hosts += self._named.get()
        return tuple(hosts)

    def ended(self) -> int | None:
        """The launcher's exit status, once it has ended and its output has been read."""
        status = self.process.poll()
        if status is not None:
            self._relay.join(timeout=1.0)  # its last lines: a stall report, say
        return status

    def ask_stop(self, signum: int) -> None:
        launch.ask_stop(self.process, signum)

    def end(self) -> None:
        launch.end(self.process)


class Supervisor:
    """Launches the job on the hosts it has, and again on those it has left."""

    def __init__(self, args: argparse.Namespace, train_args: list[str]) -> None:
        self.args, self.train_args = args, train_args
        cfg, _ = parse_args(train_args)
        metrics = args.metrics or metrics_beside(cfg.metrics)
        self.records = Records(Path(metrics) if metrics else None, Path(cfg.checkpoint))
        rules = Rules(min_ranks=args.min_ranks, heartbeat=args.heartbeat,
                      lost_after=args.lost_after, rejoin_after=args.rejoin_after)
        self.state = State(rules, read_hosts(args.hosts, args.hostfile))
        self.sentinels = Sentinels(args.launcher, args.heartbeat)
        self.job: Job | None = None
        self.signals: list[int] = []  # stop signals come, not yet handed to the policy
        self.pending: dict[str, Any] | None = None  # a change whose recovery is under way

    def run(self) -> int:
        for signum in protocol.STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            status = self._carry_out(Start(time.monotonic()))
            while status is None:
                status = self._carry_out(self._next_event())
            return status
        finally:
            if self.job is not None:
                self.job.end()
            self.sentinels.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # one atomic step: the loop may be taking one

    def _next_event(self) -> Event:
        """What has happened since the last look (waiting a poll for it if nothing has)."""
        self._report_recovery()
        if self.signals:
            self.signals.pop()
            return Signalled(time.monotonic())
        if named := self.job.named():
            return Stalled(time.monotonic(), named)
        if self.state.ended is None and (status := self.job.ended()) is not None:
            if named := self.job.named():  # its last words: the others follow
                return Stalled(time.monotonic(), named)
            time.sleep(SETTLE_SECONDS)
            return JobEnded(time.monotonic(), status, self.sentinels.seen())
        time.sleep(POLL_SECONDS)
        return Tick(time.monotonic(), self.sentinels.seen(), reread(self.args.hostfile))

    def _carry_out(self, event: Event) -> int | None:
        """Decide what to do about ``event`` and do it; the exit status, if the run ends."""
        before = ranks(self.state.running)
        self.state, action = decide(self.state, event)
        for host in action.watch:
            self.sentinels.watch(host)
        for host in action.unwatch:
            self.sentinels.unwatch(host)
        if self.job is not None and action.ask_stop:
            self.job.ask_stop(self.args.stop_signal)
        if self.job is not None and action.end_job:
            self.job.end()
        if action.change is not None:
            position = self.job.position if self.job is not None else None
            self.pending = self.records.change(action.change, event.now, position, before)
        if action.launch is not None:
            self._launch(action.launch)
        if action.exit is not None:
            self._stopping(action)
        return action.exit

    def _launch(self, hosts: dict[str, int]) -> None:
        # Once this supervisor has ended a job, the checkpoint's lock is its own (a rank
        # of that job may not have gone yet).
        again = ["--take-lock"] if self.job is not None else []
        self.job = Job(launch.command(self.args.launcher, hosts) + [
            sys.executable, "-m", "distnn.train", *self.train_args, "--resume",
            "--stall-timeout", str(self.args.stall_timeout), *again])
        self.launched_at = time.monotonic()

    def _report_recovery(self) -> None:
        """The pending change's line and record, once the job that goes on trains."""
        if self.pending is not None and self.job.training_at is not None:
            self.records.report(self.pending, self.state.running, self.launched_at,
                                self.job.training_at)
            self.pending = None

    def _stopping(self, action: Action) -> None:
        """Say why the run stops here."""
        self._report_recovery()
        status, left = action.exit, self.state.running
        if action.why == TOO_FEW:
            if self.pending is not None:
                self.records.report(self.pending, left, None, None)
            self.records.say(
                f"{ranks(left)} rank(s) left on {', '.join(left) or 'no host'}, fewer than "
                f"--min-ranks {self.state.rules.min_ranks}: stopping; {self.records.checkpoint}"
                " is kept (resume it with the same command once hosts are back)",
                {"change": "stopped", "ranks": ranks(left)})
        elif action.why == JOB_STATUS:
            meaning = _MEANING.get(status, _NOT_MENDED)
            self.records.say(f"the job ended with status {status}{meaning}; stopping")
        elif action.why == SIGNALLED:
            self.records.say(f"asked to stop: the job ended with status {status}; stopping")
