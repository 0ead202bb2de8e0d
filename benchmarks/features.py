"""Benchmark: handcrafted features predict DNA content on Jurkat, and how fast they are measured.

1. Jurkat (``../shared/data/jurkat-bbbc048``): features of the label-free channels only (Ch3
   brightfield, Ch6 darkfield) predict each cell's DNA content, the integrated propidium-iodide
   stain (Ch4, minus its crop-border median, summed over the 40x40 crop), with a random forest;
   5-fold cross-validated Pearson r (target >= 0.90; Blasi et al. 2016: 0.896 with 213
   CellProfiler features). Ch4 is only the target, never a feature.
2. Speed: features of 10,000 synthetic 64x64 cells, one channel and two (target < 2 min).

Prints the figures as JSON and writes them to ``--out``::

    .venv/bin/python benchmarks/features.py --out benchmarks/results/features-2026-11-21.json
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from common import CELL_CHOICES, emit, split_for_tuning


def dna_content(ch4: np.ndarray) -> np.ndarray:
    """Integrated stain per cell: the crop's sum after subtracting its border median."""
    ch4 = ch4.astype(np.float64)
    border = np.concatenate([ch4[:, 0, :], ch4[:, -1, :], ch4[:, 1:-1, 0], ch4[:, 1:-1, -1]], axis=1)
    return (ch4 - np.median(border, axis=1)[:, None, None]).sum(axis=(1, 2))


def jurkat(data: str, folds: int, trees: int, which: str = "report") -> dict:
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    import stainfree as sf
    from stainfree.pp.features import measure

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "j.cells", layout="ifc", channels="Ch3,Ch4,Ch6").load()
    cells, tuning = split_for_tuning(cells, which)
    y = dna_content(cells.select_channels("Ch4").read(slice(None))[:, 0])
    out: dict = {
        "cells": len(cells),
        "tuning": tuning,
        "target": "integrated Ch4 (border-median subtracted)",
        "folds": folds,
        "trees": trees,
        "by_channels": {},
    }
    labels = pd.Series(np.asarray(cells.labels).astype(str))
    out["dna_by_phase_mean"] = {k: round(float(v)) for k, v in pd.Series(y).groupby(labels).mean().items()}
    cv = KFold(folds, shuffle=True, random_state=0)
    for channels in ("Ch3,Ch6", "Ch3"):
        t = time.monotonic()
        table = measure(cells, channels=channels)
        seconds = time.monotonic() - t
        x = table.drop(columns="cell_id").to_numpy(np.float64)
        model = RandomForestRegressor(n_estimators=trees, n_jobs=-1, random_state=0)  # NaN-aware splits
        t = time.monotonic()
        pred = cross_val_predict(model, x, y, cv=cv)
        area = table[["AreaShape_Area"]].to_numpy(np.float64)
        pred_area = cross_val_predict(
            RandomForestRegressor(n_estimators=trees, min_samples_leaf=20, n_jobs=-1, random_state=0), area, y, cv=cv
        )
        out["by_channels"][channels] = {
            "features": int(x.shape[1]),
            "measure_seconds": round(seconds, 1),
            "rf_seconds": round(time.monotonic() - t, 1),
            "pearson_r": round(float(np.corrcoef(pred, y)[0, 1]), 4),
            "pearson_r_area_only": round(float(np.corrcoef(pred_area, y)[0, 1]), 4),
            "pearson_r_per_phase": {
                k: round(float(np.corrcoef(pred[m], y[m])[0, 1]), 3)
                for k in sorted(labels.unique())
                if (m := (labels == k).to_numpy()).sum() > 10
            },
        }
        logging.getLogger("benchmark").warning(
            "jurkat %s: r = %.4f (%d features)", channels, out["by_channels"][channels]["pearson_r"], x.shape[1]
        )
    return out


def speed(n_cells: int) -> dict:
    from stainfree.core.cellset import CellSet
    from stainfree.datasets.synthetic import make_cells
    from stainfree.pp.features import measure

    one = make_cells(n_cells // 2, size=64, random_state=0).load()
    images = one.read(slice(None))
    two = CellSet(np.concatenate([images, 255 - images], axis=1), one.table, channels=["bf", "inverted"])
    out = {"cells": len(one), "size": "64x64"}
    for name, cells in (("one_channel", one), ("two_channels", two)):
        t = time.monotonic()
        table = measure(cells)
        seconds = time.monotonic() - t
        out[name] = {"seconds": round(seconds, 1), "cells_per_second": round(len(cells) / seconds), "features": int(table.shape[1] - 1)}
        logging.getLogger("benchmark").warning("speed %s: %.1f s for %d cells", name, seconds, len(cells))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "jurkat-bbbc048"))
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--cells", type=int, default=10_000, help="cells for the speed figure")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--judged-cells", choices=CELL_CHOICES, default="report", help="the Jurkat cells judged (see docs/benchmarks.md)")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--skip", default="", help="jurkat and/or speed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result = {}
    if "jurkat" not in args.skip:
        result["jurkat_dna_content"] = jurkat(args.data, args.folds, args.trees, args.judged_cells)
    if "speed" not in args.skip:
        result["speed"] = speed(args.cells)
    emit(result, args.out)


if __name__ == "__main__":
    main()
