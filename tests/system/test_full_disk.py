"""A real full file system (a small tmpfs, as root): the trainer's one line, status 74, the
checkpoint kept, on one process and on 2 ranks under each reducer; then, with room again,
the run resumes to the parameters of an uninterrupted one, bit for bit. And a disk with a
few kilobytes left, where HDF5 fails as it flushes and closes the file (h5py's
RuntimeError, once a crash): the same line and status, for the trainer, prepare,
predict and import.

The same cases, refused in-process with each errno, are tests/unit/test_full_disk.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint, load_model
from distnn.checkpoint import read_checkpoint
from distnn.protocol import EXIT_IOERR
from tests.conftest import IDX_NAMES, idx_bytes
from tests.support.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]
UNSHARE, MPIRUN = shutil.which("unshare"), shutil.which("mpirun")
# A constant learning rate: the first run, of one epoch, schedules it as the longer
# ones do. One checkpoint of this net (about 340 KB: parameters and velocity) fits the 512 KB
# tmpfs; the next one, written beside it before it replaces it, does not.
TRAIN = [sys.executable, "-m", "distnn.train", "--layers", "16,2000,4", "--batch-size", "8",
         "--no-progress", "--warmup-epochs", "0", "--commit-every", "0", "--schedule", "constant"]
SCRIPT = """
mount -t tmpfs -o size=512k tmpfs "$D" || exit 99
"$@" --checkpoint "$D/c.h5" --epochs 1 >/dev/null || exit 98
cp "$D/c.h5" kept.h5
"$@" --checkpoint "$D/c.h5" --epochs 3 --resume >/dev/null 2>one.err; echo "one $?"
for reduce in allreduce shm; do
    "$MPIRUN" -n 2 "$@" --checkpoint "$D/c.h5" --epochs 3 --resume --reduce $reduce \
        >/dev/null 2>$reduce.err
    echo "$reduce $?"
done
cmp -s "$D/c.h5" kept.h5 && echo "checkpoint unchanged"
echo "left: $(ls -A "$D")"
"""


def _idx_dir(directory: Path) -> Path:
    """Four IDX files of 120 small images, for prepare."""
    rng = np.random.default_rng(0)
    directory.mkdir()
    for (split, kind), n in {("train", "images"): 100, ("train", "labels"): 100,
                             ("test", "images"): 20, ("test", "labels"): 20}.items():
        array = (rng.integers(0, 256, (n, 4, 3), dtype=np.uint8) if kind == "images"
                 else (np.arange(n) % 10).astype(np.uint8))
        (directory / IDX_NAMES[split, kind]).write_bytes(idx_bytes(array))
    return directory


def _ended_in_one_line(tmp_path: Path, run: str, done: subprocess.CompletedProcess,
                       disk: Path) -> None:
    """Run ``run`` of the script ended with status 74 and the trainer's one line only."""
    assert f"{run} {EXIT_IOERR}\n" in done.stdout, (run, done.stdout, done.stderr)
    err = (tmp_path / f"{run}.err").read_text()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("distnn.train:")]
    assert errors == [f"distnn.train: cannot write {disk / 'c.h5'}: no space left on "
                      "device; the checkpoint of epoch 2, step 0 is kept; free some space "
                      "and rerun with --resume"], err


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if UNSHARE is None or MPIRUN is None:
        return "needs unshare (util-linux) and mpirun"
    if subprocess.run([UNSHARE, "--mount", "true"], capture_output=True).returncode != 0:
        return "unshare --mount is not allowed here"
    return None


@pytest.mark.time_limit(300)
def test_a_full_tmpfs_ends_the_run_in_one_line_and_keeps_its_checkpoint(tmp_path):
    why = _why_not()
    if why:
        pytest.skip(why)
    data = make_dataset(tmp_path / "d.h5", n_train=160, n_test=40)
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        [UNSHARE, "--mount", "sh", "-c", SCRIPT, "sh", *TRAIN, "--data", str(data)],
        env={**os.environ, "PYTHONPATH": str(REPO), "D": str(disk), "MPIRUN": MPIRUN},
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    out = done.stdout
    for run in ("one", "allreduce", "shm"):
        _ended_in_one_line(tmp_path, run, done, disk)
    assert "checkpoint unchanged" in out and "left: c.h5\n" in out, out  # no temporary file
    # Room again: the checkpoint kept goes on to where an uninterrupted run ends.
    shutil.copy(tmp_path / "kept.h5", tmp_path / "c.h5")
    for checkpoint, extra in (("c.h5", ["--resume"]), ("ref.h5", [])):
        subprocess.run([*TRAIN, "--data", str(data), "--checkpoint", checkpoint, "--epochs",
                        "3", *extra], check=True, capture_output=True, timeout=120,
                       cwd=tmp_path)
    assert np.array_equal(load_checkpoint(tmp_path / "c.h5").params,
                          load_checkpoint(tmp_path / "ref.h5").params)


