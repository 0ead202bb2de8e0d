"""The cells a training run reads: held in memory as one tensor when they fit, streamed from their
store in pools otherwise, so that memory follows the pool, not the number of cells.

Streaming keeps the input pipeline of the in-memory path (the same normalisation and resize of
each cell) and changes only the order cells are seen in: an epoch's draw of cells is sorted into
storage order and cut into runs of cells that lie together on disk (a chunk of the store); the runs are
shuffled and dealt, whole, into pools of at most :data:`POOL_CELLS` cells, each pool is read (run by run, in
storage order) and shuffled within itself. A pool thus samples the whole set, so a set stored
class by class (imported from class folders) still gives every batch a mix of classes, while the
store is read in stretches of a run, once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .classifier import resize_batch
from .transforms import apply_normalisation

#: Preprocessed cells (float32 at the input size) up to this many bytes are kept in memory.
IN_MEMORY_BYTES = 2**30
#: Cells read from the store at a time, and shuffled among themselves, when streaming.
POOL_CELLS = 8192
#: Consecutive cells (in storage order) that stay together when pools are dealt, when the store
#: does not say its chunk length (a run is then one chunk: each chunk is read once an epoch).
RUN_CELLS = 512


def fits_in_memory(n_cells: int, cell_shape) -> bool:
    """Whether ``n_cells`` cells of ``cell_shape`` (C, H, W), as float32, take at most :data:`IN_MEMORY_BYTES`.

    >>> fits_in_memory(1000, (2, 40, 40)), fits_in_memory(10**6, (2, 40, 40))
    (True, False)
    """
    return n_cells * int(np.prod(cell_shape)) * 4 <= IN_MEMORY_BYTES


def read_cells(images, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` of a numpy or zarr array or a CellSet, reading the store in row order.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.data import read_cells
    >>> read_cells(np.arange(4)[:, None, None, None], np.array([2, 0]))[:, 0, 0, 0].tolist()
    [2, 0]
    """
    from ..core.cellset import _take_rows

    rows = np.asarray(rows, dtype=np.int64)
    return images.read(rows) if hasattr(images, "read") else _take_rows(images, rows)


class TrainingCells:
    """Normalised, resized cells of any rows, as torch tensors.

    Parameters
    ----------
    images : numpy array, zarr array or CellSet
        The cells ``(N, C, H, W)``.
    norm : dict
        A fitted normalisation (:func:`stainfree.ml.transforms.fit_normalisation`).
    size : (int, int)
        The model's input size.
    masks : array ``(N, H, W)`` or callable, optional
        The cells' masks (for blackout), resized as the cells; a callable takes rows and returns
        their masks (``CellSet.read_masks``, for a streamed set).
    in_memory : bool, optional
        Hold every preprocessed cell in memory; default when they take at most
        :data:`IN_MEMORY_BYTES`.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.data import TrainingCells
    >>> cells = TrainingCells(np.ones((5, 1, 4, 4)), {"method": "cell"}, (2, 2), in_memory=False)
    >>> [(rows.tolist(), tuple(x.shape)) for rows, x, _ in cells.batches(np.arange(5), 2, shuffle=False)]
    [([0, 1], (2, 1, 2, 2)), ([2, 3], (2, 1, 2, 2)), ([4], (1, 1, 2, 2))]
    """

    def __init__(self, images, norm: dict, size: tuple[int, int], *, masks=None, in_memory: bool | None = None):
        self.images, self.norm, self.size = images, norm, tuple(size)
        self.masks = masks
        self.n = n = images.shape[0]  # a CellSet's shape too
        self.in_memory = fits_in_memory(n, (images.shape[1], *self.size)) if in_memory is None else in_memory
        self._x = self._m = None
        if self.in_memory:
            self._x, self._m = self._prepare(np.arange(n))

    def __len__(self) -> int:
        return self.n

    @property
    def run_length(self) -> int:
        """Cells of a run: the store's chunk length along the cells, else :data:`RUN_CELLS`."""
        chunks = getattr(getattr(self.images, "_source", self.images), "chunks", None)
        return int(chunks[0]) if chunks else RUN_CELLS

    def _prepare(self, rows: np.ndarray):
        import torch

        x = torch.from_numpy(resize_batch(apply_normalisation(read_cells(self.images, rows), self.norm), self.size))
        m = None
        if self.masks is not None:
            masks = self.masks(rows) if callable(self.masks) else read_cells(self.masks, rows)
            m = torch.from_numpy(resize_batch(np.asarray(masks, np.float32)[:, None], self.size) > 0.5)
        return x, m

    def take(self, rows: np.ndarray):
        """The preprocessed cells at ``rows`` (and their masks, or None), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.in_memory:
            return self._x[rows], None if self._m is None else self._m[rows]
        return self._prepare(rows)

    def batches(self, order: np.ndarray, batch_size: int, *, shuffle: bool = True, rng: np.random.Generator | None = None) -> Iterator:
        """``(rows, cells, masks)`` batches over the cells of ``order``.

        In memory, consecutive slices of ``order`` (the last one shorter). Streamed, with
        ``shuffle`` the shuffle of runs and pools described above (``rng`` draws it); without,
        ``order`` sorted into storage order, in pools, for passes whose order does not matter
        (validation, batch-norm statistics). Every cell of ``order`` is in exactly one batch.
        """
        order = np.asarray(order, dtype=np.int64)
        if self.in_memory:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                yield (rows, *self.take(rows))
            return
        stored = np.sort(order)
        if shuffle:
            run = self.run_length
            runs = [stored[s : s + run] for s in range(0, len(stored), run)]
            dealt = [runs[k] for k in rng.permutation(len(runs))]
            per_pool = max(1, POOL_CELLS // run)
            pools = [np.sort(np.concatenate(dealt[s : s + per_pool])) for s in range(0, len(dealt), per_pool)]
        else:
            pools = [stored[s : s + POOL_CELLS] for s in range(0, len(stored), POOL_CELLS)]
        for pool in pools:
            x, m = self._prepare(pool)
            local = rng.permutation(len(pool)) if shuffle else np.arange(len(pool))
            for start in range(0, len(local), batch_size):
                pick = local[start : start + batch_size]
                yield pool[pick], x[pick], None if m is None else m[pick]
