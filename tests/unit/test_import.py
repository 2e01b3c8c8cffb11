"""python -m distnn.data import: what is stored equals the source, row for row, with its
scaling equal to numpy's float64 answer; the split is stratified and seeded, the training
rows permuted, memory a block; every kind of bad input is one line and writes nothing."""

from __future__ import annotations

import hashlib
import re
import time
import tracemalloc

import h5py
import numpy as np
import pytest

import distnn.data.csvfile as csvfile
import distnn.data.imports as imports
import distnn.data.labels as labels
import distnn.data.readers as readers
import distnn.data.staging as staging
import distnn.data.table as table
from distnn.data.__main__ import main as data_main
from distnn.data.errors import DataError
from distnn.data.imports import Layout, import_table
from distnn.data.labels import Labels
from distnn.data.split import Split
from distnn.data.store import describe

RNG = np.random.default_rng(7)
X = RNG.normal(0, 1, (600, 4)) * [1, 1e3, 1e-3, 0] + [0, -5, 2, 3]  # the last constant
SPECIES = np.array(["setosa", "versicolor", "virginica", "z"])[
    RNG.choice(4, 600, p=[0.5, 0.3, 0.15, 0.05])]
Y = np.column_stack([X @ [1, 2, 3, 4], np.sin(X[:, 0])]) + RNG.normal(0, 0.1, (600, 2))


def write_csv(path, x, last, header=None):
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for row, y in zip(x.tolist(), np.asarray(last).tolist()):
            ys = y if isinstance(y, list) else [y]
            f.write(",".join(repr(v) for v in row) + "," + ",".join(str(v) for v in ys) + "\n")
    return path


def read(path):
    with h5py.File(path) as f:
        return {f"{s}/{k}": f[s][k][()] for s in ("train", "test") for k in f[s]} | \
            {f"scaling/{k}": v[()] for k, v in f.get("scaling", {}).items()}


