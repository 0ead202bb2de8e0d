"""The napari plugin (issue 15) in a real viewer, headless: its manifest, opening a CellSet and a
predict run through the reader, and the three dock widgets docked and run as a user would.

Skipped, with the reason, where napari (``pip install "stainfree[napari]"``) or an X display is
missing (pytest-xvfb starts Xvfb when it is installed: ``apt-get install xvfb``).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

# Qt draws off screen (no window manager, no xcb libraries needed); vispy's OpenGL still needs the X display
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("napari", reason='napari is not installed (pip install "stainfree[napari]")')
pytest.importorskip("pytestqt", reason="pytest-qt is not installed (it gives the make_napari_viewer fixture its Qt app)")
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip("no display for napari's OpenGL canvas: install Xvfb (apt-get install xvfb) for pytest-xvfb", allow_module_level=True)

from stainfree.core.cellset import CellSet  # noqa: E402
from stainfree.datasets.synthetic import make_cells, make_field  # noqa: E402
from stainfree.napari.layers import class_colours  # noqa: E402
from stainfree.seg.annotations import read_annotations  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from stainfree.ml.train import TrainConfig, fit

    train = make_cells(60, size=32, random_state=1)
    clf, _ = fit(train.images, train.labels, channels=["bf"], config=TrainConfig.for_data(train, epochs=2))
    return clf.save(tmp_path_factory.mktemp("model") / "model.safetensors")


def _small_set(tmp_path):
    images = np.arange(4 * 2 * 6 * 6, dtype=np.uint16).reshape(4, 2, 6, 6)
    masks = np.zeros((4, 6, 6), bool)
    masks[:, 1:4, 2:5] = True
    table = pd.DataFrame({"cell_id": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"], "area": [9, 9, 9, 9]})
    return CellSet(images, table, channels=["bf", "df"], masks=masks).save(tmp_path / "small.cells")


def test_manifest_names_the_reader_and_three_widgets():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("stainfree")
    assert manifest.name == "stainfree"
    assert [r.command for r in manifest.contributions.readers] == ["stainfree.read"]
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment cells", "Classify cells", "Save an annotation"}


def test_open_a_cellset_as_a_stack_with_its_table(make_napari_viewer, tmp_path):
    path = _small_set(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="stainfree")
    assert [layer.name for layer in viewer.layers] == ["small.cells bf", "small.cells df", "small.cells cells"]
    bf, df, cells = viewer.layers
    assert bf.data.shape == (4, 6, 6) and np.array_equal(np.asarray(df.data[2]), np.arange(4 * 2 * 36).reshape(4, 2, 6, 6)[2, 1])
    slice_2 = np.asarray(cells.data[2])
    assert slice_2[2, 3] == 3 and slice_2[0, 0] == 0  # cell "c": label 3 inside its mask, 0 outside
    assert cells.features["index"].tolist() == [1, 2, 3, 4]
    assert cells.features.loc[2, "cell_id"] == "c" and cells.features.loc[2, "label"] == "x"


def test_segment_then_classify_then_save_an_annotation(make_napari_viewer, model_path, tmp_path):
    field = make_field((160, 160), n_cells=12, random_state=3)
    viewer = make_napari_viewer()
    viewer.add_image(field.brightfield, name="well1")
    _, segment = viewer.window.add_plugin_dock_widget("stainfree", "Segment cells")
    segment(method="classical", diameter=0.0)
    labels = viewer.layers["well1 labels"]
    assert labels.data.shape == (160, 160) and 6 <= labels.data.max() <= 20

    _, classify = viewer.window.add_plugin_dock_widget("stainfree", "Classify cells")
    classify(image=viewer.layers["well1"], labels=labels, model=model_path, tta=False)
    predicted = viewer.layers["well1 predicted"]
    features = predicted.features
    assert set(features["predicted"]) <= {"round", "spindle"} and len(features) >= 4
    first = features.iloc[0]
    expected = class_colours(["round", "spindle"])[first["predicted"]]
    from napari.utils.colormaps.standardize_color import transform_color

    assert np.allclose(predicted.colormap.map(int(first["index"])), transform_color(expected)[0])

    _, save = viewer.window.add_plugin_dock_widget("stainfree", "Save an annotation")
    written = save(labels=labels, folder=tmp_path / "ann", field="", force=False)
    assert written.name == "well1_labels.tif"
    from stainfree.io.fields import Field

    back = read_annotations(tmp_path / "ann", [Field(field.brightfield[None], ["phase"], "well1", "well1.tif")])
    assert np.array_equal(back["well1"], labels.data)
    before = written.stat().st_mtime_ns
    assert save(labels=labels, folder=tmp_path / "ann", field="", force=False) is None  # exists: refused, said in a notification
    assert written.stat().st_mtime_ns == before


def test_a_missing_model_file_is_one_notification(make_napari_viewer, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 40, 40), np.uint8), name="two", channel_axis=None)
    viewer.add_labels(np.zeros((2, 40, 40), np.int32), name="two labels")
    _, classify = viewer.window.add_plugin_dock_widget("stainfree", "Classify cells")
    assert classify(image=viewer.layers["two"], labels=viewer.layers["two labels"], model=model_path / "nothing", tta=False) is None
    assert "two predicted" not in [layer.name for layer in viewer.layers]


def test_open_a_predict_run_coloured_by_class(make_napari_viewer, model_path, tmp_path):
    import tifffile

    from stainfree.workflows.predict import run_predict

    field = make_field((192, 192), n_cells=14, random_state=5)
    tifffile.imwrite(tmp_path / "well2.tif", field.brightfield)
    run, summary = run_predict(model_path, [tmp_path / "well2.tif"], tmp_path / "pred", channels=["bf"], method="classical", tta=False)
    viewer = make_napari_viewer()
    viewer.open(str(run / "fields.json"), plugin="stainfree")
    assert [layer.name for layer in viewer.layers] == ["well2 bf", "well2 predicted"]
    layer = viewer.layers["well2 predicted"]
    cells = pd.read_parquet(run / "cells.parquet")
    assert layer.features["index"].tolist() == cells["label_id"].tolist()
    assert len(layer.features) == summary["cells"]
    colours = class_colours(summary["classes"])
    from napari.utils.colormaps.standardize_color import transform_color

    for label, cls in zip(cells["label_id"], cells["predicted"]):
        assert np.allclose(layer.colormap.map(int(label)), transform_color(colours[cls])[0])
