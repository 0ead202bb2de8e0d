"""What every split of one evaluation shares, how it reads its cells (in memory or streamed), and
the baselines' inputs and runs. Internal: use :func:`~stainfree.eval.evaluate.evaluate`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cellset import CellSet
from ..ml.classifier import Classifier
from ..ml.train import TrainConfig, fit
from .baselines import align_features, feature_arrays, run_baseline
from .search import Search

logger = logging.getLogger("stainfree.eval.evaluate")
#: Test cells read and predicted at a time when an evaluation streams its cells.
PREDICT_BLOCK = 8192


@dataclasses.dataclass
class Job:
    """What every split of one evaluation shares."""

    cells: CellSet
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray | None
    group: str | None
    masks: np.ndarray | None  # in memory; streamed cells' masks are read with each subset
    config: TrainConfig
    baselines: Sequence[str]
    tta: bool
    work: Path | None
    protocol: str
    outlines: np.ndarray | None = None
    feature_matrix: np.ndarray | None = None
    area: np.ndarray | None = None
    search: Search | None = None
    search_budget: float | None = None  # seconds for each split's search
    searches: dict = dataclasses.field(default_factory=dict)  # split name -> SearchResult.record()
    streamed: bool = False  # cells too large for memory stay on disk: fit streams them, tests are read in blocks

    def images(self, rows: np.ndarray):
        """The cells at ``rows`` for :func:`~stainfree.ml.train.fit`: an array, or a lazy subset when streamed."""
        return self.cells.select(rows) if self.streamed else self.cells.images[rows]

    def masks_of(self, rows: np.ndarray):
        """Their masks (for blackout): an array, a reader of a lazy subset's masks, or None."""
        if self.streamed:
            return self.cells.select(rows).read_masks if self.cells.has_masks else None
        return None if self.masks is None else self.masks[rows]

    def predict(self, clf: Classifier, rows: np.ndarray) -> np.ndarray:
        """``clf``'s probabilities for the cells at ``rows``, read :data:`PREDICT_BLOCK` at a time when streamed."""
        if not self.streamed:
            return clf.predict_proba(self.cells.images[rows], tta=self.tta)
        subset = self.cells.select(rows)
        blocks = range(0, len(subset), PREDICT_BLOCK)
        return np.concatenate([clf.predict_proba(subset.read(slice(a, a + PREDICT_BLOCK)), tta=self.tta) for a in blocks])


def prepare_baselines(job: Job, features: pd.DataFrame | None) -> pd.DataFrame | None:
    """Outlines and handcrafted features for the baselines that need them; returns the features."""
    cells = job.cells
    if "outline_cnn" in job.baselines:
        from ..pp.features import foreground_mask

        if cells.has_masks:
            job.outlines = cells.read_masks().astype(np.float32)[:, None]
        else:
            logger.info("finding cell outlines for the outline-only baseline")
            job.outlines = np.stack([foreground_mask(c) for c in cells.images]).astype(np.float32)[:, None]
    if any(b in ("area_svm", "features_rf") for b in job.baselines) and features is None:
        from ..pp.features import measure

        logger.info("measuring handcrafted features for the baselines")
        features = measure(cells)
    elif features is not None:
        features = align_features(features, cells.cell_ids)
    if features is not None:
        job.feature_matrix, job.area = feature_arrays(features, need_area="area_svm" in job.baselines)
    return features


def add_probabilities(part: pd.DataFrame, prefix: str, proba: np.ndarray, classes: list[str], predicted: str) -> None:
    part[predicted] = np.asarray(classes, dtype=object)[proba.argmax(1)]
    for j, c in enumerate(classes):
        part[f"{prefix}{c}"] = proba[:, j]


def run_baselines(job: Job, part: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> None:
    labels, classes, config = job.labels, job.classes, job.config
    for b in job.baselines:
        if b == "outline_cnn":
            # Ogawa et al.'s contour input: the same network on the binary cell mask only
            outline_clf, _ = fit(
                job.outlines[train],
                labels[train],
                channels=["outline"],
                config=dataclasses.replace(config, normalisation="robust", augment="flips"),
                classes=classes,
            )
            bp = outline_clf.predict_proba(job.outlines[test])
        else:
            x = None if b == "majority" else (job.area if b == "area_svm" else job.feature_matrix)
            bp = run_baseline(
                b,
                x[train] if x is not None else np.zeros((len(train), 1)),
                labels[train],
                x[test] if x is not None else np.zeros((len(test), 1)),
                classes,
                random_state=config.seed,
            )
        add_probabilities(part, f"baseline_{b}_prob_", bp, classes, f"baseline_{b}")
