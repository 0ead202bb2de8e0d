"""Importing single-cell images into a CellSet: class folders, imaging-flow-cytometry exports and manifests."""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.cellset import CellSet, provenance_entry
from ..core.specs import merge_labels
from ..core.store import CellSetWriter, open_cellset
from ..progress import progress
from ..utils import StainfreeError
from .images import (
    crop_or_pad,
    read_image,
    resize_cell,
    to_channels_first,
)
from .scan import ImportPlan, scan_source

logger = logging.getLogger(__name__)


def _read_cell(paths: list[Path], grey: bool, size: int | None, crop: int | None) -> np.ndarray:
    if len(paths) == 1:
        img = to_channels_first(read_image(paths[0]), grey=grey)
    else:
        planes = []
        for p in paths:
            plane = to_channels_first(read_image(p), grey=True)
            if planes and plane.shape[1:] != planes[0].shape[1:]:
                raise StainfreeError(
                    f"{p}: {plane.shape[1]}x{plane.shape[2]} px, but the cell's other channels are {planes[0].shape[1]}x{planes[0].shape[2]}"
                )
            if planes and plane.dtype != planes[0].dtype:
                raise StainfreeError(f"{p}: pixel type {plane.dtype}, but the cell's other channels are {planes[0].dtype}")
            planes.append(plane)
        img = np.concatenate(planes)
    if size is not None:
        img = resize_cell(img, size)
    elif crop is not None:
        img = crop_or_pad(img, crop)
    return img


def _check_sizes(*, size: int | None, crop: int | None, pixel_size: float | None) -> None:
    if size is not None and crop is not None:
        raise StainfreeError("give either size (resize) or crop (centre-crop/pad), not both")
    for name, v in (("size", size), ("crop", crop)):
        if v is not None and v < 1:
            raise StainfreeError(f"{name} must be a positive number of pixels, got {v}")
    if pixel_size is not None and not pixel_size > 0:
        raise StainfreeError(f"pixel size must be a positive number of micrometres, got {pixel_size}")


def _channels_to_keep(plan: ImportPlan, n_channels: int) -> tuple[list[str], list[int]]:
    """The channel names of the imported cells and the positions of the file's channels to keep:
    the plan's names, else grey, R/G/B or ch0, ch1...; only the plan's selection, if any.

    >>> _channels_to_keep(ImportPlan(src=Path("."), layout="folders", table=None, files=[], channels=None, groups=[], sizes=None, select=["B"]), 3)
    (['B'], [2])
    """
    if plan.channels is not None:
        channels = list(plan.channels)
    elif n_channels == 1:
        channels = ["grey"]
    elif n_channels == 3:
        channels = ["R", "G", "B"]
    else:
        channels = [f"ch{i}" for i in range(n_channels)]
    if not plan.select:
        return channels, list(range(n_channels))
    missing = [ch for ch in plan.select if ch not in channels]
    if missing:
        raise StainfreeError(f"{plan.files[0][0]}: no channel {missing[0]!r} (its channels: {', '.join(channels)})")
    return list(plan.select), [channels.index(ch) for ch in plan.select]


def read_plan(
    plan: ImportPlan,
    out: str | os.PathLike | None = None,
    *,
    grey: bool = False,
    size: int | None = None,
    crop: int | None = None,
    merge_classes: Mapping[str, Sequence[str]] | None = None,
    pixel_size: float | None = None,
    force: bool = False,
    batch_size: int = 512,
    workers: int | None = None,
) -> CellSet:
    """Read the pixels of an :class:`~stainfree.io.scan.ImportPlan` into a CellSet.

    The second half of :func:`import_cells`, for a plan from
    :func:`~stainfree.io.scan.scan_source`.

    Parameters
    ----------
    plan : ImportPlan
        The cells to read.
    out : path, optional
        Stream the cells to this ``.cells`` folder and return it opened lazily; without it the
        set is built in memory.
    grey, size, crop, merge_classes, pixel_size, force
        As for :func:`import_cells`.
    batch_size : int, default 512
        Cells read (and written) at a time.
    workers : int, optional
        Threads reading files (default: up to 4, by the CPUs).

    Returns
    -------
    CellSet
        The imported cells; the import is recorded in the provenance.

    Raises
    ------
    StainfreeError
        When both ``size`` and ``crop`` are given, a file is unreadable, or the cells differ in
        channels, size (without ``size``/``crop``) or pixel type.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.io.export import write_class_folders
    >>> from stainfree.io.importers import read_plan
    >>> from stainfree.io.scan import scan_source
    >>> from stainfree.datasets.synthetic import make_cells
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_class_folders(make_cells(2, size=20, flasks_per_line=1), tmp)
    ...     cells = read_plan(scan_source(tmp), crop=16)
    >>> cells.shape, cells.channels, cells.class_counts().to_dict()
    ((4, 1, 16, 16), ['grey'], {'round': 2, 'spindle': 2})
    """
    _check_sizes(size=size, crop=crop, pixel_size=pixel_size)
    table = plan.table.copy()
    if merge_classes:
        table["label"] = merge_labels(table["label"], merge_classes)
    n = len(plan.files)
    first = _read_cell(plan.files[0], grey, size, crop)
    c, h, w = first.shape
    dtype = first.dtype
    channels, keep = _channels_to_keep(plan, c)
    prov = [
        provenance_entry(
            "import",
            src=str(plan.src),
            layout=plan.layout,
            channels=channels,
            grey=grey,
            size=size,
            crop=crop,
            pixel_size_um=pixel_size,
            merge_classes=merge_classes if isinstance(merge_classes, (str, type(None))) else dict(merge_classes),
        )
    ]
    workers = workers or min(4, os.cpu_count() or 1)

    def check(i: int, img: np.ndarray) -> np.ndarray:
        where = plan.files[i][0]
        if img.shape[0] != c:
            hint = "; pass --grey to convert colour to grey" if {img.shape[0], c} == {1, 3} else ""
            raise StainfreeError(f"{where}: {img.shape[0]} channels, but {plan.files[0][0].name} has {c}{hint}")
        if img.shape[1:] != (h, w):
            raise StainfreeError(
                f"{where}: {img.shape[1]}x{img.shape[2]} px, but {plan.files[0][0].name} is {h}x{w}; "
                "pass --size N to resize or --crop N to centre-crop/pad every cell"
            )
        if img.dtype != dtype:
            raise StainfreeError(f"{where}: pixel type {img.dtype}, but {plan.files[0][0].name} is {dtype}")
        return img[keep]

    def batches():
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for start in range(0, n, batch_size):
                idx = range(start, min(start + batch_size, n))
                imgs = pool.map(lambda i: _read_cell(plan.files[i], grey, size, crop), idx)
                yield start, np.stack([check(i, img) for i, img in zip(idx, imgs)])

    n_batches = (n + batch_size - 1) // batch_size
    if out is None:
        images = np.empty((n, len(keep), h, w), dtype)
        for start, batch in progress(batches(), total=n_batches, desc="import", unit="batches", log=logger):
            images[start : start + len(batch)] = batch
        return CellSet(images, table, channels=channels, groups=plan.groups, pixel_size=pixel_size, provenance=prov)
    with CellSetWriter(out, n_cells=n, channels=channels, height=h, width=w, dtype=dtype, force=force) as writer:
        for start, batch in progress(batches(), total=n_batches, desc="import", unit="batches", log=logger):
            writer.write(start, batch)
        writer.finish(table, groups=plan.groups, pixel_size=pixel_size, provenance=prov)
    return open_cellset(out)


