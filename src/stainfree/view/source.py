"""What ``stainfree view`` serves: the cells of a CellSet, a run folder or an ``.h5ad``, filtered,
sorted, selected and paged, with each page's thumbnails read from the CellSet when it is asked for.

No HTTP here (that is :mod:`stainfree.view.server`): plain methods that return JSON-ready values,
so that every view can be tested without a browser.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ..pl.interactive import MAX_THUMB_CHANNELS, THUMB_SIZE, channel_ranges, sprite_sheets, stratified_sample, thumbnails
from ..report.cells import MAX_LEVELS, PALETTE, CellsView, confusion, galleries, read_h5ad_view, read_view, strata
from ..utils import StainfreeError

#: Cells on one page of the grid.
PAGE_CELLS = 96
#: The scatter draws a stratified sample of at most this many cells (WebGL stays responsive).
MAX_POINTS = 100_000
#: Each channel's display range comes from this many cells, the first of the set.
RANGE_CELLS = 2048
#: Categorical columns with at most this many values get their composition counted.
COMPOSITION_LEVELS = 30


@dataclasses.dataclass(frozen=True)
class Query:
    """Which cells, in which order.

    Attributes
    ----------
    filters : tuple of (column, value)
        Keep the cells whose column has this value (as text; ``""`` for missing).
    rows : tuple of int, optional
        Keep only these rows of the table (a selection, a gallery), in this order unless sorted.
    sort : str, optional
        Order by this column (missing values last).
    descending : bool, default True
        Largest first.
    """

    filters: tuple = ()
    rows: tuple | None = None
    sort: str | None = None
    descending: bool = True

    @classmethod
    def from_json(cls, body: dict) -> Query:
        """A query from the page's JSON: ``{"filters": {col: value}, "rows": [...], "sort": col,
        "descending": bool}``; every key optional."""
        filters = body.get("filters") or {}
        if not isinstance(filters, dict):
            raise StainfreeError("filters must be an object of column: value")
        rows = body.get("rows")
        return cls(
            filters=tuple(sorted((str(k), str(v)) for k, v in filters.items())),
            rows=None if rows is None else tuple(int(r) for r in rows),
            sort=body.get("sort") or None,
            descending=bool(body.get("descending", True)),
        )


class CellsSource:
    """The cells a viewer shows: a table (one row per cell), optionally a 2-D embedding and class
    scores, and the CellSet their images are read from.

    Parameters
    ----------
    view : CellsView
        The table, UMAP, embedding, scores and notes (see :mod:`stainfree.report.interactive`).
    cells : CellSet, optional
        Where the thumbnails come from; without it the views have none (and say so).
    path : path, optional
        What was opened, for the page's title.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.view.source import CellsSource, Query
    >>> source = CellsSource.from_cellset(make_cells(4, size=24))
    >>> page = source.page(Query(filters=(("label", "spindle"),)), page=0, size=3)
    >>> page["total"], len(page["cells"]), page["cells"][0]["label"]
    (4, 3, 'spindle')
    """

    def __init__(self, view: CellsView, *, cells=None, path: Path | None = None):
        self.view = view
        self.table = _categorical(view.table)
        self.cells = cells
        self.path = path
        self.notes = list(view.notes)
        self.positions = np.full(len(self.table), -1, np.int64)
        if cells is not None:
            ids, stored = self.table["cell_id"].to_numpy(), cells.cell_ids
            if len(ids) == len(stored) and np.array_equal(ids, stored):  # the set's own table: no lookup
                self.positions = np.arange(len(ids), dtype=np.int64)
            else:
                where = pd.Series(np.arange(len(cells)), index=pd.Index(stored.astype(str)))
                self.positions = where.reindex(ids).fillna(-1).to_numpy(np.int64)
            absent = int((self.positions < 0).sum())
            if absent:
                example = self.table["cell_id"].to_numpy()[self.positions < 0][0]
                self.notes.append(
                    f"{absent:,} of the {len(self.table):,} cells are not in the CellSet {cells.path or ''} "
                    f"(for example {example!r}): they have no thumbnail."
                )
        elif self.table is not None:
            self.notes.append("No CellSet found for these cells: no thumbnails (name one with --cells).")
        self._ranges = None
        self._select = functools.lru_cache(maxsize=32)(self._select_uncached)

    # ------------------------------------------------------------------ opening
    @classmethod
    def from_cellset(cls, cells, *, path: Path | None = None) -> CellsSource:
        """The cells of a CellSet, its table as the columns."""
        return cls(CellsView(table=cells.table), cells=cells, path=path or cells.path)  # _categorical copies it

    @classmethod
    def open(cls, path, *, cells=None) -> CellsSource:
        """Open a ``.cells`` folder, a run folder (``predictions.parquet`` and/or an embedding) or
        an ``.h5ad``; ``cells`` (a CellSet folder) overrides where the thumbnails come from.

        Raises
        ------
        StainfreeError
            Naming the path, when it is none of these or cannot be read.
        """
        from ..core.store import open_cellset
        from ..report.html import Missing, Run

        path = Path(path)
        if not path.exists():
            raise StainfreeError(f"{path}: no such file or folder")
        given = None if cells is None else open_cellset(cells)
        if (path / "cellset.json").is_file():
            return cls.from_cellset(given or open_cellset(path), path=path)
        if path.suffix == ".h5ad":
            try:
                view = read_h5ad_view(path)
            except Exception as exc:
                raise StainfreeError(f"{path}: unreadable AnnData file ({exc.__class__.__name__}: {exc})") from exc
            return cls(view, cells=given, path=path)
        if path.is_dir():
            run = Run(path)
            try:
                view = read_view(run)
            except Missing as exc:
                raise StainfreeError(f"{path}: not a CellSet, and as a run folder: {exc}") from exc
            if given is None:
                try:
                    given = run.cells()
                except Missing as exc:
                    view.notes.append(f"No thumbnails: {exc} (name the CellSet with --cells).")
            return cls(view, cells=given, path=path)
        raise StainfreeError(f"{path}: not a CellSet folder, a run folder or an .h5ad file")

    # ------------------------------------------------------------------ what the page asks
    def summary(self) -> dict:
        """The set at a glance: size, columns, channels, notes, whether there is a scatter, the
        galleries' titles and the confusion matrix's counts."""
        conf = confusion(self.view)
        return {
            "path": str(self.path or ""),
            "cells": len(self.table),
            "columns": self._columns(),
            "channels": [] if self.cells is None else list(self.cells.channels)[:MAX_THUMB_CHANNELS],
            "thumb": THUMB_SIZE,
            "page_cells": PAGE_CELLS,
            "scatter": self.view.umap is not None,
            "galleries": [
                {"title": g["title"], "groups": {k: np.asarray(v).tolist() for k, v in g["groups"].items()}} for g in self.galleries()
            ],
            "confusion": None if conf is None else {"classes": conf["classes"], "counts": conf["counts"]},
            "notes": self.notes,
        }

    @functools.cached_property
    def _galleries(self) -> list[dict]:
        return galleries(self.view)

    def galleries(self) -> list[dict]:
        """:func:`~stainfree.report.interactive.galleries`, computed once: rows of the table."""
        return self._galleries

    def select(self, query: Query) -> np.ndarray:
        """Rows of the table that ``query`` keeps, in its order (cached for the last queries)."""
        return self._select(query)

    def _select_uncached(self, query: Query) -> np.ndarray:
        rows = np.arange(len(self.table)) if query.rows is None else np.asarray(query.rows, np.int64)
        if query.rows is not None and len(rows) and (rows.min() < 0 or rows.max() >= len(self.table)):
            raise StainfreeError(f"rows must lie in 0..{len(self.table) - 1}")
        for column, value in query.filters:
            values = self._column(column).iloc[rows]
            text = values.astype("string")
            keep = text.isna().to_numpy() if value == "" else (text == value).fillna(False).to_numpy()
            rows = rows[keep]
        if query.sort:
            values = pd.to_numeric(self._column(query.sort).iloc[rows], errors="coerce").to_numpy(np.float64)
            if np.isnan(values).all():  # a text column: alphabetical, missing values last
                text = self._column(query.sort).iloc[rows].astype("string")
                known = text.notna().to_numpy()
                rank = np.unique(text[known].to_numpy(str), return_inverse=True)[1]
                order = np.argsort(-rank if query.descending else rank, kind="stable")  # ties keep their order
                rows = np.concatenate([rows[known][order], rows[~known]])
            else:
                key = np.where(np.isnan(values), np.inf, -values if query.descending else values)
                rows = rows[np.argsort(key, kind="stable")]
        return rows

    def page(self, query: Query, *, page: int = 0, size: int = PAGE_CELLS) -> dict:
        """One page of the cells ``query`` keeps: their rows, one sprite sheet of their thumbnails and
        the composition of all the cells kept (not just this page's)."""
        rows = self.select(query)
        pages = max(1, -(-len(rows) // size))
        page = int(min(max(page, 0), pages - 1))
        shown = rows[page * size : (page + 1) * size]
        return {
            "total": int(len(rows)),
            "page": page,
            "pages": pages,
            "cells": self.rows(shown),
            "thumbs": self.thumbnail_sheet(shown),
            "composition": self.composition(rows),
        }

    def rows(self, rows) -> list[dict]:
        """The table's values of some rows, JSON-ready (missing values as None), each with ``row``."""
        part = self.table.iloc[np.asarray(rows, np.int64)]
        out = []
        for row, record in zip(np.asarray(rows).tolist(), part.to_dict("records")):
            out.append({"row": row, **{str(k): _json_value(v) for k, v in record.items()}})
        return out

    def composition(self, rows: np.ndarray, *, top: int = 8) -> list[dict]:
        """Per categorical column (with few values), the most common values among ``rows``."""
        out = []
        for name in self.table.columns:
            s = self.table[name]
            if name == "cell_id" or not isinstance(s.dtype, pd.CategoricalDtype) or len(s.cat.categories) > COMPOSITION_LEVELS:
                continue
            codes = s.cat.codes.to_numpy()[rows]
            counts = np.bincount(codes + 1, minlength=len(s.cat.categories) + 1)
            order = np.argsort(-counts, kind="stable")[:top]
            levels = ["(none)", *map(str, s.cat.categories)]
            out.append({"name": str(name), "counts": [[levels[k], int(counts[k])] for k in order if counts[k]]})
        return out

    def thumbnail_sheet(self, rows) -> dict | None:
        """One WebP sprite sheet of the thumbnails of ``rows`` (a data URI), with its tile size."""
        rows = np.asarray(rows, np.int64)
        if self.cells is None or not len(rows):
            return None
        positions = self.positions[rows]
        found = positions >= 0
        shown = min(self.cells.shape[1], MAX_THUMB_CHANNELS)
        thumbs = np.zeros((len(rows), THUMB_SIZE, THUMB_SIZE * shown), np.uint8)
        if found.any():
            order = np.argsort(positions[found], kind="stable")  # read in storage order
            images = self.cells.read(positions[found][order])[:, :MAX_THUMB_CHANNELS]
            block = np.empty((found.sum(), *thumbs.shape[1:]), np.uint8)
            block[order] = thumbnails(images, self.ranges)
            thumbs[found] = block
        tiles = int(np.ceil(np.sqrt(len(rows))))
        sheet = sprite_sheets(thumbs, tiles=tiles)[0]
        return {
            "sheet": "data:image/webp;base64," + base64.b64encode(sheet).decode("ascii"),
            "tiles": tiles,
            "w": int(thumbs.shape[2]),
            "h": THUMB_SIZE,
            "missing": np.flatnonzero(~found).tolist(),
        }

    @property
    def ranges(self) -> np.ndarray:
        """Each shown channel's display range: 0.5-99.5 percentiles of the first cells of the set."""
        if self._ranges is None:
            first = self.cells.read(slice(0, min(RANGE_CELLS, len(self.cells))))[:, :MAX_THUMB_CHANNELS]
            self._ranges = channel_ranges(first)
        return self._ranges

    def cell(self, row: int) -> dict:
        """One cell: its row and its thumbnail."""
        if not 0 <= row < len(self.table):
            raise StainfreeError(f"row must lie in 0..{len(self.table) - 1}")
        return {"cell": self.rows([row])[0], "thumbs": self.thumbnail_sheet([row])}

    def points(self, colour: str | None = None, *, max_points: int = MAX_POINTS) -> dict:
        """The scatter: the UMAP of a stratified sample of at most ``max_points`` cells (by cluster,
        else class), each point's colour for ``colour`` (a column) and the legend."""
        if self.view.umap is None:
            raise StainfreeError("these cells have no UMAP: `stainfree cluster EMBEDDING.h5ad --cells CELLS -o RUN` makes one")
        sample = self._sample(max_points)
        xy = self.view.umap[sample].astype(np.float32)
        colours, legend = self.colours(colour, sample)
        return {
            "rows": sample.tolist(),
            "x": xy[:, 0].round(4).tolist(),
            "y": xy[:, 1].round(4).tolist(),
            "colour": colours,
            "legend": legend,
        }

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one source per server, kept for its life
    def _sample(self, max_points: int) -> np.ndarray:
        return stratified_sample(strata(self.view).astype(object).to_numpy(), max_points)

    def colours(self, column: str | None, rows: np.ndarray) -> tuple[list[str], list]:
        """Hex colours of ``rows`` for one column (categories: tab20; numbers: viridis in 10 steps;
        missing: grey) and the legend, ``[[value, colour], ...]``."""
        if column is None:
            return ["#4c72b0"] * len(rows), []
        s = self._column(column)
        grey = "#cccccc"
        if isinstance(s.dtype, pd.CategoricalDtype):
            palette = np.array(PALETTE["categorical"])
            codes = s.cat.codes.to_numpy()[rows]
            colours = np.where(codes >= 0, palette[np.maximum(codes, 0) % len(palette)], grey)
            levels = list(map(str, s.cat.categories))[:MAX_LEVELS]
            return colours.tolist(), [[v, palette[k % len(palette)]] for k, v in enumerate(levels)]
        palette = np.array(PALETTE["numeric"])
        values = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
        lo, hi = np.nanmin(values), np.nanmax(values)
        steps = np.floor((values[rows] - lo) / (hi - lo if hi > lo else 1.0) * len(palette))
        index = np.clip(np.nan_to_num(steps, nan=0), 0, len(palette) - 1).astype(np.int64)
        colours = np.where(np.isnan(steps), grey, palette[index])
        return colours.tolist(), [[f"{lo:.4g}", palette[0]], [f"{hi:.4g}", palette[-1]]]

    # ------------------------------------------------------------------ helpers
    def _column(self, name: str) -> pd.Series:
        if name not in self.table:
            raise StainfreeError(f"no column {name!r}; columns: {', '.join(map(str, self.table.columns))}")
        return self.table[name]

    def _columns(self) -> list[dict]:
        out = []
        for name in self.table.columns:
            s = self.table[name]
            if name == "cell_id":
                out.append({"name": "cell_id", "kind": "id"})
            elif isinstance(s.dtype, pd.CategoricalDtype):
                levels = list(map(str, s.cat.categories))
                out.append({"name": str(name), "kind": "cat", "levels": levels[:MAX_LEVELS], "more": len(levels) > MAX_LEVELS})
            else:
                out.append({"name": str(name), "kind": "num"})
        return out


def _categorical(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns as categories (compact, and fast to count), numbers as they are; cell_id as text."""
    out = {}
    for name in table.columns:
        s = table[name]
        if name == "cell_id":
            out[name] = s if pd.api.types.is_string_dtype(s) else s.astype(str)
        elif (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)) or isinstance(s.dtype, pd.CategoricalDtype):
            out[name] = s
        else:
            out[name] = s.astype("string").astype("category")
    frame = pd.DataFrame(out, index=range(len(table)))
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.remove_unused_categories()
    return frame


def _json_value(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return None
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
        return None if isinstance(value, float) and not np.isfinite(value) else value
    if isinstance(value, (int, float, bool, str)):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
