"""What the interactive views of report.html show: a stratified sample of cells, their thumbnails
packed into compact sprite sheets, and the cells each gallery picks.

Plain functions on arrays; :mod:`stainfree.report.interactive` turns them into HTML.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

#: Above this many cells the interactive views show a stratified sample of this size (and say so).
MAX_CELLS = 20_000
#: Side of a thumbnail, in pixels, per channel.
THUMB_SIZE = 32
#: At most this many channels are shown, side by side, each scaled to its own range.
MAX_THUMB_CHANNELS = 3
#: Thumbnails per row and per column of a sprite sheet (a sheet holds up to 1024 cells, so the page
#: decodes a small image for the first hover on a sheet).
SHEET_TILES = 32


# ---------------------------------------------------------------------- which cells
def stratified_sample(strata, n_max: int = MAX_CELLS, *, random_state: int = 0) -> np.ndarray:
    """Positions of at most ``n_max`` cells, drawn so that every stratum keeps its share and at
    least one cell (as far as ``n_max`` allows).

    Parameters
    ----------
    strata : array-like
        One value per cell (a class, a cluster); missing values form a stratum of their own.
    n_max : int, default :data:`MAX_CELLS`
        The largest sample.
    random_state : int, default 0
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        Sorted positions; all cells when there are no more than ``n_max``.

    Examples
    --------
    >>> from stainfree.pl.interactive import stratified_sample
    >>> strata = ["a"] * 90 + ["b"] * 9 + ["c"]
    >>> keep = stratified_sample(strata, 10)
    >>> len(keep), sorted({strata[i] for i in keep}), sum(strata[i] == "a" for i in keep)
    (10, ['a', 'b', 'c'], 7)
    """
    codes = pd.Series(strata, dtype="object").fillna("(none)").astype(str).to_numpy()
    n = len(codes)
    if n <= n_max:
        return np.arange(n)
    levels, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    quota = np.zeros(len(levels), np.int64)
    quota[np.argsort(-counts, kind="stable")[:n_max]] = 1  # every stratum first, the largest when there are too many
    left, pool = n_max - quota.sum(), counts - quota
    ideal = pool * left / max(pool.sum(), 1)
    quota += np.floor(ideal).astype(np.int64)
    for k in np.argsort(-(ideal - np.floor(ideal)), kind="stable")[: n_max - quota.sum()]:  # largest remainders
        quota[k] += 1
    rng = np.random.default_rng(random_state)
    picked = [rng.choice(np.flatnonzero(inverse == k), size=int(q), replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(picked))


def _as_text(values) -> np.ndarray:
    """Values as an object array of str, missing values as ``None``."""
    series = pd.Series(np.asarray(values, dtype=object))
    return series.where(series.isna(), series.astype(str)).where(series.notna(), None).to_numpy(dtype=object)


def top_by_score(labels, scores: pd.DataFrame, n: int = 12) -> dict[str, np.ndarray]:
    """Per class, the cells of that class that the classifier scores highest for it, best first.

    Parameters
    ----------
    labels : array-like
        The true class of each cell (missing: the cell is in no gallery).
    scores : pandas.DataFrame
        One column per class (its score, such as a probability), one row per cell.
    n : int, default 12
        Cells per class.

    Returns
    -------
    dict
        Class name to positions, in descending order of score.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.pl.interactive import top_by_score
    >>> scores = pd.DataFrame({"a": [0.9, 0.2, 0.6, 0.7], "b": [0.1, 0.8, 0.4, 0.3]})
    >>> {k: v.tolist() for k, v in top_by_score(["a", "b", "a", "b"], scores, n=2).items()}
    {'a': [0, 2], 'b': [1, 3]}
    """
    labels = _as_text(labels)
    out = {}
    for cls in scores.columns:
        members = np.flatnonzero(labels == str(cls))
        order = np.argsort(-scores[cls].to_numpy()[members], kind="stable")
        out[str(cls)] = members[order[:n]]
    return out


def confidently_wrong(labels, scores: pd.DataFrame, n: int = 24) -> np.ndarray:
    """The misclassified cells whose predicted class got the highest score, most confident first.

    Parameters
    ----------
    labels : array-like
        The true class of each cell (missing: never counted as wrong).
    scores : pandas.DataFrame
        One column per class; the prediction is the column with the highest score.
    n : int, default 24
        The most cells returned.

    Returns
    -------
    numpy.ndarray
        Positions of wrongly predicted cells, by descending score of the wrong class.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.pl.interactive import confidently_wrong
    >>> scores = pd.DataFrame({"a": [0.9, 0.2, 0.6, 0.95], "b": [0.1, 0.8, 0.4, 0.05]})
    >>> confidently_wrong(["a", "a", "b", "b"], scores).tolist()
    [3, 1, 2]
    """
    values = scores.to_numpy(np.float64)
    best = values.argmax(axis=1)
    predicted = np.asarray(scores.columns.astype(str))[best]
    labels = _as_text(labels)
    wrong = np.flatnonzero(~pd.isna(labels) & (labels != predicted))
    confidence = values[wrong, best[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:n]]


def nearest_centre(x: np.ndarray, clusters, n: int = 12) -> dict[str, np.ndarray]:
    """Per cluster, its cells nearest to the cluster's mean in the embedding, nearest first.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, D)
        The embedding.
    clusters : array-like
        Each cell's cluster (missing: the cell is in no gallery).
    n : int, default 12
        Cells per cluster.

    Returns
    -------
    dict
        Cluster name to positions (Euclidean distance to the centre, ascending).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pl.interactive import nearest_centre
    >>> x = np.array([[0.0], [1.0], [2.0], [10.0], [14.0]])
    >>> {k: v.tolist() for k, v in nearest_centre(x, ["p", "p", "p", "q", "q"], n=2).items()}
    {'p': [1, 0], 'q': [3, 4]}
    """
    x = np.asarray(x, np.float64)
    clusters = pd.Series(np.asarray(clusters, dtype=object)).dropna().astype(str)
    out = {}
    for name, members in clusters.groupby(clusters).groups.items():
        members = np.asarray(members, dtype=np.int64)
        distance = np.linalg.norm(x[members] - x[members].mean(axis=0), axis=1)
        out[str(name)] = members[np.argsort(distance, kind="stable")[:n]]
    return out


# ---------------------------------------------------------------------- thumbnails
def channel_ranges(images: np.ndarray, *, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Each channel's display range: its ``low`` and ``high`` percentiles over the cells given.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, C, H, W)
        Any dtype (8-bit, 16-bit, float).
    low, high : float
        Percentiles mapped to black and white.

    Returns
    -------
    numpy.ndarray, shape (C, 2)

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pl.interactive import channel_ranges
    >>> images = np.stack([np.zeros((2, 2)), np.full((2, 2), 4000.0)])[None].repeat(2, 0)
    >>> images[1, 0] = 100
    >>> channel_ranges(images, low=0, high=100).tolist()
    [[0.0, 100.0], [4000.0, 4000.0]]
    """
    flat = np.moveaxis(np.asarray(images), 1, 0).reshape(images.shape[1], -1).astype(np.float64)
    return np.stack([np.percentile(flat, low, axis=1), np.percentile(flat, high, axis=1)], axis=1)


