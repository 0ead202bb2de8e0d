"""Per-cell features as AnnData: X the measurements, ``obs`` the cell table, ``var`` the features.

scanpy's tools then work on stainfree's features as on genes (``sc.pp.scale``, ``sc.tl.pca``), and
:func:`stainfree.tl.rank_features` ranks them by group like ``sc.tl.rank_genes_groups``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError

#: Where :func:`measure_cells` records its settings.
UNS_KEY = "stainfree_features"


def features_to_anndata(table: pd.DataFrame, *, obs: pd.DataFrame | None = None):
    """A feature table (one row per cell, with ``cell_id``) as an AnnData.

    Parameters
    ----------
    table : DataFrame
        One row per cell: ``cell_id`` and numeric feature columns, as written by
        :func:`stainfree.pp.measure` or ``stainfree features``; other non-numeric columns are
        kept in ``obs``.
    obs : DataFrame, optional
        More per-cell columns (the CellSet's table, predictions, clusters) joined by ``cell_id``;
        every cell of ``table`` must be in it.

    Returns
    -------
    AnnData
        ``X`` the features (float64, cells x features, NaN where a feature is undefined),
        ``obs`` indexed by ``cell_id`` (as strings), ``var`` indexed by feature name with
        ``category`` (``AreaShape``, ``Intensity``, ``Texture``...) and ``measurement``.

    Raises
    ------
    StainfreeError
        Without ``cell_id``, with repeated cell ids, with no numeric feature, or when ``obs``
        lacks cells of ``table``.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.pp import features_to_anndata
    >>> table = pd.DataFrame({"cell_id": ["a", "b"], "AreaShape_Area": [10.0, 12.0], "Intensity_Mean_bf": [0.5, 0.7]})
    >>> adata = features_to_anndata(table, obs=pd.DataFrame({"cell_id": ["b", "a"], "label": ["B", "A"]}))
    >>> adata.shape, adata.obs["label"].tolist(), adata.var["category"].tolist()
    ((2, 2), ['A', 'B'], ['AreaShape', 'Intensity'])
    """
    import anndata

    if "cell_id" not in table:
        raise StainfreeError("the feature table has no cell_id column")
    ids = table["cell_id"].astype(str)
    if ids.duplicated().any():
        raise StainfreeError(f"cell id {ids[ids.duplicated()].iloc[0]!r} appears twice in the feature table")
    numeric = table.drop(columns=["cell_id"]).select_dtypes("number")
    if numeric.shape[1] == 0:
        raise StainfreeError("the feature table has no numeric features")
    cell_table = table.drop(columns=[*numeric.columns]).assign(cell_id=ids.to_numpy())
    if obs is not None:
        extra = obs.assign(cell_id=obs["cell_id"].astype(str)).drop_duplicates("cell_id").set_index("cell_id")
        missing = ids[~ids.isin(extra.index)]
        if len(missing):
            raise StainfreeError(f"{len(missing)} cell(s) of the feature table are not in the cell table (first: {missing.iloc[0]})")
        extra = extra.drop(columns=[c for c in extra.columns if c in cell_table.columns])
        cell_table = cell_table.join(extra, on="cell_id")
    cell_table.index = pd.Index(ids.to_numpy(), name=None)
    names = [str(c) for c in numeric.columns]
    var = pd.DataFrame(
        {"category": [n.split("_")[0] for n in names], "measurement": [n.split("_")[1] if "_" in n else n for n in names]},
        index=pd.Index(names),
    )
    return anndata.AnnData(X=numeric.to_numpy(np.float64), obs=cell_table, var=var)


def measure_cells(
    cells,
    *,
    channels: Sequence[str] | None = None,
    mask_channel: str | None = None,
    texture_scales: Sequence[int] | None = None,
    gray_levels: int | None = None,
    workers: int = 0,
    scheduler: str | None = None,
):
    """Measure every cell of a CellSet (:func:`stainfree.pp.measure`) into an AnnData.

    Parameters
    ----------
    cells : CellSet
        The cells; their table becomes ``obs``.
    channels, mask_channel, texture_scales, gray_levels, workers, scheduler
        As :func:`stainfree.pp.measure` (``None``: its defaults).

    Returns
    -------
    AnnData
        As :func:`features_to_anndata`, with the settings in ``uns['stainfree_features']``.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pp import measure_cells
    >>> adata = measure_cells(make_cells(3, size=32, random_state=0), texture_scales=[3])
    >>> adata.n_obs, "AreaShape_Area" in adata.var_names, adata.obs["label"].nunique()
    (6, True, 2)
    """
    from .features import measure
    from .texture import GRAY_LEVELS, TEXTURE_SCALES

    scales = list(TEXTURE_SCALES if texture_scales is None else texture_scales)
    levels = GRAY_LEVELS if gray_levels is None else gray_levels
    table = measure(
        cells, channels=channels, mask_channel=mask_channel, texture_scales=scales, gray_levels=levels, workers=workers, scheduler=scheduler
    )
    adata = features_to_anndata(table, obs=cells.table)
    adata.uns[UNS_KEY] = {
        "channels": list(channels or cells.channels),
        "mask_channel": mask_channel or list(channels or cells.channels)[0],
        "texture_scales": scales,
        "gray_levels": int(levels),
    }
    return adata
