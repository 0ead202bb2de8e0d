"""Shared by the benchmark scripts: print the figures as JSON and write them to a file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if out:
        Path(out).write_text(text)


def run_child(code: str, *args) -> dict:
    """Run ``code`` in a fresh Python (its own peak memory, its own imports) with ``args`` as
    ``sys.argv[1:]``; the JSON object its last line prints. Its error output ends the benchmark."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=False)
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def model_record(ev, seconds: float, config) -> dict:
    """The headline metrics of one evaluation, its per-class recall, time and settings."""
    s = ev.metrics["summary"]
    return {
        **{k: s[k] for k in ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")},
        "per_class_recall": {c: v["recall"] for c, v in ev.metrics["pooled"]["per_class"].items()},
        "seconds": round(seconds, 1),
        "config": {k: v for k, v in config.__dict__.items() if k != "device"},
    }


TUNING_FRACTION = 0.25
CELL_CHOICES = ("report", "tune", "all")


def split_for_tuning(cells, which: str, *, group: str | None = None):
    """The cells a benchmark uses, and a record of the tuning rule for its JSON.

    ``report`` (the default of every benchmark) keeps the cells that never chose a default;
    ``tune`` the share set apart for choosing defaults (`stainfree.eval.protocols.tuning_split`,
    a quarter of the cells, whole groups when ``group`` is named, seed 0); ``all`` every cell,
    as the figures before issue 16 were measured.
    """
    import numpy as np

    from stainfree.eval.protocols import tuning_split

    groups = None if group is None else cells.table[group].to_numpy()
    split = tuning_split(np.asarray(cells.labels), groups=groups, fraction=TUNING_FRACTION, random_state=0)
    record = {
        "cells_used": which,
        "rule": f"stainfree.eval.protocols.tuning_split(labels, groups={group!r}, fraction={TUNING_FRACTION}, random_state=0)",
        "tune_cells": len(split.tune),
        "report_cells": len(split.report),
    }
    if group is not None:
        record["tune_groups"] = sorted(map(str, set(groups[split.tune])))
    if which == "all":
        return cells, record
    return cells.select(split.report if which == "report" else split.tune), record


def probed_positions(cells, which: str, *, group: str | None = None):
    """Positions of the cells ``split_for_tuning`` keeps, for embeddings trained on every cell
    (an embedder sees no label; only the probes that judge it are kept to one side)."""
    import numpy as np

    cells = cells.select(np.arange(len(cells)))
    cells.table["_position"] = np.arange(len(cells))
    chosen, record = split_for_tuning(cells, which, group=group)
    record["embedders_trained_on"] = "every cell (no labels)"
    return chosen.table["_position"].to_numpy(), record


def write_cells(path: Path, n: int, *, block: int = 16384) -> float:
    """N synthetic 2 x 40 x 40 uint8 cells with a table of label, sample, area; seconds taken."""
    import time

    import numpy as np
    import pandas as pd

    from stainfree.core.store import CellSetWriter
    from stainfree.datasets.synthetic import make_cells

    base = make_cells(1024, size=40, lines=("round", "spindle"), random_state=0)
    bf = base.read(slice(None))[:, 0]
    images = np.stack([bf, 255 - bf], axis=1).astype(np.uint8)  # a second, inverted channel
    labels, area = base.labels.astype(str), base.table["area"].to_numpy()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    pick = np.empty(n, np.int64)
    with CellSetWriter(path, n_cells=n, channels=["bf", "df"], height=40, width=40, dtype="uint8") as writer:
        for start in range(0, n, block):
            b = min(block, n - start)
            k = rng.integers(0, len(images), b)
            pick[start : start + b] = k
            batch = images[k]
            flip = rng.random(b) < 0.5
            batch[flip] = batch[flip][..., ::-1]
            writer.write(start, np.roll(batch, int(rng.integers(-3, 4)), axis=-2))
        writer.finish(
            pd.DataFrame(
                {
                    "cell_id": [f"cell{i:07d}" for i in range(n)],
                    "label": labels[pick],
                    "sample": [f"s{i % 24:02d}" for i in range(n)],
                    "area": area[pick],
                }
            ),
            groups=["sample"],
        )
    return time.perf_counter() - t0
