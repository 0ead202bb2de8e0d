"""Learnt segmentation: targets, instances, training, tiling, annotations, scoring, CLI."""

import json
import logging
import zipfile

import numpy as np
import pytest

from conftest import write_png, write_tif


def cli(capsys, *args):
    """Run the stainfree command in this process; returns (exit status, stdout, stderr)."""
    from stainfree.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synthetic_fields(n, *, size=128, seed=0):
    from stainfree.datasets.synthetic import make_field

    fields = [make_field((size, size), n_cells=12, density="high", random_state=seed + k) for k in range(n)]
    return [f.brightfield[None] for f in fields], [f.labels for f in fields]


@pytest.fixture(scope="module")
def tiny_training():
    """A tiny segmenter trained briefly on three synthetic fields, the untrained one, and a
    fourth field to judge both on."""
    import torch

    from stainfree.seg.training import SegTrainConfig, train_segmenter

    torch.manual_seed(0)
    images, labels = synthetic_fields(4)
    config = SegTrainConfig(steps=120, batch_size=4, crop=64, width=8, depth=2, diameter=12, lr=1e-2, validate_every=120)
    untrained = train_segmenter(
        images[:3], labels[:3], channels=["bf"], config=SegTrainConfig(**{**config.__dict__, "steps": 1, "lr": 1e-9})
    )
    trained = train_segmenter(images[:3], labels[:3], channels=["bf"], config=config, pixel_size=0.5, provenance={"licence": "CC0"})
    return trained, untrained, images[3], labels[3]


@pytest.mark.parametrize("representation", ["flows", "distance"])
def test_perfect_maps_give_back_the_true_instances(representation):
    from stainfree.seg.instances import InstanceParams, instances_from_maps
    from stainfree.seg.scoring import segmentation_scores
    from stainfree.seg.targets import training_targets

    _, labels = synthetic_fields(2, size=160)
    for truth in labels:
        maps = training_targets(truth, representation=representation)
        scores = segmentation_scores(truth, instances_from_maps(maps, params=InstanceParams(representation=representation)))
        assert scores["f1"] >= 0.97 and scores["mean_matched_iou"] >= 0.97


def test_flows_keep_a_branched_cell_whole_where_the_distance_core_breaks():
    from stainfree.seg.instances import InstanceParams, instances_from_maps
    from stainfree.seg.targets import training_targets

    truth = np.zeros((40, 40), int)
    truth[18:22, 2:38] = 1  # a thin bar with a round body at each end: its distance core breaks in three
    yy, xx = np.mgrid[:40, :40]
    truth[(yy - 20) ** 2 + (xx - 6) ** 2 < 25] = 1
    truth[(yy - 20) ** 2 + (xx - 33) ** 2 < 25] = 1
    flows = instances_from_maps(
        training_targets(truth, representation="flows"), params=InstanceParams(representation="flows", min_seed_count=5)
    )
    distance = instances_from_maps(training_targets(truth, representation="distance"), params=InstanceParams(representation="distance"))
    assert flows.max() == 1 and np.array_equal(flows > 0, truth > 0)
    assert distance.max() >= 2


def test_boundary_representation_separates_touching_cells():
    from stainfree.seg.instances import InstanceParams, instances_from_maps
    from stainfree.seg.targets import training_targets

    truth = np.zeros((10, 20), int)
    truth[1:9, 1:10], truth[1:9, 10:19] = 1, 2
    labels = instances_from_maps(training_targets(truth), params=InstanceParams(representation="boundary"))
    assert labels.max() == 2 and len(np.unique(labels[truth == 1])) == 1 and (labels[truth == 1] != labels[truth == 2][0]).all()


def test_min_area_drops_small_objects_and_bad_params_are_refused():
    from stainfree.seg.instances import InstanceParams, instances_from_maps
    from stainfree.seg.targets import training_targets
    from stainfree.utils import StainfreeError

    truth = np.zeros((12, 12), int)
    truth[1:7, 1:7], truth[9:11, 9:11] = 1, 2
    labels = instances_from_maps(training_targets(truth), params=InstanceParams(representation="distance", min_area=5))
    assert np.array_equal(np.unique(labels), [0, 1]) and (labels == 1).sum() == 36
    with pytest.raises(StainfreeError, match="seed threshold must lie between 0 and 1"):
        instances_from_maps(training_targets(truth), params=InstanceParams(seed_threshold=1.5))


def test_training_beats_the_untrained_network_by_a_wide_margin(tiny_training):
    from stainfree.seg.scoring import segmentation_scores

    trained, untrained, image, truth = tiny_training
    before = segmentation_scores(truth, untrained.segment(image).labels)["f1"]
    after = segmentation_scores(truth, trained.segment(image).labels)["f1"]
    assert after >= 0.6 and after >= before + 0.4, (before, after)


