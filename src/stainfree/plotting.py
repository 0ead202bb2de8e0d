"""Figures of a run, as PNG files (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_curves(histories: Sequence[Sequence[dict]], path: str | Path, *, title: str = "Training") -> Path:
    """Loss per epoch, one line per fold (training solid, validation dashed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, history in enumerate(histories):
        c = colours[k % len(colours)]
        epochs = [h["epoch"] for h in history]
        axes[0].plot(epochs, [h["train_loss"] for h in history], color=c, label=f"fold {k + 1} train")
        axes[1].plot(epochs, [h["train_accuracy"] for h in history], color=c)
        if history and "val_loss" in history[0]:
            axes[0].plot(epochs, [h["val_loss"] for h in history], color=c, linestyle="--", label=f"fold {k + 1} val")
            axes[1].plot(epochs, [h["val_accuracy"] for h in history], color=c, linestyle="--")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def confusion_matrix(counts, classes: Sequence[str], path: str | Path, *, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix with the counts written in each cell."""
    plt = _pyplot()
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 2.2 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(counts[i, j])}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=8, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def roc_curves(y_true, proba, classes: Sequence[str], path: str | Path, *, title: str = "ROC (pooled out-of-fold predictions)") -> Path:
    """One-vs-rest ROC curve per class (one curve for two classes), with its AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    y_true = np.asarray(y_true, dtype=object).astype(str)
    proba = np.asarray(proba, dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    shown = [1] if len(classes) == 2 else range(len(classes))
    for i in shown:
        positive = y_true == classes[i]
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, i])
        ax.plot(fpr, tpr, label=f"{classes[i]} (AUC {roc_auc_score(positive, proba[:, i]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def heatmap(values, rows: Sequence[str], cols: Sequence[str], path: str | Path, *, title: str = "", xlabel: str = "", ylabel: str = "") -> Path:
    """A matrix of values in [0, 1] with each value written in its cell (missing values blank)."""
    plt = _pyplot()
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    size = 2.5 + 0.45 * max(len(rows), len(cols))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(arr, cmap="viridis", vmin=0, vmax=1)
    if arr.size <= 400:
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if not np.isnan(arr[i, j]):
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if arr[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def learning_curve(curve: Sequence[dict], path: str | Path) -> Path:
    """Balanced accuracy (mean and 95% interval over splits) against training-set size."""
    plt = _pyplot()
    x = [c["train_size_mean"] for c in curve]
    mean = [c["balanced_accuracy"]["mean"] for c in curve]
    lo = [(c["balanced_accuracy"]["ci95"] or [m, m])[0] for c, m in zip(curve, mean)]
    hi = [(c["balanced_accuracy"]["ci95"] or [m, m])[1] for c, m in zip(curve, mean)]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(x, mean, marker="o")
    ax.fill_between(x, lo, hi, alpha=0.25)
    ax.set(xlabel="training cells", ylabel="balanced accuracy", title="learning curve", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def cell_grid(cells, labels, path, *, per_row: int = 8, max_rows: int = 30, title=str, seed: int = 0, order=None) -> Path:
    """A grid of random cells, one row per value of ``labels`` (first channel, 1-99 percentile
    stretch): example cells per class, or a cluster gallery."""
    import pandas as pd

    plt = _pyplot()
    labels = pd.Series(labels, dtype="string").fillna("(unlabelled)").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    names = sorted(labels.unique(), key=order)[:max_rows]
    fig, axes = plt.subplots(len(names), per_row, figsize=(1.05 * per_row, 1.1 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        pos = np.flatnonzero((labels == name).to_numpy())
        pick = np.sort(rng.choice(pos, min(per_row, len(pos)), replace=False))
        images = cells.read(pick)
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                img = np.asarray(images[c], np.float64)[0]
                lo, hi = np.percentile(img, [1, 99])
                ax.imshow(np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray")
        axes[r, 0].set_title(title(name, len(pos)), fontsize=6, loc="left")
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
