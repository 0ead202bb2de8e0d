"""Run folders: everything one evaluation produced, written atomically.

::

    RUN/
        config.json         everything needed to rerun (settings, data, versions)
        metrics.json        headline metrics with 95% intervals, baselines, the protocol
        predictions.parquet out-of-fold predictions, one row per cell
        figures/training_curve.png
        figures/confusion_matrix.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

from . import plotting
from .cellset import provenance_entry
from .evaluate import CrossValidation, cross_validate
from .train import TrainConfig
from .utils import atomic_output_dir

logger = logging.getLogger(__name__)

RUN_MARKER = "metrics.json"


def headline(metrics: dict, protocol: dict) -> str:
    """One line: balanced accuracy with its interval, how it was estimated, and the baselines."""

    def fmt(entry: dict) -> str:
        ci = entry.get("ci95")
        return f"{entry['value']:.3f}" + (f" [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if ci else "")

    m = metrics["model"]
    how = (
        f"held-out {protocol['group']} ({protocol['folds']} folds over {protocol['n_groups']} {protocol['group']} groups)"
        if protocol.get("group")
        else f"stratified {protocol['folds']}-fold cross-validation"
    )
    base = ", ".join(
        f"{k.removeprefix('baseline_')} {v['balanced_accuracy']['value']:.3f}" for k, v in metrics.items() if k.startswith("baseline_")
    )
    return (
        f"balanced accuracy {fmt(m['balanced_accuracy'])}, accuracy {fmt(m['accuracy'])}, "
        f"by {how}; baselines (balanced accuracy): {base}"
    )


def write_classification_run(
    cv: CrossValidation,
    out: str | os.PathLike,
    *,
    config: dict,
    force: bool = False,
) -> Path:
    """Write a run folder for a cross-validated classifier (atomically)."""
    with atomic_output_dir(out, force=force, marker=RUN_MARKER) as tmp:
        (tmp / "figures").mkdir()
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        cv.predictions.to_parquet(tmp / "predictions.parquet", index=False)
        plotting.training_curves(cv.histories, tmp / "figures" / "training_curve.png")
        cm = cv.metrics["model"]["confusion_matrix"]
        plotting.confusion_matrix(cm["counts"], cm["classes"], tmp / "figures" / "confusion_matrix.png")
        body = {"headline": headline(cv.metrics, cv.protocol), "protocol": cv.protocol, **cv.metrics}
        (tmp / RUN_MARKER).write_text(json.dumps(body, indent=2))
    return Path(out)


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    n_per_class: int = 200,
    size: int = 48,
    flasks_per_line: int = 4,
    folds: int = 4,
    epochs: int = 40,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, dict]:
    """The built-in end-to-end job on synthetic cells.

    Generates two synthetic cell lines grown in separate flasks, writes them as class folders of
    PNG files (as a user's export would be), imports them with the flask taken from the file
    names, cross-validates a small CNN by held-out flask, and writes a run folder holding
    ``cells.cells`` (the imported CellSet) besides the metrics and figures.
    Returns the run folder and its metrics.
    """
    from .io import import_cells, write_class_folders
    from .synthetic import make_cells

    out = Path(out)
    with atomic_output_dir(out, force=force, marker=RUN_MARKER) as tmp:
        logger.info("demo: generating %d synthetic cells of 2 lines in %d flasks", 2 * n_per_class, 2 * flasks_per_line)
        synthetic = make_cells(n_per_class, size=size, flasks_per_line=flasks_per_line, seed=seed)
        with tempfile.TemporaryDirectory() as export:
            files = write_class_folders(synthetic, export)
            cells = import_cells(export, groups={"flask": r"(flask\d+)-"})
        # the true cell area of synthetic cells feeds the cell-size baseline
        area = dict(zip(files, synthetic.table["area"]))
        cells.table["area"] = cells.table["source"].map(area)
        cells.save(tmp / "cells.cells")
        logger.info("demo: %s", cells.describe().replace("\n", "; "))
        config = TrainConfig(epochs=epochs, seed=seed)
        cv = cross_validate(cells, group="flask", n_folds=folds, config=config, seed=seed)
        run_config = {
            "command": "demo",
            "data": {"synthetic": {"n_per_class": n_per_class, "size": size, "flasks_per_line": flasks_per_line, "seed": seed}, "cells": "cells.cells"},
            "protocol": {"name": "group-kfold", "group": "flask", "folds": folds},
            "train": dataclasses.asdict(config),
            "provenance": provenance_entry("demo"),
        }
        write_classification_run(cv, tmp / "run", config=run_config)
        for item in (tmp / "run").iterdir():
            item.rename(tmp / item.name)
        (tmp / "run").rmdir()
    metrics = json.loads((out / RUN_MARKER).read_text())
    return out, metrics