def test_tiled_and_untiled_prediction_agree(tiny_training):
    from stainfree.seg.scoring import segmentation_scores

    trained, _, image, _ = tiny_training
    x = np.tile(image, (1, 2, 3))  # 256 x 384, so tiles of 96 cut through cells
    whole = trained.segment(x, tile=1024).labels
    tiled = trained.segment(x, tile=96).labels
    assert segmentation_scores(whole, tiled)["f1"] >= 0.97
    assert (whole > 0).sum() == pytest.approx((tiled > 0).sum(), rel=0.02)
    strip = x[:, :90, :200]  # one side fits in a tile, the other does not
    assert segmentation_scores(trained.segment(strip, tile=1024).labels, trained.segment(strip, tile=96).labels)["f1"] >= 0.97


def test_save_and_load_keep_weights_scale_and_provenance(tiny_training, tmp_path):
    from stainfree.seg.model import Segmenter

    trained, _, image, _ = tiny_training
    path = trained.save(tmp_path / "seg.safetensors")
    loaded = Segmenter.load(path)
    assert np.array_equal(loaded.segment(image).labels, trained.segment(image).labels)
    assert loaded.channels == ["bf"] and loaded.provenance["licence"] == "CC0"
    assert loaded.pixel_size == pytest.approx(0.5 / trained.scale) and loaded.diameter == pytest.approx(trained.diameter)
    # a field at twice the pixel size is enlarged to the network's scale
    assert loaded.resolve_scale(pixel_size=1.0)[0] == pytest.approx(2 * loaded.resolve_scale(pixel_size=0.5)[0])
    assert loaded.resolve_scale(diameter=loaded.diameter / loaded.scale)[0] == pytest.approx(loaded.scale)


def test_a_field_too_large_for_memory_is_refused_before_any_work(tiny_training, monkeypatch):
    from stainfree.seg import resize as model_module
    from stainfree.utils import StainfreeError

    monkeypatch.setattr(model_module, "available_memory", lambda: 2**20)
    with pytest.raises(StainfreeError, match=r"a 200x300 px field needs about .* GiB to segment, more than the 0.0 GiB available"):
        tiny_training[0].segment(np.zeros((1, 200, 300), np.uint8))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import torch

    from stainfree.seg import training
    from stainfree.seg.training import SegTrainConfig, train_segmenter

    images, labels = synthetic_fields(2, size=96)
    config = SegTrainConfig(steps=6, batch_size=2, crop=32, width=4, depth=2, diameter=12, validate_every=2)
    straight = train_segmenter(images, labels, channels=["bf"], config=config)
    original = training.segmentation_loss
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "segmentation_loss", failing)
    out = tmp_path / "seg.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(images, labels, channels=["bf"], config=config, out=out)
    assert (tmp_path / "seg.safetensors.checkpoint").exists() and not out.exists()
    monkeypatch.setattr(training, "segmentation_loss", original)
    resumed = train_segmenter(images, labels, channels=["bf"], config=config, out=out, resume=True)
    assert [h["step"] for h in resumed.provenance["history"]] == [2, 4, 6]
    for a, b in zip(straight.network.state_dict().values(), resumed.network.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


# ---------------------------------------------------------------------- annotations
def _field(name, shape=(20, 30), channels=("bf",)):
    from stainfree.io.fields import Field

    return Field(
        image=np.zeros((len(channels), *shape), np.uint16), channels=list(channels), name=name, source=f"{name}.tif", pixel_size=None
    )


def test_annotations_from_label_images_roi_sets_and_coco(tmp_path):
    import roifile

    from stainfree.seg.annotations import read_annotations

    labels = np.zeros((20, 30), np.uint16)
    labels[2:6, 3:9], labels[10:15, 20:25] = 4, 9
    write_tif(tmp_path / "a.tif", labels)
    write_png(tmp_path / "b_labels.png", labels.astype(np.uint8))
    rois = [
        roifile.ImagejRoi.frompoints(np.array(p, float), name=str(k))
        for k, p in enumerate([[[3, 2], [8, 2], [8, 5], [3, 5]], [[20, 10], [24, 10], [24, 14], [20, 14]]])
    ]
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
        for roi in rois:
            z.writestr(f"{roi.name}.roi", roi.tobytes())
    coco = {
        "images": [{"id": 7, "file_name": "sub/d.png", "height": 20, "width": 30}],
        "annotations": [
            {"image_id": 7, "segmentation": [[3, 2, 8, 2, 8, 5, 3, 5]], "iscrowd": 0},
            {"image_id": 7, "segmentation": {"size": [20, 30], "counts": [410, 5, 15, 5, 15, 5, 15, 5, 15, 5, 105]}, "iscrowd": 0},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    got = read_annotations(tmp_path, [_field(n) for n in "abcd"])
    assert np.array_equal(got["a"], labels) and np.array_equal(got["b"], labels)
    for name in "cd":
        assert got[name].max() == 2
        assert (got[name] == 1).sum() == 24 and (got[name][2:6, 3:9] == 1).all()
    assert (got["d"] == 2).sum() == 25 and (got["d"][10:15, 20:25] == 2).all()


def test_binary_masks_are_split_with_a_warning(tmp_path, caplog):
    from stainfree.seg.annotations import label_image

    mask = np.zeros((10, 10), np.uint8)
    mask[1:4, 1:4], mask[6:9, 6:9] = 255, 255
    write_png(tmp_path / "m.png", mask)
    with caplog.at_level(logging.WARNING, logger="stainfree"):
        labels = label_image(tmp_path / "m.png")
    assert labels.max() == 2 and "binary mask" in caplog.text


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: write_tif(p / "a.tif", np.ones((5, 5), np.uint16)), "annotation is 5x5 px but its field is 20x30"),
        (lambda p: write_tif(p / "a.tif", np.zeros((20, 30), np.uint16)), "holds no objects"),
        (lambda p: (p / "a.zip").write_bytes(b"not a zip"), "not a readable ImageJ ROI set"),
        (
            lambda p: (p / "x.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "zz.png"}], "annotations": []})),
            "no annotation for field 'a'",
        ),
        (lambda p: None, "no annotation for field 'a'"),
    ],
)
def test_bad_annotations_get_one_clear_error(tmp_path, setup, message):
    from stainfree.seg.annotations import read_annotations
    from stainfree.utils import StainfreeError

    setup(tmp_path)
    with pytest.raises(StainfreeError, match=message):
        read_annotations(tmp_path, [_field("a")])


def test_coco_file_matching_no_field_is_refused(tmp_path):
    from stainfree.seg.annotations import read_annotations
    from stainfree.utils import StainfreeError

    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "other.png"}], "annotations": []}))
    with pytest.raises(StainfreeError, match="coco.json: no image's file_name matches a field"):
        read_annotations(path, [_field("a")])


