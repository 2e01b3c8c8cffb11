"""The handful of collective operations the trainer needs, and nothing else.

This is the only module of distnn that imports mpi4py. Everything the training
loop does across ranks goes through a ``Comm``: ``MPIComm`` when the job runs
on several ranks, ``SerialComm`` when it runs as one plain process. Both offer
the same methods, so the loop has no ``if distributed`` branches, and a single
process never touches MPI while you debug it with pdb or a profiler.

Naming follows Horovod: a trailing underscore means "in place" (the buffer
passed in holds the result).

Only upper-case mpi4py calls are used for arrays (``Allreduce``, ``Bcast``):
they move the numpy buffer directly instead of pickling it.

Ranks on one node can also share memory: ``node()`` is the communicator of the
ranks that can, and its ``shared_array`` is one numpy array they all map (an
MPI-3 shared-memory window), so what one rank writes the others read in place.

Every collective tells ``watch`` (``distnn.stall``) when it starts and ends, so
that a rank that waits too long can find out for whom; the watchdog talks over
a communicator of its own (``dup``) with ``post`` and ``collect``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys
import time
from typing import Any

import numpy as np


class SerialComm:
    """One process: every collective is the identity."""

    rank = 0
    size = 1

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def max_(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        return buf

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def hostname(self) -> str:
        return socket.gethostname()

    def ranks_on_this_node(self) -> int:
        return 1

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _unread(fd: int) -> int:
    """Bytes written to ``fd`` that its reader has not taken yet (0 for a file or tty).

    A launcher (mpirun's proxy, slurmstepd) reads each rank's output from a pipe
    or a socket; FIONREAD on a pipe and TIOCOUTQ (SIOCOUTQ) on a socket count
    what is still queued, from the writer's side too.
    """
    try:
        import fcntl  # POSIX only: elsewhere there is nothing to wait for
        import termios

        mode = os.fstat(fd).st_mode
        request = (termios.FIONREAD if stat.S_ISFIFO(mode) else
                   getattr(termios, "TIOCOUTQ", None) if stat.S_ISSOCK(mode) else None)
        if request is None:
            return 0
        return struct.unpack("i", fcntl.ioctl(fd, request, b"\0" * 4))[0]
    except (ImportError, OSError):
        return 0


def drain_output(timeout: float = 5.0, fds: tuple[int, ...] = (1, 2)) -> None:
    """Flush stdout and stderr, then wait (at most ``timeout`` s) until the launcher has read them.

    An abort makes the launcher kill the job, and what it has not yet read from
    a rank's pipe is lost: often the very line that says why the job died.
    Waiting until the pipe is empty (not a fixed sleep) keeps that line, and
    costs nothing when the launcher keeps up.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or its reader went away
            stream.flush()
    deadline = time.monotonic() + timeout
    while any(_unread(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.005)


class Unwatched:
    """No stall watch (one process, or ``--stall-timeout 0``): the same calls, doing nothing."""

    def enter(self, op: str) -> None:
        pass

    def leave(self) -> None:
        pass

    def at(self, epoch: int, step: int, epoch_cost: float) -> None:
        pass

    def updating(self) -> None:
        pass

    def keep(self, save: Any, path: str) -> None:
        pass

    def listen(self, signals: int | None) -> None:
        pass

    def close(self) -> None:
        pass


UNWATCHED = Unwatched()


class SharedArray:
    """A flat numpy array in one node's memory, mapped by every rank of a node communicator.

    Ranks read and write ``array`` directly; ``sync()`` is the only ordering: what
    any rank wrote before its ``sync()`` is what every rank reads after its own.
    """

    def __init__(self, owner: MPIComm, size: int, dtype: np.dtype) -> None:
        from mpi4py import MPI

        dtype = np.dtype(dtype)
        self._owner = owner
        comm = self._comm = owner._comm
        # One allocation, made by the node's first rank, so the array is contiguous.
        nbytes = size * dtype.itemsize if comm.Get_rank() == 0 else 0
        self._win = MPI.Win.Allocate_shared(nbytes, dtype.itemsize, comm=comm)
        # One passive-target epoch for the window's whole life: loads and stores
        # are then plain memory accesses, ordered by sync() alone.
        self._win.Lock_all(MPI.MODE_NOCHECK)
        buf, _ = self._win.Shared_query(0)
        self.array = np.ndarray((size,), dtype, buffer=buf)

    def sync(self) -> None:
        """A barrier that also makes every rank's writes visible to every rank."""
        watch = self._owner.watch
        self._win.Sync()  # my stores reach the shared memory ...
        watch.enter("Barrier (shared memory)")
        self._comm.Barrier()  # ... everyone's have ...
        watch.leave()
        self._win.Sync()  # ... and my loads see them

    def free(self) -> None:
        """Release the memory (collective over the node); ``array`` must not be used after."""
        self._win.Unlock_all()
        self._win.Free()


class MPIComm:
    """Several ranks: thin wrappers over one mpi4py communicator."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.watch: Any = UNWATCHED  # told of every collective (distnn.stall.Watch)
        self._posted: list[Any] = []  # post()'s requests, until their sends are done

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` over all ranks, in place: one message, no second buffer."""
        self.watch.enter("Allreduce")
        self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.watch.leave()
        return buf

    def max_(self, buf: np.ndarray) -> np.ndarray:
        self.watch.enter("Allreduce (max)")
        self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.MAX)
        self.watch.leave()
        return buf

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        self.watch.enter("Bcast")
        self._comm.Bcast(buf, root=root)
        self.watch.leave()
        return buf

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Broadcast a small picklable object (a config, a path, an error)."""
        self.watch.enter("bcast")
        obj = self._comm.bcast(obj, root=root)
        self.watch.leave()
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's small picklable object, in rank order."""
        self.watch.enter("allgather")
        objs = self._comm.allgather(obj)
        self.watch.leave()
        return objs

    def barrier(self) -> None:
        self.watch.enter("Barrier")
        self._comm.Barrier()
        self.watch.leave()

    def hostname(self) -> str:
        return self._MPI.Get_processor_name()

    def dup(self) -> MPIComm:
        """A communicator of the same ranks whose messages never meet this one's (collective)."""
        return MPIComm(self._comm.Dup())

    def post(self, obj: Any, dest: int, tag: int) -> None:
        """Send a small picklable object without waiting for it to arrive (or to be sent)."""
        # A request holds its pickled message: keep it until the send is done.
        self._posted = [r for r in self._posted if not r.Test()]
        self._posted.append(self._comm.isend(obj, dest=dest, tag=tag))

    def collect(self, tag: int) -> tuple[int, Any] | None:
        """(source, object) of a message with ``tag`` that has arrived, or None: never waits."""
        status = self._MPI.Status()
        if not self._comm.Iprobe(source=self._MPI.ANY_SOURCE, tag=tag, status=status):
            return None
        return status.Get_source(), self._comm.recv(source=status.Get_source(), tag=tag)

    def ranks_on_this_node(self) -> int:
        """How many ranks share this node's memory (and so its cores)."""
        local = self._comm.Split_type(self._MPI.COMM_TYPE_SHARED)
        try:
            return local.Get_size()
        finally:
            local.Free()

    def split(self, color: int) -> MPIComm:
        """The communicator of the ranks that pass the same ``color``, in rank order."""
        return self._child(self._comm.Split(color, self.rank))

    def node(self) -> MPIComm:
        """The communicator of the ranks that share this node's memory."""
        return self._child(self._comm.Split_type(self._MPI.COMM_TYPE_SHARED, key=self.rank))

    def _child(self, comm: Any) -> MPIComm:
        child = MPIComm(comm)
        child.watch = self.watch  # a wait on a part of the job is a wait of the job
        return child

    def shared_array(self, size: int, dtype: np.dtype) -> SharedArray:
        """A ``size``-element array every rank of this communicator maps (collective).

        Every rank must share memory: call it on ``node()`` or a part of it.
        """
        return SharedArray(self, size, dtype)

    def free(self) -> None:
        """Release a communicator made by ``split`` or ``node`` (collective)."""
        self._comm.Free()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now, so none waits forever in a collective.

        This rank's output reaches the launcher first (``drain_output``).
        """
        drain_output()
        self._comm.Abort(code)


Comm = SerialComm | MPIComm


# Open MPI tries its UCX one-sided component first, which prints an error on
# every rank where UCX has no network to offer it (a laptop, a container).
# distnn's only window is shared memory within a node, which is osc sm's job
# (rdma behind it). Read at MPI_Init; a value the user set wins.
OPEN_MPI_DEFAULTS = {"OMPI_MCA_osc": "sm,rdma"}


def world() -> Comm:
    """The communicator of the whole job: MPI if launched on several ranks."""
    for name, value in OPEN_MPI_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_size() == 1:
        return SerialComm()
    return MPIComm(MPI.COMM_WORLD)


def mpi_flavour(version: str) -> str:
    """mpich, openmpi, intel or unknown, from an MPI library's version text
    (as launch/mpi.sh tells them apart)."""
    for flavour, mark in (("openmpi", "Open MPI"), ("intel", "Intel(R) MPI"), ("mpich", "MPICH")):
        if mark in version:
            return flavour
    return "unknown"


def mpi_library_version() -> str:
    """The MPI library's name and version (its first line), without starting an MPI job.

    For launchers, such as the benchmark's, that start MPI jobs but are none: if
    mpi4py.MPI was not imported yet, this process can no longer initialize MPI.
    """
    import mpi4py

    mpi4py.rc.initialize = False  # only a question about the library: no MPI_Init
    from mpi4py import MPI

    return MPI.Get_library_version().splitlines()[0].strip()
