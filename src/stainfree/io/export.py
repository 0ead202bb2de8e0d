"""Writing cells out of a CellSet: class folders of images and AnnData (.h5ad) files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cellset import CellSet


def write_class_folders(cells: CellSet, folder: str | os.PathLike) -> list[str]:
    """Write each cell as ``folder/<label>/<cell_id with / as ->.<ext>`` (PNG for 8/16-bit
    single-channel cells, TIFF otherwise), the layout :func:`import_cells` reads back.

    Returns the written paths relative to ``folder``, in cell order.
    """
    import tifffile
    from PIL import Image

    folder = Path(folder)
    written = []
    for imgs, rows in cells.batches(512):
        for img, label, cid in zip(imgs, rows["label"], rows["cell_id"]):
            png = img.shape[0] == 1 and img.dtype in (np.uint8, np.uint16)
            rel = Path("unlabelled" if label is None or pd.isna(label) else str(label)) / (
                str(cid).replace("/", "-") + (".png" if png else ".tif")
            )
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            if png:
                Image.fromarray(img[0]).save(folder / rel)
            else:
                tifffile.imwrite(folder / rel, np.moveaxis(img, 0, -1) if img.shape[0] == 3 else img)
            written.append(rel.as_posix())
    return written


def write_h5ad(adata, path: str | os.PathLike) -> Path:
    """Write an AnnData atomically (through a temporary name in the same folder)."""
    import uuid

    import anndata

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}.h5ad")
    try:
        # the per-cell table uses pandas' nullable strings (missing labels stay missing)
        with anndata.settings.override(allow_write_nullable_strings=True):
            adata.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
