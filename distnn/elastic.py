"""An elastic run: a supervisor that goes on without a lost host, and takes it back.

    python -m distnn.elastic --hosts a:2,b:2 --min-ranks 2 -- --epochs 30 --dtype float64
    python -m distnn.elastic --hostfile hosts.txt -- --epochs 30      # re-read as it runs

It launches ``distnn.train --resume`` on the hosts' slots with the MPI's
launcher, and watches each host through a sentinel of its own: a small
process started on that host with the same launcher, which prints a line
every ``--heartbeat`` seconds. A host whose sentinel is silent for
``--lost-after`` seconds (its processes dead or stopped, or its link down) is
lost: the supervisor ends what is left of the job, drops the host and launches
again on the others, from the last commit of the checkpoint
(``--commit-every``). The run's batches and draws do not depend on the number
of ranks (``distnn.data.order``, ``distnn.noise``), so it ends with the
parameters it would have had without the failure, to rounding: a lost host
costs only time. Below ``--min-ranks`` it stops instead, and the checkpoint is
kept for a later resume (exit status 75).

A host that comes back (a lost one whose sentinel runs again after
``--rejoin-after`` seconds) or is added to ``--hostfile`` joins at a commit
boundary: the supervisor asks the job to stop (its stop signal: the trainer
writes the checkpoint after its step), and launches it again with the host.

Every change is one line on the console and one record in the run's metrics
file (``--metrics`` of the training arguments): the host, where the run was,
the commit it went on from, the steps redone, and how long the recovery took.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distnn.checkpoint import CheckpointError, read_checkpoint
from distnn.config import ConfigError, parse_args
from distnn.stall import POSITION, REPORT_VARIABLE

EXIT_STOPPED = 75  # the checkpoint is kept: resume later
# A line a second from each host's sentinel; its hostname says it is the right host.
SENTINEL = ("import socket, sys, time\n"
            "while True:\n"
            "    print(socket.gethostname(), flush=True)\n"
            "    time.sleep(float(sys.argv[1]))\n")
DEFAULT_LAUNCHER = "mpiexec -hosts {hosts} -n {ranks}"
STEP, SENTINEL_STEP = "distnn-train", "sentinel"  # names of srun steps, to end them
# The trainer's stall watchdog names the ranks it waits for, and their hosts.
STALLED = re.compile(r"rank \d+ on (\S+) (?:does not answer|is in)")


def parse_hosts(text: str) -> dict[str, int]:
    """'a:2,b:2' (or one host[:slots] a line, # comments) -> {'a': 2, 'b': 2}."""
    hosts: dict[str, int] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.split("#", 1)[0].strip()
        if not item:
            continue
        name, _, slots = item.partition(":")
        if not name or (slots and not slots.isdigit()) or (slots and int(slots) < 1):
            raise ValueError(f"expected host or host:slots, got {item!r}")
        if name in hosts:
            raise ValueError(f"host {name} is named twice")
        hosts[name] = int(slots or 1)
    return hosts


def slurm_hosts() -> dict[str, int]:
    """The nodes of this Slurm allocation and their tasks: SLURM_JOB_NODELIST and
    SLURM_TASKS_PER_NODE ("2(x3),1": 2 on each of three nodes, then 1)."""
    nodes = os.environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        raise ValueError("give --hosts or --hostfile (or run inside a Slurm allocation)")
    names = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                           text=True, check=True, timeout=30).stdout.split()
    tasks: list[int] = []
    for part in os.environ.get("SLURM_TASKS_PER_NODE", "1").split(","):
        count, _, times = part.partition("(x")
        tasks += [int(count)] * int(times.rstrip(")") or 1)
    if len(tasks) != len(names):
        tasks = [tasks[0]] * len(names)
    return dict(zip(names, tasks))


def default_launcher() -> str:
    """MPICH's mpiexec; inside a Slurm allocation, srun steps that survive a lost node."""
    if not os.environ.get("SLURM_JOB_ID"):
        return DEFAULT_LAUNCHER
    pmi = os.environ.get("SRUN_MPI")
    return ("srun --no-kill --kill-on-bad-exit=0 -N {nodes} -n {ranks} -w {nodelist} "
            "--ntasks-per-node={per_node}" + (f" --mpi={pmi}" if pmi else ""))


