"""Whole fields of view: reading, classical segmentation, cropping and fluorescence labels.

The path from a microscope field to single cells (DESIGN.md, left branch of the data flow)::

    read_fields  ->  segment  ->  crop_objects / crop_points  ->  fluorescence_labels  ->  CellSet

Every step is a plain function on numpy arrays; :func:`cells_from_fields` chains them over
many files and writes a CellSet with one mask per cell.

The default segmentation (documented in docs/decisions.md) is tuned on nothing but the idea of an
expected object diameter ``d`` (estimated from the image when not given):

1. smooth with a Gaussian (``smoothing`` px);
2. foreground = above a global floor (``threshold_scale`` x Otsu, so dim objects survive) AND
   above a local threshold (the Gaussian-weighted mean over a window of ``local_window`` x d),
   which cuts the darker seams between touching objects that one global threshold merges;
3. closing (disk of ``closing`` px), hole filling, optional removal of objects touching the border;
4. Euclidean distance transform smoothed by a Gaussian, local maxima at least
   ``min_distance`` (0.3 d) apart as markers, watershed;
5. removal of objects outside the area range, with counts of what was dropped.

In brightfield mode cells are not brighter than the background, so step 2 runs on the local
standard deviation of the image (edges and texture; window ``smoothing`` px) with a floor of 1.5 x
Otsu and no local threshold, and the filled objects are eroded by ``shrink`` (2 px) to take
back the halo that the variance window adds around each cell.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .utils import StainfreeError, first_line

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- reading fields
@dataclasses.dataclass
class Field:
    """One field of view: ``C x H x W`` pixels, channel names and where it came from."""

    image: np.ndarray
    channels: list[str]
    name: str
    source: str
    pixel_size: float | None = None

    def channel(self, name: str) -> np.ndarray:
        if name not in self.channels:
            raise StainfreeError(f"{self.source}: no channel {name!r} (channels: {', '.join(self.channels)})")
        return self.image[self.channels.index(name)]


def _tiff_pixel_size(tif) -> float | None:
    """Micrometres per pixel from OME or ImageJ metadata or the resolution tags, else None."""
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m:
            scale = {"nm": 1e-3, "mm": 1e3, "m": 1e6}.get(unit.group(1) if unit else "µm", 1.0)
            return float(m.group(1)) * scale
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num:
        return None
    per_unit = den / num  # units per pixel
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij = tif.imagej_metadata or {}
    if ij.get("unit") in ("micron", "um", "µm", "\\u00B5m"):
        return per_unit
    if unit == 3:  # centimetre
        return per_unit * 1e4
    return None  # inches: almost always a meaningless 72 dpi default


def _ome_channel_names(tif) -> list[str] | None:
    if not (tif.is_ome and tif.ome_metadata):
        return None
    names = re.findall(r'<Channel [^>]*?Name="([^"]*)"', tif.ome_metadata)
    return names or None


def _read_tiff(path: Path, planes: str) -> tuple[list[tuple[str, np.ndarray]], list[str] | None, float | None]:
    """(suffix, C x H x W) pieces of a TIFF, its channel names when stored, and its pixel size."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            names = _ome_channel_names(tif)
            pixel_size = _tiff_pixel_size(tif)
    except Exception as exc:
        raise StainfreeError(f"{path}: unreadable image ({first_line(exc)})") from None
    if "Y" not in axes or "X" not in axes:
        raise StainfreeError(f"{path}: no Y and X axes in the image (axes {axes})")
    # Colour samples are channels; any other axis (Z, T, pages) is a "plane".
    axes = axes.replace("S", "C") if "C" not in axes else axes.replace("S", "Q")
    # Pages of unknown meaning (a plain multi-page TIFF) are channels, as in the importers.
    generic = next((a for a in axes if a in "QI"), None)
    if "C" not in axes and generic and planes == "channels":
        axes = axes.replace(generic, "C", 1)
    if "C" not in axes:
        data, axes = data[None], "C" + axes
    plane_axes = [a for a in axes if a not in "CYX"]
    order = [axes.index(a) for a in plane_axes] + [axes.index("C"), axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    plane_shape = data.shape[: len(plane_axes)]
    data = data.reshape(-1, *data.shape[-3:])
    plane_names = [
        "_".join(f"{a.lower()}{i}" for a, i in zip(plane_axes, idx)) for idx in np.ndindex(*plane_shape)
    ] if plane_axes else [""]
    if data.shape[1] != len(names or []):
        names = None
    if planes == "fields" or len(plane_names) == 1:
        return [(p, d) for p, d in zip(plane_names, data)], names, pixel_size
    base = names or [f"ch{i}" for i in range(data.shape[1])]
    stacked = data.reshape(-1, *data.shape[-2:])
    stacked_names = [f"{c}_{p}" for p in plane_names for c in base]
    return [("", stacked)], stacked_names, pixel_size


def read_fields(
    path: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    grey: bool = False,
    planes: str = "channels",
    pixel_size: float | None = None,
) -> list[Field]:
    """Read one field file (TIFF/OME-TIFF, PNG, JPG) as one or more :class:`Field`.

    Parameters
    ----------
    path : path
        The file.
    channels : sequence of str, optional
        Names for the channels, in file order. Default: the names stored in an OME-TIFF, else
        ``ch0``, ``ch1``, ... (``red``, ``green``, ``blue`` for colour images).
    grey : bool
        Convert a colour image to one grey channel (``grey``).
    planes : {"channels", "fields"}
        What z-slices, time points and extra pages become: extra channels named
        ``<channel>_z0``, ``<channel>_t3`` ... (default), or separate fields named
        ``<stem>_z0`` ....
    pixel_size : float, optional
        Micrometres per pixel; overrides what the file says.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> p = Path(tempfile.mkdtemp()) / "f.tif"
    >>> tifffile.imwrite(p, np.zeros((2, 8, 8), np.uint16))
    >>> [(f.name, f.image.shape, f.channels) for f in read_fields(p, channels=["bf", "gfp"])]
    [('f', (2, 8, 8), ['bf', 'gfp'])]
    """
    from .io import read_image, to_channels_first

    if planes not in ("channels", "fields"):
        raise StainfreeError(f"planes must be 'channels' or 'fields', not {planes!r}")
    path = Path(path)
    if not path.is_file():
        raise StainfreeError(f"{path}: no such file")
    if path.suffix.lower() in (".tif", ".tiff"):
        pieces, stored, file_pixel_size = _read_tiff(path, planes)
        if grey and pieces[0][1].shape[0] == 3:
            pieces = [(p, to_channels_first(np.moveaxis(d, 0, -1), grey=True)) for p, d in pieces]
            stored = ["grey"]
    else:
        img = read_image(path)
        pieces = [("", to_channels_first(img, grey=grey))]
        stored = (["grey"] if grey else ["red", "green", "blue"]) if img.ndim == 3 else None
        file_pixel_size = None
    n_channels = pieces[0][1].shape[0]
    if channels is not None:
        channels = list(channels)
        if len(channels) != n_channels:
            raise StainfreeError(f"{path}: {len(channels)} channel names given for {n_channels} channels")
    else:
        channels = stored if stored and len(stored) == n_channels else [f"ch{i}" for i in range(n_channels)]
    if pieces[0][1].shape[-2] < 2 or pieces[0][1].shape[-1] < 2:
        raise StainfreeError(f"{path}: not a field of view (shape {pieces[0][1].shape})")
    return [
        Field(
            image=np.ascontiguousarray(data),
            channels=list(channels),
            name=f"{path.stem}_{suffix}" if suffix else path.stem,
            source=str(path),
            pixel_size=pixel_size if pixel_size is not None else file_pixel_size,
        )
        for suffix, data in pieces
    ]


# ---------------------------------------------------------------------- segmentation
@dataclasses.dataclass
class SegmentationParams:
    """Every step of the classical pipeline; ``None`` means "derive from the diameter"."""

    mode: str = "auto"  # "fluorescence", "brightfield", or "auto" (guess_mode per field)
    diameter: float | None = None  # expected object diameter in px; estimated when None
    smoothing: float = 1.0  # Gaussian sigma (px) before thresholding; the variance window in brightfield
    threshold_scale: float | None = None  # global floor = this x Otsu; default 0.75 (fluorescence), 1.5 (brightfield)
    local_window: float = 2.0  # local threshold window, in diameters; 0 turns it off
    closing: int = 1  # disk radius (px) of the morphological closing; 0 turns it off
    fill_holes: bool = True
    shrink: int | None = None  # erosion (px) after filling; default 0, or 2 in brightfield (the variance halo)
    clear_border: bool = False
    distance_smoothing: float = 1.0  # Gaussian sigma (px) on the distance transform
    min_distance: float | None = None  # between markers, px; default 0.3 x diameter
    min_area: float | None = None  # px; default the area of a disk of 0.2 x diameter radius
    max_area: float | None = None  # px; default no upper limit

    def validate(self) -> None:
        if self.mode not in ("fluorescence", "brightfield", "auto"):
            raise StainfreeError(f"segmentation mode must be auto, fluorescence or brightfield, not {self.mode!r}")
        for name in ("smoothing", "threshold_scale", "local_window", "closing", "shrink", "distance_smoothing"):
            if (getattr(self, name) or 0) < 0:
                raise StainfreeError(f"{name} must be >= 0")
        if self.diameter is not None and self.diameter <= 2:
            raise StainfreeError(f"diameter must be more than 2 px, got {self.diameter}")
        if self.min_area is not None and self.max_area is not None and self.min_area > self.max_area:
            raise StainfreeError(f"min area {self.min_area} is above max area {self.max_area}")


@dataclasses.dataclass
class SegmentationResult:
    labels: np.ndarray  # H x W int32, 0 = background, objects numbered 1..n
    diameter: float
    threshold: float
    mode: str  # the mode used: fluorescence, brightfield (what auto chose) or cellpose
    dropped_small: int = 0
    dropped_large: int = 0
    dropped_border: int = 0

    @property
    def n_objects(self) -> int:
        return int(self.labels.max())


def enhance_brightfield(image: np.ndarray, *, sigma: float = 2.0) -> np.ndarray:
    """Local standard deviation (Gaussian window ``sigma``): high on cell edges and texture.

    >>> flat = np.full((15, 15), 5.0); flat[7, 7] = 9.0
    >>> v = enhance_brightfield(flat, sigma=1.0)
    >>> bool(v[7, 7] > 0.5), float(v[0, 0]) < 1e-3
    (True, True)
    """
    from scipy import ndimage

    x = np.asarray(image, np.float64)
    mean = ndimage.gaussian_filter(x, sigma)
    var = ndimage.gaussian_filter(x * x, sigma) - mean * mean
    return np.sqrt(np.clip(var, 0, None))


def _estimate_diameter(mask: np.ndarray) -> float | None:
    from skimage import measure

    areas = np.bincount(measure.label(mask).ravel())[1:]
    areas = areas[areas >= 16]
    if len(areas) == 0:
        return None
    return float(2 * np.sqrt(np.median(areas) / np.pi))


def _markers(distance: np.ndarray, components: np.ndarray, min_distance: int) -> np.ndarray:
    """Watershed markers: the maxima of ``distance`` within a square of ``2 min_distance + 1``,
    a plateau counting once, plus the highest point of any object that got no maximum.
    ``components`` must be numbered 1..n without gaps.

    Equivalent in effect to ``skimage.feature.peak_local_max(..., labels=components)`` and about
    ten times faster on large fields (no per-object loop).
    """
    from scipy import ndimage
    from skimage import measure

    size = 2 * min_distance + 1
    peaks = (distance == ndimage.maximum_filter(distance, size=size)) & (components > 0)
    markers = measure.label(peaks, connectivity=2)
    covered = np.zeros(int(components.max()) + 1, bool)
    covered[components[markers > 0]] = True
    missing = np.flatnonzero(~covered[1:]) + 1
    if len(missing):
        boxes = ndimage.find_objects(components)
        start = int(markers.max())
        for k, label_id in enumerate(missing, 1):
            box = boxes[label_id - 1]
            local = np.where(components[box] == label_id, distance[box], -np.inf)
            y, x = np.unravel_index(int(np.argmax(local)), local.shape)
            markers[box[0].start + y, box[1].start + x] = start + k
    return markers


def segment(image: np.ndarray, params: SegmentationParams | None = None, **overrides) -> SegmentationResult:
    """Label the objects of a 2-D field with the classical pipeline (see the module docstring).

    Parameters
    ----------
    image : (H, W) array
        One channel (fluorescence, or brightfield/phase with ``mode="brightfield"``).
    params : SegmentationParams, optional
        The settings; keyword arguments override single fields.

    Returns
    -------
    SegmentationResult
        ``labels`` (int32, 0 = background) plus the diameter and threshold used and how many
        objects each filter dropped.

    Examples
    --------
    >>> img = np.zeros((40, 40)); img[5:15, 5:15] = 100; img[25:35, 22:34] = 80
    >>> r = segment(img, diameter=10)
    >>> r.n_objects, sorted(np.bincount(r.labels.ravel())[1:].tolist())
    (2, [100, 120])
    """
    from scipy import ndimage
    from skimage import filters, measure, morphology, segmentation

    params = dataclasses.replace(params or SegmentationParams(), **overrides)
    params.validate()
    image = np.asarray(image)
    if image.ndim != 2:
        raise StainfreeError(f"segment needs one 2-D channel, got shape {image.shape}")
    if params.mode == "auto":
        params = dataclasses.replace(params, mode=guess_mode(image))
    x = image.astype(np.float32)
    if params.mode == "brightfield":
        x = enhance_brightfield(x, sigma=params.smoothing or 1.0)
    elif params.smoothing:
        x = ndimage.gaussian_filter(x, params.smoothing)
    empty = SegmentationResult(np.zeros(image.shape, np.int32), diameter=params.diameter or 0.0, threshold=float("nan"), mode=params.mode)
    if float(x.max()) == float(x.min()):
        return empty
    otsu = float(filters.threshold_otsu(x))
    brightfield = params.mode == "brightfield"
    scale = params.threshold_scale if params.threshold_scale is not None else (1.5 if brightfield else 0.75)
    threshold = otsu * scale
    diameter = params.diameter or _estimate_diameter(x > otsu)
    if diameter is None:
        return empty
    empty.diameter = diameter
    foreground = x > threshold
    if params.local_window and not brightfield:
        window = int(2 * round(params.local_window * diameter / 2) + 1)
        foreground &= x > filters.threshold_local(x, window, method="gaussian")
    if params.closing:
        foreground = ndimage.binary_closing(foreground, morphology.disk(params.closing), border_value=0)
    if params.fill_holes:
        foreground = ndimage.binary_fill_holes(foreground)
    shrink = params.shrink if params.shrink is not None else (2 if brightfield else 0)
    if shrink:
        foreground = ndimage.binary_erosion(foreground, morphology.disk(shrink))
    min_area = params.min_area if params.min_area is not None else np.pi * (0.2 * diameter) ** 2
    # Specks far below the area range only cost time in the watershed; drop (and count) them first.
    components = measure.label(foreground)
    sizes = np.bincount(components.ravel())
    specks = sizes < min_area / 4
    specks[0] = False
    n_specks = int(specks.sum())
    if n_specks:
        renumber = np.zeros(len(sizes), components.dtype)
        kept = ~specks
        kept[0] = False
        renumber[kept] = np.arange(1, int(kept.sum()) + 1)
        components = renumber[components]
        foreground = components > 0
    empty.dropped_small = n_specks
    if not foreground.any():
        return empty
    distance = ndimage.distance_transform_edt(foreground).astype(np.float32)
    if params.distance_smoothing:
        distance = ndimage.gaussian_filter(distance, params.distance_smoothing)
    min_distance = params.min_distance if params.min_distance is not None else 0.3 * diameter
    markers = _markers(distance, components, max(1, int(round(min_distance))))
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    dropped_border = 0
    if params.clear_border:
        before = np.count_nonzero(np.bincount(labels.ravel())[1:])
        labels = segmentation.clear_border(labels)
        dropped_border = before - np.count_nonzero(np.bincount(labels.ravel())[1:])
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    present = areas > 0
    small = present & (areas < min_area)
    large = present & (areas > params.max_area) if params.max_area is not None else np.zeros_like(present)
    keep = present & ~small & ~large
    relabel = np.zeros(len(areas), np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return SegmentationResult(
        labels=relabel[labels],
        diameter=float(diameter),
        threshold=float(threshold),
        mode=params.mode,
        dropped_small=n_specks + int(small.sum()),
        dropped_large=int(large.sum()),
        dropped_border=dropped_border,
    )


def segment_cellpose(image: np.ndarray, *, diameter: float | None = None, model: str = "cyto3") -> SegmentationResult:
    """Deep segmentation with cellpose, when it is installed (it is an optional extra)."""
    try:
        from cellpose import models as cp_models
    except Exception:
        raise StainfreeError(
            "cellpose is not installed (it needs torchvision, which stainfree does not depend on); "
            "install it with `pip install cellpose` where torchvision is available, or use the classical method"
        ) from None
    net = cp_models.CellposeModel(model_type=model)
    masks = net.eval(np.asarray(image), diameter=diameter)[0]
    return SegmentationResult(np.asarray(masks, np.int32), diameter=float(diameter or 0.0), threshold=float("nan"), mode="cellpose")


def instance_scores(truth: np.ndarray, predicted: np.ndarray, *, iou: float = 0.5) -> dict:
    """Object-level precision, recall and F1 at an IoU threshold, and the mean IoU of matches.

    A predicted object matches a true one when their IoU exceeds ``iou`` (above 0.5 a match is
    necessarily one-to-one).

    >>> t = np.array([[1, 1, 0, 2, 2]]); p = np.array([[3, 3, 0, 0, 4]])
    >>> s = instance_scores(t, p)
    >>> s["true_positives"], s["precision"], s["recall"], s["mean_matched_iou"]
    (1, 0.5, 0.5, 1.0)
    """
    from .seg.scoring import object_overlaps

    if iou < 0.5:
        raise StainfreeError("instance matching needs an IoU threshold of at least 0.5")
    pairs, inter, t_area, p_area, t_ids, p_ids = object_overlaps(truth, predicted)
    ious = inter / (t_area[pairs[0]] + p_area[pairs[1]] - inter) if len(inter) else np.zeros(0)
    matched = ious > iou
    n_true, n_pred = len(t_ids), len(p_ids)
    tp = int(matched.sum())
    return {
        "true_objects": n_true,
        "predicted_objects": n_pred,
        "true_positives": tp,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_true if n_true else 0.0,
        "f1": 2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0,
        "mean_matched_iou": float(ious[matched].mean()) if tp else 0.0,
    }


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


def crop_objects(image: np.ndarray, labels: np.ndarray, *, size: int, pad: bool = False):
    """Square crops of ``size`` px centred on each labelled object, with each object's own mask.

    Parameters
    ----------
    image : (C, H, W) array
    labels : (H, W) int array, 0 = background
    size : int
        Crop side in pixels.
    pad : bool
        Keep objects whose crop leaves the field, padding with each channel's median; by default
        they are skipped (and counted).

    Returns
    -------
    crops : (n, C, size, size) array, same dtype as ``image``
    masks : (n, size, size) bool array, True on the object itself (not its neighbours)
    table : DataFrame with ``label_id``, ``centroid_x``, ``centroid_y``, ``area``
    skipped : int, objects whose crop left the field

    Examples
    --------
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
    crops, kept, skipped = crop_points(image, centres[:, 1], centres[:, 0], size=size, pad=pad)
    around, _, _ = _cut(labels[None], centres[kept, 0], centres[kept, 1], size, pad, fill=np.zeros(1, labels.dtype))
    masks = around[:, 0] == ids[kept][:, None, None]
    table = pd.DataFrame(
        {"label_id": ids[kept].astype(np.int64), "centroid_x": centres[kept, 1], "centroid_y": centres[kept, 0], "area": areas[ids[kept]].astype(np.int64)}
    )
    return crops, masks, table, skipped


def crop_points(image: np.ndarray, xs, ys, *, size: int, pad: bool = False):
    """Square crops of ``size`` px centred on given points (x = column, y = row).

    Returns the crops, the positions (into ``xs``) that were kept, and how many were skipped
    because their crop left the field (none with ``pad``).

    >>> img = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
    >>> crops, kept, skipped = crop_points(img, [5, 0], [5, 0], size=2)
    >>> crops[0, 0].tolist(), kept.tolist(), skipped
    ([[44, 45], [54, 55]], [0], 1)
    """
    fill = None
    if pad:  # each channel's median, as crop_or_pad pads single cells
        fill = np.median(image.reshape(image.shape[0], -1), axis=1)
        fill = (np.rint(fill) if image.dtype.kind in "ui" else fill).astype(image.dtype)
    return _cut(image, np.asarray(ys, float), np.asarray(xs, float), size, pad, fill)


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
    return crops, idx, int((~keep).sum())


# ---------------------------------------------------------------------- labels from fluorescence
def correct_background(image: np.ndarray, *, sigma: float = 200.0) -> np.ndarray:
    """Divide by a strongly blurred copy (Ogawa et al.: Gaussian, sigma 200 px).

    The blur is computed on a block-averaged copy and interpolated back, which is the same to
    within a fraction of a percent for such wide kernels and hundreds of times faster.

    >>> field = np.full((64, 64), 50.0); field[:, 32:] = 100.0  # two halves, one twice as bright
    >>> out = correct_background(field, sigma=4)
    >>> round(float(out[10, 5]), 3), round(float(out[10, 60]), 3)
    (1.0, 1.0)
    """
    from scipy import ndimage

    x = np.asarray(image, np.float64)
    factor = int(max(1, sigma // 8))
    h, w = x.shape
    hb, wb = -(-h // factor), -(-w // factor)
    padded = np.pad(x, ((0, hb * factor - h), (0, wb * factor - w)), mode="edge")
    small = padded.reshape(hb, factor, wb, factor).mean(axis=(1, 3))
    blurred = ndimage.gaussian_filter(small, sigma / factor, mode="reflect")
    if factor > 1:
        blurred = ndimage.zoom(blurred, factor, order=1, grid_mode=True, mode="nearest")[:h, :w]
    return x / np.maximum(blurred, 1e-6 * max(float(blurred.max()), 1e-12))


def disk_intensity(image: np.ndarray, xs, ys, *, radius: float) -> np.ndarray:
    """Total intensity within ``radius`` px of each centre (Ogawa et al.: 30 px).

    >>> img = np.zeros((9, 9)); img[4, 4] = 2.0; img[4, 5] = 1.0
    >>> disk_intensity(img, [4], [4], radius=0.5).tolist(), disk_intensity(img, [4], [4], radius=1).tolist()
    ([2.0], [3.0])
    """
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (yy**2 + xx**2) <= radius**2
    padded = np.pad(np.asarray(image, np.float64), r)
    out = np.empty(len(xs))
    for k, (x, y) in enumerate(zip(np.rint(xs).astype(int), np.rint(ys).astype(int))):
        out[k] = padded[y : y + 2 * r + 1, x : x + 2 * r + 1][disk].sum()
    return out


@dataclasses.dataclass
class MixtureFit:
    """A two-component Gaussian mixture on log intensities and the labels it gives."""

    log_intensity: np.ndarray
    labels: np.ndarray  # object array: a class name, or None for "unused"
    posterior: np.ndarray  # n x 2, columns in the order of ``names`` (dim, bright)
    names: tuple[str, str]
    means: tuple[float, float]
    sds: tuple[float, float]
    weights: tuple[float, float]
    threshold: float  # log intensity where the two posteriors are equal
    separation: float  # Ashman's D
    min_posterior: float

    @property
    def counts(self) -> dict:
        s = pd.Series(self.labels).fillna("unused")
        return {k: int(v) for k, v in s.value_counts().items()}

    def as_dict(self) -> dict:
        """The fit in plain numbers (for JSON): names, log-scale means and sds, weights, the
        threshold in intensity units, Ashman's D and the counts per class."""
        return {
            "names": list(self.names),
            "means_log": list(self.means),
            "sds_log": list(self.sds),
            "weights": list(self.weights),
            "threshold": float(np.exp(self.threshold)),
            "separation": self.separation,
            "counts": self.counts,
        }

    def summary(self) -> str:
        c = self.counts
        return (
            f"fluorescence mixture: {self.names[0]} {c.get(self.names[0], 0)}, {self.names[1]} {c.get(self.names[1], 0)}, "
            f"unused {c.get('unused', 0)} (posterior < {self.min_posterior} for both); threshold "
            f"{np.exp(self.threshold):.4g}, separation (Ashman's D) {self.separation:.2f}"
        )


#: Below this Ashman's D two Gaussians are not two populations (D > 2 is the usual criterion).
MIN_SEPARATION = 2.0


def fit_two_populations(
    intensity: np.ndarray,
    *,
    names: Sequence[str] = ("negative", "positive"),
    min_posterior: float = 0.8,
    seed: int = 0,
    what: str = "fluorescence",
) -> MixtureFit:
    """Label cells dim/bright from a two-component Gaussian mixture on log intensities.

    The first name goes to the dim component, the second to the bright one. Cells whose
    posterior is below ``min_posterior`` for both components get no label (``None``). When the
    two components do not separate (Ashman's D below 2, or one of them empty), a
    :class:`StainfreeError` says so instead of inventing labels.

    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.lognormal(3, 0.3, 200), rng.lognormal(6, 0.3, 100)]
    >>> fit = fit_two_populations(x, names=("HEK", "HT1080"))
    >>> fit.counts["HEK"], fit.counts["HT1080"]
    (200, 100)
    """
    from sklearn.mixture import GaussianMixture

    names = tuple(names)
    if len(names) != 2 or names[0] == names[1]:
        raise StainfreeError(f"two different class names are needed for the mixture, got {list(names)}")
    x = np.asarray(intensity, np.float64)
    if len(x) < 10:
        raise StainfreeError(f"{what}: {len(x)} cells are too few to fit a two-population mixture (at least 10)")
    if (x <= 0).any() or not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, 0.0)
        x = np.maximum(x, max(np.min(x[x > 0]) if (x > 0).any() else 1e-6, 1e-12) / 2)
    logx = np.log(x)
    if np.ptp(logx) == 0:
        raise StainfreeError(f"{what}: every cell has the same intensity; the mixture does not separate, so no labels were made")
    gm = GaussianMixture(2, random_state=seed, n_init=3).fit(logx[:, None])
    order = np.argsort(gm.means_.ravel())
    means = gm.means_.ravel()[order]
    sds = np.sqrt(gm.covariances_.ravel()[order])
    weights = gm.weights_[order]
    post = gm.predict_proba(logx[:, None])[:, order]
    separation = float(np.sqrt(2) * abs(means[1] - means[0]) / np.sqrt(sds[0] ** 2 + sds[1] ** 2))
    if separation < MIN_SEPARATION or weights.min() < 0.01:
        raise StainfreeError(
            f"{what}: the two-population mixture does not separate (Ashman's D {separation:.2f} < {MIN_SEPARATION}, "
            f"component weights {weights[0]:.2f}/{weights[1]:.2f}), so no labels were made"
        )
    grid = np.linspace(means[0], means[1], 2001)
    gp = gm.predict_proba(grid[:, None])[:, order]
    threshold = float(grid[np.argmin(np.abs(gp[:, 0] - gp[:, 1]))])
    labels = np.full(len(x), None, dtype=object)
    labels[post[:, 0] >= min_posterior] = names[0]
    labels[post[:, 1] >= min_posterior] = names[1]
    return MixtureFit(logx, labels, post, names, tuple(map(float, means)), tuple(map(float, sds)), tuple(map(float, weights)), threshold, separation, min_posterior)


def plot_mixture(fit: MixtureFit, path: str | os.PathLike, *, channel: str | None = None) -> None:
    """Histogram of log intensities with the two fitted Gaussians and the threshold (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(fit.log_intensity, bins=max(10, min(80, len(fit.log_intensity) // 5)), density=True, color="0.75", label="cells")
    grid = np.linspace(fit.log_intensity.min(), fit.log_intensity.max(), 400)
    for k, colour in enumerate(("tab:blue", "tab:red")):
        pdf = fit.weights[k] * np.exp(-0.5 * ((grid - fit.means[k]) / fit.sds[k]) ** 2) / (fit.sds[k] * np.sqrt(2 * np.pi))
        ax.plot(grid, pdf, color=colour, label=fit.names[k])
    ax.axvline(fit.threshold, color="k", ls="--", lw=1, label="threshold")
    unused = np.array([lab is None for lab in fit.labels])
    if unused.any():
        lo, hi = fit.log_intensity[unused].min(), fit.log_intensity[unused].max()
        ax.axvspan(lo, hi, color="0.9", zorder=0, label="unused")
    ax.set_xlabel("log total intensity (background corrected)")
    ax.set_ylabel("density")
    ax.set_title(f"{channel + ': ' if channel else ''}two-population fit, Ashman's D {fit.separation:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def balance_per_group(labels: pd.Series, groups: pd.Series, *, seed: int = 0) -> np.ndarray:
    """Positions of a random subsample with equal class counts within each group (Ogawa et al.).

    Cells without a label are dropped. A group where some class is absent keeps nothing, since
    it cannot be balanced.

    >>> keep = balance_per_group(pd.Series(["a", "a", "b", "a", "b"]), pd.Series([1, 1, 1, 2, 2]))
    >>> len(keep), keep[-3:].tolist()
    (4, [2, 3, 4])
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"label": labels.to_numpy(), "group": groups.to_numpy()}).dropna(subset=["label"])
    classes = df["label"].unique()
    keep = []
    for _, g in df.groupby("group", sort=False):
        counts = g["label"].value_counts()
        if len(counts) < len(classes):
            continue
        n = counts.min()
        for c in classes:
            idx = g.index[g["label"] == c].to_numpy()
            keep.extend(rng.choice(idx, n, replace=False) if len(idx) > n else idx)
    return np.sort(np.asarray(keep, dtype=np.int64))


