"""The seed's per-sample training loop, rewritten here as the benchmark's reference.

In the style of Nielsen's ``src/network.py`` (the seed's code): samples are
column vectors, ``backprop(x, y)`` handles ONE sample and returns
``(nabla_b, nabla_w)`` shaped like the parameters, and ``update_mini_batch``
loops over the mini-batch summing them before the step
w -> w - (eta/m) sum_x nabla_w. Sigmoid activations, quadratic cost, float64
(numpy's default, as in the seed). Written from the book's equations for this
comparison only; distnn never imports it.

``throughput`` times ``update_mini_batch`` over shuffled mini-batches of
synthetic MNIST-shaped data (list of (x, y) column pairs, as the seed's loader
makes), BLAS pinned to one thread.

Run: python -m distnn.bench.seed_loop [--sizes 784 30 10] [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    return sigmoid(z) * (1 - sigmoid(z))


class Network:
    def __init__(self, sizes: Sequence[int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.num_layers = len(sizes)
        self.sizes = list(sizes)
        self.biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]

    def update_mini_batch(self, mini_batch: list, eta: float) -> None:
        """One gradient step from the per-sample gradients of ``mini_batch``, summed."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list, list]:
        """(BP1)-(BP4) for one sample x, a (n_in, 1) column; y its one-hot (n_out, 1) column."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        activation = x
        activations = [x]
        zs = []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = self.cost_derivative(activations[-1], y) * sigmoid_prime(zs[-1])  # (BP1)
        nabla_b[-1] = delta  # (BP3)
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())  # (BP4)
        # Negative indices as in the seed: l = 2 is the second-to-last layer.
        for l in range(2, self.num_layers):
            z = zs[-l]
            sp = sigmoid_prime(z)
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sp  # (BP2)
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
        return nabla_b, nabla_w

    def cost_derivative(self, output_activations: np.ndarray, y: np.ndarray) -> np.ndarray:
        return output_activations - y


def synthetic_data(sizes: Sequence[int], n: int, seed: int = 0) -> list:
    """n (x, y) pairs like the seed's loader: x a (784, 1) column in [0, 1), y one-hot (10, 1)."""
    rng = np.random.default_rng(seed)
    xs = rng.random((n, sizes[0], 1))
    labels = rng.integers(0, sizes[-1], n)
    ys = np.zeros((n, sizes[-1], 1))
    ys[np.arange(n), labels, 0] = 1.0
    return list(zip(xs, ys))


def throughput(
    sizes: Sequence[int] = (784, 30, 10), batch: int = 10, budget: float = 2.0, repeats: int = 5
) -> dict[str, float]:
    """Median samples/s of the seed's ``update_mini_batch`` over ``repeats`` timed repeats."""
    net = Network(sizes)
    data = synthetic_data(sizes, 4096)
    random.Random(0).shuffle(data)
    batches = [data[k : k + batch] for k in range(0, len(data) - batch + 1, batch)]
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        for mini_batch in batches[:3]:
            net.update_mini_batch(mini_batch, 3.0)
        one = (time.perf_counter() - t0) / 3
        n_steps = max(1, int(budget / repeats / one))
        rates = []
        for r in range(repeats):
            t0 = time.perf_counter()
            for i in range(n_steps):
                net.update_mini_batch(batches[(r * n_steps + i) % len(batches)], 3.0)
            rates.append(n_steps * batch / (time.perf_counter() - t0))
    return {"samples_per_s": statistics.median(rates), "step_s": batch / statistics.median(rates)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 30, 10])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed steps")
    parser.add_argument("--out", help="also write the result here (JSON)")
    args = parser.parse_args(argv)
    result = throughput(args.sizes, args.batch, args.budget)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"sizes": args.sizes, "batch": args.batch, **result}, f)
    print(
        f"per-sample loop {args.sizes} batch {args.batch}: "
        f"{result['samples_per_s']:.0f} samples/s, "
        f"epoch of 50000 in {50000 / result['samples_per_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
