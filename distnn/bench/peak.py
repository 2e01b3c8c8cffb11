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

A conv net (``distnn.architecture``'s spec) counts as the lecture's rule of
thumb has it, per sample and layer, from the layer's shapes:

    MACs     conv: H' W' C_out k k C_in  (every position of the convolution)
             fully connected: n_in n_out
    forward  2 MACs; backward twice that (dC/dw and the delta below), 6 MACs in all

for every layer, the first included: 9.8 MFLOP a sample for Nielsen's
network (1x28x28,conv20x5,pool2,conv40x5,pool2,100,10), the figure issue 38
quotes for PyTorch. Neither distnn nor PyTorch computes the first layer's
delta below (its input is data): the products actually run are 0.58 MFLOP a
sample fewer, 9.2.

Elementwise work (activations, pooling, im2col, bias adds, the update) is not
counted: the share of peak says how close the step comes to its unavoidable
arithmetic.

Run: python -m distnn.bench.peak
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from distnn import architecture


def gemm_peak(dtype: str = "float32", n: int = 1536, repeats: int = 7,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """GFLOP/s of the best of ``repeats`` (n, n) @ (n, n) products on one BLAS thread,
    timed by ``clock`` (wall time unless told)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    c = np.empty_like(a)
    best = float("inf")
    with threadpool_limits(limits=1):
        np.matmul(a, b, out=c)  # warm: pages, BLAS buffers, clock ramp-up
        for _ in range(repeats):
            t0 = clock()
            np.matmul(a, b, out=c)
            best = min(best, clock() - t0)
    return 2.0 * n**3 / best / 1e9


def step_flops(sizes: Sequence[int | str], m: int) -> float:
    """FLOPs of the GEMMs of one gradient step on m samples (see the module docstring):
    an MLP's sizes, or a conv net's spec (``conv_macs``)."""
    if architecture.is_conv(sizes):
        return 6.0 * m * sum(conv_macs(sizes))
    total = 0.0
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        per_product = 2.0 * m * n_in * n_out
        total += per_product * (3 if l > 0 else 2)
    return total


def conv_macs(layers: Sequence[int | str]) -> list[int]:
    """Multiply-adds of one sample's forward pass, layer by layer, conv layers first."""
    convs, dense = architecture.plan(layers)
    macs = []
    for layer in convs:
        hc, wc, c_out = layer.conv_shape
        macs.append(hc * wc * c_out * layer.k * layer.k * layer.c_in)  # H' W' C_out k k C_in
    return macs + [n_in * n_out for n_in, n_out in zip(dense[:-1], dense[1:])]


def main() -> None:
    for dtype, name in (("float32", "sgemm"), ("float64", "dgemm")):
        print(f"{name} peak, 1 BLAS thread: {gemm_peak(dtype):6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
