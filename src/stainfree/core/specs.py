"""Parsing the compact text forms of channel lists and class merges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from ..utils import StainfreeError


def parse_channel_list(names: Sequence[str] | str) -> list[str]:
    """``"Ch3,Ch6"`` or ``["Ch3", "Ch6"]`` -> ``["Ch3", "Ch6"]``."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    names = [n for n in names if n]
    if not names:
        raise StainfreeError("no channel named")
    return list(names)


def parse_merge_spec(spec: str | Iterable[str]) -> dict[str, list[str]]:
    """``"G1,S,G2=Interphase"`` -> ``{"Interphase": ["G1", "S", "G2"]}`` (``;`` separates merges).

    >>> parse_merge_spec("G1,S,G2=Interphase; Prophase,Metaphase=Early")
    {'Interphase': ['G1', 'S', 'G2'], 'Early': ['Prophase', 'Metaphase']}
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    merges: dict[str, list[str]] = {}
    for part in parts:
        for item in part.split(";"):
            item = item.strip()
            if not item:
                continue
            if item.count("=") != 1:
                raise StainfreeError(f"merge {item!r} is not of the form OLD1,OLD2=NEW")
            olds, new = item.split("=")
            olds = [o.strip() for o in olds.split(",") if o.strip()]
            if not olds or not new.strip():
                raise StainfreeError(f"merge {item!r} is not of the form OLD1,OLD2=NEW")
            merges.setdefault(new.strip(), []).extend(olds)
    return merges


def merge_labels(labels: pd.Series, merges: Mapping[str, Sequence[str]] | str) -> pd.Series:
    """Labels with each old class renamed to its new one; an unknown old class is an error.

    >>> merge_labels(pd.Series(["G1", "S", "M"]), "G1,S=I").tolist()
    ['I', 'I', 'M']
    """
    if isinstance(merges, str):
        merges = parse_merge_spec(merges)
    present = set(labels.dropna().astype(str))
    mapping = {}
    for new, olds in merges.items():
        for old in olds:
            if old not in present:
                raise StainfreeError(f"cannot merge class {old!r}: no cell has it (classes: {', '.join(sorted(present))})")
            mapping[old] = new
    return labels.map(lambda v: mapping.get(v, v))
