"""--trace: valid JSON in the Chrome trace event format, a row per rank, each step's parts
adding up to the step. Under mpirun -n 2 and -n 4 with --with-mpi."""

from __future__ import annotations

import json

import pytest

from distnn.config import parse_args
from distnn.ranktimes import PARTS
from distnn.train import run

pytestmark = pytest.mark.mpi(min_size=2)


@pytest.fixture
def data(shared_dataset):
    return shared_dataset("d.h5", n_train=320, n_test=40)  # 20 steps an epoch at m = 16


@pytest.mark.parametrize("steps", [7, 100])  # a stretch inside the run, and one longer
def test_a_trace_has_a_row_per_rank_and_parts_that_add_up(world, comm, data, mpi_tmp_path,
                                                          steps):
    path = mpi_tmp_path / f"trace-{steps}.json"
    cfg, given = parse_args(["--data", str(data), "--layers", "16,12,4", "--batch-size", "16",
                             "--epochs", "2", "--no-progress", "--commit-every", "0",
                             "--checkpoint", str(mpi_tmp_path / f"c-{steps}.h5"),
                             "--trace", str(path), "--trace-steps", str(steps)])
    assert run(cfg, given, comm) == 0
    # once rank 0 has written the file, and before any assertion, so every rank takes part
    hosts = world.allgather(comm.hostname())
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M"}
    assert names == {r: f"rank {r} on {host}" for r, host in enumerate(hosts)}
    spans = [e for e in events if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 and e["tid"] in names for e in spans)
    for rank in names:
        mine = [e for e in spans if e["tid"] == rank]
        stepped = [e for e in mine if e["cat"] == "step"]
        assert len(stepped) == min(steps, 40)  # 2 epochs of 20 steps
        parts = [e for e in mine if e["cat"] == "part"]
        assert {e["name"] for e in parts} <= set(PARTS)
        for s in stepped:  # the parts of a step lie in it and fill it, to 1% (or 1 us)
            inside = [p for p in parts if s["ts"] <= p["ts"] and
                      p["ts"] + p["dur"] <= s["ts"] + s["dur"] + 1e-3]
            assert abs(sum(p["dur"] for p in inside) - s["dur"]) <= max(0.01 * s["dur"], 1)
