"""Parsing the compact text forms of channel lists and class merges.

The Python API takes lists (``["Ch3", "Ch6"]``) and dicts (``{"Interphase": ["G1", "S", "G2"]}``);
the command line takes the strings ``"Ch3,Ch6"`` and ``"G1,S,G2=Interphase"``, which these
functions turn into those lists and dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from ..utils import StainfreeError


def parse_channel_list(names: Sequence[str] | str) -> list[str]:
    """Turn a comma-separated channel list into a list of names.

    Parameters
    ----------
    names : str or sequence of str
        ``"Ch3,Ch6"`` (spaces around names are dropped) or a sequence of names, kept as given.
        Empty names are dropped.

    Returns
    -------
    list of str
        The channel names, in the order given.

    Raises
    ------
    StainfreeError
        When no name is left.

    Examples
    --------
    >>> from stainfree.core.specs import parse_channel_list
    >>> parse_channel_list("Ch3, Ch6")
    ['Ch3', 'Ch6']
    >>> parse_channel_list(["bf"])
    ['bf']
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    names = [n for n in names if n]
    if not names:
        raise StainfreeError("no channel named")
    return list(names)


def parse_merge_spec(spec: str | Iterable[str]) -> dict[str, list[str]]:
    """Turn the command-line form of class merges into a dict of new class to old classes.

    Parameters
    ----------
    spec : str or iterable of str
        One or more merges ``OLD1,OLD2=NEW``, separated by ``;`` (or given as several strings).
        Merges into the same new class add up.

    Returns
    -------
    dict of str to list of str
        Each new class name and the old classes that become it.

    Raises
    ------
    StainfreeError
        When a merge is not of the form ``OLD1,OLD2=NEW``.

    Examples
    --------
    >>> from stainfree.core.specs import parse_merge_spec
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


def merge_labels(labels: pd.Series, merges: Mapping[str, Sequence[str]]) -> pd.Series:
    """Rename each old class to its new one.

    Parameters
    ----------
    labels : pandas.Series
        Class labels; missing values stay missing and classes not named stay as they are.
    merges : dict of str to list of str
        New class name to the old classes that become it, e.g. ``{"Interphase": ["G1", "S"]}``.
        (A string in the command-line form, see :func:`parse_merge_spec`, is accepted too.)

    Returns
    -------
    pandas.Series
        The renamed labels, same index.

    Raises
    ------
    StainfreeError
        When an old class is not among the labels (usually a typo).

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.core.specs import merge_labels
    >>> merge_labels(pd.Series(["G1", "S", "M", None]), {"I": ["G1", "S"]}).tolist()
    ['I', 'I', 'M', None]
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
