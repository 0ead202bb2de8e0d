"""Training and applying classifiers: a plain PyTorch loop, preprocessing stored with the model.

A :class:`Classifier` carries everything needed to reuse it (architecture name and arguments,
channel names, input size, normalisation, class names) and saves as ``.safetensors`` weights
whose metadata holds that description as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .models import DEFAULT_MODEL, create_model, model_info
from .transforms import apply_normalisation, augmentation_names, augment, blackout_outside, dihedral_views, fit_normalisation
from .utils import StainfreeError, atomic_write_bytes, first_line

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
WEIGHTINGS = ("none", "sqrt", "inv")
MONITORS = ("val_loss", "balanced_accuracy")
SAMPLINGS = ("shuffle", "balanced", "sqrt")


def robust_scaling(images: np.ndarray, **kwargs) -> dict:
    """Per-channel median and 1st-99th percentile range (see :func:`fit_normalisation`).

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
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
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
            (self.input_size is None or self.input_size >= 8, f"input size must be at least 8 pixels, got {self.input_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StainfreeError(message)

    @classmethod
    def for_data(cls, cells, **overrides) -> "TrainConfig":
        """Defaults adapted to a CellSet, then ``overrides`` (``None`` values are ignored).

        Large crops (over 128 px, such as 224 px benchtop crops) are trained at half size. Sets
        under 20,000 cells are trained in batches of 32 (more, noisier steps generalise better
        on a few thousand cells), larger ones in batches of 128; small sets get more epochs so
        that training takes at least ~600 steps.

        >>> from stainfree.synthetic import make_cells
        >>> c = TrainConfig.for_data(make_cells(20, size=32))
        >>> c.batch_size, c.epochs, c.input_size
        (32, 150, None)
        >>> TrainConfig.for_data(make_cells(2, size=224)).input_size
        112
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        n = len(cells)
        side = min(cells.shape[2:])
        batch = 128 if n >= 20_000 else 32
        steps_per_epoch = max(1, int(n * 0.8) // batch)
        defaults = {
            "input_size": side // 2 if side > 128 else None,
            "batch_size": batch,
            "epochs": int(min(150, max(30, math.ceil(600 / steps_per_epoch)))),
        }
        defaults.update(overrides)
        return cls(**defaults)

    def resolved_normalisation(self) -> str:
        return model_info(self.model).normalisation if self.normalisation == "auto" else self.normalisation


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resize_batch(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of N x C x H x W float images to ``size`` (no-op when already that size)."""
    import torch
    import torch.nn.functional as F

    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[2:]) == size:
        return images
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()


