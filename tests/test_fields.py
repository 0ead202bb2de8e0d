"""Fields of view: reading, segmentation, cropping, fluorescence labels, mixed populations."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import run_cli as run
from stainfree.core.cellset import CellSet
from stainfree.core.store import concat, open_cellset
from stainfree.datasets.synthetic import make_cells, make_field
from stainfree.io.fields import Field, read_fields, read_points
from stainfree.seg.classical import segment
from stainfree.seg.crops import crop_objects
from stainfree.seg.fluorescence import correct_background, fit_two_populations
from stainfree.seg.scoring import instance_scores
from stainfree.utils import StainfreeError, read_parquet
from stainfree.workflows.predict import run_predict
from stainfree.workflows.segment import run_segment


def write_mixed_fields(folder, n_fields=3, *, shape=(384, 384), seed=100):
    """Two-channel TIFFs (brightfield, fluorescence marking the spindle line) and their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, truths = [], []
    for s in range(n_fields):
        f = make_field(shape, n_cells=45, random_state=seed + s)
        path = folder / f"field{s}.tif"
        tifffile.imwrite(path, np.stack([f.brightfield.astype(np.uint16), f.fluorescence]))
        paths.append(path)
        truths.append(f)
    return paths, truths


# ---------------------------------------------------------------------- reading
def test_read_multichannel_tiff_with_names(tmp_path):
    data = np.arange(2 * 5 * 6, dtype=np.uint16).reshape(2, 5, 6)
    tifffile.imwrite(tmp_path / "a.tif", data)
    (field,) = read_fields(tmp_path / "a.tif", channels=["bf", "gfp"])
    assert field.channels == ["bf", "gfp"] and field.name == "a"
    np.testing.assert_array_equal(field.channel("gfp"), data[1])
    with pytest.raises(StainfreeError, match="3 channel names given for 2 channels"):
        read_fields(tmp_path / "a.tif", channels=["a", "b", "c"])
    with pytest.raises(StainfreeError, match="no channel 'rfp'"):
        field.channel("rfp")


def test_read_ome_tiff_channel_names_and_pixel_size(tmp_path):
    data = np.zeros((2, 8, 8), np.uint16)
    data[1] = 7
    tifffile.imwrite(
        tmp_path / "f.ome.tif",
        data,
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["DIC", "mCherry"]}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )
    (field,) = read_fields(tmp_path / "f.ome.tif")
    assert field.channels == ["DIC", "mCherry"]
    assert field.pixel_size == pytest.approx(0.325)
    assert field.channel("mCherry").max() == 7
    (field,) = read_fields(tmp_path / "f.ome.tif", pixel_size=1.0)
    assert field.pixel_size == 1.0


def test_z_stack_as_channels_or_as_fields(tmp_path):
    data = np.stack([np.full((4, 4), z, np.uint8) for z in range(3)])[:, None]  # Z C Y X
    tifffile.imwrite(tmp_path / "z.tif", data, metadata={"axes": "ZCYX"}, imagej=False)
    (field,) = read_fields(tmp_path / "z.tif")
    assert field.channels == ["ch0_z0", "ch0_z1", "ch0_z2"]
    assert field.image[:, 0, 0].tolist() == [0, 1, 2]
    fields = read_fields(tmp_path / "z.tif", planes="fields")
    assert [f.name for f in fields] == ["z_z0", "z_z1", "z_z2"]
    assert [int(f.image.max()) for f in fields] == [0, 1, 2]


def test_read_colour_png_as_grey_and_unreadable_file(tmp_path):
    from PIL import Image

    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 1] = 100
    Image.fromarray(rgb).save(tmp_path / "c.png")
    (colour,) = read_fields(tmp_path / "c.png")
    assert colour.channels == ["red", "green", "blue"]
    (grey,) = read_fields(tmp_path / "c.png", grey=True)
    assert grey.channels == ["grey"] and int(grey.image[0, 0, 0]) == round(0.587 * 100)
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(StainfreeError, match="bad.tif: unreadable image"):
        read_fields(tmp_path / "bad.tif")


