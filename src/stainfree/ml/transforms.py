"""Preprocessing stored with a model, and batched augmentation on the device.

Normalisations (fitted on training cells, stored in the model's metadata as a plain dict):

``robust``
    per channel, subtract the median and divide by the 1st-99th percentile range of the
    training pixels (the default).
``quantile``
    map every cell's intensity distribution, channel by channel, onto a reference cell's
    (Yao et al. 2019): the reference is the training cell whose quantiles are closest to the
    median quantiles; then robust scaling.
``cell``
    every cell and channel on its own: subtract its median, divide by its 1st-99th percentile
    range (removes per-cell brightness and gain differences; nothing is fitted).
``circle``
    zero everything outside a centred disc of ``radius`` pixels and scale each channel so that the
    mean inside the disc is 1 (Ogawa et al. 2022; radius 50 at 150 px, i.e. a third of the crop).

Augmentations are looked up by name (:data:`AUGMENTATIONS`) and combined into named presets
(:data:`PRESETS`); all act on a batch ``N x C x H x W`` tensor at once, on its device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..utils import StainfreeError

#: Names of the normalisations (described above).
NORMALISATIONS = ("robust", "quantile", "circle", "cell")
#: Quantile levels (0, 1, ..., 100 percent) stored for the ``quantile`` normalisation.
N_QUANTILES = 101
#: Normalisations are fitted on a random sample of at most this many training cells.
NORMALISATION_CELLS = 2000


# ---------------------------------------------------------------------- normalisation
def normalisation_sample(rows: np.ndarray, *, max_cells: int = NORMALISATION_CELLS, random_state: int = 0) -> np.ndarray:
    """The rows :func:`fit_normalisation` fits on: all, or a random ``max_cells`` of them in their
    order (so reading only these from a large set gives the whole set's normalisation).

    >>> normalisation_sample(np.array([5, 3, 9]), max_cells=2).tolist(), normalisation_sample(np.arange(3)).tolist()
    ([3, 9], [0, 1, 2])
    """
    rows = np.asarray(rows)
    if len(rows) <= max_cells:
        return rows
    return rows[np.sort(np.random.default_rng(random_state).choice(len(rows), max_cells, replace=False))]


def fit_normalisation(
    images: np.ndarray, method: str = "robust", *, radius: float | None = None, max_cells: int = NORMALISATION_CELLS, random_state: int = 0
) -> dict:
    """Fit a normalisation on training images, to store with a model.

    Parameters
    ----------
    images : numpy.ndarray
        Training cells, ``N x C x H x W``.
    method : str, default "robust"
        One of :data:`NORMALISATIONS` (see the module description).
    radius : float, optional
        ``circle`` only: the disc's radius in pixels; default a third of the smaller side.
    max_cells : int, default 2000
        Fit on a random subset of at most this many cells (quantiles of every cell are costly).
    random_state : int, default 0
        Seed of that subset.

    Returns
    -------
    dict
        JSON-able parameters for :func:`apply_normalisation` (``method`` and, as needed,
        ``center``, ``scale``, ``reference_quantiles`` or ``radius``).

    Raises
    ------
    StainfreeError
        For a ``method`` not in :data:`NORMALISATIONS`.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.transforms import fit_normalisation
    >>> p = fit_normalisation(np.arange(101, dtype=float).reshape(1, 1, 1, 101))
    >>> p["method"], p["center"], p["scale"]
    ('robust', [50.0], [98.0])
    >>> fit_normalisation(np.zeros((2, 1, 30, 60)), "circle")
    {'method': 'circle', 'radius': 10.0}
    """
    if method not in NORMALISATIONS:
        raise StainfreeError(f"unknown normalisation {method!r} (choose from {', '.join(NORMALISATIONS)})")
    images = np.asarray(images)
    images = images[normalisation_sample(np.arange(len(images)), max_cells=max_cells, random_state=random_state)]
    if method == "cell":
        return {"method": "cell"}
    if method == "circle":
        side = min(images.shape[2:])
        return {"method": "circle", "radius": float(radius if radius is not None else side / 3)}
    params: dict = {"method": method}
    if method == "quantile":
        levels = np.linspace(0, 100, N_QUANTILES)
        q = np.percentile(images.reshape(len(images), images.shape[1], -1).astype(np.float64), levels, axis=2)  # Q x N x C
        q = np.moveaxis(q, 0, -1)  # N x C x Q
        median = np.median(q, axis=0)
        reference = int(np.argmin(((q - median) ** 2).sum(axis=(1, 2))))
        params["reference_quantiles"] = q[reference].tolist()
        images = _match_quantiles(images, params["reference_quantiles"])
    per_channel = np.moveaxis(images, 1, 0).reshape(images.shape[1], -1).astype(np.float64)
    center = np.median(per_channel, axis=1)
    lo, hi = np.percentile(per_channel, [1, 99], axis=1)
    params["center"] = center.tolist()
    params["scale"] = np.where(hi - lo > 0, hi - lo, 1.0).tolist()
    return params


def _match_quantiles(images: np.ndarray, reference_quantiles) -> np.ndarray:
    """Replace every pixel by the reference value at its rank within its own cell and channel."""
    ref = np.asarray(reference_quantiles, np.float64)  # C x Q
    n, c, h, w = images.shape
    flat = images.reshape(n, c, -1)
    ranks = flat.argsort(axis=2, kind="stable").argsort(axis=2, kind="stable").astype(np.float64)
    ranks /= max(h * w - 1, 1)
    grid = np.linspace(0, 1, ref.shape[1])
    out = np.empty(flat.shape, np.float32)
    for ch in range(c):
        out[:, ch] = np.interp(ranks[:, ch], grid, ref[ch])
    return out.reshape(n, c, h, w)


def circle_mask(h: int, w: int, radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` pixels centred in an ``h x w`` image.

    Parameters
    ----------
    h, w : int
        Image height and width.
    radius : float
        Radius in pixels (pixels at exactly that distance are inside).

    Returns
    -------
    numpy.ndarray
        ``h x w`` bool.

    Examples
    --------
    >>> from stainfree.ml.transforms import circle_mask
    >>> circle_mask(5, 5, 1).astype(int)[1:4, 1:4]
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    """
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= radius**2


def apply_normalisation(images: np.ndarray, params: dict) -> np.ndarray:
    """Apply a fitted normalisation to images.

    Parameters
    ----------
    images : numpy.ndarray
        Cells, ``N x C x H x W``, in the channels the normalisation was fitted on.
    params : dict
        The output of :func:`fit_normalisation` (without ``method``: ``robust``).

    Returns
    -------
    numpy.ndarray
        Float32, ``N x C x H x W``.

    Raises
    ------
    StainfreeError
        If float images contain NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.transforms import apply_normalisation
    >>> apply_normalisation(np.array([[[[1.0, 3.0]]]]), {"method": "robust", "center": [1.0], "scale": [4.0]})
    array([[[[0. , 0.5]]]], dtype=float32)
    >>> apply_normalisation(np.full((1, 1, 3, 3), 4.0), {"method": "circle", "radius": 1})[0, 0]
    array([[0., 1., 0.],
           [1., 1., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    images = np.asarray(images)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise StainfreeError("images contain NaN or infinite values")
    method = params.get("method", "robust")
    if method == "circle":
        mask = circle_mask(images.shape[2], images.shape[3], params["radius"])
        x = images.astype(np.float32) * mask
        inside = x.sum(axis=(2, 3), keepdims=True) / max(mask.sum(), 1)
        return np.divide(x, inside, out=np.zeros_like(x), where=inside != 0)
    if method == "cell":
        x = images.astype(np.float32)
        flat = x.reshape(len(x), x.shape[1], -1)
        center = np.median(flat, axis=2)[:, :, None, None]
        lo, hi = np.percentile(flat, [1, 99], axis=2)
        scale = np.where(hi - lo > 0, hi - lo, 1.0)[:, :, None, None]
        return ((x - center) / scale).astype(np.float32)
    x = _match_quantiles(images, params["reference_quantiles"]) if method == "quantile" else images.astype(np.float32)
    center = np.asarray(params["center"], np.float32)[None, :, None, None]
    scale = np.asarray(params["scale"], np.float32)[None, :, None, None]
    return ((x - center) / scale).astype(np.float32)


# ---------------------------------------------------------------------- augmentation
def _rot90(x, g):
    import torch

    k = torch.randint(0, 4, (x.shape[0],), generator=g)
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if sel.any() and x.shape[2] == x.shape[3]:
            out[sel] = torch.rot90(x[sel], r, dims=(2, 3))
    return out


def _flips(x, g):
    import torch

    h = torch.rand(x.shape[0], generator=g) < 0.5
    v = torch.rand(x.shape[0], generator=g) < 0.5
    out = x.clone()
    out[h] = out[h].flip(3)
    out[v] = out[v].flip(2)
    return out


def _affine(x, g, *, degrees: float = 0.0, translate: float = 0.0):
    """Rotation by a random angle in [-degrees, degrees] and translation by up to ``translate``
    of the size, bilinear, with the border filled by reflection (no black corners)."""
    import torch
    from kornia.geometry.transform import warp_affine

    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=g) * 2 - 1) * degrees * math.pi / 180
    tx = (torch.rand(n, generator=g) * 2 - 1) * translate * w
    ty = (torch.rand(n, generator=g) * 2 - 1) * translate * h
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    m = torch.zeros(n, 2, 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    m[:, 0, 2] = cx - cos * cx + sin * cy + tx
    m[:, 1, 2] = cy - sin * cx - cos * cy + ty
    return warp_affine(x, m.to(x.device, x.dtype), (h, w), mode="bilinear", padding_mode="reflection", align_corners=True)


def _fourier_rotate(x, g):
    from ._rotate import fourier_rotate

    return fourier_rotate(x, g)


def _random_crop(x, g, *, fraction: float = 0.875):
    """Crop a random window of ``fraction`` of the side and resize it back (scale jitter)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    ch, cw = max(1, int(round(h * fraction))), max(1, int(round(w * fraction)))
    top = torch.randint(0, h - ch + 1, (n,), generator=g)
    left = torch.randint(0, w - cw + 1, (n,), generator=g)
    crops = torch.stack([x[i, :, top[i] : top[i] + ch, left[i] : left[i] + cw] for i in range(n)])
    return F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False)