def check_rows(stored, x, y):
    """Every stored row is its source row, each source row stored once; the scaling is
    the training rows' mean and standard deviation, in float64 (a constant column: 1)."""
    rows = np.concatenate([stored["train/source_row"], stored["test/source_row"]])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(x)))
    for split in ("train", "test"):
        source = stored[f"{split}/source_row"]
        np.testing.assert_array_equal(stored[f"{split}/features"], x[source])
        np.testing.assert_array_equal(stored[f"{split}/targets"], y[source])
    train = x[stored["train/source_row"]]
    std = train.std(axis=0)
    std[std == 0] = 1
    np.testing.assert_allclose(stored["scaling/feature_mean"], train.mean(axis=0),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(stored["scaling/feature_std"], std, rtol=1e-12)


def test_csv_classification_round_trip(tmp_path, csv_engine):
    path = write_csv(tmp_path / "iris.csv", X, SPECIES, ["a", "b", "c", "d", "species"])
    line = import_table(path, tmp_path / "t.h5", task="classification",
                        layout=Layout(target=("species",)), test_fraction=0.25, seed=3)
    assert "4 classes" in line
    stored = read(tmp_path / "t.h5")
    names = sorted(set(SPECIES))
    check_rows(stored, X, np.searchsorted(names, SPECIES))
    info = describe(tmp_path / "t.h5")
    assert info["names"] == {"classes": names, "features": ["a", "b", "c", "d"]}
    assert (info["task"], info["n_classes"], info["feature_scaling"]) == \
        ("classification", 4, "standardize")
    assert info["source_sha256"] == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  iris.csv"
    # stratified: each class's share of the test rows within one row of a quarter
    _, counts = np.unique(SPECIES, return_counts=True)  # in the order of names
    for k, n_k in enumerate(counts):
        assert abs(np.sum(stored["test/targets"] == k) - n_k / 4) < 1
    # the test rows in the file's order, the training rows not
    assert np.all(np.diff(stored["test/source_row"]) > 0)
    assert not np.all(np.diff(stored["train/source_row"]) > 0)


@pytest.mark.parametrize("kind", ["csv", "npy", "npz", "h5"])
def test_regression_round_trips(tmp_path, kind):
    if kind == "csv":
        path = write_csv(tmp_path / "r.csv", X, Y.tolist(), ["a", "b", "c", "d", "y1", "y2"])
        layout = Layout(target=("y1", "6"))
    elif kind == "npy":
        np.save(tmp_path / "x.npy", X)
        np.save(tmp_path / "y.npy", Y)
        path, layout = tmp_path / "x.npy", Layout(targets=str(tmp_path / "y.npy"))
    elif kind == "npz":
        np.savez(tmp_path / "xy.npz", inputs=X, outputs=Y)
        path, layout = tmp_path / "xy.npz", Layout(features="inputs", targets="outputs")
    else:
        with h5py.File(tmp_path / "lab.h5", "w") as f:
            f["scan/x"], f["scan/y"] = X, Y
        path, layout = tmp_path / "lab.h5", Layout(features="scan/x", targets="scan/y")
    import_table(path, tmp_path / "t.h5", task="regression", layout=layout)
    stored = read(tmp_path / "t.h5")
    check_rows(stored, X, Y)
    train = Y[stored["train/source_row"]]
    np.testing.assert_allclose(stored["scaling/target_mean"], train.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(stored["scaling/target_std"], train.std(axis=0), rtol=1e-12)
    assert len(stored["test/targets"]) in (59, 60, 61)
    if kind == "csv":
        assert describe(tmp_path / "t.h5")["names"] == {"features": ["a", "b", "c", "d"],
                                                       "targets": ["y1", "y2"]}


def test_a_test_file_of_its_own(tmp_path):
    train = write_csv(tmp_path / "a.csv", X[:500], SPECIES[:500])
    test = write_csv(tmp_path / "b.csv", X[500:], SPECIES[500:])
    import_table(train, tmp_path / "t.h5", task="classification", test=test)
    stored = read(tmp_path / "t.h5")
    np.testing.assert_array_equal(stored["test/features"], X[500:])
    np.testing.assert_array_equal(np.sort(stored["train/source_row"]), np.arange(500))
    info = describe(tmp_path / "t.h5")
    assert info["source"] == "import a.csv (test: b.csv)"
    assert info["source_sha256"] == "\n".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in (train, test))


def test_the_same_file_whatever_the_blocks_and_buckets(tmp_path, monkeypatch, csv_engine):
    """The split and the order depend on the seed alone; many buckets still permute."""
    path = write_csv(tmp_path / "r.csv", X, SPECIES)
    import_table(path, tmp_path / "one.h5", task="classification", seed=5)
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 999)
    import_table(path, tmp_path / "small.h5", task="classification", seed=5)
    one, small = read(tmp_path / "one.h5"), read(tmp_path / "small.h5")
    for key in one:
        np.testing.assert_array_equal(one[key], small[key])
    monkeypatch.setattr(imports, "BUCKET_BYTES", 4096)  # 600 rows of 48 B: 7 buckets
    import_table(path, tmp_path / "buckets.h5", task="classification", seed=5)
    buckets = read(tmp_path / "buckets.h5")
    np.testing.assert_array_equal(buckets["test/source_row"], one["test/source_row"])
    assert not np.array_equal(buckets["train/source_row"], one["train/source_row"])
    check_rows(buckets, X, np.searchsorted(sorted(set(SPECIES)), SPECIES))
    import_table(path, tmp_path / "seed6.h5", task="classification", seed=6)
    assert not np.array_equal(read(tmp_path / "seed6.h5")["test/source_row"],
                              one["test/source_row"])


def test_the_stratified_split_against_a_count_by_hand():
    """t_k = min(floor(n_k f + u_k), n_k - 1) rows of each class, however the rows come."""
    classes = np.random.default_rng(1).choice(2, 20_000, p=[0.9, 0.1])
    classes[12_345] = 2  # a class of one row
    counts = np.bincount(classes)
    split = Split(counts, 0.3, seed=2)
    taken = np.concatenate([split.take(classes[i:i + 777]) for i in range(0, 20_000, 777)])
    again = Split(counts, 0.3, seed=2).take(classes)
    np.testing.assert_array_equal(taken, again)
    for k, n_k in enumerate(counts):
        assert np.sum(taken[classes == k]) == split.wanted[k]
        assert split.wanted[k] in (int(n_k * 0.3), int(n_k * 0.3) + 1) or n_k == 1
    assert split.wanted[2] <= counts[2] - 1  # a class of one row keeps it for training


