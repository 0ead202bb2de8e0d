"""How crowded each cell is: the field's density and each cell's neighbours.

Yao et al. (2019) found that culture density shapes morphology, so density travels with every
cell as a column that can serve as a condition (``cluster --by``, ``evaluate --group``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Neighbour radius (micrometres) when the pixel size is known.
DEFAULT_RADIUS_UM = 100.0
#: Neighbour radius (in cell diameters) when it is not.
DEFAULT_RADIUS_DIAMETERS = 5.0


def object_centroids(labels: np.ndarray) -> np.ndarray:
    """The (row, col) centroid of every object of a label image.

    Parameters
    ----------
    labels : (H, W) array of int
        Instance labels, 0 = background.

    Returns
    -------
    (n, 2) ndarray of float
        Row ``k - 1`` holds the (row, col) centroid of object ``k``, for ``k`` = 1..``labels.max()``;
        NaN for numbers that do not occur.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.density import object_centroids
    >>> lab = np.zeros((4, 5), int); lab[0, 0:2] = 1; lab[3, 4] = 3
    >>> object_centroids(lab).tolist()
    [[0.0, 0.5], [nan, nan], [3.0, 4.0]]
    """
    labels = np.asarray(labels)
    n = int(labels.max())
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:].astype(float)
    rows, cols = np.indices(labels.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)[1:] / counts
        c = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)[1:] / counts
    return np.stack([r, c], axis=1)


def density_columns(
    labels: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    pixel_size: float | None = None,
    radius: float | None = None,
    diameter: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Field density and neighbour counts for cells of a labelled field.

    Every object of ``labels`` counts (also those whose crop was skipped). With a pixel size the
    field density is in cells per mm^2 and the radius defaults to 100 um; without one it is in
    cells per megapixel and the radius defaults to 5 cell diameters.

    Parameters
    ----------
    labels : (H, W) array of int
        Instance labels of the whole field, 0 = background.
    rows, cols : (n,) array of float
        Positions of the cells to describe: rows first, then columns.
    pixel_size : float, optional
        Micrometres per pixel.
    radius : float, optional
        Neighbour radius in pixels; overrides the defaults above.
    diameter : float, optional
        Cell diameter in pixels, for the default radius without a pixel size (20 px when ``None``).

    Returns
    -------
    columns : pandas.DataFrame
        One row per cell: ``field_density`` (the same for all, rounded to 3 decimals) and
        ``local_neighbours`` (other objects whose centroid lies within the radius; a cell's own
        object is one whose centroid lies within 1 px of it).
    units : dict
        ``field_density_unit`` and ``neighbour_radius_px``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.density import density_columns
    >>> lab = np.zeros((100, 100), int); lab[10, 10] = 1; lab[10, 20] = 2; lab[90, 90] = 3
    >>> cols, info = density_columns(lab, np.array([10.0, 90.0]), np.array([10.0, 90.0]), radius=15)
    >>> cols["field_density"].tolist(), cols["local_neighbours"].tolist(), info["field_density_unit"]
    ([300.0, 300.0], [1, 0], 'cells per megapixel')
    """
    from scipy.spatial import cKDTree

    centroids = object_centroids(labels)
    centroids = centroids[~np.isnan(centroids[:, 0])]
    area_px = float(np.asarray(labels).size)
    if pixel_size:
        density = len(centroids) / (area_px * pixel_size**2 / 1e6)
        unit = "cells per mm^2"
        radius_px = radius if radius is not None else DEFAULT_RADIUS_UM / pixel_size
    else:
        density = len(centroids) / (area_px / 1e6)
        unit = "cells per megapixel"
        radius_px = radius if radius is not None else DEFAULT_RADIUS_DIAMETERS * (diameter or 20.0)
    points = np.stack([np.asarray(rows, float), np.asarray(cols, float)], axis=1)
    if len(centroids) and len(points):
        within = cKDTree(centroids).query_ball_point(points, r=radius_px, return_length=True)
        # each cell's own object lies within the radius; cells at given points may have none
        own = cKDTree(centroids).query(points, k=1)[0] < 1.0
        neighbours = np.asarray(within) - own.astype(int)
    else:
        neighbours = np.zeros(len(points), int)
    frame = pd.DataFrame({"field_density": np.full(len(points), round(density, 3)), "local_neighbours": neighbours.astype(int)})
    return frame, {"field_density_unit": unit, "neighbour_radius_px": round(float(radius_px), 2)}


def density_levels(field_density: pd.Series, fields: pd.Series) -> pd.Series:
    """Call each cell's field ``low`` or ``high`` density against the median over fields.

    The result serves as a condition for ``cluster --by`` and ``evaluate --group``.

    Parameters
    ----------
    field_density : pandas.Series
        Each cell's field density (the first value of each field is used).
    fields : pandas.Series
        Each cell's field name, aligned with ``field_density``.

    Returns
    -------
    pandas.Series
        ``"high"`` where the field's density is above the median over fields, else ``"low"``
        (so all ``"low"`` when every field is equally dense); indexed like ``fields``.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.seg.density import density_levels
    >>> density_levels(pd.Series([1.0, 1.0, 5.0, 9.0, 20.0]), pd.Series(["a", "a", "b", "c", "d"])).tolist()
    ['low', 'low', 'low', 'high', 'high']
    """
    per_field = field_density.groupby(fields).first()
    median = float(per_field.median())
    level = np.where(per_field > median, "high", "low")
    return fields.map(dict(zip(per_field.index, level.tolist())))
