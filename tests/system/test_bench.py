"""The benchmark's tiny mode runs end to end; its timed step is the trainer's update.

Serial tests run under plain pytest. The distributed ones need two ranks:

    mpirun -n 2 python -m pytest --with-mpi tests/system/test_bench.py

Reference for the timed step: the update computed in one process from the
gradient of every rank's samples together (no communication at all).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.fresh_blas import fresh_blas
from distnn.network import MLP
from tests.support.mpi_envs import FLAVOURS, mpi_env

SIZES = [784, 30, 20, 10]
CONV = ["1x6x6", "conv2x3", "pool2", "conv3x3:same", 4]  # a tiny conv net, pooled and padded


def _under_mpi() -> bool:
    return int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (pip install mpich)")
@pytest.mark.skipif(_under_mpi(), reason="launches its own mpirun; run it without mpirun")
def test_smoke_mode_writes_table_and_plot(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "distnn.bench", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t0 < 30
    data = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["P"] for r in data["results"]) == [1, 2]
    assert all(r["samples_per_s"] > 0 and r["compute_s"] > 0 for r in data["results"])
    table = (tmp_path / "results.md").read_text()
    assert "| [784, 30, 10] | 10 | float32 | 2 |" in table
    here = fresh_blas()  # as the benchmark sees it (this process may hold scipy's BLAS too)
    assert f"BLAS: {here['line']}." in table  # the library, its kernels
    assert ("Note: OpenBLAS runs its" in table) == here["warned"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_commits_mode_times_a_checkpoint_write_beside_the_step(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "distnn.bench", "--commits", "--out",
                           str(tmp_path), "--sizes", "16,12,4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    write = float(re.search(r"checkpoint write \(atomic, fsynced\): +([\d.]+) us", out).group(1))
    step = float(re.search(r"training step: +([\d.]+) us", out).group(1))
    share = float(re.search(r"--commit-every +100: +([\d.]+)%", out).group(1))
    assert write > 0 and step > 0
    assert share == pytest.approx(write / step, rel=0.02, abs=0.002)  # write / (100 steps)
    assert list(tmp_path.iterdir()) == []  # its checkpoints are gone


# -- two ranks ----------------------------------------------------------------


@pytest.fixture
def comm():
    from distnn.comm import world

    return world()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("reducer", ["allreduce", "shm"])
@pytest.mark.parametrize("sizes", [SIZES, CONV])
def test_timed_step_is_the_trainers_update(comm, reducer, sizes):
    """One timed step with either reducer moves the parameters as one process would
    on every rank's samples together: w - (eta/m) sum_x grad C_x; an MLP or a conv net."""
    from distnn.bench.matrix import cell as make_cell
    from distnn.bench.worker import LEARNING_RATE, Step
    from distnn.convnet import build

    cell = {**make_cell(sizes, 32, "float64"), "reducer": reducer}
    step = Step(comm, cell)
    settings = {k: cell[k] for k in ("activation", "cost") if k in cell}
    reference = build(sizes, dtype="float64", seed=0, **settings)  # the net Step starts from
    step()
    mine = step.shard.batch(step.last_rows)  # this rank's samples of the batch
    batches = [comm.bcast(mine if comm.rank == r else None, root=r) for r in range(comm.size)]
    _, grad = reference.gradient(np.concatenate([b[0] for b in batches]),
                                 np.concatenate([b[1] for b in batches]))
    expected = reference.params - LEARNING_RATE / cell["batch"] * grad
    np.testing.assert_allclose(step.net.params, expected, rtol=1e-12, atol=1e-14)
    assert step.phase_seconds()[0] > 0  # time inside MPI
    step.reducer.close()


def test_targets_count_the_rounds_that_meet_each_goal():
    from distnn.bench.matrix import TARGET, median_rows
    from distnn.bench.report import targets

    def row(P, samples_per_s, rnd):
        step = TARGET["batch"] / samples_per_s
        return {**TARGET, "P": P, "samples_per_s": samples_per_s, "step_s": step,
                "compute_s": step, "round": rnd}

    # Round 0: P=2 at 1.7x P=1; round 1: 1.4x; round 2: 1.65x. Median rounds: 1.65x.
    rows = [row(1, 100.0, 0), row(2, 170.0, 0), row(1, 100.0, 1), row(2, 140.0, 1),
            row(1, 100.0, 2), row(2, 165.0, 2)]
    data = {"rows": rows, "results": median_rows(rows), "machine": {"cores": 2},
            "peak_gflops": {"float32": 1.0}}
    scaling = next(t for t in targets(data) if t[0].startswith("P=2 vs P=1"))
    assert scaling[1].startswith("1.65x") and scaling[3] is True and scaling[4] == "2 of 3"


