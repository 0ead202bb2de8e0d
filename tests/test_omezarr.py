"""Fields from OME-Zarr images and plates, read lazily, and large fields segmented in tiles (issue 18)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from conftest import run_cli
from stainfree.core.store import open_cellset
from stainfree.io.fields import Field, read_field_files
from stainfree.io.omezarr import read_ome_zarr
from stainfree.seg.classical import SegmentationParams
from stainfree.seg.pipeline import cells_from_fields
from stainfree.seg.tiles import objects_in_core, split_field
from stainfree.utils import StainfreeError

AXES = [
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def discs(shape=(300, 340), n=40, radius=7, seed=0):
    """A fluorescence field of well-separated bright discs, and their true centres."""
    rng = np.random.default_rng(seed)
    centres = []
    while len(centres) < n:
        c = rng.uniform(radius + 2, np.array(shape) - radius - 2)
        if all(np.hypot(*(c - d)) > 3 * radius for d in centres):
            centres.append(c)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 10.0)
    for r, c in centres:
        image[np.hypot(rows - r, cols - c) <= radius] = 200
    return (image + rng.normal(0, 2, shape)).clip(0, 255).astype(np.uint8), np.array(centres)


def write_image(group, data: np.ndarray, *, scale=0.5, version="0.4", channels=("dapi", "bf")):
    meta = {
        "multiscales": [
            {"axes": AXES, "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, scale, scale]}]}]}
        ],
        "omero": {"channels": [{"label": c} for c in channels]},
    }
    group.attrs.update(meta if version == "0.4" else {"ome": {"version": "0.5", **meta}})
    group.create_array("0", data=data, chunks=(1, 64, 64))


def write_plate(path, fields: dict[str, np.ndarray]):
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = sorted({name.split("_")[0] for name in fields})
    root.attrs["plate"] = {"wells": [{"path": f"{w[0]}/{w[1:]}"} for w in wells], "columns": [], "rows": []}
    for w in wells:
        images = sorted(name.split("_")[1] for name in fields if name.startswith(w + "_"))
        well = root.create_group(f"{w[0]}/{w[1:]}")
        well.attrs["well"] = {"images": [{"path": i} for i in images]}
        for i in images:
            write_image(well.create_group(i), fields[f"{w}_{i}"])


def test_a_plate_reads_lazily_with_its_channels_and_pixel_size(tmp_path):
    a, _ = discs(seed=1)
    fields = {"A1_0": np.stack([a, 255 - a]), "A1_1": np.stack([a.T[:300, :300], a[:300, :300]]), "B2_0": np.stack([a, a])}
    write_plate(tmp_path / "plate.zarr", fields)
    read = read_field_files([tmp_path / "plate.zarr"])
    assert [f.name for f in read] == ["A1_0", "A1_1", "B2_0"]
    assert read[0].channels == ["dapi", "bf"] and read[0].pixel_size == 0.5
    assert not isinstance(read[0].image, np.ndarray)  # nothing read yet
    np.testing.assert_array_equal(read[1].loaded().image, fields["A1_1"])
    # a single 0.5 image, with the channel names and pixel size given
    root = zarr.open_group(str(tmp_path / "one.ome.zarr"), mode="w")
    write_image(root, np.stack([a, a]), version="0.5", scale=2.0)
    (one,) = read_ome_zarr(tmp_path / "one.ome.zarr", channels=["x", "y"])
    assert (one.name, one.channels, one.pixel_size, one.image.shape) == ("one", ["x", "y"], 2.0, (2, 300, 340))


def test_bad_ome_zarr_is_one_line(tmp_path):
    root = zarr.open_group(str(tmp_path / "z.zarr"), mode="w")
    root.create_array("0", data=np.zeros((1, 2, 3, 8, 8), np.uint8))
    with pytest.raises(StainfreeError, match="not an OME-Zarr image"):
        read_ome_zarr(tmp_path / "z.zarr")
    axes = [{"name": n} for n in "tczyx"]
    root.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0"}]}]
    with pytest.raises(StainfreeError, match="has 3 z planes"):
        read_ome_zarr(tmp_path / "z.zarr")
    write_image(zarr.open_group(str(tmp_path / "c.zarr"), mode="w"), np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(StainfreeError, match="c.zarr: 3 channel names given for 2 channels"):
        read_ome_zarr(tmp_path / "c.zarr", channels=["a", "b", "c"])
    with pytest.raises(StainfreeError, match="not a zarr group"):
        read_ome_zarr(tmp_path)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StainfreeError, match="empty.zarr: a folder, not a field image or an OME-Zarr image or plate"):
        read_field_files([tmp_path / "empty.zarr"])


def test_tiles_find_each_object_once_as_the_whole_field_does():
    image, centres = discs()
    field = Field(image[None], ["dapi"], "f", "f.tif")
    options = {"size": 24, "method": "classical", "params": SegmentationParams(mode="fluorescence", diameter=14), "keep_labels": True}
    whole = cells_from_fields([field], **options)
    tiled = cells_from_fields([field], **options, tile=96)
    assert len(split_field(field, tile=96)) == 16
    assert len(whole.table) == len(centres) - whole.per_field[0]["skipped_edge"] == len(tiled.table)
    assert tiled.table["cell_id"].is_unique and set(tiled.table["field"]) == {"f"}
    key = ["centroid_y", "centroid_x", "area"]
    pd.testing.assert_frame_equal(
        tiled.table[key].sort_values(key).reset_index(drop=True), whole.table[key].sort_values(key).reset_index(drop=True)
    )
    # the stitched label image holds the same objects, each under the label id its table row names
    lw, lt = whole.label_images["f"], tiled.label_images["f"]
    np.testing.assert_array_equal(lt > 0, lw > 0)
    for _, row in tiled.table.iterrows():
        assert lt[int(round(row["centroid_y"])), int(round(row["centroid_x"]))] == row["label_id"]


def test_objects_in_core_keeps_centred_objects_only():
    lab = np.zeros((6, 6), int)
    lab[0:2, 0:2], lab[2:6, 2:4], lab[5, 5] = 4, 7, 9
    np.testing.assert_array_equal(np.unique(objects_in_core(lab, (0, 4, 0, 4))), [0, 1, 2])
    assert objects_in_core(np.zeros((3, 3), int), (0, 3, 0, 3)).max() == 0


def test_segment_a_plate_from_the_command_line(tmp_path):
    a, centres = discs(seed=2)
    write_plate(tmp_path / "plate.zarr", {"A1_0": np.stack([a, a]), "A2_0": np.stack([a[::-1], a[::-1]])})
    run_cli(
        "segment",
        str(tmp_path / "plate.zarr"),
        "-o",
        str(tmp_path / "p.cells"),
        "--method",
        "classical",
        "--mode",
        "fluorescence",
        "--size",
        "24",
    )
    cells = open_cellset(tmp_path / "p.cells")
    assert set(cells.table["field"]) == {"A1_0", "A2_0"} and cells.channels == ["dapi", "bf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.cells", "plate.zarr"]  # the tasks' crops were cleared away
    assert abs(len(cells) - 2 * len(centres)) <= 4  # a disc or two at the edge is skipped
