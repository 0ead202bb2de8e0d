"""A trained segmentation network with everything needed to reuse it, and tiled prediction.

A :class:`Segmenter` is saved as ``.safetensors`` weights with JSON metadata (format
``stainfree.segmenter``): the architecture, the channels, the scale it works at (micrometres per
network pixel and the median cell diameter in network pixels), the intensity normalisation, the
post-processing settings, and the training data with its licence.

Prediction rescales a field to the network's scale, runs the network over overlapping tiles (each
tile keeps only its core, so the result does not depend on where tiles fall, up to the network's
reach beyond the margin), turns the stitched maps into instances and scales the labels back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, private_torch_rng
from .instances import InstanceParams, instances_from_maps
from .resize import balanced_core, check_memory, labels_at_size, normalise_field, rescale, tile_starts

logger = logging.getLogger(__name__)

FORMAT = "stainfree.segmenter"
FLOW_SCALE = 5.0  # flows are learnt as 5 x the unit vectors (as cellpose), so their errors weigh enough
BUILTIN = {"phase": "phase_contrast.safetensors"}


def inference_copy(network):
    """A copy of ``network`` in eval mode with every batch norm folded into the convolution before it.

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        The same outputs (up to rounding), less work per pixel.

    Examples
    --------
    >>> import torch
    >>> from stainfree.seg.model import inference_copy
    >>> from stainfree.seg.networks import create_segmenter
    >>> net = create_segmenter("unet", 1, 3, width=4, depth=2).eval()
    >>> fused, x = inference_copy(net), torch.rand(1, 1, 16, 16)
    >>> bool(torch.allclose(fused(x), net(x), atol=1e-5)), any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    (True, False)
    """
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(network).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return net


@dataclasses.dataclass
class Segmenter:
    """A segmentation network with everything needed to reuse it.

    Build one with :func:`stainfree.seg.training.train_segmenter` or :meth:`load`; label a field
    with :meth:`segment`.

    Attributes
    ----------
    network : torch.nn.Module
        Built by :func:`stainfree.seg.networks.create_segmenter` from ``arch`` and ``arch_kwargs``.
    arch : str
    arch_kwargs : dict
    channels : list of str
        The input channels, in order.
    pixel_size : float or None
        Micrometres per network pixel, when the training data had one.
    scale : float
        Field pixels to network pixels when neither pixel size nor diameter is known.
    diameter : float
        Median training cell diameter, in network pixels.
    instance_params : InstanceParams
        The post-processing settings (:mod:`stainfree.seg.instances`).
    normalisation : dict
        ``method`` (``percentile``), ``low`` and ``high`` of :func:`normalise_field`.
    provenance : dict
        Training data, licence, configuration and history.

    Examples
    --------
    The shipped phase-contrast model on a small synthetic field, saved and read back:

    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_field
    >>> from stainfree.seg.model import Segmenter
    >>> model = Segmenter.load("builtin:phase")
    >>> model.channels, model.representation, model.segment(make_field((64, 64), n_cells=4).brightfield).labels.shape
    (['phase'], 'flows', (64, 64))
    >>> model.resolve_scale(diameter=model.diameter / 2)[0]  # cells half as wide as the network's: enlarged 2 x
    2.0
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     again = Segmenter.load(model.save(f"{tmp}/phase.safetensors"))
    >>> again.metadata == model.metadata
    True
    """

    network: object
    arch: str
    arch_kwargs: dict
    channels: list[str]
    pixel_size: float | None
    scale: float
    diameter: float
    instance_params: InstanceParams = dataclasses.field(default_factory=InstanceParams)
    normalisation: dict = dataclasses.field(default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.5})
    provenance: dict = dataclasses.field(default_factory=dict)

    @property
    def representation(self) -> str:
        """``flows`` or ``distance``: what the network's three outputs are."""
        return "flows" if self.instance_params.representation == "flows" else "distance"

    @property
    def metadata(self) -> dict:
        """The JSON description saved with the weights (``format`` is :data:`FORMAT`)."""
        from .targets import OUTPUTS

        return {
            "format": FORMAT,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "outputs": list(OUTPUTS[self.representation]),
            "channels": list(self.channels),
            "pixel_size": self.pixel_size,
            "scale": self.scale,
            "diameter": self.diameter,
            "instance_params": dataclasses.asdict(self.instance_params),
            "normalisation": self.normalisation,
            "provenance": self.provenance,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` weights with :attr:`metadata`, atomically.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        from ..ml.classifier import write_model_file

        return write_model_file(path, self.network.state_dict(), self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Segmenter:
        """Read a segmenter written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            A model file, or ``builtin:phase`` for the shipped model.

        Returns
        -------
        Segmenter

        Raises
        ------
        StainfreeError
            When the file is missing, unreadable, or not a segmentation model.
        """

        from ..ml.classifier import read_model_file
        from .networks import create_segmenter

        path = builtin_path(path)
        meta, state = read_model_file(path)
        if meta.get("format") != FORMAT:
            raise StainfreeError(f"{path}: not a segmentation model (it is a {meta.get('format', 'classifier')})")
        with private_torch_rng():  # initial weights, replaced below
            network = create_segmenter(meta["arch"], len(meta["channels"]), 3, **meta["arch_kwargs"])
        network.load_state_dict(state)
        network.eval()
        return cls(
            network,
            meta["arch"],
            meta["arch_kwargs"],
            list(meta["channels"]),
            meta["pixel_size"],
            float(meta["scale"]),
            float(meta["diameter"]),
            InstanceParams(**meta["instance_params"]),
            meta["normalisation"],
            meta.get("provenance", {}),
        )

    def resolve_scale(self, *, pixel_size: float | None = None, diameter: float | None = None) -> tuple[float, str]:
        """The factor from field pixels to network pixels, and how it was decided.

        A given cell diameter wins, then the field's pixel size, then the model's default (which
        assumes the field has the training data's pixel size).

        Parameters
        ----------
        pixel_size : float, optional
            Micrometres per field pixel.
        diameter : float, optional
            Typical cell diameter, in field pixels.

        Returns
        -------
        scale : float
        how : str
            One line, for the log.

        Raises
        ------
        StainfreeError
            When ``diameter`` is 2 px or less.
        """
        if diameter is not None:
            if diameter <= 2:
                raise StainfreeError(f"diameter must be more than 2 px, got {diameter}")
            return self.diameter / diameter, f"from the given diameter {diameter:g} px"
        if pixel_size is not None and self.pixel_size is not None:
            return pixel_size / self.pixel_size, f"from the pixel size {pixel_size:g} um"
        return self.scale, "the model's training scale (no pixel size or diameter given)"

    def predict_maps(self, image: np.ndarray, *, tile: int = 512, margin: int = 32, device: str = "auto") -> np.ndarray:
        """The three output maps of an image, predicted over overlapping tiles.

        Parameters
        ----------
        image : (C, h, w) float32 array
            Normalised (:func:`normalise_field`) and at the network's scale.
        tile : int, default 512
            Most pixels along a side of a tile, margins included.
        margin : int, default 32
            Context read beyond a tile's core on each side (the core alone is kept).
        device : str, default "auto"
            A torch device; ``auto`` takes a GPU when there is one.

        Returns
        -------
        (3, h, w) float32 array
            Foreground probability and flows (row, col), or foreground, distance and boundary
            probabilities, as :attr:`representation`.

        Raises
        ------
        StainfreeError
            When ``tile`` is not more than twice ``margin``.
        """
        import torch

        from ..ml.classifier import pick_device

        if tile <= 2 * margin:
            raise StainfreeError(f"tile size {tile} must exceed twice the margin {margin}")
        dev = pick_device(device)
        network = inference_copy(self.network).to(dev, memory_format=torch.channels_last)
        c, h, w = image.shape
        out = np.zeros((3, h, w), np.float32)
        core_h, core_w = balanced_core(h, tile=tile, margin=margin), balanced_core(w, tile=tile, margin=margin)
        with torch.no_grad():
            for top in tile_starts(h, core=core_h):
                for left in tile_starts(w, core=core_w):
                    bottom, right = min(top + core_h, h), min(left + core_w, w)
                    y0, x0 = max(top - margin, 0), max(left - margin, 0)
                    y1, x1 = min(bottom + margin, h), min(right + margin, w)
                    x = torch.from_numpy(np.ascontiguousarray(image[:, y0:y1, x0:x1]))[None].to(dev, memory_format=torch.channels_last)
                    maps = network(x)[0]
                    maps = (
                        (torch.cat([maps[:1].sigmoid(), maps[1:] / FLOW_SCALE]) if self.representation == "flows" else maps.sigmoid())
                        .cpu()
                        .numpy()
                    )
                    out[:, top:bottom, left:right] = maps[:, top - y0 : bottom - y0, left - x0 : right - x0]
        return out

    def segment(
        self,
        image: np.ndarray,
        *,
        pixel_size: float | None = None,
        diameter: float | None = None,
        tile: int = 512,
        device: str = "auto",
    ):
        """Instance labels of a field: normalised, rescaled (:meth:`resolve_scale`), predicted
        (:meth:`predict_maps`), then brought back to the field's size.

        Parameters
        ----------
        image : (C, H, W) or (H, W) array
            The field, channels in the model's order.
        pixel_size, diameter : float, optional
            As in :meth:`resolve_scale`.
        tile, device
            As in :meth:`predict_maps`.

        Returns
        -------
        stainfree.seg.classical.SegmentationResult
            Labels at the field's size and the expected diameter in field pixels.

        Raises
        ------
        StainfreeError
            When the channels do not match the model's, or the field would not fit in memory.
        """
        from .classical import SegmentationResult

        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        if image.shape[0] != len(self.channels):
            raise StainfreeError(
                f"the segmentation model expects {len(self.channels)} channel(s) ({', '.join(self.channels)}), got {image.shape[0]}"
            )
        scale, _ = self.resolve_scale(pixel_size=pixel_size, diameter=diameter)
        check_memory(image.shape, scale=scale)
        x = rescale(normalise_field(image, low=self.normalisation["low"], high=self.normalisation["high"]), scale)
        maps = self.predict_maps(x, tile=tile, device=device)
        return SegmentationResult(
            self.labels_from_maps(maps, image.shape[-2:]), diameter=self.diameter / scale, threshold=float("nan"), mode="learnt"
        )

    def labels_from_maps(self, maps: np.ndarray, shape: tuple[int, int], *, params: InstanceParams | None = None) -> np.ndarray:
        """Instance labels at a field's size from the network's maps of it.

        Instances are found at the network's scale, then brought to the field's resolution
        (:func:`~stainfree.seg.resize.labels_at_size`).

        Parameters
        ----------
        maps : (3, h, w) float array
            From :meth:`predict_maps`.
        shape : (int, int)
            The field's height and width.
        params : InstanceParams, optional
            Default the model's own.

        Returns
        -------
        (H, W) int array
            Objects numbered 1..n.
        """
        from .instances import relabel_by_size

        params = params or self.instance_params
        labels = labels_at_size(instances_from_maps(maps, params=params), maps[0], shape, threshold=params.foreground_threshold)
        zoom = shape[0] * shape[1] / (maps.shape[1] * maps.shape[2])
        return relabel_by_size(labels, min_area=params.min_area * zoom)


def builtin_path(path: str | os.PathLike) -> Path:
    """The file behind ``builtin:<name>`` (the models shipped in the package), else ``path``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    pathlib.Path

    Raises
    ------
    StainfreeError
        When no model is built in under that name.

    Examples
    --------
    >>> from stainfree.seg.model import builtin_path
    >>> builtin_path("builtin:phase").name, builtin_path("model.safetensors").name
    ('phase_contrast.safetensors', 'model.safetensors')
    """
    text = str(path)
    if not text.startswith("builtin:"):
        return Path(path)
    name = text.split(":", 1)[1]
    if name not in BUILTIN:
        raise StainfreeError(f"no built-in segmentation model {name!r}; built in: {', '.join(sorted(BUILTIN))}")
    from importlib import resources

    return Path(str(resources.files("stainfree.seg") / "weights" / BUILTIN[name]))
