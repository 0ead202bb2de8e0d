"""A trained classifier: network, normalisation and classes, saved to one file; prediction on cells."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, atomic_write_bytes, first_line
from .models import create_model
from .transforms import (
    apply_normalisation,
    dihedral_views,
)

logger = logging.getLogger(__name__)


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

    def predict_proba(
        self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto", tta: bool = False, prior: str = "balanced"
    ) -> np.ndarray:
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
            parts = [
                model.features(torch.from_numpy(self.prepare(images[s : s + batch_size])).to(dev)).cpu().numpy()
                for s in range(0, len(images), batch_size)
            ]
        return np.concatenate(parts)

    def predict(self, images: np.ndarray, **kwargs) -> np.ndarray:
        """Predicted class names."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(images, **kwargs).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` weights with the description as JSON metadata (atomically)."""
        return write_model_file(path, self.model.state_dict(), self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Classifier:
        meta, state = read_model_file(path)
        if meta.get("format") == "stainfree.embedder":
            raise StainfreeError(f"{path}: an embedder, not a classifier (use it as embedder:{path})")
        model = create_model(meta["arch"], len(meta["channels"]), len(meta["classes"]), meta["input_size"][0], **meta["arch_kwargs"])
        model.load_state_dict(state)
        model.eval()
        return cls(
            model,
            meta["arch"],
            meta["arch_kwargs"],
            meta["classes"],
            meta["channels"],
            tuple(meta["input_size"]),
            meta["normalisation"],
            meta.get("train_prior"),
            tuple(meta["cell_size"]) if meta.get("cell_size") else None,
        )


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


def predict_cells(clf: Classifier, cells, *, tta: bool = True, prior: str = "balanced", batch_size: int = 1024):
    """Apply a classifier to a CellSet (streamed in batches); returns a per-cell DataFrame with
    ``cell_id``, ``predicted``, ``prob_<class>`` and, when the cells are labelled, ``label``.

    The model's channels are selected from the cells by name; cells of another size are resized
    to the model's input size with a warning. ``tta`` (default) averages over the 8 rotations and
    flips of each cell, as :func:`stainfree.eval.evaluate.evaluate` does.
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
            "cells are %dx%d px, the model expects %dx%d: resizing them",
            cells.shape[2],
            cells.shape[3],
            clf.input_size[0],
            clf.input_size[1],
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


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_finite(images: np.ndarray, cell_ids) -> None:
    """Refuse float images with NaN or infinite pixels, naming the first such cell."""
    if images.dtype.kind == "f":
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            first = np.asarray(cell_ids)[int(np.flatnonzero(bad)[0])]
            raise StainfreeError(f"cell {first!r} has NaN or infinite pixel values ({int(bad.sum())} cells do)")
