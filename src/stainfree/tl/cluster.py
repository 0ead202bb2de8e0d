"""Clusters of cells in an embedding, their composition and enrichment by group."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError

logger = logging.getLogger(__name__)
CLUSTER_METHODS = ("kmeans", "hdbscan", "gmm")


def embedding_of(adata, key: str | None = None) -> tuple[str, np.ndarray]:
    """The embedding matrix under ``obsm[key]`` (default: the one ``stainfree embed`` wrote)."""
    keys = list(adata.obsm.keys())
    if key is None:
        key = (adata.uns.get("stainfree_embed") or {}).get("key") or next((k for k in keys if k not in ("X_umap", "X_umap_3d")), None)
        if key is None:
            raise StainfreeError("the file holds no embedding in obsm (write one with `stainfree embed`)")
    if key not in adata.obsm:
        raise StainfreeError(f"no embedding {key!r} in the file (obsm has: {', '.join(keys) or 'nothing'})")
    x = np.asarray(adata.obsm[key], np.float64)
    if not np.isfinite(x).all():
        raise StainfreeError(f"embedding {key!r} holds NaN or infinite values")
    return key, x


def umap_embedding(x: np.ndarray, *, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """UMAP of the rows of ``x`` (umap-learn, Euclidean)."""
    import umap

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1)
    return reducer.fit_transform(x).astype(np.float32)


def kmeans_scan(x: np.ndarray, ks: Sequence[int], *, seed: int = 0, sample: int = 5000) -> pd.DataFrame:
    """Silhouette (on up to ``sample`` cells) and inertia of k-means for each k."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows = []
    for k in ks:
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
        sil = silhouette_score(x, model.labels_, sample_size=min(sample, len(x)), random_state=seed)
        rows.append({"k": int(k), "silhouette": float(sil), "inertia": float(model.inertia_)})
    return pd.DataFrame(rows)


def cluster_embedding(
    adata,
    *,
    key: str | None = None,
    method: str = "kmeans",
    on: str = "embedding",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 20),
    min_cluster_size: int = 15,
    min_samples: int | None = None,
    leaf: bool = True,
    umap_3d: bool = False,
    seed: int = 0,
):
    """UMAP the embedding, cluster it, and put the labels in ``obs['cluster']`` (in place).

    ``method``: ``kmeans`` (``k`` given, else the k of peak silhouette over ``k_range``, as Yao
    chose k = 11), ``hdbscan`` (leaf or excess-of-mass selection; noise is cluster ``-1``) or
    ``gmm`` (a Gaussian mixture, ``k`` components or the lowest BIC over ``k_range``).
    ``on="umap"`` clusters the 2-D UMAP instead of the embedding (as Engberg did for HDBSCAN).
    Returns the AnnData.
    """
    if method not in CLUSTER_METHODS:
        raise StainfreeError(f"unknown clustering method {method!r} (choose from {', '.join(CLUSTER_METHODS)})")
    if on not in ("embedding", "umap"):
        raise StainfreeError(f"cluster on 'embedding' or 'umap', got {on!r}")
    key, x = embedding_of(adata, key)
    n = len(x)
    if n < 3:
        raise StainfreeError(f"{n} cells are too few to cluster")
    if k is not None and not 2 <= k < n:
        raise StainfreeError(f"k = {k} must be at least 2 and less than the number of cells ({n})")
    lo, hi = k_range
    hi = min(hi, n - 1)
    if k is None and method != "hdbscan" and not 2 <= lo <= hi:
        raise StainfreeError(f"the k range {k_range[0]}..{k_range[1]} has no valid k for {n} cells")
    logger.info("UMAP of %s (%d cells x %d)", key, n, x.shape[1])
    adata.obsm["X_umap"] = umap_embedding(x, seed=seed)
    if umap_3d:
        adata.obsm["X_umap_3d"] = umap_embedding(x, n_components=3, seed=seed)
    data = adata.obsm["X_umap"].astype(np.float64) if on == "umap" else x
    info: dict = {"method": method, "key": key, "on": on, "seed": seed}
    labels = _cluster_labels(
        data, method, k=k, k_range=(lo, hi), min_cluster_size=min_cluster_size, min_samples=min_samples, leaf=leaf, seed=seed, info=info
    )
    found = sorted(set(int(v) for v in labels) - {-1})
    info["clusters"] = len(found)
    if len(found) <= 1:
        logger.warning("the clustering found a single cluster: the embedding shows no separate groups with these settings")
    adata.obs["cluster"] = pd.Categorical([str(v) for v in labels], categories=[str(v) for v in sorted(set(int(v) for v in labels))])
    adata.uns["stainfree_cluster"] = json.dumps(info)
    return adata