def _blur(x, g, *, max_sigma: float = 1.0, p: float = 0.5):
    import torch
    from kornia.filters import gaussian_blur2d

    n = x.shape[0]
    apply = torch.rand(n, generator=g) < p
    if not apply.any():
        return x
    sigma = 0.1 + torch.rand(int(apply.sum()), generator=g) * (max_sigma - 0.1)
    k = 2 * int(math.ceil(2 * max_sigma)) + 1
    out = x.clone()
    out[apply] = gaussian_blur2d(x[apply], (k, k), torch.stack([sigma, sigma], 1).to(x.device, x.dtype))
    return out


def _background_texture(x, g, *, amplitude: float = 0.1, scale: float = 4.0):
    """Add smooth random texture imitating substrate irregularities (Yao et al.): Gaussian noise
    low-pass filtered at ``scale`` pixels, ``amplitude`` times each image's standard deviation."""
    import torch
    from kornia.filters import gaussian_blur2d

    n, c, h, w = x.shape
    scale = min(scale, max(0.5, min(h, w) / 8))  # the blur's padding must fit in small crops
    noise = torch.randn(n, 1, h, w, generator=g)
    k = 2 * int(math.ceil(3 * scale)) + 1
    noise = gaussian_blur2d(noise, (k, k), torch.tensor([[scale, scale]]).expand(n, 2))
    noise = noise / noise.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None, None]
    strength = amplitude * torch.rand(n, 1, 1, 1, generator=g) * x.flatten(2).std(dim=2)[:, :, None, None].cpu()
    return x + (noise * strength).to(x.device, x.dtype)


