"""What the napari plugin shows and does, as plain functions of arrays and paths (no napari here):
the layer data napari's readers return, segmenting and classifying the objects of one image, and
a labels layer saved as an annotation that ``stainfree train-segmenter`` reads.

Layer data are napari's ``(data, metadata, layer_type)`` tuples, so they can be tested without a
viewer and handed to ``viewer.add_image`` / ``viewer.add_labels`` as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..report.cells import PALETTE
from ..utils import StainfreeError

#: Each channel's contrast limits come from this many cells, the first of the set.
RANGE_CELLS = 2048
#: The colour of objects that have no predicted class.
UNCLASSIFIED = "#7f7f7f"


class _RowReader:
    """Array-like view of what ``read(rows)`` returns for a CellSet's rows (its images, its masks),
    read when dask asks for a block: ``[rows, ...]`` with a slice of rows."""

    def __init__(self, read, shape: tuple, dtype):
        self.read, self.shape, self.dtype, self.ndim = read, tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self.read(np.arange(self.shape[0])[key[0]])[(slice(None), *key[1:])]


def cell_stack(cells, *, chunk: int = 256):
    """A CellSet's images as a lazy dask array ``(cells, channels, height, width)``, read in
    chunks of ``chunk`` cells when napari shows them, so that a set of any size opens at once."""
    import dask.array as da

    _, c, h, w = cells.shape
    reader = _RowReader(cells.read, cells.shape, cells.dtype)
    return da.from_array(reader, chunks=(chunk, c, h, w), asarray=False, meta=np.empty((0, 0, 0, 0), cells.dtype))


def _cell_labels(cells, *, chunk: int = 256):
    """One labels slice per cell, valued ``row + 1``: the cell's mask where the set has masks, the
    whole crop otherwise."""
    import dask.array as da

    n, _, h, w = cells.shape
    rows = da.arange(1, n + 1, chunks=chunk, dtype=np.uint32)[:, None, None]
    if not cells.has_masks:
        return da.broadcast_to(rows, (n, h, w)).rechunk((chunk, h, w))
    reader = _RowReader(cells.read_masks, (n, h, w), bool)
    masks = da.from_array(reader, chunks=(chunk, h, w), asarray=False, meta=np.empty((0, 0, 0), bool))
    return masks.astype(np.uint32) * rows


def cellset_layers(path: str | os.PathLike) -> list[tuple]:
    """The layers of a CellSet: its cells as an image stack (one layer per channel, the cell along
    the first axis) and a labels layer ``cells`` whose features are the set's table.

    Parameters
    ----------
    path : path
        A ``.cells`` folder.

    Returns
    -------
    list of (data, metadata, layer_type)
        The image stack (lazy: cells are read when shown; contrast limits from the 0.5-99.5
        percentiles of the first 2,048 cells), then the labels: slice ``i`` holds label ``i + 1``
        over the cell's mask (or the whole crop, for sets without masks), and feature row ``i``
        (``index`` = ``i + 1``) is the table's row, so hovering a cell shows its row.

    Raises
    ------
    StainfreeError
        When ``path`` is not a readable CellSet.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.napari.layers import cellset_layers
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     layers = cellset_layers(make_cells(3, size=24).save(f"{tmp}/s.cells"))
    ...     [(kind, data.shape) for data, meta, kind in layers], layers[1][1]["features"]["index"].tolist()
    ([('image', (6, 1, 24, 24)), ('labels', (6, 24, 24))], [1, 2, 3, 4, 5, 6])
    """
    from ..core.store import open_cellset
    from ..pl.interactive import channel_ranges

    cells = open_cellset(path)
    name = Path(path).name
    ranges = channel_ranges(cells.read(slice(0, min(len(cells), RANGE_CELLS))))
    limits = [[float(lo), float(hi) if hi > lo else float(lo) + 1] for lo, hi in ranges]
    image_meta = {
        "name": [f"{name} {c}" for c in cells.channels],
        "channel_axis": 1,
        "contrast_limits": limits,
        "colormap": "gray" if len(cells.channels) == 1 else None,
        "metadata": {"stainfree_cells": str(path), "channels": list(cells.channels)},
    }
    if image_meta["colormap"] is None:
        del image_meta["colormap"]
    features = cells.table.copy()
    features.insert(0, "index", np.arange(1, len(cells) + 1))
    labels_meta = {"name": f"{name} cells", "features": features, "opacity": 0.25, "metadata": {"stainfree_cells": str(path)}}
    return [(cell_stack(cells), image_meta, "image"), (_cell_labels(cells), labels_meta, "labels")]


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    """One colour per class, in the order given (matplotlib's tab20, as the report's views).

    Examples
    --------
    >>> from stainfree.napari.layers import class_colours
    >>> class_colours(["round", "spindle"])
    {'round': '#1f77b4', 'spindle': '#ff7f0e'}
    """
    palette = PALETTE["categorical"]
    return {str(c): palette[i % len(palette)] for i, c in enumerate(classes)}


def labels_by_class(features: pd.DataFrame, classes: Sequence[str]) -> dict:
    """A napari direct label colormap: each object (``features['index']``) in the colour of its
    ``predicted`` class; background transparent, objects without a class grey.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.napari.layers import labels_by_class
    >>> labels_by_class(pd.DataFrame({"index": [3, 7], "predicted": ["b", "a"]}), ["a", "b"])
    {None: '#7f7f7f', 0: 'transparent', 3: '#ff7f0e', 7: '#1f77b4'}
    """
    colours = class_colours(classes)
    out: dict = {None: UNCLASSIFIED, 0: "transparent"}
    for label, cls in zip(features["index"].to_numpy(), features["predicted"].to_numpy()):
        out[int(label)] = colours.get(str(cls), UNCLASSIFIED)
    return out


def prediction_layers(run: str | os.PathLike) -> list[tuple]:
    """The fields of a ``stainfree predict`` run, each with its objects coloured by predicted class.

    Parameters
    ----------
    run : path
        The folder ``stainfree predict MODEL FIELDS -o RUN`` wrote (``fields.json``,
        ``cells.parquet``, ``labels/<field>_labels.tif``).

    Returns
    -------
    list of (data, metadata, layer_type)
        Per field, its image (read again from where the run read it, when it is still there)
        and a labels layer ``<field> predicted`` whose features are the field's rows of
        ``cells.parquet`` (``index`` = ``label_id``) and whose colours are the classes'.

    Raises
    ------
    StainfreeError
        Naming the folder, when it is not a predict run of fields, or one written before runs
        kept their label images.
    """
    from ..io.fields import read_field_files
    from ..seg.annotations import label_image
    from ..workflows.predict import PREDICT_MARKER

    run = Path(run)
    try:
        summary = json.loads((run / PREDICT_MARKER).read_text())
        table = pd.read_parquet(run / "cells.parquet")
    except (OSError, ValueError) as exc:
        raise StainfreeError(f"{run}: not a `stainfree predict` run of fields ({exc})") from exc
    if not (run / "labels").is_dir():
        raise StainfreeError(f"{run}: no labels/ folder (a run written before predict kept label images, or of points): run predict again")
    classes = list(summary.get("classes", []))
    layers = []
    for entry in summary.get("fields", []):
        name = entry["field"]
        labels_path = run / "labels" / f"{name}_labels.tif"
        if not labels_path.is_file():
            continue
        source = Path(entry.get("source", ""))
        if source.is_file():
            read = [f.loaded() for f in read_field_files([source], channels=summary.get("field_channels"))]
            field = next((f for f in read if f.name == name), None)
            if field is not None:
                layers.append((field.image, {"name": [f"{name} {c}" for c in field.channels], "channel_axis": 0}, "image"))
        rows = table[table["field"].astype(str) == name].drop(columns=["field"])
        features = rows.rename(columns={"label_id": "index"}).reset_index(drop=True)
        meta = {"name": f"{name} predicted", "features": features, "colormap": labels_by_class(features, classes), "opacity": 0.6}
        layers.append((label_image(labels_path), meta, "labels"))
    if not layers:
        raise StainfreeError(f"{run}: no field of {PREDICT_MARKER} has a label image in labels/")
    return layers


def segment_image(image: np.ndarray, *, channel: str = "phase", method: str = "auto", diameter: float | None = None, segmenter=None):
    """Segment one field given as an array, as ``stainfree segment`` segments a file.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W) or (C, H, W)
        The field. Channels are named ``ch0``, ``ch1``... and ``channel`` picks the one to
        segment (the first when it names none of them).
    channel : str, default "phase"
        The name of a one-channel image (the learnt model reads one channel, whatever its name;
        the classical pipeline's automatic mode tells fluorescence from transmitted light by
        the pixels, not the name).
    method : {"auto", "learnt", "classical", "cellpose"}, default "auto"
        As :func:`stainfree.seg.methods.segment_field`.
    diameter : float, optional
        The cells' diameter in pixels (default: estimated).
    segmenter : optional
        The learnt model (:func:`stainfree.seg.methods.load_segmenter`); default the shipped one.

    Returns
    -------
    SegmentationResult
        ``labels`` (H, W) and what was dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.napari.layers import segment_image
    >>> image = np.zeros((40, 40)); image[5:15, 5:15] = 100; image[25:35, 22:34] = 80
    >>> segment_image(image, channel="dapi", method="classical", diameter=10).n_objects
    2
    """
    from ..io.fields import Field
    from ..seg.classical import SegmentationParams
    from ..seg.methods import segment_field

    image = np.asarray(image)
    if image.ndim == 2:
        image, names = image[None], [channel]
    elif image.ndim == 3:
        names = [f"ch{i}" for i in range(image.shape[0])]
        channel = channel if channel in names else names[0]
    else:
        raise StainfreeError(f"a field must be 2-D, or 3-D with channels first; got shape {image.shape}")
    params = SegmentationParams(diameter=diameter) if diameter else None
    return segment_field(Field(image, names, "image", "napari"), segment_channel=channel, method=method, params=params, segmenter=segmenter)


def classify_objects(image: np.ndarray, labels: np.ndarray, model, *, tta: bool = True) -> pd.DataFrame:
    """Classify every object of a label image with a trained classifier.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W) or (C, H, W)
        The field, with the model's channels in the model's order (one channel for a
        one-channel model).
    labels : numpy.ndarray, shape (H, W)
        The objects.
    model : path or Classifier
        A ``model.safetensors`` from ``stainfree evaluate`` or ``train``.
    tta : bool, default True
        Average over the 8 rotations and flips.

    Returns
    -------
    pandas.DataFrame
        One row per object cut whole: ``index`` (its label), ``centroid_x``, ``centroid_y``,
        ``area``, ``predicted`` and ``prob_<class>``.

    Raises
    ------
    StainfreeError
        When the image's channels are not the model's.
    """
    from ..core.cellset import CellSet
    from ..ml.classifier import Classifier
    from ..ml.predict import predict_cells, prediction_columns
    from ..seg.crops import crop_objects

    clf = model if isinstance(model, Classifier) else Classifier.load(model)
    image = np.asarray(image)
    image = image[None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[0] != len(clf.channels):
        raise StainfreeError(
            f"the model reads {len(clf.channels)} channel(s) ({', '.join(clf.channels)}); the image has shape {image.shape} "
            "(give it as channels x height x width in the model's order)"
        )
    if np.asarray(labels).shape != image.shape[1:]:
        raise StainfreeError(f"the labels have shape {np.asarray(labels).shape}, the image {image.shape[1:]}")
    size = int((clf.cell_size or clf.input_size)[0])
    crops, masks, table, _ = crop_objects(image, np.asarray(labels), size=size, pad=True)
    out = table.rename(columns={"label_id": "index"}).reset_index(drop=True)
    if len(out) == 0:
        return out.assign(predicted=pd.Series(dtype=object))
    predictions = predict_cells(clf, CellSet(crops, channels=clf.channels), tta=tta)
    return out.assign(**prediction_columns(predictions, clf.classes))


def save_annotation(labels: np.ndarray, folder: str | os.PathLike, field: str, *, force: bool = False) -> Path:
    """Save a label image as the annotation of field ``field``: ``<folder>/<field>_labels.tif``,
    the name ``stainfree train-segmenter --masks FOLDER`` looks for beside ``<field>.tif``.

    Parameters
    ----------
    labels : numpy.ndarray, shape (H, W)
        0 for background, one integer per cell (a binary mask would merge touching cells).
    folder : path
        The annotation folder (made when missing).
    field : str
        The field's name: its image file's stem.
    force : bool, default False
        Replace an annotation already there.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    StainfreeError
        When the labels are not one 2-D integer image, or the file exists without ``force``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.napari.layers import save_annotation
    >>> from stainfree.seg.annotations import read_annotations
    >>> from stainfree.io.fields import Field
    >>> labels = np.zeros((8, 8), np.int32); labels[1:4, 1:4] = 1; labels[5:7, 2:8] = 2
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_annotation(labels, tmp, "well1")
    ...     back = read_annotations(tmp, [Field(np.zeros((1, 8, 8)), ["phase"], "well1", "well1.tif")])
    ...     print(path.name, np.array_equal(back["well1"], labels))
    well1_labels.tif True
    """
    from ..io.fields import write_label_image

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise StainfreeError(f"an annotation must be one 2-D integer label image; got {labels.dtype} of shape {labels.shape}")
    if labels.min() < 0:
        raise StainfreeError("an annotation's labels must not be negative")
    name = str(field).strip()
    if not name or any(sep in name for sep in ("/", "\\")):
        raise StainfreeError(f"{field!r} is not a field name (the stem of the field's image file)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_label_image(labels, folder / f"{name}_labels.tif", force=force)
