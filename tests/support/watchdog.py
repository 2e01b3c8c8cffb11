"""Every test run ends, and a failure on any rank is seen at once (a pytest plugin).

Loaded by ``tests/conftest.py``. Under ``mpirun ... pytest --with-mpi`` a
failure on one rank used to be printed only at the end of that rank's
session, and often never: the other ranks still waited in the failed test's
collective, and the job spun until CI's time limit. Now:

- **A time limit per test** (``DISTNN_TEST_TIMEOUT`` seconds; 120 under MPI,
  600 serial; a test marked ``@pytest.mark.time_limit(s)`` gets s if longer).
  When it runs out, the rank prints which test it is in (or which ranks it
  waits for after it) and every thread's stack, then ends the whole
  job: MPI_Abort under MPI (after a few seconds, so the other ranks, whose
  limits run out at the same moment, print theirs too), or it kills
  its child processes and exits in a serial run.
- **A failure is reported when it happens**, on stderr, each line prefixed
  ``[rank r/P]``: the test, the phase and the assertion, flushed through to
  the launcher before anything else can happen to the job.
- **The ranks meet after every test.** Each tells every other that it
  finished the test and whether it failed, so the next test starts on all
  ranks together, a rank that never arrives is named, and rank 0 lists the
  tests that failed on other ranks in its summary.
- Only rank 0 prints pytest's own report: the other ranks' copies hid the one
  that mattered.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from distnn.comm import MPIComm, drain_output

TIMEOUT = {"mpi": 120.0, "serial": 600.0}
# The other ranks' limits run out within milliseconds of this one's (the
# ranks met before the test): let them print their stacks before the abort.
GRACE = 3.0


def _timeout(mode: str) -> float:
    return float(os.environ.get("DISTNN_TEST_TIMEOUT", TIMEOUT[mode]))


def _say(prefix: str, text: str) -> None:
    """Write ``text`` to stderr with every line prefixed, and make sure it gets out."""
    sys.stderr.write("".join(f"{prefix} {line}\n" for line in text.rstrip("\n").split("\n")))
    drain_output()


# Frames of pytest's own machinery: the same in every stack, and they hide the test's.
_PLUMBING = ("/_pytest/", "/pluggy/", "/pytest/__main__.py", "<frozen runpy>", "/threading.py")


def _stacks() -> str:
    """Every thread's stack but this one's, most recent call last, pytest's frames left out."""
    lines = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        lines.append(f"stack of thread {ident:#x}, most recent call last:")
        for entry in traceback.extract_stack(frame):
            if not any(part in entry.filename for part in _PLUMBING):
                lines.append(f'  File "{entry.filename}", line {entry.lineno}, in {entry.name}')
                if entry.line:
                    lines.append(f"    {entry.line}")
    return "\n".join(lines)


def _kill_descendants() -> None:
    """SIGKILL every process below this one (a test's mpirun and its ranks)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)


class Meeting:
    """After each test, every rank sends every other (index of the test, failed?).

    Non-blocking sends and receives on a communicator of its own, so no test's
    messages can be mistaken for these; ``waiting_for`` is the ranks not yet
    heard from, for the watchdog to name.
    """

    def __init__(self, world) -> None:
        self.comm = world.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.waiting_for: set[int] = set()

    def meet(self, index: int, failed: bool) -> dict[int, tuple[int, bool]]:
        """Every other rank's (index, failed) for the test each has just finished."""
        peers = [r for r in range(self.size) if r != self.rank]
        mine = np.array([index, failed], np.int64)
        theirs = {r: np.empty(2, np.int64) for r in peers}
        sends = [self.comm.Isend(mine, dest=r) for r in peers]
        receives = {r: self.comm.Irecv(theirs[r], source=r) for r in peers}
        self.waiting_for = set(peers)
        while self.waiting_for:  # polled, not Waitall: the watchdog reads waiting_for
            self.waiting_for = {r for r in self.waiting_for if not receives[r].Test()}
            if self.waiting_for:
                time.sleep(0.001)  # ranks may outnumber cores: leave them the CPU
        for request in sends:
            request.Wait()
        return {r: (int(t[0]), bool(t[1])) for r, t in theirs.items()}


