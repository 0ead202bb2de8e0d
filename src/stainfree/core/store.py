"""Writing CellSets cell by cell, opening them, and joining several into one."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError, atomic_output_dir, read_parquet, refuse_partial
from .cellset import (
    FORMAT,
    FORMAT_VERSION,
    HEADER,
    IMAGES,
    MASKS,
    TABLE,
    CellSet,
    _chunk_cells,
    _now,
    provenance_entry,
)

logger = logging.getLogger(__name__)


class CellSetWriter:
    """Stream cells into a new ``.cells`` folder, batch by batch, then publish it atomically.

    Use it as a context manager: :meth:`write` every batch, then :meth:`finish` with the table.
    The folder is built under a temporary name and appears only when the ``with`` block ends
    without an error (see :func:`~stainfree.utils.atomic_output_dir`), so sets larger than
    memory can be written and an interrupted write leaves nothing that looks complete.

    Parameters
    ----------
    path : path
        The ``.cells`` folder to write.
    n_cells : int
        Number of cells that will be written.
    channels : list of str
        Channel names.
    height, width : int
        Size of every cell image in pixels.
    dtype : numpy dtype or str
        Pixel type; batches are cast to it.
    masks : bool, default False
        Whether every batch comes with its cell masks.
    force : bool, default False
        Replace an existing CellSet at ``path``.

    Raises
    ------
    StainfreeError
        When ``path`` exists (without ``force``), a batch does not fit, or the writer is closed
        before :meth:`finish` or before all cells are written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.core.store import CellSetWriter, open_cellset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with CellSetWriter(f"{tmp}/x.cells", n_cells=2, channels=["bf"], height=3, width=3, dtype="uint8") as w:
    ...         w.write(0, np.ones((2, 1, 3, 3), np.uint8))
    ...         w.finish(pd.DataFrame({"cell_id": ["a", "b"], "label": ["x", "y"]}))
    ...     print(open_cellset(f"{tmp}/x.cells").shape)
    (2, 1, 3, 3)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_cells: int,
        channels: Sequence[str],
        height: int,
        width: int,
        dtype,
        masks: bool = False,
        force: bool = False,
    ):
        self.path = Path(path)
        self.with_masks = masks
        self.channels = list(channels)
        self.shape = (int(n_cells), len(self.channels), int(height), int(width))
        self.dtype = np.dtype(dtype)
        self.force = force
        self._context = None
        self._written = 0
        self._finished = False

    def __enter__(self) -> CellSetWriter:
        self._context = atomic_output_dir(self.path, force=self.force, marker=HEADER)
        self.tmp = self._context.__enter__()
        self.array = _sharded_array(self.tmp / IMAGES, self.shape, self.dtype)
        if self.with_masks:
            n, _, h, w = self.shape
            self.masks = _sharded_array(self.tmp / MASKS, (n, h, w), np.dtype(np.uint8))
        return self

    def write(self, start: int, batch: np.ndarray, masks: np.ndarray | None = None) -> None:
        """Write ``batch`` ``(b, C, H, W)`` at cell position ``start``, and its masks ``(b, H, W)``
        when the set has them (nonzero is inside the cell)."""
        batch = np.asarray(batch)
        if batch.shape[1:] != self.shape[1:]:
            raise StainfreeError(f"batch of shape {batch.shape[1:]} for a set of {self.shape[1:]}")
        if self.with_masks != (masks is not None):
            raise StainfreeError(
                f"{self.path}: masks {'missing' if self.with_masks else 'given'} for a set {'with' if self.with_masks else 'without'} masks"
            )
        self.array[start : start + len(batch)] = batch.astype(self.dtype, copy=False)
        if masks is not None:
            self.masks[start : start + len(batch)] = (np.asarray(masks) > 0).astype(np.uint8)
        self._written += len(batch)

    def finish(
        self,
        table: pd.DataFrame,
        *,
        groups: Sequence[str] = (),
        pixel_size: float | None = None,
        provenance: list[dict] | None = None,
    ) -> None:
        """Write the table (one row per cell; validated as :class:`CellSet` does) and the header with
        the ``groups`` columns, ``pixel_size`` (micrometres) and ``provenance``. The folder is
        published when the ``with`` block ends."""
        if self._written != self.shape[0]:
            raise StainfreeError(f"{self.path}: {self._written} of {self.shape[0]} cells written")
        # Validate the table the same way an in-memory set would.
        validated = CellSet(
            np.empty((self.shape[0], self.shape[1], 0, 0), self.dtype),
            table,
            channels=self.channels,
            groups=groups,
        ).table
        validated.to_parquet(self.tmp / TABLE, index=False)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_cells": self.shape[0],
            "channels": self.channels,
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "pixel_size_um": pixel_size,
            "groups": list(groups),
            "masks": self.with_masks,
            "created": _now(),
            "provenance": list(provenance or []),
        }
        (self.tmp / HEADER).write_text(json.dumps(header, indent=2, default=str))
        self._finished = True

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self._finished:
            exc = StainfreeError(f"{self.path}: writer closed before finish(); nothing written")
            self._context.__exit__(type(exc), exc, None)
            raise exc
        return self._context.__exit__(exc_type, exc, tb)


