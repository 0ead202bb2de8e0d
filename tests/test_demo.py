import json

import pandas as pd

import stainfree as sf
from stainfree.runs import run_demo


def test_demo_writes_a_complete_run_folder(tmp_path):
    out, metrics = run_demo(tmp_path / "demo", n_per_class=40, size=32, folds=4, epochs=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cells.cells", "config.json", "figures", "metrics.json", "predictions.parquet"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["confusion_matrix.png", "training_curve.png"]
    assert (out / "figures" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"]["group"] == "flask" and m["protocol"]["n_groups"] == 8
    lo, hi = m["model"]["balanced_accuracy"]["ci95"]
    assert lo <= m["model"]["balanced_accuracy"]["value"] <= hi
    assert {"baseline_majority", "baseline_size"} <= set(m)
    assert m["headline"].startswith("balanced accuracy ")
    pred = pd.read_parquet(out / "predictions.parquet")
    assert len(pred) == 80 and set(pred["label"]) == {"round", "spindle"}
    cells = sf.open_cellset(out / "cells.cells")
    assert len(cells) == 80 and cells.table["area"].notna().all()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3
