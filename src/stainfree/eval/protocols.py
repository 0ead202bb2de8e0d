"""Protocols: how cells are split into training and test sets (folds, groups, cross-group pools)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..utils import StainfreeError

PROTOCOLS = ("kfold", "holdout", "group-kfold", "leave-one-group-out", "cross-group", "audit-groups")
GROUP_PROTOCOLS = ("group-kfold", "leave-one-group-out", "cross-group", "audit-groups")


@dataclasses.dataclass
class Split:
    """One train/test split of a protocol.

    Attributes
    ----------
    name : str
        The split's name: ``fold1``, ``r2f3`` (repeat 2, fold 3), ``holdout1``, the held-out group,
        or the training pool's groups joined by ``+``.
    train, test : ndarray of int
        Positions of the training and test cells.
    repeat : int, default 0
        Which repeat of the protocol the split belongs to.
    pool_size : int, default 0
        Cross-group only: groups per class (or groups) in the training pool.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.eval.protocols import Split
    >>> s = Split("fold1", train=np.array([0, 1]), test=np.array([2]))
    >>> s.name, s.test.tolist(), s.repeat
    ('fold1', [2], 0)
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    repeat: int = 0
    pool_size: int = 0  # cross-group: groups per class (or groups) in the training pool


# ---------------------------------------------------------------------- splits
def make_folds(
    labels: Sequence, *, groups: Sequence | None = None, n_folds: int = 5, random_state: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits, or stratified group k-fold splits when ``groups`` is given.

    Parameters
    ----------
    labels : sequence
        The class of each cell.
    groups : sequence, optional
        The group of each cell (flask, field...); every group then falls in one test fold.
    n_folds : int, default 5
        Number of folds.
    random_state : int, default 0
        Seed of the shuffle before splitting.

    Returns
    -------
    list of (ndarray, ndarray)
        Positions of the training and test cells of each fold.

    Raises
    ------
    StainfreeError
        With fewer than 2 folds, a class with fewer cells than folds (without groups), cells
        without a group, or fewer groups than folds.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.eval.protocols import make_folds
    >>> [test.tolist() for _, test in make_folds(["a", "b"] * 3, n_folds=3)]
    [[3, 4], [2, 5], [0, 1]]
    >>> groups = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    >>> folds = make_folds(["a", "b"] * 4, groups=groups, n_folds=2)
    >>> sorted(sorted(groups[test].tolist()) for _, test in folds)
    [[1, 1, 4, 4], [2, 2, 3, 3]]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels, dtype=object).astype(str)
    if n_folds < 2:
        raise StainfreeError(f"need at least 2 folds, got {n_folds}")
    if groups is None:
        counts = pd.Series(labels).value_counts()
        if counts.min() < n_folds:
            raise StainfreeError(f"class {counts.idxmin()!r} has {counts.min()} cell(s), fewer than the {n_folds} folds; use fewer folds")
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels)]
    groups = _check_groups(groups, min_groups=n_folds, what=f"{n_folds} folds")
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


class TuningSplit(NamedTuple):
    """Positions of the cells that may tune defaults and of the cells that a figure reports."""

    tune: np.ndarray
    report: np.ndarray


