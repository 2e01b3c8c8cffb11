"""This machine's single-core GEMM peak, and the GEMM FLOPs of one training step.

Peak: the best of several timed (n, n) @ (n, n) products with BLAS pinned to
one thread, 2 n^3 FLOPs each, in GFLOP/s: sgemm for float32, dgemm for float64.
It is the ceiling any one rank can reach on one core, so "share of peak" of a
benchmark cell is measured against the same library on the same core.

Step FLOPs (per sample, layer l with n_in inputs and n_out outputs, 2 FLOPs per
multiply-add):

    forward   z = a w^T        2 n_in n_out
    (BP4)     dC/dw = delta^T a  2 n_in n_out
    (BP2)     delta w          2 n_in n_out   (every layer but the first)

Elementwise work (activations, bias adds, the update) is not counted: the
share of peak says how close the step comes to its unavoidable arithmetic.

Run: python -m distnn.bench.peak
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits


def gemm_peak(dtype: str = "float32", n: int = 1536, repeats: int = 7) -> float:
    """GFLOP/s of the best of ``repeats`` (n, n) @ (n, n) products on one BLAS thread."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    c = np.empty_like(a)
    best = float("inf")
    with threadpool_limits(limits=1):
        np.matmul(a, b, out=c)  # warm: pages, BLAS buffers, clock ramp-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def step_flops(sizes: Sequence[int], m: int) -> float:
    """FLOPs of the GEMMs of one gradient step on m samples (see the module docstring)."""
    total = 0.0
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        per_product = 2.0 * m * n_in * n_out
        total += per_product * (3 if l > 0 else 2)
    return total


def main() -> None:
    for dtype, name in (("float32", "sgemm"), ("float64", "dgemm")):
        print(f"{name} peak, 1 BLAS thread: {gemm_peak(dtype):6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
