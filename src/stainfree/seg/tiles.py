"""Large fields segmented block by block: overlapping tiles, each object kept by the one tile whose
core holds its centroid, label ids made unique over the field and label images stitched.

A field larger than :data:`TILE` pixels on a side (a whole-slide scan, a stitched well of an
OME-Zarr plate) is cut into tiles of :data:`TILE` px whose cores tile the field and which reach
``overlap`` px further on every side. Each tile is segmented and cropped alone (here, on a thread
or on a Dask worker, reading only its own window of a lazy image); an object is kept by the tile
whose core holds its centroid, so each object is found once, whole, as long as objects are smaller
than the overlap. The tiles' label ids are then shifted so that they are unique in the field, as
are the cell ids (``<field>:<label>``), and the label image of the field is pasted together.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..io.fields import Field

#: Fields larger than this many pixels on a side are segmented in tiles of this size.
TILE = 4096
#: How far tiles reach beyond their core, px (at least the crop size is used).
OVERLAP = 256


def split_field(field: Field, *, tile: int = TILE, overlap: int = OVERLAP) -> list[Field]:
    """``field`` itself when it fits in one tile, else its overlapping tiles.

    Each tile is a :class:`Field` named ``<field>@<row>,<col>`` (its core's top-left corner) with
    ``origin`` (where its pixels start in the field), ``core`` (its own region, in tile
    coordinates: top, bottom, left, right) and ``parent`` (the field's name). A lazy image stays
    lazy: a tile holds a window of it.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.fields import Field
    >>> from stainfree.seg.tiles import split_field
    >>> tiles = split_field(Field(np.zeros((1, 10, 7)), ["bf"], "f", "f.tif"), tile=5, overlap=2)
    >>> [(t.name, t.origin, t.image.shape[1:], t.core) for t in tiles]  # doctest: +NORMALIZE_WHITESPACE
    [('f@0,0', (0, 0), (7, 7), (0, 5, 0, 5)), ('f@0,5', (0, 3), (7, 4), (0, 5, 2, 4)),
     ('f@5,0', (3, 0), (7, 7), (2, 7, 0, 5)), ('f@5,5', (3, 3), (7, 4), (2, 7, 2, 4))]
    """
    h, w = field.image.shape[-2:]
    if h <= tile and w <= tile:
        return [field]
    tiles = []
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            r0, c0 = max(0, top - overlap), max(0, left - overlap)
            r1, c1 = min(h, top + tile + overlap), min(w, left + tile + overlap)
            core = (top - r0, min(h, top + tile) - r0, left - c0, min(w, left + tile) - c0)
            tiles.append(
                dataclasses.replace(
                    field,
                    image=field.image[:, r0:r1, c0:c1],
                    name=f"{field.name}@{top},{left}",
                    origin=(r0, c0),
                    core=core,
                    parent=field.name,
                )
            )
    return tiles


def field_tasks(fields: list[Field], point_sets: dict | None, *, tile: int, overlap: int) -> tuple[list[Field], list, list[str]]:
    """What the field tasks get: the fields, large ones split into tiles (fields with given points
    stay whole), each with its points or None, and each task's name for progress and errors."""
    if point_sets is None:
        tiles = [t for f in fields for t in split_field(f, tile=tile, overlap=overlap)]
        items = [(t, None) for t in tiles]
    else:
        tiles, items = list(fields), [(f, point_sets[i]) for i, f in enumerate(fields)]
    return tiles, items, [t.source if t.parent is None else f"{t.source} ({t.name})" for t in tiles]


def objects_in_core(labels: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """``labels`` with only the objects whose centroid lies in ``core`` (top, bottom, left, right),
    numbered 1..n again in their old order.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.tiles import objects_in_core
    >>> lab = np.zeros((4, 6), int); lab[0:2, 0:2] = 3; lab[1:3, 3:6] = 5
    >>> objects_in_core(lab, (0, 4, 0, 3))
    array([[1, 1, 0, 0, 0, 0],
           [1, 1, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]], dtype=int32)
    """
    from scipy import ndimage

    ids = np.unique(labels)
    ids = ids[ids > 0]
    out = np.zeros(labels.shape, np.int32)
    if len(ids) == 0:
        return out
    centres = np.array(ndimage.center_of_mass(np.ones(labels.shape), labels, ids)).reshape(-1, 2)
    top, bottom, left, right = core
    keep = ids[(centres[:, 0] >= top) & (centres[:, 0] < bottom) & (centres[:, 1] >= left) & (centres[:, 1] < right)]
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lookup[labels]


def join_tiles(tiles: list[Field], parts: list, shapes: dict[str, tuple[int, int]], *, keep_labels: bool) -> dict[str, np.ndarray]:
    """Make the tiles' cells those of their fields: label ids shifted to be unique in the field,
    cell ids ``<field>:<label>``, centroids in field coordinates; and, with ``keep_labels``, each
    tiled field's label image pasted from its tiles (``shapes``: the fields' sizes).

    ``parts`` are the tasks' results (with ``table``, ``labels`` and ``stats``), changed in place.
    Returns the stitched label images by field name.
    """
    offsets: dict[str, int] = {}
    stitched: dict[str, np.ndarray] = {}
    for tile, part in zip(tiles, parts):
        if getattr(tile, "parent", None) is None:
            continue
        offset = offsets.get(tile.parent, 0)
        table: pd.DataFrame = part.table
        table["label_id"] = table["label_id"] + offset
        table["cell_id"] = [f"{tile.parent}:{k}" for k in table["label_id"]]
        table["centroid_y"] = table["centroid_y"] + tile.origin[0]
        table["centroid_x"] = table["centroid_x"] + tile.origin[1]
        table["field"] = tile.parent
        if keep_labels and part.labels is not None:
            whole = stitched.setdefault(tile.parent, np.zeros(shapes[tile.parent], np.int32))
            h, w = part.labels.shape
            window = whole[tile.origin[0] : tile.origin[0] + h, tile.origin[1] : tile.origin[1] + w]
            paste = (part.labels > 0) & (window == 0)
            window[paste] = part.labels[paste] + offset
        offsets[tile.parent] = offset + int(part.stats["objects"])  # the tile's objects, cropped or skipped at an edge
        part.labels = None
    return stitched
