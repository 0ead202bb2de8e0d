"""Nested configuration search: candidates, budget, fall-backs, and that only training cells choose."""

from __future__ import annotations

import json

import numpy as np
import pytest

import stainfree.eval.evaluate as evaluate_module
from stainfree.datasets.synthetic import make_cells
from stainfree.eval.evaluate import evaluate
from stainfree.eval.search import CANDIDATES, Search, candidate_configs, parse_budget, search_config
from stainfree.ml.train import TrainConfig
from stainfree.utils import StainfreeError


def test_candidates_apply_to_the_base_keep_fixed_fields_and_drop_duplicates():
    base = TrainConfig(model="cnn3", input_size=None, lr=3e-3)
    configs = candidate_configs(base, native_size=40)
    assert list(configs) == list(CANDIDATES)
    assert configs["default"] == base
    assert configs["lr_1e-3"].lr == 1e-3 and configs["flips"].augment == "flips"
    assert configs["cnn3_wide"].model_kwargs == {"widths": (32, 64, 64)}
    assert configs["resnet_small"].model == "resnet_small" and configs["resnet_small"].model_kwargs == {}
    assert configs["input_2x"].input_size == 80
    # large crops: the default trains at half size, 2x goes back to the native side, capped
    assert candidate_configs(TrainConfig(input_size=112), native_size=224)["input_2x"].input_size == 224
    assert candidate_configs(TrainConfig(input_size=150), native_size=300)["input_2x"].input_size == 224
    # a base that already is resnet_small: that candidate equals the default and is dropped
    assert "resnet_small" not in candidate_configs(TrainConfig(model="resnet_small"), native_size=40)
    # what the user fixed stays in every candidate
    fixed = candidate_configs(base, native_size=40, fixed={"lr", "model"})
    assert list(fixed) == ["default", "flips", "input_2x"]
    assert {c.lr for c in fixed.values()} == {3e-3} and {c.model for c in fixed.values()} == {"cnn3"}


def test_budget_parsing_and_bad_settings():
    assert parse_budget("10m") == 600.0 and parse_budget(" 2h ") == 7200.0 and parse_budget(30) == 30.0
    assert parse_budget(None) is None
    for bad in ("ten minutes", "0m", "-5s", "10d", ""):
        with pytest.raises(StainfreeError, match="is not a duration"):
            parse_budget(bad)
    with pytest.raises(StainfreeError, match="unknown search candidate 'big'"):
        Search(candidates=["default", "big"]).validate()
    with pytest.raises(StainfreeError, match="inner folds must be at least 2"):
        Search(inner_folds=1).validate()


@pytest.fixture(scope="module")
def easy():
    return make_cells(16, size=24, random_state=3).load()


def test_search_chooses_the_candidate_that_learns(easy, monkeypatch):
    # the base cannot learn (a learning rate of 1e-9); the one candidate that fixes it must win
    monkeypatch.setitem(CANDIDATES, "learns", {"lr": 3e-3})
    base = TrainConfig(epochs=12, batch_size=8, lr=1e-9)
    result = search_config(
        easy.images,
        easy.labels,
        channels=easy.channels,
        base=base,
        tta=False,
        search=Search(candidates=["default", "learns"], inner_folds=2),
    )
    assert result.chosen == "learns" and result.config.lr == 3e-3
    assert result.scores["learns"]["balanced_accuracy"] > result.scores["default"]["balanced_accuracy"] + 0.1
    assert result.notes == []
    record = result.record()
    assert record["chosen"] == "learns" and record["config"]["lr"] == 3e-3


def test_near_ties_go_to_the_plainer_candidate(easy, monkeypatch):
    # two candidates that train identically score identically: the first is kept
    monkeypatch.setitem(CANDIDATES, "same", {"patience": 9})
    base = TrainConfig(epochs=2, batch_size=8)
    result = search_config(
        easy.images, easy.labels, channels=easy.channels, base=base, tta=False, search=Search(candidates=["default", "same"], inner_folds=2)
    )
    assert result.scores["default"]["balanced_accuracy"] == result.scores["same"]["balanced_accuracy"]
    assert result.chosen == "default"


def test_a_budget_too_small_for_one_candidate_trains_the_plainest_and_says_so(easy):
    base = TrainConfig(epochs=2, batch_size=8)
    result = search_config(easy.images, easy.labels, channels=easy.channels, base=base, tta=False, budget=1e-3)
    assert result.chosen == "default" and result.config == base
    assert result.notes[0].startswith("budget 0 s is too small for one candidate (one inner fit of default took")


def test_too_few_cells_for_inner_folds_fall_back_to_the_default(easy):
    cells = easy.select(np.r_[np.arange(16), [16, 17]])  # 16 round, 2 spindle
    result = search_config(cells.images, cells.labels, channels=cells.channels, base=TrainConfig(epochs=1), search=Search(inner_folds=3))
    assert result.chosen == "default" and result.scores == {}
    assert result.notes == ["no search: a class has 2 cells, fewer than 3 inner folds; the default configuration"]


