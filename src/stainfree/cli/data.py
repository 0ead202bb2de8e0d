"""Commands on data: import, info, synth, models, demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..utils import refuse_existing
from .app import app
from .options import echo_headline


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="Folder of class folders, an IFC export folder, or a CSV manifest."),
    out: Path = typer.Option(..., "--out", "-o", help="CellSet folder to write (e.g. cells.cells)."),
    layout: str = typer.Option("auto", help="auto, folders, ifc or manifest."),
    channels: str | None = typer.Option(
        None, help="Channels to keep, in order: Ch3,Ch6 (ifc), R,G (colour files), or manifest path_<name> names."
    ),
    grey: bool = typer.Option(False, "--grey", help="Convert RGB images to one grey channel."),
    size: int | None = typer.Option(None, help="Resize every cell to N x N pixels."),
    crop: int | None = typer.Option(None, help="Centre-crop or pad every cell to N x N pixels."),
    group: list[str] = typer.Option(
        [], "--group", help="NAME=REGEX on file names (first capture group), or NAME of a manifest column. Repeatable."
    ),
    groups_across_classes: bool = typer.Option(
        False,
        "--groups-across-classes",
        help="Equal group values in different class folders are the same group (default: qualified by class folder).",
    ),
    merge_classes: str | None = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase' (';' separates merges)."),
    pixel_size: float | None = typer.Option(None, "--pixel-size", help="Micrometres per pixel, recorded in the CellSet."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Import single-cell images into a CellSet."""
    from ..core.specs import parse_channel_list, parse_merge_spec
    from ..io.importers import read_plan
    from ..io.scan import scan_source

    refuse_existing(out, force=force)
    names = None if channels is None else parse_channel_list(channels)
    plan = scan_source(src, layout=layout, channels=names, groups=group, groups_across_classes=groups_across_classes)
    typer.echo(plan.describe())
    merges = parse_merge_spec(merge_classes) if merge_classes else None
    cells = read_plan(plan, out, grey=grey, size=size, crop=crop, merge_classes=merges, pixel_size=pixel_size, force=force)
    typer.echo(f"wrote {out}: {cells.describe().splitlines()[0]}")


@app.command()
def info(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Summarise a CellSet: cells, channels, size, classes and groups."""
    from ..core.store import open_cellset

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
    from ..datasets.synthetic import make_cells

    cs = make_cells(n_per_class, size=size, flasks_per_line=flasks, random_state=seed)
    cs.save(out, force=force)
    typer.echo(f"wrote {out}: {cs.describe().splitlines()[0]}")


@app.command()
def models():
    """List the model architectures and their defaults."""
    from ..ml.models import DEFAULT_MODEL, list_models, model_info

    for name in list_models():
        info = model_info(name)
        mark = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"{name}{mark}: input {info.input_size}, normalisation {info.normalisation}; {info.description}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder to write."),
    epochs: int | None = typer.Option(None, help="Training epochs per fold (default adapts to the number of cells)."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Run the built-in job: synthetic cells -> import -> CNN evaluated by held-out flask."""
    from ..workflows.demo import run_demo

    path, metrics = run_demo(out, epochs=epochs, random_state=seed, force=force)
    typer.echo(f"wrote {path} (report.html, metrics.json, predictions.parquet, model.safetensors, figures/, cells.cells)")
    echo_headline(metrics)
