"""Where a conv net's training step goes: im2col, products, pooling, col2im, sigma, the head.

The step is the trainer's own (``distnn.step``, as ``distnn.bench.step`` times
it for an MLP) on one process: ``ConvNet.gradient`` and the SGD update, on a
synthetic batch (pixels uniform in [0, 1), random labels). Beside it, each part
of the gradient alone, called on the workspace the step left behind, in the
order the step runs them (the calls of ``ConvPool.forward`` and ``backward``,
repeated here one kind at a time):

    images      the batch's rows as (m, H, W, C) maps (none for one channel)
    im2col      the patches into ``cols`` (``ConvPool.im2col``)
    products    cols w^T (forward), delta^T cols (BP4c), delta w (BP2c's d cols)
    pooling     max-pooling and which position won; routing delta to it (unpool)
    sigma       b and sigma (forward); sigma'(z) (.) dC/da (backward)
    bias sum    (BP3c), delta summed over the batch and positions
    col2im      d cols added back onto the pixels (BP2c)
    head        the fully connected layers, forward and backward (``MLP.gradient``)
    update      the SGD step of every parameter

The parts' sum should come within a few percent of the step: the rest is
Python between the calls, less what running im2col and the product, or d cols
and col2im, block by block saves (the step finds each block in cache; a part
timed alone over all blocks does not). Each product is
also given in GFLOP/s and as a share of this core's sgemm peak; the step's
share uses the conventional FLOP count (``distnn.bench.peak``: 9.8 MFLOP a
sample for Nielsen's network).

BLAS is pinned to one thread; the step and the parts are interleaved, repeat
by repeat, and medians reported, so that load from other jobs hits them alike.
The clock is this process's CPU time (``time.process_time``), which other jobs
sharing the cores do not stretch as they stretch wall time: on a quiet machine
the two agree (one thread); the samples/s of ``python -m distnn.bench`` are wall
time.
Peak RSS is this process's (``getrusage``) after the timing: Python, numpy,
the net, its workspace for the batch and the batch itself, what a rank holds
besides its data.

Run: python -m distnn.bench.convstep [--layers 1x28x28,conv20x5,pool2,conv40x5,pool2,100,10]
     [--batch 128] [--repeats 30]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from distnn import architecture
from distnn.bench.peak import gemm_peak, step_flops
from distnn.bench.step import make_step, time_per_call
from distnn.config import parse_layers
from distnn.convnet import ConvNet
from distnn.optim import SGD

NIELSEN = "1x28x28,conv20x5,pool2,conv40x5,pool2,100,10"
GROUPS = ["images", "im2col", "products", "pooling", "sigma", "bias sum", "col2im", "head",
          "update"]


def parts(net: ConvNet, x: np.ndarray, y: np.ndarray
          ) -> list[tuple[str, str, Callable[[], Any], float]]:
    """(name, group, call, FLOPs) for every part of ``net.gradient(x, y)``, in its order;
    the net's workspace for len(x) must hold a gradient of that batch."""
    m = len(x)
    ws = net._workspace(m)
    grad = np.empty(net.params.size, net.dtype)
    net.gradient(x, y, out=grad)  # the state each part starts from
    _, (nabla_w, nabla_b), head_grad = net._grad_views
    sigma = net.activation
    c, h, w = net.image_shape
    out: list[tuple[str, str, Callable[[], Any], float]] = []
    if c > 1:
        out.append(("images to (m, H, W, C)", "images",
                    lambda: np.copyto(ws.images, x.reshape(m, c, h, w).transpose(0, 2, 3, 1)),
                    0.0))
    a = x.reshape(m, h, w, 1) if c == 1 else ws.images
    for l, (layer, lws) in enumerate(zip(net.convs, ws.layers), start=1):
        w_l, b_l, blocks = net.filters[l - 1], net.conv_biases[l - 1], range(layer.pool ** 2)
        product = 2.0 * len(lws.cols) * layer.fan_in * layer.c_out

        def im2col(a=a, layer=layer, lws=lws, blocks=blocks):
            patches = layer.patches(a, lws)
            for o in blocks:
                layer.im2col(patches, lws, o)

        def forward_product(lws=lws, w_l=w_l):
            np.copyto(lws.w, w_l)  # w row by row, as ConvPool.forward
            for cols, conv in zip(lws.cols_blocks, lws.conv_blocks):
                np.matmul(cols, lws.w.T, out=conv)

        out += [
            (f"conv{l} im2col", "im2col", im2col, 0.0),
            (f"conv{l} cols w^T", "products", forward_product, product),
            (f"conv{l} max-pool", "pooling", lambda lyr=layer, lws=lws: lyr.max_pool(lws), 0.0),
            (f"conv{l} + b, sigma", "sigma",
             lambda lws=lws, b_l=b_l: (np.add(lws.z, b_l, out=lws.a), sigma.fn(lws.a, out=lws.a)),
             0.0),
        ]
        a = lws.a
    features = a.reshape(m, -1)
    out.append(("head: MLP forward and backward", "head",
                lambda: net.head.gradient(features, y, out=head_grad,
                                          input_delta=ws.features_delta), 0.0))
    below = ws.features_delta.reshape(ws.layers[-1].a.shape)  # dC/da of the last maps
    for l in range(len(net.convs), 0, -1):
        layer, lws, w_l = net.convs[l - 1], ws.layers[l - 1], net.filters[l - 1]
        product = 2.0 * len(lws.cols) * layer.fan_in * layer.c_out
        delta_conv = layer.unpool(lws)  # a view of the layer's buffer: what unpool fills
        out += [
            (f"conv{l} sigma' (.) dC/da", "sigma",
             lambda below=below, lws=lws: np.multiply(
                 below, sigma.prime(lws.z, lws.a, out=lws.prime), out=lws.delta), 0.0),
            (f"conv{l} bias sum", "bias sum",
             lambda l=l, lws=lws, c_out=layer.c_out: np.matmul(
                 lws.ones, lws.delta.reshape(-1, c_out), out=nabla_b[l - 1]), 0.0),
            (f"conv{l} unpool", "pooling", lambda lyr=layer, lws=lws: lyr.unpool(lws), 0.0),
            (f"conv{l} delta^T cols", "products",
             lambda l=l, d=delta_conv, lws=lws: (np.matmul(d.T, lws.cols, out=lws.nabla_w),
                                                 np.copyto(nabla_w[l - 1], lws.nabla_w)),
             product),
        ]
        if l > 1:
            blocks = np.split(delta_conv, layer.pool ** 2)

            def backward_product(blocks=blocks, lws=lws, w_l=w_l):
                np.copyto(lws.w, w_l)  # as ConvPool.backward
                for delta_o in blocks:
                    np.matmul(delta_o, lws.w, out=lws.cols_delta)

            def col2im(layer=layer, lws=lws, blocks=blocks):
                lws.input_delta[...] = 0
                for o in range(len(blocks)):
                    layer.col2im(lws, o)

            out += [
                (f"conv{l} delta w", "products", backward_product, product),
                (f"conv{l} col2im", "col2im", col2im, 0.0),
            ]
            pad = layer.pad  # dC/da of the maps below: a view of the layer's buffer
            below = lws.input_delta[:, pad:pad + layer.h, pad:pad + layer.w, :] if pad \
                else lws.input_delta
    return out