@dataclass
class Sentinel:
    """A process on one host that prints its hostname every ``period`` seconds."""
    host: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    last: float | None = None  # when its last line came

    def silent_for(self, now: float) -> float:
        return now - (self.last if self.last is not None else self.started)

    def stop(self) -> None:
        _kill_group(self.process)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the launcher's process group. mpiexec's remote processes end with it;
    srun's job step does not (``_kill_steps``)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _kill_steps(name: str) -> None:
    """SIGKILL the tasks of this Slurm job's steps called ``name``: a killed srun leaves
    its step's tasks running, and an interrupted one waits for a lost node's."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    listed = subprocess.run(["squeue", "--steps", "--noheader", "--format=%i %j",
                             f"--jobs={job}"], capture_output=True, text=True, timeout=30)
    steps = [line.split()[0] for line in listed.stdout.splitlines()
             if line.strip().partition(" ")[2] == name]
    if steps:
        # slurmctld signals every node at once, but answers only once the lost one has
        # timed out (MessageTimeout, 10 s by default): do not wait for that answer.
        cancel = subprocess.Popen(["scancel", "--signal=KILL", *steps],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cancel.wait(timeout=1)


class Supervisor:
    """Launches the job on the hosts it has, and again on those it has left."""

    REPORT_SECONDS = 0.05  # how often rank 0 says where the loop is

    def __init__(self, args: argparse.Namespace, train_args: list[str]) -> None:
        self.args, self.train_args = args, train_args
        cfg, _ = parse_args(train_args)
        self.checkpoint, self.metrics = Path(cfg.checkpoint), cfg.metrics
        self.hosts = self._read_hosts()
        self.lost: dict[str, float] = {}  # host -> when it was lost
        self.sentinels: dict[str, Sentinel] = {}
        self.job: subprocess.Popen | None = None
        self.position: tuple[int, int] | None = None  # where the job's loop was, last heard
        self.stop_asked = False  # by this supervisor, for a host to join
        self.named: set[str] = set()  # hosts the job's stall watchdog said it waits for
        self.signalled = False  # by the user or the batch system

    # -- hosts -------------------------------------------------------------------

    def _read_hosts(self) -> dict[str, int]:
        if self.args.hostfile:
            return parse_hosts(Path(self.args.hostfile).read_text())
        if self.args.hosts:
            return parse_hosts(self.args.hosts)
        return slurm_hosts()

    def _members(self) -> dict[str, int]:
        return {h: n for h, n in self.hosts.items() if h not in self.lost}

    def _command(self, hosts: dict[str, int], ranks: int, sentinel: bool = False) -> list[str]:
        spec = ",".join(f"{h}:{n}" for h, n in hosts.items())
        command = shlex.split(self.args.launcher.format(
            hosts=spec, ranks=ranks, nodelist=",".join(hosts), nodes=len(hosts),
            per_node=max(hosts.values())))
        if Path(command[0]).name == "srun":
            # Sentinels run beside the job's step, on its CPUs; and a new job step must not
            # wait for the old one's CPUs, which Slurm keeps until it has given up on the
            # lost node (SlurmdTimeout): its tasks are dead (_end_job).
            command[1:1] = ["--overlap", f"--job-name={SENTINEL_STEP if sentinel else STEP}"]
        return command

    def _start_sentinel(self, host: str) -> None:
        command = self._command({host: 1}, 1, sentinel=True) + [
            sys.executable, "-u", "-c", SENTINEL, str(self.args.heartbeat)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                   text=True, start_new_session=True)
        sentinel = Sentinel(host, process)
        self.sentinels[host] = sentinel

        def listen() -> None:
            for line in process.stdout:
                if line.strip():
                    sentinel.last = time.monotonic()

        threading.Thread(target=listen, daemon=True).start()

    def _gone(self, now: float) -> list[tuple[str, str]]:
        """Hosts of the job whose sentinel has ended or fallen silent, and why."""
        gone = []
        for host in self.running:
            sentinel = self.sentinels[host]
            if sentinel.process.poll() is not None:
                gone.append((host, f"its sentinel ended (status {sentinel.process.returncode})"))
            elif sentinel.silent_for(now) > self.args.lost_after:
                gone.append((host, f"no heartbeat for {sentinel.silent_for(now):.1f} s"))
        return gone

    def _stalled(self, status: int | None) -> list[tuple[str, str]]:
        """Hosts alive (their sentinels speak) whose ranks the trainer's watchdog named as
        the ones it waited for, as it ends the job."""
        if status == 0:
            return []
        return [(h, "its ranks stalled the job (the trainer's watchdog)") for h in self.running
                if any(n == h or n.split(".")[0] == h for n in self.named)]

    def _joining(self, now: float) -> list[str]:
        """Hosts that may join: new in the host file, or lost ones back after --rejoin-after."""
        if self.args.hostfile:
            try:
                for host, slots in self._read_hosts().items():
                    self.hosts.setdefault(host, slots)
            except (OSError, ValueError):
                pass  # a host file being rewritten: read it again next time
        ready = []
        for host in self.hosts:
            if host in self.lost and now - self.lost[host] < self.args.rejoin_after:
                continue
            sentinel = self.sentinels.get(host)
            if sentinel is None or (host in self.lost and sentinel.process.poll() is not None):
                self._start_sentinel(host)
                continue
            # Back when its sentinel has spoken for a while: a host that flickers stays out.
            if (host in self.lost or host not in self.running) and sentinel.last is not None \
                    and sentinel.process.poll() is None \
                    and now - sentinel.started > 2 * self.args.heartbeat \
                    and sentinel.silent_for(now) < self.args.lost_after:
                ready.append(host)
        return ready

    # -- the job -----------------------------------------------------------------

    def _launch(self, hosts: dict[str, int]) -> None:
        ranks = sum(hosts.values())
        # Once this supervisor has ended a job, the checkpoint's lock is its own (a rank
        # of that job may not have gone yet).
        again = ["--take-lock"] if self.job is not None else []
        command = self._command(hosts, ranks) + [
            sys.executable, "-m", "distnn.train", *self.train_args, "--resume",
            "--stall-timeout", str(self.args.stall_timeout), *again]
        env = dict(os.environ, **{REPORT_VARIABLE: str(self.REPORT_SECONDS)})
        self.running = dict(hosts)
        self.position, self.stop_asked, self.resumed_at = None, False, None
        self.named = set()
        self.launched_at = time.monotonic()
        self.job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, env=env,
                                    start_new_session=True)
        threading.Thread(target=self._relay, args=(self.job,), daemon=True).start()

    def _relay(self, job: subprocess.Popen) -> None:
        """The job's output to ours, but for the position lines, which it keeps."""
        for line in job.stdout:
            if line.startswith(POSITION):
                epoch, step = line.split()[1:3]
                if job is self.job:
                    self.position = (int(epoch), int(step))
                continue
            if line.startswith("distnn: resuming ") or line.startswith("distnn: no checkpoint"):
                self.resumed_at = time.monotonic()
            for host in STALLED.findall(line):
                self.named.add(host.rstrip(",;"))
            sys.stdout.write(line)
            sys.stdout.flush()

    def _end_job(self) -> None:
        """End what is left of the job."""
        if Path(self.job.args[0]).name == "srun":
            _kill_steps(STEP)
        _kill_group(self.job)

    # -- records -----------------------------------------------------------------

    def _say(self, text: str, record: dict[str, Any]) -> None:
        print(f"distnn.elastic: {text}", file=sys.stderr, flush=True)
        if self.metrics:
            record = {"event": "membership", "time": time.time(), **record}
            with open(self.metrics, "a") as metrics:
                metrics.write(json.dumps(record) + "\n")

    def _committed(self) -> tuple[int, int, int] | None:
        """(epoch, step, steps per epoch) of the checkpoint, if there is one."""
        if not self.checkpoint.exists():  # lost before the first commit: from the start
            return None
        for _ in range(10):  # a rank that ended the job may have been writing it
            try:
                position = read_checkpoint(self.checkpoint)["position"]
                return position["epoch"], position["step"], position["steps"]
            except CheckpointError as err:
                error = err
                time.sleep(0.1)
        print(f"distnn.elastic: no commit to go on from: {error}", file=sys.stderr, flush=True)
        return None

    def _change(self, change: str, hosts: list[str], why: str, detected: float,
                before: int) -> dict[str, Any]:
        """The record of a membership change, completed once the job runs again."""
        committed = self._committed()
        reached, redone = self.position, None
        if committed:  # the position lines lag: the commit may be newer than the last one
            steps = committed[2]
            done = committed[0] * steps + committed[1]
            if reached is None or reached[0] * steps + reached[1] < done:
                reached = committed[:2]
            redone = reached[0] * steps + reached[1] - done
        return {"change": change, "hosts": hosts, "why": why, "detected": detected,
                "reached": reached, "committed": committed and committed[:2],
                "steps_redone": redone, "ranks_before": before}

    def _report(self, change: dict[str, Any], going_on: bool = True) -> None:
        """The line and the record of a change: once the job runs again, or as the run
        stops (``going_on`` False)."""
        detected = change.pop("detected")
        where = change["reached"]
        at = f"at epoch {where[0] + 1}, step {where[1]}" if where else "before its first step"
        text = f"{change['change']} {', '.join(change['hosts'])} ({change['why']}) {at}"
        if not going_on:
            self._say(f"{text}; not going on", {**change, "ranks_after": 0})
            return
        after = sum(self.running.values())
        relaunch, recovery = self.launched_at - detected, time.monotonic() - detected
        committed = change["committed"]
        since = (f"from the commit at epoch {committed[0] + 1}, step {committed[1]}"
                 if committed else "from the start")
        redone = change["steps_redone"]
        self._say(
            f"{text}; going on with {after} ranks on {', '.join(self.running)} {since}"
            + (f", {redone} steps redone" if redone is not None else "")
            + f"; relaunched {relaunch:.1f} s after, training again {recovery:.1f} s after",
            {**change, "ranks_after": after, "relaunch_seconds": round(relaunch, 3),
             "recovery_seconds": round(recovery, 3)})

    # -- the loop ----------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        self.running: dict[str, int] = {}
        for host in self.hosts:
            self._start_sentinel(host)
        try:
            return self._loop()
        finally:
            if self.job is not None:
                self._end_job()
            for sentinel in self.sentinels.values():
                sentinel.stop()
            _kill_steps(SENTINEL_STEP)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = True
        if self.job is not None and self.job.poll() is None:
            os.killpg(self.job.pid, self.args.stop_signal)

    def _loop(self) -> int:
        pending: dict[str, Any] | None = None  # a change whose recovery is under way
        while True:
            members = self._members()
            ranks = sum(members.values())
            if ranks < self.args.min_ranks:
                if pending is not None:
                    self._report(pending, going_on=False)
                self._say(f"{ranks} rank(s) left on {', '.join(members) or 'no host'}, fewer "
                          f"than --min-ranks {self.args.min_ranks}: stopping; {self.checkpoint} "
                          "is kept (resume it with the same command once hosts are back)",
                          {"change": "stopped", "ranks": ranks})
                return EXIT_STOPPED
            self._launch(members)
            while self.job.poll() is None:
                now = time.monotonic()
                if pending is not None and self.resumed_at is not None:
                    self._report(pending)
                    pending = None
                gone = self._gone(now) or self._stalled(None)
                if gone:  # the stall report comes once rank 0 has written what it could
                    break
                if not self.stop_asked and not self.signalled and self._joining(now):
                    self.stop_asked = True  # a host joins at the next step: a checkpoint there
                    os.killpg(self.job.pid, self.args.stop_signal)
                time.sleep(0.05)
            detected = time.monotonic()
            status = self.job.poll()
            if status is None:  # a host is gone and the job still runs: end it
                self._end_job()
            else:  # the job ended: see whether a host went with it
                time.sleep(0.1)
                gone = self._gone(time.monotonic()) or self._stalled(status)
                deadline = time.monotonic() + self.args.lost_after + self.args.heartbeat
                while not gone and status not in (0, EXIT_STOPPED, 2) \
                        and time.monotonic() < deadline:
                    time.sleep(0.1)
                    gone = self._gone(time.monotonic())
            if pending is not None and self.resumed_at is not None:
                self._report(pending)
                pending = None
            before = sum(self.running.values())
            if gone:
                for host, _ in gone:
                    self.lost[host] = detected
                    self.sentinels[host].stop()
                pending = self._change("lost", [h for h, _ in gone],
                                       "; ".join(f"{h}: {why}" for h, why in gone),
                                       detected, before)
                continue
            if status == 0:
                return 0
            if status == EXIT_STOPPED and self.stop_asked and not self.signalled:
                joining = self._joining(time.monotonic())
                for host in joining:
                    self.lost.pop(host, None)
                pending = self._change("joined", joining, "its sentinel answers", detected,
                                       before)
                continue
            print(f"distnn.elastic: the job ended with status {status}"
                  + ("" if status == EXIT_STOPPED else " and no host was lost: not a failure "
                     "a relaunch would mend") + "; stopping", file=sys.stderr, flush=True)
            return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distnn.elastic", description=__doc__.splitlines()[0],
        usage="%(prog)s [--hosts H:N,... | --hostfile PATH] [options] -- [distnn.train "
              "arguments]",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--hosts", metavar="H:N,...",
                       help="hosts and their ranks, a:2,b:2 (default, inside a Slurm "
                            "allocation: its nodes and tasks)")
    where.add_argument("--hostfile", metavar="PATH",
                       help="one host[:ranks] a line; read again as the run goes, so a host "
                            "added to it joins")
    p.add_argument("--min-ranks", type=int, default=1, dest="min_ranks", metavar="N",
                   help="stop, keeping the checkpoint, when fewer ranks are left (default 1)")
    p.add_argument("--launcher", default=default_launcher(),
                   help="how to start processes on hosts: {hosts} becomes a:2,b:2, {ranks} "
                        "their number, {nodelist} a,b, {nodes} 2, {per_node} the most ranks "
                        f"on one (default: MPICH's '{DEFAULT_LAUNCHER}'; inside a Slurm "
                        "allocation, srun --no-kill steps on the nodes left, with --mpi="
                        "$SRUN_MPI if set; for Open MPI, not verified: 'mpirun --host "
                        "{hosts} -n {ranks}' with --stop-signal USR1)")
    p.add_argument("--stop-signal", type=lambda s: signal.Signals[f"SIG{s.upper()}"],
                   default=signal.SIGTERM, dest="stop_signal", metavar="SIG",
                   help="what the launcher passes on to the ranks as a stop request (TERM)")
    p.add_argument("--heartbeat", type=float, default=0.5, metavar="SECONDS",
                   help="each host's sentinel speaks this often (0.5)")
    p.add_argument("--lost-after", type=float, default=3.0, dest="lost_after",
                   metavar="SECONDS", help="a host silent this long is lost (3)")
    p.add_argument("--rejoin-after", type=float, default=60.0, dest="rejoin_after",
                   metavar="SECONDS", help="a lost host is tried again after this long (60)")
    p.add_argument("--stall-timeout", type=float, default=30.0, dest="stall_timeout",
                   metavar="SECONDS", help="the trainer's own watchdog, behind the sentinels "
                                           "(30)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    args = build_parser().parse_args(ours)
    try:
        supervisor = Supervisor(args, train_args)
    except (OSError, ValueError, ConfigError, subprocess.CalledProcessError) as err:
        print(f"distnn.elastic: error: {err}", file=sys.stderr)
        return 2
    if not supervisor.hosts:
        print("distnn.elastic: error: no hosts", file=sys.stderr)
        return 2
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
