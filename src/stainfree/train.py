"""Training and applying classifiers: normalisation stored with the model, a plain PyTorch loop.

A :class:`Classifier` carries everything needed to reuse it (architecture name and arguments,
channel names, input size, normalisation, class names) and saves as ``.safetensors`` weights
whose metadata holds that description as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .models import DEFAULT_MODEL, create_model
from .utils import StainfreeError, atomic_write_bytes

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- normalisation
def robust_scaling(images: np.ndarray, *, low: float = 1.0, high: float = 99.0, max_cells: int = 2000, seed: int = 0) -> dict:
    """Per-channel centre (median) and scale (``high`` minus ``low`` percentile) of ``images``.

    >>> p = robust_scaling(np.arange(101, dtype=float).reshape(1, 1, 1, 101))
    >>> p["center"], p["scale"]
    ([50.0], [98.0])
    """
    images = np.asarray(images)
    if len(images) > max_cells:
        pick = np.random.default_rng(seed).choice(len(images), max_cells, replace=False)
        images = images[np.sort(pick)]
    per_channel = np.moveaxis(images, 1, 0).reshape(images.shape[1], -1).astype(np.float64)
    center = np.median(per_channel, axis=1)
    lo, hi = np.percentile(per_channel, [low, high], axis=1)
    scale = np.where(hi - lo > 0, hi - lo, 1.0)
    return {"method": "robust", "center": center.tolist(), "scale": scale.tolist()}


def apply_normalisation(images: np.ndarray, params: dict) -> np.ndarray:
    """``(images - center) / scale`` per channel, as float32."""
    center = np.asarray(params["center"], np.float32)[None, :, None, None]
    scale = np.asarray(params["scale"], np.float32)[None, :, None, None]
    return (np.asarray(images, np.float32) - center) / scale


# ---------------------------------------------------------------------- augmentation
def augment_dihedral(x, generator=None):
    """Random 90-degree rotation and flip of every image in a batch (N x C x H x W tensor).

    Square images only; label-free cells have no preferred orientation.
    """
    import torch

    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    out = torch.empty_like(x)
    for r in range(4):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(2, 3))
    out[flip] = torch.flip(out[flip], dims=(3,))
    return out


# ---------------------------------------------------------------------- the classifier
@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (all stored in the run's ``config.json``)."""

    model: str = DEFAULT_MODEL
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    loss_weighting: str = "sqrt"  # none | sqrt | inv
    val_fraction: float = 0.15
    patience: int = 10
    augment: bool = True
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.loss_weighting not in ("none", "sqrt", "inv"):
            raise StainfreeError(f"loss weighting {self.loss_weighting!r} is not none, sqrt or inv")
        if not 0 <= self.val_fraction < 1:
            raise StainfreeError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise StainfreeError("epochs and batch size must be at least 1")


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        }

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto") -> np.ndarray:
        """Class probabilities (N x classes) for images N x C x H x W in this model's channels."""
        import torch

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(self.channels):
            raise StainfreeError(f"model expects {len(self.channels)} channels ({', '.join(self.channels)}), got images of shape {images.shape}")
        dev = pick_device(device)
        model = self.model.to(dev).eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(apply_normalisation(images[start : start + batch_size], self.normalisation)).to(dev)
                if tuple(x.shape[2:]) != tuple(self.input_size):
                    x = torch.nn.functional.interpolate(x, size=tuple(self.input_size), mode="bilinear", align_corners=False)
                out.append(torch.softmax(model(x), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images: np.ndarray, **kwargs) -> np.ndarray:
        """Predicted class names."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(images, **kwargs).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` weights with the description as JSON metadata (atomically)."""
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write_bytes(path, save(state, metadata={"stainfree": json.dumps(self.metadata)}))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Classifier":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["stainfree"])
            state = load_file(str(path))
        except Exception as exc:
            raise StainfreeError(f"{path}: not a stainfree model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        model = create_model(meta["arch"], len(meta["channels"]), len(meta["classes"]), meta["input_size"][0], **meta["arch_kwargs"])
        model.load_state_dict(state)
        model.eval()
        return cls(model, meta["arch"], meta["arch_kwargs"], meta["classes"], meta["channels"], tuple(meta["input_size"]), meta["normalisation"])


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


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Loss weight per class: ``none`` (1), ``sqrt`` (1/sqrt(count)) or ``inv`` (1/count),
    rescaled so that the weights average 1 over the training cells.

    >>> class_weights(np.array([1, 4]), "sqrt").round(3).tolist()
    [1.667, 0.833]
    """
    counts = np.asarray(counts, np.float64)
    w = {"none": np.ones_like(counts), "sqrt": 1 / np.sqrt(counts), "inv": 1 / counts}[mode]
    return w * counts.sum() / (w * counts).sum()


def fit(
    images: np.ndarray,
    labels: Sequence[str],
    *,
    channels: Sequence[str],
    config: TrainConfig | None = None,
    classes: Sequence[str] | None = None,
    log: logging.Logger | None = None,
) -> tuple[Classifier, list[dict]]:
    """Train a classifier on images N x C x H x W and their labels.

    A stratified validation fraction is carved from these cells only; the epoch with the lowest
    validation loss is restored at the end (early stopping after ``patience`` epochs without
    improvement). Returns the classifier and the per-epoch history.
    """
    import torch
    from sklearn.model_selection import train_test_split

    config = config or TrainConfig()
    config.validate()
    log = log or logger
    labels = np.asarray(labels, dtype=object)
    classes = sorted(set(labels)) if classes is None else list(classes)
    if len(classes) < 2:
        raise StainfreeError(f"need at least two classes to train a classifier, got {classes}")
    counts = np.array([(labels == c).sum() for c in classes])
    if (counts < 2).any():
        lonely = classes[int(np.argmin(counts))]
        raise StainfreeError(f"class {lonely!r} has {counts.min()} cell(s) in the training data; each class needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    unknown = set(labels) - set(index)
    if unknown:
        raise StainfreeError(f"label {sorted(map(str, unknown))[0]!r} is not one of the classes {classes}")
    y = np.array([index[v] for v in labels], dtype=np.int64)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    idx = np.arange(len(y))
    n_val = int(round(config.val_fraction * len(y)))
    if config.val_fraction > 0 and n_val >= len(classes) and len(y) - n_val >= len(classes):
        train_idx, val_idx = train_test_split(idx, test_size=n_val, stratify=y, random_state=config.seed)
    else:
        train_idx, val_idx = idx, idx[:0]

    norm = robust_scaling(images[train_idx], seed=config.seed)
    x_all = torch.from_numpy(apply_normalisation(images, norm))
    y_all = torch.from_numpy(y.astype(np.int64))
    device = pick_device(config.device)
    model = create_model(config.model, images.shape[1], len(classes), images.shape[2], **config.model_kwargs).to(device)
    weights = torch.tensor(class_weights(np.bincount(y[train_idx], minlength=len(classes)).clip(min=1), config.loss_weighting), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)

    history: list[dict] = []
    best = (np.inf, None, -1)
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        model.train()
        order = rng.permutation(train_idx)
        total, seen, correct = 0.0, 0, 0
        for start in range(0, len(order), config.batch_size):
            b = order[start : start + config.batch_size]
            if len(b) < 2:  # batch norm needs two samples
                continue
            xb = x_all[b]
            if config.augment:
                xb = augment_dihedral(xb, gen)
            xb, yb = xb.to(device), y_all[b].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            seen += len(b)
            correct += int((logits.argmax(1) == yb).sum())
        record = {"epoch": epoch, "train_loss": total / max(seen, 1), "train_accuracy": correct / max(seen, 1)}
        recalibrate_batchnorm(model, x_all[train_idx], device=device)
        if len(val_idx):
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(x_all[val_idx[s : s + 512]].to(device)).cpu() for s in range(0, len(val_idx), 512)])
            record["val_loss"] = float(torch.nn.functional.cross_entropy(logits, y_all[val_idx], weight=weights.cpu()))
            record["val_accuracy"] = float((logits.argmax(1) == y_all[val_idx]).float().mean())
        record["seconds"] = time.monotonic() - t0
        history.append(record)
        monitor = record.get("val_loss", record["train_loss"])
        log.info(
            "epoch %d/%d  train loss %.3f  acc %.3f%s",
            epoch, config.epochs, record["train_loss"], record["train_accuracy"],
            f"  val loss {record['val_loss']:.3f}  acc {record['val_accuracy']:.3f}" if "val_loss" in record else "",
        )
        if monitor < best[0]:
            best = (monitor, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch)
        elif epoch - best[2] >= config.patience:
            log.info("early stop at epoch %d; restoring epoch %d", epoch, best[2])
            break
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval().cpu()
    clf = Classifier(model, config.model, dict(config.model_kwargs), list(classes), list(channels), tuple(images.shape[2:]), norm)
    return clf, history
