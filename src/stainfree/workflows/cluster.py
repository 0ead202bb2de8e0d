"""The `cluster` stage: an embedding in, clusters, figures and a report folder out."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..pl.embedding import (
    plot_composition,
    plot_gallery,
    plot_kmeans_scan,
    plot_ordered_matrices,
    plot_umap,
)
from ..tl.cluster import (
    _check_group,
    cluster_embedding,
    composition,
    embedding_of,
    enrichment,
)
from ..tl.probe import PIXEL_PROBE_MAX_CELLS, group_folds, probe, regression_probe
from ..utils import StainfreeError, atomic_output_dir

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the whole job
def _check_columns(adata, cells, columns: list[str], by: Sequence[str], numeric: Sequence[str]) -> None:
    import pandas as pd

    for column in columns:
        if column not in adata.obs.columns:
            raise StainfreeError(f"column {column!r} does not exist (columns: {', '.join(map(str, adata.obs.columns))})")
    for column in numeric:
        if pd.to_numeric(adata.obs[column], errors="coerce").isna().all():
            raise StainfreeError(f"column {column!r} has no numeric values to predict (a regression needs numbers)")
    for column in by:
        _check_group(adata.obs, column)
    if cells is not None and len(cells) != adata.n_obs:
        raise StainfreeError(f"the cells ({len(cells)}) are not the {adata.n_obs} cells of the embedding")


def _plot_clusters(adata, x: np.ndarray, info: dict, figures: Path, cells, by: Sequence[str], random_state: int) -> None:
    plot_umap(adata, "cluster", figures / "umap_cluster.png", random_state=random_state)
    for column in ["label", *[c for c in adata.obs.columns if c in (cells.groups if cells is not None else [])], *by]:
        if column in adata.obs and adata.obs[column].notna().any() and not (figures / f"umap_{column}.png").exists():
            plot_umap(adata, column, figures / f"umap_{column}.png", random_state=random_state)
    if "scan" in info:
        plot_kmeans_scan(info["scan"], info["k"], figures / "cluster_kmeans_scan.png")
    if cells is not None:
        plot_gallery(cells, adata.obs["cluster"], figures / "cluster_gallery.png", random_state=random_state)
    plot_ordered_matrices(x, adata.obs["cluster"], figures / "cluster_matrices.png", random_state=random_state)


def _write_composition(adata, column: str, folder: Path, figures: Path) -> dict:
    fractions = composition(adata.obs, column)
    table = enrichment(adata.obs, column)
    fractions.to_csv(folder / f"composition_{column}.csv")
    table.to_csv(folder / f"enrichment_{column}.csv", index=False)
    plot_composition(fractions, table, column, figures / f"composition_{column}.png")
    return {
        "fractions": fractions.round(4).to_dict(orient="index"),
        "calls": table[table["call"] != ""][["group", "cluster", "call", "q"]].to_dict(orient="records"),
    }


def _probe_inputs(x: np.ndarray, cells, embedding: dict | None) -> dict[str, np.ndarray]:
    """The embedding and, as Engberg's Tables 2-3, the raw pixels of its own channels (the cells
    may carry a stain the embedding never saw), unless there are too many cells."""
    inputs = {"": x}
    channels = (embedding or {}).get("channels")
    missing = [c for c in channels or [] if c not in cells.channels]
    if missing:
        logger.warning("probes on raw pixels skipped: the cells lack the embedding's channel(s) %s", ", ".join(missing))
    elif len(cells) > PIXEL_PROBE_MAX_CELLS:
        logger.info("probes on raw pixels skipped: %d cells (more than %d)", len(cells), PIXEL_PROBE_MAX_CELLS)
    else:
        source = cells.select_channels(channels) if channels else cells
        inputs[" on pixels"] = source.read(slice(None)).reshape(len(cells), -1).astype(np.float32)
    return inputs


def run_cluster(
    adata,
    out: str | os.PathLike,
    *,
    by: Sequence[str] = (),
    probe_columns: Sequence[str] = (),
    regress_columns: Sequence[str] = (),
    probe_group: str | None = None,
    cells=None,
    random_state: int = 0,
    force: bool = False,
    **options,
) -> tuple[Path, dict]:
    """Cluster an embedding and write a run folder with its figures and report.

    Parameters
    ----------
    adata : AnnData
        An embedding (:func:`stainfree.ml.embed.embed_cells`): ``obs`` the cells, ``obsm`` the
        embedding.
    out : path
        The folder to write (atomically): ``clusters.h5ad``, ``clusters.json``, ``config.json``
        (where the cells are, when they were opened from a folder),
        ``composition_<by>.csv`` and ``enrichment_<by>.csv``, ``figures/`` (UMAPs, k-means scan,
        composition, gallery with ``cells``, ordered matrices) and ``report.html``.
    by : sequence of str
        ``obs`` columns (conditions) whose composition per cluster is tabulated and tested.
    probe_columns, regress_columns : sequence of str
        ``obs`` columns a classifier (random forest, logistic regression) or a regressor
        (random forest, ridge) predicts from the embedding, cross-validated; on raw pixels too
        when ``cells`` are given (Engberg's Tables 2-3).
    probe_group : str, optional
        Folds of the probes keep the cells of one group together.
    cells : CellSet, optional
        The embedded cells, in the embedding's order: galleries and pixel probes.
    random_state : int, default 0
        Seed of UMAP, clustering, figures and probes.
    force : bool, default False
        Replace ``out`` when it is an earlier output.
    **options
        Passed to :func:`stainfree.tl.cluster.cluster_embedding` (key, method, on, k, k_range,
        min_cluster_size, min_samples, leaf).

    Returns
    -------
    pathlib.Path
        ``out``.
    dict
        What ``clusters.json`` holds: the embedding's settings, the clustering, cluster sizes,
        compositions, probes and regressions.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.embed import EmbedConfig, embed_cells
    >>> from stainfree.workflows.cluster import run_cluster
    >>> adata = embed_cells(make_cells(10, size=24, random_state=0), config=EmbedConfig(method="pca", dim=5))
    >>> with tempfile.TemporaryDirectory() as d:  # doctest: +SKIP
    ...     path, summary = run_cluster(adata, f"{d}/clusters", method="kmeans", k=2)
    ...     summary["clustering"]["clusters"]
    2
    """
    from ..io.export import from_uns, write_h5ad
    from ..report.sections import write_report

    _check_columns(adata, cells, [*by, *probe_columns, *regress_columns, *([probe_group] if probe_group else [])], by, regress_columns)
    for column in probe_columns if probe_group else ():  # refuse folds that cannot learn before any work
        known = adata.obs[column].notna().to_numpy()
        group_folds(adata.obs[column][known], adata.obs[probe_group][known])
    adata = cluster_embedding(adata, random_state=random_state, **options)
    info = from_uns(adata.uns["stainfree_cluster"])
    key, x = embedding_of(adata, info["key"])
    summary: dict = {
        "embedding": from_uns((adata.uns.get("stainfree_embed") or {}).get("settings")),
        "clustering": info,
        "cells": int(adata.n_obs),
        "cluster_sizes": adata.obs["cluster"].value_counts().sort_index().to_dict(),
        "composition": {},
        "probes": {},
        "regressions": {},
    }
    with atomic_output_dir(out, force=force, marker="clusters.json") as tmp:
        figures = tmp / "figures"
        figures.mkdir()
        _plot_clusters(adata, x, info, figures, cells, by, random_state)
        for column in by:
            summary["composition"][column] = _write_composition(adata, column, tmp, figures)
        groups = adata.obs[probe_group].astype(str).to_numpy() if probe_group else None
        inputs = _probe_inputs(x, cells, summary["embedding"]) if cells is not None and (probe_columns or regress_columns) else {"": x}
        for column in probe_columns:
            summary["probes"][column] = {
                kind + suffix: probe(data, adata.obs[column], kind=kind, groups=groups, random_state=random_state)
                for suffix, data in inputs.items()
                for kind in ("rf", "logreg")
            }
        for column in regress_columns:
            summary["regressions"][column] = {
                kind + suffix: regression_probe(data, adata.obs[column], kind=kind, random_state=random_state)
                for suffix, data in inputs.items()
                for kind in ("rf", "ridge")
            }
        write_h5ad(adata, tmp / "clusters.h5ad")
        if cells is not None and getattr(cells, "path", None):  # the report's thumbnails come from here
            data = {"cells": str(Path(cells.path).resolve()), "channels": (summary["embedding"] or {}).get("channels")}
            (tmp / "config.json").write_text(json.dumps({"command": "cluster", "data": {k: v for k, v in data.items() if v}}, indent=2))
        (tmp / "clusters.json").write_text(json.dumps(summary, indent=2, default=str))
        write_report(tmp, title=f"stainfree cluster: {Path(out).name}")
    return Path(out), summary