# ---------------------------------------------------------------------- segmentation
def test_instance_scores_exact():
    truth = np.array([[1, 1, 1, 0, 2, 2], [1, 1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 5, 0, 6, 0], [5, 5, 0, 0, 0, 0]])
    s = instance_scores(truth, pred)
    # object 1: IoU 5/6 (match); object 2: IoU 1/4 (no match)
    assert (s["true_positives"], s["precision"], s["recall"], s["f1"]) == (1, 0.5, 0.5, 0.5)
    assert s["mean_matched_iou"] == pytest.approx(5 / 6)


def test_two_touching_disks_are_split_and_a_speck_is_dropped():
    yy, xx = np.mgrid[0:60, 0:80]
    img = np.zeros((60, 80))
    img[(yy - 30) ** 2 + (xx - 25) ** 2 < 12**2] = 100
    img[(yy - 30) ** 2 + (xx - 47) ** 2 < 12**2] = 100  # overlaps the first: one blob, two cells
    img[5, 75] = 100  # a one-pixel speck
    r = segment(img, diameter=24)
    assert r.n_objects == 2
    left, right = r.labels[30, 20], r.labels[30, 52]
    assert left and right and left != right
    assert r.labels[5, 75] == 0


def test_segmentation_reports_what_the_area_filter_dropped():
    rng = np.random.default_rng(0)
    img = np.zeros((200, 200))
    img[rng.integers(0, 200, 3000), rng.integers(0, 200, 3000)] = 100  # thousands of specks
    img[80:110, 80:110] = 100
    r = segment(img, mode="fluorescence", diameter=30, min_area=200, smoothing=0, local_window=0, closing=0)
    assert r.n_objects == 1
    assert r.dropped_small > 0


def test_empty_field_gives_no_objects():
    r = segment(np.full((50, 50), 7, np.uint16))
    assert r.n_objects == 0 and r.labels.shape == (50, 50)


def test_brightfield_segmentation_of_synthetic_field():
    f = make_field((384, 384), n_cells=40, random_state=3)
    r = segment(f.brightfield, mode="auto")
    s = instance_scores(f.labels, r.labels)
    assert s["f1"] >= 0.9, s
    assert s["mean_matched_iou"] >= 0.75, s


def test_nuclei_field_reaches_the_f1_target(shared_data):
    folder = shared_data / "nuclei-field"
    truth = tifffile.imread(folder / "mask2d.tif")
    (field,) = read_fields(folder / "img2d.tif")
    r = segment(field.image[0])  # every parameter at its documented default
    s = instance_scores(truth, r.labels)
    assert s["true_objects"] == 125
    assert s["f1"] >= 0.80, s


# ---------------------------------------------------------------------- cropping
def test_crop_objects_keeps_only_the_objects_own_mask():
    img = np.arange(144, dtype=np.uint16).reshape(1, 12, 12)
    labels = np.zeros((12, 12), int)
    labels[5:7, 5:7] = 1
    labels[5:7, 7:8] = 2  # a neighbour inside the crop
    labels[0:2, 0:2] = 3  # its crop leaves the field
    crops, masks, table, skipped = crop_objects(img, labels, size=6)
    assert skipped == 1 and table["label_id"].tolist() == [1, 2]
    assert crops.shape == (2, 1, 6, 6)
    assert masks[0].sum() == 4 and masks[1].sum() == 2
    np.testing.assert_array_equal(crops[0, 0], img[0, 3:9, 3:9])
    assert table.loc[0, ["centroid_x", "centroid_y", "area"]].tolist() == [5.5, 5.5, 4]
    crops, masks, table, skipped = crop_objects(img, labels, size=6, pad=True)
    assert skipped == 0 and len(table) == 3 and masks[2].sum() == 4
    assert crops[2, 0, 0, 0] == 72  # padding with the field's median (71.5, rounded)


