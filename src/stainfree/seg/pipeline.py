"""From fields to cells: segment each field, crop its cells and build their table."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io.fields import Field, _check_same_channels, read_field_files, read_points
from ..utils import StainfreeError
from .classical import SegmentationParams, area_in_pixels
from .crops import crop_objects, crop_points
from .fluorescence import (
    MixtureFit,
    correct_background,
    disk_intensity,
    fit_two_populations,
)
from .spill import gathered, spill_part
from .tiles import OVERLAP, TILE, field_tasks, join_tiles, objects_in_core

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FieldCells:
    """Single cells cut from fields, before they are written: images, masks, one row per cell.

    Made by :func:`cells_from_fields`.

    Attributes
    ----------
    images : (n, C, size, size) ndarray
        One crop per cell.
    masks : (n, size, size) ndarray of bool or None
        Each cell's own mask; ``None`` when cells were cropped at given points.
    table : pandas.DataFrame
        One row per cell: ``cell_id``, ``source``, ``field``, ``centroid_x`` (column),
        ``centroid_y`` (row) and what segmentation, density and labelling added.
    channels : list of str
        The channels of the crops.
    pixel_size : float or None
        Micrometres per pixel of the fields.
    per_field : list of dict
        What happened in each field (objects found, dropped, cells kept), for the log.
    segment_channel : str
        The channel that was segmented.
    label_fit : MixtureFit, optional
        The fluorescence mixture that labelled the cells, if any.
    label_images : dict of str to ndarray
        Each field's instance labels by field name, when they were kept.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.seg.pipeline import FieldCells
    >>> stats = {"field": "a", "objects": 3, "cells": 2, "dropped_small": 1}
    >>> cells = FieldCells(np.zeros((2, 1, 8, 8)), None, pd.DataFrame({"cell_id": ["a:1", "a:2"]}), ["phase"], None, [stats], "phase")
    >>> cells.summary_lines()
    ['a: 3 objects, 2 cells kept; dropped 1 below the minimum area']
    """

    images: np.ndarray
    masks: np.ndarray | None
    table: pd.DataFrame
    channels: list[str]
    pixel_size: float | None
    per_field: list[dict]
    segment_channel: str
    label_fit: MixtureFit | None = None
    label_images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """One line per field (objects or points, cells kept, what was dropped), then the mixture's."""
        lines = []
        for s in self.per_field:
            dropped = [
                f"{s[k]} {what}"
                for k, what in (
                    ("dropped_small", "below the minimum area"),
                    ("dropped_large", "above the maximum area"),
                    ("dropped_border", "touching the border"),
                    ("skipped_edge", "whose crop leaves the field"),
                )
                if s.get(k)
            ]
            found = f"{s['objects']} objects" if "objects" in s else f"{s['points']} points"
            lines.append(f"{s['field']}: {found}, {s['cells']} cells kept" + (f"; dropped {', '.join(dropped)}" if dropped else ""))
        if self.label_fit is not None:
            lines.append(self.label_fit.summary())
        return lines


def _channel_roles(fields: Sequence[Field], segment_channel, label_channel, keep_label_channel: bool) -> tuple[list[str], list[str], str]:
    """The fields' channels, those to crop (the label channel left out) and the one to segment."""
    _check_same_channels(fields)
    channels = list(fields[0].channels)
    if label_channel is not None and label_channel not in channels:
        raise StainfreeError(f"label channel {label_channel!r} is not in the fields (channels: {', '.join(channels)})")
    crop_channels = [c for c in channels if keep_label_channel or c != label_channel]
    if not crop_channels:
        raise StainfreeError(f"the only channel is the label channel {label_channel!r}; nothing label-free is left to crop")
    if segment_channel is None:
        segment_channel = crop_channels[0]
    elif segment_channel not in channels:
        raise StainfreeError(f"segmentation channel {segment_channel!r} is not in the fields (channels: {', '.join(channels)})")
    return channels, crop_channels, segment_channel


@dataclasses.dataclass
class _FieldPart:
    """The cells of one field."""

    crops: np.ndarray
    masks: np.ndarray | None
    table: pd.DataFrame
    stats: dict
    radius: float  # of the disk the label channel is summed over
    labels: np.ndarray | None = None


def _check_label_options(label_names, label_radius, background_sigma, min_posterior) -> None:
    """Refuse out-of-range fluorescence-label options, whether or not a label channel is given."""
    if len(label_names) != 2 or len(set(label_names)) != 2:
        raise StainfreeError(f"label names must be two different names (negative, positive), got {', '.join(map(str, label_names))}")
    if label_radius is not None and not label_radius > 0:
        raise StainfreeError(f"label radius must be above 0 px, got {label_radius}")
    if not background_sigma > 0:
        raise StainfreeError(f"background sigma must be above 0 px, got {background_sigma}")
    if not 0 <= min_posterior <= 1:
        raise StainfreeError(f"min posterior must be in [0, 1], got {min_posterior}")


