"""Figures of example cells."""

from __future__ import annotations


def plot_examples(cells, path, *, per_class: int = 8, random_state: int = 0) -> None:
    """A grid of random cells, a row per class (first 12 classes), first channel.

    Parameters
    ----------
    cells : CellSet
        The cells; unlabelled ones form a row of their own.
    path : str or Path
        The PNG file to write.
    per_class : int, default 8
        Cells per class.
    random_state : int, default 0
        Seed of the choice of cells.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pl.cells import plot_examples
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_examples(make_cells(2, size=32), f"{d}/examples.png", per_class=2)
    ...     os.listdir(d)
    ['examples.png']
    """
    from .core import cell_grid

    cell_grid(cells, cells.labels, path, per_row=per_class, max_rows=12, title=lambda name, n: str(name), random_state=random_state)