def _cluster_labels(data: np.ndarray, method: str, *, k, k_range, min_cluster_size, min_samples, leaf, seed, info: dict) -> np.ndarray:
    """Cluster labels of ``data`` by ``method`` (see :func:`cluster_embedding`); what was chosen
    (k, the scan or BIC, HDBSCAN's settings and noise) is added to ``info``."""
    lo, hi = k_range
    n = len(data)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        if k is None:
            scan = kmeans_scan(data, range(lo, hi + 1), seed=seed)
            k = int(scan.loc[scan["silhouette"].idxmax(), "k"])
            info["scan"] = scan.to_dict(orient="list")
            logger.info("k-means: peak silhouette %.3f at k = %d (k = %d..%d)", scan["silhouette"].max(), k, lo, hi)
        labels = KMeans(n_clusters=k, n_init=8, random_state=seed).fit_predict(data)
        info["k"] = int(k)
    elif method == "gmm":
        from sklearn.mixture import GaussianMixture

        if k is None:
            bic = {kk: GaussianMixture(kk, covariance_type="full", random_state=seed).fit(data).bic(data) for kk in range(lo, hi + 1)}
            k = min(bic, key=bic.get)
            info["bic"] = {str(kk): float(v) for kk, v in bic.items()}
        labels = GaussianMixture(k, covariance_type="full", random_state=seed).fit(data).predict(data)
        info["k"] = int(k)
    else:
        from sklearn.cluster import HDBSCAN

        if min_cluster_size < 2 or min_cluster_size > n:
            raise StainfreeError(f"min cluster size {min_cluster_size} must be between 2 and the number of cells ({n})")
        labels = HDBSCAN(
            min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method="leaf" if leaf else "eom", copy=True
        ).fit_predict(data)
        info.update(
            {
                "min_cluster_size": min_cluster_size,
                "min_samples": min_samples,
                "selection": "leaf" if leaf else "eom",
                "noise_cells": int((labels < 0).sum()),
            }
        )
    return labels


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


# ---------------------------------------------------------------------- composition
def composition(obs: pd.DataFrame, by: str, *, cluster: str = "cluster") -> pd.DataFrame:
    """Fraction of each group's cells in each cluster (rows: groups, columns: clusters).

    >>> obs = pd.DataFrame({"cluster": ["0", "0", "1", "1"], "density": ["lo", "lo", "lo", "hi"]})
    >>> composition(obs, "density").round(3).to_dict()
    {'0': {'hi': 0.0, 'lo': 0.667}, '1': {'hi': 1.0, 'lo': 0.333}}
    """
    _check_group(obs, by)
    counts = pd.crosstab(obs[by].astype("string"), obs[cluster].astype("string"))
    return counts.div(counts.sum(axis=1), axis=0)


def _check_group(obs: pd.DataFrame, by: str) -> None:
    if by not in obs.columns:
        raise StainfreeError(f"group column {by!r} does not exist (columns: {', '.join(map(str, obs.columns))})")
    values = obs[by].dropna().unique()
    if len(values) < 2:
        raise StainfreeError(
            f"group column {by!r} has only one value ({values[0] if len(values) else 'none'}); composition needs two or more"
        )


def enrichment(obs: pd.DataFrame, by: str, *, cluster: str = "cluster", alpha: float = 0.05) -> pd.DataFrame:
    """Which clusters are enriched or depleted in which group.

    For every (group, cluster), Fisher's exact test on the 2 x 2 table (in the group or not, in
    the cluster or not); p-values corrected over all pairs by Benjamini-Hochberg. Columns: group,
    cluster, cells, expected, fraction_in_group, fraction_elsewhere, odds_ratio, p, q, call
    (``enriched``, ``depleted`` or empty when q >= ``alpha``).
    """
    from scipy.stats import false_discovery_control, fisher_exact

    _check_group(obs, by)
    groups = obs[by].astype("string")
    clusters = obs[cluster].astype("string")
    keep = groups.notna() & clusters.notna()
    groups, clusters = groups[keep], clusters[keep]
    n = len(groups)
    rows = []
    for g in sorted(groups.unique()):
        in_g = (groups == g).to_numpy()
        for c in sorted(clusters.unique(), key=_cluster_order):
            in_c = (clusters == c).to_numpy()
            a = int((in_g & in_c).sum())
            b = int((in_g & ~in_c).sum())
            cc = int((~in_g & in_c).sum())
            d = int((~in_g & ~in_c).sum())
            odds, p = fisher_exact([[a, b], [cc, d]])
            rows.append(
                {
                    "group": g,
                    "cluster": c,
                    "cells": a,
                    "expected": in_g.sum() * in_c.sum() / n,
                    "fraction_in_group": a / max(a + b, 1),
                    "fraction_elsewhere": cc / max(cc + d, 1),
                    "odds_ratio": float(odds),
                    "p": float(p),
                }
            )
    table = pd.DataFrame(rows)
    table["q"] = false_discovery_control(table["p"].to_numpy(), method="bh") if len(table) else []
    table["call"] = np.where(table["q"] < alpha, np.where(table["cells"] > table["expected"], "enriched", "depleted"), "")
    return table


def _cluster_order(c: str):
    try:
        return (0, int(c))
    except ValueError:
        return (1, c)
