"""Run the benchmark matrix: launch P ranks per cell group, repeat in rounds, keep medians.

For each round, for each P: one ``mpirun -n P`` of ``distnn.bench.worker`` timing
every cell (sizes x batches x dtypes, the conv row, plus, when asked, the target
cell with each reducer), then, with peers, one ``mpirun -n P`` of ``distnn.bench.peers_torch``
on the same cells; at P = 1 also the seed's per-sample loop. Rounds interleave
all of it, so a burst of load from another job hits one round of everything
rather than every round of one thing; each figure reported is the median over
rounds (the whole record of the round with the median samples/s).

The machine's single-core GEMM peak is measured at the start of every round; the
best round counts (load from other jobs only ever lowers it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distnn import architecture, blas
from distnn.bench.peak import gemm_peak
from distnn.comm import mpi_library_version
from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, write_text

TARGET = {"sizes": [784, 100, 10], "batch": 128, "dtype": "float32"}  # the targets' cell
SEED_RECIPE = {"sizes": [784, 30, 10], "batch": 10}
# The conv row (issue 38): Nielsen's chapter 6 network, two conv-pool layers and two
# fully connected ones, at every P.
CONV_TARGET = {"sizes": ["1x28x28", "conv20x5", "pool2", "conv40x5", "pool2", 100, 10],
               "batch": 128, "dtype": "float32"}
# Beside the matrix's cells (--reduce auto: shm on one node), the target cell with
# the reducer any placement of ranks can use, at every P > 1.
REDUCERS = ["allreduce"]


@dataclass
class Config:
    sizes: list[list[int]] = field(
        default_factory=lambda: [[784, 30, 10], [784, 100, 10], [784, 800, 10]]
    )
    batches: list[int] = field(default_factory=lambda: [10, 128, 1024])
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4])
    dtypes: list[str] = field(default_factory=lambda: ["float32", "float64"])
    out: str = "bench-results"
    peers: bool = True
    reducers: bool = True  # the target cell with each of REDUCERS too
    conv: bool = True  # the conv row, CONV_TARGET, too
    rounds: int = 3
    budget: float = 0.6  # seconds of timed steps per cell per round
    repeats: int = 5  # timed repeats per cell per round; the median is kept
    seed_budget: float = 2.0


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment minus any enclosing MPI job's, with one BLAS thread per process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PMI_", "PMIX_", "HYDRA_", "MPI_", "OMPI_", "MPIR_CVAR_"))
    }
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    module: str,
    P: int,
    spec: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    launcher: Sequence[str] = ("mpirun",),
) -> list[dict[str, Any]]:
    """``mpirun -n P python -m module --spec ... --out ...``; returns rank 0's results.

    ``launcher`` replaces ``mpirun``: any command that takes ``-n P`` and the program
    (``mpiexec -f hosts``, ``srun``, ``bash tests/cluster/mpiexec -hosts dnn1:1,dnn2:1``).
    """
    spec_path = workdir / f"spec-{module.rsplit('.', 1)[-1]}-{P}.json"
    out_path = workdir / f"out-{module.rsplit('.', 1)[-1]}-{P}.json"
    write_text(spec_path, json.dumps(spec))
    out_path.unlink(missing_ok=True)
    cmd = [
        *launcher,
        "-n",
        str(P),
        sys.executable,
        "-m",
        module,
        "--spec",
        str(spec_path),
        "--out",
        str(out_path),
        *(extra_args or []),
    ]
    proc = subprocess.run(cmd, env=_child_env(env), capture_output=True, text=True, timeout=900)
    if proc.returncode == EXIT_IOERR:  # the launch said why, in its last line
        raise WriteFailed(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                          f"{' '.join(cmd)} could not write {out_path}")
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out_path.read_text())["results"]


def cell(sizes: list[int | str], batch: int, dtype: str) -> dict[str, Any]:
    """One cell of the benchmark: an MLP with the seed's sigmoid and quadratic cost, or a
    conv net with the choices of Nielsen's chapter 6, ReLU and a softmax's cross-entropy."""
    if architecture.is_conv(sizes):
        return {"sizes": sizes, "batch": batch, "dtype": dtype, "activation": "relu",
                "cost": "cross_entropy"}
    return {"sizes": sizes, "batch": batch, "dtype": dtype}


def main_cells(cfg: Config) -> list[dict[str, Any]]:
    return [cell(s, b, d) for s in cfg.sizes for b in cfg.batches for d in cfg.dtypes]


def conv_cells(cfg: Config) -> list[dict[str, Any]]:
    """The conv row, unless it is off or already a cell of the matrix."""
    conv = cell(**CONV_TARGET)
    return [conv] if cfg.conv and conv not in main_cells(cfg) else []


def reducer_cells(cfg: Config, P: int) -> list[dict[str, Any]]:
    if not cfg.reducers or P == 1:  # one rank sums nothing: every reducer is the same
        return []
    return [{**TARGET, "reducer": reducer} for reducer in REDUCERS]


def run_seed_loop(cfg: Config, workdir: Path) -> dict[str, Any]:
    out = workdir / "seed.json"
    cmd = [
        sys.executable,
        "-m",
        "distnn.bench.seed_loop",
        "--sizes",
        *map(str, SEED_RECIPE["sizes"]),
        "--batch",
        str(SEED_RECIPE["batch"]),
        "--budget",
        str(cfg.seed_budget),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, env=_child_env(), check=True, capture_output=True, timeout=600)
    return {**json.loads(out.read_text()), "peer": "seed", "P": 1, "dtype": "float64"}


def key(row: dict[str, Any]) -> tuple:
    """Identity of a cell across rounds."""
    return (
        row.get("peer", "distnn"),
        tuple(row["sizes"]),
        row["batch"],
        row.get("dtype"),
        row["P"],
        row.get("reducer", "auto"),
    )


def median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell, the round whose samples/s is the median (lower median for even counts)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    medians = []
    for group in groups.values():
        group.sort(key=lambda r: r["samples_per_s"])
        medians.append(
            {
                **group[(len(group) - 1) // 2],
                "rounds": len(group),
                "samples_per_s_all": [r["samples_per_s"] for r in group],
            }
        )
    return medians


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cfg: Config) -> dict[str, Any]:
    """Every round of every launch; returns the raw rows, the medians and the machine facts."""
    has_torch = cfg.peers and _torch_installed()
    started = time.time()
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    peaks: dict[str, list[float]] = {"float32": [], "float64": []}
    with tempfile.TemporaryDirectory(prefix="distnn-bench-") as tmp:
        for r in range(cfg.rounds):
            for dtype in peaks:
                if dtype in cfg.dtypes:
                    peaks[dtype].append(gemm_peak(dtype))
            rows += [{**row, "round": r} for row in run_round(cfg, r, Path(tmp), has_torch)]
    libraries = blas.libraries()
    return {
        "config": asdict(cfg),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "blas": blas.describe(libraries, threads=False),  # the cells: 1 thread a rank
            "blas_warning": blas.kernel_warning(libraries),
            "load_start": load_start,
            "load_end": os.getloadavg(),
            "seconds": time.time() - started,
            "python": sys.version.split()[0],
            "versions": _versions(has_torch),
        },
        "peak_gflops": {d: max(v) for d, v in peaks.items() if v},  # best round: least disturbed
        "peak_gflops_all": peaks,
        "rows": rows,
        "results": median_rows(rows),
    }


def run_round(cfg: Config, r: int, workdir: Path, has_torch: bool) -> list[dict[str, Any]]:
    """One round: for each P, distnn's cells, then the peers on the same cells."""
    rows: list[dict[str, Any]] = []
    spec_base = {"budget": cfg.budget, "repeats": cfg.repeats}
    for P in cfg.ranks:
        cells = main_cells(cfg) + conv_cells(cfg) + reducer_cells(cfg, P)
        log(f"round {r + 1}/{cfg.rounds}: distnn, P={P}, {len(cells)} cells")
        rows += launch("distnn.bench.worker", P, {**spec_base, "cells": cells}, workdir)
        if has_torch:
            log(f"round {r + 1}/{cfg.rounds}: torch{' DDP' if P > 1 else ''}, P={P}")
            rows += launch(
                "distnn.bench.peers_torch",
                P,
                {**spec_base, "cells": main_cells(cfg) + conv_cells(cfg)},
                workdir,
                extra_args=["--port", str(_free_port())],
            )
        if cfg.peers and P == 1 and SEED_RECIPE["sizes"] in cfg.sizes:
            log(f"round {r + 1}/{cfg.rounds}: the seed's per-sample loop")
            rows.append(run_seed_loop(cfg, workdir))
    return rows


def _torch_installed() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        log("peers: torch not installed (pip install -e '.[bench]'), skipping the PyTorch peer")
        return False
    return True


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _versions(has_torch: bool) -> dict[str, str]:
    from importlib.metadata import version

    import numpy

    versions = {
        "numpy": numpy.__version__,
        "mpi4py": version("mpi4py"),
        "mpi": mpi_library_version(),  # the launcher is no MPI job: the name only
    }
    if has_torch:
        import torch

        versions["torch"] = torch.__version__
    return versions