def thumbnails(images: np.ndarray, ranges: np.ndarray | None = None, *, size: int = THUMB_SIZE) -> np.ndarray:
    """Grey 8-bit thumbnails: each channel scaled to its own range, resized to ``size`` and set
    side by side (up to :data:`MAX_THUMB_CHANNELS` channels).

    Parameters
    ----------
    images : numpy.ndarray, shape (N, C, H, W)
        Any dtype.
    ranges : numpy.ndarray, shape (C, 2), optional
        Black and white level of each channel; default :func:`channel_ranges` of ``images``.
    size : int, default :data:`THUMB_SIZE`
        Side of each channel's tile.

    Returns
    -------
    numpy.ndarray, shape (N, size, size * K), uint8 (K: the channels shown)

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.pl.interactive import thumbnails
    >>> images = np.zeros((2, 4, 8, 8), np.uint16)
    >>> images[:, 1, :, 4:] = 65535
    >>> t = thumbnails(images, size=4)
    >>> t.shape, t.dtype.name, t[0, 0, :4].tolist(), t[0, 0, 4:8].tolist()
    ((2, 4, 12), 'uint8', [0, 0, 0, 0], [0, 0, 255, 255])
    """
    from PIL import Image

    images = np.asarray(images)[:, :MAX_THUMB_CHANNELS]
    ranges = channel_ranges(images) if ranges is None else np.asarray(ranges, np.float64)[:MAX_THUMB_CHANNELS]
    lo = ranges[:, 0][None, :, None, None]
    span = np.maximum(ranges[:, 1] - ranges[:, 0], 1e-12)[None, :, None, None]
    scaled = np.round(np.clip((images.astype(np.float32) - lo) / span, 0, 1) * 255).astype(np.uint8)
    n, c, h, w = scaled.shape
    out = np.empty((n, size, size * c), np.uint8)
    resample = Image.BOX if size <= min(h, w) else Image.BILINEAR  # box: the mean of the pixels each one covers
    for i in range(n):
        for k in range(c):
            tile = scaled[i, k] if (h, w) == (size, size) else np.asarray(Image.fromarray(scaled[i, k]).resize((size, size), resample))
            out[i, :, k * size : (k + 1) * size] = tile
    return out


