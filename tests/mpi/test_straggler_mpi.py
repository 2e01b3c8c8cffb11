"""The straggler named: one rank made slow on purpose (its backprop sleeps) is named, and
no other; with no slow rank, nobody is. Under mpirun -n 2 and -n 4 with --with-mpi."""

from __future__ import annotations

import json
import time

import pytest

from distnn.config import parse_args
from distnn.network import MLP
from distnn.train import run

pytestmark = pytest.mark.mpi(min_size=2)

ARGS = ["--layers", "16,12,4", "--batch-size", "16", "--epochs", "2", "--no-progress",
        "--commit-every", "0"]


@pytest.fixture
def data(shared_dataset):
    return shared_dataset("d.h5", n_train=320, n_test=40)  # 20 steps an epoch


def ranks_records(path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines())
            if r.get("event") == "ranks"]


@pytest.mark.parametrize("slow,reducer", [(None, "auto"), ("last", "auto"),
                                          ("last", "allreduce")])
def test_the_slow_rank_and_only_it_is_named(world, comm, data, mpi_tmp_path, monkeypatch, capsys,
                                            slow, reducer):
    slow_rank = world.size - 1 if slow else None
    if world.rank == slow_rank:
        gradient = MLP.gradient

        def slow_gradient(self, *args, **kwargs):
            time.sleep(0.03)  # 30 ms a step (0.6 s an epoch): the others' take well under 1
            return gradient(self, *args, **kwargs)

        monkeypatch.setattr(MLP, "gradient", slow_gradient)
    metrics = mpi_tmp_path / f"m-{slow}-{reducer}.jsonl"
    cfg, given = parse_args(["--data", str(data), *ARGS, "--reduce", reducer, "--checkpoint",
                             str(mpi_tmp_path / f"c-{slow}.h5"), "--metrics", str(metrics)])
    assert run(cfg, given, comm) == 0
    world.Barrier()
    err = capsys.readouterr().err
    records = ranks_records(metrics)
    assert len(records) == 2 and all(len(r["hosts"]) == world.size for r in records)
    # rank 0 alone writes checkpoints: epoch 2's record has the save that ended epoch 1
    written = records[1]["by_rank"]["checkpoint"]
    assert written[0] > 0 and not any(written[1:]) and not any(records[0]["by_rank"]["checkpoint"])
    if slow_rank is None:
        assert all(r["straggler"] is None for r in records), records
        assert "straggler" not in err
        return
    for r in records:
        assert r["straggler"]["rank"] == slow_rank, r
        assert r["parts"]["backprop"]["max_rank"] == slow_rank
        # the others wait for it, and it waits for nobody
        assert r["parts"]["wait"]["max_rank"] != slow_rank
        assert r["by_rank"]["wait"][slow_rank] < 0.2 * r["parts"]["wait"]["max"], r
    if world.rank == 0:
        assert err.count(f"rank {slow_rank} on ") == 2 and err.count("is a straggler") == 2
    # Rank 0 spent the epoch waiting for the slow rank, and the epoch line says so, whether
    # shm's barriers or the estimate inside one Allreduce told the waiting from the summing.
    epochs = [r for r in map(json.loads, metrics.read_text().splitlines()) if "cost" in r]
    assert all(r["wait_share"] > 0.5 and r["sum_share"] < r["wait_share"] for r in epochs)
