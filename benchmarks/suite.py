"""Benchmark: the default classifier on every labelled set, one table.

Runs ``evaluate`` with every setting at its default on each shared set (and on sets the user
names), the baselines and the previous default on the same folds beside it, and prints one JSON
table: balanced accuracy with its 95% interval for the model, the previous default and each
baseline. Only the report cells of each set are used (``stainfree.eval.protocols.tuning_split``:
a quarter of each set, whole groups where the set has them, may tune defaults and is never
judged here).

Sets (``--sets``, comma-separated):
- ``jurkat5``: Jurkat, Ch3 + Ch6, G1/S/G2 merged (5 classes), stratified 5-fold;
- ``jurkat7``: the same, 7 phases;
- ``hek``: HEK-293A vs HT1080, 5 folds by field;
- ``wbc``: stained white-blood-cell crops resized to 96 px, classes with at least 5 cells,
  stratified 5-fold (the basophil class holds one cell);
- ``synthetic``: the synthetic ``round`` and ``spindle`` lines (the demo's before issue 16),
  4 folds by flask.
``--extra NAME=PATH[:GROUP]`` adds a CellSet (or a folder to import) of your own.
``previous`` is the default when issue 17 was filed (``cnn3`` at every crop size): where it
equals today's configuration its figure is today's, marked ``"same_as_default": true``, and only
where it differs (crops over 128 px, today ``resnet_small``) is it trained again on the same folds.
``--search BUDGET`` also runs the nested configuration search (``evaluate --search --budget``)
on the same folds and puts it beside the default.

    .venv/bin/python benchmarks/suite.py --out benchmarks/results/suite-2026-12-01.json
    .venv/bin/python benchmarks/suite.py --sets wbc,synthetic --extra mine=runs/my.cells:plate
    .venv/bin/python benchmarks/suite.py --sets hek,wbc,synthetic --search 10m --out S.json
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from common import CELL_CHOICES, emit, split_for_tuning

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BASELINES = ["majority", "area_svm", "features_rf"]
PREVIOUS_MODEL = "cnn3"
MIN_CLASS_CELLS = 5
log = logging.getLogger("benchmark")


def load_set(name: str, tmp: Path):
    """A shared set as (cells, group column or None, folds)."""
    import stainfree as sf

    if name in ("jurkat5", "jurkat7"):
        cells = sf.import_cells(SHARED / "jurkat-bbbc048", tmp / f"{name}.cells", layout="ifc", channels=["Ch3", "Ch6"]).load()
        return cells, None, 5
    if name == "hek":
        return sf.import_cells(SHARED / "hek-ht1080", tmp / "hek.cells", groups={"field": r"-(\d{6})"}).load(), "field", 5
    if name == "wbc":
        cells = sf.import_cells(SHARED / "wbc-smear", tmp / "wbc.cells", size=96).load()
        counts = cells.class_counts()
        return cells.select(cells.table["label"].isin(counts[counts >= MIN_CLASS_CELLS].index).to_numpy()), None, 5
    if name == "synthetic":
        from stainfree.datasets.synthetic import make_cells

        return make_cells(200, size=48, flasks_per_line=4, random_state=0).load(), "flask", 4
    raise SystemExit(f"unknown set {name!r}")


def load_extra(spec: str, tmp: Path):
    import stainfree as sf

    name, _, rest = spec.partition("=")
    path, _, group = rest.partition(":")
    path = Path(path)
    cells = sf.open_cellset(path) if path.suffix == ".cells" else sf.import_cells(path, tmp / f"{name}.cells")
    return name, cells.load(), group or None, 5


def run_set(
    name: str, cells, group: str | None, folds: int, which: str, search_budget: float | None = None, search_epochs: float = 1.0
) -> dict:
    from stainfree.eval.evaluate import evaluate
    from stainfree.ml.train import TrainConfig

    if name == "jurkat5":
        cells = cells.merge_classes({"Interphase": ["G1", "S", "G2"]})
    judged, tuning = split_for_tuning(cells, which, group=group)
    config = TrainConfig.for_data(judged)
    t = time.monotonic()
    ev = evaluate(judged, group=group, n_folds=folds, config=config, baselines=BASELINES)
    ba = ev.metrics["summary"]["balanced_accuracy"]
    entry = {
        "cells": len(judged),
        "classes": judged.class_counts().to_dict(),
        "protocol": ev.metrics["protocol"]["name"] + (f" by {group}" if group else ""),
        "tuning": tuning,
        "default": {"balanced_accuracy": ba["mean"], "ci95": ba["ci95"], "ci95_method": ba["ci95_method"]},
        "config": {k: getattr(config, k) for k in ("model", "input_size", "batch_size", "epochs", "augment")},
        "seconds": round(time.monotonic() - t, 1),
    }
    for b, block in ev.metrics["baselines"].items():
        bb = block["summary"]["balanced_accuracy"]
        entry[b] = {"balanced_accuracy": bb["mean"], "ci95": bb["ci95"]}
    entry["previous"] = {**entry["default"], "same_as_default": True}
    if config.model != PREVIOUS_MODEL:
        t = time.monotonic()
        previous = evaluate(judged, group=group, n_folds=folds, config=TrainConfig.for_data(judged, model=PREVIOUS_MODEL), baselines=[])
        pb = previous.metrics["summary"]["balanced_accuracy"]
        entry["previous"] = {
            "balanced_accuracy": pb["mean"],
            "ci95": pb["ci95"],
            "model": PREVIOUS_MODEL,
            "seconds": round(time.monotonic() - t, 1),
        }
    if search_budget is not None:
        from stainfree.eval.search import Search

        t = time.monotonic()
        found = evaluate(
            judged,
            group=group,
            n_folds=folds,
            config=config,
            baselines=[],
            search=Search(budget=search_budget, epochs_fraction=search_epochs),
        )
        sb = found.metrics["summary"]["balanced_accuracy"]
        entry["search"] = {
            "balanced_accuracy": sb["mean"],
            "ci95": sb["ci95"],
            "chosen": {k: v["chosen"] for k, v in found.metrics["search"]["splits"].items()},
            "final": found.metrics["search"]["final"],
            "budget_s": search_budget,
            "epochs_fraction": search_epochs,
            "seconds": round(time.monotonic() - t, 1),
        }
        log.warning("%s: search %.3f %s, chosen %s", name, sb["mean"], sb["ci95"], entry["search"]["chosen"])
    log.warning(
        "%s: default %.3f %s, previous %.3f, %s (%.0f s)",
        name,
        ba["mean"],
        ba["ci95"],
        entry["previous"]["balanced_accuracy"],
        ", ".join(f"{b} {entry[b]['balanced_accuracy']:.3f}" for b in BASELINES),
        entry["seconds"],
    )
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="jurkat5,jurkat7,hek,wbc,synthetic")
    parser.add_argument("--extra", action="append", default=[], help="NAME=PATH[:GROUP], a CellSet or a folder to import")
    parser.add_argument("--cells", choices=CELL_CHOICES, default="report")
    parser.add_argument("--search", default=None, help="also the nested search with this budget per set, e.g. 10m")
    parser.add_argument("--search-epochs", type=float, default=1.0, help="share of the epochs the search's inner fits train")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from stainfree.eval.search import parse_budget

    t0 = time.monotonic()
    result: dict = {"sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        todo = [(name, *load_set(name, Path(tmp))) for name in filter(None, args.sets.split(","))]
        todo += [load_extra(spec, Path(tmp)) for spec in args.extra]
        for name, cells, group, folds in todo:
            result["sets"][name] = run_set(name, cells, group, folds, args.cells, parse_budget(args.search), args.search_epochs)
    scores = [s["default"]["balanced_accuracy"] for s in result["sets"].values()]
    result["mean_balanced_accuracy"] = round(sum(scores) / len(scores), 4) if scores else None
    previous = [s["previous"]["balanced_accuracy"] for s in result["sets"].values()]
    result["mean_balanced_accuracy_previous"] = round(sum(previous) / len(previous), 4) if previous else None
    searched = [s["search"]["balanced_accuracy"] for s in result["sets"].values() if "search" in s]
    if searched:
        result["mean_balanced_accuracy_search"] = round(sum(searched) / len(searched), 4)
    result["seconds_total"] = round(time.monotonic() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
