"""Scanning a source of single-cell images before import: which layout (class folders, an
imaging-flow-cytometry export, a manifest), which classes, channels and groups."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.specs import parse_channel_list
from ..utils import StainfreeError, first_line
from .images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

IFC_PATTERN = re.compile(r"^(?P<id>.+)_Ch(?P<ch>\d+)\.(?:tif|tiff|png|jpg|jpeg)$", re.IGNORECASE)


#: Manifest columns recognised as group columns without being declared.
KNOWN_GROUP_COLUMNS = ("field", "flask", "dish", "well", "plate", "experiment", "batch", "donor", "patient", "density", "culture")


LAYOUTS = ("auto", "folders", "ifc", "manifest")


# ---------------------------------------------------------------------- import plans
@dataclasses.dataclass
class ImportPlan:
    """What an import found, before any pixel is read: one row per cell.

    Made by :func:`scan_source` and read by :func:`~stainfree.io.importers.read_plan`.

    Attributes
    ----------
    src : pathlib.Path
        The folder or manifest scanned.
    layout : str
        The layout used: ``"folders"``, ``"ifc"`` or ``"manifest"``.
    table : pandas.DataFrame
        ``cell_id``, ``source``, ``label`` and metadata columns, one row per cell.
    files : list of list of pathlib.Path
        Per cell, the files to read: one per channel for ``ifc`` and per-channel manifests, one
        file for the others.
    channels : list of str or None
        The channel names when the layout fixes them (``ifc``, per-channel manifests).
    groups : list of str
        The group columns of ``table``.
    sizes : collections.Counter
        ``(height, width, channels)`` of a sample of the files, and how often each occurs.
    select : list of str, optional
        Channels to keep when their names come from the images (``R``, ``G``, ``B``...).
    """

    src: Path
    layout: str
    table: pd.DataFrame
    files: list[list[Path]]
    channels: list[str] | None
    groups: list[str]
    sizes: Counter
    select: list[str] | None = None  # channels to keep, when their names come from the images

    def describe(self) -> str:
        """What was found, in a few lines: layout, cells per class, channels, sizes and groups."""
        lines = [f"{self.src}: layout {self.layout}, {len(self.table)} cells"]
        counts = self.table["label"].dropna().astype(str).value_counts()
        if len(counts):
            width = max(len(k) for k in counts.index)
            lines.append(f"{len(counts)} classes:")
            lines += [f"  {k:<{width}}  {v}" for k, v in counts.items()]
        unlabelled = int(self.table["label"].isna().sum())
        if unlabelled:
            lines.append(f"unlabelled: {unlabelled}")
        if self.channels:
            lines.append(f"channels: {', '.join(self.channels)}")
        if self.sizes:
            sizes = ", ".join(f"{h}x{w}{'x' + str(c) if c > 1 else ''} ({n})" for (h, w, c), n in self.sizes.most_common())
            lines.append(f"image sizes in a sample of files: {sizes}")
        for g in self.groups:
            lines.append(f"group {g}: {self.table[g].nunique()} distinct")
        return "\n".join(lines)


def _image_files(folder: Path) -> tuple[list[Path], int]:
    images, skipped = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            p = Path(root) / name
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(p)
            else:
                skipped += 1
    return images, skipped


def detect_layout(src: str | os.PathLike) -> str:
    """Which import layout a source has.

    Parameters
    ----------
    src : path
        A folder of images or a CSV/TSV manifest.

    Returns
    -------
    str
        ``"manifest"`` for a CSV file, ``"ifc"`` when every image is named
        ``<id>_Ch<k>.<ext>`` (an imaging-flow-cytometry export), otherwise ``"folders"``.

    Raises
    ------
    StainfreeError
        When ``src`` is missing, is another kind of file, or is a folder without images.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.io.scan import detect_layout
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = Path(tmp, "cells.csv").write_text("path,label\\n")
    ...     print(detect_layout(Path(tmp, "cells.csv")))
    manifest
    """
    src = Path(src)
    if not src.exists():
        raise StainfreeError(f"{src}: no such file or folder")
    if src.is_file():
        if src.suffix.lower() in (".csv", ".tsv", ".txt"):
            return "manifest"
        raise StainfreeError(f"{src}: expected a folder of images or a CSV manifest")
    files, _ = _image_files(src)
    if not files:
        raise StainfreeError(f"{src}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if all(IFC_PATTERN.match(f.name) for f in files):
        return "ifc"
    return "folders"


def _class_of(src: Path, f: Path) -> str | None:
    rel = f.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else None


def _class_folder_images(src: Path) -> list[Path]:
    """The images under ``src``, checked to lie either all in class folders or all directly in it."""
    files, skipped = _image_files(src)
    if not files:
        raise StainfreeError(f"{src}: no images found")
    if skipped:
        logger.info("%s: ignored %d files that are not images", src, skipped)
    _check_class_folders(src, files)
    return files


def _check_class_folders(src: Path, files: list[Path]) -> None:
    top_level = [f for f in files if f.parent == src]
    in_folders = [f for f in files if f.parent != src]
    if top_level and in_folders:
        raise StainfreeError(
            f"{src}: images both directly inside ({top_level[0].name}) and in class folders; "
            "move them into class folders or import them separately"
        )
    with_images = {_class_of(src, f) for f in in_folders}
    for d in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name not in with_images:
            raise StainfreeError(f"{d}: class folder has no images")


def _scan_folders(src: Path) -> tuple[pd.DataFrame, list[list[Path]], list[str] | None]:
    files = _class_folder_images(src)
    table = pd.DataFrame(
        {
            "cell_id": [f.relative_to(src).with_suffix("").as_posix() for f in files],
            "source": [f.relative_to(src).as_posix() for f in files],
            "label": [_class_of(src, f) for f in files],
        }
    )
    return table, [[f] for f in files], None


def _scan_ifc(src: Path, channels: Sequence[str] | None) -> tuple[pd.DataFrame, list[list[Path]], list[str]]:
    files = _class_folder_images(src)
    cells: dict[tuple[Path, str], dict[str, Path]] = {}
    for f in files:
        m = IFC_PATTERN.match(f.name)
        if m is None:
            raise StainfreeError(f"{f}: not named <id>_Ch<k>.<ext> as the ifc layout needs")
        key = (f.parent, m["id"])
        ch = f"Ch{int(m['ch'])}"
        cells.setdefault(key, {})[ch] = f
    found = sorted({ch for chans in cells.values() for ch in chans}, key=lambda c: int(c[2:]))
    if channels is None:
        wanted = found
    else:
        wanted = [_normalise_ifc_channel(c) for c in channels]
        for ch in wanted:
            if ch not in found:
                raise StainfreeError(f"{src}: no file of channel {ch} (channels found: {', '.join(found)})")
    rows, per_cell = [], []
    for (folder, cid), chans in sorted(cells.items(), key=lambda kv: (str(kv[0][0]), _natural_key(kv[0][1]))):
        missing = [ch for ch in wanted if ch not in chans]
        if missing:
            raise StainfreeError(
                f"{folder / cid}: cell has no {missing[0]} file (it has {', '.join(sorted(chans))}); choose channels with --channels"
            )
        first = chans[wanted[0]]
        rel_folder = folder.relative_to(src)
        rows.append(
            {
                "cell_id": (rel_folder / cid).as_posix() if rel_folder.parts else cid,
                "source": first.relative_to(src).as_posix(),
                "label": _class_of(src, first),
            }
        )
        per_cell.append([chans[ch] for ch in wanted])
    return pd.DataFrame(rows), per_cell, wanted


def _normalise_ifc_channel(name: str) -> str:
    m = re.fullmatch(r"(?i)ch0*(\d+)", name.strip())
    if not m:
        raise StainfreeError(f"channel {name!r} is not of the form Ch<k> used by the ifc layout")
    return f"Ch{int(m[1])}"


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _scan_manifest(src: Path, channels: Sequence[str] | None) -> tuple[pd.DataFrame, list[list[Path]], list[str] | None]:
    sep = "\t" if src.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(src, sep=sep)
    except Exception as exc:
        raise StainfreeError(f"{src}: unreadable CSV ({first_line(exc)})") from exc
    if df.empty:
        raise StainfreeError(f"{src}: manifest has no rows")
    df = df.rename(columns=lambda c: c[len("Metadata_") :] if str(c).startswith("Metadata_") else c)
    path_cols = [c for c in df.columns if str(c).startswith("path_")]
    if "path" in df.columns:
        if path_cols:
            raise StainfreeError(f"{src}: has both a path column and per-channel path_<channel> columns")
        path_cols = ["path"]
        chans = None
    elif path_cols:
        chans = [c[len("path_") :] for c in path_cols]
    else:
        raise StainfreeError(f"{src}: manifest needs a 'path' column or per-channel 'path_<channel>' columns")
    if channels is not None and chans is not None:
        wanted = list(channels)
        for ch in wanted:
            if ch not in chans:
                raise StainfreeError(f"{src}: no column path_{ch} (channels: {', '.join(chans)})")
        path_cols = [f"path_{ch}" for ch in wanted]
        chans = wanted
    if "label" not in df.columns and "class" in df.columns:
        df = df.rename(columns={"class": "label"})
    base = src.parent
    files = []
    for i, row in df.iterrows():
        paths = []
        for col in path_cols:
            value = row[col]
            if pd.isna(value) or not str(value).strip():
                raise StainfreeError(f"{src}: row {i + 2} has no {col}")
            p = Path(str(value))
            paths.append(p if p.is_absolute() else base / p)
        files.append(paths)
    table = df.drop(columns=path_cols).copy()
    if "cell_id" not in table.columns:
        table.insert(0, "cell_id", [Path(str(v)).with_suffix("").as_posix() for v in df[path_cols[0]]])
    table["source"] = df[path_cols[0]].astype(str).to_numpy()
    if "label" not in table.columns:
        table["label"] = None
    table["label"] = table["label"].map(lambda v: None if pd.isna(v) else str(v))
    if table["cell_id"].duplicated().any():
        dup = table["cell_id"][table["cell_id"].duplicated()].iloc[0]
        raise StainfreeError(f"{src}: cell_id {dup!r} appears twice")
    return table, files, chans


def parse_group_spec(spec: str) -> tuple[str, str | None]:
    """Split a command-line group option into a column name and a regular expression.

    Parameters
    ----------
    spec : str
        ``NAME=REGEX`` (a group taken from file names) or ``NAME`` (an existing manifest column).

    Returns
    -------
    tuple of (str, str or None)
        The name and the regular expression (``None`` for a plain name).

    Raises
    ------
    StainfreeError
        When the name is not a plain identifier or the expression is empty.

    Examples
    --------
    >>> from stainfree.io.scan import parse_group_spec
    >>> parse_group_spec(r"field=-(\\d{6})")
    ('field', '-(\\\\d{6})')
    >>> parse_group_spec("dish")
    ('dish', None)
    """
    name, sep, pattern = spec.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise StainfreeError(f"group {spec!r}: the name before '=' must be a plain column name")
    if sep and not pattern:
        raise StainfreeError(f"group {spec!r}: empty regular expression")
    return name, (pattern if sep else None)


def _apply_group_regex(table: pd.DataFrame, files: list[list[Path]], name: str, pattern: str, *, qualify: bool, src: Path) -> None:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise StainfreeError(f"group {name}: invalid regular expression {pattern!r} ({exc})") from exc
    values, unmatched = [], []
    for paths in files:
        m = regex.search(paths[0].name)
        if m is None:
            unmatched.append(paths[0])
            values.append(None)
        else:
            values.append(m.group(1) if regex.groups else m.group(0))
    if len(unmatched) == len(files):
        raise StainfreeError(f"group {name}: regular expression {pattern!r} matches no file name in {src} (e.g. {files[0][0].name})")
    if unmatched:
        raise StainfreeError(
            f"group {name}: regular expression {pattern!r} matches no part of {unmatched[0]} "
            f"({len(unmatched)} of {len(files)} files unmatched)"
        )
    if qualify:
        labels = table["label"].to_numpy()
        values = [v if lab is None else f"{lab}/{v}" for v, lab in zip(values, labels)]
    table[name] = values


def scan_source(
    src: str | os.PathLike,
    *,
    layout: str = "auto",
    channels: Sequence[str] | None = None,
    groups: Mapping[str, str | None] | Sequence[str] | None = None,
    groups_across_classes: bool = False,
    sample: int = 64,
) -> ImportPlan:
    """Find the cells in ``src`` without reading their pixels.

    The first half of :func:`~stainfree.io.importers.import_cells`; look at the plan (its
    :meth:`~ImportPlan.describe`), then read it with :func:`~stainfree.io.importers.read_plan`.

    Parameters
    ----------
    src : path
        A folder of class folders, an imaging-flow-cytometry export folder, or a CSV manifest.
    layout : {"auto", "folders", "ifc", "manifest"}, default "auto"
        How ``src`` is organised; ``"auto"`` asks :func:`detect_layout`.
    channels : list of str, optional
        Channels to keep, in order, e.g. ``["Ch3", "Ch6"]`` (all when not given); the names
        are those explained for :func:`~stainfree.io.importers.import_cells`.
    groups : dict or list of str, optional
        Group columns: a dict of name to regular expression (``None`` for an existing manifest
        column), or a list of ``"name=regex"`` / ``"name"`` strings.
    groups_across_classes : bool, default False
        Do not qualify regex group values by class folder.
    sample : int, default 64
        How many files to peek at for the image sizes.

    Returns
    -------
    ImportPlan
        The cells found, their files, channels and groups.

    Raises
    ------
    StainfreeError
        When ``src`` does not fit the layout, a channel or group is not found, or the class
        folders are inconsistent.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.io.export import write_class_folders
    >>> from stainfree.io.scan import scan_source
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_class_folders(make_cells(3, size=16, flasks_per_line=1), tmp)
    ...     plan = scan_source(tmp, groups={"flask": r"(\\w+-flask\\d)"})
    >>> plan.layout, len(plan.files), plan.groups, dict(plan.sizes)
    ('folders', 6, ['flask'], {(16, 16, 1): 6})
    """
    src = Path(src)
    if layout not in LAYOUTS:
        raise StainfreeError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    found_layout = detect_layout(src) if layout == "auto" else layout
    if not src.exists():
        raise StainfreeError(f"{src}: no such file or folder")
    if channels is not None:
        channels = parse_channel_list(channels)
    if found_layout == "folders":
        if not src.is_dir():
            raise StainfreeError(f"{src}: the folders layout needs a folder")
        table, files, chans = _scan_folders(src)
    elif found_layout == "ifc":
        if not src.is_dir():
            raise StainfreeError(f"{src}: the ifc layout needs a folder")
        table, files, chans = _scan_ifc(src, channels)
    else:
        if not src.is_file():
            raise StainfreeError(f"{src}: the manifest layout needs a CSV file")
        table, files, chans = _scan_manifest(src, channels)

    if isinstance(groups, Mapping):
        group_specs = list(groups.items())
    else:
        group_specs = [parse_group_spec(g) for g in (groups or [])]
    declared = []
    has_classes = table["label"].notna().any() and found_layout != "manifest"
    for name, pattern in group_specs:
        if name in ("cell_id", "label", "source"):
            raise StainfreeError(f"group {name}: that column name is reserved")
        if pattern is None:
            if name not in table.columns:
                raise StainfreeError(f"group column {name!r} does not exist (columns: {', '.join(map(str, table.columns))})")
        else:
            _apply_group_regex(table, files, name, pattern, qualify=has_classes and not groups_across_classes, src=src)
        declared.append(name)
    for name in KNOWN_GROUP_COLUMNS:
        if name in table.columns and name not in declared:
            declared.append(name)

    sizes: Counter = Counter()
    if len(files):
        picks = np.unique(np.linspace(0, len(files) - 1, min(sample, len(files))).astype(int))
        for i in picks:
            sizes[_peek_size(files[i][0])] += 1
    select = channels if channels is not None and chans is None else None
    return ImportPlan(src=src, layout=found_layout, table=table, files=files, channels=chans, groups=declared, sizes=sizes, select=select)


def _peek_size(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) from the file header, without decoding the pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        else:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
                return (h, w, 3 if len(im.getbands()) >= 3 else 1)
    except Exception as exc:
        raise StainfreeError(f"{path}: unreadable image ({first_line(exc)})") from exc
    if len(shape) == 2:
        return (shape[0], shape[1], 1)
    if shape[-1] in (3, 4):
        return (shape[0], shape[1], min(shape[-1], 3))
    return (shape[-2], shape[-1], shape[0])
