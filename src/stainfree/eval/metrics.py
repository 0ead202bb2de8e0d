"""Metrics of a classification and their intervals."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")
#: Bounds of the headline metrics that are proportions; the others (kappa) are never clipped.
PROPORTION_BOUNDS = {"balanced_accuracy": (0.0, 1.0), "accuracy": (0.0, 1.0), "roc_auc": (0.0, 1.0)}

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- metrics
def classification_metrics(
    y_true: Sequence, y_pred: Sequence, proba: np.ndarray | None = None, *, classes: Sequence[str] | None = None
) -> dict:
    """Metrics of one set of predictions.

    Accuracy, balanced accuracy (the mean recall over the classes present), ROC AUC, Cohen's
    kappa, per-class precision, recall and specificity, and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted class of each cell (compared as strings).
    proba : ndarray, optional
        Class probabilities, ``N x classes`` in ``classes`` order. They give the ROC AUC: binary
        for two classes, macro one-vs-rest over the classes present otherwise.
    classes : sequence of str, optional
        The classes, in order; default the sorted classes of ``y_true``.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``balanced_accuracy``, ``cohen_kappa``, ``roc_auc`` (``None`` without
        ``proba`` or when undefined), ``per_class`` (``precision``, ``recall``, ``specificity``,
        ``n``; ``None`` where undefined) and ``confusion_matrix`` (``classes`` and ``counts``,
        rows true, columns predicted).

    Examples
    --------
    >>> from stainfree.eval.metrics import classification_metrics
    >>> m = classification_metrics(["a", "a", "a", "b"], ["a", "a", "a", "a"])
    >>> m["accuracy"], m["balanced_accuracy"], m["cohen_kappa"]
    (0.75, 0.5, 0.0)
    >>> m["confusion_matrix"]["counts"]
    [[3, 0], [1, 0]]
    >>> m = classification_metrics(["a", "b", "b"], ["a", "b", "a"], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> m["roc_auc"], m["per_class"]["b"]
    (1.0, {'precision': 1.0, 'recall': 0.5, 'specificity': 1.0, 'n': 2})
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    classes = sorted(set(y_true)) if classes is None else [str(c) for c in classes]
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    present = [i for i, c in enumerate(classes) if cm[i].sum() > 0]
    recall = {c: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, c in enumerate(classes)}
    precision = {c: (float(cm[i, i] / cm[:, i].sum()) if cm[:, i].sum() else None) for i, c in enumerate(classes)}
    negatives = cm.sum() - cm.sum(1)
    specificity = {
        c: (float((cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]) / negatives[i]) if negatives[i] else None)
        for i, c in enumerate(classes)
    }
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "balanced_accuracy": float(np.mean([recall[classes[i]] for i in present])) if present else float("nan"),
        "cohen_kappa": _kappa(cohen_kappa_score, y_true, y_pred),
        "roc_auc": None,
        "per_class": {
            c: {"precision": precision[c], "recall": recall[c], "specificity": specificity[c], "n": int(cm[i].sum())}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {"classes": classes, "counts": cm.tolist()},
    }
    if proba is not None and len(present) >= 2:
        proba = np.asarray(proba, dtype=np.float64)
        try:
            if len(classes) == 2:
                out["roc_auc"] = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
            else:
                aucs = [roc_auc_score(y_true == classes[i], proba[:, i]) for i in present]
                out["roc_auc"] = float(np.mean(aucs))
        except ValueError:
            out["roc_auc"] = None
    return out


def _kappa(fn, y_true, y_pred) -> float:
    if len(set(y_true) | set(y_pred)) < 2:
        return 1.0 if np.array_equal(y_true, y_pred) else 0.0
    value = fn(y_true, y_pred)
    return float(0.0 if np.isnan(value) else value)


class BootstrapInterval(NamedTuple):
    """A bootstrap interval and how its resamples went (see :func:`bootstrap_interval`)."""

    ci95: list[float]
    resamples: int
    lacking_class: int


def accuracy_interval(accuracy: float, n: int) -> list[float] | None:
    """Wilson score 95% interval of an accuracy.

    The Wilson interval (without continuity correction) keeps its coverage near 0 and 1, where
    the normal-approximation (Wald) interval collapses to a point; it equals
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` with ``k = round(E * N)``.

    Parameters
    ----------
    accuracy : float
        The accuracy E, in [0, 1].
    n : int
        The number of cells N it was measured on.

    Returns
    -------
    list of float or None
        The lower and upper bound, rounded to 4 decimals; ``None`` for no cells.

    Examples
    --------
    >>> from stainfree.eval.metrics import accuracy_interval
    >>> accuracy_interval(0.9, 100)
    [0.8256, 0.9448]
    >>> accuracy_interval(1.0, 20)
    [0.8389, 1.0]
    """
    from scipy.special import ndtri

    if n <= 0:
        return None
    k = min(max(round(accuracy * n), 0), n)
    z = float(ndtri(0.975))
    p = k / n
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z**2)
    lo = 0.0 if k == 0 else center - delta
    hi = 1.0 if k == n else center + delta
    return [round(lo, 4), round(hi, 4)]