# ---------------------------------------------------------------------- the whole path, many fields
def guess_mode(image: np.ndarray) -> str:
    """``"fluorescence"`` when the background is dark (the median pixel sits in the lowest
    quarter of the 1st-99th percentile range), else ``"brightfield"``.

    >>> dark = np.zeros((20, 20)); dark[5:9, 5:9] = 100
    >>> grey = np.full((20, 20), 120.0); grey[5:9, 5:9] = 60; grey[12:16, 12:16] = 200
    >>> guess_mode(dark), guess_mode(grey)
    ('fluorescence', 'brightfield')
    """
    lo, med, hi = np.percentile(np.asarray(image, np.float64), [1, 50, 99])
    if hi <= lo:
        return "fluorescence"
    return "fluorescence" if (med - lo) / (hi - lo) < 0.25 else "brightfield"


def area_in_pixels(value: str | float | None, pixel_size: float | None, *, what: str = "area") -> float | None:
    """``"30"`` -> 30 px; ``"20um2"`` (square micrometres) -> pixels, given the pixel size.

    >>> area_in_pixels("30", None), area_in_pixels("8um2", 0.5)
    (30.0, 32.0)
    """
    if value is None or value == "":
        return None
    text = str(value).strip().lower().replace("µ", "u")
    m = re.fullmatch(r"([0-9.eE+-]+)\s*(px|um2|um\^2)?", text)
    if not m:
        raise StainfreeError(f"{what} {value!r} is not a number of pixels or of square micrometres (e.g. 30 or 20um2)")
    number = float(m.group(1))
    if m.group(2) in ("um2", "um^2"):
        if not pixel_size:
            raise StainfreeError(f"{what} {value!r} is in square micrometres but the pixel size is unknown; pass --pixel-size")
        return number / pixel_size**2
    return number


