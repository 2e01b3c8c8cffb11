"""A full disk, a quota, a read-only file system: one line, a status that says so, the last
good checkpoint kept (issue 28). Each write site of a run is refused in-process with each
errno (tests/support/full_disk.py); tests/mpi/test_full_disk_mpi.py does the same on 2
ranks, and tests/unit/test_outputs.py on a real full tmpfs.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint, load_model
from distnn.checkpoint import read_checkpoint
from distnn.comm import SerialComm
from distnn.protocol import EXIT_INTERRUPTED, EXIT_IOERR
from distnn.train import main
from distnn.writes import WriteFailed, append, new_hdf5, writing
from tests.support.full_disk import (ERRNOS, IDS, close_failure, refusal,
                                    refuse_checkpoint_closes, refuse_checkpoints)
from tests.support.stopping import StopAtStep
from tests.support.synthetic import make_dataset

SMALL = ["--layers", "16,12,4", "--batch-size", "16", "--lr", "0.5", "--warmup-epochs", "0",
         "--no-progress", "--momentum", "0.9"]
WORDS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "read-only file system", errno.EIO: "input/output error",
         errno.EACCES: "permission denied"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "d.h5", n_train=160, n_test=40)


def train(tmp_path: Path, data: Path, *extra: str) -> int:
    return main(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"), *SMALL,
                 *extra], SerialComm())


def uninterrupted(tmp_path: Path, data: Path, epochs: int) -> np.ndarray:
    assert main(["--data", str(data), "--checkpoint", str(tmp_path / "ref.h5"), *SMALL,
                 "--epochs", str(epochs)], SerialComm()) == 0
    return load_checkpoint(tmp_path / "ref.h5").params


def error_lines(err: str) -> list[str]:
    """stderr's lines, but this machine's BLAS warning (distnn.blas), which is not the run's."""
    return [line for line in err.splitlines() if line.strip() and "OpenBLAS runs its" not in line]


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or
                  p.name.endswith(".lock"))


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_the_epochs_checkpoint_refused_stops_the_run_in_one_line(err, data, tmp_path,
                                                                 monkeypatch, capsys):
    """Epoch 1's checkpoint is written, epoch 2's refused: status 74, one line naming
    the file, the reason and the checkpoint kept; that checkpoint resumes bitwise."""
    refused = refuse_checkpoints(monkeypatch, err, lambda position: position["epoch"] == 2)
    assert train(tmp_path, data, "--epochs", "3", "--commit-every", "0") == EXIT_IOERR
    assert refused == [{"epoch": 2, "step": 0, "steps": 10, "epoch_cost": 0.0, "ranks": 1}]
    [line] = error_lines(capsys.readouterr().err)
    assert line == (f"distnn.train: cannot write {tmp_path / 'c.h5'}: {WORDS[err]}; the "
                    "checkpoint of epoch 2, step 0 is kept; ") + line.split("is kept; ")[1]
    assert line.endswith("and rerun with --resume")
    assert leftovers(tmp_path) == []  # no temporary file, and the lock released
    assert read_checkpoint(tmp_path / "c.h5")["position"]["epoch"] == 1
    monkeypatch.undo()  # room again
    assert train(tmp_path, data, "--epochs", "3", "--commit-every", "0", "--resume") == 0
    assert np.array_equal(load_checkpoint(tmp_path / "c.h5").params,
                          uninterrupted(tmp_path, data, 3))


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_a_checkpoint_refused_as_hdf5_closes_it_is_the_same_line(err, data, tmp_path,
                                                                 monkeypatch, capsys):
    """h5py says so with a RuntimeError naming the errno, not an OSError: the same one
    line and status, and the checkpoint of epoch 1 kept, whole."""
    refused = refuse_checkpoint_closes(monkeypatch, err, lambda position: position["epoch"] == 2)
    assert train(tmp_path, data, "--epochs", "3", "--commit-every", "0") == EXIT_IOERR
    assert [position["epoch"] for position in refused] == [2]
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Exception ignored" not in captured.err
    [line] = error_lines(captured.err)
    assert line == (f"distnn.train: cannot write {tmp_path / 'c.h5'}: {WORDS[err]}; the "
                    "checkpoint of epoch 2, step 0 is kept; ") + line.split("is kept; ")[1]
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "c.h5")["position"]["epoch"] == 1
    assert load_model(tmp_path / "c.h5").predict(np.zeros((3, 16))).shape == (3,)


