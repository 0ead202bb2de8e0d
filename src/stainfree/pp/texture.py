"""Haralick texture of cells, vectorised over cells with mahotas' formulas (which CellProfiler
uses): grey-level co-occurrence counts inside each cell's mask in four directions, and the 13
Haralick features of each, named ``Texture_<Feature>_<Channel>_<scale>_<direction>``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HARALICK_NAMES = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
)


# CellProfiler's (and mahotas') four directions: 00 right, 01 down-right, 02 down, 03 down-left
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


TEXTURE_SCALES = (3, 5)


GRAY_LEVELS = 32


def cooccurrence(levels: np.ndarray, *, offset: tuple[int, int], n_levels: int) -> np.ndarray:
    """Symmetric grey-level co-occurrence counts of a stack of quantised images.

    Parameters
    ----------
    levels : ndarray of int
        ``N x H x W`` grey levels, ``1..n_levels`` inside the object and 0 outside; a pair of
        pixels counts when both are inside.
    offset : (int, int)
        The step (rows, columns) from a pixel to its partner; rows must be 0 or positive.
    n_levels : int
        Number of grey levels.

    Returns
    -------
    ndarray of int
        ``N x n_levels x n_levels`` counts (each pair counted both ways).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pp.texture import cooccurrence
    >>> img = np.array([[[1, 1, 2], [0, 2, 2]]])
    >>> cooccurrence(img, offset=(0, 1), n_levels=2)[0]
    array([[2, 1],
           [1, 2]])
    """
    levels = np.asarray(levels)
    n, h, w = levels.shape
    dy, dx = offset
    a = levels[:, : h - dy, max(0, -dx) : w - max(0, dx)]
    b = levels[:, dy:, max(0, dx) : w - max(0, -dx)]
    valid = (a > 0) & (b > 0)
    cell = np.broadcast_to(np.arange(n)[:, None, None], a.shape)
    index = (cell[valid].astype(np.int64) * n_levels + (a[valid] - 1)) * n_levels + (b[valid] - 1)
    counts = np.bincount(index, minlength=n * n_levels * n_levels).reshape(n, n_levels, n_levels)
    return counts + counts.transpose(0, 2, 1)


def _entropy(p: np.ndarray) -> np.ndarray:
    """Base-2 entropy over the last axis, with 0 log 0 = 0."""
    return -np.sum(p * np.log2(np.where(p > 0, p, 1.0)), axis=-1)


def haralick(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick's 13 texture features of a stack of co-occurrence matrices.

    The formulas are mahotas' (which CellProfiler calls), vectorised over cells. Where a
    matrix is empty every feature is NaN; where the object has one grey level only (no
    variation), Correlation and InfoMeas1 are NaN (mahotas gives 1 and 0).

    Parameters
    ----------
    counts : ndarray
        ``N x L x L`` co-occurrence counts (:func:`cooccurrence`).

    Returns
    -------
    dict of str to ndarray
        One length-``N`` array per name of :data:`HARALICK_NAMES`, in that order.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pp.texture import haralick
    >>> f = haralick(np.array([[[2, 1], [1, 2]]]))
    >>> float(f["AngularSecondMoment"][0]), float(f["Contrast"][0])
    (0.2777777777777778, 0.3333333333333333)
    """
    counts = np.asarray(counts, dtype=np.float64)
    n, L, _ = counts.shape
    total = counts.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total[:, None, None]
    k = np.arange(L, dtype=np.float64)
    i, j = np.meshgrid(k, k, indexing="ij")
    flat = p.reshape(n, L * L)
    plus = np.zeros((L * L, 2 * L))
    plus[np.arange(L * L), (i + j).ravel().astype(int)] = 1
    minus = np.zeros((L * L, L))
    minus[np.arange(L * L), np.abs(i - j).ravel().astype(int)] = 1
    p_plus, p_minus = flat @ plus, flat @ minus
    px, py = p.sum(axis=1), p.sum(axis=2)
    ux, uy = px @ k, py @ k
    vx, vy = px @ k**2 - ux**2, py @ k**2 - uy**2
    sxy = np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0))
    flat_var = sxy <= 1e-12
    out: dict[str, np.ndarray] = {}
    out["AngularSecondMoment"] = np.sum(flat**2, axis=1)
    out["Contrast"] = p_minus @ k**2
    with np.errstate(invalid="ignore", divide="ignore"):
        out["Correlation"] = np.where(flat_var, np.nan, (flat @ (i * j).ravel() - ux * uy) / np.where(flat_var, 1, sxy))
    out["Variance"] = vx
    out["InverseDifferenceMoment"] = flat @ (1.0 / (1.0 + (i - j) ** 2)).ravel()
    tk = np.arange(2 * L, dtype=np.float64)
    out["SumAverage"] = p_plus @ tk
    out["SumVariance"] = p_plus @ tk**2 - out["SumAverage"] ** 2
    out["SumEntropy"] = _entropy(p_plus)
    out["Entropy"] = _entropy(flat)
    out["DifferenceVariance"] = p_minus.var(axis=1)
    out["DifferenceEntropy"] = _entropy(p_minus)
    hx, hy = _entropy(px), _entropy(py)
    cross = (px[:, :, None] * py[:, None, :]).reshape(n, L * L)
    hxy1 = -np.sum(flat * np.log2(np.where(cross > 0, cross, 1.0)), axis=1)
    hxy2 = _entropy(cross)
    h_max = np.maximum(hx, hy)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["InfoMeas1"] = np.where(h_max > 0, (out["Entropy"] - hxy1) / np.where(h_max > 0, h_max, 1), np.nan)
    out["InfoMeas2"] = np.sqrt(np.maximum(0.0, 1.0 - np.exp(-2.0 * (hxy2 - out["Entropy"]))))
    empty = total == 0
    for name in out:
        out[name] = np.where(empty, np.nan, out[name])
    return {name: out[name] for name in HARALICK_NAMES}


