"""Reading fields of view (TIFF, OME-TIFF, PNG...) with their channels and pixel size, and point files."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError, first_line, refuse_existing


# ---------------------------------------------------------------------- reading fields
@dataclasses.dataclass
class Field:
    """One field of view: ``C x H x W`` pixels, channel names and where it came from.

    Attributes
    ----------
    image : numpy.ndarray or dask.array.Array
        The pixels, ``(C, H, W)``, dtype as stored; lazy for OME-Zarr fields (:meth:`loaded` reads them).
    channels : list of str
        One name per channel.
    name : str
        The field's name: the file stem, with ``_z0``, ``_t3``... when a file holds several.
    source : str
        The file it was read from.
    pixel_size : float, optional
        Micrometres per pixel, where known.
    origin, core, parent : (int, int), (int, int, int, int), str, optional
        For a tile of a larger field (:func:`stainfree.seg.tiles.split_field`): where its pixels
        start in the field, its own region (top, bottom, left, right), and the field's name.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.fields import Field
    >>> f = Field(np.zeros((2, 4, 4)), ["bf", "gfp"], name="well1", source="well1.tif")
    >>> f.channel("gfp").shape
    (4, 4)
    """

    image: np.ndarray
    channels: list[str]
    name: str
    source: str
    pixel_size: float | None = None
    origin: tuple[int, int] = (0, 0)
    core: tuple[int, int, int, int] | None = None
    parent: str | None = None

    def loaded(self) -> Field:
        """This field with its pixels in memory (itself when they are)."""
        if isinstance(self.image, np.ndarray):
            return self
        from .omezarr import load_image

        return dataclasses.replace(self, image=load_image(self.image))

    def channel(self, name: str) -> np.ndarray:
        """The ``(H, W)`` pixels of channel ``name``; :class:`StainfreeError` if there is none."""
        if name not in self.channels:
            raise StainfreeError(f"{self.source}: no channel {name!r} (channels: {', '.join(self.channels)})")
        return self.image[self.channels.index(name)]


def _tiff_pixel_size(tif) -> float | None:
    """Micrometres per pixel from OME or ImageJ metadata or the resolution tags, else None."""
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m:
            scale = {"nm": 1e-3, "mm": 1e3, "m": 1e6}.get(unit.group(1) if unit else "µm", 1.0)
            return float(m.group(1)) * scale
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num:
        return None
    per_unit = den / num  # units per pixel
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij = tif.imagej_metadata or {}
    if ij.get("unit") in ("micron", "um", "µm", "\\u00B5m"):
        return per_unit
    if unit == 3:  # centimetre
        return per_unit * 1e4
    return None  # inches: almost always a meaningless 72 dpi default


def _ome_channel_names(tif) -> list[str] | None:
    if not (tif.is_ome and tif.ome_metadata):
        return None
    names = re.findall(r'<Channel [^>]*?Name="([^"]*)"', tif.ome_metadata)
    return names or None


def _read_tiff(path: Path, planes: str) -> tuple[list[tuple[str, np.ndarray]], list[str] | None, float | None]:
    """(suffix, C x H x W) pieces of a TIFF, its channel names when stored, and its pixel size."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            names = _ome_channel_names(tif)
            pixel_size = _tiff_pixel_size(tif)
    except Exception as exc:
        raise StainfreeError(f"{path}: unreadable image ({first_line(exc)})") from exc
    if "Y" not in axes or "X" not in axes:
        raise StainfreeError(f"{path}: no Y and X axes in the image (axes {axes})")
    # Colour samples are channels; any other axis (Z, T, pages) is a "plane".
    axes = axes.replace("S", "C") if "C" not in axes else axes.replace("S", "Q")
    # Pages of unknown meaning (a plain multi-page TIFF) are channels, as in the importers.
    generic = next((a for a in axes if a in "QI"), None)
    if "C" not in axes and generic and planes == "channels":
        axes = axes.replace(generic, "C", 1)
    if "C" not in axes:
        data, axes = data[None], "C" + axes
    plane_axes = [a for a in axes if a not in "CYX"]
    order = [axes.index(a) for a in plane_axes] + [axes.index("C"), axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    plane_shape = data.shape[: len(plane_axes)]
    data = data.reshape(-1, *data.shape[-3:])
    plane_names = ["_".join(f"{a.lower()}{i}" for a, i in zip(plane_axes, idx)) for idx in np.ndindex(*plane_shape)] if plane_axes else [""]
    if data.shape[1] != len(names or []):
        names = None
    if planes == "fields" or len(plane_names) == 1:
        return [(p, d) for p, d in zip(plane_names, data)], names, pixel_size
    base = names or [f"ch{i}" for i in range(data.shape[1])]
    stacked = data.reshape(-1, *data.shape[-2:])
    stacked_names = [f"{c}_{p}" for p in plane_names for c in base]
    return [("", stacked)], stacked_names, pixel_size


def read_fields(
    path: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    grey: bool = False,
    planes: str = "channels",
    pixel_size: float | None = None,
) -> list[Field]:
    """Read one field file (TIFF/OME-TIFF, PNG, JPG) or OME-Zarr image or plate as one or more :class:`Field`.

    Parameters
    ----------
    path : path
        The file.
    channels : list of str, optional
        Names for the channels, in file order. Default: the names stored in an OME-TIFF, else
        ``ch0``, ``ch1``, ... (``red``, ``green``, ``blue`` for colour images).
    grey : bool, default False
        Convert a colour image to one grey channel (``grey``).
    planes : {"channels", "fields"}, default "channels"
        What z-slices, time points and extra pages become: extra channels named
        ``<channel>_z0``, ``<channel>_t3`` ... (default), or separate fields named
        ``<stem>_z0`` ....
    pixel_size : float, optional
        Micrometres per pixel; overrides what the file says (OME, ImageJ or resolution tags).

    Returns
    -------
    list of Field
        One field, or one per plane with ``planes="fields"``.

    Raises
    ------
    StainfreeError
        When the file is missing or unreadable, ``channels`` has the wrong length, or the image
        is not a field (under 2 pixels across).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import tifffile
    >>> from stainfree.io.fields import read_fields
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(f"{tmp}/f.tif", np.zeros((2, 8, 8), np.uint16))
    ...     fields = read_fields(f"{tmp}/f.tif", channels=["bf", "gfp"])
    >>> [(f.name, f.image.shape, f.channels) for f in fields]
    [('f', (2, 8, 8), ['bf', 'gfp'])]
    """
    from .images import read_image, to_channels_first
    from .omezarr import is_ome_zarr, read_ome_zarr

    if planes not in ("channels", "fields"):
        raise StainfreeError(f"planes must be 'channels' or 'fields', not {planes!r}")
    if pixel_size is not None and not pixel_size > 0:
        raise StainfreeError(f"pixel size must be a positive number of micrometres, got {pixel_size}")
    path = Path(path)
    if is_ome_zarr(path):
        if grey or planes != "channels":
            raise StainfreeError(f"{path}: --grey and --planes apply to image files, not OME-Zarr")
        return read_ome_zarr(path, channels=channels, pixel_size=pixel_size)
    if path.is_dir():
        raise StainfreeError(f"{path}: a folder, not a field image or an OME-Zarr image or plate (no zarr.json or .zattrs)")
    if not path.is_file():
        raise StainfreeError(f"{path}: no such file")
    if path.suffix.lower() in (".tif", ".tiff"):
        pieces, stored, file_pixel_size = _read_tiff(path, planes)
        if grey and pieces[0][1].shape[0] == 3:
            pieces = [(p, to_channels_first(np.moveaxis(d, 0, -1), grey=True)) for p, d in pieces]
            stored = ["grey"]
    else:
        img = read_image(path)
        pieces = [("", to_channels_first(img, grey=grey))]
        stored = (["grey"] if grey else ["red", "green", "blue"]) if img.ndim == 3 else None
        file_pixel_size = None
    n_channels = pieces[0][1].shape[0]
    if channels is not None:
        channels = list(channels)
        if len(channels) != n_channels:
            raise StainfreeError(f"{path}: {len(channels)} channel names given for {n_channels} channels")
    else:
        channels = stored if stored and len(stored) == n_channels else [f"ch{i}" for i in range(n_channels)]
    if pieces[0][1].shape[-2] < 2 or pieces[0][1].shape[-1] < 2:
        raise StainfreeError(f"{path}: not a field of view (shape {pieces[0][1].shape})")
    if any(d.dtype.kind == "f" and not np.isfinite(d).all() for _, d in pieces):
        raise StainfreeError(f"{path}: has NaN or infinite pixel values")
    return [
        Field(
            image=np.ascontiguousarray(data),
            channels=list(channels),
            name=f"{path.stem}_{suffix}" if suffix else path.stem,
            source=str(path),
            pixel_size=pixel_size if pixel_size is not None else file_pixel_size,
        )
        for suffix, data in pieces
    ]


def read_field_files(paths: Sequence[str | os.PathLike], **read_options) -> list[Field]:
    """Every field of every file.

    Parameters
    ----------
    paths : list of path
        Field files.
    **read_options
        Keywords of :func:`read_fields` (``channels``, ``grey``, ``planes``, ``pixel_size``),
        the same for every file.

    Returns
    -------
    list of Field
        In file order.

    Raises
    ------
    StainfreeError
        When no field is given or two fields have the same name.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import tifffile
    >>> from stainfree.io.fields import read_field_files
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("a", "b"):
    ...         tifffile.imwrite(f"{tmp}/{name}.tif", np.zeros((6, 6), np.uint8))
    ...     fields = read_field_files([f"{tmp}/a.tif", f"{tmp}/b.tif"], channels=["bf"])
    >>> [f.name for f in fields]
    ['a', 'b']
    """
    fields = [f for p in paths for f in read_fields(p, **read_options)]
    if not fields:
        raise StainfreeError("no fields given")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise StainfreeError(f"two fields are both named {dup!r}; rename one of the files")
    return fields


def _check_same_channels(fields: Sequence[Field]) -> None:
    first = fields[0]
    for f in fields[1:]:
        if f.channels != first.channels:
            raise StainfreeError(
                f"fields of different channels in one call: {Path(first.source).name} has {len(first.channels)} "
                f"({', '.join(first.channels)}), {Path(f.source).name} has {len(f.channels)} ({', '.join(f.channels)})"
            )


def read_points(path: str | os.PathLike | pd.DataFrame, fields: Sequence[Field]) -> dict[int, pd.DataFrame]:
    """Points to crop cells at, split by field.

    Parameters
    ----------
    path : path or pandas.DataFrame
        A CSV file or a table with columns ``x``, ``y`` (pixels), ``field`` (the field's file
        name, stem or path; needed when there are several fields), optional ``label`` (or
        ``class``) and any metadata columns.
    fields : list of Field
        The fields the points lie on.

    Returns
    -------
    dict of int to pandas.DataFrame
        The points of each field, keyed by its position in ``fields``, without ``field``.

    Raises
    ------
    StainfreeError
        When the file is unreadable, ``x`` or ``y`` is missing or not numeric, a field is
        unknown, or a point lies outside its field.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.io.fields import Field, read_points
    >>> fields = [Field(np.zeros((1, 10, 10)), ["bf"], name=n, source=f"{n}.tif") for n in ("a", "b")]
    >>> points = pd.DataFrame({"x": [1, 2, 3], "y": [4, 5, 6], "field": ["a", "b.tif", "a"]})
    >>> {i: rows["x"].tolist() for i, rows in read_points(points, fields).items()}
    {0: [1, 3], 1: [2]}
    """
    where = "points" if isinstance(path, pd.DataFrame) else str(path)
    if isinstance(path, pd.DataFrame):
        points = path.copy()
    else:
        try:
            points = pd.read_csv(path)
        except Exception as exc:
            raise StainfreeError(f"{path}: unreadable points file ({first_line(exc)})") from exc
    missing = [c for c in ("x", "y") if c not in points]
    if missing:
        raise StainfreeError(f"{where}: missing column {missing[0]!r} (columns: {', '.join(map(str, points.columns))})")
    if "class" in points and "label" not in points:
        points = points.rename(columns={"class": "label"})
    for c in ("x", "y"):
        if not pd.api.types.is_numeric_dtype(points[c]) or points[c].isna().any():
            raise StainfreeError(f"{where}: column {c!r} must hold a number on every row")
    keys: dict[str, int] = {}
    for i, f in enumerate(fields):
        for key in {f.source, Path(f.source).name, Path(f.source).stem, f.name}:
            keys.setdefault(key, i)
    if "field" not in points:
        if len({f.source for f in fields}) > 1:
            raise StainfreeError(f"{where}: several fields were given, so the points need a 'field' column naming each point's file")
        which = np.zeros(len(points), int)
    else:
        names = points["field"].astype(str)
        unknown = sorted(set(names) - set(keys))
        if unknown:
            raise StainfreeError(
                f"{where}: field {unknown[0]!r} is not one of the fields given ({', '.join(Path(f.source).name for f in fields)})"
            )
        which = names.map(keys).to_numpy()
    out = {}
    for i, f in enumerate(fields):
        rows = points[which == i]
        h, w = f.image.shape[-2:]
        outside = (rows["x"] < 0) | (rows["x"] > w - 1) | (rows["y"] < 0) | (rows["y"] > h - 1)
        if outside.any():
            r = rows[outside].iloc[0]
            raise StainfreeError(
                f"{where}: point (x={r['x']}, y={r['y']}) on row {int(rows.index[outside][0]) + 2} is outside "
                f"{Path(f.source).name} ({w}x{h} px); {int(outside.sum())} point(s) are"
            )
        out[i] = rows.drop(columns=[c for c in ("field",) if c in rows])
    return out


def write_label_image(labels: np.ndarray, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write an instance label image as a TIFF (uint16, or uint32 above 65,535 objects), atomically.

    The files that ``stainfree segment --save-labels`` and ``stainfree predict`` write, and
    that ``train-segmenter`` and ``score-segmentation`` read back (:func:`stainfree.seg.annotations.label_image`).

    Parameters
    ----------
    labels : numpy.ndarray, shape (H, W)
        0 for background, one positive integer per object.
    path : path
        The file to write.
    force : bool, default False
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    StainfreeError
        When ``path`` exists and ``force`` is not given.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import tifffile
    >>> from stainfree.io.fields import write_label_image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_label_image(np.array([[0, 1], [2, 2]]), f"{tmp}/f_labels.tif")
    ...     print(tifffile.imread(path).tolist(), tifffile.imread(path).dtype)
    [[0, 1], [2, 2]] uint16
    """
    import io as _io

    import tifffile

    from ..utils import atomic_write_bytes

    path = Path(path)
    refuse_existing(path, force=force)
    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, labels.astype(np.uint16 if labels.max() < 2**16 else np.uint32))
    atomic_write_bytes(path, buffer.getvalue())
    return path
