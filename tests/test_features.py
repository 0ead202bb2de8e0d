"""CellProfiler-style features: Haralick texture against mahotas, exact shapes, bad cells, CLI."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from stainfree.core.cellset import CellSet
from stainfree.datasets.synthetic import make_cells
from stainfree.pp.features import measure, skeleton_features
from stainfree.pp.texture import DIRECTIONS, HARALICK_NAMES, cooccurrence, haralick
from stainfree.utils import read_parquet


def _cells(images, masks=None, channels=("bf",)):
    images = np.asarray(images)
    table = pd.DataFrame({"cell_id": [f"c{i}" for i in range(len(images))], "label": ["a"] * len(images)})
    return CellSet(images, table, channels=list(channels), masks=masks)


@pytest.mark.parametrize("distance", [1, 3])
def test_haralick_matches_mahotas_in_all_four_directions(distance):
    mahotas = pytest.importorskip("mahotas")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 8, (24, 20))
    img[0, 0] = 7  # mahotas sizes its matrix by the largest value
    reference = mahotas.features.haralick(img, distance=distance)  # 4 directions x 13
    for d, (dy, dx) in enumerate(DIRECTIONS):
        ours = haralick(cooccurrence(img[None] + 1, offset=(dy * distance, dx * distance), n_levels=8))
        got = np.array([ours[name][0] for name in HARALICK_NAMES])
        np.testing.assert_allclose(got, reference[d], rtol=1e-9, atol=1e-12)


def test_cooccurrence_counts_only_pairs_inside_the_mask():
    levels = np.array([[[1, 2, 0, 2], [1, 1, 2, 2]]])
    counts = cooccurrence(levels, offset=(0, 1), n_levels=2)[0]
    # pairs to the right inside the mask: (1,2), (1,1), (1,2), (2,2) -> symmetric counts
    np.testing.assert_array_equal(counts, [[2, 2], [2, 2]])
    assert counts.sum() == 2 * 4


def test_skeleton_of_a_cross_and_of_a_bar():
    lab = np.zeros((9, 20), int)
    lab[4, 1:8] = 1
    lab[1:8, 4] = 1
    lab[3:6, 11:19] = 2
    f = skeleton_features(lab, n_objects=2)
    assert f["ObjectSkeleton_NumberBranchEnds"].tolist() == [4, 2]
    assert f["ObjectSkeleton_NumberBranchPoints"].tolist() == [1, 0]


def test_a_square_cell_has_exact_shape_and_intensity():
    img = np.zeros((1, 1, 32, 32), np.float32)
    img[0, 0, 11:21, 11:21] = 5.0
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[0, 11:21, 11:21] = 1
    row = measure(_cells(img, mask)).iloc[0]
    assert row["cell_id"] == "c0"
    assert row["AreaShape_Area"] == 100
    assert row["AreaShape_Extent"] == 1.0 and row["AreaShape_Solidity"] == 1.0
    assert row["AreaShape_MajorAxisLength"] == pytest.approx(row["AreaShape_MinorAxisLength"])
    assert row["Intensity_MeanIntensity_bf"] == 5.0
    assert row["Intensity_IntegratedIntensity_bf"] == 500.0
    assert row["Intensity_StdIntensity_bf"] == 0.0
    assert row["ObjectSkeleton_NumberBranchEnds"] >= 0


def test_shape_features_do_not_depend_on_rotation_and_texture_directions_swap():
    cells = make_cells(4, size=40, random_state=3)
    images = cells.read(slice(None))
    rotated = np.rot90(images, 1, axes=(2, 3)).copy()
    a = measure(_cells(images))
    b = measure(_cells(rotated))
    for name in (
        "AreaShape_Area",
        "AreaShape_FormFactor",
        "AreaShape_Solidity",
        "AreaShape_MaxFeretDiameter",
        "Intensity_MeanIntensity_bf",
    ):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)
    # a quarter turn swaps horizontal (00) and vertical (02) co-occurrence
    np.testing.assert_allclose(a["Texture_Contrast_bf_3_00"], b["Texture_Contrast_bf_3_02"], rtol=1e-9)


def test_texture_tells_a_rough_cell_from_a_smooth_one():
    yy, xx = np.mgrid[0:32, 0:32]
    disk = (yy - 16) ** 2 + (xx - 16) ** 2 < 100
    rng = np.random.default_rng(1)
    smooth = np.where(disk, 150.0, 100.0)
    rough = np.where(disk, 150.0 + rng.normal(0, 30, disk.shape), 100.0)
    t = measure(_cells(np.stack([smooth, rough])[:, None], np.stack([disk, disk]).astype(np.uint8)))
    assert t["Texture_Contrast_bf_3_00"][1] > 10 * max(t["Texture_Contrast_bf_3_00"][0], 1e-3)
    assert t["Texture_Entropy_bf_5_00"][1] > t["Texture_Entropy_bf_5_00"][0]


def test_empty_mask_and_constant_cell_give_nan_and_warnings(caplog):
    img = np.full((3, 1, 24, 24), 100.0, np.float32)
    img[2, 0, 6:18, 6:18] = 160.0 + np.arange(144).reshape(12, 12) % 7
    masks = np.zeros((3, 24, 24), np.uint8)
    masks[1, 6:18, 6:18] = 1  # a cell of one intensity
    masks[2, 6:18, 6:18] = 1
    with caplog.at_level(logging.WARNING, logger="stainfree.pp.features"):
        t = measure(_cells(img, masks))
    assert t.loc[0].drop("cell_id").isna().all()  # empty mask: nothing measured
    assert t.loc[1, "AreaShape_Area"] == 144
    assert np.isnan(t.loc[1, "Texture_Correlation_bf_3_00"])
    assert t.loc[1, "Texture_Contrast_bf_3_00"] == 0.0
    assert np.isfinite(t.loc[2, "Texture_Correlation_bf_3_00"])
    text = caplog.text
    assert "1 cell(s) have an empty mask" in text and "c0" in text
    assert "one grey level" in text


def test_the_default_mask_follows_the_first_channel():
    # a bright speck in the second channel must not become the cell outline
    img = np.zeros((1, 2, 32, 32), np.float32)
    img[0, 0] = 100.0
    img[0, 0, 8:24, 8:24] = 40.0
    img[0, 1, 2:4, 2:4] = 500.0
    row = measure(_cells(img, channels=("bf", "df"))).iloc[0]
    assert 256 <= row["AreaShape_Area"] <= 16 * 16 + 4 * 16  # the square, at most a pixel wider
    assert row["AreaShape_Area"] == measure(_cells(img[:, :1])).iloc[0]["AreaShape_Area"]
    assert measure(_cells(img, channels=("bf", "df")), mask_channel="df").iloc[0]["AreaShape_Area"] < 40
    with pytest.raises(ValueError, match="mask channel 'nope'"):
        measure(_cells(img, channels=("bf", "df")), mask_channel="nope")


def test_features_cli_writes_one_row_per_cell(tmp_path):
    cells = make_cells(6, size=32, random_state=0)
    cells.save(tmp_path / "c.cells")
    out = tmp_path / "f.parquet"
    r = run_cli("features", str(tmp_path / "c.cells"), "-o", str(out), "--scales", "2")
    assert r.returncode == 0, r.stderr
    table = read_parquet(out)
    assert table["cell_id"].tolist() == cells.cell_ids.tolist()
    assert "Texture_SumVariance_bf_2_00" in table and "Texture_SumVariance_bf_3_00" not in table
    r = run_cli("features", str(tmp_path / "c.cells"), "-o", str(out))
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run_cli("features", str(tmp_path / "c.cells"), "-o", str(tmp_path / "g.parquet"), "--channels", "Ch9")
    assert r.returncode == 1 and "Ch9" in r.stderr and "Traceback" not in r.stderr
