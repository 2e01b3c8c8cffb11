"""Turn the benchmark's results into the markdown table, the targets and the scaling plot.

Definitions used in the table:

- samples/s: global batch / median step wall time (slowest rank).
- compute: per-rank step time outside MPI calls (gather + backprop + update),
  mean over ranks; comm: per-rank time inside MPI calls, waiting for slower
  ranks included; comm % = comm / (compute + comm).
- % peak: GEMM FLOPs of the step over all ranks (``peak.step_flops``) /
  compute seconds / (single-core GEMM peak x cores in use), cores in use =
  min(P, cores); not shown where P > cores (oversubscribed ranks compute while
  others wait, so their compute seconds do not measure a shared core).
  float32 cells use the sgemm peak, float64 cells the dgemm peak. A conv
  net's FLOPs are the conventional 6 multiply-adds' worth per forward MAC
  (``peak.conv_macs``): 9.8 MFLOP a sample for Nielsen's network.
"""

from __future__ import annotations

from typing import Any

from distnn.bench.matrix import CONV_TARGET, SEED_RECIPE, TARGET
from distnn.bench.peak import step_flops
from distnn.writes import save_figure

EPOCH = 50_000  # samples in the seed's MNIST training split


def find(results: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    defaults = {"peer": "distnn", "reducer": "auto"}
    for row in results:
        if all(row.get(k, defaults.get(k)) == v for k, v in {**defaults, **match}.items()):
            return row
    return None


def pct_peak(row: dict[str, Any], data: dict[str, Any]) -> float:
    cores = min(row["P"], data["machine"]["cores"])
    flops = step_flops(row["sizes"], row["batch"])
    return 100 * flops / row["compute_s"] / (data["peak_gflops"][row["dtype"]] * 1e9 * cores)


def _pct_peak_cell(row: dict[str, Any], data: dict[str, Any]) -> str:
    """% peak, or a dash where ranks outnumber cores (their compute phases then interleave
    with other ranks' waiting, so compute seconds no longer measure a shared core)."""
    return "—" if row["P"] > data["machine"]["cores"] else f"{pct_peak(row, data):.0f}"


def _net(sizes: list[int]) -> str:
    return "[" + ", ".join(map(str, sizes)) + "]"


REDUCER_NAMES = {
    "auto": "auto (the trainer's default: shm on one node)",
    "allreduce": "allreduce (one fused Allreduce, every rank updates all)",
    "shm": "shm (sum through the node's shared memory, each rank updates a part)",
}


def _reducer(row: dict[str, Any]) -> str:
    name = row.get("reducer", "auto")
    return REDUCER_NAMES.get(name, name)


def _target_values(res: list[dict[str, Any]], data: dict[str, Any]) -> list[tuple]:
    """(target, value, text, goal text, threshold) for each target that ``res`` measures."""
    out = []
    p1, p2 = find(res, **TARGET, P=1), find(res, **TARGET, P=2)
    t1, t2 = find(res, **TARGET, P=1, peer="torch"), find(res, **TARGET, P=2, peer="torch")
    if p1 and t1:
        r = p1["samples_per_s"] / t1["samples_per_s"]
        out.append(("P=1 vs PyTorch, 1 process, 1 thread", r, f"{r:.2f}x", ">= 1.3x", 1.3))
    if p2 and t2:
        r = p2["samples_per_s"] / t2["samples_per_s"]
        out.append(("P=2 vs PyTorch DDP (gloo), P=2", r, f"{r:.2f}x", ">= 4x", 4))
    if p1 and p2:
        r = p2["samples_per_s"] / p1["samples_per_s"]
        out.append(("P=2 vs P=1 (parallel efficiency)", r, f"{r:.2f}x ({50 * r:.0f}%)",
                    ">= 1.6x", 1.6))
    for p in (p1, p2):
        if p:
            s = pct_peak(p, data)
            out.append((f"compute share of sgemm peak, P={p['P']}", s, f"{s:.0f}%", ">= 70%", 70))
    # Issue 38: at least as fast as PyTorch in one process, ahead of DDP at P = 2; against
    # torch's default layout and against channels_last, the faster one for convolutions.
    for P, name, goal in ((1, "PyTorch, 1 process, 1 thread", ">= 1x"),
                          (2, "PyTorch DDP (gloo), P=2", "> 1x")):
        for peer, layout in (("torch", ""), ("torch channels_last", ", channels_last")):
            ours = find(res, **CONV_TARGET, P=P)
            theirs = find(res, **CONV_TARGET, P=P, peer=peer)
            if ours and theirs:
                r = ours["samples_per_s"] / theirs["samples_per_s"]
                out.append((f"conv net P={P} vs {name}{layout}", r, f"{r:.2f}x", goal, 1.0))
    seed = next((r for r in res if r.get("peer") == "seed"), None)
    for dtype in ("float32", "float64"):
        ours = find(res, **SEED_RECIPE, dtype=dtype, P=1)
        if seed and ours:
            r = ours["samples_per_s"] / seed["samples_per_s"]
            out.append((f"seed recipe epoch vs per-sample loop (distnn {dtype})", r,
                        f"{r:.1f}x ({EPOCH / ours['samples_per_s']:.2f} s vs "
                        f"{EPOCH / seed['samples_per_s']:.2f} s)", ">= 10x", 10))
    return out


def targets(data: dict[str, Any]) -> list[tuple[str, str, str, bool, str]]:
    """(target, measured, goal, met, rounds met) for each performance target measured.

    "measured" is from the median rounds; "rounds met" counts the rounds in which
    the same ratio, taken within that round alone, reaches the goal: on a noisy
    machine it shows whether a median just above or below the goal is luck.
    """
    rounds: dict[int, list[dict[str, Any]]] = {}
    for row in data.get("rows", []):
        if "round" in row:
            rounds.setdefault(row["round"], []).append(row)
    per_round: dict[str, list[bool]] = {}
    for rows in rounds.values():
        for name, value, _, _, threshold in _target_values(rows, data):
            per_round.setdefault(name, []).append(value >= threshold)
    out = []
    for name, value, text, goal, threshold in _target_values(data["results"], data):
        hits = per_round.get(name, [])
        out.append((name, text, goal, value >= threshold,
                    f"{sum(hits)} of {len(hits)}" if hits else "—"))
    return out


def markdown(data: dict[str, Any]) -> str:
    """results.md: the run's facts, then each table the results hold."""
    sections = (_header, _matrix, _conv_row, _reducers, _where_the_step_goes, _seed_loop,
                _targets)
    return "\n".join(line for section in sections for line in section(data)) + "\n"


def _oversubscribed(data: dict[str, Any]) -> bool:
    return max(data["config"]["ranks"]) > data["machine"]["cores"]


def _header(data: dict[str, Any]) -> list[str]:
    """Machine, versions, load, peak, and what the columns mean."""
    m, cfg = data["machine"], data["config"]
    peaks = ", ".join(
        f"{'sgemm' if d == 'float32' else 'dgemm'} {g:.1f} GFLOP/s"
        for d, g in data["peak_gflops"].items()
    )
    lines = [
        "# distnn benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Load average at start {m['load_start'][0]:.2f}, at end {m['load_end'][0]:.2f}; "
        f"{cfg['rounds']} rounds, median round reported; run took {m['seconds']:.0f} s.",
        f"Single-core peak (1 BLAS thread): {peaks}.",
        f"BLAS: {m.get('blas', 'not recorded')}."
        + (f" Note: {m['blas_warning']}." if m.get("blas_warning") else ""),
        "",
        "Step = gather the rank's m/P rows, backprop, sum [grad, cost, stop] over ranks,",
        "SGD step of the mean; synthetic MNIST-shaped data; MLPs with sigmoid and the",
        "quadratic cost, conv nets with ReLU and cross-entropy (softmax); one BLAS thread",
        "per rank. The sum is --reduce auto's (shm on one node), except in the reducers",
        "table.",
        "compute = time outside MPI (mean over ranks); comm = time inside MPI, waiting included;",
        "% peak = GEMM FLOPs / compute s / (single-core peak x P), for P <= cores.",
    ]
    if _oversubscribed(data):
        lines.append(
            f"**P > {m['cores']} oversubscribes this {m['cores']}-core machine** "
            "(ranks share cores; MPICH busy-polls while waiting)."
        )
    return lines


def _matrix(data: dict[str, Any]) -> list[str]:
    """One row per cell of the matrix, with the PyTorch peer's figure where measured."""
    res, cfg, cores = data["results"], data["config"], data["machine"]["cores"]
    lines = [
        "",
        "## Matrix",
        "",
        "| net | batch | dtype | P | samples/s | step ms | compute ms | comm ms | comm % "
        "| % peak | torch samples/s | x torch |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sizes in cfg["sizes"]:
        for batch in cfg["batches"]:
            for dtype in cfg["dtypes"]:
                for P in cfg["ranks"]:
                    cell = {"sizes": sizes, "batch": batch, "dtype": dtype, "P": P}
                    row = find(res, **cell)
                    if row:
                        lines.append(_matrix_row(row, find(res, **cell, peer="torch"), data))
    if _oversubscribed(data):
        lines.append(f"\n\\* oversubscribed: {max(cfg['ranks'])} ranks on {cores} cores.")
    return lines


def _matrix_row(row: dict[str, Any], torch: dict[str, Any] | None, data: dict[str, Any]) -> str:
    star = "*" if row["P"] > data["machine"]["cores"] else ""
    comm_pct = 100 * row["comm_s"] / (row["comm_s"] + row["compute_s"])
    vs_torch = (
        f"| {torch['samples_per_s']:,.0f} | {row['samples_per_s'] / torch['samples_per_s']:.1f} |"
        if torch
        else "| | |"
    )
    return (
        f"| {_net(row['sizes'])} | {row['batch']} | {row['dtype']} | {row['P']}{star} "
        f"| {row['samples_per_s']:,.0f} | {row['step_s'] * 1e3:.3f} "
        f"| {row['compute_s'] * 1e3:.3f} | {row['comm_s'] * 1e3:.3f} "
        f"| {comm_pct:.0f} | {_pct_peak_cell(row, data)} {vs_torch}"
    )


def _at_each_p(data: dict[str, Any], target: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of the ``target`` cell at each number of ranks measured, where there are."""
    return [r for r in (find(data["results"], **target, P=P) for P in data["config"]["ranks"])
            if r]


def _conv_row(data: dict[str, Any]) -> list[str]:
    """The conv row (issue 38): Nielsen's conv net at each P, beside PyTorch's, in torch's
    default layout and in channels_last."""
    rows = _at_each_p(data, CONV_TARGET)
    if not rows:
        return []
    lines = [
        "",
        f"## Conv net ({_net(CONV_TARGET['sizes'])}, batch {CONV_TARGET['batch']}, "
        f"{CONV_TARGET['dtype']}; ReLU, cross-entropy)",
        "",
        "| P | samples/s | step ms | compute ms | comm ms | % peak | torch samples/s "
        "| x torch | torch channels_last samples/s | x torch channels_last |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        star = "*" if row["P"] > data["machine"]["cores"] else ""
        peers = ""
        for peer in ("torch", "torch channels_last"):
            theirs = find(data["results"], **CONV_TARGET, P=row["P"], peer=peer)
            peers += (f"| {theirs['samples_per_s']:,.0f} "
                      f"| {row['samples_per_s'] / theirs['samples_per_s']:.2f} " if theirs
                      else "| | ")
        lines.append(
            f"| {row['P']}{star} | {row['samples_per_s']:,.0f} | {row['step_s'] * 1e3:.3f} "
            f"| {row['compute_s'] * 1e3:.3f} | {row['comm_s'] * 1e3:.3f} "
            f"| {_pct_peak_cell(row, data)} {peers}|"
        )
    return lines


def _reducers(data: dict[str, Any]) -> list[str]:
    """The target cell with each reducer timed, against the trainer's default, per P."""
    res = data["results"]
    others = [r for r in res if r.get("peer", "distnn") == "distnn"
              and r.get("reducer", "auto") != "auto"]
    if not others:
        return []
    lines = [
        "",
        f"## Reducers ({_net(TARGET['sizes'])}, batch {TARGET['batch']}, {TARGET['dtype']})",
        "",
        "| P | reducer | samples/s | vs auto | compute ms | comm ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for P in data["config"]["ranks"]:
        base = find(res, **TARGET, P=P)
        group = [r for r in others if r["P"] == P]
        if not base or not group:
            continue
        for row in [base, *sorted(group, key=_reducer)]:
            lines.append(
                f"| {P} | {_reducer(row)} | {row['samples_per_s']:,.0f} "
                f"| {row['samples_per_s'] / base['samples_per_s']:.2f}x "
                f"| {row['compute_s'] * 1e3:.3f} | {row['comm_s'] * 1e3:.3f} |"
            )
    return lines


def _where_the_step_goes(data: dict[str, Any]) -> list[str]:
    """The target cell's step split into its phases, per P."""
    profile = _at_each_p(data, TARGET)
    if not profile:
        return []
    lines = [
        "",
        f"## Where the step goes ({_net(TARGET['sizes'])}, batch {TARGET['batch']}, "
        f"{TARGET['dtype']}; per rank, mean over ranks)",
        "",
        "| P | gather ms | backprop ms | update ms | comm ms | backprop % peak |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in profile:
        lines.append(
            f"| {row['P']} | {row['gather_s'] * 1e3:.3f} | {row['backprop_s'] * 1e3:.3f} "
            f"| {row['update_s'] * 1e3:.3f} | {row['comm_s'] * 1e3:.3f} "
            f"| {_backprop_peak_cell(row, data)} |"
        )
    return lines


def _backprop_peak_cell(row: dict[str, Any], data: dict[str, Any]) -> str:
    """Backprop's share of the peak: the step's GEMM FLOPs over backprop seconds alone."""
    if row["P"] > data["machine"]["cores"]:
        return "—"
    peak = data["peak_gflops"][row["dtype"]] * 1e9 * row["P"]
    return f"{100 * step_flops(row['sizes'], row['batch']) / row['backprop_s'] / peak:.0f}"


def _seed_loop(data: dict[str, Any]) -> list[str]:
    seed = next((r for r in data["results"] if r.get("peer") == "seed"), None)
    if not seed:
        return []
    return [
        "",
        f"Seed's per-sample loop ({_net(SEED_RECIPE['sizes'])}, batch "
        f"{SEED_RECIPE['batch']}, float64, one process): {seed['samples_per_s']:,.0f} "
        f"samples/s, an epoch of {EPOCH} in {EPOCH / seed['samples_per_s']:.2f} s.",
    ]


def _targets(data: dict[str, Any]) -> list[str]:
    goals = targets(data)
    if not goals:
        return []
    return [
        "",
        "## Targets (measured side by side in this run)",
        "",
        "| target | measured (median rounds) | goal | met | rounds that met it |",
        "|---|---:|---:|---|---:|",
        *(f"| {t} | {v} | {g} | {'yes' if ok else '**no**'} | {k} |"
          for t, v, g, ok, k in goals),
    ]


def plot(data: dict[str, Any], path: str) -> bool:
    """Samples/s against P, one panel per (dtype, batch); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cfg, res = data["config"], data["results"]
    dtypes, batches = cfg["dtypes"], cfg["batches"]
    fig, axes = plt.subplots(
        len(dtypes), len(batches), figsize=(4 * len(batches), 3.4 * len(dtypes)), squeeze=False
    )
    for i, dtype in enumerate(dtypes):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            nets = cfg["sizes"] + ([CONV_TARGET["sizes"]] if cfg.get("conv")
                                   and CONV_TARGET["sizes"] not in cfg["sizes"] else [])
            for k, sizes in enumerate(nets):
                color = f"C{k}"
                for peer, style in (("distnn", "-o"), ("torch", "--x")):
                    pts = [
                        (P, r["samples_per_s"])
                        for P in cfg["ranks"]
                        if (r := find(res, sizes=sizes, batch=batch, dtype=dtype, P=P, peer=peer))
                    ]
                    if pts:
                        ax.plot(
                            *zip(*pts),
                            style,
                            color=color,
                            label=f"{peer} {_net(sizes)}" if (i, j) == (0, 0) else None,
                        )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(cfg["ranks"], [str(p) for p in cfg["ranks"]])
            ax.set_title(f"{dtype}, global batch {batch}", fontsize=10)
            ax.set_xlabel(f"ranks P (> {data['machine']['cores']}: oversubscribed)")
            ax.set_ylabel("samples/s")
            ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return True
