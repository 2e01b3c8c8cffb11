"""Training rows streamed from the file (distnn.data.stream) against the same rows held in
memory: the same batches bitwise, the same run bitwise, a resume mid-epoch bitwise, and
a file that breaks mid-run ended in one line."""

from __future__ import annotations

import os

import numpy as np
import pytest

from distnn.checkpoint import read_checkpoint
from distnn.comm import SerialComm
from distnn.config import parse_args
from distnn.data import DataError, Partitions, describe, read_rows
from distnn.data.stream import Stream, stream_bytes
from distnn.protocol import EXIT_INTERRUPTED
from distnn.samples import Shard, readers
from distnn.train import main, run
from tests.support.stopping import StopAtStep
from tests.support.synthetic import make_dataset

# 480 rows of 17 bytes in 4 partitions of 120 rows; windows of 32 rows (blocks of 2):
# held, a rank's rows take 8,160 bytes; streamed, two windows of each partition, 4,352.
RUN = ["--layers", "16,12,4", "--batch-size", "16", "--lr", "0.5", "--warmup-epochs", "0",
       "--no-progress", "--partitions", "4", "--window", "32", "--epochs", "3",
       "--dtype", "float64"]
STREAMED = ["--memory-budget", "5K"]
# A conv net on the same 4x4 rows (tests/mpi/test_train_mpi.py's), at an --lr at which
# it trains stably.
CONV = ["--layers", "1x4x4,conv3x2,conv4x3:same,pool2,6,4", "--lr", "0.1"]


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "d.h5")


def shard_and_stream(path, order: Partitions, rank: int, ranks: int):
    info = describe(path)
    held = Shard.scaled(*read_rows(path, "train", lambda n: order.rows_of(rank, ranks)),
                        np.dtype("float64"), info)
    return held, Stream(path, order, rank, ranks, 9, *readers(np.dtype("float64"), info))


@pytest.mark.parametrize("window", [0, 32, 16])
@pytest.mark.parametrize("rank,ranks", [(0, 1), (1, 3)])
def test_a_stream_gives_the_batches_memory_gives_bitwise(data, window, rank, ranks):
    """Every step of two epochs, and of an epoch begun mid-way (a resume), as ``fit``
    asks for them; the window covering whole partitions (0) too."""
    order = Partitions(480, 16, 4, window)
    held, stream = shard_and_stream(data, order, rank, ranks)
    try:
        for epoch, first in ((0, 0), (1, 0), (2, 11)):
            steps = order.epoch(9, epoch, rank, ranks)
            stream.begin(epoch, first)
            for k in range(first, order.steps):
                x, y = stream.batch(steps[k])
                x0, y0 = held.batch(steps[k])
                assert np.array_equal(x, x0) and np.array_equal(y, y0), (epoch, k)
                assert x.dtype == x0.dtype and y.dtype == y0.dtype
        if window == 32:  # two windows of 32 rows of each partition, not all 120 of them
            assert stream.nbytes == stream_bytes(order, rank, ranks, 17) == 2 * 32 * 17 * len(
                order.served_by(rank, ranks))
    finally:
        stream.close()


def run_inprocess(argv, stop=None) -> int:
    cfg, given = parse_args(argv)
    return run(cfg, given, SerialComm(), stop=stop) if stop else run(cfg, given, SerialComm())


@pytest.mark.parametrize("net", [[], CONV], ids=["mlp", "conv"])
def test_a_streamed_run_is_the_held_run_bitwise_and_resumes_mid_epoch_bitwise(data, tmp_path,
                                                                              capsys, net):
    args = ["--data", str(data), *RUN, *net]
    assert run_inprocess([*args, "--checkpoint", str(tmp_path / "held.h5")]) == 0
    assert "stream" not in capsys.readouterr().err
    assert run_inprocess([*args, *STREAMED, "--checkpoint", str(tmp_path / "full.h5")]) == 0
    assert "1 of 1 rank(s) stream their training rows" in capsys.readouterr().err
    cut = ["--checkpoint", str(tmp_path / "cut.h5")]
    # the 40th step, of 30 an epoch: stopped at epoch 2, step 10, inside its first windows
    assert run_inprocess([*args, *STREAMED, *cut], stop=StopAtStep(40)) == EXIT_INTERRUPTED
    assert read_checkpoint(tmp_path / "cut.h5")["position"]["step"] == 10
    assert run_inprocess([*args, *cut, "--resume", *STREAMED]) == 0
    held, full, resumed = (read_checkpoint(tmp_path / f"{name}.h5")["params"]
                           for name in ("held", "full", "cut"))
    assert np.array_equal(full, held) and np.array_equal(resumed, held)


