"""Figures of fields: segmentation overlays and fluorescence mixtures."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..seg.fluorescence import MixtureFit
from .core import _figure


def plot_mixture(fit: MixtureFit, path: str | os.PathLike, *, channel: str | None = None) -> None:
    """Histogram of log intensities with the two fitted Gaussians and the threshold (PNG).

    Cells left unused (between the populations) are shaded.

    Parameters
    ----------
    fit : MixtureFit
        The two-population fit of a fluorescence label.
    path : str or PathLike
        The PNG file to write.
    channel : str, optional
        The label channel's name, for the title.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.pl.fields import plot_mixture
    >>> from stainfree.seg.fluorescence import MixtureFit
    >>> logs = np.r_[np.linspace(1, 2, 10), np.linspace(4, 5, 10)]
    >>> labels = np.array(["dim"] * 10 + ["bright"] * 10, dtype=object)
    >>> fit = MixtureFit(logs, labels, np.zeros((20, 2)), ("dim", "bright"), (1.5, 4.5), (0.3, 0.3), (0.5, 0.5), 3.0, 7.1, 0.9)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_mixture(fit, f"{d}/label_fit.png", channel="GFP")
    ...     os.listdir(d)
    ['label_fit.png']
    """
    fig = _figure((5, 3.2))
    ax = fig.subplots()
    ax.hist(fit.log_intensity, bins=max(10, min(80, len(fit.log_intensity) // 5)), density=True, color="0.75", label="cells")
    grid = np.linspace(fit.log_intensity.min(), fit.log_intensity.max(), 400)
    for k, colour in enumerate(("tab:blue", "tab:red")):
        pdf = fit.weights[k] * np.exp(-0.5 * ((grid - fit.means[k]) / fit.sds[k]) ** 2) / (fit.sds[k] * np.sqrt(2 * np.pi))
        ax.plot(grid, pdf, color=colour, label=fit.names[k])
    ax.axvline(fit.threshold, color="k", ls="--", lw=1, label="threshold")
    unused = np.array([lab is None for lab in fit.labels])
    if unused.any():
        lo, hi = fit.log_intensity[unused].min(), fit.log_intensity[unused].max()
        ax.axvspan(lo, hi, color="0.9", zorder=0, label="unused")
    ax.set_xlabel("log total intensity (background corrected)")
    ax.set_ylabel("density")
    ax.set_title(f"{channel + ': ' if channel else ''}two-population fit, Ashman's D {fit.separation:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_overlay(image: np.ndarray, labels: np.ndarray, classes_by_id: dict, classes: Sequence[str], path, *, title: str = "") -> None:
    """A field with each object's outline coloured by its class (PNG).

    The field is stretched to its 1st-99.5th percentiles; objects without a class (not
    classified) are outlined in white.

    Parameters
    ----------
    image : ndarray
        The ``H x W`` field.
    labels : ndarray of int
        Its ``H x W`` label image.
    classes_by_id : dict
        The class of each label id.
    classes : sequence of str
        The classes, in the order of their colours.
    path : str or PathLike
        The PNG file to write.
    title : str, default ""
        The figure's title.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.pl.fields import plot_overlay
    >>> labels = np.zeros((20, 20), int); labels[2:8, 2:8] = 1; labels[10:16, 10:16] = 2
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_overlay(labels * 50.0, labels, {1: "round"}, ["round", "spindle"], f"{d}/field1.png")
    ...     os.listdir(d)
    ['field1.png']
    """
    import matplotlib
    from matplotlib.patches import Patch
    from skimage.segmentation import find_boundaries

    lo, hi = np.percentile(image, [1, 99.5])
    grey = np.clip((image.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    palette = matplotlib.colormaps["tab10"]
    colours = {c: np.array(palette(i % 10)[:3]) for i, c in enumerate(classes)}
    lut = np.ones((int(labels.max()) + 1, 3))
    for label_id, cls in classes_by_id.items():
        if cls in colours:
            lut[int(label_id)] = colours[cls]
    edges = find_boundaries(labels, mode="inner")
    rgb[edges] = lut[labels[edges]]
    h, w = labels.shape
    fig = _figure((min(12, 6 * w / max(h, w) + 0.5), min(12, 6 * h / max(h, w) + 0.8)))
    ax = fig.add_axes([0, 0, 1, 0.93])
    ax.imshow(rgb, interpolation="nearest")
    ax.axis("off")
    handles = [Patch(color=colours[c], label=c) for c in classes] + [Patch(facecolor="white", edgecolor="k", label="not classified")]
    ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=max(100, min(200, int(max(h, w) / 6))))