def test_evaluate_searches_on_training_cells_only_and_records_the_choice(monkeypatch):
    cells = make_cells(10, size=24, flasks_per_line=4, random_state=1)
    seen = []

    def recording(images, labels, **kwargs):
        seen.append((len(labels), kwargs["groups"]))
        return search_config(images, labels, **kwargs)

    monkeypatch.setattr(evaluate_module, "search_config", recording)
    ev = evaluate(
        cells,
        group="flask",
        n_folds=2,
        config=TrainConfig(epochs=1, batch_size=8),
        baselines=["majority"],
        n_boot=0,
        tta=False,
        final_model=True,
        search=Search(candidates=["default", "flips"], inner_folds=2),
    )
    test_sizes = ev.predictions.groupby("split").size()
    # each split's search saw exactly its training cells (all but its test flasks), by flask
    assert sorted(n for n, _ in seen[:2]) == sorted(20 - test_sizes.to_numpy())
    assert all(groups is not None and len(set(groups)) == 4 for _, groups in seen[:2])
    assert seen[2][0] == 20  # the final model's search: every cell
    search = ev.metrics["search"]
    assert sorted(search["splits"]) == sorted(test_sizes.index) and search["final"]["chosen"] in ("default", "flips")
    for name, part in ev.predictions.groupby("split"):
        assert set(part["configuration"]) == {search["splits"][name]["chosen"]}


def test_evaluate_without_search_marks_the_configuration_as_given():
    ev = evaluate(make_cells(6, size=24), protocol="kfold", n_folds=2, config=TrainConfig(epochs=1), baselines=[], n_boot=0, tta=False)
    assert set(ev.predictions["configuration"]) == {"given"} and "search" not in ev.metrics


def read_json(path):
    return json.loads(path.read_text())