def test_a_budget_too_small_for_two_windows_is_one_line(data, tmp_path, capsys):
    args = ["--data", str(data), *RUN, "--memory-budget", "4K", "--checkpoint",
            str(tmp_path / "c.h5")]
    assert main(args, SerialComm()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("distnn.train: error: --memory-budget 4.0 KiB is less than a "
                              "rank needs to stream its rows"), err
    assert "4.2 KiB" in err[-1] and not (tmp_path / "c.h5").exists()


def test_a_file_that_shrinks_mid_run_ends_the_stream_in_one_line(data, tmp_path):
    order = Partitions(480, 16, 4, 16)  # windows of 16 rows: 8 a partition, read in turn
    _, stream = shard_and_stream(data, order, 0, 1)
    try:
        steps = order.epoch(9, 0, 0, 1)
        stream.begin(0, 0)
        stream.batch(steps[0])
        os.truncate(data, os.path.getsize(data) // 3)  # the rows' chunks, and more, gone
        with pytest.raises(DataError) as caught:
            for k in range(1, order.steps):
                stream.batch(steps[k])
        message = str(caught.value)
        assert message.startswith(f"{data}: ") and "\n" not in message
    finally:
        stream.close()


def test_rows_read_straight_from_the_file_are_hdf5s_rows(tmp_path):
    """Chunks of whole rows and a contiguous dataset are read with pread where HDF5 says
    their bytes are; a compressed one, chunks that cut rows and chunks never written (their
    rows HDF5's fill value) through h5py: all give h5py's rows."""
    import h5py

    from distnn.data.stream import _Extents

    rows = np.random.default_rng(0).integers(0, 256, (1000, 7), dtype=np.uint8)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=rows, chunks=(64, 7))
        f.create_dataset("contiguous", data=rows.astype(np.float32))
        f.create_dataset("compressed", data=rows, chunks=(64, 7), compression="gzip")
        f.create_dataset("cut", data=rows, chunks=(64, 3))  # chunks of parts of rows
        gaps = f.create_dataset("gaps", shape=rows.shape, dtype=rows.dtype, chunks=(64, 7))
        gaps[:128], gaps[512:600] = rows[:128], rows[512:600]  # chunks 2-7, 10-15 never written
        # chunks that cut rows, as many written as chunks of whole rows would be: columns
        # 0-3 of every row, 4-6 never
        half = f.create_dataset("half", shape=rows.shape, dtype=rows.dtype, chunks=(64, 4))
        half[:, :4] = rows[:, :4]
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path) as f:
            for name, direct in (("chunked", True), ("contiguous", True), ("compressed", False),
                                 ("cut", False), ("gaps", False), ("half", False)):
                extents = _Extents(f[name])
                assert extents.direct == direct, name
                for start, stop in ((0, 1000), (63, 65), (100, 356), (999, 1000)):
                    out = np.empty((stop - start, 7), f[name].dtype)
                    extents.read(fd, start, stop, out)
                    assert np.array_equal(out, f[name][start:stop]), (name, start)
    finally:
        os.close(fd)


@pytest.mark.parametrize("flags,says", [
    (["--memory-budget", "lots"], "--memory-budget 'lots': not a size"),
    (["--memory-budget", "0"], "--memory-budget '0': a size must be a positive number"),
    (["--memory-budget=-2G"], "a size must be a positive number of bytes"),
    (["--window", "-5"], "--window must be >= 16 rows"),
    (["--window", "8"], "--window 8 is less than 16 rows"),
    (["--window", "16", "--batch-size", "400"], "--window 16 holds fewer rows than a "
                                                "partition gives each batch (100)"),
])
def test_a_budget_or_window_that_cannot_work_is_one_line(data, tmp_path, capsys, flags, says):
    args = ["--data", str(data), *RUN, "--checkpoint", str(tmp_path / "c.h5"), *flags]
    try:
        status = main(args, SerialComm())
    except SystemExit as refused:  # argparse's refusal: its usage, then the one line
        status = refused.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and "Traceback" not in "".join(err), err