def test_a_refused_first_checkpoint_says_none_is_kept(data, tmp_path, monkeypatch, capsys):
    refuse_checkpoints(monkeypatch, errno.ENOSPC)
    assert train(tmp_path, data, "--epochs", "2") == EXIT_IOERR
    [line] = error_lines(capsys.readouterr().err)
    assert f"no checkpoint of this run is in {tmp_path / 'c.h5'} yet" in line
    assert line.endswith("free some space and rerun")  # not --resume: nothing to resume
    assert not (tmp_path / "c.h5").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_a_refused_commit_warns_once_and_training_goes_on(err, data, tmp_path, monkeypatch,
                                                          capsys):
    """Commits every 3 steps, each refused; the epochs' checkpoints are written: one
    warning, and the run ends where an uninterrupted one does."""
    refused = refuse_checkpoints(monkeypatch, err, lambda position: position["step"] != 0)
    assert train(tmp_path, data, "--epochs", "2", "--commit-every", "3") == 0
    assert len(refused) == 6  # steps 3, 6 and 9 of each epoch
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"distnn: warning: cannot write {tmp_path / 'c.h5'}: {WORDS[err]}; "
                           "the commit of epoch 1, step 3 is skipped and no checkpoint")
    assert line.endswith("training goes on, and the next commit tries again")
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert np.array_equal(load_checkpoint(tmp_path / "c.h5").params,
                          uninterrupted(tmp_path, data, 2))


def test_commits_written_again_once_there_is_room(data, tmp_path, monkeypatch, capsys):
    refuse_checkpoints(monkeypatch, errno.EDQUOT,
                       lambda position: (position["epoch"], position["step"]) == (0, 3))
    assert train(tmp_path, data, "--epochs", "1", "--commit-every", "3") == 0
    err = capsys.readouterr().err
    assert "the commit of epoch 1, step 3 is skipped" in err
    assert "note: commits are written again" in err


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_a_refused_lock_stops_before_training(err, data, tmp_path, monkeypatch, capsys):
    def pwrite(fd, data, offset):
        raise refusal(err)

    monkeypatch.setattr(os, "pwrite", pwrite)
    assert train(tmp_path, data, "--epochs", "1") == EXIT_IOERR
    [line] = error_lines(capsys.readouterr().err)
    assert line == (f"distnn.train: cannot write {tmp_path / 'c.h5'}.lock: {WORDS[err]}; no "
                    "checkpoint was written; ") + line.split("was written; ")[1]
    assert leftovers(tmp_path) == [] and not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_a_refused_metrics_line_is_kept_and_written_later(err, data, tmp_path, monkeypatch,
                                                          capsys):
    """The metrics file takes nothing during epoch 1, then room comes back: one warning,
    one note, training unaffected, and every record in the file in the end."""
    import distnn.log

    refusing = [True]

    def flaky_append(path, text):
        if refusing[0]:
            raise WriteFailed.of(path, refusal(err))
        append(path, text)

    monkeypatch.setattr(distnn.log, "append", flaky_append)
    metrics = tmp_path / "m.jsonl"
    real_epoch = distnn.log.RunLog.epoch

    def epoch(self, record):
        real_epoch(self, record)
        refusing[0] = False  # the disk has room again after epoch 1's record

    monkeypatch.setattr(distnn.log.RunLog, "epoch", epoch)
    assert train(tmp_path, data, "--epochs", "3", "--metrics", str(metrics)) == 0
    lines = error_lines(capsys.readouterr().err)
    assert lines[0] == (f"distnn: warning: cannot write {metrics}: {WORDS[err]}; training goes "
                        "on, and its records are kept until --metrics takes them again")
    assert lines[1].startswith(f"distnn: note: {metrics} takes records again") and len(lines) == 2
    import json
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    records = [r for r in records if r.get("event") != "ranks"]  # where the ranks' time went
    assert [r.get("epoch") for r in records] == [0, 1, 2, 3]  # start, then the epochs
    monkeypatch.undo()
    assert np.array_equal(load_checkpoint(tmp_path / "c.h5").params,
                          uninterrupted(tmp_path, data, 3))


