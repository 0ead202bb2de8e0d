"""Learnt label-free segmentation on real phase contrast (issue 13).

Prints JSON:
- ``cross_validation``: ../shared/data/phase-fields, 5-fold cross-validation by field (45 fields:
  train on 36, test on 9; every field is tested once, by a model that never trained on it). As for
  the shipped model, 4 of the 36 are held out for validation, which picks the foreground
  threshold; the 9 test fields choose nothing.
  Pooled instance F1 at IoU 0.5, precision, recall, average precision over IoU 0.5-0.95, mean
  matched IoU, split and merged cells, and the training seconds per fold. The classical pipeline
  (``--method classical``, auto mode) on the same 45 fields beside it;
- ``shipped``: the model shipped in the package (trained on sets 1-40 by
  scripts/train_phase_model.py) on sets 41-45, which it never saw;
- ``speed``: seconds and peak resident memory to segment a 1024 x 1024 and a 2048 x 2048 phase
  field with the shipped model (each in a fresh process, so the peak is the whole process's);
- ``nuclei_field``: F1 of the defaults (``--method auto``) on the fluorescence nuclei field.

    .venv/bin/python benchmarks/segmentation_learnt.py [--steps N] [--diameter PX] [--folds 0,1,2,3,4] [--save-models DIR] [--skip-cv | --cv-only] [--out S.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHASE = DATA / "phase-fields"
SETS = [f"set{k}" for k in range(1, 46)]


def load(name):
    import tifffile

    return tifffile.imread(PHASE / "fields" / f"{name}.tif")[None], tifffile.imread(PHASE / "masks" / f"{name}.tif")


def folds(n_folds: int = 5, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    from sklearn.model_selection import KFold

    return [([SETS[i] for i in tr], [SETS[i] for i in te]) for tr, te in KFold(n_folds, shuffle=True, random_state=seed).split(SETS)]


def cross_validation(steps: int | None, which: list[int], *, diameter: float | None = None, save_models: Path | None = None) -> dict:
    from stainfree.seg.resize import normalise_field, rescale
    from stainfree.seg.scoring import match_counts, pool_counts, scores_from_counts
    from stainfree.seg.training import (
        FOREGROUND_THRESHOLDS,
        SegTrainConfig,
        train_segmenter,
    )
    from stainfree.workflows.segmentation import split_validation

    defaults = SegTrainConfig()
    steps, diameter = steps or defaults.steps, diameter or defaults.diameter
    config = SegTrainConfig(steps=steps, validate_every=steps, diameter=diameter)
    counts, per_fold = [], []
    for k, (train, test) in enumerate(folds()):
        if k not in which:
            continue
        fit_idx, val_idx = split_validation(train, fraction=0.1, random_state=0)  # as the shipped model: 32 + 4 of the 36
        fit = [load(train[i]) for i in fit_idx]
        val = [load(train[i]) for i in val_idx]
        start = time.monotonic()
        model = train_segmenter(
            [x for x, _ in fit],
            [y for _, y in fit],
            channels=["phase"],
            config=config,
            validation=([x for x, _ in val], [y for _, y in val]),
        )
        seconds = time.monotonic() - start
        if save_models is not None:
            model.save(save_models / f"fold{k}.safetensors")
        chosen = model.instance_params.foreground_threshold
        fold_counts, by_threshold = [], {t: [] for t in FOREGROUND_THRESHOLDS}
        for name in test:
            image, truth = load(name)
            scale, _ = model.resolve_scale()
            maps = model.predict_maps(
                rescale(normalise_field(image, low=model.normalisation["low"], high=model.normalisation["high"]), scale)
            )
            for t in FOREGROUND_THRESHOLDS:
                labels = model.labels_from_maps(
                    maps, truth.shape, params=dataclasses.replace(model.instance_params, foreground_threshold=t)
                )
                by_threshold[t].append(match_counts(truth, labels))
            fold_counts.append(by_threshold[chosen][-1])
        counts += fold_counts
        per_fold.append(
            {
                "fold": k,
                "test_fields": test,
                "validation_fields": [train[i] for i in val_idx],
                "train_seconds": round(seconds, 1),
                "foreground_threshold": chosen,
                "validation": model.provenance["foreground_threshold_on_validation"],
                **scores_from_counts(pool_counts(fold_counts)),
                "test_at_every_threshold (not used to choose)": {
                    str(t): {m: v for m, v in scores_from_counts(pool_counts(c)).items() if m in ("f1", "mean_matched_iou", "ap_50_95")}
                    for t, c in by_threshold.items()
                },
            }
        )
        print(json.dumps(per_fold[-1]), file=sys.stderr, flush=True)
    return {"steps": steps, "diameter": diameter, "folds": per_fold, "pooled": scores_from_counts(pool_counts(counts)) if counts else None}


def classical() -> dict:
    from stainfree.seg.classical import segment
    from stainfree.seg.scoring import match_counts, pool_counts, scores_from_counts

    counts = []
    for name in SETS:
        image, truth = load(name)
        counts.append(match_counts(truth, segment(image[0]).labels))
    return scores_from_counts(pool_counts(counts))


def shipped() -> dict:
    from stainfree.seg.methods import load_segmenter
    from stainfree.seg.scoring import match_counts, pool_counts, scores_from_counts

    model = load_segmenter()
    counts = []
    for name in SETS[40:]:
        image, truth = load(name)
        counts.append(match_counts(truth, model.segment(image).labels))
    return {
        "fields": SETS[40:],
        **scores_from_counts(pool_counts(counts)),
        "training": {k: model.provenance.get(k) for k in ("licence", "training_data")},
    }


SPEED_CHILD = """
import json, resource, sys, time
import numpy as np, tifffile
from stainfree.seg.methods import load_segmenter
size = int(sys.argv[1])
image = tifffile.imread(sys.argv[2])
field = np.tile(image, (2, 2))[:size, :size] if size > 1024 else np.pad(image, ((0, 1024 - image.shape[0]), (0, 0)), mode="reflect")
model = load_segmenter()
model.segment(field[None, :256, :256])  # warm-up: first-call costs of torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
labels = model.segment(field[None]).labels
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size, "seconds": round(seconds, 2), "objects": int(labels.max()), "peak_rss_gib": round(peak / 2**20, 3), "rss_before_gib": round(before / 2**20, 3)}))
"""


def speed() -> dict:
    out = {}
    for size in (1024, 2048):
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", SPEED_CHILD, str(size), str(PHASE / "fields" / "set41.tif")],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(2)
        ]
        best = min(runs, key=lambda r: r["seconds"])
        out[f"{size}x{size}"] = {**best, "seconds_all": [r["seconds"] for r in runs]}
    return out


def nuclei_field() -> dict:
    import tifffile

    from stainfree.io.fields import read_fields
    from stainfree.seg.methods import segment_field
    from stainfree.seg.scoring import segmentation_scores

    (field,) = read_fields(DATA / "nuclei-field" / "img2d.tif")
    result = segment_field(field, segment_channel=field.channels[0])
    return {"method": result.mode, **segmentation_scores(tifffile.imread(DATA / "nuclei-field" / "mask2d.tif"), result.labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="training steps (default: SegTrainConfig's)")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--diameter", type=float, help="median cell diameter in network pixels (default: SegTrainConfig's)")
    parser.add_argument("--save-models", type=Path, help="folder to keep each fold's model in")
    parser.add_argument("--skip-cv", action="store_true")
    parser.add_argument("--cv-only", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if not PHASE.is_dir():
        sys.exit(f"{PHASE} not found: this benchmark needs ../shared/data")
    result = (
        {} if args.cv_only else {"nuclei_field": nuclei_field(), "shipped": shipped(), "speed": speed(), "classical_all_45": classical()}
    )
    if not args.skip_cv:
        result["cross_validation"] = cross_validation(
            args.steps, [int(k) for k in args.folds.split(",")], diameter=args.diameter, save_models=args.save_models
        )
    emit(result, args.out)


if __name__ == "__main__":
    main()
