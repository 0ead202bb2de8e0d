"""Growing a CellSet on disk: new cells are written after the old ones, nothing is rewritten but the
table, and the header, written last, is the commit.

An append interrupted before its header was written leaves cells and table rows past the count
the header gives; :func:`~stainfree.core.store.open_cellset` ignores them (and says so), and the
next append writes over them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError, atomic_write_bytes, read_parquet, refuse_partial, write_parquet
from .cellset import HEADER, IMAGES, MASKS, TABLE, CellSet, provenance_entry

#: Present while an append is writing; a second append refuses to start.
LOCK = ".append.lock"
#: Cells written to the store at a time.
WRITE_BLOCK = 16384


def _check_new_cells(path: Path, header: dict, images: np.ndarray, table: pd.DataFrame, masks) -> pd.DataFrame:
    """The new cells' table validated against the set on disk; raises naming what does not fit."""
    _, c, h, w = header["shape"]
    if images.ndim != 4 or images.shape[1:] != (c, h, w):
        raise StainfreeError(f"{path}: holds cells of {c} channel(s) x {h} x {w} px; the new cells have shape {images.shape[1:]}")
    stored = np.dtype(header["dtype"])
    if not np.can_cast(images.dtype, stored, casting="same_kind") or images.dtype.itemsize > stored.itemsize:
        raise StainfreeError(f"{path}: holds {stored.name} pixels; the new cells are {images.dtype.name} (convert them first)")
    if bool(header.get("masks")) != (masks is not None):
        raise StainfreeError(
            f"{path}: the set has {'masks' if header.get('masks') else 'no masks'}; the new cells {'lack' if header.get('masks') else 'have'} them"
        )
    missing = [g for g in header.get("groups", []) if g not in table.columns]
    if missing:
        raise StainfreeError(f"{path}: the new cells' table lacks the group column {missing[0]!r}")
    return CellSet(np.empty((len(images), c, 0, 0), images.dtype), table, channels=header["channels"]).table


def append_cells(path: str | os.PathLike, images: np.ndarray, table: pd.DataFrame, *, masks: np.ndarray | None = None) -> int:
    """Append cells to a CellSet on disk, without rewriting its images.

    Parameters
    ----------
    path : path
        A ``.cells`` folder.
    images : numpy.ndarray, shape (M, C, H, W)
        The new cells: the set's channels, in its order, its size, and a pixel type that fits in
        the set's.
    table : pandas.DataFrame
        One row per new cell; ``cell_id`` (when given) must be new to the set, and the set's
        group columns must be there. Columns the old table lacks are added (missing for the old
        cells), and the other way round.
    masks : numpy.ndarray, shape (M, H, W), optional
        The new cells' masks, required exactly when the set has masks.

    Returns
    -------
    int
        The number of cells in the set now.

    Raises
    ------
    StainfreeError
        Naming the folder, when the new cells do not fit the set (channels, size, pixel type,
        masks, a repeated cell_id, a missing group column) or another append is writing.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.core.append import append_cells
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.core.store import open_cellset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = CellSet(np.zeros((2, 1, 4, 4), np.uint8), pd.DataFrame({"cell_id": ["a", "b"]})).save(f"{tmp}/x.cells")
    ...     append_cells(path, np.ones((3, 1, 4, 4), np.uint8), pd.DataFrame({"cell_id": ["c", "d", "e"], "label": "new"}))
    ...     grown = open_cellset(path)
    ...     print(grown.cell_ids.tolist(), int(grown.read(4).sum()))
    5
    ['a', 'b', 'c', 'd', 'e'] 16
    """
    import zarr

    path = Path(path)
    refuse_partial(path)
    try:
        header = json.loads((path / HEADER).read_text())
    except (OSError, ValueError) as exc:
        raise StainfreeError(f"{path}: not a CellSet to append to ({exc})") from exc
    images = np.asarray(images)
    new = _check_new_cells(path, header, images, table, masks)
    n, m = int(header["shape"][0]), len(images)
    old = read_parquet(path / TABLE).iloc[:n]
    clash = np.intersect1d(old["cell_id"].astype(str).to_numpy(), new["cell_id"].to_numpy())
    if len(clash):
        raise StainfreeError(f"{path}: cell_id {clash[0]!r} is already in the set ({len(clash)} of the new ids are)")
    lock = path / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError as exc:
        raise StainfreeError(f"{path}: another append is writing to this set (or one died: remove {lock} if none is running)") from exc
    os.close(fd)
    try:
        arrays = [(zarr.open_array(str(path / IMAGES), mode="r+"), images)]
        if masks is not None:
            arrays.append((zarr.open_array(str(path / MASKS), mode="r+"), (np.asarray(masks) > 0).astype(np.uint8)))
        for array, _ in arrays:  # both grown before either is written: they disagree only for an instant
            array.resize((n + m, *array.shape[1:]))
        for array, values in arrays:
            for start in range(0, m, WRITE_BLOCK):
                array[n + start : n + start + WRITE_BLOCK] = values[start : start + WRITE_BLOCK].astype(array.dtype, copy=False)
        write_parquet(pd.concat([old, new], ignore_index=True), path / TABLE, force=True)
        header["shape"][0] = header["n_cells"] = n + m
        header.setdefault("provenance", []).append(provenance_entry("append", cells=m))
        atomic_write_bytes(path / HEADER, json.dumps(header, indent=2, default=str).encode())
    finally:
        lock.unlink(missing_ok=True)
    return n + m