def sprite_sheets(thumbs: np.ndarray, *, tiles: int = SHEET_TILES, quality: int = 80) -> list[bytes]:
    """Pack thumbnails into WebP sprite sheets of ``tiles`` x ``tiles`` thumbnails each.

    Thumbnail ``i`` lies on sheet ``i // tiles**2``, at row ``(i % tiles**2) // tiles`` and
    column ``i % tiles`` (in thumbnails). Lossy WebP at ``quality`` 80 takes about 150 bytes
    per 32 x 32 cell (Jurkat brightfield), a quarter of PNG.

    Parameters
    ----------
    thumbs : numpy.ndarray, shape (N, h, w), uint8
        From :func:`thumbnails`.
    tiles : int, default :data:`SHEET_TILES`
        Thumbnails per row and per column of a sheet.
    quality : int, default 80
        WebP quality (100: lossless).

    Returns
    -------
    list of bytes
        The WebP files, ``ceil(cells / tiles**2)`` of them.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from PIL import Image
    >>> from stainfree.pl.interactive import sprite_sheets
    >>> sheets = sprite_sheets(np.zeros((5, 8, 16), np.uint8), tiles=2)
    >>> len(sheets), Image.open(io.BytesIO(sheets[0])).size, Image.open(io.BytesIO(sheets[1])).size
    (2, (32, 16), (32, 8))
    """
    from PIL import Image

    n, h, w = thumbs.shape
    per_sheet = tiles * tiles
    out = []
    for start in range(0, max(n, 1), per_sheet):
        chunk = thumbs[start : start + per_sheet]
        rows = -(-max(len(chunk), 1) // tiles)
        sheet = np.zeros((rows * h, tiles * w), np.uint8)
        for j, thumb in enumerate(chunk):
            r, c = divmod(j, tiles)
            sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = thumb
        buffer = io.BytesIO()
        Image.fromarray(sheet).save(buffer, "WEBP", quality=quality, lossless=quality >= 100, method=4)
        out.append(buffer.getvalue())
    return out


def cell_thumbnails(cells, positions, *, size: int = THUMB_SIZE, batch: int = 2048) -> np.ndarray:
    """:func:`thumbnails` of some cells of a CellSet, read in batches; each channel's range comes
    from the first batch.

    Parameters
    ----------
    cells : CellSet
        The cells.
    positions : array-like of int
        Which cells, in the order wanted.
    size : int, default :data:`THUMB_SIZE`
        As for :func:`thumbnails`.
    batch : int, default 2048
        Cells read at once.

    Returns
    -------
    numpy.ndarray, shape (len(positions), size, size * shown channels), uint8

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.pl.interactive import cell_thumbnails
    >>> cell_thumbnails(make_cells(3, size=24), [5, 0], size=16).shape
    (2, 16, 16)
    """
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")  # read in storage order, chunk by chunk
    out = np.empty((len(positions), size, size * min(cells.shape[1], MAX_THUMB_CHANNELS)), np.uint8)
    ranges = None
    for start in range(0, len(positions), batch):
        take = order[start : start + batch]
        images = cells.read(positions[take])[:, :MAX_THUMB_CHANNELS]
        ranges = channel_ranges(images) if ranges is None else ranges
        out[take] = thumbnails(images, ranges, size=size)
    return out
