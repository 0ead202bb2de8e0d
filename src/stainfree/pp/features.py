"""Handcrafted per-cell measurements, named the CellProfiler way.

One row per cell: shape (``AreaShape_*``: area, perimeter, form factor, eccentricity,
solidity, extent, axis lengths, Feret diameters, Hu and central moments, Zernike moments),
skeleton (``ObjectSkeleton_*``: branch ends, branch points, length), and per channel
intensity (``Intensity_*_<Channel>``) and Haralick texture
(``Texture_<Feature>_<Channel>_<scale>_<direction>``, e.g. ``Texture_SumVariance_Ch3_5_00``).

Shape and intensity come from cp-measure (the CellProfiler team's re-implementation), called
once per batch on a mosaic of the batch's cells so that its per-image work is shared. Texture
(:mod:`.texture`) is vectorised over cells, with mahotas' formulas (which CellProfiler uses): the
grey levels are set once for the whole set from each channel's 0.5-99.5 percentiles, as
CellProfiler scales a whole image, so texture carries the cell's contrast too.

Unstained cells are not brighter than their background, so the default foreground mask looks for
pixels that *differ* from the background: per channel, the deviation from the crop border's
median in units of the border's spread, smoothed, thresholded by Otsu, cleaned, and the object
nearest the crop centre kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..core.cellset import CellSet
from ..utils import StainfreeError
from .texture import GRAY_LEVELS, TEXTURE_SCALES, texture_features

logger = logging.getLogger(__name__)


def foreground_mask(cell: np.ndarray, *, min_deviation: float = 2.5, smooth: float = 1.0) -> np.ndarray:
    """A boolean mask of the cell in a crop, label-free: pixels brighter or darker than the background.

    Per channel, each pixel's deviation from the crop border's median in units of the border's
    spread (MAD), the channels' maximum, smoothed, thresholded by Otsu (at least
    ``min_deviation``), closed and filled; of several objects, the one nearest the centre.

    Parameters
    ----------
    cell : ndarray
        A ``C x H x W`` crop.
    min_deviation : float, default 2.5
        The least deviation (in border spreads) a cell pixel shows; a crop with none is empty.
    smooth : float, default 1.0
        Sigma (pixels) of the Gaussian smoothing of the deviation; 0 for none.

    Returns
    -------
    ndarray of bool
        The ``H x W`` mask.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pp.features import foreground_mask
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


# position in the mosaic, not shape; normalised moments below order 2 are undefined
SHAPE_DROP_PREFIXES = (
    "Center_",
    "BoundingBoxMinimum_",
    "BoundingBoxMaximum_",
    "SpatialMoment_",
    "NormalizedMoment_0_0",
    "NormalizedMoment_0_1",
    "NormalizedMoment_1_0",
)


