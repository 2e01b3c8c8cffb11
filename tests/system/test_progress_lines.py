"""Progress as a user sees it on a terminal (a pty): a bar, not lines. (Lines where stderr
is a pipe, rank 0's at the interval asked: tests/mpi/test_progress_mpi.py.)"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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
    # Enough rows that an epoch lasts some seconds, for tqdm to draw
    return make_dataset(tmp_path_factory.mktemp("progress") / "d.h5", n_train=80_000,
                        n_test=100, shape=(8, 8))


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
