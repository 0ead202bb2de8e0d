"""Training batches for the segmentation network: fields prepared once at the network's scale,
random crops with dihedral and intensity augmentation, and the loss on the predicted maps."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .resize import normalise_field, rescale, resize_labels

if TYPE_CHECKING:
    from .training import SegTrainConfig


@dataclasses.dataclass
class PreparedField:
    """A training or validation field at the network's scale, from :func:`prepare_field`.

    Attributes
    ----------
    image : (C, h, w) float32 array
        Normalised, at the network's scale.
    targets : (3, h, w) float32 array
        :func:`~stainfree.seg.targets.training_targets` of the labels at that scale.
    truth : (H, W) int array
        The annotation at the field's own size, for scoring.
    """

    image: np.ndarray
    targets: np.ndarray
    truth: np.ndarray


def prepare_field(
    image: np.ndarray, labels: np.ndarray, *, scale: float, normalisation: dict, representation: str = "flows"
) -> PreparedField:
    """Normalise and rescale a field once, and compute its targets at the network's scale.

    Parameters
    ----------
    image : (C, H, W) array
    labels : (H, W) int array
        Its instance labels.
    scale : float
        Field pixels to network pixels.
    normalisation : dict
        ``low`` and ``high`` percentiles of :func:`~stainfree.seg.resize.normalise_field`.
    representation : {"flows", "distance"}, default "flows"

    Returns
    -------
    PreparedField

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.batches import prepare_field
    >>> labels = np.zeros((20, 20), int); labels[4:12, 4:12] = 1
    >>> f = prepare_field(labels[None] * 1.0, labels, scale=0.5, normalisation={"low": 1.0, "high": 99.5})
    >>> f.image.shape, f.targets.shape, f.truth.shape
    ((1, 10, 10), (3, 10, 10), (20, 20))
    """
    from .targets import training_targets

    x = rescale(normalise_field(image, low=normalisation["low"], high=normalisation["high"]), scale)
    small = resize_labels(labels, x.shape[-2:])
    return PreparedField(x, training_targets(small, representation=representation), np.asarray(labels))


def dihedral(image, targets, *, k: int, flip: bool, vectors: bool):
    """Rotate an image and its targets by ``k`` quarter turns, then mirror the columns when ``flip``.

    Turns go rows towards columns, as :func:`torch.rot90`.

    Parameters
    ----------
    image, targets : (C, H, W) torch.Tensor
    k : int
    flip : bool
    vectors : bool
        Target channels 1 and 2 are (row, col) vector components, which turn with the picture.

    Returns
    -------
    image, targets : torch.Tensor

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from stainfree.seg.targets import training_targets
    >>> from stainfree.seg.batches import dihedral
    >>> lab = np.zeros((9, 9), int); lab[1:4, 1:8] = 1; lab[5:8, 2:5] = 2
    >>> t = torch.from_numpy(training_targets(lab, representation="flows"))
    >>> _, turned = dihedral(t[:1], t, k=1, flip=True, vectors=True)
    >>> direct = training_targets(np.rot90(lab, 1).copy()[:, ::-1].copy(), representation="flows")
    >>> bool(torch.allclose(turned, torch.from_numpy(direct), atol=1e-5))
    True
    """
    import torch

    image, targets = torch.rot90(image, k, (1, 2)), torch.rot90(targets, k, (1, 2))
    if vectors:
        dy, dx = targets[1], targets[2]
        for _ in range(k % 4):
            dy, dx = -dx, dy
        targets = torch.stack([targets[0], dy, dx])
    if flip:
        image, targets = image.flip(2), targets.flip(2)
        if vectors:
            targets = torch.stack([targets[0], targets[1], -targets[2]])
    return image, targets


def _augment(batch, targets, generator, *, vectors: bool):
    """Dihedral transforms per sample, then intensity, gamma, blur and noise on the images."""
    import torch

    n = batch.shape[0]
    for i in range(n):
        k = int(torch.randint(4, (1,), generator=generator))
        flip = bool(torch.randint(2, (1,), generator=generator))
        batch[i], targets[i] = dihedral(batch[i], targets[i], k=k, flip=flip, vectors=vectors)
    u = torch.rand(n, 6, generator=generator)
    contrast = (0.7 + 0.7 * u[:, 0]).view(n, 1, 1, 1)
    shift = (0.3 * u[:, 1] - 0.15).view(n, 1, 1, 1)
    mean = batch.mean(dim=(2, 3), keepdim=True)
    batch = (batch - mean) * contrast + mean + shift
    gamma = torch.exp((u[:, 2] - 0.5) * 0.8).view(n, 1, 1, 1)
    batch = torch.where(batch > 0, batch.clamp(min=1e-6) ** gamma, batch)
    blur = u[:, 3] < 0.25
    if blur.any():
        from kornia.filters import gaussian_blur2d

        sigma = (0.5 + u[blur, 4]).repeat_interleave(2).view(-1, 2)
        batch[blur] = gaussian_blur2d(batch[blur], (7, 7), sigma)
    noisy = (u[:, 5] < 0.25).view(n, 1, 1, 1)
    noise = torch.randn(batch.shape, generator=generator) * 0.08 * torch.rand(n, 1, 1, 1, generator=generator)
    return torch.where(noisy, batch + noise, batch), targets


def sample_batch(fields: Sequence[PreparedField], *, config: SegTrainConfig, generator):
    """A batch of augmented crops and their targets.

    Fields are drawn in proportion to their area; each crop is zoomed at random within
    ``config.scale_range``, turned and mirrored (:func:`dihedral`), and varied in intensity,
    contrast, gamma, blur and noise.

    Parameters
    ----------
    fields : sequence of PreparedField
    config : SegTrainConfig
        ``batch_size``, ``crop``, ``scale_range`` and ``representation`` are used.
    generator : torch.Generator
        The source of every random choice.

    Returns
    -------
    images, targets : torch.Tensor
        ``(batch_size, C, crop, crop)`` and ``(batch_size, 3, crop, crop)``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from stainfree.seg.batches import prepare_field, sample_batch
    >>> from stainfree.seg.training import SegTrainConfig
    >>> labels = np.zeros((40, 40), int); labels[4:20, 4:20] = 1
    >>> field = prepare_field(labels[None] * 1.0, labels, scale=1.0, normalisation={"low": 1.0, "high": 99.5})
    >>> config = SegTrainConfig(batch_size=2, crop=16)
    >>> x, t = sample_batch([field], config=config, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape), tuple(t.shape)
    ((2, 1, 16, 16), (2, 3, 16, 16))
    """
    import torch
    from torch.nn import functional as F

    areas = np.array([f.image.shape[1] * f.image.shape[2] for f in fields], np.float64)
    choice = torch.multinomial(torch.from_numpy(areas / areas.sum()), config.batch_size, replacement=True, generator=generator)
    lo, hi = (math.log(s) for s in config.scale_range)
    images, targets = [], []
    for index in choice.tolist():
        f = fields[index]
        h, w = f.image.shape[1:]
        zoom = math.exp(lo + (hi - lo) * float(torch.rand(1, generator=generator)))
        window = min(max(int(round(config.crop / zoom)), 8), h, w)
        top = int(torch.randint(h - window + 1, (1,), generator=generator))
        left = int(torch.randint(w - window + 1, (1,), generator=generator))
        both = torch.from_numpy(
            np.concatenate([f.image[:, top : top + window, left : left + window], f.targets[:, top : top + window, left : left + window]])
        )
        both = F.interpolate(both[None], size=(config.crop, config.crop), mode="bilinear", align_corners=False)[0]
        images.append(both[: f.image.shape[0]])
        targets.append(both[f.image.shape[0] :])
    return _augment(torch.stack(images), torch.stack(targets), generator, vectors=config.representation == "flows")


def segmentation_loss(outputs, targets, *, representation: str = "flows"):
    """The training loss of a batch of network outputs.

    ``flows``: binary cross-entropy on the foreground plus half the squared error of the flows
    (learnt as :data:`~stainfree.seg.model.FLOW_SCALE` x the unit vectors), as cellpose;
    ``distance``: binary cross-entropy on foreground and boundary plus twice the squared error of
    the normalised distance.

    Parameters
    ----------
    outputs : (N, 3, H, W) torch.Tensor
        The network's raw outputs (logits).
    targets : (N, 3, H, W) torch.Tensor
        From :func:`~stainfree.seg.targets.training_targets`.
    representation : {"flows", "distance"}, default "flows"

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from stainfree.seg.batches import segmentation_loss
    >>> out, target = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    >>> round(segmentation_loss(out, target).item(), 4), round(segmentation_loss(out, target, representation="distance").item(), 4)
    (0.6931, 1.8863)
    """
    from torch.nn import functional as F

    from .model import FLOW_SCALE

    if representation == "flows":
        return F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0]) + 0.5 * F.mse_loss(
            outputs[:, 1:], FLOW_SCALE * targets[:, 1:]
        )
    return (
        F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
        + 2 * F.mse_loss(outputs[:, 1].sigmoid(), targets[:, 1])
        + F.binary_cross_entropy_with_logits(outputs[:, 2], targets[:, 2])
    )
