import json

import numpy as np
import pandas as pd
import pytest

import stainfree as sf
from stainfree.core.cellset import CellSet
from stainfree.core.specs import merge_labels, parse_merge_spec
from stainfree.core.store import CellSetWriter


def tiny_set(n=6, dtype=np.uint16):
    images = np.arange(n * 2 * 3 * 3, dtype=dtype).reshape(n, 2, 3, 3)
    table = pd.DataFrame(
        {
            "cell_id": [f"c{i}" for i in range(n)],
            "label": ["G1", "S", "G2", "M", "G1", "S"][:n],
            "flask": ["f1", "f1", "f2", "f2", "f3", "f3"][:n],
        }
    )
    return CellSet(images, table, channels=["Ch3", "Ch6"], groups=["flask"], pixel_size=0.33)


def test_round_trip_keeps_pixels_dtype_table_and_header(tmp_path):
    cs = tiny_set()
    cs.save(tmp_path / "x.cells")
    back = sf.open_cellset(tmp_path / "x.cells")
    assert back.is_lazy
    assert back.shape == (6, 2, 3, 3)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.images, cs.images)
    assert back.channels == ["Ch3", "Ch6"]
    assert back.groups == ["flask"]
    assert back.pixel_size == 0.33
    pd.testing.assert_frame_equal(back.table, cs.table)


def test_folder_is_readable_without_stainfree(tmp_path):
    import zarr

    tiny_set().save(tmp_path / "x.cells")
    files = sorted(p.name for p in (tmp_path / "x.cells").iterdir())
    assert files == ["cells.parquet", "cellset.json", "images.zarr"]
    table = pd.read_parquet(tmp_path / "x.cells" / "cells.parquet")
    arr = zarr.open_array(str(tmp_path / "x.cells" / "images.zarr"), mode="r")
    assert list(table["cell_id"]) == [f"c{i}" for i in range(6)]
    assert arr.shape == (6, 2, 3, 3)
    assert int(arr[5, 1, 2, 2]) == 107  # last pixel of arange(108)
    header = json.loads((tmp_path / "x.cells" / "cellset.json").read_text())
    assert header["shape"] == [6, 2, 3, 3] and header["channels"] == ["Ch3", "Ch6"]


def test_cells_are_stored_in_a_few_sharded_files(tmp_path):
    import os

    import zarr

    from stainfree.core.store import CHUNKS_PER_SHARD

    images = np.random.default_rng(0).integers(0, 255, (3000, 2, 40, 40), dtype=np.uint8)
    CellSet(images).save(tmp_path / "s.cells")
    arr = zarr.open_array(str(tmp_path / "s.cells" / "images.zarr"), mode="r")
    assert arr.metadata.zarr_format == 3 and arr.chunks == (655, 2, 40, 40)  # 2 MiB // 3,200 bytes a cell
    assert arr.shards == (655 * 5, 2, 40, 40) and 5 < CHUNKS_PER_SHARD  # 5 chunks hold 3,000 cells
    files = [f for _, _, names in os.walk(tmp_path / "s.cells" / "images.zarr") for f in names]
    assert sorted(files) == ["0", "zarr.json"]  # one shard file for five chunks
    np.testing.assert_array_equal(sf.open_cellset(tmp_path / "s.cells").read(np.array([2999, 7])), images[[2999, 7]])


def test_float_dtype_is_kept(tmp_path):
    cs = CellSet(np.full((2, 1, 2, 2), 0.25, np.float32))
    cs.save(tmp_path / "f.cells")
    back = sf.open_cellset(tmp_path / "f.cells")
    assert back.dtype == np.float32 and back.images[1, 0, 1, 1] == 0.25
    assert list(back.cell_ids) == ["0", "1"]


def test_select_by_mask_query_and_positions_on_a_lazy_set(tmp_path):
    tiny_set().save(tmp_path / "x.cells")
    cs = sf.open_cellset(tmp_path / "x.cells")
    by_query = cs.select("label == 'S'")
    assert list(by_query.cell_ids) == ["c1", "c5"]
    np.testing.assert_array_equal(by_query.images, tiny_set().images[[1, 5]])
    by_mask = cs.select(cs.table["flask"] == "f2")
    assert list(by_mask.cell_ids) == ["c2", "c3"]
    # unordered positions come back in the order asked for
    picked = cs.select([4, 0])
    np.testing.assert_array_equal(picked.images, tiny_set().images[[4, 0]])
    # selecting from a selection
    assert list(by_query.select([1]).cell_ids) == ["c5"]
    assert cs.select("label == 'none'").images.shape == (0, 2, 3, 3)


