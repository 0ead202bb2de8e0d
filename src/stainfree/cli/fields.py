"""Commands on fields: segment, train-segmenter, score-segmentation."""

from __future__ import annotations

from pathlib import Path

import typer

from ..seg.training import SegTrainConfig
from ..utils import refuse_existing
from .app import app
from .options import SCORING_OPTIONS, with_field_options


@app.command()
@with_field_options()
def segment(
    fields: list[Path] = typer.Argument(..., help="Field images: TIFF/OME-TIFF (multi-channel, z, t), PNG or JPG."),
    out: Path = typer.Option(..., "--out", "-o", help="CellSet folder to write (e.g. cells.cells)."),
    size: int = typer.Option(64, help="Crop size in pixels (224 for benchtop flask images, 150, 128, 64...)."),
    save_labels: Path | None = typer.Option(
        None, "--save-labels", help="Also write the folder DIR: each field's label image as DIR/<field>_labels.tif, and labels.json."
    ),
    keep_label_channel: bool = typer.Option(
        False, "--keep-label-channel", help="Keep the label channel in the crops (default: left out, so no classifier sees the stain)."
    ),
    balance: bool = typer.Option(False, "--balance", help="Subsample classes to equal counts within each field."),
    seed: int = typer.Option(0, help="Random seed (mixture fit, balancing)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT (and label images) if they exist."),
    append: bool = typer.Option(
        False, "--append", help="Add the cells to the existing CellSet OUT (same channels and crop size) without rewriting it."
    ),
    field: dict | None = None,
):
    """Segment fields of view (or crop at given points) into a CellSet with one mask per cell."""
    from ..workflows.segment import run_segment

    if not append:
        refuse_existing(out, force=force)
    field["label_names"] = field["label_names"] or ("negative", "positive")
    path, result, cells = run_segment(
        fields,
        out,
        save_labels=save_labels,
        balance=balance,
        force=force,
        append=append,
        size=size,
        keep_label_channel=keep_label_channel,
        random_state=seed,
        **field,
    )
    for line in result.summary_lines():
        typer.echo(line)
    if append:
        from ..core.store import open_cellset

        typer.echo(f"appended {len(cells)} cells to {path}: now {len(open_cellset(path))} cells")
    else:
        typer.echo(f"wrote {path}: {cells.describe().splitlines()[0]}")
    if save_labels is not None:
        typer.echo(f"wrote {len(result.label_images)} label image(s) to {save_labels}")


@app.command("train-segmenter")
@with_field_options("channels", "grey", "pixel_size")
def train_segmenter_(
    fields: list[Path] = typer.Argument(..., help="Field images to learn from: TIFF/OME-TIFF, PNG or JPG."),
    masks: Path = typer.Option(
        ...,
        "--masks",
        help="Annotations: a folder of label images (<field>.tif/.png), ImageJ ROI sets (<field>.zip) or COCO .json, or one COCO .json.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (e.g. seg.safetensors)."),
    init: str | None = typer.Option(
        None, "--init", help="Fine-tune from this model (a .safetensors or builtin:phase) instead of starting from scratch."
    ),
    steps: int = typer.Option(SegTrainConfig.steps, help="Training steps (batches)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Crops per step."),
    crop: int = typer.Option(256, help="Crop size in network pixels."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (one-cycle schedule)."),
    diameter: float = typer.Option(
        SegTrainConfig.diameter, help="Median cell diameter the network sees, in its pixels (fields are rescaled to it)."
    ),
    validation: float = typer.Option(
        0.1, "--validation", help="Fraction of fields held out for validation (none with fewer than 4 fields)."
    ),
    validate_every: int = typer.Option(250, "--validate-every", help="Steps between validations and checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.checkpoint, left by an interrupted run."),
    licence: str | None = typer.Option(None, "--licence", help="Licence of the training data, recorded in the model."),
    source: str | None = typer.Option(None, "--source", help="Where the training data come from, recorded in the model."),
    seed: int = typer.Option(0, help="Random seed (validation fields, initial weights, crops)."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    field: dict | None = None,
):
    """Train a segmentation network from fields and their instance annotations."""
    from ..seg.training import SegTrainConfig
    from ..workflows.segmentation import run_train_segmenter

    config = SegTrainConfig(
        steps=steps, batch_size=batch_size, crop=crop, lr=lr, diameter=diameter, validate_every=validate_every, seed=seed, device=device
    )
    config.validate()
    path, model = run_train_segmenter(
        fields,
        masks,
        out,
        config=config,
        validation_fraction=validation,
        init=init,
        resume=resume,
        force=force,
        licence=licence,
        source=source,
        **field,
    )
    history = model.provenance.get("history") or [{}]
    last = history[-1]
    line = f"wrote {path}: {model.arch} on {', '.join(model.channels)}, {model.diameter:.1f} px cells at scale {model.scale:.3f}"
    if "val_f1" in last:
        line += f"; validation F1 {last['val_f1']:.3f}, mean matched IoU {last['val_mean_matched_iou']:.3f}"
    typer.echo(line)


@app.command("score-segmentation")
@with_field_options(*SCORING_OPTIONS)
def score_segmentation_(
    fields: list[Path] = typer.Argument(..., help="Field images: TIFF/OME-TIFF, PNG or JPG."),
    truth: Path = typer.Option(
        ..., "--truth", help="The true instances: a folder of label images, ROI sets or COCO .json, or one COCO .json."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (scores.json, per_field.csv, overlays/, report.html)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    field: dict | None = None,
):
    """Segment fields and score them against true instances (F1, average precision, splits, merges)."""
    from ..workflows.segmentation import run_score_segmentation

    path, summary = run_score_segmentation(fields, truth, out, force=force, **field)
    p = summary["pooled"]
    typer.echo(f"wrote {path} (scores.json, per_field.csv, overlays/, report.html)")
    typer.echo(
        f"{len(summary['per_field'])} field(s), {p['true_objects']} true and {p['predicted_objects']} predicted objects: "
        f"F1 {p['f1']:.3f} at IoU 0.5 (precision {p['precision']:.3f}, recall {p['recall']:.3f}), AP 0.5-0.95 {p['ap_50_95']:.3f}, "
        f"mean matched IoU {p['mean_matched_iou']:.3f}, {p['split_cells']} split and {p['merged_cells']} merged cells"
    )
