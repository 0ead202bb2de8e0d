"""Classifier architectures, created by name from a small registry (in the manner of timm).

Each entry (:class:`ModelInfo`) is a builder plus its defaults; adding one is a function and a decorator line
(:func:`register_model`). Every model accepts any channel count and input size and exposes ``features(x)``, the
penultimate representation used later for embeddings, beside ``forward(x)`` (logits); the convolutional ones
(``cnn3``, ``yao2019``, ``resnet_small``, ``resnet``) also ``feature_maps(x)``, the maps at the end of each stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..utils import StainfreeError


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One registry entry: a builder ``(in_channels, num_classes, input_size, **kwargs) -> nn.Module`` and its defaults.

    Attributes
    ----------
    name, description : str
        Registry name, and one line for listings (``stainfree models``).
    builder : callable
    input_size, normalisation : int, str
        Default side of the square input (pixels) and normalisation (:mod:`.transforms`).

    Examples
    --------
    >>> from stainfree.ml.models import model_info
    >>> model_info("yao2019").input_size, model_info("yao2019").normalisation
    (224, 'quantile')
    """

    name: str
    builder: Callable
    input_size: int
    normalisation: str
    description: str


_REGISTRY: dict[str, ModelInfo] = {}
DEFAULT_MODEL = "cnn3"
#: Crops with a side over this many pixels reach networks at half size unless an input size is given.
LARGE_CROP_SIDE = 128


def network_side(side: int) -> int:
    """The side a network sees by default for crops of ``side`` pixels: half over 128 px.

    >>> network_side(40), network_side(128), network_side(224)
    (40, 128, 112)
    """
    return side // 2 if side > LARGE_CROP_SIDE else side


def register_model(name: str, *, input_size: int, normalisation: str = "robust", description: str = ""):
    """Decorator adding a model builder to the registry under ``name``; it returns the builder unchanged.

    Parameters
    ----------
    name : str
        Registry name of the architecture (a ``ValueError`` if already taken).
    input_size : int
        Default side of the square input, in pixels.
    normalisation, description : str, default "robust", ""
        Default normalisation; one line for listings (empty: the builder's first docstring line).

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml import models
    >>> @models.register_model("flat_demo", input_size=8, description="a linear layer on the pixels")
    ... def flat_demo(in_channels, num_classes, input_size):
    ...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * input_size**2, num_classes))
    >>> models.create_model("flat_demo", 1, 2)(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 2])
    >>> del models._REGISTRY["flat_demo"]  # leave the registry as it was
    """

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, fn, input_size, normalisation, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered architectures, sorted.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from stainfree.ml.models import list_models
    >>> list_models()
    ['cnn3', 'fc2', 'ogawa2022', 'resnet', 'resnet_small', 'simple_vit', 'yao2019']
    """
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of the architecture ``name`` (see :func:`list_models`).

    Parameters
    ----------
    name : str

    Returns
    -------
    ModelInfo

    Raises
    ------
    StainfreeError
        If no architecture is registered under ``name``.

    Examples
    --------
    >>> from stainfree.ml.models import model_info
    >>> model_info("ogawa2022").input_size
    150
    """
    try:
        return _REGISTRY[name]
    except KeyError as exc:
        raise StainfreeError(f"unknown model {name!r} (choose from {', '.join(list_models())})") from exc


