"""The interactive views' computing (issue 15): which cells the sample and each gallery pick,
thumbnails of any bit depth and channel count, sprite sizes, and what a report says when its
data are missing or do not match."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stainfree.pl.interactive import (
    cell_thumbnails,
    confidently_wrong,
    nearest_centre,
    sprite_sheets,
    stratified_sample,
    thumbnails,
    top_by_score,
)
from stainfree.report.cells import read_view
from stainfree.report.html import Run
from stainfree.report.interactive import build_payload
from stainfree.report.sections import build_report
from test_report_browser import make_run


def payload_of(text: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="sf-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))


# ---------------------------------------------------------------------- choosing cells
def test_stratified_sample_keeps_every_class_and_shares():
    strata = np.array(["a"] * 9000 + ["b"] * 990 + ["c"] * 10)
    keep = stratified_sample(strata, 1000, random_state=1)
    assert len(keep) == 1000 and len(np.unique(keep)) == 1000 and np.all(np.diff(keep) > 0)
    counts = pd.Series(strata[keep]).value_counts().to_dict()
    assert counts == {"a": 898, "b": 100, "c": 2}  # one of each first, then the other 997 by share (largest remainders)
    assert stratified_sample(strata[:5], 10).tolist() == [0, 1, 2, 3, 4]  # small sets: every cell
    assert sorted(set(strata[stratified_sample(strata, 2)])) == ["a", "b"]  # fewer places than strata: the largest
    missing = stratified_sample(np.array(["x", None, "x", "x"], dtype=object), 2)
    assert 1 in missing  # missing values are a stratum of their own


def test_galleries_pick_exact_cells():
    scores = pd.DataFrame({"a": [0.9, 0.1, 0.6, 0.7, 0.2], "b": [0.1, 0.9, 0.4, 0.3, 0.8]})
    labels = ["a", "b", "a", "b", None]
    assert {k: v.tolist() for k, v in top_by_score(labels, scores, n=5).items()} == {"a": [0, 2], "b": [1, 3]}
    assert confidently_wrong(labels, scores).tolist() == [3]  # cell 4 has no label: never wrong
    x = np.array([[0, 0], [0, 2], [0, 1], [10, 10], [12, 10]], float)
    picks = nearest_centre(x, ["p", "p", "p", "q", None], n=2)
    assert {k: v.tolist() for k, v in picks.items()} == {"p": [2, 0], "q": [3]}


# ---------------------------------------------------------------------- thumbnails
def test_thumbnails_scale_each_channel_of_16_bit_images():
    images = np.zeros((3, 4, 16, 16), np.uint16)
    images[:, 0] = np.linspace(0, 1000, 16)[None, None, :].astype(np.uint16)  # dim channel
    images[:, 1] = np.linspace(0, 60000, 16)[None, None, :].astype(np.uint16)  # bright channel
    t = thumbnails(images, size=8)
    assert t.shape == (3, 8, 24) and t.dtype == np.uint8  # three channels shown, side by side
    assert t[0, 0, 0] < 20 and t[0, 0, 7] > 235  # each channel stretched to its own range: the dim one as the bright one
    assert np.abs(t[..., :8].astype(int) - t[..., 8:16]).max() <= 1
    assert (t[..., 16:] == 0).all()  # an empty channel stays black


def test_sprite_sheets_are_compact_and_addressable():
    rng = np.random.default_rng(0)
    thumbs = (rng.normal(128, 20, (5000, 32, 32)).clip(0, 255)).astype(np.uint8)
    sheets = sprite_sheets(thumbs)
    assert len(sheets) == 5  # 1024 cells a sheet
    assert Image.open(io.BytesIO(sheets[0])).size == (1024, 1024) and Image.open(io.BytesIO(sheets[4])).size == (1024, 29 * 32)
    assert sum(map(len, sheets)) / len(thumbs) < 1024  # noisy thumbnails still under 1 kB each


def test_cell_thumbnails_keep_the_order_asked():
    from stainfree.datasets.synthetic import make_cells

    cells = make_cells(3, size=32)
    both = cell_thumbnails(cells, [4, 1], size=32)
    assert both.shape == (2, 32, 32) and (both[::-1] == cell_thumbnails(cells, [1, 4], size=32)).all()
    assert not (both[0] == both[1]).all()


# ---------------------------------------------------------------------- reports
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("interactive"), n_per_class=20)


def test_payload_holds_every_view(small_run):
    view = read_view(Run(small_run))
    p = build_payload(Run(small_run), view, max_cells=10)
    assert p["cells"] == 40 and p["sampled"] and len(p["points"]) == 10
    assert p["shown"] == len(p["ids"]) > 10  # the sample plus the cells the galleries pick
    assert [g["title"].split(",")[0] for g in p["galleries"]][0] == "Per class"
    assert sum(map(sum, p["confusion"]["counts"])) == 40
    assert p["thumbs"]["w"] == p["thumbs"]["h"] == 32 and len(p["thumbs"]["sheets"]) == 1 and p["thumbs"]["missing"] == []
    names = {c["name"]: c for c in p["columns"]}
    assert {"label", "flask", "cluster", "predicted", "score", "area"} <= set(names) and names["cluster"]["kind"] == "cat"
    assert names["score"]["kind"] == names["area"]["kind"] == "num" and min(names["score"]["values"]) >= 0.5


def test_report_says_what_is_missing(small_run, tmp_path):
    import shutil

    import anndata

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    adata = anndata.read_h5ad(run / "clusters.h5ad")
    adata.obs_names = [f"x{i}" if i < 7 else n for i, n in enumerate(adata.obs_names)]
    adata.write_h5ad(run / "clusters.h5ad")
    text = build_report(run)
    assert "could not be drawn" not in text  # the Data section draws its examples from the cells (no data.json here)
    assert "7 of the 40 cells of this run are not in the CellSet" in text and "&#x27;x0&#x27;" in text
    assert len(payload_of(text)["thumbs"]["missing"]) == 7
    (run / "clusters.h5ad").unlink()
    text = build_report(run)
    assert "No embedding: the scatter needs an .h5ad with obsm[&#x27;X_umap&#x27;]" in text and "stainfree cluster" in text
    assert payload_of(text)["points"] == [] and payload_of(text)["confusion"] is not None
    (run / "predictions.parquet").unlink()
    assert "no predictions.parquet and no embedding with a UMAP" in build_report(run)


def test_sixteen_bit_pair_of_channels_shows_both_scaled(tmp_path):
    run = make_run(tmp_path, n_per_class=6, sixteen_bit_pair=True)
    text = build_report(run)
    thumbs = payload_of(text)["thumbs"]
    assert (thumbs["w"], thumbs["h"], thumbs["channel_names"]) == (64, 32, ["bf", "dim"])
    assert "Thumbnails show channels bf, dim side by side, each scaled to its own range." in text
    sheet = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumbs["sheets"][0].split(",", 1)[1]))).convert("L"), float)
    bf, dim = sheet[:32, :32], sheet[:32, 32:64]
    assert abs(bf.mean() - dim.mean()) < 12 and dim.std() > 20  # the dim channel stretched as brightly as brightfield
