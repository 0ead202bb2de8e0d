"""Handcrafted per-cell measurements, named the CellProfiler way.

A first set (shape, intensity, texture) that feeds the classifier baselines: cell size alone
(``AreaShape_Area``) and a random forest on everything. The explanation issue extends it.

Unstained cells are not brighter than their background, so the default foreground mask looks for
pixels that *differ* from the background: per channel, the deviation from the crop border's
median in units of the border's spread, smoothed, thresholded by Otsu, cleaned, and the object
nearest the crop centre kept.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .cellset import CellSet
from .utils import progress

logger = logging.getLogger(__name__)


def foreground_mask(cell: np.ndarray, *, min_deviation: float = 2.5, smooth: float = 1.0) -> np.ndarray:
    """A boolean mask of the cell in a ``C x H x W`` crop (label-free: brighter or darker).

    >>> cell = np.full((1, 9, 9), 100.0); cell[0, 3:6, 3:6] = 60
    >>> foreground_mask(cell).astype(int)[2:7, 2:7]
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    cell = np.asarray(cell, dtype=np.float64)
    c, h, w = cell.shape
    border = np.concatenate([cell[:, 0, :], cell[:, -1, :], cell[:, 1:-1, 0], cell[:, 1:-1, -1]], axis=1)
    bg = np.median(border, axis=1)
    spread = 1.4826 * np.median(np.abs(border - bg[:, None]), axis=1)
    spread = np.maximum(spread, 1e-6 + 1e-3 * np.abs(bg))
    deviation = np.max(np.abs(cell - bg[:, None, None]) / spread[:, None, None], axis=0)
    if smooth > 0:
        deviation = ndimage.gaussian_filter(deviation, smooth)
    if deviation.max() <= min_deviation:
        return np.zeros((h, w), bool)
    thr = max(threshold_otsu(deviation), min_deviation)
    mask = deviation > thr
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=1)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    if n > 1:
        yy, xx = np.mgrid[0:h, 0:w]
        dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
        nearest = ndimage.minimum(dist, labels, index=np.arange(1, n + 1))
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        # the object closest to the centre, preferring large ones among near ties
        keep = int(np.argmin(np.asarray(nearest) - 1e-3 * np.asarray(sizes))) + 1
        mask = labels == keep
    return mask


SHAPE_PROPS = {
    "Area": "area",
    "Perimeter": "perimeter",
    "Eccentricity": "eccentricity",
    "Solidity": "solidity",
    "Extent": "extent",
    "MajorAxisLength": "axis_major_length",
    "MinorAxisLength": "axis_minor_length",
}
TEXTURE_PROPS = ("contrast", "homogeneity", "energy", "correlation")
TEXTURE_SCALES = (1, 3, 5)


def cell_features(cell: np.ndarray, mask: np.ndarray, channels: Sequence[str]) -> dict:
    """Shape, intensity and Haralick texture measurements of one cell (CellProfiler names)."""
    from skimage.feature import graycomatrix, graycoprops
    from skimage.measure import regionprops

    out: dict[str, float] = {}
    props = regionprops(mask.astype(np.uint8))
    if props:
        p = props[0]
        for name, attr in SHAPE_PROPS.items():
            out[f"AreaShape_{name}"] = float(getattr(p, attr))
        perimeter = out["AreaShape_Perimeter"]
        out["AreaShape_FormFactor"] = float(4 * np.pi * p.area / perimeter**2) if perimeter > 0 else 0.0
    else:
        for name in SHAPE_PROPS:
            out[f"AreaShape_{name}"] = 0.0
        out["AreaShape_FormFactor"] = 0.0
    region = mask if mask.any() else np.ones_like(mask, bool)
    for ch, img in zip(channels, np.asarray(cell, np.float64)):
        values = img[region]
        q = np.percentile(values, [25, 50, 75])
        out[f"Intensity_MeanIntensity_{ch}"] = float(values.mean())
        out[f"Intensity_StdIntensity_{ch}"] = float(values.std())
        out[f"Intensity_IntegratedIntensity_{ch}"] = float(values.sum())
        out[f"Intensity_LowerQuartileIntensity_{ch}"] = float(q[0])
        out[f"Intensity_MedianIntensity_{ch}"] = float(q[1])
        out[f"Intensity_UpperQuartileIntensity_{ch}"] = float(q[2])
        lo, hi = np.percentile(img, [1, 99])
        levels = np.clip(((img - lo) / max(hi - lo, 1e-9) * 15).round(), 0, 15).astype(np.uint8)
        glcm = graycomatrix(levels, distances=list(TEXTURE_SCALES), angles=[0, np.pi / 2], levels=16, symmetric=True, normed=True)
        for prop in TEXTURE_PROPS:
            values = graycoprops(glcm, prop)  # distances x angles
            for i, scale in enumerate(TEXTURE_SCALES):
                out[f"Texture_{prop.capitalize()}_{ch}_{scale}_00"] = float(np.nan_to_num(values[i].mean()))
    return out


def measure(cells: CellSet, *, masks: np.ndarray | None = None, batch_size: int = 512) -> pd.DataFrame:
    """One row of measurements per cell, with its ``cell_id``, in cell order.

    ``masks`` (N x H x W) are used when given, else the set's own masks (cells cut from
    segmented fields); otherwise :func:`foreground_mask` finds each cell.
    """
    if masks is None and cells.has_masks:
        masks = cells.read_masks()
    rows = []
    start = 0
    batches = progress(cells.batches(batch_size), total=(len(cells) + batch_size - 1) // batch_size, desc="features", unit="batches", log=logger)
    for images, _ in batches:
        for i, cell in enumerate(images):
            mask = masks[start + i] if masks is not None else foreground_mask(cell)
            rows.append(cell_features(cell, mask, cells.channels))
        start += len(images)
    table = pd.DataFrame(rows)
    table.insert(0, "cell_id", cells.cell_ids)
    return table
