"""Classifier architectures, created by name from a small registry (in the manner of timm).

Each entry is a function ``(in_channels, num_classes, input_size, **kwargs) -> nn.Module`` plus
its defaults (input size, normalisation). Adding an architecture is one function and one
decorator line::

    @register_model("mynet", input_size=64)
    def mynet(in_channels, num_classes, input_size, width=16):
        ...

Every model accepts any channel count and input size and exposes ``features(x)``, the
penultimate representation used later for embeddings, beside ``forward(x)`` (logits).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from .utils import StainfreeError


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    input_size: int
    normalisation: str
    description: str


_REGISTRY: dict[str, ModelInfo] = {}
DEFAULT_MODEL = "cnn3"


def register_model(name: str, *, input_size: int, normalisation: str = "robust", description: str = ""):
    """Decorator adding a model builder to the registry under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, fn, input_size, normalisation, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StainfreeError(f"unknown model {name!r} (choose from {', '.join(list_models())})") from None


def create_model(name: str, in_channels: int, num_classes: int, input_size: int | None = None, **kwargs):
    """Build the architecture ``name`` for ``in_channels`` x ``input_size`` x ``input_size`` input.

    >>> m = create_model("cnn3", in_channels=2, num_classes=3, input_size=40)
    >>> import torch; tuple(m(torch.zeros(4, 2, 40, 40)).shape)
    (4, 3)
    """
    info = model_info(name)
    if in_channels < 1 or num_classes < 2:
        raise StainfreeError(f"a classifier needs at least 1 channel and 2 classes (got {in_channels}, {num_classes})")
    return info.builder(in_channels, num_classes, input_size or info.input_size, **kwargs)


def _torch():
    import torch
    from torch import nn

    return torch, nn


@register_model("cnn3", input_size=64, description="three conv/BN/ReLU/max-pool blocks (Espinosa Bernal), ~14k parameters at 64x64")
def cnn3(in_channels: int, num_classes: int, input_size: int, widths=(16, 32, 32), dropout: float = 0.2):
    """Three conv/batch-norm/ReLU/max-pool blocks of growing width, global average pooling, a
    linear classifier (a small CNN for imaging flow cytometry, after Espinosa Bernal)."""
    torch, nn = _torch()

    class CNN3(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], in_channels
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
                c = w
            self.body = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

        def features(self, x):
            return self.pool(self.body(x)).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    return CNN3()
