"""Commands that explore cells: features, explain, saliency, embed, cluster, report, view."""

from __future__ import annotations

from pathlib import Path

import typer

from ..utils import StainfreeError, refuse_existing, refuse_partial
from .app import app
from .options import read_h5ad, read_table, scheduler_option, workers_option


@app.command()
def features(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Features file to write: .parquet (one row per cell, with cell_id) or .h5ad (AnnData: X the features, obs the cells).",
    ),
    channels: str | None = typer.Option(None, help="Channels to measure, e.g. Ch3,Ch6 (default: all)."),
    mask_channel: str | None = typer.Option(
        None, "--mask-channel", help="Channel the cell outline is found in when the set has no masks (default: the first)."
    ),
    scales: str = typer.Option("3,5", help="Haralick texture scales in pixels, comma-separated."),
    gray_levels: int = typer.Option(32, "--gray-levels", help="Grey levels for texture."),
    workers: int = workers_option("Measure batches of cells"),
    scheduler: str | None = scheduler_option(),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Measure CellProfiler-style shape, intensity, texture and skeleton features per cell."""
    from ..core.specs import parse_channel_list
    from ..core.store import open_cellset
    from ..pp.features import measure
    from ..utils import write_parquet

    refuse_existing(out, force=force)
    if out.suffix not in (".parquet", ".h5ad"):
        raise StainfreeError(f"{out}: name a .parquet or an .h5ad file to write")
    try:
        texture_scales = [int(v) for v in scales.split(",") if v.strip()]
    except ValueError as exc:
        raise StainfreeError(f"--scales must be whole numbers of pixels, e.g. 3,5 (got {scales!r})") from exc
    if any(v < 1 for v in texture_scales) or gray_levels < 2:
        raise StainfreeError("texture scales must be >= 1 pixel and --gray-levels >= 2")
    names = None if channels is None else parse_channel_list(channels)
    settings = {"channels": names, "mask_channel": mask_channel, "texture_scales": texture_scales, "gray_levels": gray_levels}
    settings.update(workers=workers, scheduler=scheduler)
    if out.suffix == ".h5ad":
        from ..io.export import write_h5ad
        from ..pp.adata import measure_cells

        adata = measure_cells(open_cellset(cells), **settings)
        write_h5ad(adata, out)
        typer.echo(f"wrote {out}: {adata.n_obs} cells x {adata.n_vars} features (AnnData: X the features, obs the cells)")
        return
    table = measure(open_cellset(cells), **settings)
    write_parquet(table, out, force=force)
    typer.echo(f"wrote {out}: {len(table)} cells x {table.shape[1] - 1} features")


@app.command()
def explain(
    features: Path = typer.Argument(..., help="Features .parquet or .h5ad from `stainfree features`."),
    by: str = typer.Option(..., "--by", help="The column that defines the groups: label, cluster, a condition..."),
    source: Path | None = typer.Option(
        None,
        "--from",
        help="Where the column is: a CellSet folder, a .parquet/.csv with cell_id (e.g. predictions), or an .h5ad (default: the features table).",
    ),
    groups: str | None = typer.Option(
        None, "--groups", help="The two groups, A,B, or A,rest for A against every other cell (default: the column's two values)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (ranking.csv, pairs.csv, scatter.png, ranking.png, explain.json)."),
    svm_top: int = typer.Option(10, "--svm-top", help="Score linear-SVM separability of every pair of the N best features (0: skip)."),
    weak: float = typer.Option(0.5, help="The partner feature's |Spearman| with the top feature stays below this."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Rank the features that separate two groups of cells (Jensen-Shannon), with a scatter."""
    import pandas as pd

    from ..pp.adata import features_to_anndata
    from ..tl.rank import read_groups
    from ..workflows.explain import run_explain

    refuse_existing(out, force=force)
    table = read_h5ad(features).to_df().rename_axis("cell_id").reset_index() if features.suffix == ".h5ad" else read_table(features)
    if "cell_id" not in table:
        raise StainfreeError(f"{features}: has no cell_id column (write it with `stainfree features`)")
    if source is None:
        if by not in table:
            raise StainfreeError(
                f"column {by!r} is not in {features}; name the table that holds it with --from CELLS (or predictions.parquet, or an .h5ad)"
            )
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
    adata = features_to_anndata(table)
    adata.obs[by] = pd.Series(values).to_numpy()  # aligned by cell_id (read_groups) or row of the same table
    path, sep = run_explain(adata, out, groupby=by, group=a, reference=b, svm_top=svm_top, weak=weak, force=force)
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
    cell_id: list[str] = typer.Option([], "--cell-id", help="Show these cells instead (repeatable)."),
    samples: int = typer.Option(25, help="Noisy copies averaged by SmoothGrad."),
    noise: float = typer.Option(0.15, help="SmoothGrad noise, as a fraction of each cell's value range."),
    seed: int = typer.Option(0, help="Random seed (cell choice, noise)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Saliency maps (vanilla gradient, SmoothGrad) and layer activations of a trained model."""
    from ..core.store import open_cellset
    from ..ml.classifier import Classifier
    from ..workflows.explain import run_saliency

    refuse_existing(out, force=force)
    if per_class < 1 or samples < 1 or noise < 0:
        raise StainfreeError("--cells-per-class and --samples must be at least 1, --noise at least 0")
    path, info = run_saliency(
        Classifier.load(model),
        open_cellset(cells),
        out,
        n_per_class=per_class,
        cell_ids=cell_id or None,
        n_samples=samples,
        noise=noise,
        random_state=seed,
        force=force,
    )
    typer.echo(f"wrote {path}: saliency of {len(info['cells'])} cells, activations of {len(info['layers'])} convolutional layers")


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder: from evaluate, demo, predict (fields), explain or saliency."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the HTML (default: RUN/report.html, replacing the run's own report)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists (RUN/report.html is always rewritten)."),
):
    """Write one self-contained report.html (embedded figures, no external links) for a run."""
    from ..report.sections import write_report

    refuse_existing(out, force=force)
    refuse_partial(run)
    path = write_report(run, out=out)
    typer.echo(f"wrote {path}")


