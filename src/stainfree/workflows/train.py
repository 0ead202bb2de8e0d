"""The `train` stage: one classifier trained on all the labelled cells, written as one model file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core.cellset import CellSet
from ..eval.search import Search, search_config
from ..ml.train import TrainConfig
from ..utils import StainfreeError, refuse_existing

logger = logging.getLogger(__name__)


def _check_model_path(out: Path, force: bool) -> None:
    """Refuse an output that is not a ``.safetensors`` file name, a folder, or an existing file without ``force``."""
    if out.suffix != ".safetensors":
        raise StainfreeError(f"{out}: a model file must end in .safetensors")
    if out.is_dir():
        raise StainfreeError(f"{out}: is a folder; give a model file name such as {out.name}/model.safetensors")
    refuse_existing(out, force=force)


def run_train(
    cells: CellSet,
    out: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    merge_classes: Mapping[str, Sequence[str]] | None = None,
    config: TrainConfig | None = None,
    search: Search | None = None,
    group: str | None = None,
    force: bool = False,
) -> tuple[Path, dict]:
    """``stainfree train``: train one classifier on all the labelled cells, without cross-validation.

    The same training as the final model of :func:`~stainfree.workflows.evaluate.run_evaluate`
    (:func:`~stainfree.ml.train.fit`), for a user who wants a model and no estimate of how good it
    is. Unlabelled cells are left out (and said so). The model file is written under a temporary
    name in the same folder and renamed into place, so an interrupted run leaves no file that
    looks complete; ``stainfree predict MODEL CELLS`` applies it.

    Parameters
    ----------
    cells : CellSet
        The cells, at least two classes of at least two labelled cells each.
    out : str or PathLike
        The model file to write (``.safetensors``); its folder is made if missing.
    channels : sequence of str, optional
        The channels to train on, in this order (default: all).
    merge_classes : mapping of str to sequence of str, optional
        Classes to merge first, e.g. ``{"Interphase": ["G1", "S", "G2"]}``
        (:meth:`~stainfree.core.cellset.CellSet.merge_classes`).
    config : TrainConfig, optional
        How to train; default :meth:`TrainConfig.for_data` of the cells. With ``search``, the
        base that the candidates modify.
    search : Search, optional
        Choose the configuration by inner cross-validation on these cells first
        (:func:`~stainfree.eval.search.search_config`); the summary's ``search`` says what won.
    group : str, optional
        A group column: the search's inner folds keep its groups whole.
    force : bool, default False
        Replace an existing model file.

    Returns
    -------
    path : Path
        The model file.
    summary : dict
        ``cells`` (trained on), ``left_out`` (unlabelled), ``classes`` (cells per class),
        ``channels``, ``epochs``, ``seconds``, ``path`` and, with ``search``, ``search``
        (:meth:`~stainfree.eval.search.SearchResult.record`).

    Raises
    ------
    StainfreeError
        For an output that exists (without ``force``), is a folder or is not ``.safetensors``; no
        labelled cell, fewer than two classes, a class of one cell, an unknown channel, or
        non-finite pixels.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.classifier import Classifier
    >>> from stainfree.ml.train import TrainConfig
    >>> from stainfree.workflows.train import run_train
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path, summary = run_train(make_cells(6, size=24), f"{d}/m.safetensors", config=TrainConfig(epochs=1, batch_size=4))
    ...     Classifier.load(path).classes, summary["cells"], summary["epochs"]
    (['round', 'spindle'], 12, 1)
    """
    from ..eval.evaluate import class_labels, labelled_cells
    from ..ml.classifier import check_finite
    from ..ml.data import fits_in_memory
    from ..ml.distributed import is_main_process, launched_world
    from ..ml.train import fit

    t0 = time.monotonic()
    out = Path(out)
    _check_model_path(out, force)
    if channels is not None:
        cells = cells.select_channels(list(channels))
    if merge_classes:
        cells = cells.merge_classes(merge_classes)
    n_all = len(cells)
    cells = labelled_cells(cells)
    # a large set on disk is streamed by fit (the search, on folds of cells, needs them in memory)
    streamed = search is None and cells.is_lazy and not fits_in_memory(len(cells), cells.shape[1:])
    if not streamed:
        cells = cells.load()
        check_finite(cells.images, cells.table["cell_id"])
    labels, classes, counts = class_labels(cells.table)
    config = config or TrainConfig.for_data(cells)
    config.validate()
    masks = (cells.read_masks if streamed else cells.read_masks()) if cells.has_masks else None
    found = None
    if group is not None and search is None:
        raise StainfreeError("a group column only shapes the search's inner folds; give --search with --group")
    if search is not None:
        if launched_world().size > 1:
            raise StainfreeError("--search runs in one process; start it without torchrun")
        if group is not None and group not in cells.table.columns:
            raise StainfreeError(f"group column {group!r} does not exist (columns: {', '.join(map(str, cells.table.columns))})")
        groups = cells.table[group].astype(str).to_numpy() if group else None
        found = search_config(
            cells.images, labels, channels=cells.channels, base=config, search=search, groups=groups, classes=classes, masks=masks
        )
        config = found.config
    logger.info("training on all %d labelled cells (%s)", len(labels), ", ".join(f"{c} {counts[c]}" for c in classes))
    images = cells if streamed else cells.images
    clf, history = fit(images, labels, channels=cells.channels, config=config, classes=classes, masks=masks)
    if is_main_process():  # under torchrun, rank 0 writes the model
        _check_model_path(out, force)  # the same refusal if something appeared there while training
        out.parent.mkdir(parents=True, exist_ok=True)
        clf.save(out)
    summary = {
        "cells": int(len(labels)),
        "left_out": int(n_all - len(labels)),
        "classes": {c: int(counts[c]) for c in classes},
        "channels": list(cells.channels),
        "epochs": len(history),
        "seconds": round(time.monotonic() - t0, 1),
        "path": str(out),
    }
    if found is not None:
        summary["search"] = found.record()
    return out, summary
