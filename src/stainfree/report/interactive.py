"""The interactive section of report.html: the UMAP as a WebGL scatter (bokeh, inline) with the
hovered cell's thumbnail and row, galleries of selected cells, galleries by classifier score,
of the most confidently wrong cells and of the cells nearest each cluster's centre, and a
confusion matrix whose cells open their gallery. All JavaScript is inline; nothing is fetched.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd

from ..pl.interactive import MAX_CELLS, cell_thumbnails, sprite_sheets, stratified_sample
from .cells import MAX_LEVELS, PALETTE, CellsView, confusion, galleries, read_view, strata
from .html import Missing, Run, _esc

_CSS = """
.sf-view .sf-row { display: flex; gap: 1em; align-items: flex-start; flex-wrap: wrap; }
.sf-hover { min-width: 260px; font-size: 0.85em; } .sf-hover table { margin-top: 0.3em; }
.sf-thumb { width: auto; height: 64px; image-rendering: pixelated; margin: 1px; border: 1px solid #ddd; background: #000; }
.sf-strip { margin: 0.2em 0 0.6em; } .sf-legend span { display: inline-block; margin-right: 0.8em; font-size: 0.8em; }
.sf-legend i { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.25em; }
table.sf-confusion td.sf-open { cursor: pointer; color: #1a4f8b; text-decoration: underline; }
#sf-gallery { border: 1px solid #ccc; padding: 0.4em 0.8em; min-height: 3em; background: #fafafa; }
@media print { .sf-view { display: none; } }
"""


def _columns(table: pd.DataFrame) -> list[dict]:
    out = []
    for name in table.columns:
        s = table[name]
        if name == "cell_id" or s.isna().all():
            continue
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            values = [None if not np.isfinite(v) else float(f"{v:.4g}") for v in s.to_numpy(np.float64)]
            out.append({"name": str(name), "kind": "num", "values": values})
        else:
            text = s.astype("string")
            levels = sorted(text.dropna().unique(), key=_natural)
            codes = pd.Categorical(text, categories=levels).codes
            out.append({"name": str(name), "kind": "cat", "levels": levels, "codes": codes.tolist(), "colour": len(levels) <= MAX_LEVELS})
    return out


def _natural(value: str):
    """Sort key that puts "2" before "10"."""
    return (0, float(value), "") if value.replace(".", "", 1).lstrip("-").isdigit() else (1, 0.0, value)


def _thumbs(run: Run, view: CellsView, shown: np.ndarray) -> dict | None:
    """Sprite sheets of the shown cells, from the run's CellSet; notes when cells are missing."""
    try:
        cells = run.cells()
    except Missing as exc:
        view.notes.append(f"No thumbnails: {exc}.")
        return None
    where = pd.Series(np.arange(len(cells)), index=pd.Index(cells.cell_ids.astype(str)))
    absent = ~view.table["cell_id"].isin(where.index)
    if absent.any():
        view.notes.append(
            f"{int(absent.sum())} of the {len(view.table)} cells of this run are not in the CellSet {cells.path or ''} "
            f"(for example {view.table['cell_id'][absent].iloc[0]!r}): they have no thumbnail."
        )
    positions = where.reindex(view.table["cell_id"].to_numpy()[shown])
    found = positions.notna().to_numpy()
    if not found.any():
        return None
    images = cell_thumbnails(cells, positions[found].astype(np.int64).to_numpy())
    thumbs = np.zeros((len(shown), *images.shape[1:]), np.uint8)
    thumbs[found] = images
    from ..pl.interactive import SHEET_TILES, THUMB_SIZE

    return {
        "w": int(images.shape[2]),
        "h": int(images.shape[1]),
        "tiles": SHEET_TILES,
        "sheets": ["data:image/webp;base64," + base64.b64encode(b).decode("ascii") for b in sprite_sheets(thumbs)],
        "missing": np.flatnonzero(~found).tolist(),
        "channels": min(len(cells.channels), images.shape[2] // THUMB_SIZE),
        "channel_names": list(cells.channels)[: images.shape[2] // THUMB_SIZE],
    }


def build_payload(run: Run, view: CellsView, *, max_cells: int = MAX_CELLS, random_state: int = 0) -> dict:
    """Everything the page's script needs, as JSON-ready values: the shown cells' columns and
    thumbnails, the scatter's points, the galleries and the confusion matrix.

    Cells are referred to by their position among the shown cells: a stratified sample of at
    most ``max_cells`` (:func:`~stainfree.pl.interactive.stratified_sample`, by cluster or class),
    plus every cell a gallery picks (those first, so that the galleries draw from the first sprite
    sheets).

    Parameters
    ----------
    run : Run
        The run (its CellSet gives the thumbnails).
    view : CellsView
        From :func:`read_view`; notes are added to it.
    max_cells : int, default :data:`~stainfree.pl.interactive.MAX_CELLS`
        The largest sample.
    random_state : int, default 0
        Seed of the sample.

    Returns
    -------
    dict

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.report.html import Run
    >>> from stainfree.report.interactive import CellsView, build_payload
    >>> view = CellsView(pd.DataFrame({"cell_id": list("abcd"), "label": list("xxyy"), "predicted": list("xyyy")}),
    ...                  scores=pd.DataFrame({"x": [0.9, 0.4, 0.2, 0.1], "y": [0.1, 0.6, 0.8, 0.9]}))
    >>> p = build_payload(Run("nowhere"), view, max_cells=2)
    >>> p["cells"], p["shown"], p["points"], p["confusion"]["counts"], p["thumbs"]
    (4, 4, [], [[1, 1], [0, 2]], None)
    """
    chosen, matrix = galleries(view), confusion(view)
    sample = view.sample = stratified_sample(strata(view), max_cells, random_state=random_state)
    picked = [g for gallery in chosen for g in gallery["groups"].values()]
    picked += [c for row in (matrix or {}).get("cells", []) for c in row]
    picked = np.unique(np.concatenate([np.zeros(0, np.int64), *[np.asarray(p, np.int64) for p in picked]]))
    shown = np.concatenate([picked, np.setdiff1d(sample, picked)])  # the galleries' cells first: they share the first sheets
    where = np.full(len(view.table), -1, np.int64)
    where[shown] = np.arange(len(shown))

    def local(positions) -> list[int]:
        return where[np.asarray(positions, np.int64)].tolist()

    payload = {
        "cells": len(view.table),
        "shown": len(shown),
        "sampled": len(sample) < len(view.table),
        "ids": view.table["cell_id"].astype(str).to_numpy()[shown].tolist(),
        "columns": _columns(view.table.iloc[shown]),
        "points": local(sample) if view.umap is not None else [],
        "galleries": [{"title": g["title"], "groups": {k: local(v) for k, v in g["groups"].items()}} for g in chosen],
        "confusion": None,
        "thumbs": _thumbs(run, view, shown),
        "palette": PALETTE,
    }
    offered = [c["name"] for c in payload["columns"] if c["kind"] == "num" or c["colour"]]
    payload["colour"] = next((n for n in ("cluster", "leiden", "label", "predicted") if n in offered), offered[0] if offered else None)
    if matrix is not None:
        payload["confusion"] = {**matrix, "cells": [[local(c) for c in row] for row in matrix["cells"]]}
    return payload


# ---------------------------------------------------------------------- the HTML
def point_colours(column: dict, points: list[int]) -> list[str]:
    """The colour of each point for one column of the payload, as the page's script computes it.

    Parameters
    ----------
    column : dict
        A column of :func:`build_payload`: ``kind`` "cat" (``codes``) or "num" (``values``).
    points : list of int
        Positions of the points among the shown cells.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from stainfree.report.interactive import point_colours
    >>> point_colours({"kind": "cat", "codes": [1, -1, 0]}, [0, 1, 2])
    ['#ff7f0e', '#cccccc', '#1f77b4']
    >>> point_colours({"kind": "num", "values": [0.0, None, 10.0]}, [2, 1, 0])
    ['#fde725', '#cccccc', '#440154']
    """
    if column["kind"] == "cat":
        palette = PALETTE["categorical"]
        return [palette[k % len(palette)] if k >= 0 else "#cccccc" for k in np.asarray(column["codes"], np.int64)[points]]
    palette = PALETTE["numeric"]
    values = np.array([np.nan if v is None else v for v in column["values"]], np.float64)
    lo, hi = np.nanmin(values), np.nanmax(values)
    steps = np.floor((values[points] - lo) / (hi - lo if hi > lo else 1.0) * len(palette))
    return ["#cccccc" if np.isnan(k) else palette[int(min(k, len(palette) - 1))] for k in steps]


def scatter_html(x, y, colours: list[str], *, size: int = 3) -> str:
    """A bokeh WebGL scatter with its library inline, its data source named ``sf-points``: box
    (active) and lasso selection, a hover; both call ``window.sfView.hover`` and ``.select``.

    Parameters
    ----------
    x, y : array-like
        Point positions (may be empty: a page can fill the source later).
    colours : list of str
        One colour per point.
    size : int, default 3
        Point size in screen pixels.

    Returns
    -------
    str
        bokeh's JavaScript, the figure's div and the script that builds it.
    """
    from bokeh.embed import components
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool
    from bokeh.plotting import figure
    from bokeh.resources import Resources

    data = {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32), "color": list(colours)}
    source = ColumnDataSource(data, name="sf-points")
    plot = figure(
        width=620,
        height=520,
        output_backend="webgl",
        tools="pan,wheel_zoom,box_select,lasso_select,reset",
        active_drag="box_select",
        toolbar_location="above",
        x_axis_label="UMAP 1",
        y_axis_label="UMAP 2",
    )
    points = plot.scatter("x", "y", source=source, color="color", size=size, alpha=0.8, line_color=None)
    hover = CustomJS(code="if (window.sfView) window.sfView.hover(cb_data.index.indices);")
    plot.add_tools(HoverTool(renderers=[points], tooltips=None, callback=hover))
    source.selected.js_on_change("indices", CustomJS(code="if (window.sfView) window.sfView.select(cb_obj.indices);"))
    script, div = components(plot)
    return Resources(mode="inline", components=["bokeh", "bokeh-gl"]).render_js() + div + script


def _strip(cells: list[int], name: str) -> str:
    return f'<div><b>{_esc(name)}</b> ({len(cells)})<div class="sf-strip" data-cells="{",".join(map(str, cells))}"></div></div>'


def _confusion_table(confusion: dict) -> str:
    classes = confusion["classes"]
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{_esc(c)}</th>" for c in classes) + "</tr>"
    rows = []
    for i, (a, counts) in enumerate(zip(classes, confusion["counts"])):
        tds = "".join(f'<td class="sf-open" data-row="{i}" data-col="{j}">{n}</td>' if n else "<td>0</td>" for j, n in enumerate(counts))
        rows.append(f"<tr><th>{_esc(a)}</th>{tds}</tr>")
    return f'<table class="sf-confusion"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def render_view(payload: dict, view: CellsView) -> str:
    """The section's HTML: notes, the scatter with its colour choice and hover panel, the
    galleries, the confusion matrix, the gallery panel, the data and the script."""
    from importlib.resources import files

    parts = [f"<style>{_CSS}</style>", '<div class="sf-view" id="sf-view">']
    if payload["sampled"]:
        parts.append(
            f"<p><b>{payload['cells']:,} cells: the views show a stratified sample</b> (every cluster or class keeps its share; at most {MAX_CELLS:,} cells), "
            f"plus the cells the galleries pick: {payload['shown']:,} in all.</p>"
        )
    thumbs = payload["thumbs"]
    if thumbs and thumbs["channels"] > 1:
        parts.append(
            f"<p>Thumbnails show channels {_esc(', '.join(thumbs['channel_names']))} side by side, each scaled to its own range.</p>"
        )
    parts += [f'<p class="missing">{_esc(n)}</p>' for n in view.notes]
    if payload["points"]:
        offered = [c for c in payload["columns"] if c["kind"] == "num" or c["colour"]]
        options = "".join(f'<option value="{_esc(c["name"])}">{_esc(c["name"])}</option>' for c in offered)
        by = next((c for c in offered if c["name"] == payload["colour"]), None)
        colours = point_colours(by, payload["points"]) if by else ["#4c72b0"] * len(payload["points"])
        parts.append(
            "<h3>Embedding (UMAP)</h3><p>Hover a point for its cell; drag a box (or pick the lasso) to see the cells selected.</p>"
            f'<div class="sf-row"><div><label>colour by <select id="sf-colour">{options}</select></label>{scatter_html(view.umap[view.sample, 0], view.umap[view.sample, 1], colours, size=3 if len(colours) > 5000 else 6)}'
            '<div class="sf-legend" id="sf-legend"></div></div>'
            '<div class="sf-hover" id="sf-hover"><canvas class="sf-thumb" id="sf-hover-thumb" width="1" height="1"></canvas><table id="sf-hover-row"></table></div></div>'
        )
    for gallery in payload["galleries"]:
        parts.append(f"<h3>{_esc(gallery['title'])}</h3>" + "".join(_strip(cells, name) for name, cells in gallery["groups"].items()))
    if payload["confusion"]:
        parts.append("<h3>Confusion matrix (click a count to see its cells)</h3>" + _confusion_table(payload["confusion"]))
    parts.append(
        '<h3 id="sf-gallery-title">Gallery</h3><div id="sf-gallery"><p>Select cells in the scatter or click the confusion matrix.</p></div>'
    )
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    parts.append(f'</div><script type="application/json" id="sf-data">{data}</script>')
    parts.append(f"<script>{files('stainfree.report').joinpath('interactive.js').read_text()}</script>")
    return "".join(parts)


def section_explore(run: Run) -> str:
    """The interactive section of a run's report (:func:`~stainfree.report.cells.read_view`,
    :func:`build_payload`, :func:`render_view`); :class:`~stainfree.report.html.Missing` when there
    is nothing to show.

    Parameters
    ----------
    run : Run
        The run folder whose report it is.

    Returns
    -------
    str
        HTML, its script and data inline.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.report.html import Missing, Run
    >>> from stainfree.report.interactive import section_explore
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         section_explore(Run(tmp))
    ...     except Missing as exc:
    ...         print(str(exc)[:39])
    no predictions.parquet and no embedding
    """
    view = read_view(run)
    return render_view(build_payload(run, view), view)
