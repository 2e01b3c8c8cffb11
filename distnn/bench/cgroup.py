"""A training run inside a memory cgroup of its own: does it stream, and escape the OOM killer?

A batch system gives a job a memory cgroup with a limit (Slurm's job_N), and the
kernel kills the job's largest process when the cgroup's memory runs out. The
trainer's default budget is half of what the least of its limits leaves
(``distnn.memory.room``), so a job whose rows exceed its cgroup's limit must
stream them and finish. This module makes a cgroup v1 memory cgroup under this
process's own, sets its limit, runs a command inside it (a shell that moves
itself in, then execs the command: everything the command starts is charged
to it), and reports the run: exit status, seconds, the cgroup's peak
(``memory.max_usage_in_bytes``), its OOM kills (``memory.oom_control``) and
the trainer's streaming note, which names the limit it took.

The full-size check (root, cgroup v1; the data made first with
``python -m distnn.data prepare --distorted 12 --out /tmp/x.h5``, 0.62 GB):

    python -m distnn.bench.cgroup --data /tmp/x.h5 --limit 450M --ranks 2

runs ``mpirun -n 2 python -m distnn.train --data /tmp/x.h5 --layers 784,100,10
--epochs 1`` in a 450 MiB cgroup, in a temporary directory (its checkpoint goes
there), and prints the record. ``tests/system/test_cgroup_memory.py`` runs a
small one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distnn.memory import memory_cgroups, parse_bytes, size


def own_v1_memory_cgroup() -> Path | None:
    """This process's cgroup v1 memory cgroup, if there is one it may make children in."""
    for leaf, _, version in memory_cgroups():
        if version == 1 and (leaf / "memory.limit_in_bytes").exists() \
                and os.access(leaf, os.W_OK):
            return leaf
    return None


@contextmanager
def memory_cgroup(limit: int, name: str = "distnn-bench") -> Iterator[Path]:
    """A new v1 memory cgroup under this process's own, of ``limit`` bytes; removed after
    (once the processes charged to it have ended)."""
    parent = own_v1_memory_cgroup()
    if parent is None:
        raise RuntimeError("no cgroup v1 memory controller this process may write to")
    cgroup = parent / f"{name}-{os.getpid()}"
    cgroup.mkdir()
    try:
        (cgroup / "memory.limit_in_bytes").write_text(str(limit))
        yield cgroup
    finally:
        for _ in range(50):  # the last process may still be leaving
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def oom_kills(cgroup: Path) -> int:
    """How many processes of ``cgroup`` the kernel's OOM killer has killed."""
    for line in (cgroup / "memory.oom_control").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    raise RuntimeError(f"{cgroup}: memory.oom_control counts no oom_kill (kernel < 4.13)")


def _stat(cgroup: Path) -> dict[str, int]:
    try:
        lines = (cgroup / "memory.stat").read_text().splitlines()
    except OSError:
        return {}
    return {name: int(value) for name, value in (line.split() for line in lines)}


def _working_set(cgroup: Path) -> tuple[int, int]:
    """(usage less the page cache it may reclaim, its processes' resident anonymous memory)."""
    stat = _stat(cgroup)
    try:
        usage = int((cgroup / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return 0, 0
    return usage - stat.get("total_inactive_file", 0), stat.get("total_rss", 0)


def run_in(cgroup: Path, argv: Sequence[str], timeout: float | None = None,
           **popen: Any) -> dict[str, Any]:
    """Run ``argv`` inside ``cgroup``; its status, output, seconds, OOM kills, and the
    cgroup's peaks: its usage (the page cache included: it fills the limit, then is
    reclaimed), its working set and its resident anonymous memory, these two sampled
    every 50 ms."""
    enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'  # the shell moves in, then execs
    t0 = time.perf_counter()
    job = subprocess.Popen(["sh", "-c", enter, str(cgroup), *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, **popen)
    peaks = [0, 0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            peaks[:] = map(max, peaks, _working_set(cgroup))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = job.communicate(timeout=timeout)
    finally:
        job.kill()  # on a timeout; a no-op once it has ended
        sampling.set()
        sampler.join()
    return {"returncode": job.returncode, "stdout": out, "stderr": err,
            "seconds": time.perf_counter() - t0,
            "peak": int((cgroup / "memory.max_usage_in_bytes").read_text()),
            "peak_working_set": peaks[0], "peak_rss": peaks[1], "oom_kills": oom_kills(cgroup)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnn.bench.cgroup",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the data file (an absolute path)")
    parser.add_argument("--limit", default="450M", help="the cgroup's limit (default 450M)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--layers", default="784,100,10")
    parser.add_argument("--epochs", default="1")
    args = parser.parse_args(argv)
    limit = parse_bytes(args.limit)
    command = ["mpirun", "-n", str(args.ranks), sys.executable, "-m", "distnn.train",
               "--data", str(Path(args.data).resolve()), "--layers", args.layers,
               "--epochs", args.epochs]
    if shutil.which("mpirun") is None:
        raise SystemExit("distnn.bench.cgroup: needs mpirun (pip install mpich)")
    with tempfile.TemporaryDirectory() as where, memory_cgroup(limit) as cgroup:
        record = run_in(cgroup, command, cwd=where)
    print(f"$ {' '.join(command)}   # in a {size(limit)} memory cgroup")
    print(record["stdout"] + record["stderr"], end="")
    print(f"exit status {record['returncode']}, {record['seconds']:.1f} s; the cgroup's peak "
          f"{size(record['peak'])} of its {size(limit)} (page cache included), working set "
          f"{size(record['peak_working_set'])}, resident anonymous {size(record['peak_rss'])}; "
          f"OOM kills: {record['oom_kills']}")
    return 0 if record["returncode"] == 0 and record["oom_kills"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
