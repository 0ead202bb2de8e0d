"""The ``audit-groups`` protocol: within each class, can a classifier tell the groups apart?"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..ml.train import fit
from ..utils import StainfreeError
from .evaluate import Evaluation
from .metrics import classification_metrics
from .protocols import make_folds

logger = logging.getLogger(__name__)


def audit_groups(cells, labels, groups, group, config, n_folds, t_start) -> Evaluation:
    """Within each class, cross-validate a classifier that predicts the group from the images."""
    if groups is None:
        raise StainfreeError("protocol audit-groups needs a group column (--group)")
    images = cells.images
    results, rows, histories = {}, [], []
    for cls in sorted(set(labels)):
        idx = np.flatnonzero(labels == cls)
        g = groups[idx]
        counts = pd.Series(g).value_counts()
        counts = counts[counts >= n_folds]
        if len(counts) < 2:
            logger.info("audit: class %s has fewer than 2 groups with %d cells; skipped", cls, n_folds)
            continue
        keep = idx[np.isin(groups[idx], counts.index)]
        g = groups[keep]
        folds = make_folds(g, n_folds=n_folds, random_state=config.seed)
        preds = np.empty(len(keep), dtype=object)
        for tr, te in folds:
            clf, history = fit(images[keep[tr]], g[tr], channels=cells.channels, config=config)
            preds[te] = clf.predict(images[keep[te]])
            histories.append(history)
        m = classification_metrics(g, preds, None)
        chance = 1.0 / len(counts)
        results[cls] = {
            "groups": int(len(counts)),
            "cells": int(len(keep)),
            "balanced_accuracy": round(m["balanced_accuracy"], 4),
            "chance": round(chance, 4),
            "confusion_matrix": m["confusion_matrix"],
        }
        if m["balanced_accuracy"] > chance + 0.25 * (1 - chance):
            logger.warning(
                "audit: within class %s a classifier tells the %s groups apart (balanced accuracy %.2f, chance %.2f): batch effects may inflate random-split estimates",
                cls,
                group,
                m["balanced_accuracy"],
                chance,
            )
        rows.append(pd.DataFrame({"cell_id": cells.table["cell_id"].to_numpy()[keep], "label": cls, group: g, "predicted_group": preds}))
    if not results:
        raise StainfreeError(f"no class has at least 2 {group} groups with {n_folds} cells each to audit")
    prot = {"name": "audit-groups", "folds": n_folds, "group": group, "n_groups": int(len(set(groups))), "seed": config.seed}
    metrics = {
        "protocol": prot,
        "n_cells": int(len(labels)),
        "classes": sorted(set(labels)),
        "audit": results,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    return Evaluation(pd.concat(rows, ignore_index=True), histories, sorted(set(labels)), metrics, prot)
