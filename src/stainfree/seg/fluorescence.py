"""Labelling cells from a fluorescence channel: background correction, disk intensities and a two-population fit."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError


# ---------------------------------------------------------------------- labels from fluorescence
def correct_background(image: np.ndarray, *, sigma: float = 200.0) -> np.ndarray:
    """Flatten uneven illumination: divide by a strongly blurred copy.

    The blur is computed on a block-averaged copy and interpolated back, which is the same to
    within a fraction of a percent for such wide kernels and hundreds of times faster.

    Parameters
    ----------
    image : (H, W) array
        One channel.
    sigma : float, default 200.0
        Gaussian sigma of the blur, px (Ogawa et al. use 200 px).

    Returns
    -------
    (H, W) ndarray of float64
        The image over its blur: about 1 on the background.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.fluorescence import correct_background
    >>> field = np.full((64, 64), 50.0); field[:, 32:] = 100.0  # two halves, one twice as bright
    >>> out = correct_background(field, sigma=4)
    >>> round(float(out[10, 5]), 3), round(float(out[10, 60]), 3)
    (1.0, 1.0)
    """
    from scipy import ndimage

    x = np.asarray(image, np.float64)
    factor = int(max(1, sigma // 8))
    h, w = x.shape
    hb, wb = -(-h // factor), -(-w // factor)
    padded = np.pad(x, ((0, hb * factor - h), (0, wb * factor - w)), mode="edge")
    small = padded.reshape(hb, factor, wb, factor).mean(axis=(1, 3))
    blurred = ndimage.gaussian_filter(small, sigma / factor, mode="reflect")
    if factor > 1:
        blurred = ndimage.zoom(blurred, factor, order=1, grid_mode=True, mode="nearest")[:h, :w]
    return x / np.maximum(blurred, 1e-6 * max(float(blurred.max()), 1e-12))


def disk_intensity(image: np.ndarray, rows, cols, *, radius: float) -> np.ndarray:
    """Total intensity within ``radius`` px of each centre.

    Pixels beyond the image's edge count as 0.

    Parameters
    ----------
    image : (H, W) array
        One channel (usually background-corrected, :func:`correct_background`).
    rows, cols : array_like of float
        The centres' rows and columns, rounded to whole pixels.
    radius : float
        Disk radius, px (Ogawa et al. use 30 px); pixels whose centre lies within it count.

    Returns
    -------
    (n,) ndarray of float64
        The sum over each disk.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.fluorescence import disk_intensity
    >>> img = np.zeros((9, 9)); img[4, 4] = 2.0; img[4, 5] = 1.0
    >>> disk_intensity(img, [4], [4], radius=0.5).tolist(), disk_intensity(img, [4], [4], radius=1).tolist()
    ([2.0], [3.0])
    >>> disk_intensity(img, [4], [5], radius=0.5).tolist()  # row 4, column 5
    [1.0]
    """
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (yy**2 + xx**2) <= radius**2
    padded = np.pad(np.asarray(image, np.float64), r)
    out = np.empty(len(rows))
    for k, (y, x) in enumerate(zip(np.rint(rows).astype(int), np.rint(cols).astype(int))):
        out[k] = padded[y : y + 2 * r + 1, x : x + 2 * r + 1][disk].sum()
    return out


@dataclasses.dataclass
class MixtureFit:
    """A two-component Gaussian mixture on log intensities and the labels it gives.

    Made by :func:`fit_two_populations`; components come in the order (dim, bright).

    Attributes
    ----------
    log_intensity : (n,) ndarray
        The natural log of each cell's intensity, as fitted.
    labels : (n,) ndarray of object
        Each cell's class name, or ``None`` where neither posterior reaches ``min_posterior``.
    posterior : (n, 2) ndarray
        Each cell's posterior for each component, columns in the order of ``names``.
    names : tuple of str
        The class names of the dim and the bright component.
    means, sds, weights : tuple of float
        Each component's mean and standard deviation (log scale) and weight.
    threshold : float
        The log intensity where the two posteriors are equal.
    separation : float
        Ashman's D between the components.
    min_posterior : float
        The posterior a cell needs for a label.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.fluorescence import fit_two_populations
    >>> spread = np.linspace(0.9, 1.1, 10)
    >>> fit = fit_two_populations(np.r_[10 * spread, 1000 * spread], names=("dim", "bright"))
    >>> fit.labels[[0, -1]].tolist(), fit.counts, round(float(np.exp(fit.threshold)))
    (['dim', 'bright'], {'dim': 10, 'bright': 10}, 100)
    >>> fit.summary()
    "fluorescence mixture: dim 10, bright 10, unused 0 (posterior < 0.8 for both); threshold 99.8, separation (Ashman's D) 71.94"
    """

    log_intensity: np.ndarray
    labels: np.ndarray  # object array: a class name, or None for "unused"
    posterior: np.ndarray  # n x 2, columns in the order of ``names`` (dim, bright)
    names: tuple[str, str]
    means: tuple[float, float]
    sds: tuple[float, float]
    weights: tuple[float, float]
    threshold: float  # log intensity where the two posteriors are equal
    separation: float  # Ashman's D
    min_posterior: float

    @property
    def counts(self) -> dict:
        """Cells per class name, ``"unused"`` for those without a label."""
        s = pd.Series(self.labels).fillna("unused")
        return {k: int(v) for k, v in s.value_counts().items()}

    def as_dict(self) -> dict:
        """The fit in plain numbers (for JSON): names, log-scale means and sds, weights, the
        threshold in intensity units, Ashman's D and the counts per class."""
        return {
            "names": list(self.names),
            "means_log": list(self.means),
            "sds_log": list(self.sds),
            "weights": list(self.weights),
            "threshold": float(np.exp(self.threshold)),
            "separation": self.separation,
            "counts": self.counts,
        }

    def summary(self) -> str:
        """One line for the log: counts per class, the threshold (intensity units) and Ashman's D."""
        c = self.counts
        return (
            f"fluorescence mixture: {self.names[0]} {c.get(self.names[0], 0)}, {self.names[1]} {c.get(self.names[1], 0)}, "
            f"unused {c.get('unused', 0)} (posterior < {self.min_posterior} for both); threshold "
            f"{np.exp(self.threshold):.4g}, separation (Ashman's D) {self.separation:.2f}"
        )


