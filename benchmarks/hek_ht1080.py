"""Benchmark: HEK-293A vs HT1080 from benchtop brightfield, evaluated by held-out microscope field.

200 cells (100 per line) from 62 fields; group-aware 5-fold cross-validation by field, the
``yao2019`` architecture and the default model, with the baselines beside them. Prints the figures
as JSON and writes them to ``--out``. Yao et al. 2019 report over 95% within a flask pair and about
80% pooled across flasks.

By default only the fields that never tuned a default are used (``--cells report``: about three
quarters of the fields, see ``benchmarks/tune_defaults.py`` for the rest).

Usage::

    .venv/bin/python benchmarks/hek_ht1080.py --data ../shared/data/hek-ht1080 --out H.json
    .venv/bin/python benchmarks/hek_ht1080.py --models yao2019 --epochs yao2019=30 --out H-yao.json
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from common import CELL_CHOICES, emit, model_record, split_for_tuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hek-ht1080"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--models", default="default,yao2019")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", default=None, help="per model, e.g. yao2019=30 (default: adapted to the data)")
    parser.add_argument(
        "--cells", choices=CELL_CHOICES, default="report", help="report: the fields that never tuned a default (see docs/benchmarks.md)"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    import stainfree as sf
    from stainfree.eval.evaluate import evaluate
    from stainfree.ml.train import TrainConfig
    from stainfree.pp.features import measure

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(args.data, Path(tmp) / "hek.cells", groups={"field": r"-(\d{6})"}).load()
    cells, tuning = split_for_tuning(cells, args.cells, group="field")
    features = measure(cells)
    result = {
        "data": args.data,
        "cells": len(cells),
        "fields": int(cells.table["field"].nunique()),
        "folds": args.folds,
        "tuning": tuning,
        "models": {},
        "baselines": None,
    }
    epochs = dict(item.split("=") for item in args.epochs.split(",")) if args.epochs else {}
    for name in args.models.split(","):
        # "default": whatever TrainConfig.for_data picks for these crops
        config = TrainConfig.for_data(
            cells, model=None if name == "default" else name, epochs=int(epochs[name]) if name in epochs else None
        )
        model = config.model
        t = time.monotonic()
        ev = evaluate(
            cells,
            group="field",
            n_folds=args.folds,
            config=config,
            features=features,
            baselines=["majority", "area_svm", "features_rf"] if result["baselines"] is None else [],
        )
        s = ev.metrics["summary"]
        result["models"][model] = model_record(ev, time.monotonic() - t, config)
        if result["baselines"] is None:
            result["baselines"] = {
                b: {"accuracy": v["summary"]["accuracy"], "balanced_accuracy": v["summary"]["balanced_accuracy"]}
                for b, v in ev.metrics["baselines"].items()
            }
        logging.getLogger("benchmark").warning(
            "%s: accuracy %.3f (%.0f s)", model, s["accuracy"]["mean"], result["models"][model]["seconds"]
        )
    result["seconds_total"] = round(time.monotonic() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
