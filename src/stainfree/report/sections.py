"""The sections of report.html, each drawn from what a run folder holds, and the report itself."""

from __future__ import annotations

import datetime
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..pl.cells import plot_examples
from ..utils import StainfreeError, atomic_write_bytes, final_path, first_line
from .html import (
    REPORT_NAME,
    STYLE,
    Missing,
    Run,
    _esc,
    _figure,
    _fmt,
    _intervals_note,
    _matplotlib_figure,
    _read_json,
    _table,
    data_summary,
    png_uri,
    ranking_gap_note,
    search_table,
)
from .interactive import section_explore

logger = logging.getLogger(__name__)


def _section_data(run: Run) -> str:
    parts = []
    data = run.config.get("data") or {}
    if data:
        rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in data.items() if not isinstance(v, dict)]
        parts.append(_table(pd.DataFrame(rows, columns=["", "value"])))
    examples = run.folder / "figures" / "examples.png"
    if (run.folder / "data.json").exists():
        summary = _read_json(run.folder / "data.json")
    else:
        cells = run.cells()
        summary = data_summary(cells)
        buffer = io.BytesIO()
        plot_examples(cells, buffer)
        examples = buffer
    parts.append(
        f"<p>{summary['cells']} cells, {len(summary['channels'])} channel(s) ({_esc(', '.join(summary['channels']))}), {summary['size'][0]}x{summary['size'][1]} px.</p>"
    )
    parts.append("<h3>Cells per class</h3>" + _table(pd.DataFrame(list(summary["classes"].items()), columns=["class", "cells"])))
    for group, entry in summary["groups"].items():
        caption = f"<h3>Cells per {_esc(group)} and class</h3>"
        if entry["values"] > len(entry["counts"]):
            caption += f"<p>{entry['values']} values of {_esc(group)}; the {len(entry['counts'])} largest are shown.</p>"
        parts.append(caption + _table(pd.DataFrame(entry["counts"]).T.fillna(0).astype(int).rename_axis(group), index=True))
    caption = f"random cells of each class (channel {summary['channels'][0]})"
    if isinstance(examples, io.BytesIO):
        parts.append(f'<figure><img src="{png_uri(examples.getvalue())}" alt="examples"><figcaption>{_esc(caption)}</figcaption></figure>')
    elif examples.exists():
        parts.append(_figure(examples, caption))
    return "".join(parts)


def _section_protocol(run: Run) -> str:
    m = run.metrics
    protocol = m.get("protocol") or {}
    parts = ["<h3>Protocol</h3>" + _table(pd.DataFrame([(k, v) for k, v in protocol.items()], columns=["", "value"]))]
    train = run.config.get("train")
    if train:
        parts.append(
            "<h3>Training settings</h3>" + _table(pd.DataFrame([(k, v) for k, v in train.items() if k != "device"], columns=["", "value"]))
        )
    if m.get("search"):
        parts.append(search_table(m["search"]))
    for warning in m.get("warnings") or []:
        parts.append(f'<p class="missing">{_esc(warning)}</p>')
    return "".join(parts)


def _section_metrics(run: Run) -> str:
    m = run.metrics
    if "summary" not in m:
        raise Missing("metrics.json has no summary (an audit or an older run)")
    rows = []
    for name, block in [("model", m), *[(f"baseline: {k}", v) for k, v in (m.get("baselines") or {}).items()]]:
        s = block["summary"]
        boot = s["balanced_accuracy"].get("ci95_bootstrap")
        rows.append(
            {
                "": name,
                "balanced accuracy (mean over splits, 95% CI)": _fmt(s["balanced_accuracy"]),
                "pooled (bootstrap 95% CI)": f"{s['balanced_accuracy'].get('pooled', float('nan')):.3f}"
                + (f" [{boot[0]:.3f}, {boot[1]:.3f}]" if boot else ""),
                "accuracy": _fmt(s["accuracy"]),
                "ROC AUC": _fmt(s.get("roc_auc")),
                "Cohen's kappa": _fmt(s.get("cohen_kappa")),
            }
        )
    if m.get("train_prior"):  # the decision under the training frequencies, beside the equal-prior one
        tp = m["train_prior"]
        rows.insert(
            1,
            {
                "": "model, training priors",
                "balanced accuracy (mean over splits, 95% CI)": _fmt(tp["balanced_accuracy"]),
                "accuracy": _fmt(tp["accuracy"]),
            },
        )
    parts = [f'<p class="headline">{_esc(m.get("headline", ""))}</p>', _table(pd.DataFrame(rows).fillna("")), _intervals_note(m["summary"])]
    gap = ranking_gap_note(m)
    if gap:
        parts.append(f"<p>{_esc(gap)}</p>")
    per_class = (m.get("pooled") or {}).get("per_class")
    if per_class:
        frame = pd.DataFrame(per_class).T.rename_axis("class").reset_index()
        if "n" in frame:
            frame["n"] = frame["n"].astype(int)
        parts.append("<h3>Per class (pooled over splits)</h3>" + _table(frame))
    return "".join(parts)