def import_cells(
    src: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    layout: str = "auto",
    channels: Sequence[str] | None = None,
    grey: bool = False,
    size: int | None = None,
    crop: int | None = None,
    groups: Mapping[str, str | None] | Sequence[str] | None = None,
    groups_across_classes: bool = False,
    merge_classes: Mapping[str, Sequence[str]] | None = None,
    pixel_size: float | None = None,
    force: bool = False,
) -> CellSet:
    """Import single-cell images into a CellSet.

    :func:`~stainfree.io.scan.scan_source` finds the cells, then :func:`read_plan` reads them.

    Parameters
    ----------
    src : path
        A folder of class folders (``folders``), an imaging-flow-cytometry export folder of
        ``<id>_Ch<k>.<ext>`` files (``ifc``), or a CSV manifest with a ``path`` or per-channel
        ``path_<name>`` columns (``manifest``).
    out : path, optional
        Write the set to this ``.cells`` folder (streamed; the result is opened lazily).
        Without it the set is built in memory.
    layout : {"auto", "folders", "ifc", "manifest"}, default "auto"
        How ``src`` is organised; ``"auto"`` tells from the files.
    channels : list of str, optional
        Channels to keep, in order, e.g. ``["Ch3", "Ch6"]``: ``Ch<k>`` for ``ifc``, the
        ``path_<name>`` names of a manifest, ``R``/``G``/``B`` or ``grey`` for image files.
        Default: all.
    grey : bool, default False
        Convert RGB images to one grey channel.
    size, crop : int, optional
        Resize every cell to ``size x size``, or centre-crop/pad it to ``crop x crop``.
        Without either, all cells must have the same size.
    groups : dict or list of str, optional
        Group columns from file names (a regex; its first capture group, else the whole match)
        or existing manifest columns (a name alone): ``{"field": r"-(\\d{6})", "dish": None}``,
        or the command-line form ``["field=-(\\d{6})", "dish"]``.
    groups_across_classes : bool, default False
        Do not qualify regex group values by class folder (use when equal values in different
        class folders really are the same flask, dish or experiment).
    merge_classes : dict of str to list of str, optional
        Classes to merge as they are imported, e.g. ``{"Interphase": ["G1", "S", "G2"]}``
        (see :meth:`CellSet.merge_classes`).
    pixel_size : float, optional
        Micrometres per pixel (after any resize), recorded in the header.
    force : bool, default False
        Replace an existing ``out``.

    Returns
    -------
    CellSet
        In memory, or opened from ``out``.

    Raises
    ------
    StainfreeError
        Naming the file or folder at fault, for any problem with the source or the options.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.io.export import write_class_folders
    >>> from stainfree.io.importers import import_cells
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_class_folders(make_cells(2, size=16, flasks_per_line=1), f"{tmp}/src")
    ...     cells = import_cells(f"{tmp}/src", f"{tmp}/x.cells", merge_classes={"all": ["round", "spindle"]})
    ...     print(cells.describe())
    4 cells, 1 channel (grey), 16x16 px, uint8
    1 classes:
      all  4
    """
    plan = scan_source(src, layout=layout, channels=channels, groups=groups, groups_across_classes=groups_across_classes)
    logger.info("%s", plan.describe())
    return read_plan(plan, out, grey=grey, size=size, crop=crop, merge_classes=merge_classes, pixel_size=pixel_size, force=force)
