"""Choosing a classifier's configuration by inner cross-validation on training cells only.

:func:`search_config` trains a small, fixed family of candidate configurations
(:data:`CANDIDATES`) on inner folds of the cells it is given and returns the best. Called on each
outer training fold by :func:`~stainfree.eval.evaluate.evaluate`, it never sees the cells the
outer fold is judged on (nested cross-validation).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Collection, Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from ..ml.train import TrainConfig, fit
from ..utils import StainfreeError
from .protocols import make_folds

logger = logging.getLogger(__name__)

#: The candidates, plainest first: overrides of the data's default configuration
#: (:meth:`TrainConfig.for_data`). ``input_size="2x"`` doubles the default input side, up to
#: :data:`MAX_INPUT`. A candidate equal to an earlier one once the user's own settings are
#: applied is dropped.
CANDIDATES: dict[str, dict] = {
    "default": {},
    "lr_1e-3": {"lr": 1e-3},
    "flips": {"augment": "flips"},
    "cnn3_wide": {"model": "cnn3", "model_kwargs": {"widths": (32, 64, 64)}},
    "resnet_small": {"model": "resnet_small"},
    "resnet": {"model": "resnet"},
    "input_2x": {"input_size": "2x"},
}
#: Largest input side a candidate doubles to.
MAX_INPUT = 224
#: Inner-fold cost of a candidate relative to ``default``, until one of its fits is timed.
COST_HINT = {"cnn3_wide": 2.5, "resnet_small": 4.0, "resnet": 8.0, "input_2x": 4.0}


@dataclasses.dataclass
class Search:
    """How to search (:func:`search_config`; ``evaluate(search=...)``).

    Attributes
    ----------
    budget : float, optional
        Seconds for the whole search: in ``evaluate`` shared evenly over the outer splits and the
        final model. ``None``: no limit.
    inner_folds : int, default 3
        Inner folds on each set of training cells.
    fixed : collection of str
        :class:`TrainConfig` fields the user set; every candidate keeps them.
    candidates : sequence of str
        Names in :data:`CANDIDATES`, tried in this order.
    epochs_fraction : float, default 1.0
        Inner fits train this share of each candidate's epochs (at least one): below 1, a cheaper,
        lower-fidelity comparison that lets a budget reach more candidates. The chosen
        configuration keeps its full epochs.
    tolerance : float, default 0.01
        The chosen candidate is the first (plainest) whose inner balanced accuracy is within this
        of the best one's: near-ties go to the plainer configuration.
    """

    budget: float | None = None
    inner_folds: int = 3
    fixed: Collection[str] = ()
    candidates: Sequence[str] = tuple(CANDIDATES)
    epochs_fraction: float = 1.0
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        self.fixed, self.candidates = tuple(sorted(self.fixed)), tuple(self.candidates)

    def validate(self) -> None:
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown:
            raise StainfreeError(f"unknown search candidate {unknown[0]!r} (choose from {', '.join(CANDIDATES)})")
        if self.inner_folds < 2:
            raise StainfreeError(f"inner folds must be at least 2, got {self.inner_folds}")
        if not 0 < self.epochs_fraction <= 1:
            raise StainfreeError(f"the inner epochs fraction must be in (0, 1], got {self.epochs_fraction}")
        if self.budget is not None and not self.budget > 0:
            raise StainfreeError(f"search budget must be above 0 seconds, got {self.budget}")


@dataclasses.dataclass
class SearchResult:
    """What :func:`search_config` chose and why.

    Attributes
    ----------
    chosen : str
        The chosen candidate's name.
    config : TrainConfig
        Its configuration.
    scores : dict
        Per candidate: ``balanced_accuracy`` (pooled over the inner folds) and ``seconds``, or
        ``skipped`` with the reason.
    notes : list of str
        Why the search was cut short or not run, in words.
    seconds : float
        Time spent.
    """

    chosen: str
    config: TrainConfig
    scores: dict
    notes: list[str]
    seconds: float

    def record(self) -> dict:
        """A JSON-ready summary (``metrics.json``)."""
        config = {k: getattr(self.config, k) for k in ("model", "model_kwargs", "input_size", "augment", "lr")}
        return {"chosen": self.chosen, "config": config, "scores": self.scores, "notes": self.notes, "seconds": round(self.seconds, 1)}


def parse_budget(text: str | float | None) -> float | None:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or a number of seconds -> seconds; ``None`` stays ``None``.

    Examples
    --------
    >>> from stainfree.eval.search import parse_budget
    >>> parse_budget("10m"), parse_budget("90s"), parse_budget("1.5h"), parse_budget("45")
    (600.0, 90.0, 5400.0, 45.0)
    """
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise StainfreeError(f"budget {text!r} is not a duration such as 90s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def candidate_configs(
    base: TrainConfig, *, native_size: int, fixed: Collection[str] = (), names: Sequence[str] = tuple(CANDIDATES)
) -> dict[str, TrainConfig]:
    """Each named candidate applied to ``base``, the ``fixed`` fields kept as in ``base``;
    candidates that come out equal to an earlier one are dropped.

    Examples
    --------
    >>> from stainfree.eval.search import candidate_configs
    >>> from stainfree.ml.train import TrainConfig
    >>> candidate_configs(TrainConfig(), native_size=40)["input_2x"].input_size
    80
    >>> list(candidate_configs(TrainConfig(), native_size=40, fixed={"model", "input_size"}))
    ['default', 'lr_1e-3', 'flips']
    """
    out: dict[str, TrainConfig] = {}
    for name in names:
        changes = dict(CANDIDATES[name])
        if changes.get("input_size") == "2x":
            changes["input_size"] = min(2 * (base.input_size or native_size), MAX_INPUT)
        if changes.get("model") != base.model and "model" in changes:
            changes.setdefault("model_kwargs", {})
        changes = {k: v for k, v in changes.items() if k not in fixed and not (k == "model_kwargs" and "model" in fixed)}
        config = dataclasses.replace(base, **changes)
        if all(config != seen for seen in out.values()):
            out[name] = config
    return out


