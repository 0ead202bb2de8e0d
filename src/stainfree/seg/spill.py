"""Crops that each field's task writes to disk itself, so the process that writes the CellSet holds
one field's cells at a time, not a whole plate's.

With a spill folder (``segment`` makes one beside its output, on the same file system, which Dask
workers elsewhere must share), the task that segments a field saves its crops and masks there as
``.npy`` files and returns only its table; :class:`SpilledCells` then stands for the crops of every
field in order, and :func:`write_spilled` copies them field by field into a
:class:`~stainfree.core.store.CellSetWriter`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class SpilledCells:
    """The crops (or masks) of several fields, each in its own ``.npy`` file, in field order.

    ``np.asarray`` reads them all; :meth:`parts` reads one field at a time.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from stainfree.seg.spill import SpilledCells
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.save(f"{tmp}/a.npy", np.zeros((2, 3))); np.save(f"{tmp}/b.npy", np.ones((1, 3)))
    ...     cells = SpilledCells([f"{tmp}/a.npy", f"{tmp}/b.npy"], [2, 1], (3,), np.dtype(float))
    ...     cells.shape, np.asarray(cells)[:, 0].tolist()
    ((3, 3), [0.0, 0.0, 1.0])
    """

    files: list[str]
    counts: list[int]
    cell_shape: tuple
    dtype: np.dtype

    @property
    def shape(self) -> tuple:
        return (int(sum(self.counts)), *self.cell_shape)

    def __len__(self) -> int:
        return self.shape[0]

    def parts(self) -> Iterator[np.ndarray]:
        """Each field's array, in order."""
        for path in self.files:
            yield np.load(path)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.concatenate(list(self.parts())) if self.files else np.zeros(self.shape, self.dtype)
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index):
        return np.asarray(self)[index]


def spill_part(part, folder: str | Path) -> None:
    """Save a field's crops and masks in ``folder`` (named after the field or tile) and keep only their
    file names on ``part`` (a task's result)."""
    base = Path(folder) / part.stats["field"]
    np.save(f"{base}.crops.npy", part.crops)
    part.crops = (f"{base}.crops.npy", part.crops.shape, part.crops.dtype)
    if part.masks is not None:
        np.save(f"{base}.masks.npy", part.masks)
        part.masks = (f"{base}.masks.npy", part.masks.shape, part.masks.dtype)


def gathered(pieces: list) -> np.ndarray | SpilledCells:
    """The fields' crops (or masks) as one array, or as :class:`SpilledCells` when the tasks spilled them."""
    if not pieces or not isinstance(pieces[0], tuple):
        return np.concatenate(pieces)
    return SpilledCells([p[0] for p in pieces], [p[1][0] for p in pieces], tuple(pieces[0][1][1:]), pieces[0][2])


def write_spilled(writer, images, masks, keep: np.ndarray) -> None:
    """Write the cells at positions ``keep`` (increasing) of ``images`` and ``masks`` (arrays or
    :class:`SpilledCells`) into ``writer`` (:class:`~stainfree.core.store.CellSetWriter`), one
    field at a time."""
    image_parts = images.parts() if isinstance(images, SpilledCells) else iter([np.asarray(images)])
    if masks is None:
        mask_parts = itertools.repeat(None)
    else:
        mask_parts = masks.parts() if isinstance(masks, SpilledCells) else iter([np.asarray(masks)])
    offset = written = 0
    for crops, field_masks in zip(image_parts, mask_parts):
        rows = keep[(keep >= offset) & (keep < offset + len(crops))] - offset
        if len(rows):
            writer.write(written, crops[rows], None if field_masks is None else field_masks[rows].astype(np.uint8))
        offset += len(crops)
        written += len(rows)
