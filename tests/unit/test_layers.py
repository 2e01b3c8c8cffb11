"""The network's ends from the data file: --hidden, --layers, both, a resume, and MNIST's
default run unchanged by it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distnn import load_checkpoint
from distnn.checkpoint import read_checkpoint
from distnn.comm import SerialComm
from distnn.config import Config, build_parser, merge_resumed, parse_args
from distnn.data.friedman import make_friedman
from distnn.start import Start, UsageError, agree_on_start
from distnn.train import run
from tests.support.synthetic import make_dataset

FAST = ["--batch-size", "16", "--epochs", "1", "--no-progress", "--commit-every", "0"]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "t.h5", shape=(16,), n_classes=4)  # 16 features, 4 classes


def start(argv: list[str]) -> Start:
    """What rank 0 makes of ``argv`` before training (its lock released again)."""
    cfg, given = parse_args(argv)
    begun, mine = agree_on_start(SerialComm(), cfg, given)
    mine.lock.release()
    return begun


@pytest.mark.parametrize("flags,layers,origin", [
    ([], [16, 256, 4], "16 features and 4 classes from {data}, hidden 256"),
    (["--hidden", "32,8"], [16, 32, 8, 4], "16 features and 4 classes from {data}, hidden 32,8"),
    (["--hidden", ""], [16, 4], "16 features and 4 classes from {data}, no hidden layer"),
    (["--hidden", "0"], [16, 4], "16 features and 4 classes from {data}, no hidden layer"),
    (["--layers", "16,12,4"], [16, 12, 4], "--layers"),
    (["--layers", "1x4x4,12,4"], [16, 12, 4], "--layers"),  # no conv: an MLP of the pixels
])
def test_the_layers_come_from_the_data_and_hidden_or_from_layers(table, tmp_path, flags,
                                                                 layers, origin):
    begun = start(["--data", str(table), "--checkpoint", str(tmp_path / "c.h5"), *flags])
    assert begun.cfg.layers == layers
    assert begun.cfg.hidden == layers[1:-1]  # saved as the layers have them
    assert begun.layers_from == origin.format(data=table)


def test_a_regressions_ends_are_its_features_and_targets(tmp_path):
    data = make_friedman(tmp_path / "f.h5", train_rows=200, test_rows=10, seed=1)
    begun = start(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5")])
    assert begun.cfg.layers == [10, 256, 1]
    assert begun.layers_from == f"10 features and 1 target from {data}, hidden 256"


def test_layers_that_do_not_fit_the_data_are_still_refused(table, tmp_path):
    with pytest.raises(UsageError, match="has 16 features and 4 classes, but --layers "
                                         "16,12,3 expects 16 and 3"):
        start(["--data", str(table), "--checkpoint", str(tmp_path / "c.h5"),
               "--layers", "16,12,3"])


@pytest.mark.parametrize("args,message", [
    (["--hidden", "8", "--layers", "16,8,4"], "--layers and --hidden both give the hidden"),
    (["--hidden", "8,0"], "--hidden needs positive widths, or \"\" or 0 for no hidden layer"),
    (["--hidden", "eight"], "'eight' is not a layer: expected a width (100)"),
])
def test_bad_hidden_flags_are_one_usage_line(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(args)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_resumed_run_keeps_its_checkpoints_layers(table, tmp_path):
    ckpt = str(tmp_path / "c.h5")
    cfg, given = parse_args(["--data", str(table), "--checkpoint", ckpt, *FAST,
                             "--hidden", "12"])
    assert run(cfg, given, SerialComm()) == 0
    saved = read_checkpoint(ckpt)["config"]
    assert (saved["layers"], saved["hidden"]) == ([16, 12, 4], [12])
    resume = ["--data", str(table), "--checkpoint", ckpt, "--resume", "--epochs", "2"]
    for flags in ([], ["--hidden", "12"], ["--layers", "16,12,4"]):
        begun = start([*resume, *flags])
        assert begun.resumed and begun.cfg.layers == [16, 12, 4]
        assert begun.layers_from == "the checkpoint's"
    with pytest.raises(UsageError, match=r"--hidden \[256\] differs from the checkpoint's "
                                         r"\[12\]"):
        start([*resume, "--hidden", "256"])
    # Another file of other widths: the sizes are the checkpoint's, and the line says so,
    # not a --layers the user never gave.
    other = make_dataset(tmp_path / "other.h5", shape=(9,), n_classes=4)
    with pytest.raises(UsageError) as refused:
        start([*resume, "--data", str(other)])
    assert str(refused.value).endswith(f"{other} has 9 features and 4 classes, but the network "
                                       "16,12,4 (the checkpoint's) expects 16 and 4")


# A conv net on 4x4 images (as tests/mpi/test_train_mpi.py's), with the regularisers a
# conv net takes (dropout of the fully connected layers' inputs, the conv features among
# them; max-norm; distortions).
CONV_HIDDEN = "conv3x2,conv4x3:same,pool2,6"
CONV_LAYERS = ["1x4x4", "conv3x2", "conv4x3:same", "pool2", 6, 4]
CONV_RUN = ["--batch-size", "16", "--epochs", "2", "--lr", "0.1", "--momentum", "0.9",
            "--dropout", "0.2", "--max-norm", "1.5", "--augment", "rotate=5,scale=0.05",
            "--no-progress", "--commit-every", "0", "--warmup-epochs", "0"]


def test_a_resumed_conv_run_takes_its_checkpoints_layers_and_ends_bitwise(tmp_path, capsys):
    """Stopped mid-epoch, then resumed with --hidden, with --layers or with neither: the
    conv net is the checkpoint's, and each resumed run ends as the uninterrupted one, to
    the bit; another --hidden is refused in one line."""
    from distnn.convnet import ConvNet
    from distnn.protocol import EXIT_INTERRUPTED
    from tests.support.stopping import StopAtStep

    data = make_dataset(tmp_path / "d.h5")
    base = ["--data", str(data), *CONV_RUN]
    whole = tmp_path / "whole.h5"
    cfg, given = parse_args([*base, "--checkpoint", str(whole), "--hidden", CONV_HIDDEN])
    assert run(cfg, given, SerialComm()) == 0
    assert read_checkpoint(whole)["config"]["layers"] == CONV_LAYERS
    assert isinstance(load_checkpoint(whole), ConvNet)
    cut = tmp_path / "cut.h5"
    cfg, given = parse_args([*base, "--checkpoint", str(cut), "--hidden", CONV_HIDDEN])
    assert run(cfg, given, SerialComm(), stop=StopAtStep(40)) == EXIT_INTERRUPTED
    stopped = cut.read_bytes()
    assert read_checkpoint(cut)["position"]["step"] == 10  # 30 steps an epoch: epoch 2
    for flags in ([], ["--hidden", CONV_HIDDEN], ["--layers", ",".join(map(str, CONV_LAYERS))]):
        cut.write_bytes(stopped)
        resume = [*base, "--checkpoint", str(cut), "--resume", *flags]
        begun = start(resume)
        assert (begun.cfg.layers, begun.layers_from) == (CONV_LAYERS, "the checkpoint's")
        capsys.readouterr()
        cfg, given = parse_args(resume)
        assert run(cfg, given, SerialComm()) == 0, flags
        assert capsys.readouterr().out.splitlines()[0] == (
            "distnn: layers 1x4x4,conv3x2,conv4x3:same,pool2,6,4 (the checkpoint's)")
        ends = read_checkpoint(cut)
        assert np.array_equal(ends["params"], read_checkpoint(whole)["params"]), flags
        assert np.array_equal(ends["optimizer"]["velocity"],
                              read_checkpoint(whole)["optimizer"]["velocity"]), flags
    with pytest.raises(UsageError, match=r"^--hidden \[12\] differs from the checkpoint's "
                                         r"\['conv3x2', 'conv4x3:same', 'pool2', 6\]"):
        start([*base, "--checkpoint", str(cut), "--resume", "--hidden", "12"])


class _NoAbort(SerialComm):
    """A job of one rank whose abort (after a traceback: a bug) fails the test instead of
    ending pytest's process."""

    def abort(self, code: int = 1) -> None:
        raise AssertionError(f"the trainer aborted with status {code}")