def run(layers: Sequence[int | str], batch: int, repeats: int, inner: int) -> dict[str, Any]:
    """Median seconds of the step and of each part, interleaved; FLOPs; peak RSS."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    net = ConvNet(layers, activation="relu", cost="cross_entropy", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, net.sizes[0]), dtype=np.float32)
    y = rng.integers(0, net.sizes[-1], batch)
    step = make_step(net, x, y)
    timed = [("step", "step", step, step_flops(layers, batch)), *parts(net, x, y)]
    # The SGD update alone, as the step makes it: w -> w - (eta/m) sum_x dC_x/dw
    optimizer, grad = SGD(net.params), np.zeros(net.params.size, net.dtype)
    timed.append(("SGD update", "update",
                  lambda: optimizer.step(net.params, grad, 1e-6, scale=1 / batch), 0.0))
    times: dict[str, list[float]] = {name: [] for name, *_ in timed}
    for _ in range(3):  # warm caches, BLAS buffers, the workspace
        for _, _, fn, _ in timed:
            fn()
    for _ in range(repeats):
        for name, _, fn, _ in timed:
            times[name].append(time_per_call(fn, inner, time.process_time))
    return {
        "parts": [{"name": name, "group": group, "s": statistics.median(times[name]),
                   "flops": flops} for name, group, _, flops in timed],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before / 1024,
        "params": net.params.size,
    }


def report(result: dict[str, Any], peak: float, layers: Sequence[int | str], batch: int,
           repeats: int, inner: int) -> str:
    step, *parts_ = result["parts"]
    total = sum(p["s"] for p in parts_)
    lines = [
        f"{architecture.text(layers)}, batch {batch}, float32, ReLU, cross-entropy; BLAS "
        f"pinned to 1 thread; CPU time, median of {repeats} interleaved repeats x {inner} "
        "calls",
        f"  train step (gradient + SGD): {step['s'] * 1e3:8.3f} ms  {batch / step['s']:,.0f} "
        f"samples/s  {100 * step['flops'] / step['s'] / (peak * 1e9):.0f}% of sgemm peak "
        f"({step['flops'] / batch / 1e6:.2f} MFLOP a sample)",
        "",
        f"  {'part':34s} {'ms':>8s} {'% step':>7s} {'GFLOP/s':>8s} {'% peak':>7s}",
    ]
    for p in parts_:
        rate = (f"{p['flops'] / p['s'] / 1e9:8.1f} {100 * p['flops'] / p['s'] / (peak * 1e9):6.0f}%"
                if p["flops"] else "")
        lines.append(f"  {p['name']:34s} {p['s'] * 1e3:8.3f} {100 * p['s'] / step['s']:6.1f}% "
                     f"{rate}")
    lines += ["", f"  {'by kind':34s} {'ms':>8s} {'% step':>7s}"]
    for group in GROUPS:
        s = sum(p["s"] for p in parts_ if p["group"] == group)
        if s:
            lines.append(f"  {group:34s} {s * 1e3:8.3f} {100 * s / step['s']:6.1f}%")
    products = [p for p in parts_ if p["group"] == "products"]
    prod_s, prod_flops = sum(p["s"] for p in products), sum(p["flops"] for p in products)
    lines += [
        f"  {'sum of the parts':34s} {total * 1e3:8.3f} {100 * total / step['s']:6.1f}%",
        "",
        f"  the products alone: {prod_flops / batch / 1e6:.2f} MFLOP a sample at "
        f"{prod_flops / prod_s / 1e9:.1f} GFLOP/s, {100 * prod_flops / prod_s / (peak * 1e9):.0f}% "
        "of sgemm peak",
        f"  peak RSS: {result['rss_mib']:.0f} MiB ({result['rss_before_mib']:.0f} MiB before the "
        f"net was built; {result['params']:,} parameters)",
        f"  (sgemm peak on this core: {peak:.1f} GFLOP/s, CPU time)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=parse_layers, default=parse_layers(NIELSEN),
                        help=f"a conv net's spec (default {NIELSEN})")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats of each")
    parser.add_argument("--inner", type=int, default=3, help="calls per timed repeat")
    args = parser.parse_args(argv)
    if not architecture.is_conv(args.layers):
        parser.error(f"--layers {architecture.text(args.layers)} has no conv layer: "
                     "python -m distnn.bench.step times an MLP's step")
    with threadpool_limits(limits=1):
        result = run(args.layers, args.batch, args.repeats, args.inner)
    peak = gemm_peak("float32", clock=time.process_time)
    print(report(result, peak, args.layers, args.batch, args.repeats, args.inner))

if __name__ == "__main__":
    main()