def blackout_outside(x, masks, *, mode: str = "full", dilate: int = 3, fill: float = 0.0, generator=None):
    """Engberg's blackout of the background: set pixels outside the dilated cell mask to ``fill``.

    ``mode="full"`` (FBR) blacks out everything outside; ``mode="partial"`` (PBR) blacks out a
    random half-plane of the outside only, so some context survives.

    Parameters
    ----------
    x : torch.Tensor
        Batch ``N x C x H x W``.
    masks : torch.Tensor
        The cells' masks, ``N x H x W`` or ``N x 1 x H x W`` (bool or 0/1).
    mode : {"full", "partial"}, default "full"
        Black out all of the outside, or a random half-plane of it.
    dilate : int, default 3
        Grow the masks by this many pixels (a square neighbourhood) first.
    fill : float, default 0.0
        Value of the blacked-out pixels.
    generator : torch.Generator, optional
        Random source of the half-planes.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Raises
    ------
    StainfreeError
        If ``mode`` is neither full nor partial.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.transforms import blackout_outside
    >>> masks = torch.zeros(1, 5, 5, dtype=torch.bool)
    >>> masks[0, 2, 2] = True
    >>> blackout_outside(torch.ones(1, 1, 5, 5), masks, dilate=1)[0, 0]
    tensor([[0., 0., 0., 0., 0.],
            [0., 1., 1., 1., 0.],
            [0., 1., 1., 1., 0.],
            [0., 1., 1., 1., 0.],
            [0., 0., 0., 0., 0.]])
    """
    import torch
    import torch.nn.functional as F

    m = masks.to(x.dtype)
    if m.ndim == 3:
        m = m[:, None]
    if dilate > 0:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    keep = m > 0
    if mode == "partial":
        n, _, h, w = x.shape
        angle = torch.rand(n, generator=generator) * 2 * math.pi
        yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
        side = (torch.cos(angle)[:, None, None] * xx + torch.sin(angle)[:, None, None] * yy) > 0
        keep = keep | side[:, None].to(keep.device)
    elif mode != "full":
        raise StainfreeError(f"blackout mode must be full or partial, got {mode!r}")
    return torch.where(keep, x, torch.full_like(x, fill))