# ---------------------------------------------------------------------- scoring
def test_scores_count_splits_merges_and_average_precision():
    from stainfree.seg.scoring import segmentation_scores

    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3, 0, 4, 4, 4, 4]])
    pred = np.array([[5, 5, 6, 6, 0, 7, 7, 7, 7, 7, 0, 8, 8, 8, 0]])
    s = segmentation_scores(truth, pred)
    # cell 1 split in two, cells 2 and 3 merged into 7, cell 4 matched at IoU 0.75
    assert (s["split_cells"], s["merged_cells"], s["true_positives"]) == (1, 2, 1)
    assert s["f1"] == pytest.approx(2 / 8, abs=1e-4) and s["mean_matched_iou"] == 0.75
    # matched at IoU thresholds 0.5 .. 0.7 (5 of 10), each 1 / (4 + 4 - 1)
    assert s["ap_50_95"] == pytest.approx(5 / 7 / 10, abs=1e-4)


# ---------------------------------------------------------------------- command line
@pytest.fixture
def synthetic_folder(tmp_path):
    images, labels = synthetic_fields(5, size=96, seed=10)
    for k, (x, y) in enumerate(zip(images, labels)):
        write_png(tmp_path / "fields" / f"f{k}.png", x[0])
        write_tif(tmp_path / "masks" / f"f{k}.tif", y.astype(np.uint16))
    return tmp_path


def test_cli_trains_segments_and_scores(synthetic_folder, tiny_training, capsys):
    from stainfree.seg.model import Segmenter

    d = synthetic_folder
    fields = sorted((d / "fields").glob("*.png"))
    model = d / "seg.safetensors"
    code, out, err = cli(
        capsys,
        "train-segmenter",
        *fields,
        "--masks",
        d / "masks",
        "-o",
        model,
        "--steps",
        4,
        "--crop",
        32,
        "--batch-size",
        2,
        "--validate-every",
        2,
        "--licence",
        "CC0",
        "--diameter",
        12,
    )
    assert code == 0, err
    assert "validation F1" in out and model.exists() and not (d / "seg.safetensors.checkpoint").exists()
    saved = Segmenter.load(model)
    assert saved.provenance["licence"] == "CC0" and len(saved.provenance["training_data"]["validation"]) == 1
    code, out, err = cli(capsys, "train-segmenter", *fields, "--masks", d / "masks", "-o", model)
    assert code == 1 and "already exists; pass --force" in err
    trained = tiny_training[0].save(d / "trained.safetensors")
    code, out, err = cli(
        capsys, "segment", *fields[:2], "--model", trained, "--method", "learnt", "-o", d / "c.cells", "--size", 16, "--pad"
    )
    assert code == 0, err
    assert "wrote" in out and (d / "c.cells" / "cellset.json").exists()
    from stainfree.utils import read_parquet

    table = read_parquet(d / "c.cells" / "cells.parquet")
    assert {"field_density", "local_neighbours", "density_level"} <= set(table.columns)
    assert table.groupby("field")["field_density"].nunique().eq(1).all()
    code, out, err = cli(
        capsys, "score-segmentation", *fields[:2], "--truth", d / "masks", "--method", "classical", "--mode", "brightfield", "-o", d / "run"
    )
    assert code == 0, err
    scores = json.loads((d / "run" / "scores.json").read_text())
    assert scores["pooled"]["true_objects"] == sum(r["true_objects"] for r in scores["per_field"])
    assert (d / "run" / "overlays" / "f0.png").exists() and "Segmentation against the truth" in (d / "run" / "report.html").read_text()


