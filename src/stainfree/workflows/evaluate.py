"""The `evaluate` and `compare` stages: evaluations written as run folders with headline, insights and report."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.cellset import CellSet, provenance_entry
from ..eval.baselines import BASELINES
from ..eval.evaluate import Evaluation, evaluate
from ..ml.train import TrainConfig
from ..pl.classify import confusion_matrix, learning_curve, roc_curves, training_curves
from ..pl.core import heatmap
from ..utils import StainfreeError, atomic_output_dir

logger = logging.getLogger(__name__)
RUN_MARKER = "metrics.json"


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    ci = entry.get("ci95")
    return f"{entry['mean']:.3f}" + (f" [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if ci else "")


def headline(metrics: dict) -> str:
    """One line: balanced accuracy with its interval, how it was estimated, and the baselines.

    Parameters
    ----------
    metrics : dict
        An evaluation's metrics (:attr:`~stainfree.eval.evaluate.Evaluation.metrics`); for
        ``audit-groups``, each class's balanced accuracy at telling the groups apart.

    Returns
    -------
    str
        The headline.

    Examples
    --------
    >>> from stainfree.workflows.evaluate import headline
    >>> protocol = {"name": "group-kfold", "group": "flask", "folds": 2, "n_groups": 4, "repeats": 1, "splits": 2}
    >>> summary = {"balanced_accuracy": {"mean": 0.9, "ci95": [0.8, 1.0]}, "accuracy": {"mean": 0.9}, "roc_auc": {"mean": None}}
    >>> headline({"protocol": protocol, "summary": summary})
    'balanced accuracy 0.900 [95% CI 0.800-1.000], accuracy 0.900 (mean over splits), by held-out flask (2 folds over 4 groups)'
    """
    p = metrics["protocol"]
    if p["name"] == "audit-groups":
        parts = [f"{c}: {r['balanced_accuracy']:.3f} (chance {r['chance']:.3f}, {r['groups']} groups)" for c, r in metrics["audit"].items()]
        return f"audit of {p['group']} within each class, balanced accuracy telling groups apart: " + "; ".join(parts)
    s = metrics["summary"]
    how = {
        "kfold": f"stratified {p['folds']}-fold cross-validation" + (f" x {p['repeats']}" if p["repeats"] > 1 else ""),
        "holdout": f"80/20 holdout x {p['repeats']}",
        "group-kfold": f"held-out {p['group']} ({p['folds']} folds over {p['n_groups']} groups)",
        "leave-one-group-out": f"leave-one-{p['group']}-out ({p['n_groups']} groups)",
        "cross-group": f"cross-{p['group']} pools ({p['splits']} pools over {p['n_groups']} groups)",
    }[p["name"]]
    base = ", ".join(f"{k} {v['summary']['balanced_accuracy']['mean']:.3f}" for k, v in metrics.get("baselines", {}).items())
    line = f"balanced accuracy {_fmt(s['balanced_accuracy'])}, accuracy {_fmt(s['accuracy'])}"
    if s["roc_auc"]["mean"] is not None:
        line += f", ROC AUC {s['roc_auc']['mean']:.3f}"
    line += f" (mean over splits), by {how}"
    if base:
        line += f"; baselines (balanced accuracy): {base}"
    return line


def write_evaluation_run(
    ev: Evaluation,
    out: str | os.PathLike,
    *,
    config: dict,
    force: bool = False,
    tmp: Path | None = None,
    cells: CellSet | None = None,
    report: bool = True,
) -> Path:
    """Write a run folder for an evaluation (atomically, unless ``tmp`` is a folder being built).

    The folder holds ``config.json``, ``predictions.parquet``, ``metrics.json`` (with the
    :func:`headline`), figures (training curves, confusion matrix, ROC, cross-group and learning
    curves as they apply), and the final model and features when the evaluation has them.

    Parameters
    ----------
    ev : Evaluation
        The evaluation.
    out : str or PathLike
        The run folder; when ``tmp`` is given, only its name is used (the report's title), or
        ``None``.
    config : dict
        The settings, written as ``config.json``.
    force : bool, default False
        Overwrite an existing run.
    tmp : Path, optional
        A folder being built by the caller, written into directly.
    cells : CellSet, optional
        The evaluated cells: the run then also gets ``data.json``, example cells, ``explain/``
        and ``saliency/`` (:func:`write_insights`).
    report : bool, default True
        Also write ``report.html``.

    Returns
    -------
    Path
        The folder written (``tmp`` when given).

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.eval.evaluate import cross_validate
    >>> from stainfree.ml.train import TrainConfig
    >>> from stainfree.workflows.evaluate import write_evaluation_run
    >>> ev = cross_validate(make_cells(5, size=32), n_folds=2, config=TrainConfig(epochs=1), n_boot=0, baselines=["majority"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_evaluation_run(ev, f"{d}/run", config={"command": "example"}, report=False)
    ...     sorted(os.listdir(path)), sorted(os.listdir(path / "figures"))
    (['config.json', 'figures', 'metrics.json', 'predictions.parquet'], ['confusion_matrix.png', 'roc.png', 'training_curve.png'])
    """

    def write(folder: Path) -> None:
        figures = folder / "figures"
        figures.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
        ev.predictions.to_parquet(folder / "predictions.parquet", index=False)
        m = ev.metrics
        if ev.histories:
            training_curves(ev.histories, figures / "training_curve.png")
        if "pooled" in m:
            cm = m["pooled"]["confusion_matrix"]
            confusion_matrix(cm["counts"], cm["classes"], figures / "confusion_matrix.png")
            probs = ev.predictions[ev.predictions["train_fraction"] == ev.predictions["train_fraction"].max()]
            roc_curves(probs["label"].to_numpy(), probs[[f"prob_{c}" for c in ev.classes]].to_numpy(), ev.classes, figures / "roc.png")
        if "cross_group" in m:
            mx = m["cross_group"]["matrix"]
            heatmap(
                mx["accuracy"],
                mx["train"],
                mx["test"],
                figures / "cross_group.png",
                title=f"accuracy: train on one {ev.protocol['group']}, test on another",
                xlabel="test",
                ylabel="train",
            )
        if "learning_curve" in m:
            learning_curve(m["learning_curve"], figures / "learning_curve.png")
        if ev.model is not None:
            ev.model.save(folder / "model.safetensors")
        if ev.features is not None:
            ev.features.to_parquet(folder / "features.parquet", index=False)
        body = {"headline": headline(m), **m}
        (folder / RUN_MARKER).write_text(json.dumps(body, indent=2, default=_json_default))
        if cells is not None:
            write_insights(folder, ev, cells)
        if report:
            from ..report.sections import write_report

            # titled with the final name: ``folder`` may be the temporary one being built
            name = Path(out).name if out is not None else folder.name
            write_report(folder, title=f"stainfree {config.get('command', 'evaluate')}: {name}")

    if tmp is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        write(tmp)
        return tmp
    with atomic_output_dir(out, force=force, marker=RUN_MARKER) as folder:
        write(folder)
    return Path(out)


def most_confused_pair(metrics: dict) -> tuple[str, str] | None:
    """The two classes the model mixed up most often (both directions), from the pooled counts.

    Parameters
    ----------
    metrics : dict
        An evaluation's metrics, with ``pooled["confusion_matrix"]``.

    Returns
    -------
    tuple of str or None
        The two classes in class order; ``None`` without a confusion matrix of two classes or more.

    Examples
    --------
    >>> from stainfree.workflows.evaluate import most_confused_pair
    >>> most_confused_pair({"pooled": {"confusion_matrix": {"classes": ["a", "b", "c"],
    ...     "counts": [[9, 1, 0], [0, 5, 5], [0, 2, 8]]}}})
    ('b', 'c')
    """
    cm = (metrics.get("pooled") or {}).get("confusion_matrix")
    if not cm or len(cm["classes"]) < 2:
        return None
    counts = np.asarray(cm["counts"], np.float64)
    mixed = counts + counts.T
    np.fill_diagonal(mixed, -1)
    i, j = np.unravel_index(int(np.argmax(mixed)), mixed.shape)
    i, j = sorted((i, j))
    return cm["classes"][i], cm["classes"][j]


def write_insights(folder: Path, ev: Evaluation, cells: CellSet) -> None:
    """Write what a run's report shows of the data and the model into ``folder``.

    ``data.json`` and ``figures/examples.png`` (the data), ``explain/`` for the most confused
    pair of classes (from the baselines' features, :func:`~stainfree.workflows.explain.run_explain`)
    and ``saliency/`` for the final model; the last two are skipped when they cannot be made.

    Parameters
    ----------
    folder : Path
        The run folder.
    ev : Evaluation
        The evaluation.
    cells : CellSet
        The evaluated cells.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.eval.evaluate import Evaluation
    >>> from stainfree.workflows.evaluate import write_insights
    >>> ev = Evaluation(predictions=None, histories=[], classes=["round", "spindle"], metrics={}, protocol={})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_insights(Path(d), ev, make_cells(2, size=32))
    ...     sorted(os.listdir(d)), os.listdir(f"{d}/figures")
    (['data.json', 'figures'], ['examples.png'])
    """
    from ..pp.adata import features_to_anndata
    from ..report.html import write_data_summary
    from .explain import run_explain, run_saliency

    write_data_summary(cells, folder)
    pair = most_confused_pair(ev.metrics)
    if ev.features is not None and pair is not None:
        try:
            adata = features_to_anndata(ev.features, obs=cells.table[["cell_id", "label"]])
            run_explain(adata, folder / "explain", groupby="label", group=pair[0], reference=pair[1], svm_top=6)
        except StainfreeError as exc:
            logger.info("no feature ranking in the run: %s", exc)
    if ev.model is not None:
        logger.info("saliency maps of the final model")
        run_saliency(ev.model, cells, folder / "saliency", n_per_class=2, n_samples=16)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def run_evaluate(
    cells: CellSet,
    out: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    baselines: Sequence[str] = BASELINES,
    final_model: bool = True,
    force: bool = False,
    resume: bool = False,
    data: dict | None = None,
    **options,
) -> tuple[Path, dict]:
    """``stainfree evaluate``: evaluate a classifier and write the run folder (:func:`write_evaluation_run`).

    Parameters
    ----------
    cells : CellSet
        Labelled cells.
    out : str or PathLike
        The run folder.
    config : TrainConfig, optional
        How to train; default ``TrainConfig()``.
    baselines : sequence of str, default BASELINES
        Baselines run on the same splits.
    final_model : bool, default True
        Also train a model on all cells (not for ``cross-group`` and ``audit-groups``).
    force : bool, default False
        Overwrite an existing run.
    resume : bool, default False
        Reuse the finished splits of an interrupted run of the same output (kept in
        ``.<out>.work`` beside it).
    data : dict, optional
        What the data were, for ``config.json``; default the cells' path, count and channels.
    **options
        Those of :func:`stainfree.eval.evaluate.evaluate` (protocol, group, n_folds, repeats,
        train_sizes, tta, features, n_boot, max_pools, search).

    Returns
    -------
    path : Path
        The run folder.
    metrics : dict
        The content of ``metrics.json``.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.train import TrainConfig
    >>> from stainfree.workflows.evaluate import run_evaluate
    >>> cs = make_cells(6, size=32, flasks_per_line=2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path, metrics = run_evaluate(
    ...         cs, f"{d}/run", config=TrainConfig(epochs=1), baselines=["majority"], final_model=False, group="flask", n_folds=2, n_boot=0, tta=False
    ...     )
    ...     sorted(os.listdir(path)), metrics["protocol"]["name"]
    (['config.json', 'data.json', 'figures', 'metrics.json', 'predictions.parquet', 'report.html'], 'group-kfold')
    """
    config = config or TrainConfig()
    out = Path(out)
    work = out.with_name(f".{out.name}.work")
    if not resume and work.exists():
        shutil.rmtree(work)
    protocol = options.get("protocol") or ""
    ev = evaluate(
        cells,
        config=config,
        baselines=baselines,
        final_model=final_model and protocol not in ("cross-group", "audit-groups"),
        work_dir=work,
        **options,
    )
    train_sizes = options.get("train_sizes")
    run_config = {
        "command": "evaluate",
        "data": data or {"cells": str(cells.path) if cells.path else None, "n_cells": len(cells), "channels": cells.channels},
        "protocol": ev.protocol,
        "train": dataclasses.asdict(config),
        "baselines": list(baselines),
        "train_sizes": list(train_sizes) if train_sizes else None,
        "search": dataclasses.asdict(options["search"]) if options.get("search") else None,
        "provenance": provenance_entry("evaluate"),
    }
    write_evaluation_run(ev, out, config=run_config, force=force, cells=cells)
    shutil.rmtree(work, ignore_errors=True)
    return out, json.loads((out / RUN_MARKER).read_text())


def run_compare(
    cells: CellSet,
    out: str | os.PathLike,
    *,
    conditions: dict[str, Sequence[str]] | None = None,
    seeds: Sequence[int] = (0,),
    config: TrainConfig | None = None,
    force: bool = False,
    **evaluate_kwargs,
) -> tuple[Path, dict]:
    """``stainfree compare``: the same protocol per condition and per seed, tabulated.

    A condition is a channel set (modality, focal plane...); Ogawa et al. compared imaging
    methods and initial random numbers this way. Writes ``OUT/<condition>-seed<k>/`` run folders
    (without reports), ``OUT/comparison.csv``, ``OUT/comparison.json`` and ``OUT/report.html``.

    Parameters
    ----------
    cells : CellSet
        Labelled cells.
    out : str or PathLike
        The folder to write.
    conditions : dict of str to sequence of str, optional
        The channels of each condition, by name; default one condition ``all``.
    seeds : sequence of int, default (0,)
        Training seeds (``TrainConfig.seed``) run for every condition.
    config : TrainConfig, optional
        How to train; default ``TrainConfig()``.
    force : bool, default False
        Overwrite an existing output.
    **evaluate_kwargs
        Passed to :func:`stainfree.eval.evaluate.evaluate`.

    Returns
    -------
    path : Path
        The folder written.
    body : dict
        ``conditions`` (balanced accuracy over seeds: mean, std, min, max) and ``runs``.

    Raises
    ------
    StainfreeError
        When a condition names a channel the cells lack, or the protocol is ``audit-groups``
        (it scores no classifier of the labels to compare).

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.train import TrainConfig
    >>> from stainfree.workflows.evaluate import run_compare
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path, body = run_compare(
    ...         make_cells(4, size=32), f"{d}/cmp", config=TrainConfig(epochs=1), n_folds=2, baselines=["majority"], n_boot=0, tta=False
    ...     )
    ...     sorted(p.name for p in path.iterdir()), body["conditions"]["all"]["channels"]
    (['all-seed0', 'comparison.csv', 'comparison.json', 'report.html'], 'bf')
    """
    import pandas as pd

    if evaluate_kwargs.get("protocol") == "audit-groups":
        raise StainfreeError(
            "compare tabulates a classifier's balanced accuracy, which protocol audit-groups does not measure; "
            "run `stainfree evaluate --protocol audit-groups` per channel set instead"
        )
    config = config or TrainConfig()
    conditions = conditions or {"all": list(cells.channels)}
    for name, channels in conditions.items():
        missing = [c for c in channels if c not in cells.channels]
        if missing:
            raise StainfreeError(f"condition {name}: channel {missing[0]!r} is not in the cells (channels: {', '.join(cells.channels)})")
    rows = []
    with atomic_output_dir(out, force=force, marker="comparison.json") as tmp:
        for name, channels in conditions.items():
            subset = cells.select_channels(list(channels))
            for seed in seeds:
                cfg = dataclasses.replace(config, seed=seed)
                logger.info("condition %s (%s), seed %d", name, ",".join(channels), seed)
                ev = evaluate(subset, config=cfg, **evaluate_kwargs)
                write_evaluation_run(
                    ev,
                    None,
                    config={"command": "compare", "condition": name, "channels": list(channels), "train": dataclasses.asdict(cfg)},
                    tmp=tmp / f"{name}-seed{seed}",
                    report=False,
                )
                s = ev.metrics["summary"]
                rows.append(
                    {
                        "condition": name,
                        "channels": ",".join(channels),
                        "seed": seed,
                        **{k: s[k]["mean"] for k in ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")},
                    }
                )
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "comparison.csv", index=False)
        summary = {}
        for name, part in table.groupby("condition", sort=False):
            ba = part["balanced_accuracy"].astype(float)
            summary[name] = {
                "channels": part["channels"].iloc[0],
                "balanced_accuracy": {
                    "mean": round(float(ba.mean()), 4),
                    "std": round(float(ba.std(ddof=1)), 4) if len(ba) > 1 else 0.0,
                    "min": round(float(ba.min()), 4),
                    "max": round(float(ba.max()), 4),
                    "seeds": len(ba),
                },
                "accuracy_mean": round(float(part["accuracy"].mean()), 4),
            }
        body = {"conditions": summary, "runs": rows}
        (tmp / "comparison.json").write_text(json.dumps(body, indent=2, default=_json_default))
        from ..report.sections import write_report

        write_report(tmp, title=f"stainfree compare: {Path(out).name}")
    return Path(out), body
