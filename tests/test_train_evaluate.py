import numpy as np
import pytest
import torch

import stainfree as sf
from stainfree.datasets.synthetic import make_cells
from stainfree.eval.baselines import run_baseline
from stainfree.eval.evaluate import cross_validate, evaluate
from stainfree.eval.metrics import (
    accuracy_interval,
    bootstrap_interval,
    classification_metrics,
    summarise,
)
from stainfree.eval.protocols import make_folds, make_splits, tuning_split
from stainfree.ml.classifier import Classifier
from stainfree.ml.models import create_model, list_models
from stainfree.ml.train import TrainConfig, class_weights, fit, robust_scaling


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels,size", [(1, 32), (2, 40), (3, 64)])
def test_every_model_takes_any_channels_and_size(name, channels, size):
    model = create_model(name, in_channels=channels, num_classes=3, input_size=size).eval()
    x = torch.randn(2, channels, size, size)
    assert model(x).shape == (2, 3)
    assert model.features(x).ndim == 2


def test_unknown_model_is_a_clear_error():
    with pytest.raises(sf.StainfreeError, match="unknown model 'resnet999'"):
        create_model("resnet999", 1, 2)


def test_robust_scaling_exact():
    x = np.arange(101, dtype=float).reshape(1, 1, 1, 101)
    p = robust_scaling(np.concatenate([x, x * 2], axis=1))
    assert p["center"] == [50.0, 100.0] and p["scale"] == [98.0, 196.0]


def test_class_weights():
    np.testing.assert_allclose(class_weights(np.array([10, 10]), "inv"), [1, 1])
    w = class_weights(np.array([1, 9]), "inv")
    assert w[0] == pytest.approx(9 * w[1]) and (w * [1, 9]).sum() == pytest.approx(10)


def test_metrics_exact_values():
    m = classification_metrics(["a"] * 9 + ["b"], ["a"] * 10)
    assert m["accuracy"] == 0.9 and m["balanced_accuracy"] == 0.5 and m["cohen_kappa"] == 0.0
    assert m["confusion_matrix"]["counts"] == [[9, 0], [1, 0]]
    assert m["per_class"]["a"] == {"precision": 0.9, "recall": 1.0, "specificity": 0.0, "n": 9}
    assert m["per_class"]["b"]["precision"] is None and m["per_class"]["b"]["specificity"] == 1.0
    perfect = classification_metrics(list("aabb"), list("aabb"), np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]]))
    assert perfect["roc_auc"] == 1.0 and perfect["cohen_kappa"] == 1.0
    three = classification_metrics(list("abc"), list("abc"), np.eye(3))
    assert three["roc_auc"] == 1.0


def test_intervals():
    assert accuracy_interval(0.5, 100) == [0.4038, 0.5962]  # Wilson (Wald gave [0.402, 0.598])
    s = summarise([0.7, 0.8, 0.9, None])
    assert s["mean"] == 0.8 and s["n"] == 3 and s["ci95"][0] < 0.8 < s["ci95"][1]
    # cells are resampled within each class: the one "b" cell is in every resample
    assert bootstrap_interval(["a"] * 9 + ["b"], ["a"] * 10, n_boot=200) == ([0.5, 0.5], 200, 0)


def test_folds_hold_whole_groups_and_refuse_too_few():
    labels = ["a", "b"] * 6
    groups = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    for train, test in make_folds(labels, groups=groups, n_folds=3):
        assert not set(np.array(groups)[train]) & set(np.array(groups)[test])
    with pytest.raises(sf.StainfreeError, match="only 6 groups for 7 folds"):
        make_folds(labels, groups=groups, n_folds=7)
    with pytest.raises(sf.StainfreeError, match="fewer than the 7 folds"):
        make_folds(labels, n_folds=7)
    np.testing.assert_allclose(
        run_baseline("majority", np.zeros((3, 1)), ["x", "y", "y"], np.zeros((2, 1)), ["x", "y"]), [[1 / 3, 2 / 3]] * 2
    )