def read_points(path: str | os.PathLike | pd.DataFrame, fields: Sequence[Field]) -> dict[int, pd.DataFrame]:
    """Points to crop at, per field (position in ``fields``): columns ``x``, ``y`` (pixels),
    ``field`` (the field's file name, stem or path; needed when there are several fields),
    optional ``label``/``class`` and any metadata columns.
    """
    where = "points" if isinstance(path, pd.DataFrame) else str(path)
    if isinstance(path, pd.DataFrame):
        points = path.copy()
    else:
        try:
            points = pd.read_csv(path)
        except Exception as exc:
            raise StainfreeError(f"{path}: unreadable points file ({first_line(exc)})") from None
    missing = [c for c in ("x", "y") if c not in points]
    if missing:
        raise StainfreeError(f"{where}: missing column {missing[0]!r} (columns: {', '.join(map(str, points.columns))})")
    if "class" in points and "label" not in points:
        points = points.rename(columns={"class": "label"})
    for c in ("x", "y"):
        if not pd.api.types.is_numeric_dtype(points[c]) or points[c].isna().any():
            raise StainfreeError(f"{where}: column {c!r} must hold a number on every row")
    keys: dict[str, int] = {}
    for i, f in enumerate(fields):
        for key in {f.source, Path(f.source).name, Path(f.source).stem, f.name}:
            keys.setdefault(key, i)
    if "field" not in points:
        if len({f.source for f in fields}) > 1:
            raise StainfreeError(f"{where}: several fields were given, so the points need a 'field' column naming each point's file")
        which = np.zeros(len(points), int)
    else:
        names = points["field"].astype(str)
        unknown = sorted(set(names) - set(keys))
        if unknown:
            raise StainfreeError(f"{where}: field {unknown[0]!r} is not one of the fields given ({', '.join(Path(f.source).name for f in fields)})")
        which = names.map(keys).to_numpy()
    out = {}
    for i, f in enumerate(fields):
        rows = points[which == i]
        h, w = f.image.shape[-2:]
        outside = (rows["x"] < 0) | (rows["x"] > w - 1) | (rows["y"] < 0) | (rows["y"] > h - 1)
        if outside.any():
            r = rows[outside].iloc[0]
            raise StainfreeError(
                f"{where}: point (x={r['x']}, y={r['y']}) on row {int(rows.index[outside][0]) + 2} is outside "
                f"{Path(f.source).name} ({w}x{h} px); {int(outside.sum())} point(s) are"
            )
        out[i] = rows.drop(columns=[c for c in ("field",) if c in rows])
    return out


