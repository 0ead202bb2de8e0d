"""Figures of feature rankings and separations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..tl.rank import Separation, group_masks
from .core import _figure


def plot_separation(
    adata,
    path: str | os.PathLike,
    *,
    key: str = "rank_features",
    max_points: int = 4000,
    random_state: int = 0,
) -> Path:
    """Scatter of the two groups on the top feature and its weakly correlated partner.

    When no partner exists, the two groups' histograms of the top feature instead.

    Parameters
    ----------
    adata : AnnData
        The features, ranked by :func:`~stainfree.tl.rank.rank_features` (the groups are its
        ``groupby`` column of ``obs``).
    path : str or PathLike
        The PNG file to write.
    key : str, default "rank_features"
        Where the ranking is in ``adata.uns``.
    max_points : int, default 4000
        At most half this many cells of each group, drawn at random.
    random_state : int, default 0
        Seed of the choice of cells.

    Returns
    -------
    Path
        ``path``, the scatter written.

    Examples
    --------
    >>> import anndata
    >>> import numpy as np
    >>> import pandas as pd
    >>> import tempfile
    >>> from stainfree.pl.features import plot_separation
    >>> from stainfree.tl.rank import rank_features
    >>> rng = np.random.default_rng(0)
    >>> x = np.c_[np.r_[rng.normal(10, 1, 20), rng.normal(20, 1, 20)], rng.normal(0, 1, 40)]
    >>> adata = anndata.AnnData(x, obs=pd.DataFrame({"line": ["a"] * 20 + ["b"] * 20}, index=[str(i) for i in range(40)]))
    >>> adata.var_names = ["area", "noise"]
    >>> rank_features(adata, "line")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_separation(adata, f"{d}/scatter.png").name
    'scatter.png'
    """
    separation = Separation.from_uns(adata, key)
    values = adata.obs[separation.column].reset_index(drop=True).astype("string")
    _, _, in_a, in_b = group_masks(values, separation.a, separation.b, column=separation.column)
    columns = {str(name): j for j, name in enumerate(adata.var_names)}
    x_all = np.asarray(adata.X, np.float64)
    rng = np.random.default_rng(random_state)
    fig = _figure((5.2, 4.4))
    ax = fig.subplots()
    for name, mask, colour in ((separation.a, in_a, "#1f77b4"), (separation.b, in_b, "#d62728")):
        idx = np.flatnonzero(mask)
        if len(idx) > max_points // 2:
            idx = rng.choice(idx, max_points // 2, replace=False)
        x = x_all[idx, columns[separation.top]]
        if separation.partner:
            ax.scatter(
                x,
                x_all[idx, columns[separation.partner]],
                s=6,
                alpha=0.5,
                color=colour,
                label=f"{name} (n={mask.sum()})",
                edgecolors="none",
            )
        else:
            ax.hist(x[np.isfinite(x)], bins=32, alpha=0.5, color=colour, label=f"{name} (n={mask.sum()})", density=True)
    jsd = dict(zip(separation.ranking["feature"], separation.ranking["jsd"]))
    ax.set_xlabel(f"{separation.top}\n(JSD {jsd[separation.top]:.3f})", fontsize=8)
    if separation.partner:
        rho = separation.ranking.set_index("feature").loc[separation.partner, "spearman_with_top"]
        ax.set_ylabel(f"{separation.partner}\n(JSD {jsd[separation.partner]:.3f}, Spearman {rho:.2f})", fontsize=8)
    else:
        ax.set_ylabel("density")
    ax.set_title(f"{separation.column}: {separation.a} vs {separation.b}", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_ranking(separation: Separation, path: str | os.PathLike, *, n: int = 20) -> Path:
    """Horizontal bars of the ``n`` highest Jensen-Shannon divergences (ln 2 marked: no overlap).

    Parameters
    ----------
    separation : Separation
        The ranking (:func:`~stainfree.tl.rank.rank_features`).
    path : str or PathLike
        The PNG file to write.
    n : int, default 20
        Number of features shown.

    Returns
    -------
    Path
        ``path``, the ranking bars written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.pl.features import plot_ranking
    >>> from stainfree.pp import features_to_anndata
    >>> from stainfree.tl.rank import Separation, rank_features
    >>> table = pd.DataFrame({"cell_id": list("abcdefgh"), "area": [1.0, 2, 3, 4, 11, 12, 13, 14], "perimeter": [5.0, 3, 4, 6, 5, 4, 6, 3]})
    >>> adata = features_to_anndata(table.assign(line=list("aaaabbbb")))
    >>> rank_features(adata, "line")
    >>> sep = Separation.from_uns(adata)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_ranking(sep, f"{d}/ranking.png", n=5).name
    'ranking.png'
    """
    top = separation.ranking.head(n).iloc[::-1]
    fig = _figure((6.5, 0.25 * len(top) + 1.2))
    ax = fig.subplots()
    ax.barh(top["feature"], top["jsd"], color="#4c72b0")
    ax.axvline(np.log(2), color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, np.log(2) * 1.02)
    ax.set_xlabel("Jensen-Shannon divergence (nats; ln 2 = no overlap)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{separation.a} vs {separation.b}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
