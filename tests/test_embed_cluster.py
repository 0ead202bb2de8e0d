"""Embeddings, the Barlow Twins loss, clustering, composition with enrichment, probes, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from stainfree.core.cellset import CellSet
from stainfree.datasets.synthetic import make_cells
from stainfree.ml.embed import (
    EMBED_METHODS,
    EmbedConfig,
    Embedder,
    embed_cells,
    fit_embedder,
)
from stainfree.ml.losses import BarlowTwinsLoss
from stainfree.tl.cluster import cluster_embedding, composition, enrichment
from stainfree.tl.probe import probe, regression_probe


def _reference_barlow(z1, z2, lam):
    z1 = (z1 - z1.mean(0)) / z1.std(0)
    z2 = (z2 - z2.mean(0)) / z2.std(0)
    c = z1.T @ z2 / len(z1)
    on = ((1 - np.diag(c)) ** 2).sum()
    off = (c**2).sum() - (np.diag(c) ** 2).sum()
    return on + lam * off


def test_barlow_twins_loss_matches_the_formula_and_its_invariances():
    import torch

    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(64, 8)), rng.normal(size=(64, 8))
    loss = BarlowTwinsLoss(0.01)
    got = float(loss(torch.tensor(z1), torch.tensor(z2)))
    assert got == pytest.approx(_reference_barlow(z1, z2, 0.01), rel=1e-9)
    # each feature is standardised over the batch: shifting or scaling one changes nothing
    z1_moved = z1 * np.array([3, 1, 1, 1, 1, 1, 1, 0.5]) + 7
    assert float(loss(torch.tensor(z1_moved), torch.tensor(z2))) == pytest.approx(got, rel=1e-9)
    # two identical views with decorrelated features: the cross-correlation is the identity
    q, _ = np.linalg.qr(rng.normal(size=(64, 8)))
    q = q - q.mean(0)
    assert float(loss(torch.tensor(q), torch.tensor(q))) < 1e-6 or _reference_barlow(q, q, 0.01) == pytest.approx(
        float(loss(torch.tensor(q), torch.tensor(q)))
    )
    assert float(BarlowTwinsLoss(0.0)(torch.tensor(z1), torch.tensor(z1))) == pytest.approx(0.0, abs=1e-9)


def test_pca_embedding_is_pca_of_the_normalised_pixels(tmp_path):
    from sklearn.decomposition import PCA

    cells = make_cells(20, size=16, random_state=1)
    emb, _ = fit_embedder(cells.read(slice(None)), channels=cells.channels, config=EmbedConfig(method="pca", dim=5))
    x = emb.prepare(cells.read(slice(None))).reshape(len(cells), -1)
    expected = PCA(5, random_state=0).fit_transform(x)
    got = emb.transform(cells.read(slice(None)))
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-3)  # up to the sign of each axis
    emb.save(tmp_path / "p.safetensors")
    np.testing.assert_array_equal(Embedder.load(tmp_path / "p.safetensors").transform(cells.read(slice(None))), got)
    # the component count is the one asked for (64 included), or 50 when none is
    more = make_cells(40, size=16, random_state=1).read(slice(None))
    assert fit_embedder(more, channels=["bf"], config=EmbedConfig(method="pca", dim=64))[0].width == 64
    assert fit_embedder(more, channels=["bf"], config=EmbedConfig(method="pca"))[0].width == 50


def test_large_crops_train_at_half_size_and_outputs_make_their_folder(tmp_path):
    from stainfree.ml.embed import embed_cells

    images = make_cells(6, size=144, random_state=2).read(slice(None))
    config = EmbedConfig(method="slc", model="cnn3", epochs=1, batch_size=8, dim=8, copies=1)
    assert fit_embedder(images, channels=["bf"], config=config)[0].input_size == (72, 72)
    assert fit_embedder(images, channels=["bf"], config=dataclasses.replace(config, input_size=144))[0].input_size == (144, 144)
    assert fit_embedder(images, channels=["bf"], config=EmbedConfig(method="pca", dim=3))[0].input_size == (144, 144)
    out = tmp_path / "not" / "yet" / "e.h5ad"
    embed_cells(make_cells(4, size=16), method="pca", config=EmbedConfig(dim=3), out=out)
    assert [p.name for p in out.parent.iterdir()] == ["e.h5ad"]


@pytest.mark.parametrize("method", [m for m in EMBED_METHODS if m != "pca"])
def test_every_trained_embedder_trains_saves_and_reloads(method, tmp_path):
    cells = make_cells(12, size=16, random_state=2)
    images = cells.read(slice(None))
    config = EmbedConfig(method=method, model="cnn3" if method == "slc" else None, epochs=1, batch_size=8, dim=8)
    emb, history = fit_embedder(images, channels=cells.channels, config=config)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    x = emb.transform(images)
    assert x.shape[0] == 24 and np.isfinite(x).all()
    emb.save(tmp_path / "e.safetensors")
    np.testing.assert_allclose(Embedder.load(tmp_path / "e.safetensors").transform(images), x, rtol=1e-5, atol=1e-6)


def test_stage_pooling_and_dihedral_averaging():
    import torch

    cells = make_cells(12, size=16, random_state=4)
    images = cells.read(slice(None))
    config = EmbedConfig(method="barlow", model="resnet_small", epochs=1, batch_size=8, dim=8, tta="none")
    emb, _ = fit_embedder(images, channels=cells.channels, config=config)
    assert emb.config["pooling"] == "stages+std" and emb.width == 2 * (16 + 16 + 32 + 64)  # stem and three stages
    with torch.no_grad():
        maps = emb.network.eval().feature_maps(torch.from_numpy(emb.prepare(images)))
    means = np.concatenate([m.mean((2, 3)).numpy() for m in maps], 1)
    stds = np.concatenate([m.numpy().reshape(len(m), m.shape[1], -1).std(2) for m in maps], 1)
    np.testing.assert_allclose(emb.transform(images), np.concatenate([means, stds], 1), rtol=1e-4, atol=1e-5)
    emb.config["pooling"] = "stages"
    np.testing.assert_allclose(emb.transform(images), means, rtol=1e-5, atol=1e-6)
    emb.config["pooling"] = "stages+std"
    # averaged over the eight flips/rotations, a turned or mirrored cell embeds exactly as itself
    emb.config["tta"] = "dihedral"
    x = emb.transform(images)
    np.testing.assert_allclose(emb.transform(np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3)))), x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb.transform(np.ascontiguousarray(images[..., ::-1])), x, rtol=1e-4, atol=1e-5)
    emb.config["tta"] = "none"
    assert not np.allclose(emb.transform(np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3)))), emb.transform(images), atol=1e-3)
    # the defaults: stage pooling for barlow, the model's own features for slc, no averaging
    default = fit_embedder(images, channels=cells.channels, config=EmbedConfig(method="barlow", epochs=1, batch_size=8))[0]
    assert (default.arch, default.config["dim"], default.config["pooling"], default.config["tta"]) == (
        "resnet_small",
        128,
        "stages+std",
        "none",
    )
    slc = fit_embedder(images, channels=cells.channels, config=EmbedConfig(method="slc", model="cnn3", epochs=1, batch_size=8))[0]
    assert (slc.config["pooling"], slc.config["tta"], slc.width) == ("last", "none", 32)
    assert (
        fit_embedder(images, channels=cells.channels, config=EmbedConfig(method="barlow", model="fc2", epochs=1, batch_size=8, dim=8))[
            0
        ].config["pooling"]
        == "last"
    )
    with pytest.raises(ValueError, match="needs a convolutional model with stages"):
        fit_embedder(
            images,
            channels=cells.channels,
            config=EmbedConfig(method="barlow", model="fc2", pooling="stages", epochs=1, batch_size=8, dim=8),
        )
    with pytest.raises(ValueError, match="applies to slc and barlow, not pca"):
        EmbedConfig(method="pca", pooling="stages").validate()
    with pytest.raises(ValueError, match="pooling must be stages, stages[+]std or last, got 'max'"):
        EmbedConfig(method="barlow", pooling="max").validate()
    with pytest.raises(ValueError, match="unknown augmentation 'spin'"):
        EmbedConfig(method="barlow", augment="flip,spin").validate()


def test_embed_errors():
    cells = make_cells(3, size=16, random_state=0)
    with pytest.raises(ValueError, match="too few for barlow"):
        fit_embedder(cells.read(slice(None)), channels=cells.channels, config=EmbedConfig(method="barlow"))
    with pytest.raises(ValueError, match="unknown embedding method 'umap'"):
        EmbedConfig(method="umap").validate()
    with pytest.raises(ValueError, match="needs cell masks"):
        fit_embedder(make_cells(10, size=16).read(slice(None)), channels=["bf"], config=EmbedConfig(method="barlow", blackout="full"))


def _blobs(n=60, centres=((0, 0), (6, 0), (0, 6)), seed=0):
    import anndata

    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 0.5, (n, 6)) + np.r_[c, [0] * 4] for c in centres])
    truth = np.repeat(np.arange(len(centres)), n)
    obs = pd.DataFrame({"cell_id": [f"c{i}" for i in range(len(x))], "truth": truth.astype(str)}, index=[f"c{i}" for i in range(len(x))])
    ad = anndata.AnnData(X=x.astype(np.float32), obs=obs)
    ad.obsm["X_test"] = x
    return ad, truth


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_clustering_recovers_three_blobs(method):
    from sklearn.metrics import adjusted_rand_score

    ad, truth = _blobs()
    cluster_embedding(ad, key="X_test", method=method, k_range=(2, 6), min_cluster_size=20, leaf=False)
    assert ad.obsm["X_umap"].shape == (180, 2)
    info = ad.uns["stainfree_cluster"]  # nested dicts, writable to .h5ad
    assert info["clusters"] == 3
    assert adjusted_rand_score(truth, ad.obs["cluster"].astype(str)) > 0.95
    if method == "kmeans":
        assert info["k"] == 3 and max(info["scan"]["silhouette"]) == info["scan"]["silhouette"][1]


def test_one_blob_says_it_found_a_single_cluster(caplog):
    ad, _ = _blobs(centres=((0, 0),))
    cluster_embedding(ad, key="X_test", method="hdbscan", min_cluster_size=20, leaf=False)
    assert "found a single cluster" in caplog.text


def test_composition_and_enrichment_exact():
    # group A: 8 cells in cluster 0, 2 in 1; group B: 2 in 0, 8 in 1
    obs = pd.DataFrame({"cluster": ["0"] * 8 + ["1"] * 2 + ["0"] * 2 + ["1"] * 8, "culture": ["A"] * 10 + ["B"] * 10})
    frac = composition(obs, "culture")
    assert frac.loc["A", "0"] == 0.8 and frac.loc["B", "1"] == 0.8
    table = enrichment(obs, "culture").set_index(["group", "cluster"])
    from scipy.stats import fisher_exact

    assert table.loc[("A", "0"), "p"] == pytest.approx(fisher_exact([[8, 2], [2, 8]])[1])
    assert table.loc[("A", "0"), "expected"] == 5.0 and table.loc[("A", "0"), "cells"] == 8
    assert table.loc[("A", "0"), "call"] == "enriched" and table.loc[("A", "1"), "call"] == "depleted"
    assert (table["q"] >= table["p"]).all()
    with pytest.raises(ValueError, match="has only one value"):
        composition(obs.assign(culture="A"), "culture")
    with pytest.raises(ValueError, match="group column 'dish' does not exist"):
        enrichment(obs, "dish")


def test_probes_on_a_separable_embedding():
    ad, truth = _blobs()
    x = ad.obsm["X_test"]
    p = probe(x, truth.astype(str), kind="logreg")
    assert p["balanced_accuracy"] == 1.0 and p["majority"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert np.trace(np.asarray(p["confusion_matrix"]["counts"])) == 180
    groups = np.tile(np.arange(6), 30)
    assert probe(x, truth.astype(str), kind="rf", groups=groups)["group_aware"]
    assert regression_probe(x, x[:, 0] * 2 + 1)["pearson_r"] > 0.95
    # a linear target: ridge recovers it almost exactly, noise alone gives nothing
    assert regression_probe(x, x[:, 0] * 2 + 1, kind="ridge")["pearson_r"] > 0.999
    assert abs(regression_probe(x, np.random.default_rng(0).normal(size=180), kind="ridge")["pearson_r"]) < 0.3
    with pytest.raises(ValueError, match="rf or ridge"):
        regression_probe(x, x[:, 0], kind="svm")
    with pytest.raises(ValueError, match="one value only"):
        probe(x, ["a"] * 180)


def test_model_path_embeds_with_a_classifier(tmp_path):
    from stainfree.ml.train import TrainConfig, fit

    cells = make_cells(10, size=16, random_state=3)
    clf, _ = fit(cells.read(slice(None)), cells.labels, channels=cells.channels, config=TrainConfig(epochs=1, batch_size=8))
    clf.save(tmp_path / "m.safetensors")
    ad = embed_cells(cells, method=f"model:{tmp_path / 'm.safetensors'}")
    np.testing.assert_allclose(ad.obsm["X_model"], clf.embed(cells.read(slice(None))), rtol=1e-5)
    with pytest.raises(ValueError, match="a classifier, not an embedder"):
        Embedder.load(tmp_path / "m.safetensors")


def test_embed_and_cluster_from_the_command_line(tmp_path):
    from stainfree.core.cellset import CellSet

    one = make_cells(40, size=24, random_state=5)
    # a second channel standing in for a stain: the embedding and its pixel probes never see it
    stain = np.full_like(one.read(slice(None)), 7)
    cells = CellSet(np.concatenate([one.read(slice(None)), stain], axis=1), one.table, channels=["bf", "stain"], groups=one.groups)
    cells.save(tmp_path / "c.cells")
    r = run_cli("embed", tmp_path / "c.cells", "-o", tmp_path / "e.h5ad", "--method", "pca", "--dim", 10, "--channels", "bf")
    assert r.returncode == 0, r.stderr
    import anndata

    ad = anndata.read_h5ad(tmp_path / "e.h5ad")
    assert ad.obsm["X_pca"].shape == (80, 10) and ad.obs["cell_id"].tolist() == cells.cell_ids.tolist()
    assert ad.uns["stainfree_embed"]["settings"]["method"] == "pca"  # nested dicts, not JSON strings
    assert list(ad.uns["stainfree_embed"]["history"].columns) == ["explained_variance"]
    r = run_cli(
        "cluster",
        tmp_path / "e.h5ad",
        "-o",
        tmp_path / "cl",
        "--by",
        "label",
        "--probe",
        "label",
        "--probe-group",
        "flask",
        "--regress",
        "area",
        "--cells",
        tmp_path / "c.cells",
        "--k-range",
        "2,5",
    )
    assert r.returncode == 0, r.stderr
    assert "probe label: balanced accuracy" in r.stdout and "probe area: Pearson r" in r.stdout
    out = tmp_path / "cl"
    summary = json.loads((out / "clusters.json").read_text())
    assert set(summary["probes"]["label"]) == {"rf", "logreg", "rf on pixels", "logreg on pixels"}
    assert set(summary["regressions"]["area"]) == {"rf", "ridge", "rf on pixels", "ridge on pixels"}
    assert summary["probes"]["label"]["logreg on pixels"]["cells"] == 80
    assert summary["probes"]["label"]["logreg on pixels"]["features"] == 24 * 24 and summary["probes"]["label"]["rf"]["features"] == 10
    assert {"clusters.h5ad", "clusters.json", "composition_label.csv", "enrichment_label.csv", "report.html"} <= {
        p.name for p in out.iterdir()
    }
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {
        "umap_cluster.png",
        "umap_label.png",
        "umap_flask.png",
        "cluster_gallery.png",
        "cluster_kmeans_scan.png",
        "composition_label.png",
        "cluster_matrices.png",
    } <= figures
    clustered = anndata.read_h5ad(out / "clusters.h5ad")
    assert "X_umap" in clustered.obsm and "cluster" in clustered.obs
    report = (out / "report.html").read_text()
    assert report.count("<img") == len(figures) and "Not in this report" not in report
    # the interactive views: the scatter of every cell, thumbnails of the embedded channel only
    assert '<option value="cluster">' in report and '"points":[' in report and '"channel_names":["bf"]' in report
    assert "Per cluster, the cells nearest its centre" in report and '"missing":[]' in report
    for args, message in [
        (["--key", "X_nope"], "no embedding 'X_nope'"),
        (["--k", "500"], "k = 500 must be at least 2 and less than the number of cells (80)"),
        (["--by", "nope"], "column 'nope' does not exist"),
        (["--method", "dbscan"], "unknown clustering method 'dbscan'"),
    ]:
        r = run_cli("cluster", tmp_path / "e.h5ad", "-o", tmp_path / "bad", *args)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert not (tmp_path / "bad").exists()
    # cells whose channels are named otherwise: no pixel probe on channels the embedding never saw
    CellSet(stain, one.table, channels=["stain"], groups=one.groups).save(tmp_path / "renamed.cells")
    r = run_cli("cluster", tmp_path / "e.h5ad", "-o", tmp_path / "cl2", "--probe", "label", "--cells", tmp_path / "renamed.cells", "--k", 2)
    assert r.returncode == 0 and "probes on raw pixels skipped: the cells lack the embedding's channel(s) bf" in r.stderr, r.stderr
    assert set(json.loads((tmp_path / "cl2" / "clusters.json").read_text())["probes"]["label"]) == {"rf", "logreg"}
    (tmp_path / "x.h5ad").write_text("nope")
    r = run_cli("cluster", tmp_path / "x.h5ad", "-o", tmp_path / "bad")
    assert r.returncode == 1 and "not a readable .h5ad" in r.stderr


def test_group_column_with_one_value_is_refused_for_composition(tmp_path):
    table = pd.DataFrame({"cell_id": [f"c{i}" for i in range(30)], "label": ["a"] * 30, "dish": ["d1"] * 30})
    cells = CellSet(np.random.default_rng(0).normal(size=(30, 1, 8, 8)).astype(np.float32), table, channels=["bf"])
    ad = embed_cells(cells, method="pca", config=EmbedConfig(dim=4))
    from stainfree.workflows.cluster import run_cluster

    with pytest.raises(ValueError, match="'dish' has only one value"):
        run_cluster(ad, tmp_path / "o", by=["dish"], k=2)
    assert not (tmp_path / "o").exists()
