"""Figures of a classifier: training curves, confusion matrices, ROC curves, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core import _figure


def training_curves(histories: Sequence[Sequence[dict]], path: str | Path, *, title: str = "Training") -> Path:
    """Loss and accuracy per epoch, one line per fold (training solid, validation dashed).

    Parameters
    ----------
    histories : sequence of sequences of dict
        A history per fold, a dict per epoch with ``epoch``, ``train_loss`` and
        ``train_accuracy`` (and ``val_loss``, ``val_accuracy`` when there was validation).
    path : str or Path
        The PNG file to write.
    title : str, default "Training"
        The figure's title.

    Returns
    -------
    Path
        ``path``, the training curves written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.classify import training_curves
    >>> history = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.5 / e} for e in (1, 2, 3)]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     training_curves([history], f"{d}/training_curve.png").name
    'training_curve.png'
    """
    import matplotlib

    fig = _figure((9, 3.5))
    axes = fig.subplots(1, 2)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
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
    return Path(path)


def confusion_matrix(counts, classes: Sequence[str], path: str | Path, *, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix with the counts written in each cell.

    Parameters
    ----------
    counts : array-like
        Classes x classes counts, rows true, columns predicted.
    classes : sequence of str
        The class names, in order.
    path : str or Path
        The PNG file to write.
    title : str, default "Confusion matrix"
        The figure's title.

    Returns
    -------
    Path
        ``path``, the confusion matrix written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.classify import confusion_matrix
    >>> with tempfile.TemporaryDirectory() as d:
    ...     confusion_matrix([[5, 1], [2, 4]], ["round", "spindle"], f"{d}/cm.png").name
    'cm.png'
    """
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 2.2 + 0.6 * len(classes)
    fig = _figure((size + 1, size))
    ax = fig.subplots()
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
    return Path(path)


def roc_curves(y_true, proba, classes: Sequence[str], path: str | Path, *, title: str = "ROC (pooled out-of-fold predictions)") -> Path:
    """One-vs-rest ROC curve per class (one curve for two classes), with its AUC.

    Parameters
    ----------
    y_true : sequence
        The true class of each cell.
    proba : array-like
        Cells x classes probabilities, in ``classes`` order.
    classes : sequence of str
        The class names; a class with no positive or no negative cell gets no curve.
    path : str or Path
        The PNG file to write.
    title : str, default "ROC (pooled out-of-fold predictions)"
        The figure's title.

    Returns
    -------
    Path
        ``path``, the ROC curves written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.classify import roc_curves
    >>> proba = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     roc_curves(["a", "b", "a", "b"], proba, ["a", "b"], f"{d}/roc.png").name
    'roc.png'
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true, dtype=object).astype(str)
    proba = np.asarray(proba, dtype=float)
    fig = _figure((4.8, 4.4))
    ax = fig.subplots()
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
    return Path(path)


def learning_curve(curve: Sequence[dict], path: str | Path) -> Path:
    """Balanced accuracy (mean and 95% interval over splits) against training-set size.

    Parameters
    ----------
    curve : sequence of dict
        A point per training fraction, as ``metrics["learning_curve"]`` of an evaluation:
        ``train_size_mean`` and ``balanced_accuracy`` (a :func:`~stainfree.eval.metrics.summarise`
        dict).
    path : str or Path
        The PNG file to write.

    Returns
    -------
    Path
        ``path``, the learning curve written.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.pl.classify import learning_curve
    >>> curve = [{"train_size_mean": n, "balanced_accuracy": {"mean": m, "ci95": [m - 0.1, m + 0.05]}} for n, m in ((10, 0.6), (40, 0.8))]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     learning_curve(curve, f"{d}/learning_curve.png").name
    'learning_curve.png'
    """
    x = [c["train_size_mean"] for c in curve]
    mean = [c["balanced_accuracy"]["mean"] for c in curve]
    lo = [(c["balanced_accuracy"]["ci95"] or [m, m])[0] for c, m in zip(curve, mean)]
    hi = [(c["balanced_accuracy"]["ci95"] or [m, m])[1] for c, m in zip(curve, mean)]
    fig = _figure((5, 3.6))
    ax = fig.subplots()
    ax.plot(x, mean, marker="o")
    ax.fill_between(x, lo, hi, alpha=0.25)
    ax.set(xlabel="training cells", ylabel="balanced accuracy", title="learning curve", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
