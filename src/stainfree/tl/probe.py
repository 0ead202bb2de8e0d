"""Probes: how well a known per-cell label or value can be read from an embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError


# ---------------------------------------------------------------------- probes
def probe(x: np.ndarray, y: Sequence, *, kind: str = "rf", groups: Sequence | None = None, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated classification probe from an embedding to a column (Engberg Tables 2-3).

    ``kind`` is ``rf`` (random forest) or ``logreg`` (standardised logistic regression);
    with ``groups`` the folds keep each group whole. Returns accuracy, balanced accuracy, Cohen's
    kappa, the confusion matrix and the majority-class baseline.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
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
        n_groups = len(set(g))
        if n_groups < 2:
            raise StainfreeError("a group-aware probe needs at least two groups")
        cv = GroupKFold(n_splits=min(folds, n_groups))
        split_args = {"groups": g}
    else:
        if counts.min() < 2:
            raise StainfreeError(f"class {classes[counts.argmin()]!r} has {counts.min()} cell; a probe needs at least 2 per class")
        cv = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True, random_state=seed)
        split_args = {}
    if kind == "rf":
        model = RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", n_jobs=-1, random_state=seed)
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


PIXEL_PROBE_MAX_CELLS = 20_000  # the raw-pixel probes beside the embedding's (memory, time)


def regression_probe(x: np.ndarray, y: Sequence[float], *, kind: str = "rf", folds: int = 5, seed: int = 0, trees: int = 300) -> dict:
    """Cross-validated regression from an embedding to a continuous column: Pearson r of the
    out-of-fold predictions. ``kind`` is ``rf`` (random forest) or ``ridge`` (standardised ridge
    regression, its penalty chosen by internal cross-validation)."""
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
        model = RandomForestRegressor(n_estimators=trees, n_jobs=-1, random_state=seed)
    elif kind == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    else:
        raise StainfreeError(f"regression probe kind must be rf or ridge, got {kind!r}")
    pred = cross_val_predict(model, np.asarray(x)[keep], y[keep], cv=KFold(folds, shuffle=True, random_state=seed))
    return {
        "kind": kind,
        "cells": int(keep.sum()),
        "features": int(np.asarray(x).shape[1]),
        "folds": folds,
        "pearson_r": float(np.corrcoef(pred, y[keep])[0, 1]),
    }
