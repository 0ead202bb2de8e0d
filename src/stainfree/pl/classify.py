"""Figures of a classifier: training curves, confusion matrices, ROC curves, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core import _pyplot


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
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}\n{frac[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if frac[i, j] > 0.5 else "black",
            )
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
