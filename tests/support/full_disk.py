"""A disk that refuses writes on demand, in-process: each write site fails as a full disk does.

The failures are raised where the file system raises them, with the errno it
gives: inside h5py as a checkpoint's data goes in (h5py raises OSError with the
errno, as it does on a real full disk), or as the file is closed (h5py raises a
RuntimeError whose message holds the errno, as it does when HDF5 writes what it
held back), in the lock's ``os.pwrite``, in the metrics file's append, in
matplotlib's ``savefig``.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import Any

import h5py

# The refusals a run must survive as one line: full, quota, read-only, failing, forbidden.
ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES]
IDS = [errno.errorcode[e] for e in ERRNOS]


def refusal(err: int) -> OSError:
    return OSError(err, os.strerror(err))


def refuse_checkpoints(monkeypatch: Any, err: int,
                       when: Callable[[dict[str, int]], bool] = lambda position: True) -> list:
    """Checkpoint writes whose position passes ``when`` fail with ``err`` as their data
    goes in; returns the list of positions refused, which grows as they are."""
    refused: list[dict[str, int]] = []
    real = h5py.Group.create_dataset

    def create_dataset(self: h5py.Group, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "params" and isinstance(self, h5py.File):
            position = json.loads(self.attrs["position"])
            if when(position):
                refused.append(position)
                raise refusal(err)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.File, "create_dataset", create_dataset, raising=False)
    return refused


def close_failure(err: int, path: str = "c.h5.tmp-host-1-x") -> RuntimeError:
    """What h5py raises when HDF5 cannot write what it held back as a file closes: a
    RuntimeError (its words for a failed decrement of the file's reference count), the
    errno only in the message (copied from a real full tmpfs, HDF5 2.0)."""
    return RuntimeError(
        "Can't decrement id ref count (file write failed: time = Mon Dec  7 19:56:11 2026\n"
        f", filename = '{path}', file descriptor = 21, errno = {err}, error message = "
        f"'{os.strerror(err)}', buf = 0x55bb1d3f6bd8, total write size = 1024, bytes this "
        "sub-write = 1024, offset = 6144)")


def refuse_checkpoint_closes(monkeypatch: Any, err: int,
                             when: Callable[[dict[str, int]], bool] = lambda position: True
                             ) -> list:
    """Checkpoint files whose position passes ``when`` are closed (HDF5 lets go of them),
    then h5py raises ``close_failure(err)``; returns the positions refused."""
    refused: list[dict[str, int]] = []
    real = h5py.File.close

    def close(self: h5py.File) -> None:
        position = (json.loads(self.attrs["position"]) if self.id.valid and self.mode == "r+"
                    and "position" in self.attrs else None)
        name = self.filename if self.id.valid else ""
        real(self)
        if position is not None and when(position):
            refused.append(position)
            raise close_failure(err, name)

    monkeypatch.setattr(h5py.File, "close", close)
    return refused
