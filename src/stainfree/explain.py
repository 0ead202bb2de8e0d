"""What tells two groups of cells apart, and what a network looks at.

Two groups (two clusters, two classes, two conditions) are compared feature by feature with the
Jensen-Shannon divergence of their distributions, in nats, so 0 (identical) to ln 2 = 0.693
(no overlap); Yao et al. call it the Jensen-Shannon distance. (scipy's ``jensenshannon``
returns its square root.) The top feature is paired with the highest-ranked feature that is only
weakly correlated with it (Spearman), and the two groups are drawn in that plane (Yao Fig. 5h).

For a trained classifier, vanilla-gradient and SmoothGrad saliency show which pixels move the
class score (Espinosa Bernal), and the activation maps of every convolutional layer show what each
layer responds to (Yao Fig. S2).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .utils import StainfreeError, atomic_output_dir, read_parquet

logger = logging.getLogger(__name__)

REST = "rest"


def js_divergence(a: np.ndarray, b: np.ndarray, *, bins: int = 32) -> float:
    """Jensen-Shannon divergence (natural log: 0 to ln 2) between two samples of one feature.

    Both samples are binned on one grid of ``bins`` equal bins between their pooled 0.5 and 99.5
    percentiles (values beyond fall in the end bins); NaNs are dropped.

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

    def as_dict(self, n: int = 20) -> dict:
        return {
            "column": self.column, "a": self.a, "b": self.b, "n_a": self.n_a, "n_b": self.n_b,
            "top": self.top, "partner": self.partner,
            "ranking": self.ranking.head(n).replace({np.nan: None}).to_dict(orient="records"),
            "pairs": None if self.pairs is None else self.pairs.head(n).to_dict(orient="records"),
        }


