"""Fields of view from OME-Zarr (OME-NGFF 0.4 and 0.5): single images and high-content plates.

An OME-Zarr image is a zarr group whose ``multiscales`` metadata lists its resolution levels;
stainfree reads the first (full-resolution) level, lazily, as a dask array: nothing is read until
a field is segmented, and a field larger than a tile is segmented block by block
(:mod:`stainfree.seg.tiles`). A plate (``plate`` metadata) is a grid of wells, each holding one or
more images (fields); every field becomes a :class:`~stainfree.io.fields.Field` named
``<row><column>_<image>``, e.g. ``B03_0``. Channel names come from the ``omero`` metadata, the
pixel size from the scale of the ``y`` and ``x`` axes when their unit is a length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, first_line
from .fields import Field

#: Micrometres per unit of the NGFF length units stainfree converts.
UNITS_UM = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr group folder (``zarr.json`` or ``.zattrs`` inside).

    Examples
    --------
    >>> from stainfree.io.omezarr import is_ome_zarr
    >>> is_ome_zarr("no/such/plate.zarr")
    False
    """
    path = Path(path)
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zattrs").is_file())


def _ome_attrs(group) -> dict:
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))  # 0.5 keeps its metadata under "ome", 0.4 at the top


def _image_field(group, name: str, source: str, channels, pixel_size) -> Field:
    import dask.array as da

    attrs = _ome_attrs(group)
    if "multiscales" not in attrs:
        raise StainfreeError(f"{source}: {name} is not an OME-Zarr image (no multiscales metadata)")
    scales = attrs["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in scales.get("axes", ["t", "c", "z", "y", "x"])]
    level = scales["datasets"][0]
    array = da.from_zarr(group[level["path"]])
    if array.ndim != len(axes) or axes[-2:] != ["y", "x"]:
        raise StainfreeError(f"{source}: axes {axes} do not end in y, x for an array of {array.ndim} dimensions")
    for axis in ("t", "z"):
        if axis in axes and array.shape[axes.index(axis)] > 1:
            raise StainfreeError(
                f"{source}: {name} has {array.shape[axes.index(axis)]} {axis} planes; stainfree reads 2-D fields (project or split them first)"
            )
    index = tuple(0 if a in ("t", "z") else slice(None) for a in axes)
    image = array[index]
    image = image if "c" in axes else image[None]
    stored = [c.get("label") or f"ch{i}" for i, c in enumerate(attrs.get("omero", {}).get("channels", []))]
    n = image.shape[0]
    if channels is not None and len(channels) != n:
        raise StainfreeError(f"{source}: {len(channels)} channel names given for {n} channels")
    names = list(channels) if channels is not None else (stored if len(stored) == n else [f"ch{i}" for i in range(n)])
    return Field(image, names, name, source, pixel_size if pixel_size is not None else _pixel_size(scales, axes))


def _pixel_size(scales: dict, axes: list[str]) -> float | None:
    units = {a["name"]: a.get("unit") for a in scales.get("axes", []) if isinstance(a, dict)}
    for t in scales["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale" and units.get("x") in UNITS_UM:
            return float(t["scale"][axes.index("x")]) * UNITS_UM[units["x"]]
    return None


def read_ome_zarr(path: str | os.PathLike, *, channels: list[str] | None = None, pixel_size: float | None = None) -> list[Field]:
    """The fields of an OME-Zarr image or plate, each a lazy ``(C, H, W)`` dask array.

    Parameters
    ----------
    path : path
        The ``.zarr`` folder: an image (``multiscales``) or a plate (``plate``).
    channels : list of str, optional
        Channel names, overriding the ``omero`` ones.
    pixel_size : float, optional
        Micrometres per pixel, overriding the axes' scale.

    Returns
    -------
    list of Field
        One for an image; one per field of every well for a plate, in the plate's well order.

    Raises
    ------
    StainfreeError
        For a folder zarr cannot open, metadata that is neither an image nor a plate, or fields
        with several z planes or time points.

    Examples
    --------
    >>> import tempfile, zarr, numpy as np
    >>> from stainfree.io.omezarr import read_ome_zarr
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = zarr.open_group(f"{tmp}/f.zarr", mode="w")
    ...     root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": [{"name": "c", "type": "channel"},
    ...         {"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
    ...         "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.65, 0.65]}]}]}]}
    ...     _ = root.create_array("0", data=np.zeros((2, 64, 48), np.uint16))
    ...     [(f.name, f.image.shape, f.channels, f.pixel_size) for f in read_ome_zarr(f"{tmp}/f.zarr")]
    [('f', (2, 64, 48), ['ch0', 'ch1'], 0.65)]
    """
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds for a folder that is not a group
        raise StainfreeError(f"{path}: not a zarr group ({first_line(exc)})") from exc
    attrs = _ome_attrs(root)
    stem = path.name.removesuffix(".zarr").removesuffix(".ome")
    if "plate" not in attrs:
        return [_image_field(root, stem, str(path), channels, pixel_size)]
    fields = []
    for well in attrs["plate"].get("wells", []):
        group = root[well["path"]]
        well_name = "".join(well["path"].split("/"))
        for image in _ome_attrs(group).get("well", {}).get("images", []):
            fields.append(_image_field(group[image["path"]], f"{well_name}_{image['path']}", str(path), channels, pixel_size))
    if not fields:
        raise StainfreeError(f"{path}: the plate lists no wells with images")
    return fields


def load_image(image) -> np.ndarray:
    """A field's pixels as a numpy array: a lazy (dask) image is read here, in this thread."""
    if hasattr(image, "compute"):
        return np.asarray(image.compute(scheduler="synchronous"))
    return np.asarray(image)