@pytest.mark.parametrize("sizes", [[784, 100, 10], SIZES])
def test_step_flops_count_the_products_the_step_benchmark_times(sizes, monkeypatch):
    """``step_flops`` (the numerator of every "% peak") against the products
    ``bench.step`` times, each counted from its operands' shapes as 2 m k n."""
    from distnn.bench import step
    from distnn.bench.peak import step_flops

    m = 16
    net = MLP(sizes, dtype="float32")
    x = np.zeros((m, sizes[0]), np.float32)
    gemms = step.make_gemms(net, x)
    counted = []
    real_matmul = np.matmul

    def counting_matmul(a, b, *args, **kwargs):
        (rows, inner), (inner_b, cols) = a.shape, b.shape
        assert inner == inner_b
        counted.append(2 * rows * inner * cols)
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", counting_matmul)
    gemms()
    assert sum(counted) == step_flops(sizes, m)


NIELSEN = ["1x28x28", "conv20x5", "pool2", "conv40x5", "pool2", 100, 10]


def test_a_conv_nets_flops_are_its_layers_multiply_adds_times_six():
    """Issue 38's 9.8 MFLOP a sample, from the layer shapes: forward 2 MACs, backward
    twice that, the first layer included."""
    from distnn.bench.matrix import CONV_TARGET
    from distnn.bench.peak import step_flops

    macs = [24 * 24 * 20 * 5 * 5 * 1,  # conv20x5 on 28x28x1: 24x24 positions
            8 * 8 * 40 * 5 * 5 * 20,  # conv40x5 on the pooled 12x12x20: 8x8 positions
            4 * 4 * 40 * 100, 100 * 10]  # the pooled 4x4x40 features, then 100, 10
    assert CONV_TARGET["sizes"] == NIELSEN
    assert step_flops(NIELSEN, 128) == 6 * 128 * sum(macs) == 128 * 9_798_000


def test_the_torch_peers_conv_net_is_the_spec_and_runs_the_products_counted():
    """The PyTorch peer builds the spec's layers (the same parameters) and its step
    computes what ``step_flops`` counts less the first layer's delta below (data)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from distnn.architecture import n_params
    from distnn.bench.matrix import cell
    from distnn.bench.peak import conv_macs, step_flops
    from distnn.bench.peers_torch import _model

    spec = ["1x12x12", "conv4x3", "pool2", "conv5x3:same", "pool2", 7, 3]
    model = _model(torch, cell(spec, 8, "float32"), torch.float32)
    assert sum(p.numel() for p in model.parameters()) == n_params(spec)
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 3, (8,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    assert counter.get_total_flops() == step_flops(spec, 8) - 2 * 8 * conv_macs(spec)[0]


def test_the_conv_row_and_its_targets_are_reported():
    from dataclasses import asdict

    from distnn.bench.matrix import CONV_TARGET, Config, cell, median_rows
    from distnn.bench.report import markdown

    def row(P, samples_per_s, peer="distnn"):
        step = CONV_TARGET["batch"] / samples_per_s
        return {**cell(**CONV_TARGET), "P": P, "peer": peer, "samples_per_s": samples_per_s,
                "step_s": step, "compute_s": step, "comm_s": 0.0, "round": 0}

    rows = [row(1, 3000.0), row(2, 5000.0), row(1, 2900.0, "torch"), row(2, 5500.0, "torch"),
            row(1, 4000.0, "torch channels_last")]
    cfg = asdict(Config(sizes=[], batches=[128], ranks=[1, 2], dtypes=["float32"], rounds=1))
    machine = {"cores": 2, "cpu": "AMD EPYC", "versions": {}, "load_start": [0.0] * 3,
               "load_end": [0.0] * 3, "seconds": 1.0}
    text = markdown({"config": cfg, "machine": machine, "peak_gflops": {"float32": 100.0},
                     "rows": rows, "results": median_rows(rows)})
    assert "## Conv net ([1x28x28, conv20x5, pool2, conv40x5, pool2, 100, 10], batch 128" in text
    # % peak: 9.798 MFLOP x 3,000 samples/s over 100 GFLOP/s
    assert "| 1 | 3,000 | 42.667 | 42.667 | 0.000 | 29 | 2,900 | 1.03 | 4,000 | 0.75 |" in text
    assert "| 2 | 5,000 | 25.600 | 25.600 | 0.000 | 24 | 5,500 | 0.91 | | |" in text
    assert "| conv net P=1 vs PyTorch, 1 process, 1 thread | 1.03x | >= 1x | yes | 1 of 1 |" \
        in text
    assert ("| conv net P=1 vs PyTorch, 1 process, 1 thread, channels_last | 0.75x | >= 1x "
            "| **no** | 0 of 1 |") in text
    assert "| conv net P=2 vs PyTorch DDP (gloo), P=2 | 0.91x | > 1x | **no** | 0 of 1 |" in text


def test_the_conv_step_breakdown_names_every_part_and_adds_up(capsys):
    """``python -m distnn.bench.convstep`` on a tiny net: every kind of part is timed,
    and the parts are the gradient's calls (no timing asserted)."""
    from distnn.bench import convstep

    convstep.main(["--layers", "2x8x8,conv3x3,pool2,conv4x3:same,pool2,5,3", "--batch", "4",
                   "--repeats", "1", "--inner", "1"])
    out = capsys.readouterr().out
    for part in ("conv1 im2col", "conv1 cols w^T", "conv1 max-pool", "conv2 col2im",
                 "conv2 delta w", "conv1 delta^T cols", "head: MLP forward and backward",
                 "images to (m, H, W, C)", "SGD update", "sum of the parts", "peak RSS"):
        assert part in out, part
    assert "conv1 col2im" not in out  # the first layer's input is data: no delta below


