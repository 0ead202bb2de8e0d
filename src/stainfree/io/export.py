"""Writing cells out of a CellSet: class folders of images and AnnData (.h5ad) files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cellset import CellSet


def write_class_folders(cells: CellSet, folder: str | os.PathLike) -> list[str]:
    """Write each cell as an image file in a folder per class, the layout
    :func:`~stainfree.io.importers.import_cells` reads back.

    Parameters
    ----------
    cells : CellSet
        The cells. Unlabelled cells go to ``unlabelled/``.
    folder : path
        Where to write ``<label>/<cell_id>.<ext>``, ``/`` in ids replaced by ``-``: PNG for 8- and
        16-bit single-channel cells, TIFF otherwise. Existing files of the same name are replaced.

    Returns
    -------
    list of str
        The written paths relative to ``folder``, in cell order.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.io.export import write_class_folders
    >>> cells = CellSet(np.zeros((2, 1, 4, 4), np.uint8), pd.DataFrame({"cell_id": ["f1/a", "b"], "label": ["x", None]}))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(write_class_folders(cells, tmp))
    ['x/f1-a.png', 'unlabelled/b.png']
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
    """Write an AnnData to an ``.h5ad`` file atomically (through a temporary name in the same folder).

    Missing labels in pandas' nullable string columns (as :meth:`CellSet.to_anndata` makes
    them) stay missing.

    Parameters
    ----------
    adata : anndata.AnnData
        What to write.
    path : path
        The ``.h5ad`` file; an existing one is replaced.

    Returns
    -------
    pathlib.Path
        The file written (``path``).

    Examples
    --------
    >>> import tempfile
    >>> import anndata
    >>> import numpy as np
    >>> from stainfree.core.cellset import CellSet
    >>> from stainfree.io.export import write_h5ad
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_h5ad(CellSet(np.zeros((3, 1, 2, 2))).to_anndata(np.eye(3)), f"{tmp}/e.h5ad")
    ...     print(anndata.read_h5ad(path).obsm["X_embedding"].shape)
    (3, 3)
    """
    import anndata

    from ..utils import atomic_output_file

    path = Path(path)
    # the per-cell table uses pandas' nullable strings (missing labels stay missing)
    with atomic_output_file(path) as tmp, anndata.settings.override(allow_write_nullable_strings=True):
        adata.write_h5ad(tmp)
    return path


def to_uns(value):
    """A result as ``AnnData.uns`` can store it in ``.h5ad``: nested dicts kept, lists of records
    as DataFrames, tuples as lists, other values as they are.

    Parameters
    ----------
    value : dict, list, tuple or scalar
        Settings, histories or scores (JSON-like).

    Returns
    -------
    object
        The same information in types h5ad writes; :func:`from_uns` turns it back.

    Examples
    --------
    >>> from stainfree.io.export import to_uns
    >>> stored = to_uns({"k": 2, "history": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}], "dims": (3, 4)})
    >>> stored["history"]["loss"].tolist(), stored["dims"]
    ([0.5, 0.25], [3, 4])
    """
    if isinstance(value, dict):
        return {str(k): to_uns(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return pd.DataFrame.from_records([{str(k): v for k, v in row.items()} for row in value])
        return [to_uns(v) for v in value]
    return value


def from_uns(value):
    """Plain Python (JSON-ready) from what :func:`to_uns` stored, as read back from ``.h5ad``:
    arrays become lists, DataFrames lists of records, numpy scalars Python numbers; a JSON string
    (how stainfree before 0.2 stored settings) is parsed.

    Parameters
    ----------
    value : object
        An ``adata.uns`` entry.

    Returns
    -------
    object
        Dicts, lists, strings, numbers, booleans and None only.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.export import from_uns, to_uns
    >>> from_uns({"k": np.int64(2), "scan": np.array([0.5, 0.25]), "history": to_uns([{"epoch": 1}])})
    {'k': 2, 'scan': [0.5, 0.25], 'history': [{'epoch': 1}]}
    >>> from_uns('{"method": "pca"}')
    {'method': 'pca'}
    """
    import json

    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {str(k): from_uns(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return [{str(k): from_uns(v) for k, v in row.items()} for row in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return [from_uns(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [from_uns(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
