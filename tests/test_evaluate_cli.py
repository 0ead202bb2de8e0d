import json

import pandas as pd
import pytest

import stainfree as sf
from conftest import run_cli as run
from stainfree.datasets.synthetic import make_cells
from stainfree.eval.evaluate import evaluate
from stainfree.ml.train import TrainConfig
from stainfree.utils import read_parquet


@pytest.fixture(scope="module")
def small_cells(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "s.cells"
    make_cells(24, size=24, flasks_per_line=3, random_state=2).save(path)
    return path


def test_evaluate_then_predict(small_cells, tmp_path):
    out = run(
        "evaluate", small_cells, "-o", tmp_path / "run", "--group", "flask", "--folds", 3, "--epochs", 2, "--baselines", "majority,area_svm"
    )
    assert out.returncode == 0, out.stderr
    assert "by held-out flask (3 folds over 6 groups)" in out.stdout
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["protocol"]["name"] == "group-kfold" and set(m["baselines"]) == {"majority", "area_svm"}
    assert "<title>stainfree evaluate: run</title>" in (tmp_path / "run" / "report.html").read_text()  # not the temporary name
    pred = run("predict", tmp_path / "run" / "model.safetensors", small_cells, "-o", tmp_path / "p.parquet", "--tta")
    assert pred.returncode == 0, pred.stderr
    table = read_parquet(tmp_path / "p.parquet")
    assert len(table) == 48 and {"cell_id", "label", "predicted", "prob_round", "prob_spindle"} <= set(table.columns)
    assert "against the labels (" in pred.stdout and "balanced accuracy" in pred.stdout
    again = run("predict", tmp_path / "run" / "model.safetensors", small_cells, "-o", tmp_path / "p.parquet")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_models_lists_every_architecture():
    out = run("models")
    for name in ("yao2019", "ogawa2022", "cnn3", "fc2", "simple_vit", "resnet_small"):
        assert name in out.stdout
    assert "(default)" in out.stdout


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--group", "dish"], "group column 'dish' does not exist"),
        (["--group", "density", "--protocol", "leave-one-group-out", "--merge-classes", "round,spindle=cell"], "need at least two classes"),
        (["--model", "resnet999"], "unknown model 'resnet999' (choose from"),
        (["--protocol", "bogus"], "unknown protocol 'bogus'"),
        (["--folds", "30"], "fewer than the 30 folds"),
        (["--group", "flask", "--folds", "7"], "only 6 groups for 7 folds"),
        (["--channels", "Ch3"], "channel 'Ch3' is not in this set"),
        (["--protocol", "group-kfold"], "needs a group column"),
    ],
)
def test_evaluate_bad_input(small_cells, tmp_path, extra, message):
    out = run("evaluate", small_cells, "-o", tmp_path / "run", "--epochs", 1, *extra)
    assert out.returncode == 1, out.stdout
    assert message in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_group_column_with_one_value_is_refused(tmp_path):
    cs = make_cells(6, size=16, flasks_per_line=1, random_state=0)
    cs.table["dish"] = "d1"
    with pytest.raises(sf.StainfreeError, match="only one value"):
        evaluate(cs, group="dish", protocol="leave-one-group-out", config=TrainConfig(epochs=1))


def test_predict_refuses_missing_channels(small_cells, tmp_path):
    cs = make_cells(6, size=24, flasks_per_line=1, random_state=0)
    from stainfree.ml.train import fit

    clf, _ = fit(cs.images, cs.labels, channels=["other"], config=TrainConfig(epochs=1))
    clf.save(tmp_path / "m.safetensors")
    out = run("predict", tmp_path / "m.safetensors", small_cells, "-o", tmp_path / "p.parquet")
    assert out.returncode == 1
    assert "trained on channels other, but the cells have bf" in out.stderr
    bad = run("predict", small_cells / "cellset.json", small_cells, "-o", tmp_path / "p.parquet")
    assert bad.returncode == 1 and "not a stainfree model" in bad.stderr


def test_predict_resizes_other_sizes_with_a_warning(tmp_path, caplog):
    from stainfree.ml.predict import predict_cells
    from stainfree.ml.train import fit

    cs = make_cells(6, size=24, flasks_per_line=1, random_state=0)
    clf, _ = fit(cs.images, cs.labels, channels=cs.channels, config=TrainConfig(epochs=1))
    bigger = make_cells(3, size=32, flasks_per_line=1, random_state=1)
    with caplog.at_level("WARNING"):
        table = predict_cells(clf, bigger)
    assert len(table) == 6 and "resizing them" in caplog.text


def test_interrupted_evaluation_resumes_finished_splits(tmp_path, caplog):
    cs = make_cells(12, size=16, flasks_per_line=2, random_state=0)
    config = TrainConfig(epochs=1)
    first = evaluate(cs, group="flask", n_folds=2, config=config, baselines=["majority"], work_dir=tmp_path / "work", n_boot=0)
    assert sorted(p.name for p in (tmp_path / "work").glob("*.parquet")) == ["split001.parquet", "split002.parquet"]
    with caplog.at_level("INFO"):
        second = evaluate(cs, group="flask", n_folds=2, config=config, baselines=["majority"], work_dir=tmp_path / "work", n_boot=0)
    assert "already done, loading" in caplog.text
    pd.testing.assert_frame_equal(first.predictions, second.predictions)