def _check_same_channels(fields: Sequence[Field]) -> None:
    first = fields[0]
    for f in fields[1:]:
        if f.channels != first.channels:
            raise StainfreeError(
                f"fields of different channels in one call: {Path(first.source).name} has {len(first.channels)} "
                f"({', '.join(first.channels)}), {Path(f.source).name} has {len(f.channels)} ({', '.join(f.channels)})"
            )


def _write_label_image(labels: np.ndarray, path: Path, force: bool) -> None:
    import io as _io

    import tifffile

    from .utils import atomic_write_bytes

    if path.exists() and not force:
        raise StainfreeError(f"{path}: already exists; pass --force to replace it")
    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, labels.astype(np.uint16 if labels.max() < 2**16 else np.uint32))
    atomic_write_bytes(path, buffer.getvalue())


@dataclasses.dataclass
class FieldCells:
    """Single cells cut from fields, before they are written: images, masks, one row per cell."""

    images: np.ndarray
    masks: np.ndarray | None
    table: pd.DataFrame
    channels: list[str]
    pixel_size: float | None
    per_field: list[dict]
    segment_channel: str
    label_fit: MixtureFit | None = None
    label_images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = []
        for s in self.per_field:
            dropped = [f"{s[k]} {what}" for k, what in (
                ("dropped_small", "below the minimum area"),
                ("dropped_large", "above the maximum area"),
                ("dropped_border", "touching the border"),
                ("skipped_edge", "whose crop leaves the field"),
            ) if s.get(k)]
            found = f"{s['objects']} objects" if "objects" in s else f"{s['points']} points"
            lines.append(f"{s['field']}: {found}, {s['cells']} cells kept" + (f"; dropped {', '.join(dropped)}" if dropped else ""))
        if self.label_fit is not None:
            lines.append(self.label_fit.summary())
        return lines