def open_cellset(path: str | os.PathLike) -> CellSet:
    """Open a ``.cells`` folder lazily: the table is read, the images stay on disk.

    Parameters
    ----------
    path : path
        A folder written by :meth:`CellSet.save`, :class:`CellSetWriter` or ``stainfree import``.

    Returns
    -------
    CellSet
        A lazy set (:attr:`CellSet.is_lazy`): pixels are read only when asked for.

    Raises
    ------
    StainfreeError
        Naming the folder, when it is missing, incomplete or unfinished (an interrupted write),
        corrupt, or written by a newer stainfree.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.core.store import open_cellset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = CellSet(np.zeros((4, 2, 8, 8), np.uint16), channels=["bf", "df"]).save(f"{tmp}/a.cells")
    ...     opened = open_cellset(path)
    ...     print(opened.is_lazy, opened.shape, opened.channels)
    True (4, 2, 8, 8) ['bf', 'df']
    """
    import zarr

    path = Path(path)
    refuse_partial(path)
    if not path.exists():
        raise StainfreeError(f"{path}: no such CellSet")
    header_path = path / HEADER
    if not header_path.is_file():
        raise StainfreeError(f"{path}: not a CellSet (no {HEADER}; an interrupted write?)")
    try:
        header = json.loads(header_path.read_text())
    except (OSError, ValueError) as exc:
        raise StainfreeError(f"{header_path}: unreadable header ({exc})") from exc
    if header.get("format") != FORMAT:
        raise StainfreeError(f"{header_path}: not a stainfree CellSet header")
    if header.get("version", 0) > FORMAT_VERSION:
        raise StainfreeError(f"{path}: written by a newer stainfree (format {header['version']}); please upgrade")
    try:
        table = read_parquet(path / TABLE)
    except Exception as exc:
        raise StainfreeError(f"{path / TABLE}: unreadable table ({exc})") from exc
    try:
        images = zarr.open_array(str(path / IMAGES), mode="r")
    except Exception as exc:
        raise StainfreeError(f"{path / IMAGES}: unreadable image array ({exc})") from exc
    masks = None
    if header.get("masks"):
        try:
            masks = zarr.open_array(str(path / MASKS), mode="r")
        except Exception as exc:
            raise StainfreeError(f"{path / MASKS}: unreadable mask array ({exc})") from exc
    n = int(header["shape"][0])
    short_masks = masks is not None and (masks.shape[0] < n or tuple(masks.shape[1:]) != tuple(images.shape[2:]))
    if tuple(images.shape[1:]) != tuple(header["shape"][1:]) or images.shape[0] < n or len(table) < n or short_masks:
        raise StainfreeError(
            f"{path}: image array {tuple(images.shape)}, table {len(table)} rows and header {tuple(header['shape'])} disagree"
        )
    if images.shape[0] > n or len(table) > n or (masks is not None and masks.shape[0] != n):
        # an append that did not reach its header: what lies past its count is not part of the set
        logger.warning("%s: ignoring %d cell(s) of an interrupted append", path, max(images.shape[0], len(table)) - n)
        table, images = table.iloc[:n], FirstRows(images, n)
        masks = None if masks is None else FirstRows(masks, n)
    return CellSet(
        images,
        table,
        channels=header["channels"],
        groups=header.get("groups", []),
        pixel_size=header.get("pixel_size_um"),
        provenance=header.get("provenance", []),
        masks=masks,
        path=path,
    )


