"""Training a segmentation network from annotated fields (plain PyTorch loop).

Each field is normalised and rescaled once to the network's scale, and its targets
(:mod:`.targets`) computed once. Every step draws random crops (over fields in proportion to
their area) at a random scale, flips and rotates them by multiples of 90 degrees, and varies
intensity, contrast, gamma, blur and noise. The loss is binary cross-entropy on foreground and
boundary plus twice the squared error of the normalised distance. Held-out fields are segmented
whole at each validation and scored (instance F1 at IoU 0.5). A checkpoint written at every
validation makes an interrupted run resumable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, private_torch_rng
from .batches import PreparedField, prepare_field, sample_batch, segmentation_loss
from .instances import InstanceParams
from .model import Segmenter
from .resize import resize_labels

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SegTrainConfig:
    """Settings of :func:`train_segmenter`; the defaults train the shipped phase-contrast model.

    Attributes
    ----------
    steps : int, default 800
    batch_size : int, default 8
    crop : int, default 256
        Side of the square crops, in network pixels.
    lr, weight_decay : float, default 2e-3 and 1e-4
        Peak learning rate (one-cycle schedule) and AdamW weight decay.
    representation : {"flows", "distance"}, default "flows"
        What the network learns (:mod:`stainfree.seg.targets`).
    arch : str, default "unet"
    width, depth : int, default 8 and 4
        The network's settings (:func:`stainfree.seg.networks.unet`).
    diameter : float, default 30.0
        Median cell diameter the network sees, in its own pixels.
    scale : float, optional
        Field pixels to network pixels; default from ``diameter`` and the annotations.
    scale_range : (float, float), default (0.75, 1.33)
        Range of the random zoom of each crop.
    validate_every : int, default 250
        Steps between validations (and checkpoints).
    seed : int, default 0
        Seeds the initial weights and every random draw of the batches.
    device : str, default "auto"

    Examples
    --------
    >>> from stainfree.seg.training import SegTrainConfig
    >>> SegTrainConfig(crop=8).validate()
    Traceback (most recent call last):
    ...
    stainfree.utils.StainfreeError: crop 8 is smaller than the network's stride 16
    """

    steps: int = 800
    batch_size: int = 8
    crop: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    representation: str = "flows"
    arch: str = "unet"
    width: int = 8
    depth: int = 4
    diameter: float = 30.0
    scale: float | None = None
    scale_range: tuple[float, float] = (0.75, 1.33)
    validate_every: int = 250
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Raise :class:`~stainfree.utils.StainfreeError` for a setting out of range."""
        for name in ("steps", "batch_size", "crop", "validate_every", "width", "depth"):
            if getattr(self, name) < 1:
                raise StainfreeError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.crop < 2**self.depth:
            raise StainfreeError(f"crop {self.crop} is smaller than the network's stride {2**self.depth}")
        if self.representation not in ("flows", "distance"):
            raise StainfreeError(f"representation must be flows or distance, not {self.representation!r}")
        if self.lr <= 0 or self.diameter <= 2 or (self.scale is not None and self.scale <= 0):
            raise StainfreeError("learning rate and scale must be positive and the diameter more than 2 px")


def median_diameter(label_images: Sequence[np.ndarray]) -> float:
    """Median equivalent-circle diameter of the objects of several label images.

    Parameters
    ----------
    label_images : sequence of (H, W) int arrays

    Returns
    -------
    float

    Raises
    ------
    StainfreeError
        When the images hold no objects.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.training import median_diameter
    >>> lab = np.zeros((10, 10), int); lab[:4, :4] = 1; lab[5:, 5:] = 2
    >>> round(median_diameter([lab]), 3)
    5.109
    """
    areas = np.concatenate([np.bincount(np.asarray(lab).ravel())[1:] for lab in label_images])
    areas = areas[areas > 0]
    if not len(areas):
        raise StainfreeError("the annotations hold no objects")
    return float(2 * np.sqrt(np.median(areas) / np.pi))


