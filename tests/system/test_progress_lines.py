"""Progress as a user sees it: under mpirun (stderr a pipe) a line from rank 0 every
--progress-every seconds, none with 0; one process on a terminal (a pty) gets a bar."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.support.synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["-m", "distnn.train", "--layers", "64,512,512,4", "--batch-size", "16", "--epochs", "1",
         "--commit-every", "0"]
LINE = re.compile(r"distnn: epoch 1/1  step (\d+)/(\d+) \((\d+)%\)  \d+ samples/s  "
                  r"\S+ left  cost \d+\.\d{4}$")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # Enough rows that an epoch lasts some seconds here (about 3 s on 2 ranks).
    return make_dataset(tmp_path_factory.mktemp("progress") / "d.h5", n_train=80_000,
                        n_test=100, shape=(8, 8))


def run_timed(args: list[str], cwd: Path) -> tuple[int, list[tuple[float, str]]]:
    """Run, keeping each stderr line with the time it came."""
    job = subprocess.Popen(args, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line.rstrip("\n"))
                                                          for line in job.stderr))
    reader.start()
    status = job.wait(timeout=120)
    reader.join(timeout=10)
    return status, lines


def test_lines_under_mpirun_from_rank_0_at_the_interval_and_none_with_0(data, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not found (pip install -e '.[mpich]')")
    mpirun = ["mpirun", "-n", "2", sys.executable, *TRAIN, "--data", str(data)]
    status, lines = run_timed([*mpirun, "--progress-every", "1", "--checkpoint", "a.h5"],
                              tmp_path)
    assert status == 0, lines
    progress = [(t, LINE.match(text)) for t, text in lines if "step" in text]
    assert len(progress) >= 2 and all(m for _, m in progress), lines
    steps = [int(m[1]) for _, m in progress]
    assert steps == sorted(set(steps))  # one rank speaks: no step told twice
    gaps = [b - a for (a, _), (b, _) in zip(progress, progress[1:])]
    assert min(gaps) >= 0.9, gaps  # the interval asked (the pipe may bunch them a little)
    status, lines = run_timed([*mpirun, "--progress-every", "0", "--checkpoint", "b.h5"],
                              tmp_path)
    assert status == 0 and not [text for _, text in lines if "step" in text], lines


def test_a_terminal_gets_a_bar(data, tmp_path):
    pytest.importorskip("tqdm", reason="the bar is the progress extra's")
    main, other = pty.openpty()
    # A terminal of 24 rows of 80: tqdm shows nothing on one of no rows
    fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    job = subprocess.Popen([sys.executable, *TRAIN, "--data", str(data), "--checkpoint",
                            "c.h5"], cwd=tmp_path, stderr=other, stdout=subprocess.DEVNULL)
    os.close(other)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the job has closed its end
            break
        if not chunk:
            break
        seen += chunk
    assert job.wait(timeout=120) == 0
    os.close(main)
    text = seen.decode(errors="replace")
    assert "epoch 1:" in text and "step/s" in text, text[-2000:]
    assert not LINE.search(text)  # a bar, not lines