def test_a_stop_while_the_disk_is_full_names_the_last_good_checkpoint(data, tmp_path,
                                                                      monkeypatch, capsys):
    """SIGTERM (here: the stop it sets) in epoch 2, whose stop checkpoint is refused."""
    from distnn.config import parse_args
    from distnn.train import run

    refuse_checkpoints(monkeypatch, errno.ENOSPC, lambda position: position["epoch"] >= 1
                       and position["step"] > 0)
    cfg, given = parse_args(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"),
                             *SMALL, "--epochs", "3", "--commit-every", "0"])
    with pytest.raises(WriteFailed) as failed:
        run(cfg, given, SerialComm(), stop=StopAtStep(14))  # epoch 2, step 4
    assert str(failed.value) == (f"cannot write {tmp_path / 'c.h5'}: no space left on device; "
                                 "the checkpoint of epoch 2, step 0 is kept")
    assert failed.value.remedy == "free some space and rerun with --resume"
    assert read_checkpoint(tmp_path / "c.h5")["position"]["epoch"] == 1
    assert leftovers(tmp_path) == []
    capsys.readouterr()


def test_without_refusals_a_stop_still_checkpoints(data, tmp_path):
    """The control: the same stop with room writes its checkpoint and exits 75."""
    from distnn.config import parse_args
    from distnn.train import run

    cfg, given = parse_args(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"),
                             *SMALL, "--epochs", "3", "--commit-every", "0"])
    assert run(cfg, given, SerialComm(), stop=StopAtStep(14)) == EXIT_INTERRUPTED
    assert read_checkpoint(tmp_path / "c.h5")["position"]["step"] == 4


# -- the writes themselves ---------------------------------------------------------------

@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_writing_names_the_file_and_the_reason(err, tmp_path):
    with pytest.raises(WriteFailed) as failed, writing(tmp_path / "f"):
        raise refusal(err)
    assert str(failed.value) == f"cannot write {tmp_path / 'f'}: {WORDS[err]}"
    assert failed.value.remedy and failed.value.remedy != WriteFailed("x").remedy


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_an_errno_in_h5pys_runtime_error_is_the_refusal_it_names(err, tmp_path):
    with pytest.raises(WriteFailed) as failed, writing(tmp_path / "f"):
        raise close_failure(err)
    assert str(failed.value) == f"cannot write {tmp_path / 'f'}: {WORDS[err]}"
    assert failed.value.remedy == WriteFailed.of("f", refusal(err)).remedy


@pytest.mark.parametrize("message", [
    "Can't decrement id ref count (can't close file, there are objects still open)",
    "Disable slist on flush dest failure failed (errno = 0)",
    "dictionary changed size during iteration"])
def test_a_runtime_error_without_an_errno_stays_a_bug(message, tmp_path):
    with pytest.raises(RuntimeError, match="^" + message[:20]), writing(tmp_path / "f"):
        raise RuntimeError(message)


def test_what_h5py_prints_from_a_dealloc_is_quiet_while_writing(tmp_path, capsys,
                                                                 monkeypatch):
    """Cython reports an error it cannot raise twice: a traceback through sys.excepthook,
    then "Exception ignored in" through sys.unraisablehook. Neither shows while writing;
    both hooks are the ones before again after. (Hooks of the test's own, which hear
    everything: pytest's would turn what they hear into a warning, not stderr.)"""
    import sys

    class Dataset:
        def __del__(self):
            raise close_failure(errno.ENOSPC)

    heard: list = []
    monkeypatch.setattr(sys, "unraisablehook", heard.append)
    monkeypatch.setattr(sys, "excepthook", lambda *exc: heard.append(exc))
    hooks = sys.excepthook, sys.unraisablehook
    with pytest.raises(WriteFailed), writing(tmp_path / "f"):
        try:
            raise close_failure(errno.ENOSPC)
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
        Dataset()
        raise refusal(errno.ENOSPC)
    assert capsys.readouterr().err == "" and heard == []
    assert (sys.excepthook, sys.unraisablehook) == hooks


def test_a_failed_files_objects_in_cycles_are_dropped_quietly(tmp_path, monkeypatch):
    """h5py's objects of the failed file that are already garbage, but in a reference
    cycle, complain when the collector finds them: inside writing(), where it is quiet,
    not at some later collection. The collector is off meanwhile: only writing()
    collects."""
    import gc
    import sys

    class Dataset:
        def __init__(self):
            self.me = self

        def __del__(self):
            raise close_failure(errno.ENOSPC)

    def write():
        Dataset()  # dropped at once, but its cycle keeps it until a collection
        raise refusal(errno.ENOSPC)

    heard: list = []
    monkeypatch.setattr(sys, "unraisablehook", heard.append)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(WriteFailed) as failed, writing(tmp_path / "f"):
            write()
        del failed
        gc.collect()  # what writing() left behind complains now
    finally:
        gc.enable()
    assert heard == []


