"""Which BLAS does the arithmetic, with which kernels: and whether they are the CPU's best.

Nearly all of a step's time is in numpy's matrix products, so the BLAS library
numpy loaded, the kernels it picked for this CPU and its threads decide the
speed (threadpoolctl reports all three). OpenBLAS picks its kernels by the CPU
unless ``OPENBLAS_CORETYPE`` forces others: on a CPU with AVX-512, forced
Haswell (AVX2) kernels run sgemm at about half speed (107 against 205 GFLOP/s
on one core, measured; docs/performance.md). ``kernel_warning`` says so in one
line, naming the variable to unset.
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenBLAS's kernel families (its "architecture") by the widest vectors they use.
KERNEL_LEVEL = {
    "prescott": 1, "core2": 1, "penryn": 1, "dunnington": 1, "nehalem": 1, "atom": 1,
    "barcelona": 1, "bobcat": 1, "sandybridge": 2, "bulldozer": 2, "piledriver": 2,
    "steamroller": 2, "excavator": 2, "haswell": 3, "zen": 3, "skylakex": 4, "cooperlake": 4,
    "sapphirerapids": 4,
}
LEVEL_NAME = {1: "SSE", 2: "AVX", 3: "AVX2", 4: "AVX-512"}


def cpu_level(flags: set[str] | None = None) -> int | None:
    """The widest vectors this x86 CPU runs (KERNEL_LEVEL's scale), or None elsewhere."""
    if flags is None:
        flags = _cpu_flags()
    if not flags:
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return 4
    if {"avx2", "fma"} <= flags:
        return 3
    return 2 if "avx" in flags else 1


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def libraries() -> list[dict]:
    """The BLAS libraries numpy loaded, as threadpoolctl sees them."""
    import numpy  # noqa: F401  (threadpoolctl sees only the libraries loaded)
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]


def describe(libs: list[dict] | None = None, threads: bool = True) -> str:
    """One line: "OpenBLAS 0.3.31 (Haswell kernels, pthreads), 1 thread" (without the
    threads where the caller sets them elsewhere)."""
    libs = libraries() if libs is None else libs
    if not libs:
        return "no BLAS that threadpoolctl knows"
    parts = []
    for lib in libs:
        name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(
            lib.get("internal_api", ""), lib.get("internal_api", "a BLAS"))
        how = [f"{lib['architecture']} kernels"] if lib.get("architecture") else []
        how += [lib["threading_layer"]] if lib.get("threading_layer") else []
        count = lib.get("num_threads") if threads else None
        parts.append(f"{name} {lib.get('version') or ''}".strip()
                     + (f" ({', '.join(how)})" if how else "")
                     + (f", {count} thread{'s' if count != 1 else ''}" if count else ""))
    return "; ".join(parts)


def kernel_warning(libs: list[dict] | None = None, level: int | None = None,
                   environ: dict[str, str] | None = None) -> str | None:
    """A line when OpenBLAS runs kernels older than the CPU's best, else None."""
    libs = libraries() if libs is None else libs
    level = cpu_level() if level is None else level
    environ = os.environ if environ is None else environ
    for lib in libs:
        kernel = str(lib.get("architecture") or "")
        used = KERNEL_LEVEL.get(kernel.lower())
        if lib.get("internal_api") != "openblas" or used is None or level is None \
                or used >= level:
            continue
        what = (f"OpenBLAS runs its {kernel} ({LEVEL_NAME[used]}) kernels on a CPU with "
                f"{LEVEL_NAME[level]}")
        forced = environ.get("OPENBLAS_CORETYPE")
        if forced:
            unset = " and ".join(v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                                 if v in environ)
            return (f"{what}, because OPENBLAS_CORETYPE={forced} forces them: matrix products "
                    f"may run at half speed; unset {unset} for the CPU's own kernels")
        return (f"{what}: this OpenBLAS has none of the CPU's own; a newer numpy's may "
                "run matrix products faster")
    return None
