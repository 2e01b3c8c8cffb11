"""Progress lines where stderr is not a terminal (as under mpirun): from rank 0 only, at the
interval asked, none with --progress-every 0. Each step sleeps 4 ms, so an epoch lasts at
least 2.5 s however fast the machine: two lines at 1 s intervals are certain."""

from __future__ import annotations

import re
import time

import pytest

from distnn.config import parse_args
from distnn.network import MLP
from distnn.train import run

pytestmark = pytest.mark.mpi(min_size=2)
LINE = re.compile(r"distnn: epoch 1/1  step (\d+)/640 \((\d+)%\)  \d+ samples/s  "
                  r"\S+ left  cost \d+\.\d{4}$")


class Pipe:
    """A stderr that is no terminal, keeping each line with the time it came."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.lines += [(time.monotonic(), line) for line in text.splitlines() if line]
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("every", ["1", "0"])
def test_lines_from_rank_0_at_the_interval_and_none_with_0(world, comm, shared_dataset,
                                                           mpi_tmp_path, monkeypatch, every):
    if world.size != 2:
        pytest.skip("one size is enough: the lines are rank 0's")
    data = shared_dataset("d.h5", n_train=10_240, n_test=40)  # 640 steps of 16
    gradient = MLP.gradient

    def slow_gradient(self, *args, **kwargs):
        time.sleep(0.004)
        return gradient(self, *args, **kwargs)

    monkeypatch.setattr(MLP, "gradient", slow_gradient)
    stderr = Pipe()
    monkeypatch.setattr("sys.stderr", stderr)
    cfg, given = parse_args(["--data", str(data), "--layers", "16,12,4", "--batch-size", "16",
                             "--epochs", "1", "--commit-every", "0", "--progress-every", every,
                             "--checkpoint", str(mpi_tmp_path / f"c{every}.h5")])
    assert run(cfg, given, comm) == 0
    monkeypatch.undo()
    progress = [(t, LINE.match(text)) for t, text in stderr.lines if " step " in text]
    if every == "0" or world.rank != 0:
        assert progress == [], stderr.lines
        return
    assert len(progress) >= 2 and all(m for _, m in progress), stderr.lines
    steps = [int(m[1]) for _, m in progress]
    assert steps == sorted(set(steps)) and steps[-1] < 640
    gaps = [b - a for (a, _), (b, _) in zip(progress, progress[1:])]
    assert min(gaps) >= 1.0, gaps  # the interval asked, never less