def cells_from_fields(
    fields: Sequence[Field],
    *,
    size: int = 64,
    pad: bool = False,
    segment_channel: str | None = None,
    params: SegmentationParams | None = None,
    method: str = "auto",
    segmenter=None,
    points: str | os.PathLike | pd.DataFrame | None = None,
    label_channel: str | None = None,
    label_names: Sequence[str] = ("negative", "positive"),
    label_radius: float | None = None,
    background_sigma: float = 200.0,
    min_posterior: float = 0.8,
    keep_label_channel: bool = False,
    keep_labels: bool = False,
    seed: int = 0,
) -> FieldCells:
    """Segment (or take given points), crop and optionally label the cells of several fields.

    The fields must have the same channels. Objects are found on ``segment_channel`` (default:
    the first channel that is not the label channel) by ``method``: ``"auto"`` segments
    transmitted-light fields with the learnt ``segmenter`` (default: the shipped phase-contrast
    model) and fluorescence fields with the classical pipeline and ``params``
    (see :func:`stainfree.seg.methods.segment_field`). With ``label_channel``,
    each cell's background-corrected total intensity within ``label_radius`` px (default: half
    the segmentation diameter, or 30 px with points, as Ogawa et al.) feeds a two-population
    mixture fitted over all fields; the label channel is left out of the crops unless
    ``keep_label_channel``, so no classifier sees the stain by accident.
    """
    if not fields:
        raise StainfreeError("no fields given")
    if size < 4:
        raise StainfreeError(f"crop size must be at least 4 px, got {size}")
    _check_same_channels(fields)
    channels = list(fields[0].channels)
    if label_channel is not None and label_channel not in channels:
        raise StainfreeError(f"label channel {label_channel!r} is not in the fields (channels: {', '.join(channels)})")
    crop_channels = [c for c in channels if keep_label_channel or c != label_channel]
    if not crop_channels:
        raise StainfreeError(f"the only channel is the label channel {label_channel!r}; nothing label-free is left to crop")
    if segment_channel is None:
        segment_channel = crop_channels[0]
    elif segment_channel not in channels:
        raise StainfreeError(f"segmentation channel {segment_channel!r} is not in the fields (channels: {', '.join(channels)})")
    from .seg.density import density_columns, density_levels
    from .seg.methods import METHODS, load_segmenter, segment_field

    if method not in METHODS:
        raise StainfreeError(f"segmentation method must be one of {', '.join(METHODS)}, not {method!r}")
    if method in ("auto", "learnt") and points is None:
        segmenter = load_segmenter(segmenter)
    params = params or SegmentationParams(mode="auto")
    point_sets = read_points(points, fields) if points is not None else None
    crop_index = [channels.index(c) for c in crop_channels]
    from .utils import progress

    images, masks, tables, per_field, intensities, labels_out = [], [], [], [], [], {}
    for i, f in enumerate(progress(fields, desc="fields", unit="fields", log=logger)):
        stats: dict = {"field": f.name, "source": f.source}
        if point_sets is not None:
            rows = point_sets[i].reset_index(drop=True)
            crops, kept, skipped = crop_points(f.image[crop_index], rows["x"], rows["y"], size=size, pad=pad)
            table = rows.iloc[kept].reset_index(drop=True).rename(columns={"x": "centroid_x", "y": "centroid_y"})
            table.insert(0, "cell_id", [f"{f.name}:p{k}" for k in kept])
            field_masks = None
            stats.update(points=len(rows), skipped_edge=skipped)
            radius = label_radius or 30.0
        else:
            result = segment_field(f, segment_channel=segment_channel, method=method, params=params, segmenter=segmenter)
            stats["mode"] = result.mode
            crops, field_masks, table, skipped = crop_objects(f.image[crop_index], result.labels, size=size, pad=pad)
            table.insert(0, "cell_id", [f"{f.name}:{k}" for k in table["label_id"]])
            stats.update(objects=result.n_objects, diameter=round(result.diameter, 2), dropped_small=result.dropped_small,
                         dropped_large=result.dropped_large, dropped_border=result.dropped_border, skipped_edge=skipped)
            density, units = density_columns(result.labels, table["centroid_y"].to_numpy(), table["centroid_x"].to_numpy(),
                                             pixel_size=f.pixel_size, diameter=result.diameter)
            table = pd.concat([table, density], axis=1)
            stats.update(field_density=float(density["field_density"].iloc[0]) if len(density) else None, **units)
            if keep_labels:
                labels_out[f.name] = result.labels
            radius = label_radius or max(result.diameter / 2, 1.0)
            if result.n_objects == 0:
                logger.warning("%s: no objects found", f.source)
        table.insert(1, "source", f.source)
        table.insert(2, "field", f.name)
        if label_channel is not None:
            corrected = correct_background(f.channel(label_channel), sigma=background_sigma)
            intensities.append(disk_intensity(corrected, table["centroid_x"], table["centroid_y"], radius=radius))
        stats["cells"] = len(table)
        per_field.append(stats)
        images.append(crops)
        masks.append(field_masks)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    if len(table) == 0:
        detail = "; ".join(f"{s['field']}: {s.get('objects', s.get('points'))} found" for s in per_field)
        raise StainfreeError(f"no cells in any field ({detail}); check the segmentation mode, diameter and area range")
    if "field_density" in table and table["field"].nunique() > 1:
        table["density_level"] = density_levels(table["field_density"], table["field"])
    fit = None
    if label_channel is not None:
        intensity = np.concatenate(intensities)
        fit = fit_two_populations(intensity, names=label_names, min_posterior=min_posterior, seed=seed, what=f"label channel {label_channel}")
        table["label_intensity"] = intensity
        table["label_posterior"] = fit.posterior.max(axis=1)
        table["label"] = fit.labels
    all_masks = None if any(m is None for m in masks) else np.concatenate(masks)
    return FieldCells(np.concatenate(images), all_masks, table, crop_channels, fields[0].pixel_size, per_field, segment_channel, fit, labels_out)


