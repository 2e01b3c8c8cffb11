"""distnn.sklearn's estimators: scikit-learn's contract (its own checks), its meaning of
alpha and sample_weight (against its own loss and gradient), and what a fit leaves behind.

Under mpirun: tests/system/test_sklearn_mpirun.py.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (the sklearn "
                                                "extra: pip install -e '.[sklearn]')")
from sklearn import neural_network  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from distnn import load_model  # noqa: E402
from distnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Every check passes; none is expected to fail (docs/sklearn.md).
EXPECTED_FAILURES: dict[str, str] = {}


@parametrize_with_checks([MLPClassifier(), MLPRegressor()],
                         expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_scikit_learns_own_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        check(estimator)


def rows(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    classes = np.arange(n) % 3
    targets = np.stack([x[:, 0] * x[:, 1], np.tanh(x[:, 2])], axis=1)
    return x, classes, targets, rng.uniform(0.2, 3.0, n)


def one_batch_step(est, x, y, weights):
    """Fit one epoch of one batch (the whole set), then one more from where it ended, with
    plain SGD: that second step's gradient, ((w before) - (w after)) / eta, at the
    parameters the first left, with the loss the second fit reported."""
    est.set_params(batch_size=len(x), max_iter=1, momentum=0.0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, y, sample_weight=weights)
        before = [c.copy() for c in est.coefs_], [b.copy() for b in est.intercepts_]
        est.fit(x, y, sample_weight=weights)
    eta = est.learning_rate_init
    grads = [(b - a) / eta for a, b in zip(est.coefs_, before[0])]
    grads += [(b - a) / eta for a, b in zip(est.intercepts_, before[1])]
    return before, grads, est.loss_curve_[-1]


def sklearns_step(peer, params, x, y, weights):
    """scikit-learn's own loss and gradient (its MLP's _backprop) at ``params``."""
    coefs, intercepts = params
    peer.coefs_, peer.intercepts_ = [c.copy() for c in coefs], [b.copy() for b in intercepts]
    peer.n_layers_ = len(coefs) + 1
    activations = [x] + [np.empty((len(x), c.shape[1])) for c in coefs]
    deltas = [np.empty_like(a) for a in activations[1:]]
    coef_grads = [np.empty_like(c) for c in coefs]
    intercept_grads = [np.empty_like(b) for b in intercepts]
    loss, coef_grads, intercept_grads = peer._backprop(x, y, weights, activations, deltas,
                                                       coef_grads, intercept_grads)
    return loss, [*coef_grads, *intercept_grads]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_alpha_and_sample_weight_mean_what_they_mean_in_scikit_learn(kind, weighted):
    x, classes, targets, weights = rows()
    weights = weights if weighted else None
    settings = dict(hidden_layer_sizes=(7, 4), activation="tanh", alpha=0.3,
                    learning_rate_init=0.05, random_state=2)
    if kind == "classifier":
        ours, peer, y = MLPClassifier(**settings), neural_network.MLPClassifier(), classes
        peer.out_activation_, peer.loss = "softmax", "log_loss"
        y_peer = np.eye(3)[classes]  # scikit-learn's binarized labels
    else:
        ours, peer, y = MLPRegressor(**settings), neural_network.MLPRegressor(), targets
        peer.out_activation_, peer.loss = "identity", "squared_error"
        y_peer = targets
    peer.set_params(activation="tanh", alpha=0.3)
    params, grads, loss = one_batch_step(ours, x, y, weights)
    their_loss, their_grads = sklearns_step(peer, params, x, y_peer, weights)
    assert loss == pytest.approx(their_loss, rel=1e-12)
    for g, theirs in zip(grads, their_grads):
        np.testing.assert_allclose(g, theirs, rtol=1e-7, atol=1e-10)  # (w - w') / eta


def cosine(t: int, total: int) -> float:
    return (1 + math.cos(math.pi * t / total)) / 2


@pytest.mark.parametrize("shuffle, schedule", [(True, "constant"), (False, "constant"),
                                               (True, "cosine"), (True, "step")])
def test_epochs_of_weighted_batches_are_scikit_learns_sgd(shuffle, schedule):
    """Two epochs of several batches, each step scikit-learn's own weighted loss and
    gradient at the parameters the last left, at the rate the schedule gives that step
    (worked out here): the order of the epochs, each batch's total weight, the rates,
    and the loss curve (scikit-learn's: the mean of its batches' losses)."""
    from distnn.data import Partitions
    from distnn.estimator import fullest_partitions

    x, classes, _, weights = rows(100)
    m, eta, epochs = 16, 0.1, 2
    est = MLPClassifier(hidden_layer_sizes=(6,), activation="tanh", alpha=0.2, batch_size=m,
                        learning_rate_init=eta, momentum=0.0, max_iter=epochs, random_state=9,
                        shuffle=shuffle, schedule=schedule, warm_start=True)
    est.fit(x, classes, sample_weight=weights)
    coefs, intercepts = [c.copy() for c in est.coefs_], [b.copy() for b in est.intercepts_]
    est.fit(x, classes, sample_weight=weights)  # the same epochs again, from there
    peer = neural_network.MLPClassifier(activation="tanh", alpha=0.2)
    peer.out_activation_, peer.loss = "softmax", "log_loss"
    order = Partitions(len(x), m, fullest_partitions(len(x), m), shuffle=shuffle)
    steps = len(x) // m
    rate = {"constant": lambda t: eta,
            "cosine": lambda t: eta * cosine(t, epochs * steps),
            "step": lambda t: eta * 0.1 ** (t // steps)}[schedule]  # a tenth at half way
    for epoch in range(epochs):
        batches = order.epoch(9, epoch, 0, 1)  # every batch's rows, as one process takes them
        assert batches.shape == (steps, m) and len(np.unique(batches)) == batches.size
        if not shuffle:  # each partition's rows in the file's order, batch after batch
            assert (np.diff(batches, axis=0) > 0).all()
        losses = []
        for k, rows_k in enumerate(batches):
            loss, grads = sklearns_step(peer, (coefs, intercepts), x[rows_k],
                                        np.eye(3)[classes[rows_k]], weights[rows_k])
            losses.append(loss)
            for p, g in zip(coefs + intercepts, grads):
                p -= rate(epoch * steps + k) * g
        assert est.loss_curve_[-epochs + epoch] == pytest.approx(np.mean(losses), rel=1e-10)
    for ours, theirs in zip(est.coefs_ + est.intercepts_, coefs + intercepts):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_dropout_and_max_norm_act():
    """Dropout changes the fit (and not predictions afterwards); max-norm bounds the
    length of each hidden unit's incoming weights, checked here on the fitted ones."""
    x, classes, _, _ = rows(120)
    settings = dict(hidden_layer_sizes=(12, 6), learning_rate_init=0.5, max_iter=5,
                    random_state=3)
    plain = MLPClassifier(**settings).fit(x, classes)
    dropped = MLPClassifier(dropout=0.3, **settings).fit(x, classes)
    assert not np.allclose(plain.coefs_[0], dropped.coefs_[0])
    np.testing.assert_array_equal(dropped.predict_proba(x), dropped.predict_proba(x))
    lengths = [np.linalg.norm(w, axis=0) for w in plain.coefs_[:-1]]  # a column: a unit's
    c = 0.5 * min(l.max() for l in lengths)  # a bound the plain fit goes past
    bounded = MLPClassifier(max_norm=c, **settings).fit(x, classes)
    for w in bounded.coefs_[:-1]:
        assert np.linalg.norm(w, axis=0).max() <= c * (1 + 1e-12)
    assert not np.linalg.norm(bounded.coefs_[-1], axis=0).max() <= c  # not the output's


