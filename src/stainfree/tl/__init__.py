"""Tools on cells and their embeddings: UMAP, clusters, composition, enrichment, probes and
feature ranking.

Names are imported on first use, so ``import stainfree`` stays light.
"""

from ..utils import lazy_exports

_EXPORTS = {
    "embedding_of": ".cluster",
    "umap_embedding": ".cluster",
    "kmeans_scan": ".cluster",
    "cluster_embedding": ".cluster",
    "composition": ".cluster",
    "enrichment": ".cluster",
    "probe": ".probe",
    "regression_probe": ".probe",
    "js_divergence": ".rank",
    "group_masks": ".rank",
    "rank_features": ".rank",
    "read_groups": ".rank",
    "Separation": ".rank",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