# A small net, whose checkpoint (9.6 KB) HDF5 writes mostly as it flushes and closes the
# file. Seen with HDF5 2.0, before the fix: with 4 KB left the data is refused as it goes
# in (an OSError, one line already); with 8 KB, as a dataset is closed, where h5py can
# only print the error, and closing the file then crashed (SIGSEGV); with 12 KB, as the
# file is closed, where h5py raises a RuntimeError naming the errno ("Disable slist on
# flush dest failure failed (file write failed: ..., errno = 28, ...)"): a traceback.
SMALL = [sys.executable, "-m", "distnn.train", "--layers", "16,12,4", "--batch-size", "16",
         "--no-progress", "--warmup-epochs", "0", "--commit-every", "0"]
NEARLY_FULL = """
mount -t tmpfs -o size=512k tmpfs "$D" || exit 99
"$@" --checkpoint "$D/c.h5" --epochs 1 >/dev/null 2>&1 || exit 98
cp "$D/c.h5" kept.h5
for room in 4 8 12; do
    free=$(df -k --output=avail "$D" | tail -1)
    head -c $(( (free - room) * 1024 )) /dev/zero >"$D/fill"
    "$@" --checkpoint "$D/c.h5" --epochs 3 --resume >/dev/null 2>one-$room.err
    echo "one-$room $?"
    "$MPIRUN" -n 2 "$@" --checkpoint "$D/c.h5" --epochs 3 --resume >/dev/null 2>two-$room.err
    echo "two-$room $?"
    rm "$D/fill"
done
cmp -s "$D/c.h5" kept.h5 && echo "checkpoint unchanged"
cp "$D/c.h5" after.h5
for room in 4 8 12; do
    free=$(df -k --output=avail "$D" | tail -1)
    head -c $(( (free - room) * 1024 )) /dev/zero >"$D/fill"
    python -m distnn.data prepare --idx "$IDX" --out "$D/c.h5" >/dev/null 2>prepare-$room.err
    echo "prepare-$room $?"
    rm "$D/fill"
done
cmp -s "$D/c.h5" kept.h5 && echo "still unchanged"
for room in 4 8 12; do
    free=$(df -k --output=avail "$D" | tail -1)
    head -c $(( (free - room) * 1024 )) /dev/zero >"$D/fill"
    python -m distnn.predict kept.h5 rows.npy --out "$D/p.h5" >/dev/null 2>predict-$room.err
    echo "predict-$room $?"
    python -m distnn.data import rows.csv --task regression --out "$D/t.h5" >/dev/null \
        2>import-$room.err
    echo "import-$room $?"
    rm "$D/fill"
done
echo "left: $(ls -A "$D")"
"""


@pytest.mark.time_limit(300)
def test_a_write_refused_as_hdf5_closes_the_file_is_one_line_too(tmp_path):
    why = _why_not()
    if why:
        pytest.skip(why)
    data = make_dataset(tmp_path / "d.h5", n_train=160, n_test=40)
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).integers(0, 256, (2000, 16)))
    np.savetxt(tmp_path / "rows.csv", np.random.default_rng(1).normal(size=(40, 5)),
               delimiter=",", header="a,b,c,d,y", comments="")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        [UNSHARE, "--mount", "sh", "-c", NEARLY_FULL, "sh", *SMALL, "--data", str(data)],
        env={**os.environ, "PYTHONPATH": str(REPO), "D": str(disk), "MPIRUN": MPIRUN,
             "IDX": str(_idx_dir(tmp_path / "idx"))},
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    out = done.stdout
    for run in ("one-4", "two-4", "one-8", "two-8", "one-12", "two-12"):
        _ended_in_one_line(tmp_path, run, done, disk)
    assert "checkpoint unchanged" in out and "left: c.h5\n" in out, out
    # The data file prepare writes (here over the checkpoint, as a full disk does not care):
    # with 4 KB left HDF5 crashed as it closed the file, before distnn.writes.new_hdf5.
    for room in (4, 8, 12):
        assert f"prepare-{room} {EXIT_IOERR}\n" in out, (room, out)
        err = (tmp_path / f"prepare-{room}.err").read_text()
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert [line for line in err.splitlines() if "error" in line] == [
            f"distnn.data: error: cannot write {disk / 'c.h5'}: no space left on device; "
            "nothing was replaced; free some space and run it again"], err
    assert "still unchanged" in out, out
    # Predictions into HDF5 (80 KB): the same, where HDF5 crashed at close before new_hdf5.
    for room in (4, 8, 12):
        assert f"predict-{room} {EXIT_IOERR}\n" in out, (room, out)
        err = (tmp_path / f"predict-{room}.err").read_text()
        assert err == (f"distnn.predict: error: cannot write {disk / 'p.h5'}: no space left on "
                       "device; nothing was replaced; free some space\n"), err
        # ... and an imported table (HDF5 crashed at close before new_hdf5, status 139)
        assert f"import-{room} {EXIT_IOERR}\n" in out, (room, out)
        err = (tmp_path / f"import-{room}.err").read_text()
        assert err == (f"distnn.data: error: cannot write {disk / 't.h5'}: no space left on "
                       "device; nothing was replaced; free some space and run it again\n"), err
    assert read_checkpoint(tmp_path / "after.h5")["position"]["epoch"] == 1
    assert load_model(tmp_path / "after.h5").predict(np.zeros((2, 16))).shape == (2,)
