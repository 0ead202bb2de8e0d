"""Training a segmenter from annotated fields, and scoring a segmentation against a truth."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, refuse_existing

logger = logging.getLogger(__name__)

SCORE_MARKER = "scores.json"


def split_validation(names: Sequence[str], *, fraction: float, random_state: int) -> tuple[list[int], list[int]]:
    """Positions of training and validation fields.

    Parameters
    ----------
    names : sequence of str
        The fields' names.
    fraction : float
        The fraction of fields held out for validation: at least one when there are four or
        more fields, none below that (or when ``fraction`` is 0).
    random_state : int
        Seed of the draw.

    Returns
    -------
    train, validation : list of int
        Positions of the training and the validation fields, sorted.

    Raises
    ------
    StainfreeError
        When ``fraction`` is outside [0, 1).

    Examples
    --------
    >>> from stainfree.workflows.segmentation import split_validation
    >>> split_validation(["a", "b", "c"], fraction=0.2, random_state=0)
    ([0, 1, 2], [])
    >>> train, val = split_validation(list("abcdefghij"), fraction=0.2, random_state=0)
    >>> len(train), len(val), sorted(train + val) == list(range(10))
    (8, 2, True)
    """
    if not 0 <= fraction < 1:
        raise StainfreeError(f"validation fraction must be in [0, 1), got {fraction}")
    n = len(names)
    n_val = 0 if n < 4 or fraction <= 0 else max(1, int(round(fraction * n)))
    order = np.random.default_rng(random_state).permutation(n)
    val = sorted(order[:n_val].tolist())
    return [i for i in range(n) if i not in val], val


def run_train_segmenter(
    paths: Sequence[str | os.PathLike],
    masks: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config=None,
    validation_fraction: float = 0.1,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    force: bool = False,
    licence: str | None = None,
    source: str | None = None,
    **read_options,
):
    """``stainfree train-segmenter``: fields and their annotations on disk -> a ``.safetensors`` segmenter.

    Parameters
    ----------
    paths : sequence of str or PathLike
        The field image files (all with the same channels).
    masks : str or PathLike
        Their annotations: a folder of label images or ROI sets named after the fields, a COCO
        ``.json``, or a ROI set for a single field (:func:`~stainfree.seg.annotations.read_annotations`).
    out : str or PathLike
        The model file to write.
    config : SegTrainConfig, optional
        How to train; default ``SegTrainConfig()``.
    validation_fraction : float, default 0.1
        Fields held out for validation (:func:`split_validation`, drawn with ``config.seed``).
    init : str or PathLike, optional
        A segmenter to start from (fine-tuning).
    resume : bool, default False
        Continue an interrupted training from its checkpoint.
    force : bool, default False
        Overwrite an existing model file.
    licence, source : str, optional
        Recorded in the model's provenance, with the fields' names.
    **read_options
        How to read the fields (:func:`~stainfree.io.fields.read_field_files`).

    Returns
    -------
    path : Path
        The model file.
    segmenter : Segmenter
        The trained segmenter.

    Raises
    ------
    StainfreeError
        When the fields' channels differ, or the output exists without ``force``.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import tifffile
    >>> from stainfree.datasets.synthetic import make_field
    >>> from stainfree.seg.training import SegTrainConfig
    >>> from stainfree.workflows.segmentation import run_train_segmenter
    >>> config = SegTrainConfig(steps=2, batch_size=2, crop=32, width=4, depth=2, diameter=12, validate_every=2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     field = make_field((96, 96), n_cells=6, random_state=1)
    ...     tifffile.imwrite(f"{d}/f1.tif", field.brightfield)
    ...     os.mkdir(f"{d}/masks")
    ...     tifffile.imwrite(f"{d}/masks/f1.tif", field.labels.astype("uint16"))
    ...     path, segmenter = run_train_segmenter([f"{d}/f1.tif"], f"{d}/masks", f"{d}/seg.safetensors", config=config)
    ...     path.name, path.exists(), segmenter.channels
    ('seg.safetensors', True, ['ch0'])
    """
    from ..io.fields import read_field_files
    from ..seg.annotations import read_annotations
    from ..seg.methods import load_segmenter
    from ..seg.training import SegTrainConfig, _checkpoint_path, train_segmenter

    out = Path(out)
    refuse_existing(out, force=force)
    config = config or SegTrainConfig()
    fields = [f.loaded() for f in read_field_files(paths, **read_options)]  # scored and trained on in memory
    channels = list(fields[0].channels)
    odd = next((f for f in fields if list(f.channels) != channels), None)
    if odd is not None:
        raise StainfreeError(f"{odd.source}: channels {', '.join(odd.channels)} differ from the first field's ({', '.join(channels)})")
    truth = read_annotations(masks, fields)
    pixel_sizes = {f.pixel_size for f in fields}
    pixel_size = pixel_sizes.pop() if len(pixel_sizes) == 1 else None
    if pixel_sizes:
        logger.warning("the fields have different pixel sizes; the model records none (pass --pixel-size to set one)")
    train_idx, val_idx = split_validation([f.name for f in fields], fraction=validation_fraction, random_state=config.seed)
    logger.info(
        "training on %d field(s), validating on %d: %s", len(train_idx), len(val_idx), ", ".join(fields[i].name for i in val_idx) or "none"
    )
    pick = lambda idx: ([fields[i].image for i in idx], [truth[fields[i].name] for i in idx])  # noqa: E731
    provenance = {
        "name": out.stem,
        "training_data": {
            "fields": [fields[i].name for i in train_idx],
            "validation": [fields[i].name for i in val_idx],
            "annotations": str(masks),
            "source": source,
        },
        "licence": licence,
    }
    segmenter = train_segmenter(
        *pick(train_idx),
        channels=channels,
        config=config,
        validation=pick(val_idx) if val_idx else None,
        pixel_size=pixel_size,
        init=load_segmenter(init) if init is not None else None,
        out=out,
        resume=resume,
        provenance=provenance,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    segmenter.save(out)
    _checkpoint_path(out).unlink(missing_ok=True)
    return out, segmenter


def run_score_segmentation(
    paths: Sequence[str | os.PathLike],
    truth: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "auto",
    segmenter=None,
    params=None,
    segment_channel: str | None = None,
    force: bool = False,
    **read_options,
) -> tuple[Path, dict]:
    """``stainfree score-segmentation``: segment fields and score them against their truth.

    Writes ``out/`` with ``scores.json`` (pooled and per-field F1 at IoU 0.5, average precision
    over IoU 0.5-0.95, mean matched IoU, split and merged cells; the settings), ``per_field.csv``,
    ``overlays/<field>.png`` (truth green, prediction magenta) and ``report.html``.

    Parameters
    ----------
    paths : sequence of str or PathLike
        The field image files.
    truth : str or PathLike
        Their annotations (as for :func:`run_train_segmenter`).
    out : str or PathLike
        The folder to write.
    method : str, default "auto"
        The segmentation method (:func:`~stainfree.seg.methods.segment_field`).
    segmenter : optional
        A learnt segmenter or its file, for ``auto`` and ``learnt`` (default: the shipped one).
    params : optional
        Classical segmentation parameters.
    segment_channel : str, optional
        The channel segmented; default each field's first.
    force : bool, default False
        Overwrite an existing output.
    **read_options
        How to read the fields (:func:`~stainfree.io.fields.read_field_files`).

    Returns
    -------
    path : Path
        The folder written.
    summary : dict
        The content of ``scores.json``.

    Raises
    ------
    StainfreeError
        For a field without ``segment_channel``, or an existing output without ``force``.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import tifffile
    >>> from stainfree.datasets.synthetic import make_field
    >>> from stainfree.workflows.segmentation import run_score_segmentation
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.mkdir(f"{d}/truth")
    ...     field = make_field((96, 96), n_cells=6, random_state=0)
    ...     tifffile.imwrite(f"{d}/f0.tif", field.brightfield)
    ...     tifffile.imwrite(f"{d}/truth/f0.tif", field.labels.astype("uint16"))
    ...     path, summary = run_score_segmentation([f"{d}/f0.tif"], f"{d}/truth", f"{d}/scores", method="classical")
    ...     sorted(os.listdir(path)), summary["pooled"]["f1"]
    (['overlays', 'per_field.csv', 'report.html', 'scores.json'], 1.0)
    """
    import pandas as pd
    from PIL import Image

    from ..io.fields import read_field_files
    from ..progress import progress
    from ..report.sections import write_report
    from ..seg.annotations import read_annotations
    from ..seg.methods import load_segmenter, segment_field
    from ..seg.scoring import (
        match_counts,
        outline_overlay,
        pool_counts,
        scores_from_counts,
    )
    from ..utils import atomic_output_dir

    out = Path(out)
    refuse_existing(out, force=force)
    fields = [f.loaded() for f in read_field_files(paths, **read_options)]  # scored and trained on in memory
    annotations = read_annotations(truth, fields)
    if method in ("auto", "learnt"):
        segmenter = load_segmenter(segmenter)
    rows, counts, overlays = [], [], {}
    for f in progress(fields, desc="fields", unit="fields", log=logger):
        channel = segment_channel or f.channels[0]
        if channel not in f.channels:
            raise StainfreeError(f"{f.source}: no channel {channel!r} (channels: {', '.join(f.channels)})")
        result = segment_field(f, segment_channel=channel, method=method, params=params, segmenter=segmenter)
        c = match_counts(annotations[f.name], result.labels)
        counts.append(c)
        rows.append({"field": f.name, "method": result.mode, **scores_from_counts(c)})
        overlays[f.name] = outline_overlay(f.image, annotations[f.name], result.labels)
    pooled = scores_from_counts(pool_counts(counts))
    summary = {
        "pooled": pooled,
        "per_field": rows,
        "method": method,
        "segmenter": (segmenter.provenance.get("name") if segmenter is not None else None),
        "params": dataclasses.asdict(params) if params is not None else None,
        "truth": str(truth),
    }
    with atomic_output_dir(out, force=force, marker=SCORE_MARKER) as tmp:
        (tmp / "overlays").mkdir()
        for name, rgb in overlays.items():
            Image.fromarray(rgb).save(tmp / "overlays" / f"{name}.png")
        pd.DataFrame(rows).to_csv(tmp / "per_field.csv", index=False)
        (tmp / SCORE_MARKER).write_text(json.dumps(summary, indent=2, default=str))
        write_report(tmp, title=f"Segmentation scored against {Path(truth).name}")
    return out, summary
