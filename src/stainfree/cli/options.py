"""Options and parsing helpers shared by several commands."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import typer

from ..utils import StainfreeError, read_parquet, refuse_partial

#: Training options of `evaluate` and `compare`: name -> (type, typer option); the command receives
#: the given ones as one keyword ``train``.
TRAIN_OPTIONS = {
    "model": (
        str | None,
        typer.Option(None, help="Model name (`stainfree models` lists them); default: cnn3, resnet_small for crops over 128 px."),
    ),
    "epochs": (int | None, typer.Option(None, help="Maximum training epochs (default adapts to the number of cells).")),
    "batch_size": (int | None, typer.Option(None, "--batch-size", help="Cells per training step (default adapts to the number of cells).")),
    "lr": (float | None, typer.Option(None, help="Peak learning rate (default 3e-3, one-cycle cosine schedule).")),
    "optimizer": (str | None, typer.Option(None, help="adam, adamw (default) or sgd.")),
    "loss_weighting": (str | None, typer.Option(None, "--loss-weighting", help="none (default), sqrt (1/sqrt(count)) or inv (1/count).")),
    "sampling": (str | None, typer.Option(None, help="balanced (default: class-balanced sampling) or shuffle.")),
    "monitor": (str | None, typer.Option(None, help="Early stopping on val_loss or balanced_accuracy (with --val-fraction).")),
    "patience": (int | None, typer.Option(None, help="Epochs without improvement before stopping.")),
    "ema": (
        float | None,
        typer.Option(
            None, help="Decay of an exponential moving average of the weights, used as the final model (e.g. 0.999; default 0, off)."
        ),
    ),
    "val_fraction": (
        float | None,
        typer.Option(
            None,
            "--val-fraction",
            help="Fraction of the training cells held out for early stopping (default 0: train on all, keep the last epoch).",
        ),
    ),
    "augment": (
        str | None,
        typer.Option(
            None,
            help="Augmentation preset (none, flips, standard, rotations (default), yao, engberg, strong) or a comma list such as rot90,flip,blur.",
        ),
    ),
    "blackout": (
        str | None,
        typer.Option(
            None,
            help="none (default), full or partial: black out the background outside half the cells' masks while training (cells from `stainfree segment`).",
        ),
    ),
    "normalisation": (str | None, typer.Option(None, help="auto (the model's), robust, quantile or circle.")),
    "input_size": (
        int | None,
        typer.Option(None, "--input-size", help="Resize cells to N x N for the model (default: their own size, half above 128 px)."),
    ),
    "seed": (int | None, typer.Option(None, help="Random seed (default 0).")),
}


def workers_option(what: str):
    """``--workers N``: ``what`` (e.g. "Measure the cells") on a local Dask cluster of N processes."""
    return typer.Option(0, "--workers", help=f"{what} on a local Dask cluster of N processes (default 0: here; same result).")


def scheduler_option():
    """``--scheduler ADDRESS``: the same work on a running Dask scheduler."""
    return typer.Option(
        None, "--scheduler", help="Send the work to a running Dask scheduler instead, e.g. tcp://host:8786 (dask-jobqueue)."
    )


#: How fields are read and segmented: name -> (type, typer option); see :func:`with_field_options`.
FIELD_OPTIONS = {
    "channels": (
        str | None,
        typer.Option(
            None, help="Names for the fields' channels in file order, e.g. bf,mCherry (default: stored OME names, else ch0, ch1...)."
        ),
    ),
    "grey": (bool, typer.Option(False, "--grey", help="Convert colour fields to one grey channel.")),
    "planes": (str, typer.Option("channels", help="Z-slices/time points become extra channels (channels) or separate fields (fields).")),
    "pixel_size": (float | None, typer.Option(None, "--pixel-size", help="Micrometres per pixel (default: from the file, where stored).")),
    "mode": (
        str,
        typer.Option("auto", help="Segmentation mode: auto (per field: dark background = fluorescence), fluorescence or brightfield."),
    ),
    "method": (
        str,
        typer.Option(
            "auto",
            help="auto (the learnt model on transmitted-light fields, classical on fluorescence), learnt, classical (Otsu/local threshold + watershed) or cellpose (optional extra).",
        ),
    ),
    "segmenter": (
        str | None,
        typer.Option(
            None,
            "--segmenter",
            "--model",
            help="Learnt segmentation model: a .safetensors from train-segmenter, or builtin:phase (the default, phase contrast).",
        ),
    ),
    "segment_channel": (
        str | None,
        typer.Option(None, "--segment-channel", help="Channel to segment (default: the first that is not the label channel)."),
    ),
    "diameter": (float | None, typer.Option(None, help="Expected object diameter in pixels (default: estimated per field).")),
    "min_area": (
        str | None,
        typer.Option(
            None,
            "--min-area",
            help="Drop smaller objects: pixels (30) or square micrometres (20um2). Default: a disk of 0.2 diameters radius.",
        ),
    ),
    "max_area": (
        str | None,
        typer.Option(None, "--max-area", help="Drop larger objects: pixels or square micrometres. Default: no limit."),
    ),
    "clear_border": (bool, typer.Option(False, "--clear-border", help="Drop objects touching the field's border.")),
    "smoothing": (float, typer.Option(1.0, help="Gaussian sigma (px) before thresholding; the variance window in brightfield mode.")),
    "threshold_scale": (
        float | None,
        typer.Option(None, "--threshold-scale", help="Global floor as a multiple of Otsu (default 0.75 fluorescence, 1.5 brightfield)."),
    ),
    "local_window": (float, typer.Option(2.0, "--local-window", help="Local threshold window in diameters (0 = global threshold only).")),
    "min_distance": (
        float | None,
        typer.Option(None, "--min-distance", help="Minimum distance between watershed markers in px (default 0.3 diameter)."),
    ),
    "pad": (
        bool,
        typer.Option(
            False, "--pad", help="Keep objects whose crop leaves the field, padding with the median (default: skip and count them)."
        ),
    ),
    "points": (
        Path | None,
        typer.Option(None, "--points", help="CSV of x, y (and field, label/class, metadata) to crop at instead of segmenting."),
    ),
    "label_channel": (
        str | None,
        typer.Option(None, "--label-channel", help="Fluorescence channel that labels the cells (two-population Gaussian mixture)."),
    ),
    "label_names": (
        str | None,
        typer.Option(None, "--label-names", help="Class names for the dim and the bright population, e.g. HEK,HT1080."),
    ),
    "label_radius": (
        float | None,
        typer.Option(
            None, "--label-radius", help="Radius (px) of the per-cell intensity disk (default: half the diameter; 30 with --points)."
        ),
    ),
    "background_sigma": (float, typer.Option(200.0, "--background-sigma", help="Sigma (px) of the blur the label channel is divided by.")),
    "min_posterior": (float, typer.Option(0.8, "--min-posterior", help="Cells below this posterior for both populations stay unlabelled.")),
    "workers": (int, workers_option("Run the fields (or, for predict on a CellSet, batches of cells)")),
    "scheduler": (str | None, scheduler_option()),
}


#: The options that make up the classical pipeline's :class:`~stainfree.seg.classical.SegmentationParams`.
SEGMENTATION_OPTIONS = ("mode", "diameter", "clear_border", "smoothing", "threshold_scale", "local_window", "min_distance")
#: What scoring a segmentation needs: reading the fields and segmenting them.
SCORING_OPTIONS = ("channels", "grey", "pixel_size", "method", "segmenter", "segment_channel", *SEGMENTATION_OPTIONS)


def _with_options(table: dict, names: tuple[str, ...], receive_as: str, convert):
    """Add the named options of ``table`` to a command's signature; the command receives them as
    one keyword ``receive_as``: ``convert`` of the dict of given values."""

    def wrap(func):
        signature = inspect.signature(func, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != receive_as]
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=table[n][1], annotation=table[n][0]) for n in names]

        @functools.wraps(func)
        def command(**kwargs):
            given = {n: kwargs.pop(n) for n in names}
            return func(**kwargs, **{receive_as: convert(given)})

        command.__signature__ = signature.replace(parameters=kept + extra)
        command.__annotations__ = {p.name: p.annotation for p in kept + extra}
        return command

    return wrap


def with_field_options(*names: str):
    """Give a command the named :data:`FIELD_OPTIONS` (all of them when none is named); it
    receives them as one keyword ``field``: a dict of library keywords (see :func:`field_keywords`)."""
    return _with_options(FIELD_OPTIONS, names or tuple(FIELD_OPTIONS), "field", field_keywords)


def with_train_options(*names: str):
    """Give a command the named :data:`TRAIN_OPTIONS` (all when none is named); it receives those
    the user gave as one keyword ``train``, a dict for :meth:`TrainConfig.for_data`."""
    return _with_options(
        TRAIN_OPTIONS, names or tuple(TRAIN_OPTIONS), "train", lambda given: {k: v for k, v in given.items() if v is not None}
    )


def field_keywords(given: dict) -> dict:
    """Command-line field options -> library keywords: name lists split at commas, and the
    classical-segmentation options gathered into ``params``.

    >>> field_keywords({"channels": "bf,gfp", "grey": False, "diameter": 30.0})["channels"]
    ['bf', 'gfp']
    """
    from ..seg.classical import SegmentationParams

    out = dict(given)
    for name in ("channels", "label_names"):
        if name in out:
            out[name] = split_names(out[name])
    segmentation = {n: out.pop(n) for n in SEGMENTATION_OPTIONS if n in out}
    if segmentation:
        out["params"] = SegmentationParams(**segmentation)
        out["params"].validate()
    return out


def read_table(path: Path):
    refuse_partial(path)
    try:
        return read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not parquet
        from ..utils import first_line

        raise StainfreeError(f"{path}: not a readable parquet table ({first_line(exc)})") from exc


def split_names(value: str | None) -> list | None:
    from ..core.specs import parse_channel_list

    return parse_channel_list(value) if value else None


def read_h5ad(path: Path):
    import anndata

    refuse_partial(path)
    if not path.is_file():
        raise StainfreeError(f"{path}: no such file")
    try:
        return anndata.read_h5ad(path)
    except Exception as exc:
        from ..utils import first_line

        raise StainfreeError(f"{path}: not a readable .h5ad ({first_line(exc)})") from exc


#: ``--search`` and ``--budget`` of `evaluate` and `train` (:func:`search_options`).
SEARCH_HELP = (
    "Choose the configuration by inner cross-validation on the training cells only (nested; candidates: "
    "default, lr_1e-3, flips, cnn3_wide, resnet_small, resnet, input_2x); the training options you give stay fixed."
)
BUDGET_HELP = "Time for the whole search, e.g. 90s, 10m or 1h (implies --search; default: no limit)."


def search_options(search: bool, budget: str | None, train: dict):
    """``--search``/``--budget`` and the given training options -> a :class:`~stainfree.eval.search.Search` or ``None``."""
    if not search and budget is None:
        return None
    from ..eval.search import Search, parse_budget

    found = Search(budget=parse_budget(budget), fixed=tuple(train))
    found.validate()
    return found


def echo_headline(metrics: dict) -> None:
    """An evaluation's headline, the configurations a search chose, and a ranking-gap note."""
    from ..report.html import ranking_gap_note

    typer.echo(metrics["headline"])
    if found := metrics.get("search"):
        chosen = ", ".join(f"{name} {entry['chosen']}" for name, entry in found["splits"].items())
        final = f"; final model {found['final']['chosen']}" if found.get("final") else ""
        typer.echo(f"configuration chosen by inner cross-validation: {chosen}{final}")
    if gap := ranking_gap_note(metrics):
        typer.echo(gap)