def test_memory_stays_a_block(tmp_path, monkeypatch):
    """Four times the rows, the same memory: what it holds is a block, not the file.
    (numpy's parser: Arrow's memory is its own, which tracemalloc does not see.)"""
    monkeypatch.setenv("DISTNN_CSV", "numpy")
    for module, name, value in ((csvfile, "CSV_BLOCK_CHARS", 1 << 17),
                                (imports, "BUCKET_BYTES", 1 << 19),
                                # the hash runs in a thread of its own, and lags the parse
                                # more or less as the machine is busy: its 1 MiB could
                                # land in any pass's peak
                                (imports, "HASH_CHUNK", 4096),
                                (staging, "BLOCK", 4096), (table, "STAT_BLOCK", 4096)):
        monkeypatch.setattr(module, name, value)
    peaks = []
    for rows in (5_000, 25_000, 100_000):  # the first, for what is allocated once only
        x = np.random.default_rng(0).random((rows, 10))
        path = tmp_path / f"{rows}.csv"
        np.savetxt(path, x, delimiter=",", fmt="%.3f")
        tracemalloc.start()
        import_table(path, tmp_path / "t.h5", task="regression")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[2] < 1.25 * peaks[1] and peaks[2] < x.nbytes / 2, (peaks, x.nbytes)


BAD = [
    ("a,b,y\n1,2,3\n4,x,6\n", ["--task", "regression"],
     "line 3, column 2 (b): 'x' is not a number"),
    ("1,2,3\n4,nan,6\n", ["--task", "regression"], "line 2, column 2: a missing value (NaN)"),
    ("1,2,3\n4,5,inf\n", ["--task", "regression"], "line 2, column 3: inf is not a finite number"),
    ("1,2,cat\n4,5,NaN\n", ["--task", "classification"],
     "line 2, column 3: 'NaN' is not a finite number"),
    ("1,2,cat\n4,5\n", ["--task", "classification"], "line 2 has 2 fields, the first line 3"),
    ("1,2,cat\n4,5,dog,6\n", ["--task", "classification"],
     "line 2 has 4 fields, the first line 3"),
    ("1,2,3\n4,5,6,7\n", ["--task", "regression"], "line 2 has 4 fields, the first line 3"),
    ("a,b,y\n1,2,3\n", ["--task", "regression", "--target", "z"],
     "no column 'z' to predict; its columns are a, b, y"),
    ("1,2,3\n", ["--task", "regression", "--target", "4"],
     "no column '4' to predict; it has 3 columns, numbered from 1"),
    ("1,2,cat\n3,4,cat\n5,6,cat\n", ["--task", "classification"],
     "column 3 holds one class only ('cat'): a classifier needs two or more"),
    ("1,2,cat\n3,4,dog\n", ["--task", "classification", "--test-fraction", "0.01"],
     "--test-fraction 0.01 of 2 rows leaves no test rows"),
    ("1,2,3\n", ["--task", "classification", "--target", "1,2"],
     "a classifier predicts one column of class labels, not 2"),
    *(("1,2,cat\n3,4,dog\n", ["--task", "classification", "--test-fraction", f],
       f"--test-fraction must be between 0 and 1, got {float(f)}") for f in ("0", "1", "1.5")),
]


