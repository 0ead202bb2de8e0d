"""Figures of feature rankings and separations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..tl.rank import Separation, group_masks


def plot_separation(
    features: pd.DataFrame,
    groups: pd.Series,
    separation: Separation,
    path: str | os.PathLike,
    *,
    max_points: int = 4000,
    random_state: int = 0,
) -> Path:
    """Scatter of the two groups on the top feature and its weakly correlated partner.

    When no partner exists, the two groups' histograms of the top feature instead.

    Parameters
    ----------
    features : DataFrame
        A row per cell, aligned with ``groups``.
    groups : Series
        The group of each cell.
    separation : Separation
        The ranking (:func:`~stainfree.tl.rank.rank_features`).
    path : str or PathLike
        The PNG file to write.
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
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.pl.features import plot_separation
    >>> from stainfree.tl.rank import rank_features
    >>> rng = np.random.default_rng(0)
    >>> features = pd.DataFrame({"area": np.r_[rng.normal(10, 1, 20), rng.normal(20, 1, 20)], "noise": rng.normal(0, 1, 40)})
    >>> groups = pd.Series(["a"] * 20 + ["b"] * 20)
    >>> sep = rank_features(features, groups, column="line")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_separation(features, groups, sep, f"{d}/scatter.png").name
    'scatter.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = pd.Series(groups).reset_index(drop=True).astype("string")
    _, _, in_a, in_b = group_masks(values, separation.a, separation.b, column=separation.column)
    rng = np.random.default_rng(random_state)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for name, mask, colour in ((separation.a, in_a, "#1f77b4"), (separation.b, in_b, "#d62728")):
        idx = np.flatnonzero(mask)
        if len(idx) > max_points // 2:
            idx = rng.choice(idx, max_points // 2, replace=False)
        x = features[separation.top].to_numpy(np.float64)[idx]
        if separation.partner:
            ax.scatter(
                x,
                features[separation.partner].to_numpy(np.float64)[idx],
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
    plt.close(fig)
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
    >>> from stainfree.tl.rank import rank_features
    >>> features = pd.DataFrame({"area": [1.0, 2, 3, 4, 11, 12, 13, 14], "perimeter": [5.0, 3, 4, 6, 5, 4, 6, 3]})
    >>> sep = rank_features(features, pd.Series(list("aaaabbbb")), column="line")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_ranking(sep, f"{d}/ranking.png", n=5).name
    'ranking.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = separation.ranking.head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.25 * len(top) + 1.2))
    ax.barh(top["feature"], top["jsd"], color="#4c72b0")
    ax.axvline(np.log(2), color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, np.log(2) * 1.02)
    ax.set_xlabel("Jensen-Shannon divergence (nats; ln 2 = no overlap)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{separation.a} vs {separation.b}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
