"""Evaluating a classifier on a CellSet under a protocol, with baselines, learning curves and audits."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cellset import CellSet
from ..ml.classifier import Classifier, check_finite
from ..ml.train import TrainConfig, fit
from ..utils import StainfreeError, read_parquet
from .baselines import BASELINES, OPTIONAL_BASELINES, align_features, run_baseline
from .metrics import (
    HEADLINE_METRICS,
    accuracy_interval,
    bootstrap_interval,
    classification_metrics,
    summarise,
)
from .protocols import PROTOCOLS, make_folds, make_splits

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the evaluation
@dataclasses.dataclass
class Evaluation:
    """Everything an evaluation produced (written to a run folder by :mod:`stainfree.workflows.evaluate`).

    Attributes
    ----------
    predictions : DataFrame
        One row per test cell and split: ``cell_id``, ``split``, ``label``, ``predicted``,
        ``prob_<class>``, training size, and each baseline's ``baseline_<name>`` columns.
    histories : list of list of dict
        The training history (one dict per epoch) of each split.
    classes : list of str
        The classes, in the order of the probability columns.
    metrics : dict
        Summaries over splits, pooled metrics, per-split metrics and the baselines' (as written to
        ``metrics.json``).
    protocol : dict
        The protocol's name, folds, repeats, group and seed.
    model : Classifier, optional
        A model trained on all cells (``final_model``).
    features : DataFrame, optional
        The handcrafted features the baselines used.
    """

    predictions: pd.DataFrame
    histories: list[list[dict]]
    classes: list[str]
    metrics: dict
    protocol: dict
    model: Classifier | None = None
    features: pd.DataFrame | None = None  # the handcrafted features the baselines used


def _select_labelled(cells: CellSet) -> CellSet:
    labelled = cells.table["label"].notna().to_numpy()
    if not labelled.any():
        raise StainfreeError("no cell has a label; a classifier needs labelled cells")
    if not labelled.all():
        logger.info("leaving out %d unlabelled cells", int((~labelled).sum()))
        cells = cells.select(labelled)
    return cells


def evaluate(
    cells: CellSet,
    *,
    protocol: str | None = None,
    group: str | None = None,
    n_folds: int = 5,
    repeats: int = 1,
    config: TrainConfig | None = None,
    baselines: Sequence[str] = BASELINES,
    train_sizes: Sequence[float] | None = None,
    final_model: bool = False,
    n_boot: int = 1000,
    work_dir: str | Path | None = None,
    features: pd.DataFrame | None = None,
    tta: bool = True,
) -> Evaluation:
    """Train and test a classifier under a protocol; pool and summarise the predictions.

    Parameters
    ----------
    protocol : str, optional
        One of :data:`PROTOCOLS`; default ``group-kfold`` when ``group`` is given, else ``kfold``.
    group : str, optional
        The group column (flask, field, dish...). A random protocol on a set that declares group
        columns logs a warning.
    baselines : names from :data:`BASELINES`, run on the same splits.
    train_sizes : fractions of each training split (e.g. ``[0.1, 0.25, 0.5, 1]``) for a learning
        curve; the model is retrained at each size and tested on the same test cells.
    final_model : also train one model on all cells (returned as ``Evaluation.model``).
    tta : average each test cell's prediction over its 8 rotations and flips (the default: cells
        have no preferred orientation, and it costs only inference).
    work_dir : a folder for per-split checkpoints and finished predictions, so an interrupted
        evaluation resumes where it stopped.
    """
    t_start = time.monotonic()
    config = config or TrainConfig()
    config.validate()
    cells = _select_labelled(cells).load()  # read once: training, features and baselines share it
    table = cells.table
    protocol = protocol or ("group-kfold" if group else "kfold")
    if protocol not in PROTOCOLS:
        raise StainfreeError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    if group is not None and group not in table.columns:
        raise StainfreeError(f"group column {group!r} does not exist (columns: {', '.join(map(str, table.columns))})")
    warnings = []
    if protocol in ("kfold", "holdout") and cells.groups:
        msg = (
            f"random split although the set has group columns ({', '.join(cells.groups)}): cells of one group "
            "look alike, so this estimate is likely optimistic; pass --group for an honest one"
        )
        logger.warning(msg)
        warnings.append(msg)
    for b in baselines:
        if b not in BASELINES + OPTIONAL_BASELINES:
            raise StainfreeError(f"unknown baseline {b!r} (choose from {', '.join(BASELINES + OPTIONAL_BASELINES)})")
    labels = table["label"].astype(str).to_numpy(dtype=object)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise StainfreeError(f"need at least two classes, got {classes}")
    counts = pd.Series(labels).value_counts()
    if counts.min() < 2:
        raise StainfreeError(f"class {counts.idxmin()!r} has only one cell; every class needs at least 2")
    groups = table[group].astype(str).to_numpy(dtype=object) if group else None
    images = cells.images
    masks = cells.read_masks() if cells.has_masks else None
    check_finite(images, table["cell_id"])
    if protocol == "audit-groups":
        return _audit_groups(cells, labels, groups, group, config, n_folds, t_start)

    splits = make_splits(protocol, labels, groups=groups, n_folds=n_folds, repeats=repeats, seed=config.seed)
    outlines = None
    if "outline_cnn" in baselines:
        from ..pp.features import foreground_mask

        if cells.has_masks:
            outlines = cells.read_masks().astype(np.float32)[:, None]
        else:
            logger.info("finding cell outlines for the outline-only baseline")
            outlines = np.stack([foreground_mask(c) for c in images]).astype(np.float32)[:, None]
    needs_features = [b for b in baselines if b in ("area_svm", "features_rf")]
    if needs_features and features is None:
        from ..pp.features import measure

        logger.info("measuring handcrafted features for the baselines")
        features = measure(cells)
    elif features is not None:
        features = align_features(features, cells.cell_ids)
    feature_matrix = features.drop(columns=["cell_id"]).to_numpy(np.float64) if features is not None else None
    area = features["AreaShape_Area"].to_numpy(np.float64)[:, None] if features is not None else None
    work = Path(work_dir) if work_dir else None
    if work:
        work.mkdir(parents=True, exist_ok=True)

    rows, histories = [], []
    sizes = list(train_sizes) if train_sizes else [1.0]
    for s_i, split in enumerate(splits, 1):
        done = work / f"split{s_i:03d}.parquet" if work else None
        if done is not None and done.is_file():
            logger.info("split %d/%d (%s): already done, loading", s_i, len(splits), split.name)
            part = read_parquet(done)
            rows.append(part)
            histories.append(json.loads((work / f"split{s_i:03d}.history.json").read_text()))
            continue
        train_labels = labels[split.train]
        missing = [c for c in classes if c not in set(train_labels)]
        if missing and protocol not in ("cross-group",):
            raise StainfreeError(
                f"split {split.name} has no training cell of class {missing[0]!r}; use fewer folds or another group column"
            )
        if missing or len(set(train_labels)) < 2:
            logger.info(
                "split %d/%d (%s): skipped, training pool lacks class %s", s_i, len(splits), split.name, missing[0] if missing else ""
            )
            continue
        logger.info("split %d/%d (%s): %d training cells, %d test cells", s_i, len(splits), split.name, len(split.train), len(split.test))
        parts = []
        for frac in sizes:
            train = split.train
            if frac < 1.0:
                train = _stratified_subsample(split.train, labels, frac, seed=config.seed + s_i)
            t0 = time.monotonic()
            clf, history = fit(
                images[train],
                labels[train],
                channels=cells.channels,
                config=config,
                classes=classes,
                checkpoint=(work / f"split{s_i:03d}_{frac:g}.pt") if work else None,
                masks=masks[train] if masks is not None else None,
            )
            proba = clf.predict_proba(images[split.test], tta=tta)
            part = pd.DataFrame(
                {
                    "cell_id": table["cell_id"].to_numpy()[split.test],
                    "split": split.name,
                    "repeat": split.repeat,
                    "label": labels[split.test],
                }
            )
            if group:
                part[group] = groups[split.test]
            part["train_size"] = len(train)
            part["train_fraction"] = frac
            part["pool_size"] = split.pool_size
            part["predicted"] = np.asarray(classes, dtype=object)[proba.argmax(1)]
            for j, c in enumerate(classes):
                part[f"prob_{c}"] = proba[:, j]
            part["epochs"] = len(history)
            part["seconds"] = round(time.monotonic() - t0, 2)
            if frac == sizes[-1]:
                for b in baselines:
                    if b == "outline_cnn":
                        # Ogawa et al.'s contour input: the same network on the binary cell mask only
                        outline_clf, _ = fit(
                            outlines[train],
                            labels[train],
                            channels=["outline"],
                            config=dataclasses.replace(config, normalisation="robust", augment="flips"),
                            classes=classes,
                        )
                        bp = outline_clf.predict_proba(outlines[split.test])
                        part[f"baseline_{b}"] = np.asarray(classes, dtype=object)[bp.argmax(1)]
                        for j, c in enumerate(classes):
                            part[f"baseline_{b}_prob_{c}"] = bp[:, j]
                        continue
                    x = None if b == "majority" else (area if b == "area_svm" else feature_matrix)
                    bp = run_baseline(
                        b,
                        x[train] if x is not None else np.zeros((len(train), 1)),
                        labels[train],
                        x[split.test] if x is not None else np.zeros((len(split.test), 1)),
                        classes,
                        seed=config.seed,
                    )
                    part[f"baseline_{b}"] = np.asarray(classes, dtype=object)[bp.argmax(1)]
                    for j, c in enumerate(classes):
                        part[f"baseline_{b}_prob_{c}"] = bp[:, j]
            parts.append(part)
            if frac == sizes[-1]:
                histories.append(history)
        part = pd.concat(parts, ignore_index=True)
        if done is not None:
            part.to_parquet(done, index=False)
            (work / f"split{s_i:03d}.history.json").write_text(json.dumps(histories[-1]))
        rows.append(part)
    if not rows:
        raise StainfreeError("no split could be trained (every training pool lacked a class)")
    pred = pd.concat(rows, ignore_index=True)
    full = pred[pred["train_fraction"] == sizes[-1]].reset_index(drop=True)
    metrics = _metrics_block(full, classes, baselines, group, n_boot, config.seed)
    if len(sizes) > 1:
        metrics["learning_curve"] = _learning_curve(pred, classes)
    if protocol == "cross-group":
        metrics["cross_group"] = _cross_group_table(full, classes, group)
    prot = {
        "name": protocol,
        "folds": n_folds if protocol in ("kfold", "group-kfold") else None,
        "repeats": repeats,
        "splits": len(splits),
        "group": group,
        "n_groups": int(len(set(groups))) if group else None,
        "seed": config.seed,
        "tta": tta,
    }
    metrics = {
        "protocol": prot,
        "n_cells": int(len(labels)),
        "classes": classes,
        "class_counts": {str(k): int(v) for k, v in counts.items()},
        "channels": list(cells.channels),
        **metrics,
        "warnings": warnings,
    }
    model = None
    if final_model:
        logger.info("training the final model on all %d cells", len(labels))
        model, _ = fit(images, labels, channels=cells.channels, config=config, classes=classes, masks=masks)
    metrics["seconds"] = round(time.monotonic() - t_start, 1)
    return Evaluation(pred, histories, classes, metrics, prot, model, features)


def _stratified_subsample(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        n = max(2, int(round(fraction * len(members))))
        keep.append(rng.choice(members, min(n, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


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


def _summary(folds: list[dict], pooled: dict, pred: pd.DataFrame, column: str, group: str | None, n_boot: int, seed: int) -> dict:
    summary = {k: summarise([f[k] for f in folds]) for k in HEADLINE_METRICS}
    summary["accuracy"]["pooled"] = round(pooled["accuracy"], 4)
    summary["accuracy"]["ci95_binomial"] = accuracy_interval(pooled["accuracy"], pooled["n"])
    summary["balanced_accuracy"]["pooled"] = round(pooled["balanced_accuracy"], 4)
    summary["balanced_accuracy"]["ci95_bootstrap"] = (
        bootstrap_interval(pred["label"], pred[column], groups=pred[group] if group else None, n_boot=n_boot, random_state=seed)
        if n_boot
        else None
    )
    summary["balanced_accuracy"]["bootstrap_unit"] = group or "cell"
    return summary


def _metrics_block(pred: pd.DataFrame, classes: list[str], baselines: Sequence[str], group: str | None, n_boot: int, seed: int) -> dict:
    def block(column: str, prob_prefix: str) -> dict:
        folds = _per_split(pred, column, classes, prob_prefix)
        pooled = classification_metrics(
            pred["label"], pred[column], pred[[f"{prob_prefix}{c}" for c in classes]].to_numpy(), classes=classes
        )
        return {"summary": _summary(folds, pooled, pred, column, group, n_boot, seed), "pooled": pooled, "folds": folds}

    model = block("predicted", "prob_")
    out = {"summary": model["summary"], "pooled": model["pooled"], "folds": model["folds"], "baselines": {}}
    for b in baselines:
        out["baselines"][b] = block(f"baseline_{b}", f"baseline_{b}_prob_")
    return out


def _learning_curve(pred: pd.DataFrame, classes: list[str]) -> list[dict]:
    out = []
    for frac, part in pred.groupby("train_fraction"):
        folds = [classification_metrics(p["label"], p["predicted"], None, classes=classes) for _, p in part.groupby("split")]
        out.append(
            {
                "train_fraction": float(frac),
                "train_size_mean": float(part.groupby("split")["train_size"].first().mean()),
                "balanced_accuracy": summarise([f["balanced_accuracy"] for f in folds]),
                "accuracy": summarise([f["accuracy"] for f in folds]),
            }
        )
    return out


def _cross_group_table(pred: pd.DataFrame, classes: list[str], group: str) -> dict:
    rows = []
    for (split, test_group), part in pred.groupby(["split", group], sort=False):
        m = classification_metrics(part["label"], part["predicted"], None, classes=classes)
        rows.append(
            {
                "train_pool": split,
                "pool_size": int(part["pool_size"].iloc[0]),
                "test_group": test_group,
                "n": m["n"],
                "accuracy": m["accuracy"],
            }
        )
    table = pd.DataFrame(rows)
    by_size = [
        {"pool_size": int(size), "accuracy": summarise(part["accuracy"].tolist()), "pairs": int(len(part))}
        for size, part in table.groupby("pool_size")
    ]
    smallest = table[table["pool_size"] == table["pool_size"].min()]
    train = list(dict.fromkeys(smallest["train_pool"]))
    test = sorted(set(smallest["test_group"]))
    matrix = [[None] * len(test) for _ in train]
    for _, r in smallest.iterrows():
        matrix[train.index(r["train_pool"])][test.index(r["test_group"])] = round(float(r["accuracy"]), 4)
    return {"table": table.to_dict(orient="records"), "by_pool_size": by_size, "matrix": {"train": train, "test": test, "accuracy": matrix}}


def _audit_groups(cells, labels, groups, group, config, n_folds, t_start) -> Evaluation:
    """Within each class, cross-validate a classifier that predicts the group from the images."""
    if groups is None:
        raise StainfreeError("protocol audit-groups needs a group column (--group)")
    images = cells.images
    results, rows, histories = {}, [], []
    for cls in sorted(set(labels)):
        idx = np.flatnonzero(labels == cls)
        g = groups[idx]
        counts = pd.Series(g).value_counts()
        counts = counts[counts >= n_folds]
        if len(counts) < 2:
            logger.info("audit: class %s has fewer than 2 groups with %d cells; skipped", cls, n_folds)
            continue
        keep = idx[np.isin(groups[idx], counts.index)]
        g = groups[keep]
        folds = make_folds(g, n_folds=n_folds, random_state=config.seed)
        preds = np.empty(len(keep), dtype=object)
        for tr, te in folds:
            clf, history = fit(images[keep[tr]], g[tr], channels=cells.channels, config=config)
            preds[te] = clf.predict(images[keep[te]])
            histories.append(history)
        m = classification_metrics(g, preds, None)
        chance = 1.0 / len(counts)
        results[cls] = {
            "groups": int(len(counts)),
            "cells": int(len(keep)),
            "balanced_accuracy": round(m["balanced_accuracy"], 4),
            "chance": round(chance, 4),
            "confusion_matrix": m["confusion_matrix"],
        }
        if m["balanced_accuracy"] > chance + 0.25 * (1 - chance):
            logger.warning(
                "audit: within class %s a classifier tells the %s groups apart (balanced accuracy %.2f, chance %.2f): batch effects may inflate random-split estimates",
                cls,
                group,
                m["balanced_accuracy"],
                chance,
            )
        rows.append(pd.DataFrame({"cell_id": cells.table["cell_id"].to_numpy()[keep], "label": cls, group: g, "predicted_group": preds}))
    if not results:
        raise StainfreeError(f"no class has at least 2 {group} groups with {n_folds} cells each to audit")
    prot = {"name": "audit-groups", "folds": n_folds, "group": group, "n_groups": int(len(set(groups))), "seed": config.seed}
    metrics = {
        "protocol": prot,
        "n_cells": int(len(labels)),
        "classes": sorted(set(labels)),
        "audit": results,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    return Evaluation(pd.concat(rows, ignore_index=True), histories, sorted(set(labels)), metrics, prot)


def cross_validate(
    cells: CellSet,
    *,
    group: str | None = None,
    n_folds: int = 5,
    config: TrainConfig | None = None,
    random_state: int = 0,
    n_boot: int = 1000,
    baselines: Sequence[str] = ("majority", "area_svm"),
) -> Evaluation:
    """Stratified (group) k-fold cross-validation: :func:`evaluate` with the default protocol.

    Parameters
    ----------
    cells : CellSet
        Labelled cells (unlabelled ones are left out).
    group : str, optional
        A group column; the folds then keep each group whole (``group-kfold``).
    n_folds : int, default 5
        Number of folds.
    config : TrainConfig, optional
        How to train; default ``TrainConfig(seed=random_state)``.
    random_state : int, default 0
        The training seed when no ``config`` is given (a given config's ``seed`` is used).
    n_boot : int, default 1000
        Bootstrap samples of the balanced accuracy's interval (0: none).
    baselines : sequence of str, default ("majority", "area_svm")
        Baselines run on the same folds (see :data:`~stainfree.eval.baselines.BASELINES`).

    Returns
    -------
    Evaluation
        Predictions, histories and metrics.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.eval.evaluate import cross_validate
    >>> from stainfree.ml.train import TrainConfig
    >>> cs = make_cells(6, size=32, flasks_per_line=2)
    >>> ev = cross_validate(cs, group="flask", n_folds=2, config=TrainConfig(epochs=1), n_boot=0, baselines=["majority"])
    >>> ev.classes, ev.protocol["name"], len(ev.predictions)
    (['round', 'spindle'], 'group-kfold', 12)
    """
    config = config or TrainConfig(seed=random_state)
    return evaluate(cells, group=group, n_folds=n_folds, config=config, n_boot=n_boot, baselines=baselines)