class Guard:
    """The plugin's state on one rank (or in the one serial process)."""

    def __init__(self, config: pytest.Config) -> None:
        self.meeting: Meeting | None = None
        self.rank, self.size = 0, 1
        if config.getoption("with_mpi", default=False):
            from mpi4py import MPI

            if MPI.COMM_WORLD.Get_size() > 1:
                self.meeting = Meeting(MPI.COMM_WORLD)
                self.rank, self.size = self.meeting.rank, self.meeting.size
        self.prefix = f"[rank {self.rank}/{self.size}]"
        self.timeout = _timeout("mpi" if self.meeting else "serial")
        self.index = 0
        self.nodeid = ""
        self.failed = False
        self.phase = ""
        self.elsewhere: dict[str, list[int]] = {}  # test -> the other ranks it failed on
        self._timer: threading.Timer | None = None
        self.limit = self.timeout  # this test's

    # -- the time limit ----------------------------------------------------

    def arm(self, seconds: float) -> None:
        self.limit = seconds
        self._timer = threading.Timer(seconds, self._expired)
        self._timer.daemon = True
        self._timer.start()
        # If this thread cannot run (a C call holding the GIL), faulthandler's own
        # thread still dumps the stacks and exits, a little later.
        faulthandler.dump_traceback_later(seconds + GRACE + 30, exit=True)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        if self._timer is not None:
            self._timer.cancel()

    def _expired(self) -> None:
        where = self.phase
        if self.meeting is not None and self.meeting.waiting_for:
            where += f", waiting for rank(s) {sorted(self.meeting.waiting_for)} to finish it"
        _say(self.prefix, f"TIMEOUT after {self.limit:.0f} s in {self.nodeid} ({where}); "
                          f"the job ends\n{_stacks()}")
        if self.meeting is not None:
            time.sleep(GRACE)
            MPIComm(self.meeting.comm).abort(1)  # ends every rank: it does not return
        _kill_descendants()
        os._exit(1)

    # -- hooks -------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.nodeid, self.failed, self.phase = item.nodeid, False, "in the test"
        # A test that trains for minutes on purpose says so: @pytest.mark.time_limit(s).
        marker = item.get_closest_marker("time_limit")
        self.arm(max(self.timeout, marker.args[0]) if marker else self.timeout)
        try:
            yield
            if self.meeting is not None:
                self.phase = "after the test"
                for rank, (index, failed) in self.meeting.meet(self.index, self.failed).items():
                    if index != self.index:
                        _say(self.prefix, f"rank {rank} finished test #{index}, this rank "
                                          f"#{self.index} ({self.nodeid}): they collected "
                                          "different tests")
                    elif failed:
                        self.elsewhere.setdefault(self.nodeid, []).append(rank)
        finally:
            self.disarm()
        self.index += 1

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.failed = True
            if self.meeting is not None:
                _say(self.prefix, f"FAILED {report.nodeid} ({report.when}):\n"
                                  f"{report.longreprtext}")

    def pytest_collectreport(self, report) -> None:
        if report.failed and self.meeting is not None:
            _say(self.prefix, f"ERROR collecting {report.nodeid}:\n{report.longreprtext}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.rank != 0 or self.meeting is None:
            return
        if self.elsewhere:
            terminalreporter.section("failed on other ranks (their reports are above)")
            for nodeid, ranks in self.elsewhere.items():
                terminalreporter.line(f"FAILED {nodeid} on rank(s) {ranks}")

    def pytest_sessionfinish(self, session) -> None:
        if self.rank == 0 and self.elsewhere and session.exitstatus == 0:
            session.exitstatus = 1  # the job failed, whichever rank's tests did


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists
def pytest_configure(config: pytest.Config) -> None:
    guard = Guard(config)
    config.pluginmanager.register(guard, "distnn-watchdog")
    if guard.rank != 0:  # failures are reported as they happen; rank 0 sums up
        # Silenced, not removed: pytest (9.x) asks the reporter for its writer
        # when it explains a failed assertion.
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)
            quiet = type(reporter)(config, open(os.devnull, "w"))  # noqa: SIM115 (lives as long as pytest)
            config.pluginmanager.register(quiet, "terminalreporter")
