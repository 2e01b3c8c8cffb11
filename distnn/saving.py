"""Saving the run's state: rank 0 writes the checkpoint, and what happens when it cannot.

Every replica holds the same state once a step is over, so rank 0 alone writes
it (``distnn.checkpoint``), atomically: the last good checkpoint stays until a
new one is complete. Three kinds of write, and what a failed one means
(``distnn.writes``: a full disk, a quota, a read-only file system):

- ``save``, after each epoch and when the run is asked to stop: every rank
  waits for it, and if it cannot be written every rank raises WriteFailed,
  naming the checkpoint that is kept; the trainer then stops (EXIT_IOERR).
- ``commit``, mid-epoch (``--commit-every``): rank 0's alone, which no one
  waits for. One that cannot be written is skipped with a warning, once until
  one succeeds again: a commit only bounds the work a crash can cost, and the
  next one may find room.
- ``write_or_say``, for the stall watchdog's last checkpoint as it ends a
  stalled job: a failed one is named in the watchdog's line.
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

from distnn.checkpoint import save_checkpoint
from distnn.comm import Comm
from distnn.config import Config
from distnn.loop import Position
from distnn.writes import WriteFailed

# An HDF5 attribute holds up to 64 KiB: the names of up to a few thousand classes.
# Beyond that predictions give class numbers, which the data file's /names maps.
NAMES_KEPT = 32 << 10


class Saver:
    """Writes this run's checkpoints (on rank 0), and knows the last one written."""

    def __init__(self, cfg: Config, steps: int, comm: Comm, replica: Any, log: Any,
                 saved: Position | None, data: dict[str, Any] | None = None) -> None:
        self.cfg, self.steps, self.comm, self.replica, self.log = cfg, steps, comm, replica, log
        self.saved = saved  # the last checkpoint of this run on disk, if any
        # A table's task and scaling go with the model, for predictions on new rows.
        table = data is not None and data.get("schema_version") == 2
        self._data = ({k: data[k] for k in ("task", "feature_scaling", "n_outputs")}
                      if table else None)
        names = (data or {}).get("names", {})
        kept = {k: v for k, v in names.items() if k != "features"}
        if table and kept and len(json.dumps(kept)) <= NAMES_KEPT:
            self._data["names"] = kept  # so that predictions say "setosa", not 2
        if table and names.get("features") and \
                len(json.dumps({**self._data.get("names", {}), **names})) <= NAMES_KEPT:
            # so that predictions take a rows file's columns by name, in any order
            self._data.setdefault("names", {})["features"] = names["features"]
        self._scaling = data.get("scaling") if table else None
        self._failing = False  # the last commit could not be written

    def write(self, position: Position) -> None:
        """Write the checkpoint of ``position`` (rank 0); raises WriteFailed."""
        net, optimizer = self.replica.net, self.replica.optimizer
        save_checkpoint(self.cfg.checkpoint, net, optimizer.state_dict(), self.cfg.to_dict(),
                        {"epoch": position.epoch, "step": position.step, "steps": self.steps,
                         "epoch_cost": position.epoch_cost, "ranks": self.comm.size},
                        self._data, self._scaling)
        self.saved = position

    def _timed_write(self, position: Position) -> None:
        """``write``, its time counted where rank 0's time goes (``distnn.ranktimes``)."""
        lap = self.replica.lap
        lap.start()
        try:
            self.write(position)
        finally:
            lap("checkpoint")

    def save(self, position: Position) -> None:
        """The checkpoint every rank waits for; WriteFailed on every rank if it cannot be."""
        failed = None
        if self.comm.rank == 0:  # it alone knows which checkpoint is on disk: it says
            try:
                self._timed_write(position)
            except WriteFailed as err:
                again = "rerun with --resume" if self.saved is not None else "rerun"
                failed = (f"{err}; {self.kept()}", f"{err.remedy} and {again}")
        failed = self.comm.bcast(failed)  # MPI: nobody goes on before it is on disk
        if failed:
            raise WriteFailed(*failed)
        self.saved = position

    def write_or_say(self, position: Position) -> None:
        """``write``, for the stall watchdog as it ends the job: WriteFailed names the
        checkpoint kept."""
        try:
            self.write(position)
        except WriteFailed as err:
            raise WriteFailed(f"{err}; {self.kept()}", err.remedy) from None

    def commit(self, position: Position) -> None:
        """A mid-epoch commit (rank 0): skipped, with a warning, if it cannot be written."""
        try:
            self._timed_write(position)
        except WriteFailed as err:
            if not self._failing:
                self.log.warn(f"{err}; the commit of epoch {position.epoch + 1}, step "
                              f"{position.step} is skipped and {self.kept()}; training goes "
                              "on, and the next commit tries again")
            self._failing = True
            return
        if self._failing:
            self.log.note(f"commits are written again, to {self.cfg.checkpoint}")
            self._failing = False

    def kept(self) -> str:
        """What a failed write leaves: the last checkpoint of this run, named."""
        if self.saved is None:
            there = self.cfg.checkpoint
            return (f"{there}, another run's, is unchanged" if Path(there).exists() else
                    f"no checkpoint of this run is in {there} yet")
        return (f"the checkpoint of epoch {self.saved.epoch + 1}, step {self.saved.step} "
                f"is kept")
