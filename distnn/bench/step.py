"""Cost of one training step against its matrix products alone.

One step = the trainer's own (``distnn.step``) on one process: the batch's rows
gathered, ``net.gradient``, the sum (nothing to add on one process) and
``SGD.step`` with the 1/m of the mean folded in, on a [784, 100, 10] float32
net with a 128-sample batch. The reference is the same step's GEMMs and nothing else: a @ w.T per
layer (forward), delta.T @ a per dW, delta @ w per propagated delta.
The ratio step / GEMMs says how much the elementwise work and Python cost on top
of the unavoidable arithmetic; the target is <= 1.5. Both are also given as a
share of this machine's single-core sgemm peak (``distnn.bench.peak``): the
GEMMs' share is the ceiling for the step's, since the step does them and more.
At m = 64 (global batch 128 on 2 ranks) that ceiling is what bounds the
benchmark's "% peak" at P = 2.

BLAS is pinned to 1 thread (threadpoolctl) so the figure does not depend on how
many cores other jobs leave free; the two timings are interleaved, repeat by
repeat, and medians reported, so machine noise hits both alike.

Regularisation's cost is timed beside them, on the same batch: the step with
dropout masks (``--dropout``: drawing them, and the gradient through them), and
the augmentation of the batch (``--augment``), each rank's own work on top of its
step (``distnn.train`` does both per step on each rank, with no communication).

Run: python -m distnn.bench.step [--sizes 784 100 10] [--batch 128] [--repeats 200]
     [--dropout 0.5] [--augment shift=2]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from distnn.augment import Augment
from distnn.bench.peak import gemm_peak, step_flops
from distnn.comm import SerialComm
from distnn.dropout import Dropout
from distnn.network import MLP
from distnn.noise import Noise
from distnn.optim import SGD
from distnn.reduce import make_reducer
from distnn.samples import Shard
from distnn.step import Recipe, Replica, step


def make_step(net: MLP, x: np.ndarray, y: np.ndarray,
              dropout: Dropout | None = None) -> Callable[[], None]:
    """The trainer's step (``distnn.step``) on one process, on the batch (x, y) each time:
    summed gradient, then the seed's SGD update w - (eta/m) sum; with ``dropout``,
    through masks drawn for the step."""
    optimizer = SGD(net.params)
    replica = Replica(net, optimizer, make_reducer(SerialComm(), net, optimizer, "allreduce"))
    recipe = Recipe(len(x), (0, len(x)), dropout=dropout)
    shard, rows = Shard(x, y), np.arange(len(x))
    steps = itertools.count()

    def one_step() -> None:  # the draws of a new step each time, as the trainer's
        step(replica, recipe, shard, rows, 0, next(steps), 1e-6)  # tiny eta: params stay put

    return one_step


def make_gemms(net: MLP, x: np.ndarray) -> Callable[[], None]:
    """Exactly the matrix products of one step, into preallocated buffers."""
    m, L = len(x), net.num_layers
    dtype = net.dtype
    zs = [np.empty((m, n), dtype) for n in net.sizes[1:]]
    deltas = [np.random.default_rng(1).random((m, n), dtype) for n in net.sizes[1:]]
    nabla_w = [np.empty_like(w) for w in net.weights]

    def gemms() -> None:
        a = x
        for l in range(L):
            np.matmul(a, net.weights[l].T, out=zs[l])  # forward
            a = zs[l]
        for l in range(L - 1, -1, -1):
            np.matmul(deltas[l].T, x if l == 0 else zs[l - 1], out=nabla_w[l])  # dC/dw
            if l > 0:
                np.matmul(deltas[l], net.weights[l], out=deltas[l - 1])  # delta propagation

    return gemms


def time_per_call(fn: Callable[[], None], inner: int,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    for _ in range(inner):
        fn()
    return (clock() - start) / inner


def run(sizes: Sequence[int], batch: int, repeats: int, inner: int, dropout: float = 0.5,
        augment: str = "shift=2") -> dict[str, float]:
    net = MLP(sizes, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    side = int(round(np.sqrt(sizes[0])))
    distort = Augment.parse(augment, (side, side))
    steps = itertools.count()
    timed = {"step": make_step(net, x, y), "gemms": make_gemms(net, x),
             "dropout_step": make_step(net, x, y, Dropout(sizes, dropout)),
             "augment": lambda: distort(x, Noise(0, 0, next(steps), batch))}
    times: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(5):  # warm caches, BLAS buffers and the network's workspace
        for fn in timed.values():
            fn()
    for _ in range(repeats):
        for name, fn in timed.items():
            times[name].append(time_per_call(fn, inner))
    result = {name: statistics.median(t) for name, t in times.items()}
    return {**result, "ratio": result["step"] / result["gemms"],
            "gflop": step_flops(sizes, batch) / 1e9}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 100, 10])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200, help="timed repeats of each")
    parser.add_argument("--inner", type=int, default=10, help="calls per timed repeat")
    parser.add_argument("--dropout", type=float, default=0.5,
                        help="p of the hidden units for the dropout step (default 0.5)")
    parser.add_argument("--augment", default="shift=2",
                        help="distortions timed on the batch (default shift=2; images are "
                             "taken as square)")
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1):
        result = run(args.sizes, args.batch, args.repeats, args.inner, args.dropout,
                     args.augment)
    peak = gemm_peak("float32")

    def share(seconds: float) -> str:
        return f"{100 * result['gflop'] / seconds / peak:3.0f}% of sgemm peak"

    print(
        f"sizes {args.sizes}, batch {args.batch}, float32, BLAS pinned to 1 thread, "
        f"median of {args.repeats} interleaved repeats x {args.inner} calls"
    )
    step, gemms = result["step"], result["gemms"]
    print(f"  train step (gradient + SGD): {step * 1e6:8.1f} us  {share(step)}")
    print(f"  its matrix products alone:   {gemms * 1e6:8.1f} us  {share(gemms)}")
    print(f"  ratio:                       {result['ratio']:8.3f}  (target <= 1.5)")
    with_dropout, augment = result["dropout_step"], result["augment"]
    print(f"  step with --dropout {args.dropout:g}:     {with_dropout * 1e6:8.1f} us  "
          f"({100 * (with_dropout / step - 1):+.0f}% on the step)")
    print(f"  --augment {args.augment} of the batch: {augment * 1e6:8.1f} us  "
          f"({100 * augment / step:.0f}% of the step)")
    print(f"  (sgemm peak on this core: {peak:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
