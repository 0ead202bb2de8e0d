"""Maps, clusters, composition, galleries and probes on an embedding (AnnData in, AnnData out).

Results go under fixed keys, as scanpy does: ``obsm['X_umap']`` (2-D) and ``obsm['X_umap_3d']``,
``obs['cluster']``, ``uns['stainfree_cluster']`` (method, settings, the k-means scan).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .plotting import _pyplot
from .utils import StainfreeError, atomic_output_dir

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
        labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method="leaf" if leaf else "eom", copy=True).fit_predict(data)
        info.update({"min_cluster_size": min_cluster_size, "min_samples": min_samples, "selection": "leaf" if leaf else "eom", "noise_cells": int((labels < 0).sum())})
    found = sorted(set(int(v) for v in labels) - {-1})
    info["clusters"] = len(found)
    if len(found) <= 1:
        logger.warning("the clustering found a single cluster: the embedding shows no separate groups with these settings")
    adata.obs["cluster"] = pd.Categorical([str(v) for v in labels], categories=[str(v) for v in sorted(set(int(v) for v in labels))])
    adata.uns["stainfree_cluster"] = json.dumps(info)
    return adata


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
        raise StainfreeError(f"group column {by!r} has only one value ({values[0] if len(values) else 'none'}); composition needs two or more")


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
            rows.append({
                "group": g, "cluster": c, "cells": a, "expected": in_g.sum() * in_c.sum() / n,
                "fraction_in_group": a / max(a + b, 1), "fraction_elsewhere": cc / max(cc + d, 1), "odds_ratio": float(odds), "p": float(p),
            })
    table = pd.DataFrame(rows)
    table["q"] = false_discovery_control(table["p"].to_numpy(), method="bh") if len(table) else []
    table["call"] = np.where(table["q"] < alpha, np.where(table["cells"] > table["expected"], "enriched", "depleted"), "")
    return table


def _cluster_order(c: str):
    try:
        return (0, int(c))
    except ValueError:
        return (1, c)


# ---------------------------------------------------------------------- probes
def probe(x: np.ndarray, y: Sequence, *, kind: str = "rf", groups: Sequence | None = None, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated classification probe from an embedding to a column (Engberg Tables 2-3).

    ``kind`` is ``rf`` (random forest) or ``logreg`` (standardised logistic regression);
    with ``groups`` the folds keep each group whole. Returns accuracy, balanced accuracy, Cohen's
    kappa, the confusion matrix and the majority-class baseline.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .evaluate import classification_metrics

    y = pd.Series(y).astype("string")
    keep = y.notna().to_numpy()
    x, y = np.asarray(x)[keep], y[keep].astype(str).to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise StainfreeError(f"the probed column has one value only ({classes[0] if len(classes) else 'none'})")
    if groups is not None:
        g = np.asarray(groups, dtype=object)[keep].astype(str)
        n_groups = len(set(g))
        if n_groups < 2:
            raise StainfreeError("a group-aware probe needs at least two groups")
        cv = GroupKFold(n_splits=min(folds, n_groups))
        split_args = {"groups": g}
    else:
        if counts.min() < 2:
            raise StainfreeError(f"class {classes[counts.argmin()]!r} has {counts.min()} cell; a probe needs at least 2 per class")
        cv = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True, random_state=seed)
        split_args = {}
    if kind == "rf":
        model = RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", n_jobs=-1, random_state=seed)
    elif kind == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    else:
        raise StainfreeError(f"probe kind must be rf or logreg, got {kind!r}")
    predicted = cross_val_predict(model, x, y, cv=cv, **split_args)
    majority = cross_val_predict(DummyClassifier(strategy="most_frequent"), x, y, cv=cv, **split_args)
    m = classification_metrics(y, predicted, classes=list(classes))
    base = classification_metrics(y, majority, classes=list(classes))
    return {
        "kind": kind, "cells": int(len(y)), "features": int(x.shape[1]), "folds": int(cv.get_n_splits()), "group_aware": groups is not None,
        "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "cohen_kappa": m["cohen_kappa"],
        "confusion_matrix": m["confusion_matrix"],
        "majority": {"accuracy": base["accuracy"], "balanced_accuracy": base["balanced_accuracy"], "cohen_kappa": base["cohen_kappa"]},
    }


PIXEL_PROBE_MAX_CELLS = 20_000  # the raw-pixel probes beside the embedding's (memory, time)


def regression_probe(x: np.ndarray, y: Sequence[float], *, kind: str = "rf", folds: int = 5, seed: int = 0, trees: int = 300) -> dict:
    """Cross-validated regression from an embedding to a continuous column: Pearson r of the
    out-of-fold predictions. ``kind`` is ``rf`` (random forest) or ``ridge`` (standardised ridge
    regression, its penalty chosen by internal cross-validation)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(y)
    if keep.sum() < 2 * folds:
        raise StainfreeError(f"only {int(keep.sum())} cells have a numeric value to predict")
    if kind == "rf":
        model = RandomForestRegressor(n_estimators=trees, n_jobs=-1, random_state=seed)
    elif kind == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    else:
        raise StainfreeError(f"regression probe kind must be rf or ridge, got {kind!r}")
    pred = cross_val_predict(model, np.asarray(x)[keep], y[keep], cv=KFold(folds, shuffle=True, random_state=seed))
    return {"kind": kind, "cells": int(keep.sum()), "features": int(np.asarray(x).shape[1]), "folds": folds, "pearson_r": float(np.corrcoef(pred, y[keep])[0, 1])}


