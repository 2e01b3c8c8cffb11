"""Where a run writes: only where its command line says, one run at a time, with the
user's umask, and a full disk costs no checkpoint (the refusals are in
test_hostile_inputs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from distnn.checkpoint import read_checkpoint
from distnn.outputs import Lock, OutputError, check_not_input
from tests.support.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["--layers", "16,12,4", "--batch-size", "8", "--no-progress", "--warmup-epochs", "0"]


def _train(*args: str, cwd: Path, env: dict | None = None,
           umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distnn.train", *TRAIN, *args], cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True, text=True, timeout=120,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data.h5")


def test_a_tampered_checkpoint_cannot_choose_where_the_run_writes(data, tmp_path):
    """Its stored settings name other files: the resumed run writes to the ones its
    command line names (and keeps no metrics it was not asked for)."""
    ckpt = tmp_path / "c.h5"
    assert _train("--data", str(data), "--checkpoint", str(ckpt), "--epochs", "1",
                  cwd=tmp_path).returncode == 0
    victims = {name: tmp_path / name for name in ("victim.h5", "victim.jsonl")}
    for path in victims.values():
        path.write_text("the user's own file\n")
    with h5py.File(ckpt, "r+") as f:  # an old (version 2) file: no checksum to mend
        config = json.loads(f.attrs["config"])
        config.update(checkpoint=str(victims["victim.h5"]), metrics=str(victims["victim.jsonl"]))
        f.attrs["config"] = json.dumps(config)
        f.attrs["version"] = 2
        del f.attrs["checksum"]
    done = _train("--data", str(data), "--checkpoint", str(ckpt), "--resume", "--epochs", "2",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for path in victims.values():
        assert path.read_text() == "the user's own file\n"
    assert read_checkpoint(ckpt)["position"]["epoch"] == 2  # written where it was told
    assert read_checkpoint(ckpt)["config"]["checkpoint"] == str(ckpt)


def test_files_keep_the_users_umask(data, tmp_path):
    done = _train("--data", str(data), "--checkpoint", str(tmp_path / "c.h5"), "--epochs", "1",
                  "--metrics", str(tmp_path / "m.jsonl"), cwd=tmp_path, umask=0o027)
    assert done.returncode == 0, done.stderr
    for name in ("c.h5", "m.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    prepared = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o077); "
         "from tests.support.synthetic import make_dataset; make_dataset(sys.argv[1])",
         str(tmp_path / "d.h5")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert prepared.returncode == 0, prepared.stderr
    assert (tmp_path / "d.h5").stat().st_mode & 0o777 == 0o600


def _holder(lock: Path, job: str | None = None) -> subprocess.Popen:
    """A stand-in for another run: it takes the lock as a run does, and waits."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SLURM_JOB_ID", None)
    env.pop("PBS_JOBID", None)
    if job:
        env["SLURM_JOB_ID"] = job
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom distnn.outputs import Lock\n"
         "Lock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)",
         str(lock)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_a_lock_names_its_run_and_is_free_once_that_run_is_gone(tmp_path):
    ckpt = str(tmp_path / "c.h5")
    holder = _holder(tmp_path / "c.h5")
    try:
        with pytest.raises(OutputError, match=rf"being written by another run \(pid "
                                              rf"{holder.pid} on \S+ since"):
            Lock(ckpt).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays
        holder.wait()
    assert Path(ckpt + ".lock").exists()
    mine = Lock(ckpt)
    mine.acquire()  # the kernel dropped the dead run's flock
    assert json.loads(Path(ckpt + ".lock").read_text())["pid"] == os.getpid()
    mine.release()
    assert not Path(ckpt + ".lock").exists()


def test_a_requeued_job_takes_its_own_lock_and_take_lock_goes_on(tmp_path, monkeypatch, capsys):
    ckpt = str(tmp_path / "c.h5")
    holder = _holder(tmp_path / "c.h5", job="4711")
    try:
        monkeypatch.setenv("SLURM_JOB_ID", "4712")
        with pytest.raises(OutputError, match="batch job 4711"):
            Lock(ckpt).acquire()
        monkeypatch.setenv("SLURM_JOB_ID", "4711")  # the same job, requeued on another host
        Lock(ckpt).acquire()
        monkeypatch.setenv("SLURM_JOB_ID", "4712")
        Lock(ckpt).acquire(take=True)
        assert "--take-lock: writing" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_a_second_run_on_the_same_checkpoint_refuses(data, tmp_path):
    ckpt = tmp_path / "c.h5"
    holder = _holder(ckpt)
    try:
        done = _train("--data", str(data), "--checkpoint", str(ckpt), "--epochs", "1",
                      cwd=tmp_path)
        assert done.returncode == 2 and "being written by another run" in done.stderr
        assert not ckpt.exists()
        done = _train("--data", str(data), "--checkpoint", str(ckpt), "--epochs", "1",
                      "--take-lock", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert ckpt.exists()
    finally:
        holder.kill()
        holder.wait()


def test_without_flock_the_run_goes_on_and_says_so(tmp_path, monkeypatch, capsys):
    """Lustre without -o flock answers flock() with ENOSYS: no lock, but no refusal."""
    import errno
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = Lock(str(tmp_path / "c.h5"))
    lock.acquire()
    assert "going on without a lock" in capsys.readouterr().err
    lock.release()  # holds nothing: nothing to do


# -- an output that is an input ------------------------------------------------------------

def _refusal(out: Path, source: Path) -> str | None:
    try:
        check_not_input([("--out", out)], [("the rows it reads", source), ("nothing", None)])
    except OutputError as err:
        return str(err)
    return None


def test_an_output_that_is_an_input_by_any_name_is_refused(tmp_path, monkeypatch):
    """The same inode (st_dev, st_ino, asked of os.stat here) is the same file, whatever
    path reaches it; the message names the output as given."""
    source = tmp_path / "x.csv"
    source.write_text("1,2\n")
    (tmp_path / "link.csv").symlink_to(source)
    (tmp_path / "hard.csv").hardlink_to(source)
    (tmp_path / "dir").symlink_to(tmp_path)
    monkeypatch.chdir(tmp_path)
    for out in (source, Path("x.csv"), Path("./x.csv"), tmp_path / "link.csv",
                tmp_path / "hard.csv", tmp_path / "dir" / "x.csv"):
        found = os.stat(out)
        assert (found.st_dev, found.st_ino) == (source.stat().st_dev, source.stat().st_ino)
        assert _refusal(out, source) == f"--out {out} is the rows it reads; give another path"
    # the input a link to the output's path: replacing the output would change it
    assert _refusal(source, tmp_path / "link.csv") is not None


def test_other_files_are_not_inputs(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("1,2\n")
    (tmp_path / "copy.csv").write_text("1,2\n")  # the same bytes, another file
    assert _refusal(tmp_path / "copy.csv", source) is None
    assert _refusal(tmp_path / "new.h5", source) is None  # not there yet
    assert _refusal(tmp_path / "x.csv.h5", source) is None
    check_not_input([("--metrics", None)], [("the data", source)])  # not given: no file


def test_an_output_not_there_yet_is_compared_by_its_resolved_path(tmp_path):
    """Neither file exists (an input missing is refused later, by its reader): the paths,
    with symlinks resolved, decide."""
    (tmp_path / "dir").symlink_to(tmp_path)
    assert _refusal(tmp_path / "dir" / "y.npy", tmp_path / "y.npy") is not None
    assert _refusal(tmp_path / "no" / ".." / "y.npy", tmp_path / "y.npy") is not None
    assert _refusal(tmp_path / "z.npy", tmp_path / "y.npy") is None