def test_fit_learns_synthetic_lines_and_model_round_trips(tmp_path):
    cs = make_cells(60, size=32, flasks_per_line=2, random_state=0)
    images, labels = cs.images, cs.labels
    clf, history = fit(images, labels, channels=cs.channels, config=TrainConfig(epochs=15, seed=0, val_fraction=0.15, batch_size=32))
    assert 1 <= len(history) <= 15 and "val_loss" in history[0]
    train_acc = (clf.predict(images) == labels).mean()
    assert train_acc > 0.8
    clf.save(tmp_path / "m.safetensors")
    back = Classifier.load(tmp_path / "m.safetensors")
    assert back.classes == ["round", "spindle"] and back.channels == ["bf"]
    np.testing.assert_allclose(back.predict_proba(images[:8]), clf.predict_proba(images[:8]), atol=1e-6)
    with pytest.raises(sf.StainfreeError, match="model expects 1 channels"):
        back.predict_proba(np.zeros((1, 2, 32, 32)))


def test_fit_refuses_a_class_with_one_cell():
    with pytest.raises(sf.StainfreeError, match="class 'b' has 1 cell"):
        fit(np.zeros((3, 1, 8, 8)), ["a", "a", "b"], channels=["x"])


def test_group_cross_validation_beats_baselines_on_synthetic_lines():
    # one density only: with mixed densities a fold can confound density with line, which is
    # real (and what group-aware evaluation exposes) but not what this test is about
    cs = make_cells(80, size=40, flasks_per_line=3, densities=("low",), random_state=1)
    ev = cross_validate(cs, group="flask", n_folds=3, config=TrainConfig.for_data(cs, epochs=40), n_boot=200)
    pred = ev.predictions
    assert len(pred) == 160 and sorted(pred["split"].unique()) == ["fold1", "fold2", "fold3"]
    for name, fold in pred.groupby("split"):
        assert not set(fold["flask"]) & set(pred[pred.split != name]["flask"])
    m = ev.metrics
    ba = m["summary"]["balanced_accuracy"]
    assert ba["mean"] > 0.7 and ba["n"] == 3
    assert ba["mean"] > m["baselines"]["majority"]["summary"]["balanced_accuracy"]["mean"] + 0.2
    assert ba["bootstrap_unit"] == "flask"
    assert m["baselines"]["majority"]["summary"]["roc_auc"]["mean"] == 0.5
    assert m["protocol"]["n_groups"] == 6 and m["n_cells"] == 160 and m["classes"] == ["round", "spindle"]


def test_tuning_split_sets_whole_groups_apart_and_is_fixed():
    labels = np.array(["a", "b"] * 20)
    groups = np.repeat(np.arange(10), 4)
    split = tuning_split(labels, groups=groups, fraction=0.2)
    assert sorted(np.concatenate([split.tune, split.report]).tolist()) == list(range(40))
    assert not set(groups[split.tune]) & set(groups[split.report])
    assert len(set(groups[split.tune])) == 2
    assert sorted(set(labels[split.tune])) == ["a", "b"]
    again = tuning_split(labels, groups=groups, fraction=0.2)
    assert split.tune.tolist() == again.tune.tolist()
    other = tuning_split(labels, groups=groups, fraction=0.2, random_state=1)
    assert split.tune.tolist() != other.tune.tolist()
    plain = tuning_split(labels, fraction=0.25)
    assert len(plain.tune) == 10 and (labels[plain.tune] == "a").sum() == 5
    with pytest.raises(sf.StainfreeError, match="tuning fraction"):
        tuning_split(labels, fraction=0.7)


def test_random_split_with_groups_warns(caplog):
    cs = make_cells(10, size=16, flasks_per_line=2, random_state=1)
    with caplog.at_level("WARNING"):
        ev = evaluate(cs, n_folds=2, config=TrainConfig(epochs=1), baselines=["majority"], n_boot=0)
    assert "random split although the set has group columns (flask)" in caplog.text
    assert ev.metrics["warnings"]
    with pytest.raises(sf.StainfreeError, match="group column 'dish' does not exist"):
        evaluate(cs, group="dish", n_folds=2)