# ---------------------------------------------------------------------- figures
def plot_umap(adata, column: str, path, *, max_points: int = 20000, seed: int = 0) -> Path:
    """The 2-D UMAP coloured by a column of ``obs`` (categories, or a colour scale for numbers)."""
    plt = _pyplot()
    xy = np.asarray(adata.obsm["X_umap"])
    values = adata.obs[column]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(xy))[:max_points]
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 12:
        sc = ax.scatter(xy[idx, 0], xy[idx, 1], c=values.to_numpy(np.float64)[idx], s=3, cmap="viridis", edgecolors="none")
        fig.colorbar(sc, ax=ax, label=column)
    else:
        cats = values.astype("string").fillna("(none)")
        names = sorted(cats.unique(), key=_cluster_order)
        cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
        for i, name in enumerate(names):
            sel = idx[(cats.to_numpy()[idx] == name)]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3, color=cmap(i % cmap.N), label=str(name), edgecolors="none")
        if len(names) <= 25:
            ax.legend(fontsize=6, markerscale=3, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"UMAP coloured by {column}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_kmeans_scan(scan: dict, chosen: int, path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].plot(scan["k"], scan["silhouette"], "o-")
    ax[0].axvline(chosen, color="grey", ls="--")
    ax[0].set_xlabel("k")
    ax[0].set_ylabel("silhouette")
    ax[1].plot(scan["k"], scan["inertia"], "o-")
    ax[1].set_xlabel("k")
    ax[1].set_ylabel("inertia")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_composition(fractions: pd.DataFrame, enriched: pd.DataFrame, by: str, path) -> Path:
    """Stacked bars, one per group, of its cells' clusters; + / - mark enriched / depleted."""
    plt = _pyplot()
    clusters = sorted(fractions.columns, key=_cluster_order)
    cmap = plt.get_cmap("tab20" if len(clusters) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(min(1.5 + 0.6 * len(fractions), 12), 3.8))
    bottom = np.zeros(len(fractions))
    calls = {(r.group, r.cluster): r.call for r in enriched.itertuples()}
    for i, c in enumerate(clusters):
        values = fractions[c].to_numpy()
        ax.bar(range(len(fractions)), values, bottom=bottom, color=cmap(i % cmap.N), label=f"cluster {c}")
        for j, g in enumerate(fractions.index):
            mark = {"enriched": "+", "depleted": "-"}.get(calls.get((g, c), ""), "")
            if mark and values[j] > 0.02:
                ax.text(j, bottom[j] + values[j] / 2, mark, ha="center", va="center", fontsize=9, fontweight="bold", color="white")
        bottom += values
    ax.set_xticks(range(len(fractions)), fractions.index, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("fraction of cells")
    ax.set_title(f"clusters by {by} (+ enriched, - depleted: Fisher, BH q < 0.05)", fontsize=8)
    ax.legend(fontsize=6, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_gallery(cells, labels: pd.Series, path, *, per_cluster: int = 10, seed: int = 0) -> Path:
    """``per_cluster`` random cells of each cluster, a row per cluster (Engberg Fig. 8B)."""
    from .plotting import cell_grid

    return cell_grid(cells, labels, path, per_row=per_cluster, title=lambda name, n: f"cluster {name} (n={n})", seed=seed, order=_cluster_order)


def plot_ordered_matrices(x: np.ndarray, labels: pd.Series, path, *, max_cells: int = 1500, seed: int = 0) -> Path:
    """The embedding matrix and the cell-to-cell distance matrix, rows ordered by cluster
    (Yao Fig. 5d/e)."""
    from scipy.spatial.distance import cdist

    plt = _pyplot()
    labels = pd.Series(labels).astype("string").fillna("-1").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(x))[:max_cells])
    names = labels.to_numpy()[idx]
    order = idx[sorted(range(len(idx)), key=lambda i: _cluster_order(names[i]))]
    z = _standardise(np.asarray(x, np.float64))[order]
    fig, ax = plt.subplots(1, 2, figsize=(9, 4.2))
    ax[0].imshow(np.clip(z, -3, 3), aspect="auto", cmap="RdBu_r", interpolation="nearest")
    ax[0].set_title("embedding (cells ordered by cluster)", fontsize=8)
    ax[0].set_xlabel("feature")
    d = cdist(z, z)
    ax[1].imshow(d, cmap="magma", interpolation="nearest")
    ax[1].set_title("cell-to-cell distance", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------------- the whole job
def cluster_to_folder(
    adata,
    out: str | os.PathLike,
    *,
    by: Sequence[str] = (),
    probe_columns: Sequence[str] = (),
    regress_columns: Sequence[str] = (),
    probe_group: str | None = None,
    cells=None,
    seed: int = 0,
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
    adata = cluster_embedding(adata, seed=seed, **options)
    info = json.loads(adata.uns["stainfree_cluster"])
    key, x = embedding_of(adata, info["key"])
    embed_settings = (adata.uns.get("stainfree_embed") or {}).get("settings")
    summary: dict = {"embedding": json.loads(embed_settings) if embed_settings else None, "clustering": info, "cells": int(adata.n_obs), "cluster_sizes": adata.obs["cluster"].value_counts().sort_index().to_dict(), "composition": {}, "probes": {}, "regressions": {}}
    with atomic_output_dir(out, force=force, marker="clusters.json") as tmp:
        figures = tmp / "figures"
        figures.mkdir()
        plot_umap(adata, "cluster", figures / "umap_cluster.png", seed=seed)
        for column in ["label", *[c for c in adata.obs.columns if c in (cells.groups if cells is not None else [])], *by]:
            if column in adata.obs and adata.obs[column].notna().any() and not (figures / f"umap_{column}.png").exists():
                plot_umap(adata, column, figures / f"umap_{column}.png", seed=seed)
        if "scan" in info:
            plot_kmeans_scan(info["scan"], info["k"], figures / "cluster_kmeans_scan.png")
        for column in by:
            fractions = composition(adata.obs, column)
            table = enrichment(adata.obs, column)
            fractions.to_csv(tmp / f"composition_{column}.csv")
            table.to_csv(tmp / f"enrichment_{column}.csv", index=False)
            plot_composition(fractions, table, column, figures / f"composition_{column}.png")
            summary["composition"][column] = {"fractions": fractions.round(4).to_dict(orient="index"), "calls": table[table["call"] != ""][["group", "cluster", "call", "q"]].to_dict(orient="records")}
        if cells is not None:
            plot_gallery(cells, adata.obs["cluster"], figures / "cluster_gallery.png", seed=seed)
        plot_ordered_matrices(x, adata.obs["cluster"], figures / "cluster_matrices.png", seed=seed)
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
            summary["probes"][column] = {kind + suffix: probe(data, adata.obs[column], kind=kind, groups=groups, seed=seed) for suffix, data in inputs.items() for kind in ("rf", "logreg")}
        for column in regress_columns:
            summary["regressions"][column] = {kind + suffix: regression_probe(data, adata.obs[column], kind=kind, seed=seed) for suffix, data in inputs.items() for kind in ("rf", "ridge")}
        from .embed import write_h5ad

        write_h5ad(adata, tmp / "clusters.h5ad")
        (tmp / "clusters.json").write_text(json.dumps(summary, indent=2, default=str))
        from .report import write_report

        write_report(tmp, title=f"stainfree cluster: {Path(out).name}")
    return Path(out), summary
