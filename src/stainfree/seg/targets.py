"""What a segmentation network learns to predict, computed from instance labels.

Two representations, each three per-pixel maps. ``flows`` (as cellpose): the foreground and,
inside each object, the unit vector (row, col) along which heat released at the object's centre
increases, so that following the flow from any pixel of an object ends at its centre, whatever
the object's shape. ``distance``, all in [0, 1]:

- ``foreground``: 1 inside any object;
- ``distance``: each object's distance to its own boundary divided by that object's largest
  distance (1 on its medial ridge, near 0 at its edge, 0 outside), so thin and round cells,
  large and small, look alike to the network and to the watershed;
- ``boundary``: 1 on each object's outermost pixels, including where two objects touch.
"""

from __future__ import annotations

import numpy as np

#: The names of the three maps of each representation, in the network's output order.
OUTPUTS = {"distance": ("foreground", "distance", "boundary"), "flows": ("foreground", "flow_y", "flow_x")}


def normalised_distance(labels: np.ndarray) -> np.ndarray:
    """Each object's Euclidean distance transform divided by its own maximum.

    An object touching the field's edge is treated as bounded there too.

    Parameters
    ----------
    labels : (H, W) int array
        Instance labels, 0 = background.

    Returns
    -------
    (H, W) float32 array
        In [0, 1]: 1 on each object's medial ridge, 0 outside objects.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.targets import normalised_distance
    >>> labels = np.zeros((5, 7), int); labels[1:4, 1:4] = 1; labels[1:4, 4:6] = 2
    >>> normalised_distance(labels)[2]
    array([0. , 0.5, 1. , 0.5, 1. , 1. , 0. ], dtype=float32)
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        inside = labels[padded] == index
        # Pad by one so an object touching the field's edge is bounded there too.
        distance = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        peak = distance.max()
        if peak > 0:
            out[padded][inside] = (distance[inside] / peak).astype(np.float32)
    return out


def instance_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object with a 4-neighbour outside it (background or another object).

    Parameters
    ----------
    labels : (H, W) int array
        Instance labels; 0 is background, and the field's edge counts as outside.

    Returns
    -------
    (H, W) bool array
        True on each object's outermost pixels, including where two objects touch.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.targets import instance_boundaries
    >>> labels = np.zeros((4, 6), int); labels[:, :3] = 1; labels[:, 3:] = 2
    >>> instance_boundaries(labels).astype(int)[1]
    array([1, 0, 1, 1, 0, 1])
    """
    labels = np.asarray(labels)
    padded = np.pad(labels, 1, mode="constant")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] != centre
    return edge & (labels > 0)


def object_centre(inside: np.ndarray) -> tuple[int, int]:
    """The pixel of a mask closest to the median of its coordinates (always inside the mask).

    Unlike the centroid, this lies inside curved or branched objects.

    Parameters
    ----------
    inside : (H, W) bool array
        The object's mask; it must hold at least one pixel.

    Returns
    -------
    (row, col) : tuple of int

    Examples
    --------
    An L-shaped mask, whose centroid lies outside it:

    >>> import numpy as np
    >>> from stainfree.seg.targets import object_centre
    >>> m = np.zeros((5, 5), bool); m[1:4, 1] = True; m[3, 1:4] = True
    >>> object_centre(m)
    (3, 1)
    """
    rows, cols = np.nonzero(inside)
    k = int(np.argmin((rows - np.median(rows)) ** 2 + (cols - np.median(cols)) ** 2))
    return int(rows[k]), int(cols[k])


def heat_flows(labels: np.ndarray) -> np.ndarray:
    """Unit flow vectors of every object, pointing towards its centre (as cellpose).

    Heat is released at each object's centre (:func:`object_centre`) and diffused within the
    object only, ``2 (h + w)`` rounds of 3 x 3 averaging for an ``h x w`` bounding box; the
    flow is the normalised gradient of the log of the heat. Following it from any pixel of an
    object ends at its centre, whatever the object's shape.

    Parameters
    ----------
    labels : (H, W) int array
        Instance labels, 0 = background.

    Returns
    -------
    (2, H, W) float32 array
        Row and column components; zero outside objects and at each centre.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.targets import heat_flows
    >>> lab = np.zeros((7, 7), int); lab[1:6, 1:6] = 1
    >>> f = heat_flows(lab)
    >>> (f[:, 1, 3].round(2) + 0).tolist(), (f[:, 3, 5].round(2) + 0).tolist(), f[:, 0, 0].tolist()
    ([1.0, 0.0], [0.0, -1.0], [0.0, 0.0])
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    out = np.zeros((2, *labels.shape), np.float32)
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        inside = np.pad(labels[box] == index, 1)
        cy, cx = object_centre(inside)
        heat = np.zeros(inside.shape, np.float64)
        for _ in range(2 * sum(inside.shape)):
            heat[cy, cx] += 1.0
            heat = ndimage.uniform_filter(heat, 3, mode="constant") * inside
        heat = np.log1p(heat)
        dy = np.zeros_like(heat)
        dx = np.zeros_like(heat)
        dy[1:-1] = heat[2:] - heat[:-2]
        dx[:, 1:-1] = heat[:, 2:] - heat[:, :-2]
        norm = np.sqrt(dy**2 + dx**2)
        norm[norm < 1e-9] = np.inf  # the centre itself: no direction (rounding noise only)
        keep = inside[1:-1, 1:-1]
        for c, d in enumerate((dy, dx)):
            region = out[c][box]
            region[keep] = (d / norm)[1:-1, 1:-1][keep]
    return out


def training_targets(labels: np.ndarray, *, representation: str = "distance") -> np.ndarray:
    """The three maps a segmentation network learns to predict from ``labels``.

    Parameters
    ----------
    labels : (H, W) int array
        Instance labels, 0 = background.
    representation : {"distance", "flows"}, default "distance"
        ``flows``: foreground and :func:`heat_flows`; anything else gives ``distance``:
        foreground, :func:`normalised_distance` and :func:`instance_boundaries`.

    Returns
    -------
    (3, H, W) float32 array
        The maps named by ``OUTPUTS[representation]``, in that order.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.targets import training_targets
    >>> labels = np.zeros((5, 5), int); labels[1:4, 1:4] = 7
    >>> t = training_targets(labels)
    >>> t.shape, float(t[0].sum()), float(t[1, 2, 2]), int(t[2].sum())
    ((3, 5, 5), 9.0, 1.0, 8)
    """
    labels = np.asarray(labels)
    if representation == "flows":
        return np.concatenate([(labels > 0).astype(np.float32)[None], heat_flows(labels)])
    return np.stack(
        [
            (labels > 0).astype(np.float32),
            normalised_distance(labels),
            instance_boundaries(labels).astype(np.float32),
        ]
    )