def _figures(run: Run, names: list[tuple[str, str]], what: str) -> str:
    found = [(run.folder / "figures" / f, caption) for f, caption in names if (run.folder / "figures" / f).exists()]
    if not found:
        raise Missing(f"no {what} figures (figures/{', figures/'.join(f for f, _ in names)})")
    return "".join(_figure(path, caption) for path, caption in found)


def _section_evaluation_figures(run: Run) -> str:
    return _figures(
        run,
        [
            ("training_curve.png", "training curves (loss and accuracy per epoch, per split)"),
            ("confusion_matrix.png", "confusion matrix, pooled over the test splits"),
            ("roc.png", "ROC curves, one class against the rest"),
            ("learning_curve.png", "learning curve"),
        ],
        "evaluation",
    )


def _section_cross_group(run: Run) -> str:
    return _figures(run, [("cross_group.png", "accuracy when training on one group and testing on another")], "cross-group")


def _section_embedding(run: Run) -> str:
    names = [
        p.name for pattern in ("umap*.png", "cluster*.png", "composition*.png") for p in sorted((run.folder / "figures").glob(pattern))
    ]
    if not names:
        raise Missing(
            "no UMAP, cluster gallery or composition figures in this run (they come from `stainfree embed` and `stainfree cluster`)"
        )
    return "".join(_figure(run.folder / "figures" / n, n.removesuffix(".png").replace("_", " ")) for n in names)


def _section_explain(run: Run) -> str:
    folder = run.folder if (run.folder / "explain.json").exists() else run.folder / "explain"
    body = _read_json(folder / "explain.json") if folder.is_dir() else None
    if body is None:
        raise Missing("explain/ is not in this run (write it with `stainfree explain FEATURES --by COLUMN -o RUN/explain`)")
    parts = [
        f"<p>{_esc(body['column'])}: <b>{_esc(body['a'])}</b> (n={body['n_a']}) against <b>{_esc(body['b'])}</b> (n={body['n_b']}). "
        "Jensen-Shannon divergence in nats: 0 for identical distributions, ln 2 = 0.693 for no overlap.</p>"
    ]
    ranking = pd.DataFrame(body.get("ranking") or [])
    if len(ranking):
        parts.append(_table(ranking.head(15)))
    for name, caption in (
        ("scatter.png", f"the two groups on the top feature and its weakly correlated partner ({body.get('partner')})"),
        ("ranking.png", "the highest divergences"),
    ):
        if (folder / name).exists():
            parts.append(_figure(folder / name, caption))
    pairs = pd.DataFrame(body.get("pairs") or [])
    if len(pairs):
        parts.append("<h3>Separability of feature pairs (linear SVM, cross-validated balanced accuracy)</h3>" + _table(pairs.head(10)))
    return "".join(parts)


