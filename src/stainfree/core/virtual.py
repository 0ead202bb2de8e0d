"""Many CellSets on disk (one per plate, sample or run) opened as one, without copying a pixel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError
from .cellset import CellSet, _take_rows, provenance_entry

#: The column that names each cell's set in :func:`open_cellsets`.
SOURCE_COLUMN = "source_set"


class _Stacked:
    """Arrays (numpy or zarr) of the same trailing shape, read as one along the first axis by slices
    of rows (``[a:b]``, what :class:`CellSet` reads through); ``chunks`` are the first array's."""

    def __init__(self, arrays: Sequence):
        self.arrays = list(arrays)
        self.starts = np.cumsum([0] + [a.shape[0] for a in self.arrays])
        self.shape = (int(self.starts[-1]), *self.arrays[0].shape[1:])
        self.dtype = np.result_type(*[a.dtype for a in self.arrays])
        self.ndim = len(self.shape)
        self.chunks = getattr(self.arrays[0], "chunks", None)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(which):
            here = which == k
            out[here] = _take_rows(self.arrays[k], rows[here] - self.starts[k])
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._rows(np.arange(self.shape[0])[key])
        raise TypeError("a stacked array is read by a slice of rows")


def open_cellsets(paths: Sequence[str | os.PathLike], *, source_column: str = SOURCE_COLUMN) -> CellSet:
    """Open several CellSets as one lazy set: their cells one after the other, each cell's set
    named in ``source_column``, nothing read until asked for.

    Parameters
    ----------
    paths : sequence of path
        ``.cells`` folders with the same channels (in the same order) and cell size.
    source_column : str, default "source_set"
        The column naming each cell's set (the folder's name; its path when two names repeat).
        Cell ids that repeat across sets are prefixed with it (``"plate1:c7"``).

    Returns
    -------
    CellSet
        Lazy; masks are kept when every set has them, groups that every set declares, plus
        ``source_column``.

    Raises
    ------
    StainfreeError
        When no path is given, one is not a CellSet, or the channels or sizes differ (naming the
        set).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.core.virtual import open_cellsets
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     a = CellSet(np.zeros((2, 1, 4, 4), np.uint8)).save(f"{tmp}/p1.cells")
    ...     b = CellSet(np.ones((3, 1, 4, 4), np.uint8)).save(f"{tmp}/p2.cells")
    ...     both = open_cellsets([a, b])
    ...     print(len(both), both.table["source_set"].tolist(), both.cell_ids[:3].tolist(), int(both.read(np.array([4, 0])).sum()))
    5 ['p1.cells', 'p1.cells', 'p2.cells', 'p2.cells', 'p2.cells'] ['p1.cells:0', 'p1.cells:1', 'p2.cells:0'] 16
    """
    from .store import open_cellset

    if not paths:
        raise StainfreeError("no CellSet to open")
    sets = [open_cellset(p) for p in paths]
    first = sets[0]
    for p, s in zip(paths, sets):
        if s.channels != first.channels or s.shape[2:] != first.shape[2:]:
            raise StainfreeError(
                f"{p}: channels {s.channels} of {s.shape[2]}x{s.shape[3]} px; {paths[0]} has {first.channels} of {first.shape[2]}x{first.shape[3]} px"
            )
    names = [Path(p).name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    tables = []
    for name, s in zip(names, sets):
        t = s.table.copy()
        t[source_column] = name
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    if table["cell_id"].duplicated().any():
        table["cell_id"] = table[source_column].astype(str) + ":" + table["cell_id"].astype(str)
    groups = [g for g in first.groups if all(g in s.groups for s in sets)] + [source_column]
    images = _Stacked([s._source for s in sets])  # opened sets: each store, cut to its rows by open_cellset
    masks = _Stacked([s._masks for s in sets]) if all(s.has_masks for s in sets) else None
    prov = [provenance_entry("open_cellsets", inputs=[str(p) for p in paths])]
    return CellSet(images, table, channels=first.channels, groups=groups, pixel_size=first.pixel_size, provenance=prov, masks=masks)
