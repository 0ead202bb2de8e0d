"""Figures of embeddings and clusters: UMAP, k-means scan, composition, galleries, ordered matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..tl.cluster import _cluster_order, _standardise
from .core import _figure


# ---------------------------------------------------------------------- figures
def plot_umap(adata, column: str, path, *, max_points: int = 20000, random_state: int = 0) -> Path:
    """The 2-D UMAP coloured by a column of ``obs``.

    Parameters
    ----------
    adata : AnnData
        Cells with ``obsm["X_umap"]``.
    column : str
        The ``obs`` column: numbers with more than 12 values get a colour scale, anything else
        a colour per category (a legend up to 25).
    path : str or Path
        The PNG file to write.
    max_points : int, default 20000
        At most this many cells, drawn at random, are shown.
    random_state : int, default 0
        Seed of the choice of cells and their drawing order.

    Returns
    -------
    Path
        ``path``, the UMAP figure written.

    Examples
    --------
    >>> import tempfile
    >>> import anndata
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.pl.embedding import plot_umap
    >>> obs = pd.DataFrame({"cluster": ["0", "0", "1", "1"]}, index=list("abcd"))
    >>> adata = anndata.AnnData(obs=obs, obsm={"X_umap": np.array([[0, 0], [0, 1], [5, 5], [5, 6]])})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_umap(adata, "cluster", f"{d}/umap_cluster.png").name
    'umap_cluster.png'
    """
    import matplotlib

    xy = np.asarray(adata.obsm["X_umap"])
    values = adata.obs[column]
    rng = np.random.default_rng(random_state)
    idx = rng.permutation(len(xy))[:max_points]
    fig = _figure((5.6, 4.8))
    ax = fig.subplots()
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 12:
        sc = ax.scatter(xy[idx, 0], xy[idx, 1], c=values.to_numpy(np.float64)[idx], s=3, cmap="viridis", edgecolors="none")
        fig.colorbar(sc, ax=ax, label=column)
    else:
        cats = values.astype("string").fillna("(none)")
        names = sorted(cats.unique(), key=_cluster_order)
        cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
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
    return Path(path)


def plot_kmeans_scan(scan: dict, chosen: int, path) -> Path:
    """Silhouette (with the chosen k marked) and inertia against k.

    Parameters
    ----------
    scan : dict
        Lists ``k``, ``silhouette`` and ``inertia`` (:func:`~stainfree.tl.cluster.kmeans_scan`
        as a dict of lists).
    chosen : int
        The k chosen.
    path : str or Path
        The PNG file to write.

    Returns
    -------
    Path
        ``path``, the k-means scan written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.embedding import plot_kmeans_scan
    >>> scan = {"k": [2, 3, 4], "silhouette": [0.5, 0.7, 0.6], "inertia": [30.0, 12.0, 9.0]}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_kmeans_scan(scan, 3, f"{d}/scan.png").name
    'scan.png'
    """
    fig = _figure((8, 3))
    ax = fig.subplots(1, 2)
    ax[0].plot(scan["k"], scan["silhouette"], "o-")
    ax[0].axvline(chosen, color="grey", ls="--")
    ax[0].set_xlabel("k")
    ax[0].set_ylabel("silhouette")
    ax[1].plot(scan["k"], scan["inertia"], "o-")
    ax[1].set_xlabel("k")
    ax[1].set_ylabel("inertia")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_composition(fractions: pd.DataFrame, enriched: pd.DataFrame, by: str, path) -> Path:
    """Stacked bars, one per group, of its cells' clusters; + / - mark enriched / depleted.

    Parameters
    ----------
    fractions : DataFrame
        Groups x clusters fractions (:func:`~stainfree.tl.cluster.composition`).
    enriched : DataFrame
        The calls of :func:`~stainfree.tl.cluster.enrichment`.
    by : str
        The group column's name, for the title.
    path : str or Path
        The PNG file to write.

    Returns
    -------
    Path
        ``path``, the composition bars written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.pl.embedding import plot_composition
    >>> from stainfree.tl.cluster import composition, enrichment
    >>> obs = pd.DataFrame({"cluster": ["0", "0", "1", "1", "1"], "dish": ["x", "x", "x", "y", "y"]})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_composition(composition(obs, "dish"), enrichment(obs, "dish"), "dish", f"{d}/comp.png").name
    'comp.png'
    """
    import matplotlib

    clusters = sorted(fractions.columns, key=_cluster_order)
    cmap = matplotlib.colormaps["tab20" if len(clusters) > 10 else "tab10"]
    fig = _figure((min(1.5 + 0.6 * len(fractions), 12), 3.8))
    ax = fig.subplots()
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
    return Path(path)


def plot_gallery(cells, labels: pd.Series, path, *, per_cluster: int = 10, random_state: int = 0) -> Path:
    """Random cells of each cluster, a row per cluster (Engberg Fig. 8B).

    Parameters
    ----------
    cells : CellSet
        The clustered cells.
    labels : Series
        The cluster of each cell.
    path : str or Path
        The PNG file to write.
    per_cluster : int, default 10
        Cells shown per cluster.
    random_state : int, default 0
        Seed of the choice of cells.

    Returns
    -------
    Path
        ``path``, the gallery written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pl.embedding import plot_gallery
    >>> clusters = pd.Series(["0", "1", "1", "0"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_gallery(make_cells(2, size=32), clusters, f"{d}/gallery.png", per_cluster=2).name
    'gallery.png'
    """
    from .core import cell_grid

    return cell_grid(
        cells,
        labels,
        path,
        per_row=per_cluster,
        title=lambda name, n: f"cluster {name} (n={n})",
        random_state=random_state,
        order=_cluster_order,
    )


def plot_ordered_matrices(x: np.ndarray, labels: pd.Series, path, *, max_cells: int = 1500, random_state: int = 0) -> Path:
    """The embedding matrix and the cell-to-cell distance matrix, rows ordered by cluster (Yao Fig. 5d/e).

    Parameters
    ----------
    x : ndarray
        Cells x dimensions (standardised per dimension for the figure).
    labels : Series
        The cluster of each cell (missing: ``-1``).
    path : str or Path
        The PNG file to write.
    max_cells : int, default 1500
        At most this many cells, drawn at random.
    random_state : int, default 0
        Seed of the choice of cells.

    Returns
    -------
    Path
        ``path``, the ordered matrices written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.pl.embedding import plot_ordered_matrices
    >>> x = np.random.default_rng(0).normal(size=(6, 3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_ordered_matrices(x, ["1", "0", "1", "0", "0", "1"], f"{d}/matrices.png").name
    'matrices.png'
    """
    from scipy.spatial.distance import cdist

    labels = pd.Series(labels).astype("string").fillna("-1").reset_index(drop=True)
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.permutation(len(x))[:max_cells])
    names = labels.to_numpy()[idx]
    order = idx[sorted(range(len(idx)), key=lambda i: _cluster_order(names[i]))]
    z = _standardise(np.asarray(x, np.float64))[order]
    fig = _figure((9, 4.2))
    ax = fig.subplots(1, 2)
    ax[0].imshow(np.clip(z, -3, 3), aspect="auto", cmap="RdBu_r", interpolation="nearest")
    ax[0].set_title("embedding (cells ordered by cluster)", fontsize=8)
    ax[0].set_xlabel("feature")
    d = cdist(z, z)
    ax[1].imshow(d, cmap="magma", interpolation="nearest")
    ax[1].set_title("cell-to-cell distance", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
