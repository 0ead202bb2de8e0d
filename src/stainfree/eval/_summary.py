"""Summaries of an evaluation's pooled predictions: per split, pooled, learning curves and the
cross-group table. Internal to :func:`stainfree.eval.evaluate.evaluate`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .metrics import (
    HEADLINE_METRICS,
    PROPORTION_BOUNDS,
    accuracy_interval,
    bootstrap_interval,
    classification_metrics,
    crossed_bootstrap_interval,
    summarise,
)


def _per_split(pred: pd.DataFrame, column: str, classes: list[str], prob_prefix: str) -> list[dict]:
    out = []
    for name, part in pred.groupby("split", sort=False):
        proba = part[[f"{prob_prefix}{c}" for c in classes]].to_numpy()
        m = classification_metrics(part["label"], part[column], proba, classes=classes)
        m["split"] = str(name)
        m["train_size"] = int(part["train_size"].iloc[0])
        if column == "predicted":
            m["epochs"] = int(part["epochs"].iloc[0])
            m["seconds"] = float(part["seconds"].iloc[0])
        out.append(m)
    return out


def _over_splits(folds: list[dict], key: str) -> dict:
    """``summarise`` of one metric over splits: Nadeau-Bengio corrected (the splits share
    training cells), clipped into [0, 1] for a proportion only."""
    return summarise(
        [f[key] for f in folds],
        bounds=PROPORTION_BOUNDS.get(key),
        train_sizes=[f["train_size"] for f in folds],
        test_sizes=[f["n"] for f in folds],
    )


CROSSED_METHOD = "crossed bootstrap (training pools x test groups)"


def _crossed(summary: dict, pred: pd.DataFrame, column: str, group: str, n_boot: int, seed: int) -> None:
    """Cross-group pools: the headline intervals resample pools and test groups together; the
    corrected t interval over pools is kept beside them."""
    for key in ("balanced_accuracy", "accuracy"):
        boot = crossed_bootstrap_interval(
            pred["label"], pred[column], splits=pred["split"], groups=pred[group], metric=key, n_boot=n_boot, random_state=seed
        )
        if boot is not None:
            entry = summary[key]
            entry["ci95_over_splits"], entry["ci95_over_splits_method"] = entry["ci95"], entry["ci95_method"]
            entry["ci95"], entry["ci95_method"] = boot.ci95, CROSSED_METHOD


def _summary(
    folds: list[dict], pooled: dict, pred: pd.DataFrame, column: str, group: str | None, n_boot: int, seed: int, crossed: bool = False
) -> dict:
    summary = {k: _over_splits(folds, k) for k in HEADLINE_METRICS}
    if crossed:
        _crossed(summary, pred, column, group, n_boot, seed)
    summary["accuracy"]["pooled"] = round(pooled["accuracy"], 4)
    summary["accuracy"]["ci95_binomial"] = accuracy_interval(pooled["accuracy"], pooled["n"])
    summary["accuracy"]["ci95_binomial_method"] = "wilson"
    ba = summary["balanced_accuracy"]
    ba["pooled"] = round(pooled["balanced_accuracy"], 4)
    boot = bootstrap_interval(pred["label"], pred[column], groups=pred[group] if group else None, n_boot=n_boot, random_state=seed)
    ba["ci95_bootstrap"] = boot.ci95 if boot else None
    ba["bootstrap_unit"] = group or "cell"
    ba["bootstrap_resamples"] = boot.resamples if boot else 0
    ba["bootstrap_lacking_class"] = boot.lacking_class if boot else 0
    return summary


def metrics_block(
    pred: pd.DataFrame, classes: list[str], baselines: Sequence[str], group: str | None, n_boot: int, seed: int, crossed: bool = False
) -> dict:
    def block(column: str, prob_prefix: str) -> dict:
        folds = _per_split(pred, column, classes, prob_prefix)
        pooled = classification_metrics(
            pred["label"], pred[column], pred[[f"{prob_prefix}{c}" for c in classes]].to_numpy(), classes=classes
        )
        return {"summary": _summary(folds, pooled, pred, column, group, n_boot, seed, crossed), "pooled": pooled, "folds": folds}

    model = block("predicted", "prob_")
    out = {"summary": model["summary"], "pooled": model["pooled"], "folds": model["folds"], "baselines": {}}
    if "predicted_train_prior" in pred:
        out["train_prior"] = train_prior_summary(pred, classes)
    for b in baselines:
        out["baselines"][b] = block(f"baseline_{b}", f"baseline_{b}_prob_")
    return out


def learning_curve_table(pred: pd.DataFrame, classes: list[str]) -> list[dict]:
    out = []
    for frac, part in pred.groupby("train_fraction"):
        folds = []
        for _, p in part.groupby("split"):
            folds.append(classification_metrics(p["label"], p["predicted"], None, classes=classes))
            folds[-1]["train_size"] = int(p["train_size"].iloc[0])
        out.append(
            {
                "train_fraction": float(frac),
                "train_size_mean": float(part.groupby("split")["train_size"].first().mean()),
                "balanced_accuracy": _over_splits(folds, "balanced_accuracy"),
                "accuracy": _over_splits(folds, "accuracy"),
            }
        )
    return out


def cross_group_table(pred: pd.DataFrame, classes: list[str], group: str) -> dict:
    rows = []
    for (split, test_group), part in pred.groupby(["split", group], sort=False):
        m = classification_metrics(part["label"], part["predicted"], None, classes=classes)
        rows.append(
            {
                "train_pool": split,
                "pool_size": int(part["pool_size"].iloc[0]),
                "train_size": int(part["train_size"].iloc[0]),
                "test_group": test_group,
                "n": m["n"],
                "accuracy": m["accuracy"],
            }
        )
    table = pd.DataFrame(rows)
    by_size = [
        {"pool_size": int(size), "accuracy": _over_splits(part.to_dict(orient="records"), "accuracy"), "pairs": int(len(part))}
        for size, part in table.groupby("pool_size")
    ]
    smallest = table[table["pool_size"] == table["pool_size"].min()]
    train = list(dict.fromkeys(smallest["train_pool"]))
    test = sorted(set(smallest["test_group"]))
    matrix = [[None] * len(test) for _ in train]
    for _, r in smallest.iterrows():
        matrix[train.index(r["train_pool"])][test.index(r["test_group"])] = round(float(r["accuracy"]), 4)
    return {"table": table.to_dict(orient="records"), "by_pool_size": by_size, "matrix": {"train": train, "test": test, "accuracy": matrix}}


def train_prior_summary(pred: pd.DataFrame, classes: list[str]) -> dict:
    """Accuracy and balanced accuracy of the decision under the training cells' class
    frequencies (``predicted_train_prior``), over splits, beside the equal-prior headline.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.eval._summary import train_prior_summary
    >>> pred = pd.DataFrame({"split": ["a", "a", "b", "b"], "label": ["x", "y", "x", "y"],
    ...     "predicted_train_prior": ["x", "x", "x", "y"], "train_size": 2})
    >>> s = train_prior_summary(pred, ["x", "y"])
    >>> s["accuracy"]["mean"], s["balanced_accuracy"]["mean"]
    (0.75, 0.75)
    """
    folds = []
    for _, part in pred.groupby("split", sort=False):
        m = classification_metrics(part["label"], part["predicted_train_prior"], None, classes=classes)
        folds.append({**m, "train_size": int(part["train_size"].iloc[0])})
    return {k: _over_splits(folds, k) for k in ("accuracy", "balanced_accuracy")}
