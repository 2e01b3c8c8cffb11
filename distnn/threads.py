"""How many BLAS threads each rank may use.

P ranks on a node whose BLAS each starts one thread per core would run P x
cores threads on cores cores, and every GEMM would fight for them. The policy:

1. ``DISTNN_THREADS=n`` in the environment: every rank uses n threads.
2. Else, if the user set ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` or
   ``MKL_NUM_THREADS``, distnn leaves the BLAS alone: the user decided.
3. Else each rank takes its share of the cores it may run on:
   ``max(1, min(cpus this process may use, cpus on the node // ranks on the node))``.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

USER_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads(ranks_on_node: int, environ: dict[str, str] | None = None,
                 allowed_cpus: int | None = None, node_cpus: int | None = None) -> int | None:
    """The policy above as a pure function; None means "leave the BLAS alone"."""
    env = os.environ if environ is None else environ
    if env.get("DISTNN_THREADS"):
        text = env["DISTNN_THREADS"]
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"DISTNN_THREADS must be a positive integer, not {text!r}")
        return int(text)
    if any(env.get(name) for name in USER_VARIABLES):
        return None
    if allowed_cpus is None:
        allowed_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if node_cpus is None:
        node_cpus = os.cpu_count() or 1
    return max(1, min(allowed_cpus, node_cpus // max(1, ranks_on_node)))


def limit_blas_threads(ranks_on_node: int) -> int | None:
    """Apply the policy to this process's BLAS; returns the limit set, if any."""
    n = blas_threads(ranks_on_node)
    if n is not None:
        threadpool_limits(limits=n, user_api="blas")
    return n
