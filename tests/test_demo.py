import json

import numpy as np

import stainfree as sf
from stainfree.ml.classifier import Classifier
from stainfree.utils import read_parquet
from stainfree.workflows.demo import run_demo


def test_demo_writes_a_complete_run_folder(tmp_path):
    out, metrics = run_demo(tmp_path / "demo", n_per_class=40, size=32, folds=4, epochs=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "cells.cells",
        "config.json",
        "data.json",
        "explain",
        "features.parquet",
        "figures",
        "metrics.json",
        "model.safetensors",
        "predictions.parquet",
        "report.html",
        "saliency",
    ]
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["confusion_matrix.png", "examples.png", "roc.png", "training_curve.png"]
    assert sorted(read_parquet(out / "features.parquet")["cell_id"]) == sorted(read_parquet(out / "predictions.parquet")["cell_id"])
    assert json.loads((out / "data.json").read_text())["classes"] == {"across": 40, "along": 40}
    assert json.loads((out / "explain" / "explain.json").read_text())["a"] == "across"
    assert (out / "figures" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"]["group"] == "flask" and m["protocol"]["n_groups"] == 8
    assert m["n_cells"] == 80 and m["classes"] == ["across", "along"]
    for key in ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa"):
        assert set(m["summary"][key]) >= {"mean", "std", "ci95"}
    assert len(m["folds"]) == 4
    assert set(m["baselines"]) == {"majority", "area_svm", "features_rf"}
    assert m["baselines"]["majority"]["summary"]["balanced_accuracy"]["mean"] == 0.5
    assert m["headline"].startswith("balanced accuracy ") and m["seconds"] > 0
    pred = read_parquet(out / "predictions.parquet")
    assert len(pred) == 80 and set(pred["label"]) == {"across", "along"}
    assert {"cell_id", "split", "label", "predicted", "prob_across", "prob_along"} <= set(pred.columns)
    cells = sf.open_cellset(out / "cells.cells")
    assert len(cells) == 80 and cells.groups == ["flask"]
    clf = Classifier.load(out / "model.safetensors")
    assert clf.classes == ["across", "along"] and clf.channels == ["grey"]
    np.testing.assert_allclose(clf.predict_proba(cells.images[:4]).sum(1), 1, rtol=1e-5)
    html = (out / "report.html").read_text()
    assert "<h1>stainfree demo: demo</h1>" in html  # the final name, not .demo.partial-...
    assert f"run folder {out.resolve()};" in html and ".partial-" not in html
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["data"]["synthetic"]["lines"] == ["along", "across"]
