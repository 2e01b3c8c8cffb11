"""Allreduce cost as alpha + beta x bytes, and a projection of scaling beyond one machine.

Measures ``Allreduce`` (in place, float32 SUM) between 2 ranks for messages of
8 B .. 64 MiB over the paths that this MPI can be told to take, each chosen
with that MPI's own means (``PATHS``):

- shm: the default; the MPI's own shared-memory path between ranks of one node;
- netmod (MPICH only): ``MPIR_CVAR_NOLOCAL=1``: through UCX, which still picks
  its own shared-memory transports on one machine;
- tcp: through the kernel's TCP stack on 127.0.0.1, the software path a
  message between nodes takes. MPICH: ``MPIR_CVAR_NOLOCAL=1 UCX_TLS=tcp,self``;
  Open MPI: ``OMPI_MCA_pml=ob1 OMPI_MCA_btl=tcp,self``; Intel MPI:
  ``I_MPI_FABRICS=ofi FI_PROVIDER=tcp I_MPI_COLL_INTRANODE=pt2pt``.

A row the MPI cannot be made to take is left out, and the report says why
(``LEFT_OUT``). Which path a row took is checked by the bytes it moves over
the loopback interface (tests/system/test_bench.py): a tcp row's megabytes and a
packet per small sum, a shared-memory row's none.

The model is what MPICH runs (read in its source and checked by counting
sends: ``allreduce_seconds``; other MPIs may choose other algorithms):
above 8 B, Rabenseifner's reduce-scatter by
recursive halving and allgather by recursive doubling, which for p ranks (a
power of two) and n bytes costs T(p, n) = 2 log2(p) alpha + 2(p-1)/p n beta,
the summing folded into beta. At p = 2 that is 2 alpha + n beta, fitted by
least squares on relative error (every size counts alike) on the per-size
median of 3 rounds that interleave the paths. 8 B is measured but not fitted:
MPICH sends it as one message (recursive doubling).

Projection (a MODEL, not a measurement): N nodes, one rank each, 128 samples
per node per step, the step's measured compute time T_c on this machine; the
gradient (float32) allreduced at 10 or 100 Gb/s once backprop is done, as the
trainer does, with alpha = the TCP alpha measured here and beta = 8 / link_rate
+ the shared-memory beta measured here (the wire, plus the copy-and-sum work
per byte that every rank does anyway). Efficiency E(N) = T_c / (T_c + T(N, n)).

Across real hosts (``--launcher``, e.g. the stand-in hosts of tests/cluster/
with a link.sh rate): the same allreduce measured between two hosts, and the
training step timed across them beside the model's prediction for it, with
the link rate given by ``--link-gbps`` (calibrate it: tests/cluster/stream.py).

Run: python -m distnn.bench.alphabeta [--out bench-results]   (python -m distnn.bench --alphabeta)
     python -m distnn.bench.alphabeta --launcher "bash tests/cluster/mpiexec -hosts dnn1:1,dnn2:1" \
         --link-gbps 0.73                                     (tests/cluster/check_model.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from distnn.protocol import EXIT_IOERR
from distnn.writes import WriteFailed, save_figure, write_text

# Per MPI (distnn.comm.mpi_flavour), the environment that sends its 2 ranks on one
# machine down each path. Each checked by what crosses the loopback interface:
# for ten 8 MiB sums, tcp 168-170 MB under all three; for an 8 B sum, tcp 2
# packets; shm, and MPICH's netmod, nothing.
PATHS = {
    "mpich": {
        "shm": {},
        "netmod": {"MPIR_CVAR_NOLOCAL": "1"},
        "tcp": {"MPIR_CVAR_NOLOCAL": "1", "UCX_TLS": "tcp,self"},
    },
    "openmpi": {
        "shm": {},
        "tcp": {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "tcp,self"},
    },
    "intel": {
        "shm": {},
        # Intel MPI sums small messages between ranks of one node through shared
        # memory whatever the fabric (I_MPI_COLL_INTRANODE=shm): without pt2pt an
        # 8 B sum took 1.0 us and no packet crossed the loopback; with it 8.2 us.
        "tcp": {"I_MPI_FABRICS": "ofi", "FI_PROVIDER": "tcp", "I_MPI_COLL_INTRANODE": "pt2pt"},
    },
}
LEFT_OUT = {
    "openmpi": "netmod: Open MPI keeps 2 ranks of one machine in shared memory whatever UCX "
               "is told (UCX_TLS=tcp,self: no byte crossed the loopback); only the tcp "
               "component (pml ob1) leaves it",
    "intel": "netmod: I_MPI_FABRICS=ofi alone picks libfabric's tcp provider here, the tcp row",
    "unknown": "netmod, tcp: an MPI that is none of MPICH, Open MPI, Intel MPI: only its "
               "default path",
}
SIZES = [8 * 2**k for k in range(24)]  # 8 B .. 64 MiB
NODES = [2, 4, 8, 16, 32, 64, 128, 256]
LINKS_GBPS = [10, 100]
PROJECTED = [[784, 100, 10], [784, 800, 10]]
BATCH_PER_NODE = 128


def measure(budget: float = 0.08, repeats: int = 5) -> list[dict[str, float]]:
    """Median seconds per in-place Allreduce of each size, on this job's ranks (worker side)."""
    from distnn.comm import world

    comm = world()
    rows = []
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, np.float32)
        for _ in range(3):  # connect, warm
            comm.allreduce_(buf)
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(buf)
        one = time.perf_counter() - t0
        calls = comm.bcast(
            max(1, int(budget / repeats / max(one, 1e-7))) if comm.rank == 0 else None
        )
        times = []
        for _ in range(repeats):
            comm.barrier()
            t0 = time.perf_counter()
            for _ in range(calls):
                comm.allreduce_(buf)
            times.append(comm.max_(np.array([(time.perf_counter() - t0) / calls]))[0])
        rows.append({"bytes": nbytes, "seconds": statistics.median(times)})
    return rows