def _section_saliency(run: Run) -> str:
    folder = run.folder if (run.folder / "saliency.json").exists() else run.folder / "saliency"
    if not (folder / "saliency.json").exists():
        raise Missing("saliency/ is not in this run (write it with `stainfree saliency MODEL CELLS -o RUN/saliency`)")
    body = _read_json(folder / "saliency.json")
    parts = [
        f"<p>Vanilla-gradient and SmoothGrad saliency of {len(body.get('cells', []))} cells (brighter: pixels that move the predicted class's score most), "
        f"and the activation maps of the convolutional layers for cell {_esc(body.get('activation_cell'))}.</p>"
    ]
    for name, caption in (
        ("saliency.png", "saliency: image, vanilla gradient, SmoothGrad"),
        ("activations.png", "activation maps per convolutional layer (the most varied maps of each)"),
    ):
        if (folder / name).exists():
            parts.append(_figure(folder / name, caption))
    return "".join(parts)


def _section_fields(run: Run) -> str:
    body = _read_json(run.folder / "fields.json")
    parts = [
        f"<p>Model {_esc(body.get('model'))}; {body.get('cells')} cells cut at {body.get('crop_size')} px from {len(body.get('fields', {}))} field(s).</p>"
    ]
    parts.append(
        "<h3>Predicted cells per class</h3>" + _table(pd.DataFrame(list((body.get("predicted") or {}).items()), columns=["class", "cells"]))
    )
    fields = body.get("fields")
    if isinstance(fields, dict) and fields:
        parts.append("<h3>Per field</h3>" + _table(pd.DataFrame(fields).T.rename_axis("field").reset_index()))
    against = body.get("against_labels")
    if against:
        flat = {k: v for k, v in against.items() if not isinstance(v, (dict, list))}
        parts.append("<h3>Against the fluorescence labels</h3>" + _table(pd.DataFrame(list(flat.items()), columns=["", "value"])))
        per_field = against.get("per_field")
        if per_field:
            frame = pd.DataFrame({f: {k: v for k, v in s.items() if not isinstance(v, (dict, list))} for f, s in per_field.items()}).T
            parts.append(_table(frame.rename_axis("field").reset_index()))
    if (run.folder / "label_fit.png").exists():
        parts.append(_figure(run.folder / "label_fit.png", "two-population fit of the label channel"))
    return "".join(parts)


