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

from .utils import StainfreeError

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
    from .io import read_plan, scan_source

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
    from .cellset import open_cellset

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
    from .synthetic import make_cells

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
    augment=typer.Option(None, help="Augmentation preset: none, flips, standard, rotations (default), yao, engberg, strong."),
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
    normalisation: Optional[str] = _TRAIN_OPTIONS["normalisation"],
    input_size: Optional[int] = _TRAIN_OPTIONS["input_size"],
    seed: Optional[int] = _TRAIN_OPTIONS["seed"],
):
    """Train and evaluate a classifier honestly: protocol, intervals, baselines beside it."""
    from .cellset import open_cellset
    from .runs import evaluate_to_run

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    cs = open_cellset(cells)
    if channels:
        cs = cs.select_channels(channels)
    if merge_classes:
        cs = cs.merge_classes(merge_classes)
    from .train import TrainConfig

    config = TrainConfig.for_data(
        cs, model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, loss_weighting=loss_weighting,
        sampling=sampling, monitor=monitor, patience=patience, val_fraction=val_fraction, augment=augment,
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
    from .cellset import open_cellset, parse_channel_list
    from .runs import compare_to_run
    from .train import TrainConfig

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


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A model .safetensors file (e.g. RUN/model.safetensors)."),
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions .parquet file to write."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Average over the 8 rotations/flips of each cell (as evaluate does)."),
    prior: str = typer.Option("balanced", help="balanced (equal class priors, the default) or train (the training class frequencies)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Apply a saved classifier to cells; writes one row per cell."""
    import io as _io

    from .cellset import open_cellset
    from .train import Classifier, predict_cells
    from .utils import atomic_write_bytes

    if out.exists() and not force:
        raise StainfreeError(f"{out}: already exists; pass --force to replace it")
    clf = Classifier.load(model)
    table = predict_cells(clf, open_cellset(cells), tta=tta, prior=prior)
    buffer = _io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(out, buffer.getvalue())
    counts = table["predicted"].value_counts()
    typer.echo(f"wrote {out}: {len(table)} cells; predicted " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "label" in table:
        from .evaluate import classification_metrics

        m = classification_metrics(table["label"].astype(str), table["predicted"], classes=clf.classes)
        typer.echo(f"against the labels: accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}")


@app.command()
def models():
    """List the model architectures and their defaults."""
    from .models import DEFAULT_MODEL, list_models, model_info

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
    from .runs import run_demo

    path, metrics = run_demo(out, epochs=epochs, seed=seed, force=force)
    typer.echo(f"wrote {path} (metrics.json, predictions.parquet, model.safetensors, figures/, cells.cells)")
    typer.echo(metrics["headline"])


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
