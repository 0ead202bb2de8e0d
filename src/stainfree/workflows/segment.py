"""The `segment` stage: fields in, a CellSet and its run folder out."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..io.fields import write_label_image
from ..pl.fields import plot_mixture
from ..seg.fluorescence import balance_per_group
from ..seg.pipeline import FieldCells, cells_from_fields, read_fields_to_segment
from ..seg.spill import write_spilled
from ..utils import StainfreeError, atomic_output_dir, refuse_existing

if TYPE_CHECKING:
    from ..core.cellset import CellSet

logger = logging.getLogger(__name__)

LABELS_MARKER = "labels.json"
"""The file that marks a ``--save-labels`` folder (the field names and their label images)."""


class SegmentRun(NamedTuple):
    """What :func:`run_segment` wrote and found.

    Attributes
    ----------
    path : Path
        The ``.cells`` folder written.
    result : FieldCells
        The segmentation: every cell found (before balancing), per-field counts, the label fit.
    cells : CellSet
        The cells saved.
    """

    path: Path
    result: FieldCells
    cells: CellSet


def run_segment(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    save_labels: str | os.PathLike | None = None,
    balance: bool = False,
    force: bool = False,
    append: bool = False,
    **options,
) -> SegmentRun:
    """``stainfree segment``: fields on disk -> a ``.cells`` folder with a mask per cell.

    The mixture histogram of a fluorescence label (``label_fit.png``) and the per-field counts
    (``segmentation.json``) are written inside the output.

    Parameters
    ----------
    paths : sequence of str or PathLike
        The field image files.
    out : str or PathLike
        The ``.cells`` folder to write.
    save_labels : str or PathLike, optional
        A folder to write with each field's label image, ``<dir>/<field>_labels.tif``, and
        ``labels.json`` naming them (not with ``points``). Like the cells it is built under a
        hidden temporary name and appears only when the run succeeds; an existing folder is
        replaced only with ``force``, and only when it is empty or an earlier one of these.
    balance : bool, default False
        Subsample the classes to equal counts within each field (needs labels).
    force : bool, default False
        Overwrite an existing output (the cells and the label folder).
    append : bool, default False
        Add the cells to the existing CellSet ``out`` (:func:`~stainfree.core.append.append_cells`:
        its channels and crop size, new cell ids) instead of writing a new one; ``segmentation.json``
        keeps describing the first run.
    **options
        How to read and segment the fields (:data:`~stainfree.seg.pipeline.READ_OPTIONS`:
        ``channels``, ``grey``, ``planes``, ``pixel_size``, ``params``, ``min_area``/``max_area``
        in pixels or square micrometres such as ``"20um2"``) and any keyword of
        :func:`~stainfree.seg.pipeline.cells_from_fields`.

    Returns
    -------
    SegmentRun
        The path, the :class:`~stainfree.seg.pipeline.FieldCells` summary and the cells.

    Raises
    ------
    StainfreeError
        For ``save_labels`` with ``points`` or existing (without ``force``), or ``balance`` without labels.

    Examples
    --------
    >>> from stainfree.workflows.segment import run_segment
    >>> from stainfree.datasets.synthetic import make_field
    >>> import os
    >>> import tempfile
    >>> import tifffile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     tifffile.imwrite(f"{d}/f0.tif", make_field((96, 96), n_cells=6, random_state=0).brightfield)
    ...     run = run_segment([f"{d}/f0.tif"], f"{d}/f0.cells", size=24, method="classical")
    ...     len(run.cells), sorted(os.listdir(run.path))
    (6, ['cells.parquet', 'cellset.json', 'images.zarr', 'masks.zarr', 'segmentation.json'])
    """
    out = Path(out)
    if append and (force or not (out / "cellset.json").is_file()):
        raise StainfreeError(f"{out}: --append needs an existing CellSet there" + (", and no --force" if force else ""))
    if save_labels is not None and options.get("points") is not None:
        raise StainfreeError("--save-labels needs segmentation; it cannot be used with --points")
    refuse_existing(save_labels, force=force)
    fields, params = read_fields_to_segment(paths, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the tasks save their crops beside the output (removed at the end); an append keeps them in memory
    spill_dir = (
        contextlib.nullcontext()
        if append
        else tempfile.TemporaryDirectory(prefix=f".{out.name}.spill-", dir=out.parent, ignore_cleanup_errors=True)
    )
    with spill_dir as spill:
        result = cells_from_fields(fields, params=params, keep_labels=save_labels is not None, spill=spill, **options)
        return _write_run(out, paths, result, params, options, save_labels=save_labels, balance=balance, force=force, append=append)


def _write_run(
    out: Path, paths, result: FieldCells, params, options: dict, *, save_labels, balance: bool, force: bool, append: bool
) -> SegmentRun:
    """Write the CellSet of :func:`run_segment` (a field at a time from the spill) or append to it,
    with the label folder and the extras."""
    import json

    from ..core.append import append_cells
    from ..core.cellset import provenance_entry
    from ..core.store import CellSetWriter, open_cellset

    keep = np.arange(len(result.table))
    if balance:
        if result.table["label"].isna().all():
            raise StainfreeError("--balance needs labels (from --label-channel or a points file's label column)")
        keep = np.sort(balance_per_group(result.table["label"], result.table["field"], random_state=options.get("random_state", 0)))
        logger.info("balanced per field: %d of %d cells kept", len(keep), len(result.table))
    details = {k: v for k, v in options.items() if k != "points" or isinstance(v, (str, os.PathLike))}
    record = provenance_entry(
        "fields.run_segment",
        fields=[str(p) for p in paths],
        params=dataclasses.asdict(params),
        options={k: str(v) if isinstance(v, os.PathLike) else v for k, v in details.items()},
        per_field=result.per_field,
        balanced=balance,
    )
    table = result.table.iloc[keep].reset_index(drop=True)
    # the label images are built in a hidden folder too, published right after the cells
    with contextlib.ExitStack() as stack:
        if save_labels is not None:
            _write_label_folder(stack.enter_context(atomic_output_dir(save_labels, force=force, marker=LABELS_MARKER)), result, out)
        if append:
            masks = None if result.masks is None else np.asarray(result.masks)[keep].astype(np.uint8)
            append_cells(out, np.asarray(result.images)[keep], table, masks=masks)
            return SegmentRun(out, result, open_cellset(out))
        h, w = result.images.shape[2:]
        shape = {"n_cells": len(keep), "channels": result.channels, "height": h, "width": w, "dtype": result.images.dtype}
        with CellSetWriter(out, **shape, masks=result.masks is not None, force=force) as writer:
            write_spilled(writer, result.images, result.masks, keep)
            writer.finish(table, groups=["field"], pixel_size=result.pixel_size, provenance=[record])
            summary = {"per_field": result.per_field, "cells": len(keep), "balanced": balance}
            if result.label_fit is not None:
                plot_mixture(result.label_fit, writer.tmp / "label_fit.png", channel=options.get("label_channel"))
                summary["label_fit"] = result.label_fit.as_dict()
            (writer.tmp / "segmentation.json").write_text(json.dumps(summary, indent=2, default=str))
    return SegmentRun(out, result, open_cellset(out))


def _write_label_folder(folder: Path, result: FieldCells, out: Path) -> None:
    """Each field's label image as ``<field>_labels.tif``, and :data:`LABELS_MARKER` naming them."""
    import json

    files = {}
    for name, labels in result.label_images.items():
        files[name] = f"{name}_labels.tif"
        write_label_image(labels, folder / files[name], force=True)
    body = {"cells": str(out), "label_images": files, "objects": {k: int(v.max()) for k, v in result.label_images.items()}}
    (folder / LABELS_MARKER).write_text(json.dumps(body, indent=2))
