"""The trainer in one process: its pure pieces, its command line, its failure modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint, save_checkpoint
from distnn.comm import SerialComm
from distnn.config import Config, parse_args
from distnn.protocol import EXIT_INTERRUPTED
from distnn.train import run
from tests.support.stopping import StopAtStep, stop_after_an_epoch
from tests.support.synthetic import make_dataset

SMALL = ["--layers", "16,12,4", "--batch-size", "16", "--lr", "0.5", "--warmup-epochs", "0",
         "--no-progress"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "synthetic.h5")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distnn.train", *args], capture_output=True,
                          text=True, timeout=timeout)


def run_inprocess(argv: list[str]) -> int:
    cfg, given = parse_args(argv)
    return run(cfg, given, SerialComm())


# -- training in one process -------------------------------------------------------

def test_training_learns_and_checkpoints(data, tmp_path):
    ckpt, metrics = tmp_path / "c.h5", tmp_path / "m.jsonl"
    status = run_inprocess(["--data", str(data), "--checkpoint", str(ckpt), "--metrics",
                            str(metrics), "--epochs", "4", *SMALL])
    assert status == 0
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["config"]["epochs"] == 4
    epochs = [r for r in records if "epoch" in r and "cost" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["cost"] < epochs[0]["cost"]
    # An independent count of the checkpoint's predictions, not the trainer's figure.
    import h5py
    with h5py.File(data) as f:
        x, y = f["test/images"][()] / 255.0, f["test/labels"][()]
    net = load_checkpoint(ckpt)
    independent = float(np.mean(net.predict(x.astype(net.dtype)) == y))
    assert independent > 0.9  # 4 classes: chance is 0.25
    assert epochs[-1]["test_accuracy"] == pytest.approx(independent)
    assert read_checkpoint(ckpt)["position"] == {"epoch": 4, "step": 0, "steps": 30,
                                                 "epoch_cost": 0.0, "ranks": 1}


# Every regulariser at once: masks and distortions drawn each step, max-norm after it.
# Mild, for 4x4 images: a whole-pixel shift would be a quarter of the image.
REGULARISED = ["--dropout", "0.2", "--input-dropout", "0.1", "--max-norm", "1.5",
               "--augment", "rotate=5,scale=0.05,elastic=0.3,sigma=1"]


@pytest.mark.parametrize("extra", [[], REGULARISED], ids=["plain", "regularised"])
def test_resume_after_interrupt_equals_uninterrupted_bitwise(data, tmp_path, extra):
    args = ["--data", str(data), "--epochs", "3", "--momentum", "0.9", *SMALL, *extra]
    assert run_inprocess([*args, "--checkpoint", str(tmp_path / "full.h5")]) == 0

    cfg, given = parse_args([*args, "--checkpoint", str(tmp_path / "cut.h5")])
    stop = StopAtStep(40)  # the 40th step, of 30 an epoch: stopped at epoch 2, step 10
    assert run(cfg, given, SerialComm(), stop=stop) == EXIT_INTERRUPTED
    assert read_checkpoint(tmp_path / "cut.h5")["position"]["step"] == 10
    assert run_inprocess([*args, "--checkpoint", str(tmp_path / "cut.h5"), "--resume"]) == 0
    full = load_checkpoint(tmp_path / "full.h5").params
    resumed = load_checkpoint(tmp_path / "cut.h5").params
    assert np.array_equal(full, resumed)


def test_a_checkpoint_from_before_partitions_resumes_with_its_own_order(data, tmp_path):
    """A checkpoint whose settings name no partitions (distnn before them) resumes with
    one partition per rank that wrote it, the order it was written with: as the same
    checkpoint naming --partitions 1 does, and unlike the one naming 16."""
    args = ["--data", str(data), "--epochs", "2", "--momentum", "0.9", *SMALL]
    first = tmp_path / "first.h5"
    assert run_inprocess([*args, "--epochs", "1", "--checkpoint", str(first)]) == 0
    saved = read_checkpoint(first)
    assert saved["config"]["partitions"] == 16  # the default here: 64, at most m
    ends = {}
    for name, partitions in (("old", None), ("one", 1), ("sixteen", 16)):
        config = {k: v for k, v in saved["config"].items() if k != "partitions"}
        if partitions:
            config["partitions"] = partitions
        path = tmp_path / f"{name}.h5"
        save_checkpoint(path, load_checkpoint(first), saved["optimizer"], config,
                        saved["position"])
        assert run_inprocess([*args, "--checkpoint", str(path), "--resume"]) == 0
        ends[name] = read_checkpoint(path)
    assert ends["old"]["config"]["partitions"] == 1  # the one rank that wrote it
    assert np.array_equal(ends["old"]["params"], ends["one"]["params"])
    assert not np.array_equal(ends["old"]["params"], ends["sixteen"]["params"])


def test_partitions_are_kept_on_resume(data, tmp_path, capsys):
    args = ["--data", str(data), "--epochs", "1", *SMALL, "--checkpoint", str(tmp_path / "c.h5")]
    assert run_inprocess(args) == 0
    done = run_cli(*args, "--epochs", "2", "--resume", "--partitions", "4")
    assert done.returncode == 2
    assert "--partitions 4 differs from the checkpoint's 16" in done.stderr


class CrashAtStep:
    """A rank that dies at the given step (counted over the run): no checkpoint of its own."""

    def __init__(self, step: int) -> None:
        self.step, self.calls = step, 0

    @property
    def requested(self) -> bool:
        self.calls += 1
        if self.calls == self.step:
            raise RuntimeError("crashed")
        return False


@pytest.mark.parametrize("every,crash,committed", [("7", 45, (1, 14)), ("7", 35, (1, 0)),
                                                   ("0", 45, (1, 0))])
def test_a_crash_costs_the_steps_since_the_last_commit_and_the_resume_is_exact(
        data, tmp_path, every, crash, committed):
    """30 steps an epoch; --commit-every 7 writes after steps 7, 14, 21, 28 of each. A
    crash at the run's 45th step (epoch 2, step 15) leaves epoch 2's commit of step 14;
    at its 35th, the end of epoch 1 (step 28's commit is older). Resumed, the run ends
    bitwise where an uninterrupted one does."""
    args = ["--data", str(data), "--epochs", "3", "--momentum", "0.9", *SMALL]
    whole, cut = tmp_path / "whole.h5", tmp_path / "cut.h5"
    assert run_inprocess([*args, "--checkpoint", str(whole)]) == 0
    cfg, given = parse_args([*args, "--commit-every", every, "--checkpoint", str(cut)])
    with pytest.raises(RuntimeError, match="crashed"):
        run(cfg, given, SerialComm(), stop=CrashAtStep(crash))
    position = read_checkpoint(cut)["position"]
    assert (position["epoch"], position["step"]) == committed
    redone = crash - 1 - (30 * position["epoch"] + position["step"])  # steps done, then lost
    assert 0 <= redone <= (int(every) or 30)
    assert run_inprocess([*args, "--checkpoint", str(cut), "--resume"]) == 0
    assert np.array_equal(load_checkpoint(cut).params, load_checkpoint(whole).params)


def test_regularised_training_learns_within_its_constraint(data, tmp_path):
    base = ["--data", str(data), "--epochs", "4", *SMALL, "--lr", "0.1"]  # 0.5 is for no noise
    assert run_inprocess([*base, "--checkpoint", str(tmp_path / "plain.h5")]) == 0
    assert run_inprocess([*base, *REGULARISED, "--checkpoint", str(tmp_path / "reg.h5")]) == 0
    plain, reg = load_checkpoint(tmp_path / "plain.h5"), load_checkpoint(tmp_path / "reg.h5")
    assert not np.allclose(plain.params, reg.params)  # the flags change the training
    norms = np.linalg.norm(reg.weights[0].astype(np.float64), axis=1)
    assert norms.max() <= 1.5 * (1 + 1e-5)  # every hidden unit within the max-norm
    assert np.linalg.norm(plain.weights[0], axis=1).max() > 1.5  # ... which binds here
    import h5py
    with h5py.File(data) as f:
        x, y = f["test/images"][()] / 255.0, f["test/labels"][()]
    assert np.mean(reg.predict(x.astype(reg.dtype)) == y) > 0.9  # the whole net, no dropout


def test_resume_refuses_a_changed_setting(data, tmp_path):
    ckpt = str(tmp_path / "c.h5")
    assert run_inprocess(["--data", str(data), "--checkpoint", ckpt, "--epochs", "1",
                          *SMALL]) == 0
    result = run_cli("--data", str(data), "--checkpoint", ckpt, "--resume", "--epochs", "2",
                     *SMALL[:-3], "--lr", "0.1")
    assert result.returncode == 2
    assert "--lr 0.1 differs from the checkpoint's 0.5" in result.stderr
    assert "Traceback" not in result.stderr
    fresh = run_cli("--data", str(data), "--checkpoint", ckpt, "--epochs", "1", *SMALL)
    assert fresh.returncode == 0
    assert f"its first checkpoint will replace {ckpt}" in fresh.stderr


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    ckpt = tmp_path / "c.h5"
    # lr is fine for epoch 1, then the step schedule multiplies it by 1e30.
    result = run_cli("--data", str(data), "--checkpoint", str(ckpt), "--epochs", "3",
                     "--schedule", "step", "--step-epochs", "1", "--gamma", "1e30",
                     "--momentum", "0", "--activation", "relu", *SMALL)
    assert result.returncode == 1
    assert "training cost became" in result.stderr and "Traceback" not in result.stderr
    assert read_checkpoint(ckpt)["position"]["epoch"] == 1
    assert np.all(np.isfinite(load_checkpoint(ckpt).params))


# -- the command line ------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--layers", "784,x,10"], "'x' is not a layer"),
    (["--layers", "784"], "a network needs an input and an output layer"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--activation", "swish"], "invalid choice"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--input-dropout", "nan"], "--input-dropout must be in [0, 1)"),
    (["--max-norm", "inf"], "--max-norm must be >= 0"),
    (["--augment", "twist=3"], "--augment 'twist=3': expected KEY=VALUE"),
])
def test_bad_arguments_get_one_clear_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_data_that_does_not_fit_the_network_is_refused(data, tmp_path):
    result = run_cli("--data", str(data), "--checkpoint", str(tmp_path / "c.h5"),
                     "--layers", "784,30,10")
    assert result.returncode == 2
    assert "has 16 features and 4 classes" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "c.h5").exists()


def test_augmenting_images_that_are_not_2d_is_refused(tmp_path):
    flat = make_dataset(tmp_path / "flat.h5", shape=(16,))
    result = run_cli("--data", str(flat), "--checkpoint", str(tmp_path / "c.h5"),
                     "--augment", "shift=1", *SMALL)
    assert result.returncode == 2
    assert "--augment needs images (h, w) or (c, h, w); the data's image_shape is (16,)" \
        in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "c.h5").exists()


def test_missing_data_file_is_a_clear_error(tmp_path):
    result = run_cli("--data", str(tmp_path / "nope.h5"), "--checkpoint", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "data file not found" in result.stderr and "Traceback" not in result.stderr


def test_help_explains_the_job():
    result = run_cli("--help")
    assert result.returncode == 0
    for phrase in ("--batch-size", "global mini-batch", "--resume", "DISTNN_THREADS", "75"):
        assert phrase in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_checkpoints_and_resume_finishes(data, tmp_path, sig):
    ckpt = tmp_path / "c.h5"
    args = ["--data", str(data), "--checkpoint", str(ckpt), *SMALL, "--batch-size", "4",
            "--layers", "16,400,400,4"]
    position = stop_after_an_epoch([sys.executable, "-m", "distnn.train", *args, "--epochs",
                                    "1000"], sig, ckpt)
    done = position["epoch"]
    result = run_cli(*args, "--epochs", str(done + 1), "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming {ckpt} at epoch {done + 1}" in result.stdout
    assert read_checkpoint(ckpt)["position"]["epoch"] == done + 1


def test_config_round_trips_through_a_dict():
    cfg = Config(layers=[3, 2], lr=0.25, nesterov=True)
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_threads_policy():
    from distnn.threads import blas_threads
    assert blas_threads(4, environ={}, allowed_cpus=8, node_cpus=8) == 2
    assert blas_threads(4, environ={}, allowed_cpus=1, node_cpus=8) == 1  # bound to one core
    assert blas_threads(16, environ={}, allowed_cpus=8, node_cpus=8) == 1
    assert blas_threads(4, environ={"OMP_NUM_THREADS": "3"}, allowed_cpus=8, node_cpus=8) is None
    assert blas_threads(4, environ={"DISTNN_THREADS": "3"}, allowed_cpus=8, node_cpus=8) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="DISTNN_THREADS must be a positive integer"):
            blas_threads(1, environ={"DISTNN_THREADS": bad})


def test_bad_threads_setting_is_one_clear_error(data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "distnn.train", "--data", str(data)],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, DISTNN_THREADS="two"))
    assert result.returncode == 2
    assert "DISTNN_THREADS must be a positive integer, not 'two'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_forwarded_duplicate_signal_is_not_a_second_request():
    import distnn.train
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = distnn.train.StopRequest()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # the same Ctrl-C, forwarded by mpirun
        assert stop.requested
        stop._first -= stop.REPEAT_SECONDS  # a person pressing Ctrl-C again, later
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