def _cells_at_points(f: Field, rows: pd.DataFrame, crop_index: list[int], *, size: int, pad: bool, label_radius) -> _FieldPart:
    rows = rows.reset_index(drop=True)
    crops, kept, skipped = crop_points(f.image[crop_index], rows["y"], rows["x"], size=size, pad=pad)
    table = rows.iloc[kept].reset_index(drop=True).rename(columns={"x": "centroid_x", "y": "centroid_y"})
    table.insert(0, "cell_id", [f"{f.name}:p{k}" for k in kept])
    stats = {"field": f.name, "source": f.source, "points": len(rows), "skipped_edge": skipped}
    return _FieldPart(crops, None, table, stats, label_radius or 30.0)


def _cells_of_objects(f: Field, crop_index: list[int], *, size: int, pad: bool, label_radius, **segment) -> _FieldPart:
    from .density import density_columns
    from .methods import segment_field

    result = segment_field(f, **segment)
    if f.core is not None:  # a tile of a larger field keeps the objects centred in its own region
        result = dataclasses.replace(result, labels=objects_in_core(result.labels, f.core))
    crops, field_masks, table, skipped = crop_objects(f.image[crop_index], result.labels, size=size, pad=pad)
    table.insert(0, "cell_id", [f"{f.name}:{k}" for k in table["label_id"]])
    stats = {
        "field": f.name,
        "source": f.source,
        "mode": result.mode,
        "objects": result.n_objects,
        "diameter": round(result.diameter, 2),
        "dropped_small": result.dropped_small,
        "dropped_large": result.dropped_large,
        "dropped_border": result.dropped_border,
        "skipped_edge": skipped,
    }
    density, units = density_columns(
        result.labels, table["centroid_y"].to_numpy(), table["centroid_x"].to_numpy(), pixel_size=f.pixel_size, diameter=result.diameter
    )
    table = pd.concat([table, density], axis=1)
    stats.update(field_density=float(density["field_density"].iloc[0]) if len(density) else None, **units)
    if result.n_objects == 0 and f.parent is None:  # an empty tile of a larger field is no news
        logger.warning("%s: no objects found", f.source)
    return _FieldPart(crops, field_masks, table, stats, label_radius or max(result.diameter / 2, 1.0), result.labels)


def _label_by_intensity(table: pd.DataFrame, intensities: list[np.ndarray], label_channel: str, **mixture) -> MixtureFit:
    intensity = np.concatenate(intensities)
    fit = fit_two_populations(intensity, what=f"label channel {label_channel}", **mixture)
    table["label_intensity"] = intensity
    table["label_posterior"] = fit.posterior.max(axis=1)
    table["label"] = fit.labels
    return fit


def _field_part(item, *, crop: dict, segment: dict, label: tuple, keep_labels: bool, spill=None) -> tuple[_FieldPart, np.ndarray | None]:
    """One field's cells (segmented, or at its points) and, with a label channel, their intensities:
    the task :func:`cells_from_fields` runs per field, here or on a Dask worker (which saves the
    crops in ``spill`` itself when given)."""
    f, points = item
    f = f.loaded()  # a lazy field (OME-Zarr), or a tile of one, is read here, by the task
    part = _cells_at_points(f, points, **crop) if points is not None else _cells_of_objects(f, **crop, **segment)
    if not keep_labels:
        part.labels = None  # a field-sized image a worker need not send back
    part.table.insert(1, "source", f.source)
    part.table.insert(2, "field", f.name)
    part.stats["cells"] = len(part.table)
    label_channel, background_sigma = label
    intensity = None
    if label_channel is not None:
        corrected = correct_background(f.channel(label_channel), sigma=background_sigma)
        intensity = disk_intensity(corrected, part.table["centroid_y"], part.table["centroid_x"], radius=part.radius)
    if spill is not None:
        spill_part(part, spill)
    return part, intensity


