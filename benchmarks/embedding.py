"""Benchmark: unsupervised embeddings probed for cell-cycle phase and DNA content, and speed.

1. Jurkat (``../shared/data/jurkat-bbbc048``), Ch3 + Ch6 only, labels never used by an
   embedder: for each method, the 5-class balanced accuracy of cross-validated probes (random
   forest and logistic regression, stratified 5-fold) and the Pearson r of a random-forest
   regression onto DNA content (integrated Ch4, the stain the phases were gated on; the target
   only). Targets: >= 0.65 and >= 0.92 for the best method, both above ``pca``.
2. HEK-293A vs HT1080 (``../shared/data/hek-ht1080``): the SLC embedding's probe, folds that keep
   each microscope field whole (target accuracy >= 0.80).
3. Training time of each embedder on the 3,418 Jurkat cells (target SLC/Barlow < 10 min) and
   embedding 100,000 40 x 40 cells with a trained embedder (target < 2 min).

    .venv/bin/python benchmarks/embedding.py --out benchmarks/results/embedding-2026-11-21.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from common import emit
from features import dna_content

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_methods(text: str) -> dict[str, dict]:
    """``name=method[:key=value,...]`` items separated by ``;``, e.g. ``slc=slc:epochs=10``."""
    out = {}
    for item in filter(None, text.split(";")):
        name, _, spec = item.partition("=")
        method, _, options = spec.partition(":")
        settings = {"method": method}
        for kv in filter(None, options.split(",")):
            k, _, v = kv.partition("=")
            settings[k] = v if k in ("model", "augment", "blackout") else float(v) if "." in v or "e-" in v else int(v)
        out[name] = settings
    return out


def jurkat(methods: dict[str, dict], data: Path, *, trees: int) -> tuple[dict, dict]:
    import stainfree as sf
    from stainfree.cluster import probe, regression_probe
    from stainfree.embed import EmbedConfig, fit_embedder

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "j.cells", layout="ifc", channels="Ch3,Ch4,Ch6").load()
    y_dna = dna_content(cells.select_channels("Ch4").read(slice(None))[:, 0])
    free = cells.select_channels("Ch3,Ch6").merge_classes("G1,S,G2=Interphase")
    images = free.read(slice(None))
    labels = np.asarray(free.labels).astype(str)
    results, embedders = {}, {}
    for name, settings in methods.items():
        settings = dict(settings)
        method = settings.pop("method")
        config = EmbedConfig(method=method, **settings)
        t = time.monotonic()
        emb, history = fit_embedder(images, channels=free.channels, config=config)
        train_seconds = time.monotonic() - t
        x = emb.transform(images)
        entry = {"settings": {"method": method, **settings}, "dims": int(x.shape[1]), "train_seconds": round(train_seconds, 1), "last_epoch": history[-1]}
        for kind in ("rf", "logreg"):
            p = probe(x, labels, kind=kind)
            entry[f"probe_{kind}"] = {"balanced_accuracy": round(p["balanced_accuracy"], 4), "accuracy": round(p["accuracy"], 4), "cohen_kappa": round(p["cohen_kappa"], 4)}
        entry["majority_balanced_accuracy"] = p["majority"]["balanced_accuracy"]
        entry["dna_pearson_r"] = round(regression_probe(x, y_dna, trees=trees)["pearson_r"], 4)
        entry["best_balanced_accuracy"] = max(entry["probe_rf"]["balanced_accuracy"], entry["probe_logreg"]["balanced_accuracy"])
        logging.getLogger("benchmark").warning("jurkat %s: balanced accuracy %.3f (rf) %.3f (logreg), DNA r %.3f, trained in %.0f s",
                                               name, entry["probe_rf"]["balanced_accuracy"], entry["probe_logreg"]["balanced_accuracy"], entry["dna_pearson_r"], train_seconds)
        results[name] = entry
        embedders[name] = emb
    return results, embedders


def hek(settings: dict, data: Path) -> dict:
    import stainfree as sf
    from stainfree.cluster import probe
    from stainfree.embed import EmbedConfig, fit_embedder

    with tempfile.TemporaryDirectory() as tmp:
        cells = sf.import_cells(data, Path(tmp) / "h.cells", groups={"field": r"-(\d{6})"}).load()
    settings = dict(settings)
    method = settings.pop("method")
    t = time.monotonic()
    emb, _ = fit_embedder(cells.read(slice(None)), channels=cells.channels, config=EmbedConfig(method=method, **settings))
    seconds = time.monotonic() - t
    x = emb.transform(cells.read(slice(None)))
    fields = cells.table["field"].astype(str).to_numpy()
    out = {"settings": {"method": method, **settings}, "cells": len(cells), "fields": int(len(set(fields))), "train_seconds": round(seconds, 1)}
    for kind in ("rf", "logreg"):
        p = probe(x, cells.labels, kind=kind, groups=fields)
        out[f"probe_{kind}_by_field"] = {"accuracy": round(p["accuracy"], 4), "balanced_accuracy": round(p["balanced_accuracy"], 4), "folds": p["folds"]}
    logging.getLogger("benchmark").warning("hek %s: accuracy by field %.3f (rf) %.3f (logreg)", method, out["probe_rf_by_field"]["accuracy"], out["probe_logreg_by_field"]["accuracy"])
    return out


def speed(embedder, n: int) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 1000, size=(n, len(embedder.channels), 40, 40), dtype=np.uint16)
    t = time.monotonic()
    x = embedder.transform(images, batch_size=2048)
    seconds = time.monotonic() - t
    return {"cells": n, "size": "40x40", "method": embedder.method, "dims": int(x.shape[1]), "seconds": round(seconds, 1), "cells_per_second": round(n / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jurkat", default=str(SHARED / "jurkat-bbbc048"))
    parser.add_argument("--hek", default=str(SHARED / "hek-ht1080"))
    parser.add_argument("--methods", default="pca=pca;slc=slc:epochs=12,copies=4;barlow=barlow:model=resnet_small,epochs=40,dim=128,lambda_=0.01")
    parser.add_argument("--hek-method", default="slc=slc:epochs=30,copies=8,input_size=112")
    parser.add_argument("--speed-cells", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--skip", default="")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result: dict = {}
    embedders = {}
    if "jurkat" not in args.skip:
        result["jurkat"], embedders = jurkat(parse_methods(args.methods), Path(args.jurkat), trees=args.trees)
    if "hek" not in args.skip:
        result["hek"] = hek(next(iter(parse_methods(args.hek_method).values())), Path(args.hek))
    if "speed" not in args.skip and embedders:
        trained = [e for e in embedders.values() if e.method != "pca"] or list(embedders.values())
        result["speed"] = [speed(e, args.speed_cells) for e in trained]
    emit(json.loads(json.dumps(result, default=float)), args.out)


if __name__ == "__main__":
    main()