def test_select_channels_by_name_and_order(tmp_path):
    tiny_set().save(tmp_path / "x.cells")
    cs = sf.open_cellset(tmp_path / "x.cells").select_channels("Ch6")
    assert cs.shape == (6, 1, 3, 3)
    np.testing.assert_array_equal(cs.images[:, 0], tiny_set().images[:, 1])
    swapped = tiny_set().select_channels(["Ch6", "Ch3"]).select([2])
    np.testing.assert_array_equal(swapped.images[0], tiny_set().images[2, ::-1])
    with pytest.raises(sf.StainfreeError, match="channel 'Ch4' is not in this set"):
        tiny_set().select_channels("Ch3,Ch4")


def test_batches_stream_everything_in_order(tmp_path):
    tiny_set().save(tmp_path / "x.cells")
    cs = sf.open_cellset(tmp_path / "x.cells").select("label != 'M'")
    seen = list(cs.batches(2))
    assert [len(b) for b, _ in seen] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in seen]), cs.images)
    assert list(pd.concat([t for _, t in seen])["cell_id"]) == ["c0", "c1", "c2", "c4", "c5"]


def test_merge_classes():
    cs = tiny_set().merge_classes("G1,S,G2=Interphase")
    assert cs.class_counts().to_dict() == {"Interphase": 5, "M": 1}
    assert cs.provenance[-1]["step"] == "merge_classes"
    assert parse_merge_spec("G1,S=I;A,B=AB") == {"I": ["G1", "S"], "AB": ["A", "B"]}
    assert merge_labels(pd.Series(["a", None, "b"]), {"x": ["a"]}).tolist() == ["x", None, "b"]
    with pytest.raises(sf.StainfreeError, match="cannot merge class 'G3': no cell has it"):
        tiny_set().merge_classes("G1,G3=Interphase")
    with pytest.raises(sf.StainfreeError, match="OLD1,OLD2=NEW"):
        parse_merge_spec("G1,S")


def test_concat_checks_channels_and_keeps_ids_unique():
    a, b = tiny_set(), tiny_set()
    both = sf.concat([a, b], source_column="batch")
    assert len(both) == 12 and both.table["batch"].tolist() == [0] * 6 + [1] * 6
    assert both.cell_ids[6] == "1:c0"
    with pytest.raises(sf.StainfreeError, match="cell_id must be unique"):
        sf.concat([a, b])
    with pytest.raises(sf.StainfreeError, match="channels"):
        sf.concat([a, b.select_channels("Ch3")])


def test_to_anndata_puts_table_in_obs_and_embedding_in_obsm():
    cs = tiny_set()
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    ad = cs.to_anndata(emb, key="X_pca", metadata_prefix=True)
    assert list(ad.obs_names) == [f"c{i}" for i in range(6)]
    assert "Metadata_flask" in ad.obs.columns
    np.testing.assert_array_equal(ad.obsm["X_pca"], emb)
    assert ad.uns["stainfree"]["channels"] == ["Ch3", "Ch6"]
    with pytest.raises(sf.StainfreeError, match="embedding has 5 rows for 6 cells"):
        cs.to_anndata(emb[:5])