@pytest.mark.parametrize("file,flags,says", [
    ("table", ["--hidden", "conv3x3,pool2,6"], "--hidden conv3x3,pool2,6 has conv layers, which "
     "take images, and {data} is a table of 10 features without an image shape"),
    ("table", ["--layers", "1x2x5,conv3x2,6,1"], "--layers 1x2x5,conv3x2,6,1 has conv layers, "
     "which take images, and {data} is a table of 10 features without an image shape"),
    ("images", ["--layers", "1x28x28,conv20x5,pool2,100,4"], "{data} has 16 features and 4 "
     "classes, but --layers 1x28x28,conv20x5,pool2,100,4 expects 784 and 4"),
    ("images", ["--layers", "1x2x8,conv3x2,6,4"], "{data} holds 1x4x4 images, but --layers "
     "1x2x8,conv3x2,6,4 expects 1x2x8"),
    ("images", ["--hidden", CONV_HIDDEN, "--input-dropout", "0.2"], "--input-dropout drops an "
     "MLP's input pixels; a conv net's --dropout drops the inputs of its fully connected layers"),
    ("images", ["--layers", "1x4x4,conv3x3,6,4", "--input-dropout", "0.2"], "--input-dropout "
     "drops an MLP's input pixels"),
    ("images", ["--hidden", "conv3x5,6"], "--hidden conv3x5,6 on 1x4x4 images: conv3x5: a 5x5 "
     "kernel does not fit the 4x4 maps it gets"),
    ("images", ["--layers", "1x4x4,conv3x3,conv3x3,6,4"], "--layers 1x4x4,conv3x3,conv3x3,6,4: "
     "conv3x3: a 3x3 kernel does not fit the 2x2 maps it gets"),
    ("images", ["--hidden", "conv3x3:same,pool5,6"], "pool5: a 5x5 window does not fit the 4x4 "
     "maps it gets"),
    ((16,), ["--hidden", "conv3x3,6"], "--hidden conv3x3,6 has conv layers, which take images, "
     "and {data} holds images of shape 16, not H x W or C x H x W"),
    ((16,), ["--layers", "1x4x4,conv3x3,6,4"], "--layers 1x4x4,conv3x3,6,4 has conv layers, "
     "which take images, and {data} holds images of shape 16, not H x W or C x H x W"),
    ((1, 1, 4, 4), ["--hidden", "conv3x3,6"], "and {data} holds images of shape 1x1x4x4, not "
     "H x W or C x H x W"),
], ids=["hidden-on-table", "layers-on-table", "other-size", "other-shape", "input-dropout",
        "input-dropout-layers", "kernel-hidden", "kernel-layers", "window", "hidden-on-1d",
        "layers-on-1d", "hidden-on-4d"])