def texture_features(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    value_range: tuple[float, float],
    scales: Sequence[int] = TEXTURE_SCALES,
    gray_levels: int = GRAY_LEVELS,
    name: str = "ch0",
) -> dict[str, np.ndarray]:
    """Haralick texture of one channel of a stack of cells within their masks.

    Parameters
    ----------
    images : ndarray
        ``N x H x W`` intensities of one channel.
    masks : ndarray of bool
        ``N x H x W`` masks of the cells.
    value_range : (float, float)
        The intensities binned into ``gray_levels`` levels (lower ones clipped to the first,
        higher ones to the last); set once for a whole set, as CellProfiler scales a whole image.
    scales : sequence of int, default (3, 5)
        Pixel distances of the pairs.
    gray_levels : int, default 32
        Number of grey levels.
    name : str, default "ch0"
        The channel's name in the feature names.

    Returns
    -------
    dict of str to ndarray
        One length-``N`` array per feature, named as CellProfiler does:
        ``Texture_<Feature>_<name>_<scale>_<direction 00..03>``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pp.texture import texture_features
    >>> images = np.tile([0.0, 1.0], (1, 8, 4))
    >>> f = texture_features(images, images >= 0, value_range=(0, 1), scales=[1], gray_levels=2, name="bf")
    >>> len(f), float(f["Texture_Contrast_bf_1_00"][0]), float(f["Texture_Contrast_bf_1_02"][0])
    (52, 1.0, 0.0)
    """
    lo, hi = value_range
    scaled = (np.asarray(images, np.float64) - lo) / max(hi - lo, 1e-12)
    levels = np.clip(np.floor(scaled * gray_levels), 0, gray_levels - 1).astype(np.int64) + 1
    levels[~np.asarray(masks, bool)] = 0
    out: dict[str, np.ndarray] = {}
    for scale in scales:
        for d, (dy, dx) in enumerate(DIRECTIONS):
            values = haralick(cooccurrence(levels, offset=(dy * scale, dx * scale), n_levels=gray_levels))
            for feature, column in values.items():
                out[f"Texture_{feature}_{name}_{scale}_{d:02d}"] = column
    return out
