"""PyTorch peer: the same net, step and timing as ``distnn.bench.worker``, in torch.

One process (P = 1): a plain ``nn.Sequential`` of ``Linear`` + ``Sigmoid``,
quadratic cost 0.5 ||a - onehot(y)||^2 summed over the batch, ``torch.optim.SGD``.
A conv net (a cell whose ``sizes`` is a conv spec, ``distnn.architecture``) is
``Conv2d``, ``MaxPool2d``, activation per conv layer (pooling before the
activation, as Nielsen's network3 and distnn have it), then ``Linear`` layers,
the last without activation, and ``cross_entropy`` summed over the batch: the
softmax and log-likelihood of distnn's cross-entropy cost. A conv net is timed
twice: as "torch", in torch's default layout on the CPU (NCHW: a map's pixels
together), and as "torch channels_last", model and images in the layout that
PyTorch's CPU performance guide recommends for convolutions (NHWC: a pixel's
channels together, as distnn stores maps), which the oneDNN kernels run faster.
P > 1: the same model wrapped in ``DistributedDataParallel`` over gloo (CPU,
TCP on 127.0.0.1), launched by mpirun (rank and size read from MPICH's
PMI_RANK/PMI_SIZE), each rank on m/P samples of the global batch. One intra-op
and one inter-op thread per process. DDP averages gradients instead of summing
them, which changes the update's scale and not its cost.

Launched by ``python -m distnn.bench --peers`` as

    mpirun -n P python -m distnn.bench.peers_torch --spec cells.json --out out.json --port N

torch is a benchmark peer only (the ``bench`` extra), never a distnn dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any


from distnn import architecture
from distnn.bench.worker import LEARNING_RATE, batches, synthetic_shard, write_results

ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}
# A conv net's layouts: peer name -> torch.memory_format's name
LAYOUTS = {"torch": "contiguous_format", "torch channels_last": "channels_last"}


def rank_and_size() -> tuple[int, int]:
    for rank, size in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rank in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1


def time_cell(torch, dist, cell: dict[str, Any], budget: float, repeats: int,
              peer: str = "torch") -> dict[str, Any]:
    step = make_step(torch, dist, cell, getattr(torch, LAYOUTS[peer]))
    wall = median_step_seconds(torch, dist, step, budget, repeats)
    return {
        **cell,
        "P": dist.get_world_size() if dist else 1,
        "peer": peer,
        "step_s": wall,
        "samples_per_s": cell["batch"] / wall,
    }


def _model(torch, cell: dict[str, Any], dtype):
    sizes = cell["sizes"]
    torch.manual_seed(0)

    def sigma():
        return getattr(torch.nn, ACTIVATIONS[cell.get("activation", "sigmoid")])()

    if not architecture.is_conv(sizes):
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(n_in, n_out), sigma()]
        return torch.nn.Sequential(*layers).to(dtype)
    convs, dense = architecture.plan(sizes)
    layers = []  # on images (m, C, H, W)
    for layer in convs:
        layers.append(torch.nn.Conv2d(layer.c_in, layer.c_out, layer.k, padding=layer.pad))
        layers += [torch.nn.MaxPool2d(layer.pool)] if layer.pool > 1 else []
        layers.append(sigma())
    layers.append(torch.nn.Flatten())
    for n_in, n_out in zip(dense[:-1], dense[1:]):
        layers += [torch.nn.Linear(n_in, n_out), sigma()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)  # the loss takes the last layer's z


def make_step(torch, dist, cell: dict[str, Any], layout=None) -> Callable[[], None]:
    """The worker's step in torch: this rank's rows of the batch from the trainer's
    partitions (the worker's own data and order), backprop, SGD; a conv net's model
    and images in ``layout`` (a torch.memory_format; default NCHW)."""
    rank, size = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cell["dtype"]]
    n_out = architecture.widths(cell["sizes"])[-1]
    model = _model(torch, cell, dtype)
    image = architecture.shape_of(cell["sizes"][0]) if architecture.is_conv(cell["sizes"]) \
        else None
    layout = layout or torch.contiguous_format
    if image:
        model = model.to(memory_format=layout)
    if dist:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, y, order = synthetic_shard(cell, rank, size)
    x_shard, y_shard = torch.from_numpy(x), torch.from_numpy(y)
    eye = torch.eye(n_out, dtype=dtype)
    rows = batches(order, rank, size)
    cross_entropy = cell.get("cost", "quadratic") == "cross_entropy"

    def step() -> None:
        idx = torch.from_numpy(next(rows))
        x, y = x_shard[idx], y_shard[idx]  # (m/P, n_in), (m/P,)
        if image:  # rows -> (m/P, C, H, W)
            x = x.view(len(x), *image).contiguous(memory_format=layout)
        optimizer.zero_grad(set_to_none=True)
        a = model(x)
        if cross_entropy:  # a is z^L: the softmax is the loss's
            loss = torch.nn.functional.cross_entropy(a, y, reduction="sum")
        else:
            loss = 0.5 * (a - eye[y]).pow(2).sum()
        loss.backward()
        optimizer.step()

    return step


def median_step_seconds(torch, dist, step, budget: float, repeats: int) -> float:
    """As the worker times: warm-up, n steps per repeat (rank 0's n), slowest rank's wall."""

    def barrier() -> None:
        if dist:
            dist.barrier()

    for _ in range(3):
        step()
    barrier()
    t0 = time.perf_counter()
    step()
    one = time.perf_counter() - t0
    n = torch.tensor([max(1, int(budget / repeats / max(one, 1e-6)))])
    if dist:
        dist.broadcast(n, 0)
    n_steps = int(n.item())
    walls = []
    for _ in range(repeats):
        barrier()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        wall = torch.tensor([(time.perf_counter() - t0) / n_steps], dtype=torch.float64)
        if dist:
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)
        walls.append(float(wall.item()))
    return sorted(walls)[len(walls) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=29500)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    rank, size = rank_and_size()
    dist = None
    if size > 1:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=size
        )
    with open(args.spec) as f:
        spec = json.load(f)
    results = [
        time_cell(torch, dist, c, spec["budget"], spec.get("repeats", 5), peer)
        for c in spec["cells"]
        for peer in (LAYOUTS if architecture.is_conv(c["sizes"]) else ["torch"])
    ]
    if rank == 0:
        write_results(args.out, size, results)
    if dist:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
