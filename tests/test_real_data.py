"""End-to-end checks on the real public data in ../shared/data (skipped when it is absent)."""

import subprocess
import sys

import numpy as np

import stainfree as sf
from stainfree.utils import read_parquet

JURKAT_COUNTS = {"G1": 900, "S": 900, "G2": 900, "Prophase": 606, "Metaphase": 69, "Telophase": 28, "Anaphase": 15}


def test_jurkat_ifc_import_via_cli(shared_data, tmp_path):
    out = tmp_path / "jurkat.cells"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stainfree",
            "import",
            shared_data / "jurkat-bbbc048",
            "--layout",
            "ifc",
            "--channels",
            "Ch3,Ch6",
            "-o",
            out,
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    cs = sf.open_cellset(out)
    assert cs.shape == (3418, 2, 40, 40)
    assert cs.dtype == np.uint16 and cs.channels == ["Ch3", "Ch6"]
    assert cs.class_counts().to_dict() == JURKAT_COUNTS
    info = subprocess.run([sys.executable, "-m", "stainfree", "info", out], capture_output=True, text=True).stdout
    assert info.splitlines()[0] == "3418 cells, 2 channels (Ch3, Ch6), 40x40 px, uint16"
    for cls, n in JURKAT_COUNTS.items():
        assert any(line.split() == [cls, str(n)] for line in info.splitlines())
    # the same pixels as the files, in table order
    import tifffile

    row = 1234
    source = shared_data / "jurkat-bbbc048" / cs.table["source"].iloc[row]
    np.testing.assert_array_equal(cs.read(row)[0], tifffile.imread(source))
    np.testing.assert_array_equal(cs.read(row)[1], tifffile.imread(str(source).replace("_Ch3", "_Ch6")))
    # readable without stainfree
    import zarr

    table = read_parquet(out / "cells.parquet")
    assert {"cell_id", "label"} <= set(table.columns)
    assert zarr.open_array(str(out / "images.zarr"), mode="r").shape == (3418, 2, 40, 40)
    merged = cs.merge_classes("G1,S,G2=Interphase")
    assert merged.class_counts()["Interphase"] == 2700


def test_hek_import_with_fields_from_file_names(shared_data, tmp_path):
    out = tmp_path / "hek.cells"
    res = subprocess.run(
        [sys.executable, "-m", "stainfree", "import", shared_data / "hek-ht1080", "--group", r"field=-(\d{6})", "-o", out],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    cs = sf.open_cellset(out)
    assert cs.shape == (200, 1, 224, 224) and cs.dtype == np.uint8
    assert cs.class_counts().to_dict() == {"293A": 100, "HT1080": 100}
    fields = cs.table.groupby("label")["field"].nunique().to_dict()
    assert fields == {"293A": 40, "HT1080": 22}
    assert cs.table["field"].nunique() == 62
    assert (
        "group field: 62 distinct"
        in subprocess.run([sys.executable, "-m", "stainfree", "info", out], capture_output=True, text=True).stdout
    )


def _jurkat(shared_data, tmp_path_factory=None):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sf.import_cells(shared_data / "jurkat-bbbc048", f"{tmp}/j.cells", layout="ifc", channels="Ch3,Ch6").load()


def test_every_model_trains_one_epoch_on_jurkat(shared_data):
    from stainfree.ml.models import list_models
    from stainfree.ml.train import TrainConfig, fit

    cells = _jurkat(shared_data).merge_classes("G1,S,G2=Interphase")
    # at most 100 cells a class (every class, the rare mitotic ones whole): what is tested is that
    # each model takes real 2-channel 40 px cells through a training epoch and predicts
    keep = cells.table.groupby("label", group_keys=False).head(100).index.to_numpy()
    images, labels = cells.images[keep], cells.labels[keep]
    for name in list_models():
        clf, history = fit(images, labels, channels=cells.channels, config=TrainConfig(model=name, epochs=1, batch_size=64))
        assert len(history) == 1 and np.isfinite(history[0]["train_loss"]), name
        proba = clf.predict_proba(images[:64])
        assert proba.shape == (64, 5) and np.allclose(proba.sum(1), 1, atol=1e-4), name
