"""Choose the data-chosen defaults again, on the tuning cells only.

Every default that was chosen by looking at results (the classifier's batch size, model, class
sampling, test-time augmentation and prior; the size benchtop crops are trained at; the Barlow
encoder, its pooling and the dihedral average; and candidates such as sharp rotations) is compared here with its alternatives on the
quarter of each set that ``stainfree.eval.protocols.tuning_split`` sets apart (seed 0; whole
fields for HEK). The benchmarks (``jurkat.py``, ``hek_ht1080.py``, ``embedding.py``) report on the
other cells only, so no reported figure judges a cell that chose a default.

Inner cross-validation on the tuning cells: stratified 3-fold for Jurkat (two fold seeds),
3-fold by field for HEK. A candidate is scored by the balanced accuracy of its pooled
out-of-fold predictions. Embeddings: the Barlow networks are trained on every Jurkat cell (they
never see a label), and probed on the tuning cells only (logistic balanced accuracy over three
probe splits, ridge r for DNA content).

    .venv/bin/python benchmarks/tune_defaults.py --out benchmarks/results/tune-defaults-2026-12-01.json
    .venv/bin/python benchmarks/tune_defaults.py --only hek
    .venv/bin/python benchmarks/tune_defaults.py --only jurkat_ensemble
    .venv/bin/python benchmarks/tune_defaults.py --only jurkat_larger
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from common import emit, probed_positions, split_for_tuning
from features import dna_content

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
log = logging.getLogger("benchmark")

JURKAT_CANDIDATES = {
    "default": {},
    "batch 128": {"batch_size": 128},
    "resnet_small": {"model": "resnet_small"},
    "class-balanced sampling": {"sampling": "balanced"},
    "sharp rotations": {"augment": "rotate_sharp,flip"},
}
# run after the defaults were chosen; their "default" is JURKAT_CANDIDATES' default on the same folds
JURKAT_LARGER_CANDIDATES = {
    "input 80 px (2x)": {"input_size": 80},
    "60 epochs": {"epochs": 60},
}
HEK_CANDIDATES = {
    "default (112 px)": {},
    "native 224 px": {"input_size": 224},
    "56 px": {"input_size": 56},
    "resnet_small": {"model": "resnet_small"},
}
# prediction choices scored on the default candidate's networks: no retraining
PREDICTION_VARIANTS = {
    "tta, equal priors (default)": {"tta": True, "prior": "balanced"},
    "no tta": {"tta": False, "prior": "balanced"},
    "training priors": {"tta": True, "prior": "train"},
}


def inner_cv(cells, candidates: dict, *, groups=None, folds: int = 3, seeds=(0,)) -> dict:
    """Pooled out-of-fold balanced accuracy of each candidate (and prediction variant)."""
    from sklearn.metrics import balanced_accuracy_score

    from stainfree.eval.protocols import make_folds
    from stainfree.ml.train import TrainConfig, fit

    images = cells.read(slice(None))
    labels = np.asarray(cells.labels).astype(str)
    scores: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for seed in seeds:
        splits = make_folds(labels, groups=groups, n_folds=folds, random_state=seed)
        for name, overrides in candidates.items():
            predictions = {v: np.empty(len(labels), dtype=object) for v in (PREDICTION_VARIANTS if name.startswith("default") else [name])}
            t = time.monotonic()
            for train, test in splits:
                config = TrainConfig.for_data(cells.select(train), seed=seed, **overrides)
                clf, _ = fit(images[train], labels[train], channels=cells.channels, config=config)
                for variant in predictions:
                    options = PREDICTION_VARIANTS.get(variant, {"tta": True, "prior": "balanced"})
                    predictions[variant][test] = clf.predict(images[test], **options)
            seconds[name] = seconds.get(name, 0.0) + time.monotonic() - t
            for variant, predicted in predictions.items():
                key = variant if variant in PREDICTION_VARIANTS else name
                seconds.setdefault(key, seconds[name])
                scores.setdefault(key, []).append(balanced_accuracy_score(labels, predicted.astype(str)))
                log.warning("seed %d %s: balanced accuracy %.3f", seed, key, scores[key][-1])
    return {
        k: {"balanced_accuracy": round(float(np.mean(v)), 4), "per_seed": [round(x, 4) for x in v]}
        | ({"fit_seconds": round(seconds[k], 1)} if k in seconds else {})
        for k, v in scores.items()
    }


INTERPHASE = ("G1", "S", "G2")


def jurkat_tuning_cells(data: Path):
    """The Jurkat tuning cells (Ch3 + Ch6, in memory, 7 phases) and the record of the split."""
    import stainfree as sf

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "j.cells", layout="ifc", channels="Ch3,Ch6").load()
    return split_for_tuning(cells, "tune")


def jurkat_classifier(data: Path, seeds, *, candidates: dict = JURKAT_CANDIDATES) -> dict:
    tune, record = jurkat_tuning_cells(data)
    tune = tune.merge_classes({"Interphase": INTERPHASE})
    record["classes"] = tune.class_counts().to_dict()
    return {"tuning": record, "setting": "5 classes, Ch3 + Ch6", "candidates": inner_cv(tune, candidates, seeds=seeds)}


def jurkat_ensemble_and_fine_labels(data: Path, seeds, *, members: int = 3) -> dict:
    """Two more Jurkat 5-class ideas on the tuning cells, pooled out-of-fold like ``inner_cv``:
    the average of ``members`` default networks trained from different seeds (equal-prior
    probabilities with test-time augmentation), and one default network trained on the 7 phases
    whose G1, S and G2 probabilities are averaged into Interphase."""
    from sklearn.metrics import balanced_accuracy_score

    from stainfree.eval.protocols import make_folds
    from stainfree.ml.train import TrainConfig, fit

    tune, record = jurkat_tuning_cells(data)
    images = tune.read(slice(None))
    phases = np.asarray(tune.labels).astype(str)
    labels = np.asarray(tune.merge_classes({"Interphase": INTERPHASE}).labels).astype(str)
    classes = np.unique(labels)
    scores: dict[str, list[float]] = {}
    for seed in seeds:
        probs = np.zeros((members + 1, len(labels), len(classes)))
        for train, test in make_folds(labels, n_folds=3, random_state=seed):
            config = TrainConfig.for_data(tune.select(train), seed=seed)
            for k in range(members):
                clf, _ = fit(images[train], labels[train], channels=tune.channels, config=dataclasses.replace(config, seed=seed + 1000 * k))
                probs[k, test] = clf.predict_proba(images[test], tta=True, prior="balanced")
            clf, _ = fit(images[train], phases[train], channels=tune.channels, config=config)
            p = clf.predict_proba(images[test], tta=True, prior="balanced")
            names = [str(c) for c in clf.classes]
            for j, c in enumerate(classes):
                probs[members, test, j] = (
                    np.mean([p[:, names.index(i)] for i in INTERPHASE], 0) if c == "Interphase" else p[:, names.index(c)]
                )
        found = {f"seed {k}": probs[k] for k in range(members)} | {
            f"ensemble of {members}": probs[:members].mean(0),
            "7 phases, merged": probs[members],
        }
        for name, p in found.items():
            scores.setdefault(name, []).append(balanced_accuracy_score(labels, classes[p.argmax(1)]))
            log.warning("seed %d %s: balanced accuracy %.3f", seed, name, scores[name][-1])
    candidates = {k: {"balanced_accuracy": round(float(np.mean(v)), 4), "per_seed": [round(x, 4) for x in v]} for k, v in scores.items()}
    return {"tuning": record, "setting": "5 classes, Ch3 + Ch6", "candidates": candidates}


def hek_classifier(data: Path) -> dict:
    import stainfree as sf

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "h.cells", groups={"field": r"-(\d{6})"}).load()
    tune, record = split_for_tuning(cells, "tune", group="field")
    record["classes"] = tune.class_counts().to_dict()
    groups = tune.table["field"].astype(str).to_numpy()
    return {"tuning": record, "candidates": inner_cv(tune, HEK_CANDIDATES, groups=groups)}


def jurkat_embedding(data: Path, *, probe_splits: int = 3) -> dict:
    import stainfree as sf
    from stainfree.ml.embed import EmbedConfig, fit_embedder
    from stainfree.tl.probe import probe, regression_probe

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "j.cells", layout="ifc", channels="Ch3,Ch4,Ch6").load()
    tune, record = probed_positions(cells, "tune")
    y_dna = dna_content(cells.select_channels(["Ch4"]).read(slice(None))[:, 0])[tune]
    free = cells.select_channels(["Ch3", "Ch6"]).merge_classes({"Interphase": ["G1", "S", "G2"]})
    images = free.read(slice(None))
    labels = np.asarray(free.labels).astype(str)[tune]
    out = {"tuning": record, "candidates": {}}
    for encoder in ("resnet_small", "cnn3"):
        t = time.monotonic()
        emb, _ = fit_embedder(images, channels=free.channels, config=EmbedConfig(method="barlow", model=encoder))
        train_seconds = round(time.monotonic() - t, 1)
        poolings = ("stages+std", "stages", "last") if encoder == "resnet_small" else ("stages+std",)
        for pooling in poolings:
            for tta in (None, "dihedral"):
                variant = dataclasses.replace(emb, config={**emb.config, "pooling": pooling, "tta": tta})
                x = variant.transform(images[tune])
                bas = [probe(x, labels, kind="logreg", folds=3, random_state=s)["balanced_accuracy"] for s in range(probe_splits)]
                r = regression_probe(x, y_dna, kind="ridge")["pearson_r"]
                name = f"barlow {encoder}, {pooling}, tta {tta or 'none'}"
                out["candidates"][name] = {
                    "balanced_accuracy": round(float(np.mean(bas)), 4),
                    "dna_pearson_r": round(r, 4),
                    "train_seconds": train_seconds,
                }
                log.warning("%s: balanced accuracy %.3f, r %.3f", name, np.mean(bas), r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jurkat", default=str(SHARED / "jurkat-bbbc048"))
    parser.add_argument("--hek", default=str(SHARED / "hek-ht1080"))
    parser.add_argument("--only", default="jurkat,hek,embedding", help="any of jurkat, hek, embedding, jurkat_ensemble, jurkat_larger")
    parser.add_argument("--seeds", type=int, default=2, help="fold seeds of the Jurkat inner cross-validation")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    only = args.only.split(",")
    t0 = time.monotonic()
    result: dict = {}
    if "jurkat" in only:
        result["jurkat_classifier"] = jurkat_classifier(Path(args.jurkat), seeds=range(args.seeds))
    if "jurkat_ensemble" in only:
        result["jurkat_ensemble_and_fine_labels"] = jurkat_ensemble_and_fine_labels(Path(args.jurkat), seeds=range(args.seeds))
    if "jurkat_larger" in only:
        result["jurkat_larger"] = jurkat_classifier(Path(args.jurkat), seeds=range(args.seeds), candidates=JURKAT_LARGER_CANDIDATES)
    if "hek" in only:
        result["hek_classifier"] = hek_classifier(Path(args.hek))
    if "embedding" in only:
        result["jurkat_embedding"] = jurkat_embedding(Path(args.jurkat))
    result["seconds_total"] = round(time.monotonic() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
