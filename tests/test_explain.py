"""Feature ranking by Jensen-Shannon divergence, the scatter partner, saliency and activations."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from stainfree.datasets.synthetic import make_cells
from stainfree.ml.saliency import activation_maps, saliency
from stainfree.pp import features_to_anndata
from stainfree.tl.rank import Separation, js_divergence, rank_features
from stainfree.workflows.explain import run_explain


def test_js_divergence_matches_the_reference_formula():
    from scipy.spatial.distance import jensenshannon

    a = np.array([0.0] * 3 + [1.0] * 5 + [2.0] * 2)
    b = np.array([1.0] * 2 + [2.0] * 8)
    # with 3 bins over [0, 2] the histograms are the value counts
    p, q = np.array([3, 5, 2]) / 10, np.array([0, 2, 8]) / 10
    expected = jensenshannon(p, q) ** 2  # scipy's distance is the root of the divergence (nats)
    assert js_divergence(a, b, bins=3) == pytest.approx(expected, rel=1e-12)
    assert js_divergence(b, a, bins=3) == pytest.approx(expected, rel=1e-12)
    assert js_divergence(np.zeros(10), np.ones(10)) == pytest.approx(np.log(2))
    assert js_divergence(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert np.isnan(js_divergence(np.array([np.nan]), np.array([1.0])))


def _two_groups(n=300, seed=0):
    """AnnData of four features: obs['line'] small or large; rows shuffled, so only obs ties a
    cell to its group."""
    rng = np.random.default_rng(seed)
    group = np.array(["small"] * n + ["large"] * n)
    large = group == "large"
    area = rng.normal(100, 10, 2 * n) + 40 * large
    table = pd.DataFrame(
        {
            "cell_id": [f"c{i}" for i in range(2 * n)],
            "area": area,
            "area_twice": 2 * area + 5,  # the same information, perfectly correlated
            "roughness": rng.normal(0, 1, 2 * n) + 1.0 * large,  # separates; within a group independent of area
            "noise": rng.normal(0, 1, 2 * n),
        }
    )
    cells = pd.DataFrame({"cell_id": table["cell_id"], "line": group}).sample(frac=1.0, random_state=1)
    return features_to_anndata(table.sample(frac=1.0, random_state=2), obs=cells)


def test_ranking_puts_the_separating_feature_first_and_picks_a_weakly_correlated_partner():
    adata = _two_groups()
    assert rank_features(adata, "line", group="small", reference="large", svm_top=4) is None
    s = Separation.from_uns(adata)
    assert s.ranking["feature"].tolist()[:2] in (["area", "area_twice"], ["area_twice", "area"])
    assert s.ranking["feature"].iloc[-1] == "noise"
    assert s.ranking.set_index("feature").loc["noise", "jsd"] < 0.05
    assert s.top in ("area", "area_twice")
    assert s.partner == "roughness"  # area_twice ranks higher but is the same measurement
    rho = s.ranking.set_index("feature")["spearman_with_top"]
    assert rho["area_twice"] == pytest.approx(1.0)
    assert abs(rho["roughness"]) < 0.5
    assert s.n_a == s.n_b == 300
    assert s.ranking.set_index("feature").loc["area", "median_b"] > s.ranking.set_index("feature").loc["area", "median_a"] + 30
    score = {frozenset((r.feature_x, r.feature_y)): r.svm_balanced_accuracy for r in s.pairs.itertuples()}
    assert len(score) == 6 and max(score.values()) > 0.95
    assert score[frozenset(("roughness", "noise"))] < score[frozenset(("area", "roughness"))] - 0.1


def test_ranking_is_stored_like_scanpy_and_survives_h5ad(tmp_path):
    from stainfree.io.export import write_h5ad

    adata = _two_groups(60)
    copy = rank_features(adata, "line", group="large", reference="rest", key_added="by_line", copy=True)
    assert "by_line" not in adata.uns and copy.uns["by_line"]["params"]["reference"] == "rest"
    write_h5ad(copy, tmp_path / "f.h5ad")
    back = anndata.read_h5ad(tmp_path / "f.h5ad")
    s = Separation.from_uns(back, "by_line")
    assert s.a == "large" and s.n_a == s.n_b == 60
    assert s.ranking["feature"].tolist() == copy.uns["by_line"]["ranking"]["feature"].tolist()


def test_group_errors_name_the_problem():
    adata = _two_groups(20)
    with pytest.raises(ValueError, match="group 'medium' of column 'line' has no cells"):
        rank_features(adata, "line", group="small", reference="medium")
    with pytest.raises(ValueError, match="column 'nope' does not exist"):
        rank_features(adata, "nope")
    adata.obs["three"] = adata.obs["line"].where(np.arange(adata.n_obs) % 3 != 0, "other").to_numpy()
    with pytest.raises(ValueError, match="has 3 values"):
        rank_features(adata, "three")
    rank_features(adata, "three", group="small", reference="rest")
    s = Separation.from_uns(adata)
    assert s.b == "rest" and s.n_a + s.n_b == adata.n_obs


def test_explain_writes_the_folder_atomically(tmp_path):
    adata = _two_groups(50)
    out, s = run_explain(adata, tmp_path / "ex", groupby="line", svm_top=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["explain.json", "pairs.csv", "ranking.csv", "ranking.png", "scatter.png"]
    body = json.loads((out / "explain.json").read_text())
    assert body["top"] == s.top and body["partner"] == "roughness"
    with pytest.raises(ValueError, match="already exists"):
        run_explain(adata, tmp_path / "ex", groupby="line")


def test_explain_cli_on_measured_synthetic_lines(tmp_path):
    cells = make_cells(40, size=32, random_state=1)
    cells.save(tmp_path / "c.cells")
    assert run_cli("features", tmp_path / "c.cells", "-o", tmp_path / "f.parquet").returncode == 0
    r = run_cli("explain", tmp_path / "f.parquet", "--by", "label", "--from", tmp_path / "c.cells", "-o", tmp_path / "ex")
    assert r.returncode == 0, r.stderr
    assert "1. " in r.stdout and "JSD" in r.stdout
    ranking = pd.read_csv(tmp_path / "ex" / "ranking.csv")
    # the synthetic lines differ in size and shape first of all
    assert ranking["jsd"].iloc[0] > 0.3
    r = run_cli("explain", tmp_path / "f.parquet", "--by", "flask", "--from", tmp_path / "c.cells", "-o", tmp_path / "ex2")
    assert r.returncode == 1 and "values" in r.stderr and "--groups" in r.stderr
    r = run_cli("explain", tmp_path / "f.parquet", "--by", "nope", "--from", tmp_path / "c.cells", "-o", tmp_path / "ex3")
    assert r.returncode == 1 and "column 'nope' does not exist" in r.stderr
    r = run_cli("explain", tmp_path / "f.parquet", "--by", "label", "-o", tmp_path / "ex4")
    assert r.returncode == 1 and "--from" in r.stderr
    assert run_cli("features", tmp_path / "c.cells", "-o", tmp_path / "f.h5ad").returncode == 0
    features = anndata.read_h5ad(tmp_path / "f.h5ad")
    assert features.obs_names.tolist() == cells.cell_ids.tolist() and "label" in features.obs
    assert features.uns["stainfree_features"]["texture_scales"].tolist() == [3, 5]
    r = run_cli("explain", tmp_path / "f.h5ad", "--by", "label", "--from", tmp_path / "c.cells", "-o", tmp_path / "ex5")
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / "ex5" / "ranking.csv")["feature"].tolist() == ranking["feature"].tolist()


class _Window:
    """A stand-in classifier whose score depends only on the pixels in a window."""

    def __init__(self, window):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
                with torch.no_grad():
                    self.conv.weight.zero_()
                    self.conv.weight[0, 0, 1, 1] = 1.0
                    self.conv.weight[1, 0, 1, 1] = -1.0
                self.register_buffer("window", torch.as_tensor(window, dtype=torch.float32))

            def forward(self, x):
                return (self.conv(x) * self.window).sum(dim=(2, 3))

        self.model = Net()
        self.arch = "window"
        self.channels = ["bf"]
        self.classes = ["a", "b"]

    def prepare(self, images):
        return np.asarray(images, np.float32)


def test_saliency_lives_where_the_model_looks():
    window = np.zeros((16, 16), np.float32)
    window[4:8, 9:13] = 1
    clf = _Window(window)
    images = np.random.default_rng(0).normal(1, 0.2, (2, 1, 16, 16)).astype(np.float32)
    for method in ("vanilla", "smoothgrad"):
        maps = saliency(clf, images, method=method, n_samples=4)
        assert maps.shape == (2, 16, 16)
        inside = maps[:, window > 0]
        outside = maps[:, window == 0]
        assert inside.min() > 0.5 and outside.max() < 1e-6
    layers = activation_maps(clf, images[0])
    assert [name for name, _ in layers] == ["conv"]
    np.testing.assert_allclose(layers[0][1][0], images[0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="vanilla or smoothgrad"):
        saliency(clf, images, method="gradcam")
