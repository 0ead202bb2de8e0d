"""Benchmark: `stainfree view` on a 1,000,000-cell CellSet (issue 15: first page in under 3 s).

Writes (or reuses, with ``--keep``) a synthetic CellSet of N cells, 2 x 40 x 40 uint8 (the Jurkat
shape; synthetic round and spindle cells tiled with flips and shifts), then, in a fresh process:
opens it as the viewer does, starts the server on a free port and asks, over HTTP, for the page,
the summary and the first page of cells (96 thumbnails in one sprite sheet). Then a page deep in
the set, a page sorted by a column (cells scattered through the store), a filtered page, and,
with a made-up 2-D embedding of every cell, the scatter's 100,000-point sample.

Prints one JSON object. ``first_page_s`` counts from opening the set (after Python has imported
stainfree, reported apart as ``import_s``) to the first page of cells received.

Usage: ``.venv/bin/python benchmarks/view_server.py [--cells 1000000] [--keep /tmp/view-1m.cells] [--out FILE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, run_child, write_cells  # noqa: E402

CHILD = r"""
import json, sys, time, urllib.request
t0 = time.perf_counter()
from stainfree.view.server import ViewServer
from stainfree.view.source import CellsSource
import_s = time.perf_counter() - t0

def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())

def timed(f):
    t = time.perf_counter(); value = f(); return value, round(time.perf_counter() - t, 3)

t1 = time.perf_counter()
source = CellsSource.open(sys.argv[1])
open_s = time.perf_counter() - t1
server = ViewServer(source, port=0); server.start(); u = server.url
html, html_s = timed(lambda: urllib.request.urlopen(u, timeout=60).read())
summary, summary_s = timed(lambda: json.loads(urllib.request.urlopen(u + "api/summary", timeout=60).read()))
page, page_s = timed(lambda: post(u + "api/page", {"query": {}, "page": 0}))
first_page_s = time.perf_counter() - t1
deep, deep_s = timed(lambda: post(u + "api/page", {"query": {}, "page": page["pages"] // 2}))
_, sorted_s = timed(lambda: post(u + "api/page", {"query": {"sort": "area"}, "page": 0}))
_, sorted_next_s = timed(lambda: post(u + "api/page", {"query": {"sort": "area"}, "page": 1}))
_, filtered_s = timed(lambda: post(u + "api/page", {"query": {"filters": {"label": "spindle", "sample": "s03"}}, "page": 3}))
_, cell_s = timed(lambda: json.loads(urllib.request.urlopen(u + f"api/cell?row={summary['cells'] * 5 // 8}", timeout=60).read()))
server.shutdown()

import numpy as np
source.view.umap = np.random.default_rng(0).normal(size=(len(source.table), 2))
points, points_s = timed(lambda: source.points("label"))
points_bytes = len(json.dumps(points))
import resource
print(json.dumps({
    "cells": summary["cells"], "import_s": round(import_s, 2), "open_s": round(open_s, 2),
    "html_s": html_s, "html_bytes": len(html), "summary_s": summary_s, "first_page_request_s": page_s,
    "first_page_s": round(first_page_s, 2), "page_cells": len(page["cells"]), "sprite_bytes": len(page["thumbs"]["sheet"]),
    "deep_page_s": deep_s, "sorted_page_s": sorted_s, "sorted_next_page_s": sorted_next_s, "filtered_page_s": filtered_s,
    "hover_cell_s": cell_s, "scatter_points": len(points["rows"]), "scatter_s": points_s, "scatter_json_bytes": points_bytes,
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="Write the CellSet here and reuse it when it exists.")
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "view.cells"
        write_s = None
        if not (path / "cellset.json").exists():
            write_s = round(write_cells(path, args.cells), 1)
        result = {"benchmark": "view_server", "write_s": write_s, **run_child(CHILD, path)}
        result["target_first_page_under_3_s"] = result["first_page_s"] < 3.0
    emit(result, args.out)


if __name__ == "__main__":
    main()
