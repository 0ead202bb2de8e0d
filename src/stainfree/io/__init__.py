"""Reading and writing: cell and field images, importers into a CellSet, and export.

- :mod:`.images`: any image file to a (C, H, W) array; resizing cells;
- :mod:`.fields`: fields of view with channels and pixel size, and point files;
- :mod:`.importers`: class folders, imaging-flow-cytometry exports and manifests into a CellSet;
- :mod:`.export`: class folders of images and AnnData files out of a CellSet.
"""
