"""How much memory a process may still take, and whether an allocation fits.

Files say how large they are before they are read (an IDX header, an HDF5
dataset's shape, a checkpoint's model), and a file can lie: a 4 MB gzip can
inflate to 4 GiB, a sparse HDF5 dataset can declare a trillion rows. Readers
ask ``shortfall`` before they allocate what a file declares, and
``unstored`` before they trust an HDF5 dataset's shape, so such a file is
refused in one line instead of swapping the machine or being killed by it.

What is available (``room``) is the least of what three limits leave: the
machine's MemAvailable, ``ulimit -v``, and every memory cgroup from the
process's own up to its hierarchy's root (a batch system or a container often
sets the limit on a parent: Slurm's job, not its step). A cgroup leaves its
limit less its working set, what it uses less the page cache it may reclaim
(``inactive_file``), as container tools count it: the cache of a file a job
has just read is given back under pressure, and must not make its room zero.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import h5py

UNLIMITED = 1 << 62  # cgroup v1 says "no limit" with 2^63 less a page (9223372036854771712)


@dataclass(frozen=True)
class Room:
    """Bytes a process may still allocate, and the limit that leaves them."""
    nbytes: int
    limit: str  # "MemAvailable", "ulimit -v", or "cgroup <dir>: limit 450 MiB"

    def __str__(self) -> str:
        return f"{size(self.nbytes)} available ({self.limit})"


def _meminfo(key: str, proc: Path) -> int | None:
    try:
        with open(proc / "meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left(proc: Path) -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process to map, if it is set."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open(proc / "self" / "status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        used = 0
    return max(0, soft - used)


def _number(path: Path) -> int | None:
    """A cgroup file's one number; None if it is missing, unreadable or "max"."""
    try:
        value = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return value if value < UNLIMITED else None


def _stat(path: Path, key: str) -> int:
    """One line of a cgroup's memory.stat (0 if it has none)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


# The names of a memory cgroup's limit, usage, and page cache it may reclaim (in memory.stat:
# v1's total_ counts the cgroup's children too, as its usage does; v2's always does).
_FILES = {1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
          2: ("memory.max", "memory.current", "inactive_file")}


def cgroup_room(leaf: Path, root: Path, version: int) -> tuple[int, str] | None:
    """The least that the memory cgroups from ``leaf`` up to ``root`` (a directory of the
    hierarchy's mount) leave: each its limit less its working set; None if none has a limit."""
    limit_file, usage_file, cache_key = _FILES[version]
    least: tuple[int, str] | None = None
    here = leaf
    while True:
        limit = _number(here / limit_file)
        if limit is not None:
            working = max(0, (_number(here / usage_file) or 0)
                          - _stat(here / "memory.stat", cache_key))
            left = max(0, limit - working)
            if least is None or left < least[0]:
                least = left, f"cgroup {here}: limit {size(limit)}"
        if here == root or here.parent == here:
            return least
        here = here.parent


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo, whose spaces and such are octal escapes (\\040)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _memory_mounts(mountinfo: list[str]) -> list[tuple[int, str, Path]]:
    """The mounted cgroup hierarchies that may hold memory limits: (version, the cgroup
    at the mount's top, the mount point), from /proc/self/mountinfo's lines."""
    found = []
    for mount in mountinfo:  # "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"
        fields, _, fs = mount.partition(" - ")
        fields, fs = fields.split(), fs.split()
        if len(fields) < 5 or len(fs) < 3:
            continue
        if fs[0] == "cgroup2" or (fs[0] == "cgroup" and "memory" in fs[2].split(",")):
            found.append((2 if fs[0] == "cgroup2" else 1, _unescape(fields[3]),
                          Path(_unescape(fields[4]))))
    return found


def memory_cgroups(proc: Path = Path("/proc")) -> list[tuple[Path, Path, int]]:
    """This process's memory cgroups as (its directory, its hierarchy's mount, version):
    from /proc/self/cgroup, where each hierarchy is mounted from /proc/self/mountinfo."""
    try:
        mine = (proc / "self" / "cgroup").read_text().splitlines()
        mounts = _memory_mounts((proc / "self" / "mountinfo").read_text().splitlines())
    except OSError:
        return []
    found = []
    for line in mine:  # "4:memory:/slurm/job_12" (v1), "0::/user.slice/..." (v2)
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        version = 2 if hierarchy == "0" and not controllers else 1
        if version == 1 and "memory" not in controllers.split(","):
            continue
        for v, top, at in mounts:
            # A mount shows the hierarchy from its top down (a container's: its own cgroup).
            if v == version and Path(path).is_relative_to(top):
                found.append((at / Path(path).relative_to(top), at, version))
    return found


def room(proc: Path = Path("/proc")) -> Room | None:
    """What this process may still allocate, and which limit says so; None where no limit
    can be read. ``proc``: where procfs is (tests give a fake one)."""
    limits = [(_meminfo("MemAvailable", proc), "MemAvailable"),
              (_address_space_left(proc), "ulimit -v")]
    limits += [cgroup_room(leaf, root, version) or (None, "")
               for leaf, root, version in memory_cgroups(proc)]
    known = [Room(nbytes, limit) for nbytes, limit in limits if nbytes is not None]
    return min(known, key=lambda r: r.nbytes) if known else None


def available(proc: Path = Path("/proc")) -> int | None:
    """Bytes this process may still allocate (``room``); None where nothing says."""
    found = room(proc)
    return None if found is None else found.nbytes


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


def shortfall(nbytes: int, left: Room | None = None) -> str | None:
    """Why ``nbytes`` more will not fit (None if it does, or if nobody can tell); ``left``
    is what is available (by default, ``room()``)."""
    left = room() if left is None else left
    if left is None or nbytes <= left.nbytes:
        return None
    return f"{size(nbytes)} of memory, but only {left}"


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
