"""The demo: synthetic cells through import, evaluation and report."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

from ..core.cellset import provenance_entry
from ..eval.evaluate import evaluate
from ..ml.train import TrainConfig
from ..utils import atomic_output_dir
from .evaluate import RUN_MARKER, write_evaluation_run

logger = logging.getLogger(__name__)

#: The demo's lines: same shape, fibres along or across the long axis (issue 16, item 8).
DEMO_LINES = ("along", "across")


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    n_per_class: int = 200,
    size: int = 48,
    flasks_per_line: int = 4,
    folds: int = 4,
    epochs: int | None = None,
    lines: tuple[str, ...] = DEMO_LINES,
    random_state: int = 0,
    force: bool = False,
) -> tuple[Path, dict]:
    """``stainfree demo``: the built-in end-to-end job on synthetic cells.

    Generates two synthetic cell lines grown in separate flasks (by default ``along`` and
    ``across``: one shape and one texture, fibres running along the cell's long axis or across
    it, a difference the outline and area baselines cannot see), writes them as class folders of
    PNG files (as a user's export would be), imports them with the flask taken from the file
    names, evaluates the default classifier by held-out flask with baselines beside it, and
    writes a run folder holding ``cells.cells`` (the imported CellSet) besides the metrics,
    predictions, figures and the final model.

    Parameters
    ----------
    out : str or PathLike, default "runs/demo"
        The run folder.
    n_per_class : int, default 200
        Synthetic cells per line.
    size : int, default 48
        Crop size (pixels).
    flasks_per_line : int, default 4
        Flasks each line is grown in (the groups held out).
    folds : int, default 4
        Folds of the held-out-flask evaluation.
    epochs : int, optional
        Training epochs; default :meth:`~stainfree.ml.train.TrainConfig.for_data`'s.
    lines : tuple of str, default DEMO_LINES
        The synthetic lines (keys of :data:`stainfree.datasets.synthetic.LINES`), one class each.
    random_state : int, default 0
        Seed of the synthetic cells and of the training.
    force : bool, default False
        Overwrite an existing run.

    Returns
    -------
    path : Path
        The run folder.
    metrics : dict
        The content of its ``metrics.json``.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.workflows.demo import run_demo
    >>> # measuring the baselines' features, explaining and the saliency maps take ~15 s even this small
    >>> with tempfile.TemporaryDirectory() as d:  # doctest: +SKIP
    ...     path, metrics = run_demo(f"{d}/demo", n_per_class=6, size=32, flasks_per_line=2, folds=2, epochs=1)
    ...     (path / "cells.cells").is_dir(), metrics["protocol"]["name"]
    (True, 'group-kfold')
    """
    from ..datasets.synthetic import make_cells
    from ..io.export import write_class_folders
    from ..io.importers import import_cells

    out = Path(out)
    with atomic_output_dir(out, force=force, marker=RUN_MARKER) as tmp:
        logger.info(
            "demo: generating %d synthetic cells of %d lines in %d flasks",
            len(lines) * n_per_class,
            len(lines),
            len(lines) * flasks_per_line,
        )
        synthetic = make_cells(n_per_class, size=size, lines=lines, flasks_per_line=flasks_per_line, random_state=random_state)
        with tempfile.TemporaryDirectory() as export:
            write_class_folders(synthetic, export)
            cells = import_cells(export, groups={"flask": r"(flask\d+)-"})
        cells.save(tmp / "cells.cells")
        logger.info("demo: %s", cells.describe().replace("\n", "; "))
        config = TrainConfig.for_data(cells, epochs=epochs, seed=random_state)
        ev = evaluate(cells, group="flask", n_folds=folds, config=config, final_model=True)
        run_config = {
            "command": "demo",
            "data": {
                "synthetic": {
                    "lines": list(lines),
                    "n_per_class": n_per_class,
                    "size": size,
                    "flasks_per_line": flasks_per_line,
                    "seed": random_state,
                },
                "cells": "cells.cells",
            },
            "protocol": ev.protocol,
            "train": dataclasses.asdict(config),
            "provenance": provenance_entry("demo"),
        }
        write_evaluation_run(ev, out, config=run_config, tmp=tmp, cells=cells)
    metrics = json.loads((out / RUN_MARKER).read_text())
    return out, metrics