def score_fields(segmenter: Segmenter, fields: Sequence[PreparedField], *, device: str = "auto", maps=None) -> dict:
    """Pooled instance scores of a segmenter on prepared fields.

    Parameters
    ----------
    segmenter : Segmenter
    fields : sequence of PreparedField
    device : str, default "auto"
    maps : list of (3, h, w) arrays, optional
        The network's outputs on ``fields``, when already computed.

    Returns
    -------
    dict
        ``f1`` (at IoU 0.5), ``mean_matched_iou``, ``ap_50_95`` and the number of ``fields``
        (:func:`~stainfree.seg.scoring.scores_from_counts`).

    Examples
    --------
    Perfect maps (the targets themselves) give perfect scores:

    >>> import numpy as np
    >>> from stainfree.seg.model import Segmenter
    >>> from stainfree.seg.networks import create_segmenter
    >>> from stainfree.seg.batches import prepare_field
    >>> from stainfree.seg.training import score_fields
    >>> labels = np.zeros((32, 32), int); labels[4:14, 4:14] = 1; labels[18:28, 16:30] = 2
    >>> field = prepare_field(labels[None] * 1.0, labels, scale=1.0, normalisation={"low": 1.0, "high": 99.5})
    >>> model = Segmenter(create_segmenter("unet", 1, 3, width=4, depth=2), "unet", {"width": 4, "depth": 2}, ["phase"], None, 1.0, 12.0)
    >>> score_fields(model, [field], maps=[field.targets])
    {'f1': 1.0, 'mean_matched_iou': 1.0, 'ap_50_95': 1.0, 'fields': 1}
    """
    from .scoring import match_counts, pool_counts, scores_from_counts

    maps = maps if maps is not None else [segmenter.predict_maps(f.image, device=device) for f in fields]
    counts = [match_counts(f.truth, segmenter.labels_from_maps(m, f.truth.shape)) for f, m in zip(fields, maps)]
    s = scores_from_counts(pool_counts(counts))
    return {"f1": s["f1"], "mean_matched_iou": s["mean_matched_iou"], "ap_50_95": s["ap_50_95"], "fields": len(fields)}


#: The foreground thresholds :func:`tune_foreground_threshold` tries.
FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6, 0.7)


def tune_foreground_threshold(segmenter: Segmenter, fields: Sequence[PreparedField], *, device: str = "auto") -> dict:
    """Set the segmenter's foreground threshold to the best of :data:`FOREGROUND_THRESHOLDS`.

    The best has the highest average precision over IoU 0.5-0.95 on ``fields``, which rewards
    finding cells and outlining them well; ties go to the threshold nearest 0.5. Use held-out
    validation fields, never the fields a benchmark reports.

    Parameters
    ----------
    segmenter : Segmenter
        Changed in place (``instance_params``).
    fields : sequence of PreparedField
    device : str, default "auto"

    Returns
    -------
    dict
        :func:`score_fields` of each threshold (as a string), rounded to 4 decimals.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import Segmenter
    >>> from stainfree.seg.networks import create_segmenter
    >>> from stainfree.seg.batches import prepare_field
    >>> from stainfree.seg.training import tune_foreground_threshold
    >>> labels = np.zeros((32, 32), int); labels[4:14, 4:14] = 1
    >>> field = prepare_field(labels[None] * 1.0, labels, scale=1.0, normalisation={"low": 1.0, "high": 99.5})
    >>> model = Segmenter(create_segmenter("unet", 1, 3, width=4, depth=2), "unet", {"width": 4, "depth": 2}, ["phase"], None, 1.0, 12.0)
    >>> list(tune_foreground_threshold(model, [field], device="cpu"))
    ['0.4', '0.5', '0.6', '0.7']
    >>> model.instance_params.foreground_threshold in (0.4, 0.5, 0.6, 0.7)
    True
    """
    maps = [segmenter.predict_maps(f.image, device=device) for f in fields]
    tried = {}
    for threshold in FOREGROUND_THRESHOLDS:
        segmenter.instance_params = dataclasses.replace(segmenter.instance_params, foreground_threshold=threshold)
        tried[threshold] = score_fields(segmenter, fields, maps=maps)
    best = max(tried, key=lambda t: (tried[t]["ap_50_95"], -abs(t - 0.5)))
    segmenter.instance_params = dataclasses.replace(segmenter.instance_params, foreground_threshold=best)
    logger.info(
        "foreground threshold %.1f chosen on %d validation field(s) (AP 0.5-0.95 %s)",
        best,
        len(fields),
        ", ".join(f"{t}: {v['ap_50_95']:.3f}" for t, v in tried.items()),
    )
    return {str(t): {k: round(v, 4) for k, v in scores.items() if k != "fields"} for t, scores in tried.items()}


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