#: Below this Ashman's D two Gaussians are not two populations (D > 2 is the usual criterion).
MIN_SEPARATION = 2.0


def fit_two_populations(
    intensity: np.ndarray,
    *,
    names: Sequence[str] = ("negative", "positive"),
    min_posterior: float = 0.8,
    random_state: int = 0,
    what: str = "fluorescence",
) -> MixtureFit:
    """Label cells dim/bright from a two-component Gaussian mixture on log intensities.

    The first name goes to the dim component, the second to the bright one. Cells whose
    posterior is below ``min_posterior`` for both components get no label (``None``).
    Intensities that are not positive or not finite are raised to half the smallest positive one
    before the log.

    Parameters
    ----------
    intensity : (n,) array of float
        One intensity per cell (at least 10 cells), e.g. from :func:`disk_intensity`.
    names : sequence of two str, default ("negative", "positive")
        Class names of the dim and the bright component.
    min_posterior : float, default 0.8
        The posterior a cell needs for a label.
    random_state : int, default 0
        Random state of the mixture's initialisations.
    what : str, default "fluorescence"
        What the intensities are, for messages.

    Returns
    -------
    MixtureFit
        The components, the threshold and each cell's posterior and label.

    Raises
    ------
    StainfreeError
        When the names are not two different ones, there are fewer than 10 cells, or the two
        components do not separate (Ashman's D below :data:`MIN_SEPARATION`, a component under
        1 % of the cells, or all intensities equal): no labels are invented then.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.fluorescence import fit_two_populations
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.lognormal(3, 0.3, 200), rng.lognormal(6, 0.3, 100)]
    >>> fit = fit_two_populations(x, names=("HEK", "HT1080"))
    >>> fit.counts["HEK"], fit.counts["HT1080"]
    (200, 100)
    """
    from sklearn.mixture import GaussianMixture

    names = tuple(names)
    if len(names) != 2 or names[0] == names[1]:
        raise StainfreeError(f"two different class names are needed for the mixture, got {list(names)}")
    x = np.asarray(intensity, np.float64)
    if len(x) < 10:
        raise StainfreeError(f"{what}: {len(x)} cells are too few to fit a two-population mixture (at least 10)")
    if (x <= 0).any() or not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, 0.0)
        x = np.maximum(x, max(np.min(x[x > 0]) if (x > 0).any() else 1e-6, 1e-12) / 2)
    logx = np.log(x)
    if np.ptp(logx) == 0:
        raise StainfreeError(f"{what}: every cell has the same intensity; the mixture does not separate, so no labels were made")
    gm = GaussianMixture(2, random_state=random_state, n_init=3).fit(logx[:, None])
    order = np.argsort(gm.means_.ravel())
    means = gm.means_.ravel()[order]
    sds = np.sqrt(gm.covariances_.ravel()[order])
    weights = gm.weights_[order]
    post = gm.predict_proba(logx[:, None])[:, order]
    separation = float(np.sqrt(2) * abs(means[1] - means[0]) / np.sqrt(sds[0] ** 2 + sds[1] ** 2))
    if separation < MIN_SEPARATION or weights.min() < 0.01:
        raise StainfreeError(
            f"{what}: the two-population mixture does not separate (Ashman's D {separation:.2f} < {MIN_SEPARATION}, "
            f"component weights {weights[0]:.2f}/{weights[1]:.2f}), so no labels were made"
        )
    grid = np.linspace(means[0], means[1], 2001)
    gp = gm.predict_proba(grid[:, None])[:, order]
    threshold = float(grid[np.argmin(np.abs(gp[:, 0] - gp[:, 1]))])
    labels = np.full(len(x), None, dtype=object)
    labels[post[:, 0] >= min_posterior] = names[0]
    labels[post[:, 1] >= min_posterior] = names[1]
    return MixtureFit(
        logx,
        labels,
        post,
        names,
        tuple(map(float, means)),
        tuple(map(float, sds)),
        tuple(map(float, weights)),
        threshold,
        separation,
        min_posterior,
    )


