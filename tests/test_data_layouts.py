"""Dataset layouts find cases, modalities, masks and labels in each naming scheme."""

from __future__ import annotations

import numpy as np
import pytest

from wsls.io.case import BRATS_TUMOUR_CORE
from wsls.io.layouts import (
    BratsLayout,
    CsvManifest,
    IslesLayout,
    MSLayout,
    detect_layout,
    open_dataset,
)

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _labels(shape=(8, 9, 10)):
    seg = np.zeros(shape, np.uint8)
    seg[2:4, 2:5, 3:6] = 2  # 18 oedema voxels
    seg[2, 2, 3] = 1
    seg[3, 3, 4] = 4
    return seg


def test_brats_2017_naming(tmp_path, data_write_nifti):
    rng = np.random.default_rng(0)
    for case in ("BraTS19_A_1", "BraTS19_B_1"):
        folder = tmp_path / "HGG" / case
        folder.mkdir(parents=True)
        for k, m in enumerate(("flair", "t1", "t1ce", "t2")):
            data_write_nifti(folder / f"{case}_{m}.nii.gz", rng.random((8, 9, 10)) + k, LPS)
        data_write_nifti(folder / f"{case}_seg.nii.gz", _labels(), LPS, np.uint8)
    assert detect_layout(tmp_path) == "brats"
    ds = open_dataset(tmp_path)
    assert isinstance(ds, BratsLayout) and len(ds) == 2
    assert ds.modalities == ("flair", "t1", "t1c", "t2")
    assert [c.id for c in ds] == ["BraTS19_A_1", "BraTS19_B_1"]
    case = ds["BraTS19_B_1"].load()
    assert case.image.shape == (4, 8, 9, 10)
    assert case.mask.sum() == 18  # whole tumour = label > 0
    assert case.label == 1.0 and case.brain is None
    # channel k was written as noise + k: the order follows the modality names
    assert np.all(np.diff(case.image.reshape(4, -1).mean(axis=1)) > 0.5)
    sub = open_dataset(tmp_path, "brats", modalities=["T1ce", "FLAIR"])
    assert sub.modalities == ("t1c", "flair")
    assert sub[0].image_paths[0].name.endswith("_t1ce.nii.gz")
    core = type(ds[0])(**{**ds[0].__dict__, "lesion": BRATS_TUMOUR_CORE}).load()
    assert core.mask.sum() == 2


def test_brats_deepmedic_naming(tmp_path, data_write_nifti):
    folder = tmp_path / "brats_2013_pat0001_1"
    folder.mkdir()
    img = np.random.default_rng(1).random((8, 9, 10)) - 3.0
    data_write_nifti(folder / "Flair_subtrMeanDivStd.nii.gz", img, LPS)
    data_write_nifti(folder / "T1c_subtrMeanDivStd.nii.gz", img, LPS)
    data_write_nifti(folder / "OTMultiClass.nii.gz", _labels(), LPS)
    data_write_nifti(folder / "brainmask.nii.gz", np.full((8, 9, 10), 0.99999997), LPS)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, BratsLayout) and ds.modalities == ("flair", "t1c")
    case = ds[0].load()
    assert case.brain.all() and case.mask.sum() == 18


def test_ms_layout(tmp_path, data_write_nifti):
    for p in ("patient01", "patient02"):
        folder = tmp_path / p
        folder.mkdir()
        for m in ("FLAIR", "T1", "T1POST", "T2"):
            data_write_nifti(folder / f"{m}.nii.gz", np.ones((6, 7, 8)), np.eye(4))
        data_write_nifti(
            folder / "GOLD_STANDARD.nii.gz", np.eye(6, 7)[:, :, None] * np.ones(8), np.eye(4)
        )
    (tmp_path / "masks_only").mkdir()
    data_write_nifti(
        tmp_path / "masks_only" / "patient03_GOLD_STANDARD_MNI.nii.gz",
        np.ones((6, 7, 8)),
        np.eye(4),
    )
    assert detect_layout(tmp_path) == "ms"
    ds = open_dataset(tmp_path)
    assert isinstance(ds, MSLayout) and [c.id for c in ds] == ["patient01", "patient02"]
    assert ds.modalities == ("flair", "t1", "t1c", "t2")
    assert ds[0].load().mask.sum() == 6 * 8


def test_isles_bids_with_flair_on_another_grid(tmp_path, data_write_nifti):
    dwi_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    flair_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for sub in ("sub-strokecase0001", "sub-strokecase0002"):
        ses = "ses-0001"
        base = tmp_path / "rawdata" / sub / ses
        (base / "dwi").mkdir(parents=True)
        (base / "anat").mkdir(parents=True)
        dwi = np.zeros((10, 10, 10), np.float32)
        dwi[3:6, 3:6, 3:6] = 5.0
        data_write_nifti(base / "dwi" / f"{sub}_{ses}_dwi.nii.gz", dwi, dwi_affine)
        data_write_nifti(base / "dwi" / f"{sub}_{ses}_adc.nii.gz", 1.0 - dwi / 5, dwi_affine)
        flair = np.ones((20, 20, 20), np.float32)
        data_write_nifti(base / "anat" / f"{sub}_{ses}_FLAIR.nii.gz", flair, flair_affine)
        der = tmp_path / "derivatives" / sub / ses
        der.mkdir(parents=True)
        data_write_nifti(der / f"{sub}_{ses}_msk.nii.gz", dwi > 0, dwi_affine, np.uint8)
    assert detect_layout(tmp_path) == "isles"
    ds = open_dataset(tmp_path)
    assert isinstance(ds, IslesLayout) and len(ds) == 2
    assert ds.modalities == ("dwi", "adc", "flair")
    case = ds[0].load()
    assert case.image.shape == (3, 10, 10, 10)  # FLAIR resampled onto the DWI grid
    assert case.mask.sum() == 27
    assert np.allclose(case.image[2][1:-1, 1:-1, 1:-1], 1.0)


