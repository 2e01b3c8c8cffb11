"""Stopping a training job as a batch system does: a signal once it is well into training,
or, in-process, the stop request a signal sets, at a step of the test's choosing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from distnn.checkpoint import read_checkpoint
from distnn.protocol import EXIT_INTERRUPTED


def stop_after_an_epoch(command: list[str], sig: int, checkpoint: Path) -> dict[str, Any]:
    """Start ``command`` (a distnn.train job), send it ``sig`` once its first epoch has
    ended, check that it stopped as asked, and return the checkpoint's position."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("distnn:")  # set up: now training
    for line in proc.stdout:  # a checkpoint exists once the first epoch has ended
        if line.startswith("epoch "):
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "continue with --resume" in out
    return read_checkpoint(checkpoint)["position"]


class StopAtStep:
    """What SIGTERM does to ``run`` (its StopRequest), before the ``n``-th step it runs:
    the run stops after that step with its checkpoint."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    @property
    def requested(self) -> bool:
        self.calls += 1  # the step reads it once, as its sum begins
        return self.calls == self.n


class StopOnRank0At:
    """Under mpirun: rank 0 alone 'receives SIGTERM' before the given step of those it
    runs; the flag must travel to every rank."""

    def __init__(self, world, step: int) -> None:
        self.world, self.step, self.calls = world, step, 0

    @property
    def requested(self) -> bool:
        self.calls += 1
        return self.world.rank == 0 and self.calls >= self.step