def group_masks(values: pd.Series, a: str | None, b: str | None, *, column: str) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Boolean masks of the two groups; ``b`` may be ``"rest"`` (every other cell).

    With neither given the column must hold exactly two values.
    """
    values = values.astype("string")
    present = values.dropna().unique().tolist()
    shown = ", ".join(map(str, sorted(present)[:12])) + (" ..." if len(present) > 12 else "")
    if a is None and b is None:
        if len(present) != 2:
            raise StainfreeError(f"column {column!r} has {len(present)} values ({shown}); name the two groups to compare, e.g. --groups {present[0] if present else 'A'},rest")
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
    features: pd.DataFrame,
    groups: pd.Series,
    *,
    a: str | None = None,
    b: str | None = None,
    column: str = "group",
    bins: int = 32,
    weak: float = 0.5,
    svm_top: int = 0,
    seed: int = 0,
) -> Separation:
    """Rank every feature by how differently it is distributed in groups ``a`` and ``b``.

    Parameters
    ----------
    features : one row per cell (a ``cell_id`` column is ignored), aligned with ``groups``.
    groups : the group of each cell (a cluster, class or condition).
    a, b : the two groups; ``b="rest"`` compares ``a`` with all other cells.
    weak : the partner feature is the best-ranked one whose absolute Spearman correlation with
        the top feature (over the cells of both groups) is below this.
    svm_top : when > 0, a cross-validated linear SVM scores how separable the two groups are in
        each pair of the ``svm_top`` best features.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = pd.DataFrame({"size": np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 200)],
    ...                   "noise": rng.normal(0, 1, 400)})
    >>> s = rank_features(f, pd.Series(["A"] * 200 + ["B"] * 200))
    >>> s.top, s.ranking["feature"].tolist()
    ('size', ['size', 'noise'])
    """
    from scipy.stats import spearmanr

    numeric = features.drop(columns=[c for c in ("cell_id",) if c in features]).select_dtypes("number")
    if numeric.shape[1] == 0:
        raise StainfreeError("the feature table has no numeric features")
    if len(groups) != len(numeric):
        raise StainfreeError(f"{len(groups)} group values for {len(numeric)} cells")
    a, b, in_a, in_b = group_masks(pd.Series(groups).reset_index(drop=True), a, b, column=column)
    x = numeric.to_numpy(np.float64)
    jsd = np.array([js_divergence(x[in_a, j], x[in_b, j], bins=bins) for j in range(x.shape[1])])
    with np.errstate(all="ignore"):
        med_a = np.nanmedian(np.where(in_a[:, None], x, np.nan), axis=0)  # both groups have cells (group_masks)
        med_b = np.nanmedian(np.where(in_b[:, None], x, np.nan), axis=0)
    ranking = pd.DataFrame({"feature": numeric.columns, "jsd": jsd, "median_a": med_a, "median_b": med_b})
    ranking = ranking.sort_values("jsd", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    top = str(ranking["feature"].iloc[0])
    both = in_a | in_b
    top_values = numeric[top].to_numpy(np.float64)[both]
    rho = []
    for name in ranking["feature"]:
        v = numeric[name].to_numpy(np.float64)[both]
        ok = np.isfinite(v) & np.isfinite(top_values)
        if ok.sum() < 3 or np.ptp(v[ok]) == 0 or np.ptp(top_values[ok]) == 0:
            rho.append(np.nan)
        else:
            rho.append(float(spearmanr(v[ok], top_values[ok])[0]))
    ranking["spearman_with_top"] = rho
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    weakly = ranking[(ranking["feature"] != top) & (ranking["spearman_with_top"].abs() < weak) & (ranking["jsd"] > 0)]
    partner = str(weakly["feature"].iloc[0]) if len(weakly) else None
    pairs = None
    if svm_top and svm_top > 1:
        pairs = _pair_separability(numeric, in_a, in_b, list(ranking["feature"].head(svm_top)), seed=seed)
    return Separation(column, a, b, int(in_a.sum()), int(in_b.sum()), ranking, top, partner, pairs)


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
        model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), LinearSVC(class_weight="balanced", random_state=seed))
        score = cross_val_score(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="balanced_accuracy")
        rows.append({"feature_x": fx, "feature_y": fy, "svm_balanced_accuracy": float(score.mean())})
    return pd.DataFrame(rows).sort_values("svm_balanced_accuracy", ascending=False, kind="stable").reset_index(drop=True)


def plot_separation(features: pd.DataFrame, groups: pd.Series, separation: Separation, path: str | os.PathLike, *, max_points: int = 4000, seed: int = 0) -> Path:
    """Scatter of the two groups on the top feature and its weakly correlated partner (or, when
    no partner exists, the top feature's histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = pd.Series(groups).reset_index(drop=True).astype("string")
    _, _, in_a, in_b = group_masks(values, separation.a, separation.b, column=separation.column)
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for name, mask, colour in ((separation.a, in_a, "#1f77b4"), (separation.b, in_b, "#d62728")):
        idx = np.flatnonzero(mask)
        if len(idx) > max_points // 2:
            idx = rng.choice(idx, max_points // 2, replace=False)
        x = features[separation.top].to_numpy(np.float64)[idx]
        if separation.partner:
            ax.scatter(x, features[separation.partner].to_numpy(np.float64)[idx], s=6, alpha=0.5, color=colour, label=f"{name} (n={mask.sum()})", edgecolors="none")
        else:
            ax.hist(x[np.isfinite(x)], bins=32, alpha=0.5, color=colour, label=f"{name} (n={mask.sum()})", density=True)
    jsd = dict(zip(separation.ranking["feature"], separation.ranking["jsd"]))
    ax.set_xlabel(f"{separation.top}\n(JSD {jsd[separation.top]:.3f})", fontsize=8)
    if separation.partner:
        rho = separation.ranking.set_index("feature").loc[separation.partner, "spearman_with_top"]
        ax.set_ylabel(f"{separation.partner}\n(JSD {jsd[separation.partner]:.3f}, Spearman {rho:.2f})", fontsize=8)
    else:
        ax.set_ylabel("density")
    ax.set_title(f"{separation.column}: {separation.a} vs {separation.b}", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_ranking(separation: Separation, path: str | os.PathLike, *, n: int = 20) -> Path:
    """Horizontal bars of the ``n`` highest Jensen-Shannon divergences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = separation.ranking.head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.25 * len(top) + 1.2))
    ax.barh(top["feature"], top["jsd"], color="#4c72b0")
    ax.axvline(np.log(2), color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, np.log(2) * 1.02)
    ax.set_xlabel("Jensen-Shannon divergence (nats; ln 2 = no overlap)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{separation.a} vs {separation.b}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def explain_groups(
    features: pd.DataFrame,
    groups: pd.Series,
    out: str | os.PathLike,
    *,
    column: str,
    a: str | None = None,
    b: str | None = None,
    svm_top: int = 10,
    weak: float = 0.5,
    force: bool = False,
) -> tuple[Path, Separation]:
    """Rank features for two groups and write ``OUT/`` atomically: ``ranking.csv``,
    ``pairs.csv`` (with ``svm_top``), ``scatter.png``, ``ranking.png`` and ``explain.json``."""
    separation = rank_features(features, groups, a=a, b=b, column=column, svm_top=svm_top, weak=weak)
    with atomic_output_dir(out, force=force, marker="explain.json") as tmp:
        separation.ranking.to_csv(tmp / "ranking.csv", index=False)
        if separation.pairs is not None:
            separation.pairs.to_csv(tmp / "pairs.csv", index=False)
        plot_separation(features, groups, separation, tmp / "scatter.png")
        plot_ranking(separation, tmp / "ranking.png")
        (tmp / "explain.json").write_text(json.dumps(separation.as_dict(), indent=2, default=float))
    return Path(out), separation


def read_groups(source: str | os.PathLike, column: str, cell_ids: Sequence[str]) -> pd.Series:
    """The values of ``column`` for ``cell_ids`` from a CellSet folder, a ``.parquet``/``.csv``
    table with ``cell_id`` (e.g. predictions), or an ``.h5ad`` (its ``obs``)."""
    source = Path(source)
    if (source / "cellset.json").is_file():
        from .cellset import open_cellset

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


# ---------------------------------------------------------------------- saliency and activations
def saliency(clf, images: np.ndarray, *, method: str = "smoothgrad", target: Sequence[int] | None = None, n_samples: int = 25, noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """Saliency maps (N x H x W, at the cells' own size) for the class ``target`` of each cell
    (default: the predicted class).

    ``vanilla`` is the absolute gradient of the class score with respect to the input pixels,
    maximised over channels; ``smoothgrad`` averages it over ``n_samples`` copies with Gaussian
    noise of ``noise`` times the input's range (Smilkov et al. 2017).
    """
    import torch
    import torch.nn.functional as F

    if method not in ("vanilla", "smoothgrad"):
        raise StainfreeError(f"saliency method must be vanilla or smoothgrad, got {method!r}")
    images = np.asarray(images)
    model = clf.model.to("cpu").eval()
    x = torch.from_numpy(clf.prepare(images).astype(np.float32))
    with torch.no_grad():
        predicted = model(x).argmax(1)
    classes = predicted if target is None else torch.as_tensor(np.asarray(target), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    spread = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).clamp_min(1e-6)[:, None, None, None]
    samples = n_samples if method == "smoothgrad" else 1
    total = torch.zeros_like(x)
    for _ in range(samples):
        xi = x + noise * spread * torch.randn(x.shape, generator=gen) if method == "smoothgrad" else x.clone()
        xi.requires_grad_(True)
        scores = model(xi).gather(1, classes[:, None]).sum()
        (grad,) = torch.autograd.grad(scores, xi)
        total += grad.abs()
    maps = (total / samples).amax(dim=1, keepdim=True)
    maps = F.interpolate(maps, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return maps.numpy()


def activation_maps(clf, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The output of every convolutional layer for one cell (``C x H x W``): a list of
    ``(layer name, channels x h x w)`` in forward order."""
    import torch

    model = clf.model.to("cpu").eval()
    found: list[tuple[str, np.ndarray]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: found.append((name, o[0].detach().numpy()))))
    try:
        with torch.no_grad():
            model(torch.from_numpy(clf.prepare(np.asarray(image)[None]).astype(np.float32)))
    finally:
        for h in hooks:
            h.remove()
    if not found:
        raise StainfreeError(f"model {clf.arch} has no convolutional layers to show")
    return found


def plot_saliency(images: np.ndarray, maps: dict[str, np.ndarray], titles: Sequence[str], path: str | os.PathLike) -> Path:
    """One row per cell: the image, then each method's map overlaid on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.9 * n), squeeze=False)
    for i in range(n):
        shown = _display(images[i])
        axes[i, 0].imshow(shown, cmap="gray")
        axes[i, 0].set_title(titles[i], fontsize=6)
        for j, (name, m) in enumerate(maps.items(), 1):
            axes[i, j].imshow(shown, cmap="gray")
            v = m[i] / max(float(np.percentile(m[i], 99.5)), 1e-12)
            axes[i, j].imshow(np.clip(v, 0, 1), cmap="inferno", alpha=0.55)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_activations(layers: list[tuple[str, np.ndarray]], path: str | os.PathLike, *, per_layer: int = 8) -> Path:
    """Up to ``per_layer`` activation maps of each convolutional layer, a row per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(layers), per_layer, figsize=(1.3 * per_layer, 1.4 * len(layers)), squeeze=False)
    for r, (name, act) in enumerate(layers):
        strongest = np.argsort(-act.reshape(len(act), -1).std(axis=1))[:per_layer]
        for c in range(per_layer):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(strongest):
                ax.imshow(act[strongest[c]], cmap="viridis")
        axes[r, 0].set_title(f"{name} ({act.shape[0]} maps, {act.shape[1]}x{act.shape[2]})", fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _display(image: np.ndarray) -> np.ndarray:
    """The first channel of a ``C x H x W`` cell, stretched to its 1-99 percentiles."""
    img = np.asarray(image, np.float64)[0]
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)


def saliency_panels(
    clf,
    cells,
    out: str | os.PathLike,
    *,
    n_per_class: int = 3,
    cell_ids: Sequence[str] | None = None,
    n_samples: int = 25,
    noise: float = 0.15,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, dict]:
    """Write ``OUT/saliency.png`` (vanilla and SmoothGrad for chosen cells),
    ``OUT/activations.png`` (the first chosen cell's convolutional layers) and
    ``OUT/saliency.json``. Cells are ``cell_ids``, else ``n_per_class`` random cells per class."""
    missing = [c for c in clf.channels if c not in cells.channels]
    if missing:
        raise StainfreeError(f"the cells lack channel {missing[0]!r} that the model needs (cells have: {', '.join(cells.channels)})")
    cells = cells.select_channels(clf.channels)
    ids = cells.cell_ids.astype(str)
    if cell_ids:
        where = {c: i for i, c in enumerate(ids)}
        unknown = [c for c in cell_ids if c not in where]
        if unknown:
            raise StainfreeError(f"cell {unknown[0]!r} is not in the set")
        index = np.array([where[c] for c in cell_ids])
    else:
        rng = np.random.default_rng(seed)
        labels = pd.Series(cells.labels, dtype="string")
        index = []
        for _, part in labels.groupby(labels.fillna("(unlabelled)"), sort=True):
            pos = part.index.to_numpy()
            index.extend(rng.choice(pos, min(n_per_class, len(pos)), replace=False).tolist())
        index = np.array(sorted(index))
    images = cells.read(index)
    proba = clf.predict_proba(images)
    predicted = np.asarray(clf.classes)[proba.argmax(1)]
    maps = {
        "vanilla gradient": saliency(clf, images, method="vanilla"),
        f"SmoothGrad (n={n_samples})": saliency(clf, images, method="smoothgrad", n_samples=n_samples, noise=noise, seed=seed),
    }
    labels = pd.Series(cells.labels[index], dtype="string")
    titles = [f"{ids[i][-18:]}\n{lab} -> {p}" for i, lab, p in zip(index, labels.fillna("?"), predicted)]
    layers = activation_maps(clf, images[0])
    info = {
        "cells": [{"cell_id": ids[i], "label": None if pd.isna(lab) else lab, "predicted": str(p)} for i, lab, p in zip(index, labels, predicted)],
        "methods": {"vanilla": {}, "smoothgrad": {"n_samples": n_samples, "noise": noise}},
        "activation_cell": ids[index[0]],
        "layers": [{"name": n, "maps": int(a.shape[0]), "size": list(a.shape[1:])} for n, a in layers],
    }
    with atomic_output_dir(out, force=force, marker="saliency.json") as tmp:
        plot_saliency(images, maps, titles, tmp / "saliency.png")
        plot_activations(layers, tmp / "activations.png")
        (tmp / "saliency.json").write_text(json.dumps(info, indent=2))
    return Path(out), info