def test_cross_group_and_audit_and_learning_curve(tmp_path):
    from stainfree.workflows.evaluate import run_evaluate

    cs = make_cells(12, size=16, flasks_per_line=2, random_state=0)
    config = TrainConfig(epochs=1)
    out, m = run_evaluate(cs, tmp_path / "cg", protocol="cross-group", group="flask", config=config, baselines=["majority"])
    # every flask holds one line, so the smallest pools are flask pairs (one flask of each line)
    assert m["cross_group"]["matrix"]["train"] == [
        "round-flask1+spindle-flask1",
        "round-flask1+spindle-flask2",
        "round-flask2+spindle-flask1",
        "round-flask2+spindle-flask2",
    ]
    assert m["cross_group"]["matrix"]["test"] == sorted(cs.table["flask"].unique())
    assert [r["pool_size"] for r in m["cross_group"]["by_pool_size"]] == [1]
    assert (out / "figures" / "cross_group.png").is_file()
    out, m = run_evaluate(cs, tmp_path / "audit", protocol="audit-groups", group="flask", n_folds=2, config=config)
    assert set(m["audit"]) == {"round", "spindle"} and m["audit"]["round"]["chance"] == 0.5
    out, m = run_evaluate(
        cs, tmp_path / "lc", group="flask", n_folds=2, config=config, baselines=["majority"], train_sizes=[0.5, 1.0], final_model=False
    )
    assert [c["train_fraction"] for c in m["learning_curve"]] == [0.5, 1.0]
    assert (out / "figures" / "learning_curve.png").is_file()


def test_compare_conditions_and_seeds(tmp_path):
    import numpy as np

    from stainfree.core.cellset import CellSet

    base = make_cells(12, size=16, flasks_per_line=2, random_state=0)
    two = CellSet(
        np.concatenate([base.images, base.images[:, :, ::-1]], axis=1), base.table, channels=["bf", "bf_flipped"], groups=base.groups
    )
    two.save(tmp_path / "two.cells")
    out = run(
        "compare",
        tmp_path / "two.cells",
        "-o",
        tmp_path / "cmp",
        "--condition",
        "bf=bf",
        "--condition",
        "both=bf,bf_flipped",
        "--seeds",
        2,
        "--epochs",
        1,
        "--group",
        "flask",
        "--folds",
        2,
    )
    assert out.returncode == 0, out.stderr
    body = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert list(body["conditions"]) == ["bf", "both"] and body["conditions"]["both"]["balanced_accuracy"]["seeds"] == 2
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir() if p.is_dir()) == ["bf-seed0", "bf-seed1", "both-seed0", "both-seed1"]
    assert "both (bf,bf_flipped): balanced accuracy" in out.stdout
    assert "<h2>Conditions and seeds</h2>" in (tmp_path / "cmp" / "report.html").read_text()
    bad = run("compare", tmp_path / "two.cells", "-o", tmp_path / "cmp2", "--condition", "x=Ch9")
    assert bad.returncode == 1 and "channel 'Ch9' is not in the cells" in bad.stderr


def test_nan_pixels_are_named(tmp_path):
    import numpy as np

    from stainfree.core.cellset import CellSet

    cs = make_cells(6, size=16, flasks_per_line=1, random_state=0)
    images = cs.images.astype(np.float32)
    images[4, 0, 3, 3] = np.nan
    bad = CellSet(images, cs.table, channels=cs.channels)
    with pytest.raises(sf.StainfreeError, match=r"cell 'round-flask1/cell00004' has NaN"):
        evaluate(bad, n_folds=2, config=TrainConfig(epochs=1), baselines=["majority"])


def test_outline_only_baseline_runs_on_the_same_splits():
    cs = make_cells(12, size=24, flasks_per_line=2, random_state=0)
    ev = evaluate(cs, group="flask", n_folds=2, config=TrainConfig(epochs=2), baselines=["outline_cnn"], n_boot=0)
    assert "baseline_outline_cnn" in ev.predictions.columns
    assert set(ev.metrics["baselines"]) == {"outline_cnn"}
    with pytest.raises(sf.StainfreeError, match="unknown baseline 'cellsize'"):
        evaluate(cs, baselines=["cellsize"])


def test_evaluate_reuses_a_features_file_and_checks_its_cells(small_cells, tmp_path):

    assert run("features", small_cells, "-o", tmp_path / "f.parquet").returncode == 0
    features = read_parquet(tmp_path / "f.parquet")
    features.iloc[::-1].to_parquet(tmp_path / "shuffled.parquet")  # rows are matched by cell_id
    out = run(
        "evaluate",
        small_cells,
        "-o",
        tmp_path / "run",
        "--epochs",
        1,
        "--features",
        tmp_path / "shuffled.parquet",
        "--baselines",
        "area_svm",
        "--no-final-model",
    )
    assert out.returncode == 0, out.stderr
    saved = read_parquet(tmp_path / "run" / "features.parquet")
    assert saved["cell_id"].tolist() == features["cell_id"].tolist()
    features.iloc[3:].to_parquet(tmp_path / "short.parquet")
    out = run("evaluate", small_cells, "-o", tmp_path / "run2", "--epochs", 1, "--features", tmp_path / "short.parquet")
    assert out.returncode == 1 and "lack 3 of the cells" in out.stderr and not (tmp_path / "run2").exists()
    (tmp_path / "bad.parquet").write_text("not parquet")
    out = run("evaluate", small_cells, "-o", tmp_path / "run3", "--epochs", 1, "--features", tmp_path / "bad.parquet")
    assert out.returncode == 1 and "not a readable parquet table" in out.stderr
