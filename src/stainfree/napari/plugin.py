"""What napari calls: the reader and the dock widgets that ``napari.yaml`` names.

Each widget is made by a function (napari calls it when the user opens the widget), so importing
this module imports neither napari nor Qt. User errors become one napari notification, as one line
on the command line. (No ``from __future__ import annotations`` here: magicgui reads the widgets'
parameter types, napari's layer classes, from their annotations.)
"""

import logging
import os
from pathlib import Path

import numpy as np

from ..core.cellset import HEADER
from ..utils import StainfreeError
from .layers import cellset_layers, classify_objects, labels_by_class, prediction_layers, save_annotation, segment_image

logger = logging.getLogger(__name__)
#: Suffixes the widgets add to a layer's name, taken off again to name its field.
LAYER_SUFFIXES = (" labels", " predicted")


def get_reader(path):
    """napari's reader hook: a function that opens ``path`` when it is a CellSet folder or a
    ``stainfree predict`` run (its folder or its ``fields.json``), else ``None``.

    Examples
    --------
    >>> from stainfree.napari.plugin import get_reader
    >>> get_reader("photo.png") is None
    True
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(os.fspath(path))
    if path.name == "fields.json":
        path = path.parent
    if (path / HEADER).is_file():
        return lambda _: cellset_layers(path)
    if (path / "fields.json").is_file() and (path / "cells.parquet").is_file():
        return lambda _: prediction_layers(path)
    return None


def field_name(layer_name: str) -> str:
    """The field a layer shows: its name without what the widgets added (`` labels``, `` predicted``).

    Examples
    --------
    >>> from stainfree.napari.plugin import field_name
    >>> field_name("well1 labels"), field_name("well1")
    ('well1', 'well1')
    """
    for suffix in LAYER_SUFFIXES:
        if layer_name.endswith(suffix):
            return layer_name[: -len(suffix)]
    return layer_name


def shown_plane(layer, viewer, *, channels: int = 1) -> np.ndarray:
    """The 2-D plane of ``layer`` the viewer shows (``(channels, H, W)`` when ``channels`` > 1:
    the layer's third-last axis is then its channels); RGB images become grey."""
    data = layer.data
    if getattr(layer, "rgb", False):
        data = np.asarray(data, dtype=np.float64).mean(axis=-1)
    kept = 3 if channels > 1 else 2
    if data.ndim < kept:
        raise StainfreeError(f"layer {layer.name!r} has {data.ndim} dimension(s); {kept} are needed")
    if channels > 1 and data.shape[-3] != channels:
        raise StainfreeError(
            f"layer {layer.name!r} should have the model's {channels} channels along its third-last axis; it has shape {data.shape}"
        )
    leading = data.ndim - kept
    step = tuple(viewer.dims.current_step[-data.ndim :][:leading]) if leading else ()
    return np.asarray(data[step])


def _notify_error(exc: StainfreeError) -> None:
    from napari.utils.notifications import show_error

    logger.error("%s", exc)
    show_error(str(exc))


def segment_widget():
    """Dock widget: segment the image shown, adding a labels layer ``<image> labels``."""
    import napari
    from magicgui import magicgui

    from ..seg.methods import METHODS

    @magicgui(
        call_button="Segment",
        method={"choices": list(METHODS)},
        diameter={"min": 0.0, "max": 2000.0, "label": "diameter (px, 0: estimate)"},
    )
    def segment(
        image: napari.layers.Image, viewer: napari.Viewer, method: str = "auto", diameter: float = 0.0
    ) -> napari.types.LayerDataTuple:
        try:
            result = segment_image(shown_plane(image, viewer), channel="phase", method=method, diameter=diameter or None)
        except StainfreeError as exc:
            _notify_error(exc)
            return None
        logger.info("%s: %d objects (%s)", image.name, result.n_objects, result.mode)
        return (result.labels, {"name": f"{field_name(image.name)} labels"}, "labels")

    return segment


def classify_widget():
    """Dock widget: classify every object of a labels layer with a trained model, adding the
    labels coloured by predicted class, with each object's prediction as layer features."""
    import napari
    from magicgui import magicgui

    from ..ml.classifier import Classifier

    @magicgui(call_button="Classify", model={"label": "model", "filter": "*.safetensors"}, tta={"label": "average 8 rotations/flips"})
    def classify(
        image: napari.layers.Image,
        labels: napari.layers.Labels,
        viewer: napari.Viewer,
        model: Path = Path("model.safetensors"),
        tta: bool = True,
    ) -> napari.types.LayerDataTuple:
        try:
            if not Path(model).is_file():
                raise StainfreeError(f"{model}: no such model file (a model.safetensors from stainfree evaluate or train)")
            clf = Classifier.load(model)
            plane = shown_plane(image, viewer, channels=len(clf.channels))
            objects = shown_plane(labels, viewer)
            features = classify_objects(plane, objects, clf, tta=tta)
        except StainfreeError as exc:
            _notify_error(exc)
            return None
        meta = {"name": f"{field_name(labels.name)} predicted", "features": features, "colormap": labels_by_class(features, clf.classes)}
        return (objects, meta, "labels")

    return classify


def annotation_widget():
    """Dock widget: save a labels layer as ``<folder>/<field>_labels.tif``, the annotation that
    ``stainfree train-segmenter --masks FOLDER`` reads for the field ``<field>.tif``."""
    import napari
    from magicgui import magicgui
    from napari.utils.notifications import show_info

    @magicgui(
        call_button="Save annotation",
        folder={"mode": "d", "label": "annotation folder"},
        field={"label": "field (default: the layer's)"},
        force={"label": "replace an existing file"},
    )
    def save(labels: napari.layers.Labels, viewer: napari.Viewer, folder: Path = Path("annotations"), field: str = "", force: bool = False):
        try:
            path = save_annotation(shown_plane(labels, viewer), folder, field.strip() or field_name(labels.name), force=force)
        except StainfreeError as exc:
            _notify_error(exc)
            return None
        show_info(f"saved {path}")
        return path

    return save