def test_evaluate_and_train_commands_search_and_say_what_they_chose(tmp_path):
    from conftest import run_cli
    from stainfree.ml.classifier import Classifier

    make_cells(8, size=24, flasks_per_line=3, random_state=2).save(tmp_path / "c.cells")
    common = ["--epochs", 1, "--batch-size", 8, "--seed", 0]
    out = run_cli(
        "evaluate", tmp_path / "c.cells", "-o", tmp_path / "run", "--group", "flask", "--folds", 2, "--baselines", "majority",
        "--budget", "5m", "--lr", 0.001, *common,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[2].startswith("configuration chosen by inner cross-validation: fold") and "; final model " in lines[2]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    search = metrics["search"]
    assert search["budget_s"] == 300.0 and len(search["splits"]) == 2
    # the user's --lr is fixed, so lr_1e-3 is no candidate; every other one was scored within the budget
    assert set(search["final"]["scores"]) == {"default", "flips", "cnn3_wide", "resnet_small", "resnet", "input_2x"}
    assert read_json(tmp_path / "run" / "config.json")["search"]["fixed"] == ["batch_size", "epochs", "lr", "seed"]
    assert "Configuration search (nested)" in (tmp_path / "run" / "report.html").read_text()

    model = tmp_path / "m.safetensors"
    out = run_cli("train", tmp_path / "c.cells", "-o", model, "--search", "--group", "flask", "--model", "cnn3", *common)
    assert out.returncode == 0, out.stderr
    chosen = out.stdout.strip().splitlines()[1]
    assert chosen.startswith("configuration chosen by inner cross-validation: ")
    assert Classifier.load(model).arch == "cnn3"  # --model fixed: only cnn3 candidates


def test_accuracy_under_the_training_priors_is_reported_beside_the_equal_prior_decision():
    cells = make_cells(24, size=24, random_state=5)
    keep = np.r_[np.arange(24), np.arange(24, 30)]  # 24 round, 6 spindle
    ev = evaluate(
        cells.select(keep), protocol="kfold", n_folds=3, config=TrainConfig(epochs=2, batch_size=8), baselines=[], n_boot=0, tta=False
    )
    pred = ev.predictions
    # two classes, the majority more frequent in training: the training-prior decision only moves cells to it
    assert ((pred["predicted"] == "round") <= (pred["predicted_train_prior"] == "round")).all()
    tp = ev.metrics["train_prior"]
    by_split = pred.groupby("split").apply(lambda p: (p["predicted_train_prior"] == p["label"]).mean(), include_groups=False)
    assert tp["accuracy"]["mean"] == pytest.approx(by_split.mean(), abs=1e-4)
    assert tp["balanced_accuracy"]["n"] == 3


def _conv_weights(clf):
    return {k: v.detach().numpy() for k, v in clf.model.state_dict().items() if k.endswith("weight") and v.ndim == 4}


def test_ema_of_the_weights_follows_its_formula_at_both_ends():
    from stainfree.ml.train import fit

    cells = make_cells(8, size=24, random_state=0).load()
    kwargs = dict(channels=cells.channels)
    plain, _ = fit(cells.images, cells.labels, config=TrainConfig(epochs=3, batch_size=4), **kwargs)
    # decay ~0: the average is the last weights
    last, _ = fit(cells.images, cells.labels, config=TrainConfig(epochs=3, batch_size=4, ema=1e-12), **kwargs)
    for k, w in _conv_weights(plain).items():
        np.testing.assert_allclose(_conv_weights(last)[k], w, atol=1e-6)
    # decay ~1: the average stays where it started, the weights after the first step (torch's
    # AveragedModel copies them at its first update): within one Adam step of the initial ones,
    # whose size is the one-cycle schedule's first rate, 3e-3 / 25
    still, _ = fit(cells.images, cells.labels, config=TrainConfig(epochs=3, batch_size=4, ema=1 - 1e-9), **kwargs)
    init, _ = fit(cells.images, cells.labels, config=TrainConfig(epochs=1, batch_size=4, lr=1e-30), **kwargs)
    moved = 0.0
    for k, w in _conv_weights(init).items():
        np.testing.assert_allclose(_conv_weights(still)[k], w, atol=1.05 * 3e-3 / 25)
        moved = max(moved, float(np.abs(_conv_weights(plain)[k] - w).max()))
    assert moved > 10 * 3e-3 / 25  # training moved the raw weights much further
    with pytest.raises(StainfreeError, match="ema decay must be in"):
        TrainConfig(ema=1.0).validate()
    with pytest.raises(StainfreeError, match="ema and a validation fraction"):
        TrainConfig(ema=0.9, val_fraction=0.2).validate()


class _Shape:
    """Just what TrainConfig.for_data reads of a CellSet."""

    def __init__(self, n, side):
        self.n, self.shape = n, (n, 1, side, side)

    def __len__(self):
        return self.n


@pytest.mark.parametrize("n", [200, 350, 700, 1200, 2000])
def test_small_sets_do_not_starve_at_least_600_steps_within_150_epochs(n):
    config = TrainConfig.for_data(_Shape(n, 40))
    steps_per_epoch = int(n * 0.8) // config.batch_size  # a training fold of 5-fold cross-validation
    assert config.batch_size == 32 and 30 <= config.epochs <= 150
    assert config.epochs * steps_per_epoch >= 600
    assert (config.epochs - 1) * steps_per_epoch < 600 or config.epochs == 30  # no more epochs than the rule needs


def test_the_few_cells_rule_in_numbers():
    assert [TrainConfig.for_data(_Shape(n, 40)).epochs for n in (40, 200, 500, 1000, 20_000)] == [150, 120, 50, 30, 30]
    assert TrainConfig.for_data(_Shape(20_000, 40)).batch_size == 128


def test_stochastic_depth_is_unbiased_and_off_in_evaluation():
    import torch

    from stainfree.ml.resnet import drop_branch

    torch.manual_seed(0)
    y = torch.ones(20_000, 1, 1, 1)
    dropped = drop_branch(y, 0.3, training=True)
    assert abs(float((dropped == 0).float().mean()) - 0.3) < 0.02
    assert abs(float(dropped.mean()) - 1.0) < 0.03  # kept branches are scaled by 1 / 0.7
    assert torch.equal(drop_branch(y, 0.3, training=False), y)


def test_resnet_deepens_with_the_input_and_drops_branches_only_in_training():
    import torch

    from stainfree.ml.models import create_model

    for size, stages in ((24, 2), (40, 3), (64, 4), (224, 5)):
        net = create_model("resnet", 1, 2, input_size=size)
        assert len(net.feature_maps(torch.zeros(2, 1, size, size))) == stages + 1  # the stem, then each stage
        assert net.feature_maps(torch.zeros(2, 1, size, size))[-1].shape[-1] == -(-size // 2 ** (stages - 1))
    x = torch.randn(4, 1, 40, 40)
    torch.manual_seed(0)
    net = create_model("resnet", 1, 2, input_size=40, drop_path=0.5, dropout=0.0)
    net.train()
    assert not torch.equal(net(x), net(x))  # a different set of branches each call
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = create_model("resnet", 1, 2, input_size=40, drop_path=0.0, dropout=0.0).train()
    assert torch.equal(plain(x), plain(x))


def test_inner_fits_can_train_a_share_of_the_epochs_and_the_choice_keeps_them_all(easy, monkeypatch):
    import stainfree.eval.search as search_module

    trained = []
    real_fit = search_module.fit

    def recording(*args, config, **kwargs):
        trained.append(config.epochs)
        return real_fit(*args, config=config, **kwargs)

    monkeypatch.setattr(search_module, "fit", recording)
    base = TrainConfig(epochs=9, batch_size=8)
    search = Search(candidates=["default", "flips"], inner_folds=2, epochs_fraction=1 / 3)
    result = search_config(easy.images, easy.labels, channels=easy.channels, base=base, tta=False, search=search)
    assert trained == [3, 3, 3, 3] and result.config.epochs == 9
    with pytest.raises(StainfreeError, match="inner epochs fraction must be in"):
        Search(epochs_fraction=0).validate()
