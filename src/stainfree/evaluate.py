"""Honest evaluation: group-aware splits, balanced metrics with confidence intervals, baselines.

Cells of one field, flask or dish are not independent, so when a group column is given every
test fold holds whole groups, and confidence intervals resample whole groups (a cluster
bootstrap). Balanced accuracy is always reported beside accuracy, and baselines beside the model.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .cellset import CellSet
from .train import TrainConfig, fit
from .utils import StainfreeError

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- splits
def make_folds(
    labels: Sequence,
    *,
    groups: Sequence | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits, or stratified group k-fold splits when ``groups`` is given.

    Raises a clear error when there are fewer groups (or fewer cells of a class) than folds.

    >>> groups = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    >>> folds = make_folds(["a", "b"] * 4, groups=groups, n_folds=2)
    >>> sorted(sorted(groups[test].tolist()) for _, test in folds)
    [[1, 1, 4, 4], [2, 2, 3, 3]]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels, dtype=object)
    if n_folds < 2:
        raise StainfreeError(f"need at least 2 folds, got {n_folds}")
    if groups is None:
        smallest = pd.Series(labels).value_counts().min()
        if smallest < n_folds:
            cls = pd.Series(labels).value_counts().idxmin()
            raise StainfreeError(f"class {cls!r} has {smallest} cell(s), fewer than the {n_folds} folds")
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels)]
    groups = np.asarray(groups, dtype=object)
    if pd.isna(groups).any():
        raise StainfreeError("some cells have no value in the group column")
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise StainfreeError(f"only {n_groups} groups for {n_folds} folds; use fewer folds")
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


# ---------------------------------------------------------------------- metrics
def _point_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    present = [c for c in classes if (y_true == c).any()]
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in present]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
    }


def classification_metrics(
    y_true: Sequence,
    y_pred: Sequence,
    *,
    classes: Sequence[str] | None = None,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Accuracy and balanced accuracy with 95% bootstrap confidence intervals.

    With ``groups`` the bootstrap resamples whole groups (cells of a flask rise and fall
    together); resamples that miss a class are drawn again. Also returns per-class recall and
    the confusion matrix (rows true, columns predicted, in ``classes`` order).

    >>> m = classification_metrics(["a", "a", "a", "b"], ["a", "a", "a", "a"], n_boot=0)
    >>> m["accuracy"]["value"], m["balanced_accuracy"]["value"]
    (0.75, 0.5)
    """
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    classes = sorted(set(y_true)) if classes is None else list(classes)
    point = _point_metrics(y_true, y_pred, classes)
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {k: [] for k in point}
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        unique = np.unique(groups.astype(str))
        members = [np.flatnonzero(groups.astype(str) == g) for g in unique]
    draws = 0
    n_classes = len(set(y_true))
    while len(boots["accuracy"]) < n_boot and draws < 20 * n_boot:
        draws += 1
        if groups is None:
            pick = rng.integers(0, len(y_true), len(y_true))
        else:
            pick = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if len(set(y_true[pick])) < n_classes:
            continue
        for k, v in _point_metrics(y_true[pick], y_pred[pick], classes).items():
            boots[k].append(v)
    out: dict = {}
    for k, v in point.items():
        entry = {"value": v}
        if boots[k]:
            lo, hi = np.percentile(boots[k], [2.5, 97.5])
            entry["ci95"] = [float(lo), float(hi)]
        out[k] = entry
    out["bootstrap"] = {"resamples": len(boots["accuracy"]), "unit": "group" if groups is not None else "cell"}
    out["per_class_recall"] = {c: float(np.mean(y_pred[y_true == c] == c)) if (y_true == c).any() else None for c in classes}
    out["confusion_matrix"] = {"classes": classes, "counts": confusion_matrix(y_true, y_pred, labels=classes).tolist()}
    return out


# ---------------------------------------------------------------------- baselines
def majority_baseline(train_labels: Sequence, n_test: int) -> np.ndarray:
    """Predict the most frequent training class for every test cell."""
    values, counts = np.unique(np.asarray(train_labels, dtype=object).astype(str), return_counts=True)
    return np.full(n_test, values[np.argmax(counts)], dtype=object)