def fit(rows: list[dict[str, float]]) -> tuple[float, float]:
    """(alpha s, beta s/B) of T = 2 alpha + n beta, least squares on relative error.

    Messages of 8 B or less are left out: MPICH sends them in one step (alpha + n beta).
    """
    rows = [r for r in rows if r["bytes"] > 8]
    n = np.array([r["bytes"] for r in rows], float)
    t = np.array([r["seconds"] for r in rows], float)
    A = np.stack([2 / t, n / t], axis=1)  # divide each equation by t: relative residuals
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return float(alpha), float(beta)


def allreduce_seconds(p: int, nbytes: float, alpha: float, beta: float) -> float:
    """MPICH's Allreduce of a gradient (> 8 B) over p ranks, one per node: Rabenseifner.

    For p a power of two, 2 log2(p) alpha + 2(p-1)/p n beta. Otherwise the p - q
    ranks beyond the largest power of two q first hand their data to a partner
    and get the sum back at the end: two more messages of n bytes.
    """
    q = 1 << (p.bit_length() - 1)
    seconds = 2 * math.log2(q) * alpha + 2 * (q - 1) / q * nbytes * beta
    return seconds if q == p else seconds + 2 * (alpha + nbytes * beta)


def compute_seconds(workdir: Path) -> dict[str, float]:
    """Measured compute seconds per step, one rank, batch 128, float32, for the projected nets."""
    from distnn.bench.matrix import launch

    cells = [{"sizes": s, "batch": BATCH_PER_NODE, "dtype": "float32"} for s in PROJECTED]
    rows = launch("distnn.bench.worker", 1, {"budget": 1.0, "repeats": 5, "cells": cells}, workdir)
    return {str(r["sizes"]): r["compute_s"] for r in rows}


def steps_across(workdir: Path, launcher: list[str]) -> dict[str, dict[str, float]]:
    """The training step timed on the launcher's 2 ranks (one per host), 128 samples each."""
    from distnn.bench.matrix import launch

    cells = [{"sizes": s, "batch": 2 * BATCH_PER_NODE, "dtype": "float32"} for s in PROJECTED]
    rows = launch("distnn.bench.worker", 2, {"budget": 1.0, "repeats": 5, "cells": cells},
                  workdir, launcher=launcher)
    return {str(r["sizes"]): {"step_s": r["step_s"], "comm_s": r["comm_s"],
                              "compute_s": r["compute_s"]} for r in rows}