@pytest.mark.parametrize("text,args,message", BAD)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, text, args, message,
                                                  csv_engine):
    (tmp_path / "in.csv").write_text(text)
    assert data_main(["import", str(tmp_path / "in.csv"), "--out", str(tmp_path / "t.h5"),
                      *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_python_objects_are_refused_never_unpickled(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="never unpickles"):
        import_table(tmp_path / "x.npy", tmp_path / "t.h5", task="regression")
    assert not (tmp_path / "t.h5").exists()


def test_targets_of_another_length_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y[:-1])
    with pytest.raises(DataError,
                       match=r"y\.npy: 599 rows of targets, fewer than the rows of features"):
        import_table(tmp_path / "x.npy", tmp_path / "t.h5", task="regression",
                     layout=Layout(targets=str(tmp_path / "y.npy")))
    np.save(tmp_path / "y.npy", np.vstack([Y, Y[:1]]))
    with pytest.raises(DataError, match="more rows of targets than the 600 rows of features"):
        import_table(tmp_path / "x.npy", tmp_path / "t.h5", task="regression",
                     layout=Layout(targets=str(tmp_path / "y.npy")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]


def test_class_labels_in_a_csv_of_their_own(tmp_path, csv_engine, monkeypatch):
    """The labels' blocks (lines of text) are cut elsewhere than the features' (rows)."""
    monkeypatch.setattr(readers, "BLOCK_ROWS", 64)
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 999)  # about 100 labels a block
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "y.csv").write_text("species\n" + "\n".join(SPECIES) + "\n")
    import_table(tmp_path / "x.npy", tmp_path / "t.h5", task="classification",
                 layout=Layout(targets=str(tmp_path / "y.csv"), header=True))
    check_rows(read(tmp_path / "t.h5"), X, np.searchsorted(sorted(set(SPECIES)), SPECIES))


def test_every_row_once_through_small_blocks_and_buckets(tmp_path, monkeypatch, csv_engine):
    """Blocks and buckets made small, so that every pass reads several, each with a last
    partial one: each source row is stored once, and each class's test rows are its
    share, counted here from the labels themselves."""
    monkeypatch.setattr(csvfile, "CSV_BLOCK_CHARS", 999)  # about 12 lines a block
    monkeypatch.setattr(readers, "BLOCK_ROWS", 50)
    monkeypatch.setattr(staging, "BLOCK", 64)  # 600 rows: 9 blocks of 64 and one of 24
    monkeypatch.setattr(imports, "BUCKET_BYTES", 8192)  # 600 rows of 44 B: 4 buckets
    path = write_csv(tmp_path / "r.csv", X, SPECIES)
    line = import_table(path, tmp_path / "t.h5", task="classification", test_fraction=0.25,
                        seed=3)
    stored = read(tmp_path / "t.h5")
    names = sorted(set(SPECIES))
    check_rows(stored, X, np.searchsorted(names, SPECIES))
    assert len(stored["train/source_row"]) > 4 * 64  # so some bucket holds more than a block
    _, counts = np.unique(SPECIES, return_counts=True)  # in the order of names
    for k, n_k in enumerate(counts):
        assert abs(np.sum(stored["test/targets"] == k) - n_k / 4) < 1
    assert f"{len(stored['train/source_row'])} training rows" in line
    import_table(path, tmp_path / "again.h5", task="classification", test_fraction=0.25, seed=3)
    again = read(tmp_path / "again.h5")  # the seed alone decides, buckets and all
    for key in stored:
        np.testing.assert_array_equal(again[key], stored[key])


def shuffled(tmp_path, buckets, seed=0):
    dtype = staging.record(1, (), np.uint32)
    return staging.Shuffled(tmp_path, buckets, seed, dtype), dtype


def records(dtype, rows):
    out = np.zeros(len(rows), dtype)
    out["row"] = rows
    return out


def test_each_block_is_scattered_to_buckets_of_its_own(tmp_path):
    """Rows a block apart do not go to the same bucket: the buckets of each block are
    drawn afresh (the same 64 places twice in 4 buckets: one chance in 4**64)."""
    shuffle, dtype = shuffled(tmp_path, 4)
    for block in range(3):
        shuffle.add(records(dtype, np.arange(64 * block, 64 * (block + 1))))
    bucket = np.empty(3 * 64, int)
    for b, staged in enumerate(shuffle.buckets):
        bucket[staged.all()["row"]] = b
    blocks = bucket.reshape(3, 64)
    for one, other in ((0, 1), (0, 2), (1, 2)):
        assert not np.array_equal(blocks[one], blocks[other])
    out = np.concatenate([rows for _, _, rows in shuffle.blocks(10)])
    np.testing.assert_array_equal(np.sort(out), np.arange(3 * 64))