@dataclasses.dataclass
class Classifier:
    """A trained network with everything needed to apply it to new cells."""

    model: object
    arch: str
    arch_kwargs: dict
    classes: list[str]
    channels: list[str]
    input_size: tuple[int, int]
    normalisation: dict
    train_prior: list[float] | None = None
    cell_size: tuple[int, int] | None = None  # crop size of the training cells, before resizing

    @property
    def metadata(self) -> dict:
        return {
            "format": "stainfree.classifier",
            "version": 1,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "classes": self.classes,
            "channels": self.channels,
            "input_size": list(self.input_size),
            "normalisation": self.normalisation,
            "train_prior": self.train_prior,
            "cell_size": None if self.cell_size is None else list(self.cell_size),
        }

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Normalise (and resize to the model's input size) images in this model's channels."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(self.channels):
            raise StainfreeError(
                f"model expects {len(self.channels)} channels ({', '.join(self.channels)}), got images of shape {images.shape}"
            )
        x = apply_normalisation(images, self.normalisation)
        return resize_batch(x, self.input_size)

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto", tta: bool = False, prior: str = "balanced") -> np.ndarray:
        """Class probabilities (N x classes).

        ``tta`` averages over the 8 rotations/flips. ``prior="balanced"`` (the default) gives the
        probabilities under equal class priors: the network's output divided by the class
        distribution it was trained under (logit adjustment), which is the decision that
        maximises balanced accuracy; ``prior="train"`` keeps the training distribution.
        """
        import torch

        if prior not in ("balanced", "train"):
            raise StainfreeError(f"prior must be balanced or train, got {prior!r}")
        dev = pick_device(device)
        model = self.model.to(dev).eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(self.prepare(images[start : start + batch_size])).to(dev, memory_format=torch.channels_last)
                views = dihedral_views(x) if tta else [x]
                p = sum(torch.softmax(model(v), dim=1) for v in views) / len(views)
                out.append(p.cpu().numpy())
        proba = np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
        if prior == "balanced" and self.train_prior is not None:
            proba = proba / np.asarray(self.train_prior, np.float32)[None]
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def embed(self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto") -> np.ndarray:
        """The penultimate-layer features (``model.features``) of each cell."""
        import torch

        dev = pick_device(device)
        model = self.model.to(dev).eval()
        with torch.no_grad():
            parts = [model.features(torch.from_numpy(self.prepare(images[s : s + batch_size])).to(dev)).cpu().numpy() for s in range(0, len(images), batch_size)]
        return np.concatenate(parts)

    def predict(self, images: np.ndarray, **kwargs) -> np.ndarray:
        """Predicted class names."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(images, **kwargs).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` weights with the description as JSON metadata (atomically)."""
        return write_model_file(path, self.model.state_dict(), self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Classifier":
        meta, state = read_model_file(path)
        if meta.get("format") == "stainfree.embedder":
            raise StainfreeError(f"{path}: an embedder, not a classifier (use it as embedder:{path})")
        model = create_model(meta["arch"], len(meta["channels"]), len(meta["classes"]), meta["input_size"][0], **meta["arch_kwargs"])
        model.load_state_dict(state)
        model.eval()
        return cls(model, meta["arch"], meta["arch_kwargs"], meta["classes"], meta["channels"], tuple(meta["input_size"]), meta["normalisation"], meta.get("train_prior"),
            tuple(meta["cell_size"]) if meta.get("cell_size") else None)


def write_model_file(path: str | os.PathLike, state: dict, metadata: dict) -> Path:
    """Tensors as ``.safetensors`` with ``metadata`` as JSON under the key ``stainfree``, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(state, metadata={"stainfree": json.dumps(metadata)}))
    return Path(path)


def read_model_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """The metadata and tensors of a file written by :func:`write_model_file`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise StainfreeError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["stainfree"])
        state = load_file(str(path))
    except Exception as exc:
        raise StainfreeError(f"{path}: not a stainfree model ({first_line(exc)})") from None
    return meta, state


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Loss weight per class: ``none`` (1), ``sqrt`` (1/sqrt(count)) or ``inv`` (1/count),
    rescaled so that the weights average 1 over the training cells.

    >>> class_weights(np.array([1, 4]), "sqrt").round(3).tolist()
    [1.667, 0.833]
    """
    counts = np.asarray(counts, np.float64)
    w = {"none": np.ones_like(counts), "sqrt": 1 / np.sqrt(counts), "inv": 1 / counts}[mode]
    return w * counts.sum() / (w * counts).sum()


def recalibrate_batchnorm(model, x, *, batch_size: int = 256, device=None) -> None:
    """Recompute batch-norm running statistics as exact averages over ``x`` (no gradients).

    The running averages kept during training lag behind weights that are still changing fast
    (small data, few steps per epoch), which makes a model in eval mode predict one class for
    whole epochs; recomputing them once per epoch removes that lag.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            if len(chunk) > 1:
                model(chunk.to(device) if device is not None else chunk)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


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
    """Train a classifier on images N x C x H x W and their labels.

    ``masks`` (N x H x W, the cells' own objects) are needed for ``config.blackout``: each
    training batch then has the background outside the dilated mask of half its cells blacked
    out (full) or half-blacked out (partial), as Engberg's FBR/PBR augmentation.

    With ``checkpoint``, the state is saved after every epoch and an existing checkpoint of the
    same settings is resumed. Returns the classifier (best epoch restored) and the history.
    """
    import torch
    from sklearn.model_selection import train_test_split

    config = config or TrainConfig()
    config.validate()
    log = log or logger
    images = np.asarray(images)  # NaN or infinite pixels are refused by apply_normalisation
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

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    idx = np.arange(len(y))
    n_val = int(round(config.val_fraction * len(y)))
    if config.val_fraction > 0 and n_val >= len(classes) and len(y) - n_val >= len(classes):
        train_idx, val_idx = train_test_split(idx, test_size=n_val, stratify=y, random_state=config.seed)
    else:
        train_idx, val_idx = idx, idx[:0]

    size = (config.input_size, config.input_size) if config.input_size else tuple(images.shape[2:])
    norm = fit_normalisation(images[train_idx], config.resolved_normalisation(), seed=config.seed)
    x_all = torch.from_numpy(resize_batch(apply_normalisation(images, norm), size))
    m_all = None
    if config.blackout != "none":
        if masks is None:
            raise StainfreeError("blackout augmentation needs cell masks; cells cut from fields by `stainfree segment` have them")
        m_all = torch.from_numpy(resize_batch(np.asarray(masks, np.float32)[:, None], size) > 0.5)
    y_all = torch.from_numpy(y)
    device = pick_device(config.device)
    model = create_model(config.model, images.shape[1], len(classes), size[0], **config.model_kwargs).to(device, memory_format=torch.channels_last)
    train_counts = np.bincount(y[train_idx], minlength=len(classes)).clip(min=1)
    weights = torch.tensor(class_weights(train_counts, config.loss_weighting), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    elif config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_idx) // config.batch_size)
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15)
        if config.schedule == "cosine"
        else None
    )
    gen = torch.Generator().manual_seed(config.seed)
    sample_p = {"balanced": 1.0 / train_counts[y[train_idx]], "sqrt": 1.0 / np.sqrt(train_counts[y[train_idx]])}.get(config.sampling)
    if sample_p is not None:
        sample_p = sample_p / sample_p.sum()

    history: list[dict] = []
    best = {"score": -np.inf, "state": None, "epoch": 0}
    start_epoch = 1
    signature = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str) + f"|{len(y)}|{classes}"
    if checkpoint is not None and Path(checkpoint).is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("signature") == signature:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            if scheduler is not None and saved.get("scheduler"):
                scheduler.load_state_dict(saved["scheduler"])
            history, best, start_epoch = saved["history"], saved["best"], saved["epoch"] + 1
            rng.bit_generator.state = saved["rng"]
            gen.set_state(saved["gen"])
            log.info("resuming from %s at epoch %d", checkpoint, start_epoch)
        else:
            log.info("ignoring %s: it was written with other settings", checkpoint)

    for epoch in range(start_epoch, config.epochs + 1):
        if len(val_idx) and best["state"] is not None and epoch - best["epoch"] > config.patience:
            break
        t0 = time.monotonic()
        model.train()
        order = rng.choice(train_idx, size=len(train_idx), p=sample_p) if sample_p is not None else rng.permutation(train_idx)
        total, seen, correct = 0.0, 0, 0
        for step in range(steps_per_epoch):
            b = order[step * config.batch_size : (step + 1) * config.batch_size]
            if len(b) < 2:  # batch norm needs two samples
                continue
            xb = x_all[b]
            if m_all is not None:
                blacked = blackout_outside(xb, m_all[b], mode=config.blackout, generator=gen)
                xb = torch.where(torch.rand(len(b), 1, 1, 1, generator=gen) < 0.5, blacked, xb)
            xb = augment(xb, config.augment, generator=gen).to(device, memory_format=torch.channels_last)
            yb = y_all[b].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(b)
            seen += len(b)
            correct += int((logits.argmax(1) == yb).sum())
        if len(val_idx):  # without validation cells, once at the end is enough
            recalibrate_batchnorm(model, x_all[train_idx], device=device)
        record = {"epoch": epoch, "train_loss": total / max(seen, 1), "train_accuracy": correct / max(seen, 1)}
        if len(val_idx):
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(x_all[val_idx[s : s + 512]].to(device)).cpu() for s in range(0, len(val_idx), 512)])
            pred = logits.argmax(1).numpy()
            record["val_loss"] = float(torch.nn.functional.cross_entropy(logits, y_all[val_idx], weight=weights.cpu()))
            record["val_accuracy"] = float(np.mean(pred == y[val_idx]))
            record["val_balanced_accuracy"] = _balanced_accuracy(y[val_idx], pred)
        record["seconds"] = round(time.monotonic() - t0, 3)
        history.append(record)
        if "val_loss" in record:
            score = -record["val_loss"] if config.monitor == "val_loss" else record["val_balanced_accuracy"] - 1e-3 * record["val_loss"]
        else:
            score = -np.inf  # no validation cells: the last epoch is kept
        log.info(
            "epoch %d/%d  train loss %.3f  acc %.3f%s  (%.1f s)",
            epoch, config.epochs, record["train_loss"], record["train_accuracy"],
            f"  val loss {record['val_loss']:.3f}  acc {record['val_accuracy']:.3f}  bal {record['val_balanced_accuracy']:.3f}" if "val_loss" in record else "",
            record["seconds"],
        )
        if len(val_idx) and score > best["score"]:
            best = {"score": score, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, "epoch": epoch}
        if checkpoint is not None:
            tmp = Path(checkpoint).with_suffix(".tmp")
            torch.save({"signature": signature, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else None, "history": history, "best": best, "epoch": epoch, "rng": rng.bit_generator.state, "gen": gen.get_state()}, tmp)
            os.replace(tmp, checkpoint)
    if not len(val_idx):
        recalibrate_batchnorm(model, x_all[train_idx], device=device)
    elif best["state"] is not None:
        if best["epoch"] < len(history):
            log.info("restoring epoch %d (best %s)", best["epoch"], config.monitor)
        model.load_state_dict(best["state"])
    model.eval().cpu()
    # the class distribution the network effectively learnt under: sampling times loss weights
    effective = train_counts.astype(np.float64)
    if config.sampling == "balanced":
        effective = np.ones_like(effective)
    elif config.sampling == "sqrt":
        effective = np.sqrt(effective)
    effective = effective * class_weights(train_counts, config.loss_weighting)
    prior = (effective / effective.sum()).round(6).tolist()
    clf = Classifier(model, config.model, dict(config.model_kwargs), list(classes), list(channels), size, norm, prior, tuple(images.shape[2:]))
    return clf, history


