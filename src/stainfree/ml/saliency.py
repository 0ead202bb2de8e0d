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
    seed: int = 0,
) -> np.ndarray:
    """Saliency maps (N x H x W, at the cells' own size) for the class ``target`` of each cell
    (default: the predicted class).

    ``vanilla`` is the absolute gradient of the class score with respect to the input pixels,
    maximised over channels; ``smoothgrad`` averages it over ``n_samples`` copies with Gaussian
    noise of ``noise`` times the input's range (Smilkov et al. 2017).
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
    gen = torch.Generator().manual_seed(seed)
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
    """The output of every convolutional layer for one cell (``C x H x W``): a list of
    ``(layer name, channels x h x w)`` in forward order."""
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