def test_a_file_cut_short_under_a_streaming_run_ends_it_in_one_line(data, tmp_path):
    """The whole trainer: its file truncated after the first epoch, the run stops with
    status 1 and one line naming the file, no traceback."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "distnn.train", "--data", str(data), *RUN, *STREAMED,
               "--epochs", "2000", "--checkpoint", str(tmp_path / "c.h5")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            os.truncate(data, os.path.getsize(data) // 2)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if "note:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"distnn.train: rank 0: error: {data}: ")
    # seen by its size before a window is read, or by a read that ends early within one
    assert "the file shrank from" in lines[0] or "end early" in lines[0], lines


def test_a_checkpoint_resumes_with_the_window_it_was_written_with(tmp_path, monkeypatch):
    """A run begun when the default window was 8 MiB of rows (10,672 of 785 bytes: its one
    partition of 4,096 shuffled whole) goes on with that window now that the default is
    1 MiB (1,328 rows: 4 windows): it ends as the run that never stopped, bitwise."""
    from distnn import start
    from distnn.data import default_window

    data = make_dataset(tmp_path / "d.h5", n_train=4096, n_test=100, shape=(28, 28),
                        n_classes=10)
    args = ["--data", str(data), "--layers", "784,16,10", "--partitions", "1",
            "--no-progress", "--warmup-epochs", "0"]
    with monkeypatch.context() as old:
        old.setattr(start, "default_window", lambda row_bytes: default_window(row_bytes, 8 << 20))
        assert run_inprocess([*args, "--epochs", "2", "--checkpoint", str(tmp_path / "a.h5")]) == 0
        # stopped at the 40th step of 32 an epoch: epoch 2, step 8
        assert run_inprocess([*args, "--epochs", "2", "--checkpoint", str(tmp_path / "b.h5")],
                             stop=StopAtStep(40)) == EXIT_INTERRUPTED
    assert run_inprocess([*args, "--epochs", "2", "--resume",
                          "--checkpoint", str(tmp_path / "b.h5")]) == 0
    assert run_inprocess([*args, "--epochs", "2", "--checkpoint", str(tmp_path / "c.h5")]) == 0
    a, b, c = (read_checkpoint(tmp_path / f"{name}.h5") for name in "abc")
    assert a["config"]["window"] == b["config"]["window"] == 10672
    assert c["config"]["window"] == 1328  # a new run takes the new default ...
    assert np.array_equal(b["params"], a["params"])
    assert not np.array_equal(c["params"], a["params"])  # ... and another order


def test_a_file_cut_short_before_a_read_is_named_as_shrunk_with_both_sizes(data):
    """Cut short after the stream opened it and before an epoch's windows are read: the
    first read sees the file's size, and says it shrank, from what to what."""
    order = Partitions(480, 16, 4, 16)
    _, stream = shard_and_stream(data, order, 0, 1)
    try:
        was = os.path.getsize(data)
        os.truncate(data, was // 3)
        stream.begin(0, 0)
        with pytest.raises(DataError) as caught:
            stream.batch(order.epoch(9, 0, 0, 1)[0])
        assert str(caught.value) == (f"{data}: the file shrank from {was} to {was // 3} bytes "
                                     "while the run read it; its rows can no longer be trusted")
    finally:
        stream.close()


def test_rows_past_the_end_of_the_file_are_a_short_read(tmp_path):
    """Rows whose bytes HDF5 places beyond the file's end (cut short after it was opened)
    are not read as whatever the buffer held: the read ends early, and says which rows."""
    import h5py

    from distnn.data.stream import _Extents

    rows = np.arange(7000, dtype=np.uint8).reshape(1000, 7)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=rows, chunks=(64, 7))
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path) as f:
            extents = _Extents(f["chunked"])
            os.truncate(path, os.path.getsize(path) // 2)
            out = np.empty((1000, 7), np.uint8)
            with pytest.raises(EOFError, match=r"rows \d+\.\.\d+ end early"):
                extents.read(fd, 0, 1000, out)
    finally:
        os.close(fd)


def test_a_window_of_one_batch_share_streams_as_memory_gives(data):
    """A window may hold just the rows a partition gives each batch: a step then reads
    one window or two, and the stream gives memory's batches. One row fewer cannot work."""
    order = Partitions(480, 64, 4, 16)  # 16 rows of each partition a batch; windows of 16
    assert order.problem(1) is None
    assert "--window 16 holds fewer rows than a partition gives each batch (17)" in \
        Partitions(480, 68, 4, 16).problem(1)
    held, stream = shard_and_stream(data, order, 0, 1)
    try:
        for epoch in (0, 1):
            steps = order.epoch(9, epoch, 0, 1)
            stream.begin(epoch, 0)
            for k in range(order.steps):
                x, y = stream.batch(steps[k])
                x0, y0 = held.batch(steps[k])
                assert np.array_equal(x, x0) and np.array_equal(y, y0), (epoch, k)
    finally:
        stream.close()
