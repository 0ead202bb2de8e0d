"""Choosing a segmentation method per field: the learnt model for transmitted light, the
classical pipeline for fluorescence, or cellpose when installed."""

from __future__ import annotations

import logging

import numpy as np

from ..utils import StainfreeError

logger = logging.getLogger(__name__)

#: The values of ``method`` (:func:`segment_field`).
METHODS = ("auto", "learnt", "classical", "cellpose")
#: The segmenter used when none is given: the shipped phase-contrast model.
DEFAULT_MODEL = "builtin:phase"


def load_segmenter(segmenter=None):
    """Load a learnt segmentation model.

    Parameters
    ----------
    segmenter : str, os.PathLike, Segmenter or None, default None
        A model file, ``builtin:<name>``, or a loaded :class:`~stainfree.seg.model.Segmenter`
        (returned as it is); ``None`` gives :data:`DEFAULT_MODEL`.

    Returns
    -------
    Segmenter
        The model.

    Examples
    --------
    >>> from stainfree.seg.methods import load_segmenter
    >>> model = load_segmenter("builtin:phase")
    >>> model.channels, load_segmenter(model) is model
    (['phase'], True)
    """
    from .model import Segmenter

    if isinstance(segmenter, Segmenter):
        return segmenter
    return Segmenter.load(segmenter if segmenter is not None else DEFAULT_MODEL)


def model_channels(segmenter, channels: list[str], segment_channel: str) -> list[int]:
    """Positions in the field's channels of the channels a segmentation model reads.

    Parameters
    ----------
    segmenter : Segmenter
        The model; its ``channels`` are the names it was trained on.
    channels : list of str
        The field's channel names.
    segment_channel : str
        The channel to segment, used for a one-channel model whose channel the field lacks.

    Returns
    -------
    list of int
        The model's own channels when the field has them all, else ``[segment_channel]``'s
        position for a one-channel model.

    Raises
    ------
    StainfreeError
        When a model of several channels does not find them all in the field.

    Examples
    --------
    >>> from stainfree.seg.methods import load_segmenter, model_channels
    >>> model = load_segmenter()
    >>> model_channels(model, ["gfp", "phase"], "gfp"), model_channels(model, ["gfp", "bf"], "bf")
    ([1], [1])
    """
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
    """Segment one field with the method that suits it.

    ``method="auto"`` uses the learnt ``segmenter`` on fields that
    :func:`stainfree.seg.classical.guess_mode` calls brightfield (or when ``params.mode`` says
    brightfield), and the classical pipeline with ``params`` on fluorescence.

    Parameters
    ----------
    field : Field
        The field (:class:`stainfree.io.fields.Field`).
    segment_channel : str
        The channel to segment (a one-channel model reads it; see :func:`model_channels`).
    method : {"auto", "learnt", "classical", "cellpose"}, default "auto"
        The segmentation method.
    params : SegmentationParams, optional
        Settings of the classical pipeline; the learnt model and cellpose use its ``diameter``,
        and the learnt model its ``min_area`` and ``max_area``. Default ``mode="auto"``.
    segmenter : str, os.PathLike or Segmenter, optional
        The learnt model, as :func:`load_segmenter` takes it; default :data:`DEFAULT_MODEL`.

    Returns
    -------
    SegmentationResult
        The labels and what was dropped (:class:`stainfree.seg.classical.SegmentationResult`).

    Raises
    ------
    StainfreeError
        When ``method`` is unknown, the field lacks a channel, or the settings are out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.fields import Field
    >>> from stainfree.seg.classical import SegmentationParams
    >>> from stainfree.seg.methods import segment_field
    >>> image = np.zeros((1, 40, 40)); image[0, 5:15, 5:15] = 100; image[0, 25:35, 22:34] = 80
    >>> field = Field(image, ["dapi"], "f", "f.tif")
    >>> result = segment_field(field, segment_channel="dapi", params=SegmentationParams(diameter=10))
    >>> result.mode, result.n_objects
    ('fluorescence', 2)
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