def create_model(name: str, in_channels: int, num_classes: int, input_size: int | None = None, **kwargs):
    """Build the architecture ``name`` for ``in_channels x input_size x input_size`` input.

    Parameters
    ----------
    name : str
        A registered architecture (see :func:`list_models`).
    in_channels, num_classes : int
        Image channels (at least 1) and outputs (at least 2).
    input_size : int, optional
        Side of the square input in pixels; default the architecture's own.
    **kwargs
        Options of the architecture's builder (``widths``, ``dropout``, ...).

    Returns
    -------
    torch.nn.Module
        Untrained: ``forward(x)`` gives logits, ``features(x)`` the penultimate layer.

    Raises
    ------
    StainfreeError
        For an unknown name, no channels or fewer than two classes.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> m = create_model("cnn3", in_channels=2, num_classes=3, input_size=40)
    >>> tuple(m(torch.zeros(4, 2, 40, 40)).shape), tuple(m.features(torch.zeros(4, 2, 40, 40)).shape)
    ((4, 3), (4, 32))
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
def cnn3(in_channels: int, num_classes: int, input_size: int, *, widths=(16, 32, 32), dropout: float = 0.2):
    """Three conv/batch-norm/ReLU/max-pool blocks of growing width, global average pooling, a linear classifier (a small
    CNN for imaging flow cytometry, after Espinosa Bernal). Input 64 x 64 by default; options ``widths``, ``dropout``.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("cnn3", 1, 3)(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 3])
    """
    torch, nn = _torch()

    class CNN3(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], in_channels
            for w in widths:
                layers += [
                    nn.Conv2d(c, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, ceil_mode=True),
                ]
                c = w
            self.body = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

        def feature_maps(self, x):
            return _stage_outputs(self.body, x, (nn.MaxPool2d,))

        def features(self, x):
            return self.pool(self.body(x)).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    return CNN3()


def _stage_outputs(body, x, ends) -> list:
    """Run ``x`` through a sequential ``body`` and return the output of every stage, a stage
    ending at a module of one of the types ``ends`` or at the last module."""
    out = []
    for i, module in enumerate(body):
        x = module(x)
        if isinstance(module, ends) or i == len(body) - 1:
            out.append(x)
    return out


def _pooled_size(size: int, stages: int, kernel: int = 2, stride: int = 2, min_size: int = 2) -> tuple[int, list[bool]]:
    """Spatial size after ``stages`` poolings, skipping a pooling once the map is too small."""
    pools = []
    for _ in range(stages):
        if size >= max(min_size, kernel):
            size = (size - kernel) // stride + 1
            pools.append(True)
        else:
            pools.append(False)
    return size, pools


@register_model(
    "yao2019",
    input_size=224,
    normalisation="quantile",
    description="Yao et al. 2019: six conv/BN/ReLU/avg-pool blocks (32 11x11, then five 32 5x5), FC",
)
def yao2019(in_channels: int, num_classes: int, input_size: int, *, width: int = 32):
    """Yao, Rochman & Sun 2019: six blocks of convolution, batch norm, ReLU and 2x2 average pooling (first 32 kernels
    of 11x11, then five of 32 kernels of 5x5), a fully connected layer. ``features(x)`` is the flattened last pooled
    activation map, the "LCA" features used for Self-Label Clustering: 32 x 3 x 3 = 288 values at 224 x 224 (default).

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("yao2019", 1, 2)(torch.zeros(1, 1, 224, 224)).shape
    torch.Size([1, 2])
    """
    torch, nn = _torch()
    side, pools = _pooled_size(input_size, 6)

    class Yao2019(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], in_channels
            for i, pool in enumerate(pools):
                k = 11 if i == 0 else 5
                layers += [nn.Conv2d(c, width, k, padding=k // 2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                if pool:
                    layers.append(nn.AvgPool2d(2))
                c = width
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(width * side * side, num_classes)

        def feature_maps(self, x):
            return _stage_outputs(self.body, x, (nn.AvgPool2d,))

        def features(self, x):
            return self.body(x).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    return Yao2019()


@register_model(
    "ogawa2022",
    input_size=150,
    normalisation="circle",
    description="Ogawa et al. 2022: four 5x5 convs (16,16,32,32; doubled for >= 2 channels), max-pool 3/2, FC 2000",
)
def ogawa2022(in_channels: int, num_classes: int, input_size: int, *, hidden: int = 2000, dropout: float = 0.1):
    """Ogawa et al. 2022 (after Xu et al.): four 5x5 convolutions with 16, 16, 32 and 32 kernels (all doubled when the
    input has two or more channels), ReLU, 3x3 max pooling with stride 2 after each, dropout 0.1 in every gap, a fully
    connected layer of 2,000 units, then the classes. Input 150 x 150 by default; options ``hidden``, ``dropout``.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("ogawa2022", 2, 2)(torch.zeros(1, 2, 150, 150)).shape
    torch.Size([1, 2])
    """
    torch, nn = _torch()
    mult = 2 if in_channels >= 2 else 1
    widths = [16 * mult, 16 * mult, 32 * mult, 32 * mult]
    side, pools = _pooled_size(input_size, 4, kernel=3, stride=2, min_size=3)

    class Ogawa2022(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], in_channels
            for w, pool in zip(widths, pools):
                layers += [nn.Conv2d(c, w, 5, padding=2), nn.ReLU(inplace=True)]
                if pool:
                    layers.append(nn.MaxPool2d(3, stride=2))
                layers.append(nn.Dropout(dropout))
                c = w
            self.body = nn.Sequential(*layers)
            self.fc = nn.Sequential(nn.Linear(c * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
            self.head = nn.Linear(hidden, num_classes)

        def features(self, x):
            return self.fc(self.body(x).flatten(1))

        def forward(self, x):
            return self.head(self.features(x))

    return Ogawa2022()


@register_model("fc2", input_size=64, description="two fully connected hidden layers (100, 50) with BN, ReLU, dropout (Espinosa Bernal)")
def fc2(in_channels: int, num_classes: int, input_size: int, *, hidden=(100, 50), dropout: float = 0.25):
    """A fully connected network on the flattened pixels: hidden layers of 100 and 50 units, each with batch norm, ReLU
    and dropout (Espinosa Bernal's baseline deep model). Input 64 x 64 by default, and only the size it was built for.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("fc2", 1, 4, input_size=32)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 4])
    """
    torch, nn = _torch()

    class FC2(nn.Module):
        def __init__(self):
            super().__init__()
            layers, n = [nn.Flatten()], in_channels * input_size * input_size
            for h in hidden:
                layers += [nn.Linear(n, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
                n = h
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(n, num_classes)

        def features(self, x):
            if x.shape[-1] != input_size or x.shape[-2] != input_size:
                raise ValueError(f"fc2 was built for {input_size}x{input_size} input, got {tuple(x.shape[-2:])}")
            return self.body(x)

        def forward(self, x):
            return self.head(self.features(x))

    return FC2()


@register_model("simple_vit", input_size=64, description="Simple ViT (Beyer et al.): patch 16, dim 32, 8 heads, depth 2 (Espinosa Bernal)")
def simple_vit(
    in_channels: int,
    num_classes: int,
    input_size: int,
    *,
    patch: int = 16,
    dim: int = 32,
    heads: int = 8,
    depth: int = 2,
    dim_head: int = 64,
    mlp_dim: int = 32,
):
    """Simple ViT (Beyer et al. 2022, as used by Espinosa Bernal): non-overlapping patches (the image is zero-padded to
    a multiple of the patch size), a linear projection, fixed 2-D sine-cosine position embeddings, a pre-norm
    transformer encoder, mean pooling over patches and a linear head. Input 64 x 64 by default.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("simple_vit", 1, 2)(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    """
    torch, nn = _torch()

    def posemb(h, w, device):
        y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        omega = 1.0 / (10000 ** (torch.arange(dim // 4, device=device) / (dim // 4 - 1)))
        y = y.flatten()[:, None] * omega[None]
        x = x.flatten()[:, None] * omega[None]
        return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
            self.out = nn.Linear(heads * dim_head, dim, bias=False)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
            q, k, v = (t.view(b, n, heads, dim_head).transpose(1, 2) for t in (q, k, v))
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return self.out(o.transpose(1, 2).reshape(b, n, heads * dim_head))

    class SimpleViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(
                nn.LayerNorm(in_channels * patch * patch), nn.Linear(in_channels * patch * patch, dim), nn.LayerNorm(dim)
            )
            self.attn = nn.ModuleList([Attention() for _ in range(depth)])
            self.mlp = nn.ModuleList(
                [nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim)) for _ in range(depth)]
            )
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, num_classes)

        def features(self, x):
            b, c, h, w = x.shape
            ph, pw = -h % patch, -w % patch
            if ph or pw:
                x = torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            gh, gw = x.shape[2] // patch, x.shape[3] // patch
            tokens = x.unfold(2, patch, patch).unfold(3, patch, patch)  # b c gh gw p p
            tokens = tokens.permute(0, 2, 3, 1, 4, 5).reshape(b, gh * gw, c * patch * patch)
            t = self.embed(tokens) + posemb(gh, gw, x.device).to(x.dtype)
            for attn, mlp in zip(self.attn, self.mlp):
                t = t + attn(t)
                t = t + mlp(t)
            return self.norm(t.mean(dim=1))

        def forward(self, x):
            return self.head(self.features(x))

    return SimpleViT()


# the residual networks register themselves on import
from . import resnet as _resnet  # noqa: E402, F401


def inference_copy(model):
    """A copy of ``model`` for prediction: in eval mode, each convolution followed by batch norm in
    an ``nn.Sequential`` folded into one convolution, in channels-last memory format.

    The outputs are those of ``model.eval()`` up to float rounding; on a CPU the copy is about twice
    as fast (cnn3 on 40 x 40 cells, benchmarks/scale.py). Only pairs inside a Sequential are
    folded, and the pairs a module names in its ``fused_pairs``: elsewhere module order proves
    nothing about the data flow.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model, inference_copy
    >>> model = create_model("cnn3", 1, 2, 16).eval()
    >>> fast = inference_copy(model)
    >>> x = torch.randn(4, 1, 16, 16)
    >>> sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()), bool(torch.allclose(fast(x), model(x), atol=1e-5))
    (0, True)
    """
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model).eval()
    for module in fast.modules():
        names = list(module._modules)
        pairs = zip(names, names[1:]) if isinstance(module, torch.nn.Sequential) else getattr(module, "fused_pairs", ())
        for a, b in pairs:
            conv, norm = module._modules[a], module._modules[b]
            if type(conv) is torch.nn.Conv2d and type(norm) is torch.nn.BatchNorm2d and norm.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, norm)
                module._modules[b] = torch.nn.Identity()
    return fast.to(memory_format=torch.channels_last)
