"""Scoring instance segmentations against a ground truth.

For a field, every true object is matched to predicted objects through their pixel overlaps:

- F1, precision and recall at IoU 0.5 (a match above 0.5 is necessarily one-to-one);
- average precision over IoU thresholds 0.5, 0.55, ..., 0.95, in the sense of the cell
  segmentation literature (cellpose, StarDist): at each threshold TP / (TP + FP + FN), then the
  mean over thresholds (there are no confidence scores to rank, unlike COCO's AP);
- the mean IoU of the matches at 0.5;
- split cells: true objects of which two or more predicted objects each lie mostly (more than
  half of their pixels) inside; merged cells: true objects more than half of which lies in a
  predicted object that also holds more than half of another true object.

Pooled figures sum the counts over fields before dividing (every cell weighs the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..utils import StainfreeError

#: The IoU thresholds of the average precision: 0.5, 0.55, ..., 0.95.
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


class Overlaps(NamedTuple):
    """What :func:`object_overlaps` finds; unpacks as a 6-tuple.

    Attributes
    ----------
    pairs : (2, n) int64 array
        Row 0 the true id, row 1 the predicted id, of each overlapping pair.
    intersections : (n,) int array
        Pixels each pair shares.
    true_area, predicted_area : int64 array
        Pixels of each id (indexed by id; entry 0 is the background).
    true_ids, predicted_ids : int64 array
        The object ids present in each image, sorted.
    """

    pairs: np.ndarray
    intersections: np.ndarray
    true_area: np.ndarray
    predicted_area: np.ndarray
    true_ids: np.ndarray
    predicted_ids: np.ndarray


def object_overlaps(truth: np.ndarray, predicted: np.ndarray) -> Overlaps:
    """The pixel overlaps of every true object with every predicted one.

    Parameters
    ----------
    truth, predicted : int array
        Instance labels of the same shape, 0 = background.

    Returns
    -------
    Overlaps
        The overlapping pairs, their overlaps in pixels, every object's area and the ids present.

    Raises
    ------
    ValueError
        When the two images differ in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import object_overlaps
    >>> o = object_overlaps(np.array([[1, 1, 0, 2]]), np.array([[3, 0, 0, 3]]))
    >>> o.pairs.tolist(), o.intersections.tolist(), o.predicted_area.tolist(), o.true_ids.tolist()
    ([[1, 2], [3, 3]], [1, 1], [2, 0, 0, 2], [1, 2])
    """
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(predicted).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {np.shape(truth)} and {np.shape(predicted)}")
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
    t_area, p_area = np.bincount(t), np.bincount(p)
    return Overlaps(pairs, inter, t_area, p_area, np.unique(t[t > 0]), np.unique(p[p > 0]))


def match_counts(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Counts behind every score of one field (see the module docstring).

    Parameters
    ----------
    truth, predicted : int array
        Instance labels of the same shape, 0 = background.

    Returns
    -------
    dict
        ``true_objects``, ``predicted_objects``; ``tp``: true positives at each IoU of
        :data:`THRESHOLDS`; ``matched_iou_sum``: the summed IoU of the matches at 0.5;
        ``split`` and ``merged`` cells. Sum several with :func:`pool_counts`.

    Examples
    --------
    One cell found exactly, one split in two halves, one missed, and a false object:

    >>> import numpy as np
    >>> from stainfree.seg.scoring import match_counts
    >>> truth = np.array([[1, 1, 0, 2, 2, 2, 2, 0, 3]])
    >>> pred = np.array([[5, 5, 0, 6, 6, 7, 7, 8, 0]])
    >>> c = match_counts(truth, pred)
    >>> c["true_objects"], c["predicted_objects"], c["tp"][0.5], c["split"], c["merged"]
    (3, 4, 1, 1, 0)
    """
    pairs, inter, t_area, p_area, t_ids, p_ids = object_overlaps(truth, predicted)
    ious = inter / (t_area[pairs[0]] + p_area[pairs[1]] - inter) if len(inter) else np.zeros(0)
    tp = {t: int((ious > t).sum()) if t > 0.5 else int((ious > 0.5).sum()) for t in THRESHOLDS}
    matched = ious > 0.5
    mostly_in = inter > 0.5 * p_area[pairs[1]] if len(inter) else np.zeros(0, bool)  # predicted object lies mostly in the true one
    holds_most = inter > 0.5 * t_area[pairs[0]] if len(inter) else np.zeros(0, bool)  # true object lies mostly in the predicted one
    split = int((np.bincount(pairs[0][mostly_in], minlength=len(t_area)) >= 2).sum()) if len(inter) else 0
    merging = np.bincount(pairs[1][holds_most], minlength=len(p_area)) >= 2 if len(inter) else np.zeros(0, bool)
    merged = int(merging[pairs[1][holds_most]].sum()) if len(inter) else 0
    return {
        "true_objects": len(t_ids),
        "predicted_objects": len(p_ids),
        "tp": tp,
        "matched_iou_sum": float(ious[matched].sum()),
        "split": split,
        "merged": merged,
    }