@pytest.mark.parametrize("p,latency,bandwidth", [
    (2, 2, 1.0),  # reduce-scatter and allgather, one exchange of n/2 each
    (4, 4, 1.5),  # two halvings, two doublings: 2 log2 p messages, 2 (p-1)/p n bytes
    (256, 16, 2 * 255 / 256),
    (3, 2 + 2, 1.0 + 2),  # one rank beyond 2: hands over its n bytes, gets the sum back
    (6, 4 + 2, 1.5 + 2),
])
def test_the_allreduce_model_is_mpichs_rabenseifner(p, latency, bandwidth):
    from distnn.bench.alphabeta import allreduce_seconds

    alpha, beta, n = 1e-6, 1e-9, 1e6
    assert allreduce_seconds(p, n, alpha, beta) == pytest.approx(
        latency * alpha + bandwidth * n * beta, rel=1e-12)


TEN_SUMS = '''
import os
import numpy as np
from mpi4py import MPI
world = MPI.COMM_WORLD
buf = np.ones(1024, np.float32)  # 4 KiB
for _ in range(5):  # connections made, warm
    world.Allreduce(MPI.IN_PLACE, buf)
world.Barrier()
marks = os.open(os.devnull, os.O_WRONLY)
os.write(marks, b"BEGIN")
for _ in range(10):
    world.Allreduce(MPI.IN_PLACE, buf)
os.write(marks, b"END")
world.Barrier()
'''


@pytest.mark.skipif(shutil.which("mpirun") is None or shutil.which("strace") is None,
                    reason="needs mpirun (pip install mpich) and strace (apt-get install strace)")