def tuning_split(labels: Sequence, *, groups: Sequence | None = None, fraction: float = 0.25, random_state: int = 0) -> TuningSplit:
    """Set a fixed share of the cells (or of the groups) apart for choosing defaults.

    Anything chosen by looking at results (a default, a threshold, a model) is chosen on the
    ``tune`` cells only; a reported figure is measured on the ``report`` cells only, so it never
    judges the cells that shaped it. The tuning cells are the first of ``round(1 / fraction)``
    stratified folds (group folds when ``groups`` is given, so a group is never split), so the
    split is the same on every run with the same seed.

    Parameters
    ----------
    labels : sequence
        The class of each cell.
    groups : sequence, optional
        The group of each cell (flask, field...); whole groups go to one side.
    fraction : float, default 0.25
        The share set apart for tuning, between 0 and 0.5.
    random_state : int, default 0
        Seed of the shuffle before splitting.

    Returns
    -------
    TuningSplit
        ``tune`` and ``report``, sorted positions that together cover every cell once.

    Raises
    ------
    StainfreeError
        For a fraction outside (0, 0.5], or too few cells or groups (as :func:`make_folds`).

    Examples
    --------
    >>> from stainfree.eval.protocols import tuning_split
    >>> split = tuning_split(["a", "b"] * 4, fraction=0.25)
    >>> split.tune.tolist(), split.report.tolist()
    ([1, 6], [0, 2, 3, 4, 5, 7])
    """
    if not 0 < fraction <= 0.5:
        raise StainfreeError(f"the tuning fraction must lie in (0, 0.5], got {fraction}")
    train, test = make_folds(labels, groups=groups, n_folds=max(2, round(1 / fraction)), random_state=random_state)[0]
    return TuningSplit(tune=np.sort(test), report=np.sort(train))


def _check_groups(groups, *, min_groups: int, what: str) -> np.ndarray:
    groups = np.asarray(groups, dtype=object)
    if pd.isna(groups).any():
        raise StainfreeError("some cells have no value in the group column")
    groups = groups.astype(str)
    n = len(set(groups))
    if n < 2:
        raise StainfreeError(f"the group column has only one value ({groups[0]!r}); group-aware evaluation needs at least 2 groups")
    if n < min_groups:
        raise StainfreeError(f"only {n} groups for {what}; use fewer folds")
    return groups


def _pool_parts(g: np.ndarray, labels: np.ndarray) -> tuple[list[list[str]], list[np.ndarray]]:
    """The groups a cross-group pool draws from: one list per class when every group holds one
    class (each flask one cell line, as in Yao et al.; a pool of size k then takes k groups of
    every class, k = 1 being the flask pairs), else a single list of every group; and for each
    list, its groups' cells per class (groups x classes)."""
    counts = pd.crosstab(g, labels)
    if not ((counts > 0).sum(axis=1) == 1).all():
        return [list(counts.index)], [counts.to_numpy()]
    by_class: dict[str, list[str]] = {}
    for value, row in counts.iterrows():
        by_class.setdefault(row.idxmax(), []).append(value)
    if len(by_class) < 2:
        raise StainfreeError("cross-group needs groups of at least two classes")
    parts = list(by_class.values())
    return parts, [counts.loc[p].to_numpy() for p in parts]


def _count_pools(parts: list[list[str]], size: int) -> int:
    """Pools of ``size`` groups per part that leave at least one group to test on."""
    count = math.prod(math.comb(len(p), size) for p in parts)
    return count - int(all(len(p) == size for p in parts))


def _draw_pools(parts, part_counts, size: int, n: int, rng: np.random.Generator, min_cells: int) -> list[tuple[str, ...]]:
    """Up to ``n`` distinct usable pools of ``size`` groups per part, without listing the others:
    a few thousand groups cost no more than ten. A pool is usable when it leaves a group to test
    on and holds ``min_cells`` cells of every class."""

    def usable(key) -> bool:
        cells = sum(c[list(chosen)].sum(axis=0) for chosen, c in zip(key, part_counts))
        return any(len(chosen) < len(p) for chosen, p in zip(key, parts)) and cells.min() >= min_cells

    if _count_pools(parts, size) <= 4 * n:  # few enough to list: take a random n of the usable ones
        combos = itertools.product(*(itertools.combinations(range(len(p)), size) for p in parts))
        keys = [k for k in combos if usable(k)]
        keys = keys if len(keys) <= n else [keys[i] for i in sorted(rng.choice(len(keys), n, replace=False))]
    else:  # far more pools than wanted: draw until n distinct usable ones (or give up when they are rare)
        seen: set[tuple] = set()
        for _ in range(100 * n + 1000):
            key = tuple(tuple(sorted(rng.choice(len(p), size, replace=False).tolist())) for p in parts)
            if key not in seen and usable(key):
                seen.add(key)
                if len(seen) == n:
                    break
        keys = sorted(seen)
    return [tuple(p[i] for chosen, p in zip(key, parts) for i in chosen) for key in keys]


