"""Figures of example cells."""

from __future__ import annotations


def plot_examples(cells, path, per_class: int = 8, seed: int = 0) -> None:
    """A grid of random cells, a row per class (first 12 classes), first channel."""
    from .core import cell_grid

    cell_grid(cells, cells.labels, path, per_row=per_class, max_rows=12, title=lambda name, n: str(name), seed=seed)
