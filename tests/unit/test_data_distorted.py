"""prepare --distorted N: the source's training images and N distorted copies of each, checked
against the source (a small IDX set written here), against prepare's own file, and against a
shift computed here by hand; the same bytes on every run; memory a block's whatever N; a
full disk one line and status 74."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

import distnn.data.distorted as distorted
from distnn.data import describe, prepare
from distnn.data.__main__ import main
from distnn.protocol import EXIT_IOERR
from tests.support.full_disk import ERRNOS, IDS, refusal

N_TRAIN, N_TEST, SHAPE = 600, 100, (8, 8)


@pytest.fixture
def source(make_idx_dir):
    """(IDX directory, its arrays, the training images flat): 10 classes of 60 images."""
    directory, arrays = make_idx_dir(n_train=N_TRAIN, n_test=N_TEST, shape=SHAPE)
    return directory, arrays, arrays["train", "images"].reshape(N_TRAIN, -1)


def prepare_cli(directory: Path, out: Path, *options: str) -> int:
    return main(["prepare", "--idx", str(directory), "--out", str(out), *options])


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {f"{split}/{name}": f[split][name][:] for split in ("train", "test")
                for name in ("images", "labels", "source_index")}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and "OpenBLAS" not in line]


def test_the_file_holds_the_originals_as_prepare_writes_them_then_the_copies(source, tmp_path,
                                                                            capsys):
    """(a) valid, (N + 1) n training rows, the source's test rows; (b) copy 0 is prepare's
    file; info names the copies; the last line gives the size in bytes and the time."""
    directory, arrays, _ = source
    out = tmp_path / "d.h5"
    assert prepare_cli(directory, out, "--distorted", "3", "--seed", "4") == 0
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"distnn.data: wrote {out}: 2,400 training rows (the 600 images "
                           "and 3 distorted copies of each), 100 test rows, 10 classes; "
                           f"{out.stat().st_size:,} bytes (")
    assert " GB) in " in last and last.endswith(" MB/s)")
    assert out.stat().st_size <= distorted.file_bytes(2400, 100, 64)
    d = describe(out)
    assert (d["train_size"], d["test_size"], d["image_shape"]) == (4 * N_TRAIN, N_TEST, SHAPE)
    data = read(out)
    np.testing.assert_array_equal(data["test/images"], arrays["test", "images"].reshape(100, -1))
    np.testing.assert_array_equal(data["test/labels"], arrays["test", "labels"])
    plain = read(prepare(tmp_path / "plain.h5", idx_dir=directory, seed=4))
    for name in ("images", "labels", "source_index"):
        np.testing.assert_array_equal(data[f"train/{name}"][:N_TRAIN], plain[f"train/{name}"])
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "distorted_copies: 3\ndistortions: shift=2,rotate=10,scale=0.1,elastic=20,sigma=4\n" \
        in shown and "train: 2400 rows" in shown


def test_each_copy_is_a_balanced_permutation_distorted_under_its_labels(source, tmp_path):
    """(d) Copy j's rows are the originals in an order of its own, with their labels; any
    block of rows is a fair sample of the classes; the distorted images are new ones."""
    directory, arrays, images = source
    out = tmp_path / "d.h5"
    assert prepare_cli(directory, out, "--distorted", "3") == 0
    data = read(out)
    orders = data["train/source_index"].reshape(4, N_TRAIN)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(N_TRAIN))
    assert len({order.tobytes() for order in orders}) == 4
    np.testing.assert_array_equal(data["train/labels"], arrays["train", "labels"][orders.ravel()])
    # 60 of each class in 600: any 100 rows hold 10 of each, within 2 x 4 across a copy's end.
    labels = data["train/labels"]
    for start in range(0, len(labels) - 100, 17):
        counts = np.bincount(labels[start:start + 100], minlength=10)
        assert np.all(np.abs(counts - 10) <= 8), (start, counts)
    originals = images[orders[1:].ravel()]
    copies = data["train/images"][N_TRAIN:]
    changed = np.any(copies != originals, axis=1)
    assert changed.mean() > 0.95


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """image moved by (dy, dx) whole pixels in its frame, zeros coming in: by slicing."""
    h, w = image.shape
    out = np.zeros_like(image)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_shifted_copies_are_their_originals_moved_by_whole_pixels(source, tmp_path):
    """(d) With shift=1 alone, every copy is its original moved by one of the 9 shifts, each
    shift about as often as another (computed here, not by distnn.augment)."""
    directory, _, images = source
    out = tmp_path / "d.h5"
    assert prepare_cli(directory, out, "--distorted", "3", "--distortions", "shift=1") == 0
    data = read(out)
    moves = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    seen = np.zeros(len(moves), int)
    for row in range(N_TRAIN, 4 * N_TRAIN):
        original = images[data["train/source_index"][row]].reshape(SHAPE)
        copy = data["train/images"][row].reshape(SHAPE)
        [match] = [k for k, (dy, dx) in enumerate(moves)
                   if np.array_equal(copy, shifted(original, dy, dx))]
        seen[match] += 1
    assert seen.sum() == 1800 and seen.min() > 140, seen  # 200 each expected


def test_the_same_seed_makes_the_same_bytes_another_seed_another_file(source, tmp_path,
                                                                      monkeypatch):
    """(c) Byte for byte the same file twice, and with blocks of another size; another seed
    orders and distorts otherwise."""
    directory, _, _ = source
    paths = [tmp_path / f"{name}.h5" for name in ("a", "b", "small-blocks", "other-seed")]
    for path in paths[:2]:
        assert prepare_cli(directory, path, "--distorted", "2", "--seed", "7") == 0
    monkeypatch.setattr(distorted, "BLOCK", 100)
    assert prepare_cli(directory, paths[2], "--distorted", "2", "--seed", "7") == 0
    assert prepare_cli(directory, paths[3], "--distorted", "2", "--seed", "8") == 0
    assert paths[0].read_bytes() == paths[1].read_bytes() == paths[2].read_bytes()
    a, other = read(paths[0]), read(paths[3])
    for name in ("images", "source_index"):
        for copy in range(3):
            rows = slice(copy * N_TRAIN, (copy + 1) * N_TRAIN)
            assert not np.array_equal(a[f"train/{name}"][rows], other[f"train/{name}"][rows])
    np.testing.assert_array_equal(a["test/images"], other["test/images"])


def test_memory_stays_a_block_whatever_the_copies(make_idx_dir, tmp_path, monkeypatch):
    """(e) 20 copies take the memory of 2: what is held is the source and a block. (The
    distortions' own work arrays, a block's, are distnn.augment's: shift alone keeps them
    small next to what this measures.)"""
    directory, _ = make_idx_dir(n_train=2000, n_test=10, shape=(28, 28))
    monkeypatch.setattr(distorted, "BLOCK", 128)
    peaks = []
    for copies in (1, 2, 20):  # the first, for what is allocated once only
        tracemalloc.start()
        distorted.prepare_distorted(tmp_path / "d.h5", copies, "shift=1", idx_dir=directory)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    held = 21 * 2000 * 784  # the training images of 20 copies
    assert peaks[2] < 1.25 * peaks[1] and peaks[2] < held / 4, (peaks, held)


@pytest.mark.parametrize("err", ERRNOS, ids=IDS)
def test_a_refused_write_is_one_line_status_74_and_replaces_nothing(err, source, tmp_path,
                                                                    monkeypatch, capsys):
    """(f) The disk fills up in the middle of the copies: one line, 74, no temporary file,
    and the file that was there is still there."""
    directory, _, _ = source
    out = tmp_path / "d.h5"
    out.write_bytes(b"the file before")
    real, writes = h5py.Dataset.__setitem__, []

    def setitem(self, key, value):
        writes.append(key)
        if len(writes) == 5:
            raise refusal(err)
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    capsys.readouterr()
    assert prepare_cli(directory, out, "--distorted", "3") == EXIT_IOERR
    [line] = [line for line in error_lines(capsys.readouterr().err) if "error" in line]
    assert line.startswith(f"distnn.data: error: cannot write {out}: ")
    assert "; nothing was replaced; " in line and line.endswith(" and run it again")
    assert out.read_bytes() == b"the file before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "idx"]


def test_a_file_that_will_not_fit_is_refused_before_it_is_written(source, tmp_path,
                                                                  monkeypatch, capsys):
    directory, _, _ = source
    out = tmp_path / "new" / "d.h5"
    needed = distorted.file_bytes(100 * N_TRAIN, N_TEST, 64)
    monkeypatch.setattr(distorted.shutil, "disk_usage",
                        lambda path: type("Usage", (), {"free": needed - 1})())
    assert prepare_cli(directory, out, "--distorted", "99") == EXIT_IOERR
    assert 1 << 20 <= needed - 1 < needed < 1 << 30  # so both are said in MiB, to 0.1
    mib = needed / (1 << 20)
    assert error_lines(capsys.readouterr().err)[-1] == (
        f"distnn.data: error: cannot write {out}: it needs {mib:.1f} MiB and "
        f"{tmp_path} has {(needed - 1) / (1 << 20):.1f} MiB free; nothing was replaced; free some "
        "space, or write it elsewhere with --out and run it again")
    assert not out.parent.exists()


@pytest.mark.parametrize("options, message", [
    (["--distortions", "shift=1"], "--distortions needs --distorted N"),
    (["--distorted", "-1"], "--distorted needs 1 or more copies, got -1"),
    (["--distorted", "2", "--distortions", "spin=3"], "--distortions: expected KEY=VALUE"),
    (["--distorted", "2", "--distortions", "shift=0"], "distorts nothing"),
    (["--distorted", "2", "--seed", "-1"], "seed must be >= 0"),
])
def test_bad_options_are_one_line(options, message, source, tmp_path, capsys):
    directory, _, _ = source
    assert prepare_cli(directory, tmp_path / "d.h5", *options) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith("distnn.data: error: ") and message in line, line
    assert not (tmp_path / "d.h5").exists()
