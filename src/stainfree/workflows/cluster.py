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
from ..tl.probe import PIXEL_PROBE_MAX_CELLS, probe, regression_probe
from ..utils import StainfreeError, atomic_output_dir

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the whole job
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
    """Cluster an embedding and write ``OUT/``: ``clusters.h5ad``, ``clusters.json``,
    ``composition_<by>.csv`` and ``enrichment_<by>.csv``, figures (UMAPs, k-means scan,
    composition, gallery with ``cells``, ordered matrices) and ``report.html``. ``options`` go to
    :func:`cluster_embedding` (key, method, on, k, k_range, min_cluster_size, min_samples, leaf)."""
    for column in list(by) + list(probe_columns) + list(regress_columns) + ([probe_group] if probe_group else []):
        if column not in adata.obs.columns:
            raise StainfreeError(f"column {column!r} does not exist (columns: {', '.join(map(str, adata.obs.columns))})")
    for column in by:
        _check_group(adata.obs, column)
    if cells is not None and len(cells) != adata.n_obs:
        raise StainfreeError(f"the cells ({len(cells)}) are not the {adata.n_obs} cells of the embedding")
    adata = cluster_embedding(adata, random_state=random_state, **options)
    info = json.loads(adata.uns["stainfree_cluster"])
    key, x = embedding_of(adata, info["key"])
    embed_settings = (adata.uns.get("stainfree_embed") or {}).get("settings")
    summary: dict = {
        "embedding": json.loads(embed_settings) if embed_settings else None,
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
        plot_umap(adata, "cluster", figures / "umap_cluster.png", random_state=random_state)
        for column in ["label", *[c for c in adata.obs.columns if c in (cells.groups if cells is not None else [])], *by]:
            if column in adata.obs and adata.obs[column].notna().any() and not (figures / f"umap_{column}.png").exists():
                plot_umap(adata, column, figures / f"umap_{column}.png", random_state=random_state)
        if "scan" in info:
            plot_kmeans_scan(info["scan"], info["k"], figures / "cluster_kmeans_scan.png")
        for column in by:
            fractions = composition(adata.obs, column)
            table = enrichment(adata.obs, column)
            fractions.to_csv(tmp / f"composition_{column}.csv")
            table.to_csv(tmp / f"enrichment_{column}.csv", index=False)
            plot_composition(fractions, table, column, figures / f"composition_{column}.png")
            summary["composition"][column] = {
                "fractions": fractions.round(4).to_dict(orient="index"),
                "calls": table[table["call"] != ""][["group", "cluster", "call", "q"]].to_dict(orient="records"),
            }
        if cells is not None:
            plot_gallery(cells, adata.obs["cluster"], figures / "cluster_gallery.png", random_state=random_state)
        plot_ordered_matrices(x, adata.obs["cluster"], figures / "cluster_matrices.png", random_state=random_state)
        groups = adata.obs[probe_group].astype(str).to_numpy() if probe_group else None
        # Engberg's Tables 2-3 put the same probe on the raw pixels beside the embedding's
        inputs = {"": x}
        if cells is not None and (probe_columns or regress_columns):
            # the embedding's own channels only (the cells may carry a stain it never saw)
            channels = (summary["embedding"] or {}).get("channels")
            missing = [c for c in channels or [] if c not in cells.channels]
            if missing:
                logger.warning("probes on raw pixels skipped: the cells lack the embedding's channel(s) %s", ", ".join(missing))
            elif len(cells) > PIXEL_PROBE_MAX_CELLS:
                logger.info("probes on raw pixels skipped: %d cells (more than %d)", len(cells), PIXEL_PROBE_MAX_CELLS)
            else:
                source = cells.select_channels(channels) if channels else cells
                inputs[" on pixels"] = source.read(slice(None)).reshape(len(cells), -1).astype(np.float32)
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
        from ..io.export import write_h5ad

        write_h5ad(adata, tmp / "clusters.h5ad")
        (tmp / "clusters.json").write_text(json.dumps(summary, indent=2, default=str))
        from ..report.sections import write_report

        write_report(tmp, title=f"stainfree cluster: {Path(out).name}")
    return Path(out), summary
