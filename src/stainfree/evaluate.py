"""Honest evaluation: protocols, metrics with intervals, baselines beside the model.

Cells of one field, flask or dish are not independent, so group-aware protocols keep whole
groups out of training, and intervals of pooled figures resample whole groups (a cluster
bootstrap). Balanced accuracy is always reported beside accuracy, and baselines beside the model.

Protocols (:data:`PROTOCOLS`):

``kfold``                stratified k-fold, repeated ``repeats`` times with other shuffles
``holdout``              80/20 stratified split repeated ``repeats`` times (Yao et al.)
``group-kfold``          stratified group k-fold on a group column
``leave-one-group-out``  every group once as the test set (Ogawa's dish-wise validation)
``cross-group``          train on pools of 1, 2, 3 groups (at most 10 pools of each size, sampled),
                         test on each remaining group (Yao's flask-pair matrix)
``audit-groups``         within each class, can a classifier tell its groups apart? (batch effects)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .cellset import CellSet
from .train import Classifier, TrainConfig, check_finite, fit
from .utils import StainfreeError, read_parquet

logger = logging.getLogger(__name__)

PROTOCOLS = ("kfold", "holdout", "group-kfold", "leave-one-group-out", "cross-group", "audit-groups")
GROUP_PROTOCOLS = ("group-kfold", "leave-one-group-out", "cross-group", "audit-groups")
BASELINES = ("majority", "area_svm", "features_rf")
#: Baselines that are offered but not run by default (they cost as much as the model).
OPTIONAL_BASELINES = ("outline_cnn",)
HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")


@dataclasses.dataclass
class Split:
    """One train/test split of a protocol."""

    name: str
    train: np.ndarray
    test: np.ndarray
    repeat: int = 0
    pool_size: int = 0  # cross-group: groups per class (or groups) in the training pool


# ---------------------------------------------------------------------- splits
def make_folds(labels: Sequence, *, groups: Sequence | None = None, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits, or stratified group k-fold splits when ``groups`` is given.

    >>> groups = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    >>> folds = make_folds(["a", "b"] * 4, groups=groups, n_folds=2)
    >>> sorted(sorted(groups[test].tolist()) for _, test in folds)
    [[1, 1, 4, 4], [2, 2, 3, 3]]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels, dtype=object).astype(str)
    if n_folds < 2:
        raise StainfreeError(f"need at least 2 folds, got {n_folds}")
    if groups is None:
        counts = pd.Series(labels).value_counts()
        if counts.min() < n_folds:
            raise StainfreeError(f"class {counts.idxmin()!r} has {counts.min()} cell(s), fewer than the {n_folds} folds; use fewer folds")
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels)]
    groups = _check_groups(groups, min_groups=n_folds, what=f"{n_folds} folds")
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


def _check_groups(groups, *, min_groups: int, what: str) -> np.ndarray:
    groups = np.asarray(groups, dtype=object)
    if pd.isna(groups).any():
        raise StainfreeError("some cells have no value in the group column")
    groups = groups.astype(str)
    n = len(set(groups))
    if n < 2:
        raise StainfreeError(f"the group column has only one value ({groups[0]!r}); group-aware evaluation needs at least 2 groups")
    if n < min_groups:
        raise StainfreeError(f"only {n} groups for {what}; use fewer folds")
    return groups


def _cross_group_pools(g: np.ndarray, labels: np.ndarray) -> list[tuple[int, list[tuple]]]:
    """Training pools of growing size. When every group holds one class (each flask one cell
    line, as in Yao et al.), a pool of size k takes k groups of every class (k = 1: the flask
    pairs); otherwise a pool of size k is any k groups. Every pool leaves a group to test on."""
    values = sorted(set(g))
    per_group = {v: set(labels[g == v]) for v in values}
    if all(len(c) == 1 for c in per_group.values()):
        by_class: dict[str, list[str]] = {}
        for v in values:
            by_class.setdefault(next(iter(per_group[v])), []).append(v)
        if len(by_class) < 2:
            raise StainfreeError("cross-group needs groups of at least two classes")
        out = []
        for k in range(1, min(len(v) for v in by_class.values()) + 1):
            combos = [list(itertools.combinations(v, k)) for v in by_class.values()]
            pools = [tuple(x for part in parts for x in part) for parts in itertools.product(*combos)]
            pools = [p for p in pools if len(p) < len(values)]
            if pools:
                out.append((k, pools))
        return out
    return [(k, list(itertools.combinations(values, k))) for k in range(1, len(values))]


def make_splits(
    protocol: str,
    labels: Sequence,
    *,
    groups: Sequence | None = None,
    n_folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    max_pools: int = 10,
    max_pool_size: int = 3,
) -> list[Split]:
    """The train/test splits of a protocol (see the module docstring)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if protocol not in PROTOCOLS:
        raise StainfreeError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    labels = np.asarray(labels, dtype=object).astype(str)
    if protocol in GROUP_PROTOCOLS and groups is None:
        raise StainfreeError(f"protocol {protocol} needs a group column (--group)")
    if repeats < 1:
        raise StainfreeError(f"repeats must be at least 1, got {repeats}")
    splits: list[Split] = []
    if protocol == "kfold":
        for r in range(repeats):
            for k, (tr, te) in enumerate(make_folds(labels, n_folds=n_folds, seed=seed + r), 1):
                splits.append(Split(f"r{r + 1}f{k}" if repeats > 1 else f"fold{k}", tr, te, r))
    elif protocol == "holdout":
        counts = pd.Series(labels).value_counts()
        if counts.min() < 2:
            raise StainfreeError(f"class {counts.idxmin()!r} has only one cell; a holdout split needs at least 2 per class")
        splitter = StratifiedShuffleSplit(n_splits=repeats, test_size=0.2, random_state=seed)
        for r, (tr, te) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            splits.append(Split(f"holdout{r + 1}", tr, te, r))
    elif protocol == "group-kfold":
        for r in range(repeats):
            for k, (tr, te) in enumerate(make_folds(labels, groups=groups, n_folds=n_folds, seed=seed + r), 1):
                splits.append(Split(f"r{r + 1}f{k}" if repeats > 1 else f"fold{k}", tr, te, r))
    elif protocol == "leave-one-group-out":
        g = _check_groups(groups, min_groups=2, what="leave-one-group-out")
        for value in sorted(set(g)):
            splits.append(Split(f"{value}", np.flatnonzero(g != value), np.flatnonzero(g == value)))
    elif protocol == "cross-group":
        g = _check_groups(groups, min_groups=2, what="cross-group")
        rng = np.random.default_rng(seed)
        for size, pools in _cross_group_pools(g, labels):
            if size > max_pool_size:
                break
            if len(pools) > max_pools:
                pick = rng.choice(len(pools), max_pools, replace=False)
                pools = [pools[i] for i in sorted(pick)]
            for pool in pools:
                train = np.flatnonzero(np.isin(g, pool))
                test = np.flatnonzero(~np.isin(g, pool))
                splits.append(Split("+".join(pool), train, test, pool_size=size))
    return splits


