"""Preprocessing: brain mask, z-score, crop and resample, and their inverse maps."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from wsls.data.preprocess import (
    PreprocessConfig,
    bounding_box,
    brain_mask,
    preprocess,
    zscore_in_brain,
)
from wsls.io.case import Case
from wsls.io.nifti import Volume, load_volume
from wsls.metrics import dice


def _ball_case(shape=(40, 44, 36), background=-3.5, spacing=(1.0, 1.0, 1.0), seed=0) -> Case:
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(np.float32)
    centre = np.array(shape, np.float32)[:, None, None, None] / 2
    r = np.sqrt((((idx - centre) / (np.array(shape)[:, None, None, None] * 0.3)) ** 2).sum(0))
    brain = r < 1.0
    lesion = np.sqrt(((idx - (centre + 4)) ** 2).sum(0)) < 5
    flair = np.where(brain, 1.0 + 0.1 * rng.standard_normal(shape), background).astype(np.float32)
    flair[lesion & brain] += 2.0
    hole = np.zeros(shape, bool)
    hole[20, 22, 18] = True  # a brain voxel exactly at the background value: a hole to fill
    flair[hole] = background
    t1 = np.where(brain, 5.0 + rng.standard_normal(shape), background).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    vol = Volume.from_array(np.stack([flair, t1]), affine, ["flair", "t1"])
    return Case("ball", vol.data, lesion & brain, None, 1.0, vol, vol.modalities), brain


def test_brain_mask_constant_negative_background_and_holes():
    case, brain = _ball_case()
    derived = brain_mask(case.image)
    np.testing.assert_array_equal(derived, brain)  # the hole is filled, background excluded


def test_brain_mask_threshold_for_noisy_background():
    rng = np.random.default_rng(3)
    _, brain = _ball_case()
    noisy = np.where(brain, 100.0, 0.0) + rng.random(brain.shape) * 5.0
    assert (brain_mask(noisy.astype(np.float32)) == brain).mean() > 0.999


def test_zscore_inside_brain():
    case, brain = _ball_case()
    z, stats = zscore_in_brain(case.image, brain, clip_percentiles=None, background=0.0)
    assert np.allclose(z[:, brain].mean(axis=1), 0.0, atol=1e-4)
    assert np.allclose(z[:, brain].std(axis=1), 1.0, atol=1e-4)
    assert np.all(z[:, ~brain] == 0.0)
    assert np.isclose(stats[1][0], case.image[1][brain].mean(), rtol=1e-5)


def test_bounding_box_margin_and_multiple():
    mask = np.zeros((50, 50, 50), bool)
    mask[10:21, 5:8, 40:49] = True
    box = bounding_box(mask, margin=3, multiple=4)
    assert box.start[0] <= 7 and box.stop[0] >= 24 and all(n % 4 == 0 for n in box.shape)
    assert box.start[2] >= 0 and box.stop[2] <= 50
    cropped = box.apply(mask)
    np.testing.assert_array_equal(box.uncrop(cropped), mask)


def test_prepared_round_trip_full_resolution():
    case, _ = _ball_case()
    prep = preprocess(case, PreprocessConfig(margin=2))
    assert prep.image.shape[1:] == prep.crop.shape
    np.testing.assert_array_equal(prep.to_original(prep.mask), case.mask)
    np.testing.assert_array_equal(prep.from_original(case.mask), prep.mask)


def test_prepared_half_resolution_maps_back():
    case, _ = _ball_case()
    prep = preprocess(case, PreprocessConfig(downsample=2.0, margin=2, pad_to_multiple=8))
    assert all(n % 8 == 0 for n in prep.shape)
    assert prep.spacing == (2.0, 2.0, 2.0)
    back = prep.to_original(prep.mask)
    assert back.shape == case.shape
    # a ball of radius 5 at 2 mm: nearest downsampling shifts it by half a voxel
    nearest = dice(back, case.mask)
    assert nearest > 0.8
    centred = preprocess(case, PreprocessConfig(downsample=2.0, mask_resampling="linear_threshold"))
    assert dice(centred.to_original(centred.mask), case.mask) > max(0.87, nearest)
    ramp = np.broadcast_to(np.arange(case.shape[0], dtype=np.float32)[:, None, None], case.shape)
    small = prep.from_original(ramp)
    big = prep.to_original(small)
    inside = prep.crop.slices
    assert np.abs(big[inside] - ramp[inside])[2:-2, 2:-2, 2:-2].max() < 1e-3  # linear is exact


def test_prepared_affine_matches_world(tmp_path):
    case, _ = _ball_case(spacing=(1.0, 1.0, 1.0))
    prep = preprocess(case, PreprocessConfig(downsample=2.0, margin=2))
    ijk = np.array([3, 4, 5, 1.0])
    world = prep.affine @ ijk
    full_index = np.linalg.solve(case.volume.affine, world)[:3]
    expected = np.array(prep.crop.start) + (ijk[:3] + 0.5) * 2 - 0.5
    np.testing.assert_allclose(full_index, expected)


def test_target_spacing_and_save(tmp_path, data_write_nifti):
    case, _ = _ball_case()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    data_write_nifti(
        tmp_path / "flair.nii.gz", case.volume.geometry.to_original(case.image[0]), lps
    )
    vol = load_volume(tmp_path / "flair.nii.gz", ["flair"])
    loaded = Case("c", vol.data, None, None, None, vol, vol.modalities)
    prep = preprocess(loaded, PreprocessConfig(target_spacing=(2.0, 2.0, 3.0)))
    assert np.allclose(prep.spacing, (2.0, 2.0, 3.0), rtol=0.1)
    prep.save(prep.brain, tmp_path / "brain.nii.gz")
    out = nib.load(tmp_path / "brain.nii.gz")
    np.testing.assert_array_equal(out.affine, nib.load(tmp_path / "flair.nii.gz").affine)
    assert out.shape == case.shape and out.get_data_dtype() == np.uint8