class FirstRows:
    """The first ``n`` rows of a zarr array (``open_cellset`` checked it has them), read through to
    it by slices of rows; ``chunks`` are the array's."""

    def __init__(self, array, n: int):
        self.array, self.shape, self.dtype, self.ndim = array, (n, *array.shape[1:]), array.dtype, array.ndim
        self.chunks = array.chunks

    def __getitem__(self, key):
        return self.array[key]


#: Chunks of cells (about 2 MiB of pixels each) stored together in one shard file.
CHUNKS_PER_SHARD = 32


def _sharded_array(path: Path, shape: tuple, dtype: np.dtype):
    """A zarr v3 array of cells: chunks of about 2 MiB along the cells, :data:`CHUNKS_PER_SHARD` of
    them to a shard file, so a million 2 x 40 x 40 cells make about 50 files, not 1,500."""
    import zarr

    per_cell = shape[1:]
    chunk = _chunk_cells(*((1, *per_cell) if len(per_cell) == 2 else per_cell), dtype)
    shard = chunk * max(1, min(CHUNKS_PER_SHARD, -(-shape[0] // chunk)))
    return zarr.create_array(
        store=str(path), shape=shape, chunks=(chunk, *per_cell), shards=(shard, *per_cell), dtype=dtype, zarr_format=3, fill_value=0
    )


def concat(sets: Sequence[CellSet], *, source_column: str | None = None) -> CellSet:
    """Concatenate sets with the same channels and crop size into one in-memory set.

    Parameters
    ----------
    sets : list of CellSet
        The sets, in order. The pixel type is the common type of all of them; the groups are
        those every set declares; masks are kept when every set has them.
    source_column : str, optional
        Record in this column which input each cell came from (its position in ``sets``) and
        prefix the ids with it (``"0:"``, ``"1:"``...). ``cell_id`` must stay unique, so sets
        with overlapping ids need it.

    Returns
    -------
    CellSet
        The cells of all sets, read into memory.

    Raises
    ------
    StainfreeError
        When ``sets`` is empty, or the channels or cell sizes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.core.store import concat
    >>> a = CellSet(np.zeros((2, 1, 4, 4), np.uint8))
    >>> both = concat([a, a], source_column="batch")
    >>> len(both), both.table["cell_id"].tolist(), both.table["batch"].tolist()
    (4, ['0:0', '0:1', '1:0', '1:1'], [0, 0, 1, 1])
    """
    if not sets:
        raise StainfreeError("nothing to concatenate")
    first = sets[0]
    for i, s in enumerate(sets[1:], 1):
        if s.channels != first.channels:
            raise StainfreeError(f"set {i} has channels {s.channels}, set 0 has {first.channels}")
        if s.shape[2:] != first.shape[2:]:
            raise StainfreeError(f"set {i} has cells of {s.shape[2:]}, set 0 has {first.shape[2:]}")
    tables = []
    for i, s in enumerate(sets):
        t = s.table.copy()
        if source_column:
            t[source_column] = i
            t["cell_id"] = f"{i}:" + t["cell_id"].astype(str)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    dtype = np.result_type(*[s.dtype for s in sets])
    images = np.concatenate([s.images.astype(dtype, copy=False) for s in sets])
    groups = [g for g in first.groups if all(g in s.groups for s in sets)]
    prov = [provenance_entry("concat", inputs=[s.provenance for s in sets])]
    masks = np.concatenate([s.read_masks().astype(np.uint8) for s in sets]) if all(s.has_masks for s in sets) else None
    return CellSet(images, table, channels=first.channels, groups=groups, pixel_size=first.pixel_size, provenance=prov, masks=masks)


# ---------------------------------------------------------------------- small parsers