def summarise(
    values: Sequence[float | None],
    *,
    bounds: tuple[float, float] | None = None,
    train_sizes: Sequence[int] | None = None,
    test_sizes: Sequence[int] | None = None,
) -> dict:
    """Mean, standard deviation and 95% interval of a metric over splits.

    Without sizes the interval is Student's t on the J values, ``mean +- t(J-1) s / sqrt(J)``.
    With the train and test sizes of each split it is the corrected resampled t interval of
    Nadeau & Bengio (2003): splits that share training cells give correlated values, so the
    variance of the mean is ``(1/J + n_test/n_train) s^2`` rather than ``s^2 / J`` (the ratio is
    the mean over splits of each split's ``n_test / n_train``).

    Parameters
    ----------
    values : sequence of float or None
        One value per split; ``None`` and NaN are skipped (with their sizes).
    bounds : (float, float), optional
        Clip the interval into these bounds: ``(0, 1)`` for a proportion such as an accuracy.
        Default no clipping (Cohen's kappa and MCC can be negative). A clipped interval still
        has lower <= upper.
    train_sizes, test_sizes : sequence of int, optional
        Training and test cells of each split, aligned with ``values``; both or neither.

    Returns
    -------
    dict
        ``mean``, ``std`` (ddof 1), ``ci95`` (``None`` for fewer than 2 values), ``ci95_method``
        (``"t"`` or ``"nadeau-bengio corrected t"``) and ``n``, the values used. ``mean``,
        ``std`` and ``ci95`` are ``None`` (and ``n`` 0) when there is no value.

    Raises
    ------
    StainfreeError
        When only one of the sizes is given, or their lengths differ from ``values``.

    Examples
    --------
    >>> from stainfree.eval.metrics import summarise
    >>> summarise([0.8, 0.9, 1.0], bounds=(0, 1))
    {'mean': 0.9, 'std': 0.1, 'ci95': [0.6516, 1.0], 'ci95_method': 't', 'n': 3}
    >>> summarise([-0.4, -0.3, -0.2])["ci95"]
    [-0.5484, -0.0516]
    >>> summarise([0.8, 0.9, 1.0], bounds=(0, 1), train_sizes=[80, 80, 80], test_sizes=[20, 20, 20])["ci95"]
    [0.5714, 1.0]
    >>> summarise([0.7, None])
    {'mean': 0.7, 'std': 0.0, 'ci95': None, 'ci95_method': 't', 'n': 1}
    """
    from scipy import stats

    from ..utils import StainfreeError

    if (train_sizes is None) != (test_sizes is None):
        raise StainfreeError("summarise needs both train_sizes and test_sizes, or neither")
    sized = train_sizes is not None
    if sized and not len(train_sizes) == len(test_sizes) == len(values):
        raise StainfreeError(f"summarise got {len(values)} values but {len(train_sizes)} train and {len(test_sizes)} test sizes")
    keep = [i for i, x in enumerate(values) if x is not None and not np.isnan(x)]
    v = np.array([values[i] for i in keep], dtype=np.float64)
    method = "nadeau-bengio corrected t" if sized else "t"
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None, "ci95_method": method, "n": 0}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    ci = None
    if len(v) > 1:
        factor = 1 / len(v)
        if sized:
            factor += float(np.mean([test_sizes[i] / max(train_sizes[i], 1) for i in keep]))
        half = float(stats.t.ppf(0.975, len(v) - 1) * std * math.sqrt(factor))
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo, hi = (min(max(x, float(bounds[0])), float(bounds[1])) for x in (lo, hi))
        ci = [round(lo, 4), round(hi, 4)]
    return {"mean": round(mean, 4), "std": round(std, 4), "ci95": ci, "ci95_method": method, "n": int(len(v))}