@pytest.mark.skipif(_under_mpi(), reason="launches its own mpirun; run it without mpirun")
def test_mpich_sums_a_gradient_the_way_the_projection_models_it(tmp_path):
    """The projection's T(p, n) = 2 log2(p) alpha + 2(p-1)/p n beta is Rabenseifner's
    Allreduce. Checked by counting what 4 ranks, one per "node" (every message through
    TCP), hand the kernel: per call, each rank sends 2 log2 4 = 4 messages of n/2,
    n/4, n/4, n/2, 1.5 n bytes in all. A ring would send 2(p-1) = 6 of n/4, recursive
    doubling log2 4 = 2 of n."""
    if "MPICH" not in subprocess.run([sys.executable, "-c", "from mpi4py import MPI; "
                                      "print(MPI.Get_library_version())"],
                                     capture_output=True, text=True).stdout:
        pytest.skip("the model is MPICH's algorithm")
    script = tmp_path / "sums.py"
    script.write_text(TEN_SUMS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_", "MPIR_"))}
    env.update(MPIR_CVAR_NOLOCAL="1", UCX_TLS="tcp,self")  # no shared memory: all over TCP
    subprocess.run(["mpirun", "-n", "4", "strace", "-ff", "-qq", "-o", str(tmp_path / "trace"),
                    "-e", "trace=sendmsg,sendto,writev,write", sys.executable, str(script)],
                   env=env, check=True, capture_output=True, timeout=120)
    sends = []
    for trace in tmp_path.glob("trace.*"):
        lines = trace.read_text().splitlines()
        begin = [i for i, line in enumerate(lines) if '"BEGIN"' in line]
        end = [i for i, line in enumerate(lines) if '"END"' in line]
        if begin:
            for line in lines[begin[0] + 1:end[0]]:
                sent = re.match(r"(sendmsg|sendto|writev)\(.*= (\d+)$", line)
                if sent:
                    sends.append(int(sent.group(2)))
    n, calls, ranks = 4096, 10, 4
    assert len(sends) == ranks * calls * 4, sorted(sends)
    payload = ranks * calls * 1.5 * n
    assert payload <= sum(sends) <= payload + len(sends) * 64  # each message's small header


SUMS = '''
import numpy as np
from mpi4py import MPI
x = np.ones(1 << 21, np.float32)  # 8 MiB
for _ in range(4):
    MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, x)
y = np.ones(2, np.float32)  # 8 B
for _ in range(5000):
    MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, y)
'''


def _loopback() -> tuple[int, int]:
    """(bytes, packets) sent so far over the loopback interface."""
    stats = Path("/sys/class/net/lo/statistics")
    return (int((stats / "tx_bytes").read_text()), int((stats / "tx_packets").read_text()))


@pytest.mark.skipif(not Path("/sys/class/net/lo").exists(), reason="reads Linux's lo counters")
@pytest.mark.skipif(_under_mpi(), reason="launches its own mpirun; run it without mpirun")
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_each_path_of_the_alphabeta_benchmark_is_the_one_its_name_says(flavour, tmp_path):
    """Four 8 MiB sums and 5,000 8 B sums between 2 ranks on each path of ``PATHS``
    for this MPI. A tcp row sends both through the kernel's TCP stack: at least one
    copy of the big sums' bytes and a packet per small sum cross the loopback
    interface (Intel MPI sums small messages through shared memory unless told
    otherwise, whatever its fabric). A shared-memory row sends them nowhere: less
    than the sums' own bytes and packets, whatever else this machine sends
    meanwhile (the launcher's start-up)."""
    from distnn.bench.alphabeta import PATHS

    env = mpi_env(flavour)
    script = tmp_path / "sums.py"
    script.write_text(SUMS)
    for name, extra in PATHS[flavour].items():
        before = _loopback()
        subprocess.run(["mpirun", "-n", "2", env["PYTHON"], str(script)], env={**env, **extra},
                       check=True, capture_output=True, timeout=120)
        sent, packets = (after - was for after, was in zip(_loopback(), before))
        if name == "tcp":
            assert sent >= 4 << 23 and packets >= 5000, (name, sent, packets)
        else:
            assert sent < 4 << 20 and packets < 1000, (name, sent, packets)


def test_the_stream_bench_times_held_and_streamed_rows_of_one_file(tmp_path):
    """Its worker, on a small file in one process: the rows held in one mode and streamed
    in the other (it checks which it got), both trained through, the reader timed."""
    from distnn.bench.stream import report, time_mode
    from distnn.comm import SerialComm
    from tests.support.synthetic import make_dataset

    data = make_dataset(tmp_path / "d.h5", n_train=4096, n_test=100, shape=(28, 28),
                        n_classes=10)
    rows = [time_mode(SerialComm(), str(data), mode, 1, window=64)
            for mode in ("held", "streamed")]
    assert [row["mode"] for row in rows] == ["held", "streamed"]
    assert all(row["samples_per_s"] > 0 for row in rows)
    assert rows[0]["reader_mb_s"] is None and rows[1]["reader_mb_s"] > 0
    text = report({"rows": rows, "disk_mb_s": 100.0, "disk_cold": False, "file_bytes": 4e6})
    assert "| 1 |" in text and "warm: from the page cache" in text