def _inner_folds(labels: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int) -> tuple[list, str | None]:
    """The inner folds, or ``None`` and the reason they cannot be made."""
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() < n_folds:
        return None, f"a class has {counts.min()} cells, fewer than {n_folds} inner folds"
    try:
        folds = make_folds(labels, groups=groups, n_folds=n_folds, random_state=seed)
    except StainfreeError as exc:
        return None, str(exc)
    classes = set(labels)
    if any(set(labels[train]) != classes for train, _ in folds):
        return (
            None,
            f"an inner training fold lacks a class ({len(set(groups))} groups)"
            if groups is not None
            else "an inner training fold lacks a class",
        )
    return folds, None


def search_config(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    channels: Sequence[str],
    base: TrainConfig,
    search: Search | None = None,
    groups: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    budget: float | None = None,
    tta: bool = True,
) -> SearchResult:
    """Choose a configuration for these cells by inner cross-validation on them alone.

    Each candidate of :func:`candidate_configs` is trained on every inner fold (group folds when
    ``groups`` is given) and scored by the balanced accuracy of its pooled inner predictions.
    Candidates run plainest first; one whose next inner fit would overrun the budget is skipped.
    The chosen one is the best, unless an earlier one is within ``search.tolerance`` of it.

    Parameters
    ----------
    images, labels : ndarray
        The cells (N x C x H x W) and their classes: only training cells.
    channels : sequence of str
        Channel names (for :func:`~stainfree.ml.train.fit`).
    base : TrainConfig
        The data's default configuration, which candidates modify.
    search : Search, optional
        Candidates, inner folds, fixed fields, tolerance; default :class:`Search`.
    groups : ndarray, optional
        Group of each cell: inner folds then keep groups whole.
    classes : sequence of str, optional
        Class order of the models.
    masks : ndarray, optional
        Cell masks, for configurations that black out the background.
    budget : float, optional
        Seconds for this search (default ``search.budget``). When not even one inner fit of the
        first candidate fits, it is chosen without comparison, and the notes say so.
    tta : bool, default True
        Score inner predictions with test-time augmentation, as the outer evaluation does.

    Returns
    -------
    SearchResult
        With a note, and ``base`` chosen, when the cells are too few for inner folds.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.eval.search import Search, search_config
    >>> from stainfree.ml.train import TrainConfig
    >>> cells = make_cells(6, size=24, random_state=0).load()
    >>> result = search_config(cells.images, cells.labels, channels=cells.channels, tta=False,
    ...     base=TrainConfig(epochs=1, batch_size=4), search=Search(candidates=["default", "flips"], inner_folds=2))
    >>> result.chosen in ("default", "flips"), sorted(result.scores)
    (True, ['default', 'flips'])
    """
    search = search or Search()
    search.validate()
    budget = search.budget if budget is None else budget
    t0 = time.monotonic()
    labels = np.asarray(labels).astype(str)
    configs = candidate_configs(base, native_size=images.shape[-1], fixed=search.fixed, names=search.candidates)
    first = next(iter(configs))
    folds, why_not = _inner_folds(labels, groups, search.inner_folds, base.seed)
    if folds is None:
        note = f"no search: {why_not}; the {first} configuration"
        logger.warning(note)
        return SearchResult(first, configs[first], {}, [note], time.monotonic() - t0)
    if len(configs) == 1:
        return SearchResult(first, configs[first], {}, [f"no search: the fixed options leave one candidate ({first})"], 0.0)
    scores: dict[str, dict] = {}
    notes: list[str] = []
    fit_seconds: dict[str, float] = {}
    for name, config in configs.items():
        predicted = np.empty(len(labels), dtype=object)
        started = time.monotonic()
        for k, (train, test) in enumerate(folds):
            estimate = fit_seconds.get(name, fit_seconds.get(first, 0.0) * COST_HINT.get(name, 1.0))
            if budget is not None and time.monotonic() - t0 + estimate > budget and (scores or k > 0):
                break
            t_fit = time.monotonic()
            clf, _ = fit(
                images[train],
                labels[train],
                channels=channels,
                config=dataclasses.replace(config, epochs=max(1, round(config.epochs * search.epochs_fraction))),
                classes=classes,
                masks=masks[train] if masks is not None else None,
            )
            predicted[test] = clf.predict(images[test], tta=tta)
            fit_seconds[name] = time.monotonic() - t_fit
            if name == first and budget is not None and fit_seconds[name] * len(folds) > budget:
                notes.append(
                    f"budget {budget:.0f} s is too small for one candidate (one inner fit of {first} took "
                    f"{fit_seconds[name]:.0f} s): {first} without comparison"
                )
                logger.warning(notes[-1])
                return SearchResult(first, config, {first: {"skipped": "budget"}}, notes, time.monotonic() - t0)
        else:
            ba = balanced_accuracy_score(labels, predicted.astype(str))
            scores[name] = {"balanced_accuracy": round(float(ba), 4), "seconds": round(time.monotonic() - started, 1)}
            logger.info("search: %s balanced accuracy %.3f on %d inner folds", name, ba, len(folds))
            continue
        scores[name] = {"skipped": "budget"}
    skipped = [n for n, s in scores.items() if "skipped" in s]
    if skipped:
        notes.append(f"budget reached: {', '.join(skipped)} not tried on every inner fold")
    scored = {n: s["balanced_accuracy"] for n, s in scores.items() if "balanced_accuracy" in s}
    chosen = first
    if scored:
        best = max(scored.values())
        chosen = next(n for n, ba in scored.items() if ba >= best - search.tolerance)
    return SearchResult(chosen, configs[chosen], scores, notes, time.monotonic() - t0)
