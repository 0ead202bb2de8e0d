"""The ``stainfree`` command: a thin layer that parses arguments, calls the library and reports.

Every error in the user's input becomes one line on stderr and exit status 1; an interrupt
leaves no half-written output and exits 130.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .utils import StainfreeError, read_parquet

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Label-free single-cell image analysis: import cells, train and evaluate classifiers honestly.",
)
logger = logging.getLogger("stainfree")


@app.callback()
def _setup(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debugging detail."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show warnings and errors."),
):
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("stainfree")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="Folder of class folders, an IFC export folder, or a CSV manifest."),
    out: Path = typer.Option(..., "--out", "-o", help="CellSet folder to write (e.g. cells.cells)."),
    layout: str = typer.Option("auto", help="auto, folders, ifc or manifest."),
    channels: Optional[str] = typer.Option(None, help="Channels to keep, in order: Ch3,Ch6 (ifc), R,G (colour files), or manifest path_<name> names."),
    grey: bool = typer.Option(False, "--grey", help="Convert RGB images to one grey channel."),
    size: Optional[int] = typer.Option(None, help="Resize every cell to N x N pixels."),
    crop: Optional[int] = typer.Option(None, help="Centre-crop or pad every cell to N x N pixels."),
    group: List[str] = typer.Option([], "--group", help="NAME=REGEX on file names (first capture group), or NAME of a manifest column. Repeatable."),
    groups_across_classes: bool = typer.Option(False, "--groups-across-classes", help="Equal group values in different class folders are the same group (default: qualified by class folder)."),
    merge_classes: Optional[str] = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase' (';' separates merges)."),
    pixel_size: Optional[float] = typer.Option(None, "--pixel-size", help="Micrometres per pixel, recorded in the CellSet."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Import single-cell images into a CellSet."""
    from .io.importers import read_plan, scan_source

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    plan = scan_source(src, layout=layout, channels=channels, groups=group, groups_across_classes=groups_across_classes)
    typer.echo(plan.describe())
    cells = read_plan(plan, out, grey=grey, size=size, crop=crop, merge_classes=merge_classes, pixel_size=pixel_size, force=force)
    typer.echo(f"wrote {out}: {cells.describe().splitlines()[0]}")


