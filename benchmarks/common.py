"""Shared by the benchmark scripts: print the figures as JSON and write them to a file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if out:
        Path(out).write_text(text)


def model_record(ev, seconds: float, config) -> dict:
    """The headline metrics of one evaluation, its per-class recall, time and settings."""
    s = ev.metrics["summary"]
    return {
        **{k: s[k] for k in ("balanced_accuracy", "accuracy", "roc_auc", "cohen_kappa")},
        "per_class_recall": {c: v["recall"] for c, v in ev.metrics["pooled"]["per_class"].items()},
        "seconds": round(seconds, 1),
        "config": {k: v for k, v in config.__dict__.items() if k != "device"},
    }
