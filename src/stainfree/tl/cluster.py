"""Clusters of cells in an embedding, their composition and enrichment by group."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io.export import to_uns
from ..utils import StainfreeError

logger = logging.getLogger(__name__)
CLUSTER_METHODS = ("kmeans", "hdbscan", "gmm")


def embedding_of(adata, key: str | None = None) -> tuple[str, np.ndarray]:
    """The embedding matrix of an AnnData, and its key.

    Parameters
    ----------
    adata : AnnData
        Cells with an embedding in ``obsm``.
    key : str, optional
        The ``obsm`` key; default the one ``stainfree embed`` recorded in
        ``uns["stainfree_embed"]``, else the first that is not a UMAP.

    Returns
    -------
    key : str
        The key used.
    x : ndarray
        The embedding, cells x dimensions, float64.

    Raises
    ------
    StainfreeError
        When there is no embedding (or none under ``key``), or it holds NaN or infinite values.

    Examples
    --------
    >>> import anndata
    >>> import numpy as np
    >>> from stainfree.tl.cluster import embedding_of
    >>> adata = anndata.AnnData(obsm={"X_cnn": np.ones((3, 2), np.float32)})
    >>> key, x = embedding_of(adata)
    >>> key, x.shape, x.dtype
    ('X_cnn', (3, 2), dtype('float64'))
    """
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


def umap_embedding(
    x: np.ndarray, *, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1, random_state: int = 0
) -> np.ndarray:
    """UMAP of the rows of ``x`` (umap-learn, Euclidean, one thread).

    Parameters
    ----------
    x : ndarray
        Cells x dimensions.
    n_components : int, default 2
        Dimensions of the UMAP.
    n_neighbors : int, default 15
        Size of the neighbourhood (at most the number of cells less one, at least 2).
    min_dist : float, default 0.1
        How tightly UMAP packs points together.
    random_state : int, default 0
        Seed of the layout.

    Returns
    -------
    ndarray of float32
        Cells x ``n_components``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.tl.cluster import umap_embedding
    >>> x = np.random.default_rng(0).normal(size=(20, 4))
    >>> # umap-learn compiles its numba kernels on first use, which takes about a minute
    >>> umap_embedding(x).shape  # doctest: +SKIP
    (20, 2)
    """
    import umap

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, random_state=random_state, n_jobs=1)
    return reducer.fit_transform(x).astype(np.float32)


def kmeans_scan(x: np.ndarray, *, ks: Sequence[int], random_state: int = 0, sample: int = 5000) -> pd.DataFrame:
    """Silhouette and inertia of k-means for each k (to choose k at the peak silhouette).

    Parameters
    ----------
    x : ndarray
        Cells x dimensions.
    ks : sequence of int
        The numbers of clusters to try.
    random_state : int, default 0
        Seed of k-means and of the silhouette's sample.
    sample : int, default 5000
        The silhouette is computed on at most this many cells.

    Returns
    -------
    DataFrame
        Columns ``k``, ``silhouette`` and ``inertia``, a row per k.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.tl.cluster import kmeans_scan
    >>> x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> scan = kmeans_scan(x, ks=[2, 3])
    >>> scan["k"].tolist(), scan["silhouette"].round(2).tolist()
    ([2, 3], [0.97, 0.57])
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows = []
    for k in ks:
        model = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit(x)
        sil = silhouette_score(x, model.labels_, sample_size=min(sample, len(x)), random_state=random_state)
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
    random_state: int = 0,
):
    """UMAP the embedding, cluster it, and put the labels in ``obs['cluster']`` (in place).

    The UMAP goes to ``obsm["X_umap"]`` (and ``X_umap_3d``), what was chosen (k, the silhouette
    scan or BIC, HDBSCAN's settings) to ``uns["stainfree_cluster"]`` (nested dicts).

    Parameters
    ----------
    adata : AnnData
        Cells with an embedding in ``obsm``.
    key : str, optional
        The embedding's ``obsm`` key (see :func:`embedding_of`).
    method : {"kmeans", "hdbscan", "gmm"}, default "kmeans"
        ``kmeans``: ``k`` given, else the k of peak silhouette over ``k_range`` (as Yao chose
        k = 11); ``hdbscan``: leaf or excess-of-mass selection, noise is cluster ``-1``; ``gmm``:
        a Gaussian mixture, ``k`` components or the lowest BIC over ``k_range``.
    on : {"embedding", "umap"}, default "embedding"
        ``umap`` clusters the 2-D UMAP instead (as Engberg did for HDBSCAN).
    k : int, optional
        Number of clusters (k-means, GMM).
    k_range : (int, int), default (2, 20)
        The k tried when ``k`` is not given (capped at the number of cells less one).
    min_cluster_size : int, default 15
        HDBSCAN's smallest cluster.
    min_samples : int, optional
        HDBSCAN's neighbourhood for core points (default: ``min_cluster_size``).
    leaf : bool, default True
        HDBSCAN's leaf selection (else excess of mass).
    umap_3d : bool, default False
        Also a 3-D UMAP.
    random_state : int, default 0
        Seed of UMAP, k-means and the mixture.

    Returns
    -------
    AnnData
        ``adata``, with ``obs["cluster"]`` (categorical strings).

    Raises
    ------
    StainfreeError
        For an unknown method or ``on``, fewer than 3 cells, or a ``k`` or ``k_range`` that does
        not fit the number of cells.

    Examples
    --------
    >>> import anndata
    >>> import numpy as np
    >>> from stainfree.tl.cluster import cluster_embedding
    >>> x = np.repeat([[0.0, 0.0], [5.0, 5.0]], 10, axis=0) + np.random.default_rng(0).normal(0, 0.1, (20, 2))
    >>> adata = anndata.AnnData(obsm={"X_emb": x})
    >>> # UMAP compiles its numba kernels on first use, which takes about a minute
    >>> cluster_embedding(adata, k=2).obs["cluster"].value_counts().tolist()  # doctest: +SKIP
    [10, 10]
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
    if method == "hdbscan" and not (2 <= min_cluster_size <= n and (min_samples is None or min_samples >= 1)):
        raise StainfreeError(f"min cluster size {min_cluster_size} must be between 2 and the number of cells ({n}), min samples at least 1")
    logger.info("UMAP of %s (%d cells x %d)", key, n, x.shape[1])
    adata.obsm["X_umap"] = umap_embedding(x, random_state=random_state)
    if umap_3d:
        adata.obsm["X_umap_3d"] = umap_embedding(x, n_components=3, random_state=random_state)
    data = adata.obsm["X_umap"].astype(np.float64) if on == "umap" else x
    info: dict = {"method": method, "key": key, "on": on, "seed": random_state}
    labels = _cluster_labels(
        data,
        method,
        k=k,
        k_range=(lo, hi),
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        leaf=leaf,
        random_state=random_state,
        info=info,
    )
    found = sorted(set(int(v) for v in labels) - {-1})
    info["clusters"] = len(found)
    if len(found) <= 1:
        logger.warning("the clustering found a single cluster: the embedding shows no separate groups with these settings")
    adata.obs["cluster"] = pd.Categorical([str(v) for v in labels], categories=[str(v) for v in sorted(set(int(v) for v in labels))])
    adata.uns["stainfree_cluster"] = to_uns(info)
    return adata


def _cluster_labels(
    data: np.ndarray, method: str, *, k, k_range, min_cluster_size, min_samples, leaf, random_state, info: dict
) -> np.ndarray:
    """Cluster labels of ``data`` by ``method`` (see :func:`cluster_embedding`); what was chosen
    (k, the scan or BIC, HDBSCAN's settings and noise) is added to ``info``."""
    lo, hi = k_range
    if method == "kmeans":
        from sklearn.cluster import KMeans

        if k is None:
            scan = kmeans_scan(data, ks=range(lo, hi + 1), random_state=random_state)
            k = int(scan.loc[scan["silhouette"].idxmax(), "k"])
            info["scan"] = scan.to_dict(orient="list")
            logger.info("k-means: peak silhouette %.3f at k = %d (k = %d..%d)", scan["silhouette"].max(), k, lo, hi)
        labels = KMeans(n_clusters=k, n_init=8, random_state=random_state).fit_predict(data)
        info["k"] = int(k)
    elif method == "gmm":
        from sklearn.mixture import GaussianMixture

        if k is None:
            bic = {
                kk: GaussianMixture(kk, covariance_type="full", random_state=random_state).fit(data).bic(data) for kk in range(lo, hi + 1)
            }
            k = min(bic, key=bic.get)
            info["bic"] = {str(kk): float(v) for kk, v in bic.items()}
        labels = GaussianMixture(k, covariance_type="full", random_state=random_state).fit(data).predict(data)
        info["k"] = int(k)
    else:
        from sklearn.cluster import HDBSCAN

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
    """Fraction of each group's cells in each cluster.

    Parameters
    ----------
    obs : DataFrame
        Per-cell annotations, with the ``by`` and ``cluster`` columns.
    by : str
        The group column (at least two values).
    cluster : str, default "cluster"
        The cluster column.

    Returns
    -------
    DataFrame
        Rows: groups, columns: clusters; each row sums to 1.

    Raises
    ------
    StainfreeError
        When ``by`` is missing or has fewer than two values.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.tl.cluster import composition
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
    the cluster or not); p-values corrected over all pairs by Benjamini-Hochberg. Cells without a
    group or cluster are left out.

    Parameters
    ----------
    obs, by, cluster
        As for :func:`composition`.
    alpha : float, default 0.05
        The false discovery rate at which a pair is called.

    Returns
    -------
    DataFrame
        A row per (group, cluster): ``group``, ``cluster``, ``cells``, ``expected``,
        ``fraction_in_group``, ``fraction_elsewhere``, ``odds_ratio``, ``p``, ``q`` and ``call``
        (``enriched``, ``depleted``, or empty when q >= ``alpha``).

    Raises
    ------
    StainfreeError
        When ``by`` is missing or has fewer than two values.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.tl.cluster import enrichment
    >>> obs = pd.DataFrame({"cluster": ["0"] * 10 + ["1"] * 10, "dish": ["x"] * 9 + ["y"] * 10 + ["x"]})
    >>> enrichment(obs, "dish")[["group", "cluster", "cells", "call"]]
      group cluster  cells      call
    0     x       0      9  enriched
    1     x       1      1  depleted
    2     y       0      1  depleted
    3     y       1      9  enriched
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