def test_cli_refuses_a_model_for_other_channels_and_a_file_that_is_no_model(tmp_path, capsys):
    from stainfree.seg.model import Segmenter
    from stainfree.seg.networks import create_segmenter

    two = Segmenter(create_segmenter("unet", 2, 3, width=4, depth=2), "unet", {"width": 4, "depth": 2}, ["bf", "dic"], None, 1.0, 12.0)
    model = two.save(tmp_path / "two.safetensors")
    field = write_png(tmp_path / "f.png", np.zeros((32, 32), np.uint8))
    code, out, err = cli(capsys, "segment", field, "--model", model, "--method", "learnt", "-o", tmp_path / "x.cells")
    assert code == 1 and "reads channels bf, dic; the fields have ch0" in err and not (tmp_path / "x.cells").exists()
    code, out, err = cli(capsys, "segment", field, "--model", field, "--method", "learnt", "-o", tmp_path / "y.cells")
    assert code == 1 and "f.png: not a stainfree model" in err and "Traceback" not in err


# ---------------------------------------------------------------------- real data
def test_shipped_model_segments_phase_fields_it_never_saw(shared_data):
    import tifffile

    from stainfree.seg.methods import load_segmenter
    from stainfree.seg.scoring import match_counts, pool_counts, scores_from_counts

    model = load_segmenter()
    assert model.provenance["licence"].startswith("MIT")
    assert not {f"set{k}" for k in range(41, 46)} & set(model.provenance["training_data"]["fields"])
    counts = []
    for k in range(41, 46):
        image = tifffile.imread(shared_data / "phase-fields" / "fields" / f"set{k}.tif")
        truth = tifffile.imread(shared_data / "phase-fields" / "masks" / f"set{k}.tif")
        counts.append(match_counts(truth, model.segment(image).labels))
    pooled = scores_from_counts(pool_counts(counts))
    assert pooled["f1"] >= 0.75, pooled


def test_auto_method_keeps_the_classical_pipeline_on_fluorescence(shared_data):
    import tifffile

    from stainfree.io.fields import read_fields
    from stainfree.seg.methods import segment_field
    from stainfree.seg.scoring import segmentation_scores

    (field,) = read_fields(shared_data / "nuclei-field" / "img2d.tif")
    result = segment_field(field, segment_channel=field.channels[0])
    truth = tifffile.imread(shared_data / "nuclei-field" / "mask2d.tif")
    assert result.mode == "fluorescence" and segmentation_scores(truth, result.labels)["f1"] >= 0.88


def test_training_leaves_the_global_torch_seed_alone():
    import torch

    from stainfree.seg.training import SegTrainConfig, train_segmenter

    truth = np.zeros((64, 64), int)
    truth[10:30, 10:30], truth[35:55, 35:60] = 1, 2
    torch.manual_seed(123)
    expected = torch.rand(1).item()
    torch.manual_seed(123)
    config = SegTrainConfig(steps=2, batch_size=2, crop=32, width=4, depth=2, diameter=12, validate_every=2)
    train_segmenter([(truth > 0).astype(np.float32)[None]], [truth], channels=["a"], config=config)
    assert torch.rand(1).item() == expected


@pytest.mark.parametrize("steps", [2, 20])
def test_any_number_of_steps_trains(steps):
    """OneCycleLR divides by zero when the warm-up is exactly one step (20 steps at 5%)."""
    from stainfree.seg.training import SegTrainConfig, train_segmenter

    images, labels = synthetic_fields(1, size=64)
    config = SegTrainConfig(steps=steps, batch_size=2, crop=32, width=4, depth=2, diameter=12, validate_every=steps)
    model = train_segmenter(images, labels, channels=["bf"], config=config)
    assert [h["step"] for h in model.provenance["history"]] == [steps]
