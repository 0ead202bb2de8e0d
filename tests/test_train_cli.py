"""`stainfree train`: one model on all the labelled cells, written atomically, usable by `predict`."""

import logging
import pathlib

import numpy as np
import pytest

from conftest import run_cli as run
from stainfree.core.cellset import CellSet
from stainfree.datasets.synthetic import make_cells
from stainfree.ml.classifier import Classifier
from stainfree.ml.train import TrainConfig
from stainfree.utils import StainfreeError, read_parquet
from stainfree.workflows.train import run_train

QUICK = TrainConfig(epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def two_channel_cells(tmp_path_factory):
    """12 + 12 synthetic cells with a second channel ``half`` (the first halved), saved as a CellSet."""
    cs = make_cells(12, size=24, flasks_per_line=2, random_state=3).load()
    images = np.concatenate([cs.images, cs.images // 2], axis=1)
    path = tmp_path_factory.mktemp("cells") / "two.cells"
    CellSet(images, cs.table, channels=["bf", "half"], groups=["flask"]).save(path)
    return path


def test_synth_train_predict_round_trip(tmp_path):
    assert run("synth", "-o", tmp_path / "s.cells", "--cells-per-class", 10, "--size", 24, "--flasks-per-line", 2).returncode == 0
    model = tmp_path / "models" / "m.safetensors"  # the folder does not exist yet
    out = run("train", tmp_path / "s.cells", "-o", model, "--epochs", 2, "--batch-size", 8, "--model", "cnn3", "--seed", 1)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {model}: 20 cells, 2 classes (round 10, spindle 10), 2 epochs, ")
    assert lines[0].endswith(" s")
    assert [p.name for p in model.parent.iterdir()] == ["m.safetensors"]  # no temporary file left beside it
    clf = Classifier.load(model)
    assert clf.classes == ["round", "spindle"] and clf.channels == ["bf"] and clf.arch == "cnn3"
    pred = run("predict", model, tmp_path / "s.cells", "-o", tmp_path / "p.parquet", "--no-tta")
    assert pred.returncode == 0, pred.stderr
    table = read_parquet(tmp_path / "p.parquet")
    assert len(table) == 20 and {"cell_id", "label", "predicted", "prob_round", "prob_spindle"} <= set(table.columns)
    np.testing.assert_allclose(table[["prob_round", "prob_spindle"]].sum(axis=1), 1, rtol=1e-5)
    assert "against the labels (20 cells)" in pred.stdout


def test_existing_model_is_refused_without_force_and_replaced_with_it(tmp_path, two_channel_cells):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"mine")
    again = run("train", two_channel_cells, "-o", model, "--epochs", 1)
    assert again.returncode == 1 and again.stderr.strip() == f"error: {model}: already exists; pass --force to replace it"
    assert model.read_bytes() == b"mine"
    forced = run("train", two_channel_cells, "-o", model, "--epochs", 1, "--batch-size", 8, "--channels", "half", "--force")
    assert forced.returncode == 0, forced.stderr
    assert Classifier.load(model).channels == ["half"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--merge-classes", "round,spindle=cell"], "need at least two classes, got ['cell']"),
        (["--channels", "nope"], "nope"),
        (["--epochs", 0], "epochs must be at least 1"),
        (["--optimizer", "lbfgs"], "optimizer 'lbfgs' is not one of"),
    ],
)
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, two_channel_cells, extra, message):
    out = run("train", two_channel_cells, "-o", tmp_path / "m.safetensors", *extra)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_model_path_must_be_a_safetensors_file(tmp_path, two_channel_cells):
    out = run("train", two_channel_cells, "-o", tmp_path / "model")
    assert out.returncode == 1 and out.stderr.strip() == f"error: {tmp_path / 'model'}: a model file must end in .safetensors"
    (tmp_path / "d.safetensors").mkdir()
    folder = run("train", two_channel_cells, "-o", tmp_path / "d.safetensors", "--force")
    assert folder.returncode == 1 and "is a folder" in folder.stderr


def test_unlabelled_cells_are_left_out_and_said_so(tmp_path, caplog):
    cs = make_cells(4, size=24).load()
    table = cs.table.copy()
    table["label"] = table["label"].astype(object)
    table.loc[[0, 5], "label"] = None
    with caplog.at_level(logging.INFO, logger="stainfree"):
        path, summary = run_train(CellSet(cs.images, table, channels=cs.channels), tmp_path / "m.safetensors", config=QUICK)
    assert "leaving out 2 unlabelled cells" in caplog.text
    assert (summary["cells"], summary["left_out"], summary["classes"]) == (6, 2, {"round": 3, "spindle": 3})
    assert summary["epochs"] == 1 and summary["path"] == str(path) and Classifier.load(path).classes == ["round", "spindle"]


def test_a_class_of_one_cell_is_refused_before_training(tmp_path):
    cs = make_cells(3, size=24).load()
    table = cs.table.copy()
    table.loc[[4, 5], "label"] = "round"  # spindle keeps one cell
    with pytest.raises(StainfreeError, match=r"^class 'spindle' has only one cell; every class needs at least 2$"):
        run_train(CellSet(cs.images, table, channels=cs.channels), tmp_path / "m.safetensors", config=QUICK)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_model_and_keeps_the_old_one(tmp_path, monkeypatch):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"old model")
    write_bytes = pathlib.Path.write_bytes

    def half_then_interrupt(self, data):
        write_bytes(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_train(make_cells(3, size=24), model, config=QUICK, force=True)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"] and model.read_bytes() == b"old model"