@pytest.mark.parametrize("chunks", [None, True], ids=["contiguous", "chunked"])
def test_new_hdf5_writes_each_write_when_it_is_made(tmp_path, chunks):
    """The bytes of an assignment are in the file before it is closed (so a refusal is
    raised by the assignment); h5py's own File holds them back, the control."""
    import h5py

    pattern = np.frombuffer(b"distnn-held-back" * 4, np.uint8)
    for name, opener, written in (("h5py.h5", lambda p: h5py.File(p, "w"), False),
                                  ("new.h5", new_hdf5, True)):
        with opener(tmp_path / name) as f:
            dataset = f.create_dataset("x", (64,), np.uint8, chunks=chunks)
            dataset[:] = pattern  # open still: h5py would write what it held back on closing
            assert (pattern.tobytes() in (tmp_path / name).read_bytes()) is written, name
        assert pattern.tobytes() in (tmp_path / name).read_bytes()


def test_an_append_that_fails_halfway_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    append(path, '{"a": 1}\n')
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, data[:4])  # part of it fits ...
        raise refusal(errno.ENOSPC)  # ... then the disk is full

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(WriteFailed):
        append(path, '{"b": 2}\n')
    with pytest.raises(WriteFailed):
        append(tmp_path / "new.jsonl", '{"c": 3}\n')
    monkeypatch.undo()
    assert path.read_text() == '{"a": 1}\n'
    assert not (tmp_path / "new.jsonl").exists()  # no empty file it made


# -- the other commands' outputs -----------------------------------------------------------

def test_prepare_refused_is_one_line_and_keeps_the_old_file(make_idx_dir, tmp_path, monkeypatch,
                                                            capsys):
    import h5py

    from distnn.data.__main__ import main as data_main

    directory, _ = make_idx_dir()
    out = tmp_path / "out.h5"
    assert data_main(["prepare", "--out", str(out), "--idx", str(directory)]) == 0
    before = out.read_bytes()
    real = h5py.Group.create_dataset

    def full(self, name, *args, **kwargs):
        if name == "labels":  # the images went in; the disk is full by the labels
            raise refusal(errno.ENOSPC)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    capsys.readouterr()
    assert data_main(["prepare", "--out", str(out), "--idx", str(directory),
                      "--seed", "1"]) == EXIT_IOERR
    err = capsys.readouterr().err  # its progress lines, then one error
    [line] = [line for line in error_lines(err) if "error" in line]
    assert "Traceback" not in err
    assert line.startswith(f"distnn.data: error: cannot write {out}: no space left on device; "
                           "nothing was replaced")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()
                                                 if p.name.startswith("out")) == ["out.h5"]


def test_a_plot_refused_is_one_line(data, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from distnn.plot import main as plot_main

    metrics = tmp_path / "m.jsonl"
    assert train(tmp_path, data, "--epochs", "2", "--metrics", str(metrics)) == 0

    def savefig(self, *args, **kwargs):
        raise refusal(errno.EROFS)

    monkeypatch.setattr(Figure, "savefig", savefig)
    capsys.readouterr()
    assert plot_main([str(metrics)]) == EXIT_IOERR
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"distnn.plot: error: cannot write {tmp_path / 'm.png'}: read-only "
                           "file system; nothing was replaced")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("m.png")]


def test_benchmark_results_refused_are_one_line_after_the_report(tmp_path, monkeypatch, capsys):
    """The measurements are printed before they are written: a full disk loses no figure."""
    import distnn.bench.__main__ as bench

    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/mpirun")
    monkeypatch.setattr(bench, "run", lambda cfg: {"measured": True})
    monkeypatch.setattr(bench.report, "markdown", lambda data: "| the figures |")
    monkeypatch.setattr(Path, "write_text", lambda self, text: (_ for _ in ()).throw(
        refusal(errno.EDQUOT)))
    with pytest.raises(SystemExit) as exited:
        bench.main(["--smoke", "--out", str(tmp_path / "out")])
    assert exited.value.code == EXIT_IOERR
    captured = capsys.readouterr()
    assert "| the figures |" in captured.out
    [line] = error_lines(captured.err)
    assert line.startswith(f"distnn.bench: error: cannot write {tmp_path / 'out' / 'results.json'}"
                           ": disk quota exceeded; free some of your quota")
    assert list((tmp_path / "out").iterdir()) == []