def run(rounds: int = 3, launcher: list[str] | None = None) -> dict[str, Any]:
    """Every path, ``rounds`` times interleaved; per size, the median over rounds.

    With a ``launcher`` (of two ranks on two hosts), also the path "across"
    between them, and the training step timed across them.
    """
    from distnn.bench.matrix import launch
    from distnn.comm import mpi_flavour, mpi_library_version

    version = mpi_library_version()
    flavour = mpi_flavour(version)
    chosen = PATHS.get(flavour, {"shm": {}})
    paths = {name: (env, ["mpirun"]) for name, env in chosen.items()}
    if launcher:
        paths["across"] = ({}, launcher)
    samples: dict[str, list[list[dict[str, float]]]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory(prefix="distnn-ab-") as tmp:
        workdir = Path(tmp)
        for r in range(rounds):
            for name, (env, command) in paths.items():
                print(f"round {r + 1}/{rounds}: allreduce over {name} "
                      f"({' '.join([*command, *(f'{k}={v}' for k, v in env.items())])})",
                      flush=True)
                samples[name].append(launch("distnn.bench.alphabeta", 2, {}, workdir, env=env,
                                            extra_args=["--worker"], launcher=command))
        print("compute time per step (P=1, batch 128, float32)", flush=True)
        compute = compute_seconds(workdir)
        data: dict[str, Any] = {"rounds": rounds, "mpi": version, "flavour": flavour,
                                "left_out": LEFT_OUT.get(flavour), "paths": {},
                                "compute_s": compute}
        if launcher:
            print("the training step across the launcher's two hosts", flush=True)
            data["across"] = {"launcher": launcher, "steps": steps_across(workdir, launcher)}
    for name, runs in samples.items():
        rows = [
            {"bytes": nbytes, "seconds": statistics.median(run[i]["seconds"] for run in runs)}
            for i, nbytes in enumerate(SIZES)
        ]
        alpha, beta = fit(rows)
        data["paths"][name] = {"env": paths[name][0], "rows": rows, "alpha": alpha, "beta": beta}
    return data


def gradient_bytes(sizes: list[int]) -> int:
    """What the trainer's Allreduce sends: the float32 gradient, the cost and the stop flag."""
    return 4 * (sum(n_out * n_in + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])) + 2)


def model_allreduce(data: dict[str, Any], sizes: list[int], gbps: float, p: int) -> float:
    """The model's Allreduce of the gradient on p nodes joined at ``gbps``."""
    beta = 8 / (gbps * 1e9) + data["paths"]["shm"]["beta"]
    return allreduce_seconds(p, gradient_bytes(sizes), data["paths"]["tcp"]["alpha"], beta)


def projection(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for sizes in PROJECTED:
        t_c = data["compute_s"][str(sizes)]
        for gbps in LINKS_GBPS:
            for p in NODES:
                t_ar = model_allreduce(data, sizes, gbps, p)
                rows.append({"sizes": sizes, "gbps": gbps, "nodes": p,
                             "bytes": gradient_bytes(sizes), "compute_s": t_c,
                             "allreduce_s": t_ar, "efficiency": t_c / (t_c + t_ar),
                             "samples_per_s": p * BATCH_PER_NODE / (t_c + t_ar)})
    return rows


def check(data: dict[str, Any], gbps: float) -> list[dict[str, Any]]:
    """The step measured across two hosts beside the model's prediction for that link."""
    rows = []
    for sizes in PROJECTED:
        measured = data["across"]["steps"][str(sizes)]
        t_ar = model_allreduce(data, sizes, gbps, 2)
        # The step's own compute time, not one rank's alone: where ranks share a
        # machine's memory and caches (as the stand-in hosts do), two computing
        # at once each take longer, and that is no part of the link's cost.
        predicted = measured["compute_s"] + t_ar
        rows.append({"sizes": sizes, "gbps": gbps, "measured_s": measured["step_s"],
                     "measured_comm_s": measured["comm_s"], "predicted_s": predicted,
                     "predicted_comm_s": t_ar, "ratio": measured["step_s"] / predicted})
    return rows


def _paths_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "# Allreduce cost: alpha + beta x bytes (2 ranks, float32 SUM, in place)",
        "",
        f"MPI: {data.get('mpi', 'not recorded')}",
        *([f"Left out: {data['left_out']}"] if data.get("left_out") else []),
        "",
        "| path | env | alpha (us) | beta (ns/B) | 1/beta (GB/s) | 8 B | 64 KiB | 1 MiB | 64 MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in data["paths"].items():
        t = {r["bytes"]: r["seconds"] for r in p["rows"]}
        env = " ".join(f"{k}={v}" for k, v in p["env"].items()) or "(default)"
        lines.append(
            f"| {name} | {env} | {p['alpha'] * 1e6:.2f} | {p['beta'] * 1e9:.3f} | "
            f"{1 / p['beta'] / 1e9:.1f} | {t[8] * 1e6:.1f} us | {t[65536] * 1e6:.1f} us | "
            f"{t[2**20] * 1e6:.0f} us | {t[2**26] * 1e3:.1f} ms |"
        )
    if "across" in data:
        lines.append(f"\nacross: {' '.join(data['across']['launcher'])}")
    return [*lines, "", "Fit: T = 2 alpha + n beta (MPICH's Allreduce at p = 2, above 8 B), "
            "relative least squares."]


def _projection_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "# Beyond one machine: projection (a model, not a measurement)",
        "",
        f"MPICH's Allreduce (Rabenseifner) T(p, n) = 2 log2(p) alpha + 2(p-1)/p n beta; alpha = "
        f"{data['paths']['tcp']['alpha'] * 1e6:.1f} us (TCP, measured here); beta = 8/link + "
        f"{data['paths']['shm']['beta'] * 1e9:.3f} ns/B (shared-memory copy-and-sum, measured "
        f"here); {BATCH_PER_NODE} samples per node per step, one rank per node, float32, summed "
        "after backprop; E = T_c / (T_c + T).",
        "",
    ]
    rows = projection(data)
    header = "| net | link | T_c ms | grad KiB | " + " | ".join(f"N={p}" for p in NODES) + " |"
    lines += [header, "|---|---|---:|---:|" + "---:|" * len(NODES)]
    for sizes in PROJECTED:
        for gbps in LINKS_GBPS:
            group = [r for r in rows if r["sizes"] == sizes and r["gbps"] == gbps]
            lines.append(
                f"| {sizes} | {gbps} Gb/s | {group[0]['compute_s'] * 1e3:.3f} | "
                f"{group[0]['bytes'] / 1024:.0f} | "
                + " | ".join(f"{100 * r['efficiency']:.0f}%" for r in group)
                + " |"
            )
    return lines


