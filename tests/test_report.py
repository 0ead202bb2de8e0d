"""report.html: self-contained (embedded PNGs, no links out), sections that say what is missing."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest

from conftest import run_cli
from stainfree.datasets.synthetic import make_cells
from stainfree.ml.train import TrainConfig
from stainfree.report.sections import build_report
from stainfree.workflows.evaluate import run_evaluate


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cells = make_cells(30, size=32, flasks_per_line=3, random_state=4)
    cells.save(root / "c.cells")
    config = TrainConfig.for_data(cells, epochs=3)
    out, _ = run_evaluate(
        cells, root / "run", group="flask", n_folds=3, config=config, data={"cells": str(root / "c.cells"), "n_cells": len(cells)}
    )
    return out


def check_self_contained(text: str) -> int:
    """Every image is an embedded, decodable PNG; nothing is fetched from anywhere."""
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.findall(r"<script[^>]*\ssrc=", text, flags=re.I)  # scripts are inline (the interactive views)
    lowered = re.sub(r"<script.*?</script>", "", text, flags=re.S | re.I).lower()  # bokeh's code names URLs it never fetches
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered and "url(" not in lowered
    assert re.findall(r'href="([^"]*)"', text) == [h for h in re.findall(r'href="(#[^"]*)"', text)]  # in-page anchors only
    return len(sources)


def test_evaluation_report_embeds_every_figure(run_folder):
    text = (run_folder / "report.html").read_text()
    n_images = check_self_contained(text)
    # examples, training curve, confusion, ROC, cross-group is absent, scatter, ranking, saliency, activations
    assert n_images == 8
    for heading in (
        "Data",
        "Protocol and settings",
        "Headline metrics and baselines",
        "What separates the classes",
        "What the network looks at",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "baseline: features_rf" in text and "held-out flask" in text
    # which interval each column shows
    assert "95% intervals: over splits, corrected resampled t (Nadeau &amp; Bengio" in text
    assert "percentile bootstrap over flask (1000 resamples, " in text and "(Wilson)" in text
    assert "Cells per flask and class" in text
    assert "stainfree embed" in text  # the embedding section says where its figures come from
    # the interactive views of a run without an embedding: galleries and confusion matrix, and what to run for the scatter
    assert "<h2>Explore the cells</h2>" in text and "Confusion matrix (click a count to see its cells)" in text
    assert "Per class, the cells the classifier scores highest" in text and "No embedding: the scatter needs" in text
    assert (run_folder / "explain" / "explain.json").is_file() and (run_folder / "saliency" / "saliency.png").is_file()


def test_a_run_missing_files_still_renders_and_names_them(run_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_folder, broken)
    shutil.rmtree(broken / "figures")
    shutil.rmtree(broken / "saliency")
    (broken / "data.json").unlink()  # so the Data section has to look for the cells
    (broken / "config.json").write_text(json.dumps({"command": "evaluate", "data": {"cells": str(tmp_path / "gone.cells")}}))
    r = run_cli("report", broken)
    assert r.returncode == 0, r.stderr
    text = (broken / "report.html").read_text()
    check_self_contained(text)
    assert "gone.cells" in text and "cannot be found" in text
    assert "no evaluation figures (figures/training_curve.png" in text
    assert "saliency/ is not in this run" in text
    assert "baseline: features_rf" in text  # the sections that have their files still render
    (broken / "metrics.json").write_text("{not json")
    text = build_report(broken)
    assert "metrics.json is not readable JSON" in text


def test_report_refuses_what_is_not_a_run(tmp_path):
    r = run_cli("report", tmp_path)
    assert r.returncode == 1 and "not a stainfree run" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("report", tmp_path / "nowhere")
    assert r.returncode == 1 and "no such run folder" in r.stderr


def test_report_to_another_file_needs_force(run_folder, tmp_path):
    out = tmp_path / "r.html"
    assert run_cli("report", run_folder, "-o", out).returncode == 0
    r = run_cli("report", run_folder, "-o", out)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert run_cli("report", run_folder, "-o", out, "--force").returncode == 0


def test_ranking_gap_note_names_the_gap_and_the_recalls_for_two_classes_only():
    from stainfree.report.html import ranking_gap_note

    metrics = {
        "summary": {"roc_auc": {"mean": 0.995}, "balanced_accuracy": {"mean": 0.885}},
        "pooled": {"per_class": {"across": {"recall": 1.0}, "along": {"recall": 0.77}}},
    }
    note = ranking_gap_note(metrics)
    assert note.startswith("The model ranks held-out cells better than it decides them: ROC AUC 0.995 against balanced accuracy 0.885")
    assert "(recall across 1.00, along 0.77)" in note
    metrics["summary"]["balanced_accuracy"]["mean"] = 0.946  # gap 0.049: below the threshold
    assert ranking_gap_note(metrics) == ""
    metrics["summary"]["balanced_accuracy"]["mean"] = 0.5
    metrics["pooled"]["per_class"]["third"] = {"recall": 0.5}  # one-vs-rest AUC is not comparable
    assert ranking_gap_note(metrics) == ""
    assert ranking_gap_note({"summary": {"balanced_accuracy": {"mean": 0.5}}, "pooled": {}}) == ""
