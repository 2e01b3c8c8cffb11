"""A disk that refuses writes on demand, in-process: each write site fails as a full disk does.

The failures are raised where the file system raises them, with the errno it
gives: inside h5py as a checkpoint's data goes in (h5py raises OSError with the
errno, as it does on a real full disk), in the lock's ``os.pwrite``, in the
metrics file's append, in matplotlib's ``savefig``.
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