def skeleton_features(labels: np.ndarray, *, n_objects: int) -> dict[str, np.ndarray]:
    """Branch ends, branch points and length (pixels) of each labelled object's skeleton.

    A branch point is a cluster of touching skeleton pixels with three or more neighbours each.

    Parameters
    ----------
    labels : ndarray of int
        A label image, objects ``1..n_objects`` and background 0.
    n_objects : int
        Number of objects.

    Returns
    -------
    dict of str to ndarray
        ``ObjectSkeleton_NumberBranchEnds``, ``ObjectSkeleton_NumberBranchPoints`` and
        ``ObjectSkeleton_TotalObjectSkeletonLength``, one float per object.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pp.features import skeleton_features
    >>> lab = np.zeros((7, 9), int); lab[3, 1:8] = 1; lab[1:6, 4] = 1
    >>> {k: v.tolist() for k, v in skeleton_features(lab, n_objects=1).items()}
    {'ObjectSkeleton_NumberBranchEnds': [4.0], 'ObjectSkeleton_NumberBranchPoints': [1.0], 'ObjectSkeleton_TotalObjectSkeletonLength': [11.0]}
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    skeleton = skeletonize(labels > 0)
    neighbours = ndimage.convolve(skeleton.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    index = np.arange(1, n_objects + 1)
    on = np.where(skeleton, labels, 0)
    ends = ndimage.sum(skeleton & (neighbours == 1), on, index)
    # a junction is a cluster of touching pixels with three or more neighbours each
    junctions, n_junctions = ndimage.label(skeleton & (neighbours >= 3), structure=np.ones((3, 3)))
    owner = ndimage.maximum(on, junctions, np.arange(1, n_junctions + 1)) if n_junctions else np.zeros(0)
    points = np.bincount(np.asarray(owner, np.int64), minlength=n_objects + 1)[1:]
    length = ndimage.sum(skeleton, on, index)
    return {
        "ObjectSkeleton_NumberBranchEnds": np.asarray(ends, np.float64),
        "ObjectSkeleton_NumberBranchPoints": np.asarray(points, np.float64),
        "ObjectSkeleton_TotalObjectSkeletonLength": np.asarray(length, np.float64),
    }


def _mosaic(stack: np.ndarray, columns: int, fill=0) -> np.ndarray:
    """Tile ``N x H x W`` into one image, one pixel of ``fill`` between tiles."""
    n, h, w = stack.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + 1), columns * (w + 1)), fill, dtype=stack.dtype)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = stack[i]
    return out


def _shape_and_intensity(images: np.ndarray, masks: np.ndarray, channels: Sequence[str]) -> dict[str, np.ndarray]:
    """cp-measure's shape, Zernike, Feret and intensity features of cells with non-empty masks."""
    from cp_measure.bulk import get_core_measurements

    core = get_core_measurements(sanitize=False)
    n = len(masks)
    columns = int(np.ceil(np.sqrt(n)))
    labels = _mosaic(masks.astype(np.int32) * np.arange(1, n + 1, dtype=np.int32)[:, None, None], columns)
    out: dict[str, np.ndarray] = {}
    for group in ("sizeshape", "zernike", "feret"):
        for name, values in core[group](labels, None).items():
            if not name.startswith(SHAPE_DROP_PREFIXES):
                out[f"AreaShape_{name}"] = np.asarray(values, np.float64)
    out.update(skeleton_features(labels, n_objects=n))
    for c, ch in enumerate(channels):
        pixels = _mosaic(images[:, c].astype(np.float64), columns)
        for name, values in core["intensity"](labels, pixels).items():
            if name.startswith("Intensity_"):
                out[f"{name}_{ch}"] = np.asarray(values, np.float64)
    return out


def intensity_range(cells: CellSet, *, sample: int = 1000, percentiles=(0.5, 99.5)) -> dict[str, tuple[float, float]]:
    """Each channel's intensity percentiles over cells spread through a set.

    Parameters
    ----------
    cells : CellSet
        The cells.
    sample : int, default 1000
        At most this many cells, evenly spaced through the set, are read.
    percentiles : (float, float), default (0.5, 99.5)
        The low and high percentile.

    Returns
    -------
    dict of str to (float, float)
        The low and high value of each channel (high = low + 1 for a flat channel).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.pp.features import intensity_range
    >>> images = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2)
    >>> intensity_range(CellSet(images, channels=["bf"]), percentiles=(0, 100))
    {'bf': (0.0, 7.0)}
    """
    index = np.unique(np.linspace(0, len(cells) - 1, min(sample, len(cells))).round().astype(int))
    images = cells.read(index).astype(np.float64)
    out = {}
    for c, ch in enumerate(cells.channels):
        lo, hi = np.percentile(images[:, c], percentiles)
        out[ch] = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return out


def _measure_block(block, *, cells, masks, mask_index, ranges, texture_scales, gray_levels) -> tuple[pd.DataFrame, list, int]:
    """The features of cells ``block`` = (start, stop), the ids of those with an empty mask, and
    how many are flat: the task :func:`measure` runs per batch, here or on a Dask worker."""
    from ..ml.classifier import check_finite

    start, stop = block
    images = cells.read(slice(start, stop)).astype(np.float64)
    ids = cells.cell_ids[start:stop]
    check_finite(images, pd.Series(ids))
    batch_masks = masks[start:stop] if masks is not None else np.stack([foreground_mask(c[mask_index]) for c in images])
    batch_masks = np.asarray(batch_masks, bool)
    present = batch_masks.any(axis=(1, 2))
    values: dict[str, np.ndarray] = {}
    flat = 0
    if present.any():
        kept_images, kept_masks = images[present], batch_masks[present]
        values.update(_shape_and_intensity(kept_images, kept_masks, cells.channels))
        for c, ch in enumerate(cells.channels):
            values.update(
                texture_features(
                    kept_images[:, c], kept_masks, value_range=ranges[ch], scales=texture_scales, gray_levels=gray_levels, name=ch
                )
            )
        if texture_scales:
            flat = int(np.isnan(values[f"Texture_Correlation_{cells.channels[0]}_{texture_scales[0]}_00"]).sum())
    columns = {}
    for name, column in values.items():
        columns[name] = np.full(len(images), np.nan)
        columns[name][present] = np.where(np.isfinite(column), column, np.nan)  # e.g. a 1-pixel object's form factor
    return pd.DataFrame(columns, index=np.arange(len(images))), [str(i) for i in ids[~present]], flat


