"""Metrics of a classification and their intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")


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


def accuracy_interval(accuracy: float, n: int) -> list[float]:
    """Normal-approximation 95% interval of an accuracy.

    E +- 1.96 sqrt(E(1 - E) / N), as Yao et al. report it, clipped to [0, 1].

    Parameters
    ----------
    accuracy : float
        The accuracy E, in [0, 1].
    n : int
        The number of cells N it was measured on.

    Returns
    -------
    list of float
        The lower and upper bound, rounded to 4 decimals.

    Examples
    --------
    >>> from stainfree.eval.metrics import accuracy_interval
    >>> accuracy_interval(0.9, 100)
    [0.8412, 0.9588]
    >>> accuracy_interval(1.0, 20)
    [1.0, 1.0]
    """
    half = 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))
    return [round(max(0.0, accuracy - half), 4), round(min(1.0, accuracy + half), 4)]


def summarise(values: Sequence[float | None]) -> dict:
    """Mean, standard deviation and 95% t-interval of a metric over folds.

    Parameters
    ----------
    values : sequence of float or None
        One value per fold; ``None`` and NaN are skipped.

    Returns
    -------
    dict
        ``mean``, ``std`` (ddof 1), ``ci95`` (Student's t; clipped to [0, 1] for a mean in
        [-1, 1]; ``None`` for a single value) and ``n``, the values used. All ``None`` (and
        ``n`` 0) when there is no value.

    Examples
    --------
    >>> from stainfree.eval.metrics import summarise
    >>> summarise([0.8, 0.9, 1.0])
    {'mean': 0.9, 'std': 0.1, 'ci95': [0.6516, 1.0], 'n': 3}
    >>> summarise([0.7, None])
    {'mean': 0.7, 'std': 0.0, 'ci95': None, 'n': 1}
    """
    from scipy import stats

    v = np.array([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    if len(v) > 1:
        half = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))
        ci = [round(max(0.0, mean - half), 4), round(min(1.0, mean + half), 4)] if -1 <= mean <= 1 else [mean - half, mean + half]
    else:
        ci = None
    return {"mean": round(mean, 4), "std": round(std, 4), "ci95": ci, "n": int(len(v))}


def bootstrap_interval(
    y_true, y_pred, *, groups=None, metric: str = "balanced_accuracy", n_boot: int = 1000, random_state: int = 0
) -> list[float] | None:
    """95% percentile bootstrap interval of a pooled metric.

    Resampling whole groups (flasks, fields) when they are given keeps the interval honest for
    cells of one group that look alike. Draws that lack a class are redrawn (up to ``20 * n_boot``
    draws in all).

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted class of each cell.
    groups : sequence, optional
        The group of each cell; default: resample cells.
    metric : {"balanced_accuracy", "accuracy"}, default "balanced_accuracy"
        The metric.
    n_boot : int, default 1000
        Number of bootstrap samples.
    random_state : int, default 0
        Seed of the resampling.

    Returns
    -------
    list of float or None
        The 2.5th and 97.5th percentiles (rounded to 4 decimals); ``None`` when no draw held
        every class.

    Examples
    --------
    >>> from stainfree.eval.metrics import bootstrap_interval
    >>> lo, hi = bootstrap_interval(["a", "a", "b", "b"] * 5, ["a", "b", "b", "b"] * 5, n_boot=200)
    >>> 0 <= lo <= 0.75 <= hi <= 1
    True
    """
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    classes = sorted(set(y_true))
    rng = np.random.default_rng(random_state)
    if groups is not None:
        g = np.asarray(groups, dtype=object).astype(str)
        members = [np.flatnonzero(g == v) for v in np.unique(g)]
    values, draws = [], 0
    while len(values) < n_boot and draws < 20 * n_boot:
        draws += 1
        pick = (
            rng.integers(0, len(y_true), len(y_true))
            if groups is None
            else np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        )
        if len(set(y_true[pick])) < len(classes):
            continue
        yt, yp = y_true[pick], y_pred[pick]
        if metric == "accuracy":
            values.append(float(np.mean(yt == yp)))
        else:
            values.append(float(np.mean([np.mean(yp[yt == c] == c) for c in classes])))
    if not values:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]