def test_points_file_errors(tmp_path):
    fields = [Field(np.zeros((1, 20, 30), np.uint8), ["bf"], f"f{i}", str(tmp_path / f"f{i}.tif")) for i in range(2)]
    with pytest.raises(StainfreeError, match="missing column 'y'"):
        read_points(pd.DataFrame({"x": [1]}), fields)
    with pytest.raises(StainfreeError, match="need a 'field' column"):
        read_points(pd.DataFrame({"x": [1], "y": [1]}), fields)
    with pytest.raises(StainfreeError, match="field 'g.tif' is not one of the fields"):
        read_points(pd.DataFrame({"x": [1], "y": [1], "field": ["g.tif"]}), fields)
    with pytest.raises(StainfreeError, match=r"\(x=35, y=3\) on row 3 is outside f1.tif \(30x20 px\)"):
        read_points(pd.DataFrame({"x": [1, 35], "y": [1, 3], "field": ["f0.tif", "f1.tif"]}), fields)
    pts = read_points(pd.DataFrame({"x": [1, 2], "y": [3, 4], "field": ["f1", "f0.tif"], "class": ["a", "b"]}), fields)
    assert pts[0]["label"].tolist() == ["b"] and pts[1]["x"].tolist() == [1]


def test_cropping_at_points_through_the_cli(tmp_path):
    img = np.zeros((2, 40, 40), np.uint16)
    img[0, 10, 10] = 500
    tifffile.imwrite(tmp_path / "a.tif", img)
    pd.DataFrame({"x": [10, 38], "y": [10, 20], "class": ["A", "B"], "Metadata_well": ["w1", "w2"]}).to_csv(tmp_path / "p.csv", index=False)
    out = run(
        "segment", tmp_path / "a.tif", "--points", tmp_path / "p.csv", "--size", 8, "--channels", "bf,gfp", "-o", tmp_path / "p.cells"
    )
    assert out.returncode == 0, out.stderr
    assert "2 points, 1 cells kept; dropped 1 whose crop leaves the field" in out.stdout
    cs = open_cellset(tmp_path / "p.cells")
    assert cs.channels == ["bf", "gfp"] and not cs.has_masks
    assert cs.table[["label", "Metadata_well", "field"]].values.tolist() == [["A", "w1", "a"]]
    assert cs.images[0, 0, 4, 4] == 500


# ---------------------------------------------------------------------- fluorescence labels
def test_correct_background_matches_a_direct_blur():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    field = 100 + 0.3 * xx + 20 * rng.random((256, 256))
    direct = field / ndimage.gaussian_filter(field, 40, mode="reflect")
    fast = correct_background(field, sigma=40)
    inner = slice(40, -40)
    assert np.max(np.abs(fast[inner, inner] - direct[inner, inner])) < 0.01


def test_mixture_labels_and_unused_cells():
    rng = np.random.default_rng(1)
    x = np.exp(np.r_[rng.normal(4, 0.3, 300), rng.normal(7, 0.3, 200), [5.5]])
    fit = fit_two_populations(x, names=("LMPP", "proB"))
    assert fit.labels[:300].tolist() == ["LMPP"] * 300 and fit.labels[300:500].tolist() == ["proB"] * 200
    assert fit.labels[500] is None  # halfway between: posterior < 0.8 for both
    assert 5.0 < fit.threshold < 6.0 and fit.separation > 5


def test_mixture_that_does_not_separate_is_refused():
    x = np.random.default_rng(2).lognormal(5, 0.4, 400)
    with pytest.raises(StainfreeError, match="does not separate"):
        fit_two_populations(x)