@app.command()
def view(
    path: Path = typer.Argument(..., help="A CellSet folder, a run folder (evaluate, cluster...) or an .h5ad from embed/cluster."),
    cells: Path | None = typer.Option(
        None, "--cells", help="The CellSet the thumbnails come from (default: the one the run or set names)."
    ),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (the default is reachable from this machine only)."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the page in the web browser."),
):
    """Look at any number of cells in the browser: pages of thumbnails, filters, galleries, the UMAP."""
    from ..view.server import serve

    if not 0 <= port <= 65535:
        raise StainfreeError(f"--port must lie in 0..65535 (got {port})")
    serve(path, cells=cells, host=host, port=port, browser=browser, on_ready=lambda line: typer.echo(line))


@app.command()
def embed(
    cells: Path = typer.Argument(..., help="A CellSet folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The .h5ad to write (obs: the per-cell table; obsm['X_<method>']: the embedding)."),
    method: str = typer.Option(
        "barlow", help="slc, barlow, autoencoder, pca, model:PATH (a classifier's penultimate layer) or embedder:PATH (a saved embedder)."
    ),
    channels: str | None = typer.Option(None, help="Channels to use, e.g. Ch3,Ch6 (default: all)."),
    model: str | None = typer.Option(
        None, help="Registry architecture for slc/barlow (default: yao2019 for slc, resnet_small for barlow)."
    ),
    epochs: int | None = typer.Option(None, help="Training epochs (default: 30 for barlow, 20 otherwise)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Cells per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (one-cycle)."),
    dim: int | None = typer.Option(
        None, help="Barlow projector width (default 128) / autoencoder bottleneck (default 64) / PCA components (default 50)."
    ),
    lambda_: float = typer.Option(0.01, "--lambda", help="Barlow Twins off-diagonal weight (Engberg: 0.005-0.1)."),
    copies: int = typer.Option(4, help="SLC: augmented copies of each cell per epoch."),
    augment: str | None = typer.Option(
        None,
        help="Augmentation preset or a comma list such as rot90,flip,blur (default: yao for slc, engberg for barlow, flips for the autoencoder).",
    ),
    blackout: str = typer.Option(
        "none", help="Barlow: none, full or partial blackout outside the cell mask (cells from `stainfree segment`)."
    ),
    input_size: int | None = typer.Option(
        None, "--input-size", help="Resize cells to N x N (default: their own size; half of it over 128 px, except for pca)."
    ),
    pooling: str | None = typer.Option(
        None,
        help="slc/barlow: 'stages+std' (the mean and standard deviation of every stage's activations, concatenated; default for barlow), 'stages' (the means only) or 'last' (the model's own features; default for slc).",
    ),
    tta: str | None = typer.Option(
        None,
        help="'dihedral': average the embedding over the 8 flips/90-degree rotations of each cell (better probes, 8 times slower), or 'none' (default).",
    ),
    save_model: Path | None = typer.Option(
        None, "--save-model", help="Also write the trained embedder (.safetensors) to embed new cells with embedder:PATH."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    workers: int = workers_option("Embed batches of cells (after training, which runs here)"),
    scheduler: str | None = scheduler_option(),
    force: bool = typer.Option(False, "--force", help="Replace OUT (and --save-model) if they exist."),
):
    """Embed cells without labels: Self-Label Clustering, Barlow Twins, autoencoder, PCA."""
    from ..core.specs import parse_channel_list
    from ..core.store import open_cellset
    from ..ml.embed import EmbedConfig, embed_cells

    refuse_existing(out, force=force)
    cs = open_cellset(cells)
    if channels:
        cs = cs.select_channels(parse_channel_list(channels))
    config = EmbedConfig(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        dim=dim,
        lambda_=lambda_,
        copies=copies,
        augment=augment,
        blackout=blackout,
        input_size=input_size,
        pooling=pooling,
        tta=tta,
        seed=seed,
    )
    adata = embed_cells(cs, out, method=method, config=config, save_model=save_model, force=force, workers=workers, scheduler=scheduler)
    key = adata.uns["stainfree_embed"]["key"]
    typer.echo(
        f"wrote {out}: {adata.n_obs} cells x {adata.obsm[key].shape[1]} in obsm['{key}']"
        + (f"; embedder {save_model}" if save_model else "")
    )


@app.command()
def cluster(
    embedding: Path = typer.Argument(..., help="An .h5ad from `stainfree embed`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to write (clusters.h5ad, clusters.json, composition and enrichment tables, figures/, report.html)."
    ),
    key: str | None = typer.Option(None, help="The obsm key to cluster (default: the one embed wrote)."),
    method: str = typer.Option("kmeans", help="kmeans, hdbscan or gmm."),
    on: str = typer.Option("embedding", help="Cluster the embedding or its 2-D umap."),
    k: int | None = typer.Option(None, help="Clusters for kmeans/gmm (default: peak silhouette / lowest BIC over --k-range)."),
    k_range: str = typer.Option("2,20", "--k-range", help="Smallest and largest k to scan, e.g. 2,100."),
    min_cluster_size: int = typer.Option(15, "--min-cluster-size", help="HDBSCAN minimum cluster size."),
    min_samples: int | None = typer.Option(None, "--min-samples", help="HDBSCAN min samples (default: the min cluster size)."),
    leaf: bool = typer.Option(True, "--leaf/--eom", help="HDBSCAN cluster selection: leaf (default) or excess of mass."),
    by: list[str] = typer.Option([], "--by", help="Group column for composition and enrichment (density, flask, culture). Repeatable."),
    probe_column: list[str] = typer.Option(
        [], "--probe", help="Column to predict from the embedding (random forest and logistic regression). Repeatable."
    ),
    regress: list[str] = typer.Option([], "--regress", help="Numeric column to predict (random-forest regression, Pearson r). Repeatable."),
    probe_group: str | None = typer.Option(
        None, "--probe-group", help="Keep each value of this column whole in the probes' folds (e.g. field)."
    ),
    cells: Path | None = typer.Option(None, "--cells", help="The CellSet the embedding came from, for the cluster gallery."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """UMAP, clusters, composition by group with enrichment tests, galleries and probes."""
    from ..workflows.cluster import run_cluster

    refuse_existing(out, force=force)
    adata = read_h5ad(embedding)
    try:
        lo, hi = (int(v) for v in k_range.split(","))
    except ValueError as exc:
        raise StainfreeError(f"--k-range takes two whole numbers, e.g. 2,20 (got {k_range!r})") from exc
    cs = None
    if cells is not None:
        import numpy as np

        from ..core.store import open_cellset

        cs = open_cellset(cells)
        order = {c: i for i, c in enumerate(cs.cell_ids.astype(str))}
        missing = [c for c in adata.obs_names if c not in order]
        if missing:
            raise StainfreeError(f"{cells}: cell {missing[0]!r} of the embedding is not in it")
        cs = cs.select(np.array([order[c] for c in adata.obs_names])) if list(order) != list(adata.obs_names) else cs
    path, summary = run_cluster(
        adata,
        out,
        key=key,
        method=method,
        on=on,
        k=k,
        k_range=(lo, hi),
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        leaf=leaf,
        by=by,
        probe_columns=probe_column,
        regress_columns=regress,
        probe_group=probe_group,
        cells=cs,
        random_state=seed,
        force=force,
    )
    c = summary["clustering"]
    typer.echo(
        f"wrote {path}: {c['clusters']} clusters ({c['method']} on {c['on']} of {c['key']}); sizes "
        + ", ".join(f"{k}: {v}" for k, v in summary["cluster_sizes"].items())
    )
    for column, probes in summary["probes"].items():
        typer.echo(
            f"probe {column}: balanced accuracy "
            + ", ".join(f"{kind} {p['balanced_accuracy']:.3f}" for kind, p in probes.items())
            + f" (majority {probes['rf']['majority']['balanced_accuracy']:.3f})"
        )
    for column, probes in summary["regressions"].items():
        typer.echo(f"probe {column}: Pearson r " + ", ".join(f"{kind} {p['pearson_r']:.3f}" for kind, p in probes.items()))