def train_segmenter(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    channels: Sequence[str],
    config: SegTrainConfig | None = None,
    validation: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    pixel_size: float | None = None,
    init: Segmenter | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    provenance: dict | None = None,
) -> Segmenter:
    """Train (or, with ``init``, fine-tune) a segmenter on fields and their instance labels.

    Each step draws a batch with :func:`sample_batch` and minimises :func:`segmentation_loss`
    (AdamW, one-cycle learning rate). Every ``config.validate_every`` steps the held-out fields are
    scored (:func:`score_fields`) and a checkpoint written; at the end the foreground threshold is
    tuned on them (:func:`tune_foreground_threshold`).

    Parameters
    ----------
    images : sequence of (C, H, W) arrays
        The fields, channels in the order of ``channels``.
    labels : sequence of (H, W) int arrays
        Instance labels, one per field, 0 = background.
    channels : sequence of str
        Channel names, stored with the model.
    config : SegTrainConfig, optional
        Default ``SegTrainConfig()``.
    validation : tuple of two sequences, optional
        Held-out fields as ``(images, labels)``, scored at every validation.
    pixel_size : float, optional
        Micrometres per pixel of the fields, stored so other fields can be rescaled to match.
    init : Segmenter, optional
        A model to start from (same channels); its scale, network and post-processing are kept.
    out : path, optional
        Where the model will be saved; a checkpoint ``<out>.checkpoint`` is written at every
        validation.
    resume : bool, default False
        Continue from the checkpoint of ``out``, when there is one.
    provenance : dict, optional
        Stored in the model (training data, licence, command), with the configuration and history.

    Returns
    -------
    Segmenter
        In eval mode; not saved (call :meth:`~stainfree.seg.model.Segmenter.save`).

    Raises
    ------
    StainfreeError
        When the settings are out of range, the numbers of fields and annotations differ or are
        zero, the annotations hold no objects, or ``init`` has other channels.

    Examples
    --------
    Two steps on one small synthetic field (a real model needs hundreds):

    >>> from stainfree.datasets.synthetic import make_field
    >>> from stainfree.seg.training import SegTrainConfig, train_segmenter
    >>> field = make_field((64, 64), n_cells=4)
    >>> config = SegTrainConfig(steps=2, batch_size=2, crop=32, width=4, depth=2, diameter=12)
    >>> model = train_segmenter([field.brightfield[None]], [field.labels], channels=["phase"], config=config)
    >>> model.representation, model.channels, [h["step"] for h in model.provenance["history"]]
    ('flows', ['phase'], [2])
    """
    import torch

    from ..ml.classifier import pick_device

    config = config or SegTrainConfig()
    config.validate()
    if len(images) != len(labels) or not len(images):
        raise StainfreeError(f"need the same, non-zero number of fields and annotations (got {len(images)} and {len(labels)})")
    if init is not None and list(init.channels) != list(channels):
        raise StainfreeError(f"the initial model was trained on channels {', '.join(init.channels)}, the fields have {', '.join(channels)}")
    segmenter, train, held = _prepare_training(
        images, labels, validation, channels=channels, config=config, pixel_size=pixel_size, init=init
    )
    config = dataclasses.replace(config, representation=segmenter.representation)
    network = segmenter.network
    dev = pick_device(config.device)
    network.to(dev, memory_format=torch.channels_last)  # about a fifth faster on a CPU
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # warm up over 5% of the steps, but at least two (OneCycleLR divides by zero at exactly one)
    warm = max(2, round(0.05 * config.steps))
    pct_start = warm / config.steps if warm < config.steps else 0.3
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.steps, pct_start=pct_start)
    state = {"optimiser": optimiser, "schedule": schedule, "generator": torch.Generator().manual_seed(config.seed), "network": network}
    checkpoint = _checkpoint_path(Path(out)) if out is not None else None
    start, history = _load_checkpoint(checkpoint, state) if resume and checkpoint is not None and checkpoint.exists() else (0, [])
    if start:
        logger.info("resuming from %s at step %d of %d", checkpoint, start, config.steps)
    history = _run_steps(
        segmenter, train, held, config=config, state=state, start=start, history=history, checkpoint=checkpoint, device=dev
    )
    network.eval()
    tuning = tune_foreground_threshold(segmenter, held, device=config.device) if held else None
    segmenter.provenance = {
        **(provenance or {}),
        "config": dataclasses.asdict(config),
        "history": history,
        "foreground_threshold_on_validation": tuning,
        "training_fields": len(train),
        "validation_fields": len(held),
        "initialised_from": (init.provenance.get("name") if init is not None else None),
    }
    return segmenter


