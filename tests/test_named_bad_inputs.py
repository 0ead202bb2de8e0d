"""Bad input that used to end in a traceback, an error after all the training, or silence:
each now gives one ``error:`` line, exit status 1 and writes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli
from stainfree.datasets.synthetic import make_cells


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small labelled CellSet, a PCA embedding of it and a classifier trained on it."""
    from stainfree.io.export import write_h5ad
    from stainfree.ml.embed import EmbedConfig, embed_cells
    from stainfree.ml.train import TrainConfig, fit

    folder = tmp_path_factory.mktemp("inputs")
    cells = make_cells(6, size=16, flasks_per_line=2, random_state=0)
    cells.save(folder / "c.cells")
    write_h5ad(embed_cells(cells, method="pca", config=EmbedConfig(dim=4)), folder / "e.h5ad")
    clf, _ = fit(cells.read(slice(None)), cells.labels, channels=cells.channels, config=TrainConfig(epochs=1, batch_size=8))
    clf.save(folder / "m.safetensors")
    pd.DataFrame({"cell_id": cells.cell_ids, "Eccentricity": 0.5}).to_parquet(folder / "no_area.parquet")
    pd.DataFrame({"cell_id": cells.cell_ids, "AreaShape_Area": 100.0, "flask": cells.table["flask"]}).to_parquet(folder / "text.parquet")
    return folder


def _refused(args, message, folder, tmp_path):
    before = sorted(p.name for p in folder.iterdir())
    r = run_cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, r.stderr)
    assert sorted(p.name for p in folder.iterdir()) == before and not list(tmp_path.iterdir()), args


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["evaluate", "{in}/c.cells", "-o", "{out}/run", "--learning-curve", "abc"],
            "--learning-curve takes fractions in (0, 1] separated by commas, e.g. 0.25,0.5,1; got 'abc'",
        ),
        (["evaluate", "{in}/c.cells", "-o", "{out}/run", "--learning-curve", "0.5,2"], "got '0.5,2'"),
        (
            ["cluster", "{in}/e.h5ad", "-o", "{out}/cl", "--probe", "label", "--probe-group", "label"],
            "class 'round' lies in one group only ('round'), so no fold of a group-aware probe trains on it",
        ),
        (
            [
                "evaluate",
                "{in}/c.cells",
                "-o",
                "{out}/run",
                "--group",
                "flask",
                "--folds",
                "2",
                "--epochs",
                "1",
                "--features",
                "{in}/no_area.parquet",
            ],
            "the features have no AreaShape_Area column, which the area_svm baseline needs",
        ),
        (
            [
                "evaluate",
                "{in}/c.cells",
                "-o",
                "{out}/run",
                "--group",
                "flask",
                "--folds",
                "2",
                "--epochs",
                "1",
                "--features",
                "{in}/text.parquet",
            ],
            "the features have non-numeric column(s) flask",
        ),
        (
            ["compare", "{in}/c.cells", "-o", "{out}/cmp", "--protocol", "audit-groups", "--group", "flask", "--epochs", "1"],
            "protocol audit-groups does not measure",
        ),
        (
            ["predict", "{in}/m.safetensors", "{in}/c.cells", "-o", "{out}/p.parquet", "--channels", "nope"],
            "--channels applies to field images;",
        ),
        (
            ["predict", "{in}/m.safetensors", "{in}/c.cells", "-o", "{out}/p.parquet", "--diameter", "30", "--grey"],
            "--grey applies to field images;",
        ),
        (
            ["evaluate", "{in}/c.cells", "-o", "{out}/run", "--protocol", "cross-group", "--group", "flask", "--max-pools", "0"],
            "max_pools and max_pool_size must be at least 1, got 0 and 3",
        ),
    ],
)
def test_named_bad_input_gives_one_line_and_writes_nothing(inputs, tmp_path, args, message):
    args = [a.format(**{"in": inputs, "out": tmp_path}) for a in args]
    _refused(args, message, inputs, tmp_path)


def test_a_features_table_without_area_still_serves_the_forest(inputs):
    from stainfree.eval.baselines import feature_arrays
    from stainfree.utils import read_parquet

    matrix, area = feature_arrays(read_parquet(inputs / "no_area.parquet"), need_area=False)
    assert matrix.tolist() == [[0.5]] * 12 and area is None


def test_two_runs_writing_one_output_leave_the_first_whole(tmp_path):
    from stainfree.utils import StainfreeError, atomic_output_dir, atomic_output_file

    run = tmp_path / "run"
    with pytest.raises(StainfreeError, match="run: appeared while this run was working"):
        with atomic_output_dir(run) as folder:
            (folder / "metrics.json").write_text("second")
            run.mkdir()  # the other run finished first
            (run / "metrics.json").write_text("first")
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and (run / "metrics.json").read_text() == "first"
    model = tmp_path / "m.safetensors"
    with pytest.raises(StainfreeError, match="m.safetensors: appeared while this run was working"):
        with atomic_output_file(model) as partial:
            partial.write_text("second")
            model.write_text("first")
    assert model.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "run"]
    with atomic_output_file(model) as partial:  # an output there from the start is replaced (its caller checked --force)
        partial.write_text("new")
    assert model.read_text() == "new"


def test_a_previous_output_moved_aside_by_a_killed_force_run_is_pointed_out(tmp_path, caplog):
    from stainfree.utils import atomic_output_dir

    run = tmp_path / "run[1]"
    aside = tmp_path / ".run[1].old-0123abcd"  # what a SIGKILL between the two renames leaves
    aside.mkdir()
    (aside / "metrics.json").write_text("old")
    with caplog.at_level("WARNING", logger="stainfree.utils"):
        with atomic_output_dir(run) as folder:
            (folder / "metrics.json").write_text("new")
    assert (run / "metrics.json").read_text() == "new" and (aside / "metrics.json").read_text() == "old"
    assert [r.getMessage() for r in caplog.records] == [
        f"{run}: absent, but {aside} holds the output an interrupted --force run had moved aside; rename it back to keep it"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="stainfree.utils"):
        with atomic_output_dir(tmp_path / "other"):
            pass
    assert caplog.records == []
