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
    """Accuracy, balanced accuracy, ROC AUC, Cohen's kappa, per-class precision, recall and
    specificity, and the confusion matrix (rows true, columns predicted) of one set of predictions.

    ``proba`` (N x classes, in ``classes`` order) gives the ROC AUC: binary for two classes,
    macro one-vs-rest otherwise, over the classes present; ``None`` when it is undefined.

    >>> m = classification_metrics(["a", "a", "a", "b"], ["a", "a", "a", "a"])
    >>> m["accuracy"], m["balanced_accuracy"], m["cohen_kappa"]
    (0.75, 0.5, 0.0)
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
    """Normal-approximation 95% interval of an accuracy over ``n`` cells: E +- 1.96 sqrt(E(1-E)/N)
    (as Yao et al. report it), clipped to [0, 1].

    >>> accuracy_interval(0.9, 100)
    [0.8412, 0.9588]
    """
    half = 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))
    return [round(max(0.0, accuracy - half), 4), round(min(1.0, accuracy + half), 4)]


def summarise(values: Sequence[float | None]) -> dict:
    """Mean, standard deviation and 95% t-interval of a metric over folds (missing values skipped).

    >>> summarise([0.8, 0.9, 1.0])
    {'mean': 0.9, 'std': 0.1, 'ci95': [0.6516, 1.0], 'n': 3}
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
    y_true, y_pred, *, groups=None, metric: str = "balanced_accuracy", n_boot: int = 1000, seed: int = 0
) -> list[float] | None:
    """95% percentile bootstrap interval of a pooled metric; resamples whole groups when given."""
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    classes = sorted(set(y_true))
    rng = np.random.default_rng(seed)
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
