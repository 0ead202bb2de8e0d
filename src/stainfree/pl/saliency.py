"""Figures of saliency and activation maps over cells."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core import _figure


def plot_saliency(images: np.ndarray, maps: dict[str, np.ndarray], titles: Sequence[str], path: str | os.PathLike) -> Path:
    """One row per cell: the image, then each method's map overlaid on it.

    Images show their first channel (1st-99th percentile stretch); each map is scaled to its
    99.5th percentile.

    Parameters
    ----------
    images : ndarray
        ``N x C x H x W`` cells.
    maps : dict of str to ndarray
        ``N x H x W`` maps of each method, by the method's name (the column title).
    titles : sequence of str
        A title per cell.
    path : str or PathLike
        The PNG file to write.

    Returns
    -------
    Path
        ``path``, the saliency panel written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.pl.saliency import plot_saliency
    >>> images = np.random.default_rng(0).random((2, 1, 8, 8))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_saliency(images, {"gradient": images[:, 0] ** 2}, ["cell 1", "cell 2"], f"{d}/saliency.png").name
    'saliency.png'
    """
    n = len(images)
    cols = 1 + len(maps)
    fig = _figure((1.9 * cols, 1.9 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        shown = _display(images[i])
        axes[i, 0].imshow(shown, cmap="gray")
        axes[i, 0].set_title(titles[i], fontsize=6)
        for j, (name, m) in enumerate(maps.items(), 1):
            axes[i, j].imshow(shown, cmap="gray")
            v = m[i] / max(float(np.percentile(m[i], 99.5)), 1e-12)
            axes[i, j].imshow(np.clip(v, 0, 1), cmap="inferno", alpha=0.55)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_activations(layers: list[tuple[str, np.ndarray]], path: str | os.PathLike, *, per_layer: int = 8) -> Path:
    """The most varied activation maps of each convolutional layer, a row per layer.

    Parameters
    ----------
    layers : list of (str, ndarray)
        A name and ``maps x H x W`` activations per layer.
    path : str or PathLike
        The PNG file to write.
    per_layer : int, default 8
        Maps shown per layer: those of largest standard deviation.

    Returns
    -------
    Path
        ``path``, the activation maps written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.pl.saliency import plot_activations
    >>> layers = [("conv1", np.random.default_rng(0).random((4, 8, 8))), ("conv2", np.ones((2, 4, 4)))]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_activations(layers, f"{d}/activations.png", per_layer=3).name
    'activations.png'
    """
    fig = _figure((1.3 * per_layer, 1.4 * len(layers)))
    axes = fig.subplots(len(layers), per_layer, squeeze=False)
    for r, (name, act) in enumerate(layers):
        strongest = np.argsort(-act.reshape(len(act), -1).std(axis=1))[:per_layer]
        for c in range(per_layer):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(strongest):
                ax.imshow(act[strongest[c]], cmap="viridis")
        axes[r, 0].set_title(f"{name} ({act.shape[0]} maps, {act.shape[1]}x{act.shape[2]})", fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def _display(image: np.ndarray) -> np.ndarray:
    """The first channel of a ``C x H x W`` cell, stretched to its 1-99 percentiles."""
    img = np.asarray(image, np.float64)[0]
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)
