"""The elastic supervisor's own pieces, on this machine (tests/system/test_cluster.py: on hosts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distnn.checkpoint import read_checkpoint
from distnn.elastic import parse_hosts
from distnn.protocol import PREFIX
from tests.support.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]
LOCAL = "mpirun -n {ranks}"  # every "host" is this machine
pytestmark = pytest.mark.skipif(os.environ.get("PMI_SIZE", "1") != "1",
                                reason="launches its own jobs: not inside an MPI job")


@pytest.mark.parametrize("text,hosts", [
    ("a:2,b:2", {"a": 2, "b": 2}), ("a", {"a": 1}), (" a:2 , b ", {"a": 2, "b": 1}),
    ("a:1\nb:3 # spare\n\n# c:2\n", {"a": 1, "b": 3})])
def test_hosts_read_as_names_and_slots(text, hosts):
    assert parse_hosts(text) == hosts


@pytest.mark.parametrize("text,words", [("a:x", "host:slots"), ("a:0", "host:slots"),
                                        (":2", "host:slots"), ("a,a:2", "named twice")])
def test_a_bad_host_list_is_named(text, words):
    with pytest.raises(ValueError, match=words):
        parse_hosts(text)


def _supervise(tmp_path: Path, *train: str, hosts: str = "localhost:2") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "distnn.elastic", "--hosts", hosts,
                             "--launcher", LOCAL, "--", "--checkpoint", "c.h5",
                             "--no-progress", *train],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_job_that_fails_with_no_host_lost_ends_the_run_with_its_status(tmp_path):
    job = _supervise(tmp_path, "--data", "missing.h5")
    out = job.communicate(timeout=120)[0]
    assert job.returncode == 2, out
    assert "the job ended with status 2 and no host was lost" in out, out


def test_a_stop_request_reaches_the_job_which_checkpoints(tmp_path):
    make_dataset(tmp_path / "data.h5", n_train=2000, n_test=100, shape=(4, 4), n_classes=4)
    job = _supervise(tmp_path, "--data", "data.h5", "--layers", "16,12,4", "--batch-size", "8",
                     "--epochs", "100000")
    lines = []
    for line in job.stdout:
        lines.append(line)
        if line.startswith("epoch 2/"):
            break
    job.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    lines += job.communicate(timeout=60)[0].splitlines(keepends=True)
    assert job.returncode == 75, "".join(lines)
    assert time.monotonic() - t0 < 10
    assert "checkpoint written" in "".join(lines)
    assert read_checkpoint(tmp_path / "c.h5")["position"]["epoch"] >= 2
    assert PREFIX not in "".join(lines)  # event lines are the supervisor's, not the user's
    assert "asked to stop: the job ended with status 75" in "".join(lines)
