"""Segmentation networks, created by name from a small registry.

Each builder is ``(in_channels, out_channels, **kwargs) -> nn.Module`` mapping an
``N x C x H x W`` batch to ``N x out_channels x H x W`` per-pixel outputs, for any ``H`` and ``W``
(the input is padded to a multiple of the network's stride and the output cropped back).
Adding an architecture is one function and one decorator line::

    @register_segmenter("mynet")
    def mynet(in_channels, out_channels, width=16):
        ...
"""

from __future__ import annotations

from collections.abc import Callable

from ..utils import StainfreeError

_SEGMENTERS: dict[str, Callable] = {}
#: The name of the default architecture (``SegTrainConfig.arch`` repeats it; nothing reads this).
DEFAULT_SEGMENTER = "unet"


def register_segmenter(name: str):
    """Decorator adding a segmentation network builder to the registry under ``name``.

    Parameters
    ----------
    name : str
        The name :func:`create_segmenter` and saved models refer to the builder by.

    Returns
    -------
    callable
        A decorator that registers a builder ``(in_channels, out_channels, **kwargs) -> nn.Module``
        and returns it unchanged.

    Raises
    ------
    ValueError
        When ``name`` is already registered.

    Examples
    --------
    Use it as in the module docstring; a name can be taken only once:

    >>> from stainfree.seg.networks import register_segmenter
    >>> register_segmenter("unet")(lambda in_channels, out_channels: None)
    Traceback (most recent call last):
    ...
    ValueError: segmenter 'unet' registered twice
    """

    def wrap(fn):
        if name in _SEGMENTERS:
            raise ValueError(f"segmenter {name!r} registered twice")
        _SEGMENTERS[name] = fn
        return fn

    return wrap


def list_segmenters() -> list[str]:
    """Names of the registered segmentation networks.

    Returns
    -------
    list of str
        Sorted names, each accepted by :func:`create_segmenter`.

    Examples
    --------
    >>> from stainfree.seg.networks import list_segmenters
    >>> "unet" in list_segmenters()
    True
    """
    return sorted(_SEGMENTERS)


def create_segmenter(name: str, in_channels: int, out_channels: int, **kwargs):
    """Build the network registered as ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`list_segmenters`.
    in_channels : int
        Channels of the images the network reads.
    out_channels : int
        Per-pixel output maps (3 for the representations of :mod:`stainfree.seg.targets`).
    **kwargs
        The architecture's own settings (for ``unet``: ``width`` and ``depth``).

    Returns
    -------
    torch.nn.Module
        Maps an ``N x in_channels x H x W`` batch to ``N x out_channels x H x W``, any H and W.

    Raises
    ------
    StainfreeError
        When no network is registered as ``name``.

    Examples
    --------
    >>> import torch
    >>> from stainfree.seg.networks import create_segmenter
    >>> net = create_segmenter("unet", 2, 3, width=4, depth=2)
    >>> tuple(net(torch.zeros(1, 2, 30, 21)).shape)
    (1, 3, 30, 21)
    """
    if name not in _SEGMENTERS:
        raise StainfreeError(f"unknown segmentation network {name!r}; choose from {', '.join(list_segmenters())}")
    return _SEGMENTERS[name](in_channels, out_channels, **kwargs)


def _unet_class():
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        """A U-Net: ``depth`` poolings, widths ``width * 2**level``, bilinear upsampling and
        skip connections by concatenation, a 1 x 1 convolution to the outputs."""

        def __init__(self, in_channels: int, out_channels: int, width: int = 16, depth: int = 4):
            super().__init__()
            widths = [width * 2**level for level in range(depth + 1)]
            self.stride = 2**depth
            self.down = nn.ModuleList([block(in_channels, widths[0])])
            self.down.extend(block(widths[i], widths[i + 1]) for i in range(depth))
            self.up = nn.ModuleList(block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
            self.head = nn.Conv2d(widths[0], out_channels, 1)

        def forward(self, x):
            h, w = x.shape[-2:]
            pad_h, pad_w = (-h) % self.stride, (-w) % self.stride
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
            skips = []
            for i, stage in enumerate(self.down):
                x = stage(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for stage in self.up:
                skip = skips.pop()
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = stage(torch.cat([x, skip], dim=1))
            return self.head(x)[..., :h, :w]

    return UNet


@register_segmenter("unet")
def unet(in_channels: int, out_channels: int, *, width: int = 16, depth: int = 4):
    """A U-Net: ``depth`` max-poolings, bilinear upsampling and skip connections by concatenation.

    Each level has two 3 x 3 convolutions with batch norm and ReLU; a 1 x 1 convolution makes
    the outputs. Inputs are padded to a multiple of ``2**depth`` and the outputs cropped back.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and per-pixel maps out.
    width : int, default 16
        Channels at the first level, doubling at each level below: 16-32-64-128-256 by default
        (about 1.9 M parameters, 7.5 MB in float32).
    depth : int, default 4
        Number of poolings (the network's stride is ``2**depth``).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> from stainfree.seg.networks import unet
    >>> net = unet(1, 3, width=4, depth=2)
    >>> net.stride, sum(p.numel() for p in net.parameters())
    (4, 7555)
    """
    return _unet_class()(in_channels, out_channels, width=width, depth=depth)