def test_each_bucket_is_read_back_in_an_order_of_its_own(tmp_path):
    """Two buckets of 50 rows each: their orders are two draws, not one (one chance in
    50! that they agree). An empty bucket between them is passed over."""
    shuffle, dtype = shuffled(tmp_path, 3)
    shuffle.buckets[0].append(records(dtype, np.arange(50)))
    shuffle.buckets[2].append(records(dtype, np.arange(50, 100)))
    out = np.concatenate([rows for _, _, rows in shuffle.blocks(7)])
    first, second = out[:50], out[50:] - 50
    np.testing.assert_array_equal(np.sort(first), np.arange(50))
    np.testing.assert_array_equal(np.sort(second), np.arange(50))
    assert not np.array_equal(first, second)


def test_the_training_order_follows_the_seed(tmp_path):
    """With a test file of its own no row is split off by the seed: the training order
    alone changes with it (one bucket: its order is the seed's)."""
    train = write_csv(tmp_path / "a.csv", X[:500], SPECIES[:500])
    test = write_csv(tmp_path / "b.csv", X[500:], SPECIES[500:])
    orders = []
    for seed in (0, 1, 0):
        import_table(train, tmp_path / "t.h5", task="classification", test=test, seed=seed)
        orders.append(read(tmp_path / "t.h5")["train/source_row"])
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders[0], orders[2])