@app.command()
def info(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Summarise a CellSet: cells, channels, size, classes and groups."""
    from .core.store import open_cellset

    cs = open_cellset(cells)
    typer.echo(json.dumps(cs.summary(), indent=2) if as_json else cs.describe())


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="CellSet folder to write."),
    n_per_class: int = typer.Option(200, "--cells-per-class", help="Cells of each synthetic line."),
    size: int = typer.Option(64, help="Crop size in pixels."),
    flasks: int = typer.Option(4, "--flasks-per-line", help="Flasks per line (the group column 'flask')."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Write a synthetic labelled CellSet (two cell lines grown in separate flasks)."""
    from .datasets.synthetic import make_cells

    cs = make_cells(n_per_class, size=size, flasks_per_line=flasks, seed=seed)
    cs.save(out, force=force)
    typer.echo(f"wrote {out}: {cs.describe().splitlines()[0]}")


_TRAIN_OPTIONS = dict(
    model=typer.Option(None, help="Model name (`stainfree models` lists them); default: the default model."),
    epochs=typer.Option(None, help="Maximum training epochs (default adapts to the number of cells)."),
    batch_size=typer.Option(None, "--batch-size", help="Cells per training step (default adapts to the number of cells)."),
    lr=typer.Option(None, help="Peak learning rate (default 3e-3, one-cycle cosine schedule)."),
    optimizer=typer.Option(None, help="adam, adamw (default) or sgd."),
    loss_weighting=typer.Option(None, "--loss-weighting", help="none (default), sqrt (1/sqrt(count)) or inv (1/count)."),
    sampling=typer.Option(None, help="balanced (default: class-balanced sampling) or shuffle."),
    monitor=typer.Option(None, help="Early stopping on val_loss or balanced_accuracy (with --val-fraction)."),
    patience=typer.Option(None, help="Epochs without improvement before stopping."),
    val_fraction=typer.Option(None, "--val-fraction", help="Fraction of the training cells held out for early stopping (default 0: train on all, keep the last epoch)."),
    augment=typer.Option(None, help="Augmentation preset (none, flips, standard, rotations (default), yao, engberg, strong) or a comma list such as rot90,flip,blur."),
    blackout=typer.Option(None, help="none (default), full or partial: black out the background outside half the cells' masks while training (cells from `stainfree segment`)."),
    normalisation=typer.Option(None, help="auto (the model's), robust, quantile or circle."),
    input_size=typer.Option(None, "--input-size", help="Resize cells to N x N for the model (default: their own size, half above 128 px)."),
    seed=typer.Option(None, help="Random seed (default 0)."),
)


@app.command()
def evaluate(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    protocol: Optional[str] = typer.Option(None, help="kfold, holdout, group-kfold, leave-one-group-out, cross-group or audit-groups (default: kfold, or group-kfold with --group)."),
    folds: int = typer.Option(5, help="Folds for kfold and group-kfold."),
    repeats: int = typer.Option(1, help="Repeats of kfold, group-kfold or holdout."),
    group: Optional[str] = typer.Option(None, help="Group column (field, flask, dish...): evaluate on held-out groups."),
    channels: Optional[str] = typer.Option(None, help="Channels to use, e.g. Ch3,Ch6 (default: all)."),
    merge_classes: Optional[str] = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase'."),
    baselines: str = typer.Option(",".join(("majority", "area_svm", "features_rf")), help="Baselines beside the model, comma-separated: majority, area_svm, features_rf, outline_cnn (a CNN on the cell outline only; slow). Empty for none."),
    features: Optional[Path] = typer.Option(None, "--features", help="Features .parquet from `stainfree features` for the area_svm and features_rf baselines (default: measured now)."),
    learning_curve: Optional[str] = typer.Option(None, "--learning-curve", help="Training fractions, e.g. 0.1,0.25,0.5,1."),
    final_model: bool = typer.Option(True, "--final-model/--no-final-model", help="Also train a model on all cells (RUN/model.safetensors)."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the finished splits of an interrupted run of the same OUT."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Test-time augmentation: average over the 8 rotations/flips of each test cell."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    model: Optional[str] = _TRAIN_OPTIONS["model"],
    epochs: Optional[int] = _TRAIN_OPTIONS["epochs"],
    batch_size: Optional[int] = _TRAIN_OPTIONS["batch_size"],
    lr: Optional[float] = _TRAIN_OPTIONS["lr"],
    optimizer: Optional[str] = _TRAIN_OPTIONS["optimizer"],
    loss_weighting: Optional[str] = _TRAIN_OPTIONS["loss_weighting"],
    sampling: Optional[str] = _TRAIN_OPTIONS["sampling"],
    monitor: Optional[str] = _TRAIN_OPTIONS["monitor"],
    patience: Optional[int] = _TRAIN_OPTIONS["patience"],
    val_fraction: Optional[float] = _TRAIN_OPTIONS["val_fraction"],
    augment: Optional[str] = _TRAIN_OPTIONS["augment"],
    blackout: Optional[str] = _TRAIN_OPTIONS["blackout"],
    normalisation: Optional[str] = _TRAIN_OPTIONS["normalisation"],
    input_size: Optional[int] = _TRAIN_OPTIONS["input_size"],
    seed: Optional[int] = _TRAIN_OPTIONS["seed"],
):
    """Train and evaluate a classifier honestly: protocol, intervals, baselines beside it."""
    from .core.store import open_cellset
    from .workflows.evaluate import evaluate_to_run

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    cs = open_cellset(cells)
    if channels:
        cs = cs.select_channels(channels)
    if merge_classes:
        cs = cs.merge_classes(merge_classes)
    from .ml.train import TrainConfig

    config = TrainConfig.for_data(
        cs, model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, loss_weighting=loss_weighting,
        sampling=sampling, monitor=monitor, patience=patience, val_fraction=val_fraction, augment=augment, blackout=blackout,
        normalisation=normalisation, input_size=input_size, seed=seed,
    )
    config.validate()
    sizes = [float(v) for v in learning_curve.split(",")] if learning_curve else None
    if sizes and not all(0 < v <= 1 for v in sizes):
        raise StainfreeError(f"learning-curve fractions must be in (0, 1], got {learning_curve}")
    names = [b.strip() for b in baselines.split(",") if b.strip()]
    path, metrics = evaluate_to_run(
        cs, out, protocol=protocol, group=group, n_folds=folds, repeats=repeats, config=config, baselines=names,
        train_sizes=sorted(sizes) if sizes else None, final_model=final_model, force=force, resume=resume, tta=tta,
        features=_read_table(features) if features else None,
        data={"cells": str(cells), "channels": cs.channels, "merge_classes": merge_classes, "n_cells": len(cs)},
    )
    typer.echo(f"wrote {path}")
    typer.echo(metrics["headline"])


@app.command()
def compare(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for one run per condition and comparison.json."),
    condition: List[str] = typer.Option([], "--condition", help="NAME=CHANNELS, e.g. bf=Ch3 or bfdf=Ch3,Ch6. Repeatable (default: all channels)."),
    seeds: int = typer.Option(1, help="Repeat every condition with seeds 0..N-1 (spread over random initialisation)."),
    protocol: Optional[str] = typer.Option(None, help="As for evaluate."),
    folds: int = typer.Option(5, help="Folds."),
    group: Optional[str] = typer.Option(None, help="Group column."),
    merge_classes: Optional[str] = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase'."),
    model: Optional[str] = _TRAIN_OPTIONS["model"],
    epochs: Optional[int] = _TRAIN_OPTIONS["epochs"],
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Run the same protocol per channel set and seed, and tabulate balanced accuracy."""
    from .core.specs import parse_channel_list
    from .core.store import open_cellset
    from .ml.train import TrainConfig
    from .workflows.evaluate import compare_to_run

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    cs = open_cellset(cells)
    if merge_classes:
        cs = cs.merge_classes(merge_classes)
    conditions = {}
    for spec in condition:
        name, sep, chans = spec.partition("=")
        if not sep or not name.strip():
            raise StainfreeError(f"condition {spec!r} is not of the form NAME=CH1,CH2")
        conditions[name.strip()] = parse_channel_list(chans)
    if seeds < 1:
        raise StainfreeError(f"seeds must be at least 1, got {seeds}")
    config = TrainConfig.for_data(cs, model=model, epochs=epochs)
    config.validate()
    _, body = compare_to_run(cs, out, conditions=conditions or None, seeds=list(range(seeds)), config=config, force=force, protocol=protocol, n_folds=folds, group=group, baselines=["majority"])
    typer.echo(f"wrote {out}")
    for name, r in body["conditions"].items():
        ba = r["balanced_accuracy"]
        typer.echo(f"{name} ({r['channels']}): balanced accuracy {ba['mean']:.3f} (sd {ba['std']:.3f} over {ba['seeds']} seed(s))")


_FIELD_OPTIONS = dict(
    channels=typer.Option(None, help="Names for the fields' channels in file order, e.g. bf,mCherry (default: stored OME names, else ch0, ch1...)."),
    grey=typer.Option(False, "--grey", help="Convert colour fields to one grey channel."),
    planes=typer.Option("channels", help="Z-slices/time points become extra channels (channels) or separate fields (fields)."),
    pixel_size=typer.Option(None, "--pixel-size", help="Micrometres per pixel (default: from the file, where stored)."),
    mode=typer.Option("auto", help="Segmentation mode: auto (per field: dark background = fluorescence), fluorescence or brightfield."),
    method=typer.Option("auto", help="auto (the learnt model on transmitted-light fields, classical on fluorescence), learnt, classical (Otsu/local threshold + watershed) or cellpose (optional extra)."),
    segmenter=typer.Option(None, "--segmenter", "--model", help="Learnt segmentation model: a .safetensors from train-segmenter, or builtin:phase (the default, phase contrast)."),
    segment_channel=typer.Option(None, "--segment-channel", help="Channel to segment (default: the first that is not the label channel)."),
    diameter=typer.Option(None, help="Expected object diameter in pixels (default: estimated per field)."),
    min_area=typer.Option(None, "--min-area", help="Drop smaller objects: pixels (30) or square micrometres (20um2). Default: a disk of 0.2 diameters radius."),
    max_area=typer.Option(None, "--max-area", help="Drop larger objects: pixels or square micrometres. Default: no limit."),
    clear_border=typer.Option(False, "--clear-border", help="Drop objects touching the field's border."),
    smoothing=typer.Option(1.0, help="Gaussian sigma (px) before thresholding; the variance window in brightfield mode."),
    threshold_scale=typer.Option(None, "--threshold-scale", help="Global floor as a multiple of Otsu (default 0.75 fluorescence, 1.5 brightfield)."),
    local_window=typer.Option(2.0, "--local-window", help="Local threshold window in diameters (0 = global threshold only)."),
    min_distance=typer.Option(None, "--min-distance", help="Minimum distance between watershed markers in px (default 0.3 diameter)."),
    pad=typer.Option(False, "--pad", help="Keep objects whose crop leaves the field, padding with the median (default: skip and count them)."),
    points=typer.Option(None, "--points", help="CSV of x, y (and field, label/class, metadata) to crop at instead of segmenting."),
    label_channel=typer.Option(None, "--label-channel", help="Fluorescence channel that labels the cells (two-population Gaussian mixture)."),
    label_names=typer.Option(None, "--label-names", help="Class names for the dim and the bright population, e.g. HEK,HT1080."),
    label_radius=typer.Option(None, "--label-radius", help="Radius (px) of the per-cell intensity disk (default: half the diameter; 30 with --points)."),
    background_sigma=typer.Option(200.0, "--background-sigma", help="Sigma (px) of the blur the label channel is divided by."),
    min_posterior=typer.Option(0.8, "--min-posterior", help="Cells below this posterior for both populations stay unlabelled."),
)


def _segmentation_params(mode, diameter, clear_border, smoothing, threshold_scale, local_window, min_distance):
    from .seg.classical import SegmentationParams

    params = SegmentationParams(
        mode=mode, diameter=diameter, clear_border=clear_border, smoothing=smoothing,
        threshold_scale=threshold_scale, local_window=local_window, min_distance=min_distance,
    )
    params.validate()
    return params


def _read_table(path: Path):
    try:
        return read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not parquet
        from .utils import first_line

        raise StainfreeError(f"{path}: not a readable parquet table ({first_line(exc)})") from None


def _names(value: Optional[str]) -> Optional[list]:
    from .core.specs import parse_channel_list

    return parse_channel_list(value) if value else None


@app.command()
def segment(
    fields: List[Path] = typer.Argument(..., help="Field images: TIFF/OME-TIFF (multi-channel, z, t), PNG or JPG."),
    out: Path = typer.Option(..., "--out", "-o", help="CellSet folder to write (e.g. cells.cells)."),
    size: int = typer.Option(64, help="Crop size in pixels (224 for benchtop flask images, 150, 128, 64...)."),
    save_labels: Optional[Path] = typer.Option(None, "--save-labels", help="Also write each field's label image as DIR/<field>_labels.tif."),
    keep_label_channel: bool = typer.Option(False, "--keep-label-channel", help="Keep the label channel in the crops (default: left out, so no classifier sees the stain)."),
    balance: bool = typer.Option(False, "--balance", help="Subsample classes to equal counts within each field."),
    seed: int = typer.Option(0, help="Random seed (mixture fit, balancing)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT (and label images) if they exist."),
    channels: Optional[str] = _FIELD_OPTIONS["channels"],
    grey: bool = _FIELD_OPTIONS["grey"],
    planes: str = _FIELD_OPTIONS["planes"],
    pixel_size: Optional[float] = _FIELD_OPTIONS["pixel_size"],
    mode: str = _FIELD_OPTIONS["mode"],
    method: str = _FIELD_OPTIONS["method"],
    segmenter: Optional[str] = _FIELD_OPTIONS["segmenter"],
    segment_channel: Optional[str] = _FIELD_OPTIONS["segment_channel"],
    diameter: Optional[float] = _FIELD_OPTIONS["diameter"],
    min_area: Optional[str] = _FIELD_OPTIONS["min_area"],
    max_area: Optional[str] = _FIELD_OPTIONS["max_area"],
    clear_border: bool = _FIELD_OPTIONS["clear_border"],
    smoothing: float = _FIELD_OPTIONS["smoothing"],
    threshold_scale: Optional[float] = _FIELD_OPTIONS["threshold_scale"],
    local_window: float = _FIELD_OPTIONS["local_window"],
    min_distance: Optional[float] = _FIELD_OPTIONS["min_distance"],
    pad: bool = _FIELD_OPTIONS["pad"],
    points: Optional[Path] = _FIELD_OPTIONS["points"],
    label_channel: Optional[str] = _FIELD_OPTIONS["label_channel"],
    label_names: Optional[str] = _FIELD_OPTIONS["label_names"],
    label_radius: Optional[float] = _FIELD_OPTIONS["label_radius"],
    background_sigma: float = _FIELD_OPTIONS["background_sigma"],
    min_posterior: float = _FIELD_OPTIONS["min_posterior"],
):
    """Segment fields of view (or crop at given points) into a CellSet with one mask per cell."""
    from .workflows.segment import segment_to_cellset

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    params = _segmentation_params(mode, diameter, clear_border, smoothing, threshold_scale, local_window, min_distance)
    path, result, cells = segment_to_cellset(
        fields, out, channels=_names(channels), grey=grey, planes=planes, pixel_size=pixel_size, params=params,
        min_area=min_area, max_area=max_area, save_labels=save_labels, balance=balance, force=force,
        size=size, pad=pad, segment_channel=segment_channel, method=method, segmenter=segmenter, points=points,
        label_channel=label_channel, label_names=_names(label_names) or ("negative", "positive"), label_radius=label_radius,
        background_sigma=background_sigma, min_posterior=min_posterior, keep_label_channel=keep_label_channel, seed=seed,
    )
    for line in result.summary_lines():
        typer.echo(line)
    typer.echo(f"wrote {path}: {cells.describe().splitlines()[0]}")
    if save_labels is not None:
        typer.echo(f"wrote {len(result.label_images)} label image(s) to {save_labels}")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A model .safetensors file (e.g. RUN/model.safetensors)."),
    inputs: List[Path] = typer.Argument(..., help="A CellSet folder, or field images to segment, crop and classify."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions .parquet file (for a CellSet) or output folder (for fields)."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Average over the 8 rotations/flips of each cell (as evaluate does)."),
    prior: str = typer.Option("balanced", help="balanced (equal class priors, the default) or train (the training class frequencies)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    channels: Optional[str] = _FIELD_OPTIONS["channels"],
    grey: bool = _FIELD_OPTIONS["grey"],
    planes: str = _FIELD_OPTIONS["planes"],
    pixel_size: Optional[float] = _FIELD_OPTIONS["pixel_size"],
    mode: str = _FIELD_OPTIONS["mode"],
    method: str = _FIELD_OPTIONS["method"],
    segmenter: Optional[str] = _FIELD_OPTIONS["segmenter"],
    segment_channel: Optional[str] = _FIELD_OPTIONS["segment_channel"],
    diameter: Optional[float] = _FIELD_OPTIONS["diameter"],
    min_area: Optional[str] = _FIELD_OPTIONS["min_area"],
    max_area: Optional[str] = _FIELD_OPTIONS["max_area"],
    clear_border: bool = _FIELD_OPTIONS["clear_border"],
    smoothing: float = _FIELD_OPTIONS["smoothing"],
    threshold_scale: Optional[float] = _FIELD_OPTIONS["threshold_scale"],
    local_window: float = _FIELD_OPTIONS["local_window"],
    min_distance: Optional[float] = _FIELD_OPTIONS["min_distance"],
    pad: bool = _FIELD_OPTIONS["pad"],
    points: Optional[Path] = _FIELD_OPTIONS["points"],
    label_channel: Optional[str] = _FIELD_OPTIONS["label_channel"],
    label_names: Optional[str] = _FIELD_OPTIONS["label_names"],
    label_radius: Optional[float] = _FIELD_OPTIONS["label_radius"],
    background_sigma: float = _FIELD_OPTIONS["background_sigma"],
    min_posterior: float = _FIELD_OPTIONS["min_posterior"],
):
    """Apply a saved classifier to a CellSet, or to whole fields (segment, crop, classify)."""
    if len(inputs) == 1 and (inputs[0] / "cellset.json").is_file():
        _predict_cellset(model, inputs[0], out, tta=tta, prior=prior, force=force)
        return
    if len(inputs) == 1 and inputs[0].is_dir():
        raise StainfreeError(f"{inputs[0]}: not a CellSet (no cellset.json) and not a field image")
    from .workflows.predict import predict_fields

    params = _segmentation_params(mode, diameter, clear_border, smoothing, threshold_scale, local_window, min_distance)
    path, summary = predict_fields(
        model, inputs, out, channels=_names(channels), grey=grey, planes=planes, pixel_size=pixel_size, params=params,
        min_area=min_area, max_area=max_area, label_channel=label_channel, label_names=_names(label_names), tta=tta,
        prior=prior, force=force, pad=pad, segment_channel=segment_channel, method=method, segmenter=segmenter, points=points,
        label_radius=label_radius, background_sigma=background_sigma, min_posterior=min_posterior,
    )
    typer.echo(f"wrote {path} (cells.parquet, composition.csv, overlays/, fields.json, report.html)")
    typer.echo(f"{summary['cells']} cells in {len(summary['fields'])} field(s); predicted " + ", ".join(f"{k} {v}" for k, v in summary["predicted"].items()))
    if "against_labels" in summary:
        a = summary["against_labels"]
        line = f"against the {label_channel or 'given'} labels ({a['cells']} cells): accuracy {a['accuracy']:.3f}, balanced accuracy {a['balanced_accuracy']:.3f}"
        if "sensitivity" in a:
            line += f", sensitivity {a['sensitivity']:.3f} and specificity {a['specificity']:.3f} for {a['positive_class']}"
        typer.echo(line)


def _predict_cellset(model: Path, cells: Path, out: Path, *, tta: bool, prior: str, force: bool) -> None:
    from .core.store import open_cellset
    from .ml.classifier import Classifier, predict_cells
    from .utils import write_parquet

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    clf = Classifier.load(model)
    table = predict_cells(clf, open_cellset(cells), tta=tta, prior=prior)
    write_parquet(table, out, force=force)
    counts = table["predicted"].value_counts()
    typer.echo(f"wrote {out}: {len(table)} cells; predicted " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "label" in table:
        from .eval.metrics import classification_metrics

        m = classification_metrics(table["label"].astype(str), table["predicted"], classes=clf.classes)
        typer.echo(f"against the labels: accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}")


@app.command()
def features(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Features .parquet file to write (one row per cell, with cell_id)."),
    channels: Optional[str] = typer.Option(None, help="Channels to measure, e.g. Ch3,Ch6 (default: all)."),
    mask_channel: Optional[str] = typer.Option(None, "--mask-channel", help="Channel the cell outline is found in when the set has no masks (default: the first)."),
    scales: str = typer.Option("3,5", help="Haralick texture scales in pixels, comma-separated."),
    gray_levels: int = typer.Option(32, "--gray-levels", help="Grey levels for texture."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Measure CellProfiler-style shape, intensity, texture and skeleton features per cell."""
    from .core.store import open_cellset
    from .pp.features import measure
    from .utils import write_parquet

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    try:
        texture_scales = [int(v) for v in scales.split(",") if v.strip()]
    except ValueError:
        raise StainfreeError(f"--scales must be whole numbers of pixels, e.g. 3,5 (got {scales!r})") from None
    if any(v < 1 for v in texture_scales) or gray_levels < 2:
        raise StainfreeError("texture scales must be >= 1 pixel and --gray-levels >= 2")
    table = measure(open_cellset(cells), channels=channels, mask_channel=mask_channel, texture_scales=texture_scales, gray_levels=gray_levels)
    write_parquet(table, out, force=force)
    typer.echo(f"wrote {out}: {len(table)} cells x {table.shape[1] - 1} features")


@app.command()
def explain(
    features: Path = typer.Argument(..., help="Features .parquet from `stainfree features`."),
    by: str = typer.Option(..., "--by", help="The column that defines the groups: label, cluster, a condition..."),
    source: Optional[Path] = typer.Option(None, "--from", help="Where the column is: a CellSet folder, a .parquet/.csv with cell_id (e.g. predictions), or an .h5ad (default: the features table)."),
    groups: Optional[str] = typer.Option(None, "--groups", help="The two groups, A,B, or A,rest for A against every other cell (default: the column's two values)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (ranking.csv, pairs.csv, scatter.png, ranking.png, explain.json)."),
    svm_top: int = typer.Option(10, "--svm-top", help="Score linear-SVM separability of every pair of the N best features (0: skip)."),
    weak: float = typer.Option(0.5, help="The partner feature's |Spearman| with the top feature stays below this."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Rank the features that separate two groups of cells (Jensen-Shannon), with a scatter."""
    from .tl.rank import read_groups
    from .workflows.explain import explain_groups

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    table = _read_table(features)
    if "cell_id" not in table:
        raise StainfreeError(f"{features}: has no cell_id column (write it with `stainfree features`)")
    if source is None:
        if by not in table:
            raise StainfreeError(f"column {by!r} is not in {features}; name the table that holds it with --from CELLS (or predictions.parquet, or an .h5ad)")
        values = table[by]
        table = table.drop(columns=[by])
    else:
        values = read_groups(source, by, table["cell_id"].astype(str).tolist())
    a = b = None
    if groups:
        names = [g.strip() for g in groups.split(",")]
        if len(names) != 2 or not all(names):
            raise StainfreeError(f"--groups takes two names, A,B or A,rest (got {groups!r})")
        a, b = names
    path, sep = explain_groups(table, values, out, column=by, a=a, b=b, svm_top=svm_top, weak=weak, force=force)
    typer.echo(f"wrote {path}: {sep.a} (n={sep.n_a}) vs {sep.b} (n={sep.n_b})")
    for row in sep.ranking.head(5).itertuples():
        typer.echo(f"  {row.rank}. {row.feature}: JSD {row.jsd:.3f}")
    if sep.partner:
        rho = sep.ranking.set_index("feature").loc[sep.partner, "spearman_with_top"]
        typer.echo(f"scatter: {sep.top} against {sep.partner} (Spearman {rho:.2f} with the top feature)")


@app.command()
def saliency(
    model: Path = typer.Argument(..., help="A model .safetensors file (e.g. RUN/model.safetensors)."),
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (saliency.png, activations.png, saliency.json)."),
    per_class: int = typer.Option(3, "--cells-per-class", help="Random cells shown per class."),
    cell_id: List[str] = typer.Option([], "--cell-id", help="Show these cells instead (repeatable)."),
    samples: int = typer.Option(25, help="Noisy copies averaged by SmoothGrad."),
    noise: float = typer.Option(0.15, help="SmoothGrad noise, as a fraction of each cell's value range."),
    seed: int = typer.Option(0, help="Random seed (cell choice, noise)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Saliency maps (vanilla gradient, SmoothGrad) and layer activations of a trained model."""
    from .core.store import open_cellset
    from .ml.classifier import Classifier
    from .workflows.explain import saliency_panels

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    if per_class < 1 or samples < 1 or noise < 0:
        raise StainfreeError("--cells-per-class and --samples must be at least 1, --noise at least 0")
    path, info = saliency_panels(Classifier.load(model), open_cellset(cells), out, n_per_class=per_class, cell_ids=cell_id or None, n_samples=samples, noise=noise, seed=seed, force=force)
    typer.echo(f"wrote {path}: saliency of {len(info['cells'])} cells, activations of {len(info['layers'])} convolutional layers")


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder: from evaluate, demo, predict (fields), explain or saliency."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the HTML (default: RUN/report.html, replacing the run's own report)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists (RUN/report.html is always rewritten)."),
):
    """Write one self-contained report.html (embedded figures, no external links) for a run."""
    from .report.sections import write_report

    if out is not None and out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    path = write_report(run, out=out)
    typer.echo(f"wrote {path}")


@app.command()
def embed(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The .h5ad to write (obs: the per-cell table; obsm['X_<method>']: the embedding)."),
    method: str = typer.Option("barlow", help="slc, barlow, autoencoder, pca, model:PATH (a classifier's penultimate layer) or embedder:PATH (a saved embedder)."),
    channels: Optional[str] = typer.Option(None, help="Channels to use, e.g. Ch3,Ch6 (default: all)."),
    model: Optional[str] = typer.Option(None, help="Registry architecture for slc/barlow (default: yao2019 for slc, resnet_small for barlow)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: 30 for barlow, 20 otherwise)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Cells per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (one-cycle)."),
    dim: Optional[int] = typer.Option(None, help="Barlow projector width (default 128) / autoencoder bottleneck (default 64) / PCA components (default 50)."),
    lambda_: float = typer.Option(0.01, "--lambda", help="Barlow Twins off-diagonal weight (Engberg: 0.005-0.1)."),
    copies: int = typer.Option(4, help="SLC: augmented copies of each cell per epoch."),
    augment: Optional[str] = typer.Option(None, help="Augmentation preset or a comma list such as rot90,flip,blur (default: yao for slc, engberg for barlow, flips for the autoencoder)."),
    blackout: str = typer.Option("none", help="Barlow: none, full or partial blackout outside the cell mask (cells from `stainfree segment`)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Resize cells to N x N (default: their own size)."),
    pooling: Optional[str] = typer.Option(None, help="slc/barlow: 'stages+std' (the mean and standard deviation of every stage's activations, concatenated; default for barlow), 'stages' (the means only) or 'last' (the model's own features; default for slc)."),
    tta: Optional[str] = typer.Option(None, help="'dihedral': average the embedding over the 8 flips/90-degree rotations of each cell (better probes, 8 times slower), or 'none' (default)."),
    save_model: Optional[Path] = typer.Option(None, "--save-model", help="Also write the trained embedder (.safetensors) to embed new cells with embedder:PATH."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT (and --save-model) if they exist."),
):
    """Embed cells without labels: Self-Label Clustering, Barlow Twins, autoencoder, PCA."""
    from .core.store import open_cellset
    from .ml.embed import EmbedConfig, embed_cells

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    cs = open_cellset(cells)
    if channels:
        cs = cs.select_channels(channels)
    config = EmbedConfig(model=model, epochs=epochs, batch_size=batch_size, lr=lr, dim=dim, lambda_=lambda_, copies=copies, augment=augment, blackout=blackout, input_size=input_size, pooling=pooling, tta=tta, seed=seed)
    adata = embed_cells(cs, out, method=method, config=config, save_model=save_model, force=force)
    key = adata.uns["stainfree_embed"]["key"]
    typer.echo(f"wrote {out}: {adata.n_obs} cells x {adata.obsm[key].shape[1]} in obsm['{key}']" + (f"; embedder {save_model}" if save_model else ""))


@app.command()
def cluster(
    embedding: Path = typer.Argument(..., help="An .h5ad from `stainfree embed`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (clusters.h5ad, clusters.json, composition and enrichment tables, figures/, report.html)."),
    key: Optional[str] = typer.Option(None, help="The obsm key to cluster (default: the one embed wrote)."),
    method: str = typer.Option("kmeans", help="kmeans, hdbscan or gmm."),
    on: str = typer.Option("embedding", help="Cluster the embedding or its 2-D umap."),
    k: Optional[int] = typer.Option(None, help="Clusters for kmeans/gmm (default: peak silhouette / lowest BIC over --k-range)."),
    k_range: str = typer.Option("2,20", "--k-range", help="Smallest and largest k to scan, e.g. 2,100."),
    min_cluster_size: int = typer.Option(15, "--min-cluster-size", help="HDBSCAN minimum cluster size."),
    min_samples: Optional[int] = typer.Option(None, "--min-samples", help="HDBSCAN min samples (default: the min cluster size)."),
    leaf: bool = typer.Option(True, "--leaf/--eom", help="HDBSCAN cluster selection: leaf (default) or excess of mass."),
    by: List[str] = typer.Option([], "--by", help="Group column for composition and enrichment (density, flask, culture). Repeatable."),
    probe_column: List[str] = typer.Option([], "--probe", help="Column to predict from the embedding (random forest and logistic regression). Repeatable."),
    regress: List[str] = typer.Option([], "--regress", help="Numeric column to predict (random-forest regression, Pearson r). Repeatable."),
    probe_group: Optional[str] = typer.Option(None, "--probe-group", help="Keep each value of this column whole in the probes' folds (e.g. field)."),
    cells: Optional[Path] = typer.Option(None, "--cells", help="The CellSet the embedding came from, for the cluster gallery."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """UMAP, clusters, composition by group with enrichment tests, galleries and probes."""
    from .workflows.cluster import cluster_to_folder

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    adata = _read_h5ad(embedding)
    try:
        lo, hi = (int(v) for v in k_range.split(","))
    except ValueError:
        raise StainfreeError(f"--k-range takes two whole numbers, e.g. 2,20 (got {k_range!r})") from None
    cs = None
    if cells is not None:
        import numpy as np

        from .core.store import open_cellset

        cs = open_cellset(cells)
        order = {c: i for i, c in enumerate(cs.cell_ids.astype(str))}
        missing = [c for c in adata.obs_names if c not in order]
        if missing:
            raise StainfreeError(f"{cells}: cell {missing[0]!r} of the embedding is not in it")
        cs = cs.select(np.array([order[c] for c in adata.obs_names])) if list(order) != list(adata.obs_names) else cs
    path, summary = cluster_to_folder(
        adata, out, key=key, method=method, on=on, k=k, k_range=(lo, hi), min_cluster_size=min_cluster_size, min_samples=min_samples,
        leaf=leaf, by=by, probe_columns=probe_column, regress_columns=regress, probe_group=probe_group, cells=cs, seed=seed, force=force,
    )
    c = summary["clustering"]
    typer.echo(f"wrote {path}: {c['clusters']} clusters ({c['method']} on {c['on']} of {c['key']}); sizes " + ", ".join(f"{k}: {v}" for k, v in summary["cluster_sizes"].items()))
    for column, probes in summary["probes"].items():
        typer.echo(f"probe {column}: balanced accuracy " + ", ".join(f"{kind} {p['balanced_accuracy']:.3f}" for kind, p in probes.items()) + f" (majority {probes['rf']['majority']['balanced_accuracy']:.3f})")
    for column, probes in summary["regressions"].items():
        typer.echo(f"probe {column}: Pearson r " + ", ".join(f"{kind} {p['pearson_r']:.3f}" for kind, p in probes.items()))


def _read_h5ad(path: Path):
    import anndata

    if not path.is_file():
        raise StainfreeError(f"{path}: no such file")
    try:
        return anndata.read_h5ad(path)
    except Exception as exc:
        from .utils import first_line

        raise StainfreeError(f"{path}: not a readable .h5ad ({first_line(exc)})") from None


@app.command()
def models():
    """List the model architectures and their defaults."""
    from .ml.models import DEFAULT_MODEL, list_models, model_info

    for name in list_models():
        info = model_info(name)
        mark = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"{name}{mark}: input {info.input_size}, normalisation {info.normalisation}; {info.description}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder to write."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs per fold (default adapts to the number of cells)."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Run the built-in job: synthetic cells -> import -> CNN evaluated by held-out flask."""
    from .workflows.demo import run_demo

    path, metrics = run_demo(out, epochs=epochs, seed=seed, force=force)
    typer.echo(f"wrote {path} (report.html, metrics.json, predictions.parquet, model.safetensors, figures/, cells.cells)")
    typer.echo(metrics["headline"])


@app.command("train-segmenter")
def train_segmenter_(
    fields: List[Path] = typer.Argument(..., help="Field images to learn from: TIFF/OME-TIFF, PNG or JPG."),
    masks: Path = typer.Option(..., "--masks", help="Annotations: a folder of label images (<field>.tif/.png), ImageJ ROI sets (<field>.zip) or COCO .json, or one COCO .json."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (e.g. seg.safetensors)."),
    init: Optional[str] = typer.Option(None, "--init", help="Fine-tune from this model (a .safetensors or builtin:phase) instead of starting from scratch."),
    steps: int = typer.Option(600, help="Training steps (batches)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Crops per step."),
    crop: int = typer.Option(256, help="Crop size in network pixels."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (one-cycle schedule)."),
    diameter: float = typer.Option(24.0, help="Median cell diameter the network sees, in its pixels (fields are rescaled to it)."),
    validation: float = typer.Option(0.1, "--validation", help="Fraction of fields held out for validation (none with fewer than 4 fields)."),
    validate_every: int = typer.Option(250, "--validate-every", help="Steps between validations and checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.checkpoint, left by an interrupted run."),
    licence: Optional[str] = typer.Option(None, "--licence", help="Licence of the training data, recorded in the model."),
    source: Optional[str] = typer.Option(None, "--source", help="Where the training data come from, recorded in the model."),
    seed: int = typer.Option(0, help="Random seed (validation fields, initial weights, crops)."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    channels: Optional[str] = _FIELD_OPTIONS["channels"],
    grey: bool = _FIELD_OPTIONS["grey"],
    pixel_size: Optional[float] = _FIELD_OPTIONS["pixel_size"],
):
    """Train a segmentation network from fields and their instance annotations."""
    from .seg.training import SegTrainConfig
    from .workflows.segmentation import train_segmenter_file

    config = SegTrainConfig(steps=steps, batch_size=batch_size, crop=crop, lr=lr, diameter=diameter, validate_every=validate_every, seed=seed, device=device)
    config.validate()
    path, model = train_segmenter_file(
        fields, masks, out, config=config, validation_fraction=validation, init=init, resume=resume, force=force,
        licence=licence, source=source, channels=_names(channels), grey=grey, pixel_size=pixel_size,
    )
    history = model.provenance.get("history") or [{}]
    last = history[-1]
    line = f"wrote {path}: {model.arch} on {', '.join(model.channels)}, {model.diameter:.1f} px cells at scale {model.scale:.3f}"
    if "val_f1" in last:
        line += f"; validation F1 {last['val_f1']:.3f}, mean matched IoU {last['val_mean_matched_iou']:.3f}"
    typer.echo(line)


@app.command("score-segmentation")
def score_segmentation_(
    fields: List[Path] = typer.Argument(..., help="Field images: TIFF/OME-TIFF, PNG or JPG."),
    truth: Path = typer.Option(..., "--truth", help="The true instances: a folder of label images, ROI sets or COCO .json, or one COCO .json."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (scores.json, per_field.csv, overlays/, report.html)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    channels: Optional[str] = _FIELD_OPTIONS["channels"],
    grey: bool = _FIELD_OPTIONS["grey"],
    pixel_size: Optional[float] = _FIELD_OPTIONS["pixel_size"],
    mode: str = _FIELD_OPTIONS["mode"],
    method: str = _FIELD_OPTIONS["method"],
    segmenter: Optional[str] = _FIELD_OPTIONS["segmenter"],
    segment_channel: Optional[str] = _FIELD_OPTIONS["segment_channel"],
    diameter: Optional[float] = _FIELD_OPTIONS["diameter"],
    clear_border: bool = _FIELD_OPTIONS["clear_border"],
    smoothing: float = _FIELD_OPTIONS["smoothing"],
    threshold_scale: Optional[float] = _FIELD_OPTIONS["threshold_scale"],
    local_window: float = _FIELD_OPTIONS["local_window"],
    min_distance: Optional[float] = _FIELD_OPTIONS["min_distance"],
):
    """Segment fields and score them against true instances (F1, average precision, splits, merges)."""
    from .workflows.segmentation import score_segmentation

    params = _segmentation_params(mode, diameter, clear_border, smoothing, threshold_scale, local_window, min_distance)
    path, summary = score_segmentation(
        fields, truth, out, method=method, segmenter=segmenter, params=params, segment_channel=segment_channel, force=force,
        channels=_names(channels), grey=grey, pixel_size=pixel_size,
    )
    p = summary["pooled"]
    typer.echo(f"wrote {path} (scores.json, per_field.csv, overlays/, report.html)")
    typer.echo(
        f"{len(summary['per_field'])} field(s), {p['true_objects']} true and {p['predicted_objects']} predicted objects: "
        f"F1 {p['f1']:.3f} at IoU 0.5 (precision {p['precision']:.3f}, recall {p['recall']:.3f}), AP 0.5-0.95 {p['ap_50_95']:.3f}, "
        f"mean matched IoU {p['mean_matched_iou']:.3f}, {p['split_cells']} split and {p['merged_cells']} merged cells"
    )


class Interrupted(BaseException):
    """Ctrl-C, raised past click (which would otherwise swallow it silently)."""


def _interrupt(signum, frame):
    raise Interrupted()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=argv)
    except StainfreeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)
    except Interrupted:
        typer.echo("interrupted: no partial output was left behind", err=True)
        sys.exit(130)
