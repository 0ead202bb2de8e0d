"""Probes: how well a known per-cell label or value can be read from an embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError


# ---------------------------------------------------------------------- probes
def probe(x: np.ndarray, y: Sequence, *, kind: str = "rf", groups: Sequence | None = None, folds: int = 5, random_state: int = 0) -> dict:
    """Cross-validated classification probe from an embedding to a column (Engberg Tables 2-3).

    How well a known label (cell line, density, dish...) can be read from the embedding, beside
    a majority-class baseline on the same folds. Cells whose label is missing are left out.

    Parameters
    ----------
    x : ndarray
        Cells x dimensions.
    y : sequence
        The label of each cell (missing values allowed).
    kind : {"rf", "logreg"}, default "rf"
        A class-balanced random forest (300 trees) or a standardised, class-balanced logistic
        regression.
    groups : sequence, optional
        The group of each cell; the folds then keep each group whole (``GroupKFold``).
    folds : int, default 5
        Number of folds (at most the smallest class's count, or the number of groups).
    random_state : int, default 0
        Seed of the folds and the random forest.

    Returns
    -------
    dict
        ``kind``, ``cells``, ``features``, ``folds``, ``group_aware``, ``accuracy``,
        ``balanced_accuracy``, ``cohen_kappa``, ``confusion_matrix`` and ``majority`` (the
        baseline's accuracy, balanced accuracy and kappa).

    Raises
    ------
    StainfreeError
        When the column has one value, a class has one cell (without groups), the groups
        cannot make folds that learn what they test (:func:`group_folds`), or ``kind`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.tl.probe import probe
    >>> x = np.array([[0.0], [0.1], [0.2], [0.3], [1.0], [1.1], [1.2], [1.3]])
    >>> r = probe(x, ["a"] * 4 + ["b"] * 4, kind="logreg", folds=2)
    >>> r["accuracy"], r["folds"], r["majority"]["balanced_accuracy"]
    (1.0, 2, 0.5)
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..eval.metrics import classification_metrics

    y = pd.Series(y).astype("string")
    keep = y.notna().to_numpy()
    x, y = np.asarray(x)[keep], y[keep].astype(str).to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise StainfreeError(f"the probed column has one value only ({classes[0] if len(classes) else 'none'})")
    if groups is not None:
        g = np.asarray(groups, dtype=object)[keep].astype(str)
        cv = group_folds(y, g, folds=folds)
        split_args = {"groups": g}
    else:
        if counts.min() < 2:
            raise StainfreeError(f"class {classes[counts.argmin()]!r} has {counts.min()} cell; a probe needs at least 2 per class")
        cv = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True, random_state=random_state)
        split_args = {}
    if kind == "rf":
        model = RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", n_jobs=-1, random_state=random_state)
    elif kind == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    else:
        raise StainfreeError(f"probe kind must be rf or logreg, got {kind!r}")
    predicted = cross_val_predict(model, x, y, cv=cv, **split_args)
    majority = cross_val_predict(DummyClassifier(strategy="most_frequent"), x, y, cv=cv, **split_args)
    m = classification_metrics(y, predicted, classes=list(classes))
    base = classification_metrics(y, majority, classes=list(classes))
    return {
        "kind": kind,
        "cells": int(len(y)),
        "features": int(x.shape[1]),
        "folds": int(cv.get_n_splits()),
        "group_aware": groups is not None,
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "cohen_kappa": m["cohen_kappa"],
        "confusion_matrix": m["confusion_matrix"],
        "majority": {"accuracy": base["accuracy"], "balanced_accuracy": base["balanced_accuracy"], "cohen_kappa": base["cohen_kappa"]},
    }


def group_folds(y: Sequence, groups: Sequence, *, folds: int = 5):
    """The folds of a group-aware probe, refused when they cannot learn what they test.

    A class that lies in one group only is only ever tested by models that never saw it (probing
    a column by itself, say), and a fold whose training cells hold one class trains nothing.

    Parameters
    ----------
    y : sequence of str
        The class of each cell (no missing values).
    groups : sequence of str
        The group of each cell.
    folds : int, default 5
        Number of folds (at most the number of groups).

    Returns
    -------
    sklearn.model_selection.GroupKFold
        The splitter (each group whole in one fold).

    Raises
    ------
    StainfreeError
        With one group only, a class in one group only, or a fold that trains on one class.

    Examples
    --------
    >>> from stainfree.tl.probe import group_folds
    >>> group_folds(["a", "a", "b", "b"], ["f1", "f2", "f1", "f2"]).get_n_splits()
    2
    >>> group_folds(["a", "a", "b", "b"], ["a", "a", "b", "b"])
    Traceback (most recent call last):
    ...
    stainfree.utils.StainfreeError: class 'a' lies in one group only ('a'), so no fold of a group-aware probe trains on it; probe by another group column
    """
    from sklearn.model_selection import GroupKFold

    y, g = np.asarray(y, dtype=object).astype(str), np.asarray(groups, dtype=object).astype(str)
    n_groups = len(set(g))
    if n_groups < 2:
        raise StainfreeError("a group-aware probe needs at least two groups")
    groups_of = pd.Series(g).groupby(y).nunique()
    if (groups_of < 2).any():
        c = groups_of.index[groups_of.argmin()]
        raise StainfreeError(
            f"class {str(c)!r} lies in one group only ({str(g[y == c][0])!r}), so no fold of a group-aware probe trains on it; "
            "probe by another group column"
        )
    cv = GroupKFold(n_splits=min(folds, n_groups))
    for train, _ in cv.split(y, y, g):
        if len(set(y[train])) < 2:
            raise StainfreeError(
                f"a fold of the group-aware probe trains on class {str(y[train][0])!r} only; probe by another group column"
            )
    return cv


PIXEL_PROBE_MAX_CELLS = 20_000  # the raw-pixel probes beside the embedding's (memory, time)


def regression_probe(
    x: np.ndarray, y: Sequence[float], *, kind: str = "rf", folds: int = 5, random_state: int = 0, trees: int = 300
) -> dict:
    """Cross-validated regression from an embedding to a continuous column.

    Parameters
    ----------
    x : ndarray
        Cells x dimensions.
    y : sequence of float
        The value of each cell; values that are not numbers are left out.
    kind : {"rf", "ridge"}, default "rf"
        A random forest, or a standardised ridge regression whose penalty is chosen by internal
        cross-validation.
    folds : int, default 5
        Number of folds.
    random_state : int, default 0
        Seed of the folds and the random forest.
    trees : int, default 300
        Trees of the random forest.

    Returns
    -------
    dict
        ``kind``, ``cells``, ``features``, ``folds`` and ``pearson_r``, the Pearson correlation of
        the out-of-fold predictions with the values.

    Raises
    ------
    StainfreeError
        With fewer than ``2 * folds`` numeric values, or an unknown ``kind``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.tl.probe import regression_probe
    >>> x = np.arange(20.0)[:, None]
    >>> r = regression_probe(x, 2 * x[:, 0] + 1, kind="ridge", folds=4)
    >>> r["cells"], r["folds"], round(r["pearson_r"], 3)
    (20, 4, 1.0)
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(y)
    if keep.sum() < 2 * folds:
        raise StainfreeError(f"only {int(keep.sum())} cells have a numeric value to predict")
    if kind == "rf":
        model = RandomForestRegressor(n_estimators=trees, n_jobs=-1, random_state=random_state)
    elif kind == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    else:
        raise StainfreeError(f"regression probe kind must be rf or ridge, got {kind!r}")
    pred = cross_val_predict(model, np.asarray(x)[keep], y[keep], cv=KFold(folds, shuffle=True, random_state=random_state))
    return {
        "kind": kind,
        "cells": int(keep.sum()),
        "features": int(np.asarray(x).shape[1]),
        "folds": folds,
        "pearson_r": float(np.corrcoef(pred, y[keep])[0, 1]),
    }
