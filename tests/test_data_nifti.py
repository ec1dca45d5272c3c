"""NIfTI/NRRD I/O: canonical orientation in, original geometry out, identical round trips."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from wsls.io.nifti import Volume, load_mask, load_volume, save_like

AFFINES = {
    "RAS": np.diag([1.0, 1.0, 1.0, 1.0]),
    "LAS": np.diag([-1.0, 1.0, 1.0, 1.0]),
    "LPS": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "PIR-oblique": None,  # built below: permuted axes, anisotropic, slightly rotated
}


def _affine(code: str) -> np.ndarray:
    if code == "PIR-oblique":
        theta = np.deg2rad(7.0)
        rot = np.array(
            [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
        )
        perm = np.array([[0, 0, 1.2], [-0.9, 0, 0], [0, -2.0, 0]])  # i->-y, j->-z, k->x
        out = np.eye(4)
        out[:3, :3] = rot @ perm
        out[:3, 3] = [10.0, -20.0, 5.0]
        return out
    out = AFFINES[code].copy()
    out[:3, 3] = [-30.0, 40.0, -12.0]
    return out


@pytest.mark.parametrize("code", ["RAS", "LAS", "LPS", "PIR-oblique"])
def test_round_trip_identical_voxels_and_affine(tmp_path, code, data_write_nifti):
    write_nifti = data_write_nifti
    rng = np.random.default_rng(0)
    affine = _affine(code)
    image = rng.random((9, 11, 7)).astype(np.float32)
    labels = (rng.random((9, 11, 7)) > 0.7).astype(np.uint8)
    write_nifti(tmp_path / "img.nii.gz", image, affine)
    write_nifti(tmp_path / "seg.nii.gz", labels, affine, dtype=np.uint8)

    vol = load_volume(tmp_path / "img.nii.gz", ["flair"])
    assert vol.data.shape[0] == 1 and vol.data.dtype == np.float32
    assert "".join(nib.aff2axcodes(vol.affine)) == "RAS"  # canonical
    mask = load_mask(tmp_path / "seg.nii.gz", vol)
    # the canonical array is the same image: world coordinates of voxels are preserved
    i, j, k = 2, 3, 4
    world = affine @ np.array([i, j, k, 1.0])
    ci, cj, ck = np.rint(np.linalg.solve(vol.affine, world)[:3]).astype(int)
    assert vol.data[0, ci, cj, ck] == image[i, j, k]
    assert mask[ci, cj, ck] == bool(labels[i, j, k])

    save_like(mask, vol, tmp_path / "out.nii.gz")
    save_like(vol.data[0] * 2, vol, tmp_path / "map.nii.gz")
    back = nib.load(tmp_path / "out.nii.gz")
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(back.dataobj), labels)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    fmap = nib.load(tmp_path / "map.nii.gz")
    assert fmap.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(fmap.dataobj), image * 2)
    # and wsls reads its own output back identically
    np.testing.assert_array_equal(load_mask(tmp_path / "out.nii.gz", vol), mask)


def test_multi_file_and_4d_give_same_stack(tmp_path, data_write_nifti):
    write_nifti = data_write_nifti
    rng = np.random.default_rng(1)
    affine = _affine("LPS")
    a, b = rng.random((2, 6, 7, 5)).astype(np.float32)
    write_nifti(tmp_path / "a.nii.gz", a, affine)
    write_nifti(tmp_path / "b.nii.gz", b, affine)
    write_nifti(tmp_path / "ab.nii.gz", np.stack([a, b], axis=-1), affine)
    separate = load_volume([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], ["flair", "t1c"])
    joined = load_volume(tmp_path / "ab.nii.gz", ["flair", "t1c"])
    np.testing.assert_array_equal(separate.data, joined.data)
    assert separate.modalities == ("flair", "t1c")
    # order follows the list given
    swapped = load_volume([tmp_path / "b.nii.gz", tmp_path / "a.nii.gz"])
    np.testing.assert_array_equal(swapped.data[0], separate.data[1])
    # a 4D map saved like the 4D image comes back in the original layout
    save_like(joined.data, joined, tmp_path / "out4d.nii.gz")
    back = nib.load(tmp_path / "out4d.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.stack([a, b], axis=-1))


def test_save_keeps_reference_header_codes(tmp_path):
    affine = _affine("LPS")
    img = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), affine)
    img.header.set_sform(affine, code=2)
    img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "ref.nii.gz")
    vol = load_volume(tmp_path / "ref.nii.gz")
    save_like(np.ones(vol.shape, bool), vol, tmp_path / "m.nii.gz")
    out = nib.load(tmp_path / "m.nii.gz").header
    assert int(out["sform_code"]) == 2 and int(out["qform_code"]) == 1
    assert out.get_xyzt_units() == ("mm", "sec")
    assert np.isnan(out["scl_slope"]) or out["scl_slope"] in (0, 1)


def test_from_array_volume_saves(tmp_path):
    data = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    vol = Volume.from_array(data, _affine("LAS"), ["t1", "t2"])
    save_like(vol.data, vol, tmp_path / "x.nii.gz")
    back = load_volume(tmp_path / "x.nii.gz", ["t1", "t2"])
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine)


def test_nrrd_round_trip(tmp_path):
    pytest.importorskip("nrrd", reason="pynrrd is not installed (optional NRRD support)")
    rng = np.random.default_rng(2)
    vol = Volume.from_array(rng.random((1, 5, 6, 7)).astype(np.float32), _affine("LPS"), ["t1"])
    save_like(vol.data[0], vol, tmp_path / "x.nrrd")
    back = load_volume(tmp_path / "x.nrrd", ["t1"])
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine)
    save_like(back.data[0] > 0.5, back, tmp_path / "m.nrrd")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.nrrd", back), back.data[0] > 0.5)


@pytest.mark.parametrize(
    "relative, axcodes",
    [
        ("brats2015/brats_2013_pat0005_1/OTMultiClass.nii.gz", "LPS"),
        ("ms_lesjak2017/patient26/GOLD_STANDARD.nii.gz", "LAS"),
        ("lesion_masks/LQT/ExampleLesion1.nii.gz", "RAS"),
    ],
)
def test_real_mask_round_trip(data_shared, tmp_path, relative, axcodes):
    path = data_shared / relative
    vol = load_volume(path, ["mask"])
    assert vol.geometry.axcodes == axcodes
    mask = load_mask(path, vol)
    save_like(mask, vol, tmp_path / "m.nii.gz")
    original = nib.load(path)
    back = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj) > 0, np.asarray(original.dataobj) > 0.5)
    np.testing.assert_array_equal(back.affine, original.affine)
    assert back.get_data_dtype() == np.uint8
