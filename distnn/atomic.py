"""Publish a file all at once: readers see the old file or the new one, never half of one.

The file is written to a temporary name in the target's directory (so the
final rename stays on one file system), fsynced, then moved over the target
with ``os.replace``, which is atomic on POSIX. If anything fails, or the
process is interrupted, the temporary file is removed and the target is
untouched. Used for data files and checkpoints alike.

A process killed outright (SIGKILL, a lost node) cannot remove its temporary
file. Its name says who wrote it, ``<target>.tmp-<host>-<pid>-<random>``, so
the next write to the same target removes those whose writer is gone: on
this host, a pid that no longer runs. Another host's are left alone, since
whether their writer runs cannot be seen from here.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``."""
    path = Path(path)
    with scratch_path(path) as tmp:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep the user's umask instead
        os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextmanager
def scratch_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``, named as ``atomic_path``'s are (so a
    killed writer's is removed by the next write), and removed when done: room to
    work in, on the file system the result goes to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    remove_orphans(path, host)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent,
                                    prefix=f"{path.name}.tmp-{host}-{os.getpid()}-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:  # KeyboardInterrupt too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)


@contextmanager
def scratch_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``scratch_path``, as a directory: room for many work files, all removed when done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    remove_orphans(path, host)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.tmp-{host}-{os.getpid()}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    """This process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_orphans(path: Path, host: str) -> list[Path]:
    """Remove the temporary files of ``path`` whose writer, on ``host``, no longer runs."""
    pattern = re.compile(rf"{re.escape(path.name)}\.tmp-(.+)-(\d+)-[^-]+")
    removed = []
    for tmp in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
        named = pattern.fullmatch(tmp.name)
        if named and named.group(1) == host and not _running(int(named.group(2))):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some file systems cannot fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
