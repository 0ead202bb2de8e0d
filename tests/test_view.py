"""`stainfree view` (issue 15): which cells each query keeps and in which order, the pages and their
thumbnails, the JSON routes of the server, and one clear line for what cannot be served."""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error
import urllib.request

import anndata
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_cli
from stainfree.core.cellset import CellSet
from stainfree.report.cells import PALETTE
from stainfree.utils import StainfreeError
from stainfree.view.server import ViewServer, page_html
from stainfree.view.source import CellsSource, Query


def five_cells(dtype=np.uint8, channels: int = 1) -> CellSet:
    """Cell i is flat at i * 50; labels a, b, a, missing, b; sizes 3, 1, missing, 2, 5."""
    images = (np.arange(5)[:, None, None, None] * 50 * np.ones((1, channels, 4, 4))).astype(dtype)
    table = pd.DataFrame({"cell_id": list("vwxyz"), "label": ["a", "b", "a", None, "b"], "size": [3.0, 1.0, np.nan, 2.0, 5.0]})
    return CellSet(images, table, channels=[f"c{k}" for k in range(channels)])


def tiles(thumbs: dict) -> list[np.ndarray]:
    sheet = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumbs["sheet"].split(",", 1)[1]))).convert("L"))
    w, h, n = thumbs["w"], thumbs["h"], thumbs["tiles"]
    return [sheet[(k // n) * h : (k // n + 1) * h, (k % n) * w : (k % n + 1) * w] for k in range(n * (sheet.shape[0] // h))]


def test_queries_filter_and_sort_exactly():
    source = CellsSource.from_cellset(five_cells())
    rows = lambda **kw: source.select(Query(**kw)).tolist()  # noqa: E731
    assert rows() == [0, 1, 2, 3, 4]
    assert rows(filters=(("label", "a"),)) == [0, 2]
    assert rows(filters=(("label", ""),)) == [3]  # "" keeps the cells without a value
    assert rows(sort="size") == [4, 0, 3, 1, 2]  # largest first, missing last
    assert rows(sort="size", descending=False) == [1, 3, 0, 4, 2]
    assert rows(sort="label") == [1, 4, 0, 2, 3]  # text: reverse alphabetical, missing still last
    assert rows(rows=(4, 1, 2), filters=(("label", "b"),)) == [4, 1]  # a selection keeps its order
    assert rows(rows=(4, 1, 2), sort="size", descending=False) == [1, 4, 2]
    with pytest.raises(StainfreeError, match="no column 'nope'; columns: cell_id, label, size"):
        rows(sort="nope")
    with pytest.raises(StainfreeError, match=r"rows must lie in 0\.\.4"):
        rows(rows=(5,))
    assert Query.from_json({"filters": {"label": "a"}, "rows": [2, 0], "sort": "size"}) == Query((("label", "a"),), (2, 0), "size", True)


def test_pages_carry_rows_composition_and_thumbnails():
    source = CellsSource.from_cellset(five_cells())
    page = source.page(Query(), page=1, size=2)
    assert (page["total"], page["page"], page["pages"]) == (5, 1, 3)
    assert page["cells"] == [
        {"row": 2, "cell_id": "x", "label": "a", "size": None},
        {"row": 3, "cell_id": "y", "label": None, "size": 2.0},
    ]
    assert page["composition"] == [{"name": "label", "counts": [["a", 2], ["b", 2], ["(none)", 1]]}]  # of all 5 cells
    assert source.page(Query(), page=9, size=2)["page"] == 2  # past the end: the last page
    thumbs = source.thumbnail_sheet([4, 0, 2])
    assert (thumbs["w"], thumbs["h"], thumbs["tiles"], thumbs["missing"]) == (32, 32, 2, [])
    bright, dark, middle, empty = tiles(thumbs)
    assert bright.min() >= 253 and dark.max() <= 2  # each channel scaled to the 0.5-99.5 percentiles of the first cells
    assert abs(float(middle.mean()) - 255 * 100 / 200) < 3 and empty.max() == 0
    assert source.cell(1)["cell"] == {"row": 1, "cell_id": "w", "label": "b", "size": 1.0}


def test_sixteen_bit_two_channel_thumbnails_scale_each_channel():
    cells = five_cells(np.uint16, channels=2)
    images = cells.read(slice(None)).astype(np.uint16)
    images[:, 0] *= 300  # a bright channel beside a dim one
    source = CellsSource.from_cellset(CellSet(images, cells.table, channels=["bf", "dim"]))
    thumbs = source.thumbnail_sheet([4])
    assert (thumbs["w"], thumbs["h"]) == (64, 32)  # two channels side by side
    tile = tiles(thumbs)[0]
    assert tile[:, :32].min() >= 253 and tile[:, 32:].min() >= 253  # both at the top of their own range


def test_colours_of_categories_and_numbers():
    source = CellsSource.from_cellset(five_cells())
    colours, legend = source.colours("label", np.arange(5))
    c = PALETTE["categorical"]
    assert colours == [c[0], c[1], c[0], "#cccccc", c[1]] and legend == [["a", c[0]], ["b", c[1]]]
    colours, legend = source.colours("size", np.array([1, 4, 2]))
    v = PALETTE["numeric"]
    assert colours == [v[0], v[-1], "#cccccc"] and legend == [["1", v[0]], ["5", v[-1]]]
    with pytest.raises(StainfreeError, match="no UMAP"):
        source.points("label")


def test_h5ad_cells_missing_from_the_cellset_are_counted(tmp_path):
    cells = five_cells()
    cells.save(tmp_path / "c.cells")
    obs = pd.DataFrame({"label": ["a", "b", "a"]}, index=pd.Index(["v", "gone1", "gone2"]))
    umap = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    anndata.AnnData(obs=obs, obsm={"X_umap": umap}).write_h5ad(tmp_path / "e.h5ad")
    source = CellsSource.open(tmp_path / "e.h5ad", cells=tmp_path / "c.cells")
    assert any(n.startswith("2 of the 3 cells are not in the CellSet") and "'gone1'" in n for n in source.notes)
    assert source.thumbnail_sheet([0, 1])["missing"] == [1]
    points = source.points("label")
    assert points["rows"] == [0, 1, 2] and points["x"] == [0.0, 2.0, 4.0] and points["y"] == [1.0, 3.0, 5.0]
    alone = CellsSource.open(tmp_path / "e.h5ad")
    assert alone.thumbnail_sheet([0]) is None and any("--cells" in n for n in alone.notes)


def test_open_refuses_what_it_cannot_show(tmp_path):
    with pytest.raises(StainfreeError, match="no such file or folder"):
        CellsSource.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StainfreeError, match="not a CellSet, and as a run folder: no predictions.parquet"):
        CellsSource.open(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(StainfreeError, match="not a CellSet folder, a run folder or an .h5ad"):
        CellsSource.open(tmp_path / "x.txt")
    (tmp_path / "bad.h5ad").write_text("not hdf5")
    with pytest.raises(StainfreeError, match="bad.h5ad: unreadable AnnData file"):
        CellsSource.open(tmp_path / "bad.h5ad")


# ---------------------------------------------------------------------- the server
@pytest.fixture
def server():
    srv = ViewServer(CellsSource.from_cellset(five_cells()), port=0)
    srv.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def fetch(url: str, body: dict | bytes | None = None) -> tuple[int, dict | bytes]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers["Content-Type"]
    return status, json.loads(raw) if kind == "application/json" else raw


def test_server_routes(server):
    status, html = fetch(server.url)
    assert status == 200 and html.startswith(b"<!DOCTYPE html>") and b"sf-grid" in html
    status, summary = fetch(server.url + "api/summary")
    assert status == 200 and summary["cells"] == 5 and not summary["scatter"] and summary["channels"] == ["c0"]
    status, page = fetch(server.url + "api/page", {"query": {"filters": {"label": "b"}, "sort": "size"}, "page": 0})
    assert status == 200 and [c["cell_id"] for c in page["cells"]] == ["z", "w"] and page["thumbs"]["tiles"] == 2
    status, cell = fetch(server.url + "api/cell?row=3")
    assert status == 200 and cell["cell"]["label"] is None
    assert fetch(server.url + "api/cell?row=7") == (400, {"error": "row must lie in 0..4"})
    assert fetch(server.url + "api/points") == (
        400,
        {"error": "these cells have no UMAP: `stainfree cluster EMBEDDING.h5ad --cells CELLS -o RUN` makes one"},
    )
    assert fetch(server.url + "api/page", b"{not json")[0] == 400
    assert fetch(server.url + "api/nothing") == (404, {"error": "no such page: /api/nothing"})


def test_page_without_scatter_has_no_bokeh():
    html = page_html(CellsSource.from_cellset(five_cells()))
    assert len(html) < 50_000 and "sf-scatter-box" not in html and 'id="sf-grid"' in html  # bokeh's 1.5 MB only with a scatter


def test_cli_view_says_one_line_when_it_cannot_serve(tmp_path):
    result = run_cli("view", tmp_path / "missing.cells", "--no-browser")
    assert result.returncode != 0 and result.stderr.strip().endswith("missing.cells: no such file or folder")
    assert len(result.stderr.strip().splitlines()) == 1
    five_cells().save(tmp_path / "c.cells")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("view", tmp_path / "c.cells", "--no-browser", "--port", port)
    assert result.returncode != 0 and f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert run_cli("view", tmp_path / "c.cells", "--port", 70000).returncode != 0
