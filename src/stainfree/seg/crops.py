"""Cutting single-cell crops out of fields, around segmented objects or given points."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..utils import StainfreeError


class ObjectCrops(NamedTuple):
    """What :func:`crop_objects` returns; it unpacks as ``crops, masks, table, skipped``.

    Attributes
    ----------
    crops : (n, C, size, size) ndarray
        One crop per kept object, in the field's dtype.
    masks : (n, size, size) ndarray of bool
        True on the object itself (not on its neighbours).
    table : pandas.DataFrame
        One row per crop: ``label_id``, ``centroid_x`` (column), ``centroid_y`` (row), ``area`` (px).
    skipped : int
        Objects whose crop left the field (0 with ``pad=True``).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.crops import crop_objects
    >>> labels = np.zeros((6, 6), int); labels[2:4, 2:4] = 1
    >>> out = crop_objects(np.ones((2, 6, 6)), labels, size=3)
    >>> out.crops.shape, out.masks.shape, out.table.columns.tolist(), out.skipped
    ((1, 2, 3, 3), (1, 3, 3), ['label_id', 'centroid_x', 'centroid_y', 'area'], 0)
    """

    crops: np.ndarray
    masks: np.ndarray
    table: pd.DataFrame
    skipped: int


class PointCrops(NamedTuple):
    """What :func:`crop_points` returns; it unpacks as ``crops, kept, skipped``.

    Attributes
    ----------
    crops : (n, C, size, size) ndarray
        One crop per kept point, in the field's dtype.
    kept : ndarray of int
        Positions (into the given points) of the crops.
    skipped : int
        Points whose crop left the field (0 with ``pad=True``).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.crops import crop_points
    >>> out = crop_points(np.zeros((1, 4, 4)), [2], [2], size=2)
    >>> out.crops.shape, out.kept.tolist(), out.skipped
    ((1, 1, 2, 2), [0], 0)
    """

    crops: np.ndarray
    kept: np.ndarray
    skipped: int


# ---------------------------------------------------------------------- cropping
def _crop_windows(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int, pad: bool):
    """Top-left corners of ``size`` windows centred on (y, x), and which windows are kept."""
    h, w = image.shape[-2:]
    top = np.rint(ys).astype(int) - size // 2
    left = np.rint(xs).astype(int) - size // 2
    inside = (top >= 0) & (left >= 0) & (top + size <= h) & (left + size <= w)
    return top, left, (np.ones_like(inside) if pad else inside)


def _padded(image: np.ndarray, size: int, fill: np.ndarray) -> np.ndarray:
    """The field (C x H x W) padded by ``size`` on every side with each channel's ``fill``."""
    out = np.empty((image.shape[0], image.shape[1] + 2 * size, image.shape[2] + 2 * size), image.dtype)
    out[:] = fill[:, None, None]
    out[:, size:-size, size:-size] = image
    return out


def crop_objects(image: np.ndarray, labels: np.ndarray, *, size: int, pad: bool = False) -> ObjectCrops:
    """Square crops of ``size`` px centred on each labelled object, with each object's own mask.

    Each crop is centred on the object's centroid, rounded to the nearest pixel.

    Parameters
    ----------
    image : (C, H, W) array
        The field, channels first.
    labels : (H, W) array of int
        Instance labels, 0 = background.
    size : int
        Crop side in pixels.
    pad : bool, default False
        Keep objects whose crop leaves the field, padding with each channel's median; by default
        they are skipped (and counted).

    Returns
    -------
    ObjectCrops
        ``crops``, ``masks``, ``table`` (``label_id``, ``centroid_x`` = column, ``centroid_y`` =
        row, ``area``) and ``skipped``, in order of label.

    Raises
    ------
    StainfreeError
        When ``labels`` is not the size of the field.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.crops import crop_objects
    >>> img = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
    >>> lab = np.zeros((10, 10), int); lab[4:6, 4:6] = 1; lab[0, 0] = 2
    >>> crops, masks, table, skipped = crop_objects(img, lab, size=4)
    >>> crops.shape, int(masks.sum()), table["area"].tolist(), skipped
    ((1, 1, 4, 4), 4, [4], 1)
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.shape != image.shape[-2:]:
        raise StainfreeError(f"labels of shape {labels.shape} for a field of {image.shape[-2:]}")
    areas = np.bincount(labels.ravel())
    ids = np.flatnonzero(areas[1:]) + 1
    centres = np.asarray(ndimage.center_of_mass(np.ones(labels.shape), labels, ids)).reshape(-1, 2)
    crops, kept, skipped = crop_points(image, centres[:, 0], centres[:, 1], size=size, pad=pad)
    around, _, _ = _cut(labels[None], centres[kept, 0], centres[kept, 1], size, pad, fill=np.zeros(1, labels.dtype))
    masks = around[:, 0] == ids[kept][:, None, None]
    table = pd.DataFrame(
        {
            "label_id": ids[kept].astype(np.int64),
            "centroid_x": centres[kept, 1],
            "centroid_y": centres[kept, 0],
            "area": areas[ids[kept]].astype(np.int64),
        }
    )
    return ObjectCrops(crops, masks, table, skipped)


def crop_points(image: np.ndarray, rows, cols, *, size: int, pad: bool = False):
    """Square crops of ``size`` px centred on given points.

    Parameters
    ----------
    image : (C, H, W) array
        The field, channels first.
    rows, cols : array_like of float
        The centres' rows and columns, rounded to whole pixels.
    size : int
        Crop side in pixels.
    pad : bool, default False
        As in :func:`crop_objects`: pad with each channel's median instead of skipping points
        whose crop leaves the field.

    Returns
    -------
    PointCrops
        ``crops``, ``kept`` (positions into ``rows`` of the crops) and ``skipped``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.crops import crop_points
    >>> img = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
    >>> crops, kept, skipped = crop_points(img, [5, 0], [3, 0], size=2)
    >>> crops[0, 0].tolist(), kept.tolist(), skipped
    ([[42, 43], [52, 53]], [0], 1)
    """
    fill = None
    if pad:  # each channel's median, as crop_or_pad pads single cells
        fill = np.median(image.reshape(image.shape[0], -1), axis=1)
        fill = (np.rint(fill) if image.dtype.kind in "ui" else fill).astype(image.dtype)
    return _cut(image, np.asarray(rows, float), np.asarray(cols, float), size, pad, fill)


def _cut(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int, pad: bool, fill: np.ndarray | None):
    """Windows of ``size`` centred on (y, x): the crops, the positions kept, how many were
    skipped because they leave the field (none with ``pad``, which pads with ``fill``)."""
    top, left, keep = _crop_windows(image, ys, xs, size, pad)
    source = image
    if pad:
        source = _padded(image, size, fill)
        top, left = top + size, left + size
    idx = np.flatnonzero(keep)
    crops = np.empty((len(idx), image.shape[0], size, size), image.dtype)
    for k, i in enumerate(idx):
        crops[k] = source[:, top[i] : top[i] + size, left[i] : left[i] + size]
    return PointCrops(crops, idx, int((~keep).sum()))
