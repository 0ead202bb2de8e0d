import numpy as np
import pytest
import torch

import stainfree as sf
from stainfree.ml.transforms import (
    AUGMENTATIONS,
    PRESETS,
    apply_normalisation,
    augment,
    augmentation_names,
    blackout_outside,
    circle_mask,
    dihedral_views,
    fit_normalisation,
)


def test_circle_normalisation_sets_mean_inside_to_one_and_outside_to_zero():
    rng = np.random.default_rng(0)
    images = rng.uniform(10, 20, size=(3, 2, 15, 15))
    params = fit_normalisation(images, "circle")
    assert params == {"method": "circle", "radius": 5.0}
    out = apply_normalisation(images, params)
    mask = circle_mask(15, 15, 5.0)
    np.testing.assert_allclose(out[:, :, mask].mean(axis=2), 1.0, rtol=1e-5)
    assert (out[:, :, ~mask] == 0).all()


def test_quantile_normalisation_maps_cells_onto_the_reference_distribution():
    rng = np.random.default_rng(1)
    base = rng.normal(100, 10, size=(1, 1, 8, 8))
    images = np.concatenate([base, base * 3 + 50, base * 0.5 - 7])  # same ranks, other scales
    params = fit_normalisation(images, "quantile")
    out = apply_normalisation(images, params)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)


def test_robust_normalisation_exact():
    x = np.arange(101, dtype=float).reshape(1, 1, 1, 101)
    params = fit_normalisation(x)
    assert params["center"] == [50.0] and params["scale"] == [98.0]
    assert apply_normalisation(x, params)[0, 0, 0, 50] == 0.0


def test_nan_images_are_refused():
    with pytest.raises(sf.StainfreeError, match="NaN"):
        apply_normalisation(np.full((1, 1, 2, 2), np.nan), {"method": "robust", "center": [0], "scale": [1]})


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_keeps_shape_and_finiteness(preset):
    x = torch.randn(4, 2, 24, 24)
    out = augment(x, preset, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_dihedral_augmentations_only_move_pixels():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    for name in ("rot90", "flip"):
        out = AUGMENTATIONS[name](x, torch.Generator().manual_seed(3))
        for a, b in zip(x, out):
            assert sorted(a.flatten().tolist()) == sorted(b.flatten().tolist())
            assert a[0, 2, 2] == b[0, 2, 2]


def test_rotation_by_any_angle_keeps_a_centred_round_blob_and_moves_an_offset_one():
    yy, xx = np.mgrid[0:21, 0:21]
    blob = torch.tensor(np.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 18.0).astype(np.float32))[None, None]
    out = AUGMENTATIONS["rotate"](blob.repeat(3, 1, 1, 1), torch.Generator().manual_seed(1))
    inside = torch.tensor(circle_mask(21, 21, 8))  # corners are filled by reflection
    assert torch.allclose(out[..., inside], blob.expand(3, 1, 21, 21)[..., inside], atol=0.03)
    offset = torch.tensor(np.exp(-((yy - 10) ** 2 + (xx - 15) ** 2) / 4.0).astype(np.float32))[None, None]
    moved = AUGMENTATIONS["rotate"](offset.repeat(3, 1, 1, 1), torch.Generator().manual_seed(1))
    assert (moved - offset).abs().max() > 0.3


def test_blackout_full_and_partial():
    x = torch.ones(2, 1, 9, 9)
    masks = torch.zeros(2, 9, 9, dtype=torch.bool)
    masks[:, 4, 4] = True
    full = blackout_outside(x, masks, mode="full", dilate=1)
    assert full[0, 0].sum() == 9  # the 3x3 dilated mask survives
    partial = blackout_outside(x, masks, mode="partial", dilate=1, generator=torch.Generator().manual_seed(0))
    assert 9 < partial[0, 0].sum() < 81


def test_dihedral_views_are_the_eight_symmetries():
    x = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    views = {tuple(v.flatten().tolist()) for v in dihedral_views(x)}
    assert len(views) == 8


def test_unknown_preset_is_named():
    with pytest.raises(sf.StainfreeError, match="unknown augmentation preset 'wild'"):
        augment(torch.zeros(1, 1, 4, 4), "wild")


def test_a_comma_list_of_augmentations():
    from stainfree.ml.train import TrainConfig

    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    # a comma list applies its names in order: flips then quarter turns give one of the 8 symmetries
    out = augment(x, "flip,rot90", generator=gen)
    assert any(torch.equal(out, v) for v in dihedral_views(x))
    assert augmentation_names("flip, rot90") == ["flip", "rot90"]
    TrainConfig(augment="rot90,flip").validate()
    with pytest.raises(sf.StainfreeError, match="unknown augmentation 'spin'"):
        TrainConfig(augment="rot90,spin").validate()


def test_per_cell_normalisation_removes_brightness_and_gain():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, size=(1, 1, 10, 10))
    images = np.concatenate([base, base * 5 + 100])
    params = fit_normalisation(images, "cell")
    out = apply_normalisation(images, params)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    assert abs(float(np.median(out[0]))) < 1e-6


def test_rotate_sharp_keeps_fine_texture_where_bilinear_rotate_blurs_it():
    # issue 16: bilinear rotation cut pixel noise by a third, so training cells were blurrier than
    # the cells predicted and the network's decisions shifted
    import math

    import torch

    from stainfree.ml._rotate import _shear
    from stainfree.ml.transforms import _affine, augment

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(32, 1, 48, 48, generator=g)
    centre = (slice(None), slice(None), slice(12, 36), slice(12, 36))
    sharp = augment(noise, "rotate_sharp,flip", generator=g)[centre].std() / noise.std()
    blurred = _affine(noise, g, degrees=180.0)[centre].std() / noise.std()
    assert float(sharp) > 0.95 and float(blurred) < 0.75
    # the shears make a true rotation: a spot 7.38 px from the centre moves by 30 degrees about it
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    spot = torch.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 4)[None, None]
    theta = torch.tensor([math.pi / 6])
    padded = torch.nn.functional.pad(spot, (24, 24, 24, 24), mode="reflect")
    turned = _shear(_shear(_shear(padded, -torch.tan(theta / 2), 3), torch.sin(theta), 2), -torch.tan(theta / 2), 3)[0, 0, 24:72, 24:72]
    cy, cx = float((turned * yy).sum() / turned.sum()) - 23.5, float((turned * xx).sum() / turned.sum()) - 23.5
    assert abs(math.hypot(cy, cx) - math.hypot(3.5, 6.5)) < 0.05
    assert abs(math.degrees(math.atan2(cy, cx) - math.atan2(-3.5, 6.5)) - 30) < 0.5
