"""Benchmark: import speed and streaming a large CellSet in bounded memory.

Prints one JSON object:
- ``import_cells_per_s``: importing class folders of PNG files (synthetic cells written to disk)
  and, when ../shared/data is present, the Jurkat IFC export (two TIFF files per cell);
- ``stream``: a 100,000-cell CellSet (2 x 40 x 40 uint16, the Jurkat shape) is written, then
  opened in a fresh process and read batch by batch; its peak resident memory must stay under
  1 GiB.

Usage: ``.venv/bin/python benchmarks/cellset_io.py [--cells 100000] [--batch 1024]``
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def time_import(src: Path, **kwargs) -> dict:
    import stainfree as sf

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cs = sf.import_cells(src, Path(tmp) / "x.cells", **kwargs)
        seconds = time.perf_counter() - t0
    return {"cells": len(cs), "seconds": round(seconds, 2), "cells_per_s": round(len(cs) / seconds, 1)}


def write_large(path: Path, n: int) -> float:
    from stainfree.core.store import CellSetWriter

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    block = 4096
    with CellSetWriter(path, n_cells=n, channels=["Ch3", "Ch6"], height=40, width=40, dtype="uint16") as w:
        for start in range(0, n, block):
            b = min(block, n - start)
            w.write(start, rng.integers(300, 900, size=(b, 2, 40, 40), dtype=np.uint16))
        w.finish(
            pd.DataFrame(
                {
                    "cell_id": [f"cell{i:07d}" for i in range(n)],
                    "label": np.where(np.arange(n) % 10 == 0, "M", "I"),
                    "experiment": [f"e{i % 7}" for i in range(n)],
                }
            ),
            groups=["experiment"],
        )
    return time.perf_counter() - t0


STREAM_CHILD = r"""
import json, resource, sys, time
import numpy as np
import stainfree as sf
t0 = time.perf_counter()
cs = sf.open_cellset(sys.argv[1])
total, n = 0, 0
for images, rows in cs.batches(int(sys.argv[2])):
    total += int(images.sum(dtype=np.int64))
    n += len(images)
seconds = time.perf_counter() - t0
print(json.dumps({"cells": n, "seconds": round(seconds, 2), "cells_per_s": round(n / seconds),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--import-cells", type=int, default=2000, help="synthetic cells written as PNG files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from stainfree.datasets.synthetic import make_cells
    from stainfree.io.export import write_class_folders

    result: dict = {"import": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cells = make_cells(args.import_cells // 2, size=64, random_state=0)
        write_class_folders(cells, tmp / "pngs")
        result["import"]["png_class_folders_64px"] = time_import(tmp / "pngs")
    jurkat = SHARED / "jurkat-bbbc048"
    if jurkat.is_dir():
        result["import"]["jurkat_ifc_2ch_40px"] = time_import(jurkat, layout="ifc", channels="Ch3,Ch6")
    else:
        result["import"]["jurkat_ifc_2ch_40px"] = f"skipped: {jurkat} not found"

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.cells"
        write_seconds = write_large(path, args.cells)
        child = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(path), str(args.batch)], capture_output=True, text=True, check=True)
        stream = json.loads(child.stdout)
        on_disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        raw = args.cells * 2 * 40 * 40 * 2
    stream.update(
        {
            "shape": [args.cells, 2, 40, 40],
            "raw_pixels_mib": round(raw / 2**20, 1),
            "on_disk_mib": round(on_disk / 2**20, 1),
            "write_seconds": round(write_seconds, 2),
            "batch": args.batch,
            "under_1_gib": stream["peak_rss_mib"] < 1024,
        }
    )
    result["stream"] = stream
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
