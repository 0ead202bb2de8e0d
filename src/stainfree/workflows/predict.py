"""The `predict` stage: a saved classifier applied to a CellSet, or to whole fields (segment,
classify every cell, write overlays and a table)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.fields import write_label_image
from ..pl.fields import plot_mixture, plot_overlay
from ..seg.pipeline import cells_from_fields, read_fields_to_segment
from ..seg.scoring import labelled_scores
from ..utils import StainfreeError, atomic_output_dir, refuse_existing

# ---------------------------------------------------------------------- mixed populations
PREDICT_MARKER = "fields.json"


def _label_names_for(clf, label_channel: str | None, label_names: Sequence[str] | None) -> list[str] | None:
    """The two class names a fluorescence label gives, checked against the model's classes."""
    if label_channel is None:
        return label_names
    label_names = list(label_names) if label_names else list(clf.classes)
    if len(label_names) != 2:
        raise StainfreeError(
            f"a fluorescence label gives two classes, but the model has {len(clf.classes)} ({', '.join(clf.classes)}); pass --label-names"
        )
    unknown = [n for n in label_names if n not in clf.classes]
    if unknown:
        raise StainfreeError(f"label name {unknown[0]!r} is not one of the model's classes ({', '.join(clf.classes)})")
    return label_names


def _composition(table: pd.DataFrame, classes: list[str], field_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cells of each predicted class per field, and the table of counts and fractions."""
    counts = pd.crosstab(table["field"], table["predicted"]).reindex(columns=classes, fill_value=0)
    counts = counts.reindex(field_names, fill_value=0)
    fractions = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).add_prefix("fraction_")
    composition = pd.concat([counts.add_prefix("cells_"), fractions], axis=1).reset_index().rename(columns={"index": "field"})
    return counts, composition


def _write_overlays(folder: Path, fields, result, table: pd.DataFrame, classes: list[str]) -> None:
    folder.mkdir()
    by_field = {name: dict(zip(g["label_id"], g["predicted"])) for name, g in table.groupby("field", sort=False)}
    for f in fields:
        plot_overlay(
            f.loaded().channel(result.segment_channel),  # a lazy (OME-Zarr) field is read one at a time
            result.label_images[f.name],
            by_field.get(f.name, {}),
            classes,
            folder / f"{f.name}.png",
            title=f.name,
        )


def run_predict(
    model: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    label_channel: str | None = None,
    label_names: Sequence[str] | None = None,
    tta: bool = True,
    prior: str = "balanced",
    force: bool = False,
    **options,
) -> tuple[Path, dict]:
    """Segment, crop and classify every cell of mixed-population fields (Yao et al., Fig. 4).

    Cells are cut at the size the model was trained on and must have the model's channels.

    Parameters
    ----------
    model : path
        A classifier saved by ``stainfree evaluate`` (``model.safetensors``).
    paths : sequence of path
        The field images.
    out : path
        The folder to write (atomically): ``cells.parquet`` (one row per cell: field, centroid,
        area, predicted class and probabilities, and the fluorescence label with
        ``label_channel``), ``composition.csv`` (cells and fractions of each predicted class per
        field), ``overlays/<field>.png``, ``labels/<field>_labels.tif`` (each field's objects, whose
        values are the table's ``label_id``), ``fields.json`` (settings, per-field counts and, with
        a label channel, accuracy, sensitivity and specificity overall and per field) and
        ``report.html``.
    label_channel : str, optional
        A fluorescence channel that labels each cell (two-population mixture), to score the
        predictions against.
    label_names : (str, str), optional
        The model's names of the dim and the bright population; default the model's two classes.
    tta : bool, default True
        Average each cell's prediction over its 8 rotations and flips.
    prior : str, default "balanced"
        The class prior of the decision (:func:`stainfree.ml.predict.predict_cells`).
    force : bool, default False
        Replace ``out`` when it is an earlier output.
    **options
        How to read and segment the fields, as :func:`stainfree.workflows.segment.run_segment`.

    Returns
    -------
    pathlib.Path
        ``out``.
    dict
        What ``fields.json`` holds.

    Raises
    ------
    StainfreeError
        When the fields lack the model's channels or the label names are not the model's classes.

    Examples
    --------
    >>> from stainfree.workflows.predict import run_predict
    >>> path, summary = run_predict("runs/demo/model.safetensors", ["field1.tif"], "runs/fields")  # doctest: +SKIP
    >>> summary["predicted"]  # doctest: +SKIP
    {'round': 31, 'spindle': 12}
    """
    from ..core.cellset import CellSet
    from ..ml.classifier import Classifier
    from ..ml.predict import predict_cells, prediction_columns
    from ..report.sections import write_report

    out = Path(out)
    refuse_existing(out, force=force)
    clf = Classifier.load(model)
    label_names = _label_names_for(clf, label_channel, label_names)
    fields, params = read_fields_to_segment(paths, options)
    missing = [c for c in clf.channels if c not in fields[0].channels]
    if missing:
        raise StainfreeError(
            f"the model was trained on channels {', '.join(clf.channels)}, but {Path(fields[0].source).name} has "
            f"{', '.join(fields[0].channels)} (name the channels with --channels)"
        )
    size = int((clf.cell_size or clf.input_size)[0])
    result = cells_from_fields(
        fields,
        size=size,
        params=params,
        label_channel=label_channel,
        label_names=label_names or ("negative", "positive"),
        keep_labels=options.get("points") is None,
        **options,
    )
    cells = CellSet(result.images, result.table, channels=result.channels, groups=["field"])
    predictions = predict_cells(clf, cells, tta=tta, prior=prior)
    table = result.table.copy()
    if "label" in table and table["label"].isna().all():
        table = table.drop(columns=["label"])
    table = table.assign(**prediction_columns(predictions, clf.classes))
    counts, composition = _composition(table, list(clf.classes), [f.name for f in fields])
    summary: dict = {
        "model": str(model),
        "classes": list(clf.classes),
        "crop_size": size,
        "segmentation": dataclasses.asdict(params),
        "field_channels": list(fields[0].channels),
        "fields": result.per_field,
        "cells": int(len(table)),
        "predicted": {c: int(counts[c].sum()) for c in clf.classes},
    }
    if "label" in table and table["label"].notna().any():
        positive = label_names[1] if label_channel is not None else None
        summary["against_labels"] = labelled_scores(table, clf.classes, positive=positive)
        summary["against_labels"]["per_field"] = {
            name: labelled_scores(group, clf.classes, positive=positive) for name, group in table.groupby("field", sort=False)
        }
        if result.label_fit is not None:
            summary["label_fit"] = result.label_fit.as_dict()
    with atomic_output_dir(out, force=force, marker=PREDICT_MARKER) as tmp:
        table.to_parquet(tmp / "cells.parquet", index=False)
        composition.to_csv(tmp / "composition.csv", index=False)
        if result.label_images:
            _write_overlays(tmp / "overlays", fields, result, table, list(clf.classes))
            (tmp / "labels").mkdir()
            for name, labels in result.label_images.items():
                write_label_image(labels, tmp / "labels" / f"{name}_labels.tif")
        if result.label_fit is not None:
            plot_mixture(result.label_fit, tmp / "label_fit.png", channel=label_channel)
        (tmp / PREDICT_MARKER).write_text(json.dumps(summary, indent=2, default=str))
        write_report(tmp, title=f"stainfree predict: {out.name}")
    return out, summary


def run_predict_cellset(
    model: str | os.PathLike,
    cells: str | os.PathLike,
    out: str | os.PathLike,
    *,
    tta: bool = True,
    prior: str = "balanced",
    force: bool = False,
    workers: int = 0,
    scheduler: str | None = None,
) -> tuple[Path, dict]:
    """``stainfree predict`` on a CellSet: predict every cell with a saved classifier and write ``out`` (parquet).

    Parameters
    ----------
    model : str or PathLike
        The classifier's ``.safetensors`` file.
    cells : str or PathLike
        The ``.cells`` folder.
    out : str or PathLike
        The parquet file to write: a row per cell, its prediction and class probabilities.
    tta : bool, default True
        Average each cell's prediction over its 8 rotations and flips.
    prior : str, default "balanced"
        The class prior the probabilities assume (see :func:`~stainfree.ml.predict.predict_cells`).
    force : bool, default False
        Overwrite an existing output.
    workers, scheduler : int, str, optional
        Classify batches of cells on a Dask cluster (:func:`~stainfree.ml.predict.predict_cells`).

    Returns
    -------
    path : Path
        The file written.
    summary : dict
        Cells and predicted counts; when the cells carry labels, ``against_labels`` (accuracy
        and balanced accuracy on the cells whose label the model knows) and ``unscored_labels``
        (the other labels).

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.train import TrainConfig, fit
    >>> from stainfree.workflows.predict import run_predict_cellset
    >>> cs = make_cells(3, size=32)
    >>> clf, _ = fit(cs.images, cs.labels, channels=cs.channels, config=TrainConfig(epochs=1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = clf.save(f"{d}/model.safetensors"), cs.save(f"{d}/cells.cells")
    ...     path, summary = run_predict_cellset(f"{d}/model.safetensors", f"{d}/cells.cells", f"{d}/predicted.parquet", tta=False)
    ...     path.name, summary["cells"], summary["against_labels"]["cells"]
    ('predicted.parquet', 6, 6)
    """
    from ..core.store import open_cellset
    from ..eval.metrics import classification_metrics
    from ..ml.classifier import Classifier
    from ..ml.predict import predict_cells
    from ..utils import write_parquet

    out = Path(out)
    refuse_existing(out, force=force)
    clf = Classifier.load(model)
    cs = open_cellset(cells)
    if len(cs) == 0:
        raise StainfreeError(f"{cells}: there are no cells to predict")
    table = predict_cells(clf, cs, tta=tta, prior=prior, workers=workers, scheduler=scheduler)
    write_parquet(table, out, force=force)
    summary = {"cells": len(table), "predicted": {str(k): int(v) for k, v in table["predicted"].value_counts().items()}}
    if "label" in table:
        labels, labelled = table["label"].astype(str), table["label"].notna()
        known = labelled & labels.isin(clf.classes)
        summary["unscored_labels"] = sorted(set(labels[labelled & ~known]))
        if known.any():
            m = classification_metrics(labels[known], table["predicted"][known], classes=clf.classes)
            summary["against_labels"] = {"cells": int(known.sum()), "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}
    return out, summary