def _run_steps(
    segmenter: Segmenter, train, held, *, config: SegTrainConfig, state: dict, start: int, history: list[dict], checkpoint, device
) -> list[dict]:
    """Training steps ``start`` to ``config.steps``, validating and checkpointing every
    ``config.validate_every`` steps; returns the history."""
    import torch

    from ..progress import progress

    network, optimiser, schedule, dev = state["network"], state["optimiser"], state["schedule"], device
    began, running = time.monotonic(), []
    for step in progress(range(start, config.steps), desc="training steps", unit="steps", log=logger, every_s=30):
        network.train()
        x, t = sample_batch(train, config=config, generator=state["generator"])
        loss = segmentation_loss(network(x.to(dev, memory_format=torch.channels_last)), t.to(dev), representation=segmenter.representation)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running.append(loss.item())
        if (step + 1) % config.validate_every == 0 or step + 1 == config.steps:
            entry = {"step": step + 1, "loss": float(np.mean(running)), "seconds": round(time.monotonic() - began, 1)}
            if held:
                entry.update({f"val_{k}": v for k, v in score_fields(segmenter, held, device=config.device).items() if k != "fields"})
            history.append(entry)
            running = []
            logger.info("step %d: %s", step + 1, ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))
            if checkpoint is not None:
                _save_checkpoint(checkpoint, state, step + 1, history)
    return history


def _prepare_training(images, labels, validation, *, channels, config: SegTrainConfig, pixel_size, init: Segmenter | None):
    """The segmenter to train (new, or ``init``'s network and settings) and the prepared
    training and validation fields at its scale."""

    from .networks import create_segmenter

    normalisation = {"method": "percentile", "low": 1.0, "high": 99.5}
    if init is not None:
        scale, arch, arch_kwargs, network = init.scale, init.arch, dict(init.arch_kwargs), init.network
        representation = init.representation
    else:
        scale = config.scale or config.diameter / median_diameter(labels)
        arch, arch_kwargs, representation = config.arch, {"width": config.width, "depth": config.depth}, config.representation
        with private_torch_rng(config.seed):  # seeded initial weights
            network = create_segmenter(arch, len(channels), 3, **arch_kwargs)
    kwargs = {"scale": scale, "normalisation": normalisation, "representation": representation}
    train = [prepare_field(x, y, **kwargs) for x, y in zip(images, labels)]
    held = [prepare_field(x, y, **kwargs) for x, y in zip(*validation)] if validation else []
    diameter = median_diameter([resize_labels(y, f.image.shape[-2:]) for y, f in zip(labels, train)])
    params = (
        init.instance_params
        if init is not None
        else InstanceParams(representation=representation, min_area=round(0.05 * np.pi * diameter**2 / 4, 1))
    )
    micrometres = pixel_size / scale if pixel_size else None
    segmenter = Segmenter(network, arch, arch_kwargs, list(channels), micrometres, scale, diameter, params, normalisation, {})
    return segmenter, train, held


def _save_checkpoint(path: Path, state: dict, step: int, history: list[dict]) -> None:
    """Everything needed to continue exactly: weights, optimiser, schedule, random state (written
    atomically, so an interrupt never leaves half a checkpoint)."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "network": state["network"].state_dict(),
            "optimiser": state["optimiser"].state_dict(),
            "schedule": state["schedule"].state_dict(),
            "generator": state["generator"].get_state(),
            "step": step,
            "history": history,
        },
        tmp,
    )
    os.replace(tmp, path)


def _load_checkpoint(path: Path, state: dict) -> tuple[int, list[dict]]:
    import torch

    saved = torch.load(path, weights_only=False)
    state["network"].load_state_dict(saved["network"])
    state["optimiser"].load_state_dict(saved["optimiser"])
    state["schedule"].load_state_dict(saved["schedule"])
    state["generator"].set_state(saved["generator"])
    return saved["step"], saved["history"]