def bootstrap_interval(
    y_true, y_pred, *, groups=None, metric: str = "balanced_accuracy", n_boot: int = 1000, random_state: int = 0
) -> BootstrapInterval | None:
    """95% percentile bootstrap interval of a pooled metric.

    Resampling whole groups (flasks, fields) when they are given keeps the interval honest for
    cells of one group that look alike. Every resample is kept. Cells are resampled within each
    class, so each resample holds every class; a resample of groups can lack a class, and its
    balanced accuracy is then the mean recall over the classes it holds (as in
    :func:`classification_metrics`). How many resamples lacked a class is returned and logged.

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted class of each cell.
    groups : sequence, optional
        The group of each cell; default: resample cells (within each class).
    metric : {"balanced_accuracy", "accuracy"}, default "balanced_accuracy"
        The metric.
    n_boot : int, default 1000
        Number of bootstrap samples.
    random_state : int, default 0
        Seed of the resampling.

    Returns
    -------
    BootstrapInterval or None
        ``ci95``, the 2.5th and 97.5th percentiles (rounded to 4 decimals); ``resamples``,
        ``n_boot``; ``lacking_class``, the resamples that lacked a class. ``None`` for no cells
        or ``n_boot`` 0.

    Examples
    --------
    >>> from stainfree.eval.metrics import bootstrap_interval
    >>> b = bootstrap_interval(["a", "a", "b", "b"] * 5, ["a", "b", "b", "b"] * 5, n_boot=200)
    >>> 0 <= b.ci95[0] <= 0.75 <= b.ci95[1] <= 1, b.resamples, b.lacking_class
    (True, 200, 0)
    >>> b = bootstrap_interval(["a", "b", "b"], ["a", "b", "a"], groups=["f1", "f2", "f3"], n_boot=100)
    >>> b.lacking_class > 0
    True
    """
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    if len(y_true) == 0 or n_boot <= 0:
        return None
    classes = sorted(set(y_true))
    rng = np.random.default_rng(random_state)
    g = y_true if groups is None else np.asarray(groups, dtype=object).astype(str)
    members = [np.flatnonzero(g == v) for v in np.unique(g)]
    values, lacking = [], 0
    for _ in range(n_boot):
        if groups is None:  # cells, within each class
            pick = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        else:
            pick = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        yt, yp = y_true[pick], y_pred[pick]
        present = [c for c in classes if np.any(yt == c)]
        lacking += len(present) < len(classes)
        if metric == "accuracy":
            values.append(float(np.mean(yt == yp)))
        else:
            values.append(float(np.mean([np.mean(yp[yt == c] == c) for c in present])))
    if lacking:
        logger.info(
            "bootstrap: %d of %d resamples of %s lacked a class; each kept, its balanced accuracy over the classes it holds",
            lacking,
            n_boot,
            "groups" if groups is not None else "cells",
        )
    lo, hi = np.percentile(values, [2.5, 97.5])
    return BootstrapInterval([round(float(lo), 4), round(float(hi), 4)], n_boot, lacking)


def crossed_bootstrap_interval(
    y_true, y_pred, *, splits, groups, metric: str = "balanced_accuracy", n_boot: int = 1000, random_state: int = 0
) -> BootstrapInterval | None:
    """95% interval of a metric's mean over splits whose test sets share groups (cross-group pools).

    Each split (a training pool) is tested on many groups, and every split tests on nearly the
    same groups: the values share both training and test variation, and a t interval over
    splits, corrected or not, misstates it. Following the pigeonhole bootstrap for crossed
    designs (Owen 2007), each resample draws the splits and the test groups independently with
    replacement; its value is the mean over the drawn splits of each split's metric on the
    drawn groups' cells (a group drawn twice counts twice). Every resample is kept; a split whose
    drawn groups lack a class is scored over the classes they hold, and such resamples are
    counted.

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted class of each prediction.
    splits : sequence
        The split (training pool) of each prediction.
    groups : sequence
        The test group of each prediction.
    metric : {"balanced_accuracy", "accuracy"}, default "balanced_accuracy"
        The metric.
    n_boot : int, default 1000
        Number of bootstrap samples.
    random_state : int, default 0
        Seed of the resampling.

    Returns
    -------
    BootstrapInterval or None
        As :func:`bootstrap_interval`; ``None`` for no predictions or ``n_boot`` 0.

    Examples
    --------
    >>> from stainfree.eval.metrics import crossed_bootstrap_interval
    >>> y = ["a", "b"] * 4
    >>> b = crossed_bootstrap_interval(y, y, splits=[1, 1, 1, 1, 2, 2, 2, 2], groups=["f", "g", "h", "i"] * 2)
    >>> b.ci95, b.resamples
    ([1.0, 1.0], 1000)
    """
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    if len(y_true) == 0 or n_boot <= 0:
        return None
    classes = sorted(set(y_true) | set(y_pred))
    split_ids, s = np.unique(np.asarray(splits, dtype=object).astype(str), return_inverse=True)
    group_ids, g = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    t, p = (np.searchsorted(classes, y) for y in (y_true, y_pred))
    counts = np.zeros((len(split_ids), len(group_ids), len(classes), len(classes)))
    np.add.at(counts, (s, g, t, p), 1)
    rng = np.random.default_rng(random_state)
    values, lacking = [], 0
    for _ in range(n_boot):
        w_split = np.bincount(rng.integers(0, len(split_ids), len(split_ids)), minlength=len(split_ids))
        w_group = np.bincount(rng.integers(0, len(group_ids), len(group_ids)), minlength=len(group_ids))
        conf = np.einsum("g,sgij->sij", w_group, counts)
        true_totals = conf.sum(axis=2)
        present = true_totals > 0
        if metric == "accuracy":
            per_split = np.trace(conf, axis1=1, axis2=2) / np.maximum(true_totals.sum(axis=1), 1)
        else:
            recall = np.diagonal(conf, axis1=1, axis2=2) / np.maximum(true_totals, 1)
            per_split = (recall * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        held = true_totals.sum(axis=1) > 0
        lacking += bool((present[held].sum(axis=1) < len(set(y_true))).any())
        keep = (w_split > 0) & held
        if not keep.any():  # every drawn group sat in every drawn pool: nothing was tested
            continue
        values.append(float(np.average(per_split[keep], weights=w_split[keep])))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return BootstrapInterval([round(float(lo), 4), round(float(hi), 4)], n_boot, lacking)
