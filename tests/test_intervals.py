"""Intervals checked against scipy and hand computations on fixed inputs."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import stainfree as sf
from stainfree.eval._summary import cross_group_table, learning_curve_table, metrics_block
from stainfree.eval.metrics import accuracy_interval, bootstrap_interval, crossed_bootstrap_interval, summarise


def _t_interval(values, factor):
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) * math.sqrt(factor)
    return [round(v.mean() - half, 4), round(v.mean() + half, 4)]


def test_summarise_never_clips_a_metric_that_can_be_negative():
    s = summarise([-0.4, -0.3, -0.2])
    assert s["ci95"] == _t_interval([-0.4, -0.3, -0.2], 1 / 3) == [-0.5484, -0.0516]
    assert s["ci95_method"] == "t" and s["mean"] == -0.3 and s["std"] == 0.1


def test_summarise_clips_a_proportion_and_keeps_lower_below_upper():
    s = summarise([0.95, 1.0, 1.0, 0.9], bounds=(0, 1))
    assert s["ci95"] == [_t_interval([0.95, 1.0, 1.0, 0.9], 1 / 4)[0], 1.0]
    # a mean outside the bounds (a caller's mistake) still gives lower <= upper
    lo, hi = summarise([1.2, 1.3], bounds=(0, 1))["ci95"]
    assert lo <= hi == 1.0


def test_summarise_nadeau_bengio_matches_a_hand_computation():
    values = [0.81, 0.86, 0.78, 0.9, 0.84]
    train, test = [400, 400, 400, 401, 399], [100, 100, 100, 99, 101]
    s = summarise(values, bounds=(0, 1), train_sizes=train, test_sizes=test)
    ratio = np.mean(np.array(test) / np.array(train))
    assert s["ci95"] == _t_interval(values, 1 / 5 + ratio) == [0.7522, 0.9238]
    assert s["ci95_method"] == "nadeau-bengio corrected t"
    assert s["mean"] == 0.838 and s["std"] == round(float(np.std(values, ddof=1)), 4)
    # wider than the plain t interval, which ignores that the folds share training cells
    plain = summarise(values)["ci95"]
    assert s["ci95"][0] < plain[0] and plain[1] < s["ci95"][1]
    # a skipped value takes its sizes with it
    s = summarise([0.81, None, 0.78, 0.9], train_sizes=[400, 1, 400, 100], test_sizes=[100, 1000, 100, 100])
    assert s["n"] == 3 and s["ci95"] == _t_interval([0.81, 0.78, 0.9], 1 / 3 + (0.25 + 0.25 + 1) / 3)


def test_summarise_refuses_sizes_that_do_not_line_up():
    with pytest.raises(sf.StainfreeError, match="both train_sizes and test_sizes"):
        summarise([0.5, 0.6], train_sizes=[10, 10])
    with pytest.raises(sf.StainfreeError, match="got 2 values but 3 train and 3 test sizes"):
        summarise([0.5, 0.6], train_sizes=[10] * 3, test_sizes=[5] * 3)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (9, 10), (10, 10), (50, 100), (87, 93), (3, 1000), (412, 500)])
def test_accuracy_interval_is_scipy_wilson(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert accuracy_interval(k / n, n) == [round(ci.low, 4), round(ci.high, 4)]


def test_accuracy_interval_of_no_cells_is_none():
    assert accuracy_interval(float("nan"), 0) is None


def test_cell_bootstrap_is_scipy_stratified_percentile_bootstrap():
    rng = np.random.default_rng(3)
    y_true = np.array(["a"] * 60 + ["b"] * 15)
    correct = rng.random(75) < np.where(y_true == "a", 0.9, 0.6)
    y_pred = np.where(correct, y_true, np.where(y_true == "a", "b", "a"))
    ours = bootstrap_interval(y_true, y_pred, n_boot=4000, random_state=1)
    # scipy resamples each sample (class) on its own: the same scheme
    ref = stats.bootstrap(
        (correct[y_true == "a"], correct[y_true == "b"]),
        lambda a, b, axis: (a.mean(axis) + b.mean(axis)) / 2,
        n_resamples=4000,
        method="percentile",
        random_state=2,
    ).confidence_interval
    assert ours.lacking_class == 0 and ours.resamples == 4000
    np.testing.assert_allclose(ours.ci95, [ref.low, ref.high], atol=0.015)


def test_group_bootstrap_of_accuracy_is_scipy_paired_percentile_bootstrap():
    rng = np.random.default_rng(4)
    sizes = rng.integers(5, 30, 20)
    rates = rng.uniform(0.5, 1.0, 20)
    y_true, y_pred, groups, right, n = [], [], [], [], []
    for g, (size, rate) in enumerate(zip(sizes, rates)):
        ok = rng.random(size) < rate
        y_true += ["a"] * size
        y_pred += ["a" if o else "b" for o in ok]
        groups += [f"f{g}"] * size
        right.append(ok.sum())
        n.append(size)
    ours = bootstrap_interval(y_true, y_pred, groups=groups, metric="accuracy", n_boot=4000, random_state=1)
    ref = stats.bootstrap(
        (np.array(right), np.array(n)),
        lambda r, m, axis: r.sum(axis) / m.sum(axis),
        paired=True,
        n_resamples=4000,
        method="percentile",
        random_state=2,
    ).confidence_interval
    np.testing.assert_allclose(ours.ci95, [ref.low, ref.high], atol=0.015)


def test_group_bootstrap_keeps_resamples_that_lack_a_class_and_says_how_many(caplog):
    # f1 holds class a, all right; f2 class b, all wrong. Resamples {f1, f1} (1/4) score 1 over
    # class a, {f2, f2} (1/4) score 0 over class b, {f1, f2} (1/2) score 0.5.
    y_true, y_pred, groups = ["a", "a", "b", "b"], ["a", "a", "a", "a"], ["f1", "f1", "f2", "f2"]
    with caplog.at_level("INFO", logger="stainfree.eval.metrics"):
        b = bootstrap_interval(y_true, y_pred, groups=groups, n_boot=2000, random_state=0)
    assert b.ci95 == [0.0, 1.0] and b.resamples == 2000
    assert 900 < b.lacking_class < 1100  # half of them, none dropped
    assert f"{b.lacking_class} of 2000 resamples of groups lacked a class" in caplog.text
    assert bootstrap_interval(y_true, y_pred, groups=groups, n_boot=0) is None


def _predictions():
    """Two 2-fold splits of 8 cells in 4 flasks, with known right and wrong answers."""
    label = ["a", "a", "b", "b"] * 2
    rows = {
        "split": ["fold1"] * 4 + ["fold2"] * 4,
        "label": label,
        "predicted": ["a", "b", "b", "b", "a", "a", "a", "b"],
        "flask": ["f1", "f1", "f2", "f2", "f3", "f3", "f4", "f4"],
        "train_size": [4] * 4 + [4] * 4,
        "epochs": 1,
        "seconds": 0.1,
        "train_fraction": 1.0,
        "pool_size": 1,
    }
    pred = pd.DataFrame(rows)
    pred["prob_b"] = (pred["predicted"] == "b").astype(float)
    pred["prob_a"] = 1 - pred["prob_b"]
    return pred


def test_metrics_block_names_its_intervals():
    m = metrics_block(_predictions(), ["a", "b"], [], "flask", 200, 0)
    s = m["summary"]
    # both folds score accuracy 0.75 (sd 0): the interval is the point
    acc = s["accuracy"]
    assert acc["ci95_method"] == "nadeau-bengio corrected t" and acc["n"] == 2
    assert acc["ci95"] == [0.75, 0.75] and acc["ci95_binomial"] == accuracy_interval(6 / 8, 8)
    assert acc["ci95_binomial_method"] == "wilson"
    ba = s["balanced_accuracy"]
    assert ba["bootstrap_unit"] == "flask" and ba["bootstrap_resamples"] == 200
    assert 0 < ba["bootstrap_lacking_class"] < 200  # the flasks each hold one class
    assert s["cohen_kappa"]["ci95_method"] == "nadeau-bengio corrected t"


def test_kappa_interval_over_splits_can_be_negative():
    pred = _predictions()
    pred["predicted"] = ["b", "b", "a", "a", "b", "a", "a", "a"]  # worse than chance
    pred["prob_b"] = (pred["predicted"] == "b").astype(float)
    pred["prob_a"] = 1 - pred["prob_b"]
    kappa = metrics_block(pred, ["a", "b"], [], None, 0, 0)["summary"]["cohen_kappa"]
    # folds: kappa -1 and -0.5 (train 4, test 4 each): factor 1/2 + 4/4
    assert kappa["ci95"] == _t_interval([-1.0, -0.5], 1 / 2 + 1) == [-6.2519, 4.7519]
    assert kappa["mean"] == -0.75


def test_learning_curve_and_cross_group_use_the_corrected_interval():
    pred = _predictions()
    curve = learning_curve_table(pred, ["a", "b"])
    assert curve[0]["accuracy"]["ci95_method"] == "nadeau-bengio corrected t"
    table = cross_group_table(pred.assign(split=["f1+f2"] * 4 + ["f3+f4"] * 4), ["a", "b"], "flask")
    by_size = table["by_pool_size"][0]["accuracy"]
    # pairs (pool, test flask): accuracies 0.5, 1, 0.5, 0.5; 2 cells tested, 4 trained each
    assert by_size["ci95"] == [max(0.0, _t_interval([0.5, 1.0, 0.5, 0.5], 1 / 4 + 0.5)[0]), 1.0]


def test_crossed_bootstrap_resamples_pools_as_well_as_test_groups():
    # pool A gets every test field right, pool B every one wrong: the mean over two drawn pools
    # can only be 0, 0.5 or 1, so the 95% interval spans [0, 1]; a bootstrap over test fields
    # alone would see no spread at all
    y = ["a", "b"] * 6
    splits = ["A"] * 6 + ["B"] * 6
    groups = ["f1", "f2", "f3"] * 4
    predicted = y[:6] + ["b", "a"] * 3
    both = crossed_bootstrap_interval(y, predicted, splits=splits, groups=groups, n_boot=2000)
    assert both.ci95 == [0.0, 1.0] and both.resamples == 2000
    assert bootstrap_interval(y[:6], predicted[:6], groups=groups[:6], n_boot=500).ci95 == [1.0, 1.0]


def test_crossed_bootstrap_with_one_pool_is_the_group_bootstrap():
    rng = np.random.default_rng(3)
    groups = np.repeat([f"f{i}" for i in range(15)], 12)
    y = np.where(rng.random(len(groups)) < 0.5, "a", "b")
    predicted = np.where(rng.random(len(groups)) < 0.75, y, np.where(y == "a", "b", "a"))
    crossed = crossed_bootstrap_interval(y, predicted, splits=["pool"] * len(y), groups=groups, n_boot=4000, random_state=1)
    plain = bootstrap_interval(y, predicted, groups=groups, n_boot=4000, random_state=2)
    np.testing.assert_allclose(crossed.ci95, plain.ci95, atol=0.02)


def test_cross_group_headline_interval_is_the_crossed_bootstrap():
    pred = _predictions().assign(split=["f1+f2"] * 4 + ["f3+f4"] * 4)
    s = metrics_block(pred, ["a", "b"], [], "flask", 200, 0, crossed=True)["summary"]["balanced_accuracy"]
    assert s["ci95_method"] == "crossed bootstrap (training pools x test groups)"
    assert s["ci95_over_splits_method"] == "nadeau-bengio corrected t"
    assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
