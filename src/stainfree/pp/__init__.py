"""Preprocessing: per-cell measurements, as a table (``stainfree.pp.measure``) or as AnnData
(``stainfree.pp.measure_cells``).

Names are imported on first use, so ``import stainfree`` stays light.
"""

from ..utils import lazy_exports

_EXPORTS = {
    "measure": ".features",
    "measure_cells": ".adata",
    "features_to_anndata": ".adata",
    "foreground_mask": ".features",
    "texture_features": ".texture",
    "skeleton_features": ".features",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
