import numpy as np
import pandas as pd
import pytest

import stainfree as sf
from conftest import write_png, write_tif
from stainfree.io.images import crop_or_pad, read_image, resize_cell, to_channels_first
from stainfree.io.scan import detect_layout, parse_group_spec


def class_folders(root, sizes=None):
    """Two classes of tiny 8-bit images with known pixel values."""
    sizes = sizes or {}
    for cls, base in (("A", 10), ("B", 100)):
        for i in range(3):
            name = f"{cls}-{i:06d}-x.png"
            h, w = sizes.get(name, (4, 4))
            write_png(root / cls / name, np.full((h, w), base + i, np.uint8))
    return root


def test_read_image_keeps_dtype_for_png_and_tif(tmp_path):
    a16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    np.testing.assert_array_equal(read_image(write_png(tmp_path / "a.png", a16)), a16)
    np.testing.assert_array_equal(read_image(write_tif(tmp_path / "a.tif", a16)), a16)
    f32 = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    assert read_image(write_tif(tmp_path / "f.tif", f32)).dtype == np.float32


def test_truncated_and_garbage_images_name_the_file(tmp_path):
    good = write_png(tmp_path / "good.png", np.zeros((64, 64), np.uint8))
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(sf.StainfreeError, match=r"cut\.png: unreadable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(sf.StainfreeError, match=r"junk\.tif: unreadable image"):
        read_image(tmp_path / "junk.tif")


def test_grey_conversion_and_channel_order():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 100
    assert to_channels_first(rgb).shape == (3, 2, 2)
    assert to_channels_first(rgb)[0, 0, 0] == 100
    np.testing.assert_array_equal(to_channels_first(rgb, grey=True), np.full((1, 2, 2), 30, np.uint8))  # 0.299 * 100


def test_crop_or_pad_exact_values():
    img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    np.testing.assert_array_equal(crop_or_pad(img, 2), [[[5, 6], [9, 10]]])
    padded = crop_or_pad(np.array([[[7]]], np.uint8), 3)
    np.testing.assert_array_equal(padded, np.full((1, 3, 3), 7, np.uint8))
    mixed = crop_or_pad(np.arange(6, dtype=np.uint8).reshape(1, 1, 6), 2)  # crop width, pad height
    assert mixed.shape == (1, 2, 2)


def test_resize_keeps_dtype_and_constant_images():
    out = resize_cell(np.full((1, 10, 10), 200, np.uint8), 4)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 4) and (out == 200).all()


def test_class_folders_import_with_labels_and_sources(tmp_path):
    cs = sf.import_cells(class_folders(tmp_path / "src"))
    assert cs.shape == (6, 1, 4, 4) and cs.dtype == np.uint8
    assert cs.class_counts().to_dict() == {"A": 3, "B": 3}
    assert cs.table["cell_id"].iloc[0] == "A/A-000000-x"
    assert cs.table["source"].iloc[4] == "B/B-000001-x.png"
    assert cs.images[4, 0, 0, 0] == 101


def test_group_regex_is_qualified_by_class_folder_unless_asked(tmp_path):
    src = class_folders(tmp_path / "src")
    cs = sf.import_cells(src, groups=[r"field=-(\d{6})"])
    assert cs.groups == ["field"]
    assert cs.table["field"].iloc[0] == "A/000000" and cs.table["field"].nunique() == 6
    shared = sf.import_cells(src, groups={"field": r"-(\d{6})"}, groups_across_classes=True)
    assert shared.table["field"].nunique() == 3