def test_csv_manifest(tmp_path, data_write_nifti):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for name in ("a", "b"):
        data_write_nifti(img_dir / f"{name}_flair.nii.gz", np.ones((5, 6, 7)), np.eye(4))
        data_write_nifti(img_dir / f"{name}_t1.nii.gz", np.ones((5, 6, 7)) * 2, np.eye(4))
    data_write_nifti(img_dir / "a_mask.nii.gz", np.eye(5, 6)[:, :, None] * np.ones(7), np.eye(4))
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case_id,image_flair,image_t1,mask,label\n"
        "a,imgs/a_flair.nii.gz,imgs/a_t1.nii.gz,imgs/a_mask.nii.gz,1\n"
        "b,imgs/b_flair.nii.gz,imgs/b_t1.nii.gz,,no\n"
    )
    ds = open_dataset(manifest)
    assert isinstance(ds, CsvManifest) and ds.modalities == ("flair", "t1")
    a, b = (c.load() for c in ds)
    assert a.mask.sum() == 35 and a.label == 1.0
    assert b.mask is None and b.label == 0.0
    assert b.image[1].mean() == 2.0
    only_t1 = CsvManifest(manifest, modalities=["t1"])
    assert only_t1[0].load().image.shape == (1, 5, 6, 7)
    # one 'image' column with several files separated by ';'
    manifest.write_text("id,image,label\nb,imgs/b_flair.nii.gz;imgs/b_t1.nii.gz,\n")
    case = CsvManifest(manifest, modalities=["flair", "t1"])[0]
    assert case.load().image.shape == (2, 5, 6, 7) and case.label is None
    assert open_dataset(tmp_path, "csv").root == manifest


def test_unknown_layout_name(tmp_path):
    from wsls.errors import DataError

    with pytest.raises(DataError, match="unknown layout"):
        open_dataset(tmp_path, layout="nifty")


def test_several_datasets_each_with_its_layout(tmp_path, data_write_nifti):
    from wsls.errors import DataError
    from wsls.io.layouts import open_datasets

    brats = tmp_path / "brats" / "BraTS19_A_1"
    brats.mkdir(parents=True)
    for m in ("flair", "t1ce"):
        data_write_nifti(brats / f"BraTS19_A_1_{m}.nii.gz", np.ones((6, 7, 8)), LPS)
    data_write_nifti(brats / "BraTS19_A_1_seg.nii.gz", _labels((6, 7, 8)), LPS, np.uint8)
    ms = tmp_path / "ms" / "patient01"
    ms.mkdir(parents=True)
    for m in ("FLAIR", "T1POST", "GOLD_STANDARD"):
        data_write_nifti(ms / f"{m}.nii.gz", np.ones((6, 7, 8)), np.eye(4))
    cases, sources = open_datasets([tmp_path / "brats", tmp_path / "ms"], "auto", ("flair", "t1c"))
    assert [c.id for c in cases] == ["BraTS19_A_1", "patient01"]
    assert [s["layout"] for s in sources] == ["BraTS", "MS"]
    assert [s["cases"] for s in sources] == [["BraTS19_A_1"], ["patient01"]]
    with pytest.raises(DataError, match="occur in more than one dataset: BraTS19_A_1"):
        open_datasets([tmp_path / "brats", tmp_path / "brats"], "auto", ("flair", "t1c"))


def test_symlinked_case_folders_are_found(tmp_path, data_write_nifti):
    """Case folders linked into a dataset folder (one link looping back) are followed once."""
    rng = np.random.default_rng(1)
    store = tmp_path / "store"
    for case in ("BraTS19_A_1", "BraTS19_B_1"):
        folder = store / case
        folder.mkdir(parents=True)
        for m in ("flair", "t1ce"):
            data_write_nifti(folder / f"{case}_{m}.nii.gz", rng.random((8, 9, 10)), LPS)
        data_write_nifti(folder / f"{case}_seg.nii.gz", _labels(), LPS, np.uint8)
    data = tmp_path / "data"
    data.mkdir()
    for case in ("BraTS19_A_1", "BraTS19_B_1"):
        (data / case).symlink_to(store / case, target_is_directory=True)
    (data / "BraTS19_A_1" / "loop").symlink_to(data, target_is_directory=True)
    assert detect_layout(data) == "brats"
    ds = open_dataset(data, "auto", ("flair", "t1c"))
    assert [c.id for c in ds] == ["BraTS19_A_1", "BraTS19_B_1"]
    assert all(c.mask_path is not None for c in ds)