def balance_per_group(labels: pd.Series, groups: pd.Series, *, random_state: int = 0) -> np.ndarray:
    """Positions of a random subsample with equal class counts within each group (Ogawa et al.).

    Within each group, every class keeps as many cells as the group's rarest class has.
    Cells without a label are dropped. A group where some class is absent keeps nothing, since
    it cannot be balanced.

    Parameters
    ----------
    labels : pandas.Series
        Each cell's class (missing values for cells without one).
    groups : pandas.Series
        Each cell's group (e.g. its field), aligned with ``labels``.
    random_state : int, default 0
        Seed of the subsampling.

    Returns
    -------
    ndarray of int64
        The kept positions, sorted.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.seg.fluorescence import balance_per_group
    >>> keep = balance_per_group(pd.Series(["a", "a", "b", "a", "b"]), pd.Series([1, 1, 1, 2, 2]))
    >>> len(keep), keep[-3:].tolist()
    (4, [2, 3, 4])
    """
    rng = np.random.default_rng(random_state)
    df = pd.DataFrame({"label": labels.to_numpy(), "group": groups.to_numpy()}).dropna(subset=["label"])
    classes = df["label"].unique()
    keep = []
    for _, g in df.groupby("group", sort=False):
        counts = g["label"].value_counts()
        if len(counts) < len(classes):
            continue
        n = counts.min()
        for c in classes:
            idx = g.index[g["label"] == c].to_numpy()
            keep.extend(rng.choice(idx, n, replace=False) if len(idx) > n else idx)
    return np.sort(np.asarray(keep, dtype=np.int64))