def read_field_files(paths: Sequence[str | os.PathLike], **read_options) -> list[Field]:
    """Every field of every file (:func:`read_fields` options); field names must differ."""
    fields = [f for p in paths for f in read_fields(p, **read_options)]
    if not fields:
        raise StainfreeError("no fields given")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise StainfreeError(f"two fields are both named {dup!r}; rename one of the files")
    return fields


def _read_with_params(paths, params, min_area, max_area, **read_options) -> tuple[list[Field], SegmentationParams]:
    """Every field of every file (names must differ), and the parameters with the area range in
    pixels (given in pixels or square micrometres)."""
    fields = read_field_files(paths, **read_options)
    params = params or SegmentationParams(mode="auto")
    for name, value in (("min_area", min_area), ("max_area", max_area)):
        if value is not None:
            params = dataclasses.replace(params, **{name: area_in_pixels(value, fields[0].pixel_size, what=name.replace("_", " "))})
    return fields, params


def segment_to_cellset(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    grey: bool = False,
    planes: str = "channels",
    pixel_size: float | None = None,
    min_area: str | float | None = None,
    max_area: str | float | None = None,
    save_labels: str | os.PathLike | None = None,
    balance: bool = False,
    force: bool = False,
    params: SegmentationParams | None = None,
    **options,
):
    """``stainfree segment``: fields on disk -> a ``.cells`` folder with a mask per cell.

    ``min_area``/``max_area`` accept pixels or square micrometres (``"20um2"``). With
    ``save_labels``, each field's label image is written as ``<dir>/<field>_labels.tif``. With
    ``balance``, classes are subsampled to equal counts within each field. The mixture
    histogram (``label_fit.png``) and the per-field counts (``segmentation.json``) are written
    inside the output. Returns the path and the :class:`FieldCells` summary.
    """
    import json

    from .cellset import CellSet, provenance_entry

    out = Path(out)
    if save_labels is not None and options.get("points") is not None:
        raise StainfreeError("--save-labels needs segmentation; it cannot be used with --points")
    fields, params = _read_with_params(paths, params, min_area, max_area, channels=channels, grey=grey, planes=planes, pixel_size=pixel_size)
    result = cells_from_fields(fields, params=params, keep_labels=save_labels is not None, **options)
    keep = np.arange(len(result.table))
    if balance:
        if result.table["label"].isna().all():
            raise StainfreeError("--balance needs labels (from --label-channel or a points file's label column)")
        keep = balance_per_group(result.table["label"], result.table["field"], seed=options.get("seed", 0))
        logger.info("balanced per field: %d of %d cells kept", len(keep), len(result.table))
    details = {k: v for k, v in options.items() if k != "points" or isinstance(v, (str, os.PathLike))}
    record = provenance_entry(
        "fields.segment_to_cellset",
        fields=[str(p) for p in paths],
        params=dataclasses.asdict(params),
        options={k: str(v) if isinstance(v, os.PathLike) else v for k, v in details.items()},
        per_field=result.per_field,
        balanced=balance,
    )
    cells = CellSet(
        result.images[keep],
        result.table.iloc[keep].reset_index(drop=True),
        channels=result.channels,
        groups=["field"],
        pixel_size=result.pixel_size,
        provenance=[record],
        masks=None if result.masks is None else result.masks[keep].astype(np.uint8),
    )

    def write_extras(tmp: Path) -> None:
        if save_labels is not None:
            folder = Path(save_labels)
            folder.mkdir(parents=True, exist_ok=True)
            for name, labels in result.label_images.items():
                _write_label_image(labels, folder / f"{name}_labels.tif", force)
        summary = {"per_field": result.per_field, "cells": len(cells), "balanced": balance}
        if result.label_fit is not None:
            plot_mixture(result.label_fit, tmp / "label_fit.png", channel=options.get("label_channel"))
            summary["label_fit"] = result.label_fit.as_dict()
        (tmp / "segmentation.json").write_text(json.dumps(summary, indent=2, default=str))

    cells.save(out, force=force, extra=write_extras)
    return out, result, cells