@pytest.mark.parametrize("test_text,message", [
    ("1,2,3,setosa\n", "t.csv: 3 features a row, {}/a.csv has 4"),  # no header: by position
    ("1,2,3,4,setosa\n1,2,3,4,zinnia\n",  # sorted last, so named by where it has no rows
     "class 'zinnia' of the test file has no training rows: a classifier cannot learn it"),
])
def test_a_test_file_that_does_not_fit_is_one_line(tmp_path, capsys, test_text, message):
    write_csv(tmp_path / "a.csv", X[:40], SPECIES[:40])
    (tmp_path / "t.csv").write_text(test_text)
    assert data_main(["import", str(tmp_path / "a.csv"), "--test", str(tmp_path / "t.csv"),
                      "--task", "classification", "--out", str(tmp_path / "o.h5")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(tmp_path) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "t.csv"]


def test_a_test_file_with_a_column_the_training_file_lacks_is_one_line(tmp_path):
    write_csv(tmp_path / "a.csv", X[:40], SPECIES[:40], ["a", "b", "c", "d", "y"])
    write_csv(tmp_path / "t.csv", np.c_[X[:5], X[:5, :1]], SPECIES[:5],
              ["a", "b", "c", "d", "e", "y"])
    with pytest.raises(DataError, match=r"has column\(s\) 'e', which the training file lacks"):
        import_table(tmp_path / "a.csv", tmp_path / "o.h5", task="classification",
                     layout=Layout(target=("y",)), test=tmp_path / "t.csv")


def test_labels_by_hand():
    """Numbers sorted as numbers ("9" before "10"), "3" and "3.0" one class; text sorted
    as text; the classes of all blocks together."""
    where = "line {}".format
    numbers = Labels("a.csv, column 5 (y)")
    first = numbers.ids(np.array(["10", "9", "3"]), where)
    second = numbers.ids(np.array(["3.0", " 9 ", "1e1", "0.5"]), where)
    names, number = numbers.classes()
    assert names == ["0.5", "3", "9", "10"]
    assert number[first].tolist() == [3, 2, 1]
    assert number[second].tolist() == [1, 2, 3, 0]
    words = Labels("a.csv, column 5 (y)")
    first = words.ids(np.array(["b", "B"]), where)  # met before "a" and the numbers
    second = words.ids(np.array(["a", "10", "9"]), where)
    names, number = words.classes()
    assert names == ["10", "9", "B", "a", "b"]  # text, so as text: "1" < "9" < "B" < "a"
    assert number[first].tolist() == [4, 2]
    assert number[second].tolist() == [3, 0, 1]


def test_labels_0_to_k_keep_their_numbers(tmp_path):
    """A CSV whose labels are the numbers 0..11 (some written 3.0): each stored target is
    its row's label, as a person reads it."""
    y = np.arange(120) % 12
    text = [f"{v}.0" if v == 3 else str(v) for v in y]
    path = write_csv(tmp_path / "r.csv", X[:120], text)
    assert "12 classes" in import_table(path, tmp_path / "t.h5", task="classification",
                                        test_fraction=0.2)
    stored = read(tmp_path / "t.h5")
    for split in ("train", "test"):
        np.testing.assert_array_equal(stored[f"{split}/targets"],
                                      y[stored[f"{split}/source_row"]])


def test_labels_that_are_not_classes_are_one_line(tmp_path, capsys, monkeypatch):
    """An empty label (in a folder whose name has a space, of a column whose name has a
    comma); more different labels than the limit (made 3 here: a file of 65,537 labels
    would do as well, slower), though as many as the limit are fine; no label at all."""
    (tmp_path / "lab data").mkdir()
    (tmp_path / "lab data" / "e.csv").write_text('a,b,"species, kind"\n1,2,cat\n3,4,\n')
    (tmp_path / "m.csv").write_text("".join(f"{i},{i},{i * 1.5}\n" for i in range(6)))
    (tmp_path / "h.csv").write_text("a,b,species\n")
    monkeypatch.setattr(labels, "MAX_CLASSES", 3)
    for name, message, more in (
            ("lab data/e.csv", "e.csv: line 3, column 3 (species, kind): the class label is "
                               "empty", []),
            ("m.csv", "column 3 holds more than 3 different labels: is it a quantity to "
                      "predict? (--task regression)", []),
            ("h.csv", "h.csv, column 3 (species) holds one class only: a classifier needs "
                      "two or more", ["--header"])):
        assert data_main(["import", str(tmp_path / name), "--task", "classification",
                          "--out", str(tmp_path / "o.h5"), *more]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.h5").exists()
    (tmp_path / "m.csv").write_text("".join(f"{i},{i},{i % 3}\n" for i in range(6)))
    assert data_main(["import", str(tmp_path / "m.csv"), "--task", "classification",
                      "--out", str(tmp_path / "o.h5"), "--test-fraction", "0.5"]) == 0


def test_every_class_keeps_a_training_row_and_the_test_rows_are_drawn():
    """Where floor(n_k f + u_k) would take a class whole (f = 0.95, classes of 1 to 5
    rows, twenty seeds), one row stays for training; within a window the test rows are
    a draw, spread over it, not its first rows."""
    classes = np.repeat(np.arange(5), np.arange(1, 6))  # class k has k + 1 rows
    capped = 0
    for seed in range(20):
        split = Split(np.bincount(classes), 0.95, seed)
        test = split.take(classes)
        for k in range(5):
            n_k = k + 1
            assert np.sum(~test[classes == k]) >= 1
            assert np.sum(test[classes == k]) in (n_k - 1, int(n_k * 0.95))
            capped += int(np.floor(n_k * 0.95)) + 1 > n_k - 1
    assert capped  # the cap was needed in some of them
    test = Split(np.array([4096]), 0.3, seed=2).take(np.zeros(4096, np.int64))
    places = np.flatnonzero(test)
    assert len(places) in (1228, 1229)
    # 1228 places drawn from 4096: their mean is 2047.5 give or take 28; the first 1228
    # places' mean is 613.5
    assert abs(places.mean() - 2047.5) < 300


def test_the_dtype_asked_for_is_stored_and_no_other_is_taken(tmp_path):
    path = write_csv(tmp_path / "r.csv", X, Y.tolist())
    import_table(path, tmp_path / "t.h5", task="regression", layout=Layout(target=("5", "6")),
                 dtype="float32")
    stored = read(tmp_path / "t.h5")
    for split in ("train", "test"):
        assert stored[f"{split}/features"].dtype == np.float32
        np.testing.assert_array_equal(stored[f"{split}/features"],
                                      X[stored[f"{split}/source_row"]].astype(np.float32))
    with pytest.raises(DataError, match="--dtype must be one of float32, float64, got 'float16'"):
        import_table(path, tmp_path / "u.h5", task="regression", dtype="float16")


def test_options_that_do_not_go_together_are_one_line(tmp_path):
    from distnn.data.csvfile import CsvFormat

    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    for layout, message in (
            (Layout(targets=str(tmp_path / "y.npy"), target=("1",)),
             "--target chooses columns of one matrix; with --targets every column"),
            (Layout(targets=str(tmp_path / "y.npy"), fmt=CsvFormat(missing="drop")),
             "--missing drop needs the targets in the same file as the features")):
        with pytest.raises(DataError, match=message):
            import_table(tmp_path / "x.npy", tmp_path / "t.h5", task="regression", layout=layout)


def test_the_passes_and_the_line_add_up(tmp_path):
    """Each pass's seconds (none negative, the sequential ones within the whole), and the
    line's megabytes: the file's size, counted here."""
    path = write_csv(tmp_path / "r.csv", X, SPECIES)
    passes: dict[str, float] = {}
    started = time.perf_counter()
    line = import_table(path, tmp_path / "t.h5", task="classification", passes=passes)
    took = time.perf_counter() - started
    assert set(passes) == {"parse", "stage", "split", "shuffle", "write", "scaling",
                           "checksum wait", "checksum", "other"}
    assert all(seconds >= 0 for seconds in passes.values()), passes
    megabytes, seconds = (float(v) for v in re.search(r"read (\S+) MB in (\S+) s", line).groups())
    assert megabytes == float(f"{path.stat().st_size / 1e6:.3g}")
    assert 0 < seconds <= took * 1.01  # the import's own seconds, within those around it
    # the sequential passes and "other" add up to the whole, which the line rounds to 3 digits
    assert sum(v for k, v in passes.items() if k != "checksum") <= seconds * 1.01 + 1e-3
    rate = float(re.search(r"\((\S+) MB/s\)", line).group(1))
    assert rate == pytest.approx(megabytes / seconds, rel=0.02)  # each rounded to 3 digits


def test_a_test_file_whatever_the_blocks_and_the_task(tmp_path, monkeypatch):
    """Training rows sorted by class, in blocks of 64: the last block has one class only,
    yet every class has training rows; a regression with a test file of its own."""
    monkeypatch.setattr(staging, "BLOCK", 64)
    order = np.argsort(SPECIES[:500], kind="stable")
    train = write_csv(tmp_path / "a.csv", X[order], SPECIES[order])
    test = write_csv(tmp_path / "b.csv", X[500:], SPECIES[500:])
    import_table(train, tmp_path / "t.h5", task="classification", test=test)
    stored = read(tmp_path / "t.h5")
    names = sorted(set(SPECIES))
    by_row = np.searchsorted(names, SPECIES[order])  # each row's class, in a.csv's order
    np.testing.assert_array_equal(stored["train/targets"], by_row[stored["train/source_row"]])
    train = write_csv(tmp_path / "ra.csv", X[:500], Y[:500].tolist())
    test = write_csv(tmp_path / "rb.csv", X[500:], Y[500:].tolist())
    import_table(train, tmp_path / "r.h5", task="regression", test=test,
                 layout=Layout(target=("5", "6")))
    stored = read(tmp_path / "r.h5")
    np.testing.assert_array_equal(stored["test/targets"], Y[500:])
    np.testing.assert_array_equal(stored["train/targets"], Y[:500][stored["train/source_row"]])


@pytest.mark.parametrize("kind", ["npy", "two npy", "h5"])
def test_class_numbers_from_numpy_and_hdf5(tmp_path, kind):
    """Labels that are numbers in a matrix (the last column, or a file of their own):
    each stored target is its row's label."""
    labels = np.arange(600) % 4
    if kind == "npy":
        np.save(tmp_path / "xy.npy", np.c_[X, labels])
        path, layout = tmp_path / "xy.npy", Layout()
    elif kind == "two npy":
        np.save(tmp_path / "x.npy", X)
        np.save(tmp_path / "y.npy", labels[:, None].astype(np.float32))
        path, layout = tmp_path / "x.npy", Layout(targets=str(tmp_path / "y.npy"))
    else:
        with h5py.File(tmp_path / "lab.hdf5", "w") as f:
            f["x"], f["y"] = X, labels
        path, layout = tmp_path / "lab.hdf5", Layout(features="x", targets="y")
    import_table(path, tmp_path / "t.h5", task="classification", layout=layout)
    check_rows(read(tmp_path / "t.h5"), X, labels)