def _check_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"# The model against two hosts at {rows[0]['gbps']:g} Gbit/s (one rank each, "
        f"{BATCH_PER_NODE} samples per host per step)",
        "",
        "| net | measured step ms | predicted step ms | measured / predicted "
        "| measured comm ms | predicted allreduce ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['sizes']} | {r['measured_s'] * 1e3:.3f} | {r['predicted_s'] * 1e3:.3f} "
              f"| {r['ratio']:.2f} | {r['measured_comm_s'] * 1e3:.3f} "
              f"| {r['predicted_comm_s'] * 1e3:.3f} |" for r in rows]
    return lines


def markdown(data: dict[str, Any], gbps: float | None = None) -> str:
    lines = _paths_table(data)
    if "tcp" not in data["paths"]:  # its alpha is the model's
        return "\n".join([*lines, "", "No projection: this MPI has no tcp row."]) + "\n"
    lines += ["", *_projection_table(data)]
    if "across" in data and gbps:
        lines += ["", *_check_table(check(data, gbps))]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, p) in enumerate(data["paths"].items()):
        n = np.array([r["bytes"] for r in p["rows"]], float)
        ax.loglog(n, [r["seconds"] for r in p["rows"]], "o", color=f"C{k}", ms=3, label=name)
        ax.loglog(n, 2 * p["alpha"] + n * p["beta"], "-", color=f"C{k}", lw=1)
    ax.set_xlabel("bytes")
    ax.set_ylabel("seconds per allreduce (2 ranks)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--launcher", metavar="CMD",
                        help="also measure across two hosts with this launcher, which must "
                             "take -n 2 and the program, e.g. \"mpiexec -hosts a:1,b:1\"")
    parser.add_argument("--link-gbps", type=float, metavar="G",
                        help="with --launcher: the link's rate (as a TCP stream measures it), "
                             "to time the step across the hosts beside the model's prediction")
    parser.add_argument("--report", action="store_true",
                        help="measure nothing: report again on OUT/alphabeta.json (say, with "
                             "the --link-gbps of a calibration made after the run)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one rank of the measurement, launched by run()
        from distnn.comm import world

        rows = measure()
        if world().rank == 0:
            write_text(args.out, json.dumps({"results": rows}))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        data = json.loads((out / "alphabeta.json").read_text())
    else:
        data = run(args.rounds, shlex.split(args.launcher) if args.launcher else None)
    if "tcp" in data["paths"]:
        data["projection"] = projection(data)
    if "across" in data and args.link_gbps and "tcp" in data["paths"]:
        data["check"] = check(data, args.link_gbps)
    write_text(out / "alphabeta.json", json.dumps(data, indent=1))
    text = markdown(data, args.link_gbps)
    write_text(out / "alphabeta.md", text)
    plot(data, out / "alphabeta.png")
    print(text)


if __name__ == "__main__":
    try:
        main()
    except WriteFailed as err:  # a full disk, say: one line (a worker's reaches the launch)
        print(f"distnn.bench: error: {err}", file=sys.stderr)
        sys.exit(EXIT_IOERR)
