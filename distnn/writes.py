"""When the file system refuses a write: one line that says which file, why, and what to do.

On a cluster a full scratch file system, an exceeded quota, a file system
remounted read-only, a failing disk or a permission taken away end long runs
more often than bugs do. None of them is a bug, so none gets a traceback:
every write a run makes goes through ``writing(path)``, which turns the
``OSError`` into ``WriteFailed``, whose message is the file and the reason in
words (``cannot write runs/checkpoint.h5: no space left on device``), and whose
``remedy`` says what would let the write succeed. The caller adds what is
kept, which only it knows (the checkpoint of which step), and decides what
happens next (``docs/failures.md``): the trainer stops with EXIT_IOERR when a
checkpoint it must write cannot be, and goes on when a mid-epoch commit or a
metrics line cannot be.

h5py reports a failed write as an OSError, except where HDF5 writes what it
held back, as it flushes or closes the file: then as a RuntimeError whose
message carries the errno ("Can't decrement id ref count (file write failed:
..., errno = 28, error message = 'No space left on device', ...)"). ``writing``
takes that errno for the OSError it is; a RuntimeError without one stays a bug.
h5py may complain again, as "Exception ignored in ..." (and a traceback before
it), when it drops the objects of the half-written file: ``writing`` keeps those
complaints off the terminal, since the one line says it all and the
half-written file is removed (``distnn.atomic``).

HDF5 itself does not survive every such failure: a dataset whose held-back
bytes cannot be written as it is closed is left half closed, and the file's
close then crashes the process (h5py issue 914). ``new_hdf5`` opens a file
whose every write is made when asked for, so that it fails where it is made:
checkpoints, and the data files ``prepare`` writes whole (not the block-wise
``--distorted`` ones, nor tables), are opened so.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distnn.atomic import atomic_path

# What lets the write succeed, by errno; the file system's own words say what is wrong.
REMEDIES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some of your quota (or ask for more)",
    errno.EROFS: "write to a file system that is not read-only",
    errno.EACCES: "make it writable for you, or write elsewhere",
    errno.EPERM: "make it writable for you, or write elsewhere",
    errno.EIO: "check the disk or the network file system it is on",
}


class WriteFailed(Exception):
    """A file the run writes could not be written; ``remedy`` says what would help."""

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.remedy = remedy or "make the write possible"

    @classmethod
    def of(cls, path: str | os.PathLike[str], err: OSError) -> WriteFailed:
        return cls(f"cannot write {path}: {reason(err)}", REMEDIES.get(err.errno, ""))


def refusal(err: BaseException) -> OSError | None:
    """The file system's refusal ``err`` carries: itself, if an OSError; the errno in
    the message of h5py's RuntimeError for a write that failed as HDF5 flushed or
    closed a file, as an OSError; otherwise None (a bug, not a refusal)."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"\berrno = (\d+)", str(err)) if isinstance(err, RuntimeError) else None
    if found is None or not int(found.group(1)):
        return None
    number = int(found.group(1))
    return OSError(number, os.strerror(number))


def reason(err: OSError) -> str:
    """What went wrong, in the file system's words: "no space left on device"."""
    if err.errno:
        return os.strerror(err.errno).lower()
    return str(err.strerror or err)


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise WriteFailed for ``path`` where the body raises OSError, or h5py's
    RuntimeError naming an errno (``refusal``); no noise from h5py."""
    hooks = sys.unraisablehook, sys.excepthook
    # Cython prints an error it cannot raise (in __dealloc__) twice: a traceback
    # through sys.excepthook, then "Exception ignored in" through sys.unraisablehook.
    sys.unraisablehook, sys.excepthook = _quiet, _quiet
    try:
        yield
    except (OSError, RuntimeError) as err:
        refused = refusal(err)
        if refused is None:
            raise
        failure = WriteFailed.of(path, refused)
        err.__traceback__ = None  # its frames hold the failed file's objects: drop them,
        del err, refused
        gc.collect()  # now, while their complaints are quiet (only after a failure: ~8 ms)
        raise failure from None
    finally:
        sys.unraisablehook, sys.excepthook = hooks


def _quiet(*unraisable: object) -> None:
    """What Python would print as "Exception ignored in ...": nothing, while writing."""


def new_hdf5(path: str | os.PathLike[str]) -> Any:
    """``h5py.File(path, "w")``, but each write goes to the file system when it is made.

    HDF5 holds a small dataset's bytes back (its "sieve" buffer), and a chunked
    dataset's chunks (its chunk cache), and writes them as the dataset is closed,
    in h5py's __dealloc__, where a refusal can only be printed and dropped; the
    dataset is then left half closed, and closing the file crashes the process
    (SIGSEGV; h5py issue 914, still so with HDF5 2.0). Without either, the write
    fails in ``create_dataset`` or the assignment, as an OSError, and a failure
    as the file closes (its own headers) is an exception ``writing`` reads. The
    file's bytes are the same as h5py's, and a dataset written whole (``data=``)
    goes as fast; one written a part of a chunk at a time would be read back.
    """
    import h5py
    from h5py import h5f, h5p

    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_LATEST)  # h5py's defaults
    fapl.set_sieve_buf_size(0)
    metadata, slots, _, w0 = fapl.get_cache()
    fapl.set_cache(metadata, slots, 0, w0)  # no chunk cache
    fcpl = h5p.create(h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.File(h5f.create(os.fsencode(path), h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl))


def append(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to ``path`` whole, or not at all: a failed append leaves no half
    line for a reader to trip on, nor an empty file it made. Raises WriteFailed."""
    with writing(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        made = not os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size, data = os.fstat(fd).st_size, text.encode()
            try:
                while data:
                    data = data[os.write(fd, data):]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                    if made:
                        os.unlink(path)
                raise
        finally:
            os.close(fd)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file all at once (``distnn.atomic``); raises WriteFailed."""
    with writing(path), atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig: object, path: str | os.PathLike[str], **options: object) -> None:
    """``fig.savefig`` (matplotlib) all at once (``distnn.atomic``); raises WriteFailed."""
    kind = os.path.splitext(path)[1].lstrip(".") or "png"
    with writing(path), atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, **options)
