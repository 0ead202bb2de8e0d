"""Which pixels a classifier looks at: gradient saliency and activation maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..utils import StainfreeError


# ---------------------------------------------------------------------- saliency and activations
def saliency(
    clf,
    images: np.ndarray,
    *,
    method: str = "smoothgrad",
    target: Sequence[int] | None = None,
    n_samples: int = 25,
    noise: float = 0.15,
    random_state: int = 0,
) -> np.ndarray:
    """Saliency maps of a classifier: which pixels move the score of each cell's class.

    ``vanilla`` is the absolute gradient of the class score with respect to the input pixels,
    maximised over channels; ``smoothgrad`` averages it over ``n_samples`` copies with Gaussian
    noise of ``noise`` times the input's range (Smilkov et al. 2017).

    Parameters
    ----------
    clf : Classifier
        The trained classifier (run on the CPU).
    images : numpy.ndarray
        Cells, ``N x C x H x W`` in the classifier's channels, not normalised.
    method : {"smoothgrad", "vanilla"}, default "smoothgrad"
        Plain gradient or its average over noisy copies.
    target : sequence of int, optional
        Class index per cell; default the predicted class.
    n_samples : int, default 25
        Noisy copies for ``smoothgrad``.
    noise : float, default 0.15
        Noise standard deviation, as a fraction of each cell's intensity range.
    random_state : int, default 0
        Seed of the noise.

    Returns
    -------
    numpy.ndarray
        ``N x H x W`` float32 maps, resized to the cells' own size.

    Raises
    ------
    StainfreeError
        If ``method`` is neither vanilla nor smoothgrad.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.classifier import Classifier
    >>> from stainfree.ml.models import create_model
    >>> from stainfree.ml.saliency import saliency
    >>> clf = Classifier(create_model("cnn3", 1, 2, 16), "cnn3", {}, ["a", "b"], ["bf"], (16, 16), {"method": "cell"})
    >>> maps = saliency(clf, np.random.default_rng(0).random((3, 1, 20, 20)), n_samples=2)
    >>> maps.shape, maps.dtype, bool((maps >= 0).all())
    ((3, 20, 20), dtype('float32'), True)
    """
    import torch
    import torch.nn.functional as F

    if method not in ("vanilla", "smoothgrad"):
        raise StainfreeError(f"saliency method must be vanilla or smoothgrad, got {method!r}")
    images = np.asarray(images)
    model = clf.model.to("cpu").eval()
    x = torch.from_numpy(clf.prepare(images).astype(np.float32))
    with torch.no_grad():
        predicted = model(x).argmax(1)
    classes = predicted if target is None else torch.as_tensor(np.asarray(target), dtype=torch.long)
    gen = torch.Generator().manual_seed(random_state)
    spread = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).clamp_min(1e-6)[:, None, None, None]
    samples = n_samples if method == "smoothgrad" else 1
    total = torch.zeros_like(x)
    for _ in range(samples):
        xi = x + noise * spread * torch.randn(x.shape, generator=gen) if method == "smoothgrad" else x.clone()
        xi.requires_grad_(True)
        scores = model(xi).gather(1, classes[:, None]).sum()
        (grad,) = torch.autograd.grad(scores, xi)
        total += grad.abs()
    maps = (total / samples).amax(dim=1, keepdim=True)
    maps = F.interpolate(maps, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return maps.numpy()


def activation_maps(clf, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The output of every convolutional layer of a classifier for one cell.

    Parameters
    ----------
    clf : Classifier
        The trained classifier (run on the CPU).
    image : numpy.ndarray
        One cell, ``C x H x W`` in the classifier's channels, not normalised.

    Returns
    -------
    list of (str, numpy.ndarray)
        ``(layer name, channels x h x w)`` for each convolution, in forward order.

    Raises
    ------
    StainfreeError
        If the network has no convolutional layer (``fc2``, ``simple_vit``).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.classifier import Classifier
    >>> from stainfree.ml.models import create_model
    >>> from stainfree.ml.saliency import activation_maps
    >>> clf = Classifier(create_model("cnn3", 2, 3, 24), "cnn3", {}, ["a", "b", "c"], ["bf", "df"], (24, 24), {"method": "cell"})
    >>> [(name, a.shape) for name, a in activation_maps(clf, np.ones((2, 24, 24)))]
    [('body.0', (16, 24, 24)), ('body.4', (32, 12, 12)), ('body.8', (32, 6, 6))]
    """
    import torch

    model = clf.model.to("cpu").eval()
    found: list[tuple[str, np.ndarray]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: found.append((name, o[0].detach().numpy()))))
    try:
        with torch.no_grad():
            model(torch.from_numpy(clf.prepare(np.asarray(image)[None]).astype(np.float32)))
    finally:
        for h in hooks:
            h.remove()
    if not found:
        raise StainfreeError(f"model {clf.arch} has no convolutional layers to show")
    return found
