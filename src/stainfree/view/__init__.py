"""``stainfree view``: a local viewer for sets too large for one report file.

- :mod:`.source`: the cells (a CellSet, a run folder or an ``.h5ad``), filtered, sorted and paged;
- :mod:`.server`: the HTTP server and its page.
"""
