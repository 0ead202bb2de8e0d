"""Choosing a segmentation method per field: the learnt model for transmitted light, the
classical pipeline for fluorescence, or cellpose when installed."""

from __future__ import annotations

import logging

import numpy as np

from ..utils import StainfreeError

logger = logging.getLogger(__name__)

METHODS = ("auto", "learnt", "classical", "cellpose")
DEFAULT_MODEL = "builtin:phase"


def load_segmenter(segmenter=None):
    """A :class:`~stainfree.seg.model.Segmenter` from a path, ``builtin:<name>``, or as given
    (``None`` gives the shipped phase-contrast model)."""
    from .model import Segmenter

    if isinstance(segmenter, Segmenter):
        return segmenter
    return Segmenter.load(segmenter if segmenter is not None else DEFAULT_MODEL)


def model_channels(segmenter, channels: list[str], segment_channel: str) -> list[int]:
    """Positions in ``channels`` of the channels the model reads: its own names when the field
    has them all, else the segmentation channel for a one-channel model."""
    if all(c in channels for c in segmenter.channels):
        return [channels.index(c) for c in segmenter.channels]
    if len(segmenter.channels) == 1:
        return [channels.index(segment_channel)]
    raise StainfreeError(
        f"the segmentation model reads channels {', '.join(segmenter.channels)}; the fields have {', '.join(channels)} "
        "(name the fields' channels with --channels to match)"
    )


def segment_field(
    field,
    *,
    segment_channel: str,
    method: str = "auto",
    params=None,
    segmenter=None,
):
    """Segment one :class:`stainfree.io.fields.Field`.

    ``method="auto"`` uses the learnt ``segmenter`` (default: the shipped phase-contrast model) on
    fields that :func:`stainfree.seg.classical.guess_mode` calls brightfield, and the classical pipeline
    with ``params`` on fluorescence. ``segmenter`` may be a path, ``builtin:<name>`` or a loaded
    segmenter. Returns a :class:`stainfree.seg.classical.SegmentationResult`.
    """
    from .classical import SegmentationParams, guess_mode, segment, segment_cellpose

    if method not in METHODS:
        raise StainfreeError(f"segmentation method must be one of {', '.join(METHODS)}, not {method!r}")
    params = params or SegmentationParams(mode="auto")
    channel = field.channel(segment_channel)
    if method == "auto":
        forced = params.mode if params.mode != "auto" else None
        method = "classical" if (forced or guess_mode(channel)) == "fluorescence" else "learnt"
    if method == "cellpose":
        return segment_cellpose(channel, diameter=params.diameter)
    if method == "classical":
        return segment(channel, params)
    segmenter = load_segmenter(segmenter)
    picked = model_channels(segmenter, list(field.channels), segment_channel)
    scale, how = segmenter.resolve_scale(pixel_size=field.pixel_size, diameter=params.diameter)
    logger.info("%s: learnt segmentation, field rescaled by %.3f (%s)", field.name, scale, how)
    result = segmenter.segment(field.image[picked], pixel_size=field.pixel_size, diameter=params.diameter)
    if params.min_area is not None or params.max_area is not None:
        from .instances import relabel_by_size

        areas = np.bincount(result.labels.ravel())
        too_large = np.flatnonzero(areas > params.max_area) if params.max_area is not None else np.zeros(0, int)
        labels = np.where(np.isin(result.labels, too_large[too_large > 0]), 0, result.labels)
        n_before = result.n_objects
        result.labels = relabel_by_size(labels, min_area=params.min_area or 0)
        result.dropped_large = int((too_large > 0).sum())
        result.dropped_small = n_before - result.n_objects - result.dropped_large
    return result
