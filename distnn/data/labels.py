"""Class labels as a lab's file has them ("setosa", 3, "3.0") to class numbers 0..K-1.

Labels are numbered as they are first met while the file streams by (``ids``),
since the full set is known only at its end; ``classes()`` then gives every
label its class number in sorted order: by value where every label is a
number (so labels 0..K-1 keep their numbers, and "3" and "3.0" are one class),
by text otherwise. The names, in class order, are stored with the data, so
predictions can say "setosa" rather than 2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import DataError
from .store import MAX_CLASSES


def canonical(label: object) -> str:
    """One name per class: a number's shortest form ("3", "0.5"), or the text itself."""
    text = str(label).strip()
    try:
        value = float(text)
    except ValueError:
        return text
    if not np.isfinite(value):
        return text
    return str(int(value)) if value.is_integer() else repr(value)


def _number(name: str) -> float | None:
    try:
        value = float(name)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _missing(name: str) -> bool:
    """NaN, inf: what stands for a missing number, never a class."""
    try:
        return not np.isfinite(float(name))
    except ValueError:
        return False


class Labels:
    """The labels of one column, met block by block."""

    def __init__(self, column: str) -> None:
        self.column = column  # how errors name it: "iris.csv, column 5 (species)"
        self._ids: dict[str, int] = {}

    def ids(self, values: np.ndarray, where: Callable[[int], str]) -> np.ndarray:
        """The id (order of first meeting) of each value of a block (b,), uint32.
        ``where(i)`` names row i of the block for errors: "line 12"."""
        unique, inverse = np.unique(values, return_inverse=True)
        names = [canonical(v) for v in unique.tolist()]
        for bad, why in (("", "the class label is empty"),
                         (next((n for n in names if _missing(n)), None), "is not a finite number")):
            if bad in names:
                first = int(np.argmax(inverse.reshape(-1) == names.index(bad)))
                raise DataError(f"{where(first)}, {self.column.split(', ', 1)[-1]}: "
                                + (why if not bad else f"{bad!r} {why}"))
        for name in names:
            self._ids.setdefault(name, len(self._ids))
        if len(self._ids) > MAX_CLASSES:
            raise DataError(f"{self.column} holds more than {MAX_CLASSES} different "
                            "labels: is it a quantity to predict? (--task regression)")
        return np.array([self._ids[n] for n in names], np.uint32)[inverse.reshape(-1)]

    def classes(self) -> tuple[list[str], np.ndarray]:
        """(names in class order, the class number of each id)."""
        names = list(self._ids)
        if len(names) < 2:
            raise DataError(f"{self.column} holds one class only"
                            f"{f' ({names[0]!r})' if names else ''}: a classifier needs two "
                            "or more")
        values = [_number(n) for n in names]
        if all(v is not None for v in values):
            order = sorted(range(len(names)), key=lambda i: values[i])
        else:
            order = sorted(range(len(names)), key=lambda i: names[i])
        number = np.empty(len(names), np.int64)
        number[order] = np.arange(len(names))
        return [names[i] for i in order], number