def test_group_regex_errors(tmp_path):
    src = class_folders(tmp_path / "src")
    with pytest.raises(sf.StainfreeError, match="matches no file name"):
        sf.import_cells(src, groups=["field=zzz"])
    write_png(src / "A" / "odd.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(sf.StainfreeError, match=r"odd\.png \(1 of 7 files unmatched\)"):
        sf.import_cells(src, groups=[r"field=-(\d{6})"])
    with pytest.raises(sf.StainfreeError, match="invalid regular expression"):
        sf.import_cells(src, groups=["field=("])
    assert parse_group_spec("dish") == ("dish", None)


def test_mixed_sizes_need_size_or_crop(tmp_path):
    src = class_folders(tmp_path / "src", sizes={"B-000002-x.png": (6, 5)})
    with pytest.raises(sf.StainfreeError, match=r"B-000002-x\.png: 6x5 px, but .* is 4x4; pass --size"):
        sf.import_cells(src)
    assert sf.import_cells(src, size=8).shape == (6, 1, 8, 8)
    cropped = sf.import_cells(src, crop=4)
    assert cropped.shape == (6, 1, 4, 4) and (cropped.images[5] == 102).all()


def test_rgb_and_grey_mixed_needs_grey_flag(tmp_path):
    src = tmp_path / "src"
    write_png(src / "A" / "a.png", np.zeros((4, 4), np.uint8))
    write_png(src / "B" / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(sf.StainfreeError, match="pass --grey"):
        sf.import_cells(src)
    assert sf.import_cells(src, grey=True).channels == ["grey"]


def test_rgb_images_become_three_named_channels(tmp_path):
    write_png(tmp_path / "src" / "A" / "a.png", np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3)]))
    write_png(tmp_path / "src" / "B" / "b.png", np.zeros((4, 4, 3), np.uint8))
    cs = sf.import_cells(tmp_path / "src")
    assert cs.channels == ["R", "G", "B"] and cs.images[0, :, 0, 0].tolist() == [1, 2, 3]


def test_empty_folder_and_empty_class_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sf.StainfreeError, match="no images found"):
        sf.import_cells(tmp_path / "empty")
    src = class_folders(tmp_path / "src")
    (src / "C").mkdir()
    (src / "C" / "notes.txt").write_text("not an image")
    with pytest.raises(sf.StainfreeError, match=r"C: class folder has no images"):
        sf.import_cells(src)


