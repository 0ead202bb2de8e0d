"""Building blocks of the HTML report: escaping, embedded images, tables and the run it describes."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..pl.cells import plot_examples
from ..utils import first_line

REPORT_NAME = "report.html"
STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
.meta { color: #666; font-size: 0.9em; } .headline { background: #f3f6fa; border-left: 4px solid #4c72b0; padding: 0.6em 1em; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.5em 1em; border-left: 4px solid #f0ad4e; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.88em; } th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.4em 0.8em 0.8em 0; vertical-align: top; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
nav a { margin-right: 1em; font-size: 0.9em; }
@media print { body { max-width: none; margin: 0; } nav { display: none; } figure, table, .headline { page-break-inside: avoid; break-inside: avoid; } h2 { page-break-after: avoid; break-after: avoid; } }
"""


class Missing(Exception):
    """A section cannot render: the message says what is missing and how to make it.

    :func:`~stainfree.report.sections.build_report` shows the message in place of the section.

    Examples
    --------
    >>> from stainfree.report.html import Missing
    >>> str(Missing("metrics.json is missing"))
    'metrics.json is missing'
    """


# ---------------------------------------------------------------------- small HTML helpers
def _esc(value) -> str:
    return html.escape(str(value))


def png_uri(data: bytes) -> str:
    """A ``data:`` URI of PNG bytes, to embed an image in the self-contained HTML.

    Parameters
    ----------
    data : bytes
        The content of a PNG file.

    Returns
    -------
    str
        ``data:image/png;base64,...``.

    Examples
    --------
    >>> from stainfree.report.html import png_uri
    >>> png_uri(b"PNG")
    'data:image/png;base64,UE5H'
    """
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(path: Path, caption: str, width: int | None = None) -> str:
    style = f' style="max-width:{width}px"' if width else ""
    return f'<figure><img src="{png_uri(Path(path).read_bytes())}" alt="{_esc(caption)}"{style}><figcaption>{_esc(caption)}</figcaption></figure>'