# ---------------------------------------------------------------------- mixed populations
PREDICT_MARKER = "fields.json"


def labelled_scores(table: pd.DataFrame, classes: Sequence[str], positive: str | None = None) -> dict:
    """:func:`stainfree.evaluate.classification_metrics` of the cells with a ``label`` (each
    class's recall, i.e. sensitivity, and specificity among them); ``sensitivity`` and
    ``specificity`` at the top level refer to ``positive``.

    >>> t = pd.DataFrame({"label": ["a", "a", "b", "b"], "predicted": ["a", "b", "b", "b"]})
    >>> s = labelled_scores(t, ["a", "b"], positive="b")
    >>> s["accuracy"], s["sensitivity"], s["specificity"]
    (0.75, 1.0, 0.5)
    """
    from .evaluate import classification_metrics

    t = table.dropna(subset=["label"])
    m = classification_metrics(t["label"], t["predicted"], classes=classes)
    out = {"cells": m["n"], **{k: m[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa", "per_class", "confusion_matrix")}}
    if positive is not None:
        out["positive_class"] = positive
        out["sensitivity"] = m["per_class"][positive]["recall"]
        out["specificity"] = m["per_class"][positive]["specificity"]
    return out


def plot_overlay(image: np.ndarray, labels: np.ndarray, classes_by_id: dict, classes: Sequence[str], path, *, title: str = "") -> None:
    """A field (1st-99.5th percentile stretch) with each object's outline coloured by its class;
    objects without a class (not classified) in white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from skimage.segmentation import find_boundaries

    lo, hi = np.percentile(image, [1, 99.5])
    grey = np.clip((image.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    palette = plt.get_cmap("tab10")
    colours = {c: np.array(palette(i % 10)[:3]) for i, c in enumerate(classes)}
    lut = np.ones((int(labels.max()) + 1, 3))
    for label_id, cls in classes_by_id.items():
        if cls in colours:
            lut[int(label_id)] = colours[cls]
    edges = find_boundaries(labels, mode="inner")
    rgb[edges] = lut[labels[edges]]
    h, w = labels.shape
    fig = plt.figure(figsize=(min(12, 6 * w / max(h, w) + 0.5), min(12, 6 * h / max(h, w) + 0.8)))
    ax = fig.add_axes([0, 0, 1, 0.93])
    ax.imshow(rgb, interpolation="nearest")
    ax.axis("off")
    handles = [Patch(color=colours[c], label=c) for c in classes] + [Patch(facecolor="white", edgecolor="k", label="not classified")]
    ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=max(100, min(200, int(max(h, w) / 6))))
    plt.close(fig)


def predict_fields(
    model: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    grey: bool = False,
    planes: str = "channels",
    pixel_size: float | None = None,
    params: SegmentationParams | None = None,
    min_area: str | float | None = None,
    max_area: str | float | None = None,
    label_channel: str | None = None,
    label_names: Sequence[str] | None = None,
    tta: bool = True,
    prior: str = "balanced",
    force: bool = False,
    **options,
) -> tuple[Path, dict]:
    """Segment, crop and classify every cell of mixed-population fields (Yao et al., Fig. 4).

    Writes ``out/`` with ``cells.parquet`` (one row per cell: field, centroid, area, predicted
    class and probabilities, and the fluorescence label when ``label_channel`` is given),
    ``composition.csv`` (cells and fractions of each predicted class per field),
    ``overlays/<field>.png`` and ``fields.json`` (settings, per-field counts and, with a label
    channel, overall and per-field accuracy, sensitivity and specificity). Cells are cut at the
    size the model was trained on. With a label channel, ``label_names`` (dim, bright) must be
    the model's class names; they default to the model's classes in order.
    """
    import json

    from .cellset import CellSet
    from .train import Classifier, predict_cells
    from .utils import atomic_output_dir

    out = Path(out)
    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    clf = Classifier.load(model)
    if label_channel is not None:
        label_names = list(label_names) if label_names else list(clf.classes)
        if len(label_names) != 2:
            raise StainfreeError(f"a fluorescence label gives two classes, but the model has {len(clf.classes)} ({', '.join(clf.classes)}); pass --label-names")
        unknown = [n for n in label_names if n not in clf.classes]
        if unknown:
            raise StainfreeError(f"label name {unknown[0]!r} is not one of the model's classes ({', '.join(clf.classes)})")
    fields, params = _read_with_params(paths, params, min_area, max_area, channels=channels, grey=grey, planes=planes, pixel_size=pixel_size)
    missing = [c for c in clf.channels if c not in fields[0].channels]
    if missing:
        raise StainfreeError(
            f"the model was trained on channels {', '.join(clf.channels)}, but {Path(fields[0].source).name} has "
            f"{', '.join(fields[0].channels)} (name the channels with --channels)"
        )
    size = int((clf.cell_size or clf.input_size)[0])
    result = cells_from_fields(
        fields, size=size, params=params, label_channel=label_channel, label_names=label_names or ("negative", "positive"),
        keep_labels=options.get("points") is None, **options,
    )
    cells = CellSet(result.images, result.table, channels=result.channels, groups=["field"])
    predictions = predict_cells(clf, cells, tta=tta, prior=prior)
    table = result.table.copy()
    if "label" in table and table["label"].isna().all():
        table = table.drop(columns=["label"])
    table["predicted"] = predictions["predicted"].to_numpy()
    for c in clf.classes:
        table[f"prob_{c}"] = predictions[f"prob_{c}"].to_numpy()
    counts = pd.crosstab(table["field"], table["predicted"]).reindex(columns=clf.classes, fill_value=0)
    counts = counts.reindex([f.name for f in fields], fill_value=0)
    composition = counts.add_prefix("cells_")
    fractions = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).add_prefix("fraction_")
    composition = pd.concat([composition, fractions], axis=1).reset_index().rename(columns={"index": "field"})
    summary: dict = {
        "model": str(model),
        "classes": list(clf.classes),
        "crop_size": size,
        "segmentation": dataclasses.asdict(params),
        "fields": result.per_field,
        "cells": int(len(table)),
        "predicted": {c: int(counts[c].sum()) for c in clf.classes},
    }
    if "label" in table and table["label"].notna().any():
        positive = label_names[1] if label_channel is not None else None
        summary["against_labels"] = labelled_scores(table, clf.classes, positive)
        summary["against_labels"]["per_field"] = {
            name: labelled_scores(group, clf.classes, positive) for name, group in table.groupby("field", sort=False)
        }
        if result.label_fit is not None:
            summary["label_fit"] = result.label_fit.as_dict()
    with atomic_output_dir(out, force=force, marker=PREDICT_MARKER) as tmp:
        table.to_parquet(tmp / "cells.parquet", index=False)
        composition.to_csv(tmp / "composition.csv", index=False)
        if result.label_images:
            (tmp / "overlays").mkdir()
            by_field = {name: dict(zip(g["label_id"], g["predicted"])) for name, g in table.groupby("field", sort=False)}
            for f in fields:
                plot_overlay(f.channel(result.segment_channel), result.label_images[f.name], by_field.get(f.name, {}), clf.classes, tmp / "overlays" / f"{f.name}.png", title=f.name)
        if result.label_fit is not None:
            plot_mixture(result.label_fit, tmp / "label_fit.png", channel=label_channel)
        (tmp / PREDICT_MARKER).write_text(json.dumps(summary, indent=2, default=str))
        from .report import write_report

        write_report(tmp, title=f"stainfree predict: {out.name}")
    return out, summary