def cells_from_fields(
    fields: Sequence[Field],
    *,
    size: int = 64,
    pad: bool = False,
    segment_channel: str | None = None,
    params: SegmentationParams | None = None,
    method: str = "auto",
    segmenter=None,
    points: str | os.PathLike | pd.DataFrame | None = None,
    label_channel: str | None = None,
    label_names: Sequence[str] = ("negative", "positive"),
    label_radius: float | None = None,
    background_sigma: float = 200.0,
    min_posterior: float = 0.8,
    keep_label_channel: bool = False,
    keep_labels: bool = False,
    random_state: int = 0,
    workers: int = 0,
    scheduler: str | None = None,
    tile: int = TILE,
    spill: str | os.PathLike | None = None,
) -> FieldCells:
    """Segment (or take given points), crop and optionally label the cells of several fields.

    The fields must have the same channels. Objects are found on ``segment_channel`` (default:
    the first channel that is not the label channel) by ``method``: ``"auto"`` segments
    transmitted-light fields with the learnt ``segmenter`` (default: the shipped phase-contrast
    model) and fluorescence fields with the classical pipeline and ``params``
    (see :func:`stainfree.seg.methods.segment_field`). With ``label_channel``,
    each cell's background-corrected total intensity within ``label_radius`` px (default: half
    the segmentation diameter, or 30 px with points, as Ogawa et al.) feeds a two-population
    mixture fitted over all fields; the label channel is left out of the crops unless
    ``keep_label_channel``, so no classifier sees the stain by accident.

    Parameters
    ----------
    fields : sequence of Field
        The fields, all with the same channels (:func:`stainfree.io.fields.read_field_files`).
    size : int, default 64
        Side of the square crops, px.
    pad : bool, default False
        Pad crops that leave the field with each channel's median instead of skipping the cell.
    segment_channel : str, optional
        The channel objects are found on.
    params : SegmentationParams, optional
        Settings of the classical pipeline (default: ``mode="auto"``).
    method : {"auto", "learnt", "classical"}, default "auto"
        How objects are found (:func:`stainfree.seg.methods.segment_field`).
    segmenter : Segmenter or path, optional
        The learnt segmenter; default the shipped phase-contrast model.
    points : path or DataFrame, optional
        Cell centres (columns ``x``, ``y`` and ``field`` when there are several fields); given
        points replace segmentation (:func:`stainfree.io.fields.read_points`).
    label_channel : str, optional
        A stain that labels each cell by a two-population mixture on its intensity.
    label_names : (str, str), default ("negative", "positive")
        Names of the dim and the bright population.
    label_radius : float, optional
        Radius of the disk the label channel is summed over, px.
    background_sigma : float, default 200
        Scale of the label channel's background estimate, px (:func:`correct_background`).
    min_posterior : float, default 0.8
        Cells whose posterior is below this for both populations stay unlabelled.
    keep_label_channel : bool, default False
        Keep the label channel in the crops.
    keep_labels : bool, default False
        Keep each field's label image (``FieldCells.label_images``), for overlays.
    random_state : int, default 0
        Seed of the mixture fit.
    workers : int, default 0
        Segment and crop the fields on a local Dask cluster of this many threads (segmenting
        releases the GIL; 0 or 1: here, one field after another). The result is the serial one.
    scheduler : str, optional
        The address of a running Dask scheduler to send the fields to instead.
    tile : int, default :data:`stainfree.seg.tiles.TILE`
        Fields larger than this on a side are segmented in overlapping tiles of this size, each a
        task of its own reading only its window (:mod:`stainfree.seg.tiles`).
    spill : path, optional
        A folder where each task saves its field's crops and masks; ``images`` and ``masks`` are then
        :class:`~stainfree.seg.spill.SpilledCells`, read a field at a time (:mod:`stainfree.seg.spill`).

    Returns
    -------
    FieldCells
        The crops (N x C x size x size), their masks (``None`` with points), one table row per
        cell (``cell_id``, ``source``, ``field``, ``label_id``, ``centroid_x``/``centroid_y``
        (column/row), area, density columns, and the label columns with ``label_channel``), and
        per-field counts of what was found and dropped.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_field
    >>> from stainfree.io.fields import Field
    >>> from stainfree.seg.pipeline import cells_from_fields
    >>> truth = make_field((256, 256), n_cells=12, random_state=1)
    >>> field = Field(truth.brightfield[None], ["BF"], "f1", "f1.tif")
    >>> cells = cells_from_fields([field], size=32, method="classical")
    >>> cells.images.shape[1:], cells.table["field"].unique().tolist()
    ((1, 32, 32), ['f1'])
    """
    from ..parallel import dask_client, map_tasks
    from .density import density_levels
    from .methods import METHODS, load_segmenter

    if not fields:
        raise StainfreeError("no fields given")
    if size < 4:
        raise StainfreeError(f"crop size must be at least 4 px, got {size}")
    _check_label_options(label_names, label_radius, background_sigma, min_posterior)
    channels, crop_channels, segment_channel = _channel_roles(fields, segment_channel, label_channel, keep_label_channel)
    if method not in METHODS:
        raise StainfreeError(f"segmentation method must be one of {', '.join(METHODS)}, not {method!r}")
    if method in ("auto", "learnt") and points is None:
        segmenter = load_segmenter(segmenter)
    params = params or SegmentationParams(mode="auto")
    point_sets = read_points(points, fields) if points is not None else None
    crop = {"crop_index": [channels.index(c) for c in crop_channels], "size": size, "pad": pad, "label_radius": label_radius}
    task = functools.partial(
        _field_part,
        crop=crop,
        segment={"segment_channel": segment_channel, "method": method, "params": params, "segmenter": segmenter},
        label=(label_channel, background_sigma),
        keep_labels=keep_labels,
        spill=spill,
    )
    tiles, items, names = field_tasks(fields, point_sets, tile=tile, overlap=max(OVERLAP, size))
    with dask_client(workers=workers, scheduler=scheduler, threads=True) as client:  # segmenting releases the GIL
        done = map_tasks(task, items, client=client, names=names, desc="fields", unit="fields", log=logger)
    parts = [part for part, _ in done]
    stitched = join_tiles(tiles, parts, {f.name: f.image.shape[-2:] for f in fields}, keep_labels=keep_labels)
    intensities = [intensity for _, intensity in done if intensity is not None]
    per_field = [p.stats for p in parts]
    table = pd.concat([p.table for p in parts], ignore_index=True)
    if len(table) == 0:
        detail = "; ".join(f"{s['field']}: {s.get('objects', s.get('points'))} found" for s in per_field)
        raise StainfreeError(f"no cells in any field ({detail}); check the segmentation mode, diameter and area range")
    if "field_density" in table and table["field"].nunique() > 1:
        table["density_level"] = density_levels(table["field_density"], table["field"])
    fit = None
    if label_channel is not None:
        fit = _label_by_intensity(
            table, intensities, label_channel, names=label_names, min_posterior=min_posterior, random_state=random_state
        )
    all_masks = None if any(p.masks is None for p in parts) else gathered([p.masks for p in parts])
    label_images = {t.name: p.labels for t, p in zip(tiles, parts) if t.parent is None} if keep_labels and point_sets is None else {}
    label_images.update(stitched)
    return FieldCells(
        gathered([p.crops for p in parts]),
        all_masks,
        table,
        crop_channels,
        fields[0].pixel_size,
        per_field,
        segment_channel,
        fit,
        label_images,
    )


