"""Evaluating a classifier on a CellSet under a protocol, with baselines, learning curves and audits."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cellset import CellSet
from ..ml.classifier import Classifier, check_finite
from ..ml.train import TrainConfig, fit
from ..progress import progress
from ..utils import StainfreeError, atomic_write_bytes, read_parquet, write_parquet
from ._job import Job, add_probabilities, prepare_baselines, run_baselines
from ._summary import cross_group_table, learning_curve_table, metrics_block
from .baselines import BASELINES, OPTIONAL_BASELINES
from .protocols import PROTOCOLS, make_splits, stratified_subsample
from .search import Search, SearchResult, search_config

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


def labelled_cells(cells: CellSet) -> CellSet:
    """The cells that carry a label (the others are left out and logged); a set without any is
    refused with :class:`~stainfree.utils.StainfreeError`. Shared by ``evaluate`` and ``train``."""
    labelled = cells.table["label"].notna().to_numpy()
    if not labelled.any():
        raise StainfreeError("no cell has a label; a classifier needs labelled cells")
    if not labelled.all():
        logger.info("leaving out %d unlabelled cells", int((~labelled).sum()))
        cells = cells.select(labelled)
    return cells


def _loaded_or_streamed(cells: CellSet, protocol: str | None, search, baselines: Sequence[str]) -> tuple[CellSet, bool]:
    """The cells read into memory once (training, features and baselines share them), or left on
    disk, streamed, when lazy and their pixels as float32 take more than
    :data:`stainfree.ml.data.IN_MEMORY_BYTES` (a search, the audit and the outline baseline need
    them in memory and are refused then). Streamed pixels are checked as each batch is normalised."""
    from ..ml.data import IN_MEMORY_BYTES, fits_in_memory

    if not cells.is_lazy or fits_in_memory(len(cells), cells.shape[1:]):
        cells = cells.load()
        check_finite(cells.images, cells.table["cell_id"])
        return cells, False
    needs_memory = [
        n
        for n, on in (
            ("--search", search is not None),
            ("the audit-groups protocol", protocol == "audit-groups"),
            ("the outline_cnn baseline", "outline_cnn" in baselines),
        )
        if on
    ]
    if needs_memory:
        raise StainfreeError(
            f"{len(cells):,} cells do not fit in memory (over {IN_MEMORY_BYTES / 2**30:g} GiB as float32); {needs_memory[0]} needs them there"
        )
    logger.info("%d cells are streamed from the store in every split", len(cells))
    return cells, True


def _check_request(cells: CellSet, protocol: str | None, group: str | None, baselines: Sequence[str]) -> tuple[str, list[str]]:
    """The protocol to run and the warnings to record; refuses unknown names."""
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
    return protocol, warnings


def class_labels(table: pd.DataFrame) -> tuple[np.ndarray, list[str], pd.Series]:
    """Labels as strings, the sorted classes and their counts; fewer than two classes, or a class
    with one cell, is refused with :class:`~stainfree.utils.StainfreeError`.

    >>> import pandas as pd
    >>> labels, classes, counts = class_labels(pd.DataFrame({"label": ["b", "a", "b", "a"]}))
    >>> classes, int(counts["a"])
    (['a', 'b'], 2)
    """
    labels = table["label"].astype(str).to_numpy(dtype=object)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise StainfreeError(f"need at least two classes, got {classes}")
    counts = pd.Series(labels).value_counts()
    if counts.min() < 2:
        raise StainfreeError(f"class {counts.idxmin()!r} has only one cell; every class needs at least 2")
    return labels, classes, counts


def _train_and_test(job: Job, s_i: int, split, train: np.ndarray, frac: float, with_baselines: bool) -> tuple[pd.DataFrame, list[dict]]:
    """Train on ``train`` (a subsample of the split's training cells when ``frac`` < 1) and
    predict the split's test cells, baselines included when asked."""
    cells, labels = job.cells, job.labels
    t0 = time.monotonic()
    config, chosen = job.config, "given"
    if job.search is not None:
        found = _search(job, train)
        config, chosen = found.config, found.chosen
        job.searches[split.name if frac >= 1.0 else f"{split.name}@{frac:g}"] = found.record()
    clf, history = fit(
        job.images(train),
        labels[train],
        channels=cells.channels,
        config=config,
        classes=job.classes,
        checkpoint=(job.work / f"split{s_i:03d}_{frac:g}.pt") if job.work else None,
        masks=job.masks_of(train),
    )
    proba = job.predict(clf, split.test)
    part = pd.DataFrame(
        {
            "cell_id": cells.table["cell_id"].to_numpy()[split.test],
            "split": split.name,
            "repeat": split.repeat,
            "label": labels[split.test],
        }
    )
    if job.group:
        part[job.group] = job.groups[split.test]
    part["train_size"] = len(train)
    part["train_fraction"] = frac
    part["pool_size"] = split.pool_size
    add_probabilities(part, "prob_", proba, job.classes, "predicted")
    if clf.train_prior is not None:  # the decision under the training cells' own class frequencies
        part["predicted_train_prior"] = np.asarray(job.classes, dtype=object)[(proba * np.asarray(clf.train_prior)).argmax(1)]
    part["epochs"] = len(history)
    part["configuration"] = chosen
    part["seconds"] = round(time.monotonic() - t0, 2)
    if with_baselines:
        run_baselines(job, part, train, split.test)
    return part, history


def _search(job: Job, cells_at: np.ndarray) -> SearchResult:
    """The configuration search on the cells at ``cells_at`` (training cells only)."""
    return search_config(
        job.cells.images[cells_at],
        job.labels[cells_at],
        channels=job.cells.channels,
        base=job.config,
        search=job.search,
        groups=job.groups[cells_at] if job.groups is not None else None,
        classes=job.classes,
        masks=job.masks_of(cells_at),
        budget=job.search_budget,
        tta=job.tta,
    )


def _run_split(job: Job, s_i: int, n_splits: int, split, sizes: list[float]) -> tuple[pd.DataFrame, list[dict]] | None:
    """One split at every training size; ``None`` when a cross-group pool lacks a class. Finished
    splits are kept in the work folder and read back when an evaluation resumes."""
    work = job.work
    done = work / f"split{s_i:03d}.parquet" if work else None
    if done is not None and done.is_file():
        logger.info("split %d/%d (%s): already done, loading", s_i, n_splits, split.name)
        if (work / f"split{s_i:03d}.search.json").is_file():
            job.searches.update(json.loads((work / f"split{s_i:03d}.search.json").read_text()))
        return read_parquet(done), json.loads((work / f"split{s_i:03d}.history.json").read_text())
    train_labels = set(job.labels[split.train])
    missing = [c for c in job.classes if c not in train_labels]
    if missing and job.protocol != "cross-group":
        raise StainfreeError(f"split {split.name} has no training cell of class {missing[0]!r}; use fewer folds or another group column")
    if missing or len(train_labels) < 2:
        logger.info("split %d/%d (%s): skipped, training pool lacks class %s", s_i, n_splits, split.name, missing[0] if missing else "")
        return None
    logger.info("split %d/%d (%s): %d training cells, %d test cells", s_i, n_splits, split.name, len(split.train), len(split.test))
    parts = []
    for frac in sizes:
        train = split.train if frac >= 1.0 else stratified_subsample(split.train, job.labels, frac, seed=job.config.seed + s_i)
        part, history = _train_and_test(job, s_i, split, train, frac, with_baselines=frac == sizes[-1])
        parts.append(part)
    part = pd.concat(parts, ignore_index=True)
    if done is not None:  # the history first: a split counts as done once its parquet is in place, whole
        atomic_write_bytes(work / f"split{s_i:03d}.history.json", json.dumps(history).encode())
        if job.search is not None:
            mine = {k: v for k, v in job.searches.items() if k == split.name or k.startswith(f"{split.name}@")}
            atomic_write_bytes(work / f"split{s_i:03d}.search.json", json.dumps(mine, default=str).encode())
        write_parquet(part, done, force=True)
    return part, history


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
    max_pools: int = 20,
    search: Search | None = None,
) -> Evaluation:
    """Train and test a classifier under a protocol; pool and summarise the predictions.

    Parameters
    ----------
    cells : CellSet
        Labelled cells (unlabelled ones are left out, and said so).
    protocol : str, optional
        One of :data:`~stainfree.eval.protocols.PROTOCOLS`; default ``group-kfold`` when
        ``group`` is given, else ``kfold``.
    group : str, optional
        The group column (flask, field, dish...). A random protocol on a set that declares group
        columns logs a warning and records it.
    n_folds, repeats : int, default 5, 1
        Folds of the k-fold protocols; repeats of k-fold or holdout.
    config : TrainConfig, optional
        How to train (default :class:`~stainfree.ml.train.TrainConfig`); ``config.seed`` also
        draws the splits.
    baselines : sequence of str, default ``BASELINES``
        Baselines run on the same splits (:func:`~stainfree.eval.baselines.run_baseline`).
    train_sizes : sequence of float, optional
        Fractions of each training split (e.g. ``[0.1, 0.25, 0.5, 1]``) for a learning curve; the
        model is retrained at each size and tested on the same test cells.
    final_model : bool, default False
        Also train one model on all cells (``Evaluation.model``).
    n_boot : int, default 1000
        Bootstrap resamples of the balanced-accuracy interval (by group with ``group``); 0: none.
    work_dir : path, optional
        A folder for per-split checkpoints and finished predictions, so an interrupted evaluation
        resumes where it stopped.
    features : DataFrame, optional
        Handcrafted features (with ``cell_id``) for the feature baselines; default: measured now.
    tta : bool, default True
        Average each test cell's prediction over its 8 rotations and flips (cells have no
        preferred orientation, and it costs only inference).
    max_pools : int, default 20
        ``cross-group``: at most this many training pools (one training each), drawn at random
        by ``config.seed`` (:func:`~stainfree.eval.protocols.cross_group_pools`).
    search : Search, optional
        Choose each split's configuration by inner cross-validation on its training cells
        (:func:`~stainfree.eval.search.search_config`, nested: the test cells never choose), and
        the final model's on all cells; ``config`` is the base the candidates modify. The
        budget is shared evenly over the splits and the final model. Each prediction's
        ``configuration`` column and ``metrics["search"]`` say what was chosen.

    Returns
    -------
    Evaluation
        Every test cell's prediction with its split, the training histories, and the metrics:
        per split, pooled, summarised with intervals, beside each baseline.

    Raises
    ------
    StainfreeError
        For an unknown protocol or baseline, a missing group column, fewer than two classes, a
        class of one cell, or a split whose training cells lack a class.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.eval.evaluate import evaluate
    >>> from stainfree.ml.train import TrainConfig
    >>> cells = make_cells(12, size=24, random_state=0)
    >>> ev = evaluate(cells, protocol="kfold", n_folds=2, config=TrainConfig(epochs=1, batch_size=8),
    ...               baselines=["majority"], n_boot=0, tta=False)
    >>> len(ev.predictions), ev.metrics["protocol"]["splits"], sorted(ev.metrics["baselines"])
    (24, 2, ['majority'])
    """
    t_start = time.monotonic()
    config = config or TrainConfig()
    config.validate()
    cells, streamed = _loaded_or_streamed(labelled_cells(cells), protocol, search, baselines)
    protocol, warnings = _check_request(cells, protocol, group, baselines)
    labels, classes, counts = class_labels(cells.table)
    groups = cells.table[group].astype(str).to_numpy(dtype=object) if group else None
    if protocol == "audit-groups":
        from .audit import audit_groups

        return audit_groups(cells, labels, groups, group, config, n_folds, t_start)

    splits = make_splits(protocol, labels, groups=groups, n_folds=n_folds, repeats=repeats, random_state=config.seed, max_pools=max_pools)
    masks = cells.read_masks() if cells.has_masks and not streamed else None
    work = Path(work_dir) if work_dir else None
    job = Job(cells, labels, classes, groups, group, masks, config, list(baselines), tta, work, protocol, search=search, streamed=streamed)
    if search is not None:
        search.validate()
        job.search_budget = search.budget and search.budget / (len(splits) * len(train_sizes or [1.0]) + int(final_model))
    features = prepare_baselines(job, features)  # before the work folder: a bad table leaves nothing behind
    if work:
        work.mkdir(parents=True, exist_ok=True)
    sizes = list(train_sizes) if train_sizes else [1.0]
    shown = progress(splits, desc="splits", unit="splits", log=logger, every_s=math.inf)
    done = [r for s_i, split in enumerate(shown, 1) if (r := _run_split(job, s_i, len(splits), split, sizes)) is not None]
    if not done:
        raise StainfreeError("no split could be trained (every training pool lacked a class)")
    pred = pd.concat([part for part, _ in done], ignore_index=True)
    histories = [history for _, history in done]
    full = pred[pred["train_fraction"] == sizes[-1]].reset_index(drop=True)
    metrics = metrics_block(full, classes, baselines, group, n_boot, config.seed, crossed=protocol == "cross-group")
    if len(sizes) > 1:
        metrics["learning_curve"] = learning_curve_table(pred, classes)
    if protocol == "cross-group":
        metrics["cross_group"] = cross_group_table(full, classes, group)
    prot = {
        "name": protocol,
        "folds": n_folds if protocol in ("kfold", "group-kfold") else None,
        "repeats": repeats,
        "splits": len(splits),
        "group": group,
        "n_groups": int(len(set(groups))) if group else None,
        "seed": config.seed,
        "tta": tta,
        **({"max_pools": max_pools} if protocol == "cross-group" else {}),
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
    model = _final_model(job) if final_model else None
    if search is not None:
        metrics["search"] = _search_summary(job)
    metrics["seconds"] = round(time.monotonic() - t_start, 1)
    return Evaluation(pred, histories, classes, metrics, prot, model, features)


def _final_model(job: Job) -> Classifier:
    """A model trained on all cells; its configuration searched first when the job searches."""
    logger.info("training the final model on all %d cells", len(job.labels))
    config = job.config
    if job.search is not None:
        found = _search(job, np.arange(len(job.labels)))
        config = found.config
        job.searches["final"] = found.record()
    every = np.arange(len(job.labels))
    model, _ = fit(
        job.images(every), job.labels, channels=job.cells.channels, config=config, classes=job.classes, masks=job.masks_of(every)
    )
    return model


def _search_summary(job: Job) -> dict:
    """``metrics["search"]``: the candidates, and what each split and the final model chose."""
    return {
        "candidates": list(job.search.candidates),
        "inner_folds": job.search.inner_folds,
        "epochs_fraction": job.search.epochs_fraction,
        "budget_s": job.search.budget,
        "splits": {k: v for k, v in job.searches.items() if k != "final"},
        "final": job.searches.get("final"),
    }


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
