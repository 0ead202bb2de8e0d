"""Commands on classifiers: evaluate, train, compare, predict."""

from __future__ import annotations

from pathlib import Path

import typer

from ..io.omezarr import is_ome_zarr
from ..utils import StainfreeError, refuse_existing
from .app import app
from .options import (
    BUDGET_HELP,
    FIELD_OPTIONS,
    SEARCH_HELP,
    SEGMENTATION_OPTIONS,
    echo_headline,
    field_keywords,
    read_table,
    search_options,
    with_field_options,
    with_train_options,
)


@app.command()
@with_train_options()
def evaluate(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    protocol: str | None = typer.Option(
        None,
        help="kfold, holdout, group-kfold, leave-one-group-out, cross-group or audit-groups (default: kfold, or group-kfold with --group).",
    ),
    folds: int = typer.Option(5, help="Folds for kfold and group-kfold."),
    repeats: int = typer.Option(1, help="Repeats of kfold, group-kfold or holdout."),
    group: str | None = typer.Option(None, help="Group column (field, flask, dish...): evaluate on held-out groups."),
    channels: str | None = typer.Option(None, help="Channels to use, e.g. Ch3,Ch6 (default: all)."),
    merge_classes: str | None = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase'."),
    baselines: str = typer.Option(
        ",".join(("majority", "area_svm", "features_rf")),
        help="Baselines beside the model, comma-separated: majority, area_svm, features_rf, outline_cnn (a CNN on the cell outline only; slow). Empty for none.",
    ),
    features: Path | None = typer.Option(
        None,
        "--features",
        help="Features .parquet from `stainfree features` for the area_svm and features_rf baselines (default: measured now).",
    ),
    learning_curve: str | None = typer.Option(None, "--learning-curve", help="Training fractions, e.g. 0.1,0.25,0.5,1."),
    max_pools: int = typer.Option(
        20, "--max-pools", help="cross-group: at most this many training pools (one training each), drawn by the seed over pool sizes 1-3."
    ),
    final_model: bool = typer.Option(
        True, "--final-model/--no-final-model", help="Also train a model on all cells (RUN/model.safetensors)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Reuse the finished splits of an interrupted run of the same OUT."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Test-time augmentation: average over the 8 rotations/flips of each test cell."),
    search: bool = typer.Option(False, "--search/--no-search", help=SEARCH_HELP),
    budget: str | None = typer.Option(None, "--budget", help=BUDGET_HELP),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    train: dict | None = None,
):
    """Train and evaluate a classifier honestly: protocol, intervals, baselines beside it."""
    from ..core.specs import parse_channel_list, parse_merge_spec
    from ..core.store import open_cellset
    from ..workflows.evaluate import run_evaluate

    refuse_existing(out, force=force)
    cs = open_cellset(cells)
    if channels:
        cs = cs.select_channels(parse_channel_list(channels))
    if merge_classes:
        cs = cs.merge_classes(parse_merge_spec(merge_classes))
    from ..ml.train import TrainConfig

    config = TrainConfig.for_data(cs, **train)
    config.validate()
    chooser = search_options(search, budget, train)
    sizes = _fractions(learning_curve) if learning_curve else None
    names = [b.strip() for b in baselines.split(",") if b.strip()]
    path, metrics = run_evaluate(
        cs,
        out,
        protocol=protocol,
        group=group,
        n_folds=folds,
        repeats=repeats,
        config=config,
        baselines=names,
        train_sizes=sorted(sizes) if sizes else None,
        final_model=final_model,
        force=force,
        resume=resume,
        tta=tta,
        max_pools=max_pools,
        search=chooser,
        features=read_table(features) if features else None,
        data={"cells": str(cells), "channels": cs.channels, "merge_classes": merge_classes, "n_cells": len(cs)},
    )
    typer.echo(f"wrote {path}")
    echo_headline(metrics)


@app.command("train")
@with_train_options()
def train_model(
    cells: Path = typer.Argument(..., help="A CellSet folder (unlabelled cells are left out)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (.safetensors)."),
    channels: str | None = typer.Option(None, help="Channels to use, e.g. Ch3,Ch6 (default: all)."),
    merge_classes: str | None = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase'."),
    search: bool = typer.Option(False, "--search/--no-search", help=SEARCH_HELP),
    budget: str | None = typer.Option(None, "--budget", help=BUDGET_HELP),
    group: str | None = typer.Option(None, help="Group column (field, flask...): the search's inner folds keep groups whole."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    train: dict | None = None,
):
    """Train one classifier on all the labelled cells (no cross-validation; `evaluate` estimates how good it is)."""
    from ..core.specs import parse_channel_list, parse_merge_spec
    from ..core.store import open_cellset
    from ..ml.distributed import is_main_process
    from ..ml.train import TrainConfig
    from ..workflows.train import run_train

    refuse_existing(out, force=force)
    cs = open_cellset(cells)
    config = TrainConfig.for_data(cs, **train)
    config.validate()
    path, s = run_train(
        cs,
        out,
        channels=parse_channel_list(channels) if channels else None,
        merge_classes=parse_merge_spec(merge_classes) if merge_classes else None,
        config=config,
        search=search_options(search, budget, train),
        group=group,
        force=force,
    )
    if not is_main_process():  # under torchrun rank 0 reports
        return
    classes = ", ".join(f"{c} {n}" for c, n in s["classes"].items())
    left = f" ({s['left_out']} unlabelled left out)" if s["left_out"] else ""
    typer.echo(
        f"wrote {path}: {s['cells']} cells{left}, {len(s['classes'])} classes ({classes}), {s['epochs']} epochs, {s['seconds']:.1f} s"
    )
    if s.get("search"):
        typer.echo(
            f"configuration chosen by inner cross-validation: {s['search']['chosen']}" + "".join(f"; {n}" for n in s["search"]["notes"])
        )


def _fractions(value: str) -> list[float]:
    """``--learning-curve``: comma-separated fractions in (0, 1]."""
    try:
        sizes = [float(v) for v in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or not all(0 < v <= 1 for v in sizes):
        raise StainfreeError(f"--learning-curve takes fractions in (0, 1] separated by commas, e.g. 0.25,0.5,1; got {value!r}")
    return sizes


@app.command()
@with_train_options("model", "epochs")
def compare(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for one run per condition and comparison.json."),
    condition: list[str] = typer.Option(
        [], "--condition", help="NAME=CHANNELS, e.g. bf=Ch3 or bfdf=Ch3,Ch6. Repeatable (default: all channels)."
    ),
    seeds: int = typer.Option(1, help="Repeat every condition with seeds 0..N-1 (spread over random initialisation)."),
    protocol: str | None = typer.Option(None, help="As for evaluate."),
    folds: int = typer.Option(5, help="Folds."),
    group: str | None = typer.Option(None, help="Group column."),
    merge_classes: str | None = typer.Option(None, "--merge-classes", help="e.g. 'G1,S,G2=Interphase'."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    train: dict | None = None,
):
    """Run the same protocol per channel set and seed, and tabulate balanced accuracy."""
    from ..core.specs import parse_channel_list, parse_merge_spec
    from ..core.store import open_cellset
    from ..ml.train import TrainConfig
    from ..workflows.evaluate import run_compare

    refuse_existing(out, force=force)
    cs = open_cellset(cells)
    if merge_classes:
        cs = cs.merge_classes(parse_merge_spec(merge_classes))
    conditions = {}
    for spec in condition:
        name, sep, chans = spec.partition("=")
        if not sep or not name.strip():
            raise StainfreeError(f"condition {spec!r} is not of the form NAME=CH1,CH2")
        conditions[name.strip()] = parse_channel_list(chans)
    if seeds < 1:
        raise StainfreeError(f"seeds must be at least 1, got {seeds}")
    config = TrainConfig.for_data(cs, **train)
    config.validate()
    _, body = run_compare(
        cs,
        out,
        conditions=conditions or None,
        seeds=list(range(seeds)),
        config=config,
        force=force,
        protocol=protocol,
        n_folds=folds,
        group=group,
        baselines=["majority"],
    )
    typer.echo(f"wrote {out}")
    for name, r in body["conditions"].items():
        ba = r["balanced_accuracy"]
        typer.echo(f"{name} ({r['channels']}): balanced accuracy {ba['mean']:.3f} (sd {ba['std']:.3f} over {ba['seeds']} seed(s))")


@app.command()
@with_field_options()
def predict(
    model: Path = typer.Argument(..., help="A model .safetensors file (e.g. RUN/model.safetensors)."),
    inputs: list[Path] = typer.Argument(..., help="A CellSet folder, or field images to segment, crop and classify."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions .parquet file (for a CellSet) or output folder (for fields)."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Average over the 8 rotations/flips of each cell (as evaluate does)."),
    prior: str = typer.Option("balanced", help="balanced (equal class priors, the default) or train (the training class frequencies)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    field: dict | None = None,
):
    """Apply a saved classifier to a CellSet, or to whole fields (segment, crop, classify)."""
    if len(inputs) == 1 and (inputs[0] / "cellset.json").is_file():
        from ..workflows.predict import run_predict_cellset

        given = _field_options_given({k: v for k, v in field.items() if k not in ("workers", "scheduler")})
        if given:
            raise StainfreeError(
                f"{given[0]} applies to field images; {inputs[0]} is a CellSet, whose cells are cut and named already "
                "(the model takes its own channels from them by name)"
            )

        path, summary = run_predict_cellset(
            model, inputs[0], out, tta=tta, prior=prior, force=force, workers=field["workers"], scheduler=field["scheduler"]
        )
        typer.echo(f"wrote {path}: {summary['cells']} cells; predicted " + ", ".join(f"{k} {v}" for k, v in summary["predicted"].items()))
        if "against_labels" in summary:
            a = summary["against_labels"]
            typer.echo(
                f"against the labels ({a['cells']} cells): accuracy {a['accuracy']:.3f}, balanced accuracy {a['balanced_accuracy']:.3f}"
            )
        if summary.get("unscored_labels"):
            typer.echo(f"not scored: labels the model does not know ({', '.join(summary['unscored_labels'])})")
        return
    if len(inputs) == 1 and inputs[0].is_dir() and not is_ome_zarr(inputs[0]):
        raise StainfreeError(f"{inputs[0]}: not a CellSet (no cellset.json), an OME-Zarr image or plate, or a field image")
    from ..workflows.predict import run_predict

    path, summary = run_predict(model, inputs, out, tta=tta, prior=prior, force=force, **field)
    typer.echo(f"wrote {path} (cells.parquet, composition.csv, overlays/, fields.json, report.html)")
    typer.echo(
        f"{summary['cells']} cells in {len(summary['fields'])} field(s); predicted "
        + ", ".join(f"{k} {v}" for k, v in summary["predicted"].items())
    )
    if "against_labels" in summary:
        a = summary["against_labels"]
        line = f"against the {field['label_channel'] or 'given'} labels ({a['cells']} cells): accuracy {a['accuracy']:.3f}, balanced accuracy {a['balanced_accuracy']:.3f}"
        if "sensitivity" in a:
            line += f", sensitivity {a['sensitivity']:.3f} and specificity {a['specificity']:.3f} for {a['positive_class']}"
        typer.echo(line)


def _field_options_given(field: dict) -> list[str]:
    """The field options (``--channels``, ``--diameter``...) given other values than their defaults."""
    defaults = field_keywords({name: option.default for name, (_, option) in FIELD_OPTIONS.items()})
    names = [n for n in field if n != "params" and field[n] != defaults[n]]
    if "params" in field:
        names += [n for n in SEGMENTATION_OPTIONS if getattr(field["params"], n) != getattr(defaults["params"], n)]
    return [next((d for d in FIELD_OPTIONS[n][1].param_decls if d.startswith("--")), "--" + n.replace("_", "-")) for n in names]
