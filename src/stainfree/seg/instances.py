"""From a network's per-pixel outputs to instance labels, deterministically.

Three ways (see docs/decisions.md for the comparison that picked the default):

- ``flows`` (as cellpose): every foreground pixel follows the predicted flow for
  ``flow_iterations`` steps; pixels that end in the same place form one object. The places are
  the local maxima of the histogram of end points holding at least ``min_seed_count`` pixels,
  each widened over its neighbouring end points;
- ``distance``: seeds are the connected parts of the foreground where the predicted normalised
  distance exceeds ``seed_threshold`` (each object's core); a watershed on the negated distance
  grows them over the foreground;
- ``boundary``: seeds are the connected parts of the foreground away from predicted boundaries;
  a watershed on the boundary probability grows them.

Foreground components that received no seed become objects of their own; objects smaller than
``min_area`` pixels are dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..utils import StainfreeError

REPRESENTATIONS = ("flows", "distance", "boundary")


@dataclasses.dataclass(frozen=True)
class InstanceParams:
    """Settings of the post-processing (see the module docstring); stored with each model.

    Parameters
    ----------
    representation : {"flows", "distance", "boundary"}, default "flows"
        What the network's second and third maps hold.
    foreground_threshold : float, default 0.5
        Foreground probability above which a pixel belongs to an object; in (0, 1).
    seed_threshold : float, default 0.5
        ``distance``: normalised distance above which a pixel seeds its object; ``boundary``:
        boundary probability below which it does. In (0, 1); unused by ``flows``.
    min_area : float, default 0.0
        Objects under this many pixels (at the network's scale) are dropped.
    flow_iterations : int, default 200
        ``flows``: unit steps each pixel takes along the flow.
    min_seed_count : int, default 10
        ``flows``: pixels that must end in one place for it to become an object.

    Examples
    --------
    >>> from stainfree.seg.instances import InstanceParams
    >>> InstanceParams(representation="distance", min_area=20).validate()
    >>> InstanceParams(seed_threshold=1.5).validate()
    Traceback (most recent call last):
    ...
    stainfree.utils.StainfreeError: seed threshold must lie between 0 and 1, got 1.5
    """

    representation: str = "flows"
    foreground_threshold: float = 0.5
    seed_threshold: float = 0.5
    min_area: float = 0.0  # pixels at the network's scale
    flow_iterations: int = 200
    min_seed_count: int = 10

    def validate(self) -> None:
        """Raise a :class:`~stainfree.utils.StainfreeError` naming the first setting out of range."""
        if self.representation not in REPRESENTATIONS:
            raise StainfreeError(f"instance representation must be one of {', '.join(REPRESENTATIONS)}, not {self.representation!r}")
        for name in ("foreground_threshold", "seed_threshold"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise StainfreeError(f"{name.replace('_', ' ')} must lie between 0 and 1, got {value}")
        if self.min_area < 0:
            raise StainfreeError(f"min area must be >= 0, got {self.min_area}")


def relabel_by_size(labels: np.ndarray, *, min_area: float = 0.0) -> np.ndarray:
    """Drop small objects and number the rest 1..n, keeping their order.

    Parameters
    ----------
    labels : array of int
        Instance labels, 0 = background.
    min_area : float, default 0.0
        Objects with fewer pixels are dropped.

    Returns
    -------
    ndarray of int32
        The labels renumbered 1..n in the order of their old numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.instances import relabel_by_size
    >>> relabel_by_size(np.array([[5, 5, 0, 9], [5, 0, 2, 2]]), min_area=2)
    array([[2, 2, 0, 0],
           [2, 0, 1, 1]], dtype=int32)
    """
    areas = np.bincount(np.asarray(labels).ravel())
    keep = areas >= max(min_area, 1)
    keep[0] = False
    relabel = np.zeros(len(areas), np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels]


def follow_flows(flows: np.ndarray, mask: np.ndarray, *, iterations: int = 200) -> np.ndarray:
    """Where the pixels of a mask end after following a flow field.

    Each pixel takes ``iterations`` steps along the bilinearly interpolated flow at its current
    position, clamped to the image.

    Parameters
    ----------
    flows : (2, H, W) array of float
        The flow's row component, then its column component, in pixels per step.
    mask : (H, W) array of bool
        The pixels to move.
    iterations : int, default 200
        Number of steps.

    Returns
    -------
    (N, 2) ndarray of float
        The (row, col) end point of each pixel of ``mask``, in the order of ``np.nonzero(mask)``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.instances import follow_flows
    >>> flows = np.zeros((2, 5, 9), np.float32); flows[1] = 1.0   # everything flows right
    >>> mask = np.zeros((5, 9), bool); mask[2, 0] = True
    >>> follow_flows(flows, mask, iterations=3).round(3).tolist()
    [[2.0, 3.0]]
    """
    import torch
    from torch.nn import functional as F

    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    # Work in grid_sample's coordinates: (x, y) in [-1, 1], flows scaled to match.
    to_grid = np.array([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], np.float32)
    field = torch.from_numpy(np.ascontiguousarray(np.stack([flows[1], flows[0]]) * to_grid[:, None, None], np.float32))[None]
    grid = torch.from_numpy(np.stack([cols, rows], axis=1).astype(np.float32) * to_grid - 1.0).view(1, 1, -1, 2)
    with torch.no_grad():
        for _ in range(iterations):
            step = F.grid_sample(field, grid, mode="bilinear", align_corners=True)  # 1 x 2 x 1 x N
            grid += step.permute(0, 2, 3, 1)
            grid.clamp_(-1.0, 1.0)
    points = (grid.view(-1, 2).numpy() + 1.0) / to_grid
    return np.ascontiguousarray(points[:, ::-1])


def instances_from_flows(foreground: np.ndarray, flows: np.ndarray, *, params: InstanceParams | None = None) -> np.ndarray:
    """Instance labels from a foreground probability and flows (the ``flows`` representation).

    Parameters
    ----------
    foreground : (H, W) array of float
        Foreground probability.
    flows : (2, H, W) array of float
        Flow rows and columns, as :func:`follow_flows` takes them.
    params : InstanceParams, optional
        Uses ``foreground_threshold``, ``flow_iterations``, ``min_seed_count`` and ``min_area``;
        default ``InstanceParams()``.

    Returns
    -------
    (H, W) ndarray of int32
        Instance labels, 0 = background.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.instances import InstanceParams, instances_from_flows
    >>> from stainfree.seg.targets import heat_flows
    >>> truth = np.zeros((12, 24), int); truth[1:11, 1:12] = 1; truth[1:11, 12:23] = 2
    >>> labels = instances_from_flows((truth > 0).astype(float), heat_flows(truth), params=InstanceParams(min_seed_count=5))
    >>> bool(np.array_equal(labels, truth))
    True
    """
    from scipy import ndimage

    params = params or InstanceParams(representation="flows")
    mask = np.asarray(foreground) > params.foreground_threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    ends = np.rint(follow_flows(flows, mask, iterations=params.flow_iterations)).astype(np.int64)
    h, w = mask.shape
    counts = np.bincount(ends[:, 0] * w + ends[:, 1], minlength=h * w).reshape(h, w)
    peaks = (counts == ndimage.maximum_filter(counts, size=5)) & (counts >= params.min_seed_count)
    seeds, _ = ndimage.label(peaks, structure=np.ones((3, 3)))
    gathered = counts > 2
    for _ in range(5):  # widen each seed over the neighbouring end points
        grown = ndimage.maximum_filter(seeds, size=3)
        seeds = np.where((seeds == 0) & gathered, grown, seeds)
    labels = np.zeros(mask.shape, np.int64)
    labels[mask] = seeds[ends[:, 0], ends[:, 1]]
    return relabel_by_size(labels, min_area=params.min_area)


def instances_from_maps(maps: np.ndarray, *, params: InstanceParams | None = None) -> np.ndarray:
    """Instance labels from a network's three output maps (after their activations).

    Parameters
    ----------
    maps : (3, H, W) float array
        ``flows``: foreground probability, flow rows, flow columns; ``distance`` and
        ``boundary``: foreground probability, normalised distance, boundary probability.
    params : InstanceParams, optional
        The post-processing; default ``InstanceParams()`` (flows).

    Returns
    -------
    (H, W) ndarray of int32
        Instance labels, 0 = background.

    Raises
    ------
    StainfreeError
        When ``params`` is out of range (:meth:`InstanceParams.validate`).

    Examples
    --------
    Two touching squares, told apart by their distance maps:

    >>> import numpy as np
    >>> from stainfree.seg.instances import InstanceParams, instances_from_maps
    >>> from stainfree.seg.targets import training_targets
    >>> truth = np.zeros((8, 12), int); truth[1:7, 1:6] = 1; truth[1:7, 6:11] = 2
    >>> labels = instances_from_maps(training_targets(truth), params=InstanceParams(representation="distance"))
    >>> bool(np.array_equal(labels, truth))
    True
    """
    from skimage import measure, segmentation

    params = params or InstanceParams()
    params.validate()
    foreground, second, third = maps
    if params.representation == "flows":
        return instances_from_flows(foreground, np.stack([second, third]), params=params)
    distance, boundary = second, third
    mask = np.asarray(foreground) > params.foreground_threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if params.representation == "distance":
        seeds = mask & (np.asarray(distance) > params.seed_threshold)
        landscape = -np.asarray(distance, np.float32)
    else:
        seeds = mask & (np.asarray(boundary) < params.seed_threshold)
        landscape = np.asarray(boundary, np.float32)
    markers = measure.label(seeds)
    labels = segmentation.watershed(landscape, markers, mask=mask)
    orphans = measure.label(mask & (labels == 0))
    if orphans.max():
        labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return relabel_by_size(labels, min_area=params.min_area)