def test_protocol_splits():
    labels = np.array(["a", "b"] * 10)
    groups = np.repeat(["g1", "g2", "g3", "g4", "g5"], 4)
    assert len(make_splits("kfold", labels, n_folds=5, repeats=2)) == 10
    holdout = make_splits("holdout", labels, repeats=3)
    assert len(holdout) == 3 and all(len(s.test) == 4 for s in holdout)
    logo = make_splits("leave-one-group-out", labels, groups=groups)
    assert [s.name for s in logo] == ["g1", "g2", "g3", "g4", "g5"]
    assert all(set(groups[s.test]) == {s.name} for s in logo)
    cross = make_splits("cross-group", labels[:12], groups=groups[:12])  # g1, g2, g3 hold both classes
    assert sorted(s.name for s in cross) == ["g1", "g1+g2", "g1+g3", "g2", "g2+g3", "g3"]
    pairs = make_splits("cross-group", list("aabbaabb"), groups=["A1", "A1", "B1", "B1", "A2", "A2", "B2", "B2"])
    assert [s.name for s in pairs] == ["A1+B1", "A1+B2", "A2+B1", "A2+B2"] and pairs[0].pool_size == 1
    with pytest.raises(sf.StainfreeError, match="needs a group column"):
        make_splits("group-kfold", labels)
    with pytest.raises(sf.StainfreeError, match="only one value"):
        make_splits("leave-one-group-out", labels, groups=["x"] * 20)
    with pytest.raises(sf.StainfreeError, match="unknown protocol 'bogus'"):
        make_splits("bogus", labels)


def test_cross_group_draws_its_pools_to_a_budget_without_listing_them():
    import time

    # the HEK layout: 62 fields, each of one cell line (40 and 22): about 10^16 pools in all; the
    # first 5 fields of each line hold one cell, too few to train on alone
    names = np.array([f"a{i:02d}" for i in range(40)] + [f"b{i:02d}" for i in range(22)])
    groups = names.repeat([1 if name[1:] < "05" else 3 for name in names])
    labels = np.where(np.char.startswith(groups.astype(str), "a"), "293A", "HT1080")
    make_splits("kfold", labels, n_folds=2)  # scikit-learn's import is not what is timed
    t0 = time.perf_counter()
    splits = make_splits("cross-group", labels, groups=groups, random_state=7)
    mixed = make_splits("cross-group", np.tile(["x", "y", "z"], 62), groups=names.repeat(3), max_pools=7, max_pool_size=4)
    assert time.perf_counter() - t0 < 1.0
    assert [s.pool_size for s in splits] == [1] * 7 + [2] * 7 + [3] * 6  # the default budget, 20, over sizes 1-3
    # every field of the mixed set holds one cell of each class: single fields cannot train, so the
    # budget of 7 over sizes 1-4 goes 0, 3, 2, 2
    assert [s.pool_size for s in mixed] == [2, 2, 2, 3, 3, 4, 4]
    for per_pool, some, g, y in [(2, splits, groups, labels), (1, mixed, names.repeat(3), np.tile(["x", "y", "z"], 62))]:
        for s in some:  # k fields of every line; k of any field
            train, test = set(g[s.train]), set(g[s.test])
            assert not train & test and len(s.train) + len(s.test) == len(g)
            assert sorted(train) == sorted(s.name.split("+")) and len(train) == per_pool * s.pool_size
            assert np.unique(y[s.train], return_counts=True)[1].min() >= 2 and len(set(y[s.train])) == len(set(y))
    assert len({s.name for s in splits}) == 20
    again = make_splits("cross-group", labels, groups=groups, random_state=7)
    assert [s.name for s in again] == [s.name for s in splits]
    assert [s.name for s in make_splits("cross-group", labels, groups=groups, random_state=8)] != [s.name for s in splits]
    # a budget smaller than the number of sizes leaves the largest out; it is never exceeded
    assert [s.pool_size for s in make_splits("cross-group", labels, groups=groups, max_pools=2)] == [1, 2]
    with pytest.raises(sf.StainfreeError, match="max_pools and max_pool_size must be at least 1, got 0"):
        make_splits("cross-group", labels, groups=groups, max_pools=0)


def test_fit_and_fit_embedder_leave_the_global_torch_seed_alone():
    from stainfree.ml.embed import EmbedConfig, fit_embedder

    cs = make_cells(8, size=24, random_state=3).load()
    labels = cs.table["label"].astype(str).to_numpy()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(cs.images, labels, channels=cs.channels, config=TrainConfig(epochs=1, batch_size=8, seed=5))
    fit_embedder(cs.images, channels=cs.channels, config=EmbedConfig(method="autoencoder", epochs=1, batch_size=8, seed=5))
    assert torch.equal(torch.rand(3), expected)
