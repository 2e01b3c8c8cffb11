"""python -m distnn.data import of images, (N, H, W) or (N, C, H, W) arrays: stored as the
rows numpy's reshape makes of them, beside the same rows brought in flat from a CSV; the
image shape kept; per-channel scaling equal to numpy's float64 answer; the same file
through small blocks; memory a block; every misfit one line that writes nothing."""

from __future__ import annotations

import json
import re
import tracemalloc

import h5py
import numpy as np
import pytest

import distnn.data.imports as imports
import distnn.data.readers as readers
import distnn.data.staging as staging
import distnn.data.table as table
from distnn import load_checkpoint
from distnn.comm import SerialComm
from distnn.config import parse_args
from distnn.data.__main__ import info
from distnn.data.__main__ import main as data_main
from distnn.data.errors import DataError
from distnn.data.imports import Layout, import_table
from distnn.data.store import describe
from distnn.evaluate import main as evaluate_main
from distnn.train import run

N = 40
RNG = np.random.default_rng(38)
LABELS = np.arange(N) % 3
VALUES = RNG.normal(0, 1, (N, 2)) * [1, 100] + [0, 7]  # two regression targets


def images(shape: tuple[int, ...], dtype: str = "float64") -> np.ndarray:
    """N images of ``shape``, each channel on a scale and offset of its own."""
    if dtype == "uint8":
        return RNG.integers(0, 256, (N, *shape), dtype=np.uint8)
    x = RNG.normal(0, 1, (N, *shape))
    if len(shape) == 3:  # channels (C, 1, 1) apart: per-pixel and per-channel scaling differ
        x = x * np.arange(1, shape[0] + 1)[:, None, None] * 10 + np.arange(shape[0])[:, None, None]
    return x


def save(tmp_path, kind: str, x: np.ndarray, y: np.ndarray, name: str = "img"):
    """x and y in a file (or two) of ``kind``; returns (path, layout)."""
    if kind in ("npy", "npy fortran"):
        np.save(tmp_path / f"{name}.npy", np.asfortranarray(x) if kind == "npy fortran" else x)
        np.save(tmp_path / f"{name}-y.npy", y)
        return tmp_path / f"{name}.npy", Layout(targets=str(tmp_path / f"{name}-y.npy"))
    if kind == "npz":
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        return tmp_path / f"{name}.npz", Layout(features="x", targets="y")
    with h5py.File(tmp_path / f"{name}.h5", "w") as f:
        f["scan/x"], f["scan/y"] = x, y
    return tmp_path / f"{name}.h5", Layout(features="scan/x", targets="scan/y")


def flat_csv(path, x: np.ndarray, y: np.ndarray):
    """The same rows as a plain table: numpy's reshape of each image, then its targets."""
    rows = np.column_stack([x.reshape(len(x), -1), y])
    np.savetxt(path, rows, delimiter=",", fmt="%.17g")
    return path