def _section_composition(run: Run) -> str:
    from ..pl.core import _figure

    table = pd.read_csv(run.file("composition.csv"))
    fractions = table.set_index("field")[[c for c in table.columns if c.startswith("fraction_")]].fillna(0)
    fractions.columns = [c.removeprefix("fraction_") for c in fractions.columns]
    fig = _figure((min(1.0 + 0.5 * len(fractions), 12), 3.2))
    ax = fig.subplots()
    bottom = np.zeros(len(fractions))
    for cls in fractions.columns:
        ax.bar(range(len(fractions)), fractions[cls], bottom=bottom, label=cls)
        bottom += fractions[cls].to_numpy()
    ax.set_xticks(range(len(fractions)), fractions.index, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("fraction of cells")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _table(table) + _matplotlib_figure(fig, "predicted composition of each field")


def _section_overlays(run: Run) -> str:
    folder = run.file("overlays")
    images = sorted(folder.glob("*.png"))
    if not images:
        raise Missing("overlays/ holds no images")
    shown = images[:12]
    note = f"<p>{len(images)} fields; the first {len(shown)} are shown.</p>" if len(images) > len(shown) else ""
    return note + "".join(_figure(p, p.stem, width=520) for p in shown)


def _section_segmentation(run: Run) -> str:
    body = _read_json(run.file("scores.json"))
    pooled = body.get("pooled") or {}
    names = {
        "f1": "F1 at IoU 0.5",
        "precision": "precision",
        "recall": "recall",
        "ap_50_95": "average precision, IoU 0.5-0.95",
        "mean_matched_iou": "mean matched IoU",
        "split_cells": "split cells",
        "merged_cells": "merged cells",
        "true_objects": "true objects",
        "predicted_objects": "predicted objects",
    }
    parts = [
        f"<p>Method {_esc(body.get('method'))}"
        + (f", model {_esc(body['segmenter'])}" if body.get("segmenter") else "")
        + f"; truth from {_esc(body.get('truth'))}. Pooled over fields (every cell weighs the same):</p>"
    ]
    parts.append(_table(pd.DataFrame([(label, pooled.get(key)) for key, label in names.items()], columns=["", "value"])))
    if body.get("per_field"):
        parts.append("<h3>Per field</h3>" + _table(pd.DataFrame(body["per_field"])))
    return "".join(parts)


def _section_clusters(run: Run) -> str:
    body = _read_json(run.folder / "clusters.json")
    c = body["clustering"]
    parts = [
        f"<p>{body['cells']} cells; {_esc(c['method'])} on {_esc(c['on'])} of <code>{_esc(c['key'])}</code>: {c['clusters']} clusters"
        + (f" (k = {c['k']}" + (", peak silhouette" if "scan" in c else "") + ")" if "k" in c else "")
        + (f"; {c['noise_cells']} noise cells" if c.get("noise_cells") else "")
        + ".</p>"
    ]
    robust = (body.get("embedding") or {}).get("robustness")
    if robust:
        parts.append(
            f"<p>Augmentation robustness (Yao Fig. S5a): augmented copies of one cell lie {robust['within_cell_mean']:.3g} apart on average, "
            f"different cells {robust['between_cells_mean']:.3g} (ratio {robust['ratio']:.2f}; well below 1: the embedding ignores rotation, translation and background texture).</p>"
        )
    parts.append(_table(pd.DataFrame(list(body["cluster_sizes"].items()), columns=["cluster", "cells"])))
    for column, probes in (body.get("regressions") or {}).items():
        rows = [{"probe": kind, "cells": p["cells"], "folds": p["folds"], "Pearson r": p["pearson_r"]} for kind, p in probes.items()]
        parts.append(f"<h3>Regression probe: predicting {_esc(column)} from the embedding</h3>" + _table(pd.DataFrame(rows)))
    for column, probes in (body.get("probes") or {}).items():
        rows = [
            {
                "probe": kind,
                "accuracy": p["accuracy"],
                "balanced accuracy": p["balanced_accuracy"],
                "Cohen's kappa": p["cohen_kappa"],
                "majority: accuracy": p["majority"]["accuracy"],
                "majority: balanced": p["majority"]["balanced_accuracy"],
            }
            for kind, p in probes.items()
        ]
        parts.append(f"<h3>Probe: predicting {_esc(column)} from the embedding</h3>" + _table(pd.DataFrame(rows)))
    for column in body.get("composition") or {}:
        path = run.folder / f"enrichment_{column}.csv"
        if path.exists():
            table = pd.read_csv(path)
            called = table[table["call"].fillna("") != ""]
            parts.append(
                f"<h3>Enriched and depleted clusters by {_esc(column)}</h3>"
                + (
                    _table(called[["group", "cluster", "cells", "expected", "odds_ratio", "q", "call"]])
                    if len(called)
                    else "<p>None at q &lt; 0.05.</p>"
                )
            )
    return "".join(parts)


def _section_comparison(run: Run) -> str:
    body = _read_json(run.folder / "comparison.json")
    rows = [
        {
            "condition": k,
            "channels": v["channels"],
            "balanced accuracy (mean)": v["balanced_accuracy"]["mean"],
            "sd over seeds": v["balanced_accuracy"]["std"],
            "seeds": v["balanced_accuracy"]["seeds"],
            "accuracy (mean)": v["accuracy_mean"],
        }
        for k, v in body.get("conditions", {}).items()
    ]
    parts = [_table(pd.DataFrame(rows))]
    if body.get("runs"):
        parts.append("<h3>Every run</h3>" + _table(pd.DataFrame(body["runs"])))
    parts.append(
        "<p>Each condition and seed has its own run folder here; <code>stainfree report</code> on one of them shows its details.</p>"
    )
    return "".join(parts)


SECTIONS: dict[str, list[tuple[str, Callable[[Run], str]]]] = {
    "comparison": [("Conditions and seeds", _section_comparison)],
    "clusters": [
        ("Clusters and probes", _section_clusters),
        ("Embedding, clusters and composition", _section_embedding),
        ("Explore the cells", section_explore),
    ],
    "evaluation": [
        ("Data", _section_data),
        ("Protocol and settings", _section_protocol),
        ("Headline metrics and baselines", _section_metrics),
        ("Training, confusion and ROC", _section_evaluation_figures),
        ("Explore the cells", section_explore),
        ("Across groups", _section_cross_group),
        ("Embedding, clusters and composition", _section_embedding),
        ("What separates the classes", _section_explain),
        ("What the network looks at", _section_saliency),
    ],
    "fields": [
        ("Fields and predictions", _section_fields),
        ("Composition", _section_composition),
        ("Overlays", _section_overlays),
    ],
    "explain": [("What separates the groups", _section_explain)],
    "segmentation": [
        ("Segmentation against the truth", _section_segmentation),
        ("Overlays: truth green, prediction magenta", _section_overlays),
    ],
    "saliency": [("What the network looks at", _section_saliency)],
}


def build_report(folder: str | os.PathLike, *, title: str | None = None) -> str:
    """The report of a run folder as one self-contained HTML string.

    The sections depend on the kind of run (:attr:`~stainfree.report.html.Run.kind`); a section
    whose files are missing, or that fails, says so in its place instead of stopping the report.

    Parameters
    ----------
    folder : path
        The run folder.
    title : str, optional
        Default: ``stainfree <command>: <folder name>``.

    Returns
    -------
    str
        The HTML page, figures embedded.

    Raises
    ------
    StainfreeError
        When ``folder`` is not a folder or not a stainfree run.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.report.sections import build_report
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = Path(tmp, "scores.json").write_text('{"method": "otsu", "pooled": {"f1": 0.9}}')
    ...     page = build_report(tmp, title="demo")
    >>> page.startswith("<!DOCTYPE html>"), "<title>demo</title>" in page, "F1 at IoU 0.5" in page
    (True, True, True)
    """
    run = Run(Path(folder))
    if not run.folder.is_dir():
        raise StainfreeError(f"{run.folder}: no such run folder")
    kind = run.kind
    if kind not in SECTIONS:
        raise StainfreeError(
            f"{run.folder}: not a stainfree run (no metrics.json, fields.json, clusters.json, comparison.json, explain.json, saliency.json or scores.json)"
        )
    sections = []
    for name, render in SECTIONS[kind]:
        anchor = name.lower().replace(" ", "-").replace(",", "")
        try:
            body = render(run)
        except Missing as exc:
            body = f'<p class="missing">Not in this report: {_esc(exc)}.</p>'
        except Exception as exc:  # one broken section must not take the report down
            logger.warning("report section %r failed: %s", name, first_line(exc))
            body = f'<p class="missing">This section could not be drawn: {_esc(first_line(exc))}.</p>'
        sections.append((anchor, name, body))
    command = run.config.get("command", kind)
    title = title or f"stainfree {command}: {run.folder.name}"
    nav = "".join(f'<a href="#{a}">{_esc(n)}</a>' for a, n, _ in sections)
    content = "".join(f'<section id="{a}"><h2>{_esc(n)}</h2>{b}</section>' for a, n, b in sections)
    provenance = run.config.get("provenance") or {}
    meta = f"run folder {_esc(final_path(run.folder.resolve()))}; report written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}"
    if provenance:
        meta += "; " + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in provenance.items() if not isinstance(v, (dict, list)))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{_esc(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav>{content}</body></html>\n'
    )


def write_report(folder: str | os.PathLike, *, out: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """Write the report of a run (:func:`build_report`) atomically.

    The report is the run's own output, so an older report is replaced.

    Parameters
    ----------
    folder : path
        The run folder.
    out : path, optional
        The HTML file (default ``report.html`` in the run folder).
    title : str, optional
        As for :func:`build_report`.

    Returns
    -------
    pathlib.Path
        Where the report was written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.report.sections import write_report
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = Path(tmp, "comparison.json").write_text('{"conditions": {}}')
    ...     print(write_report(tmp).name)
    report.html
    """
    text = build_report(folder, title=title)
    path = Path(out) if out else Path(folder) / REPORT_NAME
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
