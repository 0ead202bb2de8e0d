"""Interrupted commands leave nothing that looks complete (issue 16, item 5).

Every command that writes is started on tiny synthetic inputs and interrupted, once with SIGINT
(Ctrl-C) and once with SIGKILL, at a seeded random moment 1 to ``window`` seconds after it started
(its imports are done by then, see below; on this 2-core machine the quick commands take 5-30 s,
so the signal lands anywhere from parsing to writing). Afterwards its folder must hold no output:
after SIGINT nothing, after SIGKILL only hidden ``.<name>.partial-*`` leftovers that stainfree
refuses to read; resume state (evaluate's
``.<run>.work``, train-segmenter's ``<model>.checkpoint``) may stay, and is refused as an output
too. A command that finishes before its signal arrives passes only if every output it names is
complete and readable; the slow ones (``slow=True``, minutes of training) must be interrupted.
The deterministic tests at the end interrupt the two writers that used to publish early.

Each run is ``python -m stainfree ARGS``, run by :mod:`runpy` as the interpreter does, in a child
forked from a multiprocessing forkserver that has imported stainfree and its heavy dependencies
once: thirty-two fresh interpreters would spend 2-5 s each importing torch, pandas, zarr and
anndata on this 2-core machine. The code under test is the same (``stainfree.cli.main`` installs
its Ctrl-C handler in every child); tests/test_cli.py keeps one run in a fresh interpreter.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from stainfree.utils import StainfreeError

PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]{8}")
PRELOAD = [
    "stainfree.cli",
    "stainfree.workflows.cluster",
    "stainfree.workflows.demo",
    "stainfree.workflows.evaluate",
    "stainfree.workflows.explain",
    "stainfree.workflows.predict",
    "stainfree.workflows.segment",
    "stainfree.workflows.segmentation",
    "stainfree.io.importers",
    "stainfree.ml.embed",
    "stainfree.pp.features",
    "stainfree.pp.adata",
    "stainfree.report.sections",
    "torch",
    "torch._dynamo",  # 7 s, on the first optimiser
    "pandas",
    "pyarrow.parquet",
    "zarr",
    "anndata",
    "tifffile",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "scipy.ndimage",
    "skimage.measure",
    "skimage.segmentation",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "safetensors.torch",
    "pytest",
    "conftest",
    __name__,  # the children's target
]
SIGNALS = (signal.SIGINT, signal.SIGKILL)
PARALLEL = 6


def _stainfree_main(argv: list[str], log: str, cwd: str) -> None:
    """``python -m stainfree ARGV`` in this (forked) process, stdout and stderr to ``log``."""
    import runpy
    import sys

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(cwd)
    sys.argv = ["stainfree", *argv]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
    try:
        runpy.run_module("stainfree", run_name="__main__", alter_sys=True)
    finally:  # a signal during multiprocessing's own exit is not stainfree's
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------- what each output is
def _cells(path: Path):
    from stainfree.core.store import open_cellset

    assert len(open_cellset(path)) > 0


def _model(path: Path):
    from stainfree.ml.classifier import read_model_file

    read_model_file(path)


def _table(path: Path):
    from stainfree.utils import read_parquet

    assert len(read_parquet(path)) > 0


def _h5ad(path: Path):
    from stainfree.cli.options import read_h5ad

    assert read_h5ad(path).n_obs > 0


def _run(marker: str) -> Callable[[Path], None]:
    """A run folder: complete when it holds ``marker`` and ``stainfree report`` reads it."""

    def read(path: Path):
        out = run_cli("report", path, "-o", path.parent / f"{path.name}-check.html")
        if out.returncode == 1:
            raise StainfreeError(out.stderr.strip())
        assert out.returncode == 0 and (path / marker).is_file(), out.stderr
        (path.parent / f"{path.name}-check.html").unlink()

    return read


def _labels(fields: list[Path]) -> Callable[[Path], None]:
    """A --save-labels folder: complete when it annotates every field (as --masks/--truth read it)."""

    def read(path: Path):
        from stainfree.io.fields import read_field_files
        from stainfree.seg.annotations import read_annotations

        assert len(read_annotations(path, read_field_files(fields))) == len(fields)
        assert (path / "labels.json").is_file()

    return read


def _html(path: Path):
    from stainfree.utils import refuse_partial

    refuse_partial(path)  # no stainfree command reads HTML; the name is what marks it unfinished
    assert path.read_text().rstrip().endswith("</html>")


@dataclasses.dataclass
class Case:
    name: str
    argv: list[str]
    outputs: dict[str, Callable[[Path], None]]
    resume: dict[str, Callable[[Path], None]] = dataclasses.field(default_factory=dict)
    slow: bool = False  # never done within its window: the signal must land mid-run
    window: float = 8.0  # the signal comes 1 s to this many seconds after the start


def _cases(d: Path) -> list[Case]:
    fields = [d / "fields" / "f0.tif", d / "fields" / "f1.tif"]
    f = [str(p) for p in fields]
    cells = str(d / "cells.cells")
    return [
        Case("import", ["import", str(d / "classes"), "-o", "out.cells"], {"out.cells": _cells}),
        Case("synth", ["synth", "-o", "out.cells", "--cells-per-class", "40", "--size", "32"], {"out.cells": _cells}),
        Case(
            "segment",
            ["segment", *f, "-o", "out.cells", "--size", "24", "--method", "classical", "--save-labels", "labels"],
            {"out.cells": _cells, "labels": _labels(fields)},
        ),
        Case(
            "train-segmenter",
            ["train-segmenter", *f, "--masks", str(d / "truth"), "-o", "seg.safetensors", "--steps", "5000"]
            + ["--crop", "32", "--batch-size", "2", "--validate-every", "2", "--diameter", "12", "--validation", "0.5"],
            {"seg.safetensors": _model},
            resume={"seg.safetensors.checkpoint": _model, "seg.safetensors.checkpoint.tmp": _model},
            slow=True,
        ),
        Case(
            "score-segmentation",
            ["score-segmentation", *f, "--truth", str(d / "truth"), "-o", "scores", "--method", "classical"],
            {"scores": _run("scores.json")},
        ),
        Case(
            "evaluate",
            ["evaluate", cells, "-o", "run", "--epochs", "30", "--patience", "30", "--folds", "2", "--repeats", "20"]
            + ["--group", "flask", "--baselines", "majority"],
            {"run": _run("metrics.json")},
            resume={".run.work": _run("metrics.json")},
            slow=True,
        ),
        Case(
            "compare",
            ["compare", cells, "-o", "cmp", "--epochs", "30", "--seeds", "20", "--folds", "2", "--group", "flask"],
            {"cmp": _run("comparison.json")},
            slow=True,
        ),
        Case("predict-cells", ["predict", str(d / "model.safetensors"), cells, "-o", "p.parquet"], {"p.parquet": _table}),
        Case(
            "predict-fields",
            ["predict", str(d / "field-model.safetensors"), *f, "-o", "pf", "--method", "classical"],
            {"pf": _run("fields.json")},
        ),
        Case("features", ["features", cells, "-o", "f.parquet"], {"f.parquet": _table}),
        Case(
            "embed",
            ["embed", cells, "-o", "e.h5ad", "--method", "autoencoder", "--epochs", "5000", "--batch-size", "8"]
            + ["--save-model", "emb.safetensors"],
            {"e.h5ad": _h5ad, "emb.safetensors": _model},
            slow=True,
        ),
        Case("cluster", ["cluster", str(d / "emb.h5ad"), "-o", "cl", "--k", "2"], {"cl": _run("clusters.json")}),
        Case(
            "explain",
            ["explain", str(d / "features.parquet"), "--by", "label", "--from", cells, "-o", "ex"],
            {"ex": _run("explain.json")},
        ),
        Case(
            "saliency",
            ["saliency", str(d / "model.safetensors"), cells, "-o", "sal", "--cells-per-class", "1", "--samples", "2"],
            {"sal": _run("saliency.json")},
        ),
        Case("report", ["report", str(d / "run"), "-o", "r.html"], {"r.html": _html}),
        Case("demo", ["demo", "-o", "demo", "--epochs", "30"], {"demo": _run("metrics.json")}, slow=True),
    ]


CASE_NAMES = [c.name for c in _cases(Path("."))]


# ---------------------------------------------------------------------- inputs, made once
def _prepare(d: Path) -> None:
    import tifffile

    from stainfree.datasets.synthetic import make_cells, make_field
    from stainfree.io.export import write_class_folders
    from stainfree.ml.embed import EmbedConfig, embed_cells
    from stainfree.ml.train import TrainConfig, fit

    cells = make_cells(8, size=24, flasks_per_line=2, random_state=0)
    cells.save(d / "cells.cells")
    write_class_folders(cells, d / "classes")
    for k in range(2):
        field = make_field((96, 96), n_cells=6, random_state=k)
        (d / "fields").mkdir(exist_ok=True)
        (d / "truth").mkdir(exist_ok=True)
        tifffile.imwrite(d / "fields" / f"f{k}.tif", field.brightfield)
        tifffile.imwrite(d / "truth" / f"f{k}.tif", field.labels.astype(np.uint16))
    model, _ = fit(cells.images, cells.labels, channels=["bf"], config=TrainConfig(epochs=1, batch_size=8))
    model.save(d / "model.safetensors")
    dataclasses.replace(model, channels=["ch0"]).save(d / "field-model.safetensors")  # the fields' channel
    embed_cells(cells, d / "emb.h5ad", method="pca", config=EmbedConfig(dim=3))
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(len(cells), 4)), columns=["AreaShape_Area", "a", "b", "c"])
    features.insert(0, "cell_id", cells.cell_ids)
    features.to_parquet(d / "features.parquet", index=False)
    (d / "run").mkdir()
    (d / "run" / "comparison.json").write_text(json.dumps({"conditions": {}}))


@dataclasses.dataclass
class _Job:
    case: Case
    sig: signal.Signals
    delay: float
    work: Path
    log: Path
    process: object = None
    started: float = 0.0
    sent: bool = False
    exitcode: int | None = None
    seconds: float = 0.0


def _step(job: _Job, now: float) -> bool:
    """Advance one job; True once its process has ended."""
    if now >= job.started + job.delay and not job.sent and job.process.is_alive():
        os.kill(job.process.pid, job.sig)
        job.sent = True
    if now - job.started > 120:  # a hang is a failure, not a reason to wait forever
        job.process.kill()
    if job.process.is_alive():
        return False
    job.process.join()
    job.exitcode, job.seconds = job.process.exitcode, now - job.started
    return True


def _run_all(cases: list[Case], root: Path, *, random_state: int = 16) -> dict[tuple[str, str], _Job]:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    rng = random.Random(random_state)
    pending = []
    for case in cases:
        for sig in SIGNALS:
            work = root / f"{case.name}-{sig.name}"
            work.mkdir()
            job = _Job(case, sig, rng.uniform(1.0, case.window), work, root / f"{case.name}-{sig.name}.log")
            job.process = ctx.Process(target=_stainfree_main, args=(case.argv, str(job.log), str(work)), daemon=True)
            pending.append(job)
    active, done = [], {}
    while pending or active:
        while pending and len(active) < PARALLEL:
            job = pending.pop(0)
            job.process.start()
            job.started = time.monotonic()
            active.append(job)
        now = time.monotonic()
        for job in [j for j in active if _step(j, now)]:
            active.remove(job)
            done[job.case.name, job.sig.name] = job
        time.sleep(0.02)
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    _prepare(d)
    t0 = time.monotonic()
    jobs = _run_all(_cases(d), tmp_path_factory.mktemp("runs"))
    interrupted = sum(j.exitcode != 0 for j in jobs.values())
    print(f"\n{len(jobs)} runs in {time.monotonic() - t0:.1f} s: {interrupted} interrupted, {len(jobs) - interrupted} done first")
    return jobs


def _refused(read: Callable[[Path], None], path: Path) -> None:
    with pytest.raises(StainfreeError):
        read(path)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_an_interrupted_command_leaves_nothing_that_looks_complete(runs, name, sig):
    job = runs[name, sig]
    log = job.log.read_text()
    finished = all((job.work / output).exists() for output in job.case.outputs)
    if job.case.slow:
        assert not finished and job.exitcode != 0, f"{name} finished before {sig} ({job.seconds:.1f} s)"
    if finished:  # done before the signal took effect (its exit status may then be 130): all complete
        for output, read in job.case.outputs.items():
            read(job.work / output)
        return
    assert job.exitcode == (130 if sig == "SIGINT" else -signal.SIGKILL), log
    if sig == "SIGINT":
        assert log.strip().splitlines()[-1] == "interrupted: no partial output was left behind", log
        assert "Traceback" not in log
    for path in sorted(job.work.iterdir()):
        assert path.name not in job.case.outputs, f"{name}: {path.name} is there after {sig}"
        if path.name in job.case.resume:
            _refused(job.case.resume[path.name], path)
            continue
        assert sig == "SIGKILL" and PARTIAL.match(path.name), f"{name}: {path.name} left after {sig}"
        _refused(job.case.outputs[path.name.lstrip(".").split(".partial-")[0]], path)


# ---------------------------------------------------------------------- the same, deterministically
def test_segment_labels_appear_only_with_the_cells(tmp_path, monkeypatch):
    import tifffile

    from stainfree.core.store import CellSetWriter
    from stainfree.datasets.synthetic import make_field
    from stainfree.workflows.segment import run_segment

    tifffile.imwrite(tmp_path / "f0.tif", make_field((96, 96), n_cells=6, random_state=0).brightfield)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    options = {"size": 24, "method": "classical"}
    with monkeypatch.context() as m:
        m.setattr(CellSetWriter, "finish", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_segment([tmp_path / "f0.tif"], tmp_path / "s.cells", save_labels=tmp_path / "labels", **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.tif"]
    run = run_segment([tmp_path / "f0.tif"], tmp_path / "s.cells", save_labels=tmp_path / "labels", **options)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["f0_labels.tif", "labels.json"]
    body = json.loads((tmp_path / "labels" / "labels.json").read_text())
    assert body["label_images"] == {"f0": "f0_labels.tif"} and body["objects"]["f0"] == len(run.cells) == 6
    # a second run refuses the folder, replaces it with --force, and never replaces a user's folder
    with pytest.raises(StainfreeError, match="labels: already exists; pass --force"):
        run_segment([tmp_path / "f0.tif"], tmp_path / "t.cells", save_labels=tmp_path / "labels", **options)
    run_segment([tmp_path / "f0.tif"], tmp_path / "s.cells", save_labels=tmp_path / "labels", force=True, **options)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["f0_labels.tif", "labels.json"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(StainfreeError, match="not a stainfree output"):
        run_segment([tmp_path / "f0.tif"], tmp_path / "s.cells", save_labels=tmp_path / "mine", force=True, **options)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_embed_model_appears_only_with_the_embedding(tmp_path, monkeypatch):
    from stainfree.datasets.synthetic import make_cells
    from stainfree.ml import embed

    cells = make_cells(4, size=16, flasks_per_line=1, random_state=0)
    config = embed.EmbedConfig(dim=2)

    def interrupted(adata, path):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(embed, "write_h5ad", interrupted)
        with pytest.raises(KeyboardInterrupt):
            embed.embed_cells(cells, tmp_path / "e.h5ad", method="pca", config=config, save_model=tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []
    embed.embed_cells(cells, tmp_path / "e.h5ad", method="pca", config=config, save_model=tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.h5ad", "m.safetensors"]
    assert embed.Embedder.load(tmp_path / "m.safetensors").method == "pca"


def test_unfinished_outputs_are_refused_by_every_reader(tmp_path):
    """What a SIGKILL can leave, complete inside but still under its temporary name."""
    from stainfree.datasets.synthetic import make_cells
    from stainfree.ml.embed import EmbedConfig, embed_cells
    from stainfree.ml.train import TrainConfig, fit

    cells = make_cells(4, size=16, flasks_per_line=1, random_state=0)
    partial = {name: tmp_path / f".{name}.partial-0123abcd" for name in ("c.cells", "m.safetensors", "p.parquet", "e.h5ad", "run")}
    cells.save(partial["c.cells"])
    fit(cells.images, cells.labels, channels=["bf"], config=TrainConfig(epochs=1))[0].save(partial["m.safetensors"])
    cells.table.to_parquet(partial["p.parquet"], index=False)
    embed_cells(cells, partial["e.h5ad"], method="pca", config=EmbedConfig(dim=2))
    partial["run"].mkdir()
    (partial["run"] / "comparison.json").write_text('{"conditions": {}}')
    calls = [
        ("info", partial["c.cells"]),
        ("predict", partial["m.safetensors"], cells.save(tmp_path / "ok.cells"), "-o", tmp_path / "x.parquet"),
        ("explain", partial["p.parquet"], "--by", "label", "-o", tmp_path / "x"),
        ("cluster", partial["e.h5ad"], "-o", tmp_path / "x"),
        ("report", partial["run"], "-o", tmp_path / "x.html"),
        ("train-segmenter", tmp_path / "f.tif", "--masks", partial["run"], "-o", tmp_path / "x.safetensors"),
    ]
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", np.zeros((16, 16), np.uint8))
    for args in calls:
        out = run_cli(*args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.strip().endswith("an unfinished output left by an interrupted run; delete it and run again"), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["f.tif", "ok.cells"]