def test_refuses_to_overwrite_and_replaces_with_force(tmp_path):
    out = tmp_path / "x.cells"
    tiny_set().save(out)
    with pytest.raises(sf.StainfreeError, match="already exists; pass --force"):
        tiny_set().save(out)
    tiny_set().select([0, 1]).save(out, force=True)
    assert len(sf.open_cellset(out)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.cells"]


def test_force_never_replaces_a_folder_that_is_not_a_cellset(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(sf.StainfreeError, match="not a stainfree output"):
        tiny_set().save(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "x.cells"
    with pytest.raises(KeyboardInterrupt):
        with CellSetWriter(out, n_cells=4, channels=["a"], height=2, width=2, dtype="uint8") as w:
            w.write(0, np.zeros((2, 1, 2, 2), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(sf.StainfreeError, match="2 of 4 cells written"):
        with CellSetWriter(out, n_cells=4, channels=["a"], height=2, width=2, dtype="uint8") as w:
            w.write(0, np.zeros((2, 1, 2, 2), np.uint8))
            w.finish(pd.DataFrame({"label": list("abcd")}))
    assert list(tmp_path.iterdir()) == []


def test_open_reports_incomplete_or_missing_sets(tmp_path):
    with pytest.raises(sf.StainfreeError, match="no such CellSet"):
        sf.open_cellset(tmp_path / "nope.cells")
    (tmp_path / "half.cells").mkdir()
    with pytest.raises(sf.StainfreeError, match="not a CellSet .no cellset.json; an interrupted write"):
        sf.open_cellset(tmp_path / "half.cells")


def test_constructor_validation():
    with pytest.raises(sf.StainfreeError, match="4 dimensions"):
        CellSet(np.zeros((2, 3, 3)))
    with pytest.raises(sf.StainfreeError, match="table has 1 rows but there are 2"):
        CellSet(np.zeros((2, 1, 3, 3)), pd.DataFrame({"label": ["a"]}))
    with pytest.raises(sf.StainfreeError, match="group column 'dish' is not in the table"):
        CellSet(np.zeros((2, 1, 3, 3)), groups=["dish"])
    with pytest.raises(sf.StainfreeError, match="'a' repeats"):
        CellSet(np.zeros((2, 1, 3, 3)), pd.DataFrame({"cell_id": ["a", "a"]}))


def test_describe_names_counts_and_groups():
    text = tiny_set().describe()
    assert text.splitlines()[0] == "6 cells, 2 channels (Ch3, Ch6), 3x3 px, uint16"
    assert "group flask: 3 distinct" in text
    assert tiny_set().summary()["classes"] == {"G1": 2, "S": 2, "G2": 1, "M": 1}


def test_append_grows_the_set_and_an_interrupted_append_is_ignored(tmp_path, caplog):
    import json

    import zarr

    from stainfree.core.append import append_cells

    base = np.arange(4 * 1 * 3 * 3, dtype=np.uint8).reshape(4, 1, 3, 3)
    path = CellSet(base, pd.DataFrame({"cell_id": list("abcd"), "flask": ["f1"] * 4}), channels=["bf"], groups=["flask"]).save(
        tmp_path / "g.cells"
    )
    more = np.full((2, 1, 3, 3), 200, np.uint8)
    assert append_cells(path, more, pd.DataFrame({"cell_id": ["e", "f"], "flask": "f2", "label": "x"})) == 6
    grown = sf.open_cellset(path)
    assert grown.cell_ids.tolist() == list("abcdef") and grown.table["flask"].tolist() == ["f1"] * 4 + ["f2"] * 2
    np.testing.assert_array_equal(grown.images, np.concatenate([base, more]))
    assert grown.provenance[-1]["step"] == "append"
    # what does not fit is refused, naming the problem, and leaves the set as it was
    for images, table, match in [
        (np.zeros((1, 2, 3, 3), np.uint8), pd.DataFrame({"cell_id": ["g"], "flask": "f"}), "channel"),
        (np.zeros((1, 1, 3, 3), np.uint16), pd.DataFrame({"cell_id": ["g"], "flask": "f"}), "uint16"),
        (np.zeros((1, 1, 3, 3), np.uint8), pd.DataFrame({"cell_id": ["a"], "flask": "f"}), "'a' is already"),
        (np.zeros((1, 1, 3, 3), np.uint8), pd.DataFrame({"cell_id": ["g"]}), "group column 'flask'"),
    ]:
        with pytest.raises(sf.StainfreeError, match=match):
            append_cells(path, images, table)
    (path / ".append.lock").touch()
    with pytest.raises(sf.StainfreeError, match="another append"):
        append_cells(path, more, pd.DataFrame({"cell_id": ["y", "z"], "flask": "f3"}))
    (path / ".append.lock").unlink()
    assert len(sf.open_cellset(path)) == 6
    # an append that wrote its cells but died before its header: the set still has 6 cells
    header = json.loads((path / "cellset.json").read_text())
    zarr.open_array(str(path / "images.zarr"), mode="r+").resize((9, 1, 3, 3))  # the masks (none here) would lag
    with caplog.at_level("WARNING", logger="stainfree"):
        reopened = sf.open_cellset(path)
    assert len(reopened) == 6 and reopened.read(5).max() == 200 and "interrupted append" in caplog.text
    assert json.loads((path / "cellset.json").read_text()) == header
    assert append_cells(path, more, pd.DataFrame({"cell_id": ["y", "z"], "flask": "f3"})) == 8
    assert sf.open_cellset(path).cell_ids.tolist()[-2:] == ["y", "z"]


def test_many_sets_open_as_one_without_copying(tmp_path):
    from stainfree.core.virtual import open_cellsets

    rng = np.random.default_rng(3)
    parts, paths = [], []
    for k, n in enumerate((5, 3, 4)):
        images = rng.integers(0, 60000, (n, 2, 4, 4), dtype=np.uint16)
        masks = rng.random((n, 4, 4)) > 0.5
        table = pd.DataFrame({"cell_id": [f"c{i}" for i in range(n)], "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2), "plate": f"p{k}"})
        paths.append(CellSet(images, table, channels=["bf", "df"], groups=["plate"], masks=masks).save(tmp_path / f"plate{k}.cells"))
        parts.append((images, masks))
    both = open_cellsets(paths)
    assert both.is_lazy and len(both) == 12 and both.groups == ["plate", "source_set"]
    assert both.cell_ids[5] == "plate1.cells:c0"  # ids repeat across plates: prefixed
    images = np.concatenate([p[0] for p in parts])
    rows = np.array([11, 0, 6, 5, 4])
    np.testing.assert_array_equal(both.read(rows), images[rows])
    np.testing.assert_array_equal(both.select_channels(["df"]).read(rows), images[rows][:, [1]])
    np.testing.assert_array_equal(both.read_masks(rows), np.concatenate([p[1] for p in parts])[rows])
    np.testing.assert_array_equal(both.select("plate == 'p2'").images, parts[2][0])
    other = CellSet(np.zeros((2, 1, 4, 4), np.uint16)).save(tmp_path / "one-channel.cells")
    with pytest.raises(sf.StainfreeError, match="one-channel.cells: channels"):
        open_cellsets([paths[0], other])


def test_an_append_cut_between_images_and_masks_still_opens(tmp_path):
    import zarr

    masks = np.zeros((3, 4, 4), bool)
    masks[1, 1:3, 1:3] = True
    path = CellSet(np.ones((3, 1, 4, 4), np.uint8), masks=masks).save(tmp_path / "m.cells")
    zarr.open_array(str(path / "images.zarr"), mode="r+").resize((5, 1, 4, 4))  # the images grew, the masks did not
    opened = sf.open_cellset(path)
    assert len(opened) == 3 and opened.read_masks(np.array([1]))[0].sum() == 4


def test_rows_read_in_any_pattern_are_numpy_fancy_indexing(tmp_path):
    """Consecutive, dense with gaps and repeats, scattered across chunks, unsorted: always ``x[rows]``."""
    from stainfree.core.cellset import _take_rows
    from stainfree.core.store import _sharded_array

    x = (np.arange(3000 * 2 * 32 * 32) % 65521).astype(np.uint16).reshape(3000, 2, 32, 32)
    store = _sharded_array(tmp_path / "x.zarr", x.shape, x.dtype)
    store[:] = x
    assert store.chunks[0] < 3000  # several chunks
    rng = np.random.default_rng(0)
    patterns = [
        np.arange(100, 400),
        np.sort(rng.choice(3000, 1500, replace=True)),  # a sampled epoch: dense, gaps and repeats
        rng.choice(3000, 40, replace=False),  # scattered over chunks, unsorted
        np.array([2999, 0, 0, 1500]),
    ]
    for rows in patterns:
        np.testing.assert_array_equal(_take_rows(store, rows), x[rows])
        np.testing.assert_array_equal(_take_rows(store, rows, [1]), x[rows][:, [1]])