def test_segment_cli_with_labels_masks_and_label_images(tmp_path):
    paths, truths = write_mixed_fields(tmp_path / "fields", n_fields=2, shape=(256, 256))
    # synthetic benchtop brightfield, not phase contrast: the classical brightfield pipeline
    out = run(
        "segment",
        *paths,
        "--channels",
        "bf,mCherry",
        "--label-channel",
        "mCherry",
        "--label-names",
        "round,spindle",
        "--size",
        32,
        "--save-labels",
        tmp_path / "labels",
        "-o",
        tmp_path / "s.cells",
        "--method",
        "classical",
    )
    assert out.returncode == 0, out.stderr
    assert "fluorescence mixture: round" in out.stdout
    cs = open_cellset(tmp_path / "s.cells")
    assert cs.channels == ["bf"]  # the stain is left out of the crops
    assert cs.has_masks and cs.read_masks().shape == (len(cs), 32, 32)
    assert cs.groups == ["field"] and set(cs.table["field"]) == {"field0", "field1"}
    assert (tmp_path / "s.cells" / "label_fit.png").stat().st_size > 1000
    labels = tifffile.imread(tmp_path / "labels" / "field0_labels.tif")
    assert labels.dtype == np.uint16 and labels.shape == (256, 256)
    assert instance_scores(truths[0].labels, labels)["f1"] > 0.9
    # each cell's label agrees with the line its fluorescence marks
    truth = truths[0].cells.set_index("label_id")
    for _, row in cs.table[cs.table["field"] == "field0"].iterrows():
        nearest = ((truth["centroid_x"] - row["centroid_x"]) ** 2 + (truth["centroid_y"] - row["centroid_y"]) ** 2).idxmin()
        assert row["label"] in (None, truth.loc[nearest, "label"])
    again = run("segment", *paths, "--channels", "bf,mCherry", "-o", tmp_path / "s.cells")
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr
    # a further plate grows the set in place; the same fields again are refused, the set unchanged
    more, _ = write_mixed_fields(tmp_path / "more", n_fields=1, shape=(256, 256), seed=3)
    renamed = tmp_path / "more" / "field9.tif"
    Path(more[0]).rename(renamed)
    common = [
        "--channels",
        "bf,mCherry",
        "--label-channel",
        "mCherry",
        "--size",
        32,
        "--method",
        "classical",
        "-o",
        tmp_path / "s.cells",
        "--append",
    ]
    grown = run("segment", renamed, *common)
    assert grown.returncode == 0, grown.stderr
    after = open_cellset(tmp_path / "s.cells")
    assert (
        f"now {len(after)} cells" in grown.stdout and len(after) > len(cs) and set(after.table["field"]) == {"field0", "field1", "field9"}
    )
    np.testing.assert_array_equal(after.read(slice(0, len(cs))), cs.images)
    twice = run("segment", renamed, *common)
    assert twice.returncode == 1 and "is already in the set" in twice.stderr and len(open_cellset(tmp_path / "s.cells")) == len(after)


def test_segment_cli_bad_inputs(tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 32, 32), np.uint8))
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((32, 32), np.uint8))
    out = run("segment", tmp_path / "two.tif", tmp_path / "one.tif", "-o", tmp_path / "x.cells")
    assert out.returncode == 1
    assert "fields of different channels in one call: two.tif has 2" in out.stderr and "Traceback" not in out.stderr
    out = run("segment", tmp_path / "two.tif", "--label-channel", "mCherry", "-o", tmp_path / "x.cells")
    assert out.returncode == 1 and "label channel 'mCherry' is not in the fields (channels: ch0, ch1)" in out.stderr
    out = run("segment", tmp_path / "one.tif", "-o", tmp_path / "x.cells")
    assert out.returncode == 1 and "no cells in any field (one: 0 found)" in out.stderr
    assert not (tmp_path / "x.cells").exists()


def test_segment_to_cellset_balances_classes_per_field(tmp_path):
    paths, _ = write_mixed_fields(tmp_path / "fields", n_fields=2, shape=(256, 256), seed=7)
    _, result, cells = run_segment(
        paths,
        tmp_path / "b.cells",
        channels=["bf", "fl"],
        label_channel="fl",
        label_names=("round", "spindle"),
        size=24,
        balance=True,
        method="classical",
    )
    per_field = cells.table.groupby("field")["label"].value_counts().unstack()
    assert (per_field["round"] == per_field["spindle"]).all()
    assert len(cells) < len(result.table)


# ---------------------------------------------------------------------- CellSet masks
def test_cellset_masks_survive_save_select_and_concat(tmp_path):
    images = np.arange(3 * 1 * 4 * 4, dtype=np.uint8).reshape(3, 1, 4, 4)
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[1, 1:3, 1:3] = 1
    cs = CellSet(images, pd.DataFrame({"label": ["a", "b", "a"]}), masks=masks)
    cs.save(tmp_path / "m.cells")
    back = open_cellset(tmp_path / "m.cells")
    assert back.has_masks and back.read_masks().sum() == 4
    picked = back.select([2, 1])
    assert picked.read_masks()[1].sum() == 4 and picked.read_masks()[0].sum() == 0
    assert picked.load().read_masks().sum() == 4
    assert concat([cs, cs], source_column="part").read_masks().sum() == 8
    with pytest.raises(StainfreeError, match="masks have shape"):
        CellSet(images, masks=np.zeros((3, 5, 5)))