def size_baseline(train_area, train_labels, test_area) -> np.ndarray:
    """Class from cell size alone: a class-balanced logistic regression on log area."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(class_weight="balanced")
    clf.fit(np.log1p(np.asarray(train_area, float))[:, None], np.asarray(train_labels, dtype=object).astype(str))
    return clf.predict(np.log1p(np.asarray(test_area, float))[:, None]).astype(object)


# ---------------------------------------------------------------------- cross-validation
@dataclasses.dataclass
class CrossValidation:
    """Out-of-fold predictions and training histories of a cross-validated classifier."""

    predictions: pd.DataFrame  # cell_id, label, fold, predicted, prob_<class>..., baselines
    histories: list[list[dict]]
    classes: list[str]
    metrics: dict
    protocol: dict


def cross_validate(
    cells: CellSet,
    *,
    group: str | None = None,
    n_folds: int = 5,
    config: TrainConfig | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> CrossValidation:
    """Train and test a classifier fold by fold; pool the out-of-fold predictions.

    With ``group`` (a column such as ``flask``) every test fold holds whole groups and the
    intervals resample groups; without it, a warning is logged when the set declares groups.
    """
    config = config or TrainConfig(seed=seed)
    table = cells.table
    labelled = table["label"].notna().to_numpy()
    if not labelled.any():
        raise StainfreeError("no cell has a label; a classifier needs labelled cells")
    if not labelled.all():
        logger.info("leaving out %d unlabelled cells", int((~labelled).sum()))
        cells = cells.select(labelled)
        table = cells.table
    if group is not None and group not in table.columns:
        raise StainfreeError(f"group column {group!r} does not exist (columns: {', '.join(map(str, table.columns))})")
    if group is None and cells.groups:
        logger.warning(
            "random split although the set has group columns (%s): cells of one group look alike, "
            "so this estimate is likely optimistic; pass a group column for an honest one",
            ", ".join(cells.groups),
        )
    labels = table["label"].astype(str).to_numpy(dtype=object)
    classes = sorted(set(labels))
    counts = pd.Series(labels).value_counts()
    if counts.min() < 2:
        raise StainfreeError(f"class {counts.idxmin()!r} has only one cell; every class needs at least 2")
    groups = table[group].astype(str).to_numpy(dtype=object) if group else None
    folds = make_folds(labels, groups=groups, n_folds=n_folds, seed=seed)
    images = cells.images
    rows, histories = [], []
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        logger.info("fold %d/%d: %d training cells, %d test cells", k, len(folds), len(train_idx), len(test_idx))
        missing = [c for c in classes if c not in set(labels[train_idx])]
        if missing:
            raise StainfreeError(f"fold {k} has no training cell of class {missing[0]!r}; use fewer folds or another group column")
        clf, history = fit(images[train_idx], labels[train_idx], channels=cells.channels, config=config, classes=classes)
        histories.append(history)
        proba = clf.predict_proba(images[test_idx])
        fold = pd.DataFrame({"cell_id": table["cell_id"].to_numpy()[test_idx], "label": labels[test_idx], "fold": k})
        if group:
            fold[group] = groups[test_idx]
        fold["predicted"] = np.asarray(classes, dtype=object)[proba.argmax(1)]
        for j, c in enumerate(classes):
            fold[f"prob_{c}"] = proba[:, j]
        fold["baseline_majority"] = majority_baseline(labels[train_idx], len(test_idx))
        if "area" in table.columns:
            area = table["area"].to_numpy()
            fold["baseline_size"] = size_baseline(area[train_idx], labels[train_idx], area[test_idx])
        rows.append(fold)
    pred = pd.concat(rows, ignore_index=True)
    group_values = pred[group].to_numpy() if group else None
    metrics = {
        "model": classification_metrics(pred["label"], pred["predicted"], classes=classes, groups=group_values, n_boot=n_boot, seed=seed)
    }
    for col in [c for c in pred.columns if c.startswith("baseline_")]:
        metrics[col] = classification_metrics(pred["label"], pred[col], classes=classes, groups=group_values, n_boot=n_boot, seed=seed)
    protocol = {
        "name": "group-kfold" if group else "kfold",
        "folds": len(folds),
        "group": group,
        "n_groups": int(len(set(groups))) if group else None,
        "cells": int(len(labels)),
        "class_counts": {str(k): int(v) for k, v in counts.items()},
        "seed": seed,
    }
    return CrossValidation(pred, histories, classes, metrics, protocol)
