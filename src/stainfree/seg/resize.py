"""Fields at the network's scale and back: intensity normalisation, bilinear rescaling, label
images resized to a field's own resolution, and the tiling and memory checks of prediction."""

from __future__ import annotations

import numpy as np

from ..utils import StainfreeError


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
    >>> from stainfree.seg.resize import normalise_field
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
    >>> from stainfree.seg.resize import rescale
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
    >>> from stainfree.seg.resize import resize_bilinear
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
    >>> from stainfree.seg.resize import resize_labels
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
    >>> from stainfree.seg.resize import labels_at_size
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
    >>> from stainfree.seg.resize import balanced_core
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
    >>> from stainfree.seg.resize import tile_starts
    >>> tile_starts(10, core=4), tile_starts(3, core=4)
    ([0, 4, 8], [0])
    """
    return list(range(0, max(length, 1), core))


def available_memory() -> int | None:
    """Bytes of memory available now (Linux), else ``None``.

    Returns
    -------
    int or None

    Examples
    --------
    >>> from stainfree.seg.resize import available_memory
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
    >>> from stainfree.seg.resize import check_memory
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
