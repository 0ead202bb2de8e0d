"""Segmentation and cropping of fields: accuracy on a real field, speed on a large one, and the
mixed-population accuracy on synthetic fields (issue 6).

Prints JSON:
- ``nuclei_field``: instance F1, precision, recall and mean matched IoU at IoU 0.5 of the default
  pipeline on ../shared/data/nuclei-field (125 hand-drawn nuclei), beside a textbook global
  Otsu + distance-transform watershed, and the F1 when one setting at a time is moved off its
  default (how much the result hangs on each choice);
- ``speed``: seconds, fields per second and cells per second to segment a 2048 x 2048 field and
  crop every object at 64 px, for a real fluorescence field (the nuclei field tiled 4 x 4) and a
  synthetic brightfield field;
- ``mixed_population`` (unless --skip-mixed): a cnn3 trained on synthetic single-line flasks
  classifies cells of synthetic mixed fields, scored against their fluorescence label.

    .venv/bin/python benchmarks/segmentation.py [--out benchmarks/results/segmentation.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def scores(truth, labels):
    from stainfree.seg.scoring import instance_scores

    s = instance_scores(truth, labels)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}


def textbook(image):
    """Gaussian sigma 1, global Otsu, hole filling, objects under 30 px removed, distance
    transform, peaks 5 px apart, watershed."""
    from scipy import ndimage
    from skimage import feature, filters, measure, morphology, segmentation

    smooth = filters.gaussian(image.astype(float), 1)
    fg = ndimage.binary_fill_holes(smooth > filters.threshold_otsu(smooth))
    fg = morphology.remove_small_objects(fg, max_size=29)
    d = ndimage.distance_transform_edt(fg)
    peaks = feature.peak_local_max(d, min_distance=5, labels=measure.label(fg), exclude_border=False)
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-d, markers, mask=fg)


def nuclei_field() -> dict:
    import tifffile

    from stainfree.seg.classical import segment

    folder = DATA / "nuclei-field"
    image = tifffile.imread(folder / "img2d.tif")
    truth = tifffile.imread(folder / "mask2d.tif")
    r = segment(image)
    out = {
        "default": {**scores(truth, r.labels), "estimated_diameter_px": round(r.diameter, 2), "mode": "auto -> fluorescence"},
        "textbook_otsu_watershed": scores(truth, textbook(image)),
        "one_setting_moved": {},
    }
    for name, values in {
        "local_window": [0, 1.5, 3.0],
        "threshold_scale": [0.6, 0.9, 1.0],
        "diameter": [18, 28],
        "min_distance": [4, 10],
        "smoothing": [0, 2.0],
        "closing": [0, 2],
    }.items():
        for v in values:
            out["one_setting_moved"][f"{name}={v}"] = round(scores(truth, segment(image, **{name: v}).labels)["f1"], 4)
    return out


def speed(repeats: int = 3) -> dict:
    import tifffile

    from stainfree.datasets.synthetic import make_field
    from stainfree.seg.classical import segment
    from stainfree.seg.crops import crop_objects

    fields = {}
    if (DATA / "nuclei-field").is_dir():
        fields["fluorescence_2048 (nuclei field tiled 4x4)"] = np.tile(tifffile.imread(DATA / "nuclei-field" / "img2d.tif"), (4, 4))
    fields["brightfield_2048 (synthetic)"] = make_field((2048, 2048), n_cells=1500, random_state=0).brightfield
    out = {}
    for name, image in fields.items():
        times, cells = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = segment(image)
            crops, masks, table, skipped = crop_objects(image[None], r.labels, size=64)
            times.append(time.perf_counter() - t0)
            cells = len(table)
        best = min(times)
        out[name] = {
            f"seconds_best_of_{repeats}": round(best, 3),
            "seconds_all": [round(t, 3) for t in times],
            "objects": r.n_objects,
            "cells_cropped": cells,
            "fields_per_second": round(1 / best, 2),
            "cells_per_second": round(cells / best, 1),
        }
    return out


def mixed_population(seeds=(0, 1, 2)) -> dict:
    import tifffile

    from stainfree.datasets.synthetic import make_cells, make_field
    from stainfree.ml.train import TrainConfig, fit
    from stainfree.workflows.predict import run_predict

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in seeds:
            train = make_cells(300, size=32, random_state=1 + seed)
            clf, _ = fit(train.images, train.labels, channels=train.channels, config=TrainConfig.for_data(train, epochs=20, seed=seed))
            clf.save(tmp / f"m{seed}.safetensors")
            paths = []
            for k in range(5):
                f = make_field((512, 512), n_cells=70, random_state=1000 * (seed + 1) + k)
                paths.append(tmp / f"s{seed}f{k}.tif")
                tifffile.imwrite(paths[-1], np.stack([f.brightfield.astype(np.uint16), f.fluorescence]))
            _, summary = run_predict(
                tmp / f"m{seed}.safetensors",
                paths,
                tmp / f"out{seed}",
                channels=["bf", "fluo"],
                label_channel="fluo",
                label_names=["round", "spindle"],
                method="classical",
            )
            a = summary["against_labels"]
            runs.append(
                {
                    "seed": seed,
                    "cells": a["cells"],
                    "accuracy": round(a["accuracy"], 4),
                    "sensitivity_spindle": round(a["sensitivity"], 4),
                    "specificity_spindle": round(a["specificity"], 4),
                    "per_field_accuracy": [round(v["accuracy"], 4) for v in a["per_field"].values()],
                }
            )
    acc = [r["accuracy"] for r in runs]
    return {"runs": runs, "accuracy_mean": round(float(np.mean(acc)), 4), "accuracy_min": round(float(np.min(acc)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Also write the JSON here.")
    parser.add_argument("--skip-mixed", action="store_true", help="Skip the mixed-population run (about a minute).")
    args = parser.parse_args()
    result = {"benchmark": "segmentation"}
    if (DATA / "nuclei-field").is_dir():
        result["nuclei_field"] = nuclei_field()
    else:
        result["nuclei_field"] = f"skipped: {DATA / 'nuclei-field'} not found"
    result["speed"] = speed()
    if not args.skip_mixed:
        result["mixed_population"] = mixed_population()
    emit(result, args.out)


if __name__ == "__main__":
    main()
