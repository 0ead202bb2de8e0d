"""The CellSet: single-cell images (N, C, H, W) with a per-cell table, stored as zarr arrays and a parquet table."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError
from .specs import merge_labels, parse_channel_list, parse_merge_spec

HEADER = "cellset.json"
TABLE = "cells.parquet"
IMAGES = "images.zarr"
MASKS = "masks.zarr"
FORMAT = "stainfree.cellset"
FORMAT_VERSION = 1
CHUNK_BYTES = 2**21  # about 2 MiB of pixels per zarr chunk
#: Gaps of up to this many rows are read through, not skipped (when that at most doubles the read).
READ_GAP = 64
#: Columns every table has; ``label`` may hold missing values.
REQUIRED_COLUMNS = ("cell_id", "label")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _version() -> str:
    from stainfree import __version__

    return __version__


def provenance_entry(step: str, **details) -> dict:
    """One provenance record: what was done, when, by which stainfree version.

    Parameters
    ----------
    step : str
        What was done (``"import"``, ``"merge_classes"``, ...).
    **details
        Anything else worth recording; must be JSON-serialisable to be saved.

    Returns
    -------
    dict
        ``step``, ``time`` (UTC, ISO 8601), ``stainfree`` (the version) and the details.

    Examples
    --------
    >>> from stainfree.core.cellset import provenance_entry
    >>> sorted(provenance_entry("import", src="cells/"))
    ['src', 'stainfree', 'step', 'time']
    """
    return {"step": step, "time": _now(), "stainfree": _version(), **details}


class CellSet:
    """Single-cell images plus a per-cell table, channel names and provenance.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
        A numpy array, or a zarr array for a lazily opened set. Any integer or float dtype is
        kept as it is.
    table : pandas.DataFrame, optional
        One row per cell, in image order. ``cell_id`` is created (``"0"``, ``"1"``, ...) when
        missing and must be unique; ``label`` is created empty when missing.
    channels : list of str, optional
        One name per channel (default ``ch0``, ``ch1``, ...).
    groups : list of str, optional
        Table columns that name non-independent groups of cells (field, flask, dish, ...).
    pixel_size : float, optional
        Micrometres per pixel, where known.
    provenance : list of dict, optional
        What produced the set, oldest first.
    masks : array-like, shape (N, H, W), optional
        Each cell's object mask (nonzero inside the cell), for example from segmentation. Used by
        blackout augmentation, the outline baseline and the features; absent for most imports.
    path : path, optional
        The ``.cells`` folder the set was opened from (set by :func:`~stainfree.open_cellset`).

    Raises
    ------
    StainfreeError
        When the images are not 4-D integers or floats, or the table, channel names, groups or
        masks do not fit them.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.core.cellset import CellSet
    >>> cs = CellSet(np.zeros((3, 1, 4, 4), np.uint8), pd.DataFrame({"label": ["a", "b", "a"]}))
    >>> cs.shape, cs.channels, cs.class_counts().to_dict()
    ((3, 1, 4, 4), ['ch0'], {'a': 2, 'b': 1})
    """

    def __init__(
        self,
        images,
        table: pd.DataFrame | None = None,
        *,
        channels: Sequence[str] | None = None,
        groups: Sequence[str] = (),
        pixel_size: float | None = None,
        provenance: list[dict] | None = None,
        masks=None,
        _rows: np.ndarray | None = None,
        _channel_index: Sequence[int] | None = None,
        path: Path | None = None,
    ):
        if isinstance(images, (list, tuple)):
            images = np.asarray(images)
        if getattr(images, "ndim", None) != 4:
            raise StainfreeError(
                f"images must have 4 dimensions (cells, channels, height, width), got shape {getattr(images, 'shape', None)}"
            )
        dtype = np.dtype(images.dtype)
        if dtype == np.bool_:
            images = np.asarray(images, dtype=np.uint8)
        elif dtype.kind not in "uif":
            raise StainfreeError(f"images must be integer or float, got dtype {dtype}")
        if masks is not None:
            if isinstance(masks, (list, tuple)):
                masks = np.asarray(masks)
            expected = (images.shape[0], *images.shape[2:])
            if tuple(masks.shape) != expected:
                raise StainfreeError(f"masks have shape {tuple(masks.shape)}, expected {expected} to match the images")
        self._masks = masks
        self._source = images
        self._rows = None if _rows is None else np.asarray(_rows, dtype=np.int64)
        n_source_channels = images.shape[1]
        self._channel_index = list(range(n_source_channels)) if _channel_index is None else list(_channel_index)
        n = images.shape[0] if self._rows is None else len(self._rows)
        table = pd.DataFrame(index=range(n)) if table is None else table.reset_index(drop=True)
        if len(table) != n:
            raise StainfreeError(f"table has {len(table)} rows but there are {n} cell images")
        if "cell_id" not in table:
            table.insert(0, "cell_id", [str(i) for i in range(n)])
        table["cell_id"] = table["cell_id"].astype(str)
        if "label" not in table:
            table["label"] = pd.Series([None] * n, dtype=object)
        dup = table["cell_id"].duplicated()
        if dup.any():
            raise StainfreeError(f"cell_id must be unique; {table['cell_id'][dup].iloc[0]!r} repeats")
        self.table = table
        if channels is None:
            channels = [f"ch{i}" for i in self._channel_index]
        channels = [str(c) for c in channels]
        if len(channels) != len(self._channel_index):
            raise StainfreeError(f"{len(channels)} channel names given for {len(self._channel_index)} channels")
        if len(set(channels)) != len(channels):
            raise StainfreeError(f"channel names must be unique: {channels}")
        self.channels = channels
        missing = [g for g in groups if g not in table.columns]
        if missing:
            raise StainfreeError(f"group column {missing[0]!r} is not in the table")
        self.groups = list(groups)
        self.pixel_size = pixel_size
        self.provenance = list(provenance or [])
        self.path = path

    # ------------------------------------------------------------------ shape and access
    def __len__(self) -> int:
        return len(self.table)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(cells, channels, height, width)``."""
        _, _, h, w = self._source.shape
        return (len(self), len(self.channels), h, w)

    @property
    def dtype(self) -> np.dtype:
        """The pixel type."""
        return np.dtype(self._source.dtype)

    @property
    def is_lazy(self) -> bool:
        """True when images stay on disk and are read on demand."""
        return not isinstance(self._source, np.ndarray)

    @property
    def cell_ids(self) -> np.ndarray:
        """The ``cell_id`` column as an array."""
        return self.table["cell_id"].to_numpy()

    @property
    def labels(self) -> np.ndarray:
        """The ``label`` column as an array (``None`` for unlabelled cells)."""
        return self.table["label"].to_numpy()

    def class_counts(self) -> pd.Series:
        """Cells per label, largest first (cells without a label are not counted)."""
        return self.table["label"].dropna().astype(str).value_counts()

    def read(self, index) -> np.ndarray:
        """Read the images of the cells at positions ``index``: ``(n, C, H, W)``, or ``(C, H, W)`` for
        one integer position. ``index`` is anything numpy indexing takes: an integer, a slice or an
        integer array."""
        positions = np.arange(len(self))[index]
        scalar = positions.ndim == 0
        positions = np.atleast_1d(positions)
        rows = positions if self._rows is None else self._rows[positions]
        chans = self._channel_index
        out = _take_rows(self._source, rows, None if chans == list(range(self._source.shape[1])) else chans)
        return out[0] if scalar else out

    @property
    def images(self) -> np.ndarray:
        """All images as one numpy array (reads everything into memory; see :meth:`batches`)."""
        return self.read(slice(None))

    @property
    def has_masks(self) -> bool:
        """True when the set holds a mask per cell."""
        return self._masks is not None

    def read_masks(self, index=slice(None)) -> np.ndarray:
        """Boolean object masks ``(n, H, W)`` of the cells at positions ``index`` (default all).

        Raises :class:`StainfreeError` when the set has no masks.
        """
        if self._masks is None:
            raise StainfreeError("this set has no cell masks (they come from `stainfree segment`)")
        positions = np.atleast_1d(np.arange(len(self))[index])
        rows = positions if self._rows is None else self._rows[positions]
        return _take_rows(self._masks, rows) > 0

    def batches(self, batch_size: int = 1024) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """Yield ``(images, table_rows)`` in order, ``batch_size`` cells at a time.

        Only one batch is in memory at once, so sets larger than memory can be streamed.

        >>> import numpy as np
        >>> from stainfree.core.cellset import CellSet
        >>> [(imgs.shape, len(rows)) for imgs, rows in CellSet(np.zeros((5, 1, 2, 2))).batches(3)]
        [((3, 1, 2, 2), 3), ((2, 1, 2, 2), 2)]
        """
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield self.read(slice(start, stop)), self.table.iloc[start:stop]

    def load(self) -> CellSet:
        """An in-memory copy (images read into a numpy array)."""
        masks = self.read_masks().astype(np.uint8) if self.has_masks else None
        return self._derive(images=self.images, masks=masks, _rows=None, _channel_index=None)

    def _derive(self, **changes) -> CellSet:
        kwargs = dict(
            images=self._source,
            table=self.table.copy(),
            channels=self.channels,
            groups=self.groups,
            pixel_size=self.pixel_size,
            provenance=self.provenance,
            masks=self._masks,
            _rows=self._rows,
            _channel_index=self._channel_index,
            path=self.path,
        )
        kwargs.update(changes)
        return CellSet(**kwargs)

    # ------------------------------------------------------------------ selection
    def select(self, where) -> CellSet:
        """Cells chosen by a boolean mask, integer positions, or a pandas query string.

        On an opened set nothing is read: the result still reads from the same folder.
        Raises :class:`StainfreeError` for a query that pandas cannot evaluate or a mask of the
        wrong length.

        >>> import numpy as np
        >>> import pandas as pd
        >>> from stainfree.core.cellset import CellSet
        >>> cs = CellSet(np.zeros((3, 1, 2, 2)), pd.DataFrame({"label": ["a", "b", "a"]}))
        >>> len(cs.select("label == 'a'")), len(cs.select(np.array([True, False, False])))
        (2, 1)
        """
        if isinstance(where, str):
            try:
                mask = self.table.eval(where)
            except Exception as exc:  # pandas raises many kinds here
                raise StainfreeError(f"cannot evaluate query {where!r}: {exc}") from exc
            positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        else:
            where = np.asarray(where)
            if where.dtype == bool:
                if len(where) != len(self):
                    raise StainfreeError(f"mask has {len(where)} entries for {len(self)} cells")
                positions = np.flatnonzero(where)
            else:
                positions = np.arange(len(self))[where]
        rows = positions if self._rows is None else self._rows[positions]
        table = self.table.iloc[positions].reset_index(drop=True)
        return self._derive(table=table, _rows=rows)

    def select_channels(self, names: Sequence[str]) -> CellSet:
        """Keep the channels ``names`` (a list such as ``["Ch3", "Ch6"]``), in the order given.

        Nothing is read from disk. A name that is not a channel of the set, or an empty list,
        raises :class:`StainfreeError`. (The command-line form ``"Ch3,Ch6"`` is accepted too.)

        >>> import numpy as np
        >>> from stainfree.core.cellset import CellSet
        >>> cs = CellSet(np.arange(6).reshape(1, 3, 1, 2), channels=["bf", "df", "dna"])
        >>> two = cs.select_channels(["dna", "bf"])
        >>> two.channels, two.images[0, :, 0].tolist()
        (['dna', 'bf'], [[4, 5], [0, 1]])
        """
        names = parse_channel_list(names)
        missing = [n for n in names if n not in self.channels]
        if missing:
            raise StainfreeError(f"channel {missing[0]!r} is not in this set (channels: {', '.join(self.channels)})")
        index = [self._channel_index[self.channels.index(n)] for n in names]
        return self._derive(channels=names, _channel_index=index)

    def merge_classes(self, merges: Mapping[str, Sequence[str]]) -> CellSet:
        """Rename several labels to one; ``merges`` maps each new class to the old classes that
        become it, e.g. ``{"Interphase": ["G1", "S", "G2"]}``. The merge is recorded in the provenance.

        Naming an old class that no cell has raises :class:`StainfreeError`, since it is usually a
        typo. (The command-line form ``"G1,S,G2=Interphase"``, ``;`` between merges, is accepted too.)

        >>> import numpy as np
        >>> import pandas as pd
        >>> from stainfree.core.cellset import CellSet
        >>> cs = CellSet(np.zeros((4, 1, 2, 2)), pd.DataFrame({"label": ["G1", "S", "M", "G1"]}))
        >>> cs.merge_classes({"Interphase": ["G1", "S"]}).class_counts().to_dict()
        {'Interphase': 3, 'M': 1}
        """
        if isinstance(merges, str):
            merges = parse_merge_spec(merges)
        table = self.table.copy()
        table["label"] = merge_labels(table["label"], merges)
        record = provenance_entry("merge_classes", merges={k: list(v) for k, v in merges.items()})
        return self._derive(table=table, provenance=self.provenance + [record])

    # ------------------------------------------------------------------ summaries
    def summary(self) -> dict:
        """Counts and shapes as a plain dict (what ``stainfree info`` prints)."""
        n, c, h, w = self.shape
        out = {
            "cells": n,
            "channels": self.channels,
            "height": h,
            "width": w,
            "dtype": str(self.dtype),
            "pixel_size_um": self.pixel_size,
            "classes": {k: int(v) for k, v in self.class_counts().items()},
            "unlabelled": int(self.table["label"].isna().sum()),
            "groups": {g: int(self.table[g].nunique()) for g in self.groups},
        }
        return out

    def describe(self) -> str:
        """A short human-readable summary."""
        s = self.summary()
        lines = [
            f"{s['cells']} cells, {len(s['channels'])} channel{'s' if len(s['channels']) != 1 else ''} "
            f"({', '.join(s['channels'])}), {s['height']}x{s['width']} px, {s['dtype']}"
        ]
        if s["pixel_size_um"]:
            lines.append(f"pixel size: {s['pixel_size_um']} um")
        if s["classes"]:
            lines.append(f"{len(s['classes'])} classes:")
            width = max(len(k) for k in s["classes"])
            lines += [f"  {k:<{width}}  {v}" for k, v in s["classes"].items()]
        if s["unlabelled"]:
            lines.append(f"unlabelled: {s['unlabelled']}")
        for g, k in s["groups"].items():
            lines.append(f"group {g}: {k} distinct")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"CellSet({n} cells x {c} channels {self.channels} x {h}x{w}, {self.dtype}{where})"

    # ------------------------------------------------------------------ export
    def to_anndata(self, embedding: np.ndarray | None = None, *, key: str = "X_embedding", metadata_prefix: bool = False):
        """The per-cell table as an AnnData ``obs`` (index ``cell_id``), with an ``embedding`` (N x D,
        optional) in ``obsm[key]`` and, as float32, in ``X``.

        Channel names, groups and provenance go into ``uns['stainfree']``. With
        ``metadata_prefix``, group columns are renamed ``Metadata_<name>`` as CellProfiler names them.

        >>> import numpy as np
        >>> from stainfree.core.cellset import CellSet
        >>> ad = CellSet(np.zeros((2, 1, 2, 2))).to_anndata(np.ones((2, 3)), key="X_pca")
        >>> ad.shape, list(ad.obs_names), ad.uns["stainfree"]["channels"]
        ((2, 3), ['0', '1'], ['ch0'])
        """
        import anndata

        obs = self.table.copy()
        if metadata_prefix:
            obs = obs.rename(columns={g: f"Metadata_{g}" for g in self.groups})
        obs.index = obs["cell_id"].astype(str).to_numpy()
        for col in obs.columns:
            if obs[col].dtype == object:
                obs[col] = obs[col].astype("string")
        if embedding is not None:
            embedding = np.asarray(embedding)
            if embedding.shape[0] != len(self):
                raise StainfreeError(f"embedding has {embedding.shape[0]} rows for {len(self)} cells")
        adata = anndata.AnnData(
            X=None if embedding is None else embedding.astype(np.float32),
            obs=obs,
        )
        if embedding is not None:
            adata.obsm[key] = embedding
        adata.uns["stainfree"] = {
            "channels": list(self.channels),
            "groups": list(self.groups),
            "image_shape": list(self.shape[1:]),
            "provenance": json.dumps(self.provenance),
        }
        return adata

    def save(
        self, path: str | os.PathLike, *, force: bool = False, batch_size: int = 4096, extra: Callable[[Path], None] | None = None
    ) -> Path:
        """Write the set to the ``.cells`` folder ``path`` atomically, ``batch_size`` cells at a time;
        returns ``path``. See :class:`~stainfree.core.store.CellSetWriter`.

        An existing set at ``path`` is replaced only with ``force`` (anything else never is).
        ``extra`` is called with the temporary folder before it is published, to add files that
        belong with the cells (a figure, a summary); if it raises, nothing is written.

        >>> import tempfile
        >>> import numpy as np
        >>> from stainfree.core.cellset import CellSet
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(CellSet(np.ones((2, 1, 3, 3), np.uint8)).save(f"{tmp}/x.cells").name)
        x.cells
        """
        from .store import CellSetWriter

        with CellSetWriter(
            path,
            n_cells=len(self),
            channels=self.channels,
            height=self.shape[2],
            width=self.shape[3],
            dtype=self.dtype,
            masks=self.has_masks,
            force=force,
        ) as writer:
            for start in range(0, len(self), batch_size):
                part = slice(start, min(start + batch_size, len(self)))
                writer.write(start, self.read(part), masks=self.read_masks(part) if self.has_masks else None)
            if extra is not None:
                extra(writer.tmp)
            writer.finish(
                self.table,
                groups=self.groups,
                pixel_size=self.pixel_size,
                provenance=self.provenance,
            )
        return Path(path)