def scores_from_counts(counts: dict) -> dict:
    """F1, precision, recall, AP, mean matched IoU, splits and merges from counts.

    Parameters
    ----------
    counts : dict
        :func:`match_counts` of one field, or summed over several with :func:`pool_counts`
        (then every cell weighs the same).

    Returns
    -------
    dict
        ``true_objects``, ``predicted_objects``, ``true_positives`` (at IoU 0.5), ``f1``,
        ``precision``, ``recall``, ``ap_50``, ``ap_75``, ``ap_50_95`` (the mean over
        :data:`THRESHOLDS`), ``mean_matched_iou``, ``split_cells`` and ``merged_cells``; ratios
        rounded to 4 decimals, 0.0 where undefined.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import match_counts, scores_from_counts
    >>> s = scores_from_counts(match_counts(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]])))
    >>> s["f1"], s["precision"], s["recall"], s["ap_50"], s["mean_matched_iou"]
    (0.6667, 1.0, 0.5, 0.5, 1.0)
    """
    n_true, n_pred = counts["true_objects"], counts["predicted_objects"]
    tp = counts["tp"][0.5]
    ap = {t: tp_t / (n_true + n_pred - tp_t) if n_true + n_pred - tp_t else 0.0 for t, tp_t in counts["tp"].items()}
    return {
        "true_objects": n_true,
        "predicted_objects": n_pred,
        "true_positives": tp,
        "f1": round(2 * tp / (n_true + n_pred), 4) if n_true + n_pred else 0.0,
        "precision": round(tp / n_pred, 4) if n_pred else 0.0,
        "recall": round(tp / n_true, 4) if n_true else 0.0,
        "ap_50": round(ap[0.5], 4),
        "ap_75": round(ap[0.75], 4),
        "ap_50_95": round(float(np.mean(list(ap.values()))), 4),
        "mean_matched_iou": round(counts["matched_iou_sum"] / tp, 4) if tp else 0.0,
        "split_cells": counts["split"],
        "merged_cells": counts["merged"],
    }


def pool_counts(many: list[dict]) -> dict:
    """Sum :func:`match_counts` of several fields, for pooled scores.

    Parameters
    ----------
    many : list of dict
        :func:`match_counts` of each field.

    Returns
    -------
    dict
        The same keys, summed (``tp`` threshold by threshold).

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import match_counts, pool_counts, scores_from_counts
    >>> a = match_counts(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))
    >>> b = match_counts(np.array([[1, 1]]), np.array([[4, 4]]))
    >>> pooled = pool_counts([a, b])
    >>> pooled["true_objects"], pooled["tp"][0.5], scores_from_counts(pooled)["recall"]
    (3, 2, 0.6667)
    """
    return {
        "true_objects": sum(c["true_objects"] for c in many),
        "predicted_objects": sum(c["predicted_objects"] for c in many),
        "tp": {t: sum(c["tp"][t] for c in many) for t in THRESHOLDS},
        "matched_iou_sum": sum(c["matched_iou_sum"] for c in many),
        "split": sum(c["split"] for c in many),
        "merged": sum(c["merged"] for c in many),
    }


def segmentation_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """All scores of one field: :func:`scores_from_counts` of :func:`match_counts`.

    Parameters
    ----------
    truth, predicted : int array
        Instance labels of the same shape, 0 = background.

    Returns
    -------
    dict
        As :func:`scores_from_counts`.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import segmentation_scores
    >>> s = segmentation_scores(np.array([[1, 1, 1, 0, 2]]), np.array([[1, 1, 0, 0, 2]]))
    >>> s["f1"], s["ap_50"], s["ap_75"], s["mean_matched_iou"]
    (1.0, 1.0, 0.3333, 0.8333)
    """
    return scores_from_counts(match_counts(truth, predicted))


