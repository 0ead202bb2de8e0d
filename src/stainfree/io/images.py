"""Reading cell and field images of any common format into (C, H, W) arrays, and fitting them to a size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..utils import StainfreeError, first_line

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


# ---------------------------------------------------------------------- single images
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as ``H x W`` (grey) or ``H x W x C`` (colour), dtype as stored.

    Palette and 1-bit images are converted to grey; an alpha channel is dropped; boolean images
    become ``uint8``.

    Parameters
    ----------
    path : path
        A PNG, JPEG or TIFF file.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, integer or float.

    Raises
    ------
    StainfreeError
        Naming the file, when it cannot be read, is empty, is not 2-D or has an unsupported
        pixel type.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from stainfree.io.images import read_image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Image.fromarray(np.full((4, 6), 7, np.uint8)).save(f"{tmp}/cell.png")
    ...     img = read_image(f"{tmp}/cell.png")
    >>> img.shape, img.dtype, int(img.max())
    ((4, 6), dtype('uint8'), 7)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("P", "1", "LA", "PA"):
                    im = im.convert("RGBA" if im.mode in ("P", "PA") and "transparency" in im.info else "L")
                if im.mode == "CMYK":
                    im = im.convert("RGB")
                img = np.array(im)
                if im.mode in ("I;16", "I;16B", "I;16L") and img.dtype != np.uint16:
                    img = img.astype(np.uint16)
    except StainfreeError:
        raise
    except Exception as exc:
        raise StainfreeError(f"{path}: unreadable image ({first_line(exc)})") from exc
    img = np.asarray(img)
    if img.size == 0:
        raise StainfreeError(f"{path}: empty image")
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise StainfreeError(f"{path}: expected a 2-D image, got shape {img.shape}")
    if img.dtype == np.bool_:
        img = img.astype(np.uint8)
    if img.dtype.kind not in "uif":
        raise StainfreeError(f"{path}: unsupported pixel type {img.dtype}")
    return img


def to_channels_first(img: np.ndarray, *, grey: bool = False) -> np.ndarray:
    """``H x W`` -> ``1 x H x W``; ``H x W x 3`` -> ``3 x H x W`` (or ``1 x H x W`` with ``grey``).

    A 3-D image whose first axis is short (at most 8) and whose last is not 3 is taken as already
    channels-first (a multi-page TIFF). Grey conversion uses ITU-R 601 luma weights and keeps the
    dtype.

    Parameters
    ----------
    img : numpy.ndarray
        A 2-D image or a 3-D colour or multi-page image, as :func:`read_image` returns it.
    grey : bool, default False
        Convert three colour channels to one grey channel.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)``, same dtype (a view when no conversion is needed).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.images import to_channels_first
    >>> to_channels_first(np.zeros((5, 7, 3), np.uint8)).shape
    (3, 5, 7)
    >>> to_channels_first(np.array([[[10, 20, 30]]], np.uint8), grey=True)
    array([[[18]]], dtype=uint8)
    """
    if img.ndim == 2:
        return img[None]
    if img.shape[-1] == 3:
        chw = np.moveaxis(img, -1, 0)
    elif img.shape[0] <= 8:
        chw = img
    else:
        chw = np.moveaxis(img, -1, 0)
    if grey and chw.shape[0] == 3:
        weights = np.array([0.299, 0.587, 0.114])
        g = np.tensordot(weights, chw.astype(np.float64), axes=1)
        return _cast_like(g, img.dtype)[None]
    return chw


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def resize_cell(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a ``(C, H, W)`` cell to ``(C, size, size)``, bilinear, dtype kept.

    Shrinking is anti-aliased; integer results are rounded and clipped to the dtype's range.

    Parameters
    ----------
    img : numpy.ndarray
        The cell, ``(C, H, W)``.
    size : int
        Output height and width in pixels (the aspect ratio is not kept).

    Returns
    -------
    numpy.ndarray
        ``(C, size, size)``; ``img`` itself when it already has that size.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.images import resize_cell
    >>> resize_cell(np.full((1, 2, 2), 100, np.uint8), 4)
    array([[[100, 100, 100, 100],
            [100, 100, 100, 100],
            [100, 100, 100, 100],
            [100, 100, 100, 100]]], dtype=uint8)
    """
    from skimage.transform import resize

    if img.shape[1:] == (size, size):
        return img
    out = resize(
        img.astype(np.float64),
        (img.shape[0], size, size),
        order=1,
        preserve_range=True,
        anti_aliasing=size < max(img.shape[1:]),
    )
    return _cast_like(out, img.dtype)


def crop_or_pad(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or pad a ``C x H x W`` cell to ``C x size x size``.

    Padding uses each channel's median border value, so the added margin looks like background
    rather than a black frame.

    Parameters
    ----------
    img : numpy.ndarray
        The cell, ``(C, H, W)``.
    size : int
        Output height and width in pixels; each axis is cropped or padded on its own.

    Returns
    -------
    numpy.ndarray
        ``(C, size, size)``, same dtype, contiguous.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.io.images import crop_or_pad
    >>> crop_or_pad(np.arange(16).reshape(1, 4, 4), 2)
    array([[[ 5,  6],
            [ 9, 10]]])
    >>> crop_or_pad(np.ones((1, 1, 1), np.uint8), 3)[0]
    array([[1, 1, 1],
           [1, 1, 1],
           [1, 1, 1]], dtype=uint8)
    """
    c, h, w = img.shape
    out = img
    if h > size:
        top = (h - size) // 2
        out = out[:, top : top + size]
    if w > size:
        left = (w - size) // 2
        out = out[:, :, left : left + size]
    ph, pw = size - out.shape[1], size - out.shape[2]
    if ph > 0 or pw > 0:
        border = np.concatenate([out[:, 0, :], out[:, -1, :], out[:, :, 0], out[:, :, -1]], axis=1)
        fill = np.median(border, axis=1)
        padded = np.empty((c, size, size), dtype=img.dtype)
        padded[:] = _cast_like(fill, img.dtype)[:, None, None]
        top, left = max(ph, 0) // 2, max(pw, 0) // 2
        padded[:, top : top + out.shape[1], left : left + out.shape[2]] = out
        out = padded
    return np.ascontiguousarray(out)