def test_a_conv_net_the_data_cannot_take_is_one_line(tmp_path, capsys, file, flags, says):
    """Conv layers on a table or on rows that are not H x W (or C x H x W) images, an
    image shape that is not the file's, --input-dropout, a kernel or a window larger than
    the maps it gets: status 2 (a usage error), the reason in the last line, no traceback,
    nothing written."""
    from distnn.train import main

    data = (make_friedman(tmp_path / "t.h5", train_rows=40, test_rows=10, seed=1)
            if file == "table" else make_dataset(tmp_path / "i.h5", n_train=40, n_test=10,
                                                 shape=(4, 4) if file == "images" else file))
    try:
        status = main(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"), *FAST,
                       *flags], _NoAbort())
    except SystemExit as refused:  # argparse's refusal: its usage, then the one line
        status = refused.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if "note:" not in line]
    assert says.format(data=data) in lines[-1] and "error:" in lines[-1], err
    assert "Traceback" not in err and not (tmp_path / "c.h5").exists()


def test_an_image_input_without_conv_layers_is_an_mlp_of_its_pixels(table, tmp_path):
    """--layers 1x4x4,12,4 is the MLP 16,12,4 (distnn.architecture), saved as its sizes,
    and the same flag resumes it."""
    ckpt = str(tmp_path / "c.h5")
    args = ["--data", str(table), "--checkpoint", ckpt, *FAST, "--layers", "1x4x4,12,4"]
    cfg, given = parse_args(args)
    assert run(cfg, given, SerialComm()) == 0
    assert read_checkpoint(ckpt)["model"]["sizes"] == [16, 12, 4]
    assert read_checkpoint(ckpt)["config"]["layers"] == [16, 12, 4]
    cfg, given = parse_args([*args, "--resume", "--epochs", "2"])
    assert run(cfg, given, SerialComm()) == 0
    assert read_checkpoint(ckpt)["position"]["epoch"] == 2


def test_a_checkpoint_from_before_hidden_has_its_layers_hidden_widths():
    saved = Config(layers=[784, 30, 10]).to_dict()
    del saved["hidden"]
    assert Config.from_dict(saved).hidden == [30]
    assert merge_resumed(saved, {"hidden": [30]}).layers == [784, 30, 10]


def test_mnists_default_run_trains_bitwise_as_with_its_layers_given(tmp_path, capsys):
    """No --layers on an MNIST-shaped file is 784,256,10, the old default: the same
    parameters and velocity, to the bit, as naming them."""
    data = make_dataset(tmp_path / "mnist.h5", n_train=64, n_test=16, shape=(28, 28),
                        n_classes=10)
    ends = {}
    for name, flags in (("default", []), ("given", ["--layers", "784,256,10"])):
        path = tmp_path / f"{name}.h5"
        cfg, given = parse_args(["--data", str(data), "--checkpoint", str(path), *FAST,
                                 *flags])
        assert run(cfg, given, SerialComm()) == 0
        ends[name] = read_checkpoint(path)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"distnn: layers 784,256,10 (784 features and 10 classes from {data}, "
                     "hidden 256)")
    default, given = ends["default"], ends["given"]
    assert default["config"]["layers"] == [784, 256, 10]
    assert np.array_equal(default["params"], given["params"])
    assert np.array_equal(default["optimizer"]["velocity"], given["optimizer"]["velocity"])
    assert not np.array_equal(default["optimizer"]["velocity"], 0)  # it did train
    assert load_checkpoint(tmp_path / "default.h5").sizes == [784, 256, 10]


def test_help_explains_hidden_and_its_default():
    text = " ".join(build_parser().format_help().split())
    assert "--hidden LAYER,..." in text and "(default 256: on MNIST, 784,256,10;" in text
    assert '"" or 0 = none, a linear model' in text