def check_finite(images: np.ndarray, cell_ids) -> None:
    """Refuse float images with NaN or infinite pixels, naming the first such cell."""
    if images.dtype.kind == "f":
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            first = np.asarray(cell_ids)[int(np.flatnonzero(bad)[0])]
            raise StainfreeError(f"cell {first!r} has NaN or infinite pixel values ({int(bad.sum())} cells do)")


def predict_cells(clf: Classifier, cells, *, tta: bool = True, prior: str = "balanced", batch_size: int = 1024):
    """Apply a classifier to a CellSet (streamed in batches); returns a per-cell DataFrame with
    ``cell_id``, ``predicted``, ``prob_<class>`` and, when the cells are labelled, ``label``.

    The model's channels are selected from the cells by name; cells of another size are resized
    to the model's input size with a warning. ``tta`` (default) averages over the 8 rotations and
    flips of each cell, as :func:`stainfree.evaluate.evaluate` does.
    """
    import pandas as pd

    missing = [c for c in clf.channels if c not in cells.channels]
    if missing:
        raise StainfreeError(
            f"the model was trained on channels {', '.join(clf.channels)}, but the cells have "
            f"{', '.join(cells.channels)} (missing {missing[0]})"
        )
    cells = cells.select_channels(clf.channels)
    if tuple(cells.shape[2:]) != tuple(clf.input_size):
        logger.warning(
            "cells are %dx%d px, the model expects %dx%d: resizing them", cells.shape[2], cells.shape[3], clf.input_size[0], clf.input_size[1]
        )
    parts = []
    for images, rows in cells.batches(batch_size):
        check_finite(images, rows["cell_id"])
        proba = clf.predict_proba(images, tta=tta, prior=prior)
        part = pd.DataFrame({"cell_id": rows["cell_id"].to_numpy()})
        if rows["label"].notna().any():
            part["label"] = rows["label"].to_numpy()
        part["predicted"] = np.asarray(clf.classes, dtype=object)[proba.argmax(1)]
        for j, c in enumerate(clf.classes):
            part[f"prob_{c}"] = proba[:, j]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
