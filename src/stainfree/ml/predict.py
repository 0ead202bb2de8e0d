"""Applying a classifier to a CellSet: streamed in batches, here or on a Dask cluster."""

from __future__ import annotations

import functools
import logging

import numpy as np

from ..parallel import map_cell_blocks
from ..utils import StainfreeError
from .classifier import Classifier, check_finite

logger = logging.getLogger(__name__)


def predict_cells(
    clf: Classifier,
    cells,
    *,
    tta: bool = True,
    prior: str = "balanced",
    batch_size: int = 1024,
    workers: int = 0,
    scheduler: str | None = None,
):
    """Apply a classifier to a CellSet, streamed in batches.

    The model's channels are selected from the cells by name; cells of another size are resized
    to the model's input size with a warning.

    Parameters
    ----------
    clf : Classifier
        The trained classifier.
    cells : CellSet
        The cells; they must have the model's channels.
    tta : bool, default True
        Average over the 8 rotations and flips of each cell, as
        :func:`stainfree.eval.evaluate.evaluate` does.
    prior : {"balanced", "train"}, default "balanced"
        As for :meth:`Classifier.predict_proba`.
    batch_size : int, default 1024
        Cells read and classified at a time (one task each on a Dask cluster).
    workers, scheduler : int, str, optional
        Predict the batches on a local Dask cluster of ``workers`` processes or on a running
        ``scheduler`` (:func:`stainfree.parallel.dask_client`); the table is the serial one.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``cell_id``, ``label`` (when the cells are labelled), ``predicted`` and
        ``prob_<class>`` for each class.

    Raises
    ------
    StainfreeError
        If the cells lack one of the model's channels, or have NaN or infinite pixels.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.classifier import Classifier
    >>> from stainfree.ml.predict import predict_cells
    >>> from stainfree.ml.models import create_model
    >>> clf = Classifier(create_model("cnn3", 1, 2, 16), "cnn3", {}, ["round", "spindle"], ["bf"], (16, 16), {"method": "cell"})
    >>> table = predict_cells(clf, make_cells(n_per_class=3, size=16), tta=False)
    >>> table.shape, list(table.columns)
    ((6, 5), ['cell_id', 'label', 'predicted', 'prob_round', 'prob_spindle'])
    """
    import pandas as pd

    missing = [c for c in clf.channels if c not in cells.channels]
    if missing:
        raise StainfreeError(
            f"the model was trained on channels {', '.join(clf.channels)}, but the cells have "
            f"{', '.join(cells.channels)} (missing {missing[0]})"
        )
    cells = cells.select_channels(clf.channels)
    if tuple(cells.shape[2:]) != tuple(clf.input_size):
        logger.warning(
            "cells are %dx%d px, the model expects %dx%d: resizing them",
            cells.shape[2],
            cells.shape[3],
            clf.input_size[0],
            clf.input_size[1],
        )
    task = functools.partial(_predict_block, clf=clf, cells=cells, tta=tta, prior=prior)
    parts = map_cell_blocks(task, len(cells), batch_size, workers=workers, scheduler=scheduler, desc="predicting", log=logger)
    return pd.concat(parts, ignore_index=True)


def _predict_block(block: tuple[int, int], *, clf: Classifier, cells, tta: bool, prior: str):
    """The predictions of cells ``block`` = (start, stop): the task :func:`predict_cells` runs per batch."""
    import pandas as pd

    start, stop = block
    images, rows = cells.read(slice(start, stop)), cells.table.iloc[start:stop]
    check_finite(images, rows["cell_id"])
    proba = clf.predict_proba(images, tta=tta, prior=prior)
    part = pd.DataFrame({"cell_id": rows["cell_id"].to_numpy()})
    if rows["label"].notna().any():
        part["label"] = rows["label"].to_numpy()
    part["predicted"] = np.asarray(clf.classes, dtype=object)[proba.argmax(1)]
    for j, c in enumerate(clf.classes):
        part[f"prob_{c}"] = proba[:, j]
    return part


def prediction_columns(predictions, classes) -> dict:
    """``predicted`` and each ``prob_<class>`` of a :func:`predict_cells` table, as arrays.

    For copying predictions onto another table whose rows are the same cells in the same order
    (``table.assign(**prediction_columns(predictions, clf.classes))``).

    >>> import pandas as pd
    >>> p = pd.DataFrame({"cell_id": [0], "predicted": ["a"], "prob_a": [0.75], "prob_b": [0.25]})
    >>> sorted(prediction_columns(p, ["a", "b"]))
    ['predicted', 'prob_a', 'prob_b']
    """
    return {name: predictions[name].to_numpy() for name in ["predicted", *(f"prob_{c}" for c in classes)]}