def test_unreadable_image_in_a_folder_names_it(tmp_path):
    src = class_folders(tmp_path / "src")
    (src / "B" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(sf.StainfreeError, match=r"broken\.png: unreadable image"):
        sf.import_cells(src, tmp_path / "out.cells")
    assert not (tmp_path / "out.cells").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def ifc_folder(root, missing=None):
    for cls, ids in (("G1", [1, 2, 10]), ("M", [3])):
        for cid in ids:
            for ch, base in ((3, 1000), (4, 2000), (6, 3000)):
                if (cls, cid, ch) == missing:
                    continue
                write_tif(root / cls / f"{cid:05d}_Ch{ch}.tif", np.full((5, 5), base + cid, np.uint16))
    return root


def test_ifc_layout_groups_channels_per_cell(tmp_path):
    src = ifc_folder(tmp_path / "ifc")
    assert detect_layout(src) == "ifc"
    cs = sf.import_cells(src, channels="Ch3,Ch6")
    assert cs.channels == ["Ch3", "Ch6"] and cs.shape == (4, 2, 5, 5) and cs.dtype == np.uint16
    assert list(cs.cell_ids) == ["G1/00001", "G1/00002", "G1/00010", "M/00003"]
    assert cs.images[2, :, 0, 0].tolist() == [1010, 3010]
    assert sf.import_cells(src).channels == ["Ch3", "Ch4", "Ch6"]
    assert sf.import_cells(src, channels=["ch6"]).channels == ["Ch6"]


def test_ifc_missing_channel_is_named(tmp_path):
    src = ifc_folder(tmp_path / "ifc", missing=("G1", 2, 6))
    with pytest.raises(sf.StainfreeError, match=r"G1/00002: cell has no Ch6 file"):
        sf.import_cells(src, channels="Ch3,Ch6")
    assert len(sf.import_cells(src, channels="Ch3,Ch4")) == 4
    with pytest.raises(sf.StainfreeError, match="no file of channel Ch9"):
        sf.import_cells(src, channels="Ch9")


def test_merge_classes_at_import(tmp_path):
    cs = sf.import_cells(ifc_folder(tmp_path / "ifc"), channels=["Ch3"], merge_classes={"All": ["G1", "M"]})
    assert cs.class_counts().to_dict() == {"All": 4}
    assert cs.provenance[-1]["merge_classes"] == {"All": ["G1", "M"]}
    # the command-line strings are still accepted
    same = sf.import_cells(tmp_path / "ifc", channels="Ch3", merge_classes="G1,M=All")
    assert same.class_counts().to_dict() == {"All": 4}


def test_manifest_with_per_channel_paths_labels_and_metadata(tmp_path):
    ifc_folder(tmp_path / "ifc")
    pd.DataFrame(
        {
            "path_Ch3": ["ifc/G1/00001_Ch3.tif", "ifc/M/00003_Ch3.tif"],
            "path_Ch6": ["ifc/G1/00001_Ch6.tif", "ifc/M/00003_Ch6.tif"],
            "class": ["G1", "M"],
            "Metadata_dish": ["d1", "d2"],
            "dose": [0.5, 1.0],
        }
    ).to_csv(tmp_path / "cells.csv", index=False)
    assert detect_layout(tmp_path / "cells.csv") == "manifest"
    cs = sf.import_cells(tmp_path / "cells.csv")
    assert cs.channels == ["Ch3", "Ch6"]
    assert cs.table["label"].tolist() == ["G1", "M"]
    assert cs.table["dish"].tolist() == ["d1", "d2"] and cs.table["dose"].tolist() == [0.5, 1.0]
    assert cs.groups == ["dish"]
    assert cs.images[1, :, 0, 0].tolist() == [1003, 3003]
    only6 = sf.import_cells(tmp_path / "cells.csv", channels="Ch6", groups=["dose"])
    assert only6.channels == ["Ch6"] and only6.groups == ["dose", "dish"]
    with pytest.raises(sf.StainfreeError, match="group column 'plate' does not exist"):
        sf.import_cells(tmp_path / "cells.csv", groups=["plate"])


def test_manifest_errors(tmp_path):
    pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(sf.StainfreeError, match=r"bad\.csv: manifest needs a 'path' column"):
        sf.import_cells(tmp_path / "bad.csv")
    pd.DataFrame({"path": ["missing.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(sf.StainfreeError, match=r"missing\.png: unreadable image"):
        sf.import_cells(tmp_path / "m.csv")


def test_write_class_folders_round_trip(tmp_path):
    from stainfree.datasets.synthetic import make_cells
    from stainfree.io.export import write_class_folders

    cs = make_cells(3, size=24, flasks_per_line=1, random_state=3)
    files = write_class_folders(cs, tmp_path / "export")
    back = sf.import_cells(tmp_path / "export")
    assert sorted(back.table["source"]) == sorted(files)
    order = [files.index(s) for s in back.table["source"]]
    np.testing.assert_array_equal(back.images, cs.images[order])


def test_channels_of_colour_files_can_be_chosen_by_name(tmp_path):
    write_png(tmp_path / "src" / "A" / "a.png", np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3)]))
    write_png(tmp_path / "src" / "B" / "b.png", np.zeros((4, 4, 3), np.uint8))
    cs = sf.import_cells(tmp_path / "src", channels="B,R", pixel_size=0.65)
    assert cs.channels == ["B", "R"] and cs.images[0, :, 0, 0].tolist() == [3, 1]
    assert cs.pixel_size == 0.65
    with pytest.raises(sf.StainfreeError, match=r"a\.png: no channel 'Ch3' \(its channels: R, G, B\)"):
        sf.import_cells(tmp_path / "src", channels="Ch3")


def test_parquet_round_trip_and_clean_exit(tmp_path):
    import subprocess
    import sys

    from stainfree.utils import StainfreeError, read_parquet, write_parquet

    table = pd.DataFrame({"cell_id": ["a", "b", "c"], "area": [1.5, 2.0, 3.25]})
    path = write_parquet(table, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_parquet(path), table)
    with pytest.raises(StainfreeError, match="already exists"):
        write_parquet(table, path)
    # pyarrow's reader threads used to abort the interpreter at exit now and then (CI saw -6)
    code = f"from stainfree.utils import read_parquet; print(len(read_parquet({str(path)!r})))"
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "3", "")
