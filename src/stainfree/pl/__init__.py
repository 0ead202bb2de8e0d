"""Figures. Every function draws with its own figure (never switching the user's matplotlib
backend) and saves it to ``path``.

Names are imported on first use, so ``import stainfree`` stays light.
"""

from ..utils import lazy_exports

_EXPORTS = {
    "training_curves": ".classify",
    "confusion_matrix": ".classify",
    "roc_curves": ".classify",
    "learning_curve": ".classify",
    "heatmap": ".core",
    "cell_grid": ".core",
    "plot_examples": ".cells",
    "plot_umap": ".embedding",
    "plot_kmeans_scan": ".embedding",
    "plot_composition": ".embedding",
    "plot_gallery": ".embedding",
    "plot_ordered_matrices": ".embedding",
    "plot_separation": ".features",
    "plot_ranking": ".features",
    "plot_mixture": ".fields",
    "plot_overlay": ".fields",
    "plot_saliency": ".saliency",
    "plot_activations": ".saliency",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
