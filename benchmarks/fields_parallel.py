"""Benchmark: segmenting fields on a local Dask cluster against one after another (issue 18: 32
fields of 1024 x 1024, ``--workers 2`` at least 1.7x faster than serial, identical labels and
CellSet).

Writes 32 synthetic brightfield fields (``make_field``, about 150 cells each) as TIFFs, then runs
``run_segment`` on them serially and with ``workers=2`` (a fresh local cluster, its start-up
counted), for each ``--methods`` entry, and compares the two CellSets and label images.

Usage: ``.venv/bin/python benchmarks/fields_parallel.py [--fields 32] [--methods classical,auto] [--out FILE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402


def main() -> None:
    import tifffile

    from stainfree.core.store import open_cellset
    from stainfree.datasets.synthetic import make_field
    from stainfree.workflows.segment import run_segment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--methods", default="classical,auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"benchmark": "fields_parallel", "fields": args.fields, "field_px": args.size, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for k in range(args.fields):
            paths.append(tmp / f"field{k:02d}.tif")
            tifffile.imwrite(paths[-1], make_field((args.size, args.size), n_cells=150, random_state=k).brightfield)
        for method in args.methods.split(","):
            timing, sets = {}, {}
            for workers in (0, 2):
                out = tmp / f"{method}-{workers}.cells"
                t0 = time.perf_counter()
                run_segment(paths, out, method=method, size=48, save_labels=tmp / f"{method}-{workers}-labels", workers=workers)
                timing[workers] = time.perf_counter() - t0
                sets[workers] = open_cellset(out)
            same_labels = all(
                np.array_equal(
                    tifffile.imread(tmp / f"{method}-0-labels" / f"field{k:02d}_labels.tif"),
                    tifffile.imread(tmp / f"{method}-2-labels" / f"field{k:02d}_labels.tif"),
                )
                for k in range(args.fields)
            )
            same_cells = np.array_equal(sets[0].images, sets[2].images)
            try:
                pd.testing.assert_frame_equal(sets[0].table, sets[2].table)
                same_table = True
            except AssertionError:
                same_table = False
            result["runs"][method] = {
                "cells": len(sets[0]),
                "serial_s": round(timing[0], 1),
                "workers_2_s": round(timing[2], 1),
                "speedup": round(timing[0] / timing[2], 2),
                "identical_labels": same_labels,
                "identical_cells_and_table": bool(same_cells and same_table),
            }
    result["target_speedup_1_7_and_identical"] = {
        m: r["speedup"] >= 1.7 and r["identical_labels"] and r["identical_cells_and_table"] for m, r in result["runs"].items()
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