def _take_rows(src, rows: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
    """``src[rows]`` (then ``[:, channels]``) of a numpy array or one read by slices of rows (zarr,
    stacked): in row order, by dense stretches or chunk by chunk, put back in the order asked for."""
    if len(rows) == 0:
        shape = src.shape[1:] if channels is None else (len(channels), *src.shape[2:])
        return np.empty((0, *shape), dtype=src.dtype)
    if np.all(np.diff(rows) == 1):
        block = np.asarray(src[int(rows[0]) : int(rows[-1]) + 1])
        return block if channels is None else block[:, channels]
    if isinstance(src, np.ndarray):
        return src[rows] if channels is None else src[rows][:, channels]
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.diff(ordered) > READ_GAP) + 1
    spans = np.split(ordered, starts)
    read = sum(int(span[-1] - span[0]) + 1 for span in spans)
    if not (len(spans) < len(rows) // 8 and read <= 2 * len(rows)):  # not dense stretches (pools of chunks, repeats):
        # the stretch of each chunk the rows touch (orthogonal indexing of a sharded store held GiBs)
        chunk = (getattr(src, "chunks", None) or (1,))[0]
        spans = np.split(ordered, np.flatnonzero(np.diff(ordered // chunk)) + 1)
    block = np.concatenate([np.asarray(src[int(span[0]) : int(span[-1]) + 1])[span - span[0]] for span in spans])
    block = block if channels is None else block[:, channels]
    out = np.empty_like(block)
    out[order] = block
    return out


# ---------------------------------------------------------------------- writing and opening
def _chunk_cells(c: int, h: int, w: int, dtype: np.dtype) -> int:
    return int(max(1, min(4096, CHUNK_BYTES // max(1, c * h * w * np.dtype(dtype).itemsize))))
