import numpy as np

from stainfree.datasets.synthetic import make_cells, make_field


def test_same_seed_same_cells_other_seed_other_cells():
    a, b, c = make_cells(5, size=32, random_state=7), make_cells(5, size=32, random_state=7), make_cells(5, size=32, random_state=8)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_lines_differ_in_size_and_shape_as_documented():
    cs, masks = make_cells(150, size=64, flasks_per_line=2, random_state=0, return_masks=True)
    area = cs.table.groupby("label")["area"].median()
    assert area["spindle"] > 1.25 * area["round"]
    # elongation from the mask's second moments
    from skimage.measure import regionprops

    ecc = np.array([regionprops(m.astype(np.uint8))[0].eccentricity for m in masks])
    spindle = cs.table["label"].to_numpy() == "spindle"
    assert np.median(ecc[spindle]) > np.median(ecc[~spindle]) + 0.2


def _dominant_angle(arr, arc, acc):
    """Angle (from the row axis towards the column axis) of the main eigenvector of [[arr, arc], [arc, acc]]."""
    return 0.5 * np.arctan2(2 * arc, arr - acc)


def test_fibre_lines_share_their_shape_and_differ_in_fibre_direction_relative_to_the_long_axis():
    from skimage.feature import structure_tensor

    cs, masks = make_cells(60, size=48, lines=("along", "across"), flasks_per_line=2, random_state=3, return_masks=True)
    along = cs.table["label"].to_numpy() == "along"
    area = cs.table["area"].to_numpy()
    assert abs(np.median(area[along]) / np.median(area[~along]) - 1) < 0.1
    # fibres along the long axis change grey level across it: the dominant gradient lies near
    # 90 degrees from the axis; fibres across it near 0 degrees
    angles = []
    for image, mask in zip(cs.images[:, 0].astype(float), masks, strict=True):
        rows, cols = np.nonzero(mask)
        dr, dc = rows - rows.mean(), cols - cols.mean()
        axis = _dominant_angle((dr * dr).mean(), (dr * dc).mean(), (dc * dc).mean())
        inner = np.hypot(dr, dc) < 0.6 * np.sqrt(mask.sum() / np.pi)
        tensor = structure_tensor(image, sigma=1.0, order="rc")
        gradient = _dominant_angle(*(t[rows[inner], cols[inner]].mean() for t in tensor))
        angles.append(np.degrees(abs(np.angle(np.exp(2j * (gradient - axis)))) / 2))
    angles = np.array(angles)
    assert np.median(angles[along]) > 60 and np.median(angles[~along]) < 30


def test_flasks_hold_one_line_and_carry_density():
    cs = make_cells(40, size=32, flasks_per_line=4, random_state=1)
    per_flask = cs.table.groupby("flask")["label"].nunique()
    assert (per_flask == 1).all() and len(per_flask) == 8
    assert set(cs.table["density"]) == {"low", "high"}
    assert cs.groups == ["flask"]
    # dense flasks shrink cells of the same line
    t = cs.table[cs.table["label"] == "round"]
    assert t[t.density == "high"]["area"].median() < t[t.density == "low"]["area"].median()


def test_flask_background_differs_between_flasks():
    cs = make_cells(30, size=48, flasks_per_line=3, random_state=2)
    corner = cs.images[:, 0, :6, :6].reshape(len(cs), -1).mean(1)
    means = cs.table.assign(bg=corner).groupby("flask")["bg"].mean()
    assert means.max() - means.min() > 10  # grey levels


def test_field_masks_labels_and_fluorescence_ground_truth():
    f = make_field((256, 256), n_cells=20, random_state=4)
    assert f.labels.max() == len(f.cells) and len(f.cells) >= 15
    for _, row in f.cells.iterrows():
        region = f.labels == row["label_id"]
        assert region.sum() == row["area"]
        assert abs(np.nonzero(region)[1].mean() - row["centroid_x"]) < 1e-6
    inside = [float(f.fluorescence[f.labels == i].mean()) for i in f.cells["label_id"]]
    marked = f.cells["label"].to_numpy() == "spindle"
    assert min(np.array(inside)[marked]) > max(np.array(inside)[~marked])
