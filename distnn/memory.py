"""How much memory a process may still take, and whether an allocation fits.

Files say how large they are before they are read (an IDX header, an HDF5
dataset's shape, a checkpoint's model), and a file can lie: a 4 MB gzip can
inflate to 4 GiB, a sparse HDF5 dataset can declare a trillion rows. Readers
ask ``shortfall`` before they allocate what a file declares, and
``unstored`` before they trust an HDF5 dataset's shape, so such a file is
refused in one line instead of swapping the machine or being killed by it.
"""

from __future__ import annotations

import resource

import h5py


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process to map, if it is set."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        used = 0
    return max(0, soft - used)


def available() -> int | None:
    """Bytes this process may still allocate: the machine's MemAvailable, or less under
    ``ulimit -v``; None where neither can be read."""
    limits = [b for b in (_meminfo("MemAvailable"), _address_space_left()) if b is not None]
    return min(limits) if limits else None


def size(nbytes: float) -> str:
    """``nbytes`` for people: 3.2 GiB, 17 MiB, 512 B."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """"800M", "4G", "1.5G", "65536": bytes (K, M, G, T: powers of 1024; a B after them
    is allowed); ValueError if it is not a positive size."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in "KMGT" and t[-1:] else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        raise ValueError("not a size: give bytes, or a number with K, M, G or T") from None
    if not (value > 0 and value * _UNITS[unit] < 1 << 62):  # NaN and inf too
        raise ValueError("a size must be a positive number of bytes")
    return int(value * _UNITS[unit])


def shortfall(nbytes: int, room: int | None = None) -> str | None:
    """Why ``nbytes`` more will not fit (None if it does, or if nobody can tell)."""
    room = available() if room is None else room
    if room is None or nbytes <= room:
        return None
    return f"{size(nbytes)} of memory, but only {size(room)} is available"


def unstored(ds: h5py.Dataset) -> str | None:
    """Why an uncompressed HDF5 dataset cannot hold what its shape declares (None if it can).

    Storage that was never written reads back as zeros: a dataset whose file
    holds fewer bytes than its shape needs is truncated, or a sparse decoy.
    """
    declared = ds.size * ds.dtype.itemsize
    if ds.compression is not None or ds.external or ds.is_virtual:
        return None  # its bytes on disk say nothing about its size
    stored = ds.id.get_storage_size()
    if stored >= declared:
        return None
    return (f"{ds.name} declares {ds.shape} ({size(declared)}) but the file stores "
            f"{size(stored)} of it (truncated, or never written)")