def test_more_ranks_than_partitions_are_refused_before_any_collective():
    from distnn.estimator import Settings, fit_arrays
    from distnn.network import MLP
    from distnn.optim import SGD

    class Twenty:  # rank 0 of 20: nothing is sent before the check
        rank, size = 0, 20

    net = MLP([3, 2], cost="cross_entropy", dtype="float64")
    with pytest.raises(ValueError, match=r"^20 ranks but the run has 10 partitions: each rank "
                                         r"serves whole partitions, so at most 10 ranks, "
                                         r"chosen for batches of 10 from 10 rows; run on fewer "
                                         r"ranks, or give a larger batch_size$"):
        fit_arrays(net, SGD(net.params), np.zeros((10, 3)), np.zeros(10, np.intp),
                   Settings(m=10, epochs=1, lr=0.1, seed=0), Twenty(), lambda e, l: False)


def test_a_fit_that_diverges_says_what_to_do():
    x, _, targets, _ = rows()
    with pytest.raises(ValueError, match=r"^the training cost became (inf|nan) at epoch \d+, "
                                         r"step \d+; try a smaller learning_rate_init$"), \
            np.errstate(all="ignore"):
        MLPRegressor(learning_rate_init=1e6, momentum=0.9, max_iter=5).fit(x, 1e6 * targets)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_tol_and_n_iter_no_change_stop_where_scikit_learn_stops(early_stopping):
    """A tol no epoch can meet: the first epoch sets the best, and both stop once
    n_iter_no_change + 1 more have not beaten it by tol."""
    x, classes, _, _ = rows(120)
    settings = dict(hidden_layer_sizes=(5,), solver="sgd", tol=10.0, n_iter_no_change=3,
                    max_iter=50, early_stopping=early_stopping, random_state=0)
    ours = MLPClassifier(**settings).fit(x, classes)
    peer = neural_network.MLPClassifier(**settings).fit(x, classes)
    assert ours.n_iter_ == peer.n_iter_ == 5
    assert len(ours.loss_curve_) == 5


