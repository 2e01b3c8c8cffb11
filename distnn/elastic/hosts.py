"""Which hosts there are, and whether each is alive: host lists, Slurm's nodes, sentinels.

The hosts come from ``--hosts a:2,b:2``, from ``--hostfile`` (one ``host[:slots]``
a line, ``#`` comments; read again as the run goes), or from the Slurm
allocation the supervisor runs in. Each host is watched by a sentinel: a small
process started there with the launcher, which prints its hostname every
heartbeat. What a sentinel has shown (when it started, last spoke, how it
ended) is all the supervisor's decisions see of a host
(``distnn.elastic.policy.Seen``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from distnn.elastic import launch
from distnn.elastic.policy import Seen

# A line each heartbeat from each host's sentinel; its hostname says it is the right host.
SENTINEL = ("import socket, sys, time\n"
            "while True:\n"
            "    print(socket.gethostname(), flush=True)\n"
            "    time.sleep(float(sys.argv[1]))\n")


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


def read_hosts(hosts: str | None, hostfile: str | None) -> dict[str, int]:
    """The hosts to start with: the host file's, the list's, or the allocation's."""
    if hostfile:
        return parse_hosts(Path(hostfile).read_text())
    if hosts:
        return parse_hosts(hosts)
    return slurm_hosts()


def reread(hostfile: str | None) -> dict[str, int] | None:
    """The host file as it is now; None without one, or while it is being rewritten."""
    if not hostfile:
        return None
    try:
        return parse_hosts(Path(hostfile).read_text())
    except (OSError, ValueError):
        return None


class Sentinel:
    """A process on one host that prints its hostname every ``heartbeat`` seconds."""

    def __init__(self, host: str, template: str, heartbeat: float) -> None:
        words = launch.command(template, {host: 1}, step=launch.SENTINEL_STEP) + [
            sys.executable, "-u", "-c", SENTINEL, str(heartbeat)]
        self.host = host
        self.process = launch.start(words, quiet=True)
        self.started = time.monotonic()
        self.last: float | None = None  # when its last line came
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                self.last = time.monotonic()

    def seen(self) -> Seen:
        return Seen(self.started, self.last, self.process.poll())

    def stop(self) -> None:
        launch.kill_group(self.process)


class Sentinels:
    """A sentinel on each host watched: started, stopped, and what each has shown."""

    def __init__(self, template: str, heartbeat: float) -> None:
        self.template, self.heartbeat = template, heartbeat
        self.watching: dict[str, Sentinel] = {}

    def watch(self, host: str) -> None:
        if host in self.watching:
            self.watching[host].stop()
        self.watching[host] = Sentinel(host, self.template, self.heartbeat)

    def unwatch(self, host: str) -> None:
        if host in self.watching:
            self.watching.pop(host).stop()

    def seen(self) -> dict[str, Seen]:
        return {host: sentinel.seen() for host, sentinel in self.watching.items()}

    def close(self) -> None:
        for sentinel in self.watching.values():
            sentinel.stop()
        launch.kill_steps(launch.SENTINEL_STEP)