def cross_group_pools(
    groups: Sequence, labels: Sequence, *, max_pools: int = 20, max_pool_size: int = 3, min_cells: int = 2, random_state: int = 0
) -> list[tuple[int, tuple[str, ...]]]:
    """The training pools of the cross-group protocol, drawn lazily to a budget.

    Pool sizes run from 1 to ``max_pool_size`` groups (per class when every group holds one
    class, as each flask one cell line in Yao et al.: size 1 is then the flask pairs). The budget
    of ``max_pools`` pools (one training each) is shared evenly over the sizes, a size with fewer
    pools passing the rest on to the larger ones; within a size the pools are drawn at random,
    without listing every combination, so 62 groups cost no more than 6. Only pools that hold
    ``min_cells`` cells of every class are drawn (a classifier trains on two or more per class).

    Parameters
    ----------
    groups, labels : sequence
        The group and the class of each cell.
    max_pools : int, default 20
        At most this many pools in all.
    max_pool_size : int, default 3
        The largest pool size.
    min_cells : int, default 2
        The fewest training cells of each class a pool may hold.
    random_state : int, default 0
        Seed of the draw: the same seed gives the same pools.

    Returns
    -------
    list of (int, tuple of str)
        Each pool's size and its groups, by size, then in order of the groups.

    Raises
    ------
    StainfreeError
        When ``max_pools`` or ``max_pool_size`` is below 1, or every group holds one class and
        they are all of the same class.

    Examples
    --------
    >>> from stainfree.eval.protocols import cross_group_pools
    >>> groups = ["A1", "A1", "A2", "A2", "A3", "B1", "B1", "B2", "B2", "B3", "B3"]
    >>> pools = cross_group_pools(groups, list("aaaaabbbbbb"), max_pools=4)  # A3 holds one cell
    >>> [(size, "+".join(pool)) for size, pool in pools]
    [(1, 'A1+B1'), (1, 'A2+B1'), (2, 'A1+A3+B2+B3'), (2, 'A2+A3+B2+B3')]
    """
    if max_pools < 1 or max_pool_size < 1:
        raise StainfreeError(f"max_pools and max_pool_size must be at least 1, got {max_pools} and {max_pool_size}")
    g = np.asarray(groups, dtype=object).astype(str)
    parts, part_counts = _pool_parts(g, np.asarray(labels, dtype=object).astype(str))
    sizes = [k for k in range(1, max_pool_size + 1) if k <= min(map(len, parts)) and _count_pools(parts, k) > 0]
    rng = np.random.default_rng(random_state)
    out: list[tuple[int, tuple[str, ...]]] = []
    budget = max_pools
    for i, size in enumerate(sizes):
        quota = -(-budget // (len(sizes) - i))  # an even share of what is left, rounded up
        pools = _draw_pools(parts, part_counts, size, quota, rng, min_cells) if quota else []
        out += [(size, pool) for pool in pools]
        budget -= len(pools)
    return out


def make_splits(
    protocol: str,
    labels: Sequence,
    *,
    groups: Sequence | None = None,
    n_folds: int = 5,
    repeats: int = 1,
    random_state: int = 0,
    max_pools: int = 20,
    max_pool_size: int = 3,
) -> list[Split]:
    """The train/test splits of a protocol.

    ``kfold``: stratified k-fold (``repeats`` times, reshuffled); ``holdout``: a stratified 80/20
    split (``repeats`` times); ``group-kfold``: stratified group k-fold, every group in one test
    fold; ``leave-one-group-out``: one split per group; ``cross-group``: train on pools of
    growing size and test on the other groups (when every group holds one class, as each flask
    one cell line in Yao et al., a pool of size k takes k groups of every class). ``audit-groups``
    has no splits of its own here (:func:`stainfree.eval.evaluate.evaluate` runs it).

    Parameters
    ----------
    protocol : str
        One of :data:`PROTOCOLS`.
    labels : sequence
        The class of each cell.
    groups : sequence, optional
        The group of each cell; needed by the group protocols (:data:`GROUP_PROTOCOLS`).
    n_folds : int, default 5
        Folds of ``kfold`` and ``group-kfold``.
    repeats : int, default 1
        Repeats of ``kfold``, ``holdout`` and ``group-kfold``.
    random_state : int, default 0
        Seed of the shuffles and of the choice of cross-group pools (repeat r uses ``random_state + r``).
    max_pools : int, default 20
        Cross-group: at most this many training pools in all, drawn at random over the pool
        sizes (:func:`cross_group_pools`).
    max_pool_size : int, default 3
        Cross-group: the largest pool size.

    Returns
    -------
    list of Split
        The splits, in order.

    Raises
    ------
    StainfreeError
        For an unknown protocol, a group protocol without ``groups``, ``repeats`` below 1, or
        classes or groups too few for the protocol.

    Examples
    --------
    >>> from stainfree.eval.protocols import make_splits
    >>> splits = make_splits("leave-one-group-out", ["a", "b", "a", "b"], groups=["f1", "f1", "f2", "f2"])
    >>> [(s.name, s.train.tolist(), s.test.tolist()) for s in splits]
    [('f1', [2, 3], [0, 1]), ('f2', [0, 1], [2, 3])]
    >>> [s.name for s in make_splits("kfold", ["a", "b"] * 4, n_folds=2, repeats=2)]
    ['r1f1', 'r1f2', 'r2f1', 'r2f2']
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    if protocol not in PROTOCOLS:
        raise StainfreeError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    labels = np.asarray(labels, dtype=object).astype(str)
    if protocol in GROUP_PROTOCOLS and groups is None:
        raise StainfreeError(f"protocol {protocol} needs a group column (--group)")
    if repeats < 1:
        raise StainfreeError(f"repeats must be at least 1, got {repeats}")
    splits: list[Split] = []
    if protocol == "kfold":
        for r in range(repeats):
            for k, (tr, te) in enumerate(make_folds(labels, n_folds=n_folds, random_state=random_state + r), 1):
                splits.append(Split(f"r{r + 1}f{k}" if repeats > 1 else f"fold{k}", tr, te, r))
    elif protocol == "holdout":
        counts = pd.Series(labels).value_counts()
        if counts.min() < 2:
            raise StainfreeError(f"class {counts.idxmin()!r} has only one cell; a holdout split needs at least 2 per class")
        splitter = StratifiedShuffleSplit(n_splits=repeats, test_size=0.2, random_state=random_state)
        for r, (tr, te) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            splits.append(Split(f"holdout{r + 1}", tr, te, r))
    elif protocol == "group-kfold":
        for r in range(repeats):
            for k, (tr, te) in enumerate(make_folds(labels, groups=groups, n_folds=n_folds, random_state=random_state + r), 1):
                splits.append(Split(f"r{r + 1}f{k}" if repeats > 1 else f"fold{k}", tr, te, r))
    elif protocol == "leave-one-group-out":
        g = _check_groups(groups, min_groups=2, what="leave-one-group-out")
        for value in sorted(set(g)):
            splits.append(Split(f"{value}", np.flatnonzero(g != value), np.flatnonzero(g == value)))
    elif protocol == "cross-group":
        g = _check_groups(groups, min_groups=2, what="cross-group")
        for size, pool in cross_group_pools(g, labels, max_pools=max_pools, max_pool_size=max_pool_size, random_state=random_state):
            in_pool = np.isin(g, pool)
            splits.append(Split("+".join(pool), np.flatnonzero(in_pool), np.flatnonzero(~in_pool), pool_size=size))
    return splits


def stratified_subsample(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the positions ``idx`` within each class (at least 2 per class), sorted.

    >>> import numpy as np
    >>> from stainfree.eval.protocols import stratified_subsample
    >>> stratified_subsample(np.arange(8), np.array(list("aaaabbbb")), 0.5, seed=0).size
    4
    """
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        n = max(2, int(round(fraction * len(members))))
        keep.append(rng.choice(members, min(n, len(members)), replace=False))
    return np.sort(np.concatenate(keep))
