"""The benchmark's tiny mode runs end to end; the overlapped reducer sums like the fused one.

Serial tests run under plain pytest. The distributed ones need two ranks:

    mpirun -n 2 python -m pytest --with-mpi tests/test_bench.py

Reference for the reducers: the gradient of the whole global batch computed in
one process (no communication at all), which the summed per-rank gradients
must equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from distnn.bench.accumulate import AccumulatedAllreduce
from distnn.comm import SerialComm
from distnn.network import MLP
from distnn.bench.overlap import OverlapAllreduce, bf16_to_f32, f32_to_bf16
from distnn.reduce import FusedAllreduce

SIZES = [784, 30, 20, 10]  # three layers: buckets of one, two and three layers exist


def _under_mpi() -> bool:
    return int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1


def _batch(m: int, seed: int, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((m, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], m)


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
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "scaling.png").stat().st_size > 0


@pytest.mark.parametrize("bucket_bytes", [0, 4096, 1 << 30])
def test_buckets_cover_the_buffer_once(bucket_bytes):
    net = MLP(SIZES, dtype="float64")
    reducer = OverlapAllreduce(SerialComm(), net, bucket_bytes=bucket_bytes)
    spans = sorted((lo, hi) for _, lo, hi in reducer.buckets)
    assert spans[0][0] == 0 and spans[-1][1] == net.params.size + 2
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert reducer.buckets[-1][0] == 0  # the last bucket fires at layer 0 and holds the extras
    if bucket_bytes == 0:
        assert len(reducer.buckets) == net.num_layers
    if bucket_bytes == 1 << 30:
        assert len(reducer.buckets) == 1


def test_reducers_match_fused_in_one_process():
    net = MLP(SIZES, dtype="float64")
    x, y = _batch(32, 0)
    fused = FusedAllreduce(SerialComm(), net)
    expected = fused(x, y, False)
    for other in (OverlapAllreduce(SerialComm(), net),):
        assert other(x, y, False) == expected
        np.testing.assert_array_equal(other.grad, fused.grad)


def test_sync_every_is_gradient_accumulation():
    """k micro-batches summed = the gradient of the k*m batch in one call."""
    net = MLP(SIZES, dtype="float64")
    x, y = _batch(40, 1)
    reference_cost, reference = net.gradient(x, y)
    acc = AccumulatedAllreduce(SerialComm(), net, k=4)
    cost, stop = acc(x, y, True)
    np.testing.assert_allclose(acc.grad, reference, rtol=1e-12, atol=1e-12)
    assert cost == pytest.approx(reference_cost, rel=1e-12) and stop


def test_bfloat16_round_trip_keeps_8_bits():
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    h = f32_to_bf16(x, out=np.empty(x.size, np.uint16))
    np.testing.assert_allclose(bf16_to_f32(h), x, rtol=2**-8)
    assert bf16_to_f32(
        f32_to_bf16(np.float32([1.0, -2.5]), out=np.empty(2, np.uint16))
    ).tolist() == [1.0, -2.5]


# -- two ranks ----------------------------------------------------------------


@pytest.fixture
def comm():
    from distnn.comm import world

    return world()


def _global_reference(comm, m_local: int) -> tuple[float, np.ndarray, list]:
    """Every rank's batch, and the gradient of all of them together, in one process."""
    batches = [_batch(m_local, 100 + r) for r in range(comm.size)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    cost, grad = MLP(SIZES, dtype="float64").gradient(x, y)
    return cost, grad, batches


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("bucket_bytes", [0, 4096, 1 << 30])
def test_overlap_sums_like_fused_over_ranks(comm, bucket_bytes):
    cost_ref, grad_ref, batches = _global_reference(comm, 16)
    x, y = batches[comm.rank]
    net = MLP(SIZES, dtype="float64")
    fused = FusedAllreduce(comm, net)
    overlap = OverlapAllreduce(comm, net, bucket_bytes=bucket_bytes)
    stop = comm.rank == comm.size - 1  # one rank asks to stop: every rank must learn it
    cost_f, stop_f = fused(x, y, stop)
    cost_o, stop_o = overlap(x, y, stop)
    np.testing.assert_allclose(overlap.grad, fused.grad, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(overlap.grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert cost_o == pytest.approx(cost_f, rel=1e-13) and cost_o == pytest.approx(
        cost_ref, rel=1e-10
    )
    assert stop_f and stop_o
    assert overlap.comm_seconds > 0


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("compression, bits", [("fp16", 11), ("bf16", 8)])
def test_compressed_overlap_is_close(comm, compression, bits):
    cost_ref, grad_ref, batches = _global_reference(comm, 16)
    x, y = batches[comm.rank]
    net = MLP(SIZES, dtype="float64")
    overlap = OverlapAllreduce(comm, net, compression=compression)
    cost, stop = overlap(x, y, False)
    assert cost == pytest.approx(cost_ref, rel=1e-12)  # the scalars travel uncompressed
    assert not stop
    # Each rank's part is rounded once, and the sum once per addition.
    scale = np.abs(grad_ref).max()
    np.testing.assert_allclose(overlap.grad, grad_ref, atol=scale * comm.size * 2.0 ** -(bits - 1))


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
