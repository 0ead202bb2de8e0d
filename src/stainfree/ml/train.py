"""Training a classifier on cells: the configuration, class weights, the training loop."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..progress import progress
from ..utils import StainfreeError, private_torch_rng
from ._loop import (
    TrainingRun,
    batchnorm_cells,
    keep_if_best,
    log_epoch,
    make_optimiser,
    recalibrate_batchnorm,
    resume,
    save_checkpoint,
    train_epoch,
    validate,
)
from .classifier import Classifier, pick_device
from .data import TrainingCells, read_cells
from .distributed import join_world, wrap_model
from .models import DEFAULT_MODEL, LARGE_CROP_SIDE, create_model, model_info, network_side
from .transforms import NORMALISATIONS, augmentation_names, fit_normalisation, normalisation_sample

logger = logging.getLogger(__name__)
#: Choices of the :class:`TrainConfig` fields ``optimizer``, ``loss_weighting``, ``monitor`` and ``sampling``.
OPTIMIZERS = ("adam", "adamw", "sgd")
WEIGHTINGS = ("none", "sqrt", "inv")
MONITORS = ("val_loss", "balanced_accuracy")
SAMPLINGS = ("shuffle", "balanced", "sqrt")
#: Default model for crops over 128 px: on the 50 HEK tuning cells it scored balanced accuracy
#: 0.90 against cnn3's 0.80 (benchmarks/tune_defaults.py; the rule in docs/decisions.md).
LARGE_CROP_MODEL = "resnet_small"


def robust_scaling(images: np.ndarray, **kwargs) -> dict:
    """Per-channel median and 1st-99th percentile range (see :func:`fit_normalisation`).

    Parameters
    ----------
    images : numpy.ndarray
        Training cells, ``N x C x H x W``.
    **kwargs
        Options of :func:`~stainfree.ml.transforms.fit_normalisation` (``max_cells``, ``seed``).

    Returns
    -------
    dict
        The ``robust`` normalisation's parameters: ``method``, ``center`` and ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.train import robust_scaling
    >>> p = robust_scaling(np.arange(101, dtype=float).reshape(1, 1, 1, 101))
    >>> p["center"], p["scale"]
    ([50.0], [98.0])
    """
    return fit_normalisation(images, "robust", **kwargs)


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (all stored in the run's ``config.json``).

    ``model`` is a registry name; ``normalisation`` ``"auto"`` takes the model's own default;
    ``input_size`` ``None`` trains at the cells' own size (every model accepts any size).
    ``sampling`` draws each epoch's cells with probability proportional to 1/sqrt(class count)
    (``sqrt``, the default), 1/count (``balanced``) or uniformly (``shuffle``); the classifier
    remembers that distribution and by default predicts under equal class priors (logit
    adjustment). With ``val_fraction > 0`` a stratified validation set is carved from the
    training cells only, early stopping watches ``monitor`` on it and the best epoch is
    restored; with the default 0 every training cell is used and the last epoch of the one-cycle
    schedule is kept.

    Parameters
    ----------
    model, model_kwargs : str, dict, default "cnn3", {}
        Architecture name (:func:`stainfree.ml.models.list_models`) and its options.
    input_size : int, optional
        Side the cells are resized to (at least 8); default their own size.
    normalisation : str, default "auto"
        ``auto`` or one of :data:`stainfree.ml.transforms.NORMALISATIONS`.
    augment : str, default "rotations"
        Augmentation preset or list (:func:`stainfree.ml.transforms.augmentation_names`).
    blackout : {"none", "full", "partial"}, default "none"
        Engberg's FBR/PBR on half the cells of each batch; needs masks.
    epochs, batch_size : int, default 30, 64
        Passes over the training cells (at least 1), and cells per step (at least 2).
    optimizer : {"adamw", "adam", "sgd"}, default "adamw"
        SGD has Nesterov momentum 0.9.
    lr, weight_decay : float, default 3e-3, 1e-4
        Peak learning rate and weight decay.
    schedule : {"cosine", "constant"}, default "cosine"
        One-cycle schedule (15 % warm-up, cosine decay) or a constant rate.
    loss_weighting : {"none", "sqrt", "inv"}, default "none"
        Class weights of the loss (:func:`class_weights`).
    sampling : {"sqrt", "balanced", "shuffle"}, default "sqrt"
        How each epoch's cells are drawn (see above).
    val_fraction : float, default 0.0
        Fraction of the cells held out for validation, in [0, 1).
    monitor, patience : str, int, default "val_loss", 8
        What early stopping watches on the validation cells (:data:`MONITORS`), for how many epochs.
    seed : int, default 0
        Seed of the split, the sampling, the augmentation and the initial weights.
    device : str, default "auto"
        Torch device (:func:`stainfree.ml.classifier.pick_device`).

    Examples
    --------
    >>> from stainfree.ml.train import TrainConfig
    >>> TrainConfig().resolved_normalisation(), TrainConfig(model="yao2019").resolved_normalisation()
    ('robust', 'quantile')
    >>> TrainConfig(epochs=1, batch_size=8).validate()
    """

    model: str = DEFAULT_MODEL
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    input_size: int | None = None
    normalisation: str = "auto"
    augment: str = "rotations"
    blackout: str = "none"  # none | full | partial: Engberg's FBR/PBR on half the cells, needs masks
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    schedule: str = "cosine"  # cosine | constant
    weight_decay: float = 1e-4
    loss_weighting: str = "none"
    sampling: str = "sqrt"  # shuffle | balanced (p ~ 1/count) | sqrt (p ~ 1/sqrt(count))
    val_fraction: float = 0.0
    monitor: str = "val_loss"
    patience: int = 8
    ema: float = 0.0  # decay of an exponential moving average of the weights, used at the end (0: off)
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Check every setting, before any work is done.

        Raises
        ------
        StainfreeError
            For the first setting that is out of range or unknown, in one line.

        Examples
        --------
        >>> from stainfree.ml.train import TrainConfig
        >>> TrainConfig(optimizer="lbfgs").validate()
        Traceback (most recent call last):
        ...
        stainfree.utils.StainfreeError: optimizer 'lbfgs' is not one of adam, adamw, sgd
        """
        model_info(self.model)
        augmentation_names(self.augment)
        checks = [
            (self.loss_weighting in WEIGHTINGS, f"loss weighting {self.loss_weighting!r} is not one of {', '.join(WEIGHTINGS)}"),
            (self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}"),
            (self.monitor in MONITORS, f"monitor {self.monitor!r} is not one of {', '.join(MONITORS)}"),
            (self.sampling in SAMPLINGS, f"sampling {self.sampling!r} is not one of {', '.join(SAMPLINGS)}"),
            (self.schedule in ("cosine", "constant"), f"schedule {self.schedule!r} is not cosine or constant"),
            (self.blackout in ("none", "full", "partial"), f"blackout {self.blackout!r} is not none, full or partial"),
            (0 <= self.val_fraction < 1, f"validation fraction must be in [0, 1), got {self.val_fraction}"),
            (self.epochs >= 1 and self.batch_size >= 2, "epochs must be at least 1 and batch size at least 2"),
            (
                self.lr > 0 and self.weight_decay >= 0,
                f"learning rate must be above 0 and weight decay at least 0, got {self.lr}, {self.weight_decay}",
            ),
            (self.patience >= 1, f"patience must be at least 1 epoch, got {self.patience}"),
            (0 <= self.ema < 1, f"ema decay must be in [0, 1), got {self.ema}"),
            (
                self.ema == 0 or self.val_fraction == 0,
                "ema and a validation fraction do not go together (the best epoch is of the raw weights)",
            ),
            (
                self.resolved_normalisation() in NORMALISATIONS,
                f"unknown normalisation {self.normalisation!r} (choose from auto, {', '.join(NORMALISATIONS)})",
            ),
            (self.input_size is None or self.input_size >= 8, f"input size must be at least 8 pixels, got {self.input_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StainfreeError(message)

    @classmethod
    def for_data(cls, cells, **overrides) -> TrainConfig:
        """Defaults adapted to a CellSet, then ``overrides`` (``None`` values are ignored).

        Large crops (over 128 px, such as 224 px benchtop crops) are trained at half size with
        :data:`LARGE_CROP_MODEL` (chosen on the HEK tuning fields, docs/decisions.md). Sets
        under 20,000 cells are trained in batches of 32 (more, noisier steps generalise better
        on a few thousand cells), larger ones in batches of 128; small sets get more epochs so
        that training takes at least ~600 steps.

        Parameters
        ----------
        cells : CellSet
            The training cells.
        **overrides
            Settings that take precedence over these defaults.

        Returns
        -------
        TrainConfig

        Examples
        --------
        >>> from stainfree.datasets.synthetic import make_cells
        >>> c = TrainConfig.for_data(make_cells(20, size=32))
        >>> c.batch_size, c.epochs, c.input_size
        (32, 150, None)
        >>> c = TrainConfig.for_data(make_cells(2, size=224))
        >>> c.input_size, c.model
        (112, 'resnet_small')
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        n = len(cells)
        side = min(cells.shape[2:])
        batch = 128 if n >= 20_000 else 32
        steps_per_epoch = max(1, int(n * 0.8) // batch)
        defaults = {
            "input_size": network_side(side) if side > LARGE_CROP_SIDE else None,
            "model": LARGE_CROP_MODEL if side > LARGE_CROP_SIDE else DEFAULT_MODEL,
            "batch_size": batch,
            "epochs": int(min(150, max(30, math.ceil(600 / steps_per_epoch)))),
        }
        defaults.update(overrides)
        return cls(**defaults)

    def resolved_normalisation(self) -> str:
        """The normalisation to fit: ``normalisation``, or the model's own default for ``auto``."""
        return model_info(self.model).normalisation if self.normalisation == "auto" else self.normalisation


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Loss weight per class: ``none`` (1), ``sqrt`` (1/sqrt(count)) or ``inv`` (1/count),
    rescaled so that the weights average 1 over the training cells.

    Parameters
    ----------
    counts : numpy.ndarray
        Training cells per class (each at least 1).
    mode : {"none", "sqrt", "inv"}
        The weighting (:data:`WEIGHTINGS`).

    Returns
    -------
    numpy.ndarray
        One float64 weight per class.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.train import class_weights
    >>> class_weights(np.array([1, 4]), "sqrt").round(3).tolist()
    [1.667, 0.833]
    """
    counts = np.asarray(counts, np.float64)
    w = {"none": np.ones_like(counts), "sqrt": 1 / np.sqrt(counts), "inv": 1 / counts}[mode]
    return w * counts.sum() / (w * counts).sum()


def _encode_labels(labels, classes: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    labels = np.asarray(labels, dtype=object)
    classes = sorted(set(labels)) if classes is None else list(classes)
    if len(classes) < 2:
        raise StainfreeError(f"need at least two classes to train a classifier, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = set(labels) - set(index)
    if unknown:
        raise StainfreeError(f"label {sorted(map(str, unknown))[0]!r} is not one of the classes {classes}")
    y = np.array([index[v] for v in labels], dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes))
    if (counts < 2).any():
        lonely = classes[int(np.argmin(counts))]
        raise StainfreeError(f"class {lonely!r} has {counts.min()} cell(s) in the training data; each class needs at least 2")
    return y, classes


def _validation_split(y: np.ndarray, n_classes: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    n_val = int(round(config.val_fraction * len(y)))
    if config.val_fraction > 0 and n_val >= n_classes and len(y) - n_val >= n_classes:
        return tuple(train_test_split(idx, test_size=n_val, stratify=y, random_state=config.seed))
    return idx, idx[:0]


def _effective_prior(train_counts: np.ndarray, config: TrainConfig) -> list[float]:
    """The class distribution the network effectively learnt under: sampling times loss weights."""
    effective = train_counts.astype(np.float64)
    if config.sampling == "balanced":
        effective = np.ones_like(effective)
    elif config.sampling == "sqrt":
        effective = np.sqrt(effective)
    effective = effective * class_weights(train_counts, config.loss_weighting)
    return (effective / effective.sum()).round(6).tolist()


def _start_run(images: np.ndarray, y: np.ndarray, split, n_classes: int, masks, config: TrainConfig, size, norm: dict) -> TrainingRun:
    import torch

    train_idx, val_idx = split
    if config.blackout != "none" and masks is None:
        raise StainfreeError("blackout augmentation needs cell masks; cells cut from fields by `stainfree segment` have them")
    cells = TrainingCells(images, norm, size, masks=masks if config.blackout != "none" else None)
    world, device = join_world(pick_device(config.device))
    if config.batch_size // world.size < 2:
        raise StainfreeError(f"batch size {config.batch_size} leaves fewer than 2 cells a step to each of {world.size} processes")
    model = create_model(config.model, images.shape[1], n_classes, size[0], **config.model_kwargs)
    model = model.to(device, memory_format=torch.channels_last)
    train_counts = np.bincount(y[train_idx], minlength=n_classes).clip(min=1)
    weights = torch.tensor(class_weights(train_counts, config.loss_weighting), dtype=torch.float32, device=device)
    opt, scheduler = make_optimiser(model, config, max(1, len(train_idx) // config.batch_size))
    run = TrainingRun(
        config,
        model,
        opt,
        scheduler,
        torch.nn.CrossEntropyLoss(weight=weights),
        weights,
        device,
        cells,
        y,
        train_idx,
        val_idx,
        train_counts,
        np.random.default_rng(config.seed),
        torch.Generator().manual_seed(config.seed + world.rank),  # each process its own augmentations
        world=world,
        ddp=wrap_model(model, world, device),
    )
    if config.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        run.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema))
    return run


def fit(
    images: np.ndarray,
    labels: Sequence[str],
    *,
    channels: Sequence[str],
    config: TrainConfig | None = None,
    classes: Sequence[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    log: logging.Logger | None = None,
    masks: np.ndarray | None = None,
) -> tuple[Classifier, list[dict]]:
    """Train a classifier on cells and their labels.

    The epochs follow :class:`TrainConfig`: class-aware sampling, augmentation, a one-cycle
    schedule, and batch-norm statistics recomputed on the training cells at the end. Weights and
    dropout are seeded by ``config.seed`` without touching the caller's global torch seed.

    Parameters
    ----------
    images : (N, C, H, W) array, zarr array or CellSet
        The cells (NaN or infinite pixels are refused). A zarr array or a lazy CellSet whose
        cells, normalised at the input size, take more than
        :data:`stainfree.ml.data.IN_MEMORY_BYTES` is streamed from its store in pools
        (:class:`stainfree.ml.data.TrainingCells`), so memory does not grow with the cells.
    labels : sequence of str
        One class per cell.
    channels : sequence of str
        The channel names, stored with the model (prediction checks them).
    config : TrainConfig, optional
        Settings; default ``TrainConfig()``.
    classes : sequence of str, optional
        The model's classes in output order; default the sorted labels.
    checkpoint : path, optional
        Save the state after every epoch here and resume from it when it holds a run of the same
        settings and cells.
    log : logging.Logger, optional
        Where epochs are reported (default this module's logger).
    masks : (N, H, W) array or callable, optional
        The cells' own objects (a callable: rows -> their masks), needed for ``config.blackout``: each batch then has the
        background outside half its cells' dilated masks blacked out (full) or half-blacked out
        (partial), as Engberg's FBR/PBR augmentation.

    Returns
    -------
    Classifier
        The trained model with its normalisation, channels, classes and training prior (best
        epoch restored when validating).
    list of dict
        One record per epoch: losses, accuracies, seconds.

    Raises
    ------
    StainfreeError
        Fewer than two classes, a label outside ``classes``, a class with one cell, or blackout
        without masks.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.train import TrainConfig, fit
    >>> cells = make_cells(8, size=24, random_state=0).load()
    >>> clf, history = fit(cells.images, cells.labels, channels=cells.channels, config=TrainConfig(epochs=2, batch_size=8))
    >>> clf.classes, len(history), clf.predict_proba(cells.images[:3], tta=False).shape
    (['round', 'spindle'], 2, (3, 2))
    """

    config = config or TrainConfig()
    config.validate()
    log = log or logger
    if not hasattr(images, "read") and not hasattr(images, "oindex"):  # a CellSet or a zarr array is streamed when large
        images = np.asarray(images)  # NaN or infinite pixels are refused by apply_normalisation
    y, classes = _encode_labels(labels, classes)
    size = (config.input_size, config.input_size) if config.input_size else tuple(images.shape[2:])
    signature = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str) + f"|{len(y)}|{classes}"
    with private_torch_rng(config.seed):  # seeded weights and dropout
        split = _validation_split(y, len(classes), config)
        sample = normalisation_sample(split[0], random_state=config.seed)
        norm = fit_normalisation(read_cells(images, sample), config.resolved_normalisation(), random_state=config.seed)
        run = _start_run(images, y, split, len(classes), masks, config, size, norm)
        if not run.world.is_main:  # under torchrun only rank 0 reports and keeps checkpoints
            log = logging.getLogger(f"{__name__}.rank{run.world.rank}")
            log.disabled = True
        if checkpoint is not None and Path(checkpoint).is_file():
            resume(run, checkpoint, signature, log)
        validating = len(run.val_idx) > 0
        epochs = range(run.epoch + 1, config.epochs + 1)
        for epoch in progress(epochs, desc="training", unit="epochs", log=log, every_s=math.inf, summary=False):
            if validating and run.best["state"] is not None and epoch - run.best["epoch"] > config.patience:
                break
            t0 = time.monotonic()
            record = {"epoch": epoch, **train_epoch(run), **(validate(run) if validating else {})}
            record["seconds"] = round(time.monotonic() - t0, 3)
            run.history.append(record)
            log_epoch(log, record, config.epochs)
            keep_if_best(run, record)
            run.epoch = epoch
            if checkpoint is not None and run.world.is_main:  # every rank resumes from it, rank 0 writes it
                save_checkpoint(run, checkpoint, signature)
        if run.ema is not None:  # the averaged weights replace the last ones; batch norm is recomputed below
            run.model.load_state_dict(run.ema.module.state_dict())
        if not validating:  # without validation cells, recalibrating once at the end is enough
            recalibrate_batchnorm(run.model, batchnorm_cells(run), device=run.device)
    model = run.model
    if validating and run.best["state"] is not None:
        if run.best["epoch"] < len(run.history):
            log.info("restoring epoch %d (best %s)", run.best["epoch"], config.monitor)
        model.load_state_dict(run.best["state"])
    model.eval().cpu()
    prior = _effective_prior(run.train_counts, config)
    clf = Classifier(
        model, config.model, dict(config.model_kwargs), list(classes), list(channels), size, norm, prior, tuple(images.shape[2:])
    )
    return clf, run.history
