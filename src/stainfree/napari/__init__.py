"""The napari plugin (``pip install "stainfree[napari]"``): open CellSets and ``predict`` runs, segment
and classify the open image, and save labels layers as annotations for ``train-segmenter``.

:mod:`stainfree.napari.layers` holds the work as plain functions; :mod:`stainfree.napari.plugin`
is what napari calls (the reader and the dock widgets named in ``napari.yaml``).
"""
