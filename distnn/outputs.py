"""Where a run writes: checked before its first step, and written by one run at a time.

``check_not_input`` refuses an output that is one of the command's inputs, by
name or through a link, before anything is read or written: ``import x.csv
--out x.csv`` would replace the only copy of the rows with the table made from
them.

``check_output`` turns a path that cannot work (a directory where the file
should be, a parent that cannot be made, a place that cannot be written) into
one line at start-up, instead of a traceback after an epoch of training.

``Lock`` keeps two runs from writing one checkpoint: ``PATH.lock`` names the
run that holds it (host, pid, since when, batch job), and that run holds an
flock on it. The kernel drops an flock when its process ends, however it ends,
so a lock left by a run that was killed is free again, and taken over. A lock
another batch job holds on another host may outlive a lost host on a network
file system for the server's lease (about 90 s on NFS): a requeued job (the same
SLURM_JOB_ID or PBS_JOBID) takes over its own run's lock without waiting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from distnn.writes import WriteFailed, writing

PathName = str | os.PathLike[str]


class OutputError(Exception):
    """A place the run cannot write to, or that another run writes; one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def check_not_input(outputs: Iterable[tuple[str, PathName | None]],
                    inputs: Iterable[tuple[str, PathName | None]]) -> None:
    """Raise OutputError if an output, (its flag, its path), is one of the inputs, (what
    it is, its path): "--out ck.h5 is the checkpoint it reads; give another path".

    One file is one file whatever it is called: where both exist, the same device
    and inode (a symlink, a hard link, ``./x``); where one does not exist yet, the
    same path once symlinks are resolved. A path of None (not given) is no file.
    """
    inputs = [(what, path) for what, path in inputs if path is not None]
    for flag, out in outputs:
        for what, source in inputs:
            if out is not None and _one_file(out, source):
                raise OutputError(f"{flag} {out} is {what}; give another path")


def _one_file(a: PathName, b: PathName) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is not there (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str, flag: str, append: bool = False) -> None:
    """Raise OutputError unless the file ``path`` (given as ``flag``) can be written:
    replaced (a new file renamed over it, as ``distnn.atomic`` does), or with
    ``append``, appended to.

    Creates nothing: a missing parent directory is made when the file is first
    written, so here the nearest one that exists must be a writable directory.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{flag} {path} is a directory; give the path of a file")
    if target.exists() and not target.is_file():
        raise OutputError(f"{flag} {path} exists and is not a regular file")
    if append and target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{flag} {path}: the file is not writable")
    here = target.absolute().parent
    while not here.exists():
        here = here.parent
    if not here.is_dir():
        raise OutputError(f"{flag} {path}: {here} is a file, not a directory")
    try:  # the one sure test (permissions, read-only mounts, quotas): write a file there
        fd, probe = tempfile.mkstemp(dir=here, prefix=f".{target.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{flag} {path}: cannot write in {here} ({err.strerror or err})") \
            from None


def _batch_job() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")


class Lock:
    """``<checkpoint>.lock``: held by the one run that writes ``checkpoint``."""

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint
        self.path = Path(f"{checkpoint}.lock")
        self._fd: int | None = None

    def acquire(self, take: bool = False) -> None:
        """Hold the lock, or raise OutputError naming the run that does.

        ``take``: go on anyway (the user says that run is gone), with a note.
        """
        for _ in range(10):  # a holder may unlink the file between our open and our flock
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)  # the checkpoint's, checked
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:  # a directory in its place, say
                raise OutputError(f"cannot open the lock {self.path} "
                                  f"({err.strerror or err})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # no flock here
                    print(f"distnn: note: cannot lock {self.path} ({err.strerror}; a Lustre "
                          "mount without -o flock, say): going on without a lock, so nothing "
                          "stops a second run on this checkpoint", file=sys.stderr)
                    return
                holder = self._holder()
                if holder.get("job") and holder.get("job") == _batch_job():
                    return  # this batch job's earlier run, on a host now lost: ours
                if take:
                    print(f"distnn: note: --take-lock: writing {self.checkpoint} although "
                          f"{_describe(holder)} holds its lock", file=sys.stderr)
                    return
                raise OutputError(
                    f"{self.checkpoint} is being written by another run ({_describe(holder)}; "
                    f"lock {self.path}); give this run another --checkpoint, or, if that run "
                    "is gone, pass --take-lock") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # locked a file its holder had just removed: try the new one
        else:
            raise OutputError(f"cannot lock {self.path}: it keeps changing")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "job": _batch_job(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._fd = fd
        try:
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        except WriteFailed:  # a full disk, say: no lock that names no one is left behind
            self.release()
            raise

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def release(self) -> None:
        """Remove the lock file (while still holding it, so nobody takes a dying lock)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _describe(holder: dict) -> str:
    if not holder:
        return "a run that has not said who it is yet"
    job = f", batch job {holder['job']}" if holder.get("job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}{job}"
