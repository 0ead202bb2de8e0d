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
    adata,
    out: str | os.PathLike,
    *,
    groupby: str,
    group: str | None = None,
    reference: str | None = None,
    svm_top: int = 10,
    weak: float = 0.5,
    force: bool = False,
) -> tuple[Path, Separation]:
    """``stainfree explain``: rank the features that separate two groups and write ``OUT/`` atomically.

    ``OUT/`` holds ``ranking.csv``, ``pairs.csv`` (with ``svm_top``), ``scatter.png``,
    ``ranking.png`` and ``explain.json``.

    Parameters
    ----------
    adata : AnnData
        Features of the cells (:func:`stainfree.pp.features_to_anndata`), with the groups in
        ``obs[groupby]``; it gains ``uns['rank_features']``.
    out : str or PathLike
        The folder to write.
    groupby, group, reference : str
        The ``obs`` column and the two groups compared (see :func:`~stainfree.tl.rank.rank_features`).
    svm_top : int, default 10
        Pairs among this many top features scored by a linear SVM (0: none).
    weak : float, default 0.5
        The partner feature's largest absolute Spearman correlation with the top one.
    force : bool, default False
        Overwrite an existing output.

    Returns
    -------
    path : Path
        The folder written.
    separation : Separation
        The ranking.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.pp import features_to_anndata
    >>> from stainfree.workflows.explain import run_explain
    >>> table = pd.DataFrame({"cell_id": list("abcdefgh"), "area": [5.0, 6, 7, 8, 15, 16, 17, 18],
    ...                       "solidity": [0.9, 0.8, 0.9, 0.7, 0.8, 0.9, 0.7, 0.8]})
    >>> adata = features_to_anndata(table, obs=pd.DataFrame({"cell_id": list("abcdefgh"), "label": ["round"] * 4 + ["spindle"] * 4}))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path, separation = run_explain(adata, f"{d}/explain", groupby="label", svm_top=0)
    ...     separation.top, sorted(os.listdir(path))
    ('area', ['explain.json', 'ranking.csv', 'ranking.png', 'scatter.png'])
    """
    rank_features(adata, groupby, group=group, reference=reference, svm_top=svm_top, weak=weak)
    separation = Separation.from_uns(adata)
    with atomic_output_dir(out, force=force, marker="explain.json") as tmp:
        separation.ranking.to_csv(tmp / "ranking.csv", index=False)
        if separation.pairs is not None:
            separation.pairs.to_csv(tmp / "pairs.csv", index=False)
        plot_separation(adata, tmp / "scatter.png")
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
    random_state: int = 0,
    force: bool = False,
) -> tuple[Path, dict]:
    """``stainfree saliency``: saliency and activation maps of a classifier on chosen cells.

    Writes ``OUT/saliency.png`` (vanilla gradient and SmoothGrad for each cell),
    ``OUT/activations.png`` (the first cell's convolutional layers) and ``OUT/saliency.json``.

    Parameters
    ----------
    clf : Classifier
        The model.
    cells : CellSet
        Cells with the model's channels.
    out : str or PathLike
        The folder to write.
    n_per_class : int, default 3
        Random cells per class, when no ``cell_ids`` are given.
    cell_ids : sequence of str, optional
        The cells to show.
    n_samples : int, default 25
        SmoothGrad's noisy copies per cell.
    noise : float, default 0.15
        SmoothGrad's noise (fraction of the input's range).
    random_state : int, default 0
        Seed of the choice of cells and of the noise.
    force : bool, default False
        Overwrite an existing output.

    Returns
    -------
    path : Path
        The folder written.
    info : dict
        The content of ``saliency.json``: the cells (label and prediction), methods and layers.

    Raises
    ------
    StainfreeError
        When there are no cells, the cells lack a channel of the model, or a cell id is not in
        the set.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.train import TrainConfig, fit
    >>> from stainfree.workflows.explain import run_saliency
    >>> cs = make_cells(4, size=32)
    >>> clf, _ = fit(cs.images, cs.labels, channels=cs.channels, config=TrainConfig(epochs=1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path, info = run_saliency(clf, cs, f"{d}/saliency", n_per_class=1, n_samples=2)
    ...     sorted(os.listdir(path)), len(info["cells"])
    (['activations.png', 'saliency.json', 'saliency.png'], 2)
    """
    if len(cells) == 0:
        raise StainfreeError(f"{cells.path or 'the cell set'}: there are no cells to show")
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
        rng = np.random.default_rng(random_state)
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
        f"SmoothGrad (n={n_samples})": saliency(
            clf, images, method="smoothgrad", n_samples=n_samples, noise=noise, random_state=random_state
        ),
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
