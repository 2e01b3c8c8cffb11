"""A rank's training rows read from the file a window at a time, in the background.

A rank whose partitions do not fit its memory budget holds, of each partition
it serves, two windows of the epoch's order (``distnn.data.order``): the one
its steps read now, and the next, which a reader thread fills meanwhile, block
by block, each block one contiguous read of whole rows. The batches are the
ones the rank would take from memory, bitwise: the order is the same, only
where the rows wait differs.

For each partition the steps that read each window are known in advance (step
k takes positions [k m_c, (k + 1) m_c) of the partition's order), so the
reader fills the windows in the order the steps first need them, and fills a
window's slot again only once the steps that read its previous window are
done. A window has at least m_c rows (``Partitions.problem``), so a step reads
at most two windows of a partition: the two slots always suffice.

A read that fails (the file shrank, or cannot be read) is kept and raised in
the step that needs the window, as one DataError naming the file.
The first windows of an epoch are read when it begins.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import DataError
from .order import WINDOW_BLOCKS, Partitions
from .store import NAMES, open_checked


@dataclass
class _Load:
    """One window of one partition: the steps that read it, and where it goes."""
    first_step: int
    last_step: int
    part: int  # the partition's place among the rank's (0, 1, ...)
    blocks: np.ndarray  # its block numbers within the partition
    slot: int  # which of the partition's two slots it fills
    after: int  # the step after which that slot is free (-1: free now)


def held_bytes(order: Partitions, rank: int, ranks: int, row_bytes: int) -> int:
    """What rank ``rank``'s training rows take held as stored: beyond its memory budget,
    it streams them instead."""
    start, stop = order.rows_of(rank, ranks)
    return (stop - start) * row_bytes


def stream_bytes(order: Partitions, rank: int, ranks: int, row_bytes: int) -> int:
    """What a Stream of rank ``rank`` holds: two windows of each partition it serves."""
    return len(order.served_by(rank, ranks)) * _slots(order) * _slot_rows(order) * row_bytes


def _slots(order: Partitions) -> int:
    """Windows held of each partition: the one read now and the next; a partition
    shuffled whole is one window, read again each epoch into the same place."""
    return 1 if order.whole else 2


def _slot_rows(order: Partitions) -> int:
    return (1 if order.whole else WINDOW_BLOCKS) * order.block


class _Extents:
    """Where a dataset's rows lie in its file, so that rows are read with ``os.preadv``
    straight into a window: one copy, and no lock held (h5py holds Python's while it
    reads, which would stall the training thread). HDF5 says where each chunk of whole
    rows is; a dataset stored otherwise (compressed, of other byte order, chunks not
    written) is read through h5py instead (``direct`` is then False)."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self.ds, self.row_bytes = ds, ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
        self.direct = (ds.dtype.isnative and not ds.is_virtual and not ds.external
                       and ds.id.get_create_plist().get_nfilters() == 0)
        if not self.direct:
            return
        if ds.chunks is None:  # contiguous: one extent of every row
            offset = ds.id.get_offset()
            self.direct = offset is not None
            self.starts, self.offsets, self.rows = np.array([0]), np.array([offset]), len(ds)
            return
        found: list[tuple[int, int]] = []
        ds.id.chunk_iter(lambda info: found.append((info.chunk_offset[0], info.byte_offset)))
        found.sort()
        self.rows = ds.chunks[0]
        whole = tuple(ds.chunks[1:]) == tuple(ds.shape[1:])
        self.direct = whole and len(found) == -(-len(ds) // self.rows)
        self.starts, self.offsets = (np.array(column, np.int64)
                                     for column in zip(*found or [(0, 0)]))

    def read(self, fd: int, start: int, stop: int, out: np.ndarray) -> None:
        """Rows [start, stop) into ``out`` (as many rows, contiguous)."""
        if not self.direct:
            self.ds.read_direct(out, np.s_[start:stop])
            return
        i, at = int(np.searchsorted(self.starts, start, side="right")) - 1, start
        while at < stop:
            end = min(stop, int(self.starts[i]) + self.rows)
            view = memoryview(out[at - start:end - start]).cast("B")
            offset = int(self.offsets[i]) + (at - int(self.starts[i])) * self.row_bytes
            if os.preadv(fd, [view], offset) != len(view):
                raise EOFError(f"rows {at}..{end - 1} end early: the file is shorter than "
                               "HDF5 says")
            at, i = end, i + 1


class Stream:
    """This rank's rows of the training set's partitions, streamed: ``begin(epoch, step)``
    before an epoch's steps, then ``batch(rows)`` once a step, as from memory."""

    def __init__(self, path: str | Path, order: Partitions, rank: int, ranks: int, seed: int,
                 x_of: Callable[[np.ndarray], np.ndarray],
                 y_of: Callable[[np.ndarray], np.ndarray]) -> None:
        self.path, self.order, self.seed, self.x_of, self.y_of = path, order, seed, x_of, y_of
        self.parts = order.served_by(rank, ranks)
        first = order.rows(self.parts.start)[0]
        self._starts = [order.rows(c)[0] for c in self.parts]  # rows of the file
        self._rows = [order.rows(c)[1] - order.rows(c)[0] for c in self.parts]
        self.block = B = order.block
        self._slots, self._slot_rows = _slots(order), _slot_rows(order)
        with open_checked(path) as f:  # checked as at start-up, then held open
            version = int(f.attrs["schema_version"])
        # No chunk cache: each block is read once an epoch, straight into its slot.
        self._file = h5py.File(path, "r", rdcc_nbytes=0)
        self._features, self._targets = (self._file["train"][n] for n in NAMES[version])
        self._extents = [_Extents(self._features), _Extents(self._targets)]
        # HDF5 reads past the end of a file as zeros: a file cut short is seen by its size.
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        parts = len(self.parts)
        held = parts * self._slots * self._slot_rows
        self._x = np.empty((held, self._features.shape[1]), self._features.dtype)
        self._y = np.empty((held, *self._targets.shape[1:]), self._targets.dtype)
        blocks = [-(-rows // B) for rows in self._rows]
        self._base = np.concatenate([[0], np.cumsum(blocks)[:-1]]).astype(np.int64)
        self._where = np.full(sum(blocks), -1, np.int64)  # block -> its place in _x, in blocks
        # Each column of a step's rows belongs to one partition: its first row and blocks.
        column = np.repeat(np.arange(parts), [order.share(c) for c in self.parts])
        self._col_offset = (np.array(self._starts) - first)[column]
        self._col_base = self._base[column]
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._loads: list[_Load] = []
        self._loaded = 0  # loads done, in order
        self._k = -1  # the step being taken
        self._free_after = -1  # the reader waits for a step beyond this one
        self._error: DataError | None = None
        self._closing = False
        self.read_bytes, self.read_seconds = 0, 0.0  # the reader's own speed
        self.waited = 0.0  # seconds steps spent waiting for a window

    @property
    def nbytes(self) -> int:
        """What the windows held of every partition take: the rank's memory for rows."""
        return self._x.nbytes + self._y.nbytes

    def begin(self, epoch: int, step: int) -> None:
        """The epoch's steps from ``step`` on are next: start reading their windows."""
        self._finish()
        self._where[:] = -1
        self._loads = self._plan(epoch, step)
        self._needed = np.array([load.first_step for load in self._loads])
        self._loaded, self._k, self._free_after, self._closing = 0, step - 1, -1, False
        self._thread = threading.Thread(target=self._read, name="distnn-stream", daemon=True)
        self._thread.start()

    def _plan(self, epoch: int, step: int) -> list[_Load]:
        """The windows the steps from ``step`` on read, in the order they are first read."""
        loads, B, steps = [], self.block, self.order.steps
        for i, c in enumerate(self.parts):
            m_c, rows, at, mine = self.order.share(c), self._rows[i], 0, []
            for blocks in self.order.windows(self.seed, epoch, c):
                size = int(np.minimum(B, rows - blocks * B).sum())
                first, last = at // m_c, min((at + size - 1) // m_c, steps - 1)
                at += size
                if first >= steps:
                    break
                if last >= step:  # a resumed epoch skips the windows it has read
                    after = mine[-2].last_step if len(mine) >= 2 else -1
                    mine.append(_Load(first, last, i, blocks, len(mine) % self._slots, after))
            loads += mine
        return sorted(loads, key=lambda load: (load.first_step, load.part))

    def _read(self) -> None:
        """The reader thread: every window of the plan, each when its slot is free."""
        try:
            for load in self._loads:
                with self._cond:
                    self._free_after = load.after  # the step batch() wakes the reader after
                    self._cond.wait_for(lambda after=load.after: self._k > after or self._closing)
                    if self._closing:
                        return
                t0 = time.perf_counter()
                self._fill(load)
                self.read_seconds += time.perf_counter() - t0
                with self._cond:
                    self._loaded += 1
                    self._cond.notify_all()
        except Exception as err:  # noqa: BLE001 - any failure: the step that waits says it
            with self._cond:
                self._error = err if isinstance(err, DataError) else DataError(
                    f"{self.path}: cannot read its training rows while streaming them "
                    f"({' '.join(str(err).split()) or type(err).__name__})")
                self._cond.notify_all()

    def _fill(self, load: _Load) -> None:
        """Read the window's blocks into its slot, then say where each block is."""
        i, B = load.part, self.block
        slot = (self._slots * i + load.slot) * self._slot_rows // B  # in blocks
        size = os.fstat(self._fd).st_size
        if size < self._size:
            raise DataError(f"{self.path}: the file shrank from {self._size} to {size} bytes "
                            "while the run read it; its rows can no longer be trusted")
        for j, b in enumerate(load.blocks):
            start = self._starts[i] + b * B
            stop = self._starts[i] + min((b + 1) * B, self._rows[i])
            at = (slot + j) * B
            for extents, buffer in zip(self._extents, (self._x, self._y)):
                extents.read(self._fd, start, stop, buffer[at:at + stop - start])
            self.read_bytes += (stop - start) * (self._x[0].nbytes + self._y[0].nbytes)
        self._where[self._base[i] + load.blocks] = slot + np.arange(len(load.blocks))

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next step's samples ``rows`` (counted from the rank's first row, as from
        memory): (len(rows), n_features) and their targets, scaled."""
        with self._cond:
            self._k += 1
            if self._k > self._free_after:  # a slot the reader waits for is free
                self._cond.notify_all()
            need = int(np.searchsorted(self._needed, self._k, side="right"))
            if self._loaded < need:
                t0 = time.perf_counter()
                self._cond.wait_for(lambda: self._loaded >= need or self._error is not None)
                self.waited += time.perf_counter() - t0
            if self._error is not None:
                raise self._error
        local = rows - self._col_offset
        at = self._where[self._col_base + local // self.block] * self.block + local % self.block
        return self.x_of(self._x.take(at, axis=0)), self.y_of(self._y[at])

    def weights(self, rows: np.ndarray) -> None:
        """A data file's samples count once each (as ``Shard.weights`` of unweighted rows)."""
        return None

    def _finish(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Stop the reader and close the file."""
        self._finish()
        self._file.close()
        os.close(self._fd)
