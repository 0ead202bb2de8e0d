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


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder to write."),
    epochs: int = typer.Option(40, help="Training epochs per fold (early stopping may end sooner)."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Run the built-in job: synthetic cells -> import -> CNN evaluated by held-out flask."""
    from .runs import run_demo

    path, metrics = run_demo(out, epochs=epochs, seed=seed, force=force)
    typer.echo(f"wrote {path} (metrics.json, predictions.parquet, figures/, cells.cells)")
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
