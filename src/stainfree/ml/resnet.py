"""Residual networks of the registry: ``resnet_small`` and ``resnet``, which deepens with the input.

Imported by :mod:`stainfree.ml.models` (the registry), which they register into.
"""

from __future__ import annotations

import math

from .models import _stage_outputs, _torch, register_model


def drop_branch(y, p: float, *, training: bool):
    """Stochastic depth: in training, zero the residual branch ``y`` of each sample with
    probability ``p`` and scale the kept ones by ``1 / (1 - p)``, so its expectation is ``y``;
    in evaluation, ``y`` unchanged.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.resnet import drop_branch
    >>> y = torch.ones(4, 2, 3, 3)
    >>> bool((drop_branch(y, 0.5, training=False) == y).all())
    True
    >>> sorted(set(drop_branch(y, 0.5, training=True).flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    if not training or p == 0:
        return y
    torch, _ = _torch()
    keep = torch.rand(y.shape[0], *([1] * (y.ndim - 1)), device=y.device) >= p
    return y * keep.to(y.dtype) / (1 - p)


def stage_count(input_size: int) -> int:
    """Stages of :func:`resnet`: one per halving of the input down to about 8 px, 2 to 6.

    >>> from stainfree.ml.resnet import stage_count
    >>> [stage_count(s) for s in (24, 40, 64, 112, 224, 512)]
    [2, 3, 4, 4, 5, 6]
    """
    return max(2, min(6, int(math.floor(math.log2(max(input_size, 8) / 8))) + 1))


@register_model(
    "resnet_small", input_size=64, description="stainfree default: a small residual network (stem + three stages of basic blocks)"
)
def resnet_small(in_channels: int, num_classes: int, input_size: int, *, widths=(16, 32, 64), blocks=(1, 1, 1), dropout: float = 0.2):
    """A small residual network: a 3x3 stem, three stages of basic residual blocks (the second and third halve the
    resolution), global average pooling, dropout and a linear head. Chosen as the default for its accuracy per second
    on small single-cell crops on a CPU. Input 64 x 64 by default.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> create_model("resnet_small", 1, 2)(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    """
    torch, nn = _torch()

    class Block(nn.Module):
        fused_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # batch norm applied right after the conv (inference_copy)

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    class ResNetSmall(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
            layers, c = [], widths[0]
            for i, (w, n) in enumerate(zip(widths, blocks)):
                for j in range(n):
                    layers.append(Block(c, w, 2 if (i > 0 and j == 0) else 1))
                    c = w
            self.body = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

        def feature_maps(self, x):
            x = self.stem(x)
            return [x] + _stage_outputs(self.body, x, (Block,))

        def features(self, x):
            return self.pool(self.body(self.stem(x))).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    return ResNetSmall()


@register_model(
    "resnet",
    input_size=64,
    description="a residual network that deepens with the input (a stage per halving to ~8 px), stochastic depth",
)
def resnet(
    in_channels: int,
    num_classes: int,
    input_size: int,
    *,
    width: int = 32,
    blocks: int = 2,
    drop_path: float = 0.1,
    dropout: float = 0.2,
    max_width: int = 256,
):
    """A residual network for crops of 24 to 224 px and more, trained from scratch: a 3x3 stem, then
    :func:`stage_count` stages of ``blocks`` basic residual blocks (each stage after the first halves
    the resolution and doubles the width, up to ``max_width``), global average pooling, dropout and a
    linear head. Each block's residual branch is dropped at random in training (stochastic depth),
    with a probability rising linearly from 0 at the first block to ``drop_path`` at the last: a
    regulariser for small sets. Input 64 x 64 by default.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> net = create_model("resnet", 1, 2, input_size=40)
    >>> net(torch.zeros(2, 1, 40, 40)).shape, len(net.feature_maps(torch.zeros(2, 1, 40, 40)))
    (torch.Size([2, 2]), 4)
    """
    torch, nn = _torch()
    n_stages = stage_count(input_size)
    widths = [min(width * 2**i, max_width) for i in range(n_stages)]
    n_blocks = n_stages * blocks

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, p):
            super().__init__()
            self.p = p
            self.branch = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            return torch.relu(self.skip(x) + drop_branch(self.branch(x), self.p, training=self.training))

    class StageEnd(nn.Identity):
        """Marks the end of a stage for ``feature_maps``."""

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
            layers, c, k = [], widths[0], 0
            for i, w in enumerate(widths):
                for j in range(blocks):
                    layers.append(Block(c, w, 2 if (i > 0 and j == 0) else 1, drop_path * k / max(n_blocks - 1, 1)))
                    c, k = w, k + 1
                layers.append(StageEnd())
            self.body = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

        def feature_maps(self, x):
            x = self.stem(x)
            return [x] + _stage_outputs(self.body, x, (StageEnd,))

        def features(self, x):
            return self.pool(self.body(self.stem(x))).flatten(1)

        def forward(self, x):
            return self.head(self.features(x))

    return ResNet()