def measure(
    cells: CellSet,
    *,
    channels: Sequence[str] | str | None = None,
    masks: np.ndarray | None = None,
    mask_channel: str | None = None,
    texture_scales: Sequence[int] = TEXTURE_SCALES,
    gray_levels: int = GRAY_LEVELS,
    batch_size: int = 1024,
    workers: int = 0,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """CellProfiler-style shape, intensity, texture and skeleton measurements, one row per cell.

    ``masks`` are used when given, else the set's own masks (cells cut from segmented fields);
    otherwise :func:`foreground_mask` finds each cell in ``mask_channel``. A cell whose mask is
    empty gets NaN everywhere, and one warning says how many there were.
    :func:`stainfree.pp.measure_cells` gives the same as AnnData.

    Parameters
    ----------
    cells : CellSet
        The cells.
    channels : sequence of str, optional
        Channels to measure (default all).
    masks : (N, H, W) array, optional
        Each cell's own object.
    mask_channel : str, optional
        The channel outlines are found in (default the first, conventionally the brightfield; a
        darkfield or fluorescence channel's speckles make poor outlines).
    texture_scales : sequence of int, default (3, 5)
        Haralick co-occurrence distances, px.
    gray_levels : int, default 32
        Grey levels of the texture measurements.
    batch_size : int, default 1024
        Cells read and measured at a time (one task each).
    workers : int, default 0
        Measure the batches on a local Dask cluster of this many processes (0: here, in turn);
        the table is the serial one.
    scheduler : str, optional
        The address of a running Dask scheduler to send the batches to instead.

    Returns
    -------
    DataFrame
        ``cell_id`` and one column per feature, in cell order.

    Raises
    ------
    StainfreeError
        No cells, a mask channel outside the measured channels, or masks of another shape.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pp import measure
    >>> table = measure(make_cells(2, size=32, random_state=0))
    >>> table.shape[0], "Texture_SumVariance_bf_5_00" in table
    (4, True)
    """
    from ..parallel import map_cell_blocks

    if channels is not None:
        cells = cells.select_channels(channels)
    if len(cells) == 0:
        raise StainfreeError("there are no cells to measure")
    if masks is None and cells.has_masks:
        masks = cells.read_masks()
    mask_channel = mask_channel or cells.channels[0]
    if mask_channel not in cells.channels:
        raise StainfreeError(f"mask channel {mask_channel!r} is not among the measured channels ({', '.join(cells.channels)})")
    mask_index = [list(cells.channels).index(mask_channel)]
    if masks is not None and (len(masks) != len(cells) or masks.shape[1:] != cells.shape[2:]):
        raise StainfreeError(f"{len(masks)} masks of {masks.shape[1:]} do not match {len(cells)} cells of {cells.shape[2:]}")
    ranges = intensity_range(cells)
    task = functools.partial(
        _measure_block,
        cells=cells,
        masks=masks,
        mask_index=mask_index,
        ranges=ranges,
        texture_scales=texture_scales,
        gray_levels=gray_levels,
    )
    done = map_cell_blocks(task, len(cells), batch_size, workers=workers, scheduler=scheduler, desc="features", log=logger)
    parts = [part for part, _, _ in done]
    empty_ids = [cell for _, empty, _ in done for cell in empty]
    flat_cells = sum(flat for _, _, flat in done)
    table = pd.concat(parts, ignore_index=True)
    if empty_ids:
        logger.warning("%d cell(s) have an empty mask; their features are NaN (first: %s)", len(empty_ids), ", ".join(empty_ids[:3]))
    if flat_cells:
        logger.warning("%d cell(s) have one grey level inside the mask: texture Correlation and InfoMeas1 are NaN", flat_cells)
    table.insert(0, "cell_id", cells.cell_ids)
    return table
