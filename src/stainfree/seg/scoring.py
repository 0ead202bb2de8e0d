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

import numpy as np
import pandas as pd

from ..utils import StainfreeError

THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def object_overlaps(truth: np.ndarray, predicted: np.ndarray):
    """Pairs (true id, predicted id) that overlap, their overlaps in pixels, every object's area
    and the ids present in each image."""
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(predicted).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {np.shape(truth)} and {np.shape(predicted)}")
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
    t_area, p_area = np.bincount(t), np.bincount(p)
    return pairs, inter, t_area, p_area, np.unique(t[t > 0]), np.unique(p[p > 0])


def match_counts(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Counts behind every score of one field (see the module docstring).

    Examples
    --------
    One cell found exactly, one split in two halves, one missed, and a false object:

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
    """F1, precision, recall, AP (0.5-0.95), mean matched IoU, splits and merges from
    :func:`match_counts` (of one field, or summed over several with :func:`pool_counts`).

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
    """Sum :func:`match_counts` of several fields."""
    return {
        "true_objects": sum(c["true_objects"] for c in many),
        "predicted_objects": sum(c["predicted_objects"] for c in many),
        "tp": {t: sum(c["tp"][t] for c in many) for t in THRESHOLDS},
        "matched_iou_sum": sum(c["matched_iou_sum"] for c in many),
        "split": sum(c["split"] for c in many),
        "merged": sum(c["merged"] for c in many),
    }


def segmentation_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """All scores of one field: :func:`scores_from_counts` of :func:`match_counts`."""
    return scores_from_counts(match_counts(truth, predicted))


def outline_overlay(image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray, *, max_size: int = 1024) -> np.ndarray:
    """An RGB uint8 picture of a field (first channel, 1-99.5 percentile stretch) with the true
    outlines in green and the predicted ones in magenta (white where they coincide), shrunk so
    its longer side is at most ``max_size``.

    >>> rgb = outline_overlay(np.zeros((1, 6, 6)), np.pad(np.ones((2, 2), int), 2), np.pad(np.ones((2, 2), int), 2))
    >>> rgb.shape, rgb[2, 2].tolist(), rgb[0, 0].tolist()
    ((6, 6, 3), [255, 255, 255], [0, 0, 0])
    """
    from .model import normalise_field, resize_labels
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

    A predicted object matches a true one when their IoU exceeds ``iou`` (above 0.5 a match is
    necessarily one-to-one).

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


def labelled_scores(table: pd.DataFrame, classes: Sequence[str], positive: str | None = None) -> dict:
    """:func:`stainfree.eval.metrics.classification_metrics` of the cells with a ``label`` (each
    class's recall, i.e. sensitivity, and specificity among them); ``sensitivity`` and
    ``specificity`` at the top level refer to ``positive``.

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
