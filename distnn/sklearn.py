"""scikit-learn's MLPClassifier and MLPRegressor, trained by distnn: in a notebook, or
data-parallel under mpirun with the script unchanged.

    from distnn.sklearn import MLPClassifier        # in place of sklearn.neural_network's
    clf = MLPClassifier(hidden_layer_sizes=(128,), learning_rate_init=0.01, max_iter=60)
    clf.fit(X_train, y_train).score(X_test, y_test)

    mpirun -n 4 python my_script.py                  # the same script, on 4 ranks

Under mpirun every rank runs the script and calls ``fit`` with the same arrays;
each trains on its partitions of every batch and the ranks sum their gradients
(``distnn.estimator``, the trainer's own steps), so every rank ends with the
model one process gets. Only rank 0 prints. Inside ``GridSearchCV`` or
``cross_val_score`` each fit is one such data-parallel fit; leave their
``n_jobs`` unset: the ranks are the parallelism (a worker process they start
would fit alone).

Parameters mean what scikit-learn's mean, with the same defaults, except
``solver``: distnn trains by SGD, so ``solver="sgd"`` is the default and the
only value; and so ``learning_rate_init=None``, the rate that SGD needs: 0.01
for the classifier, 0.001 (scikit-learn's) for the regressor. ``alpha`` is
scikit-learn's L2 term, added to the batch's summed gradient before it is
divided by the batch's size: distnn's weight decay alpha / m. distnn's own:
``dropout``, ``max_norm`` and ``schedule``. Needs the ``sklearn`` extra
(``pip install "distnn[sklearn]"``); nothing else in distnn imports
scikit-learn. docs/sklearn.md has the differences in full.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                      validate_data)

from distnn import estimator
from distnn.activations import ACTIVATIONS
from distnn.initializers import GlorotUniform
from distnn.network import MLP
from distnn.optim import SGD
from distnn.schedules import SCHEDULES

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names for distnn's activations; distnn's own names are taken too
ACTIVATION_NAMES = {"logistic": "sigmoid", **{name: name for name in ACTIVATIONS}}


class _MLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, checks, the fit."""

    _cost = ""  # distnn.costs: the output layer and its cost
    _out_activation = ""  # scikit-learn's name for it
    _rate = 0.0  # eta when learning_rate_init is None (docs/sklearn.md, "Defaults")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=None, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, dropout=0.0, max_norm=0.0, schedule="constant"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.max_norm = max_norm
        self.schedule = schedule

    # -- checks -------------------------------------------------------------------

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(n, numbers.Integral) and n >= 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _check_params(self) -> None:
        """One line for a value distnn cannot train with, saying what it offers instead."""
        if self.solver != "sgd":
            raise ValueError(f"solver={self.solver!r}: distnn trains by mini-batch SGD with "
                             "momentum (Nesterov's by default): solver='sgd' is its only "
                             "solver; for a rate that decays, schedule='cosine'")
        if self.learning_rate != "constant":
            raise ValueError(f"learning_rate={self.learning_rate!r}: distnn's rate follows "
                             f"schedule= (one of {', '.join(SCHEDULES)}); leave learning_rate "
                             "'constant'")
        if self.activation == "identity":
            raise ValueError("activation='identity': distnn's hidden layers are not linear; "
                             "hidden_layer_sizes=() fits a linear model, or choose one of "
                             f"{', '.join(ACTIVATION_NAMES)}")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(f"activation={self.activation!r}: choose one of "
                             f"{', '.join(ACTIVATION_NAMES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if not (self.batch_size == "auto" or isinstance(self.batch_size, numbers.Integral)
                and not isinstance(self.batch_size, bool) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got "
                             f"{self.batch_size!r}")
        checks = [("max_iter", self.max_iter >= 1, "at least 1"),
                  ("n_iter_no_change", self.n_iter_no_change >= 1, "at least 1"),
                  ("alpha", self.alpha >= 0, ">= 0"), ("tol", self.tol >= 0, ">= 0"),
                  ("learning_rate_init", self._eta() > 0, "> 0"),
                  ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                  ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
                  ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                  ("max_norm", self.max_norm >= 0, ">= 0")]
        for name, good, should in checks:
            if not good:  # NaN too
                raise ValueError(f"{name} must be {should}, got {getattr(self, name)!r}")
        self._hidden()

    def _eta(self) -> float:
        return self._rate if self.learning_rate_init is None else self.learning_rate_init

    # -- fitting ------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and y, under mpirun on every rank (each
        passing the same X, y and sample_weight); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if incremental and self.schedule != "constant":
            raise ValueError(f"partial_fit takes schedule='constant', not {self.schedule!r}: "
                             "a schedule ends with max_iter's last epoch, and partial_fit "
                             "has no last epoch")
        # Go on from the fitted parameters: a warm start, or partial_fit after the first
        warm = hasattr(self, "coefs_") and (incremental or self.warm_start)
        comm = estimator.job()  # MPI: every rank of the job, or this process
        try:
            self._rank = comm.rank
            with warnings.catch_warnings():
                if comm.rank != 0:  # only rank 0 prints: every rank would say the same
                    warnings.simplefilter("ignore")
                weights = error = None
                try:
                    X, y = self._validate_input(X, y, reset=not warm, incremental=incremental,
                                                classes=classes)
                    if sample_weight is not None:
                        weights = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                       ensure_non_negative=True)
                except Exception as err:  # every rank hears of it, and none waits for this one
                    error = err
                estimator.same_everywhere(comm, X, y, weights, error=error)  # MPI
                # partial_fit draws its seed once: each call the next epoch of one order
                seed = self._seed if incremental and warm else self._draw_seed(comm)  # MPI
                self._fit_on(comm, X, y, weights, warm, incremental, seed)
        finally:
            estimator.comm_done(comm)  # MPI
        return self

    def _draw_seed(self, comm) -> int:
        state = self.random_state
        if state is not None and not isinstance(state, numbers.Integral):
            state = int(check_random_state(state).randint(np.iinfo(np.int32).max))
        return estimator.shared_seed(comm, state)

    def _fit_on(self, comm, X, y, weights, warm: bool, incremental: bool, seed: int) -> None:
        n_outputs = self._n_outputs(y)
        if self.early_stopping:
            X, X_val, y, y_val, weights, w_val = self._split(X, y, weights, seed)
        n, m = len(X), self._batch_size(len(X))
        sizes = [X.shape[1], *self._hidden(), n_outputs]
        net = self._network(sizes, X.dtype, seed)
        nesterov = bool(self.nesterovs_momentum and self.momentum > 0)
        optimizer = SGD(net.params, momentum=self.momentum, nesterov=nesterov,
                        weight_decay=self.alpha / m, decay_mask=net.weight_mask)
        if warm:
            self._go_on(net, optimizer, sizes, incremental)
        else:
            self._start_curves()
        settings = estimator.Settings(
            m=m, epochs=1 if incremental else self.max_iter, lr=self._eta(), seed=seed,
            schedule=self.schedule, shuffle=bool(self.shuffle), dropout=self.dropout,
            max_norm=self.max_norm, alpha=self.alpha,
            cost_scale=1.0 if is_classifier(self) else 1.0 / n_outputs,
            first_epoch=self._epochs if incremental else 0)
        self._best, self.n_iter_ = None, 0

        def on_epoch(epoch: int, loss: float) -> bool:
            self.n_iter_ += 1
            self.t_ += settings.m * (n // settings.m)
            self.loss_ = loss
            self.loss_curve_.append(loss)
            self._say(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if self.early_stopping:
                return self._improved(net, self._score_of(net, X_val, y_val, w_val))
            return self._improved(net, None)

        estimator.fit_arrays(net, optimizer, X, y, settings, comm, on_epoch, weights)
        if self.early_stopping and self._best is not None:  # the best epoch's parameters
            estimator.set_parameters(net, *self._best)
        self.coefs_, self.intercepts_ = estimator.parameters(net)
        self.n_layers_, self.n_outputs_ = len(sizes), n_outputs
        self.out_activation_ = self._out_activation
        self._state, self._settings, self._seed = optimizer.state_dict(), settings, seed
        self._partitions = estimator.fullest_partitions(n, m)
        self._epochs += self.n_iter_
        if not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)

    def _batch_size(self, n: int) -> int:
        m = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if m > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=5)
        return min(m, n)

    def _go_on(self, net: MLP, optimizer: SGD, sizes: list[int], incremental: bool) -> None:
        """Start from the fitted parameters (a warm start, or partial_fit after the first
        call), and partial_fit from its optimizer's state too (a warm start does not)."""
        if [c.shape for c in self.coefs_] != list(zip(sizes[:-1], sizes[1:])):
            raise ValueError("hidden_layer_sizes, the features or the outputs differ from "
                             "those of the fit it would go on from")
        estimator.set_parameters(net, self.coefs_, self.intercepts_)
        if incremental:
            optimizer.velocity[...] = self._state["velocity"]
        if self.early_stopping:
            self.best_loss_ = None

    def _start_curves(self) -> None:
        """A new fit: its curves start afresh (a warm start extends them)."""
        self.loss_curve_ = []
        self.best_loss_ = None if self.early_stopping else np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self.t_ = 0
        self._no_improvement_count, self._epochs = 0, 0

    def _improved(self, net: MLP, score: float | None) -> bool:
        """scikit-learn's rule: stop once the training loss (or with early_stopping, the
        validation score) has not improved by tol for n_iter_no_change epochs."""
        if score is None:
            last = self.loss_curve_[-1]
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if last > self.best_loss_ - self.tol else 0)
            self.best_loss_ = min(self.best_loss_, last)
        else:
            self.validation_scores_.append(score)
            self._say(f"Validation score: {score:f}")
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if score < self.best_validation_score_ + self.tol
                                          else 0)
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best = estimator.parameters(net)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if score is not None else "Training loss"
            self._say(f"{what} did not improve more than tol={self.tol:f} for "
                      f"{self.n_iter_no_change} consecutive epochs. Stopping.")
            return True
        return False

    def _split(self, X, y, weights, seed: int):
        """The validation rows of early_stopping, drawn alike on every rank."""
        stratify = y if is_classifier(self) else None
        parts = train_test_split(X, y, *([] if weights is None else [weights]),
                                 random_state=seed, test_size=self.validation_fraction,
                                 stratify=stratify)
        X, X_val, y, y_val = parts[:4]
        weights, w_val = (None, None) if weights is None else parts[4:]
        if len(X_val) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X, X_val, y, y_val, weights, w_val

    def _say(self, text: str) -> None:
        if self.verbose and self._rank == 0:
            print(text)

    def _network(self, sizes: list[int], dtype: np.dtype, seed: int = 0) -> MLP:
        activation = ACTIVATION_NAMES[self.activation]
        # scikit-learn's initial weights: He's normal ones start Friedman #1 (10 features)
        # far worse (docs/sklearn.md)
        init = GlorotUniform(2.0 if activation == "sigmoid" else 6.0)
        return MLP(sizes, activation=activation, cost=self._cost, init=init, dtype=dtype,
                   seed=seed)

    def _fitted_network(self) -> MLP:
        check_is_fitted(self, "coefs_")
        sizes = [self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_)]
        net = self._network(sizes, self.coefs_[0].dtype)
        estimator.set_parameters(net, self.coefs_, self.intercepts_)
        return net

    def _outputs(self, X) -> np.ndarray:
        """a^L for the rows X: class probabilities, or the predicted values."""
        net = self._fitted_network()
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return net.forward(X)  # in the net's dtype

    # -- saving -------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the fitted model as a distnn checkpoint, which ``distnn.load_model``,
        ``python -m distnn.predict`` and ``python -m distnn.evaluate`` read. Under mpirun
        rank 0 writes it; call it on every rank, or on rank 0 alone."""
        net = self._fitted_network()
        if getattr(self, "_rank", 0) != 0:
            return
        names = self._names()
        if hasattr(self, "feature_names_in_"):
            names["features"] = [str(f) for f in self.feature_names_in_]
        estimator.save_fitted(path, net, self._state, self._settings, self._partitions,
                              self.n_iter_, names)

    def _names(self) -> dict[str, Any]:
        return {}


class MLPClassifier(ClassifierMixin, _MLP):
    """scikit-learn's MLPClassifier, trained by distnn: softmax outputs and the log-loss
    (two classes too: two softmax outputs, where scikit-learn has one logistic unit)."""

    _cost = "cross_entropy"
    _out_activation = "softmax"
    _rate = 0.01  # Adam's 0.001 is slow for SGD; 0.1 loses unscaled features

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch on X and y, from where the last call ended (its optimizer's state
        too); ``classes`` (every class there will be) on the first call. Under mpirun,
        on every rank with the same arrays, as ``fit``."""
        if not hasattr(self, "coefs_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _validate_input(self, X, y, reset: bool, incremental: bool = False, classes=None):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1 or type_of_target(y) == "multilabel-indicator":
            raise ValueError("distnn's MLPClassifier takes one class a sample: y of shape "
                             f"(n_samples,), got {y.shape}")
        check_classification_targets(y)
        found = np.unique(y)
        if reset:
            self.classes_ = np.unique(classes) if incremental else found
        elif not incremental and not np.array_equal(found, self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as "
                             "in the previous call to fit. Previously got "
                             f"{self.classes_}, `y` has {found}")
        unknown = np.setdiff1d(found, self.classes_)
        if len(unknown):
            raise ValueError(f"`y` has classes not in `self.classes_`: {unknown}; "
                             f"`self.classes_` has {self.classes_}")
        return X, np.searchsorted(self.classes_, y).astype(np.intp)

    def _n_outputs(self, y) -> int:
        return len(self.classes_)

    def _score_of(self, net: MLP, X, y, w) -> float:
        return float(accuracy_score(y, np.argmax(net.forward(X), axis=1), sample_weight=w))

    def predict_proba(self, X) -> np.ndarray:
        """Each class's probability, (n_samples, n_classes), classes in ``classes_``' order."""
        return self._outputs(X)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The class of each row, as named in ``classes_``."""
        a = self._outputs(X)  # first: an unfitted estimator says so
        return self.classes_[np.argmax(a, axis=1)]

    def _names(self) -> dict[str, Any]:
        return {"classes": [str(c) for c in self.classes_]}


class MLPRegressor(RegressorMixin, _MLP):
    """scikit-learn's MLPRegressor, trained by distnn: linear outputs and the squared error."""

    _cost = "linear"
    _out_activation = "identity"
    _rate = 0.001  # scikit-learn's: targets in their own units diverge at 0.01

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on X and y, from where the last call ended (its optimizer's state
        too). Under mpirun, on every rank with the same arrays, as ``fit``."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, reset: bool, incremental: bool = False, classes=None):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        y = np.asarray(y, dtype=X.dtype)
        return X, np.ascontiguousarray(y.reshape(len(y), -1))

    def _n_outputs(self, y) -> int:
        return y.shape[1]

    def _score_of(self, net: MLP, X, y, w) -> float:
        return float(r2_score(y, net.forward(X), sample_weight=w))

    def predict(self, X) -> np.ndarray:
        """The predicted values: (n_samples,) for one target, else (n_samples, n_targets)."""
        a = self._outputs(X)
        return a.ravel() if a.shape[1] == 1 else a

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
