"""The `explain` and `saliency` stages: rankings and saliency panels written to a run folder."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..ml.saliency import activation_maps, saliency
from ..pl.features import plot_ranking, plot_separation
from ..pl.saliency import plot_activations, plot_saliency
from ..tl.rank import Separation, rank_features
from ..utils import StainfreeError, atomic_output_dir


def run_explain(
    features: pd.DataFrame,
    groups: pd.Series,
    out: str | os.PathLike,
    *,
    column: str,
    a: str | None = None,
    b: str | None = None,
    svm_top: int = 10,
    weak: float = 0.5,
    force: bool = False,
) -> tuple[Path, Separation]:
    """Rank features for two groups and write ``OUT/`` atomically: ``ranking.csv``,
    ``pairs.csv`` (with ``svm_top``), ``scatter.png``, ``ranking.png`` and ``explain.json``."""
    separation = rank_features(features, groups, a=a, b=b, column=column, svm_top=svm_top, weak=weak)
    with atomic_output_dir(out, force=force, marker="explain.json") as tmp:
        separation.ranking.to_csv(tmp / "ranking.csv", index=False)
        if separation.pairs is not None:
            separation.pairs.to_csv(tmp / "pairs.csv", index=False)
        plot_separation(features, groups, separation, tmp / "scatter.png")
        plot_ranking(separation, tmp / "ranking.png")
        (tmp / "explain.json").write_text(json.dumps(separation.as_dict(), indent=2, default=float))
    return Path(out), separation


def run_saliency(
    clf,
    cells,
    out: str | os.PathLike,
    *,
    n_per_class: int = 3,
    cell_ids: Sequence[str] | None = None,
    n_samples: int = 25,
    noise: float = 0.15,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, dict]:
    """Write ``OUT/saliency.png`` (vanilla and SmoothGrad for chosen cells),
    ``OUT/activations.png`` (the first chosen cell's convolutional layers) and
    ``OUT/saliency.json``. Cells are ``cell_ids``, else ``n_per_class`` random cells per class."""
    missing = [c for c in clf.channels if c not in cells.channels]
    if missing:
        raise StainfreeError(f"the cells lack channel {missing[0]!r} that the model needs (cells have: {', '.join(cells.channels)})")
    cells = cells.select_channels(clf.channels)
    ids = cells.cell_ids.astype(str)
    if cell_ids:
        where = {c: i for i, c in enumerate(ids)}
        unknown = [c for c in cell_ids if c not in where]
        if unknown:
            raise StainfreeError(f"cell {unknown[0]!r} is not in the set")
        index = np.array([where[c] for c in cell_ids])
    else:
        rng = np.random.default_rng(seed)
        labels = pd.Series(cells.labels, dtype="string")
        index = []
        for _, part in labels.groupby(labels.fillna("(unlabelled)"), sort=True):
            pos = part.index.to_numpy()
            index.extend(rng.choice(pos, min(n_per_class, len(pos)), replace=False).tolist())
        index = np.array(sorted(index))
    images = cells.read(index)
    proba = clf.predict_proba(images)
    predicted = np.asarray(clf.classes)[proba.argmax(1)]
    maps = {
        "vanilla gradient": saliency(clf, images, method="vanilla"),
        f"SmoothGrad (n={n_samples})": saliency(clf, images, method="smoothgrad", n_samples=n_samples, noise=noise, random_state=seed),
    }
    labels = pd.Series(cells.labels[index], dtype="string")
    titles = [f"{ids[i][-18:]}\n{lab} -> {p}" for i, lab, p in zip(index, labels.fillna("?"), predicted)]
    layers = activation_maps(clf, images[0])
    info = {
        "cells": [
            {"cell_id": ids[i], "label": None if pd.isna(lab) else lab, "predicted": str(p)} for i, lab, p in zip(index, labels, predicted)
        ],
        "methods": {"vanilla": {}, "smoothgrad": {"n_samples": n_samples, "noise": noise}},
        "activation_cell": ids[index[0]],
        "layers": [{"name": n, "maps": int(a.shape[0]), "size": list(a.shape[1:])} for n, a in layers],
    }
    with atomic_output_dir(out, force=force, marker="saliency.json") as tmp:
        plot_saliency(images, maps, titles, tmp / "saliency.png")
        plot_activations(layers, tmp / "activations.png")
        (tmp / "saliency.json").write_text(json.dumps(info, indent=2))
    return Path(out), info