# ---------------------------------------------------------------------- metrics
def classification_metrics(y_true: Sequence, y_pred: Sequence, proba: np.ndarray | None = None, *, classes: Sequence[str] | None = None) -> dict:
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
    specificity = {c: (float((cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]) / negatives[i]) if negatives[i] else None) for i, c in enumerate(classes)}
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "balanced_accuracy": float(np.mean([recall[classes[i]] for i in present])) if present else float("nan"),
        "cohen_kappa": _kappa(cohen_kappa_score, y_true, y_pred),
        "roc_auc": None,
        "per_class": {c: {"precision": precision[c], "recall": recall[c], "specificity": specificity[c], "n": int(cm[i].sum())} for i, c in enumerate(classes)},
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


def bootstrap_interval(y_true, y_pred, *, groups=None, metric: str = "balanced_accuracy", n_boot: int = 1000, seed: int = 0) -> list[float] | None:
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
        pick = rng.integers(0, len(y_true), len(y_true)) if groups is None else np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
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


# ---------------------------------------------------------------------- baselines
def run_baseline(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, classes: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """Class probabilities (test cells x classes) of a baseline trained on ``train_x``.

    ``majority`` predicts the training class frequencies; ``area_svm`` is an RBF SVM (gamma 1)
    on the standardised log cell area (Ogawa et al.); ``features_rf`` a class-balanced random
    forest on all handcrafted features. Missing measurements (NaN: an empty mask, undefined
    texture) are filled with the training cells' median.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    classes = list(classes)
    train_y = np.asarray(train_y, dtype=object).astype(str)
    if name == "majority":
        freq = np.array([np.mean(train_y == c) for c in classes])
        return np.tile(freq, (len(test_x), 1))
    if name == "area_svm":
        # SVC's own probabilities are deprecated; a softmax of the one-vs-rest decision values
        # ranks cells the same way for the ROC and picks the same class as predict()
        model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), SVC(kernel="rbf", gamma=1.0, class_weight="balanced", decision_function_shape="ovr", random_state=seed))
        model.fit(np.log1p(train_x), train_y)
        d = model.decision_function(np.log1p(test_x))
        d = np.stack([-d, d], axis=1) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        svm_p = e / e.sum(axis=1, keepdims=True)
        proba = np.zeros((len(test_x), len(classes)))
        for j, c in enumerate(model.classes_):
            proba[:, classes.index(c)] = svm_p[:, j]
        return proba
    elif name == "features_rf":
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", min_samples_leaf=2, n_jobs=-1, random_state=seed),
        )
    else:
        raise StainfreeError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
    model.fit(train_x, train_y)
    proba = np.zeros((len(test_x), len(classes)))
    for j, c in enumerate(model.classes_):
        proba[:, classes.index(c)] = model.predict_proba(test_x)[:, j]
    return proba


def align_features(features: pd.DataFrame, cell_ids: Sequence[str], *, source: str = "the features") -> pd.DataFrame:
    """The rows of a feature table (with ``cell_id``) for ``cell_ids``, in that order."""
    if "cell_id" not in features.columns:
        raise StainfreeError(f"{source} have no cell_id column")
    indexed = features.drop_duplicates("cell_id")
    indexed.index = indexed["cell_id"].astype(str)
    missing = [c for c in cell_ids if c not in indexed.index]
    if missing:
        raise StainfreeError(f"{source} lack {len(missing)} of the cells (first: {missing[0]}); measure this set with `stainfree features`")
    return indexed.loc[list(cell_ids)].reset_index(drop=True)


# ---------------------------------------------------------------------- the evaluation
@dataclasses.dataclass
class Evaluation:
    """Everything an evaluation produced (written to a run folder by :mod:`stainfree.runs`)."""

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
        from .features import foreground_mask

        if cells.has_masks:
            outlines = cells.read_masks().astype(np.float32)[:, None]
        else:
            logger.info("finding cell outlines for the outline-only baseline")
            outlines = np.stack([foreground_mask(c) for c in images]).astype(np.float32)[:, None]
    needs_features = [b for b in baselines if b in ("area_svm", "features_rf")]
    if needs_features and features is None:
        from .features import measure

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
            raise StainfreeError(f"split {split.name} has no training cell of class {missing[0]!r}; use fewer folds or another group column")
        if missing or len(set(train_labels)) < 2:
            logger.info("split %d/%d (%s): skipped, training pool lacks class %s", s_i, len(splits), split.name, missing[0] if missing else "")
            continue
        logger.info("split %d/%d (%s): %d training cells, %d test cells", s_i, len(splits), split.name, len(split.train), len(split.test))
        parts = []
        for frac in sizes:
            train = split.train
            if frac < 1.0:
                train = _stratified_subsample(split.train, labels, frac, seed=config.seed + s_i)
            t0 = time.monotonic()
            clf, history = fit(
                images[train], labels[train], channels=cells.channels, config=config, classes=classes,
                checkpoint=(work / f"split{s_i:03d}_{frac:g}.pt") if work else None,
                masks=masks[train] if masks is not None else None,
            )
            proba = clf.predict_proba(images[split.test], tta=tta)
            part = pd.DataFrame({"cell_id": table["cell_id"].to_numpy()[split.test], "split": split.name, "repeat": split.repeat, "label": labels[split.test]})
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
                        outline_clf, _ = fit(outlines[train], labels[train], channels=["outline"], config=dataclasses.replace(config, normalisation="robust", augment="flips"), classes=classes)
                        bp = outline_clf.predict_proba(outlines[split.test])
                        part[f"baseline_{b}"] = np.asarray(classes, dtype=object)[bp.argmax(1)]
                        for j, c in enumerate(classes):
                            part[f"baseline_{b}_prob_{c}"] = bp[:, j]
                        continue
                    x = None if b == "majority" else (area if b == "area_svm" else feature_matrix)
                    bp = run_baseline(b, x[train] if x is not None else np.zeros((len(train), 1)), labels[train], x[split.test] if x is not None else np.zeros((len(split.test), 1)), classes, seed=config.seed)
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
        bootstrap_interval(pred["label"], pred[column], groups=pred[group] if group else None, n_boot=n_boot, seed=seed) if n_boot else None
    )
    summary["balanced_accuracy"]["bootstrap_unit"] = group or "cell"
    return summary


def _metrics_block(pred: pd.DataFrame, classes: list[str], baselines: Sequence[str], group: str | None, n_boot: int, seed: int) -> dict:
    def block(column: str, prob_prefix: str) -> dict:
        folds = _per_split(pred, column, classes, prob_prefix)
        pooled = classification_metrics(pred["label"], pred[column], pred[[f"{prob_prefix}{c}" for c in classes]].to_numpy(), classes=classes)
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
        out.append({
            "train_fraction": float(frac),
            "train_size_mean": float(part.groupby("split")["train_size"].first().mean()),
            "balanced_accuracy": summarise([f["balanced_accuracy"] for f in folds]),
            "accuracy": summarise([f["accuracy"] for f in folds]),
        })
    return out


def _cross_group_table(pred: pd.DataFrame, classes: list[str], group: str) -> dict:
    rows = []
    for (split, test_group), part in pred.groupby(["split", group], sort=False):
        m = classification_metrics(part["label"], part["predicted"], None, classes=classes)
        rows.append({"train_pool": split, "pool_size": int(part["pool_size"].iloc[0]), "test_group": test_group, "n": m["n"], "accuracy": m["accuracy"]})
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
        folds = make_folds(g, n_folds=n_folds, seed=config.seed)
        preds = np.empty(len(keep), dtype=object)
        for tr, te in folds:
            clf, history = fit(images[keep[tr]], g[tr], channels=cells.channels, config=config)
            preds[te] = clf.predict(images[keep[te]])
            histories.append(history)
        m = classification_metrics(g, preds, None)
        chance = 1.0 / len(counts)
        results[cls] = {"groups": int(len(counts)), "cells": int(len(keep)), "balanced_accuracy": round(m["balanced_accuracy"], 4), "chance": round(chance, 4), "confusion_matrix": m["confusion_matrix"]}
        if m["balanced_accuracy"] > chance + 0.25 * (1 - chance):
            logger.warning("audit: within class %s a classifier tells the %s groups apart (balanced accuracy %.2f, chance %.2f): batch effects may inflate random-split estimates", cls, group, m["balanced_accuracy"], chance)
        rows.append(pd.DataFrame({"cell_id": cells.table["cell_id"].to_numpy()[keep], "label": cls, group: g, "predicted_group": preds}))
    if not results:
        raise StainfreeError(f"no class has at least 2 {group} groups with {n_folds} cells each to audit")
    prot = {"name": "audit-groups", "folds": n_folds, "group": group, "n_groups": int(len(set(groups))), "seed": config.seed}
    metrics = {"protocol": prot, "n_cells": int(len(labels)), "classes": sorted(set(labels)), "audit": results, "seconds": round(time.monotonic() - t_start, 1)}
    return Evaluation(pd.concat(rows, ignore_index=True), histories, sorted(set(labels)), metrics, prot)


def cross_validate(cells: CellSet, *, group: str | None = None, n_folds: int = 5, config: TrainConfig | None = None, seed: int = 0, n_boot: int = 1000, baselines: Sequence[str] = ("majority", "area_svm")) -> Evaluation:
    """Stratified (group) k-fold cross-validation: :func:`evaluate` with the default protocol."""
    config = config or TrainConfig(seed=seed)
    return evaluate(cells, group=group, n_folds=n_folds, config=config, n_boot=n_boot, baselines=baselines)
