"""The CellSet, the object every stage reads and writes.

- :mod:`.cellset`: :class:`~stainfree.core.cellset.CellSet` (images, masks and a per-cell table);
- :mod:`.store`: writing a CellSet atomically, opening one, joining several;
- :mod:`.specs`: the compact text forms of channel lists and class merges.
"""