#: Keywords of :func:`read_fields_to_segment`: how to read the fields, and the segmentation settings.
READ_OPTIONS = ("channels", "grey", "planes", "pixel_size", "params", "min_area", "max_area")


def read_fields_to_segment(paths, options: dict) -> tuple[list[Field], SegmentationParams]:
    """Read the fields to segment and settle the segmentation parameters.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The field files; the names of all their fields must differ.
    options : dict
        Keyword options; the :data:`READ_OPTIONS` are taken out of it (the rest stay):
        ``channels``, ``grey``, ``planes``, ``pixel_size`` (as
        :func:`~stainfree.io.fields.read_field_files`), ``params`` (a
        :class:`~stainfree.seg.classical.SegmentationParams`) and ``min_area``/``max_area``
        (pixels, or square micrometres as ``"20um2"``, see
        :func:`~stainfree.seg.classical.area_in_pixels`).

    Returns
    -------
    fields : list of Field
        Every field of every file.
    params : SegmentationParams
        ``params`` (default ``mode="auto"``) with the area range in pixels.

    Raises
    ------
    StainfreeError
        When a file cannot be read, two fields share a name, or an area is not understood.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, tifffile
    >>> from stainfree.seg.pipeline import read_fields_to_segment
    >>> options = {"channels": ["phase"], "pixel_size": 0.5, "min_area": "10um2", "size": 32}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     tifffile.imwrite(Path(folder) / "well1.tif", np.zeros((16, 16), np.uint8))
    ...     fields, params = read_fields_to_segment([Path(folder) / "well1.tif"], options)
    >>> [(f.name, f.channels) for f in fields], params.min_area, options
    ([('well1', ['phase'])], 40.0, {'size': 32})
    """
    given = {name: options.pop(name) for name in READ_OPTIONS if name in options}
    params, min_area, max_area = given.pop("params", None), given.pop("min_area", None), given.pop("max_area", None)
    fields = read_field_files(paths, **given)
    params = params or SegmentationParams(mode="auto")
    for name, value in (("min_area", min_area), ("max_area", max_area)):
        if value is not None:
            params = dataclasses.replace(params, **{name: area_in_pixels(value, fields[0].pixel_size, what=name.replace("_", " "))})
    return fields, params