# ---------------------------------------------------------------------- mixed populations
def test_mixed_population_fields_are_classified_against_the_fluorescence_label(tmp_path):
    from stainfree.ml.train import TrainConfig, fit

    train = make_cells(300, size=32, random_state=1)  # single-line flasks
    clf, _ = fit(train.images, train.labels, channels=train.channels, config=TrainConfig.for_data(train, epochs=20))
    clf.save(tmp_path / "model.safetensors")
    paths, _ = write_mixed_fields(tmp_path / "fields")
    out, summary = run_predict(
        tmp_path / "model.safetensors",
        paths,
        tmp_path / "pred",
        channels=["bf", "fluo"],
        label_channel="fluo",
        label_names=["round", "spindle"],
        method="classical",
    )
    overall = summary["against_labels"]
    assert overall["cells"] >= 100
    assert overall["accuracy"] >= 0.90, overall
    assert set(overall["per_field"]) == {"field0", "field1", "field2"}
    composition = pd.read_csv(out / "composition.csv")
    assert composition["field"].tolist() == ["field0", "field1", "field2"]
    assert np.allclose(composition["fraction_round"] + composition["fraction_spindle"], 1)
    assert (composition["cells_round"] + composition["cells_spindle"]).sum() == summary["cells"]
    cells = read_parquet(out / "cells.parquet")
    assert {"field", "centroid_x", "centroid_y", "area", "label", "predicted", "prob_round"} <= set(cells.columns)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["field0.png", "field1.png", "field2.png"]
    labels = tifffile.imread(out / "labels" / "field1_labels.tif")  # what the napari plugin colours by class
    in_table = set(cells.loc[cells["field"] == "field1", "label_id"])
    assert labels.shape == (384, 384) and in_table <= set(np.unique(labels)) - {0}
    assert json.loads((out / "fields.json").read_text())["crop_size"] == 32
    report = (out / "report.html").read_text()
    assert report.count("<img") == 1 + 1 + 3  # the label fit, the composition chart, one overlay per field
    assert "Not in this report" not in report
    # the same through the CLI, and a label name the model does not know
    bad = run(
        "predict",
        tmp_path / "model.safetensors",
        *paths,
        "--channels",
        "bf,fluo",
        "--label-channel",
        "fluo",
        "--label-names",
        "HEK,HT1080",
        "-o",
        tmp_path / "p2",
    )
    assert bad.returncode == 1 and "label name 'HEK' is not one of the model's classes (round, spindle)" in bad.stderr
    good = run("predict", tmp_path / "model.safetensors", *paths[:1], "--channels", "bf,fluo", "-o", tmp_path / "p3")
    assert good.returncode == 0, good.stderr
    assert "cells in 1 field(s); predicted round" in good.stdout


def test_features_and_blackout_training_use_the_cells_own_masks():
    from stainfree.ml.train import TrainConfig, fit
    from stainfree.pp.features import measure

    images = np.zeros((4, 1, 16, 16), np.uint8)
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[0, 2:4, 2:4] = 1
    masks[1:, 4:9, 4:9] = 1
    cells = CellSet(images, pd.DataFrame({"label": ["a", "b", "a", "b"]}), masks=masks)
    assert measure(cells)["AreaShape_Area"].tolist() == [4, 25, 25, 25]
    config = TrainConfig(epochs=1, batch_size=4, blackout="full")
    clf, history = fit(cells.images, cells.labels, channels=["ch0"], config=config, masks=cells.read_masks())
    assert len(history) == 1
    with pytest.raises(StainfreeError, match="blackout augmentation needs cell masks"):
        fit(cells.images, cells.labels, channels=["ch0"], config=config)
    with pytest.raises(StainfreeError, match="blackout 'half' is not none, full or partial"):
        TrainConfig(blackout="half").validate()