def read(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        out = {}
        f.visititems(lambda name, obj: out.update({name: obj[()]})
                     if isinstance(obj, h5py.Dataset) else None)
        return out | {f"attrs/{k}": v for k, v in f.attrs.items()}


def per_channel(train: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's mean and deviation over all its pixels of the training images, in
    float64, given for every pixel: what a reader of /scaling should find."""
    c = shape[0] if len(shape) == 3 else 1
    by_channel = train.astype(np.float64).reshape(len(train), c, -1)  # (n, C, P)
    mean, std = by_channel.mean(axis=(0, 2)), by_channel.std(axis=(0, 2))
    p = by_channel.shape[2]
    return np.repeat(mean, p), np.repeat(std, p)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
@pytest.mark.parametrize("kind", ["npy", "npy fortran", "npz", "h5"])
def test_images_are_stored_as_their_flattened_rows(tmp_path, kind, shape, task):
    """The rows, their order, split and targets are those of the same data flattened into a
    CSV; the image shape is kept; the scaling is each channel's, not each pixel's."""
    x = images(shape)
    y = LABELS if task == "classification" else VALUES
    path, layout = save(tmp_path, kind, x, y)
    line = import_table(path, tmp_path / "img.h5", task=task, layout=layout, seed=4)
    width = int(np.prod(shape))
    flat = flat_csv(tmp_path / "flat.csv", x, y)
    target = (str(width + 1),) if task == "classification" else \
        (str(width + 1), str(width + 2))
    import_table(flat, tmp_path / "flat.h5", task=task, layout=Layout(target=target), seed=4)
    img, tab = read(tmp_path / "img.h5"), read(tmp_path / "flat.h5")
    for split in ("train", "test"):
        rows = img[f"{split}/source_row"]
        np.testing.assert_array_equal(rows, tab[f"{split}/source_row"])
        np.testing.assert_array_equal(img[f"{split}/features"], x.reshape(N, -1)[rows])
        np.testing.assert_array_equal(img[f"{split}/features"], tab[f"{split}/features"])
        np.testing.assert_array_equal(img[f"{split}/targets"], tab[f"{split}/targets"])
    assert tuple(img["attrs/image_shape"]) == shape and "image_shape" not in \
        {k.removeprefix("attrs/") for k in tab}
    assert describe(tmp_path / "img.h5")["image_shape"] == shape
    assert f"image_shape: {shape}" in info(str(tmp_path / "img.h5"))
    assert f"images of shape {shape} ({width} features, standardized per channel)" in line
    mean, std = per_channel(x.reshape(N, -1)[img["train/source_row"]], shape)
    np.testing.assert_allclose(img["scaling/feature_mean"], mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(img["scaling/feature_std"], std, rtol=1e-12)
    if task == "regression":  # the targets as any table's
        np.testing.assert_array_equal(img["scaling/target_mean"], tab["scaling/target_mean"])


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
def test_uint8_images_stay_bytes_divided_by_255_as_mnist(tmp_path, shape):
    """uint8 images: stored uint8, feature_scaling divide_by_255 and no statistics, as
    MNIST's; --dtype float32 stores them as floats, standardized per channel instead."""
    x = images(shape, "uint8")
    path, layout = save(tmp_path, "npz", x, LABELS)
    line = import_table(path, tmp_path / "u8.h5", task="classification", layout=layout)
    stored = read(tmp_path / "u8.h5")
    assert stored["train/features"].dtype == np.uint8
    np.testing.assert_array_equal(stored["train/features"],
                                  x.reshape(N, -1)[stored["train/source_row"]])
    assert stored["attrs/feature_scaling"] == "divide_by_255"
    assert not any(k.startswith("scaling/") for k in stored)
    assert "uint8, read divided by 255" in line
    import_table(path, tmp_path / "f32.h5", task="classification", layout=layout,
                 dtype="float32")
    floats = read(tmp_path / "f32.h5")
    assert floats["train/features"].dtype == np.float32
    assert floats["attrs/feature_scaling"] == "standardize"
    mean, std = per_channel(x.reshape(N, -1)[floats["train/source_row"]], shape)
    np.testing.assert_allclose(floats["scaling/feature_mean"], mean, rtol=1e-13)
    np.testing.assert_allclose(floats["scaling/feature_std"], std, rtol=1e-12)


@pytest.mark.parametrize("kind", ["npy", "npy fortran", "npz", "h5"])
def test_small_blocks_write_the_same_file(tmp_path, monkeypatch, kind):
    """Read 7 images at a time, the file is the same, dataset for dataset, as read whole;
    and the reader hands out no more than a block at a time. (The statistics' blocks are
    not varied: another summation order rounds otherwise.)"""
    x = images((3, 4, 5))
    path, layout = save(tmp_path, kind, x, LABELS)
    import_table(path, tmp_path / "whole.h5", task="classification", layout=layout, seed=2)
    monkeypatch.setattr(readers, "BLOCK_ROWS", 7)
    blocks = list(readers.open_rows(path, key=layout.features,
                                    dataset=layout.features).blocks())
    assert [len(b) for b in blocks] == [7] * 5 + [5]
    np.testing.assert_array_equal(np.concatenate(blocks), x.reshape(N, -1))
    import_table(path, tmp_path / "blocks.h5", task="classification", layout=layout, seed=2)
    whole, small = read(tmp_path / "whole.h5"), read(tmp_path / "blocks.h5")
    assert whole.keys() == small.keys()
    for key in whole:
        if key != "attrs/source_sha256":
            np.testing.assert_array_equal(whole[key], small[key], err_msg=key)


@pytest.mark.parametrize("kind", ["npy", "npz", "h5"])
def test_memory_stays_a_block_of_images(tmp_path, monkeypatch, kind):
    """Four times the images, the same memory: the reader streams them, never the file."""
    for module, name, value in ((readers, "BLOCK_ROWS", 256), (staging, "BLOCK", 256),
                                (table, "STAT_BLOCK", 256), (imports, "HASH_CHUNK", 4096),
                                (imports, "BUCKET_BYTES", 1 << 18)):
        monkeypatch.setattr(module, name, value)
    peaks = []
    for n in (1_000, 2_000, 8_000):  # the first, for what is allocated once only
        x = np.random.default_rng(n).random((n, 3, 8, 8)).astype(np.float32)
        path, layout = save(tmp_path, kind, x, np.arange(n) % 2, name=f"n{n}")
        tracemalloc.start()
        import_table(path, tmp_path / "t.h5", task="classification", layout=layout,
                     dtype="float32")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[2] < 1.25 * peaks[1] and peaks[2] < x.nbytes / 2, (peaks, x.nbytes)


def test_a_nan_is_named_by_its_row_and_pixel(tmp_path):
    x = images((3, 4, 5))
    x[2, 1, 3, 4] = np.nan  # column 1 * 20 + 3 * 5 + 4 = 39 from 0
    path, layout = save(tmp_path, "npz", x, LABELS)
    with pytest.raises(DataError, match=r"img\.npz: row 3, column 40 \(pixel \[1, 3, 4\]\): "
                                        r"a missing value"):
        import_table(path, tmp_path / "t.h5", task="classification", layout=layout)


def misfits(tmp_path) -> list[tuple[list[str], str]]:
    """Command lines that must fail, and the line each must print."""
    np.save(tmp_path / "y.npy", LABELS)
    np.save(tmp_path / "empty.npy", np.zeros((N, 0, 5)))
    np.save(tmp_path / "five.npy", np.zeros((N, 1, 2, 3, 4)))
    np.save(tmp_path / "a.npy", images((6, 5)))
    np.save(tmp_path / "b.npy", images((5, 6)))
    np.save(tmp_path / "flat.npy", images((6, 5)).reshape(N, -1))
    np.save(tmp_path / "c.npy", images((1, 6, 5)))
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(images((6, 5))), y=LABELS)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = images((6, 5)), images((6, 5))
    shape = "expected rows of numbers, (rows,) or (rows, columns), or images, (rows, height, " \
            "width) or (rows, channels, height, width)"
    targets = ["--targets", str(tmp_path / "y.npy")]
    return [
        (["empty.npy", *targets], f"empty.npy: the array has shape (40, 0, 5); {shape}"),
        (["five.npy", *targets], f"five.npy: the array has shape (40, 1, 2, 3, 4); {shape}"),
        (["a.npy", *targets, "--test", str(tmp_path / "b.npy")],
         "b.npy holds images of shape (5, 6), {}/a.npy images of shape (6, 5): the test "
         "rows must be of the training rows' form"),
        (["a.npy", *targets, "--test", str(tmp_path / "flat.npy")],
         "flat.npy holds a table of 30 features a row, {}/a.npy images of shape (6, 5)"),
        (["a.npy", *targets, "--test", str(tmp_path / "c.npy")],
         "c.npy holds images of shape (1, 6, 5), {}/a.npy images of shape (6, 5)"),
        (["flat.npy", *targets, "--test", str(tmp_path / "a.npy")],
         "a.npy holds images of shape (6, 5), {}/flat.npy a table of 30 features a row"),
        (["a.npy"], "a.npy: images of shape (6, 5) have no column of targets; give them "
                    "with --targets"),
        (["d.h5", "--features", "x", "--targets", "y"],
         "d.h5: targets of shape (rows, 6, 5); expected (rows,) or (rows, columns)"),
        (["f.npz", "--features", "x", "--targets", "y"],
         "f.npz: array 'x' is stored column by column (Fortran order)"),
    ]


def test_images_that_do_not_fit_are_one_line_and_write_nothing(tmp_path, capsys):
    cases = misfits(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        status = data_main(["import", str(tmp_path / args[0]), *args[1:], "--task",
                            "classification", "--out", str(tmp_path / "o.h5")])
        err = capsys.readouterr().err
        assert status == 1 and err.count("\n") == 1, (args, err)
        assert message.format(tmp_path) in err, (message, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_table_whose_image_shape_is_not_its_features_is_refused(tmp_path):
    path, layout = save(tmp_path, "npy", images((3, 4, 5)), LABELS)
    import_table(path, tmp_path / "t.h5", task="classification", layout=layout)
    for bad in ([4, 5], [3, 4, 0], [1, 3, 4, 5]):
        with h5py.File(tmp_path / "t.h5", "a") as f:
            f.attrs["image_shape"] = np.array(bad)
        with pytest.raises(DataError, match=r"attribute image_shape must be \(H, W\) or "
                                            r"\(C, H, W\).*n_features 60"):
            describe(tmp_path / "t.h5")


def test_images_of_channels_train_with_augmentation_and_show(tmp_path, capsys):
    """An imported (3, 4, 5) file of classes a network can tell apart trains with --augment
    (every channel moved alike); evaluate --show draws its test images, each with the
    class the network gives the image scaled as the file says (numpy, here)."""
    x = images((3, 4, 5)) + 40.0 * LABELS[:, None, None, None]
    path, layout = save(tmp_path, "h5", x, LABELS)
    import_table(path, tmp_path / "t.h5", task="classification", layout=layout)
    ckpt, metrics = tmp_path / "c.h5", tmp_path / "m.jsonl"
    cfg, given = parse_args(["--data", str(tmp_path / "t.h5"), "--checkpoint", str(ckpt),
                             "--metrics", str(metrics), "--hidden", "8", "--epochs", "10",
                             "--batch-size", "8", "--augment", "shift=1,rotate=10",
                             "--no-progress"])
    assert run(cfg, given, SerialComm()) == 0
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[0]["config"]["augment"] == "shift=1,rotate=10"
    assert [r["epoch"] for r in records if "cost" in r] == list(range(1, 11))
    capsys.readouterr()
    assert evaluate_main([str(ckpt), "--show", "9"]) == 0
    out = capsys.readouterr().out
    with h5py.File(tmp_path / "t.h5") as f:
        rows, mean, std = (f[name][()] for name in ("test/features", "scaling/feature_mean",
                                                    "scaling/feature_std"))
    net = load_checkpoint(ckpt)
    guesses = net.predict(((rows - mean) / std).astype(net.dtype))
    shown = [int(g) for g in re.findall(r"predicted (\d+) \((?:right|WRONG)\)", out)]
    assert shown == guesses.tolist() and len(set(shown)) > 1, (shown, guesses)
    assert len([line for line in out.splitlines() if len(line) == 5]) >= 4 * len(rows)
