"""Benchmark: label-free cell-cycle classification on the Jurkat imaging-flow-cytometry set.

Label-free channels only (Ch3 brightfield, Ch6 darkfield; never Ch4, the DNA stain), stratified
5-fold cross-validation, the 5-class task (G1, S, G2 merged into Interphase) and the 7-class task,
with brightfield alone and brightfield + darkfield; each model with the baselines beside it.
Prints the figures as JSON and writes them to ``--out``.

By default only the cells that never tuned a default are used (``--cells report``: three
quarters of the cells, see ``benchmarks/tune_defaults.py`` for the other quarter).

Usage::

    .venv/bin/python benchmarks/jurkat.py --data ../shared/data/jurkat-bbbc048 --out J.json
    .venv/bin/python benchmarks/jurkat.py --models default,cnn3,fc2,simple_vit --out J-all.json
    .venv/bin/python benchmarks/jurkat.py --settings 5class_bf_df --report-dir runs/jurkat  # + run folders with report.html

Reference (full data set, brightfield only, 5 classes, balanced accuracy): 53.9% for a 2-layer
FC network (Espinosa Bernal), 57.4% (Eulenberg et al. 2017 as quoted there). These 40x40 crops
are a subset (all mitotic cells, fewer interphase cells), so those are a reference, not a match.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from common import CELL_CHOICES, emit, model_record, split_for_tuning

SETTINGS = [
    ("5class_bf", "Ch3", "G1,S,G2=Interphase"),
    ("5class_bf_df", "Ch3,Ch6", "G1,S,G2=Interphase"),
    ("7class_bf", "Ch3", None),
    ("7class_bf_df", "Ch3,Ch6", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "jurkat-bbbc048"))
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--models", default="default", help="comma-separated registry names; 'default' is the default model")
    parser.add_argument("--settings", default=",".join(s[0] for s in SETTINGS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--baselines", default="majority,area_svm,features_rf")
    parser.add_argument(
        "--report-dir", default=None, help="also write each setting's run folder (with report.html) here, for the first model"
    )
    parser.add_argument(
        "--cells", choices=CELL_CHOICES, default="report", help="report: the cells that never tuned a default (see docs/benchmarks.md)"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    import stainfree as sf
    from stainfree.eval.evaluate import evaluate
    from stainfree.ml.models import DEFAULT_MODEL
    from stainfree.ml.train import TrainConfig
    from stainfree.pp.features import measure

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(args.data, Path(tmp) / "jurkat.cells", layout="ifc", channels="Ch3,Ch6").load()
    # the tuning split is drawn on the seven gated phases, so every setting sets apart the same cells
    cells, tuning = split_for_tuning(cells, args.cells)
    import_seconds = time.monotonic() - t0
    models = [DEFAULT_MODEL if m == "default" else m for m in args.models.split(",")]
    wanted = args.settings.split(",")
    baselines = [b for b in args.baselines.split(",") if b]
    result = {
        "data": args.data,
        "cells": len(cells),
        "folds": args.folds,
        "import_seconds": round(import_seconds, 1),
        "tuning": tuning,
        "settings": {},
    }
    features_by_channels: dict[str, object] = {}
    for name, channels, merge in SETTINGS:
        if name not in wanted:
            continue
        subset = cells.select_channels(channels)
        if merge:
            subset = subset.merge_classes(merge)
        if channels not in features_by_channels and baselines != ["majority"]:
            features_by_channels[channels] = measure(subset)
        entry = {"channels": channels, "classes": subset.class_counts().to_dict(), "models": {}, "baselines": None}
        for model in models:
            config = TrainConfig.for_data(subset, model=model)
            t = time.monotonic()
            first = entry["baselines"] is None
            ev = evaluate(
                subset,
                protocol="kfold",
                n_folds=args.folds,
                config=config,
                baselines=baselines if first else [],
                features=features_by_channels.get(channels),
                n_boot=1000,
                final_model=bool(args.report_dir) and first,
            )
            if args.report_dir and first:
                import dataclasses

                from stainfree.workflows.evaluate import write_evaluation_run

                run_config = {
                    "command": "benchmarks/jurkat.py",
                    "data": {
                        "cells": args.data,
                        "channels": channels.split(","),
                        "merge_classes": merge,
                        "n_cells": len(subset),
                        "cells_used": args.cells,
                    },
                    "protocol": ev.protocol,
                    "train": dataclasses.asdict(config),
                }
                write_evaluation_run(ev, Path(args.report_dir) / name, config=run_config, force=True, cells=subset)
            s = ev.metrics["summary"]
            entry["models"][model] = model_record(ev, time.monotonic() - t, config)
            if entry["baselines"] is None:
                entry["baselines"] = {b: v["summary"]["balanced_accuracy"] for b, v in ev.metrics["baselines"].items()}
            logging.getLogger("benchmark").warning(
                "%s %s: balanced accuracy %.3f (%.0f s)", name, model, s["balanced_accuracy"]["mean"], entry["models"][model]["seconds"]
            )
        result["settings"][name] = entry
    result["seconds_total"] = round(time.monotonic() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