def test_early_stopping_keeps_the_best_epochs_weights():
    from sklearn.model_selection import train_test_split

    x, classes, _, _ = rows(300)
    est = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
                        learning_rate_init=0.3, n_iter_no_change=4, max_iter=40,
                        random_state=1).fit(x, classes)
    # the split scikit-learn's rule makes: its seed is random_state's
    _, x_val, _, y_val = train_test_split(x, classes, random_state=1, test_size=0.2,
                                          stratify=classes)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ and scores[-1] < max(scores)  # it did get worse
    assert est.score(x_val, y_val) == max(scores) == est.best_validation_score_


def test_a_zero_alpha_is_not_what_alpha_gives():
    """The check above can tell: without alpha the gradient differs by alpha w / m."""
    x, classes, _, _ = rows()
    peer = neural_network.MLPClassifier(activation="tanh", alpha=0.0)
    peer.out_activation_, peer.loss = "softmax", "log_loss"
    ours = MLPClassifier(hidden_layer_sizes=(7, 4), activation="tanh", alpha=0.3,
                         learning_rate_init=0.05, random_state=2)
    params, grads, _ = one_batch_step(ours, x, classes, None)
    _, their_grads = sklearns_step(peer, params, x, np.eye(3)[classes], None)
    np.testing.assert_allclose(grads[0] - their_grads[0], 0.3 * params[0][0] / len(x),
                               rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("given, says", [
    (dict(solver="adam"), "solver='adam': distnn trains by mini-batch SGD"),
    (dict(solver="lbfgs"), "solver='sgd' is its only solver"),
    (dict(learning_rate="adaptive"), "distnn's rate follows schedule="),
    (dict(activation="identity"), "hidden_layer_sizes=() fits a linear model"),
    (dict(activation="softplus"), "choose one of logistic, sigmoid, tanh, relu"),
    (dict(schedule="linear"), "schedule='linear': choose one of constant, step, cosine"),
    (dict(batch_size=0), "batch_size must be 'auto' or a positive integer"),
    (dict(momentum=1.0), "momentum must be in [0, 1)"),
    (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes must be positive integers"),
])
def test_what_distnn_does_not_offer_is_refused_in_one_line(given, says):
    x, classes, _, _ = rows()
    with pytest.raises(ValueError) as err:
        MLPClassifier(**given).fit(x, classes)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_goes_on_as_one_fit_of_as_many_epochs(kind):
    """Each call is the next epoch (its order, the optimizer's state): three calls are
    fit with max_iter=3, which is a different run from three fits of one epoch."""
    x, classes, targets, weights = rows(90)
    make = MLPClassifier if kind == "classifier" else MLPRegressor
    y = classes if kind == "classifier" else targets
    settings = dict(hidden_layer_sizes=(6,), batch_size=20, learning_rate_init=0.05,
                    alpha=1e-3, random_state=4, tol=0.0)
    whole = make(max_iter=3, **settings).fit(x, y, sample_weight=weights)
    parts = make(**settings)
    extra = {"classes": [0, 1, 2]} if kind == "classifier" else {}
    for _ in range(3):
        parts.partial_fit(x, y, sample_weight=weights, **extra)
    for ours, theirs in zip(parts.coefs_ + parts.intercepts_,
                            whole.coefs_ + whole.intercepts_):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(parts.loss_curve_, whole.loss_curve_, rtol=1e-12)
    assert parts.n_iter_ == 1  # as scikit-learn's: the epochs of the last call
    restarted = make(**settings)  # a warm start forgets the velocity: not the same run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(3):
            restarted.set_params(max_iter=1, warm_start=k > 0).fit(x, y, sample_weight=weights)
    assert not np.allclose(restarted.coefs_[0], whole.coefs_[0], rtol=0, atol=1e-6)


def test_partial_fit_needs_the_classes_first_and_keeps_to_them():
    x, classes, _, _ = rows()
    clf = MLPClassifier(max_iter=1)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(x, classes)
    clf.partial_fit(x[classes < 2], classes[classes < 2], classes=[0, 1, 2])
    assert list(clf.classes_) == [0, 1, 2]
    assert clf.predict_proba(x).shape == (len(x), 3)
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`: \\[7\\]"):
        clf.partial_fit(x, np.where(classes == 2, 7, classes))
    with pytest.raises(ValueError, match="^partial_fit takes schedule='constant', not 'cosine'"):
        clf.set_params(schedule="cosine").partial_fit(x, classes)
    with pytest.raises(ValueError, match="^partial_fit does not support early_stopping=True"):
        clf.set_params(schedule="constant", early_stopping=True).partial_fit(x, classes)


def test_multilabel_targets_are_refused():
    x, classes, _, _ = rows()
    with pytest.raises(ValueError, match="one class a sample"):
        MLPClassifier(max_iter=1).fit(x, np.eye(3)[classes])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_inputs_dtype_is_the_models(dtype):
    x, classes, targets, _ = rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(max_iter=2, random_state=0).fit(x.astype(dtype), classes)
        reg = MLPRegressor(max_iter=2, random_state=0).fit(x.astype(dtype), targets)
    for est in (clf, reg):
        assert {c.dtype for c in est.coefs_ + est.intercepts_} == {np.dtype(dtype)}
    assert clf.predict_proba(x).dtype == dtype


def test_defaults_train_well_on_a_standardized_table():
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=600, n_features=12, n_informative=6, n_classes=3,
                               random_state=0)
    x = StandardScaler().fit_transform(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPClassifier(random_state=0).fit(x[:400], y[:400]).score(x[400:], y[400:])
        adam = neural_network.MLPClassifier(random_state=0).fit(x[:400], y[:400])
        sgd = neural_network.MLPClassifier(solver="sgd", random_state=0).fit(x[:400], y[:400])
    # scikit-learn's own defaults (its Adam), and its SGD with them
    assert ours > adam.score(x[400:], y[400:]) - 0.06
    assert ours > sgd.score(x[400:], y[400:]) + 0.03


def test_a_fit_writes_nothing_and_leaves_the_signals_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                       signal.SIGUSR1)}
    x, classes, _, _ = rows()
    before = signal.set_wakeup_fd(-1)  # (an earlier test's run may have left one)
    try:
        MLPClassifier(max_iter=2).fit(x, classes)
        MLPClassifier(max_iter=2).fit(x, classes)  # a second fit: no lock held by the first
    finally:
        woken = signal.set_wakeup_fd(before)
    assert woken == -1  # no wakeup pipe set
    assert list(tmp_path.iterdir()) == []
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_pickled_estimators_predict_alike():
    x, classes, targets, _ = rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est, y in ((MLPClassifier(max_iter=3, random_state=0), classes),
                       (MLPRegressor(max_iter=3, random_state=0), targets)):
            est.fit(x, y)
            np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(x),
                                          est.predict(x))


def fitted(kind: str):
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    x, classes, targets, _ = rows(90)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "classifier":
            names = np.array(["setosa", "versicolor", "virginica"])[classes]
            return MLPClassifier(max_iter=5, random_state=0).fit(frame, names), frame
        return MLPRegressor(max_iter=5, random_state=0).fit(frame, targets), frame


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_save_writes_a_checkpoint_that_distnn_predicts_with(kind, tmp_path):
    est, frame = fitted(kind)
    assert list(est.feature_names_in_) == list(frame.columns)
    path = tmp_path / "model.h5"
    est.save(path)
    model = load_model(path)
    if kind == "classifier":
        assert [model.names[k] for k in model.predict(frame.to_numpy())] == \
            list(est.predict(frame))
    else:
        np.testing.assert_allclose(model.predict(frame.to_numpy()), est.predict(frame),
                                   rtol=1e-12)
    # The command line takes the rows' columns by name, in any order
    rows_csv, out = tmp_path / "rows.csv", tmp_path / "out.csv"
    frame[list(reversed(frame.columns))].to_csv(rows_csv, index=False)
    result = subprocess.run([sys.executable, "-m", "distnn.predict", str(path), str(rows_csv),
                             "--out", str(out)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()[1:]
    if kind == "classifier":
        assert [line.split(",")[0] for line in lines] == list(est.predict(frame))
    else:
        np.testing.assert_allclose(np.array([[float(v) for v in line.split(",")[:2]]
                                             for line in lines]), est.predict(frame),
                                   rtol=1e-6)


def test_distnn_evaluate_scores_a_saved_classifier_as_it_scores_itself(tmp_path):
    """A lab's table brought in by distnn.data import (the test rows from a file of
    their own); distnn.evaluate on the estimator's checkpoint counts what score() does."""
    est, frame = fitted("classifier")
    x, classes, _, _ = rows(150, seed=1)  # rows it never saw
    names = np.array(["setosa", "versicolor", "virginica"])[classes]
    test = frame.iloc[:0].copy()
    for i, column in enumerate(frame.columns):
        test[column] = x[:, i]
    test["label"] = names
    train = frame.assign(label=est.predict(frame))
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    table, model = tmp_path / "t.h5", tmp_path / "m.h5"
    made = subprocess.run([sys.executable, "-m", "distnn.data", "import",
                           str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                           "--out", str(table), "--task", "classification", "--target", "label"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert made.returncode == 0, made.stderr
    est.save(model)
    done = subprocess.run([sys.executable, "-m", "distnn.evaluate", str(model), "--data",
                           str(table)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    right = round(est.score(test.drop(columns="label"), names) * len(test))
    assert f"({right}/{len(test)})" in done.stdout.splitlines()[0], done.stdout


def test_the_checkpoint_keeps_the_fits_settings_and_state(tmp_path):
    from distnn.checkpoint import read_checkpoint
    from distnn.estimator import fullest_partitions

    x, classes, _, _ = rows(90)
    est = MLPClassifier(hidden_layer_sizes=(7, 5), activation="tanh", alpha=0.3, batch_size=30,
                        learning_rate_init=0.02, momentum=0.8, nesterovs_momentum=True,
                        max_iter=4, dropout=0.1, max_norm=3.0, schedule="cosine",
                        random_state=11).fit(x, classes)
    est.save(tmp_path / "m.h5")
    saved = read_checkpoint(tmp_path / "m.h5")
    config, model = saved["config"], saved["model"]
    assert model["sizes"] == [5, 7, 5, 3] and model["activation"] == "tanh"
    assert (model["cost"], model["dtype"]) == ("cross_entropy", "float64")
    expected = {"layers": [5, 7, 5, 3], "hidden": [7, 5], "activation": "tanh",
                "cost": "cross_entropy", "dtype": "float64", "batch_size": 30, "lr": 0.02,
                "momentum": 0.8, "nesterov": True, "weight_decay": 0.3 / 30, "epochs": 4,
                "dropout": 0.1, "max_norm": 3.0, "schedule": "cosine", "seed": 11,
                "warmup_epochs": 0.0, "init": "glorot_uniform", "data": "",
                "partitions": fullest_partitions(90, 30)}
    assert {k: config[k] for k in expected} == expected
    assert saved["position"]["epoch"] == est.n_iter_ == 4
    assert saved["optimizer"]["momentum"] == 0.8 and saved["optimizer"]["nesterov"] == 1.0
    assert saved["optimizer"]["velocity"].any()  # the fit's own, not a fresh one
    assert saved["data"] == {"task": "classification", "feature_scaling": "none",
                             "n_outputs": 3, "names": {"classes": ["0", "1", "2"]}}


def test_save_under_a_name_that_is_a_directory_says_so(tmp_path):
    est, _ = fitted("classifier")
    with pytest.raises(Exception) as err:
        est.save(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_a_batch_without_weight_is_refused_in_one_line():
    x, classes, _, _ = rows(60)
    weights = np.zeros(60)
    weights[0] = 1.0  # not all zero (scikit-learn refuses that itself), but most batches
    with pytest.raises(ValueError, match=r"^batch \d+ of epoch 1 has no weight: its samples' "
                                         r"sample_weight are all 0"):
        MLPClassifier(batch_size=10, max_iter=1).fit(x, classes, sample_weight=weights)
