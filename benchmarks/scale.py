"""Benchmark: stainfree at scale (issue 18): training memory and time against the number of cells,
prediction and embedding throughput.

Writes (or reuses, with ``--keep``) a synthetic CellSet of N cells, 2 x 40 x 40 uint8 (the Jurkat
shape), then, each in a fresh process so that its peak resident memory is its own:

- one training epoch of the default model (``TrainConfig.for_data``, one epoch, no validation)
  on the first 10,000, 100,000 and (``--cells``) N cells of the set, opened lazily; sets whose
  normalised cells take more than ``stainfree.ml.data.IN_MEMORY_BYTES`` are streamed from the
  store. Reports the epoch's seconds, cells per second and peak resident memory;
- prediction with that model (``predict_cells``, streamed) on 100,000 cells, with and without the
  8-view test-time average: cells per second;
- embedding inference (``Embedder.transform``) of the default Barlow Twins network on 20,000
  cells: cells per second.

Prints one JSON object with the targets of issue 18 checked.

Usage: ``.venv/bin/python benchmarks/scale.py [--cells 1000000] [--keep /tmp/scale.cells] [--out FILE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, run_child, write_cells  # noqa: E402

TRAIN = r"""
import json, resource, sys, time
import numpy as np
from stainfree.core.store import open_cellset
from stainfree.ml.train import TrainConfig, fit
cells = open_cellset(sys.argv[1])
n = int(sys.argv[2])
if n < len(cells):
    cells = cells.select(np.arange(n))
config = TrainConfig.for_data(cells, epochs=1)
t0 = time.perf_counter()
clf, history = fit(cells, cells.labels, channels=cells.channels, config=config)
total = time.perf_counter() - t0
if len(sys.argv) > 3:
    clf.save(sys.argv[3])
print(json.dumps({
    "cells": n, "model": config.model, "batch_size": config.batch_size, "epoch_s": history[0]["seconds"],
    "fit_s": round(total, 1), "cells_per_s": round(n / history[0]["seconds"]),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""

PREDICT = r"""
import json, resource, sys, time
import numpy as np
from stainfree.core.store import open_cellset
from stainfree.ml.classifier import Classifier
from stainfree.ml.predict import predict_cells
cells = open_cellset(sys.argv[1]).select(np.arange(int(sys.argv[3])))
clf = Classifier.load(sys.argv[2])
out = {"cells": len(cells)}
for tta in (False, True):
    t0 = time.perf_counter()
    predict_cells(clf, cells, tta=tta)
    out["tta" if tta else "plain"] = round(len(cells) / (time.perf_counter() - t0))
out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""

EMBED = r"""
import json, sys, time
import numpy as np
from stainfree.core.store import open_cellset
from stainfree.ml.embed import EmbedConfig, fit_embedder
cells = open_cellset(sys.argv[1])
train = cells.read(np.arange(512))
embedder, _ = fit_embedder(train, channels=cells.channels, config=EmbedConfig(method="barlow", epochs=1))
n = int(sys.argv[2])
images = cells.read(np.arange(n))
t0 = time.perf_counter()
embedder.transform(images)
print(json.dumps({"cells": n, "model": embedder.arch, "pooling": embedder.config.get("pooling"), "cells_per_s": round(n / (time.perf_counter() - t0))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000, help="The largest set trained on (one epoch).")
    parser.add_argument("--keep", type=Path, default=None, help="Write the CellSet here and reuse it when it exists.")
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    parser.add_argument("--parts", default="train,predict,embed", help="Which measurements to make (comma-separated).")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "scale.cells"
        write_s = None
        if not (path / "cellset.json").exists():
            write_s = round(write_cells(path, max(args.cells, 100_000)), 1)
        result: dict = {"benchmark": "scale", "write_s": write_s, "targets": {}}
        targets = result["targets"]
        model = Path(tmp) / "model.safetensors"
        if parts & {"train", "predict"}:
            sizes = sorted({10_000, 100_000, args.cells}) if "train" in parts else [10_000]
            train = [run_child(TRAIN, path, n, *([model] if n == 10_000 else [])) for n in sizes]
        if "train" in parts:
            by_n = {t["cells"]: t for t in train}
            ratio = by_n[100_000]["epoch_s"] / by_n[10_000]["epoch_s"]
            largest = by_n[max(by_n)]
            result.update(train_one_epoch=train, epoch_100k_over_10k=round(ratio, 2))
            targets[f"epoch_peak_rss_under_2_gib_at_{largest['cells']}"] = largest["peak_rss_mib"] <= 2048
            targets["epoch_time_linear_10k_to_100k"] = 8.0 <= ratio <= 12.0
        if "predict" in parts:
            result["predict_cells_per_s"] = predict = run_child(PREDICT, path, model, 100_000)
            targets["predict_at_least_5000_per_s"] = predict["plain"] >= 5000
        if "embed" in parts:
            result["embed_cells_per_s"] = embed = run_child(EMBED, path, 20_000)
            targets["embed_at_least_2000_per_s"] = embed["cells_per_s"] >= 2000
    emit(result, args.out)


if __name__ == "__main__":
    main()