def outline_overlay(image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray, *, max_size: int = 1024) -> np.ndarray:
    """An RGB picture of a field with the true outlines in green and the predicted ones in magenta.

    Outlines are white where they coincide. The field's first channel is shown, stretched
    between its 1 and 99.5 percentiles.

    Parameters
    ----------
    image : (C, H, W) or (H, W) array
        The field.
    truth : (H, W) int array or None
        The true instance labels; ``None`` draws the predicted outlines only.
    predicted : (H, W) int array
        The predicted instance labels.
    max_size : int, default 1024
        The picture is subsampled by a whole step until its longer side is at most this.

    Returns
    -------
    (h, w, 3) uint8 array

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import outline_overlay
    >>> rgb = outline_overlay(np.zeros((1, 6, 6)), np.pad(np.ones((2, 2), int), 2), np.pad(np.ones((2, 2), int), 2))
    >>> rgb.shape, rgb[2, 2].tolist(), rgb[0, 0].tolist()
    ((6, 6, 3), [255, 255, 255], [0, 0, 0])
    """
    from .resize import normalise_field, resize_labels
    from .targets import instance_boundaries

    image = np.asarray(image)
    channel = image[0] if image.ndim == 3 else image
    step = max(1, int(np.ceil(max(channel.shape) / max_size)))
    grey = np.clip(normalise_field(channel[None, ::step, ::step])[0], 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    shape = grey.shape
    pred_edge = instance_boundaries(resize_labels(predicted, shape))
    true_edge = instance_boundaries(resize_labels(truth, shape)) if truth is not None else np.zeros(shape, bool)
    rgb[true_edge & ~pred_edge] = (0, 220, 0)
    rgb[pred_edge & ~true_edge] = (255, 0, 255)
    rgb[true_edge & pred_edge] = (255, 255, 255)
    return rgb


def instance_scores(truth: np.ndarray, predicted: np.ndarray, *, iou: float = 0.5) -> dict:
    """Object-level precision, recall and F1 at an IoU threshold, and the mean IoU of matches.

    Parameters
    ----------
    truth, predicted : int array
        Instance labels of the same shape, 0 = background.
    iou : float, default 0.5
        A predicted object matches a true one when their IoU exceeds this (at 0.5 and above a
        match is necessarily one-to-one).

    Returns
    -------
    dict
        ``true_objects``, ``predicted_objects``, ``true_positives``, ``precision``, ``recall``,
        ``f1`` and ``mean_matched_iou`` (unrounded; 0.0 where undefined).

    Raises
    ------
    StainfreeError
        When ``iou`` is below 0.5.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.seg.scoring import instance_scores
    >>> t = np.array([[1, 1, 0, 2, 2]]); p = np.array([[3, 3, 0, 0, 4]])
    >>> s = instance_scores(t, p)
    >>> s["true_positives"], s["precision"], s["recall"], s["mean_matched_iou"]
    (1, 0.5, 0.5, 1.0)
    """
    if iou < 0.5:
        raise StainfreeError("instance matching needs an IoU threshold of at least 0.5")
    pairs, inter, t_area, p_area, t_ids, p_ids = object_overlaps(truth, predicted)
    ious = inter / (t_area[pairs[0]] + p_area[pairs[1]] - inter) if len(inter) else np.zeros(0)
    matched = ious > iou
    n_true, n_pred = len(t_ids), len(p_ids)
    tp = int(matched.sum())
    return {
        "true_objects": n_true,
        "predicted_objects": n_pred,
        "true_positives": tp,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_true if n_true else 0.0,
        "f1": 2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0,
        "mean_matched_iou": float(ious[matched].mean()) if tp else 0.0,
    }


def labelled_scores(table: pd.DataFrame, classes: Sequence[str], *, positive: str | None = None) -> dict:
    """Classification scores of the predicted cells that carry a known ``label``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per cell with columns ``label`` (the truth, missing where unknown) and
        ``predicted``; unlabelled rows are left out.
    classes : sequence of str
        The classes, in the order of the confusion matrix.
    positive : str, optional
        A class whose recall (sensitivity) and specificity are also given at the top level.

    Returns
    -------
    dict
        ``cells``, ``accuracy``, ``balanced_accuracy``, ``cohen_kappa``, ``per_class`` and
        ``confusion_matrix`` from :func:`stainfree.eval.metrics.classification_metrics`; with
        ``positive``, also ``positive_class``, ``sensitivity`` and ``specificity``.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.seg.scoring import labelled_scores
    >>> t = pd.DataFrame({"label": ["a", "a", "b", "b"], "predicted": ["a", "b", "b", "b"]})
    >>> s = labelled_scores(t, ["a", "b"], positive="b")
    >>> s["accuracy"], s["sensitivity"], s["specificity"]
    (0.75, 1.0, 0.5)
    """
    from ..eval.metrics import classification_metrics

    t = table.dropna(subset=["label"])
    m = classification_metrics(t["label"], t["predicted"], classes=classes)
    out = {"cells": m["n"], **{k: m[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa", "per_class", "confusion_matrix")}}
    if positive is not None:
        out["positive_class"] = positive
        out["sensitivity"] = m["per_class"][positive]["recall"]
        out["specificity"] = m["per_class"][positive]["specificity"]
    return out
