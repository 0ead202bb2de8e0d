"""What the interactive views show, read from a run folder or an ``.h5ad``: the cells' table, their
UMAP and embedding, the classifier's scores, and the cells each gallery and each count of the
confusion matrix picks. Used by report.html (:mod:`stainfree.report.interactive`) and by ``stainfree view``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..pl.interactive import confidently_wrong, nearest_centre, top_by_score
from .html import Missing, Run

#: Categorical columns with more values than this are shown on hover but not offered as colours.
MAX_LEVELS = 60
#: Cells per confusion-matrix cell and per selection that a gallery can show.
GALLERY_CELLS = 48
#: Colours of categories (matplotlib's tab20 order) and of numbers (viridis, low to high); grey for missing values.
PALETTE = {
    "categorical": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    + ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"],
    "numeric": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
}
_SKIP = {"cell_id", "source", "split", "repeat", "train_size", "train_fraction", "pool_size", "epochs", "seconds"}


@dataclasses.dataclass
class CellsView:
    """What the interactive section shows, for every cell of the run (not just those drawn).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cell: ``cell_id`` and the columns offered for colour and shown on hover.
    umap : numpy.ndarray or None
        The 2-D embedding, ``(cells, 2)``.
    embedding : numpy.ndarray or None
        The embedding the clusters were found in (for the cells nearest each centre).
    scores : pandas.DataFrame or None
        The classifier's score of each class (one column per class).
    notes : list of str
        What the section says about what it lacks.
    sample : numpy.ndarray or None
        Rows drawn in the scatter (set by :func:`build_payload`).
    """

    table: pd.DataFrame
    umap: np.ndarray | None = None
    embedding: np.ndarray | None = None
    scores: pd.DataFrame | None = None
    notes: list = dataclasses.field(default_factory=list)
    sample: np.ndarray | None = None


# ---------------------------------------------------------------------- reading the run
def find_embedding(folder: Path) -> Path | None:
    """The first ``.h5ad`` in a run folder (or one folder down) that holds ``obsm['X_umap']``.

    Parameters
    ----------
    folder : path
        The run folder.

    Returns
    -------
    pathlib.Path or None

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.report.cells import find_embedding
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(find_embedding(tmp))
    None
    """
    import h5py

    for path in [*sorted(Path(folder).glob("*.h5ad")), *sorted(Path(folder).glob("*/*.h5ad"))]:
        try:
            with h5py.File(path, "r") as f:
                if "obsm" in f and "X_umap" in f["obsm"]:
                    return path
        except OSError:
            continue
    return None


def _predictions(run: Run) -> pd.DataFrame | None:
    path = run.folder / "predictions.parquet"
    if not path.exists():
        return None
    p = pd.read_parquet(path)
    if "train_fraction" in p:
        p = p[p["train_fraction"] == p["train_fraction"].max()]
    return p.drop_duplicates("cell_id").reset_index(drop=True)  # repeated splits: the first repeat


def read_view(run: Run) -> CellsView:
    """Gather a run's cells for the interactive section: its predictions and its embedding.

    Parameters
    ----------
    run : Run
        The run folder.

    Returns
    -------
    CellsView

    Raises
    ------
    Missing
        When the run has neither ``predictions.parquet`` nor an embedding with a UMAP.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from pathlib import Path
    >>> from stainfree.report.html import Run
    >>> from stainfree.report.cells import read_view
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     pd.DataFrame({"cell_id": ["a", "b"], "label": ["x", "y"], "predicted": ["x", "x"],
    ...                   "prob_x": [0.9, 0.6], "prob_y": [0.1, 0.4]}).to_parquet(Path(tmp, "predictions.parquet"))
    ...     view = read_view(Run(tmp))
    >>> list(view.table.columns), view.umap, view.notes[0][:30]
    (['cell_id', 'label', 'predicted', 'score'], None, 'No embedding: the scatter need')
    """
    predictions = _predictions(run)
    path = find_embedding(run.folder)
    if predictions is None and path is None:
        raise Missing(
            "no predictions.parquet and no embedding with a UMAP (.h5ad with obsm['X_umap']) in this run; "
            "`stainfree evaluate` writes the first, `stainfree cluster EMBEDDING.h5ad --cells CELLS` the second"
        )
    if path is None:
        view = CellsView(table=predictions)
        view.notes.append(
            "No embedding: the scatter needs an .h5ad with obsm['X_umap'] in the run folder "
            "(`stainfree embed CELLS -o E.h5ad`, then `stainfree cluster E.h5ad --cells CELLS -o RUN/clusters`)."
        )
        return _with_scores(view)
    return read_h5ad_view(path, predictions)


def read_h5ad_view(path: Path, predictions: pd.DataFrame | None = None) -> CellsView:
    """The cells of an ``.h5ad`` (from ``stainfree embed`` or ``cluster``): its ``obs`` with its UMAP
    and embedding, joined with a run's predictions when given.

    Parameters
    ----------
    path : path
        An AnnData file with ``obsm['X_umap']`` (without one the view has no scatter).
    predictions : pandas.DataFrame, optional
        ``cell_id`` and a run's prediction columns (``predicted``, ``prob_<class>``...).

    Returns
    -------
    CellsView
    """
    import anndata

    from ..tl.cluster import embedding_of

    adata = anndata.read_h5ad(path)
    table = adata.obs.reset_index(names="cell_id" if "cell_id" not in adata.obs else "obs_name")
    table["cell_id"] = table["cell_id"].astype(str)
    view = CellsView(table=table)
    if "X_umap" in adata.obsm:
        view.umap = np.asarray(adata.obsm["X_umap"], np.float64)[:, :2]
    else:
        view.notes.append(f"{path} has no obsm['X_umap']: `stainfree cluster {path} --cells CELLS -o RUN` adds one.")
    key = (adata.uns.get("stainfree_cluster") or {}).get("key")
    try:
        view.embedding = embedding_of(adata, key if key in adata.obsm else None)[1]
    except Exception:  # no embedding besides the UMAP: the centres are taken on it
        view.embedding = view.umap
    if predictions is not None:
        extra = predictions.drop(columns=[c for c in predictions.columns if c in table.columns and c != "cell_id"])
        view.table = table.merge(extra, on="cell_id", how="left")
    return _with_scores(view)


def _with_scores(view: CellsView) -> CellsView:
    """Class scores out of the ``prob_`` columns; the table keeps the columns worth showing."""
    table = view.table
    probs = [c for c in table.columns if str(c).startswith("prob_")]
    if probs:
        view.scores = table[probs].rename(columns=lambda c: str(c).removeprefix("prob_")).astype(np.float64)
        table = table.assign(score=view.scores.max(axis=1, skipna=True))  # the predicted class's score, to colour by
    keep = [c for c in table.columns if c not in _SKIP and not str(c).startswith(("prob_", "baseline_"))]
    view.table = table[["cell_id", *[c for c in keep if c != "cell_id"]]].reset_index(drop=True)
    return view


def strata(view: CellsView) -> pd.Series:
    """What a sample is stratified by: the cluster, else the class (else nothing)."""
    for column in ("cluster", "leiden", "label"):
        if column in view.table and view.table[column].notna().any():
            return view.table[column]
    return pd.Series(np.zeros(len(view.table)))


def galleries(view: CellsView) -> list[dict]:
    """The galleries worth showing: per class the cells scored highest for it, the most confidently
    wrong cells, per cluster the cells nearest its centre.

    Returns
    -------
    list of dict
        ``{"title": str, "groups": {name: positions in view.table}}``.
    """
    out = []
    if view.scores is not None and "label" in view.table:
        labels = view.table["label"]
        known = view.scores.notna().all(axis=1).to_numpy()
        scores = view.scores.fillna(0.0)
        by_class = top_by_score(labels.where(known), scores)
        out.append({"title": "Per class, the cells the classifier scores highest for their own class", "groups": by_class})
        wrong = confidently_wrong(labels.where(known), scores)
        out.append({"title": "The most confidently wrong cells (highest score for a wrong class first)", "groups": {"wrong": wrong}})
    cluster = next((c for c in ("cluster", "leiden") if c in view.table), None)
    if cluster is not None and view.embedding is not None:
        out.append({"title": f"Per {cluster}, the cells nearest its centre", "groups": nearest_centre(view.embedding, view.table[cluster])})
    return out


def confusion(view: CellsView) -> dict | None:
    """The confusion matrix of a run's predictions, each count with its cells (most confident first,
    at most :data:`GALLERY_CELLS`): ``{"classes", "counts", "cells"}``; None without predictions."""
    if view.scores is None or "predicted" not in view.table or "label" not in view.table:
        return None
    classes = [str(c) for c in view.scores.columns]
    truth, predicted = view.table["label"].astype("string"), view.table["predicted"].astype("string")
    best = view.scores.max(axis=1).fillna(0).to_numpy()
    counts, cells = [], []
    for a in classes:
        counts.append([]), cells.append([])
        for b in classes:
            members = np.flatnonzero(((truth == a) & (predicted == b)).fillna(False).to_numpy())
            counts[-1].append(len(members))
            cells[-1].append(members[np.argsort(-best[members], kind="stable")[:GALLERY_CELLS]])
    return {"classes": classes, "counts": counts, "cells": cells}


# ---------------------------------------------------------------------- what the page carries