def _matplotlib_figure(fig, caption: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return f'<figure><img src="{png_uri(buffer.getvalue())}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _table(frame: pd.DataFrame, *, digits: int = 3, index: bool = False) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return _esc(v)

    frame = frame.reset_index() if index else frame
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise Missing(f"{path.name} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Missing(f"{path.name} is not readable JSON ({first_line(exc)})") from exc


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    ci = entry.get("ci95")
    return f"{entry['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


# ---------------------------------------------------------------------- the run
class Run:
    """The files of one run folder, read on demand.

    Parameters
    ----------
    folder : path
        A run folder (of ``stainfree evaluate``, ``cluster``, ``predict-fields``...).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.report.html import Run
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = Path(tmp, "clusters.json").write_text("{}")
    ...     print(Run(tmp).kind, Run(tmp).config)
    clusters {}
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def file(self, *parts: str) -> Path:
        """The path of a file of the run; :class:`Missing` when it is not there."""
        path = self.folder.joinpath(*parts)
        if not path.exists():
            raise Missing(f"{Path(*parts)} is not in this run")
        return path

    @property
    def metrics(self) -> dict:
        """``metrics.json``; :class:`Missing` when absent or unreadable."""
        return _read_json(self.folder / "metrics.json")

    @property
    def config(self) -> dict:
        """``config.json``, or an empty dict when there is none."""
        return _read_json(self.folder / "config.json") if (self.folder / "config.json").exists() else {}

    @property
    def kind(self) -> str:
        """What made the run, told by its marker file: ``"evaluation"``, ``"fields"``, ``"clusters"``,
        ``"comparison"``, ``"explain"``, ``"saliency"``, ``"segmentation"`` or ``"unknown"``."""
        for marker, kind in (
            ("metrics.json", "evaluation"),
            ("fields.json", "fields"),
            ("clusters.json", "clusters"),
            ("comparison.json", "comparison"),
            ("explain.json", "explain"),
            ("saliency.json", "saliency"),
            ("scores.json", "segmentation"),
        ):
            if (self.folder / marker).exists():
                return kind
        return "unknown"

    def cells(self):
        """The run's CellSet when it can still be found (inside the run, or where it was read), with
        the channels and class merges of the run; :class:`Missing` otherwise."""
        from ..core.specs import parse_merge_spec
        from ..core.store import open_cellset

        where = (self.config.get("data") or {}).get("cells")
        candidates = [self.folder / "cells.cells"]
        if where:
            candidates += [self.folder / where, Path(where)]
        for path in candidates:
            if (path / "cellset.json").is_file():
                cells = open_cellset(path)
                data = self.config.get("data") or {}
                if data.get("channels") and all(c in cells.channels for c in data["channels"]):
                    cells = cells.select_channels(data["channels"])
                merges = data.get("merge_classes")
                if merges:  # config.json holds the command-line form
                    cells = cells.merge_classes(parse_merge_spec(merges) if isinstance(merges, str) else merges)
                return cells
        raise Missing(f"the cells of this run ({where or 'cells.cells'}) cannot be found from {self.folder}")


# ---------------------------------------------------------------------- sections
def data_summary(cells, *, max_values: int = 30) -> dict:
    """What the Data section shows, as JSON: size, channels, cells per class and per group.

    Parameters
    ----------
    cells : CellSet
        The cells of the run.
    max_values : int, default 30
        Per group column (the first three), the largest values kept; ``values`` counts them all.

    Returns
    -------
    dict
        ``cells``, ``channels``, ``size``, ``classes`` (unlabelled cells as ``(unlabelled)``)
        and ``groups`` (per column: ``values`` and ``counts`` per value and class).

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.report.html import data_summary
    >>> s = data_summary(make_cells(2, size=16, flasks_per_line=1))
    >>> s["cells"], s["size"], s["classes"], s["groups"]["flask"]["values"]
    (4, [16, 16], {'round': 2, 'spindle': 2}, 2)
    """
    labels = pd.Series(cells.labels, dtype="string").fillna("(unlabelled)")
    out = {
        "cells": len(cells),
        "channels": list(cells.channels),
        "size": list(cells.shape[2:]),
        "classes": {str(k): int(v) for k, v in labels.value_counts().items()},
        "groups": {},
    }
    for group in cells.groups[:3]:
        if group in cells.table:
            tab = pd.crosstab(cells.table[group].astype("string").fillna("(none)").to_numpy(), labels.to_numpy())
            top = tab.loc[tab.sum(axis=1).sort_values(ascending=False).index[:max_values]]
            out["groups"][group] = {
                "values": int(len(tab)),
                "counts": {str(k): {str(c): int(v) for c, v in row.items()} for k, row in top.iterrows()},
            }
    return out


def write_data_summary(cells, folder: Path) -> None:
    """Write ``data.json`` (:func:`data_summary`) and ``figures/examples.png`` into a run folder,
    so that its report needs no cells later.

    Parameters
    ----------
    cells : CellSet
        The cells of the run.
    folder : path
        The run folder (it must exist).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.report.html import write_data_summary
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_data_summary(make_cells(2, size=16, flasks_per_line=1), Path(tmp))
    ...     print(sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*.*")))
    ['data.json', 'figures/examples.png']
    """
    (folder / "figures").mkdir(exist_ok=True)
    (folder / "data.json").write_text(json.dumps(data_summary(cells), indent=2))
    plot_examples(cells, folder / "figures" / "examples.png")


#: ROC AUC above balanced accuracy by at least this much (two classes) is reported as a gap.
RANKING_GAP = 0.05


def ranking_gap_note(metrics: dict) -> str:
    """A sentence when a two-class model ranks held-out cells well but decides them worse.

    ROC AUC judges the ranking of the scores; balanced accuracy judges the decision at the rule
    learnt on the training groups. When the two disagree by :data:`RANKING_GAP` or more, scores
    have shifted between training and held-out groups: the images separate the classes better
    than the decision rule does on a new group. Returns ``""`` otherwise.

    Examples
    --------
    >>> m = {"summary": {"roc_auc": {"mean": 0.99}, "balanced_accuracy": {"mean": 0.88}},
    ...      "pooled": {"per_class": {"a": {"recall": 0.76}, "b": {"recall": 1.0}}}}
    >>> ranking_gap_note(m)[:60]
    'The model ranks held-out cells better than it decides them: '
    >>> m["summary"]["roc_auc"]["mean"] = 0.90
    >>> ranking_gap_note(m)
    ''
    """
    per_class = (metrics.get("pooled") or {}).get("per_class") or {}
    auc = (metrics["summary"].get("roc_auc") or {}).get("mean")
    ba = metrics["summary"]["balanced_accuracy"].get("mean")
    if len(per_class) != 2 or auc is None or ba is None or auc - ba < RANKING_GAP:
        return ""
    recalls = ", ".join(f"{c} {v['recall']:.2f}" for c, v in per_class.items())
    return (
        f"The model ranks held-out cells better than it decides them: ROC AUC {auc:.3f} against balanced accuracy "
        f"{ba:.3f} (recall {recalls}). Its scores shift between the training and the held-out groups, so the decision "
        "rule learnt on the training groups misplaces cells of one class; ROC AUC says how well the images separate the "
        "classes, balanced accuracy what predictions on a new group will score."
    )


def _intervals_note(s: dict) -> str:
    """Which interval each column shows (older runs name none)."""
    ba, acc = s["balanced_accuracy"], s["accuracy"]
    if "ci95_method" not in ba:
        return ""
    over = {
        "nadeau-bengio corrected t": "corrected resampled t (Nadeau & Bengio; the splits share training cells)",
        "t": "Student's t",
    }.get(ba["ci95_method"], ba["ci95_method"])
    if ba.get("ci95_over_splits"):
        lo, hi = ba["ci95_over_splits"]
        over += f" (the corrected t over pools would give [{lo:.3f}, {hi:.3f}])"
    note = f"95% intervals: over splits, {over}; pooled, a percentile bootstrap over {ba['bootstrap_unit']}"
    if ba.get("bootstrap_resamples"):
        note += f" ({ba['bootstrap_resamples']} resamples, {ba.get('bootstrap_lacking_class', 0)} lacking a class, kept)"
    if acc.get("ci95_binomial"):
        lo, hi = acc["ci95_binomial"]
        note += f"; pooled accuracy {acc['pooled']:.3f} [{lo:.3f}, {hi:.3f}] ({acc.get('ci95_binomial_method', 'binomial').capitalize()})"
    return f"<p>{_esc(note)}.</p>"


def search_table(search: dict) -> str:
    """Per split (and the final model): the candidate chosen and each candidate's inner score."""
    runs = {**search["splits"], **({"final model": search["final"]} if search.get("final") else {})}
    rows = []
    for name, entry in runs.items():
        row = {"split": name, "chosen": entry["chosen"]}
        for candidate, score in entry["scores"].items():
            row[candidate] = f"{score['balanced_accuracy']:.3f}" if "balanced_accuracy" in score else score.get("skipped", "")
        row["notes"] = "; ".join(entry["notes"])
        rows.append(row)
    budget = f", budget {search['budget_s']:.0f} s" if search.get("budget_s") else ""
    return (
        "<h3>Configuration search (nested)</h3>"
        f"<p>Each split chose its configuration by {search['inner_folds']}-fold cross-validation on its own training cells "
        f"only{budget}; the columns are the candidates' inner balanced accuracy. The test cells never chose.</p>"
        + _table(pd.DataFrame(rows).fillna(""))
    )
