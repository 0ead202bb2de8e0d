"""Ranking features by how well they separate groups of cells."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import StainfreeError, read_parquet, refuse_partial

logger = logging.getLogger(__name__)
REST = "rest"


def js_divergence(a: np.ndarray, b: np.ndarray, *, bins: int = 32) -> float:
    """Jensen-Shannon divergence (natural log: 0 to ln 2) between two samples of one feature.

    Both samples are binned on one grid of ``bins`` equal bins between their pooled 0.5 and 99.5
    percentiles (values beyond fall in the end bins); NaNs are dropped.

    Parameters
    ----------
    a, b : array_like of float
        The feature's values in the two groups.
    bins : int, default 32
        Bins of the shared histogram grid.

    Returns
    -------
    float
        The divergence; NaN when either sample has no finite value.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.tl.rank import js_divergence
    >>> round(js_divergence(np.zeros(50), np.ones(50)), 4)  # no overlap: ln 2
    0.6931
    >>> js_divergence(np.arange(100.0), np.arange(100.0))
    0.0
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    pooled = np.concatenate([a, b])
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    if hi <= lo:
        lo, hi = pooled.min(), pooled.max()
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(np.clip(a, lo, hi), edges)[0] / len(a)
    q = np.histogram(np.clip(b, lo, hi), edges)[0] / len(b)
    m = (p + q) / 2

    def kl(x):
        keep = x > 0
        return float(np.sum(x[keep] * np.log(x[keep] / m[keep])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


@dataclasses.dataclass
class Separation:
    """The features that separate group ``a`` from group ``b``, ranked."""

    column: str
    a: str
    b: str
    n_a: int
    n_b: int
    ranking: pd.DataFrame  # feature, jsd, median_a, median_b, spearman_with_top, rank
    top: str
    partner: str | None
    pairs: pd.DataFrame | None = None  # feature_x, feature_y, svm_accuracy (optional)

    @classmethod
    def from_uns(cls, adata, key: str = "rank_features") -> Separation:
        """The result :func:`rank_features` stored in ``adata.uns[key]``."""
        if key not in adata.uns:
            raise StainfreeError(f"adata.uns has no {key!r}; run stainfree.tl.rank_features first")
        r = adata.uns[key]
        p = r["params"]
        pairs = r.get("pairs")
        return cls(p["groupby"], p["group"], p["reference"], int(r["n_a"]), int(r["n_b"]), r["ranking"], r["top"], r.get("partner"), pairs)

    def as_dict(self, n: int = 20) -> dict:
        return {
            "column": self.column,
            "a": self.a,
            "b": self.b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "top": self.top,
            "partner": self.partner,
            "ranking": self.ranking.head(n).replace({np.nan: None}).to_dict(orient="records"),
            "pairs": None if self.pairs is None else self.pairs.head(n).to_dict(orient="records"),
        }


def group_masks(values: pd.Series, a: str | None, b: str | None, *, column: str) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Boolean masks of two groups of cells; ``b`` may be ``"rest"`` (every other cell).

    Parameters
    ----------
    values : Series
        The group of each cell (missing values belong to neither group).
    a, b : str or None
        The two groups; with neither given the column must hold exactly two values (sorted).
    column : str
        The column's name, for messages.

    Returns
    -------
    tuple
        ``(a, b, in_a, in_b)``: the two names and their boolean masks.

    Raises
    ------
    StainfreeError
        When a group has no cells, the two are the same, or the column does not hold two values.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.tl.rank import group_masks
    >>> a, b, in_a, in_b = group_masks(pd.Series(["x", "y", "z", None]), "x", "rest", column="line")
    >>> in_a.tolist(), in_b.tolist()
    ([True, False, False, False], [False, True, True, False])
    """
    values = values.astype("string")
    present = values.dropna().unique().tolist()
    shown = ", ".join(map(str, sorted(present)[:12])) + (" ..." if len(present) > 12 else "")
    if a is None and b is None:
        if len(present) != 2:
            raise StainfreeError(
                f"column {column!r} has {len(present)} values ({shown}); name the two groups to compare, e.g. --groups {present[0] if present else 'A'},rest"
            )
        a, b = sorted(present)
    if a is None or b is None:
        raise StainfreeError("name two groups to compare, e.g. --groups A,B or --groups A,rest")
    in_a = (values == a).fillna(False).to_numpy(bool)
    in_b = (~in_a & values.notna().to_numpy(bool)) if b == REST else (values == b).fillna(False).to_numpy(bool)
    for name, mask in ((a, in_a), (b, in_b)):
        if not mask.any():
            raise StainfreeError(f"group {name!r} of column {column!r} has no cells (values: {shown})")
    if a == b:
        raise StainfreeError(f"the two groups are the same ({a!r})")
    return str(a), str(b), in_a, in_b


def rank_features(
    adata,
    groupby: str,
    *,
    group: str | None = None,
    reference: str | None = None,
    bins: int = 32,
    weak: float = 0.5,
    svm_top: int = 0,
    random_state: int = 0,
    key_added: str = "rank_features",
    copy: bool = False,
):
    """Rank every feature by how differently it is distributed in two groups of cells.

    The AnnData counterpart of ``sc.tl.rank_genes_groups`` for two groups: features are the
    variables, groups an ``obs`` column (cells are matched by their ``obs`` row, that is by
    ``cell_id`` in AnnData made by :func:`stainfree.pp.features_to_anndata`). Each feature's
    Jensen-Shannon divergence between the groups (:func:`js_divergence`) ranks it; the top
    feature gets a *partner*, the best-ranked feature that carries other information.

    Parameters
    ----------
    adata : AnnData
        Cells x features (``X``; NaN allowed).
    groupby : str
        The ``obs`` column that defines the groups (a cluster, class or condition).
    group, reference : str, optional
        The two groups; ``reference="rest"`` compares ``group`` with every other cell. With
        neither, the column must hold exactly two values (taken in sorted order).
    bins : int, default 32
        Histogram bins of the divergence.
    weak : float, default 0.5
        The partner's absolute Spearman correlation with the top feature (over the cells of both
        groups) stays below this.
    svm_top : int, default 0
        When > 1, a cross-validated linear SVM scores how separable the groups are in each pair
        of the ``svm_top`` best features.
    random_state : int, default 0
        Seed of the SVM's folds.
    key_added : str, default "rank_features"
        The result goes to ``adata.uns[key_added]``.
    copy : bool, default False
        Work on (and return) a copy of ``adata``.

    Returns
    -------
    AnnData or None
        The copy with ``copy``; otherwise ``adata`` gains ``uns[key_added]``: a dict with
        ``params``, the group sizes, ``top``, ``partner``, ``ranking`` (a DataFrame: rank,
        feature, jsd, median_a, median_b, spearman_with_top) and ``pairs`` (a DataFrame, with
        ``svm_top``). :meth:`Separation.from_uns` reads it back as a :class:`Separation`.

    Raises
    ------
    StainfreeError
        When ``groupby`` is not a column, a group has no cells, the two groups are the same,
        ``weak`` is outside (0, 1] or ``svm_top`` is negative.

    Examples
    --------
    >>> import anndata
    >>> import numpy as np
    >>> import pandas as pd
    >>> from stainfree.tl import Separation, rank_features
    >>> rng = np.random.default_rng(0)
    >>> x = np.c_[np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 200)], rng.normal(0, 1, 400)]
    >>> adata = anndata.AnnData(x, obs=pd.DataFrame({"line": ["A"] * 200 + ["B"] * 200}, index=[f"c{i}" for i in range(400)]))
    >>> adata.var_names = ["size", "noise"]
    >>> rank_features(adata, "line")
    >>> adata.uns["rank_features"]["top"], adata.uns["rank_features"]["ranking"]["feature"].tolist()
    ('size', ['size', 'noise'])
    >>> Separation.from_uns(adata).b
    'B'
    """
    if groupby not in adata.obs.columns:
        raise StainfreeError(f"column {groupby!r} does not exist (columns: {', '.join(map(str, adata.obs.columns))})")
    if not 0 < weak <= 1 or svm_top < 0:
        raise StainfreeError(f"weak must be in (0, 1] (a |Spearman| bound) and svm_top at least 0, got {weak} and {svm_top}")
    adata = adata.copy() if copy else adata
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, np.float64)
    a, b, in_a, in_b = group_masks(adata.obs[groupby].reset_index(drop=True), group, reference, column=groupby)
    ranking = _ranking(x, [str(v) for v in adata.var_names], in_a, in_b, bins=bins)
    top = str(ranking["feature"].iloc[0])
    weakly = ranking[(ranking["feature"] != top) & (ranking["spearman_with_top"].abs() < weak) & (ranking["jsd"] > 0)]
    pairs = None
    if svm_top and svm_top > 1:
        numeric = pd.DataFrame(x, columns=[str(v) for v in adata.var_names])
        pairs = _pair_separability(numeric, in_a, in_b, list(ranking["feature"].head(svm_top)), seed=random_state)
    adata.uns[key_added] = {
        "params": {"groupby": groupby, "group": a, "reference": b, "bins": bins, "weak": weak, "svm_top": svm_top},
        "n_a": int(in_a.sum()),
        "n_b": int(in_b.sum()),
        "top": top,
        "partner": str(weakly["feature"].iloc[0]) if len(weakly) else None,
        "ranking": ranking,
        "pairs": pairs,
    }
    return adata if copy else None


def _ranking(x: np.ndarray, names: list[str], in_a: np.ndarray, in_b: np.ndarray, *, bins: int) -> pd.DataFrame:
    """Features sorted by divergence, with each group's median and the Spearman correlation
    with the top feature over the cells of both groups."""
    from scipy.stats import spearmanr

    jsd = np.array([js_divergence(x[in_a, j], x[in_b, j], bins=bins) for j in range(x.shape[1])])
    with np.errstate(all="ignore"):
        med_a = np.nanmedian(np.where(in_a[:, None], x, np.nan), axis=0)  # both groups have cells (group_masks)
        med_b = np.nanmedian(np.where(in_b[:, None], x, np.nan), axis=0)
    ranking = pd.DataFrame({"feature": names, "jsd": jsd, "median_a": med_a, "median_b": med_b, "_column": np.arange(len(names))})
    ranking = ranking.sort_values("jsd", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    both = in_a | in_b
    top_values = x[both, ranking["_column"].iloc[0]]
    rho = []
    for j in ranking["_column"]:
        v = x[both, j]
        ok = np.isfinite(v) & np.isfinite(top_values)
        if ok.sum() < 3 or np.ptp(v[ok]) == 0 or np.ptp(top_values[ok]) == 0:
            rho.append(np.nan)
        else:
            rho.append(float(spearmanr(v[ok], top_values[ok])[0]))
    ranking["spearman_with_top"] = rho
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    return ranking.drop(columns=["_column"])


def _pair_separability(numeric: pd.DataFrame, in_a, in_b, names: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """Cross-validated balanced accuracy of a linear SVM on each pair of features."""
    from itertools import combinations

    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    both = in_a | in_b
    y = in_a[both].astype(int)
    folds = max(2, min(5, int(np.bincount(y).min())))
    rows = []
    for fx, fy in combinations(names, 2):
        x = numeric[[fx, fy]].to_numpy(np.float64)[both]
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LinearSVC(class_weight="balanced", random_state=seed),
        )
        score = cross_val_score(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="balanced_accuracy")
        rows.append({"feature_x": fx, "feature_y": fy, "svm_balanced_accuracy": float(score.mean())})
    return pd.DataFrame(rows).sort_values("svm_balanced_accuracy", ascending=False, kind="stable").reset_index(drop=True)


def read_groups(source: str | os.PathLike, column: str, cell_ids: Sequence[str]) -> pd.Series:
    """The values of ``column`` for given cells, matched by ``cell_id``.

    Parameters
    ----------
    source : path
        A CellSet folder, a ``.parquet``/``.csv`` table with ``cell_id`` (e.g. predictions), or an
        ``.h5ad`` (its ``obs``).
    column : str
        The column to read.
    cell_ids : sequence of str
        The cells wanted, in the order wanted.

    Returns
    -------
    Series
        One value per cell id (missing where the source lacks the cell; a warning says how many).

    Raises
    ------
    StainfreeError
        When the source is not readable, lacks ``cell_id`` or the column, or holds none of the cells.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.tl.rank import read_groups
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pd.DataFrame({"cell_id": ["a", "b"], "line": ["HEK", "HT1080"]}).to_csv(f"{d}/lines.csv", index=False)
    ...     read_groups(f"{d}/lines.csv", "line", ["b", "a"]).tolist()
    ['HT1080', 'HEK']
    """
    source = Path(source)
    refuse_partial(source)
    if (source / "cellset.json").is_file():
        from ..core.store import open_cellset

        table = open_cellset(source).table
    elif source.suffix == ".h5ad":
        import anndata

        adata = anndata.read_h5ad(source, backed="r")
        table = adata.obs.reset_index(drop=adata.obs.index.name in adata.obs.columns)
        if "cell_id" not in table:
            table = table.rename(columns={table.columns[0]: "cell_id"})
    elif source.suffix in (".parquet", ".csv"):
        if not source.is_file():
            raise StainfreeError(f"{source}: no such file")
        table = read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    else:
        raise StainfreeError(f"{source}: not a CellSet folder, .parquet, .csv or .h5ad")
    if "cell_id" not in table:
        raise StainfreeError(f"{source}: has no cell_id column")
    if column not in table:
        raise StainfreeError(f"{source}: column {column!r} does not exist (columns: {', '.join(map(str, table.columns))})")
    table = table.drop_duplicates("cell_id")
    table.index = table["cell_id"].astype(str)
    ids = [str(c) for c in cell_ids]
    missing = [c for c in ids if c not in table.index]
    if len(missing) == len(ids):
        raise StainfreeError(f"{source}: none of the cells of the feature table are in it (first missing: {missing[0]})")
    if missing:
        logger.warning("%d cell(s) of the feature table are not in %s; they are left out", len(missing), source)
    return table[column].reindex(ids).reset_index(drop=True)
