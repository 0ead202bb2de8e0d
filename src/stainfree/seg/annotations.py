"""Reading instance annotations of fields: label images, ImageJ ROI sets, COCO JSON, binary masks.

Annotations are matched to fields by the field's name (the file stem). In a folder, a field
``f`` takes the first of ``f.tif``, ``f.tiff``, ``f.png`` (also with the suffixes ``_labels``,
``_label``, ``_masks``, ``_mask``, ``_cp_masks``), then ``f.zip`` or ``f_RoiSet.zip`` (an ImageJ/Fiji
ROI set); COCO files (any ``*.json`` in the folder, or the path itself) match images by the stem of
their ``file_name``. A label image whose only values are 0 and one other is a binary mask: it is
split into connected objects, with a warning, since touching cells then merge.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, first_line, refuse_partial

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
NAME_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask", "_cp_masks")


def label_image(path: str | os.PathLike, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an instance label image (or a binary mask, split into connected objects).

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF or PNG holding one channel of non-negative whole numbers (0 = background). A grey
        colour image (equal R, G, B) is read as its first channel.
    shape : tuple of int, optional
        The (rows, cols) of the field the labels belong to; a label image of another size is an
        error. Default: no check.

    Returns
    -------
    labels : (H, W) ndarray of int32
        The labels as stored. A binary mask (0 and one other value) is split into 4-connected
        objects numbered 1..n, with a logged warning, since touching cells then merge.

    Raises
    ------
    StainfreeError
        When the file cannot be read, is a colour image, is not 2-D, holds fractional or negative
        values or only zeros, or does not match ``shape``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tifffile
    >>> from stainfree.seg.annotations import label_image
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "m.tif"
    ...     tifffile.imwrite(path, np.array([[0, 3, 3], [0, 0, 0], [7, 0, 0]], np.uint16))
    ...     label_image(path, shape=(3, 3)).tolist()
    [[0, 3, 3], [0, 0, 0], [7, 0, 0]]
    """
    from skimage import measure

    from ..io.images import read_image

    path = Path(path)
    try:
        data = np.asarray(read_image(path))
    except StainfreeError:
        raise
    except Exception as exc:
        raise StainfreeError(f"{path}: not a readable label image ({first_line(exc)})") from exc
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        if not (data[..., :3] == data[..., :1]).all():
            raise StainfreeError(f"{path}: a colour image, not a label image (save instance labels as one 16-bit channel)")
        data = data[..., 0]
    data = np.squeeze(data)
    if data.ndim != 2:
        raise StainfreeError(f"{path}: a label image must be 2-D, got shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.mod(data, 1) == 0):
            raise StainfreeError(f"{path}: holds fractional values, not instance labels")
    if data.min() < 0:
        raise StainfreeError(f"{path}: holds negative values, not instance labels")
    labels = data.astype(np.int64)
    _check_shape(labels, shape, path)
    values = np.unique(labels)
    if len(values) == 1 and values[0] == 0:
        raise StainfreeError(f"{path}: holds no objects (all zero)")
    if len(values) == 2:
        split = measure.label(labels > 0, connectivity=1)
        if split.max() > 1:
            logger.warning(
                "%s: a binary mask (values 0 and %d); split into %d connected objects, so touching cells merge",
                path,
                int(values[1]),
                int(split.max()),
            )
            labels = split
    return labels.astype(np.int32)


def _check_shape(labels: np.ndarray, shape, path) -> None:
    if shape is not None and tuple(labels.shape) != tuple(shape):
        raise StainfreeError(f"{path}: annotation is {labels.shape[0]}x{labels.shape[1]} px but its field is {shape[0]}x{shape[1]}")


def _paint(labels: np.ndarray, polygons: Sequence[np.ndarray], value: int) -> None:
    """Fill (row, col) polygons with ``value`` (later objects win where they overlap)."""
    from skimage import draw

    for poly in polygons:
        if len(poly) >= 3:
            rr, cc = draw.polygon(poly[:, 0], poly[:, 1], shape=labels.shape)
            labels[rr, cc] = value


def roi_set(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an ImageJ/Fiji ROI set (``RoiSet.zip`` or one ``.roi``) to instance labels.

    Parameters
    ----------
    path : str or os.PathLike
        The ROI set. ImageJ stores points as (x, y) = (col, row); they are filled as polygons.
        Area ROIs count (polygons, freehand, rectangles, ovals); lines and points paint nothing.
    shape : tuple of int
        (rows, cols) of the label image to paint.

    Returns
    -------
    labels : ndarray of int32, shape ``shape``
        ROI ``k`` (1-based, in file order) painted with ``k``; later ROIs win where they overlap.

    Raises
    ------
    StainfreeError
        When the file or one of its ROIs cannot be read, or no ROI covers any pixel.

    Examples
    --------
    A rectangle from x = 1 to 4 (columns) and y = 1 to 3 (rows):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import roifile
    >>> from stainfree.seg.annotations import roi_set
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "RoiSet.zip"
    ...     roifile.ImagejRoi.frompoints([[1, 1], [4, 1], [4, 3], [1, 3]]).tofile(path)
    ...     labels = roi_set(path, (5, 6))
    >>> labels[2].tolist()
    [0, 1, 1, 1, 1, 0]
    """
    import roifile

    path = Path(path)
    try:
        rois = roifile.roiread(path)
    except Exception as exc:
        raise StainfreeError(f"{path}: not a readable ImageJ ROI set ({first_line(exc)})") from exc
    rois = rois if isinstance(rois, list) else [rois]
    labels = np.zeros(shape, np.int32)
    for index, roi in enumerate(rois, 1):
        try:
            parts = roi.coordinates(multi=True)
        except Exception as exc:
            raise StainfreeError(f"{path}: ROI {index} ({roi.name or 'unnamed'}) cannot be read ({first_line(exc)})") from exc
        _paint(labels, [np.asarray(p, float)[:, ::-1] for p in parts if len(p)], index)
    if not labels.any():
        raise StainfreeError(f"{path}: holds no area ROIs (polygons, freehand, rectangles, ovals)")
    return labels


def rle_decode(rle: dict) -> np.ndarray:
    """Decode COCO run-length encoding (a list of counts or the compressed string).

    Parameters
    ----------
    rle : dict
        ``size``: [rows, cols]; ``counts``: alternating runs of 0 and 1 in column-major
        (Fortran) order, starting with 0, as a list of ints or pycocotools' compressed string.

    Returns
    -------
    mask : ndarray of uint8, shape ``size``
        1 inside the object, 0 elsewhere.

    Examples
    --------
    >>> from stainfree.seg.annotations import rle_decode
    >>> rle_decode({"size": [2, 3], "counts": [1, 2, 3]}).tolist()
    [[0, 1, 0], [1, 0, 0]]
    >>> rle_decode({"size": [2, 3], "counts": "12"}).tolist()
    [[0, 1, 0], [1, 0, 0]]
    """
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _rle_from_string(counts)
    flat = np.zeros(h * w, np.uint8)
    position, value = 0, 0
    for run in counts:
        flat[position : position + run] = value
        position += run
        value = 1 - value
    return flat.reshape(w, h).T


def _rle_from_string(text: str) -> list[int]:
    """pycocotools' compressed counts: 5 bits per character, continuation bit 0x20, deltas from
    the count two back after the second."""
    counts: list[int] = []
    i = 0
    while i < len(text):
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[i]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            i += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def coco_labels(path: str | os.PathLike, names: Sequence[str], shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Instance labels per field from a COCO JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The COCO file: ``images`` (``id``, ``file_name``, optionally ``height`` and ``width``) and
        ``annotations`` (``image_id``, ``segmentation`` as polygons [x0, y0, x1, y1, ...] in
        (col, row) order, or as run-length encoding, see :func:`rle_decode`).
    names : sequence of str
        Field names; an image is used when the stem of its ``file_name`` is one of them.
    shapes : dict
        (rows, cols) of each field, by name.

    Returns
    -------
    dict of str to ndarray
        Labels (int32, 0 = background) of each matched field; annotation ``k`` of an image is
        painted with ``k`` (later ones win where they overlap). Unmatched names are left out.

    Raises
    ------
    StainfreeError
        When the file is not COCO, an image's size differs from its field's, or a matched image
        has no annotated pixels.

    Examples
    --------
    >>> import json
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.seg.annotations import coco_labels
    >>> coco = {
    ...     "images": [{"id": 1, "file_name": "a.tif", "height": 3, "width": 4}],
    ...     "annotations": [{"image_id": 1, "segmentation": {"size": [3, 4], "counts": [4, 2, 1, 2, 3]}}],
    ... }
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "coco.json"
    ...     _ = path.write_text(json.dumps(coco))
    ...     labels = coco_labels(path, ["a", "b"], {"a": (3, 4), "b": (3, 4)})
    >>> list(labels), labels["a"].tolist()
    (['a'], [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]])
    """
    path = Path(path)
    try:
        coco = json.loads(path.read_text())
        images = {img["id"]: img for img in coco["images"]}
        annotations = coco["annotations"]
    except Exception as exc:
        raise StainfreeError(f"{path}: not a COCO annotation file ({first_line(exc)})") from exc
    by_stem = {Path(img["file_name"]).stem: img_id for img_id, img in images.items()}
    wanted = {stem: img_id for stem, img_id in by_stem.items() if stem in names}
    out: dict[str, np.ndarray] = {}
    for stem, img_id in wanted.items():
        img = images[img_id]
        shape = shapes[stem]
        if (img.get("height"), img.get("width")) not in ((None, None), tuple(shape)):
            raise StainfreeError(
                f"{path}: image {img['file_name']} is {img['height']}x{img['width']} px but its field is {shape[0]}x{shape[1]}"
            )
        labels = np.zeros(shape, np.int32)
        for k, ann in enumerate((a for a in annotations if a["image_id"] == img_id), 1):
            seg = ann.get("segmentation")
            if isinstance(seg, dict):
                labels[rle_decode(seg).astype(bool)] = k
            elif seg:
                _paint(labels, [np.asarray(p, float).reshape(-1, 2)[:, ::-1] for p in seg], k)
        if not labels.any():
            raise StainfreeError(f"{path}: image {img['file_name']} has no annotated objects")
        out[stem] = labels
    return out


def read_annotations(masks: str | os.PathLike, fields: Sequence) -> dict[str, np.ndarray]:
    """Instance labels for each field from a folder or a COCO/ROI file.

    Fields are matched by name as the module docstring describes.

    Parameters
    ----------
    masks : str or os.PathLike
        A folder of label images, ROI sets and COCO ``.json`` files; or one COCO ``.json``; or
        one ROI set (``.zip`` or ``.roi``) when there is a single field.
    fields : sequence of Field
        The fields (:class:`stainfree.io.fields.Field`); their ``name`` and the (rows, cols) of
        their ``image`` are used.

    Returns
    -------
    dict of str to ndarray
        The (H, W) int32 labels of each field, by field name.

    Raises
    ------
    StainfreeError
        When ``masks`` does not exist, a field finds no annotation (the message names the first
        and what was looked for), or an annotation is unreadable or of the wrong size.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tifffile
    >>> from stainfree.io.fields import Field
    >>> from stainfree.seg.annotations import read_annotations
    >>> field = Field(np.zeros((1, 2, 3), np.uint8), ["phase"], "a", "a.tif")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     tifffile.imwrite(Path(folder) / "a_masks.tif", np.array([[0, 2, 2], [5, 0, 0]], np.uint16))
    ...     truth = read_annotations(folder, [field])
    >>> truth["a"].tolist()
    [[0, 2, 2], [5, 0, 0]]
    """
    masks = Path(masks)
    refuse_partial(masks)
    if not masks.exists():
        raise StainfreeError(f"{masks}: no such annotation folder or file")
    names = [f.name for f in fields]
    shapes = {f.name: tuple(f.image.shape[-2:]) for f in fields}
    out: dict[str, np.ndarray] = {}
    if masks.is_file():
        if masks.suffix.lower() == ".json":
            out = coco_labels(masks, names, shapes)
            if not out:
                raise StainfreeError(
                    f"{masks}: no image's file_name matches a field ({', '.join(names[:5])}{'...' if len(names) > 5 else ''})"
                )
        elif masks.suffix.lower() in (".zip", ".roi") and len(fields) == 1:
            out = {names[0]: roi_set(masks, shapes[names[0]])}
        else:
            raise StainfreeError(f"{masks}: give a folder of annotations, a COCO .json, or a ROI set for a single field")
    else:
        for json_file in sorted(masks.glob("*.json")):
            if not _looks_like_coco(json_file):
                logger.info("%s: not COCO annotations (no images and annotations lists); skipped", json_file)
                continue
            for name, labels in coco_labels(json_file, [n for n in names if n not in out], shapes).items():
                out[name] = labels
        for name in names:
            if name in out:
                continue
            found = _annotation_file(masks, name)
            if found is None:
                raise StainfreeError(
                    f"{masks}: no annotation for field {name!r} (looked for {name}.tif/.png, {name}_labels.tif, {name}.zip, {name}_RoiSet.zip and COCO *.json)"
                )
            out[name] = roi_set(found, shapes[name]) if found.suffix.lower() == ".zip" else label_image(found, shape=shapes[name])
    return out


def _looks_like_coco(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)


def _annotation_file(folder: Path, name: str) -> Path | None:
    for suffix in NAME_SUFFIXES:
        for ext in IMAGE_SUFFIXES:
            candidate = folder / f"{name}{suffix}{ext}"
            if candidate.is_file():
                return candidate
    for candidate in (folder / f"{name}.zip", folder / f"{name}_RoiSet.zip", folder / f"{name}_rois.zip"):
        if candidate.is_file():
            return candidate
    return None
