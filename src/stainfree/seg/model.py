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

from ..utils import StainfreeError
from .instances import InstanceParams, instances_from_maps

logger = logging.getLogger(__name__)

FORMAT = "stainfree.segmenter"
FLOW_SCALE = 5.0  # flows are learnt as 5 x the unit vectors (as cellpose), so their errors weigh enough
BUILTIN = {"phase": "phase_contrast.safetensors"}


def normalise_field(image: np.ndarray, *, low: float = 1.0, high: float = 99.5, max_samples: int = 1 << 22) -> np.ndarray:
    """Scale each channel so its ``low`` and ``high`` percentiles become 0 and 1 (not clipped).

    Percentiles come from at most ``max_samples`` evenly spaced pixels, so huge fields cost
    little. A flat channel becomes zeros.

    Parameters
    ----------
    image : (C, H, W) array
    low, high : float, default 1.0 and 99.5
    max_samples : int, default ``2**22``

    Returns
    -------
    (C, H, W) float32 array

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import normalise_field
    >>> x = np.arange(101, dtype=np.uint16).reshape(1, 1, 101)
    >>> normalise_field(x, low=0, high=100)[0, 0, [0, 50, 100]].tolist()
    [0.0, 0.5, 1.0]
    """
    image = np.asarray(image)
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[0]):
        channel = image[c]
        step = max(1, int(np.ceil(channel.size / max_samples)))
        lo, hi = np.percentile(channel.ravel()[::step], [low, high])
        span = float(hi - lo)
        out[c] = (channel.astype(np.float32) - np.float32(lo)) / np.float32(span) if span > 0 else 0.0
    return out


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize a (C, H, W) array by ``scale``, bilinearly (antialiased when shrinking).

    Parameters
    ----------
    image : (C, H, W) float array
    scale : float
        A side of ``n`` pixels becomes ``round(n * scale)``, at least 1.

    Returns
    -------
    (C, h, w) float32 array
        ``image`` itself when ``scale`` is 1.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import rescale
    >>> rescale(np.ones((2, 10, 6), np.float32), 0.5).shape
    (2, 5, 3)
    """
    if scale == 1:
        return image
    return resize_bilinear(image, tuple(max(1, int(round(n * scale))) for n in image.shape[-2:]))


def resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a (C, H, W) array bilinearly, antialiased along an axis that shrinks.

    Parameters
    ----------
    image : (C, H, W) array
    shape : (int, int)
        The output's height and width.

    Returns
    -------
    (C, h, w) float32 array

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import resize_bilinear
    >>> resize_bilinear(np.array([[[0.0, 1.0]]]), (1, 4)).round(2).tolist()
    [[[0.0, 0.25, 0.75, 1.0]]]
    """
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
    shrinks = shape[0] < image.shape[-2] or shape[1] < image.shape[-1]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrinks)[0].numpy()


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image (pixel centres map to pixel centres).

    Parameters
    ----------
    labels : (H, W) array
    shape : (int, int)
        The output's height and width.

    Returns
    -------
    (h, w) array
        Of the dtype of ``labels`` (``labels`` itself when the shape already matches).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import resize_labels
    >>> resize_labels(np.array([[1, 2], [3, 4]]), (4, 4))[1:3].tolist()
    [[1, 1, 2, 2], [3, 3, 4, 4]]
    """
    labels = np.asarray(labels)
    if labels.shape == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int), labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


def labels_at_size(labels: np.ndarray, foreground: np.ndarray, shape: tuple[int, int], *, threshold: float) -> np.ndarray:
    """Bring instance labels found at the network's scale to a field's ``shape``, along smooth outlines.

    The ``foreground`` probability is resized bilinearly and thresholded at ``threshold`` at the
    field's resolution, and each foreground pixel takes the label of the nearest labelled pixel of
    the nearest-neighbour resize, if one lies within a network pixel. Objects keep their numbers;
    one that vanishes leaves a gap.

    Parameters
    ----------
    labels : (h, w) int array
    foreground : (h, w) float array
        The foreground probability at the labels' scale.
    shape : (int, int)
        The field's height and width.
    threshold : float
        Foreground probability above which a pixel belongs to an object.

    Returns
    -------
    (H, W) int array

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.model import labels_at_size
    >>> labels = np.array([[0, 1, 1, 0]]); foreground = np.array([[0.2, 0.9, 0.9, 0.2]])
    >>> labels_at_size(labels, foreground, (1, 8), threshold=0.5).tolist()
    [[0, 0, 1, 1, 1, 1, 0, 0]]
    """
    from scipy import ndimage

    coarse = resize_labels(labels, shape)
    if coarse.shape == np.shape(labels):
        return np.where(np.asarray(foreground) > threshold, labels, 0)
    mask = resize_bilinear(np.asarray(foreground)[None], shape)[0] > threshold
    reach = max(shape[0] / labels.shape[0], shape[1] / labels.shape[1])
    distance, (rows, cols) = ndimage.distance_transform_edt(coarse == 0, return_indices=True)
    return np.where(mask & (distance <= reach), coarse[rows, cols], 0).astype(np.int32)


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


def balanced_core(length: int, *, tile: int, margin: int) -> int:
    """Core size of the fewest equal tiles that cover ``length`` pixels.

    Parameters
    ----------
    length : int
    tile : int
        Most pixels of a tile, margins included.
    margin : int
        Context pixels a tile reads on each side of its core.

    Returns
    -------
    int
        The whole ``length`` when it fits in one tile.

    Examples
    --------
    >>> from stainfree.seg.model import balanced_core
    >>> [balanced_core(n, tile=512, margin=32) for n in (500, 1045, 900)]
    [500, 349, 300]
    """
    if length <= tile:
        return length
    n = -(-length // (tile - 2 * margin))
    return -(-length // n)


def tile_starts(length: int, *, core: int) -> list[int]:
    """Start of each core window of size ``core`` covering ``length`` pixels.

    Parameters
    ----------
    length : int
    core : int

    Returns
    -------
    list of int

    Examples
    --------
    >>> from stainfree.seg.model import tile_starts
    >>> tile_starts(10, core=4), tile_starts(3, core=4)
    ([0, 4, 8], [0])
    """
    return list(range(0, max(length, 1), core))


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
        (:func:`labels_at_size`).

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


def available_memory() -> int | None:
    """Bytes of memory available now (Linux), else ``None``.

    Returns
    -------
    int or None

    Examples
    --------
    >>> from stainfree.seg.model import available_memory
    >>> free = available_memory()
    >>> free is None or free > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(shape: tuple[int, ...], *, scale: float) -> None:
    """Refuse, with one clear line, a field whose working copies would not fit in memory.

    The copies are a float32 one at the field's size, one at the network's, three maps and the
    labels.

    Parameters
    ----------
    shape : (C, H, W) tuple of int
        The field's shape.
    scale : float
        Field pixels to network pixels.

    Raises
    ------
    StainfreeError
        When they would need more than 80 % of :func:`available_memory`.

    Examples
    --------
    >>> from stainfree.seg.model import check_memory
    >>> check_memory((1, 1024, 1024), scale=0.5)  # about 17 MiB: it fits, so nothing happens
    """
    c, h, w = shape
    need = 4 * h * w * (c + 2) + 4 * h * w * scale**2 * (c + 4)
    free = available_memory()
    if free is not None and need > 0.8 * free:
        raise StainfreeError(
            f"a {h}x{w} px field needs about {need / 2**30:.1f} GiB to segment, more than the {free / 2**30:.1f} GiB available; "
            "cut it into smaller fields first"
        )


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