#: Augmentations by name: functions ``(batch, generator) -> batch``.
AUGMENTATIONS: dict[str, Callable] = {
    "rot90": _rot90,
    "flip": _flips,
    "rotate": lambda x, g: _affine(x, g, degrees=180.0),  # bilinear: smooths pixel noise to ~0.68 of its std
    "rotate_sharp": lambda x, g: _fourier_rotate(x, g),  # any angle by Fourier shears, keeping fine texture
    "translate": lambda x, g: _affine(x, g, translate=0.1),
    "crop": _random_crop,
    "blur": _blur,
    "texture": _background_texture,
}

#: Named augmentation presets: lists of AUGMENTATIONS names applied in order.
PRESETS: dict[str, list[str]] = {
    "none": [],
    "flips": ["rot90", "flip"],
    "standard": ["rot90", "flip", "translate"],
    "rotations": ["rotate", "flip"],
    "yao": ["rotate", "translate", "texture"],
    "engberg": ["rot90", "flip", "blur"],
    "strong": ["rotate", "flip", "translate", "crop", "blur", "texture"],
}


def augmentation_names(preset: str | list[str]) -> list[str]:
    """The augmentations of a preset name, of a comma-separated list (``"rot90,flip,blur"``) or
    of a list.

    Parameters
    ----------
    preset : str or list of str
        A name in :data:`PRESETS`, names from :data:`AUGMENTATIONS` separated by commas, or a list of them.

    Returns
    -------
    list of str
        Names from :data:`AUGMENTATIONS`, in the order they are applied.

    Raises
    ------
    StainfreeError
        For an unknown preset or augmentation (a one-line message listing the choices).

    Examples
    --------
    >>> from stainfree.ml.transforms import augmentation_names
    >>> augmentation_names("engberg"), augmentation_names("flip,blur")
    (['rot90', 'flip', 'blur'], ['flip', 'blur'])
    """
    if isinstance(preset, str):
        if preset in PRESETS:
            return list(PRESETS[preset])
        if "," not in preset and preset not in AUGMENTATIONS:
            raise StainfreeError(
                f"unknown augmentation preset {preset!r} (choose from {', '.join(PRESETS)}, or list augmentations: {','.join(AUGMENTATIONS)})"
            )
        preset = [name.strip() for name in preset.split(",") if name.strip()]
    for name in preset:
        if name not in AUGMENTATIONS:
            raise StainfreeError(f"unknown augmentation {name!r} (choose from {', '.join(AUGMENTATIONS)})")
    return list(preset)


def augment(x, preset: str | list[str] = "standard", *, generator=None):
    """Apply an augmentation preset (or a list of augmentation names) to a batch tensor.

    Every augmentation draws its own random values per cell, on the batch's device.

    Parameters
    ----------
    x : torch.Tensor
        Batch ``N x C x H x W`` (normalised).
    preset : str or list of str, default "standard"
        As for :func:`augmentation_names`.
    generator : torch.Generator, optional
        Random source, for reproducible augmentation.

    Returns
    -------
    torch.Tensor
        The augmented batch, same shape.

    Raises
    ------
    StainfreeError
        For an unknown preset or augmentation.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.transforms import augment
    >>> y = augment(torch.arange(4.0).reshape(1, 1, 2, 2), "flips", generator=torch.Generator().manual_seed(0))
    >>> y.shape, sorted(y.flatten().tolist())  # rotations and flips only move pixels
    (torch.Size([1, 1, 2, 2]), [0.0, 1.0, 2.0, 3.0])
    """
    for name in augmentation_names(preset):
        x = AUGMENTATIONS[name](x, generator)
    return x


def dihedral_views(x):
    """The 8 rotations/flips of a batch (for test-time augmentation), as a list of tensors.

    Parameters
    ----------
    x : torch.Tensor
        Batch ``N x C x H x W``; for non-square images the 90 and 270 degree rotations are
        replaced by the unrotated batch.

    Returns
    -------
    list of torch.Tensor
        The 4 rotations by 90 degrees of ``x``, then those of ``x`` flipped left-right.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.transforms import dihedral_views
    >>> views = dihedral_views(torch.arange(4.0).reshape(1, 1, 2, 2))
    >>> len(views), views[0][0, 0].tolist(), views[1][0, 0].tolist(), views[4][0, 0].tolist()
    (8, [[0.0, 1.0], [2.0, 3.0]], [[1.0, 3.0], [0.0, 2.0]], [[1.0, 0.0], [3.0, 2.0]])
    """
    import torch

    views = []
    for flip in (False, True):
        base = x.flip(3) if flip else x
        for k in range(4):
            views.append(torch.rot90(base, k, dims=(2, 3)) if x.shape[2] == x.shape[3] or k % 2 == 0 else base)
    return views
