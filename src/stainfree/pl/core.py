"""Figures every stage uses: a figure outside pyplot (the user's backend, figures and rcParams untouched), heatmaps and cell grids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _figure(figsize: tuple[float, float]):
    """A :class:`matplotlib.figure.Figure` of its own, outside pyplot.

    No backend is chosen or switched, no figure joins pyplot's list (nothing to close: it is
    freed with its last reference) and no rcParams change; ``fig.savefig`` draws a PNG with the
    Agg canvas whatever the user's backend.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def heatmap(
    values, rows: Sequence[str], cols: Sequence[str], path: str | Path, *, title: str = "", xlabel: str = "", ylabel: str = ""
) -> Path:
    """A matrix of values in [0, 1] with each value written in its cell (missing values blank).

    Parameters
    ----------
    values : sequence of sequences of float or None
        The matrix, a row per entry of ``rows``; ``None`` is left blank. Values are written in
        the cells of matrices of up to 400 entries.
    rows, cols : sequence of str
        Row and column names.
    path : str or Path
        The PNG file to write.
    title, xlabel, ylabel : str, default ""
        Title and axis labels.

    Returns
    -------
    Path
        ``path``, the heatmap written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.core import heatmap
    >>> with tempfile.TemporaryDirectory() as d:
    ...     heatmap([[0.9, None], [0.4, 0.7]], ["f1", "f2"], ["f1", "f2"], f"{d}/cross.png", title="accuracy").name
    'cross.png'
    """
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    size = 2.5 + 0.45 * max(len(rows), len(cols))
    fig = _figure((size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(arr, cmap="viridis", vmin=0, vmax=1)
    if arr.size <= 400:
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if not np.isnan(arr[i, j]):
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if arr[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def cell_grid(cells, labels, path, *, per_row: int = 8, max_rows: int = 30, title=str, random_state: int = 0, order=None) -> Path:
    """A grid of random cells, one row per value of ``labels``: example cells per class, or a cluster gallery.

    Each cell is shown by its first channel, stretched to its 1st-99th percentiles.

    Parameters
    ----------
    cells : CellSet
        The cells.
    labels : sequence
        A value per cell (class, cluster); missing values form a row ``(unlabelled)``.
    path : str or Path
        The PNG file to write.
    per_row : int, default 8
        Cells per row, drawn at random.
    max_rows : int, default 30
        The first rows only, in sorted order.
    title : callable
        ``title(value, n_cells)``, the row's title. Pass one: the default, ``str``, takes a
        single argument and fails.
    random_state : int, default 0
        Seed of the choice of cells.
    order : callable, optional
        Sort key of the values.

    Returns
    -------
    Path
        ``path``, the grid of cells written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pl.core import cell_grid
    >>> cs = make_cells(3, size=32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cell_grid(cs, cs.table["flask"], f"{d}/grid.png", per_row=2, title=lambda v, n: f"{v} ({n})").name
    'grid.png'
    """
    import pandas as pd

    labels = pd.Series(labels, dtype="string").fillna("(unlabelled)").reset_index(drop=True)
    rng = np.random.default_rng(random_state)
    names = sorted(labels.unique(), key=order)[:max_rows]
    fig = _figure((1.05 * per_row, 1.1 * len(names)))
    axes = fig.subplots(len(names), per_row, squeeze=False)
    for r, name in enumerate(names):
        pos = np.flatnonzero((labels == name).to_numpy())
        pick = np.sort(rng.choice(pos, min(per_row, len(pos)), replace=False))
        images = cells.read(pick)
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                img = np.asarray(images[c], np.float64)[0]
                lo, hi = np.percentile(img, [1, 99])
                ax.imshow(np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray")
        axes[r, 0].set_title(title(name, len(pos)), fontsize=6, loc="left")
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return Path(path) if isinstance(path, (str, os.PathLike)) else path  # a file object (the report's Data section)
